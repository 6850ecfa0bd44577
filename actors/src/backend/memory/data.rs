//! The `MOCKED` store's realms, vlobs, blocks and messages.
//!
//! Same lock and same discipline as the parent module: every operation locks
//! once, checks in the reference PostgreSQL order, writes, unlocks. The one
//! exception is `block_create`, which must not hold the lock while the block
//! store writes: it checks, writes the bytes, then checks again and inserts
//! under a second lock, which is what the PostgreSQL transaction around the
//! store write guarantees.

use std::collections::{BTreeMap, HashMap, HashSet};

use async_trait::async_trait;
use bytes::Bytes;
use parsec_protocol::cmds::authenticated::{
    BlockCreate, RealmStartReencryptionMaintenance, ReencryptionBatchEntry, VlobCreate, VlobRead, VlobUpdate,
};
use parsec_protocol::types::*;

use super::{MemoryStore, OrgState};
use crate::backend::*;
use crate::blockstore::BlockStore;

/// Data of one organization.
#[derive(Debug, Default)]
pub(super) struct DataState {
    realms: HashMap<Uuid, Realm>,
    /// Vlob id → its realm: vlob ids are unique per organization (commands.md §9.2).
    vlob_realms: HashMap<Uuid, Uuid>,
    blocks: HashMap<Uuid, BlockMeta>,
    /// Per-user inboxes, in arrival order (index = position + 1).
    messages: HashMap<UserId, Vec<InboxMessage>>,
}

impl DataState {
    pub(super) fn realms_count(&self) -> u64 {
        self.realms.len() as u64
    }

    /// Sum of block sizes (`organization_stats.data_size`).
    pub(super) fn data_size(&self) -> u64 {
        self.blocks.values().map(|b| b.size).sum()
    }

    /// Sum of every stored vlob blob, re-encrypted copies included, as PG
    /// counts its `vlob_atom` rows (`organization_stats.metadata_size`).
    pub(super) fn metadata_size(&self) -> u64 {
        let blobs = self
            .realms
            .values()
            .flat_map(|r| r.vlobs.values())
            .flat_map(|v| &v.versions);
        blobs.flat_map(|v| v.blobs.values()).map(|b| b.len() as u64).sum()
    }

    fn deliver(&mut self, recipient: &UserId, message: InboxMessage) -> DeliveredMessage {
        let inbox = self.messages.entry(recipient.clone()).or_default();
        inbox.push(message);
        DeliveredMessage {
            recipient: recipient.clone(),
            index: inbox.len() as u64,
        }
    }
}

#[derive(Debug)]
struct Realm {
    status: RealmStatus,
    /// Role certificates in storage order.
    roles: Vec<RealmGrantedRole>,
    /// The change log: entry `i` has checkpoint `i + 1`; (vlob id, version).
    changes: Vec<(Uuid, u64)>,
    /// Per user: latest timestamp of the role certificates they authored here.
    last_role_change: HashMap<UserId, DateTime>,
    /// Per user: latest timestamp of their vlob writes here.
    last_vlob_update: HashMap<UserId, DateTime>,
    /// Ordered, so re-encryption batches come in a stable order.
    vlobs: BTreeMap<Uuid, Vlob>,
}

impl Realm {
    fn new(role: RealmGrantedRole) -> Self {
        Self {
            status: RealmStatus {
                encryption_revision: 1,
                maintenance: None,
            },
            roles: vec![role],
            changes: Vec::new(),
            last_role_change: HashMap::new(),
            last_vlob_update: HashMap::new(),
            vlobs: BTreeMap::new(),
        }
    }

    fn role_of(&self, user: &UserId) -> Option<RealmRole> {
        last_role_of(&self.roles, user).and_then(|r| r.role)
    }

    fn last_role_granted_on(&self, user: &UserId) -> Option<DateTime> {
        last_role_of(&self.roles, user).map(|r| r.granted_on)
    }

    /// Role ignoring users revoked at `now` (re-encryption rules).
    fn role_of_active(&self, o: &OrgState, user: &UserId, now: DateTime) -> Option<RealmRole> {
        let active = o.users.get(user).is_some_and(|u| !u.is_revoked(now));
        self.role_of(user).filter(|_| active)
    }

    fn record_write(&mut self, author: &DeviceId, vlob_id: Uuid, version: u64, timestamp: DateTime) -> u64 {
        self.changes.push((vlob_id, version));
        let last = self.last_vlob_update.entry(author.user_id()).or_insert(timestamp);
        *last = (*last).max(timestamp);
        self.changes.len() as u64
    }

    /// (versions at revision R−1, versions at R) for the current revision R.
    fn reencryption_progress(&self) -> (u64, u64) {
        let current = self.status.encryption_revision;
        let versions = || self.vlobs.values().flat_map(|v| &v.versions);
        let at = |rev: u64| versions().filter(|v| v.blobs.contains_key(&rev)).count() as u64;
        (at(current.saturating_sub(1)), at(current))
    }
}

#[derive(Debug)]
struct Vlob {
    /// `versions[i]` is version `i + 1`.
    versions: Vec<VlobVersion>,
}

#[derive(Debug)]
struct VlobVersion {
    author: DeviceId,
    /// The writer's declared timestamp.
    created_on: DateTime,
    /// Size of the blob as written (`realm_stats` ignores re-encrypted copies).
    size: u64,
    /// Encryption revision → blob.
    blobs: BTreeMap<u64, Vec<u8>>,
}

#[derive(Debug)]
struct BlockMeta {
    realm_id: Uuid,
    size: u64,
    #[allow(dead_code)] // kept as PG keeps it; nothing reads it in 2.10
    author: DeviceId,
    #[allow(dead_code)]
    created_on: DateTime,
}

/// A refusal shared by the vlob operations, converted into each operation's enum.
enum Denied {
    RealmNotFound,
    State(RealmStateError),
    NotAllowed,
}

/// The realm check then the role check (commands.md §9.1, PG order).
fn check_access<'a>(
    realm: Option<&'a Realm>,
    user: &UserId,
    kind: OperationKind,
    encryption_revision: Option<i64>,
    allowed: fn(Option<RealmRole>) -> bool,
) -> Result<&'a Realm, Denied> {
    let realm = realm.ok_or(Denied::RealmNotFound)?;
    check_realm_state(&realm.status, kind, encryption_revision).map_err(Denied::State)?;
    if !allowed(realm.role_of(user)) {
        return Err(Denied::NotAllowed);
    }
    Ok(realm)
}

fn unexpected(what: &str) -> Internal {
    Internal(anyhow::anyhow!("memory store: {what}"))
}

macro_rules! from_denied {
    ($err:ident { $($state:ident => $variant:ident),* }) => {
        impl From<Denied> for $err {
            fn from(d: Denied) -> Self {
                match d {
                    Denied::RealmNotFound => Self::RealmNotFound,
                    Denied::NotAllowed => Self::NotAllowed,
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

impl MemoryStore {
    /// Runs `f` on the organization's state; an unknown organization is an
    /// internal error (authenticated clients belong to an existing one).
    fn with_org<T, E: From<Internal>>(
        &self,
        org: &OrganizationId,
        f: impl FnOnce(&mut OrgState) -> Result<T, E>,
    ) -> Result<T, E> {
        let mut orgs = self.lock();
        let o = orgs.get_mut(org).ok_or_else(|| unexpected("organization vanished"))?;
        f(o)
    }
}

#[async_trait]
impl RealmBackend for MemoryStore {
    async fn create(&self, org: &OrganizationId, role: RealmGrantedRole) -> Result<(), RealmCreateError> {
        self.with_org(org, |o| {
            if o.data.realms.contains_key(&role.realm_id) {
                return Err(RealmCreateError::AlreadyExists);
            }
            o.data.realms.insert(role.realm_id, Realm::new(role));
            Ok(())
        })
    }

    async fn get_status(
        &self,
        org: &OrganizationId,
        user: &UserId,
        realm_id: Uuid,
    ) -> Result<RealmStatus, RealmReadError> {
        self.with_org(org, |o| Ok(readable_realm(o, user, realm_id)?.status.clone()))
    }

    async fn get_stats(
        &self,
        org: &OrganizationId,
        user: &UserId,
        realm_id: Uuid,
    ) -> Result<RealmStats, RealmReadError> {
        self.with_org(org, |o| {
            let realm = readable_realm(o, user, realm_id)?;
            let blocks = o.data.blocks.values().filter(|b| b.realm_id == realm_id);
            let versions = realm.vlobs.values().flat_map(|v| &v.versions);
            Ok(RealmStats {
                blocks_size: blocks.map(|b| b.size).sum(),
                vlobs_size: versions.map(|v| v.size).sum(),
            })
        })
    }

    async fn get_role_certificates(
        &self,
        org: &OrganizationId,
        user: &UserId,
        realm_id: Uuid,
    ) -> Result<Vec<Vec<u8>>, RealmReadError> {
        self.with_org(org, |o| {
            let realm = readable_realm(o, user, realm_id)?;
            let mut roles: Vec<&RealmGrantedRole> = realm.roles.iter().collect();
            roles.sort_by_key(|r| r.granted_on); // stable: storage order among equals
            Ok(roles.into_iter().map(|r| r.certificate.clone()).collect())
        })
    }

    async fn update_roles(
        &self,
        org: &OrganizationId,
        role: RealmGrantedRole,
        recipient_message: Option<Vec<u8>>,
    ) -> Result<Option<DeliveredMessage>, RealmUpdateRolesError> {
        use RealmUpdateRolesError as E;
        self.with_org(org, |o| {
            let target = o.users.get(&role.user_id).ok_or(E::UserNotFound)?;
            if target.profile == UserProfile::Outsider
                && matches!(role.role, Some(RealmRole::Owner | RealmRole::Manager))
            {
                return Err(E::IncompatibleProfile);
            }
            // Any revocation, even one dated in the future (PG tests `revoked_on` only).
            if target.revoked_on.is_some() {
                return Err(E::UserRevoked);
            }
            let realm = o.data.realms.get_mut(&role.realm_id).ok_or(E::RealmNotFound)?;
            if realm.status.maintenance.is_some() {
                return Err(E::InMaintenance);
            }
            let author = role.granted_by.user_id();
            let existing = realm.role_of(&role.user_id);
            if !may_grant(realm.role_of(&author), existing, role.role) {
                return Err(E::NotAllowed);
            }
            if existing == role.role {
                return Err(E::AlreadyGranted);
            }
            let too_early = |t: Option<&DateTime>| t.copied().filter(|t| *t >= role.granted_on);
            if let Some(t) = too_early(realm.last_role_granted_on(&role.user_id).as_ref()) {
                return Err(E::RequireGreaterTimestamp(t));
            }
            if removes_write(role.role)
                && let Some(t) = too_early(realm.last_vlob_update.get(&role.user_id))
            {
                return Err(E::RequireGreaterTimestamp(t));
            }
            if removes_management(role.role)
                && let Some(t) = too_early(realm.last_role_change.get(&role.user_id))
            {
                return Err(E::RequireGreaterTimestamp(t));
            }

            let last = realm.last_role_change.entry(author).or_insert(role.granted_on);
            *last = (*last).max(role.granted_on);
            let (recipient, sender, timestamp) = (role.user_id.clone(), role.granted_by.clone(), role.granted_on);
            realm.roles.push(role);
            // PG sends nothing for an empty message (it tests truthiness).
            Ok(recipient_message.filter(|body| !body.is_empty()).map(|body| {
                o.data.deliver(
                    &recipient,
                    InboxMessage {
                        sender,
                        timestamp,
                        body,
                    },
                )
            }))
        })
    }

    async fn start_reencryption_maintenance(
        &self,
        org: &OrganizationId,
        author: &DeviceId,
        req: &RealmStartReencryptionMaintenance,
        now: DateTime,
    ) -> Result<Vec<DeliveredMessage>, RealmStartReencryptionError> {
        use RealmStartReencryptionError as E;
        self.with_org(org, |o| {
            let realm = o.data.realms.get(&req.realm_id).ok_or(E::RealmNotFound)?;
            if realm.status.maintenance.is_some() {
                return Err(E::InMaintenance);
            }
            let new_revision = realm.status.encryption_revision + 1;
            if !same_revision(req.encryption_revision, new_revision) {
                return Err(E::BadEncryptionRevision);
            }
            if !can_maintain(realm.role_of_active(o, &author.user_id(), now)) {
                return Err(E::NotAllowed);
            }
            let users: HashSet<&UserId> = realm.roles.iter().map(|r| &r.user_id).collect();
            let participants: HashSet<&UserId> = users
                .into_iter()
                .filter(|u| realm.role_of_active(o, u, now).is_some())
                .collect();
            let recipients: HashSet<&UserId> = req.per_participant_message.keys().collect();
            if participants != recipients {
                return Err(E::ParticipantsMismatch);
            }

            let maintenance = RealmMaintenance {
                kind: MaintenanceType::Reencryption,
                started_by: author.clone(),
                started_on: req.timestamp,
            };
            if let Some(realm) = o.data.realms.get_mut(&req.realm_id) {
                realm.status = RealmStatus {
                    encryption_revision: new_revision,
                    maintenance: Some(maintenance),
                };
            }
            let message = |body: &Vec<u8>| InboxMessage {
                sender: author.clone(),
                timestamp: req.timestamp,
                body: body.clone(),
            };
            Ok(req
                .per_participant_message
                .iter()
                .map(|(user, body)| o.data.deliver(user, message(body)))
                .collect())
        })
    }

    async fn finish_reencryption_maintenance(
        &self,
        org: &OrganizationId,
        author: &DeviceId,
        realm_id: Uuid,
        encryption_revision: i64,
        now: DateTime,
    ) -> Result<u64, RealmFinishReencryptionError> {
        use RealmFinishReencryptionError as E;
        self.with_org(org, |o| {
            let realm = o.data.realms.get(&realm_id).ok_or(E::RealmNotFound)?;
            if !can_maintain(realm.role_of_active(o, &author.user_id(), now)) {
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
            let (total, done) = realm.reencryption_progress();
            if total != done {
                return Err(E::ReencryptionNotOver);
            }
            if let Some(realm) = o.data.realms.get_mut(&realm_id) {
                realm.status.maintenance = None;
            }
            Ok(revision)
        })
    }

    async fn get_realms_for_user(&self, org: &OrganizationId, user: &UserId) -> Result<HashSet<Uuid>, Internal> {
        let orgs = self.lock();
        let Some(o) = orgs.get(org) else {
            return Ok(HashSet::new());
        };
        Ok(o.data
            .realms
            .iter()
            .filter(|(_, r)| r.role_of(user).is_some())
            .map(|(id, _)| *id)
            .collect())
    }
}

/// Realm exists, then the user has a current role (realm reads).
fn readable_realm<'a>(o: &'a OrgState, user: &UserId, realm_id: Uuid) -> Result<&'a Realm, RealmReadError> {
    let realm = o.data.realms.get(&realm_id).ok_or(RealmReadError::NotFound)?;
    if !can_read(realm.role_of(user)) {
        return Err(RealmReadError::NotAllowed);
    }
    Ok(realm)
}

/// The realm of an existing vlob.
fn realm_of_vlob(o: &OrgState, vlob_id: Uuid) -> Option<Uuid> {
    o.data.vlob_realms.get(&vlob_id).copied()
}

#[async_trait]
impl VlobBackend for MemoryStore {
    async fn create(&self, org: &OrganizationId, author: &DeviceId, req: &VlobCreate) -> Result<u64, VlobCreateError> {
        self.with_org(org, |o| {
            let user = author.user_id();
            let realm = o.data.realms.get(&req.realm_id);
            let realm = check_access(
                realm,
                &user,
                OperationKind::DataWrite,
                Some(req.encryption_revision),
                can_write,
            )?;
            if let Some(t) = realm.last_role_granted_on(&user).filter(|t| *t >= req.timestamp) {
                return Err(VlobCreateError::RequireGreaterTimestamp(t));
            }
            if o.data.vlob_realms.contains_key(&req.vlob_id) {
                return Err(VlobCreateError::AlreadyExists);
            }

            let realm = o
                .data
                .realms
                .get_mut(&req.realm_id)
                .ok_or_else(|| unexpected("realm vanished"))?;
            let version = VlobVersion {
                author: author.clone(),
                created_on: req.timestamp,
                size: req.blob.len() as u64,
                blobs: BTreeMap::from([(realm.status.encryption_revision, req.blob.clone())]),
            };
            realm.vlobs.insert(
                req.vlob_id,
                Vlob {
                    versions: vec![version],
                },
            );
            let checkpoint = realm.record_write(author, req.vlob_id, 1, req.timestamp);
            o.data.vlob_realms.insert(req.vlob_id, req.realm_id);
            Ok(checkpoint)
        })
    }

    async fn read(
        &self,
        org: &OrganizationId,
        user: &UserId,
        req: &VlobRead,
    ) -> Result<VlobVersionRead, VlobReadError> {
        use VlobReadError as E;
        self.with_org(org, |o| {
            let realm_id = realm_of_vlob(o, req.vlob_id).ok_or(E::VlobNotFound)?;
            let realm = o.data.realms.get(&realm_id);
            let realm = check_access(
                realm,
                user,
                OperationKind::DataRead,
                Some(req.encryption_revision),
                can_read,
            )?;
            let vlob = realm.vlobs.get(&req.vlob_id).ok_or(E::VlobNotFound)?;
            // The realm check accepted it: the current or the previous revision.
            let revision = u64::try_from(req.encryption_revision).map_err(|_| E::BadEncryptionRevision)?;
            let mut at_revision = vlob
                .versions
                .iter()
                .enumerate()
                .filter_map(|(i, v)| Some((i as u64 + 1, v, v.blobs.get(&revision)?)));
            let found = match (req.version, req.timestamp) {
                (Some(wanted), _) => at_revision.find(|(n, _, _)| same_revision(wanted, *n)),
                (None, Some(t)) => at_revision.rfind(|(_, v, _)| v.created_on <= t),
                (None, None) => at_revision.next_back(),
            };
            let (version, v, blob) = found.ok_or(E::BadVersion)?;
            Ok(VlobVersionRead {
                version,
                blob: blob.clone(),
                author: v.author.clone(),
                timestamp: v.created_on,
                author_last_role_granted_on: realm.last_role_granted_on(&v.author.user_id()),
            })
        })
    }

    async fn update(
        &self,
        org: &OrganizationId,
        author: &DeviceId,
        req: &VlobUpdate,
    ) -> Result<(Uuid, u64), VlobUpdateError> {
        use VlobUpdateError as E;
        self.with_org(org, |o| {
            let user = author.user_id();
            let realm_id = realm_of_vlob(o, req.vlob_id).ok_or(E::VlobNotFound)?;
            let realm = o.data.realms.get(&realm_id);
            let realm = check_access(
                realm,
                &user,
                OperationKind::DataWrite,
                Some(req.encryption_revision),
                can_write,
            )?;
            if let Some(t) = realm.last_role_granted_on(&user).filter(|t| *t >= req.timestamp) {
                return Err(E::RequireGreaterTimestamp(t));
            }
            let latest = realm
                .vlobs
                .get(&req.vlob_id)
                .and_then(|v| v.versions.last())
                .ok_or(E::VlobNotFound)?;
            let next = realm.vlobs.get(&req.vlob_id).map_or(0, |v| v.versions.len() as u64) + 1;
            if !same_revision(req.version, next) {
                return Err(E::BadVersion);
            }
            // Equal is fine: two versions may carry the same timestamp.
            if latest.created_on > req.timestamp {
                return Err(E::RequireGreaterTimestamp(latest.created_on));
            }

            let realm = o
                .data
                .realms
                .get_mut(&realm_id)
                .ok_or_else(|| unexpected("realm vanished"))?;
            let version = VlobVersion {
                author: author.clone(),
                created_on: req.timestamp,
                size: req.blob.len() as u64,
                blobs: BTreeMap::from([(realm.status.encryption_revision, req.blob.clone())]),
            };
            let vlob = realm
                .vlobs
                .get_mut(&req.vlob_id)
                .ok_or_else(|| unexpected("vlob vanished"))?;
            vlob.versions.push(version);
            let checkpoint = realm.record_write(author, req.vlob_id, next, req.timestamp);
            Ok((realm_id, checkpoint))
        })
    }

    async fn poll_changes(
        &self,
        org: &OrganizationId,
        user: &UserId,
        realm_id: Uuid,
        last_checkpoint: i64,
    ) -> Result<VlobChanges, VlobPollChangesError> {
        self.with_org(org, |o| {
            let realm = o.data.realms.get(&realm_id);
            let realm = check_access(realm, user, OperationKind::DataRead, None, can_read)?;
            // Entry `i` has checkpoint `i + 1`: skip those at or below the request's.
            let skip = usize::try_from(last_checkpoint).unwrap_or(0);
            let newer = realm.changes.iter().skip(skip);
            let changes: BTreeMap<Uuid, u64> = newer.map(|(id, version)| (*id, *version)).collect();
            let current_checkpoint = if changes.is_empty() {
                last_checkpoint
            } else {
                realm.changes.len() as i64
            };
            Ok(VlobChanges {
                current_checkpoint,
                changes,
            })
        })
    }

    async fn list_versions(
        &self,
        org: &OrganizationId,
        user: &UserId,
        vlob_id: Uuid,
    ) -> Result<BTreeMap<u64, (DateTime, DeviceId)>, VlobListVersionsError> {
        self.with_org(org, |o| {
            let realm_id = realm_of_vlob(o, vlob_id).ok_or(VlobListVersionsError::VlobNotFound)?;
            let realm = o.data.realms.get(&realm_id);
            let realm = check_access(realm, user, OperationKind::DataRead, None, can_read)?;
            let vlob = realm.vlobs.get(&vlob_id).ok_or(VlobListVersionsError::VlobNotFound)?;
            let versions = vlob.versions.iter().enumerate();
            Ok(versions
                .map(|(i, v)| (i as u64 + 1, (v.created_on, v.author.clone())))
                .collect())
        })
    }

    async fn maintenance_get_reencryption_batch(
        &self,
        org: &OrganizationId,
        user: &UserId,
        realm_id: Uuid,
        encryption_revision: i64,
        size: usize,
    ) -> Result<Vec<ReencryptionBatchEntry>, VlobMaintenanceError> {
        self.with_org(org, |o| {
            let realm = o.data.realms.get(&realm_id);
            let realm = check_access(
                realm,
                user,
                OperationKind::Maintenance,
                Some(encryption_revision),
                can_maintain,
            )?;
            let current = realm.status.encryption_revision;
            let previous = current.saturating_sub(1);
            let todo = realm.vlobs.iter().flat_map(|(id, vlob)| {
                vlob.versions.iter().enumerate().filter_map(move |(i, v)| {
                    let blob = v.blobs.get(&previous).filter(|_| !v.blobs.contains_key(&current))?;
                    Some(ReencryptionBatchEntry {
                        vlob_id: *id,
                        version: i as i64 + 1,
                        blob: blob.clone(),
                    })
                })
            });
            Ok(todo.take(size).collect())
        })
    }

    async fn maintenance_save_reencryption_batch(
        &self,
        org: &OrganizationId,
        user: &UserId,
        realm_id: Uuid,
        encryption_revision: i64,
        batch: &[ReencryptionBatchEntry],
    ) -> Result<(u64, u64), VlobMaintenanceError> {
        self.with_org(org, |o| {
            let realm = o.data.realms.get(&realm_id);
            check_access(
                realm,
                user,
                OperationKind::Maintenance,
                Some(encryption_revision),
                can_maintain,
            )?;
            let realm = o
                .data
                .realms
                .get_mut(&realm_id)
                .ok_or_else(|| unexpected("realm vanished"))?;
            let current = realm.status.encryption_revision;
            for entry in batch {
                // Unknown versions, vlobs of other realms (which PG would
                // wrongly copy in) and versions already saved are ignored.
                let index = usize::try_from(entry.version).ok().and_then(|v| v.checked_sub(1));
                let version = realm
                    .vlobs
                    .get_mut(&entry.vlob_id)
                    .zip(index)
                    .and_then(|(v, i)| v.versions.get_mut(i));
                if let Some(version) = version {
                    version.blobs.entry(current).or_insert_with(|| entry.blob.clone());
                }
            }
            Ok(realm.reencryption_progress())
        })
    }
}

/// The block-create checks (commands.md §10.1 steps 2–5).
fn check_block_create(o: &OrgState, user: &UserId, realm_id: Uuid, block_id: Uuid) -> Result<(), BlockCreateError> {
    let realm = o.data.realms.get(&realm_id).ok_or(BlockCreateError::RealmNotFound)?;
    if realm.status.maintenance.is_some() {
        return Err(BlockCreateError::InMaintenance);
    }
    if !can_write(realm.role_of(user)) {
        return Err(BlockCreateError::NotAllowed);
    }
    if o.data.blocks.contains_key(&block_id) {
        return Err(BlockCreateError::AlreadyExists);
    }
    Ok(())
}

#[async_trait]
impl BlockBackend for MemoryStore {
    async fn create(
        &self,
        org: &OrganizationId,
        author: &DeviceId,
        req: BlockCreate,
        now: DateTime,
        store: &dyn BlockStore,
    ) -> Result<(), BlockCreateError> {
        let user = author.user_id();
        let BlockCreate {
            block_id,
            realm_id,
            block,
        } = req;
        self.with_org(org, |o| check_block_create(o, &user, realm_id, block_id))?;
        let size = block.len() as u64;
        // Not under the lock: the store may be remote. Block ids are checked
        // unused above, and stores are idempotent, so a concurrent create of
        // the same id at worst writes the same key twice.
        store
            .create(org, block_id, Bytes::from(block))
            .await
            .map_err(BlockCreateError::Store)?;
        self.with_org(org, |o| {
            // Again: the realm, the role or the id may have changed meanwhile.
            check_block_create(o, &user, realm_id, block_id)?;
            let meta = BlockMeta {
                realm_id,
                size,
                author: author.clone(),
                created_on: now,
            };
            o.data.blocks.insert(block_id, meta);
            Ok(())
        })
    }

    async fn check_read(&self, org: &OrganizationId, user: &UserId, block_id: Uuid) -> Result<(), BlockReadError> {
        self.with_org(org, |o| {
            let meta = o.data.blocks.get(&block_id).ok_or(BlockReadError::NotFound)?;
            let realm = o.data.realms.get(&meta.realm_id).ok_or(BlockReadError::NotFound)?;
            check_block_read(&realm.status, realm.role_of(user))
        })
    }
}

#[async_trait]
impl MessageBackend for MemoryStore {
    async fn get(&self, org: &OrganizationId, recipient: &UserId, offset: u64) -> Result<Vec<InboxMessage>, Internal> {
        let orgs = self.lock();
        let inbox = orgs.get(org).and_then(|o| o.data.messages.get(recipient));
        let skip = usize::try_from(offset).unwrap_or(usize::MAX);
        Ok(inbox
            .map(|m| m.iter().skip(skip).cloned().collect())
            .unwrap_or_default())
    }
}
