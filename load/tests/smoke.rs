//! Every scenario, briefly, against our server started in-process (memory
//! backend as `run --dev`, or PostgreSQL in the PostgreSQL pass of the
//! tests): 2 clients × 20 requests each, zero errors.
//!
//! The server runs on its own thread with its own actix System, so the tool
//! runs on a plain tokio runtime exactly as the binary does.

use std::net::SocketAddr;
use std::sync::OnceLock;

use actix_web::{App, HttpServer, web};
use argh::FromArgs;
use parsec_actors::Settings;
use parsec_load::args::Args;
use parsec_server::http;

const TOKEN: &str = "s3cr3t";

/// One server for the whole test binary (each run uses a fresh organization).
fn server() -> SocketAddr {
    static ADDR: OnceLock<SocketAddr> = OnceLock::new();
    *ADDR.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            actix_web::rt::System::new().block_on(async move {
                let settings = Settings {
                    administration_token: TOKEN.into(),
                    spontaneous_organization_bootstrap: false,
                    organization_initial_active_users_limit: None,
                    organization_initial_user_profile_outsider_allowed: true,
                    email: Default::default(),
                    backend_addr: Default::default(),
                };
                // Memory backend, or PostgreSQL in the PostgreSQL pass of the tests.
                let actors = parsec_actors::backend::postgres::start_actors_for_tests(settings).await;
                let state = http::AppState {
                    actors,
                    backend_netloc: "127.0.0.1:6777".into(),
                    backend_query: vec![("no_ssl".into(), "true".into())],
                    forward_proto_enforce_https: None,
                };
                let server = HttpServer::new(move || {
                    App::new()
                        .app_data(web::Data::new(state.clone()))
                        .configure(http::configure)
                })
                .workers(2)
                .disable_signals()
                .bind(("127.0.0.1", 0))
                .expect("bind");
                tx.send(server.addrs()[0]).expect("send address");
                server.run().await.expect("server");
            })
        });
        rx.recv().expect("server address")
    })
}

/// Runs `parsec-load <args> --addr <server>` and returns the report as JSON.
async fn run(args: &[&str]) -> serde_json::Value {
    let addr = format!("parsec://{}?no_ssl=true", server());
    let mut all = args.to_vec();
    all.extend(["--addr", &addr, "--quiet", "--timeout-ms", "5000"]);
    let args = Args::from_args(&["parsec-load"], &all).expect("arguments");
    let cfg = args.resolve().expect("configuration");
    let report = parsec_load::run(cfg).await.expect("run");
    let json = report.to_json();
    eprintln!("{json}");
    assert_eq!(json["errors"], 0, "{}", report.to_text());
    json
}

/// A request scenario: 2 clients, 40 requests in all.
async fn requests(scenario: &str) {
    let json = run(&[scenario, "--clients", "2", "--count", "40", "--duration", "60"]).await;
    assert_eq!(json["ok"], 40, "{json}");
    assert_eq!(json["scenario"], scenario);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ping() {
    requests("ping").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vlob_create() {
    requests("vlob_create").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vlob_read() {
    requests("vlob_read").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vlob_update() {
    requests("vlob_update").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn block_create() {
    let json = run(&[
        "block_create",
        "--clients",
        "2",
        "--count",
        "40",
        "--block-size",
        "4096",
    ])
    .await;
    assert_eq!(json["ok"], 40);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn block_read() {
    requests("block_read").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mix() {
    requests("mix").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshake() {
    requests("handshake").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle() {
    let pid = std::process::id().to_string();
    let json = run(&["idle", "--clients", "4", "--duration", "1", "--server-pid", &pid]).await;
    assert_eq!(json["connections_held"], 4);
    assert_eq!(json["alive_after_hold"], 4);
    assert!(json["server_rss_per_connection_kb"].is_number(), "{json}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fanout() {
    let json = run(&["fanout", "--listeners", "2", "--count", "20"]).await;
    assert_eq!(json["updates"], 20);
    assert_eq!(json["deliveries"], 40);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fanout_at_a_fixed_rate() {
    let json = run(&["fanout", "--listeners", "2", "--count", "20", "--rate", "200"]).await;
    assert_eq!(json["deliveries"], 40);
}
