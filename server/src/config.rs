//! The `parsec-server` command line: `run` and `migrate`, a port of the reference
//! `parsec backend run` / `parsec backend migrate` (`shared/protocol/cli.md`).
//!
//! [`parse_command_line`] turns the process arguments and environment into a [`Command`] once,
//! at startup; nothing else reads the environment. Each option resolves as command line, then
//! its environment variable (`PARSEC_*`; `DEBUG` for `run --debug`), then its default, with
//! click's rules: an empty variable counts as unset, booleans accept `1/0 true/false yes/no
//! on/off t/f y/n`, `PARSEC_BLOCKSTORE` is whitespace-separated. `PARSEC_CMD_ARGS` words are
//! appended to the arguments, and `run --dev` fills in the options missing from the command
//! line (see `args.rs` for the argument handling).
//!
//! Errors are one line worded like click's (`Error: Invalid value for '--blockstore' / '-b':
//! …`) with exit code 2; `--help` exits with code 0. This module never starts anything and
//! never prints: the caller prints [`CliExit::message`]. Secrets (tokens, passwords, database
//! URL, Sentry DSN) are wrapped in [`Secret`] so `Debug` output never shows them.

mod addr;
mod args;
mod blockstore;

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use argh::FromArgs;

pub use addr::BackendAddr;
pub use blockstore::{BlockStoreConfig, S3Config, SwiftConfig};

use args::{MigrateArgs, OptSpec, RunArgs, SubCommand, TopLevel, migrate_opt, run_opt};

/// `--port` default, also the port of the `--dev` backend address.
pub const DEFAULT_BACKEND_PORT: u16 = 6777;
/// `--email-sender` default with `--email-host MOCKED`.
pub const DEFAULT_EMAIL_SENDER: &str = "no-reply@parsec.com";

/// What the process must do.
#[derive(Debug)]
pub enum Command {
    Run(Box<RunConfig>),
    Migrate(MigrateConfig),
}

/// The process must stop: print `message` (stdout when `code` is 0, stderr otherwise) and exit
/// with `code` (0 after `--help`, 2 on bad usage or a bad value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CliExit {
    pub code: i32,
    pub message: String,
}

impl CliExit {
    /// Bad usage: `Error: <detail>`, exit code 2.
    fn usage(detail: impl fmt::Display) -> Self {
        Self {
            code: 2,
            message: format!("Error: {detail}"),
        }
    }

    fn from_argh(exit: argh::EarlyExit) -> Self {
        match exit.status {
            Ok(()) => Self {
                code: 0,
                message: exit.output.trim_end().to_string(),
            },
            Err(()) => {
                let words: Vec<&str> = exit.output.split_whitespace().collect();
                Self::usage(words.join(" "))
            }
        }
    }
}

impl fmt::Display for CliExit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for CliExit {}

/// A value that must never be logged: `Debug` and `Display` print `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The real value, for the one place that needs it (never for logs).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// `--db`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DbUrl {
    /// Exactly `MOCKED`: everything in memory.
    Mocked,
    /// The full `postgresql://` / `postgres://` URL (it may hold a password).
    Postgresql(Secret),
}

impl DbUrl {
    /// `MOCKED` or `POSTGRESQL`, for the startup line.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Mocked => "MOCKED",
            Self::Postgresql(_) => "POSTGRESQL",
        }
    }
}

/// How invitation e-mails leave (`cli.md` §1.1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EmailConfig {
    /// `--email-host MOCKED`: each e-mail is written to a temporary file.
    Mocked {
        sender: String,
    },
    Smtp(SmtpConfig),
}

impl EmailConfig {
    /// `MOCKED` or `SMTP`, for the startup line.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Mocked { .. } => "MOCKED",
            Self::Smtp(_) => "SMTP",
        }
    }

    /// The `From:` address.
    pub fn sender(&self) -> &str {
        match self {
            Self::Mocked { sender } => sender,
            Self::Smtp(smtp) => &smtp.sender,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SmtpConfig {
    pub host: String,
    pub port: u16,
    /// Login is attempted only when both user and password are set.
    pub host_user: Option<String>,
    pub host_password: Option<Secret>,
    /// Implicit TLS (SMTPS); the reference help text swaps ssl and tls, the code does this.
    pub use_ssl: bool,
    /// STARTTLS; ignored when `use_ssl` is set.
    pub use_tls: bool,
    pub sender: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogLevel {
    Debug,
    Info,
    Warning,
    Error,
    Critical,
}

impl LogLevel {
    const CHOICES: [(&'static str, Self); 5] = [
        ("DEBUG", Self::Debug),
        ("INFO", Self::Info),
        ("WARNING", Self::Warning),
        ("ERROR", Self::Error),
        ("CRITICAL", Self::Critical),
    ];

    /// The `log` crate has no critical level: `Critical` filters like `Error`.
    pub fn level_filter(self) -> log::LevelFilter {
        match self {
            Self::Debug => log::LevelFilter::Debug,
            Self::Info => log::LevelFilter::Info,
            Self::Warning => log::LevelFilter::Warn,
            Self::Error | Self::Critical => log::LevelFilter::Error,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Console,
    Json,
}

impl LogFormat {
    const CHOICES: [(&'static str, Self); 2] = [("CONSOLE", Self::Console), ("JSON", Self::Json)];
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogConfig {
    pub level: LogLevel,
    pub format: LogFormat,
    /// `None` (also for `-`) means stderr. The reference opens the file in `w` mode
    /// (truncating it).
    pub file: Option<PathBuf>,
}

/// Everything `run` needs, resolved and validated.
#[derive(Clone, Debug)]
pub struct RunConfig {
    pub host: String,
    pub port: u16,
    pub db: DbUrl,
    pub db_min_connections: u32,
    pub db_max_connections: u32,
    /// `0` means fail on the first connection error (`cli.md` §1.3).
    pub maximum_database_connection_attempts: u32,
    pub pause_before_retry_database_connection: Duration,
    pub blockstore: BlockStoreConfig,
    pub administration_token: Secret,
    pub spontaneous_organization_bootstrap: bool,
    pub organization_bootstrap_webhook: Option<String>,
    /// `None` means no limit.
    pub organization_initial_active_users_limit: Option<u64>,
    pub organization_initial_user_profile_outsider_allowed: bool,
    pub backend_addr: BackendAddr,
    pub email: EmailConfig,
    /// `(header name lowercased, expected value)`.
    pub forward_proto_enforce_https: Option<(String, String)>,
    pub ssl_keyfile: Option<PathBuf>,
    /// TLS is enabled on the listener when set (the key may be in this file or in
    /// `ssl_keyfile`).
    pub ssl_certfile: Option<PathBuf>,
    pub log: LogConfig,
    pub sentry_dsn: Option<Secret>,
    pub sentry_environment: String,
    pub debug: bool,
    pub dev: bool,
}

/// Everything `migrate` needs.
#[derive(Clone, Debug)]
pub struct MigrateConfig {
    /// A `postgresql://` / `postgres://` URL.
    pub db: Secret,
    pub dry_run: bool,
    pub log: LogConfig,
    pub debug: bool,
}

/// Parses the process arguments **without the program name** (`std::env::args().skip(1)`),
/// with `PARSEC_CMD_ARGS` appended, the environment (`env(name)` returns the variable) and
/// `--dev`.
pub fn parse_command_line(args: Vec<String>, env: &dyn Fn(&str) -> Option<String>) -> Result<Command, CliExit> {
    let mut words = args;
    words.extend(args::cmd_args_from_env(env));
    let words = args::normalize(&words)?;
    let words: Vec<&str> = words.iter().map(String::as_str).collect();
    let top = TopLevel::from_args(&[args::PROGRAM_NAME], &words).map_err(CliExit::from_argh)?;
    let env = Env(env);
    match top.command {
        SubCommand::Run(cli) => Ok(Command::Run(Box::new(resolve_run(*cli, &env)?))),
        SubCommand::Migrate(cli) => Ok(Command::Migrate(resolve_migrate(cli, &env)?)),
    }
}

fn resolve_run(mut cli: RunArgs, env: &Env<'_>) -> Result<RunConfig, CliExit> {
    use run_opt as o;

    if cli.dev {
        apply_dev_mode(&mut cli)?;
    }

    // Same order as the reference declares its options, so the first error reported for a
    // bad command line is the same in most cases.
    let host = env.value(cli.host, &o::HOST).unwrap_or_else(|| "127.0.0.1".to_string());
    let port = env.int(cli.port, &o::PORT)?.unwrap_or(DEFAULT_BACKEND_PORT);
    let db = parse_run_db(env.required(cli.db, &o::DB)?)?;
    let db_min_connections = env.int(cli.db_min_connections, &o::DB_MIN_CONNECTIONS)?.unwrap_or(5);
    let db_max_connections = env.int(cli.db_max_connections, &o::DB_MAX_CONNECTIONS)?.unwrap_or(7);
    let maximum_database_connection_attempts = env
        .int(
            cli.maximum_database_connection_attempts,
            &o::MAXIMUM_DATABASE_CONNECTION_ATTEMPTS,
        )?
        .unwrap_or(10);
    let pause_before_retry_database_connection = env
        .value(
            cli.pause_before_retry_database_connection,
            &o::PAUSE_BEFORE_RETRY_DATABASE_CONNECTION,
        )
        .map(|raw| parse_seconds(&o::PAUSE_BEFORE_RETRY_DATABASE_CONNECTION, &raw))
        .transpose()?
        .unwrap_or(Duration::from_secs(1));
    let blockstore_values = env.repeated(cli.blockstore, &o::BLOCKSTORE);
    if blockstore_values.is_empty() {
        return Err(missing(&o::BLOCKSTORE));
    }
    let blockstore = BlockStoreConfig::parse(&blockstore_values).map_err(|detail| invalid(&o::BLOCKSTORE, detail))?;
    let administration_token = Secret::new(env.required(cli.administration_token, &o::ADMINISTRATION_TOKEN)?);
    let spontaneous_organization_bootstrap = env.switch(
        cli.spontaneous_organization_bootstrap,
        &o::SPONTANEOUS_ORGANIZATION_BOOTSTRAP,
    )?;
    let organization_bootstrap_webhook =
        non_empty(env.value(cli.organization_bootstrap_webhook, &o::ORGANIZATION_BOOTSTRAP_WEBHOOK));
    let organization_initial_active_users_limit = env.int(
        cli.organization_initial_active_users_limit,
        &o::ORGANIZATION_INITIAL_ACTIVE_USERS_LIMIT,
    )?;
    let outsider = &o::ORGANIZATION_INITIAL_USER_PROFILE_OUTSIDER_ALLOWED;
    let organization_initial_user_profile_outsider_allowed = env
        .value(cli.organization_initial_user_profile_outsider_allowed, outsider)
        .map(|raw| parse_bool_option(outsider, &raw))
        .transpose()?
        .unwrap_or(true);
    let raw_backend_addr = env.required(cli.backend_addr, &o::BACKEND_ADDR)?;
    let backend_addr = BackendAddr::parse(&raw_backend_addr).map_err(|reason| {
        // click only shows the value; the reason helps.
        invalid(&o::BACKEND_ADDR, format!("{raw_backend_addr} ({reason})"))
    })?;
    let email_host = env.required(cli.email_host, &o::EMAIL_HOST)?;
    let email_port = env.int(cli.email_port, &o::EMAIL_PORT)?.unwrap_or(25);
    let email_host_user = non_empty(env.value(cli.email_host_user, &o::EMAIL_HOST_USER));
    let email_host_password = non_empty(env.value(cli.email_host_password, &o::EMAIL_HOST_PASSWORD)).map(Secret::new);
    let email_use_ssl = env.switch(cli.email_use_ssl, &o::EMAIL_USE_SSL)?;
    let email_use_tls = env.switch(cli.email_use_tls, &o::EMAIL_USE_TLS)?;
    let email_sender = non_empty(env.value(cli.email_sender, &o::EMAIL_SENDER));
    let forward_proto_enforce_https = env
        .value(cli.forward_proto_enforce_https, &o::FORWARD_PROTO_ENFORCE_HTTPS)
        .map(|raw| parse_forward_proto(&raw))
        .transpose()?;
    let ssl_keyfile = env
        .value(cli.ssl_keyfile, &o::SSL_KEYFILE)
        .map(|raw| existing_file(&o::SSL_KEYFILE, raw))
        .transpose()?;
    let ssl_certfile = env
        .value(cli.ssl_certfile, &o::SSL_CERTFILE)
        .map(|raw| existing_file(&o::SSL_CERTFILE, raw))
        .transpose()?;
    let log = resolve_log(
        env,
        [cli.log_level, cli.log_format, cli.log_file],
        [&o::LOG_LEVEL, &o::LOG_FORMAT, &o::LOG_FILE],
        LogLevel::Info,
    )?;
    let sentry_dsn = non_empty(env.value(cli.sentry_dsn, &o::SENTRY_DSN)).map(Secret::new);
    let sentry_environment = env
        .value(cli.sentry_environment, &o::SENTRY_ENVIRONMENT)
        .unwrap_or_else(|| "production".to_string());
    let debug = env.switch(cli.debug, &o::DEBUG)?;

    // Rules across options.
    if let DbUrl::Postgresql(_) = db {
        if db_max_connections == 0 {
            return Err(invalid(&o::DB_MAX_CONNECTIONS, "must be greater than 0"));
        }
        if db_min_connections > db_max_connections {
            return Err(invalid(
                &o::DB_MIN_CONNECTIONS,
                format!("{db_min_connections} is greater than --db-max-connections ({db_max_connections})"),
            ));
        }
    }
    if db == DbUrl::Mocked && blockstore.uses_postgresql() {
        return Err(invalid(
            &o::BLOCKSTORE,
            "PostgreSQL block store is not available (--db is MOCKED)",
        ));
    }
    let email = if email_host == "MOCKED" {
        EmailConfig::Mocked {
            sender: email_sender.unwrap_or_else(|| DEFAULT_EMAIL_SENDER.to_string()),
        }
    } else {
        let Some(sender) = email_sender else {
            return Err(CliExit::usage(
                "--email-sender is required when --email-host is provided",
            ));
        };
        EmailConfig::Smtp(SmtpConfig {
            host: email_host,
            port: email_port,
            host_user: email_host_user,
            host_password: email_host_password,
            use_ssl: email_use_ssl,
            use_tls: email_use_tls,
            sender,
        })
    };
    if ssl_keyfile.is_some() && ssl_certfile.is_none() {
        // The reference starts, then fails every TLS handshake.
        return Err(invalid(
            &o::SSL_KEYFILE,
            "--ssl-certfile is required when --ssl-keyfile is provided",
        ));
    }

    Ok(RunConfig {
        host,
        port,
        db,
        db_min_connections,
        db_max_connections,
        maximum_database_connection_attempts,
        pause_before_retry_database_connection,
        blockstore,
        administration_token,
        spontaneous_organization_bootstrap,
        organization_bootstrap_webhook,
        organization_initial_active_users_limit,
        organization_initial_user_profile_outsider_allowed,
        backend_addr,
        email,
        forward_proto_enforce_https,
        ssl_keyfile,
        ssl_certfile,
        log,
        sentry_dsn,
        sentry_environment,
        debug,
        dev: cli.dev,
    })
}

/// `--dev`: each option below that is not on the command line gets its dev value, as if it
/// had been typed, so its environment variable is not read.
fn apply_dev_mode(cli: &mut RunArgs) -> Result<(), CliExit> {
    // The command-line port only: `PARSEC_PORT` is not looked at (reference behaviour).
    let port = match cli.port.as_deref() {
        Some(raw) => parse_int(&run_opt::PORT, raw)?,
        None => DEFAULT_BACKEND_PORT,
    };
    cli.debug = true;
    cli.db.get_or_insert_with(|| "MOCKED".to_string());
    if cli.blockstore.is_empty() {
        cli.blockstore.push("MOCKED".to_string());
    }
    cli.administration_token.get_or_insert_with(|| "s3cr3t".to_string());
    cli.email_host.get_or_insert_with(|| "MOCKED".to_string());
    cli.email_sender.get_or_insert_with(|| DEFAULT_EMAIL_SENDER.to_string());
    cli.backend_addr
        .get_or_insert_with(|| format!("parsec://localhost:{port}"));
    Ok(())
}

fn resolve_migrate(cli: MigrateArgs, env: &Env<'_>) -> Result<MigrateConfig, CliExit> {
    use migrate_opt as o;
    let db = env.required(cli.db, &o::DB)?;
    if !(db.starts_with("postgresql://") || db.starts_with("postgres://")) {
        return Err(invalid(&o::DB, "Must start with `postgresql://` or `postgres://`"));
    }
    let log = resolve_log(
        env,
        [cli.log_level, cli.log_format, cli.log_file],
        [&o::LOG_LEVEL, &o::LOG_FORMAT, &o::LOG_FILE],
        LogLevel::Warning,
    )?;
    let debug = env.switch(cli.debug, &o::DEBUG)?;
    Ok(MigrateConfig {
        db: Secret::new(db),
        dry_run: cli.dry_run,
        log,
        debug,
    })
}

/// `--log-level`, `--log-format`, `--log-file`, in that order.
fn resolve_log(
    env: &Env<'_>,
    cli: [Option<String>; 3],
    specs: [&OptSpec; 3],
    default_level: LogLevel,
) -> Result<LogConfig, CliExit> {
    let [level, format, file] = cli;
    let level = env
        .value(level, specs[0])
        .map(|raw| choice(specs[0], &raw, &LogLevel::CHOICES))
        .transpose()?
        .unwrap_or(default_level);
    let format = env
        .value(format, specs[1])
        .map(|raw| choice(specs[1], &raw, &LogFormat::CHOICES))
        .transpose()?
        .unwrap_or(LogFormat::Console);
    let file = match env.value(file, specs[2]) {
        None => None,
        Some(raw) if raw == "-" => None,
        Some(raw) if raw.is_empty() => {
            return Err(invalid(specs[2], "File name must not be empty."));
        }
        Some(raw) => Some(PathBuf::from(raw)),
    };
    Ok(LogConfig { level, format, file })
}

/// Reads options from the command-line value or the environment.
struct Env<'a>(&'a dyn Fn(&str) -> Option<String>);

impl Env<'_> {
    /// click ignores empty variables.
    fn var(&self, name: &str) -> Option<String> {
        (self.0)(name).filter(|value| !value.is_empty())
    }

    fn value(&self, cli: Option<String>, spec: &OptSpec) -> Option<String> {
        cli.or_else(|| spec.env.and_then(|name| self.var(name)))
    }

    fn required(&self, cli: Option<String>, spec: &OptSpec) -> Result<String, CliExit> {
        self.value(cli, spec).ok_or_else(|| missing(spec))
    }

    /// A flag: set on the command line, or a boolean variable.
    fn switch(&self, cli: bool, spec: &OptSpec) -> Result<bool, CliExit> {
        if cli {
            return Ok(true);
        }
        match spec.env.and_then(|name| self.var(name)) {
            Some(raw) => parse_bool_option(spec, &raw),
            None => Ok(false),
        }
    }

    /// A repeatable option: the command-line values, else the whitespace-separated variable.
    fn repeated(&self, cli: Vec<String>, spec: &OptSpec) -> Vec<String> {
        if !cli.is_empty() {
            return cli;
        }
        spec.env
            .and_then(|name| self.var(name))
            .map(|raw| raw.split_whitespace().map(str::to_string).collect())
            .unwrap_or_default()
    }

    fn int<T: IntRange>(&self, cli: Option<String>, spec: &OptSpec) -> Result<Option<T>, CliExit> {
        self.value(cli, spec).map(|raw| parse_int(spec, &raw)).transpose()
    }
}

fn missing(spec: &OptSpec) -> CliExit {
    CliExit::usage(format!("Missing option {}.", spec.hint()))
}

fn invalid(spec: &OptSpec, detail: impl fmt::Display) -> CliExit {
    CliExit::usage(format!("Invalid value for {}: {detail}", spec.hint()))
}

fn non_empty(value: Option<String>) -> Option<String> {
    value.filter(|v| !v.is_empty())
}

fn parse_run_db(raw: String) -> Result<DbUrl, CliExit> {
    // Exactly `MOCKED`: the reference picks the in-memory implementation on `== "MOCKED"`.
    if raw == "MOCKED" {
        Ok(DbUrl::Mocked)
    } else if raw.starts_with("postgresql://") || raw.starts_with("postgres://") {
        Ok(DbUrl::Postgresql(Secret::new(raw)))
    } else {
        Err(invalid(
            &run_opt::DB,
            "Must be `MOCKED` or start with `postgresql://` or `postgres://`",
        ))
    }
}

/// click's `BOOL` type.
fn parse_bool(raw: &str) -> Option<bool> {
    match raw.trim().to_lowercase().as_str() {
        "1" | "true" | "t" | "yes" | "y" | "on" => Some(true),
        "0" | "false" | "f" | "no" | "n" | "off" => Some(false),
        _ => None,
    }
}

fn parse_bool_option(spec: &OptSpec, raw: &str) -> Result<bool, CliExit> {
    parse_bool(raw).ok_or_else(|| invalid(spec, format!("'{raw}' is not a valid boolean.")))
}

/// Python's `int()`: surrounding whitespace, a sign, digits with single `_` between them.
fn parse_py_int(raw: &str) -> Option<i128> {
    let text = raw.trim();
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };
    let well_formed = !digits.is_empty()
        && !digits.starts_with('_')
        && !digits.ends_with('_')
        && !digits.contains("__")
        && digits.bytes().all(|b| b.is_ascii_digit() || b == b'_');
    if !well_formed {
        return None;
    }
    let digits: String = digits.chars().filter(|c| *c != '_').collect();
    // Too many digits for i128 is still an integer, just out of any range we accept.
    let value = digits.parse::<i128>().unwrap_or(i128::MAX);
    Some(if negative { -value } else { value })
}

/// Unsigned integer option types, with their range for click's error message.
trait IntRange: TryFrom<i128> {
    const MAX: i128;
}

macro_rules! int_range {
    ($($t:ty),*) => { $(impl IntRange for $t { const MAX: i128 = <$t>::MAX as i128; })* };
}
int_range!(u16, u32, u64);

fn parse_int<T: IntRange>(spec: &OptSpec, raw: &str) -> Result<T, CliExit> {
    let value = parse_py_int(raw).ok_or_else(|| invalid(spec, format!("'{raw}' is not a valid integer.")))?;
    T::try_from(value).map_err(|_| invalid(spec, format!("{} is not in the range 0<=x<={}.", raw.trim(), T::MAX)))
}

fn parse_seconds(spec: &OptSpec, raw: &str) -> Result<Duration, CliExit> {
    let seconds: f64 = raw
        .trim()
        .parse()
        .map_err(|_| invalid(spec, format!("'{raw}' is not a valid float.")))?;
    Duration::try_from_secs_f64(seconds)
        .map_err(|_| invalid(spec, format!("{} is not a finite number of seconds >= 0.", raw.trim())))
}

/// click's `Choice`: case-sensitive.
fn choice<T: Copy>(spec: &OptSpec, raw: &str, choices: &[(&str, T)]) -> Result<T, CliExit> {
    choices
        .iter()
        .find(|(name, _)| *name == raw)
        .map(|(_, value)| *value)
        .ok_or_else(|| {
            let names: Vec<String> = choices.iter().map(|(name, _)| format!("'{name}'")).collect();
            invalid(spec, format!("'{raw}' is not one of {}.", names.join(", ")))
        })
}

/// `<header-name>:<header-value>`: exactly one colon; the name is lowercased (HTTP header
/// names are case-insensitive), the value is compared as is.
fn parse_forward_proto(raw: &str) -> Result<(String, String), CliExit> {
    match raw.split(':').collect::<Vec<_>>().as_slice() {
        [name, value] => Ok((name.to_lowercase(), (*value).to_string())),
        _ => Err(invalid(
            &run_opt::FORWARD_PROTO_ENFORCE_HTTPS,
            "Invalid format, should be `<header-name>:<header-value>`",
        )),
    }
}

/// click's `Path(exists=True, dir_okay=False)`, readable.
fn existing_file(spec: &OptSpec, raw: String) -> Result<PathBuf, CliExit> {
    let path = PathBuf::from(&raw);
    match std::fs::metadata(&path) {
        Err(_) => Err(invalid(spec, format!("File '{raw}' does not exist."))),
        Ok(meta) if meta.is_dir() => Err(invalid(spec, format!("File '{raw}' is a directory."))),
        Ok(_) => match std::fs::File::open(&path) {
            Ok(_) => Ok(path),
            Err(_) => Err(invalid(spec, format!("File '{raw}' is not readable."))),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const REQUIRED: &[&str] = &[
        "--db",
        "MOCKED",
        "-b",
        "MOCKED",
        "--administration-token",
        "tok",
        "--backend-addr",
        "parsec://localhost:6777?no_ssl=true",
        "--email-host",
        "MOCKED",
    ];

    fn env_of(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
        let vars: Vec<(String, String)> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        move |name| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
    }

    fn parse(args: &[&str], vars: &[(&str, &str)]) -> Result<Command, CliExit> {
        let args = args.iter().map(|a| a.to_string()).collect();
        parse_command_line(args, &env_of(vars))
    }

    fn run(args: &[&str], vars: &[(&str, &str)]) -> RunConfig {
        match parse(args, vars) {
            Ok(Command::Run(config)) => *config,
            other => panic!("expected run config, got {other:?}"),
        }
    }

    fn run_with_required(extra: &[&str], vars: &[(&str, &str)]) -> RunConfig {
        let args: Vec<&str> = REQUIRED.iter().chain(extra).copied().collect();
        run(&std::iter::once("run").chain(args).collect::<Vec<_>>(), vars)
    }

    fn migrate(args: &[&str], vars: &[(&str, &str)]) -> MigrateConfig {
        match parse(
            &std::iter::once("migrate")
                .chain(args.iter().copied())
                .collect::<Vec<_>>(),
            vars,
        ) {
            Ok(Command::Migrate(config)) => config,
            other => panic!("expected migrate config, got {other:?}"),
        }
    }

    /// The one-line usage error of a failing parse.
    fn error(args: &[&str], vars: &[(&str, &str)]) -> String {
        match parse(args, vars) {
            Err(exit) => {
                assert_eq!(exit.code, 2, "{exit:?}");
                assert!(!exit.message.contains('\n'), "one line: {:?}", exit.message);
                exit.message
            }
            Ok(command) => panic!("expected an error, got {command:?}"),
        }
    }

    fn run_error(extra: &[&str], vars: &[(&str, &str)]) -> String {
        let args: Vec<&str> = std::iter::once("run")
            .chain(REQUIRED.iter().copied())
            .chain(extra.iter().copied())
            .collect();
        error(&args, vars)
    }

    fn help(args: &[&str]) -> String {
        match parse(args, &[]) {
            Err(CliExit { code: 0, message }) => message,
            other => panic!("expected help, got {other:?}"),
        }
    }

    #[test]
    fn run_defaults() {
        let c = run_with_required(&[], &[]);
        assert_eq!(c.host, "127.0.0.1");
        assert_eq!(c.port, 6777);
        assert_eq!(c.db, DbUrl::Mocked);
        assert_eq!(c.db.kind(), "MOCKED");
        assert_eq!((c.db_min_connections, c.db_max_connections), (5, 7));
        assert_eq!(c.maximum_database_connection_attempts, 10);
        assert_eq!(c.pause_before_retry_database_connection, Duration::from_secs(1));
        assert_eq!(c.blockstore, BlockStoreConfig::Mocked);
        assert_eq!(c.administration_token.expose(), "tok");
        assert!(!c.spontaneous_organization_bootstrap);
        assert_eq!(c.organization_bootstrap_webhook, None);
        assert_eq!(c.organization_initial_active_users_limit, None);
        assert!(c.organization_initial_user_profile_outsider_allowed);
        assert_eq!(c.backend_addr.to_url(), "parsec://localhost:6777?no_ssl=true");
        assert_eq!(
            c.email,
            EmailConfig::Mocked {
                sender: "no-reply@parsec.com".into()
            }
        );
        assert_eq!(c.email.kind(), "MOCKED");
        assert_eq!(c.forward_proto_enforce_https, None);
        assert_eq!((c.ssl_keyfile.clone(), c.ssl_certfile.clone()), (None, None));
        assert_eq!(
            c.log,
            LogConfig {
                level: LogLevel::Info,
                format: LogFormat::Console,
                file: None
            }
        );
        assert!(c.sentry_dsn.is_none());
        assert_eq!(c.sentry_environment, "production");
        assert!(!c.debug);
        assert!(!c.dev);
    }

    #[test]
    fn run_every_option_from_the_command_line() {
        let c = run(
            &[
                "run",
                "-H",
                "0.0.0.0",
                "-P",
                "1234",
                "--db",
                "postgresql://user:pw@localhost/parsec",
                "--db-min-connections",
                "1",
                "--db-max-connections",
                "20",
                "--maximum-database-connection-attempts",
                "0",
                "--pause-before-retry-database-connection",
                "0.25",
                "-b",
                "POSTGRESQL",
                "--administration-token",
                "tok",
                "--spontaneous-organization-bootstrap",
                "--organization-bootstrap-webhook",
                "https://hook.example.com/x",
                "--organization-initial-active-users-limit",
                "42",
                "--organization-initial-user-profile-outsider-allowed",
                "no",
                "--backend-addr",
                "parsec://parsec.example.com",
                "--email-host",
                "smtp.example.com",
                "--email-port",
                "465",
                "--email-host-user",
                "bob",
                "--email-host-password",
                "pw",
                "--email-use-ssl",
                "--email-use-tls",
                "--email-sender",
                "parsec@example.com",
                "--forward-proto-enforce-https",
                "X-Forwarded-Proto:https",
                "-l",
                "DEBUG",
                "-f",
                "JSON",
                "-o",
                "/var/log/parsec.log",
                "--sentry-dsn",
                "https://key@sentry.example.com/1",
                "--sentry-environment",
                "staging",
                "--debug",
            ],
            &[],
        );
        assert_eq!((c.host.as_str(), c.port), ("0.0.0.0", 1234));
        assert_eq!(
            c.db,
            DbUrl::Postgresql(Secret::new("postgresql://user:pw@localhost/parsec"))
        );
        assert_eq!(c.db.kind(), "POSTGRESQL");
        assert_eq!((c.db_min_connections, c.db_max_connections), (1, 20));
        assert_eq!(c.maximum_database_connection_attempts, 0);
        assert_eq!(c.pause_before_retry_database_connection, Duration::from_millis(250));
        assert_eq!(c.blockstore, BlockStoreConfig::Postgresql);
        assert!(c.spontaneous_organization_bootstrap);
        assert_eq!(
            c.organization_bootstrap_webhook.as_deref(),
            Some("https://hook.example.com/x")
        );
        assert_eq!(c.organization_initial_active_users_limit, Some(42));
        assert!(!c.organization_initial_user_profile_outsider_allowed);
        assert_eq!(c.backend_addr.http_url(), "https://parsec.example.com");
        assert_eq!(
            c.email,
            EmailConfig::Smtp(SmtpConfig {
                host: "smtp.example.com".into(),
                port: 465,
                host_user: Some("bob".into()),
                host_password: Some(Secret::new("pw")),
                use_ssl: true,
                use_tls: true,
                sender: "parsec@example.com".into(),
            })
        );
        assert_eq!(c.email.kind(), "SMTP");
        assert_eq!(c.email.sender(), "parsec@example.com");
        assert_eq!(
            c.forward_proto_enforce_https,
            Some(("x-forwarded-proto".into(), "https".into()))
        );
        assert_eq!(
            c.log,
            LogConfig {
                level: LogLevel::Debug,
                format: LogFormat::Json,
                file: Some("/var/log/parsec.log".into())
            }
        );
        assert_eq!(
            c.sentry_dsn.as_ref().map(Secret::expose),
            Some("https://key@sentry.example.com/1")
        );
        assert_eq!(c.sentry_environment, "staging");
        assert!(c.debug);
    }

    #[test]
    fn run_every_option_from_the_environment() {
        let c = run(
            &["run"],
            &[
                ("PARSEC_HOST", "0.0.0.0"),
                ("PARSEC_PORT", "1234"),
                ("PARSEC_DB", "postgres://h/db"),
                ("PARSEC_DB_MIN_CONNECTIONS", "2"),
                ("PARSEC_DB_MAX_CONNECTIONS", "3"),
                ("PARSEC_MAXIMUM_DATABASE_CONNECTION_ATTEMPTS", "4"),
                ("PARSEC_PAUSE_BEFORE_RETRY_DATABASE_CONNECTION", "2.5"),
                ("PARSEC_BLOCKSTORE", "  RAID1:0:MOCKED\tRAID1:1:POSTGRESQL  "),
                ("PARSEC_ADMINISTRATION_TOKEN", "tok"),
                ("PARSEC_SPONTANEOUS_ORGANIZATION_BOOTSTRAP", "true"),
                ("PARSEC_ORGANIZATION_BOOTSTRAP_WEBHOOK", "http://hook"),
                ("PARSEC_ORGANIZATION_INITIAL_ACTIVE_USERS_LIMIT", "10"),
                ("PARSEC_ORGANIZATION_INITIAL_USER_PROFILE_OUTSIDER_ALLOWED", "0"),
                ("PARSEC_BACKEND_ADDR", "parsec://example.com:443"),
                ("PARSEC_EMAIL_HOST", "smtp"),
                ("PARSEC_EMAIL_PORT", "587"),
                ("PARSEC_EMAIL_HOST_USER", "u"),
                ("PARSEC_EMAIL_HOST_PASSWORD", "p"),
                ("PARSEC_EMAIL_USE_SSL", "off"),
                ("PARSEC_EMAIL_USE_TLS", "on"),
                ("PARSEC_EMAIL_SENDER", "s@example.com"),
                ("PARSEC_FORWARD_PROTO_ENFORCE_HTTPS", "X-Proto:HTTPS"),
                ("PARSEC_LOG_LEVEL", "ERROR"),
                ("PARSEC_LOG_FORMAT", "JSON"),
                ("PARSEC_LOG_FILE", "-"),
                ("PARSEC_SENTRY_DSN", "https://dsn"),
                ("PARSEC_SENTRY_ENVIRONMENT", "dev"),
                ("DEBUG", "yes"),
            ],
        );
        assert_eq!((c.host.as_str(), c.port), ("0.0.0.0", 1234));
        assert_eq!(c.db, DbUrl::Postgresql(Secret::new("postgres://h/db")));
        assert_eq!((c.db_min_connections, c.db_max_connections), (2, 3));
        assert_eq!(c.maximum_database_connection_attempts, 4);
        assert_eq!(c.pause_before_retry_database_connection, Duration::from_millis(2500));
        assert_eq!(
            c.blockstore,
            BlockStoreConfig::Raid1(vec![BlockStoreConfig::Mocked, BlockStoreConfig::Postgresql])
        );
        assert!(c.spontaneous_organization_bootstrap);
        assert_eq!(c.organization_bootstrap_webhook.as_deref(), Some("http://hook"));
        assert_eq!(c.organization_initial_active_users_limit, Some(10));
        assert!(!c.organization_initial_user_profile_outsider_allowed);
        assert_eq!(c.backend_addr.to_url(), "parsec://example.com");
        let EmailConfig::Smtp(smtp) = &c.email else {
            panic!("expected SMTP")
        };
        assert_eq!((smtp.host.as_str(), smtp.port), ("smtp", 587));
        assert_eq!(smtp.host_user.as_deref(), Some("u"));
        assert_eq!(smtp.host_password.as_ref().map(Secret::expose), Some("p"));
        assert_eq!((smtp.use_ssl, smtp.use_tls), (false, true));
        assert_eq!(smtp.sender, "s@example.com");
        assert_eq!(c.forward_proto_enforce_https, Some(("x-proto".into(), "HTTPS".into())));
        assert_eq!(
            c.log,
            LogConfig {
                level: LogLevel::Error,
                format: LogFormat::Json,
                file: None
            }
        );
        assert_eq!(c.sentry_dsn.as_ref().map(Secret::expose), Some("https://dsn"));
        assert_eq!(c.sentry_environment, "dev");
        assert!(c.debug);
    }

    #[test]
    fn command_line_beats_environment_and_empty_variables_are_unset() {
        let vars = [
            ("PARSEC_HOST", "10.0.0.1"),
            ("PARSEC_PORT", "1"),
            ("PARSEC_DB", "postgresql://env"),
            ("PARSEC_BLOCKSTORE", "POSTGRESQL"),
            ("PARSEC_EMAIL_PORT", ""),
            ("PARSEC_LOG_LEVEL", ""),
            ("DEBUG", ""),
        ];
        let c = run_with_required(&["--host", "::"], &vars);
        assert_eq!(c.host, "::");
        assert_eq!(c.port, 1); // not on the command line: the environment applies
        assert_eq!(c.db, DbUrl::Mocked);
        assert_eq!(c.blockstore, BlockStoreConfig::Mocked);
        assert_eq!(c.log.level, LogLevel::Info);
        assert!(!c.debug);
        // An empty required variable is missing.
        assert_eq!(error(&["run"], &[("PARSEC_DB", "")]), "Error: Missing option '--db'.");
    }

    #[test]
    fn boolean_environment_values() {
        for (value, expected) in [
            ("1", true),
            ("true", true),
            ("TRUE", true),
            ("yes", true),
            ("Y", true),
            ("on", true),
            ("t", true),
            (" True ", true),
            ("0", false),
            ("false", false),
            ("No", false),
            ("n", false),
            ("OFF", false),
            ("F", false),
        ] {
            let c = run_with_required(
                &[],
                &[
                    ("DEBUG", value),
                    ("PARSEC_EMAIL_USE_SSL", value),
                    ("PARSEC_ORGANIZATION_INITIAL_USER_PROFILE_OUTSIDER_ALLOWED", value),
                ],
            );
            assert_eq!(c.debug, expected, "{value}");
            assert_eq!(
                c.organization_initial_user_profile_outsider_allowed, expected,
                "{value}"
            );
        }
        assert_eq!(
            run_error(&[], &[("DEBUG", "maybe")]),
            "Error: Invalid value for '--debug': 'maybe' is not a valid boolean."
        );
        assert_eq!(
            run_error(&[], &[("PARSEC_EMAIL_USE_TLS", "2")]),
            "Error: Invalid value for '--email-use-tls': '2' is not a valid boolean."
        );
        assert_eq!(
            run_error(&["--organization-initial-user-profile-outsider-allowed", "nope"], &[]),
            "Error: Invalid value for '--organization-initial-user-profile-outsider-allowed': \
             'nope' is not a valid boolean."
        );
        // A flag on the command line wins over a false variable.
        assert!(run_with_required(&["--debug"], &[("DEBUG", "0")]).debug);
    }

    #[test]
    fn parsec_cmd_args_example_from_cli_md() {
        let c = run(
            &[
                "run",
                "--db",
                "MOCKED",
                "--blockstore",
                "MOCKED",
                "--administration-token",
                "tok",
                "--email-host",
                "MOCKED",
            ],
            &[
                ("MYPORT", "36780"),
                (
                    "PARSEC_CMD_ARGS",
                    "--port=$MYPORT --backend-addr=parsec://example.com:1234?no_ssl=true",
                ),
            ],
        );
        assert_eq!(c.port, 36780);
        assert_eq!(c.backend_addr.to_url(), "parsec://example.com:1234?no_ssl=true");
        assert!(!c.backend_addr.use_ssl);
    }

    #[test]
    fn parsec_cmd_args_precedence() {
        // Appended after the real arguments: single values from PARSEC_CMD_ARGS win, repeated
        // ones accumulate, and they beat the environment like any argument.
        let c = run(
            &[
                "run",
                "--port",
                "1",
                "-b",
                "RAID1:0:MOCKED",
                "--db",
                "MOCKED",
                "--administration-token",
                "real",
                "--email-host",
                "MOCKED",
                "--backend-addr",
                "parsec://a",
            ],
            &[
                ("PARSEC_HOST", "10.0.0.1"),
                ("DB_TOKEN", "from-env-var"),
                (
                    "PARSEC_CMD_ARGS",
                    "-P 2 --blockstore RAID1:1:MOCKED --administration-token=${DB_TOKEN} -H$UNSET",
                ),
            ],
        );
        assert_eq!(c.port, 2);
        assert_eq!(
            c.blockstore,
            BlockStoreConfig::Raid1(vec![BlockStoreConfig::Mocked, BlockStoreConfig::Mocked])
        );
        assert_eq!(c.administration_token.expose(), "from-env-var");
        assert_eq!(c.host, "$UNSET");
        // PARSEC_CMD_ARGS also feeds migrate, and options can come only from it.
        let m = migrate(&[], &[("PARSEC_CMD_ARGS", "--db postgresql://x --dry-run")]);
        assert_eq!(m.db.expose(), "postgresql://x");
        assert!(m.dry_run);
        // A subcommand can come from it too.
        let m = match parse(&[], &[("PARSEC_CMD_ARGS", "migrate --db postgres://y")]) {
            Ok(Command::Migrate(m)) => m,
            other => panic!("{other:?}"),
        };
        assert_eq!(m.db.expose(), "postgres://y");
    }

    #[test]
    fn dev_mode_injects_missing_options() {
        let c = run(&["run", "--dev"], &[]);
        assert!(c.dev);
        assert!(c.debug);
        assert_eq!(c.db, DbUrl::Mocked);
        assert_eq!(c.blockstore, BlockStoreConfig::Mocked);
        assert_eq!(c.administration_token.expose(), "s3cr3t");
        assert_eq!(
            c.email,
            EmailConfig::Mocked {
                sender: "no-reply@parsec.com".into()
            }
        );
        assert_eq!(c.backend_addr.to_url(), "parsec://localhost:6777");
        assert!(c.backend_addr.use_ssl);
        assert_eq!(c.port, 6777);
    }

    #[test]
    fn dev_mode_ignores_environment_of_injected_options() {
        let vars = [
            ("DEBUG", "0"),
            ("PARSEC_DB", "postgresql://env"),
            ("PARSEC_BLOCKSTORE", "POSTGRESQL"),
            ("PARSEC_ADMINISTRATION_TOKEN", "env-token"),
            ("PARSEC_EMAIL_HOST", "smtp.env"),
            ("PARSEC_EMAIL_SENDER", "env@example.com"),
            ("PARSEC_BACKEND_ADDR", "parsec://env.example.com"),
            ("PARSEC_PORT", "5000"),
            ("PARSEC_HOST", "0.0.0.0"),
        ];
        let c = run(&["run", "--dev"], &vars);
        assert!(c.debug);
        assert_eq!(c.db, DbUrl::Mocked);
        assert_eq!(c.blockstore, BlockStoreConfig::Mocked);
        assert_eq!(c.administration_token.expose(), "s3cr3t");
        assert_eq!(
            c.email,
            EmailConfig::Mocked {
                sender: "no-reply@parsec.com".into()
            }
        );
        // PARSEC_PORT applies to the listener but not to the dev backend address.
        assert_eq!(c.port, 5000);
        assert_eq!(c.backend_addr.to_url(), "parsec://localhost:6777");
        // Options --dev does not touch still read the environment.
        assert_eq!(c.host, "0.0.0.0");
    }

    #[test]
    fn dev_mode_explicit_options_win() {
        let c = run(
            &[
                "run",
                "--dev",
                "-P",
                "1234",
                "--db",
                "postgresql://x",
                "-b",
                "POSTGRESQL",
                "--administration-token",
                "mine",
                "--email-host",
                "smtp.example.com",
            ],
            &[("PARSEC_EMAIL_SENDER", "env@example.com")],
        );
        assert_eq!(c.port, 1234);
        assert_eq!(c.backend_addr.to_url(), "parsec://localhost:1234");
        assert_eq!(c.db, DbUrl::Postgresql(Secret::new("postgresql://x")));
        assert_eq!(c.blockstore, BlockStoreConfig::Postgresql);
        assert_eq!(c.administration_token.expose(), "mine");
        // --email-sender was not typed: the dev value, not the environment.
        assert_eq!(c.email.sender(), "no-reply@parsec.com");
        assert_eq!(c.email.kind(), "SMTP");
        // Through PARSEC_CMD_ARGS counts as typed.
        let c = run(
            &["run", "--dev"],
            &[("PARSEC_CMD_ARGS", "--backend-addr parsec://b?no_ssl=true")],
        );
        assert_eq!(c.backend_addr.to_url(), "parsec://b?no_ssl=true");
        // A bad command-line port is reported as such.
        assert_eq!(
            error(&["run", "--dev", "-P", "x"], &[]),
            "Error: Invalid value for '--port' / '-P': 'x' is not a valid integer."
        );
    }

    #[test]
    fn missing_required_options() {
        assert_eq!(error(&["run"], &[]), "Error: Missing option '--db'.");
        assert_eq!(
            error(&["run", "--db", "MOCKED"], &[]),
            "Error: Missing option '--blockstore' / '-b'."
        );
        assert_eq!(
            error(&["run", "--db", "MOCKED"], &[("PARSEC_BLOCKSTORE", "   ")]),
            "Error: Missing option '--blockstore' / '-b'."
        );
        assert_eq!(
            error(&["run", "--db", "MOCKED", "-b", "MOCKED"], &[]),
            "Error: Missing option '--administration-token'."
        );
        assert_eq!(
            error(
                &["run", "--db", "MOCKED", "-b", "MOCKED", "--administration-token", "t"],
                &[]
            ),
            "Error: Missing option '--backend-addr'."
        );
        assert_eq!(
            error(
                &[
                    "run",
                    "--db",
                    "MOCKED",
                    "-b",
                    "MOCKED",
                    "--administration-token",
                    "t",
                    "--backend-addr",
                    "parsec://a"
                ],
                &[]
            ),
            "Error: Missing option '--email-host'."
        );
        assert_eq!(error(&["migrate"], &[]), "Error: Missing option '--db'.");
    }

    #[test]
    fn invalid_values() {
        let hint = |opt: &str, detail: &str| format!("Error: Invalid value for {opt}: {detail}");
        for (extra, vars, expected) in [
            (
                &["-P", "abc"][..],
                &[][..],
                hint("'--port' / '-P'", "'abc' is not a valid integer."),
            ),
            (
                &["-P", "99999"],
                &[],
                hint("'--port' / '-P'", "99999 is not in the range 0<=x<=65535."),
            ),
            (
                &[],
                &[("PARSEC_PORT", "-1")],
                hint("'--port' / '-P'", "-1 is not in the range 0<=x<=65535."),
            ),
            (
                &["--email-port", "1.5"],
                &[],
                hint("'--email-port'", "'1.5' is not a valid integer."),
            ),
            (
                &["--db-min-connections", "-3"],
                &[],
                hint("'--db-min-connections'", "-3 is not in the range 0<=x<=4294967295."),
            ),
            (
                &["--organization-initial-active-users-limit", "-1"],
                &[],
                hint(
                    "'--organization-initial-active-users-limit'",
                    "-1 is not in the range 0<=x<=18446744073709551615.",
                ),
            ),
            (
                &["--pause-before-retry-database-connection", "abc"],
                &[],
                hint(
                    "'--pause-before-retry-database-connection'",
                    "'abc' is not a valid float.",
                ),
            ),
            (
                &["--pause-before-retry-database-connection", "-1"],
                &[],
                hint(
                    "'--pause-before-retry-database-connection'",
                    "-1 is not a finite number of seconds >= 0.",
                ),
            ),
            (
                &["--db", "mocked"],
                &[],
                hint(
                    "'--db'",
                    "Must be `MOCKED` or start with `postgresql://` or `postgres://`",
                ),
            ),
            (
                &["--db", "sqlite://x"],
                &[],
                hint(
                    "'--db'",
                    "Must be `MOCKED` or start with `postgresql://` or `postgres://`",
                ),
            ),
            (
                &["--backend-addr", "http://a"],
                &[],
                hint("'--backend-addr'", "http://a (Must start with `parsec://`)"),
            ),
            (
                &["--backend-addr", "parsec://a/b"],
                &[],
                hint("'--backend-addr'", "parsec://a/b (Cannot have path)"),
            ),
            (
                &["-l", "info"],
                &[],
                hint(
                    "'--log-level' / '-l'",
                    "'info' is not one of 'DEBUG', 'INFO', 'WARNING', 'ERROR', 'CRITICAL'.",
                ),
            ),
            (
                &[],
                &[("PARSEC_LOG_FORMAT", "json")],
                hint("'--log-format' / '-f'", "'json' is not one of 'CONSOLE', 'JSON'."),
            ),
            (
                &["-o", ""],
                &[],
                hint("'--log-file' / '-o'", "File name must not be empty."),
            ),
            (
                &["--forward-proto-enforce-https", "a:b:c"],
                &[],
                hint(
                    "'--forward-proto-enforce-https'",
                    "Invalid format, should be `<header-name>:<header-value>`",
                ),
            ),
            (
                &["--forward-proto-enforce-https", "X-Forwarded-Proto"],
                &[],
                hint(
                    "'--forward-proto-enforce-https'",
                    "Invalid format, should be `<header-name>:<header-value>`",
                ),
            ),
            (
                &["--ssl-keyfile", "/nonexistent/key.pem"],
                &[],
                hint("'--ssl-keyfile'", "File '/nonexistent/key.pem' does not exist."),
            ),
            (
                &[],
                &[("PARSEC_SSL_CERTFILE", "/")],
                hint("'--ssl-certfile'", "File '/' is a directory."),
            ),
            (
                &["--email-host", "smtp.example.com"],
                &[],
                "Error: --email-sender is required when --email-host is provided".to_string(),
            ),
            (
                &["--email-host", "smtp.example.com"],
                &[("PARSEC_EMAIL_SENDER", "")],
                "Error: --email-sender is required when --email-host is provided".to_string(),
            ),
        ] {
            assert_eq!(run_error(extra, vars), expected, "{extra:?} {vars:?}");
        }
        // Full blockstore replaced (not appended) when given: RAID rules on the given values.
        let raid = |values: &[&str]| {
            let mut args = vec![
                "run",
                "--db",
                "MOCKED",
                "--administration-token",
                "t",
                "--backend-addr",
                "parsec://a",
                "--email-host",
                "MOCKED",
            ];
            for value in values {
                args.extend(["-b", value]);
            }
            error(&args, &[])
        };
        assert_eq!(
            raid(&["foo"]),
            "Error: Invalid value for '--blockstore' / '-b': Invalid blockstore type `foo`"
        );
        assert_eq!(
            raid(&["POSTGRESQL"]),
            "Error: Invalid value for '--blockstore' / '-b': PostgreSQL block store is not available (--db is MOCKED)"
        );
        // REQUIRED has `-b MOCKED`: more values make a mixed group.
        assert_eq!(
            run_error(&["-b", "RAID5:0:MOCKED"], &[]),
            "Error: Invalid value for '--blockstore' / '-b': Multiple blockstore config with different types: MOCKED/RAID5"
        );
        assert_eq!(
            raid(&["RAID5:0:MOCKED", "RAID5:1:MOCKED"]),
            "Error: Invalid value for '--blockstore' / '-b': RAID5 block store needs at least 3 nodes"
        );
        assert_eq!(
            raid(&["RAID1:0:MOCKED", "RAID1:1:POSTGRESQL"]),
            "Error: Invalid value for '--blockstore' / '-b': PostgreSQL block store is not available (--db is MOCKED)"
        );
        assert_eq!(
            raid(&["raid1:0:MOCKED", "RAID1:1:MOCKED"]),
            "Error: Invalid value for '--blockstore' / '-b': Multiple blockstore config with different types: raid1/RAID1"
        );
        assert_eq!(
            raid(&["RAID1:x:MOCKED"]),
            "Error: Invalid value for '--blockstore' / '-b': Invalid node index `x` (must be integer)"
        );
    }

    #[test]
    fn database_pool_bounds_checked_for_postgresql_only() {
        let pg = ["--db", "postgresql://h/db", "--db-max-connections"];
        assert_eq!(
            run_error(&[&pg[..], &["0"]].concat(), &[]),
            "Error: Invalid value for '--db-max-connections': must be greater than 0"
        );
        assert_eq!(
            run_error(&[&pg[..], &["2", "--db-min-connections", "3"]].concat(), &[]),
            "Error: Invalid value for '--db-min-connections': 3 is greater than --db-max-connections (2)"
        );
        let c = run_with_required(&["--db-max-connections", "0"], &[]);
        assert_eq!(c.db_max_connections, 0);
    }

    #[test]
    fn ssl_files() {
        let dir = std::env::temp_dir().join(format!("parsec-config-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let key = dir.join("key.pem");
        let cert = dir.join("cert.pem");
        std::fs::write(&key, "key").expect("write key");
        std::fs::write(&cert, "cert").expect("write cert");
        let (key_str, cert_str) = (key.to_string_lossy().to_string(), cert.to_string_lossy().to_string());

        let c = run_with_required(&["--ssl-keyfile", &key_str, "--ssl-certfile", &cert_str], &[]);
        assert_eq!((c.ssl_keyfile, c.ssl_certfile), (Some(key.clone()), Some(cert.clone())));
        let c = run_with_required(&[], &[("PARSEC_SSL_CERTFILE", &cert_str)]);
        assert_eq!((c.ssl_keyfile, c.ssl_certfile), (None, Some(cert.clone())));
        assert_eq!(
            run_error(&["--ssl-keyfile", &key_str], &[]),
            "Error: Invalid value for '--ssl-keyfile': --ssl-certfile is required when --ssl-keyfile is provided"
        );
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }

    #[test]
    fn click_argument_forms() {
        // Repeated switches, `--opt=value` with `=` in the value, attached short values.
        let c = run_with_required(
            &["--debug", "--debug", "--administration-token=a=b", "-H::1", "-lDEBUG"],
            &[],
        );
        assert!(c.debug);
        assert_eq!(c.administration_token.expose(), "a=b");
        assert_eq!(c.host, "::1");
        assert_eq!(c.log.level, LogLevel::Debug);
    }

    #[test]
    fn forward_proto_allows_empty_parts_like_the_reference() {
        let c = run_with_required(&["--forward-proto-enforce-https", "X-A:"], &[]);
        assert_eq!(c.forward_proto_enforce_https, Some(("x-a".into(), String::new())));
    }

    #[test]
    fn empty_optional_values_mean_unset() {
        let c = run_with_required(
            &[
                "--sentry-dsn",
                "",
                "--organization-bootstrap-webhook",
                "",
                "--email-sender",
                "",
            ],
            &[],
        );
        assert!(c.sentry_dsn.is_none());
        assert!(c.organization_bootstrap_webhook.is_none());
        assert_eq!(c.email.sender(), DEFAULT_EMAIL_SENDER);
    }

    #[test]
    fn python_int_syntax() {
        let c = run_with_required(
            &[
                "-P",
                " +1_000 ",
                "--email-host",
                "smtp",
                "--email-sender",
                "s@x",
                "--email-port",
                "0025",
            ],
            &[],
        );
        assert_eq!(c.port, 1000);
        let EmailConfig::Smtp(smtp) = &c.email else {
            panic!("expected SMTP")
        };
        assert_eq!(smtp.port, 25);
        assert_eq!(parse_py_int("1__0"), None);
        assert_eq!(parse_py_int("_1"), None);
        assert_eq!(parse_py_int("-"), None);
        assert_eq!(parse_py_int("0x10"), None);
        assert_eq!(parse_py_int("-0"), Some(0));
        assert_eq!(
            parse_py_int("99999999999999999999999999999999999999999999"),
            Some(i128::MAX)
        );
    }

    #[test]
    fn argument_syntax_errors_are_one_line() {
        assert_eq!(error(&["run", "--nope"], &[]), "Error: Unrecognized argument: --nope");
        assert_eq!(error(&["run", "--nope=1"], &[]), "Error: Unrecognized argument: --nope");
        assert_eq!(error(&["run", "extra"], &[]), "Error: Unrecognized argument: extra");
        assert_eq!(
            error(&["run", "--db"], &[]),
            "Error: Option '--db' requires an argument."
        );
        assert_eq!(
            error(&["run", "--dev=1"], &[]),
            "Error: Option '--dev' does not take a value."
        );
        assert!(error(&[], &[]).starts_with("Error: One of the following subcommands must be present:"));
        assert!(error(&["serve"], &[]).starts_with("Error: "));
        assert_eq!(error(&["migrate", "--dev"], &[]), "Error: Unrecognized argument: --dev");
    }

    #[test]
    fn migrate_options() {
        let m = migrate(&["--db", "postgresql://u:pw@h/db"], &[]);
        assert_eq!(m.db.expose(), "postgresql://u:pw@h/db");
        assert!(!m.dry_run);
        assert_eq!(
            m.log,
            LogConfig {
                level: LogLevel::Warning,
                format: LogFormat::Console,
                file: None
            }
        );
        assert!(!m.debug);

        let m = migrate(
            &["--dry-run", "-l", "DEBUG", "-f", "JSON", "-o", "/tmp/migrate.log"],
            &[("PARSEC_DB", "postgres://h/db"), ("PARSEC_DEBUG", "1"), ("DEBUG", "0")],
        );
        assert_eq!(m.db.expose(), "postgres://h/db");
        assert!(m.dry_run);
        assert_eq!(m.log.level, LogLevel::Debug);
        assert_eq!(m.log.format, LogFormat::Json);
        assert_eq!(m.log.file, Some(PathBuf::from("/tmp/migrate.log")));
        assert!(m.debug);
        // `DEBUG` is run's variable, not migrate's.
        assert!(!migrate(&["--db", "postgres://h"], &[("DEBUG", "1")]).debug);

        assert_eq!(
            error(&["migrate", "--db", "MOCKED"], &[]),
            "Error: Invalid value for '--db': Must start with `postgresql://` or `postgres://`"
        );
        assert_eq!(
            error(&["migrate", "--db", "postgres://h", "--debug=true"], &[]),
            "Error: Option '--debug' does not take a value."
        );
    }

    #[test]
    fn help_lists_every_option_and_variable() {
        let run_help = help(&["run", "--help"]);
        assert!(run_help.starts_with("Usage: parsec-server run"), "{run_help}");
        // argh wraps descriptions: compare with single spaces.
        let run_help_words = run_help.split_whitespace().collect::<Vec<_>>().join(" ");
        for spec in run_opt::ALL {
            assert!(run_help.contains(spec.long), "{} missing:\n{run_help}", spec.long);
            if let Some(short) = spec.short {
                assert!(run_help.contains(&format!("{short}, {}", spec.long)), "{short}");
            }
            if let Some(env) = spec.env {
                assert!(
                    run_help_words.contains(&format!("env: {env}")),
                    "{env} missing:\n{run_help}"
                );
            }
        }
        assert!(run_help.contains("PARSEC_CMD_ARGS"));
        for default in [
            "127.0.0.1",
            "6777",
            "[default: 5]",
            "[default: 7]",
            "[default: 10]",
            "[default: 1.0]",
            "[default: 25]",
            "[default: INFO]",
            "[default: CONSOLE]",
            "[default: production]",
            "[default: true]",
        ] {
            assert!(run_help_words.contains(default), "{default} missing");
        }

        let migrate_help = help(&["migrate", "--help"])
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        for spec in migrate_opt::ALL {
            assert!(migrate_help.contains(spec.long), "{}", spec.long);
            if let Some(env) = spec.env {
                assert!(migrate_help.contains(&format!("env: {env}")), "{env}");
            }
        }
        assert!(migrate_help.contains("[default: WARNING]"));

        // Other ways to ask, and help wins over anything else on the line.
        assert_eq!(help(&["help", "run"]), run_help);
        assert_eq!(help(&["run", "-P", "1", "--help", "--bogus"]), run_help);
        let top = help(&["--help"]);
        assert!(top.contains("run") && top.contains("migrate"), "{top}");
        match parse(&["run", "--help"], &[("PARSEC_CMD_ARGS", "--port 1")]) {
            Err(CliExit { code: 0, message }) => assert_eq!(message, run_help),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn secrets_never_in_debug_output() {
        let c = run(
            &[
                "run",
                "--db",
                "postgresql://user:DBPASSWORD@h/db",
                "-b",
                "s3::r:b:key:S3SECRET",
                "--administration-token",
                "ADMINTOKEN",
                "--backend-addr",
                "parsec://a",
                "--email-host",
                "smtp",
                "--email-sender",
                "s@x",
                "--email-host-password",
                "SMTPPASSWORD",
                "--sentry-dsn",
                "https://SENTRYKEY@sentry.io/1",
            ],
            &[],
        );
        let debug = format!("{:?} {:#?}", Command::Run(Box::new(c.clone())), c);
        for secret in ["DBPASSWORD", "S3SECRET", "ADMINTOKEN", "SMTPPASSWORD", "SENTRYKEY"] {
            assert!(!debug.contains(secret), "{secret} leaked: {debug}");
        }
        assert_eq!(format!("{}", c.administration_token), "***");
        let m = migrate(&["--db", "postgresql://u:MIGRATEPW@h/db"], &[]);
        assert!(!format!("{m:?}").contains("MIGRATEPW"));
    }

    #[test]
    fn log_level_filters() {
        assert_eq!(LogLevel::Critical.level_filter(), log::LevelFilter::Error);
        assert_eq!(LogLevel::Warning.level_filter(), log::LevelFilter::Warn);
        assert_eq!(LogLevel::Debug.level_filter(), log::LevelFilter::Debug);
    }
}
