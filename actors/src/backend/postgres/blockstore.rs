//! The `POSTGRESQL` blockstore: block bytes in the `block_data` table of the
//! metadata database, keyed by the organization's public id (on purpose not
//! tied to the metadata tables, as in the reference).

use async_trait::async_trait;
use bytes::Bytes;
use diesel::sql_types::{Bytea, Text, Uuid as SqlUuid};
use diesel_async::RunQueryDsl;
use parsec_protocol::types::*;

use super::{PgStore, bind, prepared};
use crate::blockstore::{BlockStore, BlockStoreError};

/// Blocks in PostgreSQL.
pub struct PgBlockStore {
    store: PgStore,
}

impl PgBlockStore {
    pub fn new(store: PgStore) -> Self {
        Self { store }
    }

    /// Whether these blocks are in `metadata`'s database (same pool).
    pub(crate) fn shares_database_with(&self, metadata: &PgStore) -> bool {
        self.store.same_pool(metadata)
    }
}

#[derive(diesel::QueryableByName)]
struct DataRow {
    #[diesel(sql_type = Bytea)]
    data: Vec<u8>,
}

fn unavailable(e: impl std::fmt::Display) -> BlockStoreError {
    BlockStoreError::Unavailable(anyhow::anyhow!("{e}"))
}

#[async_trait]
impl BlockStore for PgBlockStore {
    async fn read(&self, org: &OrganizationId, block_id: Uuid) -> Result<Bytes, BlockStoreError> {
        let mut conn = self.store.conn().await.map_err(|e| unavailable(e.0))?;
        let (org, block_id) = (bind::<Text, _>(org.as_str()), bind::<SqlUuid, _>(block_id));
        let row: Option<DataRow> = prepared(
            "SELECT data FROM block_data WHERE organization_id = $1 AND block_id = $2",
            &[&org, &block_id],
        )
        .get_result(&mut conn)
        .await
        .map(Some)
        .or_else(|e| {
            if e == diesel::result::Error::NotFound {
                Ok(None)
            } else {
                Err(e)
            }
        })
        .map_err(unavailable)?;
        row.map(|r| Bytes::from(r.data)).ok_or(BlockStoreError::NotFound)
    }

    async fn create(&self, org: &OrganizationId, block_id: Uuid, block: Bytes) -> Result<(), BlockStoreError> {
        let mut conn = self.store.conn().await.map_err(|e| unavailable(e.0))?;
        // Idempotent: a second create of one key carries the same bytes.
        let (org, block_id, data) = (
            bind::<Text, _>(org.as_str()),
            bind::<SqlUuid, _>(block_id),
            bind::<Bytea, _>(&block[..]),
        );
        prepared(
            "INSERT INTO block_data (organization_id, block_id, data) VALUES ($1, $2, $3) \
             ON CONFLICT (organization_id, block_id) DO NOTHING",
            &[&org, &block_id, &data],
        )
        .execute(&mut conn)
        .await
        .map_err(unavailable)?;
        Ok(())
    }

    fn as_postgres(&self) -> Option<&PgBlockStore> {
        Some(self)
    }

    async fn health(&self) -> Result<(), BlockStoreError> {
        let mut conn = self.store.conn().await.map_err(|e| unavailable(e.0))?;
        diesel::sql_query("SELECT 1")
            .execute(&mut conn)
            .await
            .map_err(unavailable)?;
        Ok(())
    }
}
