//! Command line: the argh structure, then [`Args::resolve`] which checks every
//! bound once and yields the [`Config`] the run uses.
//!
//! Everything the tool does is bounded by these numbers, so their limits are
//! checked here rather than trusted later.

use std::time::Duration;

use argh::FromArgs;

/// Default server address.
pub const DEFAULT_ADDR: &str = "parsec://127.0.0.1:6777?no_ssl=true";
/// Run time when neither `--duration` nor `--count` is given.
pub const DEFAULT_DURATION: Duration = Duration::from_secs(10);
/// Safety bound on a `--count` run without `--duration`.
pub const COUNT_ONLY_CAP: Duration = Duration::from_secs(600);

const MAX_CLIENTS: usize = 100_000;
const MAX_DURATION_SECS: u64 = 24 * 3600;
const MAX_COUNT: u64 = 1_000_000_000;
/// The reference refuses `bin` values over 1 MiB.
const MAX_BLOB: usize = 1024 * 1024;

/// What the clients do once connected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    Ping,
    VlobCreate,
    VlobRead,
    VlobUpdate,
    BlockCreate,
    BlockRead,
    Handshake,
    Idle,
    Fanout,
    Mix,
}

impl Scenario {
    pub const ALL: [Scenario; 10] = [
        Scenario::Ping,
        Scenario::VlobCreate,
        Scenario::VlobRead,
        Scenario::VlobUpdate,
        Scenario::BlockCreate,
        Scenario::BlockRead,
        Scenario::Handshake,
        Scenario::Idle,
        Scenario::Fanout,
        Scenario::Mix,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Scenario::Ping => "ping",
            Scenario::VlobCreate => "vlob_create",
            Scenario::VlobRead => "vlob_read",
            Scenario::VlobUpdate => "vlob_update",
            Scenario::BlockCreate => "block_create",
            Scenario::BlockRead => "block_read",
            Scenario::Handshake => "handshake",
            Scenario::Idle => "idle",
            Scenario::Fanout => "fanout",
            Scenario::Mix => "mix",
        }
    }

    /// Whether the scenario needs a realm (and so `realm_create`).
    pub fn needs_realm(self) -> bool {
        !matches!(self, Scenario::Ping | Scenario::Handshake | Scenario::Idle)
    }
}

fn parse_scenario(s: &str) -> Result<Scenario, String> {
    let wanted = s.replace('-', "_");
    Scenario::ALL.into_iter().find(|sc| sc.name() == wanted).ok_or_else(|| {
        let names: Vec<&str> = Scenario::ALL.iter().map(|s| s.name()).collect();
        format!("unknown scenario `{s}` (one of: {})", names.join(", "))
    })
}

/// parsec-load: drives a Parsec v2 server (this one or the reference) with N
/// authenticated websocket clients speaking the real protocol, and reports
/// throughput and latency. Setup creates a fresh organization through the
/// administration API.
#[derive(FromArgs, Debug, Clone, PartialEq)]
pub struct Args {
    /// ping, vlob_create, vlob_read, vlob_update, block_create, block_read,
    /// handshake, idle, fanout or mix
    #[argh(positional, from_str_fn(parse_scenario))]
    pub scenario: Scenario,

    /// server address, `parsec://host[:port]?no_ssl=true` (TLS is not supported)
    #[argh(option, default = "DEFAULT_ADDR.to_string()")]
    pub addr: String,

    /// administration token of the server (default s3cr3t, the `--dev` one)
    #[argh(option, default = "String::from(\"s3cr3t\")")]
    pub admin_token: String,

    /// concurrent connections (default 50)
    #[argh(option, default = "50")]
    pub clients: usize,

    /// measured phase length in seconds (default 10 unless --count is given)
    #[argh(option)]
    pub duration: Option<f64>,

    /// stop after this many requests in total, all clients together (fanout:
    /// writer updates; handshake: handshakes; not used by idle)
    #[argh(option)]
    pub count: Option<u64>,

    /// block size in bytes for block_create/block_read/mix (default 65536)
    #[argh(option, default = "65536")]
    pub block_size: usize,

    /// vlob blob size in bytes (default 1024)
    #[argh(option, default = "1024")]
    pub blob_size: usize,

    /// fanout: number of listening connections (default 50)
    #[argh(option, default = "50")]
    pub listeners: usize,

    /// fanout: writer updates per second; 0 (default) waits until every
    /// listener got an event before sending the next update
    #[argh(option, default = "0.0")]
    pub rate: f64,

    /// pid of the server (same machine): report its CPU time per request,
    /// and its memory per connection for `idle`
    #[argh(option)]
    pub server_pid: Option<u32>,

    /// per-request timeout in milliseconds (default 10000)
    #[argh(option, default = "10000")]
    pub timeout_ms: u64,

    /// worker threads of the tool itself (default 1, leaving the other cores
    /// to the server)
    #[argh(option, default = "1")]
    pub threads: usize,

    /// print one JSON object on stdout instead of the text report
    #[argh(switch)]
    pub json: bool,

    /// no progress lines on stderr
    #[argh(switch, short = 'q')]
    pub quiet: bool,
}

/// Where the server is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub host: String,
    pub port: u16,
}

/// Validated settings of a run.
#[derive(Debug, Clone)]
pub struct Config {
    pub scenario: Scenario,
    pub target: Target,
    pub admin_token: String,
    pub clients: usize,
    /// Wall-clock bound of the measured phase.
    pub duration: Duration,
    pub count: Option<u64>,
    pub block_size: usize,
    pub blob_size: usize,
    pub listeners: usize,
    /// Fanout writer pace; `None`: lockstep with the listeners.
    pub rate: Option<f64>,
    pub server_pid: Option<u32>,
    pub timeout: Duration,
    pub threads: usize,
    pub json: bool,
    pub quiet: bool,
}

/// Parses `parsec://host[:port][/][?query]`. Only `no_ssl=true` is
/// supported; the port defaults to 80 as for the reference's no-ssl URLs.
pub fn parse_addr(url: &str) -> Result<Target, String> {
    let bad = |why: &str| format!("bad --addr `{url}`: {why}");
    let rest = match url.split_once("://") {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("parsec") => rest,
        _ => return Err(bad("expected parsec://host:port?no_ssl=true")),
    };
    let (netloc_path, query) = rest.split_once('?').unwrap_or((rest, ""));
    let netloc = match netloc_path.split_once('/') {
        Some((n, "")) => n,
        Some(_) => return Err(bad("a server address has no path")),
        None => netloc_path,
    };
    let no_ssl = query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .any(|(k, v)| k == "no_ssl" && v.eq_ignore_ascii_case("true"));
    if !no_ssl {
        return Err(bad("only plain-TCP servers are supported: add ?no_ssl=true"));
    }
    let (host, port) = if let Some(v6) = netloc.strip_prefix('[') {
        let (host, after) = v6.split_once(']').ok_or_else(|| bad("unclosed ["))?;
        match after {
            "" => (host, None),
            p => (host, Some(p.strip_prefix(':').ok_or_else(|| bad("junk after ]"))?)),
        }
    } else {
        match netloc.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (netloc, None),
        }
    };
    if host.is_empty() {
        return Err(bad("no host"));
    }
    let port = match port {
        None => 80,
        Some(p) => p
            .parse::<u16>()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| bad("bad port"))?,
    };
    Ok(Target {
        host: host.to_string(),
        port,
    })
}

fn within<T: PartialOrd + std::fmt::Display>(name: &str, v: T, lo: T, hi: T) -> Result<T, String> {
    if v < lo || v > hi {
        return Err(format!("--{name} must be between {lo} and {hi} (got {v})"));
    }
    Ok(v)
}

impl Args {
    /// Checks every bound and fills the defaults.
    pub fn resolve(&self) -> Result<Config, String> {
        let target = parse_addr(&self.addr)?;
        let clients = within("clients", self.clients, 1, MAX_CLIENTS)?;
        let listeners = within("listeners", self.listeners, 1, MAX_CLIENTS)?;
        let count = match self.count {
            Some(c) => Some(within("count", c, 1, MAX_COUNT)?),
            None => None,
        };
        let duration = match (self.duration, count) {
            (Some(d), _) => {
                if !d.is_finite() || d <= 0.0 || d > MAX_DURATION_SECS as f64 {
                    return Err(format!("--duration must be in (0, {MAX_DURATION_SECS}] seconds"));
                }
                Duration::from_secs_f64(d)
            }
            (None, Some(_)) => COUNT_ONLY_CAP,
            (None, None) => DEFAULT_DURATION,
        };
        let block_size = within("block-size", self.block_size, 1, MAX_BLOB)?;
        let blob_size = within("blob-size", self.blob_size, 1, MAX_BLOB)?;
        if !self.rate.is_finite() || self.rate < 0.0 || self.rate > 1_000_000.0 {
            return Err("--rate must be between 0 and 1000000".into());
        }
        let timeout_ms = within("timeout-ms", self.timeout_ms, 1, 3_600_000)?;
        let threads = within("threads", self.threads, 1, 256)?;
        if self.admin_token.is_empty() || self.admin_token.contains(['\r', '\n']) {
            return Err("--admin-token must be a non-empty single line".into());
        }
        Ok(Config {
            scenario: self.scenario,
            target,
            admin_token: self.admin_token.clone(),
            clients,
            duration,
            count,
            block_size,
            blob_size,
            listeners,
            rate: (self.rate > 0.0).then_some(self.rate),
            server_pid: self.server_pid,
            timeout: Duration::from_millis(timeout_ms),
            threads,
            json: self.json,
            quiet: self.quiet,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Args, String> {
        Args::from_args(&["parsec-load"], args).map_err(|e| e.output)
    }

    #[test]
    fn defaults() {
        let a = parse(&["ping"]).unwrap();
        assert_eq!(a.scenario, Scenario::Ping);
        let c = a.resolve().unwrap();
        assert_eq!(
            c.target,
            Target {
                host: "127.0.0.1".into(),
                port: 6777
            }
        );
        assert_eq!(c.admin_token, "s3cr3t");
        assert_eq!((c.clients, c.block_size, c.listeners), (50, 65536, 50));
        assert_eq!(c.duration, DEFAULT_DURATION);
        assert_eq!((c.count, c.rate, c.server_pid), (None, None, None));
        assert!(!c.json);
    }

    #[test]
    fn options() {
        let a = parse(&[
            "vlob-update",
            "--clients",
            "3",
            "--count",
            "40",
            "--json",
            "--server-pid",
            "1234",
            "--addr",
            "parsec://localhost:7000/?no_ssl=true",
            "--block-size",
            "1024",
            "--admin-token",
            "tok",
        ])
        .unwrap();
        let c = a.resolve().unwrap();
        assert_eq!(c.scenario, Scenario::VlobUpdate);
        assert_eq!((c.clients, c.count, c.server_pid), (3, Some(40), Some(1234)));
        assert_eq!(c.duration, COUNT_ONLY_CAP);
        assert_eq!(c.target.port, 7000);
        assert_eq!(c.block_size, 1024);
        assert!(c.json);
        let c = parse(&["fanout", "--count", "5", "--duration", "1.5", "--rate", "20"])
            .unwrap()
            .resolve()
            .unwrap();
        assert_eq!(c.duration, Duration::from_millis(1500));
        assert_eq!(c.rate, Some(20.0));
    }

    #[test]
    fn refusals() {
        assert!(parse(&[]).is_err());
        assert!(parse(&["nope"]).unwrap_err().contains("unknown scenario"));
        assert!(parse(&["ping", "--clients", "x"]).is_err());
        let resolve = |args: &[&str]| parse(args).unwrap().resolve();
        assert!(resolve(&["ping", "--clients", "0"]).is_err());
        assert!(resolve(&["ping", "--duration", "0"]).is_err());
        assert!(resolve(&["ping", "--duration", "NaN"]).is_err());
        assert!(resolve(&["ping", "--block-size", "1048577"]).is_err());
        assert!(resolve(&["ping", "--count", "0"]).is_err());
        assert!(resolve(&["ping", "--rate", "-1"]).is_err());
        assert!(resolve(&["ping", "--addr", "parsec://127.0.0.1:6777"]).is_err());
    }

    #[test]
    fn addresses() {
        let t = |host: &str, port| Target {
            host: host.into(),
            port,
        };
        assert_eq!(parse_addr("parsec://h?no_ssl=true"), Ok(t("h", 80)));
        assert_eq!(parse_addr("PARSEC://h:1?a=b&no_ssl=True"), Ok(t("h", 1)));
        assert_eq!(parse_addr("parsec://[::1]:6777?no_ssl=true"), Ok(t("::1", 6777)));
        assert_eq!(parse_addr("parsec://[::1]?no_ssl=true"), Ok(t("::1", 80)));
        for bad in [
            "http://h:1?no_ssl=true",
            "parsec://h:1",
            "parsec://h:1?no_ssl=false",
            "parsec://:1?no_ssl=true",
            "parsec://h:0?no_ssl=true",
            "parsec://h:99999?no_ssl=true",
            "parsec://h:1/Org?no_ssl=true",
            "parsec://[::1?no_ssl=true",
        ] {
            assert!(parse_addr(bad).is_err(), "{bad}");
        }
    }
}
