//! End-to-end tests: the real HTTP server in-process on a free port, driven
//! over real TCP with a raw websocket client.

mod admin;
mod blockstores;
mod bootstrap;
mod common;
mod fanout;
mod garbage;
mod handshake;
mod migrations;
mod multi;
mod ops;
mod pg_resilience;
mod policies;
mod process;
mod receiver;
mod upgrade;
mod webhook;
