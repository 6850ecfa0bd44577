//! Readiness of this instance: can it reach what it stores data in?

use std::time::Duration;

use crate::Actors;

/// A probe that takes longer than this counts as a failure: a load balancer
/// polling `/ready` must get an answer, not a hung request.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// `Ok` when every storage backend answers: the metadata store (a `SELECT 1`
/// on PostgreSQL) and the block store ([`crate::blockstore::BlockStore::health`]).
/// The in-memory stores always do.
pub async fn check(actors: &Actors) -> Result<(), String> {
    let database = async {
        actors
            .organization
            .send(crate::organization::Ping)
            .await
            .map_err(|e| format!("organization actor: {e}"))?
            .map_err(|e| format!("database: {:#}", e.0))
    };
    let blockstore = async {
        actors
            .block
            .send(crate::block::Health)
            .await
            .map_err(|e| format!("block actor: {e}"))?
            .map_err(|e| format!("blockstore: {e}"))
    };
    let both = async {
        let (db, blocks) = futures_util::join!(database, blockstore);
        let errors: Vec<String> = [db.err(), blocks.err()].into_iter().flatten().collect();
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors.join("; "))
        }
    };
    tokio::time::timeout(PROBE_TIMEOUT, both)
        .await
        .unwrap_or_else(|_| Err(format!("storage did not answer within {PROBE_TIMEOUT:?}")))
}
