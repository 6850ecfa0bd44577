//! Users and devices: the actor owning their storage, and the rules of
//! `user_get` (the other user commands land with the Identity issue).
//!
//! Accepts: [`GetUserWithDevice`], [`GetUserWithTrustchain`].

use std::sync::Arc;

use actix::prelude::*;
use parsec_protocol::cmds;
use parsec_protocol::types::*;
use parsec_protocol::value::{self, Value};

use crate::backend::*;
use crate::client::AuthenticatedClient;
use crate::{Actors, backend_handler};

/// Owns the user backend.
pub struct UserActor {
    backend: Arc<dyn UserBackend>,
}

impl UserActor {
    pub fn new(backend: Arc<dyn UserBackend>) -> Self {
        Self { backend }
    }
}

impl Actor for UserActor {
    type Context = Context<Self>;
}

/// A device and its user (handshake).
#[derive(Message)]
#[rtype(result = "Result<(User, Device), UserLookupError>")]
pub struct GetUserWithDevice {
    pub org: OrganizationId,
    pub device_id: DeviceId,
}

/// A user, its devices and trustchain (`user_get`).
#[derive(Message)]
#[rtype(result = "Result<UserWithTrustchain, UserLookupError>")]
pub struct GetUserWithTrustchain {
    pub org: OrganizationId,
    pub user_id: UserId,
}

backend_handler!(UserActor, GetUserWithDevice, |b, m| b.get_user_with_device(&m.org, &m.device_id).await);
backend_handler!(UserActor, GetUserWithTrustchain, |b, m| b.get_user_with_trustchain(&m.org, &m.user_id).await);

/// `user_get`: OUTSIDER requesters only ever see redacted certificates.
pub async fn get(actors: &Actors, client: &AuthenticatedClient, user_id: UserId) -> Result<Value, Internal> {
    let msg = GetUserWithTrustchain { org: client.org.clone(), user_id };
    let found = match actors.user.send(msg).await? {
        Ok(found) => found,
        Err(UserLookupError::NotFound) => return Ok(cmds::status("not_found", vec![])),
        Err(UserLookupError::Internal(e)) => return Err(e),
    };
    let redacted = client.profile == UserProfile::Outsider;
    let user_cert = |u: &User| {
        Value::Binary(if redacted { u.redacted_user_certificate.clone() } else { u.user_certificate.clone() })
    };
    let device_cert = |d: &Device| {
        Value::Binary(if redacted { d.redacted_device_certificate.clone() } else { d.device_certificate.clone() })
    };
    let revoked_cert = |u: &User| u.revoked_user_certificate.clone().map(Value::Binary);
    let trustchain = value::map([
        ("devices", Value::Array(found.trustchain_devices.iter().map(device_cert).collect())),
        ("users", Value::Array(found.trustchain_users.iter().map(user_cert).collect())),
        (
            "revoked_users",
            Value::Array(found.trustchain_revoked_users.iter().filter_map(revoked_cert).collect()),
        ),
    ]);
    Ok(cmds::ok(vec![
        ("user_certificate", user_cert(&found.user)),
        ("revoked_user_certificate", revoked_cert(&found.user).unwrap_or(Value::Nil)),
        ("device_certificates", Value::Array(found.devices.iter().map(device_cert).collect())),
        ("trustchain", trustchain),
    ]))
}
