//! The `parsec-server` binary's pieces, as a library so that integration
//! tests can start the real HTTP server in-process on a free port.

pub mod config;
mod conn;
pub mod http;
pub mod logging;
pub mod sentry;
pub mod serve;
pub mod tls;
