//! PostgreSQL: [`BlockBackend`] (block metadata and access checks) and
//! [`MessageBackend`] (inboxes; messages are written by the realm operations).

use std::sync::LazyLock;

use async_trait::async_trait;
use bytes::Bytes;
use diesel::prelude::*;
use diesel_async::{AsyncConnection, RunQueryDsl};
use parsec_protocol::cmds::authenticated::BlockCreate;
use parsec_protocol::types::*;
use parsec_schema::schema::{block, device, message};

use super::*;
use crate::blockstore::BlockStore;

/// The block-create checks (commands.md §10.1 steps 2–5); returns the realm.
/// With `Lock::Share` the realm row stays held until the transaction ends,
/// so no role change or maintenance start slips between check and insert.
async fn check_block_create(
    c: &mut Conn,
    author: Author,
    realm_id: Uuid,
    block_id: Uuid,
    lock: Lock,
) -> Result<Realm, BlockCreateError> {
    let realm = realm_by_id(c, author.org, realm_id, lock)
        .await?
        .ok_or(BlockCreateError::RealmNotFound)?;
    if realm.status.maintenance.is_some() {
        return Err(BlockCreateError::InMaintenance);
    }
    if !can_write(role_of(c, realm.pk, Some(author.user)).await?) {
        return Err(BlockCreateError::NotAllowed);
    }
    let exists: Option<i64> = block::table
        .filter(block::organization.eq(author.org))
        .filter(block::block_id.eq(block_id))
        .select(block::_id)
        .first(c)
        .await
        .optional()?;
    if exists.is_some() {
        return Err(BlockCreateError::AlreadyExists);
    }
    Ok(realm)
}

#[async_trait]
impl BlockBackend for PgStore {
    async fn create(
        &self,
        org: &OrganizationId,
        author_id: &DeviceId,
        req: BlockCreate,
        now: DateTime,
        store: &dyn BlockStore,
    ) -> Result<(), BlockCreateError> {
        let BlockCreate {
            block_id,
            realm_id,
            block,
        } = req;
        let size = i32::try_from(block.len()).map_err(|_| unexpected("block larger than 2 GiB"))?;
        // Checks first, in a short transaction whose connection goes back to
        // the pool before the store write: the store may be remote and slow,
        // or be the POSTGRESQL block store, which needs a connection of its own.
        let author = {
            let mut conn = self.conn().await?;
            conn.transaction::<_, BlockCreateError, _>(async |c| {
                let author = author(c, org, author_id).await?;
                check_block_create(c, author, realm_id, block_id, Lock::None).await?;
                Ok(author)
            })
            .await?
        };
        // Stores are idempotent: a concurrent create of the same id at worst
        // writes the same key twice, and only one metadata insert succeeds.
        store
            .create(org, block_id, Bytes::from(block))
            .await
            .map_err(BlockCreateError::Store)?;
        let mut conn = self.conn().await?;
        conn.transaction::<_, BlockCreateError, _>(async |c| {
            // Again: the realm, the role or the id may have changed meanwhile.
            let realm = check_block_create(c, author, realm_id, block_id, Lock::Share).await?;
            let inserted = diesel::insert_into(block::table)
                .values((
                    block::organization.eq(author.org),
                    block::block_id.eq(block_id),
                    block::realm.eq(realm.pk),
                    block::author.eq(author.device),
                    block::size.eq(size),
                    block::created_on.eq(ts(now)),
                ))
                .execute(c)
                .await;
            match inserted {
                Err(e) if is_unique_violation(&e) => Err(BlockCreateError::AlreadyExists),
                r => r.map(|_| ()).map_err(Into::into),
            }
        })
        .await
    }

    async fn check_read(&self, org: &OrganizationId, user: &UserId, block_id: Uuid) -> Result<(), BlockReadError> {
        #[derive(QueryableByName)]
        struct Row {
            #[diesel(sql_type = Nullable<BigInt>)]
            block: Option<i64>,
            #[diesel(embed)]
            realm: MaybeRealmRow,
            #[diesel(sql_type = Nullable<Text>)]
            requester_role: Option<String>,
        }
        // One statement (see "One-statement reads" in `data.rs`).
        static SQL: LazyLock<String> = LazyLock::new(|| {
            format!(
                "SELECT b._id AS block, {REALM_COLUMNS}, lr.role AS requester_role \
                 {FROM_REQUESTER} \
                 LEFT JOIN block b ON b.organization = o._id AND b.block_id = $3 \
                 LEFT JOIN realm r ON r._id = b.realm \
                 {MAINTENANCE_AUTHOR} \
                 {REQUESTER_ROLE} \
                 WHERE o.organization_id = $1"
            )
        });
        let mut conn = self.conn().await?;
        let row: Option<Row> = prepared(
            &SQL,
            &[
                &bind::<Text, _>(org.as_str()),
                &bind::<Text, _>(user.as_str()),
                &bind::<diesel::sql_types::Uuid, _>(block_id),
            ],
        )
        .get_result(&mut conn)
        .await
        .optional()?;
        drop(conn);
        let row = row.ok_or_else(|| unexpected("organization of an authenticated user not found"))?;
        row.block.ok_or(BlockReadError::NotFound)?;
        let realm = row.realm.into_realm()?.ok_or(BlockReadError::NotFound)?;
        // Reads go on during a re-encryption: blocks are not re-encrypted.
        if realm
            .status
            .maintenance
            .as_ref()
            .is_some_and(|m| m.kind != MaintenanceType::Reencryption)
        {
            return Err(BlockReadError::InMaintenance);
        }
        if !can_read(parse_role(row.requester_role)?) {
            return Err(BlockReadError::NotAllowed);
        }
        Ok(())
    }
}

#[async_trait]
impl MessageBackend for PgStore {
    async fn get(&self, org: &OrganizationId, recipient: &UserId, offset: u64) -> Result<Vec<InboxMessage>, Internal> {
        let mut conn = self.conn().await?;
        conn.transaction::<_, Internal, _>(async |c| {
            let Some(org) = org_pk(c, org, false).await? else {
                return Ok(Vec::new());
            };
            let Some(recipient) = user_pk(c, org, recipient).await? else {
                return Ok(Vec::new());
            };
            let rows: Vec<(String, Ts, Vec<u8>)> = message::table
                .inner_join(device::table)
                .filter(message::recipient.eq(recipient))
                .order(message::index)
                .offset(i64::try_from(offset).unwrap_or(i64::MAX))
                .select((device::device_id, message::timestamp, message::body))
                .load(c)
                .await?;
            rows.into_iter()
                .map(|(sender, timestamp, body)| {
                    Ok(InboxMessage {
                        sender: parse_id(&sender)?,
                        timestamp: dt(timestamp),
                        body,
                    })
                })
                .collect()
        })
        .await
    }
}
