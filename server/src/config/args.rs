//! The raw command line: the argh structs (the `--help` text lives in their doc comments), the
//! table of options (long/short names, environment variables), `PARSEC_CMD_ARGS` expansion,
//! and the click-compatible normalisation done before argh sees the arguments.
//!
//! argh is stricter than click, so [`normalize`] first rewrites what click accepts and argh
//! does not: `--opt=value` and `-Xvalue` become two arguments, a repeated single-valued option
//! keeps its last value (how `PARSEC_CMD_ARGS` overrides the real arguments), and `--help`
//! wins over everything else. Every value stays a `String` here; `config.rs` converts them so
//! it can word errors like click does.

use argh::FromArgs;

use super::CliExit;

/// Name shown in usage lines, whatever the binary path is.
pub(super) const PROGRAM_NAME: &str = "parsec-server";

/// Environment variable whose whitespace-separated, `$VAR`-expanded words are appended to the
/// command line.
pub(super) const CMD_ARGS_ENV: &str = "PARSEC_CMD_ARGS";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum OptKind {
    /// Takes one value; given twice, the last one wins.
    Value,
    /// Takes one value; may be repeated, values accumulate.
    Repeated,
    /// Takes no value.
    Switch,
}

/// One command-line option as click declared it.
#[derive(Clone, Copy, Debug)]
pub(super) struct OptSpec {
    pub long: &'static str,
    pub short: Option<&'static str>,
    pub env: Option<&'static str>,
    pub kind: OptKind,
}

impl OptSpec {
    const fn new(long: &'static str, env: &'static str, kind: OptKind) -> Self {
        Self {
            long,
            short: None,
            env: Some(env),
            kind,
        }
    }

    const fn short(self, short: &'static str) -> Self {
        Self {
            short: Some(short),
            ..self
        }
    }

    /// click's parameter hint: `'--blockstore' / '-b'`.
    pub fn hint(&self) -> String {
        match self.short {
            Some(short) => format!("'{}' / '{short}'", self.long),
            None => format!("'{}'", self.long),
        }
    }
}

/// Options of `run`, in the reference's declaration order (which is also the order in which
/// their values are checked).
pub(super) mod run_opt {
    use super::OptKind::{Repeated, Switch, Value};
    use super::OptSpec;

    pub const HOST: OptSpec = OptSpec::new("--host", "PARSEC_HOST", Value).short("-H");
    pub const PORT: OptSpec = OptSpec::new("--port", "PARSEC_PORT", Value).short("-P");
    pub const DB: OptSpec = OptSpec::new("--db", "PARSEC_DB", Value);
    pub const DB_MIN_CONNECTIONS: OptSpec = OptSpec::new("--db-min-connections", "PARSEC_DB_MIN_CONNECTIONS", Value);
    pub const DB_MAX_CONNECTIONS: OptSpec = OptSpec::new("--db-max-connections", "PARSEC_DB_MAX_CONNECTIONS", Value);
    pub const MAXIMUM_DATABASE_CONNECTION_ATTEMPTS: OptSpec = OptSpec::new(
        "--maximum-database-connection-attempts",
        "PARSEC_MAXIMUM_DATABASE_CONNECTION_ATTEMPTS",
        Value,
    );
    pub const PAUSE_BEFORE_RETRY_DATABASE_CONNECTION: OptSpec = OptSpec::new(
        "--pause-before-retry-database-connection",
        "PARSEC_PAUSE_BEFORE_RETRY_DATABASE_CONNECTION",
        Value,
    );
    pub const BLOCKSTORE: OptSpec = OptSpec::new("--blockstore", "PARSEC_BLOCKSTORE", Repeated).short("-b");
    pub const ADMINISTRATION_TOKEN: OptSpec =
        OptSpec::new("--administration-token", "PARSEC_ADMINISTRATION_TOKEN", Value);
    pub const SPONTANEOUS_ORGANIZATION_BOOTSTRAP: OptSpec = OptSpec::new(
        "--spontaneous-organization-bootstrap",
        "PARSEC_SPONTANEOUS_ORGANIZATION_BOOTSTRAP",
        Switch,
    );
    pub const ORGANIZATION_BOOTSTRAP_WEBHOOK: OptSpec = OptSpec::new(
        "--organization-bootstrap-webhook",
        "PARSEC_ORGANIZATION_BOOTSTRAP_WEBHOOK",
        Value,
    );
    pub const ORGANIZATION_INITIAL_ACTIVE_USERS_LIMIT: OptSpec = OptSpec::new(
        "--organization-initial-active-users-limit",
        "PARSEC_ORGANIZATION_INITIAL_ACTIVE_USERS_LIMIT",
        Value,
    );
    pub const ORGANIZATION_INITIAL_USER_PROFILE_OUTSIDER_ALLOWED: OptSpec = OptSpec::new(
        "--organization-initial-user-profile-outsider-allowed",
        "PARSEC_ORGANIZATION_INITIAL_USER_PROFILE_OUTSIDER_ALLOWED",
        Value,
    );
    pub const BACKEND_ADDR: OptSpec = OptSpec::new("--backend-addr", "PARSEC_BACKEND_ADDR", Value);
    pub const EMAIL_HOST: OptSpec = OptSpec::new("--email-host", "PARSEC_EMAIL_HOST", Value);
    pub const EMAIL_PORT: OptSpec = OptSpec::new("--email-port", "PARSEC_EMAIL_PORT", Value);
    pub const EMAIL_HOST_USER: OptSpec = OptSpec::new("--email-host-user", "PARSEC_EMAIL_HOST_USER", Value);
    pub const EMAIL_HOST_PASSWORD: OptSpec = OptSpec::new("--email-host-password", "PARSEC_EMAIL_HOST_PASSWORD", Value);
    pub const EMAIL_USE_SSL: OptSpec = OptSpec::new("--email-use-ssl", "PARSEC_EMAIL_USE_SSL", Switch);
    pub const EMAIL_USE_TLS: OptSpec = OptSpec::new("--email-use-tls", "PARSEC_EMAIL_USE_TLS", Switch);
    pub const EMAIL_SENDER: OptSpec = OptSpec::new("--email-sender", "PARSEC_EMAIL_SENDER", Value);
    pub const FORWARD_PROTO_ENFORCE_HTTPS: OptSpec = OptSpec::new(
        "--forward-proto-enforce-https",
        "PARSEC_FORWARD_PROTO_ENFORCE_HTTPS",
        Value,
    );
    pub const SSL_KEYFILE: OptSpec = OptSpec::new("--ssl-keyfile", "PARSEC_SSL_KEYFILE", Value);
    pub const SSL_CERTFILE: OptSpec = OptSpec::new("--ssl-certfile", "PARSEC_SSL_CERTFILE", Value);
    pub const LOG_LEVEL: OptSpec = OptSpec::new("--log-level", "PARSEC_LOG_LEVEL", Value).short("-l");
    pub const LOG_FORMAT: OptSpec = OptSpec::new("--log-format", "PARSEC_LOG_FORMAT", Value).short("-f");
    pub const LOG_FILE: OptSpec = OptSpec::new("--log-file", "PARSEC_LOG_FILE", Value).short("-o");
    pub const SENTRY_DSN: OptSpec = OptSpec::new("--sentry-dsn", "PARSEC_SENTRY_DSN", Value);
    pub const SENTRY_ENVIRONMENT: OptSpec = OptSpec::new("--sentry-environment", "PARSEC_SENTRY_ENVIRONMENT", Value);
    pub const DEV: OptSpec = OptSpec {
        long: "--dev",
        short: None,
        env: None,
        kind: Switch,
    };
    /// Not `PARSEC_DEBUG`: the reference reads plain `DEBUG` for `run`.
    pub const DEBUG: OptSpec = OptSpec::new("--debug", "DEBUG", Switch);

    pub const ALL: &[OptSpec] = &[
        HOST,
        PORT,
        DB,
        DB_MIN_CONNECTIONS,
        DB_MAX_CONNECTIONS,
        MAXIMUM_DATABASE_CONNECTION_ATTEMPTS,
        PAUSE_BEFORE_RETRY_DATABASE_CONNECTION,
        BLOCKSTORE,
        ADMINISTRATION_TOKEN,
        SPONTANEOUS_ORGANIZATION_BOOTSTRAP,
        ORGANIZATION_BOOTSTRAP_WEBHOOK,
        ORGANIZATION_INITIAL_ACTIVE_USERS_LIMIT,
        ORGANIZATION_INITIAL_USER_PROFILE_OUTSIDER_ALLOWED,
        BACKEND_ADDR,
        EMAIL_HOST,
        EMAIL_PORT,
        EMAIL_HOST_USER,
        EMAIL_HOST_PASSWORD,
        EMAIL_USE_SSL,
        EMAIL_USE_TLS,
        EMAIL_SENDER,
        FORWARD_PROTO_ENFORCE_HTTPS,
        SSL_KEYFILE,
        SSL_CERTFILE,
        LOG_LEVEL,
        LOG_FORMAT,
        LOG_FILE,
        SENTRY_DSN,
        SENTRY_ENVIRONMENT,
        DEV,
        DEBUG,
    ];
}

/// Options of `migrate`.
pub(super) mod migrate_opt {
    use super::OptKind::Switch;
    use super::{OptSpec, run_opt};

    pub const DB: OptSpec = run_opt::DB;
    pub const DRY_RUN: OptSpec = OptSpec {
        long: "--dry-run",
        short: None,
        env: None,
        kind: Switch,
    };
    pub const LOG_LEVEL: OptSpec = run_opt::LOG_LEVEL;
    pub const LOG_FORMAT: OptSpec = run_opt::LOG_FORMAT;
    pub const LOG_FILE: OptSpec = run_opt::LOG_FILE;
    /// Unlike `run`, `migrate` reads `PARSEC_DEBUG`.
    pub const DEBUG: OptSpec = OptSpec::new("--debug", "PARSEC_DEBUG", Switch);

    pub const ALL: &[OptSpec] = &[DB, DRY_RUN, LOG_LEVEL, LOG_FORMAT, LOG_FILE, DEBUG];
}

/// the Parsec v2 metadata server
#[derive(FromArgs, Debug)]
pub(super) struct TopLevel {
    #[argh(subcommand)]
    pub command: SubCommand,
}

#[derive(FromArgs, Debug)]
#[argh(subcommand)]
pub(super) enum SubCommand {
    Run(Box<RunArgs>),
    Migrate(MigrateArgs),
}

/// run the server
#[derive(FromArgs, Debug, Default, PartialEq)]
#[argh(
    subcommand,
    name = "run",
    note = "Precedence: command line, then environment variable, then default. An empty\n\
            environment variable counts as unset. Boolean variables accept 1/0, true/false,\n\
            yes/no, on/off, t/f, y/n.\n\n\
            Arguments can also be given in PARSEC_CMD_ARGS: split on whitespace, $VAR and\n\
            ${{VAR}} expanded, appended after the real arguments (so they win for\n\
            single-valued options). For instance:\n  \
            DB_URL=postgres:///parsec PARSEC_CMD_ARGS='--db=$DB_URL --host=0.0.0.0' \\\n    \
            {command_name} --blockstore POSTGRESQL ...\n\n\
            Exit code 2 means bad usage."
)]
pub(super) struct RunArgs {
    /// host to listen on [env: PARSEC_HOST] [default: 127.0.0.1]
    #[argh(option, short = 'H', arg_name = "host")]
    pub host: Option<String>,

    /// port to listen on [env: PARSEC_PORT] [default: 6777]
    #[argh(option, short = 'P', arg_name = "port")]
    pub port: Option<String>,

    /// database: `MOCKED` (in memory) or `postgresql://...` / `postgres://...`
    /// [env: PARSEC_DB] [required]
    #[argh(option, arg_name = "url")]
    pub db: Option<String>,

    /// minimal number of connections to the database if using PostgreSQL
    /// [env: PARSEC_DB_MIN_CONNECTIONS] [default: 5]
    #[argh(option, arg_name = "int")]
    pub db_min_connections: Option<String>,

    /// maximum number of connections to the database if using PostgreSQL
    /// [env: PARSEC_DB_MAX_CONNECTIONS] [default: 7]
    #[argh(option, arg_name = "int")]
    pub db_max_connections: Option<String>,

    /// maximum number of attempts at connecting to the database (0 means never retry)
    /// [env: PARSEC_MAXIMUM_DATABASE_CONNECTION_ATTEMPTS] [default: 10]
    #[argh(option, arg_name = "int")]
    pub maximum_database_connection_attempts: Option<String>,

    /// number of seconds before a new attempt at connecting to the database
    /// [env: PARSEC_PAUSE_BEFORE_RETRY_DATABASE_CONNECTION] [default: 1.0]
    #[argh(option, arg_name = "float")]
    pub pause_before_retry_database_connection: Option<String>,

    /// blockstore: `MOCKED`, `POSTGRESQL` (the --db database),
    /// `s3:[<endpoint_url>]:<region>:<bucket>:<key>:<secret>` or
    /// `swift:<auth_url>:<tenant>:<container>:<user>:<password>`; URLs default to https,
    /// escape colons as `\\:` (e.g. `s3:http\\://foo.com\\:9000:...`). Repeat as
    /// `<RAID0|RAID1|RAID5>:<node>:<config>` to build a RAID cluster
    /// [env: PARSEC_BLOCKSTORE, whitespace-separated] [required]
    #[argh(option, short = 'b', arg_name = "config")]
    pub blockstore: Vec<String>,

    /// secret token to access the administration api
    /// [env: PARSEC_ADMINISTRATION_TOKEN] [required]
    #[argh(option, arg_name = "token")]
    pub administration_token: Option<String>,

    /// allow bootstrapping an organization that was not created by the administration, with
    /// an empty bootstrap token [env: PARSEC_SPONTANEOUS_ORGANIZATION_BOOTSTRAP]
    #[argh(switch)]
    pub spontaneous_organization_bootstrap: bool,

    /// URL receiving a JSON POST (organization_id, device_id, device_label, human_email,
    /// human_label) each time an organization is bootstrapped
    /// [env: PARSEC_ORGANIZATION_BOOTSTRAP_WEBHOOK]
    #[argh(option, arg_name = "url")]
    pub organization_bootstrap_webhook: Option<String>,

    /// non-revoked users limit of newly created organizations
    /// [env: PARSEC_ORGANIZATION_INITIAL_ACTIVE_USERS_LIMIT] [default: no limit]
    #[argh(option, arg_name = "int")]
    pub organization_initial_active_users_limit: Option<String>,

    /// allow the outsider profile in newly created organizations
    /// [env: PARSEC_ORGANIZATION_INITIAL_USER_PROFILE_OUTSIDER_ALLOWED] [default: true]
    #[argh(option, arg_name = "bool")]
    pub organization_initial_user_profile_outsider_allowed: Option<String>,

    /// URL to reach this server, `parsec://<host>[:<port>][?no_ssl=true]` (used in
    /// invitation emails and redirections) [env: PARSEC_BACKEND_ADDR] [required]
    #[argh(option, arg_name = "url")]
    pub backend_addr: Option<String>,

    /// SMTP host, or `MOCKED` to write emails to a temporary folder
    /// [env: PARSEC_EMAIL_HOST] [required]
    #[argh(option, arg_name = "host")]
    pub email_host: Option<String>,

    /// SMTP port [env: PARSEC_EMAIL_PORT] [default: 25]
    #[argh(option, arg_name = "port")]
    pub email_port: Option<String>,

    /// SMTP user name (used only with a password) [env: PARSEC_EMAIL_HOST_USER]
    #[argh(option, arg_name = "user")]
    pub email_host_user: Option<String>,

    /// SMTP password [env: PARSEC_EMAIL_HOST_PASSWORD]
    #[argh(option, arg_name = "password")]
    pub email_host_password: Option<String>,

    /// connect to the SMTP server with implicit TLS (SMTPS, usually port 465)
    /// [env: PARSEC_EMAIL_USE_SSL]
    #[argh(switch)]
    pub email_use_ssl: bool,

    /// upgrade the SMTP connection with STARTTLS (usually port 587; ignored with
    /// --email-use-ssl) [env: PARSEC_EMAIL_USE_TLS]
    #[argh(switch)]
    pub email_use_tls: bool,

    /// sender address of sent emails, required unless --email-host is MOCKED
    /// [env: PARSEC_EMAIL_SENDER] [default with MOCKED: no-reply@parsec.com]
    #[argh(option, arg_name = "email")]
    pub email_sender: Option<String>,

    /// redirect to https the requests whose header differs, as `<header-name>:<header-value>`
    /// (typically `X-Forwarded-Proto:https`, only behind a proxy you control)
    /// [env: PARSEC_FORWARD_PROTO_ENFORCE_HTTPS]
    #[argh(option, arg_name = "header")]
    pub forward_proto_enforce_https: Option<String>,

    /// SSL key file (serves Parsec over SSL together with --ssl-certfile)
    /// [env: PARSEC_SSL_KEYFILE]
    #[argh(option, arg_name = "file")]
    pub ssl_keyfile: Option<String>,

    /// SSL certificate (chain) file; serves Parsec over SSL [env: PARSEC_SSL_CERTFILE]
    #[argh(option, arg_name = "file")]
    pub ssl_certfile: Option<String>,

    /// DEBUG, INFO, WARNING, ERROR or CRITICAL [env: PARSEC_LOG_LEVEL] [default: INFO]
    #[argh(option, short = 'l', arg_name = "level")]
    pub log_level: Option<String>,

    /// CONSOLE or JSON [env: PARSEC_LOG_FORMAT] [default: CONSOLE]
    #[argh(option, short = 'f', arg_name = "format")]
    pub log_format: Option<String>,

    /// log file, `-` for stderr [env: PARSEC_LOG_FILE] [default: stderr]
    #[argh(option, short = 'o', arg_name = "file")]
    pub log_file: Option<String>,

    /// telemetry: Sentry DSN to report to [env: PARSEC_SENTRY_DSN]
    #[argh(option, arg_name = "url")]
    pub sentry_dsn: Option<String>,

    /// telemetry: Sentry environment name [env: PARSEC_SENTRY_ENVIRONMENT]
    /// [default: production]
    #[argh(option, arg_name = "name")]
    pub sentry_environment: Option<String>,

    /// development mode: every option among --debug, --db=MOCKED, --blockstore=MOCKED,
    /// --administration-token=s3cr3t, --email-host=MOCKED, --email-sender=no-reply@parsec.com
    /// and --backend-addr=parsec://localhost:<port> that is not on the command line is set
    /// to that value (its environment variable is then ignored)
    #[argh(switch)]
    pub dev: bool,

    /// debug mode: verbose errors, `server` header [env: DEBUG]
    #[argh(switch)]
    pub debug: bool,
}

/// update the database schema
#[derive(FromArgs, Debug, Default, PartialEq)]
#[argh(
    subcommand,
    name = "migrate",
    note = "Precedence: command line, then environment variable, then default. Arguments\n\
            can also be given in PARSEC_CMD_ARGS (see `run --help`)."
)]
pub(super) struct MigrateArgs {
    /// database URL, `postgresql://...` or `postgres://...`
    /// [env: PARSEC_DB] [required]
    #[argh(option, arg_name = "url")]
    pub db: Option<String>,

    /// only list the migrations that would be applied
    #[argh(switch)]
    pub dry_run: bool,

    /// DEBUG, INFO, WARNING, ERROR or CRITICAL [env: PARSEC_LOG_LEVEL] [default: WARNING]
    #[argh(option, short = 'l', arg_name = "level")]
    pub log_level: Option<String>,

    /// CONSOLE or JSON [env: PARSEC_LOG_FORMAT] [default: CONSOLE]
    #[argh(option, short = 'f', arg_name = "format")]
    pub log_format: Option<String>,

    /// log file, `-` for stderr [env: PARSEC_LOG_FILE] [default: stderr]
    #[argh(option, short = 'o', arg_name = "file")]
    pub log_file: Option<String>,

    /// debug mode: verbose errors [env: PARSEC_DEBUG]
    #[argh(switch)]
    pub debug: bool,
}

/// The words of `PARSEC_CMD_ARGS`, split on whitespace (no quoting) and expanded like
/// Python's `os.path.expandvars`.
pub(super) fn cmd_args_from_env(env: &dyn Fn(&str) -> Option<String>) -> Vec<String> {
    env(CMD_ARGS_ENV)
        .unwrap_or_default()
        .split_whitespace()
        .map(|word| expand_vars(word, env))
        .collect()
}

/// `$NAME` (`NAME` = ASCII letters, digits, `_`) and `${NAME}` replaced by the variable's
/// value; unknown variables and a lone `$` are left untouched. A substituted value is not
/// expanded again.
pub(super) fn expand_vars(text: &str, env: &dyn Fn(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(dollar) = rest.find('$') {
        out.push_str(&rest[..dollar]);
        out.push('$');
        let after = &rest[dollar + 1..];
        // Length of what follows `$` in Python's `\$(\w+|\{[^}]*\})`, if it matches.
        let reference_len = match after.strip_prefix('{') {
            Some(braced) => braced.find('}').map(|end| end + 2),
            None => {
                let end = after
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .unwrap_or(after.len());
                (end > 0).then_some(end)
            }
        };
        let Some(len) = reference_len else {
            rest = after;
            continue;
        };
        let reference = &after[..len];
        let name = reference
            .strip_prefix('{')
            .and_then(|r| r.strip_suffix('}'))
            .unwrap_or(reference);
        match (!name.is_empty()).then(|| env(name)).flatten() {
            Some(value) => {
                out.pop(); // the `$`
                out.push_str(&value);
            }
            None => out.push_str(reference),
        }
        rest = &after[len..];
    }
    out.push_str(rest);
    out
}

/// One argument of a subcommand once normalised.
enum Token {
    /// A known option with its value (repeated value options are flattened in order).
    Opt { spec: OptSpec, value: String },
    /// Anything else (switches, unknown options, positionals); argh decides.
    Raw(String),
}

/// Rewrites the arguments (without the program name) into what argh accepts with click's
/// meaning. See the module documentation.
pub(super) fn normalize(args: &[String]) -> Result<Vec<String>, CliExit> {
    let Some(first) = args.first() else {
        return Ok(Vec::new());
    };
    let subcommand = |name: &str| match name {
        "run" => Some(run_opt::ALL),
        "migrate" => Some(migrate_opt::ALL),
        _ => None,
    };
    if is_help(first) {
        return Ok(match args.get(1).filter(|a| subcommand(a).is_some()) {
            Some(name) => vec![name.clone(), "--help".to_string()],
            None => vec!["--help".to_string()],
        });
    }
    let Some(specs) = subcommand(first) else {
        // Not something we know: let argh word the error.
        return Ok(args.to_vec());
    };

    let mut tokens = Vec::new();
    let mut options_ended = false;
    let mut rest = args[1..].iter();
    while let Some(arg) = rest.next() {
        if options_ended {
            tokens.push(Token::Raw(arg.clone()));
        } else if arg == "--" {
            options_ended = true;
            tokens.push(Token::Raw(arg.clone()));
        } else if is_help(arg) {
            return Ok(vec![first.clone(), "--help".to_string()]);
        } else if arg.starts_with("--") {
            let (name, inline_value) = match arg.split_once('=') {
                Some((name, value)) => (name, Some(value)),
                None => (arg.as_str(), None),
            };
            match specs.iter().find(|s| s.long == name) {
                Some(spec) if spec.kind == OptKind::Switch => {
                    if inline_value.is_some() {
                        return Err(CliExit::usage(format!("Option '{name}' does not take a value.")));
                    }
                    tokens.push(Token::Raw(arg.clone()));
                }
                Some(spec) => {
                    let value = match inline_value {
                        Some(value) => value.to_string(),
                        None => rest.next().cloned().ok_or_else(|| requires_argument(name))?,
                    };
                    tokens.push(Token::Opt { spec: *spec, value });
                }
                None => tokens.push(Token::Raw(name.to_string())),
            }
        } else if let Some(spec) = short_option(specs, arg) {
            // `-P 6777` or click's attached form `-P6777`.
            let value = match arg.get(2..).filter(|attached| !attached.is_empty()) {
                Some(attached) => attached.to_string(),
                None => rest.next().cloned().ok_or_else(|| requires_argument(&arg[..2]))?,
            };
            tokens.push(Token::Opt { spec, value });
        } else {
            tokens.push(Token::Raw(arg.clone()));
        }
    }

    // For single-valued options, only the last occurrence counts (click's behaviour, which
    // is what lets PARSEC_CMD_ARGS override the real arguments); argh refuses duplicates.
    let is_last = |index: usize, long: &str| {
        !tokens[index + 1..]
            .iter()
            .any(|t| matches!(t, Token::Opt { spec, .. } if spec.long == long))
    };
    let mut out = vec![first.clone()];
    for (index, token) in tokens.iter().enumerate() {
        match token {
            Token::Opt { spec, value } => {
                if spec.kind == OptKind::Repeated || is_last(index, spec.long) {
                    out.push(spec.long.to_string());
                    out.push(value.clone());
                }
            }
            Token::Raw(raw) => out.push(raw.clone()),
        }
    }
    Ok(out)
}

fn is_help(arg: &str) -> bool {
    arg == "--help" || arg == "help"
}

fn requires_argument(option: &str) -> CliExit {
    CliExit::usage(format!("Option '{option}' requires an argument."))
}

/// The value option whose short name starts `arg` (`-P` or `-P6777`).
fn short_option(specs: &[OptSpec], arg: &str) -> Option<OptSpec> {
    let name = arg.get(..2)?;
    specs
        .iter()
        .find(|s| s.short == Some(name) && s.kind != OptKind::Switch)
        .copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(args: &[&str]) -> Vec<String> {
        args.iter().map(|a| a.to_string()).collect()
    }

    fn normalized(args: &[&str]) -> Vec<String> {
        normalize(&strings(args)).expect("normalizes")
    }

    fn env_of(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let vars: Vec<(String, String)> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        move |name| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
    }

    #[test]
    fn expand_vars_like_python() {
        let env = env_of(&[("A", "x"), ("EMPTY", ""), ("A_1", "y"), ("WEIRD NAME", "w")]);
        for (input, expected) in [
            ("$A", "x"),
            ("${A}", "x"),
            ("pre$A/post", "prex/post"),
            ("$A_1", "y"),
            ("$A-1", "x-1"),
            ("${A}_1", "x_1"),
            ("$EMPTY.", "."),
            ("$UNKNOWN", "$UNKNOWN"),
            ("${UNKNOWN}z", "${UNKNOWN}z"),
            ("$", "$"),
            ("a$", "a$"),
            ("$$A", "$x"),
            ("${}", "${}"),
            ("${A", "${A"),
            ("${WEIRD NAME}", "w"),
            ("$A$A", "xx"),
            ("--port=$A", "--port=x"),
        ] {
            assert_eq!(expand_vars(input, &env), expected, "{input}");
        }
        // A substituted value is not expanded again.
        let env = env_of(&[("A", "$B"), ("B", "no")]);
        assert_eq!(expand_vars("$A", &env), "$B");
    }

    #[test]
    fn cmd_args_split_and_expand() {
        let env = env_of(&[
            ("MYPORT", "36780"),
            (
                CMD_ARGS_ENV,
                "  --port=$MYPORT\t--backend-addr=parsec://example.com:1234?no_ssl=true \n",
            ),
        ]);
        assert_eq!(
            cmd_args_from_env(&env),
            strings(&["--port=36780", "--backend-addr=parsec://example.com:1234?no_ssl=true"])
        );
        assert!(cmd_args_from_env(&env_of(&[])).is_empty());
    }

    #[test]
    fn splits_long_equals_and_short_attached() {
        assert_eq!(
            normalized(&["run", "--port=1", "-H0.0.0.0", "-b", "a=b", "--db", "--x=y"]),
            strings(&[
                "run",
                "--port",
                "1",
                "--host",
                "0.0.0.0",
                "--blockstore",
                "a=b",
                "--db",
                "--x=y"
            ])
        );
        // Only the first `=` splits.
        assert_eq!(
            normalized(&["run", "--administration-token=a=b"]),
            strings(&["run", "--administration-token", "a=b"])
        );
        // Values that look like options are values.
        assert_eq!(
            normalized(&["run", "--administration-token", "--help"]),
            strings(&["run", "--administration-token", "--help"])
        );
        // `-b=x`: click keeps `=x` as the value.
        assert_eq!(normalized(&["run", "-b=x"]), strings(&["run", "--blockstore", "=x"]));
    }

    #[test]
    fn last_single_value_wins_and_repeated_accumulate() {
        assert_eq!(
            normalized(&["run", "-P", "1", "-b", "A", "--port", "2", "--blockstore=B", "--port=3"]),
            strings(&["run", "--blockstore", "A", "--blockstore", "B", "--port", "3"])
        );
        assert_eq!(
            normalized(&["migrate", "--db", "a", "--debug", "--db", "b", "--debug"]),
            strings(&["migrate", "--debug", "--db", "b", "--debug"])
        );
    }

    #[test]
    fn unknown_and_positional_args_go_to_argh() {
        assert_eq!(
            normalized(&["run", "--nope=1", "-x", "pos", "--", "--port"]),
            strings(&["run", "--nope", "-x", "pos", "--", "--port"])
        );
        assert_eq!(normalized(&["frobnicate", "--x"]), strings(&["frobnicate", "--x"]));
        assert!(normalized(&[]).is_empty());
    }

    #[test]
    fn help_wins() {
        assert_eq!(normalized(&["--help", "--port", "1"]), strings(&["--help"]));
        assert_eq!(normalized(&["help", "run", "--port", "1"]), strings(&["run", "--help"]));
        assert_eq!(
            normalized(&["run", "--port", "1", "--help", "--db"]),
            strings(&["run", "--help"])
        );
        assert_eq!(normalized(&["migrate", "help"]), strings(&["migrate", "--help"]));
    }

    #[test]
    fn usage_errors() {
        let err = |args: &[&str]| normalize(&strings(args)).expect_err("usage error");
        let e = err(&["run", "--debug=1"]);
        assert_eq!(
            (e.code, e.message.as_str()),
            (2, "Error: Option '--debug' does not take a value.")
        );
        let e = err(&["run", "--db"]);
        assert_eq!(
            (e.code, e.message.as_str()),
            (2, "Error: Option '--db' requires an argument.")
        );
        let e = err(&["run", "-P"]);
        assert_eq!(e.message, "Error: Option '-P' requires an argument.");
    }

    #[test]
    fn option_table_matches_argh_structs() {
        // Every option in the table parses with argh under its long name (and short name)...
        for (sub, specs) in [("run", run_opt::ALL), ("migrate", migrate_opt::ALL)] {
            for spec in specs {
                let mut names = vec![spec.long];
                names.extend(spec.short);
                for name in names {
                    let args: Vec<&str> = match spec.kind {
                        OptKind::Switch => vec![sub, name],
                        _ => vec![sub, name, "v"],
                    };
                    assert!(TopLevel::from_args(&[PROGRAM_NAME], &args).is_ok(), "{sub} {name}");
                }
            }
        }
        // ...and the table lists every option of the structs (checked through the help).
        for (sub, specs) in [("run", run_opt::ALL), ("migrate", migrate_opt::ALL)] {
            let help = match TopLevel::from_args(&[PROGRAM_NAME], &[sub, "--help"]) {
                Err(exit) => exit.output,
                Ok(_) => panic!("--help must exit early"),
            };
            let in_help: Vec<&str> = help
                .split_whitespace()
                .filter(|w| w.starts_with("--") && w.len() > 2)
                .map(|w| w.trim_end_matches([',', ']', '.', ')', '`', ';']))
                .filter(|w| w.chars().skip(2).all(|c| c.is_ascii_lowercase() || c == '-'))
                .collect();
            for word in in_help {
                assert!(
                    word == "--help" || specs.iter().any(|s| s.long == word),
                    "{sub}: {word} missing from the table"
                );
            }
        }
    }
}
