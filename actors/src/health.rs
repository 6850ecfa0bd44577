//! Readiness of this instance: can it reach what it stores data in?

use crate::Actors;

/// `Ok` when every storage backend answers. The in-memory store always does;
/// database and blockstore probes are added with those backends.
pub async fn check(actors: &Actors) -> Result<(), String> {
    actors
        .organization
        .send(crate::organization::Ping)
        .await
        .map_err(|e| format!("organization actor: {e}"))?
        .map_err(|e| format!("database: {}", e.0))
}
