//! Behaviour of the identity commands (`user_create`, `user_revoke`,
//! `device_create`, `human_find`, `user_get` after revocation, PKI
//! enrollment) on the memory store, through the same command functions the
//! dispatcher and the anonymous route call. Statuses, reasons and check
//! orders follow commands.md §3 and §11 (PG order).

// The harness's helpers are not `#[test]` functions, which is all
// `allow-unwrap-in-tests` covers; a failed unwrap here is a failed test.
#![allow(clippy::unwrap_used)]

mod common;
mod device;
mod human_find;
mod pki;
mod revoke;
mod user;
