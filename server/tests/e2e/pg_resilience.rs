//! PostgreSQL under pressure: many clients on the default pool, concurrent
//! writers in one realm, the server killed mid-load, the database restarted
//! mid-load. They run in the PostgreSQL pass of `scripts/test.sh`
//! (`PARSEC_TEST_DB=postgresql`) and return at once in the in-memory pass.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use parsec_actors::backend::postgres::{start_actors_on_database, test_database_url};
use parsec_protocol::types::*;
use parsec_protocol::value::Value;

use crate::common::*;

fn settings() -> parsec_actors::Settings {
    parsec_actors::Settings {
        administration_token: TOKEN.into(),
        spontaneous_organization_bootstrap: false,
        organization_initial_active_users_limit: None,
        organization_initial_user_profile_outsider_allowed: true,
        email: Default::default(),
        backend_addr: Default::default(),
    }
}

/// 50 clients upload blocks at once through a pool of 7 connections (the
/// default): every upload completes, none waits on a connection held by
/// another waiting command.
#[actix_web::test]
async fn fifty_clients_upload_blocks_on_the_default_pool() {
    let Some(url) = test_database_url().await else { return };
    let server = start_server_with(start_actors_on_database(&url, settings()).await).await;
    let org = new_org(&server).await;
    let mut owner = login(&server, &org).await;
    let realm_id = create_realm(&mut owner, &org.alice).await;
    let block = vec![7u8; 64 * 1024];
    let clients = (0..50).map(|_| {
        let (server, org, block) = (&server, &org, &block);
        async move {
            let mut ws = login(server, org).await;
            for _ in 0..4 {
                let rep = ws
                    .req(
                        "block_create",
                        vec![
                            ("block_id", uuid_value(Uuid::new_v4())),
                            ("realm_id", uuid_value(realm_id)),
                            ("block", Value::Binary(block.clone())),
                        ],
                    )
                    .await;
                assert_eq!(status(&rep), "ok", "{rep:?}");
            }
        }
    });
    tokio::time::timeout(Duration::from_secs(60), futures_util::future::join_all(clients))
        .await
        .expect("no upload hangs");
}

/// 50 clients write vlobs into one realm: no collision, no retry, the
/// realm's checkpoints are exactly 1..=N.
#[actix_web::test]
async fn fifty_writers_in_one_realm_get_consecutive_checkpoints() {
    let Some(url) = test_database_url().await else { return };
    let server = start_server_with(start_actors_on_database(&url, settings()).await).await;
    let org = new_org(&server).await;
    let mut owner = login(&server, &org).await;
    let realm_id = create_realm(&mut owner, &org.alice).await;
    const PER_CLIENT: usize = 6;
    let clients = (0..50).map(|_| {
        let (server, org) = (&server, &org);
        async move {
            let mut ws = login(server, org).await;
            for i in 0..PER_CLIENT {
                let rep = ws
                    .req("vlob_create", vlob_create_fields(realm_id, Uuid::new_v4(), &[i as u8]))
                    .await;
                assert_eq!(status(&rep), "ok", "{rep:?}");
            }
        }
    });
    tokio::time::timeout(Duration::from_secs(60), futures_util::future::join_all(clients))
        .await
        .expect("writers finish");
    let rep = owner
        .req(
            "vlob_poll_changes",
            vec![("realm_id", uuid_value(realm_id)), ("last_checkpoint", Value::from(0))],
        )
        .await;
    assert_eq!(status(&rep), "ok", "{rep:?}");
    assert_eq!(field(&rep, "current_checkpoint").as_u64(), Some(50 * PER_CLIENT as u64));
    assert_eq!(field(&rep, "changes").as_map().map(Vec::len), Some(50 * PER_CLIENT));
}

/// The real binary, on the database at `db`, on a free port.
struct ServerProcess {
    child: Child,
    server: TestServer,
}

impl ServerProcess {
    async fn start(db: &str) -> ServerProcess {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("free port");
            l.local_addr().expect("addr").port()
        };
        let child = Command::new(env!("CARGO_BIN_EXE_parsec-server"))
            .args(["run", "--dev", "-H", "127.0.0.1", "-P", &port.to_string(), "--db", db])
            .args([
                "--blockstore",
                "POSTGRESQL",
                "--backend-addr",
                &format!("parsec://127.0.0.1:{port}?no_ssl=true"),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn parsec-server");
        let server = TestServer {
            addr: format!("127.0.0.1:{port}").parse().expect("addr"),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while tokio::net::TcpStream::connect(server.addr).await.is_err() {
            assert!(Instant::now() < deadline, "the server did not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        ServerProcess { child, server }
    }

    fn kill_9(mut self) {
        let _ = self.child.kill(); // SIGKILL
        let _ = self.child.wait();
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn digest(data: &[u8]) -> u64 {
    // FNV-1a: enough to tell blobs apart in a test.
    data.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ *b as u64).wrapping_mul(0x100_0000_01b3)
    })
}

/// Kill -9 the server in the middle of a write load, restart it: every
/// write it acknowledged is there, byte for byte.
#[actix_web::test]
async fn kill_9_under_load_keeps_every_acknowledged_write() {
    let Some(url) = test_database_url().await else { return };
    let first = ServerProcess::start(&url).await;
    let org = new_org(&first.server).await;
    let mut owner = login(&first.server, &org).await;
    let realm_id = create_realm(&mut owner, &org.alice).await;

    let target = TestServer {
        addr: first.server.addr,
    };
    let acknowledged = std::sync::Arc::new(std::sync::Mutex::new(Vec::<(Uuid, u64)>::new()));
    let writers: Vec<_> = (0..8)
        .map(|w| {
            let (server, org, acked) = (&target, &org, acknowledged.clone());
            async move {
                let mut ws = login(server, org).await;
                for i in 0u32.. {
                    let vlob_id = Uuid::new_v4();
                    let blob: Vec<u8> = format!("writer {w} blob {i} {vlob_id}").into_bytes();
                    let fields = vlob_create_fields(realm_id, vlob_id, &blob);
                    let mut req = vec![("cmd", Value::from("vlob_create"))];
                    req.extend(fields);
                    ws.send_value(&parsec_protocol::value::map(req)).await;
                    match ws.recv_event().await {
                        WsEvent::Binary(raw) => {
                            let rep = parsec_protocol::value::unpack_map(&raw).expect("reply");
                            assert_eq!(status(&rep), "ok");
                            acked.lock().unwrap().push((vlob_id, digest(&blob)));
                        }
                        _ => return, // the server is gone
                    }
                }
            }
        })
        .collect();
    let load = futures_util::future::join_all(writers);
    let kill = async {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        first.kill_9();
    };
    tokio::time::timeout(Duration::from_secs(60), futures_util::future::join(load, kill))
        .await
        .expect("writers stop when the server dies");

    let acked = acknowledged.lock().unwrap().clone();
    assert!(acked.len() > 10, "the load ran: {} writes acknowledged", acked.len());
    let second = ServerProcess::start(&url).await;
    let mut reader = login(&second.server, &org).await;
    for (vlob_id, want) in &acked {
        let rep = reader
            .req(
                "vlob_read",
                vec![
                    ("encryption_revision", Value::from(1)),
                    ("vlob_id", uuid_value(*vlob_id)),
                    ("version", Value::Nil),
                    ("timestamp", Value::Nil),
                ],
            )
            .await;
        assert_eq!(status(&rep), "ok", "acknowledged vlob {vlob_id} lost: {rep:?}");
        match field(&rep, "blob") {
            Value::Binary(b) => assert_eq!(digest(b), *want, "vlob {vlob_id} altered"),
            other => panic!("no blob: {other:?}"),
        }
    }
}

/// Restart PostgreSQL under load: the server answers with errors while it is
/// down, and serves again by itself once it is back, without a restart.
#[actix_web::test]
async fn postgres_restart_under_load_recovers_by_itself() {
    if test_database_url().await.is_none() {
        return;
    }
    // A cluster of our own: stopping the shared one would break other tests.
    let scripts = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts");
    let out = Command::new(format!("{scripts}/pg-start.sh"))
        .output()
        .expect("pg-start.sh");
    assert!(
        out.status.success(),
        "pg-start.sh: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let env = String::from_utf8_lossy(&out.stdout).to_string();
    let var = |name: &str| {
        env.lines()
            .find_map(|l| {
                l.strip_prefix(&format!("export {name}='"))
                    .map(|v| v.trim_end_matches('\'').to_string())
            })
            .unwrap_or_else(|| panic!("{name} not in pg-start.sh output"))
    };
    let (cluster, dir) = (var("PARSEC_TEST_PG_URL"), var("PARSEC_TEST_PG_DIR"));
    let _cleanup = Cleanup(dir.clone(), scripts);
    let db = format!("{cluster}/parsec");
    let created = Command::new("psql")
        .args(["-q", &format!("{cluster}/postgres"), "-c", "CREATE DATABASE parsec"])
        .status();
    assert!(created.is_ok_and(|s| s.success()));
    let migrated = Command::new(env!("CARGO_BIN_EXE_parsec-server"))
        .args(["migrate", "--db", &db])
        .output();
    assert!(migrated.is_ok_and(|o| o.status.success()));

    let server = ServerProcess::start(&db).await;
    let org = new_org(&server.server).await;
    let mut ws = login(&server.server, &org).await;
    assert_eq!(status(&ws.req("organization_config", vec![]).await), "ok");

    assert!(
        Command::new(format!("{dir}/stop.sh"))
            .status()
            .is_ok_and(|s| s.success())
    );
    // While it is down: the command fails (the connection is closed with an
    // internal error) and new logins are refused; the process stays up.
    ws.send_value(&parsec_protocol::value::map([(
        "cmd",
        Value::from("organization_config"),
    )]))
    .await;
    assert!(matches!(ws.recv_event().await, WsEvent::Close(_) | WsEvent::Eof));
    assert!(
        !serves(&server.server, &org).await,
        "nothing is served without the database"
    );

    assert!(
        Command::new(format!("{dir}/start.sh"))
            .status()
            .is_ok_and(|s| s.success())
    );
    let back = Instant::now();
    while !serves(&server.server, &org).await {
        assert!(
            back.elapsed() < Duration::from_secs(20),
            "the server did not recover by itself"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// A fresh connection logs in and gets an answer that needs the database.
async fn serves(server: &TestServer, org: &Org) -> bool {
    let Ok(mut ws) = parsec_load::client::WsClient::connect(server.addr).await else {
        return false;
    };
    let rvk = org.root.verifying_key().to_bytes();
    match ws
        .handshake_raw(&org.id, &org.alice.device_id, &org.alice.signing_key, &rvk)
        .await
    {
        Ok(r) if field(&r, "result").as_str() == Some("ok") => {}
        _ => return false,
    }
    matches!(ws.req("organization_config", vec![]).await, Ok(rep) if status(&rep) == "ok")
}

struct Cleanup(String, &'static str);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = Command::new(format!("{}/pg-stop.sh", self.1)).arg(&self.0).status();
    }
}
