//! Test harness: the real HTTP server on a free port, the raw websocket and
//! HTTP client of `parsec-load` (frames built by hand, so tests can also send
//! what a real client never would), and helpers to create and bootstrap
//! organizations. The wrappers here panic instead of returning errors: a
//! failed exchange is a failed test.

use std::net::SocketAddr;
use std::ops::{Deref, DerefMut};
use std::time::Duration;

use ed25519_dalek::SigningKey;
use parsec_actors::Settings;
use parsec_load::client::{self, ClientError};
use parsec_protocol::types::*;
use parsec_protocol::value::{self, Value};
use parsec_server::{http, serve};

pub use parsec_load::client::{WsEvent, field, frame, status};
pub use parsec_load::identity::{BootstrapCerts, Device, bootstrap_certs, bootstrap_req, new_key, sign};

pub const TOKEN: &str = "s3cr3t";

/// A running server.
pub struct TestServer {
    pub addr: SocketAddr,
}

/// Starts the server as `run --dev` would, on a free port (on PostgreSQL in
/// the PostgreSQL pass of the tests).
pub async fn start_server() -> TestServer {
    let settings = Settings {
        administration_token: TOKEN.into(),
        spontaneous_organization_bootstrap: false,
        organization_initial_active_users_limit: None,
        organization_initial_user_profile_outsider_allowed: true,
        email: Default::default(),
        backend_addr: Default::default(),
    };
    start_server_with(parsec_actors::backend::postgres::start_actors_for_tests(settings).await).await
}

/// Serves `actors` on a free port, with the server's own listener
/// ([`serve::start`]), as `parsec-server run` does.
pub async fn start_server_with(actors: parsec_actors::Actors) -> TestServer {
    let state = http::AppState {
        actors,
        backend_netloc: "127.0.0.1:6777".into(),
        backend_query: vec![("no_ssl".into(), "true".into())],
        forward_proto_enforce_https: Some(("X-Forwarded-Proto".into(), "https".into())),
    };
    let listening = serve::start(
        state,
        serve::Options {
            host: "127.0.0.1".into(),
            port: 0,
            tls: None,
            workers: Some(1),
            shutdown_timeout_secs: 1,
        },
    )
    .expect("bind");
    let addr = listening.addrs[0];
    actix_web::rt::spawn(listening.server);
    TestServer { addr }
}

// ------------------------------------------------------------------ HTTP

/// A plain HTTP/1.1 request; returns status and body.
pub async fn http_request(
    server: &TestServer,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, Vec<u8>) {
    client::http_request(server.addr, method, path, headers, body)
        .await
        .expect("HTTP request")
}

pub async fn admin(server: &TestServer, method: &str, path: &str, body: serde_json::Value) -> (u16, serde_json::Value) {
    client::admin(server.addr, TOKEN, method, path, &body)
        .await
        .expect("admin request")
}

// ------------------------------------------------------------- websocket

/// A raw websocket client connection (`parsec-load`'s, with panicking
/// methods; its `stream` is reachable through `Deref`).
#[derive(Debug)]
pub struct WsClient(client::WsClient);

impl Deref for WsClient {
    type Target = client::WsClient;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl DerefMut for WsClient {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

impl WsClient {
    /// Connects to `/ws` and completes the HTTP upgrade.
    pub async fn connect(server: &TestServer) -> WsClient {
        let mut ws = client::WsClient::connect(server.addr).await.expect("websocket upgrade");
        ws.timeout = Duration::from_secs(10);
        WsClient(ws)
    }

    /// Writes one frame, masked unless asked otherwise.
    pub async fn send_frame(&mut self, opcode: u8, payload: &[u8], fin: bool, masked: bool, rsv: u8) {
        self.0
            .send_frame(opcode, payload, fin, masked, rsv)
            .await
            .expect("write");
    }

    pub async fn send(&mut self, payload: &[u8]) {
        self.send_frame(0x2, payload, true, true, 0).await;
    }

    pub async fn send_value(&mut self, v: &Value) {
        self.send(&value::pack(v)).await;
    }

    /// Next complete message or control frame from the server; a reset
    /// connection reads as `Eof`.
    pub async fn recv_event(&mut self) -> WsEvent {
        match self.0.recv_event().await {
            Ok(event) => event,
            Err(ClientError::Io(_)) => WsEvent::Eof,
            Err(ClientError::Timeout) => panic!("recv timeout"),
            Err(e) => panic!("{e}"),
        }
    }

    /// Websocket pings the server sent so far (the client answers them).
    pub fn pings_received(&self) -> u64 {
        self.0.pings
    }

    /// Next binary message, decoded.
    pub async fn recv(&mut self) -> Vec<(Value, Value)> {
        match self.recv_event().await {
            WsEvent::Binary(b) => value::unpack_map(&b).expect("msgpack map"),
            other => panic!("expected a binary message, got {other:?}"),
        }
    }

    /// Sends a command and decodes its reply.
    pub async fn req(&mut self, cmd: &str, fields: Vec<(&str, Value)>) -> Vec<(Value, Value)> {
        let mut all = vec![("cmd", Value::from(cmd))];
        all.extend(fields);
        self.send_value(&value::map(all)).await;
        self.recv().await
    }
}

// ------------------------------------------------------------ identities

/// A bootstrapped organization with its first device.
pub struct Org {
    pub id: OrganizationId,
    pub root: SigningKey,
    pub alice: Device,
}

pub fn unique_org(prefix: &str) -> OrganizationId {
    parsec_load::identity::unique_org(prefix).expect("organization id")
}

/// POSTs to the anonymous route; returns the HTTP status and decoded body.
pub async fn anonymous(server: &TestServer, org: &str, body: &[u8]) -> (u16, Vec<(Value, Value)>) {
    client::anonymous(server.addr, org, body)
        .await
        .expect("anonymous request")
}

/// Creates an organization through the admin API; returns its bootstrap token.
pub async fn create_org(server: &TestServer, id: &OrganizationId) -> String {
    let (status, body) = admin(
        server,
        "POST",
        "/administration/organizations",
        serde_json::json!({"organization_id": id.as_str()}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    body["bootstrap_token"].as_str().expect("bootstrap token").to_string()
}

/// Creates and bootstraps an organization.
pub async fn new_org(server: &TestServer) -> Org {
    let id = unique_org("Test");
    let token = create_org(server, &id).await;
    let root = new_key();
    let alice = Device {
        device_id: DeviceId::parse("alice@laptop").expect("device id"),
        signing_key: new_key(),
    };
    let certs = bootstrap_certs(&root, &alice.device_id, &alice.signing_key, DateTime::now());
    let (status, rep) = anonymous(server, id.as_str(), &value::pack(&bootstrap_req(&token, &root, &certs))).await;
    assert_eq!((status, self::status(&rep)), (200, "ok"), "{rep:?}");
    Org { id, root, alice }
}

/// Opens an authenticated connection; returns the client or the handshake result map.
pub async fn try_login(
    server: &TestServer,
    org: &OrganizationId,
    device_id: &DeviceId,
    key: &SigningKey,
    rvk: &Key32,
) -> Result<WsClient, Vec<(Value, Value)>> {
    let mut ws = WsClient::connect(server).await;
    let result = ws.0.handshake_raw(org, device_id, key, rvk).await.expect("handshake");
    if field(&result, "result").as_str() == Some("ok") {
        Ok(ws)
    } else {
        Err(result)
    }
}

pub async fn login(server: &TestServer, org: &Org) -> WsClient {
    let rvk = org.root.verifying_key().to_bytes();
    match try_login(server, &org.id, &org.alice.device_id, &org.alice.signing_key, &rvk).await {
        Ok(ws) => ws,
        Err(r) => panic!("login refused: {r:?}"),
    }
}

/// `realm_create` of a new realm owned by `device`'s user; returns its id.
pub async fn create_realm(ws: &mut WsClient, device: &Device) -> parsec_protocol::types::Uuid {
    use parsec_protocol::certif::{self, RealmRoleCertificate};
    use parsec_protocol::types::{DateTime, RealmRole, Uuid};
    let realm_id = Uuid::new_v4();
    let role = RealmRoleCertificate {
        author: Some(device.device_id.clone()),
        timestamp: DateTime::now(),
        realm_id,
        user_id: device.device_id.user_id(),
        role: Some(RealmRole::Owner),
    };
    let signed = certif::build::sign_payload(certif::build::realm_role(&role), sign(&device.signing_key));
    let rep = ws
        .req("realm_create", vec![("role_certificate", Value::Binary(signed))])
        .await;
    assert_eq!(status(&rep), "ok", "{rep:?}");
    realm_id
}

/// The fields of a `vlob_create` of `blob` as version 1 of `vlob_id`.
pub fn vlob_create_fields(
    realm_id: parsec_protocol::types::Uuid,
    vlob_id: parsec_protocol::types::Uuid,
    blob: &[u8],
) -> Vec<(&'static str, Value)> {
    use parsec_protocol::types::{DateTime, uuid_value};
    vec![
        ("realm_id", uuid_value(realm_id)),
        ("encryption_revision", Value::from(1)),
        ("vlob_id", uuid_value(vlob_id)),
        ("timestamp", DateTime::now().to_value()),
        ("blob", Value::Binary(blob.to_vec())),
    ]
}

/// `device_create` of `name` for the user of `author`, through `ws`.
pub async fn create_device(ws: &mut WsClient, author: &Device, name: &str) -> Device {
    let device_id = DeviceId::parse(&format!("{}@{name}", author.device_id.user_id())).expect("device id");
    let key = new_key();
    let cert = parsec_protocol::certif::DeviceCertificate {
        author: Some(author.device_id.clone()),
        timestamp: DateTime::now(),
        device_id: device_id.clone(),
        device_label: None,
        verify_key: key.verifying_key().to_bytes(),
    };
    let signed = parsec_protocol::certif::build::sign_payload(
        parsec_protocol::certif::build::device(&cert),
        sign(&author.signing_key),
    );
    let rep = ws
        .req(
            "device_create",
            vec![
                ("device_certificate", Value::Binary(signed.clone())),
                ("redacted_device_certificate", Value::Binary(signed.clone())),
            ],
        )
        .await;
    assert_eq!(status(&rep), "ok", "{rep:?}");
    Device {
        device_id,
        signing_key: key,
    }
}
