//! PostgreSQL: [`BlockBackend`] (block metadata and access checks) and
//! [`MessageBackend`] (inboxes; messages are written by the realm operations).

use std::sync::LazyLock;

use async_trait::async_trait;
use bytes::Bytes;
use diesel::prelude::*;
use diesel_async::{AsyncConnection, RunQueryDsl};
use futures_util::TryStreamExt;
use parsec_protocol::cmds::authenticated::BlockCreate;
use parsec_protocol::types::*;
use parsec_schema::schema::{device, message};

use super::*;
use crate::blockstore::{BlockStore, BlockStoreError};
use crate::grouping::Replies;
use diesel::sql_types::{Array, Bool, Bytea};

/// What the block-create checks (commands.md §10.1 steps 2–5) need, from one
/// statement: the author's row ids, the realm, the author's latest role in
/// it and whether the block id is taken.
#[derive(QueryableByName)]
struct CreateCheckRow {
    #[diesel(sql_type = BigInt)]
    org: i64,
    #[diesel(sql_type = Nullable<BigInt>)]
    device: Option<i64>,
    #[diesel(sql_type = Nullable<BigInt>)]
    user_: Option<i64>,
    #[diesel(sql_type = Nullable<BigInt>)]
    block: Option<i64>,
    #[diesel(embed)]
    realm: MaybeRealmRow,
    #[diesel(sql_type = Nullable<Text>)]
    requester_role: Option<String>,
}

/// [`WRITE_ROLES`] as the database spells them.
static WRITERS: LazyLock<Vec<&'static str>> = LazyLock::new(|| WRITE_ROLES.map(RealmRole::as_str).to_vec());

/// The row of [`CreateCheckRow`]: $1 organization, $2 author device, $3
/// realm, $4 block (see "One-statement reads" in `data.rs`).
static CREATE_CHECK: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT o._id AS org, d._id AS device, d.user_, b._id AS block, {REALM_COLUMNS}, \
         lr.role AS requester_role \
         FROM organization o \
         LEFT JOIN device d ON d.organization = o._id AND d.device_id = $2 \
         LEFT JOIN user_ u ON u._id = d.user_ \
         LEFT JOIN realm r ON r.organization = o._id AND r.realm_id = $3 \
         {REQUESTER_ROLE} \
         LEFT JOIN block b ON b.organization = o._id AND b.block_id = $4 \
         WHERE o.organization_id = $1"
    )
});

/// The checks of a block create, in the order the rules give them; on
/// success the author and the realm's row id.
async fn check_block_create(
    c: &mut Conn,
    org: &OrganizationId,
    author_id: &DeviceId,
    realm_id: Uuid,
    block_id: Uuid,
) -> Result<(Author, i64), BlockCreateError> {
    let row: Option<CreateCheckRow> = prepared(
        &CREATE_CHECK,
        &[
            &bind::<Text, _>(org.as_str()),
            &bind::<Text, _>(author_id.as_str()),
            &bind::<diesel::sql_types::Uuid, _>(realm_id),
            &bind::<diesel::sql_types::Uuid, _>(block_id),
        ],
    )
    .get_result(c)
    .await
    .optional()?;
    judge_create(row)
}

/// The rules of a block create (commands.md §10.1 steps 2–5) applied to
/// its check row.
fn judge_create(row: Option<CreateCheckRow>) -> Result<(Author, i64), BlockCreateError> {
    let row = row.ok_or_else(|| unexpected("organization of an authenticated device not found"))?;
    let (Some(device), Some(user)) = (row.device, row.user_) else {
        return Err(unexpected("authenticated device not found").into());
    };
    let realm = row.realm.into_realm()?.ok_or(BlockCreateError::RealmNotFound)?;
    if realm.status.maintenance.is_some() {
        return Err(BlockCreateError::InMaintenance);
    }
    if !can_write(parse_role(row.requester_role)?) {
        return Err(BlockCreateError::NotAllowed);
    }
    if row.block.is_some() {
        return Err(BlockCreateError::AlreadyExists);
    }
    let author = Author {
        org: row.org,
        device,
        user,
    };
    Ok((author, realm.pk))
}

/// The statement of [`create_group_in_own_database`] for a group of `n`:
/// the checks of [`CREATE_CHECK`] for arrays of requests ($1 organizations,
/// $2 authors, $3 realms, $4 block ids, $5 sizes; $6 the writer roles, $7
/// `created_on`), one row per request with its ordinal `n` (each request's
/// checks a LIMIT 1 lateral, planned on its own as index probes), and the
/// bytes and the metadata of those allowed. `allowed` restates
/// `judge_create`'s rules in SQL; the statement inserts only when they hold
/// on its snapshot, so a refused request stores nothing. No `block` lookup:
/// an id already taken shows as allowed but not inserted.
///
/// The bytes of request `k` are parameter `$7 + k`, one `bytea` each rather
/// than one `bytea[]`: PostgreSQL then keeps each block as received instead
/// of copying the group into an array it allocates whole, and diesel writes
/// each block into a buffer of its exact size instead of growing one buffer
/// by doubling (BENCHMARKS.md, eighth session). One text per group size.
fn group_create_text(n: usize) -> String {
    let bytes: String = (1..=n).map(|k| format!(" WHEN {k} THEN ${}", 7 + k)).collect();
    format!(
        "WITH req AS (SELECT * FROM unnest($1::text[], $2::text[], $3::uuid[], $4::uuid[], $5::int4[]) \
           WITH ORDINALITY AS t(org_id, device_id, realm_id, block_id, size, n)), \
         chk AS (SELECT req.n, req.block_id AS new_block, x.* FROM req CROSS JOIN LATERAL ( \
           SELECT o._id AS org, d._id AS device, d.user_, \
           NULL::bigint AS block, {REALM_COLUMNS}, lr.role AS requester_role \
           FROM organization o \
           LEFT JOIN device d ON d.organization = o._id AND d.device_id = req.device_id \
           LEFT JOIN user_ u ON u._id = d.user_ \
           LEFT JOIN realm r ON r.organization = o._id AND r.realm_id = req.realm_id \
           {REQUESTER_ROLE} \
           WHERE o.organization_id = req.org_id LIMIT 1) x), \
         allowed AS (SELECT n, new_block, org, device, realm_pk FROM chk \
           WHERE device IS NOT NULL AND user_ IS NOT NULL AND realm_pk IS NOT NULL \
           AND maintenance_type IS NULL AND requester_role = ANY($6)), \
         bytes AS (INSERT INTO block_data (organization_id, block_id, data) \
           SELECT req.org_id, req.block_id, CASE req.n{bytes} END FROM allowed JOIN req USING (n) \
           ON CONFLICT (organization_id, block_id) DO NOTHING), \
         meta AS (INSERT INTO block (organization, block_id, realm, author, size, created_on) \
           SELECT a.org, a.new_block, a.realm_pk, a.device, req.size, $7 FROM allowed a JOIN req USING (n) \
           ON CONFLICT (organization, block_id) DO NOTHING RETURNING organization, block_id) \
         SELECT chk.*, EXISTS (SELECT 1 FROM meta m WHERE m.organization = chk.org AND m.block_id = chk.new_block) \
           AS inserted FROM chk ORDER BY n"
    )
}

/// [`group_create_text`] of every group size the block actor forms.
static GROUP_CREATE: LazyLock<Vec<String>> =
    LazyLock::new(|| (1..=crate::block::MAX_GROUP).map(group_create_text).collect());

/// Creates whose store is the `block_data` table of this database: checks,
/// bytes and metadata of all of them in one statement (one snapshot, one
/// commit). A group's cost is mostly that of its bytes: the statement, its
/// checks and its commit are paid once. `Err`: the statement failed, nothing
/// of the group is stored.
async fn create_group_in_own_database(
    store: &PgStore,
    blocks: &[NewBlock],
    now: DateTime,
) -> Result<Vec<Result<(), BlockCreateError>>, Internal> {
    #[derive(QueryableByName)]
    struct Row {
        #[diesel(sql_type = BigInt)]
        n: i64,
        #[diesel(embed)]
        check: CreateCheckRow,
        #[diesel(sql_type = Bool)]
        inserted: bool,
    }
    if blocks.is_empty() {
        return Ok(Vec::new());
    }
    let sizes = blocks
        .iter()
        .map(|b| i32::try_from(b.req.block.len()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| unexpected("block larger than 2 GiB"))?;
    let text;
    let sql = match GROUP_CREATE.get(blocks.len() - 1) {
        Some(sql) => sql.as_str(),
        None => {
            text = group_create_text(blocks.len());
            &text
        }
    };
    let (orgs, authors, realms, ids, sizes, writers, created_on) = (
        bind::<Array<Text>, _>(blocks.iter().map(|b| b.org.as_str()).collect::<Vec<_>>()),
        bind::<Array<Text>, _>(blocks.iter().map(|b| b.author.as_str()).collect::<Vec<_>>()),
        bind::<Array<diesel::sql_types::Uuid>, _>(blocks.iter().map(|b| b.req.realm_id).collect::<Vec<_>>()),
        bind::<Array<diesel::sql_types::Uuid>, _>(blocks.iter().map(|b| b.req.block_id).collect::<Vec<_>>()),
        bind::<Array<Int4>, _>(sizes),
        bind::<Array<Text>, _>(&*WRITERS),
        bind::<Timestamptz, _>(ts(now)),
    );
    let data: Vec<_> = blocks.iter().map(|b| bind::<Bytea, _>(&b.req.block[..])).collect();
    let mut binds: Vec<&dyn BindValue> = vec![&orgs, &authors, &realms, &ids, &sizes, &writers, &created_on];
    binds.extend(data.iter().map(|d| d as &dyn BindValue));
    let rows: Vec<Row> = prepared(sql, &binds).load(&mut store.conn().await?).await?;
    Ok(by_ordinal(rows, blocks.len(), |r| r.n)?
        .into_iter()
        .map(|row| match row {
            Some(row) if row.inserted => Ok(()),
            // Allowed on the statement's snapshot but not inserted: the id is taken.
            Some(row) => judge_create(Some(row.check)).and(Err(BlockCreateError::AlreadyExists)),
            None => Err(unexpected("organization of an authenticated device not found").into()),
        })
        .collect())
}

/// One create whose store is this database (a group of one).
async fn create_one_in_own_database(store: &PgStore, block: &NewBlock, now: DateTime) -> Result<(), BlockCreateError> {
    let mut outcomes = create_group_in_own_database(store, std::slice::from_ref(block), now).await?;
    outcomes
        .pop()
        .unwrap_or_else(|| Err(unexpected("group create gave no outcome").into()))
}

/// The block's metadata row, inserted only if the checks still hold: the
/// realm out of maintenance, the author still a writer, the id free. One
/// statement, so the checks and the insert see one snapshot; whatever
/// commits meanwhile (a role change, a maintenance start) is ordered after
/// it, as it would be had it come a moment later. `false`: some check no
/// longer holds.
async fn insert_block_row(
    c: &mut Conn,
    author: Author,
    realm: i64,
    block_id: Uuid,
    size: i32,
    now: DateTime,
) -> Result<bool, Internal> {
    let inserted: Option<InsertedRow> = prepared(
        "INSERT INTO block (organization, block_id, realm, author, size, created_on) \
         SELECT $1, $2, r._id, $4, $5, $6 FROM realm r \
         WHERE r._id = $3 AND r.maintenance_type IS NULL \
         AND (SELECT rr.role FROM realm_user_role rr WHERE rr.realm = r._id AND rr.user_ = $7 \
              ORDER BY rr.certified_on DESC LIMIT 1) = ANY($8) \
         ON CONFLICT (organization, block_id) DO NOTHING \
         RETURNING _id",
        &[
            &bind::<BigInt, _>(author.org),
            &bind::<diesel::sql_types::Uuid, _>(block_id),
            &bind::<BigInt, _>(realm),
            &bind::<BigInt, _>(author.device),
            &bind::<Int4, _>(size),
            &bind::<Timestamptz, _>(ts(now)),
            &bind::<BigInt, _>(author.user),
            &bind::<diesel::sql_types::Array<Text>, _>(&*WRITERS),
        ],
    )
    .get_result(c)
    .await
    .optional()?;
    Ok(inserted.is_some())
}

#[derive(QueryableByName)]
struct InsertedRow {
    #[diesel(sql_type = BigInt)]
    #[allow(dead_code)] // only its presence matters
    _id: i64,
}

impl PgStore {
    /// Whether `store` is the `POSTGRESQL` block store of this very
    /// database: block bytes and metadata then go in one statement.
    fn keeps_blocks_of(&self, store: &dyn BlockStore) -> bool {
        store.as_postgres().is_some_and(|s| s.shares_database_with(self))
    }
}

#[async_trait]
impl BlockBackend for PgStore {
    fn groups_creates(&self, store: &dyn BlockStore) -> bool {
        self.keeps_blocks_of(store)
    }

    async fn create_group(
        &self,
        blocks: Vec<NewBlock>,
        now: DateTime,
        store: &dyn BlockStore,
    ) -> Vec<Result<(), BlockCreateError>> {
        if !self.keeps_blocks_of(store) || !distinct_blocks(&blocks) {
            return create_each(self, blocks, now, store).await;
        }
        match create_group_in_own_database(self, &blocks, now).await {
            Ok(outcomes) => outcomes,
            Err(e) if blocks.len() > 1 => {
                // Whatever failed, each create on its own gets its own outcome.
                log::warn!("group of {} block creates: {e:#}; creating one by one", blocks.len());
                let mut outcomes = Vec::with_capacity(blocks.len());
                for b in &blocks {
                    outcomes.push(create_one_in_own_database(self, b, now).await);
                }
                outcomes
            }
            Err(e) => vec![Err(e.into())],
        }
    }

    async fn create(
        &self,
        org: &OrganizationId,
        author_id: &DeviceId,
        req: BlockCreate,
        now: DateTime,
        store: &dyn BlockStore,
    ) -> Result<(), BlockCreateError> {
        if self.keeps_blocks_of(store) {
            let block = NewBlock {
                org: org.clone(),
                author: author_id.clone(),
                req,
            };
            return create_one_in_own_database(self, &block, now).await;
        }
        let BlockCreate {
            block_id,
            realm_id,
            block,
        } = req;
        let size = i32::try_from(block.len()).map_err(|_| unexpected("block larger than 2 GiB"))?;
        // Checked before the store write, so a refused request stores
        // nothing; the connection goes back to the pool meanwhile: the store
        // may be remote and slow, or be the POSTGRESQL block store, which
        // needs a connection of its own.
        let (author, realm) = {
            let mut conn = self.conn().await?;
            check_block_create(&mut conn, org, author_id, realm_id, block_id).await?
        };
        // Stores are idempotent: a concurrent create of the same id at worst
        // writes the same key twice, and only one metadata insert succeeds.
        store
            .create(org, block_id, Bytes::from(block))
            .await
            .map_err(BlockCreateError::Store)?;
        let mut conn = self.conn().await?;
        // A failed insert means something changed since the check: checking
        // again says what. Should the checks pass again (a role revoked and
        // granted back meanwhile), the insert is tried once more.
        for _ in 0..2 {
            if insert_block_row(&mut conn, author, realm, block_id, size, now).await? {
                return Ok(());
            }
            check_block_create(&mut conn, org, author_id, realm_id, block_id).await?;
        }
        Err(unexpected("block create checks keep changing").into())
    }

    fn groups_reads(&self, store: &dyn BlockStore) -> bool {
        self.keeps_blocks_of(store)
    }

    async fn read_group(
        &self,
        blocks: Vec<BlockToRead>,
        store: &dyn BlockStore,
        replies: &mut Replies<Result<Bytes, BlockReadError>>,
    ) {
        if !self.keeps_blocks_of(store) {
            return replies.send_all(read_each(self, &blocks, store).await);
        }
        let Err(e) = read_group_in_own_database(self, &blocks, |i, outcome| replies.send(i, outcome)).await else {
            return;
        };
        if blocks.len() == 1 {
            return replies.send(0, Err(e.into()));
        }
        // Whatever failed, each read still unanswered gets its own outcome
        // on its own.
        let left = replies.unanswered();
        log::warn!(
            "group of {} block reads: {e:#}; reading the {} unanswered one by one",
            blocks.len(),
            left.len()
        );
        let reads = left.iter().map(|&i| {
            let b = &blocks[i];
            async move { (i, BlockBackend::read(self, &b.org, &b.user, b.block_id, store).await) }
        });
        for (i, outcome) in futures_util::future::join_all(reads).await {
            replies.send(i, outcome);
        }
    }

    async fn check_read(&self, org: &OrganizationId, user: &UserId, block_id: Uuid) -> Result<(), BlockReadError> {
        let mut conn = self.conn().await?;
        let row: Option<ReadCheckRow> = prepared(
            &READ_CHECK,
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
        judge_read(row)
    }

    async fn read(
        &self,
        org: &OrganizationId,
        user: &UserId,
        block_id: Uuid,
        store: &dyn BlockStore,
    ) -> Result<Bytes, BlockReadError> {
        if !self.keeps_blocks_of(store) {
            return check_and_read(self, org, user, block_id, store).await;
        }
        // The checks and the bytes in one statement (a group of one).
        let read = BlockToRead {
            org: org.clone(),
            user: user.clone(),
            block_id,
        };
        let mut outcome = None;
        read_group_in_own_database(self, std::slice::from_ref(&read), |_, o| outcome = Some(o)).await?;
        outcome.unwrap_or_else(|| Err(unexpected("group read gave no outcome").into()))
    }
}

/// What the block-read checks need, from one statement: whether the block
/// exists, its realm and the requester's latest role there.
#[derive(QueryableByName)]
struct ReadCheckRow {
    #[diesel(sql_type = Nullable<BigInt>)]
    block: Option<i64>,
    #[diesel(embed)]
    realm: MaybeRealmRow,
    #[diesel(sql_type = Nullable<Text>)]
    requester_role: Option<String>,
}

/// The row of [`ReadCheckRow`]: $1 organization, $2 requester, $3 block (see
/// "One-statement reads" in `data.rs`).
static READ_CHECK: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT b._id AS block, {REALM_COLUMNS}, lr.role AS requester_role \
         {FROM_REQUESTER} \
         LEFT JOIN block b ON b.organization = o._id AND b.block_id = $3 \
         LEFT JOIN realm r ON r._id = b.realm \
         {REQUESTER_ROLE} \
         WHERE o.organization_id = $1"
    )
});

/// Reads whose store is the `block_data` table of this database: the checks
/// of [`READ_CHECK`] and the bytes of every read in one statement ($1
/// organizations, $2 requesters, $3 block ids; one row per read, with its
/// ordinal `n`). Each read is a LIMIT 1 lateral, planned on its own as
/// index probes (a plain join over the unnest can be planned as hash joins
/// over whole tables). The bytes come only for a member of the realm
/// (whatever else refuses, they are dropped).
///
/// `give` gets each read's outcome (with its index in `blocks`) as its row
/// arrives, while PostgreSQL still looks up the next ones: a reader gets
/// its block without waiting for the whole group's megabytes. On an error,
/// the reads given nothing yet are the caller's to answer.
async fn read_group_in_own_database(
    store: &PgStore,
    blocks: &[BlockToRead],
    mut give: impl FnMut(usize, Result<Bytes, BlockReadError>) + Send,
) -> Result<(), Internal> {
    #[derive(QueryableByName)]
    struct Row {
        #[diesel(sql_type = BigInt)]
        n: i64,
        #[diesel(embed)]
        check: ReadCheckRow,
        #[diesel(sql_type = Nullable<Bytea>)]
        data: Option<Vec<u8>>,
    }
    static SQL: LazyLock<String> = LazyLock::new(|| {
        format!(
            "SELECT req.n, x.* \
             FROM unnest($1::text[], $2::text[], $3::uuid[]) WITH ORDINALITY AS req(org_id, user_id, block_id, n) \
             CROSS JOIN LATERAL (SELECT b._id AS block, {REALM_COLUMNS}, lr.role AS requester_role, bd.data \
             FROM organization o \
             LEFT JOIN user_ u ON u.organization = o._id AND u.user_id = req.user_id \
             LEFT JOIN block b ON b.organization = o._id AND b.block_id = req.block_id \
             LEFT JOIN realm r ON r._id = b.realm \
             {REQUESTER_ROLE} \
             LEFT JOIN block_data bd ON lr.role IS NOT NULL \
               AND bd.organization_id = req.org_id AND bd.block_id = req.block_id \
             WHERE o.organization_id = req.org_id LIMIT 1) x"
        )
    });
    let mut conn = store.conn().await?;
    let mut rows = prepared(
        &SQL,
        &[
            &bind::<Array<Text>, _>(blocks.iter().map(|b| b.org.as_str()).collect::<Vec<_>>()),
            &bind::<Array<Text>, _>(blocks.iter().map(|b| b.user.as_str()).collect::<Vec<_>>()),
            &bind::<Array<diesel::sql_types::Uuid>, _>(blocks.iter().map(|b| b.block_id).collect::<Vec<_>>()),
        ],
    )
    .load_stream::<Row>(&mut conn)
    .await?;
    let mut given = vec![false; blocks.len()];
    while let Some(row) = rows.try_next().await? {
        let i = usize::try_from(row.n - 1)
            .ok()
            .filter(|&i| i < blocks.len() && !given[i])
            .ok_or_else(|| unexpected("group statement answered an unknown request"))?;
        given[i] = true;
        let Row { check, data, .. } = row;
        give(
            i,
            judge_read(Some(check)).and_then(|()| {
                data.map(Bytes::from)
                    .ok_or(BlockReadError::Store(BlockStoreError::NotFound))
            }),
        );
    }
    drop(rows);
    drop(conn);
    // A read without a row: its requester's organization is gone.
    for i in (0..blocks.len()).filter(|&i| !given[i]) {
        give(
            i,
            Err(unexpected("organization of an authenticated user not found").into()),
        );
    }
    Ok(())
}

/// The rules of a block read (commands.md §10.2) applied to its check row.
fn judge_read(row: Option<ReadCheckRow>) -> Result<(), BlockReadError> {
    let row = row.ok_or_else(|| unexpected("organization of an authenticated user not found"))?;
    row.block.ok_or(BlockReadError::NotFound)?;
    let realm = row.realm.into_realm()?.ok_or(BlockReadError::NotFound)?;
    check_block_read(&realm.status, parse_role(row.requester_role)?)
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
