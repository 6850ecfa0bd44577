//! The in-memory store (`--db MOCKED`): everything in one map per
//! organization, lost at exit.
//!
//! One `std::sync::Mutex` guards all organizations. It is never held across
//! an `.await` (every method locks, works, unlocks), so it cannot stall the
//! runtime; each operation is atomic, which is what the PostgreSQL
//! implementation's transactions give.
//!
//! Realms, vlobs, blocks and messages live in [`data`].

mod data;
mod invite;
mod pki;
mod user;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Mutex, MutexGuard};

use async_trait::async_trait;
use parsec_protocol::types::*;

use super::*;

#[derive(Debug)]
struct OrgState {
    org: Organization,
    users: BTreeMap<UserId, User>,
    devices: BTreeMap<DeviceId, Device>,
    data: data::DataState,
    /// Invitations and their conduits.
    invites: invite::InviteState,
    /// PKI enrollments in submission order.
    pki: Vec<PkiEnrollment>,
}

impl OrgState {
    fn active_users(&self, now: DateTime) -> u64 {
        self.users.values().filter(|u| !u.is_revoked(now)).count() as u64
    }
}

/// The `MOCKED` store.
#[derive(Debug, Default)]
pub struct MemoryStore {
    orgs: Mutex<HashMap<OrganizationId, OrgState>>,
}

impl MemoryStore {
    fn lock(&self) -> MutexGuard<'_, HashMap<OrganizationId, OrgState>> {
        // A panic while holding the lock cannot leave a half-written state that
        // matters more than losing the whole server; keep serving.
        self.orgs.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Seeding seam for tests and tooling: inserts or replaces a user and
    /// its devices in a bootstrapped organization, bypassing every rule
    /// (limits, certificates, human uniqueness). Returns false when the
    /// organization does not exist.
    #[doc(hidden)]
    pub fn put_user_unchecked(&self, org: &OrganizationId, user: User, devices: Vec<Device>) -> bool {
        let mut orgs = self.lock();
        let Some(o) = orgs.get_mut(org) else { return false };
        for device in devices {
            o.devices.insert(device.device_id.clone(), device);
        }
        o.users.insert(user.user_id.clone(), user);
        true
    }
}

#[async_trait]
impl OrganizationBackend for MemoryStore {
    async fn create(
        &self,
        id: &OrganizationId,
        bootstrap_token: &str,
        active_users_limit: Option<u64>,
        user_profile_outsider_allowed: bool,
        _now: DateTime,
    ) -> Result<(), OrganizationCreateError> {
        let mut orgs = self.lock();
        if orgs.get(id).is_some_and(|o| o.org.is_bootstrapped()) {
            return Err(OrganizationCreateError::AlreadyExists);
        }
        orgs.insert(
            id.clone(),
            OrgState {
                org: Organization {
                    id: id.clone(),
                    bootstrap_token: bootstrap_token.to_string(),
                    root_verify_key: None,
                    is_expired: false,
                    active_users_limit,
                    user_profile_outsider_allowed,
                },
                users: BTreeMap::new(),
                devices: BTreeMap::new(),
                data: data::DataState::default(),
                invites: invite::InviteState::default(),
                pki: Vec::new(),
            },
        );
        Ok(())
    }

    async fn get(&self, id: &OrganizationId) -> Result<Organization, OrganizationLookupError> {
        self.lock()
            .get(id)
            .map(|o| o.org.clone())
            .ok_or(OrganizationLookupError::NotFound)
    }

    async fn update(&self, id: &OrganizationId, patch: &OrganizationPatch) -> Result<(), OrganizationLookupError> {
        let mut orgs = self.lock();
        let o = orgs.get_mut(id).ok_or(OrganizationLookupError::NotFound)?;
        if let Some(v) = patch.is_expired {
            o.org.is_expired = v;
        }
        if let Some(v) = patch.user_profile_outsider_allowed {
            o.org.user_profile_outsider_allowed = v;
        }
        if let Some(v) = patch.active_users_limit {
            o.org.active_users_limit = v;
        }
        Ok(())
    }

    async fn stats(&self, id: &OrganizationId) -> Result<OrganizationStats, OrganizationLookupError> {
        let orgs = self.lock();
        let o = orgs.get(id).ok_or(OrganizationLookupError::NotFound)?;
        let now = DateTime::now();
        let users_per_profile_detail = UserProfile::ALL
            .iter()
            .map(|&profile| {
                let of_profile = o.users.values().filter(|u| u.profile == profile);
                let revoked = of_profile.clone().filter(|u| u.is_revoked(now)).count() as u64;
                ProfileCount {
                    profile,
                    active: of_profile.count() as u64 - revoked,
                    revoked,
                }
            })
            .collect();
        Ok(OrganizationStats {
            data_size: o.data.data_size(),
            metadata_size: o.data.metadata_size(),
            realms: o.data.realms_count(),
            users: o.users.len() as u64,
            active_users: o.active_users(now),
            users_per_profile_detail,
        })
    }

    async fn bootstrap(&self, id: &OrganizationId, data: BootstrapData) -> Result<(), OrganizationBootstrapError> {
        let mut orgs = self.lock();
        let o = orgs.get_mut(id).ok_or(OrganizationBootstrapError::NotFound)?;
        if o.org.is_bootstrapped() {
            return Err(OrganizationBootstrapError::AlreadyBootstrapped);
        }
        if o.org.bootstrap_token != data.bootstrap_token {
            return Err(OrganizationBootstrapError::NotFound);
        }
        if o.org
            .active_users_limit
            .is_some_and(|limit| o.active_users(data.now) >= limit)
        {
            return Err(OrganizationBootstrapError::ActiveUsersLimitReached);
        }
        o.org.root_verify_key = Some(data.root_verify_key);
        o.users.insert(data.user.user_id.clone(), data.user);
        o.devices.insert(data.first_device.device_id.clone(), data.first_device);
        Ok(())
    }
}

#[async_trait]
impl UserBackend for MemoryStore {
    async fn handshake_identity(
        &self,
        org: &OrganizationId,
        device_id: &DeviceId,
    ) -> Result<HandshakeIdentity, UserLookupError> {
        let orgs = self.lock();
        let o = orgs.get(org).ok_or(UserLookupError::NotFound)?;
        let device = o.devices.get(device_id).ok_or(UserLookupError::NotFound)?;
        let user = o.users.get(&device_id.user_id()).ok_or(UserLookupError::NotFound)?;
        Ok(HandshakeIdentity {
            root_verify_key: o.org.root_verify_key,
            organization_expired: o.org.is_expired,
            user_id: user.user_id.clone(),
            human_handle: user.human_handle.clone(),
            profile: user.profile,
            revoked_on: user.revoked_on,
            device_id: device.device_id.clone(),
            device_label: device.device_label.clone(),
            verify_key: device.verify_key,
        })
    }

    async fn get_user_with_trustchain(
        &self,
        org: &OrganizationId,
        user_id: &UserId,
    ) -> Result<UserWithTrustchain, UserLookupError> {
        let orgs = self.lock();
        let o = orgs.get(org).ok_or(UserLookupError::NotFound)?;
        let user = o.users.get(user_id).ok_or(UserLookupError::NotFound)?;
        let devices: Vec<Device> = o
            .devices
            .values()
            .filter(|d| &d.device_id.user_id() == user_id)
            .cloned()
            .collect();

        // Closure over certifiers (commands.md §3.1).
        let mut todo: Vec<DeviceId> = Vec::new();
        todo.extend(user.user_certifier.clone());
        todo.extend(user.revoked_user_certifier.clone());
        todo.extend(devices.iter().filter_map(|d| d.device_certifier.clone()));
        let mut seen_devices = HashSet::new();
        let mut seen_users = HashSet::new();
        let mut out = UserWithTrustchain {
            user: user.clone(),
            devices,
            trustchain_users: Vec::new(),
            trustchain_devices: Vec::new(),
            trustchain_revoked_users: Vec::new(),
        };
        while let Some(device_id) = todo.pop() {
            if !seen_devices.insert(device_id.clone()) {
                continue;
            }
            let Some(device) = o.devices.get(&device_id) else {
                continue;
            };
            out.trustchain_devices.push(device.clone());
            todo.extend(device.device_certifier.clone());
            let certifier_user_id = device_id.user_id();
            if seen_users.insert(certifier_user_id.clone())
                && let Some(u) = o.users.get(&certifier_user_id)
            {
                out.trustchain_users.push(u.clone());
                if u.revoked_user_certificate.is_some() {
                    out.trustchain_revoked_users.push(u.clone());
                }
                todo.extend(u.user_certifier.clone());
                todo.extend(u.revoked_user_certifier.clone());
            }
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
        user::create_user(self.lock().get_mut(org).ok_or_else(vanished)?, user, first_device, now)
    }

    async fn create_device(&self, org: &OrganizationId, device: Device) -> Result<(), DeviceCreateError> {
        user::create_device(self.lock().get_mut(org).ok_or_else(vanished)?, device)
    }

    async fn revoke_user(&self, org: &OrganizationId, revocation: UserRevocation) -> Result<(), UserRevokeError> {
        user::revoke_user(self.lock().get_mut(org).ok_or(UserRevokeError::NotFound)?, revocation)
    }

    async fn find_humans(&self, org: &OrganizationId, query: &HumanFindQuery) -> Result<HumanFindPage, Internal> {
        Ok(user::find_humans(self.lock().get(org).ok_or_else(vanished)?, query))
    }
}

/// An authenticated request's organization is gone: only a bug gets here.
fn vanished() -> Internal {
    Internal(anyhow::anyhow!("organization vanished from the memory store"))
}
