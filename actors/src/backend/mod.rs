//! Storage seams: one trait per domain, implemented by the in-memory store
//! (`MOCKED`, [`memory`]) and, later, by PostgreSQL.
//!
//! Each method is one atomic operation: it checks the invariants it guards
//! and writes in one step (one transaction on PostgreSQL, one lock on the
//! memory store), so that two server instances on one database behave as one.
//! Outcomes are typed per operation; `Internal` carries storage failures.

pub mod data;
mod human_find;
pub mod invite;
pub mod memory;
pub mod postgres;

pub use data::*;
pub use invite::*;

use async_trait::async_trait;
use parsec_protocol::types::*;

/// Storage failure (database down, bug): logged by the dispatcher, never shown to clients.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct Internal(#[from] pub anyhow::Error);

/// An organization as the admin API and the handshake see it.
#[derive(Debug, Clone)]
pub struct Organization {
    pub id: OrganizationId,
    pub bootstrap_token: String,
    pub root_verify_key: Option<Key32>,
    pub is_expired: bool,
    pub active_users_limit: Option<u64>,
    pub user_profile_outsider_allowed: bool,
}

impl Organization {
    pub fn is_bootstrapped(&self) -> bool {
        self.root_verify_key.is_some()
    }
}

/// Admin PATCH: `None` leaves a setting unchanged.
#[derive(Debug, Clone, Default)]
pub struct OrganizationPatch {
    pub is_expired: Option<bool>,
    pub user_profile_outsider_allowed: Option<bool>,
    /// `Some(None)`: unlimited.
    pub active_users_limit: Option<Option<u64>>,
}

/// Per-profile user counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProfileCount {
    pub profile: UserProfile,
    pub active: u64,
    pub revoked: u64,
}

/// `organization_stats` and the admin stats route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrganizationStats {
    pub data_size: u64,
    pub metadata_size: u64,
    pub realms: u64,
    pub users: u64,
    pub active_users: u64,
    pub users_per_profile_detail: Vec<ProfileCount>,
}

/// A user with its certificates, stored byte-for-byte as received.
#[derive(Debug, Clone)]
pub struct User {
    pub user_id: UserId,
    pub human_handle: Option<HumanHandle>,
    pub profile: UserProfile,
    pub user_certificate: Vec<u8>,
    pub redacted_user_certificate: Vec<u8>,
    /// `None`: certified by the root key (the bootstrap user).
    pub user_certifier: Option<DeviceId>,
    pub created_on: DateTime,
    pub revoked_on: Option<DateTime>,
    pub revoked_user_certificate: Option<Vec<u8>>,
    pub revoked_user_certifier: Option<DeviceId>,
}

/// Whether a user revoked on `revoked_on` is revoked at `now`: a revocation
/// takes effect at its certificate's timestamp.
pub fn revoked_at(revoked_on: Option<DateTime>, now: DateTime) -> bool {
    revoked_on.is_some_and(|r| r <= now)
}

impl User {
    /// Revoked at `now` (see [`revoked_at`]).
    pub fn is_revoked(&self, now: DateTime) -> bool {
        revoked_at(self.revoked_on, now)
    }
}

/// A device with its certificates.
#[derive(Debug, Clone)]
pub struct Device {
    pub device_id: DeviceId,
    pub device_label: Option<DeviceLabel>,
    pub device_certificate: Vec<u8>,
    pub redacted_device_certificate: Vec<u8>,
    pub device_certifier: Option<DeviceId>,
    pub created_on: DateTime,
    pub verify_key: Key32,
}

/// What bootstrap writes once the certificates are checked.
#[derive(Debug, Clone)]
pub struct BootstrapData {
    pub bootstrap_token: String,
    pub root_verify_key: Key32,
    pub user: User,
    pub first_device: Device,
    pub now: DateTime,
}

#[derive(Debug, thiserror::Error)]
pub enum OrganizationCreateError {
    #[error("organization already exists and is bootstrapped")]
    AlreadyExists,
    #[error(transparent)]
    Internal(#[from] Internal),
}

#[derive(Debug, thiserror::Error)]
pub enum OrganizationLookupError {
    #[error("organization not found")]
    NotFound,
    #[error(transparent)]
    Internal(#[from] Internal),
}

#[derive(Debug, thiserror::Error)]
pub enum OrganizationBootstrapError {
    /// Unknown organization, or wrong bootstrap token (the reference does not tell them apart).
    #[error("organization not found or bad bootstrap token")]
    NotFound,
    #[error("organization already bootstrapped")]
    AlreadyBootstrapped,
    #[error("active users limit reached")]
    ActiveUsersLimitReached,
    #[error(transparent)]
    Internal(#[from] Internal),
}

/// Organizations: creation, settings, bootstrap, stats.
#[async_trait]
pub trait OrganizationBackend: Send + Sync {
    /// Creates, or replaces a not-yet-bootstrapped organization (new token, new settings).
    async fn create(
        &self,
        id: &OrganizationId,
        bootstrap_token: &str,
        active_users_limit: Option<u64>,
        user_profile_outsider_allowed: bool,
        now: DateTime,
    ) -> Result<(), OrganizationCreateError>;
    async fn get(&self, id: &OrganizationId) -> Result<Organization, OrganizationLookupError>;
    async fn update(&self, id: &OrganizationId, patch: &OrganizationPatch) -> Result<(), OrganizationLookupError>;
    async fn stats(&self, id: &OrganizationId) -> Result<OrganizationStats, OrganizationLookupError>;
    /// Atomically checks the token and the bootstrap state, then creates the first user.
    async fn bootstrap(&self, id: &OrganizationId, data: BootstrapData) -> Result<(), OrganizationBootstrapError>;
    /// Readiness probe: the store answers.
    async fn ping(&self) -> Result<(), Internal> {
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum UserLookupError {
    #[error("user or device not found")]
    NotFound,
    #[error(transparent)]
    Internal(#[from] Internal),
}

/// A user, its devices, and the certifiers' certificates needed to verify them.
#[derive(Debug, Clone)]
pub struct UserWithTrustchain {
    pub user: User,
    pub devices: Vec<Device>,
    pub trustchain_users: Vec<User>,
    pub trustchain_devices: Vec<Device>,
    pub trustchain_revoked_users: Vec<User>,
}

/// What an authenticated handshake checks, found in one lookup: the
/// organization's state, the device's key and its user's identity.
#[derive(Debug, Clone)]
pub struct HandshakeIdentity {
    /// `None`: the organization is not bootstrapped.
    pub root_verify_key: Option<Key32>,
    pub organization_expired: bool,
    pub user_id: UserId,
    pub human_handle: Option<HumanHandle>,
    pub profile: UserProfile,
    pub revoked_on: Option<DateTime>,
    pub device_id: DeviceId,
    pub device_label: Option<DeviceLabel>,
    pub verify_key: Key32,
}

impl HandshakeIdentity {
    /// Revoked at `now` (see [`revoked_at`]).
    pub fn is_revoked(&self, now: DateTime) -> bool {
        revoked_at(self.revoked_on, now)
    }
}

/// Users and devices.
#[async_trait]
pub trait UserBackend: Send + Sync {
    /// For the authenticated handshake (`NotFound`: no such organization,
    /// device or user).
    async fn handshake_identity(
        &self,
        org: &OrganizationId,
        device_id: &DeviceId,
    ) -> Result<HandshakeIdentity, UserLookupError>;
    /// Whether concurrent handshake lookups are worth gathering into
    /// [`UserBackend::handshake_identities`] calls (a statement for many).
    fn groups_identity_lookups(&self) -> bool {
        false
    }
    /// `handshake_identity` of each (organization, device), in order. The
    /// default runs the lookups concurrently.
    async fn handshake_identities(
        &self,
        lookups: Vec<(OrganizationId, DeviceId)>,
    ) -> Vec<Result<HandshakeIdentity, UserLookupError>> {
        let each = lookups.iter().map(|(org, device)| self.handshake_identity(org, device));
        futures_util::future::join_all(each).await
    }
    /// For `user_get`: the user, its devices, and its certification trustchain.
    async fn get_user_with_trustchain(
        &self,
        org: &OrganizationId,
        user_id: &UserId,
    ) -> Result<UserWithTrustchain, UserLookupError>;
    /// `user_create`: under the organization's user/device lock, checks in
    /// the PG order (active users limit, user id, human e-mail) then inserts
    /// the user and its first device.
    async fn create_user(
        &self,
        org: &OrganizationId,
        user: User,
        first_device: Device,
        now: DateTime,
    ) -> Result<(), UserCreateError>;
    /// `device_create`: a new device of an existing user.
    async fn create_device(&self, org: &OrganizationId, device: Device) -> Result<(), DeviceCreateError>;
    /// `user_revoke`: sets `revoked_on` (the certificate's timestamp, possibly
    /// in the future) and stores the certificate.
    async fn revoke_user(&self, org: &OrganizationId, revocation: UserRevocation) -> Result<(), UserRevokeError>;
    /// `human_find`, with PG's filters, order and pagination (see [`HumanFindQuery`]).
    async fn find_humans(&self, org: &OrganizationId, query: &HumanFindQuery) -> Result<HumanFindPage, Internal>;
}

/// Why a user could not be created (`user_create`, `pki_enrollment_accept`).
/// Variants are in the order PG checks them.
#[derive(Debug, thiserror::Error)]
pub enum UserCreateError {
    /// Users without a revocation ≥ the organization's `active_users_limit`.
    #[error("active users limit reached")]
    ActiveUsersLimitReached,
    /// The user id is taken (revoked users included).
    #[error("User `{0}` already exists")]
    UserAlreadyExists(UserId),
    /// The e-mail belongs to a user not revoked by now.
    #[error("Human handle `{}` already corresponds to a non-revoked user", .0.to_address())]
    HumanAlreadyExists(HumanHandle),
    #[error(transparent)]
    Internal(#[from] Internal),
}

#[derive(Debug, thiserror::Error)]
pub enum DeviceCreateError {
    #[error("Device `{0}` already exists")]
    AlreadyExists(DeviceId),
    #[error(transparent)]
    Internal(#[from] Internal),
}

#[derive(Debug, thiserror::Error)]
pub enum UserRevokeError {
    #[error("user not found")]
    NotFound,
    /// Already carries a revocation, even one taking effect later.
    #[error("User `{0}` already revoked")]
    AlreadyRevoked(UserId),
    #[error(transparent)]
    Internal(#[from] Internal),
}

/// A checked revoked-user certificate.
#[derive(Debug, Clone)]
pub struct UserRevocation {
    pub user_id: UserId,
    /// The certificate's timestamp: the revocation takes effect then.
    pub revoked_on: DateTime,
    pub revoked_user_certificate: Vec<u8>,
    pub revoked_user_certifier: DeviceId,
}

/// `human_find` parameters (commands.md §3.5, PG semantics):
/// - `omit_revoked` drops users revoked by `now`;
/// - `omit_non_human`, or a non-empty `query`, drops users without human handle;
/// - `query` keeps users whose `label || email` contains it, case-insensitively
///   (PG uses a case-insensitive regular expression there; clients send plain
///   text, and a substring never fails on a stray `(`);
/// - order: lowercased label, users without human handle last, then user id;
/// - the label reported and sorted on is the one of the e-mail's first user
///   (PG keeps one `human` row per e-mail, created with the first user);
/// - `total` counts every match, the page is `[(page-1)*per_page, page*per_page)`.
#[derive(Debug, Clone)]
pub struct HumanFindQuery {
    pub query: Option<String>,
    pub omit_revoked: bool,
    pub omit_non_human: bool,
    /// ≥ 1.
    pub page: u64,
    /// ≥ 1.
    pub per_page: u64,
    pub now: DateTime,
}

/// One `human_find` result.
#[derive(Debug, Clone, PartialEq)]
pub struct HumanFindItem {
    pub user_id: UserId,
    pub human_handle: Option<HumanHandle>,
    /// Revoked by the query's `now`.
    pub revoked: bool,
}

/// A page of `human_find` results and the number of matches.
#[derive(Debug, Clone, PartialEq)]
pub struct HumanFindPage {
    pub results: Vec<HumanFindItem>,
    pub total: u64,
}

/// State of a PKI enrollment, with what each state records.
#[derive(Debug, Clone, PartialEq)]
pub enum PkiEnrollmentState {
    Submitted,
    Accepted {
        accepted_on: DateTime,
        accepter_der_x509_certificate: Vec<u8>,
        accept_payload_signature: Vec<u8>,
        accept_payload: Vec<u8>,
        /// The admin's device.
        accepter: DeviceId,
        /// The first device of the user the acceptance created.
        accepted: DeviceId,
    },
    Rejected {
        rejected_on: DateTime,
    },
    Cancelled {
        cancelled_on: DateTime,
    },
}

/// A PKI enrollment request; X.509 material is opaque and kept as received.
#[derive(Debug, Clone, PartialEq)]
pub struct PkiEnrollment {
    pub enrollment_id: Uuid,
    pub submitter_der_x509_certificate: Vec<u8>,
    pub submit_payload_signature: Vec<u8>,
    pub submit_payload: Vec<u8>,
    pub submitted_on: DateTime,
    pub state: PkiEnrollmentState,
}

/// `pki_enrollment_submit`, payload already decoded.
#[derive(Debug, Clone)]
pub struct PkiEnrollmentSubmission {
    pub enrollment_id: Uuid,
    /// Cancel a pending enrollment of the same X.509 certificate.
    pub force: bool,
    pub submitter_der_x509_certificate: Vec<u8>,
    /// Checked against the e-mails of users without revocation when non-empty.
    pub submitter_der_x509_certificate_email: Option<String>,
    pub submit_payload_signature: Vec<u8>,
    pub submit_payload: Vec<u8>,
    pub submitted_on: DateTime,
}

/// What a successful submission changed (for its events).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PkiEnrollmentSubmitted {
    /// A pending enrollment of the same certificate was cancelled (`force`).
    pub cancelled_previous: bool,
}

/// Variants in the order PG checks them.
#[derive(Debug, thiserror::Error)]
pub enum PkiEnrollmentSubmitError {
    #[error("enrollment id already used")]
    IdAlreadyUsed,
    /// The certificate's latest enrollment is pending, submitted at this time.
    #[error("certificate already submitted")]
    AlreadySubmitted(DateTime),
    /// The certificate's latest enrollment created a user still without revocation.
    #[error("certificate already enrolled")]
    AlreadyEnrolled,
    #[error("e-mail already used by a user without revocation")]
    EmailAlreadyUsed,
    #[error(transparent)]
    Internal(#[from] Internal),
}

/// `pki_enrollment_accept`, certificates already checked.
#[derive(Debug, Clone)]
pub struct PkiEnrollmentAcceptance {
    pub enrollment_id: Uuid,
    pub accepter_der_x509_certificate: Vec<u8>,
    pub accept_payload_signature: Vec<u8>,
    pub accept_payload: Vec<u8>,
    pub accepted_on: DateTime,
    pub accepter: DeviceId,
    pub user: User,
    pub first_device: Device,
}

#[derive(Debug, thiserror::Error)]
pub enum PkiEnrollmentLookupError {
    #[error("enrollment not found")]
    NotFound,
    #[error(transparent)]
    Internal(#[from] Internal),
}

#[derive(Debug, thiserror::Error)]
pub enum PkiEnrollmentRejectError {
    #[error("enrollment not found")]
    NotFound,
    #[error("enrollment no longer pending")]
    NoLongerAvailable,
    #[error(transparent)]
    Internal(#[from] Internal),
}

/// Variants in the order PG checks them.
#[derive(Debug, thiserror::Error)]
pub enum PkiEnrollmentAcceptError {
    #[error("enrollment not found")]
    NotFound,
    #[error("enrollment no longer pending")]
    NoLongerAvailable,
    #[error(transparent)]
    CreateUser(UserCreateError),
}

/// PKI enrollments. They share the user/device lock of [`UserBackend`]:
/// submission looks at users, acceptance creates one.
#[async_trait]
pub trait PkiBackend: Send + Sync {
    /// Checks (id, the certificate's latest enrollment, e-mail) and records a
    /// SUBMITTED enrollment, cancelling a pending one if `force`d; nothing is
    /// written when a check fails.
    async fn submit(
        &self,
        org: &OrganizationId,
        submission: PkiEnrollmentSubmission,
    ) -> Result<PkiEnrollmentSubmitted, PkiEnrollmentSubmitError>;
    async fn info(&self, org: &OrganizationId, enrollment_id: Uuid) -> Result<PkiEnrollment, PkiEnrollmentLookupError>;
    /// SUBMITTED enrollments, in submission order.
    async fn list_submitted(&self, org: &OrganizationId) -> Result<Vec<PkiEnrollment>, Internal>;
    async fn reject(
        &self,
        org: &OrganizationId,
        enrollment_id: Uuid,
        rejected_on: DateTime,
    ) -> Result<(), PkiEnrollmentRejectError>;
    /// Creates the user as [`UserBackend::create_user`] does and marks the
    /// enrollment ACCEPTED, atomically.
    async fn accept(
        &self,
        org: &OrganizationId,
        acceptance: PkiEnrollmentAcceptance,
    ) -> Result<(), PkiEnrollmentAcceptError>;
}

/// Everything the server stores, behind one handle per domain.
#[derive(Clone)]
pub struct Backends {
    pub organization: std::sync::Arc<dyn OrganizationBackend>,
    pub user: std::sync::Arc<dyn UserBackend>,
    pub realm: std::sync::Arc<dyn RealmBackend>,
    pub vlob: std::sync::Arc<dyn VlobBackend>,
    pub block: std::sync::Arc<dyn BlockBackend>,
    pub message: std::sync::Arc<dyn MessageBackend>,
    pub invite: std::sync::Arc<dyn InviteBackend>,
    pub pki: std::sync::Arc<dyn PkiBackend>,
    /// Block bytes (`--blockstore`); metadata stays in `block`.
    pub blockstore: std::sync::Arc<dyn crate::blockstore::BlockStore>,
}

impl Backends {
    /// The in-memory store (`--db MOCKED`) with the in-memory block store.
    pub fn memory() -> Self {
        Self::from_memory_store(std::sync::Arc::new(memory::MemoryStore::default()))
    }

    /// Every domain on the given memory store (tests keep a handle on it to
    /// seed users), with the in-memory block store.
    pub fn from_memory_store(store: std::sync::Arc<memory::MemoryStore>) -> Self {
        Self {
            organization: store.clone(),
            user: store.clone(),
            realm: store.clone(),
            vlob: store.clone(),
            block: store.clone(),
            invite: store.clone(),
            pki: store.clone(),
            message: store,
            blockstore: std::sync::Arc::new(crate::blockstore::MemoryBlockStore::default()),
        }
    }
}
