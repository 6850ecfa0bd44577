//! Parsec v2 wire protocol, as spoken by the `parsec-cloud==2.10.0` client.
//!
//! Layout:
//! - [`value`]: msgpack decoding with the reference's limits, and encoding;
//! - [`types`]: identifiers, datetimes, enums, validated as the reference does;
//! - [`fields`]: schema validation of decoded maps (what produces `bad_message`);
//! - [`handshake`]: challenge / answer / result;
//! - [`certif`]: signed certificates the server opens and checks;
//! - [`signature`]: the signed data both are made of;
//! - [`cmds`]: request schemas of every command, per connection kind, and reply helpers.
//!
//! This crate knows nothing of actix or of storage, so the load-testing tool
//! can use it as a client.

pub mod certif;
pub mod cmds;
pub mod fields;
pub mod handshake;
pub mod signature;
pub mod types;
pub mod value;
