//! Behaviour of the data commands (realms, vlobs, blocks, messages,
//! re-encryption maintenance), through the same command functions the
//! dispatcher calls. Statuses, reasons and check orders follow commands.md
//! §4, §8, §9, §10 (PG order).
//!
//! Every scenario runs on the store [`Backends::for_tests`] picks: memory by
//! default, PostgreSQL with `PARSEC_TEST_DB=postgresql` and
//! `PARSEC_TEST_PG_URL` (a cluster holding a migrated `parsec_template`).
//!
//! [`Backends::for_tests`]: parsec_actors::backend::Backends::for_tests

// The harness's helpers are not `#[test]` functions, which is all
// `allow-unwrap-in-tests` covers; a failed unwrap here is a failed test.
#![allow(clippy::unwrap_used)]

mod batch;
mod block;
mod common;
mod concurrency;
mod maintenance;
mod realm;
mod vlob;
