//! A minimal Sentry reporter (`--sentry-dsn`, `--sentry-environment`): every
//! log record at ERROR level becomes a Sentry event, POSTed as JSON to the
//! project's store endpoint (`<scheme>://<host>/api/<project>/store/`) with
//! the `X-Sentry-Auth` header of protocol version 7.
//!
//! Reporting never slows logging down: [`Reporter::capture`] only builds the
//! event and puts it in a bounded queue; a dedicated thread (its own actix
//! runtime, the `awc` client over openssl) sends them one by one, each within
//! [`SEND_TIMEOUT`]. When the queue is full the event is dropped and counted.
//! Records logged by that thread itself are never reported (no loop when
//! Sentry is down).
//!
//! The DSN holds the project's key: it is never logged, and errors about it
//! never quote it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// Bound on one event's delivery (connection included).
pub const SEND_TIMEOUT: Duration = Duration::from_secs(10);
/// Events waiting to be sent; more are dropped (and counted).
pub const QUEUE_CAPACITY: usize = 100;

const CLIENT: &str = concat!("parsec-server/", env!("CARGO_PKG_VERSION"));

thread_local! {
    /// Set on the reporter's own thread: what it logs is not reported.
    static ON_REPORTER_THREAD: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// A parsed DSN: `<scheme>://<public_key>[:<secret>]@<host>[:<port>][/<path>]/<project_id>`.
#[derive(Clone, PartialEq, Eq)]
pub struct Dsn {
    pub public_key: String,
    /// `<scheme>://<host>[:<port>][/<path>]/api/<project_id>/store/`.
    pub store_url: String,
}

/// Hides the key.
impl std::fmt::Debug for Dsn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dsn")
            .field("store_url", &self.store_url)
            .finish_non_exhaustive()
    }
}

impl Dsn {
    /// Parses a DSN; the error message never contains the DSN itself.
    pub fn parse(dsn: &str) -> Result<Self, String> {
        let (scheme, rest) = dsn
            .split_once("://")
            .ok_or("invalid Sentry DSN: expected <scheme>://<key>@<host>/<project>")?;
        let scheme = scheme.to_ascii_lowercase();
        if scheme != "http" && scheme != "https" {
            return Err("invalid Sentry DSN: the scheme must be http or https".into());
        }
        let rest = rest.split(['?', '#']).next().unwrap_or_default();
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        let (userinfo, host) = authority
            .rsplit_once('@')
            .ok_or("invalid Sentry DSN: no public key before '@'")?;
        let public_key = userinfo.split(':').next().unwrap_or_default();
        if public_key.is_empty() {
            return Err("invalid Sentry DSN: empty public key".into());
        }
        if host.is_empty() {
            return Err("invalid Sentry DSN: no host".into());
        }
        let path = path.trim_end_matches('/');
        let (prefix, project_id) = match path.rsplit_once('/') {
            Some((prefix, project)) => (format!("/{prefix}"), project),
            None => (String::new(), path),
        };
        if project_id.is_empty()
            || !project_id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err("invalid Sentry DSN: no project id at the end of the path".into());
        }
        Ok(Self {
            public_key: public_key.to_string(),
            store_url: format!("{scheme}://{host}{prefix}/api/{project_id}/store/"),
        })
    }

    /// The `X-Sentry-Auth` header value.
    pub fn auth_header(&self) -> String {
        format!(
            "Sentry sentry_version=7, sentry_key={}, sentry_client={CLIENT}",
            self.public_key
        )
    }
}

/// One event, built on the logging thread, sent by the reporter's.
struct Outgoing {
    body: String,
}

/// See the module documentation.
pub struct Reporter {
    queue: tokio::sync::mpsc::Sender<Outgoing>,
    environment: String,
    server_name: String,
    /// Events dropped because the queue was full (or the sender gone).
    dropped: AtomicU64,
    /// Events queued and not yet handled by the sender.
    pending: Arc<AtomicUsize>,
}

impl Reporter {
    /// Starts the sending thread.
    pub fn start(dsn: Dsn, environment: &str) -> std::io::Result<Self> {
        let (queue, mut incoming) = tokio::sync::mpsc::channel::<Outgoing>(QUEUE_CAPACITY);
        let pending = Arc::new(AtomicUsize::new(0));
        let sent = pending.clone();
        std::thread::Builder::new().name("sentry".into()).spawn(move || {
            ON_REPORTER_THREAD.with(|flag| flag.set(true));
            actix_web::rt::System::new().block_on(async move {
                let auth = dsn.auth_header();
                while let Some(event) = incoming.recv().await {
                    if let Err(e) = send(&dsn.store_url, &auth, event.body).await {
                        log::warn!("sentry: cannot report an error: {e}");
                    }
                    sent.fetch_sub(1, Ordering::SeqCst);
                }
            })
        })?;
        Ok(Self {
            queue,
            environment: environment.to_string(),
            server_name: server_name(),
            dropped: AtomicU64::new(0),
            pending,
        })
    }

    /// Queues an event for `record`; never blocks.
    pub fn capture(&self, record: &log::Record<'_>) {
        if ON_REPORTER_THREAD.with(|flag| flag.get()) {
            return;
        }
        let event = self.event(record);
        self.pending.fetch_add(1, Ordering::SeqCst);
        if self
            .queue
            .try_send(Outgoing {
                body: event.to_string(),
            })
            .is_err()
        {
            self.pending.fetch_sub(1, Ordering::SeqCst);
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The Sentry event of a log record.
    fn event(&self, record: &log::Record<'_>) -> Value {
        let level = match record.level() {
            log::Level::Error => "error",
            log::Level::Warn => "warning",
            log::Level::Info => "info",
            log::Level::Debug | log::Level::Trace => "debug",
        };
        json!({
            "event_id": parsec_protocol::types::Uuid::new_v4().simple().to_string(),
            "timestamp": parsec_protocol::types::DateTime::now().to_rfc3339(),
            "platform": "other",
            "level": level,
            "logger": record.target(),
            "message": record.args().to_string(),
            "environment": self.environment,
            "server_name": self.server_name,
            "release": CLIENT,
            "extra": {
                "module_path": record.module_path(),
                "file": record.file(),
                "line": record.line(),
            },
        })
    }

    /// Events dropped so far because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Waits (at most `limit`) until every queued event has been handled;
    /// `true` if none is left.
    pub fn flush(&self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        while self.pending.load(Ordering::SeqCst) > 0 {
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        true
    }
}

async fn send(url: &str, auth: &str, body: String) -> Result<(), String> {
    let client = awc::Client::builder()
        .connector(awc::Connector::new().timeout(SEND_TIMEOUT))
        .timeout(SEND_TIMEOUT)
        .finish();
    let call = async {
        let mut response = client
            .post(url)
            .insert_header(("X-Sentry-Auth", auth))
            .insert_header(("content-type", "application/json"))
            .send_body(body)
            .await
            .map_err(|e| e.to_string())?;
        let _ = response.body().limit(64 * 1024).await;
        if response.status().is_success() {
            Ok(())
        } else {
            Err(format!("status {}", response.status().as_u16()))
        }
    };
    actix_web::rt::time::timeout(SEND_TIMEOUT, call)
        .await
        .unwrap_or_else(|_| Err(format!("no answer within {SEND_TIMEOUT:?}")))
}

/// This machine's name, for the events' `server_name`.
fn server_name() -> String {
    ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .find_map(|p| std::fs::read_to_string(p).ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dsn_parsing() {
        let d = Dsn::parse("https://abc123@o1.ingest.sentry.io/42").unwrap();
        assert_eq!(d.public_key, "abc123");
        assert_eq!(d.store_url, "https://o1.ingest.sentry.io/api/42/store/");
        assert_eq!(
            d.auth_header(),
            format!(
                "Sentry sentry_version=7, sentry_key=abc123, sentry_client=parsec-server/{}",
                env!("CARGO_PKG_VERSION")
            )
        );
        let d = Dsn::parse("http://key:legacysecret@127.0.0.1:9000/sentry/7/").unwrap();
        assert_eq!(d.public_key, "key");
        assert_eq!(d.store_url, "http://127.0.0.1:9000/sentry/api/7/store/");
        for bad in [
            "",
            "sentry.io/1",
            "ftp://k@h/1",
            "https://h/1",
            "https://@h/1",
            "https://k@h",
            "https://k@h/",
        ] {
            assert!(Dsn::parse(bad).is_err(), "{bad}");
        }
        let err = Dsn::parse("https://SECRETKEY@h").unwrap_err();
        assert!(!err.contains("SECRETKEY"));
        assert!(!format!("{:?}", Dsn::parse("https://SECRETKEY@h/1").unwrap()).contains("SECRETKEY"));
    }

    #[test]
    fn a_full_queue_drops_and_counts() {
        // A listener that never answers: the sender is stuck on its first
        // event (for SEND_TIMEOUT) while the queue fills up.
        let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let dsn = format!("http://k@{}/1", silent.local_addr().unwrap());
        let reporter = Reporter::start(Dsn::parse(&dsn).unwrap(), "test").unwrap();
        let record = log::Record::builder()
            .level(log::Level::Error)
            .target("t")
            .args(format_args!("boom"))
            .build();
        let started = Instant::now();
        for _ in 0..QUEUE_CAPACITY + 20 {
            reporter.capture(&record);
        }
        assert!(started.elapsed() < Duration::from_secs(1), "capture must not block");
        assert!(reporter.dropped() >= 19, "{}", reporter.dropped());
    }
}
