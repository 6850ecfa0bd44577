//! Logging through `log` + `env_logger`: console lines or one JSON object per
//! line, to stderr or a file. Secrets never reach a log line: commands log
//! their name, organization, device and status only.

use std::io::Write;

use crate::config::{LogConfig, LogFormat, LogLevel};

fn filter(level: LogLevel) -> log::LevelFilter {
    match level {
        LogLevel::Debug => log::LevelFilter::Debug,
        LogLevel::Info => log::LevelFilter::Info,
        LogLevel::Warning => log::LevelFilter::Warn,
        LogLevel::Error | LogLevel::Critical => log::LevelFilter::Error,
    }
}

/// Installs the global logger.
pub fn init(cfg: &LogConfig) -> anyhow::Result<()> {
    let mut builder = env_logger::Builder::new();
    // Our crates at the configured level; dependencies one notch quieter.
    builder.filter_level(filter(cfg.level).min(log::LevelFilter::Warn));
    for module in ["parsec_server", "parsec_actors", "parsec_protocol"] {
        builder.filter_module(module, filter(cfg.level));
    }
    if let Some(path) = &cfg.file {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| anyhow::anyhow!("cannot open log file {}: {e}", path.display()))?;
        builder.target(env_logger::Target::Pipe(Box::new(file)));
    }
    match cfg.format {
        LogFormat::Json => {
            builder.format(|buf, record| {
                let line = serde_json::json!({
                    "timestamp": chrono_like_now(),
                    "level": record.level().as_str().to_lowercase(),
                    "logger": record.target(),
                    "event": record.args().to_string(),
                });
                writeln!(buf, "{line}")
            });
        }
        LogFormat::Console => {
            builder.format_timestamp_micros();
        }
    }
    builder.try_init().map_err(|e| anyhow::anyhow!("logger: {e}"))
}

fn chrono_like_now() -> String {
    parsec_protocol::types::DateTime::now().to_rfc3339()
}
