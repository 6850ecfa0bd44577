//! PostgreSQL: realms, vlobs, blocks (metadata) and messages.
//!
//! Same semantics as the memory store (`memory/data.rs`), with the pure rules
//! of [`crate::backend::data`]; what this module adds is how they hold when
//! several server instances write at once:
//!
//! - Every write is one transaction (only `block_create` uses two, around
//!   the block store write; concurrent vlob writes share one, see
//!   `vlob_batch`), and the requester's realm role is read in the
//!   transaction that writes. Reads are one statement (one snapshot).
//! - Writers that must be ordered lock the realm row first, then read the
//!   role: vlob writes, role changes and maintenance take
//!   `FOR NO KEY UPDATE` (the `UPDATE` strength; unlike `FOR UPDATE` it does
//!   not block the foreign-key checks of rows inserted under the realm),
//!   block inserts take `FOR SHARE`. A write racing a role change is thus
//!   either entirely before it or sees the new role: under READ COMMITTED,
//!   every statement after the lock sees what the previous holder committed.
//! - The realm's checkpoint is `realm.checkpoint`, incremented under that
//!   lock (`UPDATE … RETURNING`): checkpoints are consecutive, and commit
//!   order is checkpoint order, so a poll never sees a gap.
//! - Constraints back up what the checks decide: a vlob or block id is
//!   unique in its organization (unique violation → `AlreadyExists`), a
//!   message index unique per recipient (`user_.messages_count` is bumped
//!   under the user row lock).
//! - Locks are always taken in one order: the organization row (`FOR KEY
//!   SHARE`, see [`author`]), the realm row, then user rows in user id order
//!   (message deliveries); user writes lock the organization row, then user
//!   rows. So no two transactions wait on each other in a cycle.
//!
//! Internal bigint keys stay in here; identifiers are converted at the edge.

mod block;
mod realm;
mod vlob;
mod vlob_batch;

use diesel::prelude::*;
use diesel::sql_types::{BigInt, Int4, Nullable, Text, Timestamptz};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use parsec_protocol::types::*;
use parsec_schema::schema::{message, organization, realm_user_change, realm_user_role, user_};

use super::*;
use crate::backend::*;

internal_from_diesel!(
    RealmCreateError,
    RealmReadError,
    RealmUpdateRolesError,
    RealmStartReencryptionError,
    RealmFinishReencryptionError,
    VlobCreateError,
    VlobReadError,
    VlobUpdateError,
    VlobPollChangesError,
    VlobListVersionsError,
    VlobMaintenanceError,
    BlockCreateError,
    BlockReadError,
);

type Ts = chrono::DateTime<chrono::Utc>;
type Conn = AsyncPgConnection;

/// An inconsistency only a bug (or a hand-edited database) can cause.
fn unexpected(what: &str) -> Internal {
    Internal(anyhow::anyhow!("postgres store: {what}"))
}

/// A non-negative database integer as the protocol's unsigned one.
fn unsigned(v: impl TryInto<u64>) -> Result<u64, Internal> {
    v.try_into().map_err(|_| unexpected("negative size, version or index"))
}

// ------------------------------------------------------------- requesters

/// Row ids of an authenticated device: its organization, itself, its user.
#[derive(Debug, Clone, Copy)]
struct Author {
    org: i64,
    device: i64,
    user: i64,
}

/// Row ids of an authenticated device. It exists (the handshake found it),
/// so a miss is internal.
///
/// Takes the organization row `FOR KEY SHARE`, which the foreign keys of the
/// rows the caller inserts would take later anyway: taken first, it keeps
/// the lock order organization → realm → user rows that user writes also
/// follow (they lock the organization row, then user rows). Taken late, a
/// message insert after a `messages_count` bump could wait on a revocation
/// that waits on that bump: a deadlock.
async fn author(c: &mut Conn, org: &OrganizationId, device_id: &DeviceId) -> Result<Author, Internal> {
    #[derive(QueryableByName)]
    struct Row {
        #[diesel(sql_type = BigInt)]
        org: i64,
        #[diesel(sql_type = BigInt)]
        device: i64,
        #[diesel(sql_type = BigInt)]
        user_: i64,
    }
    let (org, device_id) = (bind::<Text, _>(org.as_str()), bind::<Text, _>(device_id.as_str()));
    let row: Option<Row> = prepared(
        "SELECT o._id AS org, d._id AS device, d.user_ FROM device d \
         JOIN organization o ON o._id = d.organization \
         WHERE o.organization_id = $1 AND d.device_id = $2 FOR KEY SHARE OF o",
        &[&org, &device_id],
    )
    .get_result(c)
    .await
    .optional()?;
    let row = row.ok_or_else(|| unexpected("authenticated device not found"))?;
    Ok(Author {
        org: row.org,
        device: row.device,
        user: row.user_,
    })
}

/// Row ids of an organization and, when it exists, of one of its users
/// (`None`: no such user, which has no role anywhere).
async fn org_and_user(c: &mut Conn, org: &OrganizationId, user: &UserId) -> Result<(i64, Option<i64>), Internal> {
    let row: Option<(i64, Option<i64>)> = organization::table
        .left_join(
            user_::table.on(user_::organization
                .eq(organization::_id)
                .and(user_::user_id.eq(user.as_str()))),
        )
        .filter(organization::organization_id.eq(org.as_str()))
        .select((organization::_id, user_::_id.nullable()))
        .first(c)
        .await
        .optional()?;
    row.ok_or_else(|| unexpected("organization of an authenticated user not found"))
}

// ------------------------------------------------------------------ realms

/// How a transaction holds the realm row it reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lock {
    /// Plain read.
    None,
    /// Vlob writes, role changes, maintenance: one at a time per realm.
    Update,
}

impl Lock {
    fn clause(self) -> &'static str {
        match self {
            Lock::None => "",
            Lock::Update => " FOR NO KEY UPDATE OF r",
        }
    }
}

/// The order that puts a vlob's latest version first, for the writes' version
/// checks: by revision, then version, which walks the `(vlob,
/// encryption_revision, version)` index backwards and stops at one entry.
/// "Latest by version whatever the revision" would read every version of
/// the vlob. The two agree whenever a write can pass its checks: writes are
/// refused during a maintenance, and a re-encryption only finishes once
/// every version has its atom at the new revision.
const LATEST_ATOM_ORDER: &str = "a.encryption_revision DESC, a.version DESC";

/// The realm columns the checks need; the maintenance author is joined in
/// (an outer join, hence `FOR … OF r`).
const REALM_SELECT: &str = "SELECT r._id, r.realm_id, r.encryption_revision, r.maintenance_type, \
     d.device_id AS maintenance_started_by, r.maintenance_started_on \
     FROM realm r LEFT JOIN device d ON d._id = r.maintenance_started_by";

#[derive(QueryableByName)]
struct RealmRow {
    #[diesel(sql_type = BigInt)]
    _id: i64,
    #[diesel(sql_type = diesel::sql_types::Uuid)]
    realm_id: Uuid,
    #[diesel(sql_type = Int4)]
    encryption_revision: i32,
    #[diesel(sql_type = Nullable<Text>)]
    maintenance_type: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    maintenance_started_by: Option<String>,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    maintenance_started_on: Option<Ts>,
}

/// A realm as the rules see it.
#[derive(Debug, Clone)]
struct Realm {
    pk: i64,
    realm_id: Uuid,
    status: RealmStatus,
}

impl Realm {
    /// The current encryption revision, as stored.
    fn revision(&self) -> i32 {
        // Read from an INTEGER column: it fits.
        i32::try_from(self.status.encryption_revision).unwrap_or(i32::MAX)
    }
}

impl RealmRow {
    fn into_realm(self) -> Result<Realm, Internal> {
        let maintenance = match (
            self.maintenance_type,
            self.maintenance_started_by,
            self.maintenance_started_on,
        ) {
            (None, _, _) => None,
            (Some(kind), Some(by), Some(on)) => Some(RealmMaintenance {
                kind: MaintenanceType::parse(&kind)
                    .ok_or_else(|| unexpected(&format!("maintenance type {kind} in database")))?,
                started_by: parse_id(&by)?,
                started_on: dt(on),
            }),
            (Some(_), _, _) => return Err(unexpected("maintenance without author or date")),
        };
        Ok(Realm {
            pk: self._id,
            realm_id: self.realm_id,
            status: RealmStatus {
                encryption_revision: unsigned(self.encryption_revision)?,
                maintenance,
            },
        })
    }
}

/// The texts of [`realm_by_id`] (`$1` organization, `$2` realm id) and
/// [`realm_by_pk`] (`$1` row id), one per [`Lock`]: a fixed set, each a
/// statement prepared once per connection.
static REALM_SQL: std::sync::LazyLock<[[String; 2]; 2]> = std::sync::LazyLock::new(|| {
    let locks = [Lock::None, Lock::Update];
    [
        locks.map(|l| {
            format!(
                "{REALM_SELECT} WHERE r.organization = $1 AND r.realm_id = $2{}",
                l.clause()
            )
        }),
        locks.map(|l| format!("{REALM_SELECT} WHERE r._id = $1{}", l.clause())),
    ]
});

/// A realm by its public id, held as `lock` says.
async fn realm_by_id(c: &mut Conn, org: i64, realm_id: Uuid, lock: Lock) -> Result<Option<Realm>, Internal> {
    let (org, realm_id) = (bind::<BigInt, _>(org), bind::<diesel::sql_types::Uuid, _>(realm_id));
    let row: Option<RealmRow> = prepared(&REALM_SQL[0][lock as usize], &[&org, &realm_id])
        .get_result(c)
        .await
        .optional()?;
    row.map(RealmRow::into_realm).transpose()
}

/// A realm by its row id (reached through a vlob or a block), held as `lock` says.
async fn realm_by_pk(c: &mut Conn, pk: i64, lock: Lock) -> Result<Option<Realm>, Internal> {
    let pk = bind::<BigInt, _>(pk);
    let row: Option<RealmRow> = prepared(&REALM_SQL[1][lock as usize], &[&pk])
        .get_result(c)
        .await
        .optional()?;
    row.map(RealmRow::into_realm).transpose()
}

/// A user's latest role certificate in a realm: the one deciding its
/// current role (greatest timestamp, then last stored, as
/// [`last_role_of`] decides).
#[derive(Debug, Clone, Copy)]
struct LastRole {
    role: Option<RealmRole>,
    granted_on: DateTime,
}

fn parse_role(raw: Option<String>) -> Result<Option<RealmRole>, Internal> {
    raw.map(|r| RealmRole::parse(&r).ok_or_else(|| unexpected(&format!("realm role {r} in database"))))
        .transpose()
}

async fn last_role(c: &mut Conn, realm: i64, user: Option<i64>) -> Result<Option<LastRole>, Internal> {
    let Some(user) = user else { return Ok(None) };
    let row: Option<(Option<String>, Ts)> = realm_user_role::table
        .filter(realm_user_role::realm.eq(realm))
        .filter(realm_user_role::user_.eq(user))
        .order(realm_user_role::certified_on.desc())
        .select((realm_user_role::role, realm_user_role::certified_on))
        .first(c)
        .await
        .optional()?;
    row.map(|(role, on)| {
        Ok(LastRole {
            role: parse_role(role)?,
            granted_on: dt(on),
        })
    })
    .transpose()
}

/// The user's current role in the realm (`None`: no role).
async fn role_of(c: &mut Conn, realm: i64, user: Option<i64>) -> Result<Option<RealmRole>, Internal> {
    Ok(last_role(c, realm, user).await?.and_then(|r| r.role))
}

/// Current role of every user that ever had one in the realm, with the
/// user's row id and revocation date.
struct Member {
    user_id: UserId,
    pk: i64,
    role: Option<RealmRole>,
    revoked_on: Option<DateTime>,
}

impl Member {
    /// The role, unless the user is revoked at `now` (re-encryption rules).
    fn active_role(&self, now: DateTime) -> Option<RealmRole> {
        self.role.filter(|_| self.revoked_on.is_none_or(|r| r > now))
    }
}

async fn members(c: &mut Conn, realm: i64) -> Result<Vec<Member>, Internal> {
    let rows: Vec<(String, i64, Option<String>, Option<Ts>)> = realm_user_role::table
        .inner_join(user_::table)
        .filter(realm_user_role::realm.eq(realm))
        .distinct_on(realm_user_role::user_)
        .order((realm_user_role::user_, realm_user_role::certified_on.desc()))
        .select((user_::user_id, user_::_id, realm_user_role::role, user_::revoked_on))
        .load(c)
        .await?;
    rows.into_iter()
        .map(|(user_id, pk, role, revoked_on)| {
            Ok(Member {
                user_id: parse_id(&user_id)?,
                pk,
                role: parse_role(role)?,
                revoked_on: revoked_on.map(dt),
            })
        })
        .collect()
}

/// Role of a user, ignoring it when the user is revoked at `now`.
async fn active_role_of(c: &mut Conn, realm: i64, user: i64, now: DateTime) -> Result<Option<RealmRole>, Internal> {
    let revoked_on: Option<Ts> = user_::table.find(user).select(user_::revoked_on).first(c).await?;
    let role = role_of(c, realm, Some(user)).await?;
    Ok(role.filter(|_| revoked_on.is_none_or(|r| dt(r) > now)))
}

/// The user's latest vlob write and latest role change in the realm.
#[derive(Debug, Clone, Copy, Default)]
struct UserChange {
    last_role_change: Option<DateTime>,
    last_vlob_update: Option<DateTime>,
}

async fn user_change(c: &mut Conn, realm: i64, user: i64) -> Result<UserChange, Internal> {
    let row: Option<(Option<Ts>, Option<Ts>)> = realm_user_change::table
        .find((realm, user))
        .select((realm_user_change::last_role_change, realm_user_change::last_vlob_update))
        .first(c)
        .await
        .optional()?;
    Ok(row.map_or_else(Default::default, |(role, vlob)| UserChange {
        last_role_change: role.map(dt),
        last_vlob_update: vlob.map(dt),
    }))
}

/// Which `realm_user_change` column a write moves forward.
#[derive(Debug, Clone, Copy)]
enum Change {
    RoleChange,
    VlobUpdate,
}

/// Moves the user's latest role change or vlob write forward to `at`.
/// Fixed texts, prepared once per connection (diesel's DSL form of an
/// upsert is not cacheable: a prepare round trip and a fresh plan on every
/// write).
async fn record_change(c: &mut Conn, realm: i64, user: i64, change: Change, at: DateTime) -> Result<(), Internal> {
    let sql = match change {
        Change::RoleChange => {
            "INSERT INTO realm_user_change (realm, user_, last_role_change) VALUES ($1, $2, $3) \
             ON CONFLICT (realm, user_) DO UPDATE \
             SET last_role_change = GREATEST(realm_user_change.last_role_change, EXCLUDED.last_role_change)"
        }
        Change::VlobUpdate => {
            "INSERT INTO realm_user_change (realm, user_, last_vlob_update) VALUES ($1, $2, $3) \
             ON CONFLICT (realm, user_) DO UPDATE \
             SET last_vlob_update = GREATEST(realm_user_change.last_vlob_update, EXCLUDED.last_vlob_update)"
        }
    };
    prepared(
        sql,
        &[
            &bind::<BigInt, _>(realm),
            &bind::<BigInt, _>(user),
            &bind::<Timestamptz, _>(ts(at)),
        ],
    )
    .execute(c)
    .await?;
    Ok(())
}

/// Counts of the realm's vlob atoms at revision R−1 and at R, for the current
/// revision R (re-encryption progress, as the memory store counts versions).
async fn reencryption_progress(c: &mut Conn, realm: &Realm) -> Result<(u64, u64), Internal> {
    #[derive(QueryableByName)]
    struct Progress {
        #[diesel(sql_type = BigInt)]
        total: i64,
        #[diesel(sql_type = BigInt)]
        done: i64,
    }
    let current = realm.revision();
    let p: Progress = diesel::sql_query(
        "SELECT COUNT(*) FILTER (WHERE a.encryption_revision = $2) AS total, \
         COUNT(*) FILTER (WHERE a.encryption_revision = $3) AS done \
         FROM vlob_atom a JOIN vlob v ON v._id = a.vlob WHERE v.realm = $1",
    )
    .bind::<BigInt, _>(realm.pk)
    .bind::<Int4, _>(current - 1)
    .bind::<Int4, _>(current)
    .get_result(c)
    .await?;
    Ok((unsigned(p.total)?, unsigned(p.done)?))
}

// ------------------------------------------------------------ access checks

/// A refusal shared by the realm-gated operations, converted into each
/// operation's enum (as the memory store's `Denied`).
enum Denied {
    RealmNotFound,
    State(RealmStateError),
    NotAllowed,
    Internal(Internal),
}

impl From<Internal> for Denied {
    fn from(e: Internal) -> Self {
        Denied::Internal(e)
    }
}

/// The realm check then the role check (commands.md §9.1, PG order).
/// Returns the realm and the requester's latest role certificate.
async fn check_access(
    c: &mut Conn,
    realm: Option<Realm>,
    user: Option<i64>,
    kind: OperationKind,
    encryption_revision: Option<i64>,
    allowed: fn(Option<RealmRole>) -> bool,
) -> Result<(Realm, Option<LastRole>), Denied> {
    let realm = realm.ok_or(Denied::RealmNotFound)?;
    check_realm_state(&realm.status, kind, encryption_revision).map_err(Denied::State)?;
    let last = last_role(c, realm.pk, user).await?;
    if !allowed(last.and_then(|r| r.role)) {
        return Err(Denied::NotAllowed);
    }
    Ok((realm, last))
}

macro_rules! from_denied {
    ($err:ident { $($state:ident => $variant:ident),* }) => {
        impl From<Denied> for $err {
            fn from(d: Denied) -> Self {
                match d {
                    Denied::RealmNotFound => Self::RealmNotFound,
                    Denied::NotAllowed => Self::NotAllowed,
                    Denied::Internal(e) => Self::Internal(e),
                    $(Denied::State(RealmStateError::$state) => Self::$variant,)*
                    #[allow(unreachable_patterns)]
                    Denied::State(s) => Self::Internal(unexpected(&format!("realm state {s:?} for this operation"))),
                }
            }
        }
    };
}

from_denied!(VlobCreateError { InMaintenance => InMaintenance, BadEncryptionRevision => BadEncryptionRevision });
from_denied!(VlobReadError { InMaintenance => InMaintenance, BadEncryptionRevision => BadEncryptionRevision });
from_denied!(VlobUpdateError { InMaintenance => InMaintenance, BadEncryptionRevision => BadEncryptionRevision });
from_denied!(VlobPollChangesError { InMaintenance => InMaintenance });
from_denied!(VlobListVersionsError { InMaintenance => InMaintenance });
from_denied!(VlobMaintenanceError {
    NotInMaintenance => NotInMaintenance,
    BadEncryptionRevision => BadEncryptionRevision
});

// ---------------------------------------------------------------- messages

/// Appends a message to the recipient's inbox. The `user_` row lock taken
/// by the increment orders concurrent deliveries; the index is the new count.
async fn deliver(
    c: &mut Conn,
    org: i64,
    recipient: (&UserId, i64),
    sender: i64,
    timestamp: DateTime,
    body: &[u8],
) -> Result<DeliveredMessage, Internal> {
    let (recipient_id, recipient) = recipient;
    #[derive(QueryableByName)]
    struct Counted {
        #[diesel(sql_type = BigInt)]
        messages_count: i64,
    }
    // A fixed text: diesel's DSL form of this update is not cacheable (a
    // prepare round trip and a fresh plan on every message).
    let Counted { messages_count: index } = prepared(
        "UPDATE user_ SET messages_count = messages_count + 1 WHERE _id = $1 RETURNING messages_count",
        &[&bind::<BigInt, _>(recipient)],
    )
    .get_result(c)
    .await?;
    diesel::insert_into(message::table)
        .values((
            message::organization.eq(org),
            message::recipient.eq(recipient),
            message::index.eq(index),
            message::sender.eq(sender),
            message::timestamp.eq(ts(timestamp)),
            message::body.eq(body),
        ))
        .execute(c)
        .await?;
    Ok(DeliveredMessage {
        recipient: recipient_id.clone(),
        index: unsigned(index)?,
    })
}

// =====================================================================
// One-statement reads
//
// The read-only operations (`vlob_read`, `vlob_list_versions`,
// `vlob_poll_changes`, `block_read`) run as ONE statement and no explicit
// transaction: a single statement sees one snapshot, which is all the
// transaction gave them. The statement brings back what every check needs
// (the realm, the requester's latest role, the data), and Rust decides in
// the order the checks always had ([`decide_access`]).
//
// Such a statement runs through [`prepared`] (one round trip, parsed and
// planned once per connection).
// =====================================================================

/// `FROM` the organization `o` (`$1`) and the requesting user `u` (`$2`;
/// no such user: NULLs, and no role anywhere).
const FROM_REQUESTER: &str = "FROM organization o \
     LEFT JOIN user_ u ON u.organization = o._id AND u.user_id = $2";

/// The [`MaybeRealmRow`] columns of the realm `r`. The maintenance author is
/// a scalar subquery rather than a join: an outer join to `device` was
/// planned as a hash join over the whole table on every read (and cost
/// executor set-up even when the realm is not in maintenance, which is
/// nearly always).
const REALM_COLUMNS: &str = "r._id AS realm_pk, r.realm_id, r.encryption_revision, r.maintenance_type, \
     (SELECT md.device_id FROM device md WHERE md._id = r.maintenance_started_by) AS maintenance_started_by, \
     r.maintenance_started_on";

/// `lr.role`: the latest role of `u` in `r`, ordered as [`last_role`] does.
///
/// `certified_on` alone orders a user's roles in a realm: `(realm, user_,
/// certified_on)` is unique, and the `realm_user_role_current` index gives
/// that order, so the lookup is one index probe with no sort.
const REQUESTER_ROLE: &str = "LEFT JOIN LATERAL (SELECT rr.role FROM realm_user_role rr \
     WHERE rr.realm = r._id AND rr.user_ = u._id \
     ORDER BY rr.certified_on DESC LIMIT 1) lr ON TRUE";

/// [`RealmRow`] of an outer join: all NULL when there is no realm.
#[derive(QueryableByName)]
struct MaybeRealmRow {
    #[diesel(sql_type = Nullable<BigInt>)]
    realm_pk: Option<i64>,
    #[diesel(sql_type = Nullable<diesel::sql_types::Uuid>)]
    realm_id: Option<Uuid>,
    #[diesel(sql_type = Nullable<Int4>)]
    encryption_revision: Option<i32>,
    #[diesel(sql_type = Nullable<Text>)]
    maintenance_type: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    maintenance_started_by: Option<String>,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    maintenance_started_on: Option<Ts>,
}

impl MaybeRealmRow {
    fn into_realm(self) -> Result<Option<Realm>, Internal> {
        let Some(pk) = self.realm_pk else { return Ok(None) };
        let (Some(realm_id), Some(encryption_revision)) = (self.realm_id, self.encryption_revision) else {
            return Err(unexpected("realm row without id or revision"));
        };
        let row = RealmRow {
            _id: pk,
            realm_id,
            encryption_revision,
            maintenance_type: self.maintenance_type,
            maintenance_started_by: self.maintenance_started_by,
            maintenance_started_on: self.maintenance_started_on,
        };
        row.into_realm().map(Some)
    }
}

/// [`check_access`] on what one statement read: the realm (if any) and
/// the requester's latest role (`lr.role`).
fn decide_access(
    realm: Option<Realm>,
    role: Option<String>,
    kind: OperationKind,
    encryption_revision: Option<i64>,
    allowed: fn(Option<RealmRole>) -> bool,
) -> Result<Realm, Denied> {
    let realm = realm.ok_or(Denied::RealmNotFound)?;
    check_realm_state(&realm.status, kind, encryption_revision).map_err(Denied::State)?;
    if !allowed(parse_role(role)?) {
        return Err(Denied::NotAllowed);
    }
    Ok(realm)
}
