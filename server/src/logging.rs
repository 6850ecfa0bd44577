//! Logging through `log` + `env_logger`: console lines or one JSON object per
//! line, to stderr or a file, and ERROR records reported to Sentry when
//! `--sentry-dsn` is set. Secrets never reach a log line: commands log their
//! name, organization, device, status and duration only; the HTTP access log
//! leaves query strings out.

use std::io::Write;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use crate::config::{LogConfig, LogFormat, LogLevel};
use crate::sentry;

fn filter(level: LogLevel) -> log::LevelFilter {
    match level {
        LogLevel::Debug => log::LevelFilter::Debug,
        LogLevel::Info => log::LevelFilter::Info,
        LogLevel::Warning => log::LevelFilter::Warn,
        LogLevel::Error | LogLevel::Critical => log::LevelFilter::Error,
    }
}

/// The Sentry reporter of the installed logger, if any.
static REPORTER: OnceLock<Arc<sentry::Reporter>> = OnceLock::new();
/// Set once the global logger is installed: whether it writes to a file.
static INSTALLED: OnceLock<bool> = OnceLock::new();

/// `--sentry-dsn` and `--sentry-environment`.
pub struct SentryConfig<'a> {
    pub dsn: &'a str,
    pub environment: &'a str,
}

/// Installs the global logger, without Sentry.
pub fn init(cfg: &LogConfig) -> anyhow::Result<()> {
    init_with_sentry(cfg, None)
}

/// Installs the global logger; with `sentry`, ERROR records are also reported.
pub fn init_with_sentry(cfg: &LogConfig, sentry: Option<SentryConfig<'_>>) -> anyhow::Result<()> {
    let reporter = match sentry {
        Some(s) => {
            let dsn = sentry::Dsn::parse(s.dsn).map_err(anyhow::Error::msg)?;
            let reporter = sentry::Reporter::start(dsn, s.environment)
                .map_err(|e| anyhow::anyhow!("cannot start the Sentry reporter: {e}"))?;
            Some(Arc::new(reporter))
        }
        None => None,
    };
    let inner = builder(cfg)?.build();
    let max_level = inner.filter();
    let logger = ServerLogger {
        inner,
        sentry: reporter.clone(),
    };
    log::set_boxed_logger(Box::new(logger)).map_err(|e| anyhow::anyhow!("logger: {e}"))?;
    log::set_max_level(max_level);
    let _ = INSTALLED.set(cfg.file.is_some());
    if let Some(reporter) = reporter {
        let _ = REPORTER.set(reporter);
        // A panic is an error worth an event (then the default report).
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            log::error!(target: "panic", "{info}");
            previous(info);
        }));
    }
    Ok(())
}

/// The error that stops the server, printed on stderr by `main`: also
/// written to the log file (if the log does not go to stderr already) and
/// reported to Sentry.
pub fn fatal(message: &str) {
    let args = format_args!("server stopped on error: {message}");
    let record = log::Record::builder()
        .level(log::Level::Error)
        .target("parsec_server")
        .module_path_static(Some(module_path!()))
        .args(args)
        .build();
    match INSTALLED.get() {
        Some(true) => log::logger().log(&record),
        Some(false) => {
            if let Some(reporter) = REPORTER.get() {
                reporter.capture(&record);
            }
        }
        None => {}
    }
}

/// Before exiting: waits (at most `limit`) for queued Sentry events, and
/// flushes the log output.
pub fn flush(limit: Duration) {
    if let Some(reporter) = REPORTER.get() {
        if !reporter.flush(limit) {
            eprintln!("sentry: some error events were not sent before exiting");
        }
        let dropped = reporter.dropped();
        if dropped > 0 {
            eprintln!("sentry: {dropped} error events dropped (queue full)");
        }
    }
    log::logger().flush();
}

/// `env_logger` configured from the command line.
fn builder(cfg: &LogConfig) -> anyhow::Result<env_logger::Builder> {
    let mut builder = env_logger::Builder::new();
    // Our crates at the configured level; dependencies one notch quieter.
    builder.filter_level(filter(cfg.level).min(log::LevelFilter::Warn));
    for module in ["parsec_server", "parsec_actors", "parsec_protocol", "panic"] {
        builder.filter_module(module, filter(cfg.level));
    }
    if let Some(path) = &cfg.file {
        // Truncated, as the reference opens it (`click.open_file(path, "w")`).
        let file = std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .open(path)
            .map_err(|e| anyhow::anyhow!("cannot open log file {}: {e}", path.display()))?;
        builder.target(env_logger::Target::Pipe(Box::new(file)));
    }
    match cfg.format {
        LogFormat::Json => {
            // One object per line: serde_json escapes the newlines of a message.
            builder.format(|buf, record| writeln!(buf, "{}", json_line(record)));
        }
        LogFormat::Console => {
            builder.format_timestamp_micros();
        }
    }
    Ok(builder)
}

/// The JSON form of a record (structlog's `JSONRenderer` keys).
pub fn json_line(record: &log::Record<'_>) -> serde_json::Value {
    serde_json::json!({
        "timestamp": parsec_protocol::types::DateTime::now().to_rfc3339(),
        "level": match record.level() {
            log::Level::Error => "error",
            log::Level::Warn => "warning",
            log::Level::Info => "info",
            log::Level::Debug | log::Level::Trace => "debug",
        },
        "logger": record.target(),
        "event": record.args().to_string(),
    })
}

/// `env_logger` plus the Sentry reporter.
struct ServerLogger {
    inner: env_logger::Logger,
    sentry: Option<Arc<sentry::Reporter>>,
}

impl log::Log for ServerLogger {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        self.inner.enabled(metadata)
    }

    fn log(&self, record: &log::Record<'_>) {
        if !self.inner.matches(record) {
            return;
        }
        self.inner.log(record);
        if record.level() == log::Level::Error
            && let Some(sentry) = &self.sentry
        {
            sentry.capture(record);
        }
    }

    fn flush(&self) {
        self.inner.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_lines_are_single_line_objects() {
        let record = log::Record::builder()
            .level(log::Level::Warn)
            .target("parsec_actors::x")
            .args(format_args!("two\nlines \"quoted\""))
            .build();
        let line = json_line(&record).to_string();
        assert!(!line.contains('\n'));
        let back: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(back["event"], "two\nlines \"quoted\"");
        assert_eq!(back["level"], "warning");
        assert_eq!(back["logger"], "parsec_actors::x");
    }
}
