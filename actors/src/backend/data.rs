//! Storage seams of the data domains: realms (roles, maintenance), vlobs,
//! blocks (metadata; bytes go to a [`BlockStore`]) and messages.
//!
//! As everywhere in [`crate::backend`], each method is one atomic operation
//! that checks the rules it guards and writes in the same step: the role of
//! a writer is checked in the transaction that writes (commands.md §0.5,
//! README §0 item 10). Checks run in the reference PostgreSQL order; where it
//! matters, the order is written out on the error enums.
//!
//! The pure rules shared by every implementation (current role, who may grant
//! what, what a realm's maintenance state allows) are free functions here, so
//! the memory and PostgreSQL stores cannot drift apart.
//!
//! Nothing here publishes events: the domain command functions do, after the
//! operation succeeded (PostgreSQL delivers `NOTIFY` on commit only).

use std::collections::{BTreeMap, HashSet};

use async_trait::async_trait;
use bytes::Bytes;
use parsec_protocol::cmds::authenticated::{
    BlockCreate, RealmStartReencryptionMaintenance, ReencryptionBatchEntry, VlobCreate, VlobRead, VlobUpdate,
};
use parsec_protocol::types::*;

use super::Internal;
use crate::blockstore::{BlockStore, BlockStoreError};
use crate::grouping::Replies;

// ------------------------------------------------------------------ rules

/// Roles that may write vlobs and blocks.
pub const WRITE_ROLES: [RealmRole; 3] = [RealmRole::Owner, RealmRole::Manager, RealmRole::Contributor];

/// Any current role reads (vlob read/poll/list, block read, realm status, stats, certificates).
pub fn can_read(role: Option<RealmRole>) -> bool {
    role.is_some()
}

/// OWNER, MANAGER and CONTRIBUTOR write data.
pub fn can_write(role: Option<RealmRole>) -> bool {
    role.is_some_and(|r| WRITE_ROLES.contains(&r))
}

/// Only an OWNER runs re-encryption maintenance.
pub fn can_maintain(role: Option<RealmRole>) -> bool {
    role == Some(RealmRole::Owner)
}

/// Whether `author` may give `new` to a user whose current role is
/// `existing` (commands.md §8.5 step 11): touching an OWNER or MANAGER role,
/// either as the old or the new role, needs an OWNER; anything else needs an
/// OWNER or a MANAGER.
pub fn may_grant(author: Option<RealmRole>, existing: Option<RealmRole>, new: Option<RealmRole>) -> bool {
    let is_management = |r: Option<RealmRole>| matches!(r, Some(RealmRole::Owner | RealmRole::Manager));
    if is_management(existing) || is_management(new) {
        author == Some(RealmRole::Owner)
    } else {
        is_management(author)
    }
}

/// A role without write access must come strictly after the user's last vlob
/// write (commands.md §8.5 step 14).
pub fn removes_write(new: Option<RealmRole>) -> bool {
    matches!(new, None | Some(RealmRole::Reader))
}

/// A role without management rights must come strictly after the last role
/// change the user made (commands.md §8.5 step 15).
pub fn removes_management(new: Option<RealmRole>) -> bool {
    matches!(new, None | Some(RealmRole::Reader | RealmRole::Contributor))
}

/// The entry deciding a user's current role: the certificate with the
/// greatest timestamp (commands.md §0.5). Among equal timestamps (which
/// `realm_update_roles` prevents) the last stored wins.
pub fn last_role_of<'a>(roles: &'a [RealmGrantedRole], user: &UserId) -> Option<&'a RealmGrantedRole> {
    roles
        .iter()
        .filter(|r| &r.user_id == user)
        .reduce(|best, r| if r.granted_on >= best.granted_on { r } else { best })
}

/// What an operation does to a realm's data, for [`check_realm_state`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OperationKind {
    DataRead,
    DataWrite,
    Maintenance,
}

/// Why a realm's maintenance state or encryption revision refuses an operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RealmStateError {
    InMaintenance,
    NotInMaintenance,
    BadEncryptionRevision,
}

/// Whether a client-sent encryption revision (or version) names `actual`.
pub fn same_revision(requested: i64, actual: u64) -> bool {
    u64::try_from(requested).is_ok_and(|r| r == actual)
}

/// The reference's realm check (PG `vlob_queries/utils.py::_check_realm`,
/// commands.md §9.1). During a re-encryption, reads go to the previous
/// revision: the new one is being filled. `encryption_revision` is `None`
/// for operations that do not name one (poll, list versions).
pub fn check_realm_state(
    status: &RealmStatus,
    kind: OperationKind,
    encryption_revision: Option<i64>,
) -> Result<(), RealmStateError> {
    let current = status.encryption_revision;
    let in_maintenance = status.maintenance.is_some();
    let in_reencryption = status
        .maintenance
        .as_ref()
        .is_some_and(|m| m.kind == MaintenanceType::Reencryption);
    if kind == OperationKind::DataRead && in_reencryption {
        return match encryption_revision {
            Some(e) if same_revision(e, current) => Err(RealmStateError::InMaintenance),
            Some(e) if !same_revision(e, current.saturating_sub(1)) => Err(RealmStateError::BadEncryptionRevision),
            _ => Ok(()),
        };
    }
    if kind != OperationKind::Maintenance && in_maintenance {
        return Err(RealmStateError::InMaintenance);
    }
    if kind == OperationKind::Maintenance && !in_maintenance {
        return Err(RealmStateError::NotInMaintenance);
    }
    match encryption_revision {
        Some(e) if !same_revision(e, current) => Err(RealmStateError::BadEncryptionRevision),
        _ => Ok(()),
    }
}

// ------------------------------------------------------------------ realms

/// One role certificate as stored: the signed bytes as received, and what
/// they say. `granted_on` is the certificate's timestamp.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RealmGrantedRole {
    pub realm_id: Uuid,
    pub user_id: UserId,
    /// `None`: access removed.
    pub role: Option<RealmRole>,
    pub certificate: Vec<u8>,
    pub granted_by: DeviceId,
    pub granted_on: DateTime,
}

/// A realm under maintenance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RealmMaintenance {
    pub kind: MaintenanceType,
    pub started_by: DeviceId,
    /// The request's timestamp (ballpark-checked).
    pub started_on: DateTime,
}

/// `realm_status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RealmStatus {
    /// Starts at 1; +1 when a re-encryption starts.
    pub encryption_revision: u64,
    pub maintenance: Option<RealmMaintenance>,
}

/// `realm_stats`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RealmStats {
    /// Sum of the realm's block sizes.
    pub blocks_size: u64,
    /// Sum of the sizes of every vlob version written (re-encrypted copies excluded).
    pub vlobs_size: u64,
}

/// A message appended to a user's inbox, for its `message.received` event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveredMessage {
    pub recipient: UserId,
    /// 1-based position in the recipient's inbox.
    pub index: u64,
}

/// `realm_create` outcomes beyond the certificate checks.
#[derive(Debug, thiserror::Error)]
pub enum RealmCreateError {
    #[error("realm already exists")]
    AlreadyExists,
    #[error(transparent)]
    Internal(#[from] Internal),
}

/// Outcomes of the realm reads (`realm_status`, `realm_stats`,
/// `realm_get_role_certificates`): realm missing, then requester's role.
#[derive(Debug, thiserror::Error)]
pub enum RealmReadError {
    #[error("realm not found")]
    NotFound,
    #[error("requester has no role in the realm")]
    NotAllowed,
    #[error(transparent)]
    Internal(#[from] Internal),
}

/// `realm_update_roles` outcomes, in check order (commands.md §8.5 steps 6–15).
#[derive(Debug, thiserror::Error)]
pub enum RealmUpdateRolesError {
    #[error("target user not found")]
    UserNotFound,
    #[error("OUTSIDER cannot be MANAGER or OWNER")]
    IncompatibleProfile,
    #[error("target user is revoked")]
    UserRevoked,
    #[error("realm not found")]
    RealmNotFound,
    #[error("realm in maintenance")]
    InMaintenance,
    #[error("author may not grant this role")]
    NotAllowed,
    #[error("role already granted")]
    AlreadyGranted,
    #[error("timestamp must be greater than {0}")]
    RequireGreaterTimestamp(DateTime),
    #[error(transparent)]
    Internal(#[from] Internal),
}

/// `realm_start_reencryption_maintenance` outcomes, in check order (§8.6).
#[derive(Debug, thiserror::Error)]
pub enum RealmStartReencryptionError {
    #[error("realm not found")]
    RealmNotFound,
    #[error("realm already in maintenance")]
    InMaintenance,
    #[error("encryption revision is not current + 1")]
    BadEncryptionRevision,
    #[error("requester is not OWNER")]
    NotAllowed,
    #[error("message recipients differ from the realm participants")]
    ParticipantsMismatch,
    #[error(transparent)]
    Internal(#[from] Internal),
}

/// `realm_finish_reencryption_maintenance` outcomes, in check order (§8.7).
#[derive(Debug, thiserror::Error)]
pub enum RealmFinishReencryptionError {
    #[error("realm not found")]
    RealmNotFound,
    #[error("requester is not OWNER")]
    NotAllowed,
    #[error("realm not in maintenance")]
    NotInMaintenance,
    #[error("encryption revision is not the current one")]
    BadEncryptionRevision,
    #[error("some vlob versions are not re-encrypted yet")]
    ReencryptionNotOver,
    #[error(transparent)]
    Internal(#[from] Internal),
}

/// Realms: creation, roles, maintenance, and the reads gated by a role.
#[async_trait]
pub trait RealmBackend: Send + Sync {
    /// Creates the realm with its self-signed OWNER role (revision 1, no maintenance).
    async fn create(&self, org: &OrganizationId, role: RealmGrantedRole) -> Result<(), RealmCreateError>;
    async fn get_status(
        &self,
        org: &OrganizationId,
        user: &UserId,
        realm_id: Uuid,
    ) -> Result<RealmStatus, RealmReadError>;
    async fn get_stats(
        &self,
        org: &OrganizationId,
        user: &UserId,
        realm_id: Uuid,
    ) -> Result<RealmStats, RealmReadError>;
    /// Every role certificate of the realm, by certificate timestamp.
    async fn get_role_certificates(
        &self,
        org: &OrganizationId,
        user: &UserId,
        realm_id: Uuid,
    ) -> Result<Vec<Vec<u8>>, RealmReadError>;
    /// Stores a role change and, when `recipient_message` is non-empty, the
    /// message to the target user (returned for its event).
    async fn update_roles(
        &self,
        org: &OrganizationId,
        role: RealmGrantedRole,
        recipient_message: Option<Vec<u8>>,
    ) -> Result<Option<DeliveredMessage>, RealmUpdateRolesError>;
    /// Bumps the encryption revision, enters REENCRYPTION maintenance and
    /// delivers one message per participant. `now` decides who is revoked.
    async fn start_reencryption_maintenance(
        &self,
        org: &OrganizationId,
        author: &DeviceId,
        req: &RealmStartReencryptionMaintenance,
        now: DateTime,
    ) -> Result<Vec<DeliveredMessage>, RealmStartReencryptionError>;
    /// Leaves maintenance once every vlob version exists at the new revision.
    /// Returns that revision.
    async fn finish_reencryption_maintenance(
        &self,
        org: &OrganizationId,
        author: &DeviceId,
        realm_id: Uuid,
        encryption_revision: i64,
        now: DateTime,
    ) -> Result<u64, RealmFinishReencryptionError>;
    /// Realms where the user's current role is not nil (`events_subscribe`).
    async fn get_realms_for_user(&self, org: &OrganizationId, user: &UserId) -> Result<HashSet<Uuid>, Internal>;
}

// ------------------------------------------------------------------ vlobs

/// One version of a vlob, as `vlob_read` returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VlobVersionRead {
    pub version: u64,
    pub blob: Vec<u8>,
    /// The device that wrote this version.
    pub author: DeviceId,
    /// The writer's declared timestamp.
    pub timestamp: DateTime,
    /// Timestamp of the latest role certificate of the writer's user in the realm.
    pub author_last_role_granted_on: Option<DateTime>,
}

/// `vlob_poll_changes`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VlobChanges {
    /// Checkpoint of the last change returned, or the requested one echoed
    /// back when nothing changed (PG behaviour, commands.md §9.5).
    pub current_checkpoint: i64,
    /// Vlob id → version of its latest change after the requested checkpoint.
    pub changes: BTreeMap<Uuid, u64>,
}

/// `vlob_create` outcomes, in check order (commands.md §9.2).
#[derive(Debug, thiserror::Error)]
pub enum VlobCreateError {
    #[error("realm not found")]
    RealmNotFound,
    #[error("realm in maintenance")]
    InMaintenance,
    #[error("bad encryption revision")]
    BadEncryptionRevision,
    #[error("requester may not write in the realm")]
    NotAllowed,
    #[error("timestamp must be greater than {0}")]
    RequireGreaterTimestamp(DateTime),
    #[error("vlob already exists")]
    AlreadyExists,
    #[error(transparent)]
    Internal(#[from] Internal),
}

/// `vlob_read` outcomes, in check order (commands.md §9.3).
#[derive(Debug, thiserror::Error)]
pub enum VlobReadError {
    #[error("vlob not found")]
    VlobNotFound,
    #[error("realm not found")]
    RealmNotFound,
    #[error("realm in maintenance")]
    InMaintenance,
    #[error("bad encryption revision")]
    BadEncryptionRevision,
    #[error("requester has no role in the realm")]
    NotAllowed,
    #[error("no such version")]
    BadVersion,
    #[error(transparent)]
    Internal(#[from] Internal),
}

/// `vlob_update` outcomes, in check order (commands.md §9.4).
#[derive(Debug, thiserror::Error)]
pub enum VlobUpdateError {
    #[error("vlob not found")]
    VlobNotFound,
    #[error("realm not found")]
    RealmNotFound,
    #[error("realm in maintenance")]
    InMaintenance,
    #[error("bad encryption revision")]
    BadEncryptionRevision,
    #[error("requester may not write in the realm")]
    NotAllowed,
    /// After the role (strictly greater) or the previous version (greater or equal).
    #[error("timestamp must be greater than {0}")]
    RequireGreaterTimestamp(DateTime),
    #[error("version is not latest + 1")]
    BadVersion,
    #[error(transparent)]
    Internal(#[from] Internal),
}

/// `vlob_poll_changes` outcomes.
#[derive(Debug, thiserror::Error)]
pub enum VlobPollChangesError {
    #[error("realm not found")]
    RealmNotFound,
    #[error("realm in maintenance")]
    InMaintenance,
    #[error("requester has no role in the realm")]
    NotAllowed,
    #[error(transparent)]
    Internal(#[from] Internal),
}

/// `vlob_list_versions` outcomes.
#[derive(Debug, thiserror::Error)]
pub enum VlobListVersionsError {
    #[error("vlob not found")]
    VlobNotFound,
    #[error("realm not found")]
    RealmNotFound,
    #[error("realm in maintenance")]
    InMaintenance,
    #[error("requester has no role in the realm")]
    NotAllowed,
    #[error(transparent)]
    Internal(#[from] Internal),
}

/// Outcomes of the two re-encryption batch commands (commands.md §9.7, §9.8).
#[derive(Debug, thiserror::Error)]
pub enum VlobMaintenanceError {
    #[error("realm not found")]
    RealmNotFound,
    #[error("realm not in maintenance")]
    NotInMaintenance,
    #[error("bad encryption revision")]
    BadEncryptionRevision,
    #[error("requester is not OWNER")]
    NotAllowed,
    #[error(transparent)]
    Internal(#[from] Internal),
}

/// One vlob write of a batch (see [`VlobBackend::write_batch`]).
#[derive(Debug)]
pub enum VlobWrite {
    Create { author: DeviceId, req: VlobCreate },
    Update { author: DeviceId, req: VlobUpdate },
}

impl VlobWrite {
    /// The vlob the write touches.
    pub fn vlob_id(&self) -> Uuid {
        match self {
            VlobWrite::Create { req, .. } => req.vlob_id,
            VlobWrite::Update { req, .. } => req.vlob_id,
        }
    }
}

/// The outcome of one [`VlobWrite`], as `create` or `update` would answer it.
#[derive(Debug)]
pub enum VlobWritten {
    Create(Result<u64, VlobCreateError>),
    Update(Result<(Uuid, u64), VlobUpdateError>),
}

/// Runs `writes` one after the other with `create` / `update`.
pub async fn write_one_by_one<B: VlobBackend + ?Sized>(
    backend: &B,
    org: &OrganizationId,
    writes: &[VlobWrite],
) -> Vec<VlobWritten> {
    let mut outcomes = Vec::with_capacity(writes.len());
    for write in writes {
        outcomes.push(match write {
            VlobWrite::Create { author, req } => VlobWritten::Create(backend.create(org, author, req).await),
            VlobWrite::Update { author, req } => VlobWritten::Update(backend.update(org, author, req).await),
        });
    }
    outcomes
}

/// Whether no two writes of `writes` touch the same vlob.
pub fn distinct_vlobs(writes: &[VlobWrite]) -> bool {
    let mut seen = HashSet::with_capacity(writes.len());
    writes.iter().all(|w| seen.insert(w.vlob_id()))
}

/// One `vlob_read` of a group (see [`VlobBackend::read_group`]).
#[derive(Debug)]
pub struct VlobToRead {
    pub org: OrganizationId,
    pub user: UserId,
    pub req: VlobRead,
}

/// Vlobs: versions, the realm change log, and re-encryption batches.
#[async_trait]
pub trait VlobBackend: Send + Sync {
    /// Runs `writes` of one organization with the outcomes they would have
    /// one after the other in this order (one outcome per write, in order).
    /// A store may commit them together; the default runs them one by one.
    async fn write_batch(&self, org: &OrganizationId, writes: &[VlobWrite]) -> Vec<VlobWritten> {
        write_one_by_one(self, org, writes).await
    }
    /// Writes version 1; returns the new checkpoint.
    async fn create(&self, org: &OrganizationId, author: &DeviceId, req: &VlobCreate) -> Result<u64, VlobCreateError>;
    async fn read(&self, org: &OrganizationId, user: &UserId, req: &VlobRead)
    -> Result<VlobVersionRead, VlobReadError>;
    /// Whether concurrent reads are worth gathering into
    /// [`VlobBackend::read_group`] calls (a statement for many reads).
    fn groups_reads(&self) -> bool {
        false
    }
    /// Runs `reads` with the outcomes `read` would give each, in order.
    /// The default runs the reads concurrently.
    async fn read_group(&self, reads: Vec<VlobToRead>) -> Vec<Result<VlobVersionRead, VlobReadError>> {
        let reads = reads.iter().map(|r| self.read(&r.org, &r.user, &r.req));
        futures_util::future::join_all(reads).await
    }
    /// Writes the next version; returns the new checkpoint and the realm (for the event).
    async fn update(
        &self,
        org: &OrganizationId,
        author: &DeviceId,
        req: &VlobUpdate,
    ) -> Result<(Uuid, u64), VlobUpdateError>;
    async fn poll_changes(
        &self,
        org: &OrganizationId,
        user: &UserId,
        realm_id: Uuid,
        last_checkpoint: i64,
    ) -> Result<VlobChanges, VlobPollChangesError>;
    /// Version → (timestamp, author).
    async fn list_versions(
        &self,
        org: &OrganizationId,
        user: &UserId,
        vlob_id: Uuid,
    ) -> Result<BTreeMap<u64, (DateTime, DeviceId)>, VlobListVersionsError>;
    /// Up to `size` versions stored at revision R−1 and not yet at R, with their R−1 blob.
    async fn maintenance_get_reencryption_batch(
        &self,
        org: &OrganizationId,
        user: &UserId,
        realm_id: Uuid,
        encryption_revision: i64,
        size: usize,
    ) -> Result<Vec<ReencryptionBatchEntry>, VlobMaintenanceError>;
    /// Stores re-encrypted versions at revision R (unknown or already saved
    /// ones are ignored); returns (versions at R−1, versions at R).
    async fn maintenance_save_reencryption_batch(
        &self,
        org: &OrganizationId,
        user: &UserId,
        realm_id: Uuid,
        encryption_revision: i64,
        batch: &[ReencryptionBatchEntry],
    ) -> Result<(u64, u64), VlobMaintenanceError>;
}

// ------------------------------------------------------------------ blocks

/// `block_create` outcomes, in check order (commands.md §10.1).
#[derive(Debug, thiserror::Error)]
pub enum BlockCreateError {
    #[error("realm not found")]
    RealmNotFound,
    #[error("realm in maintenance")]
    InMaintenance,
    #[error("requester may not write in the realm")]
    NotAllowed,
    #[error("block already exists")]
    AlreadyExists,
    #[error(transparent)]
    Store(BlockStoreError),
    #[error(transparent)]
    Internal(#[from] Internal),
}

/// `block_read` outcomes, in check order (commands.md §10.2).
#[derive(Debug, thiserror::Error)]
pub enum BlockReadError {
    #[error("block not found")]
    NotFound,
    #[error("realm in maintenance")]
    InMaintenance,
    #[error("requester has no role in the realm")]
    NotAllowed,
    #[error(transparent)]
    Store(BlockStoreError),
    #[error(transparent)]
    Internal(#[from] Internal),
}

/// One `block_create` of a group (see [`BlockBackend::create_group`]).
#[derive(Debug)]
pub struct NewBlock {
    pub org: OrganizationId,
    pub author: DeviceId,
    pub req: BlockCreate,
}

/// One `block_read` of a group (see [`BlockBackend::read_group`]).
#[derive(Debug)]
pub struct BlockToRead {
    pub org: OrganizationId,
    pub user: UserId,
    pub block_id: Uuid,
}

/// Runs `blocks` concurrently with `create` (outcomes in order).
pub async fn create_each<B: BlockBackend + ?Sized>(
    backend: &B,
    blocks: Vec<NewBlock>,
    now: DateTime,
    store: &dyn BlockStore,
) -> Vec<Result<(), BlockCreateError>> {
    let creates = blocks
        .into_iter()
        .map(|b| async move { backend.create(&b.org, &b.author, b.req, now, store).await });
    futures_util::future::join_all(creates).await
}

/// Runs `blocks` concurrently with `read` (outcomes in order).
pub async fn read_each<B: BlockBackend + ?Sized>(
    backend: &B,
    blocks: &[BlockToRead],
    store: &dyn BlockStore,
) -> Vec<Result<Bytes, BlockReadError>> {
    let reads = blocks
        .iter()
        .map(|b| async move { backend.read(&b.org, &b.user, b.block_id, store).await });
    futures_util::future::join_all(reads).await
}

/// Whether no two of `blocks` have one organization and block id.
pub fn distinct_blocks(blocks: &[NewBlock]) -> bool {
    let mut seen = HashSet::with_capacity(blocks.len());
    blocks.iter().all(|b| seen.insert((&b.org, b.req.block_id)))
}

/// Block metadata and access checks; the bytes go to a [`BlockStore`].
#[async_trait]
pub trait BlockBackend: Send + Sync {
    /// Whether [`create_group`](Self::create_group) does better than the
    /// creates one by one with `store`: callers then gather concurrent
    /// creates into groups.
    fn groups_creates(&self, _store: &dyn BlockStore) -> bool {
        false
    }
    /// Creates `blocks` (no two with one organization and block id) with
    /// the outcomes `create` would give each, in order; `created_on` = `now`.
    /// The default runs the creates concurrently.
    async fn create_group(
        &self,
        blocks: Vec<NewBlock>,
        now: DateTime,
        store: &dyn BlockStore,
    ) -> Vec<Result<(), BlockCreateError>> {
        create_each(self, blocks, now, store).await
    }
    /// Checks the realm and the requester's role, writes the bytes to `store`,
    /// then records the metadata (`created_on` = `now`). The store write sits
    /// between the checks and the insert, as in the reference, so a failed
    /// store write records nothing and a concurrent duplicate is refused.
    /// (A PostgreSQL backend whose store is its own database does all three
    /// in one statement, with the same outcomes.)
    async fn create(
        &self,
        org: &OrganizationId,
        author: &DeviceId,
        req: BlockCreate,
        now: DateTime,
        store: &dyn BlockStore,
    ) -> Result<(), BlockCreateError>;
    /// Whether [`read_group`](Self::read_group) does better than the reads
    /// one by one with `store` (see [`groups_creates`](Self::groups_creates)).
    fn groups_reads(&self, _store: &dyn BlockStore) -> bool {
        false
    }
    /// Reads `blocks`, handing `replies` the outcome `read` would give each
    /// (the `i`-th block's to request `i`), each as soon as it is known.
    /// The default runs the reads concurrently.
    async fn read_group(
        &self,
        blocks: Vec<BlockToRead>,
        store: &dyn BlockStore,
        replies: &mut Replies<Result<Bytes, BlockReadError>>,
    ) {
        replies.send_all(read_each(self, &blocks, store).await)
    }
    /// Checks that the block exists and that the requester may read it.
    async fn check_read(&self, org: &OrganizationId, user: &UserId, block_id: Uuid) -> Result<(), BlockReadError>;
    /// The block's bytes from `store`, if the requester may read them.
    async fn read(
        &self,
        org: &OrganizationId,
        user: &UserId,
        block_id: Uuid,
        store: &dyn BlockStore,
    ) -> Result<Bytes, BlockReadError> {
        check_and_read(self, org, user, block_id, store).await
    }
}

/// The rules of `block_read` (commands.md §10.2) once the block and its
/// realm are found: the realm's maintenance, then the requester's role.
pub fn check_block_read(realm: &RealmStatus, role: Option<RealmRole>) -> Result<(), BlockReadError> {
    // Reads go on during a re-encryption: blocks are not re-encrypted.
    if realm
        .maintenance
        .as_ref()
        .is_some_and(|m| m.kind != MaintenanceType::Reencryption)
    {
        return Err(BlockReadError::InMaintenance);
    }
    if !can_read(role) {
        return Err(BlockReadError::NotAllowed);
    }
    Ok(())
}

/// [`BlockBackend::read`] for any store: the checks and the store read at
/// once (the latency of one, not of both). Blocks are never modified nor
/// deleted once their metadata exists, so a read outside the checks'
/// transaction, as the reference does it, returns the same bytes. A refusal
/// wins over whatever the store answered, and its bytes are dropped.
pub async fn check_and_read<B: BlockBackend + ?Sized>(
    backend: &B,
    org: &OrganizationId,
    user: &UserId,
    block_id: Uuid,
    store: &dyn BlockStore,
) -> Result<Bytes, BlockReadError> {
    let (checked, read) =
        futures_util::future::join(backend.check_read(org, user, block_id), store.read(org, block_id)).await;
    checked?;
    read.map_err(BlockReadError::Store)
}

// ------------------------------------------------------------------ messages

/// A message in a user's inbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboxMessage {
    pub sender: DeviceId,
    pub timestamp: DateTime,
    pub body: Vec<u8>,
}

/// Per-user inboxes; messages are written by the realm operations.
#[async_trait]
pub trait MessageBackend: Send + Sync {
    /// The user's messages in arrival order, skipping the first `offset`.
    async fn get(&self, org: &OrganizationId, recipient: &UserId, offset: u64) -> Result<Vec<InboxMessage>, Internal>;
}

#[cfg(test)]
mod tests {
    use super::*;
    use RealmRole::*;

    const ALL: [Option<RealmRole>; 5] = [None, Some(Owner), Some(Manager), Some(Contributor), Some(Reader)];

    #[test]
    fn access_levels() {
        assert_eq!(ALL.map(can_read), [false, true, true, true, true]);
        assert_eq!(ALL.map(can_write), [false, true, true, true, false]);
        assert_eq!(ALL.map(can_maintain), [false, true, false, false, false]);
    }

    #[test]
    fn who_may_grant() {
        // Managers handle contributors and readers only.
        assert!(may_grant(Some(Manager), None, Some(Reader)));
        assert!(may_grant(Some(Manager), Some(Contributor), None));
        assert!(!may_grant(Some(Manager), None, Some(Manager)));
        assert!(!may_grant(Some(Manager), Some(Manager), Some(Reader)));
        assert!(!may_grant(Some(Manager), Some(Owner), None));
        // Owners handle everything.
        for existing in ALL {
            for new in ALL {
                assert!(may_grant(Some(Owner), existing, new));
            }
        }
        // Nobody else does anything.
        for author in [None, Some(Contributor), Some(Reader)] {
            for existing in ALL {
                for new in ALL {
                    assert!(!may_grant(author, existing, new));
                }
            }
        }
    }

    #[test]
    fn timestamp_checks_on_downgrade() {
        assert_eq!(ALL.map(removes_write), [true, false, false, false, true]);
        assert_eq!(ALL.map(removes_management), [true, false, false, true, true]);
    }

    fn role(user: &str, at: i64, role: Option<RealmRole>) -> RealmGrantedRole {
        RealmGrantedRole {
            realm_id: Uuid::nil(),
            user_id: UserId::parse(user).unwrap(),
            role,
            certificate: vec![],
            granted_by: DeviceId::parse("alice@dev").unwrap(),
            granted_on: DateTime::from_micros(at),
        }
    }

    #[test]
    fn current_role_is_the_latest_certificate() {
        let bob = UserId::parse("bob").unwrap();
        let roles = [
            role("bob", 3, None),
            role("alice", 9, Some(Owner)),
            role("bob", 5, Some(Reader)),
            role("bob", 1, Some(Owner)),
        ];
        assert_eq!(last_role_of(&roles, &bob).unwrap().role, Some(Reader));
        assert!(last_role_of(&roles, &UserId::parse("carol").unwrap()).is_none());
    }

    fn status(revision: u64, kind: Option<MaintenanceType>) -> RealmStatus {
        RealmStatus {
            encryption_revision: revision,
            maintenance: kind.map(|kind| RealmMaintenance {
                kind,
                started_by: DeviceId::parse("alice@dev").unwrap(),
                started_on: DateTime::from_micros(0),
            }),
        }
    }

    #[test]
    fn realm_state_rules() {
        use OperationKind::*;
        use RealmStateError::*;
        let idle = status(2, None);
        assert_eq!(check_realm_state(&idle, DataRead, Some(2)), Ok(()));
        assert_eq!(check_realm_state(&idle, DataRead, Some(1)), Err(BadEncryptionRevision));
        assert_eq!(check_realm_state(&idle, DataWrite, Some(3)), Err(BadEncryptionRevision));
        assert_eq!(check_realm_state(&idle, DataWrite, None), Ok(()));
        assert_eq!(check_realm_state(&idle, Maintenance, Some(2)), Err(NotInMaintenance));

        let reencrypting = status(3, Some(MaintenanceType::Reencryption));
        // Reads go to the previous revision while the new one is filled.
        assert_eq!(check_realm_state(&reencrypting, DataRead, Some(2)), Ok(()));
        assert_eq!(check_realm_state(&reencrypting, DataRead, None), Ok(()));
        assert_eq!(check_realm_state(&reencrypting, DataRead, Some(3)), Err(InMaintenance));
        assert_eq!(
            check_realm_state(&reencrypting, DataRead, Some(1)),
            Err(BadEncryptionRevision)
        );
        assert_eq!(
            check_realm_state(&reencrypting, DataRead, Some(-1)),
            Err(BadEncryptionRevision)
        );
        assert_eq!(check_realm_state(&reencrypting, DataWrite, Some(3)), Err(InMaintenance));
        assert_eq!(check_realm_state(&reencrypting, Maintenance, Some(3)), Ok(()));
        assert_eq!(
            check_realm_state(&reencrypting, Maintenance, Some(2)),
            Err(BadEncryptionRevision)
        );

        let collecting = status(1, Some(MaintenanceType::GarbageCollection));
        assert_eq!(check_realm_state(&collecting, DataRead, None), Err(InMaintenance));
    }
}
