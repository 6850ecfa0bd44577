//! The `MOCKED` store's user and device writes and `human_find`.
//!
//! Plain functions over one organization's state, called with the store's
//! lock held (which plays the part of PG's per-organization user/device
//! advisory lock): they check in the PG order, then write, and never leave a
//! half-done change behind.

use parsec_protocol::types::*;

use super::OrgState;
use crate::backend::*;

/// `user_create` and the user half of `pki_enrollment_accept`.
pub(super) fn create_user(
    o: &mut OrgState,
    user: User,
    first_device: Device,
    now: DateTime,
) -> Result<(), UserCreateError> {
    check_new_user(o, &user, now)?;
    o.devices.insert(first_device.device_id.clone(), first_device);
    o.users.insert(user.user_id.clone(), user);
    Ok(())
}

/// The checks of [`create_user`], in PG order.
pub(super) fn check_new_user(o: &OrgState, user: &User, now: DateTime) -> Result<(), UserCreateError> {
    // PG counts users with no revocation at all: one revoked in the future
    // already frees its seat.
    let active = o.users.values().filter(|u| u.revoked_on.is_none()).count() as u64;
    if o.org.active_users_limit.is_some_and(|limit| active >= limit) {
        return Err(UserCreateError::ActiveUsersLimitReached);
    }
    if o.users.contains_key(&user.user_id) {
        return Err(UserCreateError::UserAlreadyExists(user.user_id.clone()));
    }
    if let Some(human) = &user.human_handle {
        // Here a revocation counts only once it has taken effect.
        let taken = o
            .users
            .values()
            .any(|u| u.human_handle.as_ref().is_some_and(|h| h.email == human.email) && !u.is_revoked(now));
        if taken {
            return Err(UserCreateError::HumanAlreadyExists(human.clone()));
        }
    }
    Ok(())
}

/// `device_create`.
pub(super) fn create_device(o: &mut OrgState, device: Device) -> Result<(), DeviceCreateError> {
    if !o.users.contains_key(&device.device_id.user_id()) {
        // The command only creates devices of the requester's own user.
        return Err(Internal(anyhow::anyhow!(
            "device_create for unknown user of {}",
            device.device_id
        ))
        .into());
    }
    if o.devices.contains_key(&device.device_id) {
        return Err(DeviceCreateError::AlreadyExists(device.device_id));
    }
    o.devices.insert(device.device_id.clone(), device);
    Ok(())
}

/// `user_revoke`.
pub(super) fn revoke_user(o: &mut OrgState, r: UserRevocation) -> Result<(), UserRevokeError> {
    let user = o.users.get_mut(&r.user_id).ok_or(UserRevokeError::NotFound)?;
    if user.revoked_on.is_some() {
        return Err(UserRevokeError::AlreadyRevoked(r.user_id));
    }
    user.revoked_on = Some(r.revoked_on);
    user.revoked_user_certificate = Some(r.revoked_user_certificate);
    user.revoked_user_certifier = Some(r.revoked_user_certifier);
    Ok(())
}

/// `human_find` with PG semantics (see [`HumanFindQuery`]).
pub(super) fn find_humans(o: &OrgState, q: &HumanFindQuery) -> HumanFindPage {
    let rows = o
        .users
        .values()
        .map(|u| crate::backend::human_find::HumanRow {
            user_id: u.user_id.clone(),
            human_handle: u.human_handle.clone(),
            created_on: u.created_on,
            revoked_on: u.revoked_on,
        })
        .collect();
    crate::backend::human_find::find(rows, q)
}
