//! Command envelope and request schemas, one module per connection kind.
//!
//! A request is a msgpack map with `cmd` plus the command's fields. Loading
//! goes in three steps, each with its own outcome (README §5.2):
//! 1. bytes → map: [`crate::value::unpack_map`] (`invalid_msg_format`, fatal);
//! 2. `cmd` → which command: missing, not a str or not in this connection
//!    kind's set gives `unknown_command`;
//! 3. fields → typed request: `bad_message` with the per-field errors.
//!
//! Replies are built as msgpack maps with the helpers at the bottom.

pub mod anonymous;
pub mod authenticated;
pub mod invited;

use crate::fields::{Fields, SchemaErrors};
use crate::types::DateTime;
use crate::value::{self, Value};

/// Why a decoded map is not a request this connection can run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoadError {
    /// `cmd` missing, not a string, or not served on this connection kind.
    UnknownCommand,
    /// The command is known but its fields fail validation.
    BadMessage { cmd: &'static str, errors: SchemaErrors },
}

impl LoadError {
    /// The reply the reference gives for this error.
    pub fn to_rep(&self) -> Value {
        match self {
            LoadError::UnknownCommand => unknown_command(),
            LoadError::BadMessage { errors, .. } => bad_message(errors),
        }
    }
}

/// The `cmd` of a request, if it is a string.
pub fn cmd_name(map: &[(Value, Value)]) -> Option<&str> {
    value::get(map, "cmd").and_then(Value::as_str)
}

/// Runs a request schema over the fields of `map`.
pub fn load_fields<T>(
    cmd: &'static str,
    map: &[(Value, Value)],
    build: impl FnOnce(&mut Fields) -> Option<T>,
) -> Result<T, LoadError> {
    let mut f = Fields::new(map);
    let built = build(&mut f);
    f.finish(built).map_err(|errors| LoadError::BadMessage { cmd, errors })
}

// ---------------------------------------------------------------- replies

/// `{"status": "ok", ...fields}`.
pub fn ok(fields: Vec<(&str, Value)>) -> Value {
    status("ok", fields)
}

/// `{"status": <status>, ...fields}`.
pub fn status(status: &str, fields: Vec<(&str, Value)>) -> Value {
    let mut entries = Vec::with_capacity(fields.len() + 1);
    entries.push(("status", Value::from(status)));
    entries.extend(fields);
    value::map(entries)
}

/// `{"status": <status>, "reason": <reason>}`.
pub fn status_reason(s: &str, reason: impl Into<String>) -> Value {
    status(s, vec![("reason", Value::from(reason.into()))])
}

/// Generic reply for an unknown or unavailable command.
pub fn unknown_command() -> Value {
    status_reason("unknown_command", "Unknown command")
}

/// Generic reply for a request failing validation.
pub fn bad_message(errors: &SchemaErrors) -> Value {
    status(
        "bad_message",
        vec![
            ("reason", Value::from("Invalid message.")),
            ("errors", errors.to_value()),
        ],
    )
}

/// Fatal reply for an undecodable message; the connection is closed after it.
pub fn invalid_msg_format() -> Value {
    status_reason("invalid_msg_format", "Invalid message format")
}

/// Ballpark failure of a client-provided timestamp (README §5.3): no `reason`.
pub fn bad_timestamp(server_now: DateTime, client: DateTime) -> Value {
    status(
        "bad_timestamp",
        vec![
            (
                "ballpark_client_early_offset",
                Value::F64(crate::types::BALLPARK_CLIENT_EARLY_OFFSET),
            ),
            (
                "ballpark_client_late_offset",
                Value::F64(crate::types::BALLPARK_CLIENT_LATE_OFFSET),
            ),
            ("backend_timestamp", server_now.to_value()),
            ("client_timestamp", client.to_value()),
        ],
    )
}

/// Ordering constraint violated: the client retries with a later timestamp.
pub fn require_greater_timestamp(strictly_greater_than: DateTime) -> Value {
    status(
        "require_greater_timestamp",
        vec![("strictly_greater_than", strictly_greater_than.to_value())],
    )
}

/// `invalid_certification` always carries a reason (the client reads it and
/// looks for "timestamp" in it).
pub fn invalid_certification(reason: impl Into<String>) -> Value {
    status_reason("invalid_certification", reason)
}
