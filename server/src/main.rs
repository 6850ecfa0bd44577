//! `parsec-server`: the Parsec v2 metadata server.
//!
//! `parsec-server run [options]` serves; `parsec-server migrate` prepares a
//! PostgreSQL database. This file resolves the configuration, refuses what
//! this build cannot do yet, starts the actors and the HTTP server. Nothing
//! here decides anything about organizations: that is `parsec-actors`.

use std::process::ExitCode;

use actix_web::{App, HttpServer, middleware, web};
use parsec_server::config::{BlockStoreConfig, Command, DbUrl, EmailConfig, RunConfig};
use parsec_actors::backend::Backends;
use parsec_actors::{Actors, Settings};
use parsec_server::{config, http, logging};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let command = match config::parse_command_line(args, &|k| std::env::var(k).ok()) {
        Ok(c) => c,
        Err(exit) => {
            if exit.code == 0 {
                println!("{}", exit.message);
            } else {
                eprintln!("{}", exit.message);
            }
            return ExitCode::from(exit.code.clamp(0, 255) as u8);
        }
    };
    match command {
        Command::Run(cfg) => match run(*cfg) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("Error: {e:#}");
                ExitCode::FAILURE
            }
        },
        Command::Migrate(_) => {
            eprintln!("Error: `migrate` needs PostgreSQL support, which this build does not have yet");
            ExitCode::FAILURE
        }
    }
}

/// Settings whose backend has not landed yet are refused at start, by name,
/// rather than silently replaced by something else.
fn unsupported(cfg: &RunConfig) -> Vec<&'static str> {
    let mut missing = Vec::new();
    if matches!(cfg.db, DbUrl::Postgresql(_)) {
        missing.push("PostgreSQL database (--db postgresql://...)");
    }
    if !matches!(cfg.blockstore, BlockStoreConfig::Mocked) {
        missing.push("blockstore other than MOCKED (--blockstore)");
    }
    if matches!(cfg.email, EmailConfig::Smtp(_)) {
        missing.push("SMTP e-mail (--email-host other than MOCKED)");
    }
    if cfg.ssl_certfile.is_some() || cfg.ssl_keyfile.is_some() {
        missing.push("TLS (--ssl-certfile / --ssl-keyfile)");
    }
    if cfg.sentry_dsn.is_some() {
        missing.push("Sentry reporting (--sentry-dsn)");
    }
    if cfg.organization_bootstrap_webhook.is_some() {
        missing.push("organization bootstrap webhook (--organization-bootstrap-webhook)");
    }
    if cfg.forward_proto_enforce_https.is_some() {
        missing.push("HTTPS enforcement (--forward-proto-enforce-https)");
    }
    missing
}

fn run(cfg: RunConfig) -> anyhow::Result<()> {
    let missing = unsupported(&cfg);
    if !missing.is_empty() {
        anyhow::bail!("not available in this build yet: {}", missing.join(", "));
    }
    logging::init(&cfg.log)?;
    let settings = Settings {
        administration_token: cfg.administration_token.expose().to_string(),
        spontaneous_organization_bootstrap: cfg.spontaneous_organization_bootstrap,
        organization_initial_active_users_limit: cfg.organization_initial_active_users_limit,
        organization_initial_user_profile_outsider_allowed: cfg.organization_initial_user_profile_outsider_allowed,
    };
    let backend_netloc = cfg.backend_addr.netloc();
    let backend_query = cfg.backend_addr.redirect_query_params();
    let host = cfg.host.clone();
    let port = cfg.port;

    actix_web::rt::System::new().block_on(async move {
        let actors = Actors::start(Backends::memory(), settings);
        let state = http::AppState { actors, backend_netloc, backend_query };
        let server = HttpServer::new(move || {
            App::new()
                .app_data(web::Data::new(state.clone()))
                .wrap(middleware::DefaultHeaders::new().add(("server", "parsec")))
                .configure(http::configure)
        })
        .bind((host.as_str(), port))
        .map_err(|e| anyhow::anyhow!("cannot listen on {host}:{port}: {e}"))?
        .disable_signals()
        .shutdown_timeout(5)
        .run();
        println!(
            "Starting Parsec Backend on {host}:{port} (db={} blockstore={} email={} telemetry={} backend_addr={})",
            match cfg.db {
                DbUrl::Mocked => "MOCKED",
                DbUrl::Postgresql(_) => "POSTGRESQL",
            },
            cfg.blockstore.kind(),
            match cfg.email {
                EmailConfig::Mocked { .. } => "MOCKED",
                EmailConfig::Smtp(_) => "SMTP",
            },
            if cfg.sentry_dsn.is_some() { "on" } else { "off" },
            cfg.backend_addr.to_url(),
        );
        let handle = server.handle();
        actix_web::rt::spawn(async move {
            wait_for_stop_signal().await;
            println!("bye ;-)");
            handle.stop(true).await;
        });
        server.await.map_err(anyhow::Error::from)
    })
}

/// SIGINT or SIGTERM.
async fn wait_for_stop_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match (signal(SignalKind::interrupt()), signal(SignalKind::terminate())) {
        (Ok(mut int), Ok(mut term)) => {
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
        }
        _ => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
