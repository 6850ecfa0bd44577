//! PostgreSQL: [`VlobBackend`] (versions, the realm change log, re-encryption batches).
//!
//! A vlob is a `vlob` row (its id is unique in the organization) and one
//! `vlob_atom` per (encryption revision, version). Every write appends a
//! `realm_vlob_update` row whose index is the realm's new checkpoint and
//! which points at the atom as written; re-encrypted copies are atoms that
//! no change points at.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use async_trait::async_trait;
use diesel::prelude::*;
use diesel::sql_types::{Array, Bytea};
use diesel_async::{AsyncConnection, RunQueryDsl};
use parsec_protocol::cmds::authenticated::{ReencryptionBatchEntry, VlobCreate, VlobRead, VlobUpdate};
use parsec_protocol::types::*;
use parsec_schema::schema::{realm_vlob_update, vlob, vlob_atom};

use super::*;

/// The vlob's row id and its realm's, if it exists in the organization.
async fn find_vlob(c: &mut Conn, org: i64, vlob_id: Uuid) -> Result<Option<(i64, i64)>, Internal> {
    Ok(vlob::table
        .filter(vlob::organization.eq(org))
        .filter(vlob::vlob_id.eq(vlob_id))
        .select((vlob::_id, vlob::realm))
        .first(c)
        .await
        .optional()?)
}

/// Stores a version written by `author` at the realm's current revision and
/// logs the change; returns the new checkpoint. The realm row is locked.
async fn write_version(
    c: &mut Conn,
    realm: &Realm,
    author: Author,
    vlob: i64,
    version: i32,
    timestamp: DateTime,
    blob: &[u8],
) -> Result<u64, Internal> {
    let size = i32::try_from(blob.len()).map_err(|_| unexpected("blob larger than 2 GiB"))?;
    let atom: i64 = diesel::insert_into(vlob_atom::table)
        .values((
            vlob_atom::vlob.eq(vlob),
            vlob_atom::encryption_revision.eq(realm.revision()),
            vlob_atom::version.eq(version),
            vlob_atom::blob.eq(blob),
            vlob_atom::size.eq(size),
            vlob_atom::author.eq(author.device),
            vlob_atom::created_on.eq(ts(timestamp)),
        ))
        .returning(vlob_atom::_id)
        .get_result(c)
        .await?;
    #[derive(QueryableByName)]
    struct Moved {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        checkpoint: i64,
    }
    // Under the realm lock: consecutive, and committed in this order. A
    // fixed text, prepared once per connection (diesel's DSL form of this
    // update is not cacheable: a prepare round trip and a fresh plan on
    // every write).
    let Moved { checkpoint } = prepared(
        "UPDATE realm SET checkpoint = checkpoint + 1 WHERE _id = $1 RETURNING checkpoint",
        &[&bind::<diesel::sql_types::BigInt, _>(realm.pk)],
    )
    .get_result(c)
    .await?;
    diesel::insert_into(realm_vlob_update::table)
        .values((
            realm_vlob_update::realm.eq(realm.pk),
            realm_vlob_update::index.eq(checkpoint),
            realm_vlob_update::vlob_atom.eq(atom),
        ))
        .execute(c)
        .await?;
    record_change(c, realm.pk, author.user, Change::VlobUpdate, timestamp).await?;
    unsigned(checkpoint)
}

#[async_trait]
impl VlobBackend for PgStore {
    async fn write_batch(&self, org: &OrganizationId, writes: &[VlobWrite]) -> Vec<VlobWritten> {
        super::vlob_batch::write_batch(self, org, writes).await
    }

    async fn create(
        &self,
        org: &OrganizationId,
        author_id: &DeviceId,
        req: &VlobCreate,
    ) -> Result<u64, VlobCreateError> {
        let mut conn = self.conn().await?;
        conn.transaction::<_, VlobCreateError, _>(async |c| {
            let author = author(c, org, author_id).await?;
            let realm = realm_by_id(c, author.org, req.realm_id, Lock::Update).await?;
            let (realm, last) = check_access(
                c,
                realm,
                Some(author.user),
                OperationKind::DataWrite,
                Some(req.encryption_revision),
                can_write,
            )
            .await?;
            if let Some(t) = last.map(|r| r.granted_on).filter(|t| *t >= req.timestamp) {
                return Err(VlobCreateError::RequireGreaterTimestamp(t));
            }
            // The unique (organization, vlob_id) decides between concurrent
            // creators, whatever their realm.
            let inserted = diesel::insert_into(vlob::table)
                .values((
                    vlob::organization.eq(author.org),
                    vlob::realm.eq(realm.pk),
                    vlob::vlob_id.eq(req.vlob_id),
                ))
                .returning(vlob::_id)
                .get_result::<i64>(c)
                .await;
            let vlob = match inserted {
                Err(e) if is_unique_violation(&e) => return Err(VlobCreateError::AlreadyExists),
                r => r?,
            };
            Ok(write_version(c, &realm, author, vlob, 1, req.timestamp, &req.blob).await?)
        })
        .await
    }

    async fn read(
        &self,
        org: &OrganizationId,
        user: &UserId,
        req: &VlobRead,
    ) -> Result<VlobVersionRead, VlobReadError> {
        // A group of one: the same statement.
        let read = VlobToRead {
            org: org.clone(),
            user: user.clone(),
            req: req.clone(),
        };
        let mut outcomes = read_group_statement(self, std::slice::from_ref(&read)).await?;
        outcomes
            .pop()
            .unwrap_or_else(|| Err(unexpected("group read gave no outcome").into()))
    }

    fn groups_reads(&self) -> bool {
        true
    }

    async fn read_group(&self, reads: Vec<VlobToRead>) -> Vec<Result<VlobVersionRead, VlobReadError>> {
        match read_group_statement(self, &reads).await {
            Ok(outcomes) => outcomes,
            Err(e) if reads.len() > 1 => {
                // Whatever failed, each read on its own gets its own outcome.
                log::warn!("group of {} vlob reads: {e:#}; reading one by one", reads.len());
                let each = reads.iter().map(|r| VlobBackend::read(self, &r.org, &r.user, &r.req));
                futures_util::future::join_all(each).await
            }
            Err(e) => vec![Err(e.into())],
        }
    }

    async fn update(
        &self,
        org: &OrganizationId,
        author_id: &DeviceId,
        req: &VlobUpdate,
    ) -> Result<(Uuid, u64), VlobUpdateError> {
        use VlobUpdateError as E;
        let mut conn = self.conn().await?;
        conn.transaction::<_, E, _>(async |c| {
            let author = author(c, org, author_id).await?;
            let (vlob, realm) = find_vlob(c, author.org, req.vlob_id).await?.ok_or(E::VlobNotFound)?;
            let realm = realm_by_pk(c, realm, Lock::Update).await?;
            let (realm, last) = check_access(
                c,
                realm,
                Some(author.user),
                OperationKind::DataWrite,
                Some(req.encryption_revision),
                can_write,
            )
            .await?;
            if let Some(t) = last.map(|r| r.granted_on).filter(|t| *t >= req.timestamp) {
                return Err(E::RequireGreaterTimestamp(t));
            }
            // The latest version (see `LATEST_ATOM_ORDER`).
            let latest: Option<(i32, Ts)> = vlob_atom::table
                .filter(vlob_atom::vlob.eq(vlob))
                .order((vlob_atom::encryption_revision.desc(), vlob_atom::version.desc()))
                .select((vlob_atom::version, vlob_atom::created_on))
                .first(c)
                .await
                .optional()?;
            let (latest, latest_on) = latest.ok_or(E::VlobNotFound)?;
            let next = latest + 1;
            if !same_revision(req.version, unsigned(next)?) {
                return Err(E::BadVersion);
            }
            // Equal is fine: two versions may carry the same timestamp.
            if dt(latest_on) > req.timestamp {
                return Err(E::RequireGreaterTimestamp(dt(latest_on)));
            }
            let checkpoint = write_version(c, &realm, author, vlob, next, req.timestamp, &req.blob).await?;
            Ok((realm.realm_id, checkpoint))
        })
        .await
    }

    async fn poll_changes(
        &self,
        org: &OrganizationId,
        user: &UserId,
        realm_id: Uuid,
        last_checkpoint: i64,
    ) -> Result<VlobChanges, VlobPollChangesError> {
        #[derive(QueryableByName)]
        struct Row {
            #[diesel(embed)]
            realm: MaybeRealmRow,
            #[diesel(sql_type = Nullable<Text>)]
            requester_role: Option<String>,
            #[diesel(sql_type = Nullable<Array<BigInt>>)]
            indexes: Option<Vec<i64>>,
            #[diesel(sql_type = Nullable<Array<diesel::sql_types::Uuid>>)]
            vlob_ids: Option<Vec<Uuid>>,
            #[diesel(sql_type = Nullable<Array<Int4>>)]
            versions: Option<Vec<i32>>,
        }
        // One statement (see "One-statement reads" in `data.rs`). The
        // changes are read only for a requester with a role; the three
        // arrays are aggregated from the same rows, so they line up. The
        // atom and the vlob of each change are looked up by primary key in
        // subqueries the planner cannot flatten (`LIMIT 1`): as plain joins,
        // the generic plan PostgreSQL settles on for a prepared statement
        // (it cannot know how many changes are past $4) hashed the whole
        // `vlob_atom` and `vlob` tables on every poll once they were large.
        static SQL: LazyLock<String> = LazyLock::new(|| {
            format!(
                "SELECT {REALM_COLUMNS}, lr.role AS requester_role, c.indexes, c.vlob_ids, c.versions \
                 {FROM_REQUESTER} \
                 LEFT JOIN realm r ON r.organization = o._id AND r.realm_id = $3 \
                 {REQUESTER_ROLE} \
                 LEFT JOIN LATERAL (SELECT array_agg(vu.index) AS indexes, array_agg(v.vlob_id) AS vlob_ids, \
                   array_agg(a.version) AS versions \
                   FROM realm_vlob_update vu \
                   CROSS JOIN LATERAL (SELECT x.version, x.vlob FROM vlob_atom x WHERE x._id = vu.vlob_atom LIMIT 1) a \
                   CROSS JOIN LATERAL (SELECT y.vlob_id FROM vlob y WHERE y._id = a.vlob LIMIT 1) v \
                   WHERE lr.role IS NOT NULL AND vu.realm = r._id AND vu.index > $4) c ON TRUE \
                 WHERE o.organization_id = $1"
            )
        });
        let mut conn = self.conn().await?;
        let row: Option<Row> = prepared(
            &SQL,
            &[
                &bind::<Text, _>(org.as_str()),
                &bind::<Text, _>(user.as_str()),
                &bind::<diesel::sql_types::Uuid, _>(realm_id),
                &bind::<BigInt, _>(last_checkpoint),
            ],
        )
        .get_result(&mut conn)
        .await
        .optional()?;
        drop(conn);
        let row = row.ok_or_else(|| unexpected("organization of an authenticated user not found"))?;
        decide_access(
            row.realm.into_realm()?,
            row.requester_role,
            OperationKind::DataRead,
            None,
            can_read,
        )?;
        let (indexes, ids, versions) = (
            row.indexes.unwrap_or_default(),
            row.vlob_ids.unwrap_or_default(),
            row.versions.unwrap_or_default(),
        );
        if ids.len() != indexes.len() || versions.len() != indexes.len() {
            return Err(unexpected("change arrays of different lengths").into());
        }
        let mut newer: Vec<(i64, Uuid, i32)> = indexes
            .into_iter()
            .zip(ids)
            .zip(versions)
            .map(|((index, id), version)| (index, id, version))
            .collect();
        newer.sort_unstable_by_key(|(index, _, _)| *index);
        // The last row's index, not `realm.checkpoint`: both are the same
        // in one snapshot, and this one is in the snapshot of the rows.
        let current_checkpoint = newer.last().map_or(last_checkpoint, |(index, _, _)| *index);
        let changes = newer
            .into_iter()
            .map(|(_, id, version)| Ok((id, unsigned(version)?)))
            .collect::<Result<BTreeMap<_, _>, Internal>>()?;
        Ok(VlobChanges {
            current_checkpoint,
            changes,
        })
    }

    async fn list_versions(
        &self,
        org: &OrganizationId,
        user: &UserId,
        vlob_id: Uuid,
    ) -> Result<BTreeMap<u64, (DateTime, DeviceId)>, VlobListVersionsError> {
        #[derive(QueryableByName)]
        struct Row {
            #[diesel(sql_type = Nullable<BigInt>)]
            vlob: Option<i64>,
            #[diesel(embed)]
            realm: MaybeRealmRow,
            #[diesel(sql_type = Nullable<Text>)]
            requester_role: Option<String>,
            #[diesel(sql_type = Nullable<Array<Int4>>)]
            versions: Option<Vec<i32>>,
            #[diesel(sql_type = Nullable<Array<Timestamptz>>)]
            created_ons: Option<Vec<Ts>>,
            #[diesel(sql_type = Nullable<Array<Text>>)]
            authors: Option<Vec<String>>,
        }
        // One statement (see "One-statement reads" in `data.rs`). The atoms
        // are read only for a requester with a role; the three arrays are
        // aggregated from the same rows, so they line up.
        static SQL: LazyLock<String> = LazyLock::new(|| {
            format!(
                "SELECT v._id AS vlob, {REALM_COLUMNS}, lr.role AS requester_role, \
                   av.versions, av.created_ons, av.authors \
                 {FROM_REQUESTER} \
                 LEFT JOIN vlob v ON v.organization = o._id AND v.vlob_id = $3 \
                 LEFT JOIN realm r ON r._id = v.realm \
                 {REQUESTER_ROLE} \
                 LEFT JOIN LATERAL (SELECT array_agg(a.version) AS versions, array_agg(a.created_on) AS created_ons, \
                   array_agg(d.device_id) AS authors \
                   FROM vlob_atom a JOIN device d ON d._id = a.author \
                   WHERE lr.role IS NOT NULL AND a.vlob = v._id) av ON TRUE \
                 WHERE o.organization_id = $1"
            )
        });
        let mut conn = self.conn().await?;
        let row: Option<Row> = prepared(
            &SQL,
            &[
                &bind::<Text, _>(org.as_str()),
                &bind::<Text, _>(user.as_str()),
                &bind::<diesel::sql_types::Uuid, _>(vlob_id),
            ],
        )
        .get_result(&mut conn)
        .await
        .optional()?;
        drop(conn);
        let row = row.ok_or_else(|| unexpected("organization of an authenticated user not found"))?;
        row.vlob.ok_or(VlobListVersionsError::VlobNotFound)?;
        decide_access(
            row.realm.into_realm()?,
            row.requester_role,
            OperationKind::DataRead,
            None,
            can_read,
        )?;
        let (versions, created_ons, authors) = (
            row.versions.unwrap_or_default(),
            row.created_ons.unwrap_or_default(),
            row.authors.unwrap_or_default(),
        );
        if created_ons.len() != versions.len() || authors.len() != versions.len() {
            return Err(unexpected("version arrays of different lengths").into());
        }
        // One entry per atom: the copies of a version at several revisions
        // carry the same author and timestamp, and collapse in the map.
        let versions = versions
            .into_iter()
            .zip(created_ons)
            .zip(authors)
            .map(|((version, on), author)| Ok((unsigned(version)?, (dt(on), parse_id(&author)?))))
            .collect::<Result<_, Internal>>()?;
        Ok(versions)
    }

    async fn maintenance_get_reencryption_batch(
        &self,
        org: &OrganizationId,
        user: &UserId,
        realm_id: Uuid,
        encryption_revision: i64,
        size: usize,
    ) -> Result<Vec<ReencryptionBatchEntry>, VlobMaintenanceError> {
        #[derive(QueryableByName)]
        struct Todo {
            #[diesel(sql_type = diesel::sql_types::Uuid)]
            vlob_id: Uuid,
            #[diesel(sql_type = Int4)]
            version: i32,
            #[diesel(sql_type = Bytea)]
            blob: Vec<u8>,
        }
        let mut conn = self.conn().await?;
        conn.transaction::<_, VlobMaintenanceError, _>(async |c| {
            let (org, user) = org_and_user(c, org, user).await?;
            let realm = realm_by_id(c, org, realm_id, Lock::None).await?;
            let (realm, _) = check_access(
                c,
                realm,
                user,
                OperationKind::Maintenance,
                Some(encryption_revision),
                can_maintain,
            )
            .await?;
            let current = realm.revision();
            // Versions at R−1 without a copy at R yet, in a stable order.
            let todo: Vec<Todo> = diesel::sql_query(
                "SELECT v.vlob_id, a.version, a.blob FROM vlob_atom a JOIN vlob v ON v._id = a.vlob \
                 WHERE v.realm = $1 AND a.encryption_revision = $2 AND NOT EXISTS ( \
                   SELECT 1 FROM vlob_atom n WHERE n.vlob = a.vlob AND n.version = a.version \
                   AND n.encryption_revision = $3) \
                 ORDER BY v.vlob_id, a.version LIMIT $4",
            )
            .bind::<BigInt, _>(realm.pk)
            .bind::<Int4, _>(current - 1)
            .bind::<Int4, _>(current)
            .bind::<BigInt, _>(i64::try_from(size).unwrap_or(i64::MAX))
            .load(c)
            .await?;
            Ok(todo
                .into_iter()
                .map(|t| ReencryptionBatchEntry {
                    vlob_id: t.vlob_id,
                    version: i64::from(t.version),
                    blob: t.blob,
                })
                .collect())
        })
        .await
    }

    async fn maintenance_save_reencryption_batch(
        &self,
        org: &OrganizationId,
        user: &UserId,
        realm_id: Uuid,
        encryption_revision: i64,
        batch: &[ReencryptionBatchEntry],
    ) -> Result<(u64, u64), VlobMaintenanceError> {
        // Versions that cannot exist (out of the column's range) are ignored,
        // as unknown ones are.
        let entries = batch
            .iter()
            .filter_map(|e| Some((e.vlob_id, i32::try_from(e.version).ok()?, &e.blob)));
        let (ids, (versions, blobs)): (Vec<Uuid>, (Vec<i32>, Vec<&Vec<u8>>)) =
            entries.map(|(id, version, blob)| (id, (version, blob))).unzip();
        let mut conn = self.conn().await?;
        conn.transaction::<_, VlobMaintenanceError, _>(async |c| {
            let (org, user) = org_and_user(c, org, user).await?;
            // Locked: ordered against `finish_reencryption_maintenance`.
            let realm = realm_by_id(c, org, realm_id, Lock::Update).await?;
            let (realm, _) = check_access(
                c,
                realm,
                user,
                OperationKind::Maintenance,
                Some(encryption_revision),
                can_maintain,
            )
            .await?;
            // One copy per existing version of a vlob of this realm (unknown
            // versions and other realms' vlobs are ignored), the first entry
            // of the batch winning; versions already saved stay as they are.
            // Author and timestamp are the version's.
            diesel::sql_query(
                "INSERT INTO vlob_atom (vlob, encryption_revision, version, blob, size, author, created_on) \
                 SELECT DISTINCT ON (a.vlob, a.version) a.vlob, $2, a.version, e.blob, octet_length(e.blob), \
                   a.author, a.created_on \
                 FROM unnest($3::uuid[], $4::int4[], $5::bytea[]) WITH ORDINALITY AS e(vlob_id, version, blob, n) \
                 JOIN vlob v ON v.realm = $1 AND v.vlob_id = e.vlob_id \
                 JOIN vlob_atom a ON a.vlob = v._id AND a.version = e.version \
                 ORDER BY a.vlob, a.version, e.n \
                 ON CONFLICT (vlob, encryption_revision, version) DO NOTHING",
            )
            .bind::<BigInt, _>(realm.pk)
            .bind::<Int4, _>(realm.revision())
            .bind::<Array<diesel::sql_types::Uuid>, _>(&ids)
            .bind::<Array<Int4>, _>(&versions)
            .bind::<Array<Bytea>, _>(&blobs)
            .execute(c)
            .await?;
            Ok(reencryption_progress(c, &realm).await?)
        })
        .await
    }
}

/// A row of [`read_group_statement`].
#[derive(QueryableByName)]
struct ReadRow {
    #[diesel(sql_type = BigInt)]
    n: i64,
    #[diesel(sql_type = Nullable<BigInt>)]
    vlob: Option<i64>,
    #[diesel(embed)]
    realm: MaybeRealmRow,
    #[diesel(sql_type = Nullable<Text>)]
    requester_role: Option<String>,
    #[diesel(sql_type = Nullable<Int4>)]
    version: Option<i32>,
    #[diesel(sql_type = Nullable<Bytea>)]
    blob: Option<Vec<u8>>,
    #[diesel(sql_type = Nullable<Text>)]
    author: Option<String>,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    created_on: Option<Ts>,
    #[diesel(sql_type = Nullable<Text>)]
    author_role: Option<String>,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    author_role_on: Option<Ts>,
}

/// `vlob_read` of every read of `reads` in one statement (see "One-statement
/// reads" in `data.rs`): $1 organizations, $2 requesters, $3 vlobs, $4
/// encryption revisions, $5 versions and $6 timestamps (NULL: not asked);
/// one row per read, with its ordinal `n`. Each read is a LIMIT 1 lateral,
/// planned on its own as index probes (a plain join over the unnest can be
/// planned as hash joins over whole tables).
///
/// The atom taken is the highest version at the revision that is at most
/// the one asked for and, when a timestamp is asked for, created at or
/// before it: a version asked for that does not exist is the lower one
/// found, which [`judge_read`] refuses. It is only looked for when the
/// requester has a role (`lr.role`): without one the answer is `NotAllowed`
/// whatever it is.
async fn read_group_statement(
    store: &PgStore,
    reads: &[VlobToRead],
) -> Result<Vec<Result<VlobVersionRead, VlobReadError>>, Internal> {
    static SQL: LazyLock<String> = LazyLock::new(|| {
        format!(
            "SELECT req.n, x.* \
             FROM unnest($1::text[], $2::text[], $3::uuid[], $4::bigint[], $5::bigint[], $6::timestamptz[]) \
               WITH ORDINALITY AS req(org_id, user_id, vlob_id, revision, version, at, n) \
             CROSS JOIN LATERAL (SELECT v._id AS vlob, {REALM_COLUMNS}, lr.role AS requester_role, \
               w.version, w.blob, w.author, w.created_on, \
               alr.role AS author_role, alr.certified_on AS author_role_on \
             FROM organization o \
             LEFT JOIN user_ u ON u.organization = o._id AND u.user_id = req.user_id \
             LEFT JOIN vlob v ON v.organization = o._id AND v.vlob_id = req.vlob_id \
             LEFT JOIN realm r ON r._id = v.realm \
             {REQUESTER_ROLE} \
             LEFT JOIN LATERAL (SELECT a.version, a.blob, a.created_on, d.device_id AS author, \
                 d.user_ AS author_user \
               FROM vlob_atom a JOIN device d ON d._id = a.author \
               WHERE lr.role IS NOT NULL AND a.vlob = v._id AND a.encryption_revision = req.revision \
                 AND a.version <= coalesce(req.version, 2147483647) \
                 AND (req.at IS NULL OR a.created_on <= req.at) \
               ORDER BY a.version DESC LIMIT 1) w ON TRUE \
             LEFT JOIN LATERAL (SELECT rr.role, rr.certified_on FROM realm_user_role rr \
               WHERE rr.realm = r._id AND rr.user_ = w.author_user \
               ORDER BY rr.certified_on DESC LIMIT 1) alr ON TRUE \
             WHERE o.organization_id = req.org_id LIMIT 1) x"
        )
    });
    // An exact version wins over a timestamp (commands.md §9.3).
    let at = |r: &VlobToRead| r.req.timestamp.filter(|_| r.req.version.is_none()).map(ts);
    let mut conn = store.conn().await?;
    let rows: Vec<ReadRow> = prepared(
        &SQL,
        &[
            &bind::<Array<Text>, _>(reads.iter().map(|r| r.org.as_str()).collect::<Vec<_>>()),
            &bind::<Array<Text>, _>(reads.iter().map(|r| r.user.as_str()).collect::<Vec<_>>()),
            &bind::<Array<diesel::sql_types::Uuid>, _>(reads.iter().map(|r| r.req.vlob_id).collect::<Vec<_>>()),
            &bind::<Array<BigInt>, _>(reads.iter().map(|r| r.req.encryption_revision).collect::<Vec<_>>()),
            &bind::<Array<Nullable<BigInt>>, _>(reads.iter().map(|r| r.req.version).collect::<Vec<_>>()),
            &bind::<Array<Nullable<Timestamptz>>, _>(reads.iter().map(at).collect::<Vec<_>>()),
        ],
    )
    .load(&mut conn)
    .await?;
    drop(conn);
    Ok(by_ordinal(rows, reads.len(), |r| r.n)?
        .into_iter()
        .zip(reads)
        .map(|(row, read)| judge_read(row, &read.req))
        .collect())
}

/// The rules of `vlob_read` (commands.md §9.3) applied to its row, in the
/// order of the checks of `create` and `update`.
fn judge_read(row: Option<ReadRow>, req: &VlobRead) -> Result<VlobVersionRead, VlobReadError> {
    use VlobReadError as E;
    let row = row.ok_or_else(|| unexpected("organization of an authenticated user not found"))?;
    row.vlob.ok_or(E::VlobNotFound)?;
    decide_access(
        row.realm.into_realm()?,
        row.requester_role,
        OperationKind::DataRead,
        Some(req.encryption_revision),
        can_read,
    )?;
    // The realm check accepted it: the current or the previous revision.
    i32::try_from(req.encryption_revision).map_err(|_| E::BadEncryptionRevision)?;
    let Some(version) = row
        .version
        .filter(|v| req.version.is_none_or(|asked| asked == i64::from(*v)))
    else {
        return Err(E::BadVersion);
    };
    let (Some(blob), Some(author), Some(created_on)) = (row.blob, row.author, row.created_on) else {
        return Err(unexpected("vlob atom without blob, author or date").into());
    };
    parse_role(row.author_role)?;
    Ok(VlobVersionRead {
        version: unsigned(version)?,
        blob,
        author: parse_id(&author)?,
        timestamp: dt(created_on),
        author_last_role_granted_on: row.author_role_on.map(dt),
    })
}
