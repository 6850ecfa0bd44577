//! Storage seams: one trait per domain, implemented by the in-memory store
//! (`MOCKED`, [`memory`]) and, later, by PostgreSQL.
//!
//! Each method is one atomic operation: it checks the invariants it guards
//! and writes in one step (one transaction on PostgreSQL, one lock on the
//! memory store), so that two server instances on one database behave as one.
//! Outcomes are typed per operation; `Internal` carries storage failures.

pub mod data;
pub mod memory;

pub use data::*;

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

impl User {
    /// Revoked at `now` (a revocation takes effect at its certificate's timestamp).
    pub fn is_revoked(&self, now: DateTime) -> bool {
        self.revoked_on.is_some_and(|r| r <= now)
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

/// Users and devices.
#[async_trait]
pub trait UserBackend: Send + Sync {
    /// For the handshake: the device and its user.
    async fn get_user_with_device(
        &self,
        org: &OrganizationId,
        device_id: &DeviceId,
    ) -> Result<(User, Device), UserLookupError>;
    /// For `user_get`: the user, its devices, and its certification trustchain.
    async fn get_user_with_trustchain(
        &self,
        org: &OrganizationId,
        user_id: &UserId,
    ) -> Result<UserWithTrustchain, UserLookupError>;
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
            message: store,
            blockstore: std::sync::Arc::new(crate::blockstore::MemoryBlockStore::default()),
        }
    }
}
