//! Organizations: the actor owning their storage, and the rules of
//! `organization_bootstrap`, `organization_config` and `organization_stats`.
//!
//! Accepts: [`CreateOrganization`], [`GetOrganization`], [`UpdateOrganization`],
//! [`GetOrganizationStats`], [`BootstrapOrganization`].

use std::sync::Arc;

use actix::prelude::*;
use parsec_protocol::certif::{self, DeviceCertificate, ExpectedAuthor, UserCertificate};
use parsec_protocol::cmds;
use parsec_protocol::types::*;
use parsec_protocol::value::Value;

use crate::backend::*;
use crate::client::AuthenticatedClient;
use crate::{Actors, backend_handler};

/// Owns the organization backend.
pub struct OrganizationActor {
    backend: Arc<dyn OrganizationBackend>,
}

impl OrganizationActor {
    pub fn new(backend: Arc<dyn OrganizationBackend>) -> Self {
        Self { backend }
    }
}

impl Actor for OrganizationActor {
    type Context = Context<Self>;
}

/// Creates or replaces a not-yet-bootstrapped organization.
#[derive(Message)]
#[rtype(result = "Result<(), OrganizationCreateError>")]
pub struct CreateOrganization {
    pub id: OrganizationId,
    pub bootstrap_token: String,
    pub active_users_limit: Option<u64>,
    pub user_profile_outsider_allowed: bool,
}

/// Reads an organization.
#[derive(Message)]
#[rtype(result = "Result<Organization, OrganizationLookupError>")]
pub struct GetOrganization(pub OrganizationId);

/// Admin PATCH.
#[derive(Message)]
#[rtype(result = "Result<(), OrganizationLookupError>")]
pub struct UpdateOrganization {
    pub id: OrganizationId,
    pub patch: OrganizationPatch,
}

/// Usage figures.
#[derive(Message)]
#[rtype(result = "Result<OrganizationStats, OrganizationLookupError>")]
pub struct GetOrganizationStats(pub OrganizationId);

/// Writes the bootstrap (certificates already checked).
#[derive(Message)]
#[rtype(result = "Result<(), OrganizationBootstrapError>")]
pub struct BootstrapOrganization {
    pub id: OrganizationId,
    pub data: BootstrapData,
}

/// Readiness probe of the organization store.
#[derive(Message)]
#[rtype(result = "Result<(), Internal>")]
pub struct Ping;

backend_handler!(OrganizationActor, Ping, |b, _m| b.ping().await);
backend_handler!(OrganizationActor, CreateOrganization, |b, m| {
    b.create(
        &m.id,
        &m.bootstrap_token,
        m.active_users_limit,
        m.user_profile_outsider_allowed,
        DateTime::now(),
    )
    .await
});
backend_handler!(OrganizationActor, GetOrganization, |b, m| b.get(&m.0).await);
backend_handler!(OrganizationActor, UpdateOrganization, |b, m| b
    .update(&m.id, &m.patch)
    .await);
backend_handler!(OrganizationActor, GetOrganizationStats, |b, m| b.stats(&m.0).await);
backend_handler!(OrganizationActor, BootstrapOrganization, |b, m| b
    .bootstrap(&m.id, m.data)
    .await);

/// Wire form of the stats, shared by the command and the admin route
/// (which drops `status`).
pub fn stats_fields(s: &OrganizationStats) -> Vec<(&'static str, Value)> {
    let detail = s
        .users_per_profile_detail
        .iter()
        .map(|p| {
            parsec_protocol::value::map([
                ("profile", p.profile.to_value()),
                ("active", Value::from(p.active)),
                ("revoked", Value::from(p.revoked)),
            ])
        })
        .collect();
    vec![
        ("data_size", Value::from(s.data_size)),
        ("metadata_size", Value::from(s.metadata_size)),
        ("realms", Value::from(s.realms)),
        ("users", Value::from(s.users)),
        ("active_users", Value::from(s.active_users)),
        ("users_per_profile_detail", Value::Array(detail)),
    ]
}

/// `organization_config`.
pub async fn config(actors: &Actors, client: &AuthenticatedClient) -> Result<Value, Internal> {
    Ok(
        match actors.organization.send(GetOrganization(client.org.clone())).await? {
            Ok(org) => cmds::ok(vec![
                (
                    "user_profile_outsider_allowed",
                    Value::Boolean(org.user_profile_outsider_allowed),
                ),
                (
                    "active_users_limit",
                    org.active_users_limit.map(Value::from).unwrap_or(Value::Nil),
                ),
            ]),
            Err(OrganizationLookupError::NotFound) => cmds::status("not_found", vec![]),
            Err(OrganizationLookupError::Internal(e)) => return Err(e),
        },
    )
}

/// `organization_stats` (ADMIN only).
pub async fn stats(actors: &Actors, client: &AuthenticatedClient) -> Result<Value, Internal> {
    if client.profile != UserProfile::Admin {
        return Ok(cmds::status_reason(
            "not_allowed",
            format!("User `{}` is not admin", client.user_id),
        ));
    }
    Ok(
        match actors
            .organization
            .send(GetOrganizationStats(client.org.clone()))
            .await?
        {
            Ok(s) => cmds::ok(stats_fields(&s)),
            Err(OrganizationLookupError::NotFound) => cmds::status("not_found", vec![]),
            Err(OrganizationLookupError::Internal(e)) => return Err(e),
        },
    )
}

/// The fields of `organization_bootstrap`, from either route.
#[derive(Debug, Clone)]
pub struct BootstrapRequest {
    pub bootstrap_token: String,
    pub root_verify_key: Key32,
    pub user_certificate: Vec<u8>,
    pub device_certificate: Vec<u8>,
    /// Optional on the legacy v1 websocket only.
    pub redacted_user_certificate: Option<Vec<u8>>,
    pub redacted_device_certificate: Option<Vec<u8>>,
}

fn invalid_data(reason: &str) -> Value {
    cmds::status_reason("invalid_data", reason)
}

/// Redacted-certificate rules (certificates.md §3): `None` when they hold.
pub fn check_redacted_user(full: &UserCertificate, redacted: &UserCertificate) -> Option<&'static str> {
    let same = full.author == redacted.author
        && full.timestamp == redacted.timestamp
        && full.user_id == redacted.user_id
        && full.public_key == redacted.public_key
        && full.profile == redacted.profile;
    if !same {
        return Some("Redacted User certificate differs from User certificate.");
    }
    if redacted.human_handle.is_some() {
        return Some("Redacted User certificate must not contain a human_handle field.");
    }
    None
}

/// Device counterpart of [`check_redacted_user`].
pub fn check_redacted_device(full: &DeviceCertificate, redacted: &DeviceCertificate) -> Option<&'static str> {
    let same = full.author == redacted.author
        && full.timestamp == redacted.timestamp
        && full.device_id == redacted.device_id
        && full.verify_key == redacted.verify_key;
    if !same {
        return Some("Redacted Device certificate differs from Device certificate.");
    }
    if redacted.device_label.is_some() {
        return Some("Redacted Device certificate must not contain a device_label field.");
    }
    None
}

/// `organization_bootstrap` (commands.md §2.3, in the reference's check order).
pub async fn bootstrap(actors: &Actors, org: &OrganizationId, req: BootstrapRequest) -> Result<Value, Internal> {
    let rvk = &req.root_verify_key;
    let root = ExpectedAuthor::Root;
    let verify_user = |raw: &[u8]| certif::verify_and_load::<UserCertificate>(raw, rvk, root);
    let verify_device = |raw: &[u8]| certif::verify_and_load::<DeviceCertificate>(raw, rvk, root);
    let u = match verify_user(&req.user_certificate) {
        Ok(c) => c,
        Err(e) => return Ok(cmds::invalid_certification(e.reason())),
    };
    let d = match verify_device(&req.device_certificate) {
        Ok(c) => c,
        Err(e) => return Ok(cmds::invalid_certification(e.reason())),
    };
    let ru = match req.redacted_user_certificate.as_deref().map(verify_user).transpose() {
        Ok(c) => c,
        Err(e) => return Ok(cmds::invalid_certification(e.reason())),
    };
    let rd = match req
        .redacted_device_certificate
        .as_deref()
        .map(verify_device)
        .transpose()
    {
        Ok(c) => c,
        Err(e) => return Ok(cmds::invalid_certification(e.reason())),
    };
    if u.profile != UserProfile::Admin {
        return Ok(invalid_data("Bootstrapping user must have admin profile."));
    }
    if u.timestamp != d.timestamp {
        return Ok(invalid_data(
            "Device and user certificates must have the same timestamp.",
        ));
    }
    if u.user_id != d.device_id.user_id() {
        return Ok(invalid_data("Device and user must have the same user ID."));
    }
    let now = DateTime::now();
    if !timestamps_in_the_ballpark(u.timestamp, now) {
        return Ok(cmds::bad_timestamp(now, u.timestamp));
    }
    if let Some(reason) = ru.as_ref().and_then(|ru| check_redacted_user(&u, ru)) {
        return Ok(invalid_data(reason));
    }
    if let Some(reason) = rd.as_ref().and_then(|rd| check_redacted_device(&d, rd)) {
        return Ok(invalid_data(reason));
    }
    let (redacted_user, redacted_device) = match (req.redacted_user_certificate, req.redacted_device_certificate) {
        (Some(ru), Some(rd)) => (ru, rd),
        // Legacy v1 clients may send neither: the full ones serve as redacted.
        (None, None) => (req.user_certificate.clone(), req.device_certificate.clone()),
        _ => {
            return Ok(invalid_data(
                "Redacted user&device certificate muste be provided together",
            ));
        }
    };

    let data = BootstrapData {
        bootstrap_token: req.bootstrap_token,
        root_verify_key: req.root_verify_key,
        user: User {
            user_id: u.user_id.clone(),
            human_handle: u.human_handle.clone(),
            profile: u.profile,
            user_certificate: req.user_certificate,
            redacted_user_certificate: redacted_user,
            user_certifier: None,
            created_on: u.timestamp,
            revoked_on: None,
            revoked_user_certificate: None,
            revoked_user_certifier: None,
        },
        first_device: Device {
            device_id: d.device_id.clone(),
            device_label: d.device_label.clone(),
            device_certificate: req.device_certificate,
            redacted_device_certificate: redacted_device,
            device_certifier: None,
            created_on: d.timestamp,
            verify_key: d.verify_key,
        },
        now,
    };
    let msg = BootstrapOrganization { id: org.clone(), data };
    Ok(match actors.organization.send(msg).await? {
        Ok(()) => {
            log::info!("org={org}: bootstrapped by {}", d.device_id);
            // Before answering, as the reference does; its failures are only logged.
            if let Some(hook) = &actors.bootstrap_webhook {
                hook.organization_bootstrapped(org, &d.device_id, d.device_label.as_ref(), u.human_handle.as_ref())
                    .await;
            }
            cmds::ok(vec![])
        }
        Err(OrganizationBootstrapError::NotFound) => cmds::status("not_found", vec![]),
        Err(OrganizationBootstrapError::AlreadyBootstrapped) => cmds::status("already_bootstrapped", vec![]),
        Err(OrganizationBootstrapError::ActiveUsersLimitReached) => cmds::status("active_users_limit_reached", vec![]),
        Err(OrganizationBootstrapError::Internal(e)) => return Err(e),
    })
}
