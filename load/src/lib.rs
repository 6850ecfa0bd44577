//! `parsec-load`: a load generator for Parsec v2 metadata servers, speaking
//! the real protocol as the `parsec-cloud==2.10.0` client does, so it runs
//! against this server or the reference Python one alike.
//!
//! A run has two phases. Setup ([`setup`]) creates a fresh organization
//! through the administration API, bootstraps it, adds a second device, a
//! realm and the data the scenario reads; nothing there is measured. Then the
//! scenario ([`scenario`]) opens its connections and drives them for
//! `--duration` seconds or `--count` requests, and [`report`] summarises
//! throughput, latency percentiles, errors by status and, with
//! `--server-pid`, the server's CPU time and memory.
//!
//! The tool only talks to the one address it is given, bounds every loop by
//! count and time, and stops by itself.
//!
//! [`client`] and [`identity`] are also the server's end-to-end test client.

pub mod args;
pub mod client;
pub mod identity;
pub mod procfs;
pub mod report;
pub mod scenario;
pub mod setup;

use std::net::SocketAddr;
use std::sync::Arc;

use args::Config;
use report::Report;

/// Resolves the configured host once; the run only ever talks to this address.
pub async fn resolve(cfg: &Config) -> Result<SocketAddr, String> {
    let host = cfg.target.host.as_str();
    tokio::net::lookup_host((host, cfg.target.port))
        .await
        .map_err(|e| format!("cannot resolve {host}: {e}"))?
        .next()
        .ok_or_else(|| format!("cannot resolve {host}: no address"))
}

/// Setup, then the measured scenario. Progress goes to stderr unless `quiet`.
pub async fn run(cfg: Config) -> Result<Report, String> {
    let needed = match cfg.scenario {
        args::Scenario::Fanout => cfg.listeners,
        _ => cfg.clients,
    } as u64;
    if let Some(limit) = procfs::open_files_limit()
        && needed + 32 > limit
    {
        return Err(format!(
            "{needed} connections need more file descriptors than this process may open ({limit}): raise `ulimit -n`"
        ));
    }
    let addr = resolve(&cfg).await?;
    let quiet = cfg.quiet;
    let log = move |line: &str| {
        if !quiet {
            eprintln!("setup: {line}");
        }
    };
    let mut notes = Vec::new();
    let (org, fx) = setup::prepare(&cfg, addr, &log, &mut notes).await?;
    log(&format!(
        "running {} for {}",
        cfg.scenario.name(),
        match cfg.count {
            Some(c) => format!("{c} requests (at most {:.0} s)", cfg.duration.as_secs_f64()),
            None => format!("{:.1} s", cfg.duration.as_secs_f64()),
        }
    ));
    let shared = Arc::new(scenario::Shared::new(cfg, org, fx));
    let mut report = scenario::run(shared).await?;
    notes.append(&mut report.notes);
    report.notes = notes;
    Ok(report)
}
