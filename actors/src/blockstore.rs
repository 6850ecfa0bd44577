//! Block bytes: the [`BlockStore`] trait and its in-memory implementation
//! (`--blockstore MOCKED`).
//!
//! A block store only keeps bytes under `(organization, block id)`. It knows
//! nothing of realms or roles: access checks and block metadata live in the
//! [`crate::backend::BlockBackend`], which calls the store between its checks
//! and its metadata insert (reference `blockstore.py`), except when the store
//! is the PostgreSQL metadata database itself (see
//! [`BlockStore::as_postgres`]).
//!
//! Rules every implementation follows, because object stores such as S3 have
//! no transactions nor overwrite protection:
//! - `create` is idempotent: two creates of one key carry the same bytes (the
//!   block backend refuses a second block id before writing), so a retry after
//!   a half-failed create simply writes again;
//! - a store never decides business outcomes: a missing block on `read` means
//!   the storage is faulty (the metadata said it exists), and every failure
//!   becomes the legacy `timeout` status.
//!
//! Implementations: [`MemoryBlockStore`] here, the `POSTGRESQL` store in
//! `backend::postgres::blockstore`, [`s3`], [`swift`], and the [`raid`]
//! combinators over any of them. Remote stores bound every call with a
//! timeout and log their failures (the client only sees `timeout`).

pub mod raid;
pub mod s3;
pub mod swift;

use std::collections::HashMap;
use std::future::Future;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use parsec_protocol::types::*;

/// Why a block store operation failed. Clients see `timeout` either way.
#[derive(Debug, thiserror::Error)]
pub enum BlockStoreError {
    /// The metadata knows the block but the store does not have it.
    #[error("block missing from the block store")]
    NotFound,
    /// The store could not be reached or refused the operation.
    #[error("block store unavailable: {0:#}")]
    Unavailable(anyhow::Error),
}

/// Where block bytes live. Object-safe, so RAID combinators can hold
/// `Vec<Arc<dyn BlockStore>>`.
#[async_trait]
pub trait BlockStore: Send + Sync {
    /// The bytes of a block.
    async fn read(&self, org: &OrganizationId, block_id: Uuid) -> Result<Bytes, BlockStoreError>;
    /// Stores a block; idempotent (see the module documentation).
    async fn create(&self, org: &OrganizationId, block_id: Uuid, block: Bytes) -> Result<(), BlockStoreError>;
    /// Readiness probe (`/ready`): a cheap call showing the store answers.
    /// The default suits stores that cannot be unreachable (memory).
    async fn health(&self) -> Result<(), BlockStoreError> {
        Ok(())
    }
    /// The `POSTGRESQL` store answers with itself: when it lives in the
    /// metadata's own database, the PostgreSQL block backend reads and writes
    /// a block's bytes in the statement that checks (and records) its
    /// metadata.
    fn as_postgres(&self) -> Option<&crate::backend::postgres::blockstore::PgBlockStore> {
        None
    }
}

/// How long one remote store call (including its retries) may take before it
/// fails as unavailable. Generous for a 1 MiB block on a slow link, short
/// enough that a hung store does not pin client requests for minutes.
pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// The object name of a block in S3 and Swift: `<organization>/<uuid with
/// dashes>` (the reference's slug; not the dashless form of `BlockID.__str__`).
pub fn object_name(org: &OrganizationId, block_id: Uuid) -> String {
    format!("{}/{}", org.as_str(), block_id.hyphenated())
}

/// Runs `call` with a deadline; running out of time is
/// [`BlockStoreError::Unavailable`].
pub(crate) async fn with_deadline<T>(
    limit: Duration,
    call: impl Future<Output = Result<T, BlockStoreError>>,
) -> Result<T, BlockStoreError> {
    match tokio::time::timeout(limit, call).await {
        Ok(result) => result,
        Err(_) => Err(BlockStoreError::Unavailable(anyhow::anyhow!(
            "no answer within {limit:?}"
        ))),
    }
}

/// The `MOCKED` block store: a map, lost at exit.
#[derive(Debug, Default)]
pub struct MemoryBlockStore {
    blocks: Mutex<HashMap<(OrganizationId, Uuid), Bytes>>,
}

impl MemoryBlockStore {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(OrganizationId, Uuid), Bytes>> {
        // Each operation is a single insert or lookup: a panic elsewhere
        // cannot leave the map half-written.
        self.blocks.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[async_trait]
impl BlockStore for MemoryBlockStore {
    async fn read(&self, org: &OrganizationId, block_id: Uuid) -> Result<Bytes, BlockStoreError> {
        self.lock()
            .get(&(org.clone(), block_id))
            .cloned()
            .ok_or(BlockStoreError::NotFound)
    }

    async fn create(&self, org: &OrganizationId, block_id: Uuid, block: Bytes) -> Result<(), BlockStoreError> {
        // Keep the first copy: a second create carries the same bytes.
        self.lock().entry((org.clone(), block_id)).or_insert(block);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[actix_web::test]
    async fn memory_store_is_idempotent_and_per_organization() {
        let store = MemoryBlockStore::default();
        let a = OrganizationId::parse("A").unwrap();
        let b = OrganizationId::parse("B").unwrap();
        let id = Uuid::new_v4();
        store.create(&a, id, Bytes::from_static(b"one")).await.unwrap();
        store.create(&a, id, Bytes::from_static(b"one")).await.unwrap();
        assert_eq!(store.read(&a, id).await.unwrap(), Bytes::from_static(b"one"));
        assert!(matches!(store.read(&b, id).await, Err(BlockStoreError::NotFound)));
    }
}
