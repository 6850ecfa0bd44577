//! PostgreSQL: users, devices, revocation, `human_find`.
//!
//! User and device writes lock the organization row first: the active-users
//! limit and "one live user per e-mail" are then checked and written by one
//! writer at a time, on whatever instance (the partial unique index on live
//! e-mails backs the second rule up).

use std::collections::HashSet;
use std::sync::LazyLock;

use async_trait::async_trait;
use diesel::prelude::*;
use diesel::sql_types::{Array, BigInt, Bytea, Nullable, Text, Timestamptz};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use parsec_protocol::types::*;
use parsec_schema::schema::{device, user_};

use super::*;
use crate::backend::human_find::{self, HumanRow};
use crate::backend::*;

internal_from_diesel!(UserLookupError, UserCreateError, DeviceCreateError, UserRevokeError);

type Ts = chrono::DateTime<chrono::Utc>;

const USER_COLUMNS: &str = "u._id, u.user_id, u.profile, u.human_email, u.human_label, u.user_certificate, \
     u.redacted_user_certificate, uc.device_id AS user_certifier, u.created_on, u.revoked_on, \
     u.revoked_user_certificate, rc.device_id AS revoked_user_certifier \
     FROM user_ u LEFT JOIN device uc ON uc._id = u.user_certifier \
     LEFT JOIN device rc ON rc._id = u.revoked_user_certifier";

const DEVICE_COLUMNS: &str = "d._id, d.user_, d.device_id, d.device_label, d.verify_key, d.device_certificate, \
     d.redacted_device_certificate, dc.device_id AS device_certifier, d.created_on \
     FROM device d LEFT JOIN device dc ON dc._id = d.device_certifier";

#[derive(QueryableByName)]
struct UserRow {
    #[diesel(sql_type = BigInt)]
    _id: i64,
    #[diesel(sql_type = Text)]
    user_id: String,
    #[diesel(sql_type = Text)]
    profile: String,
    #[diesel(sql_type = Nullable<Text>)]
    human_email: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    human_label: Option<String>,
    #[diesel(sql_type = Bytea)]
    user_certificate: Vec<u8>,
    #[diesel(sql_type = Bytea)]
    redacted_user_certificate: Vec<u8>,
    #[diesel(sql_type = Nullable<Text>)]
    user_certifier: Option<String>,
    #[diesel(sql_type = Timestamptz)]
    created_on: Ts,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    revoked_on: Option<Ts>,
    #[diesel(sql_type = Nullable<Bytea>)]
    revoked_user_certificate: Option<Vec<u8>>,
    #[diesel(sql_type = Nullable<Text>)]
    revoked_user_certifier: Option<String>,
}

fn human(email: Option<String>, label: Option<String>) -> Option<HumanHandle> {
    // Stored as validated; rebuilt without re-validating.
    match (email, label) {
        (Some(email), Some(label)) => Some(HumanHandle { email, label }),
        _ => None,
    }
}

fn parse_profile(raw: &str) -> Result<UserProfile, Internal> {
    UserProfile::parse(raw).ok_or_else(|| Internal(anyhow::anyhow!("invalid profile in database: {raw}")))
}

impl UserRow {
    fn into_user(self) -> Result<User, Internal> {
        Ok(User {
            user_id: parse_id(&self.user_id)?,
            human_handle: human(self.human_email, self.human_label),
            profile: parse_profile(&self.profile)?,
            user_certificate: self.user_certificate,
            redacted_user_certificate: self.redacted_user_certificate,
            user_certifier: self.user_certifier.as_deref().map(parse_id).transpose()?,
            created_on: dt(self.created_on),
            revoked_on: self.revoked_on.map(dt),
            revoked_user_certificate: self.revoked_user_certificate,
            revoked_user_certifier: self.revoked_user_certifier.as_deref().map(parse_id).transpose()?,
        })
    }
}

#[derive(QueryableByName)]
struct DeviceRow {
    #[diesel(sql_type = Text)]
    device_id: String,
    #[diesel(sql_type = Nullable<Text>)]
    device_label: Option<String>,
    #[diesel(sql_type = Bytea)]
    verify_key: Vec<u8>,
    #[diesel(sql_type = Bytea)]
    device_certificate: Vec<u8>,
    #[diesel(sql_type = Bytea)]
    redacted_device_certificate: Vec<u8>,
    #[diesel(sql_type = Nullable<Text>)]
    device_certifier: Option<String>,
    #[diesel(sql_type = Timestamptz)]
    created_on: Ts,
}

impl DeviceRow {
    fn into_device(self) -> Result<Device, Internal> {
        Ok(Device {
            device_id: parse_id(&self.device_id)?,
            device_label: self.device_label.as_deref().map(parse_id).transpose()?,
            device_certificate: self.device_certificate,
            redacted_device_certificate: self.redacted_device_certificate,
            device_certifier: self.device_certifier.as_deref().map(parse_id).transpose()?,
            created_on: dt(self.created_on),
            verify_key: key32(&self.verify_key)?,
        })
    }
}

// The row reads below are fixed texts run through `prepared`: as
// `sql_query`s they were re-prepared on every call (a round trip and a fresh
// plan each), and every user_get / device lookup runs them.
static USERS_BY_ID: LazyLock<String> =
    LazyLock::new(|| format!("SELECT {USER_COLUMNS} WHERE u.organization = $1 AND u.user_id = ANY($2)"));
static DEVICES_BY_ID: LazyLock<String> =
    LazyLock::new(|| format!("SELECT {DEVICE_COLUMNS} WHERE d.organization = $1 AND d.device_id = ANY($2)"));
static DEVICES_OF_USER: LazyLock<String> =
    LazyLock::new(|| format!("SELECT {DEVICE_COLUMNS} WHERE d.user_ = $1 ORDER BY d._id"));

async fn users_by_id(conn: &mut AsyncPgConnection, org: i64, user_ids: &[String]) -> QueryResult<Vec<UserRow>> {
    prepared(
        &USERS_BY_ID,
        &[&bind::<BigInt, _>(org), &bind::<Array<Text>, _>(user_ids)],
    )
    .load(conn)
    .await
}

async fn devices_by_id(conn: &mut AsyncPgConnection, org: i64, device_ids: &[String]) -> QueryResult<Vec<DeviceRow>> {
    prepared(
        &DEVICES_BY_ID,
        &[&bind::<BigInt, _>(org), &bind::<Array<Text>, _>(device_ids)],
    )
    .load(conn)
    .await
}

/// Row id of a certifier device (`None` = the root key).
async fn certifier_pk(
    conn: &mut AsyncPgConnection,
    org: i64,
    certifier: &Option<DeviceId>,
) -> Result<Option<i64>, Internal> {
    match certifier {
        None => Ok(None),
        Some(d) => match device_pk(conn, org, d).await? {
            Some((pk, _)) => Ok(Some(pk)),
            None => Err(Internal(anyhow::anyhow!("certifier device {d} not found"))),
        },
    }
}

/// Inserts a device of the user `user_pk`; unique violation → already exists.
async fn insert_device(
    conn: &mut AsyncPgConnection,
    org: i64,
    user_pk: i64,
    d: &Device,
) -> Result<(), DeviceCreateError> {
    let certifier = certifier_pk(conn, org, &d.device_certifier).await?;
    let inserted = diesel::insert_into(device::table)
        .values((
            device::organization.eq(org),
            device::user_.eq(user_pk),
            device::device_id.eq(d.device_id.as_str()),
            device::device_label.eq(d.device_label.as_ref().map(|l| l.as_str())),
            device::verify_key.eq(d.verify_key.to_vec()),
            device::device_certificate.eq(&d.device_certificate),
            device::redacted_device_certificate.eq(&d.redacted_device_certificate),
            device::device_certifier.eq(certifier),
            device::created_on.eq(ts(d.created_on)),
        ))
        .execute(conn)
        .await;
    match inserted {
        Ok(_) => Ok(()),
        Err(e) if is_unique_violation(&e) => Err(DeviceCreateError::AlreadyExists(d.device_id.clone())),
        Err(e) => Err(e.into()),
    }
}

/// The checks and inserts of `user_create` (PG order: active users limit,
/// user id, live e-mail). The caller holds the organization row lock.
pub(crate) async fn insert_user_and_device(
    conn: &mut AsyncPgConnection,
    org: i64,
    user: &User,
    first_device: &Device,
    now: DateTime,
) -> Result<(), UserCreateError> {
    use parsec_schema::schema::organization;
    let limit: Option<i64> = organization::table
        .filter(organization::_id.eq(org))
        .select(organization::active_users_limit)
        .first(conn)
        .await?;
    if let Some(limit) = limit {
        // Users with no revocation at all: one revoked in the future already frees its seat.
        let active: i64 = user_::table
            .filter(user_::organization.eq(org).and(user_::revoked_on.is_null()))
            .count()
            .get_result(conn)
            .await?;
        if active >= limit {
            return Err(UserCreateError::ActiveUsersLimitReached);
        }
    }
    if user_pk(conn, org, &user.user_id).await?.is_some() {
        return Err(UserCreateError::UserAlreadyExists(user.user_id.clone()));
    }
    if let Some(h) = &user.human_handle {
        // A revocation frees the e-mail once it has taken effect.
        let taken: i64 = user_::table
            .filter(user_::organization.eq(org).and(user_::human_email.eq(&h.email)))
            .filter(user_::revoked_on.is_null().or(user_::revoked_on.gt(ts(now))))
            .count()
            .get_result(conn)
            .await?;
        if taken > 0 {
            return Err(UserCreateError::HumanAlreadyExists(h.clone()));
        }
    }
    let certifier = certifier_pk(conn, org, &user.user_certifier).await?;
    let new_user: i64 = diesel::insert_into(user_::table)
        .values((
            user_::organization.eq(org),
            user_::user_id.eq(user.user_id.as_str()),
            user_::profile.eq(user.profile.as_str()),
            user_::human_email.eq(user.human_handle.as_ref().map(|h| h.email.as_str())),
            user_::human_label.eq(user.human_handle.as_ref().map(|h| h.label.as_str())),
            user_::user_certificate.eq(&user.user_certificate),
            user_::redacted_user_certificate.eq(&user.redacted_user_certificate),
            user_::user_certifier.eq(certifier),
            user_::created_on.eq(ts(user.created_on)),
        ))
        .returning(user_::_id)
        .get_result(conn)
        .await?;
    match insert_device(conn, org, new_user, first_device).await {
        Ok(()) => Ok(()),
        Err(DeviceCreateError::AlreadyExists(d)) => {
            Err(Internal(anyhow::anyhow!("first device {d} of a new user already exists")).into())
        }
        Err(DeviceCreateError::Internal(e)) => Err(e.into()),
    }
}

#[async_trait]
impl UserBackend for PgStore {
    async fn handshake_identity(
        &self,
        org: &OrganizationId,
        device_id: &DeviceId,
    ) -> Result<HandshakeIdentity, UserLookupError> {
        // A group of one: the same statement.
        let lookup = [(org.clone(), device_id.clone())];
        let mut outcomes = identities_statement(self, &lookup).await?;
        outcomes
            .pop()
            .unwrap_or_else(|| Err(Internal(anyhow::anyhow!("lookup gave no outcome")).into()))
    }

    fn groups_identity_lookups(&self) -> bool {
        true
    }

    async fn handshake_identities(
        &self,
        lookups: Vec<(OrganizationId, DeviceId)>,
    ) -> Vec<Result<HandshakeIdentity, UserLookupError>> {
        match identities_statement(self, &lookups).await {
            Ok(outcomes) => outcomes,
            Err(e) if lookups.len() > 1 => {
                // Whatever failed, each lookup on its own gets its own outcome.
                log::warn!(
                    "group of {} handshake lookups: {e:#}; looking up one by one",
                    lookups.len()
                );
                let each = lookups.iter().map(|(org, device)| self.handshake_identity(org, device));
                futures_util::future::join_all(each).await
            }
            Err(e) => vec![Err(e.into())],
        }
    }

    async fn get_user_with_trustchain(
        &self,
        org: &OrganizationId,
        user_id: &UserId,
    ) -> Result<UserWithTrustchain, UserLookupError> {
        let mut conn = self.conn().await?;
        let org = org_pk(&mut conn, org, false).await?.ok_or(UserLookupError::NotFound)?;
        let user_row = users_by_id(&mut conn, org, &[user_id.to_string()])
            .await?
            .pop()
            .ok_or(UserLookupError::NotFound)?;
        let devices: Vec<DeviceRow> = prepared(&DEVICES_OF_USER, &[&bind::<BigInt, _>(user_row._id)])
            .load(&mut conn)
            .await?;
        let user = user_row.into_user()?;
        let devices = devices
            .into_iter()
            .map(DeviceRow::into_device)
            .collect::<Result<Vec<_>, _>>()?;

        // Closure over certifiers (commands.md §3.1), one query per level.
        let mut frontier: Vec<String> = Vec::new();
        frontier.extend(user.user_certifier.iter().map(ToString::to_string));
        frontier.extend(user.revoked_user_certifier.iter().map(ToString::to_string));
        frontier.extend(
            devices
                .iter()
                .filter_map(|d| d.device_certifier.as_ref().map(ToString::to_string)),
        );
        let mut seen_devices: HashSet<String> = HashSet::new();
        let mut seen_users: HashSet<String> = HashSet::new();
        let mut out = UserWithTrustchain {
            user,
            devices,
            trustchain_users: Vec::new(),
            trustchain_devices: Vec::new(),
            trustchain_revoked_users: Vec::new(),
        };
        while !frontier.is_empty() {
            frontier.retain(|d| seen_devices.insert(d.clone()));
            if frontier.is_empty() {
                break;
            }
            let found = devices_by_id(&mut conn, org, &frontier).await?;
            let mut next = Vec::new();
            let mut new_users = Vec::new();
            for row in found {
                let d = row.into_device()?;
                next.extend(d.device_certifier.iter().map(ToString::to_string));
                let uid = d.device_id.user_id().to_string();
                if seen_users.insert(uid.clone()) {
                    new_users.push(uid);
                }
                out.trustchain_devices.push(d);
            }
            for row in users_by_id(&mut conn, org, &new_users).await? {
                let u = row.into_user()?;
                next.extend(u.user_certifier.iter().map(ToString::to_string));
                next.extend(u.revoked_user_certifier.iter().map(ToString::to_string));
                if u.revoked_user_certificate.is_some() {
                    out.trustchain_revoked_users.push(u.clone());
                }
                out.trustchain_users.push(u);
            }
            frontier = next;
        }
        Ok(out)
    }

    async fn create_user(
        &self,
        org: &OrganizationId,
        user: User,
        first_device: Device,
        now: DateTime,
    ) -> Result<(), UserCreateError> {
        let mut conn = self.conn().await?;
        conn.transaction::<_, UserCreateError, _>(async |c| {
            let org = org_pk(c, org, true)
                .await?
                .ok_or_else(|| Internal(anyhow::anyhow!("user_create in unknown organization {org}")))?;
            insert_user_and_device(c, org, &user, &first_device, now).await
        })
        .await
    }

    async fn create_device(&self, org: &OrganizationId, device: Device) -> Result<(), DeviceCreateError> {
        let mut conn = self.conn().await?;
        conn.transaction::<_, DeviceCreateError, _>(async |c| {
            let org_id = org;
            let org = org_pk(c, org_id, true)
                .await?
                .ok_or_else(|| Internal(anyhow::anyhow!("device_create in unknown organization {org_id}")))?;
            let user = user_pk(c, org, &device.device_id.user_id()).await?.ok_or_else(|| {
                Internal(anyhow::anyhow!(
                    "device_create for unknown user of {}",
                    device.device_id
                ))
            })?;
            insert_device(c, org, user, &device).await
        })
        .await
    }

    async fn revoke_user(&self, org: &OrganizationId, r: UserRevocation) -> Result<(), UserRevokeError> {
        let mut conn = self.conn().await?;
        conn.transaction::<_, UserRevokeError, _>(async |c| {
            let org = org_pk(c, org, true).await?.ok_or(UserRevokeError::NotFound)?;
            let row: Option<(i64, Option<Ts>)> = user_::table
                .filter(user_::organization.eq(org).and(user_::user_id.eq(r.user_id.as_str())))
                .select((user_::_id, user_::revoked_on))
                .for_no_key_update()
                .first(c)
                .await
                .optional()?;
            let (user, revoked_on) = row.ok_or(UserRevokeError::NotFound)?;
            if revoked_on.is_some() {
                return Err(UserRevokeError::AlreadyRevoked(r.user_id.clone()));
            }
            let certifier = certifier_pk(c, org, &Some(r.revoked_user_certifier.clone())).await?;
            diesel::update(user_::table.filter(user_::_id.eq(user)))
                .set((
                    user_::revoked_on.eq(ts(r.revoked_on)),
                    user_::revoked_user_certificate.eq(&r.revoked_user_certificate),
                    user_::revoked_user_certifier.eq(certifier),
                ))
                .execute(c)
                .await?;
            Ok(())
        })
        .await
    }

    async fn find_humans(&self, org: &OrganizationId, query: &HumanFindQuery) -> Result<HumanFindPage, Internal> {
        let mut conn = self.conn().await?;
        let Some(org) = org_pk(&mut conn, org, false).await? else {
            return Ok(HumanFindPage {
                results: Vec::new(),
                total: 0,
            });
        };
        type Row = (String, Option<String>, Option<String>, Ts, Option<Ts>);
        let rows: Vec<Row> = user_::table
            .filter(user_::organization.eq(org))
            .select((
                user_::user_id,
                user_::human_email,
                user_::human_label,
                user_::created_on,
                user_::revoked_on,
            ))
            .load(&mut conn)
            .await?;
        let rows = rows
            .into_iter()
            .map(|(user_id, email, label, created_on, revoked_on)| {
                Ok(HumanRow {
                    user_id: parse_id(&user_id)?,
                    human_handle: human(email, label),
                    created_on: dt(created_on),
                    revoked_on: revoked_on.map(dt),
                })
            })
            .collect::<Result<Vec<_>, Internal>>()?;
        Ok(human_find::find(rows, query))
    }
}

/// What the authenticated handshake checks of each (organization, device)
/// of `lookups`, in one statement (one snapshot, one round trip, prepared
/// once per connection) and no transaction: $1 organizations, $2 devices,
/// $3 their users; one row per lookup that found its organization, device
/// and user, with its ordinal `n`. No row: `NotFound`.
async fn identities_statement(
    store: &PgStore,
    lookups: &[(OrganizationId, DeviceId)],
) -> Result<Vec<Result<HandshakeIdentity, UserLookupError>>, Internal> {
    #[derive(QueryableByName)]
    struct Row {
        #[diesel(sql_type = BigInt)]
        n: i64,
        #[diesel(sql_type = Nullable<Bytea>)]
        root_verify_key: Option<Vec<u8>>,
        #[diesel(sql_type = diesel::sql_types::Bool)]
        is_expired: bool,
        #[diesel(sql_type = Text)]
        profile: String,
        #[diesel(sql_type = Nullable<Text>)]
        human_email: Option<String>,
        #[diesel(sql_type = Nullable<Text>)]
        human_label: Option<String>,
        #[diesel(sql_type = Nullable<Timestamptz>)]
        revoked_on: Option<Ts>,
        #[diesel(sql_type = Nullable<Text>)]
        device_label: Option<String>,
        #[diesel(sql_type = Bytea)]
        verify_key: Vec<u8>,
    }
    // Each lookup is a LIMIT 1 lateral, planned on its own as index probes:
    // a plain join over the unnest was planned as a hash join over the
    // whole organization table.
    const SQL: &str = "SELECT req.n, x.* \
         FROM unnest($1::text[], $2::text[], $3::text[]) WITH ORDINALITY AS req(org_id, device_id, user_id, n) \
         CROSS JOIN LATERAL (SELECT o.root_verify_key, o.is_expired, u.profile, u.human_email, u.human_label, \
           u.revoked_on, d.device_label, d.verify_key \
           FROM organization o \
           JOIN device d ON d.organization = o._id AND d.device_id = req.device_id \
           JOIN user_ u ON u.organization = o._id AND u.user_id = req.user_id \
           WHERE o.organization_id = req.org_id LIMIT 1) x";
    let users: Vec<UserId> = lookups.iter().map(|(_, device)| device.user_id()).collect();
    let mut conn = store.conn().await?;
    let rows: Vec<Row> = super::prepared(
        SQL,
        &[
            &super::bind::<Array<Text>, _>(lookups.iter().map(|(org, _)| org.as_str()).collect::<Vec<_>>()),
            &super::bind::<Array<Text>, _>(lookups.iter().map(|(_, device)| device.as_str()).collect::<Vec<_>>()),
            &super::bind::<Array<Text>, _>(users.iter().map(UserId::as_str).collect::<Vec<_>>()),
        ],
    )
    .load(&mut conn)
    .await?;
    drop(conn);
    let rows = super::by_ordinal(rows, lookups.len(), |r| r.n)?;
    Ok(rows
        .into_iter()
        .zip(lookups.iter().zip(users))
        .map(|(row, ((_, device_id), user_id))| {
            let row = row.ok_or(UserLookupError::NotFound)?;
            Ok(HandshakeIdentity {
                root_verify_key: row.root_verify_key.as_deref().map(key32).transpose()?,
                organization_expired: row.is_expired,
                user_id,
                human_handle: human(row.human_email, row.human_label),
                profile: parse_profile(&row.profile)?,
                revoked_on: row.revoked_on.map(dt),
                device_id: device_id.clone(),
                device_label: row.device_label.as_deref().map(parse_id).transpose()?,
                verify_key: key32(&row.verify_key)?,
            })
        })
        .collect())
}
