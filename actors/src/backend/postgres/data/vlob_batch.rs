//! PostgreSQL: many vlob writes of one organization in one transaction
//! ([`VlobBackend::write_batch`]).
//!
//! Same checks and writes as `create` / `update` (see `vlob.rs`), set-wise:
//! a fixed number of statements for the whole batch instead of a dozen per
//! write, and each realm lock held once per batch instead of once per write.
//!
//! 1. The authors' row ids (organization `FOR KEY SHARE`, as [`author`]).
//! 2. Every realm the batch touches, locked in row id order (the order any
//!    other batch takes them in, so batches never wait on each other in a
//!    cycle), then, under those locks, the authors' last roles and the
//!    updated vlobs' rows with their latest versions: nothing that decides
//!    an outcome can change before commit.
//! 3. The checks, in Rust and in batch order, with the rules of the
//!    one-by-one path. The batch holds at most one write per vlob, so no
//!    write's checks depend on another write of the batch.
//! 4. The writes that passed, in one statement: new `vlob` rows, their
//!    atoms, each realm's checkpoint moved by its number of writes
//!    (consecutive indexes, in batch order), the change log,
//!    `realm_user_change`; then the commit.
//!
//! The transaction takes two round trips: `BEGIN` goes with the reads of
//! step 1 and 2, `COMMIT` with the write of step 4. One batch of an
//! organization runs at a time, and PostgreSQL runs a connection's
//! statements one after the other, so the batch's statements and round
//! trips are the organization's write rate: a batch of 48 updates took
//! about 1.9 ms, of which PostgreSQL spent 0.9 executing statements and
//! most of the rest on their set-up (bind, executor start, results), which
//! is why the batch has as few statements as it can (BENCHMARKS.md). The
//! write of step 4 either stores all its rows or fails, so the commit
//! needs no look at its outcome first: a create whose id is taken fails
//! the `vlob` insert (unique key), and with it the transaction. Looking the
//! creates' ids up beforehand cost more than the round trip saved; a taken
//! id is rare (a client's retry), and costs its batch the one-by-one path
//! below, which answers `AlreadyExists`.
//!
//! Anything unexpected (a database error, a taken id, a batch with two
//! writes on one vlob) makes the whole batch run again one write per
//! transaction, so a failure never changes another write's outcome.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::LazyLock;

use diesel::sql_types::{Array, Bytea, Timestamptz};
use parsec_protocol::cmds::authenticated::{VlobCreate, VlobUpdate};

use super::*;

/// An author's row ids, by device id.
type Authors = HashMap<String, Author>;

/// Runs `writes` together (see the module documentation).
pub(super) async fn write_batch(store: &PgStore, org: &OrganizationId, writes: &[VlobWrite]) -> Vec<VlobWritten> {
    if writes.len() > 1 && distinct_vlobs(writes) {
        let t0 = std::time::Instant::now();
        match run(store, org, writes).await {
            Ok(outcomes) => {
                log::debug!("vlob write batch of {} in {:?}", writes.len(), t0.elapsed());
                return outcomes;
            }
            Err(e) => log::warn!("vlob write batch of {}: {e:#}; writing one by one", writes.len()),
        }
    }
    write_one_by_one(store, org, writes).await
}

/// One write that passed its checks, waiting to be stored.
struct Accepted {
    /// Index in the batch.
    at: usize,
    realm: i64,
    /// `None` for a create: its `vlob` row is inserted with the atom.
    vlob: Option<i64>,
    version: i32,
    author: Author,
}

async fn run(store: &PgStore, org: &OrganizationId, writes: &[VlobWrite]) -> Result<Vec<VlobWritten>, Internal> {
    let mut tx = OpenTransaction {
        conn: Some(store.conn().await?),
    };
    let conn = tx
        .conn
        .as_deref()
        .ok_or_else(|| unexpected("vlob batch without connection"))?;
    let outcome = run_in(conn, org, writes).await;
    match &outcome {
        Ok(_) => tx.closed(),
        // The transaction may still be open: an error before `COMMIT`.
        Err(_) => {
            let mut c: &Conn = conn;
            if diesel_async::SimpleAsyncConnection::batch_execute(&mut c, "ROLLBACK")
                .await
                .is_ok()
            {
                tx.closed();
            }
        }
    }
    outcome
}

/// A pooled connection whose transaction may be open: unless
/// [`OpenTransaction::closed`] was called, dropping it closes the
/// connection instead of handing it back to the pool (the future running
/// the batch was dropped, or `ROLLBACK` failed).
struct OpenTransaction {
    conn: Option<parsec_schema::PooledConnection>,
}

impl OpenTransaction {
    fn closed(&mut self) {
        drop(self.conn.take());
    }
}

impl Drop for OpenTransaction {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            drop(parsec_schema::PooledConnection::take(conn));
        }
    }
}

/// The batch's transaction on `c`, from `BEGIN` to `COMMIT`.
async fn run_in(c: &Conn, org: &OrganizationId, writes: &[VlobWrite]) -> Result<Vec<VlobWritten>, Internal> {
    let Snapshot {
        authors,
        updated,
        realms,
        roles,
    } = snapshot(c, org, writes).await?;
    let org_pk = authors
        .values()
        .next()
        .map(|a| a.org)
        .ok_or_else(|| unexpected("batch without authors"))?;

    // 3. Checks.
    let mut outcomes: Vec<Option<VlobWritten>> = Vec::with_capacity(writes.len());
    let mut accepted = Vec::new();
    for (at, write) in writes.iter().enumerate() {
        let author_of = |device: &DeviceId| {
            authors
                .get(device.as_str())
                .copied()
                .ok_or_else(|| unexpected("authenticated device not found"))
        };
        match write {
            VlobWrite::Create { author, req } => {
                let author = author_of(author)?;
                let realm = realms.values().find(|r| r.realm.realm_id == req.realm_id);
                match check_create(realm.map(|r| &r.realm), author, req, &roles) {
                    Ok(realm) => {
                        accepted.push(Accepted {
                            at,
                            realm: realm.pk,
                            vlob: None,
                            version: 1,
                            author,
                        });
                        outcomes.push(None);
                    }
                    Err(e) => outcomes.push(Some(VlobWritten::Create(Err(e)))),
                }
            }
            VlobWrite::Update { author, req } => {
                let author = author_of(author)?;
                match check_update(req, author, &updated, &realms, &roles) {
                    Ok((realm, vlob, version)) => {
                        accepted.push(Accepted {
                            at,
                            realm,
                            vlob: Some(vlob),
                            version,
                            author,
                        });
                        outcomes.push(None);
                    }
                    Err(e) => outcomes.push(Some(VlobWritten::Update(Err(e)))),
                }
            }
        }
    }

    // 4. Writes, and the commit.
    let checkpoints = store_and_commit(c, org_pk, writes, &realms, &accepted).await?;
    for (a, checkpoint) in accepted.iter().zip(checkpoints) {
        outcomes[a.at] = Some(match &writes[a.at] {
            VlobWrite::Create { .. } => VlobWritten::Create(Ok(checkpoint)),
            VlobWrite::Update { .. } => {
                let realm_id = realms
                    .get(&a.realm)
                    .map(|r| r.realm.realm_id)
                    .ok_or_else(|| unexpected("realm of a write not locked"))?;
                VlobWritten::Update(Ok((realm_id, checkpoint)))
            }
        });
    }
    outcomes
        .into_iter()
        .map(|o| o.ok_or_else(|| unexpected("vlob write without outcome")))
        .collect()
}

// ------------------------------------------------------------------ reads

/// A locked realm and its checkpoint (stable while the lock is held).
struct LockedRealm {
    realm: Realm,
    checkpoint: i64,
}

/// What decides the batch's outcomes, read under the realm locks.
struct Snapshot {
    authors: Authors,
    /// The vlobs updates name, by vlob id.
    updated: HashMap<Uuid, UpdatedVlob>,
    /// By row id.
    realms: BTreeMap<i64, LockedRealm>,
    /// (realm, user) → last role certificate.
    roles: HashMap<(i64, i64), LastRole>,
}

/// A vlob an update names, read under its realm's lock.
struct UpdatedVlob {
    pk: i64,
    realm: i64,
    /// Its latest version and that version's timestamp. Every vlob row
    /// gets its first atom in the statement that inserts it; one without
    /// would fail its update as not found.
    latest: Option<(i32, Ts)>,
}

/// The texts of the four snapshot reads (fixed: each is one prepared
/// statement per connection). Binds: $1 the organization id; `authors`: $2
/// the authors' device ids; `latest`: $2 the vlob ids updates name;
/// `locked`, `roles`: $2 the realm ids creates name, $3 the vlob ids
/// updates name, and (`roles`) $4 the authors' device ids.
struct SnapshotSql {
    authors: String,
    locked: String,
    roles: String,
    latest: String,
}

static SNAPSHOT_SQL: LazyLock<SnapshotSql> = LazyLock::new(|| {
    const ORG: &str = "(SELECT _id FROM organization WHERE organization_id = $1)";
    // The realms the creates name ($2) and those of the updated vlobs ($3).
    let realms_of_batch = format!(
        "r.organization = {ORG} AND (r.realm_id = ANY($2) OR r._id IN \
         (SELECT realm FROM vlob WHERE organization = {ORG} AND vlob_id = ANY($3)))"
    );
    SnapshotSql {
        authors: "SELECT o._id AS org, d._id AS device, d.device_id, d.user_ FROM device d \
             JOIN organization o ON o._id = d.organization \
             WHERE o.organization_id = $1 AND d.device_id = ANY($2) FOR KEY SHARE OF o"
            .to_string(),
        // Row id order: the order every batch locks realms in, so batches
        // never wait on each other in a cycle.
        locked: format!(
            "SELECT r._id, r.realm_id, r.encryption_revision, r.maintenance_type, \
             d.device_id AS maintenance_started_by, r.maintenance_started_on, r.checkpoint \
             FROM realm r LEFT JOIN device d ON d._id = r.maintenance_started_by \
             WHERE {realms_of_batch} ORDER BY r._id{}",
            Lock::Update.clause()
        ),
        roles: format!(
            "SELECT DISTINCT ON (u.realm, u.user_) u.realm, u.user_, u.role, u.certified_on \
             FROM realm_user_role u \
             WHERE u.realm IN (SELECT r._id FROM realm r WHERE {realms_of_batch}) \
             AND u.user_ IN (SELECT user_ FROM device WHERE organization = {ORG} AND device_id = ANY($4)) \
             ORDER BY u.realm, u.user_, u.certified_on DESC"
        ),
        // The updated vlobs' rows (immutable), each with its latest
        // version: one index probe per vlob (see `LATEST_ATOM_ORDER`).
        latest: format!(
            "SELECT v.vlob_id, v._id AS vlob, v.realm, a.version, a.created_on FROM vlob v \
             LEFT JOIN LATERAL (SELECT a.version, a.created_on FROM vlob_atom a WHERE a.vlob = v._id \
               ORDER BY {LATEST_ATOM_ORDER} LIMIT 1) a ON true \
             WHERE v.organization = {ORG} AND v.vlob_id = ANY($2)"
        ),
    }
});

/// `BEGIN` and the four reads of a batch, sent at once on the connection
/// (pipelined: PostgreSQL runs them in order, so the role and version reads,
/// which come after the realm locks, see what the previous lock holders
/// committed). They name rows by public ids, since no row id is known yet.
/// `BEGIN` goes through the statement cache like the reads: statements sent
/// past that cache (`batch_execute`) could overtake one still being
/// prepared.
async fn snapshot(c: &Conn, org: &OrganizationId, writes: &[VlobWrite]) -> Result<Snapshot, Internal> {
    #[derive(QueryableByName)]
    struct AuthorRow {
        #[diesel(sql_type = BigInt)]
        org: i64,
        #[diesel(sql_type = BigInt)]
        device: i64,
        #[diesel(sql_type = Text)]
        device_id: String,
        #[diesel(sql_type = BigInt)]
        user_: i64,
    }
    #[derive(QueryableByName)]
    struct LockedRow {
        #[diesel(embed)]
        realm: RealmRow,
        #[diesel(sql_type = BigInt)]
        checkpoint: i64,
    }
    #[derive(QueryableByName)]
    struct RoleRow {
        #[diesel(sql_type = BigInt)]
        realm: i64,
        #[diesel(sql_type = BigInt)]
        user_: i64,
        #[diesel(sql_type = Nullable<Text>)]
        role: Option<String>,
        #[diesel(sql_type = Timestamptz)]
        certified_on: Ts,
    }
    #[derive(QueryableByName)]
    struct LatestRow {
        #[diesel(sql_type = diesel::sql_types::Uuid)]
        vlob_id: Uuid,
        #[diesel(sql_type = BigInt)]
        vlob: i64,
        #[diesel(sql_type = BigInt)]
        realm: i64,
        #[diesel(sql_type = Nullable<Int4>)]
        version: Option<i32>,
        #[diesel(sql_type = Nullable<Timestamptz>)]
        created_on: Option<Ts>,
    }

    let devices: BTreeSet<&str> = writes
        .iter()
        .map(|w| match w {
            VlobWrite::Create { author, .. } | VlobWrite::Update { author, .. } => author.as_str(),
        })
        .collect();
    let devices: Vec<&str> = devices.into_iter().collect();
    let mut created_in = BTreeSet::new();
    let mut updated_ids = Vec::new();
    for w in writes {
        match w {
            VlobWrite::Create { req, .. } => {
                created_in.insert(req.realm_id);
            }
            VlobWrite::Update { req, .. } => updated_ids.push(req.vlob_id),
        }
    }
    let created_in: Vec<Uuid> = created_in.into_iter().collect();
    let org = bind::<Text, _>(org.as_str());
    let devices = bind::<Array<Text>, _>(&devices);
    let created_in = bind::<Array<diesel::sql_types::Uuid>, _>(&created_in);
    // A batch of creates only has no vlob to look up: one statement fewer.
    let has_updates = !updated_ids.is_empty();
    let updated_ids = bind::<Array<diesel::sql_types::Uuid>, _>(&updated_ids);
    let by_device: [&dyn BindValue; 2] = [&org, &devices];
    let by_vlob: [&dyn BindValue; 2] = [&org, &updated_ids];
    let by_realm: [&dyn BindValue; 3] = [&org, &created_in, &updated_ids];
    let by_realm_and_device: [&dyn BindValue; 4] = [&org, &created_in, &updated_ids, &devices];
    let (mut c0, mut c1, mut c2, mut c3, mut c4) = (c, c, c, c, c);
    let begin = prepared("BEGIN", &[]).execute(&mut c0);
    let authors = prepared(&SNAPSHOT_SQL.authors, &by_device).load::<AuthorRow>(&mut c1);
    let locked = prepared(&SNAPSHOT_SQL.locked, &by_realm).load::<LockedRow>(&mut c2);
    let roles = prepared(&SNAPSHOT_SQL.roles, &by_realm_and_device).load::<RoleRow>(&mut c3);
    let latest = async {
        match has_updates {
            true => {
                prepared(&SNAPSHOT_SQL.latest, &by_vlob)
                    .load::<LatestRow>(&mut c4)
                    .await
            }
            false => Ok(Vec::new()),
        }
    };
    // Polled, hence sent, in this order.
    let reads = futures_util::future::try_join4(authors, locked, roles, latest);
    let (_, (authors, locked, roles, latest)) = futures_util::future::try_join(begin, reads).await?;

    let authors = authors
        .into_iter()
        .map(|r| {
            let author = Author {
                org: r.org,
                device: r.device,
                user: r.user_,
            };
            (r.device_id, author)
        })
        .collect();
    let updated = latest
        .into_iter()
        .map(|r| {
            let vlob = UpdatedVlob {
                pk: r.vlob,
                realm: r.realm,
                latest: r.version.zip(r.created_on),
            };
            (r.vlob_id, vlob)
        })
        .collect();
    let realms = locked
        .into_iter()
        .map(|row| {
            let realm = row.realm.into_realm()?;
            let locked = LockedRealm {
                realm,
                checkpoint: row.checkpoint,
            };
            Ok((locked.realm.pk, locked))
        })
        .collect::<Result<_, Internal>>()?;
    let roles = roles
        .into_iter()
        .map(|r| {
            let role = LastRole {
                role: parse_role(r.role)?,
                granted_on: dt(r.certified_on),
            };
            Ok(((r.realm, r.user_), role))
        })
        .collect::<Result<_, Internal>>()?;
    Ok(Snapshot {
        authors,
        updated,
        realms,
        roles,
    })
}

// ----------------------------------------------------------------- checks

/// The realm and role checks of a write (as `check_access` with `can_write`).
fn check_write<'r>(
    realm: Option<&'r Realm>,
    author: Author,
    encryption_revision: i64,
    roles: &HashMap<(i64, i64), LastRole>,
) -> Result<(&'r Realm, Option<LastRole>), Denied> {
    let realm = realm.ok_or(Denied::RealmNotFound)?;
    check_realm_state(&realm.status, OperationKind::DataWrite, Some(encryption_revision)).map_err(Denied::State)?;
    let last = roles.get(&(realm.pk, author.user)).copied();
    if !can_write(last.and_then(|r| r.role)) {
        return Err(Denied::NotAllowed);
    }
    Ok((realm, last))
}

fn check_create<'r>(
    realm: Option<&'r Realm>,
    author: Author,
    req: &VlobCreate,
    roles: &HashMap<(i64, i64), LastRole>,
) -> Result<&'r Realm, VlobCreateError> {
    let (realm, last) = check_write(realm, author, req.encryption_revision, roles)?;
    if let Some(t) = last.map(|r| r.granted_on).filter(|t| *t >= req.timestamp) {
        return Err(VlobCreateError::RequireGreaterTimestamp(t));
    }
    Ok(realm)
}

/// Checks an update; returns its realm's and vlob's row ids and the version it writes.
fn check_update(
    req: &VlobUpdate,
    author: Author,
    updated: &HashMap<Uuid, UpdatedVlob>,
    realms: &BTreeMap<i64, LockedRealm>,
    roles: &HashMap<(i64, i64), LastRole>,
) -> Result<(i64, i64, i32), VlobUpdateError> {
    use VlobUpdateError as E;
    let vlob = updated.get(&req.vlob_id).ok_or(E::VlobNotFound)?;
    let realm = realms.get(&vlob.realm).map(|r| &r.realm);
    let (realm, last) = check_write(realm, author, req.encryption_revision, roles)?;
    if let Some(t) = last.map(|r| r.granted_on).filter(|t| *t >= req.timestamp) {
        return Err(E::RequireGreaterTimestamp(t));
    }
    let (latest, latest_on) = vlob.latest.ok_or(E::VlobNotFound)?;
    let next = latest + 1;
    if !same_revision(req.version, unsigned(next)?) {
        return Err(E::BadVersion);
    }
    if dt(latest_on) > req.timestamp {
        return Err(E::RequireGreaterTimestamp(dt(latest_on)));
    }
    Ok((realm.pk, vlob.pk, next))
}

// ----------------------------------------------------------------- writes

/// [`store_and_commit`]'s writes, in one statement for a batch with
/// creates. Binds, one element per write: $1 the vlob's row id (null for a
/// create), $2 its id, $3 its realm, $4 the encryption revision, $5 the
/// version, $6 the blob, $7 the author, $8 the timestamp, $9 the realm's
/// index; $10 the organization; then those of [`STORE_REALMS`]. Answers
/// the number of change log rows and of realms moved.
static STORE_WITH_CREATES: LazyLock<String> = LazyLock::new(|| {
    format!(
        "WITH x AS (SELECT * FROM unnest($1::bigint[], $2::uuid[], $3::bigint[], \
           $4::int4[], $5::int4[], $6::bytea[], $7::bigint[], $8::timestamptz[], $9::bigint[]) \
           AS x(pk, vlob_id, realm, revision, version, blob, author, created_on, idx)), \
         created AS (INSERT INTO vlob (organization, realm, vlob_id) \
           SELECT $10, realm, vlob_id FROM x WHERE pk IS NULL RETURNING vlob_id, _id), \
         xv AS (SELECT COALESCE(x.pk, c._id) AS vlob, x.* FROM x LEFT JOIN created c USING (vlob_id)), \
         a AS (INSERT INTO vlob_atom (vlob, encryption_revision, version, blob, size, author, created_on) \
           SELECT vlob, revision, version, blob, octet_length(blob), author, created_on FROM xv \
           RETURNING _id, vlob), \
         l AS (INSERT INTO realm_vlob_update (realm, index, vlob_atom) \
           SELECT xv.realm, xv.idx, a._id FROM xv JOIN a USING (vlob) RETURNING 1), \
         {STORE_REALMS}"
    )
});

/// [`STORE_WITH_CREATES`] for a batch of updates only (same binds, $2 and
/// $10 unused).
static STORE_UPDATES: LazyLock<String> = LazyLock::new(|| {
    format!(
        "WITH a AS (INSERT INTO vlob_atom \
           (vlob, encryption_revision, version, blob, size, author, created_on) \
           SELECT v, e, n, b, octet_length(b), au, t \
           FROM unnest($1::bigint[], $4::int4[], $5::int4[], $6::bytea[], $7::bigint[], $8::timestamptz[]) \
           AS x(v, e, n, b, au, t) RETURNING _id, vlob), \
         l AS (INSERT INTO realm_vlob_update (realm, index, vlob_atom) \
           SELECT y.r, y.i, a._id FROM unnest($1::bigint[], $3::bigint[], $9::bigint[]) AS y(v, r, i) \
           JOIN a ON a.vlob = y.v RETURNING 1), \
         {STORE_REALMS}"
    )
});

/// The end of both store statements: each realm's new checkpoint ($11 the
/// realms, $12 their checkpoints), `realm_user_change` ($13 realms, $14
/// users, $15 their last write), and the counts. Data-modifying `WITH`
/// clauses all run to completion, read or not.
const STORE_REALMS: &str = "m AS (UPDATE realm r SET checkpoint = y.c \
       FROM unnest($11::bigint[], $12::bigint[]) AS y(id, c) WHERE r._id = y.id RETURNING 1), \
     ch AS (INSERT INTO realm_user_change (realm, user_, last_vlob_update) \
       SELECT * FROM unnest($13::bigint[], $14::bigint[], $15::timestamptz[]) \
       ON CONFLICT (realm, user_) DO UPDATE \
       SET last_vlob_update = GREATEST(realm_user_change.last_vlob_update, EXCLUDED.last_vlob_update)) \
     SELECT (SELECT count(*) FROM l) AS logged, (SELECT count(*) FROM m) AS moved";

/// Stores the accepted writes (the creates' `vlob` rows, every atom and
/// its change log entry, the realms' new checkpoints, `realm_user_change`)
/// and commits, in one pipelined flight of two statements; returns each
/// write's checkpoint, in order. Nothing accepted: only the commit.
async fn store_and_commit(
    c: &Conn,
    org: i64,
    writes: &[VlobWrite],
    realms: &BTreeMap<i64, LockedRealm>,
    accepted: &[Accepted],
) -> Result<Vec<u64>, Internal> {
    let mut commit_only = c;
    if accepted.is_empty() {
        prepared("COMMIT", &[]).execute(&mut commit_only).await?;
        return Ok(Vec::new());
    }
    let n = accepted.len();
    let (mut vlobs, mut vlob_ids, mut revisions, mut versions) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    let (mut blobs, mut devices, mut stamps) = (
        ByteaArray(Vec::with_capacity(n)),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    let (mut log_realms, mut log_indexes, mut checkpoints) =
        (Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n));
    // Under the lock, each realm's next indexes follow its checkpoint, in batch order.
    let mut last_index: BTreeMap<i64, i64> = BTreeMap::new();
    for a in accepted {
        let (blob, timestamp) = match &writes[a.at] {
            VlobWrite::Create { req, .. } => (&req.blob, req.timestamp),
            VlobWrite::Update { req, .. } => (&req.blob, req.timestamp),
        };
        let realm = realms
            .get(&a.realm)
            .ok_or_else(|| unexpected("realm of a write not locked"))?;
        let index = last_index.entry(a.realm).or_insert(realm.checkpoint);
        *index += 1;
        vlobs.push(a.vlob);
        vlob_ids.push(writes[a.at].vlob_id());
        revisions.push(realm.realm.revision());
        versions.push(a.version);
        blobs.0.push(blob);
        devices.push(a.author.device);
        stamps.push(ts(timestamp));
        log_realms.push(a.realm);
        log_indexes.push(*index);
        checkpoints.push(unsigned(*index)?);
    }
    let (moved_realms, moved_to): (Vec<i64>, Vec<i64>) = last_index.into_iter().unzip();
    // One row per (realm, user) per statement: the latest timestamp of the batch.
    let mut last_write: BTreeMap<(i64, i64), Ts> = BTreeMap::new();
    for (a, stamp) in accepted.iter().zip(&stamps) {
        let slot = last_write.entry((a.realm, a.author.user)).or_insert(*stamp);
        *slot = (*slot).max(*stamp);
    }
    let (mut change_realms, mut change_users, mut change_on) = (Vec::new(), Vec::new(), Vec::new());
    for ((realm, user), on) in last_write {
        change_realms.push(realm);
        change_users.push(user);
        change_on.push(on);
    }

    let binds: [&dyn BindValue; 15] = [
        &bind::<Array<Nullable<BigInt>>, _>(&vlobs),
        &bind::<Array<diesel::sql_types::Uuid>, _>(&vlob_ids),
        &bind::<Array<BigInt>, _>(&log_realms),
        &bind::<Array<Int4>, _>(&revisions),
        &bind::<Array<Int4>, _>(&versions),
        &bind::<Array<Bytea>, _>(&blobs),
        &bind::<Array<BigInt>, _>(&devices),
        &bind::<Array<Timestamptz>, _>(&stamps),
        &bind::<Array<BigInt>, _>(&log_indexes),
        &bind::<BigInt, _>(org),
        &bind::<Array<BigInt>, _>(&moved_realms),
        &bind::<Array<BigInt>, _>(&moved_to),
        &bind::<Array<BigInt>, _>(&change_realms),
        &bind::<Array<BigInt>, _>(&change_users),
        &bind::<Array<Timestamptz>, _>(&change_on),
    ];
    #[derive(QueryableByName)]
    struct Stored {
        #[diesel(sql_type = BigInt)]
        logged: i64,
        #[diesel(sql_type = BigInt)]
        moved: i64,
    }
    let (mut c1, mut c2) = (c, c);
    // A create's `vlob` row comes with its atom (`pk` null), an update
    // names its row; one write per vlob in a batch: the vlob identifies
    // its atom. Without creates, a leaner text (an eighth less time in
    // PostgreSQL for a batch of updates).
    let creates = accepted.iter().any(|a| a.vlob.is_none());
    let stored = prepared(
        match creates {
            true => &STORE_WITH_CREATES,
            false => &STORE_UPDATES,
        },
        &binds,
    )
    .load::<Stored>(&mut c1);
    // Sent right behind the writes: were they to fail, PostgreSQL would
    // end the transaction with a rollback instead.
    let commit = prepared("COMMIT", &[]).execute(&mut c2);
    let (stored, _) = futures_util::future::try_join(stored, commit).await?;
    let as_expected =
        |s: &Stored| usize::try_from(s.logged) == Ok(n) && usize::try_from(s.moved) == Ok(moved_realms.len());
    if !matches!(stored.as_slice(), [s] if as_expected(s)) {
        // Committed, and every insert is all or nothing: only a bug gets here.
        let counts: Vec<(i64, i64)> = stored.iter().map(|s| (s.logged, s.moved)).collect();
        log::error!(
            "vlob batch: (change log rows, checkpoints) {counts:?} for {n} writes and {} realms",
            moved_realms.len()
        );
    }
    Ok(checkpoints)
}
