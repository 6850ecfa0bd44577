//! Block stores under the server's protocol: S3 (against moto), Swift
//! (against a real single-node Swift), RAID0/1/5 over them with nodes
//! stopped, the `--blockstore` grammar and startup checks through the real
//! binary, and concurrent block traffic through the block actor.
//!
//! The servers come from `scripts/test.sh` (`scripts/moto.sh`,
//! `scripts/swift-aio.sh`), through `PARSEC_TEST_S3_*`,
//! `PARSEC_TEST_MOTO_SERVER` and `PARSEC_TEST_SWIFT_*`. Without them a test
//! says so and returns, except under `CI=true`, where it fails. Tests that
//! stop a store start their own: moto processes, or the second Swift
//! instance reserved for the restart test.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use parsec_actors::Actors;
use parsec_actors::backend::Backends;
use parsec_actors::blockstore::raid::{Raid0BlockStore, Raid1BlockStore, Raid5BlockStore};
use parsec_actors::blockstore::s3::{S3BlockStore, S3Settings};
use parsec_actors::blockstore::swift::{SwiftBlockStore, SwiftSettings};
use parsec_actors::blockstore::{BlockStore, BlockStoreError, MemoryBlockStore};
use parsec_load::identity::realm_create_req;
use parsec_load::setup::{block_create, block_read, random_bytes};
use parsec_protocol::types::*;
use parsec_protocol::value::{MAX_BIN_LEN, Value};
use parsec_server::config::{BlockStoreConfig, SwiftConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::common::*;

/// 1 byte, a client's default block (512 KiB) and the largest block.
const SIZES: [usize; 3] = [1, 512 * 1024, MAX_BIN_LEN];
/// Per store call in these tests: short, so that a stopped node fails fast.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

// ------------------------------------------------------------------ environment

/// `name`'s value; otherwise `None` after saying why, or a failure under CI.
fn env_or_skip(name: &str) -> Option<String> {
    match std::env::var(name) {
        Ok(v) if !v.is_empty() => Some(v),
        _ if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("{name} is not set: scripts/test.sh starts the S3 and Swift test servers")
        }
        _ => {
            eprintln!("skipped: {name} is not set (scripts/test.sh starts the S3 and Swift test servers)");
            None
        }
    }
}

/// The shared moto server and its plain bucket.
struct S3Env {
    endpoint: String,
    region: String,
    bucket: String,
}

fn s3_env() -> Option<S3Env> {
    Some(S3Env {
        endpoint: env_or_skip("PARSEC_TEST_S3_ENDPOINT")?,
        region: env_or_skip("PARSEC_TEST_S3_REGION")?,
        bucket: env_or_skip("PARSEC_TEST_S3_BUCKET")?,
    })
}

fn s3_settings(endpoint: &str, region: &str, bucket: &str) -> S3Settings {
    S3Settings {
        endpoint_url: Some(endpoint.to_string()),
        region: region.to_string(),
        bucket: bucket.to_string(),
        key: "testkey".into(),
        secret: "testsecret".into(),
    }
}

async fn s3_store(endpoint: &str, region: &str, bucket: &str) -> Arc<dyn BlockStore> {
    match S3BlockStore::connect(&s3_settings(endpoint, region, bucket), CALL_TIMEOUT).await {
        Ok(store) => Arc::new(store),
        Err(e) => panic!("{e:#}"),
    }
}

/// A `swift:` blockstore value, parsed by the server's own grammar.
fn swift_config(var: &str) -> Option<SwiftConfig> {
    let value = env_or_skip(var)?;
    match BlockStoreConfig::parse(&[value]) {
        Ok(BlockStoreConfig::Swift(config)) => Some(config),
        other => panic!("{var} is not a swift: blockstore value: {other:?}"),
    }
}

fn swift_settings(c: &SwiftConfig) -> SwiftSettings {
    SwiftSettings {
        auth_url: c.auth_url.clone(),
        tenant: c.tenant.clone(),
        container: c.container.clone(),
        user: c.user.clone(),
        password: c.password.expose().to_string(),
    }
}

async fn swift_store(c: &SwiftConfig) -> Arc<dyn BlockStore> {
    match SwiftBlockStore::connect(&swift_settings(c), CALL_TIMEOUT).await {
        Ok(store) => Arc::new(store),
        Err(e) => panic!("{e:#}"),
    }
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("local addr").port()
}

// ------------------------------------------------------------------ servers

/// The server, in process, with `store` for blocks (metadata in memory).
async fn server_with(store: Arc<dyn BlockStore>) -> TestServer {
    let mut backends = Backends::memory();
    backends.blockstore = store;
    let settings = parsec_actors::Settings {
        administration_token: TOKEN.into(),
        spontaneous_organization_bootstrap: false,
        organization_initial_active_users_limit: None,
        organization_initial_user_profile_outsider_allowed: true,
        email: Default::default(),
        backend_addr: Default::default(),
    };
    start_server_with(Actors::start(backends, settings)).await
}

/// A logged-in client of a new organization, and a realm it owns.
struct Client {
    org: OrganizationId,
    ws: WsClient,
    realm: Uuid,
}

async fn client(server: &TestServer) -> Client {
    let org = new_org(server).await;
    let mut ws = login(server, &org).await;
    ws.timeout = Duration::from_secs(60);
    let realm = Uuid::new_v4();
    ws.send_value(&realm_create_req(&org.alice, realm, DateTime::now()))
        .await;
    let rep = ws.recv().await;
    assert_eq!(status(&rep), "ok", "{rep:?}");
    Client { org: org.id, ws, realm }
}

impl Client {
    async fn put(&mut self, block_id: Uuid, data: &[u8]) -> String {
        self.ws.send_value(&block_create(block_id, self.realm, data)).await;
        status(&self.ws.recv().await).to_string()
    }

    /// `Ok(bytes)` or `Err(status)`.
    async fn get(&mut self, block_id: Uuid) -> Result<Vec<u8>, String> {
        self.ws.send_value(&block_read(block_id)).await;
        let rep = self.ws.recv().await;
        match (status(&rep), field(&rep, "block")) {
            ("ok", Value::Binary(data)) => Ok(data.clone()),
            (st, _) => Err(st.to_string()),
        }
    }

    async fn ping(&mut self) {
        let rep = self.ws.req("ping", vec![("ping", Value::from("still there?"))]).await;
        assert_eq!(status(&rep), "ok", "{rep:?}");
    }

    /// Puts one block of each of [`SIZES`]; returns them.
    async fn put_all_sizes(&mut self) -> Vec<(Uuid, Vec<u8>)> {
        let mut blocks = Vec::new();
        for size in SIZES {
            let (id, data) = (Uuid::new_v4(), random_bytes(size));
            assert_eq!(self.put(id, &data).await, "ok", "block_create of {size} bytes");
            blocks.push((id, data));
        }
        blocks
    }

    /// Every block reads back byte-identical.
    async fn check_all(&mut self, blocks: &[(Uuid, Vec<u8>)], when: &str) {
        for (id, data) in blocks {
            match self.get(*id).await {
                Ok(read) => assert!(read == *data, "{when}: block of {} bytes differs", data.len()),
                Err(st) => panic!("{when}: block_read of {} bytes: {st}", data.len()),
            }
        }
    }
}

/// A moto server of our own, to stop at will (killed on drop too).
struct Moto {
    child: tokio::process::Child,
    endpoint: String,
}

impl Moto {
    async fn start(bin: &str, region: &str, buckets: &[&str]) -> Moto {
        let port = free_port();
        let child = tokio::process::Command::new(bin)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {bin}: {e}"));
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let deadline = Instant::now() + Duration::from_secs(60);
        while parsec_load::client::http_request(addr, "GET", "/", &[], b"")
            .await
            .is_err()
        {
            assert!(Instant::now() < deadline, "moto on port {port} did not answer");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let body = format!(
            "<CreateBucketConfiguration><LocationConstraint>{region}</LocationConstraint></CreateBucketConfiguration>"
        );
        for bucket in buckets {
            let (code, rep) =
                parsec_load::client::http_request(addr, "PUT", &format!("/{bucket}"), &[], body.as_bytes())
                    .await
                    .expect("create bucket");
            assert_eq!(code, 200, "{}", String::from_utf8_lossy(&rep));
        }
        Moto {
            child,
            endpoint: format!("http://{addr}"),
        }
    }

    async fn stop(&mut self) {
        self.child.kill().await.expect("kill moto");
    }
}

/// A TCP forwarder counting the connections it accepted.
struct CountingProxy {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl CountingProxy {
    async fn start(upstream: SocketAddr) -> CountingProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let accepted = Arc::new(AtomicUsize::new(0));
        let counter = accepted.clone();
        let task = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        });
        CountingProxy { addr, accepted, task }
    }
}

impl Drop for CountingProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A `GET` of an object straight from moto, bypassing the store under test.
/// moto checks no signature but refuses anonymous reads of private objects,
/// so the request names an access key.
async fn moto_get(endpoint: &str, bucket: &str, key: &str) -> (u16, Vec<u8>) {
    let auth = "AWS4-HMAC-SHA256 Credential=testkey/20260101/parsec-test-1/s3/aws4_request, \
                SignedHeaders=host, Signature=00";
    parsec_load::client::http_request(
        addr_of(endpoint),
        "GET",
        &format!("/{bucket}/{key}"),
        &[("Authorization", auth)],
        b"",
    )
    .await
    .expect("GET object")
}

fn addr_of(endpoint: &str) -> SocketAddr {
    let host = endpoint
        .trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap_or_default();
    host.parse().unwrap_or_else(|e| panic!("{endpoint}: {e}"))
}

/// One raw HTTP/1.1 exchange (`Connection: close`): status, headers, body.
async fn raw_http(addr: SocketAddr, head: &str) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream.write_all(head.as_bytes()).await.expect("write");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.expect("read");
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").expect("end of headers");
    let text = String::from_utf8_lossy(&raw[..split]).to_string();
    let mut lines = text.split("\r\n");
    let code = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|c| c.parse().ok())
        .expect("status line");
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    (code, headers, raw[split + 4..].to_vec())
}

// ------------------------------------------------------------------ S3

#[actix_web::test]
async fn s3_blocks_of_every_size_through_the_protocol() {
    let Some(env) = s3_env() else { return };
    let server = server_with(s3_store(&env.endpoint, &env.region, &env.bucket).await).await;
    let mut c = client(&server).await;
    let blocks = c.put_all_sizes().await;
    c.check_all(&blocks, "S3").await;
    // The object is where the reference puts it: `<org>/<uuid with dashes>`.
    let (id, data) = &blocks[0];
    let key = format!("{}/{}", c.org.as_str(), id.hyphenated());
    assert_eq!(moto_get(&env.endpoint, &env.bucket, &key).await, (200, data.clone()));
    // A second create of the same id is refused by the metadata, not the store.
    assert_eq!(c.put(*id, data).await, "already_exists");
}

#[actix_web::test]
async fn s3_bucket_with_object_lock() {
    let Some(env) = s3_env() else { return };
    let Some(locked) = env_or_skip("PARSEC_TEST_S3_LOCKED_BUCKET") else {
        return;
    };
    let server = server_with(s3_store(&env.endpoint, &env.region, &locked).await).await;
    let mut c = client(&server).await;
    let blocks = c.put_all_sizes().await;
    c.check_all(&blocks, "S3 with object lock").await;
}

/// An HTTP/1.1 keep-alive front for moto, which closes every connection
/// after one answer (so reuse cannot be seen against moto itself): forwards
/// each request and counts the client connections it accepted.
async fn keep_alive_front(upstream: String) -> (String, Arc<AtomicUsize>) {
    use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
    async fn forward(req: HttpRequest, body: web::Bytes, upstream: web::Data<String>) -> HttpResponse {
        let url = format!("{}{}", upstream.get_ref(), req.uri());
        let client = awc::Client::new();
        let mut rep = match client.request_from(url, req.head()).send_body(body).await {
            Ok(rep) => rep,
            Err(e) => return HttpResponse::BadGateway().body(e.to_string()),
        };
        let mut out = HttpResponse::build(rep.status());
        for (name, value) in rep.headers() {
            if !matches!(name.as_str(), "connection" | "content-length" | "transfer-encoding") {
                out.insert_header((name.clone(), value.clone()));
            }
        }
        match rep.body().limit(4 * MAX_BIN_LEN).await {
            Ok(bytes) => out.body(bytes),
            Err(e) => HttpResponse::BadGateway().body(e.to_string()),
        }
    }
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = accepted.clone();
    let data = web::Data::new(upstream);
    let server = HttpServer::new(move || App::new().app_data(data.clone()).default_service(web::to(forward)))
        .on_connect(move |_, _| {
            counter.fetch_add(1, Ordering::SeqCst);
        })
        .workers(1)
        .disable_signals()
        .bind(("127.0.0.1", 0))
        .expect("bind");
    let endpoint = format!("http://{}", server.addrs()[0]);
    actix_web::rt::spawn(server.run());
    (endpoint, accepted)
}

/// Sequential blocks go through one pooled connection, not one each.
#[actix_web::test]
async fn s3_connections_are_reused() {
    let Some(env) = s3_env() else { return };
    let (endpoint, accepted) = keep_alive_front(env.endpoint.clone()).await;
    let server = server_with(s3_store(&endpoint, &env.region, &env.bucket).await).await;
    let mut c = client(&server).await;
    let mut blocks = Vec::new();
    for _ in 0..20 {
        let (id, data) = (Uuid::new_v4(), random_bytes(64 * 1024));
        assert_eq!(c.put(id, &data).await, "ok");
        blocks.push((id, data));
    }
    c.check_all(&blocks, "through the keep-alive front").await;
    let accepted = accepted.load(Ordering::SeqCst);
    assert!(accepted <= 2, "41 S3 calls opened {accepted} connections");
}

/// A store that stops answering: the block commands say `timeout`, the rest
/// of the server carries on.
#[actix_web::test]
async fn s3_unreachable_gives_timeout_and_the_server_keeps_working() {
    let Some(env) = s3_env() else { return };
    let Some(moto_bin) = env_or_skip("PARSEC_TEST_MOTO_SERVER") else {
        return;
    };
    let mut moto = Moto::start(&moto_bin, &env.region, &["blocks"]).await;
    let server = server_with(s3_store(&moto.endpoint, &env.region, "blocks").await).await;
    let mut c = client(&server).await;
    let id = Uuid::new_v4();
    assert_eq!(c.put(id, b"before").await, "ok");
    moto.stop().await;
    assert_eq!(c.put(Uuid::new_v4(), b"after").await, "timeout");
    assert_eq!(c.get(id).await, Err("timeout".to_string()));
    c.ping().await;
    // Another organization, metadata commands: all fine.
    let mut other = client(&server).await;
    other.ping().await;
}

// ------------------------------------------------------------------ Swift

#[actix_web::test]
async fn swift_blocks_of_every_size_through_the_protocol() {
    let Some(config) = swift_config("PARSEC_TEST_SWIFT_CONFIG") else {
        return;
    };
    let server = server_with(swift_store(&config).await).await;
    let mut c = client(&server).await;
    let blocks = c.put_all_sizes().await;
    c.check_all(&blocks, "Swift").await;

    // The object is where the reference puts it, read with Swift's own auth.
    let swift = addr_of(&config.auth_url);
    let auth_path = config
        .auth_url
        .trim_start_matches("http://")
        .trim_start_matches(&swift.to_string());
    let (code, headers, _) = raw_http(
        swift,
        &format!(
            "GET {auth_path} HTTP/1.1\r\nHost: {swift}\r\nX-Auth-User: {}:{}\r\nX-Auth-Key: {}\r\nConnection: close\r\n\r\n",
            config.user,
            config.tenant,
            config.password.expose()
        ),
    )
    .await;
    assert_eq!(code, 200);
    let header = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| panic!("no {name}"))
    };
    let (token, storage_url) = (header("x-auth-token"), header("x-storage-url"));
    let storage_path = storage_url
        .trim_start_matches("http://")
        .trim_start_matches(&swift.to_string());
    let (id, data) = &blocks[1];
    let (code, _, body) = raw_http(
        swift,
        &format!(
            "GET {storage_path}/{}/{}/{} HTTP/1.1\r\nHost: {swift}\r\nX-Auth-Token: {token}\r\nConnection: close\r\n\r\n",
            config.container,
            c.org.as_str(),
            id.hyphenated()
        ),
    )
    .await;
    assert_eq!(code, 200);
    assert!(body == *data, "object content differs");
}

/// Sequential blocks go through one pooled connection, not one each.
#[actix_web::test]
async fn swift_connections_are_reused() {
    let Some(mut config) = swift_config("PARSEC_TEST_SWIFT_CONFIG") else {
        return;
    };
    let swift = addr_of(&config.auth_url);
    let proxy = CountingProxy::start(swift).await;
    // The storage URL Swift hands out follows the Host we authenticated with.
    config.auth_url = config.auth_url.replace(&swift.to_string(), &proxy.addr.to_string());
    let server = server_with(swift_store(&config).await).await;
    let mut c = client(&server).await;
    let mut blocks = Vec::new();
    for _ in 0..20 {
        let (id, data) = (Uuid::new_v4(), random_bytes(64 * 1024));
        assert_eq!(c.put(id, &data).await, "ok");
        blocks.push((id, data));
    }
    c.check_all(&blocks, "through the proxy").await;
    let accepted = proxy.accepted.load(Ordering::SeqCst);
    assert!(accepted <= 3, "42 Swift calls opened {accepted} connections");
}

/// Swift stopped: `timeout` and a working server; Swift back: blocks again,
/// with the same store (token and pooled connections recover).
#[actix_web::test]
async fn swift_restart_is_survived() {
    let Some(config) = swift_config("PARSEC_TEST_SWIFT_RESTART_CONFIG") else {
        return;
    };
    let Some(script) = env_or_skip("PARSEC_TEST_SWIFT_AIO") else {
        return;
    };
    let Some(dir) = env_or_skip("PARSEC_TEST_SWIFT_RESTART_DIR") else {
        return;
    };
    let Some(port) = env_or_skip("PARSEC_TEST_SWIFT_RESTART_PORT") else {
        return;
    };
    let script_run = |args: Vec<String>| {
        let script = script.clone();
        async move {
            let out = tokio::process::Command::new(&script)
                .args(&args)
                .stdin(std::process::Stdio::null())
                .output()
                .await
                .unwrap_or_else(|e| panic!("{script}: {e}"));
            assert!(
                out.status.success(),
                "{script} {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    };
    let server = server_with(swift_store(&config).await).await;
    let mut c = client(&server).await;
    let before = c.put_all_sizes().await;

    script_run(vec!["stop".into(), dir.clone()]).await;
    assert_eq!(c.put(Uuid::new_v4(), b"while down").await, "timeout");
    assert_eq!(c.get(before[0].0).await, Err("timeout".to_string()));
    c.ping().await;

    script_run(vec![dir.clone(), port.clone()]).await;
    c.check_all(&before, "after the Swift restart").await;
    let after = c.put_all_sizes().await;
    c.check_all(&after, "written after the Swift restart").await;
}

// ------------------------------------------------------------------ RAID

/// Three S3 servers; RAID1 and RAID5 over them (one bucket each per
/// server). One server stopped: every block still reads back identical,
/// writes fail. Two stopped: RAID5 reads fail cleanly, RAID1 still reads.
#[actix_web::test]
async fn raid1_and_raid5_over_three_s3_servers_with_nodes_stopped() {
    let Some(env) = s3_env() else { return };
    let Some(moto_bin) = env_or_skip("PARSEC_TEST_MOTO_SERVER") else {
        return;
    };
    let (a, b, c) = tokio::join!(
        Moto::start(&moto_bin, &env.region, &["raid1", "raid5"]),
        Moto::start(&moto_bin, &env.region, &["raid1", "raid5"]),
        Moto::start(&moto_bin, &env.region, &["raid1", "raid5"]),
    );
    let mut motos = [a, b, c];
    let mut raid1_nodes = Vec::new();
    let mut raid5_nodes = Vec::new();
    for moto in &motos {
        raid1_nodes.push(s3_store(&moto.endpoint, &env.region, "raid1").await);
        raid5_nodes.push(s3_store(&moto.endpoint, &env.region, "raid5").await);
    }
    let raid1 = server_with(Arc::new(Raid1BlockStore::new(raid1_nodes, false).unwrap())).await;
    let raid5 = server_with(Arc::new(Raid5BlockStore::new(raid5_nodes, false).unwrap())).await;
    let mut c1 = client(&raid1).await;
    let mut c5 = client(&raid5).await;
    let blocks1 = c1.put_all_sizes().await;
    let blocks5 = c5.put_all_sizes().await;
    c1.check_all(&blocks1, "RAID1, all nodes up").await;
    c5.check_all(&blocks5, "RAID5, all nodes up").await;

    // A data node of RAID5 (its chunks are rebuilt from the parity).
    motos[1].stop().await;
    c1.check_all(&blocks1, "RAID1, node 1 stopped").await;
    c5.check_all(&blocks5, "RAID5, node 1 stopped").await;
    assert_eq!(
        c1.put(Uuid::new_v4(), b"x").await,
        "timeout",
        "RAID1 write needs every node"
    );
    assert_eq!(
        c5.put(Uuid::new_v4(), b"x").await,
        "timeout",
        "RAID5 write needs every node"
    );

    // And the parity node: beyond what RAID5 tolerates.
    motos[2].stop().await;
    for (id, _) in &blocks5 {
        assert_eq!(c5.get(*id).await, Err("timeout".to_string()));
    }
    c5.ping().await;
    c1.check_all(&blocks1, "RAID1, nodes 1 and 2 stopped").await;
    motos[0].stop().await;
    assert_eq!(c1.get(blocks1[0].0).await, Err("timeout".to_string()));
    c1.ping().await;
}

/// RAID5 over three different kinds of store, RAID0 over three buckets.
#[actix_web::test]
async fn raid_over_mixed_stores() {
    let Some(env) = s3_env() else { return };
    let Some(buckets) = env_or_skip("PARSEC_TEST_S3_BUCKETS") else {
        return;
    };
    let Some(swift) = swift_config("PARSEC_TEST_SWIFT_CONFIG") else {
        return;
    };
    let nodes: Vec<Arc<dyn BlockStore>> = vec![
        Arc::new(MemoryBlockStore::default()),
        s3_store(&env.endpoint, &env.region, &env.bucket).await,
        swift_store(&swift).await,
    ];
    let server = server_with(Arc::new(Raid5BlockStore::new(nodes, false).unwrap())).await;
    let mut c = client(&server).await;
    let blocks = c.put_all_sizes().await;
    c.check_all(&blocks, "RAID5 of memory, S3, Swift").await;

    let mut nodes = Vec::new();
    for bucket in buckets.split_whitespace() {
        nodes.push(s3_store(&env.endpoint, &env.region, bucket).await);
    }
    let server = server_with(Arc::new(Raid0BlockStore::new(nodes).unwrap())).await;
    let mut c = client(&server).await;
    let blocks = c.put_all_sizes().await;
    c.check_all(&blocks, "RAID0 of three buckets").await;
    // Each block is whole on bucket `id mod 3`.
    let buckets: Vec<&str> = buckets.split_whitespace().collect();
    for (id, data) in &blocks {
        let bucket = buckets[(id.as_u128() % 3) as usize];
        let key = format!("{}/{}", c.org.as_str(), id.hyphenated());
        assert_eq!(moto_get(&env.endpoint, bucket, &key).await, (200, data.clone()));
    }
}

// ------------------------------------------------------------------ the real binary

/// Runs `parsec-server run --dev` with one `-b` per value of `blockstores`
/// until it prints its startup line (then stops it) or exits; returns
/// `Ok(startup line)` or `Err(stderr)` of a failed start.
async fn run_binary(blockstores: &[&str]) -> Result<String, String> {
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_parsec-server"))
        .args(["run", "--dev", "-H", "127.0.0.1", "-P", &free_port().to_string()])
        .args(blockstores.iter().flat_map(|b| ["-b", b]))
        .args(["--log-level", "ERROR"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn parsec-server");
    let mut stdout = child.stdout.take().expect("stdout");
    let mut stderr = child.stderr.take().expect("stderr");
    let mut out = Vec::new();
    let started = tokio::time::timeout(Duration::from_secs(60), async {
        let mut buf = [0u8; 4096];
        loop {
            let n = stdout.read(&mut buf).await.expect("read stdout");
            if n == 0 {
                break None;
            }
            out.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&out);
            if let Some(line) = text.lines().find(|l| l.starts_with("Starting Parsec Backend")) {
                break Some(line.to_string());
            }
        }
    })
    .await
    .expect("the server neither started nor exited within 60 s");
    if let Some(line) = started {
        child.kill().await.expect("kill");
        return Ok(line);
    }
    let status = child.wait().await.expect("wait");
    let mut err = String::new();
    stderr.read_to_string(&mut err).await.expect("read stderr");
    assert!(!status.success(), "exited with success: {err}");
    Err(err)
}

/// The error line of a failed start: exactly one line.
fn one_line_error(stderr: &str) -> &str {
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(lines[0].starts_with("Error: "), "{stderr}");
    lines[0]
}

#[actix_web::test]
async fn binary_starts_on_s3_and_refuses_a_missing_bucket() {
    let Some(env) = s3_env() else { return };
    // The reference grammar, colons of the endpoint escaped.
    let escaped = env.endpoint.replace(':', "\\:");
    let value = format!("s3:{escaped}:{}:{}:key:secret", env.region, env.bucket);
    let line = run_binary(&[&value]).await.unwrap_or_else(|e| panic!("{e}"));
    assert!(line.contains("blockstore=S3"), "{line}");

    let value = format!("s3:{escaped}:{}:no-such-bucket:key:secret", env.region);
    let err = run_binary(&[&value]).await.expect_err("missing bucket");
    let line = one_line_error(&err);
    assert!(
        line.contains("bucket `no-such-bucket`") && line.contains("no such bucket"),
        "{line}"
    );

    let dead = format!("s3:http\\://127.0.0.1\\:{}:{}:b:key:secret", free_port(), env.region);
    let err = run_binary(&[&dead]).await.expect_err("unreachable endpoint");
    assert!(one_line_error(&err).contains("S3 blockstore"), "{err}");

    let Some(buckets) = env_or_skip("PARSEC_TEST_S3_BUCKETS") else {
        return;
    };
    let raid: Vec<String> = buckets
        .split_whitespace()
        .enumerate()
        .map(|(i, bucket)| format!("RAID5:{i}:s3:{escaped}:{}:{bucket}:key:secret", env.region))
        .collect();
    let raid: Vec<&str> = raid.iter().map(String::as_str).collect();
    let line = run_binary(&raid).await.unwrap_or_else(|e| panic!("{e}"));
    assert!(line.contains("blockstore=RAID5"), "{line}");
}

#[actix_web::test]
async fn binary_starts_on_swift_and_refuses_a_wrong_password() {
    let Some(value) = env_or_skip("PARSEC_TEST_SWIFT_CONFIG") else {
        return;
    };
    let line = run_binary(&[&value]).await.unwrap_or_else(|e| panic!("{e}"));
    assert!(line.contains("blockstore=SWIFT"), "{line}");

    let (rest, _password) = value.rsplit_once(':').expect("swift value");
    let err = run_binary(&[&format!("{rest}:wrong-password")])
        .await
        .expect_err("wrong password");
    let line = one_line_error(&err);
    assert!(
        line.contains("Swift blockstore") && line.contains("authentication refused"),
        "{line}"
    );

    let Some(config) = swift_config("PARSEC_TEST_SWIFT_CONFIG") else {
        return;
    };
    let parts: Vec<&str> = value.rsplitn(5, ':').collect(); // password, user, container, tenant, rest
    let missing = format!("{}:{}:no-such-container:{}:{}", parts[4], parts[3], parts[1], parts[0]);
    let err = run_binary(&[&missing]).await.expect_err("missing container");
    let line = one_line_error(&err);
    assert!(line.contains("no such container"), "{line}");
    assert_eq!(config.container, parts[2]);
}

// ------------------------------------------------------------------ concurrency

/// A store that takes `delay` per call and records how many calls overlap.
struct SlowStore {
    inner: MemoryBlockStore,
    delay: Duration,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
}

impl SlowStore {
    async fn slowly<T>(&self, call: impl std::future::Future<Output = T>) -> T {
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_in_flight.fetch_max(now, Ordering::SeqCst);
        tokio::time::sleep(self.delay).await;
        let out = call.await;
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        out
    }
}

#[async_trait]
impl BlockStore for SlowStore {
    async fn read(&self, org: &OrganizationId, block_id: Uuid) -> Result<Bytes, BlockStoreError> {
        self.slowly(self.inner.read(org, block_id)).await
    }
    async fn create(&self, org: &OrganizationId, block_id: Uuid, block: Bytes) -> Result<(), BlockStoreError> {
        self.slowly(self.inner.create(org, block_id, block)).await
    }
}

/// Unrelated blocks from several connections are stored and read at the
/// same time: the block actor does not queue them behind each other.
#[actix_web::test]
async fn unrelated_blocks_flow_concurrently() {
    const CLIENTS: usize = 6;
    let store = Arc::new(SlowStore {
        inner: MemoryBlockStore::default(),
        delay: Duration::from_millis(700),
        in_flight: AtomicUsize::new(0),
        max_in_flight: AtomicUsize::new(0),
    });
    let server = server_with(store.clone()).await;
    let mut clients = Vec::new();
    for _ in 0..CLIENTS {
        clients.push(client(&server).await);
    }
    let started = Instant::now();
    let ids: Vec<Uuid> = (0..CLIENTS).map(|_| Uuid::new_v4()).collect();
    let puts = clients.iter_mut().zip(&ids).map(|(c, id)| c.put(*id, b"data"));
    for st in futures_util::future::join_all(puts).await {
        assert_eq!(st, "ok");
    }
    let gets = clients.iter_mut().zip(&ids).map(|(c, id)| c.get(*id));
    for read in futures_util::future::join_all(gets).await {
        assert_eq!(read.as_deref(), Ok(&b"data"[..]));
    }
    let elapsed = started.elapsed();
    assert_eq!(store.max_in_flight.load(Ordering::SeqCst), CLIENTS);
    // Serialized, 2 × 6 calls of 0.7 s would take 8.4 s.
    assert!(elapsed < Duration::from_secs(4), "{elapsed:?}");
}
