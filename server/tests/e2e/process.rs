//! The real `parsec-server` binary, as an operator runs it: JSON log lines
//! that parse and never show a secret, errors reported to a Sentry endpoint,
//! and a SIGTERM under load that ends within the bound with every
//! acknowledged write stored.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use parsec_load::client as raw;
use parsec_protocol::types::*;
use parsec_protocol::value::{self, Value};

use crate::common::*;
use crate::receiver::{Receiver, closed_port};

/// `SHUTDOWN_TIMEOUT_SECS` of `main.rs`, plus what exiting may take on a
/// loaded CI machine.
const STOP_BOUND: Duration = Duration::from_secs(10 + 5);

/// The binary under test: this package's, or `PARSEC_SERVER_BIN` (as in
/// `scripts/test.sh`).
fn bin() -> String {
    std::env::var("PARSEC_SERVER_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_parsec-server").to_string())
}

/// A `parsec-server run` child process.
struct ServerProcess {
    child: tokio::process::Child,
    addr: SocketAddr,
}

impl ServerProcess {
    /// Starts `parsec-server run -H 127.0.0.1 -P <free port> <args>` and
    /// waits until `/health` answers.
    async fn spawn(args: &[&str]) -> ServerProcess {
        Self::spawn_on(closed_port(), args).await
    }

    async fn spawn_on(port: u16, args: &[&str]) -> ServerProcess {
        let mut child = tokio::process::Command::new(bin())
            .args(["run", "-H", "127.0.0.1", "-P", &port.to_string()])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("start parsec-server");
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                panic!("parsec-server exited before answering: {status}");
            }
            if let Ok((200, _)) = raw::http_request(addr, "GET", "/health", &[], b"").await {
                return ServerProcess { child, addr };
            }
            assert!(Instant::now() < deadline, "parsec-server did not answer within 60 s");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn server(&self) -> TestServer {
        TestServer { addr: self.addr }
    }

    /// Sends SIGTERM.
    fn sigterm(&self) {
        let pid = self.child.id().expect("pid").to_string();
        let ok = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill");
        assert!(ok.success());
    }

    /// Waits for the exit, at most `limit`.
    async fn wait(&mut self, limit: Duration) -> Option<ExitStatus> {
        tokio::time::timeout(limit, self.child.wait())
            .await
            .ok()
            .map(|s| s.expect("wait"))
    }

    /// SIGTERM, then the exit status, within [`STOP_BOUND`].
    async fn stop(mut self) -> ExitStatus {
        self.sigterm();
        self.wait(STOP_BOUND).await.expect("the server stops within the bound")
    }
}

fn temp_path(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("parsec-e2e-{}-{name}", hex::encode(rand::random::<[u8; 6]>())))
}

/// Creates and bootstraps an organization through `token`'s admin API.
async fn new_org_with(server: &TestServer, admin_token: &str) -> Org {
    let id = unique_org("Proc");
    let (http, body) = raw::admin(
        server.addr,
        admin_token,
        "POST",
        "/administration/organizations",
        &serde_json::json!({"organization_id": id.as_str()}),
    )
    .await
    .expect("admin");
    assert_eq!(http, 200, "{body}");
    let token = body["bootstrap_token"].as_str().expect("token");
    let root = new_key();
    let alice = Device {
        device_id: DeviceId::parse("alice@laptop").expect("id"),
        signing_key: new_key(),
    };
    let certs = bootstrap_certs(&root, &alice.device_id, &alice.signing_key, DateTime::now());
    let (_, rep) = anonymous(server, id.as_str(), &value::pack(&bootstrap_req(token, &root, &certs))).await;
    assert_eq!(status(&rep), "ok", "{rep:?}");
    Org { id, root, alice }
}

#[actix_web::test]
async fn json_logs_parse_and_never_show_secrets() {
    const ADMIN_TOKEN: &str = "AdminTok-5f1c0e2b9d-do-not-log";
    const SENTRY_KEY: &str = "sentrykey7a3d9e";
    const SMTP_PASSWORD: &str = "SmtpPw-0b8e44f1";
    let log_file = temp_path("server.log");
    // The reference truncates the log file: old content must go.
    std::fs::write(&log_file, "OLD CONTENT, NOT JSON\n").expect("write");
    let sentry_dsn = format!("http://{SENTRY_KEY}@127.0.0.1:{}/1", closed_port());
    let log_arg = log_file.to_string_lossy().into_owned();
    let server = ServerProcess::spawn(&[
        "--dev",
        "--log-format",
        "JSON",
        "--log-file",
        &log_arg,
        "--log-level",
        "DEBUG",
        "--administration-token",
        ADMIN_TOKEN,
        "--sentry-dsn",
        &sentry_dsn,
        "--email-host-user",
        "mailer",
        "--email-host-password",
        SMTP_PASSWORD,
    ])
    .await;
    let ts = server.server();
    // Drive it a little: admin API (also with a wrong token), bootstrap,
    // authenticated commands, a redirect carrying an invitation token.
    let org = new_org_with(&ts, ADMIN_TOKEN).await;
    let (http, _) = raw::admin(
        ts.addr,
        "WrongToken-e1d2c3",
        "GET",
        "/administration/organizations/X",
        &serde_json::Value::Null,
    )
    .await
    .expect("admin");
    assert_eq!(http, 403);
    let mut ws = login(&ts, &org).await;
    let rep = ws.req("ping", vec![("ping", Value::from("hello"))]).await;
    assert_eq!(status(&rep), "ok");
    let (http, _) = http_request(
        &ts,
        "GET",
        "/redirect/Org?action=claim_user&token=InviteTok-99aa",
        &[],
        b"",
    )
    .await;
    assert_eq!(http, 302);
    drop(ws);
    let exit = server.stop().await;
    assert!(exit.success(), "{exit}");

    let text = std::fs::read_to_string(&log_file).expect("log file");
    let _ = std::fs::remove_file(&log_file);
    assert!(!text.contains("OLD CONTENT"), "the log file is truncated at start");
    let mut events = Vec::new();
    for line in text.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        let obj = v.as_object().unwrap_or_else(|| panic!("not an object: {line}"));
        for key in ["timestamp", "level", "logger", "event"] {
            assert!(obj.contains_key(key), "{key} missing: {line}");
        }
        events.push(obj["event"].as_str().expect("event").to_string());
    }
    let has = |needle: &str| events.iter().any(|e| e.contains(needle));
    // Every request: command, organization, status, duration.
    assert!(
        events
            .iter()
            .any(|e| e.contains(&format!("org={}", org.id)) && e.contains("cmd=ping status=ok") && e.ends_with("ms")),
        "no ping line in {events:#?}"
    );
    assert!(has("cmd=organization_bootstrap status=ok"), "{events:#?}");
    assert!(has("http POST /administration/organizations status=200"), "{events:#?}");
    assert!(has("status=403"), "{events:#?}");
    for secret in [
        ADMIN_TOKEN,
        SENTRY_KEY,
        SMTP_PASSWORD,
        "WrongToken-e1d2c3",
        "InviteTok-99aa",
    ] {
        assert!(!text.contains(secret), "{secret} appears in the log:\n{text}");
    }
}

#[actix_web::test]
async fn a_fatal_error_is_reported_to_sentry() {
    let mut sentry = Receiver::start(200).await;
    // The port is taken: `run` fails after the logger (and Sentry) started.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("addr").port().to_string();
    let dsn = format!("http://pubkey42@{}/5", sentry.addr);
    let out = tokio::process::Command::new(bin())
        .args(["run", "--dev", "-H", "127.0.0.1", "-P", &port, "--sentry-dsn", &dsn])
        .args(["--sentry-environment", "e2e-tests"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(60), out)
        .await
        .expect("the server exits")
        .expect("run parsec-server");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("cannot listen"), "{stderr}");
    assert!(!stderr.contains("pubkey42"), "{stderr}");

    // Sent before the process exited.
    let got = sentry.next(Duration::from_millis(500)).await.expect("a Sentry event");
    assert_eq!(got.method, "POST");
    assert_eq!(got.target, "/api/5/store/");
    assert_eq!(
        got.header("x-sentry-auth").map(str::to_string),
        Some(format!(
            "Sentry sentry_version=7, sentry_key=pubkey42, sentry_client=parsec-server/{}",
            env!("CARGO_PKG_VERSION")
        ))
    );
    let event: serde_json::Value = serde_json::from_slice(&got.body).expect("JSON event");
    assert_eq!(event["level"], "error");
    assert_eq!(event["environment"], "e2e-tests");
    assert!(
        event["message"].as_str().unwrap_or_default().contains("cannot listen"),
        "{event}"
    );
    assert_eq!(event["event_id"].as_str().map(str::len), Some(32), "{event}");
    assert!(event["timestamp"].as_str().is_some_and(|t| t.ends_with('Z')), "{event}");
    assert!(
        event["logger"].is_string() && event["server_name"].is_string(),
        "{event}"
    );
    drop(taken);
}

/// A vlob whose creation the server acknowledged, and its content.
type AckedWrite = (Uuid, Vec<u8>);

#[actix_web::test]
async fn sigterm_under_load_keeps_every_acknowledged_write() {
    const WRITERS: usize = 4;
    // On PostgreSQL (PostgreSQL pass of the tests) the data outlives the
    // process, and a restart must find every acknowledged write.
    let db_url = parsec_actors::backend::postgres::test_database_url().await;
    let mut args = vec!["--dev", "--log-level", "WARNING"];
    if let Some(url) = &db_url {
        args.extend(["--db", url.as_str(), "--blockstore", "POSTGRESQL"]);
    }
    let server = ServerProcess::spawn(&args).await;
    let port = server.addr.port();
    let ts = server.server();
    let org = new_org(&ts).await;
    let mut owner = login(&ts, &org).await;
    let realm_id = create_realm(&mut owner, &org.alice).await;
    drop(owner);

    let acked: Arc<Mutex<Vec<AckedWrite>>> = Arc::default();
    let closes: Arc<Mutex<Vec<Option<u16>>>> = Arc::default();
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let (acked, closes, org_ts) = (acked.clone(), closes.clone(), TestServer { addr: ts.addr });
            let org = Org {
                id: org.id.clone(),
                root: org.root.clone(),
                alice: org.alice.clone(),
            };
            actix_web::rt::spawn(async move {
                let mut ws = login(&org_ts, &org).await;
                let ws: &mut raw::WsClient = &mut ws;
                for i in 0u32.. {
                    let vlob_id = Uuid::new_v4();
                    let blob = format!("writer {w} blob {i}").into_bytes();
                    let mut req = vec![("cmd", Value::from("vlob_create"))];
                    req.extend(vlob_create_fields(realm_id, vlob_id, &blob));
                    if ws.send_value(&value::map(req)).await.is_err() {
                        break;
                    }
                    match ws.recv_event().await {
                        Ok(WsEvent::Binary(raw)) => {
                            let rep = value::unpack_map(&raw).expect("reply");
                            assert_eq!(status(&rep), "ok", "{rep:?}");
                            acked.lock().expect("lock").push((vlob_id, blob));
                        }
                        Ok(WsEvent::Close(code)) => {
                            closes.lock().expect("lock").push(code);
                            break;
                        }
                        _ => {
                            closes.lock().expect("lock").push(None);
                            break;
                        }
                    }
                }
            })
        })
        .collect();

    // Let the writers get going, then stop the server under their load.
    let deadline = Instant::now() + Duration::from_secs(30);
    while acked.lock().expect("lock").len() < 20 * WRITERS {
        assert!(Instant::now() < deadline, "writes too slow");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let stopped = Instant::now();
    let exit = server.stop().await;
    let took = stopped.elapsed();
    eprintln!("SIGTERM with {WRITERS} writers: exit after {took:?}");
    assert!(exit.success(), "{exit}");
    assert!(took < STOP_BOUND, "{took:?}");
    for w in writers {
        tokio::time::timeout(Duration::from_secs(10), w)
            .await
            .expect("writer ends")
            .expect("writer");
    }
    // Every connection was closed with a close frame (1001, going away).
    let closes = closes.lock().expect("lock").clone();
    assert_eq!(closes, vec![Some(1001); WRITERS], "close codes");
    let acked = acked.lock().expect("lock").clone();
    assert!(acked.len() >= 20 * WRITERS);

    if db_url.is_some() {
        let restarted = ServerProcess::spawn_on(port, &args).await;
        let mut reader = login(&restarted.server(), &org).await;
        for (vlob_id, blob) in &acked {
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
            assert_eq!(
                field(&rep, "blob"),
                &Value::Binary(blob.clone()),
                "vlob {vlob_id} altered"
            );
        }
        drop(reader);
        assert!(restarted.stop().await.success());
    }
}
