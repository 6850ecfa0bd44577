//! `parsec-server`: the Parsec v2 metadata server.
//!
//! `parsec-server run [options]` serves; `parsec-server migrate` prepares a
//! PostgreSQL database. This file resolves the configuration, refuses what
//! this build cannot do yet, starts the actors and the HTTP server. Nothing
//! here decides anything about organizations: that is `parsec-actors`.

use std::process::ExitCode;

use parsec_actors::backend::Backends;
use std::sync::Arc;

use parsec_actors::EventBus;
use parsec_actors::backend::postgres::PgStore;
use parsec_actors::backend::postgres::blockstore::PgBlockStore;
use parsec_actors::backend::postgres::events;
use parsec_actors::blockstore::{BlockStore, MemoryBlockStore};
use parsec_actors::broker;
use parsec_actors::{Actors, Settings};
use parsec_server::config::{BlockStoreConfig, Command, DbUrl, EmailConfig, RunConfig};
use parsec_server::{config, http, logging, serve, tls};

/// Bound on a graceful stop: in-flight commands get this long to finish.
const SHUTDOWN_TIMEOUT_SECS: u64 = 10;
/// Bound on sending the last Sentry events before exiting.
const LOG_FLUSH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);
/// Bound on waiting for a database connection (pool wait, connect, recycle).
const DB_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// mimalloc instead of glibc's malloc, which took 12–15 % of the server
/// threads' time under load: fastbin consolidation, and arena locks when a
/// buffer allocated on one thread (a request, on an HTTP worker) is freed
/// on another (after its vlob batch, on the actors' thread). In alternating
/// runs: `vlob_update` +7–18 %, `vlob_create` +6–11 %, 4–7 % less server
/// CPU per `block_read`, 3.6 instead of 4.2 KiB per idle connection
/// (BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
        Command::Migrate(cfg) => match migrate(&cfg) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("Error: {e:#}");
                ExitCode::FAILURE
            }
        },
    }
}

/// `parsec-server migrate`: applies the pending migrations (or lists them
/// with `--dry-run`). Safe to run twice, and from two processes at once.
fn migrate(cfg: &config::MigrateConfig) -> anyhow::Result<()> {
    logging::init(&cfg.log)?;
    let report = parsec_schema::migrate_blocking(cfg.db.expose(), cfg.dry_run)?;
    for name in &report.already_applied {
        println!("{name} (already applied)");
    }
    for name in &report.applied {
        if cfg.dry_run {
            println!("{name} (pending, dry run)");
        } else {
            println!("{name} \u{2714}");
        }
    }
    if report.applied.is_empty() {
        println!("Database is up to date");
    }
    Ok(())
}

fn run(cfg: RunConfig) -> anyhow::Result<()> {
    let sentry = cfg.sentry_dsn.as_ref().map(|dsn| logging::SentryConfig {
        dsn: dsn.expose(),
        environment: &cfg.sentry_environment,
    });
    logging::init_with_sentry(&cfg.log, sentry)?;
    // From here on, a fatal error is also reported to Sentry (and written to
    // the log file); `main` prints it.
    let result = serve(cfg);
    if let Err(e) = &result {
        logging::fatal(&format!("{e:#}"));
    }
    logging::flush(LOG_FLUSH_TIMEOUT);
    result
}

fn serve(cfg: RunConfig) -> anyhow::Result<()> {
    let bootstrap_webhook = cfg
        .organization_bootstrap_webhook
        .as_deref()
        .map(parsec_actors::webhook::BootstrapWebhook::new)
        .transpose()
        .map_err(anyhow::Error::msg)?;
    let settings = Settings {
        administration_token: cfg.administration_token.expose().to_string(),
        spontaneous_organization_bootstrap: cfg.spontaneous_organization_bootstrap,
        organization_initial_active_users_limit: cfg.organization_initial_active_users_limit,
        organization_initial_user_profile_outsider_allowed: cfg.organization_initial_user_profile_outsider_allowed,
        email: parsec_actors::email::EmailConfig {
            sender: cfg.email.sender().to_string(),
            transport: match &cfg.email {
                EmailConfig::Mocked { .. } => parsec_actors::email::EmailTransport::Mocked,
                EmailConfig::Smtp(s) => parsec_actors::email::EmailTransport::Smtp(parsec_actors::email::SmtpConfig {
                    host: s.host.clone(),
                    port: s.port,
                    user: s.host_user.clone(),
                    password: s.host_password.as_ref().map(|p| p.expose().to_string()),
                    use_ssl: s.use_ssl,
                    use_tls: s.use_tls,
                    timeout: parsec_actors::email::SmtpConfig::DEFAULT_TIMEOUT,
                }),
            },
        },
        backend_addr: parsec_actors::email::BackendAddr {
            netloc: cfg.backend_addr.netloc(),
            no_ssl: !cfg.backend_addr.use_ssl,
        },
    };
    settings.email.validate().map_err(anyhow::Error::msg)?;
    let backend_netloc = cfg.backend_addr.netloc();
    let backend_query = cfg.backend_addr.redirect_query_params();
    let host = cfg.host.clone();
    let port = cfg.port;

    let tls = match (&cfg.ssl_certfile, &cfg.ssl_keyfile) {
        (Some(cert), Some(key)) => Some(tls::acceptor(cert, key)?),
        _ => None,
    };
    let forward_proto_enforce_https = cfg.forward_proto_enforce_https.clone();

    actix_web::rt::System::new().block_on(async move {
        let (backends, pg) = match &cfg.db {
            DbUrl::Mocked => {
                let mut backends = Backends::memory();
                backends.blockstore = build_blockstore(&cfg.blockstore, None).await?;
                (backends, None)
            }
            DbUrl::Postgresql(url) => {
                let store = connect_database(&cfg).await?;
                let blockstore = build_blockstore(&cfg.blockstore, Some(&store)).await?;
                (
                    Backends::postgres(store.clone(), blockstore),
                    Some((url.expose().to_string(), store)),
                )
            }
        };
        let (bus, listener) = match pg {
            Some((url, store)) => {
                let (bus, listener) = events::start(url, store.pool().clone());
                (bus, Some(listener))
            }
            None => (EventBus::Local, None),
        };
        let actors = Actors::start_with_events(backends, settings, bus).with_bootstrap_webhook(bootstrap_webhook);
        if let Some(listener) = listener {
            listener.spawn(actors.broker.clone());
        }
        let broker = actors.broker.clone();
        let state = http::AppState {
            actors,
            backend_netloc,
            backend_query,
            forward_proto_enforce_https,
        };
        let listening = serve::start(
            state,
            serve::Options {
                host: host.clone(),
                port,
                tls,
                workers: None,
                shutdown_timeout_secs: SHUTDOWN_TIMEOUT_SECS,
            },
        )
        .map_err(|e| anyhow::anyhow!("cannot listen on {host}:{port}: {e}"))?;
        let server = listening.server;
        println!(
            "Starting Parsec Backend on {host}:{port} (db={} blockstore={} email={} telemetry={} backend_addr={})",
            cfg.db.kind(),
            cfg.blockstore.kind(),
            cfg.email.kind(),
            if cfg.sentry_dsn.is_some() { "on" } else { "off" },
            cfg.backend_addr.to_url(),
        );
        let handle = server.handle();
        actix_web::rt::spawn(async move {
            wait_for_stop_signal().await;
            println!("bye ;-)");
            // Stop accepting, ask websockets to close cleanly, let in-flight
            // commands finish; whatever is left after the timeout is dropped.
            let stopping = handle.stop(true);
            match broker.send(broker::CloseAll).await {
                Ok(n) => log::info!("shutdown: closing {n} websocket connections"),
                Err(e) => log::warn!("shutdown: broker unavailable: {e}"),
            }
            stopping.await;
        });
        server.await.map_err(anyhow::Error::from)
    })
}

/// The `--blockstore` store, its remote nodes checked (S3 bucket and Swift
/// container answer `HEAD`, credentials accepted): the server does not start
/// on a store it cannot use, and the error says which and why, on one line.
async fn build_blockstore(cfg: &BlockStoreConfig, pg: Option<&PgStore>) -> anyhow::Result<Arc<dyn BlockStore>> {
    use parsec_actors::blockstore::raid::{Raid0BlockStore, Raid1BlockStore, Raid5BlockStore};
    // The CLI never enables `partial_create_ok` (cli.md §4.2).
    Ok(match cfg {
        BlockStoreConfig::Raid0(nodes) => Arc::new(Raid0BlockStore::new(build_raid_nodes(nodes, pg).await?)?),
        BlockStoreConfig::Raid1(nodes) => Arc::new(Raid1BlockStore::new(build_raid_nodes(nodes, pg).await?, false)?),
        BlockStoreConfig::Raid5(nodes) => Arc::new(Raid5BlockStore::new(build_raid_nodes(nodes, pg).await?, false)?),
        BlockStoreConfig::Mocked
        | BlockStoreConfig::Postgresql
        | BlockStoreConfig::S3(_)
        | BlockStoreConfig::Swift(_) => build_single_blockstore(cfg, pg).await?,
    })
}

/// RAID nodes, checked concurrently: startup waits for the slowest only.
async fn build_raid_nodes(
    nodes: &[BlockStoreConfig],
    pg: Option<&PgStore>,
) -> anyhow::Result<Vec<Arc<dyn BlockStore>>> {
    futures_util::future::try_join_all(nodes.iter().map(|node| build_single_blockstore(node, pg))).await
}

/// One non-RAID store (RAID nodes cannot nest).
async fn build_single_blockstore(cfg: &BlockStoreConfig, pg: Option<&PgStore>) -> anyhow::Result<Arc<dyn BlockStore>> {
    use parsec_actors::blockstore::DEFAULT_CALL_TIMEOUT;
    use parsec_actors::blockstore::s3::{S3BlockStore, S3Settings};
    use parsec_actors::blockstore::swift::{SwiftBlockStore, SwiftSettings};
    Ok(match cfg {
        BlockStoreConfig::Mocked => Arc::new(MemoryBlockStore::default()),
        BlockStoreConfig::Postgresql => match pg {
            Some(store) => Arc::new(PgBlockStore::new(store.clone())),
            None => anyhow::bail!("PostgreSQL block store is not available"),
        },
        BlockStoreConfig::S3(c) => {
            let settings = S3Settings {
                endpoint_url: c.endpoint_url.clone(),
                region: c.region.clone(),
                bucket: c.bucket.clone(),
                key: c.key.clone(),
                secret: c.secret.expose().to_string(),
            };
            Arc::new(S3BlockStore::connect(&settings, DEFAULT_CALL_TIMEOUT).await?)
        }
        BlockStoreConfig::Swift(c) => {
            let settings = SwiftSettings {
                auth_url: c.auth_url.clone(),
                tenant: c.tenant.clone(),
                container: c.container.clone(),
                user: c.user.clone(),
                password: c.password.expose().to_string(),
            };
            Arc::new(SwiftBlockStore::connect(&settings, DEFAULT_CALL_TIMEOUT).await?)
        }
        BlockStoreConfig::Raid0(_) | BlockStoreConfig::Raid1(_) | BlockStoreConfig::Raid5(_) => {
            anyhow::bail!("RAID block stores cannot be nested")
        }
    })
}

/// Connects to PostgreSQL as the reference does: a connection error is
/// retried after `--pause-before-retry-database-connection`, up to
/// `--maximum-database-connection-attempts` (0: never retry). A database that
/// is not migrated, or newer than this binary, is a clear error, not retried.
async fn connect_database(cfg: &RunConfig) -> anyhow::Result<PgStore> {
    let DbUrl::Postgresql(url) = &cfg.db else {
        anyhow::bail!("not a PostgreSQL database")
    };
    let mut attempt = 0;
    loop {
        attempt += 1;
        let url_owned = url.expose().to_string();
        let checked = tokio::task::spawn_blocking(move || parsec_schema::check_blocking(&url_owned)).await?;
        match checked {
            Ok(()) => break,
            Err(parsec_schema::SchemaError::Connection(e)) if attempt < cfg.maximum_database_connection_attempts => {
                log::warn!(
                    "database unreachable (attempt {attempt}/{}): {e}; retrying in {:?}",
                    cfg.maximum_database_connection_attempts,
                    cfg.pause_before_retry_database_connection
                );
                tokio::time::sleep(cfg.pause_before_retry_database_connection).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
    let store = PgStore::connect(url.expose(), cfg.db_max_connections as usize, DB_TIMEOUT)?;
    store
        .warm_up(cfg.db_min_connections as usize)
        .await
        .map_err(|e| anyhow::anyhow!("cannot open the database connections: {:#}", e.0))?;
    Ok(store)
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
