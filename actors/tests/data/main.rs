//! Behaviour of the data commands (realms, vlobs, blocks, messages,
//! re-encryption maintenance) on the memory store, through the same command
//! functions the dispatcher calls. Statuses, reasons and check orders follow
//! commands.md §4, §8, §9, §10 (PG order).

mod block;
mod common;
mod maintenance;
mod realm;
mod vlob;
