//! PostgreSQL: [`RealmBackend`] (creation, roles, maintenance, role-gated reads).

use std::collections::{HashMap, HashSet};

use async_trait::async_trait;
use diesel::dsl::sum;
use diesel::prelude::*;
use diesel_async::{AsyncConnection, RunQueryDsl};
use parsec_protocol::cmds::authenticated::RealmStartReencryptionMaintenance;
use parsec_protocol::types::*;
use parsec_schema::schema::{block, realm, realm_user_role, realm_vlob_update, user_, vlob_atom};

use super::*;

/// Realm exists, then the requester has a current role (realm reads).
async fn readable_realm(
    c: &mut Conn,
    org: &OrganizationId,
    user: &UserId,
    realm_id: Uuid,
) -> Result<Realm, RealmReadError> {
    let (org, user) = org_and_user(c, org, user).await?;
    let realm = realm_by_id(c, org, realm_id, Lock::None)
        .await?
        .ok_or(RealmReadError::NotFound)?;
    if !can_read(role_of(c, realm.pk, user).await?) {
        return Err(RealmReadError::NotAllowed);
    }
    Ok(realm)
}

#[async_trait]
impl RealmBackend for PgStore {
    async fn create(&self, org: &OrganizationId, role: RealmGrantedRole) -> Result<(), RealmCreateError> {
        let mut conn = self.conn().await?;
        conn.transaction::<_, RealmCreateError, _>(async |c| {
            let author = author(c, org, &role.granted_by).await?;
            let user = user_pk(c, author.org, &role.user_id)
                .await?
                .ok_or_else(|| unexpected("realm creator not found"))?;
            let inserted = diesel::insert_into(realm::table)
                .values((realm::organization.eq(author.org), realm::realm_id.eq(role.realm_id)))
                .returning(realm::_id)
                .get_result::<i64>(c)
                .await;
            let realm = match inserted {
                Err(e) if is_unique_violation(&e) => return Err(RealmCreateError::AlreadyExists),
                r => r?,
            };
            diesel::insert_into(realm_user_role::table)
                .values((
                    realm_user_role::realm.eq(realm),
                    realm_user_role::user_.eq(user),
                    realm_user_role::role.eq(role.role.map(RealmRole::as_str)),
                    realm_user_role::certificate.eq(&role.certificate),
                    realm_user_role::certified_by.eq(author.device),
                    realm_user_role::certified_on.eq(ts(role.granted_on)),
                ))
                .execute(c)
                .await?;
            Ok(())
        })
        .await
    }

    async fn get_status(
        &self,
        org: &OrganizationId,
        user: &UserId,
        realm_id: Uuid,
    ) -> Result<RealmStatus, RealmReadError> {
        let mut conn = self.conn().await?;
        conn.transaction::<_, RealmReadError, _>(async |c| Ok(readable_realm(c, org, user, realm_id).await?.status))
            .await
    }

    async fn get_stats(
        &self,
        org: &OrganizationId,
        user: &UserId,
        realm_id: Uuid,
    ) -> Result<RealmStats, RealmReadError> {
        let mut conn = self.conn().await?;
        conn.transaction::<_, RealmReadError, _>(async |c| {
            let realm = readable_realm(c, org, user, realm_id).await?;
            let blocks_size: Option<i64> = block::table
                .filter(block::realm.eq(realm.pk))
                .select(sum(block::size))
                .first(c)
                .await?;
            // The atoms the change log points at are the versions as written:
            // re-encrypted copies are not counted.
            let vlobs_size: Option<i64> = realm_vlob_update::table
                .inner_join(vlob_atom::table.on(vlob_atom::_id.eq(realm_vlob_update::vlob_atom)))
                .filter(realm_vlob_update::realm.eq(realm.pk))
                .select(sum(vlob_atom::size))
                .first(c)
                .await?;
            Ok(RealmStats {
                blocks_size: unsigned(blocks_size.unwrap_or(0))?,
                vlobs_size: unsigned(vlobs_size.unwrap_or(0))?,
            })
        })
        .await
    }

    async fn get_role_certificates(
        &self,
        org: &OrganizationId,
        user: &UserId,
        realm_id: Uuid,
    ) -> Result<Vec<Vec<u8>>, RealmReadError> {
        let mut conn = self.conn().await?;
        conn.transaction::<_, RealmReadError, _>(async |c| {
            let realm = readable_realm(c, org, user, realm_id).await?;
            Ok(realm_user_role::table
                .filter(realm_user_role::realm.eq(realm.pk))
                .order((realm_user_role::certified_on, realm_user_role::_id))
                .select(realm_user_role::certificate)
                .load(c)
                .await?)
        })
        .await
    }

    async fn update_roles(
        &self,
        org: &OrganizationId,
        role: RealmGrantedRole,
        recipient_message: Option<Vec<u8>>,
    ) -> Result<Option<DeliveredMessage>, RealmUpdateRolesError> {
        use RealmUpdateRolesError as E;
        let mut conn = self.conn().await?;
        conn.transaction::<_, E, _>(async |c| {
            let author = author(c, org, &role.granted_by).await?;
            let target: Option<(i64, String, Option<Ts>)> = user_::table
                .filter(user_::organization.eq(author.org))
                .filter(user_::user_id.eq(role.user_id.as_str()))
                .select((user_::_id, user_::profile, user_::revoked_on))
                .first(c)
                .await
                .optional()?;
            let (target, profile, revoked_on) = target.ok_or(E::UserNotFound)?;
            if profile == UserProfile::Outsider.as_str()
                && matches!(role.role, Some(RealmRole::Owner | RealmRole::Manager))
            {
                return Err(E::IncompatibleProfile);
            }
            // Any revocation, even one dated in the future (PG tests `revoked_on` only).
            if revoked_on.is_some() {
                return Err(E::UserRevoked);
            }
            // Locked: vlob writes of the target wait for the new role, or
            // come before it and are seen by the timestamp checks below.
            let realm = realm_by_id(c, author.org, role.realm_id, Lock::Update)
                .await?
                .ok_or(E::RealmNotFound)?;
            if realm.status.maintenance.is_some() {
                return Err(E::InMaintenance);
            }
            let author_role = role_of(c, realm.pk, Some(author.user)).await?;
            let existing = last_role(c, realm.pk, Some(target)).await?;
            if !may_grant(author_role, existing.and_then(|r| r.role), role.role) {
                return Err(E::NotAllowed);
            }
            if existing.and_then(|r| r.role) == role.role {
                return Err(E::AlreadyGranted);
            }
            let too_early = |t: Option<DateTime>| t.filter(|t| *t >= role.granted_on);
            if let Some(t) = too_early(existing.map(|r| r.granted_on)) {
                return Err(E::RequireGreaterTimestamp(t));
            }
            let changes = user_change(c, realm.pk, target).await?;
            if removes_write(role.role)
                && let Some(t) = too_early(changes.last_vlob_update)
            {
                return Err(E::RequireGreaterTimestamp(t));
            }
            if removes_management(role.role)
                && let Some(t) = too_early(changes.last_role_change)
            {
                return Err(E::RequireGreaterTimestamp(t));
            }

            record_change(c, realm.pk, author.user, Change::RoleChange, role.granted_on).await?;
            diesel::insert_into(realm_user_role::table)
                .values((
                    realm_user_role::realm.eq(realm.pk),
                    realm_user_role::user_.eq(target),
                    realm_user_role::role.eq(role.role.map(RealmRole::as_str)),
                    realm_user_role::certificate.eq(&role.certificate),
                    realm_user_role::certified_by.eq(author.device),
                    realm_user_role::certified_on.eq(ts(role.granted_on)),
                ))
                .execute(c)
                .await?;
            // PG sends nothing for an empty message (it tests truthiness).
            match recipient_message.filter(|body| !body.is_empty()) {
                Some(body) => {
                    let recipient = (&role.user_id, target);
                    Ok(Some(
                        deliver(c, author.org, recipient, author.device, role.granted_on, &body).await?,
                    ))
                }
                None => Ok(None),
            }
        })
        .await
    }

    async fn start_reencryption_maintenance(
        &self,
        org: &OrganizationId,
        author_id: &DeviceId,
        req: &RealmStartReencryptionMaintenance,
        now: DateTime,
    ) -> Result<Vec<DeliveredMessage>, RealmStartReencryptionError> {
        use RealmStartReencryptionError as E;
        let mut conn = self.conn().await?;
        conn.transaction::<_, E, _>(async |c| {
            let author = author(c, org, author_id).await?;
            let realm = realm_by_id(c, author.org, req.realm_id, Lock::Update)
                .await?
                .ok_or(E::RealmNotFound)?;
            if realm.status.maintenance.is_some() {
                return Err(E::InMaintenance);
            }
            let new_revision = realm.status.encryption_revision + 1;
            if !same_revision(req.encryption_revision, new_revision) {
                return Err(E::BadEncryptionRevision);
            }
            let members = members(c, realm.pk).await?;
            let author_role = members
                .iter()
                .find(|m| m.pk == author.user)
                .and_then(|m| m.active_role(now));
            if !can_maintain(author_role) {
                return Err(E::NotAllowed);
            }
            let participants: HashMap<&UserId, i64> = members
                .iter()
                .filter(|m| m.active_role(now).is_some())
                .map(|m| (&m.user_id, m.pk))
                .collect();
            let recipients: HashSet<&UserId> = req.per_participant_message.keys().collect();
            if participants.keys().copied().collect::<HashSet<_>>() != recipients {
                return Err(E::ParticipantsMismatch);
            }

            let revision = i32::try_from(new_revision).map_err(|_| E::BadEncryptionRevision)?;
            diesel::update(realm::table.find(realm.pk))
                .set((
                    realm::encryption_revision.eq(revision),
                    realm::maintenance_type.eq(Some(MaintenanceType::Reencryption.as_str())),
                    realm::maintenance_started_by.eq(Some(author.device)),
                    realm::maintenance_started_on.eq(Some(ts(req.timestamp))),
                ))
                .execute(c)
                .await?;
            // The map is ordered by user id: user rows are locked in that
            // order by every delivery of several messages.
            let mut delivered = Vec::with_capacity(req.per_participant_message.len());
            for (user, body) in &req.per_participant_message {
                let pk = participants
                    .get(user)
                    .copied()
                    .ok_or_else(|| unexpected("participant vanished"))?;
                delivered.push(deliver(c, author.org, (user, pk), author.device, req.timestamp, body).await?);
            }
            Ok(delivered)
        })
        .await
    }

    async fn finish_reencryption_maintenance(
        &self,
        org: &OrganizationId,
        author_id: &DeviceId,
        realm_id: Uuid,
        encryption_revision: i64,
        now: DateTime,
    ) -> Result<u64, RealmFinishReencryptionError> {
        use RealmFinishReencryptionError as E;
        let mut conn = self.conn().await?;
        conn.transaction::<_, E, _>(async |c| {
            let author = author(c, org, author_id).await?;
            // Locked: no batch is saved between the progress check and the end.
            let realm = realm_by_id(c, author.org, realm_id, Lock::Update)
                .await?
                .ok_or(E::RealmNotFound)?;
            if !can_maintain(active_role_of(c, realm.pk, author.user, now).await?) {
                return Err(E::NotAllowed);
            }
            if realm.status.maintenance.is_none() {
                return Err(E::NotInMaintenance);
            }
            let revision = realm.status.encryption_revision;
            if !same_revision(encryption_revision, revision) {
                return Err(E::BadEncryptionRevision);
            }
            // A realm without vlobs is done at once (PG can never finish one: commands.md §8.7).
            let (total, done) = reencryption_progress(c, &realm).await?;
            if total != done {
                return Err(E::ReencryptionNotOver);
            }
            diesel::update(realm::table.find(realm.pk))
                .set((
                    realm::maintenance_type.eq(None::<&str>),
                    realm::maintenance_started_by.eq(None::<i64>),
                    realm::maintenance_started_on.eq(None::<Ts>),
                ))
                .execute(c)
                .await?;
            Ok(revision)
        })
        .await
    }

    async fn get_realms_for_user(&self, org: &OrganizationId, user: &UserId) -> Result<HashSet<Uuid>, Internal> {
        let mut conn = self.conn().await?;
        conn.transaction::<_, Internal, _>(async |c| {
            let Some(org) = org_pk(c, org, false).await? else {
                return Ok(HashSet::new());
            };
            let Some(user) = user_pk(c, org, user).await? else {
                return Ok(HashSet::new());
            };
            let current: Vec<(Uuid, Option<String>)> = realm_user_role::table
                .inner_join(realm::table)
                .filter(realm_user_role::user_.eq(user))
                .distinct_on(realm_user_role::realm)
                .order((realm_user_role::realm, realm_user_role::certified_on.desc()))
                .select((realm::realm_id, realm_user_role::role))
                .load(c)
                .await?;
            Ok(current
                .into_iter()
                .filter(|(_, role)| role.is_some())
                .map(|(id, _)| id)
                .collect())
        })
        .await
    }
}
