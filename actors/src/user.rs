//! Users and devices: the actor owning their storage, and the rules of
//! `user_get`, `user_create`, `user_revoke`, `device_create` and
//! `human_find` (commands.md §3).
//!
//! Accepts: [`GetHandshakeIdentity`], [`GetUserWithTrustchain`], [`CreateUser`],
//! [`CreateDevice`], [`RevokeUser`], [`FindHumans`].
//!
//! The command functions run the checks that need no storage (profile,
//! certificate signatures and authors, timestamps, redacted forms) in the
//! reference's order, then let the backend check and write in one atomic
//! step under the organization's user/device lock. A revocation closes the
//! revoked user's live connections through the broker, only once stored.
//! Profile checks the reference makes *before* parsing a request are also
//! in [`crate::permissions`], for malformed requests.

use std::sync::Arc;

use actix::prelude::*;
use parsec_protocol::certif::{self, DeviceCertificate, ExpectedAuthor, RevokedUserCertificate, UserCertificate};
use parsec_protocol::cmds;
use parsec_protocol::cmds::authenticated::{DeviceCreate, HumanFind, UserCreate, UserRevoke};
use parsec_protocol::types::*;
use parsec_protocol::value::{self, Value};

use crate::backend::*;
use crate::client::AuthenticatedClient;
use crate::event::Event;
use crate::grouping::{Counted, Grouping, start_counted};
use crate::organization::{check_redacted_device, check_redacted_user};
use crate::{Actors, backend_handler};

/// Most groups of handshake lookups running at once (see
/// [`crate::vlob::READ_GROUPS_IN_FLIGHT`]).
pub const LOOKUP_GROUPS_IN_FLIGHT: usize = 2;

/// Most handshake lookups in one group.
pub const MAX_LOOKUP_GROUP: usize = 32;

/// Owns the user backend.
pub struct UserActor {
    backend: Arc<dyn UserBackend>,
    /// Handshake lookups waiting for a group slot, when they go in groups
    /// ([`UserBackend::groups_identity_lookups`]: on PostgreSQL one
    /// statement for many handshakes costs the database far less than one
    /// each). A lone lookup goes at once.
    lookups: Option<Grouping<(OrganizationId, DeviceId), Result<HandshakeIdentity, UserLookupError>>>,
}

impl UserActor {
    pub fn new(backend: Arc<dyn UserBackend>) -> Self {
        let lookups = backend
            .groups_identity_lookups()
            .then(|| Grouping::new(LOOKUP_GROUPS_IN_FLIGHT));
        Self { backend, lookups }
    }

    /// How handshake lookups run in groups.
    const LOOKUPS: Counted<Self, (OrganizationId, DeviceId), Result<HandshakeIdentity, UserLookupError>> = Counted {
        max: MAX_LOOKUP_GROUP,
        grouping: |act| act.lookups.as_mut(),
        run: |act, lookups, mut replies| {
            let backend = act.backend.clone();
            Box::pin(async move { replies.send_all(backend.handshake_identities(lookups).await) })
        },
        missing: || Err(no_lookup_outcome().into()),
    };
}

/// A group answered nothing for this lookup: only a backend bug does that.
fn no_lookup_outcome() -> Internal {
    Internal(anyhow::anyhow!("handshake lookup group gave no outcome"))
}

impl Actor for UserActor {
    type Context = Context<Self>;
}

/// What the authenticated handshake checks (organization, user, device).
#[derive(Message)]
#[rtype(result = "Result<HandshakeIdentity, UserLookupError>")]
pub struct GetHandshakeIdentity {
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

/// Stores a new user and its first device (certificates already checked).
#[derive(Message)]
#[rtype(result = "Result<(), UserCreateError>")]
pub struct CreateUser {
    pub org: OrganizationId,
    pub user: User,
    pub first_device: Device,
    pub now: DateTime,
}

/// Stores a new device of an existing user (certificates already checked).
#[derive(Message)]
#[rtype(result = "Result<(), DeviceCreateError>")]
pub struct CreateDevice {
    pub org: OrganizationId,
    pub device: Device,
}

/// Stores a revocation (certificate already checked).
#[derive(Message)]
#[rtype(result = "Result<(), UserRevokeError>")]
pub struct RevokeUser {
    pub org: OrganizationId,
    pub revocation: UserRevocation,
}

/// Searches the organization's users (`human_find`).
#[derive(Message)]
#[rtype(result = "Result<HumanFindPage, Internal>")]
pub struct FindHumans {
    pub org: OrganizationId,
    pub query: HumanFindQuery,
}

impl Handler<GetHandshakeIdentity> for UserActor {
    type Result = ResponseFuture<Result<HandshakeIdentity, UserLookupError>>;
    fn handle(&mut self, m: GetHandshakeIdentity, ctx: &mut Self::Context) -> Self::Result {
        let Some(lookups) = self.lookups.as_mut() else {
            let backend = self.backend.clone();
            return Box::pin(async move { backend.handshake_identity(&m.org, &m.device_id).await });
        };
        let outcome = lookups.push((m.org, m.device_id));
        start_counted(self, ctx, Self::LOOKUPS);
        Box::pin(async move { outcome.await.unwrap_or_else(|_| Err(no_lookup_outcome().into())) })
    }
}
backend_handler!(UserActor, GetUserWithTrustchain, |b, m| b
    .get_user_with_trustchain(&m.org, &m.user_id)
    .await);
backend_handler!(UserActor, CreateUser, |b, m| b
    .create_user(&m.org, m.user, m.first_device, m.now)
    .await);
backend_handler!(UserActor, CreateDevice, |b, m| b.create_device(&m.org, m.device).await);
backend_handler!(UserActor, RevokeUser, |b, m| b.revoke_user(&m.org, m.revocation).await);
backend_handler!(UserActor, FindHumans, |b, m| b.find_humans(&m.org, &m.query).await);

/// `user_get`: OUTSIDER requesters only ever see redacted certificates.
pub async fn get(actors: &Actors, client: &AuthenticatedClient, user_id: UserId) -> Result<Value, Internal> {
    let msg = GetUserWithTrustchain {
        org: client.org.clone(),
        user_id,
    };
    let found = match actors.user.send(msg).await? {
        Ok(found) => found,
        Err(UserLookupError::NotFound) => return Ok(cmds::status("not_found", vec![])),
        Err(UserLookupError::Internal(e)) => return Err(e),
    };
    let redacted = client.profile == UserProfile::Outsider;
    let user_cert = |u: &User| {
        Value::Binary(if redacted {
            u.redacted_user_certificate.clone()
        } else {
            u.user_certificate.clone()
        })
    };
    let device_cert = |d: &Device| {
        Value::Binary(if redacted {
            d.redacted_device_certificate.clone()
        } else {
            d.device_certificate.clone()
        })
    };
    let revoked_cert = |u: &User| u.revoked_user_certificate.clone().map(Value::Binary);
    let trustchain = value::map([
        (
            "devices",
            Value::Array(found.trustchain_devices.iter().map(device_cert).collect()),
        ),
        (
            "users",
            Value::Array(found.trustchain_users.iter().map(user_cert).collect()),
        ),
        (
            "revoked_users",
            Value::Array(found.trustchain_revoked_users.iter().filter_map(revoked_cert).collect()),
        ),
    ]);
    Ok(cmds::ok(vec![
        ("user_certificate", user_cert(&found.user)),
        (
            "revoked_user_certificate",
            revoked_cert(&found.user).unwrap_or(Value::Nil),
        ),
        (
            "device_certificates",
            Value::Array(found.devices.iter().map(device_cert).collect()),
        ),
        ("trustchain", trustchain),
    ]))
}

/// ``"User `<user_id>` is not admin"``: the reply of every ADMIN-only command.
pub(crate) fn not_admin(client: &AuthenticatedClient) -> Value {
    cmds::status_reason("not_allowed", format!("User `{}` is not admin", client.user_id))
}

fn invalid_data(reason: &str) -> Value {
    cmds::status_reason("invalid_data", reason)
}

/// The four certificates of a new user, as sent by `user_create` and
/// `pki_enrollment_accept`.
pub(crate) struct NewUserCertificates {
    pub user_certificate: Vec<u8>,
    pub device_certificate: Vec<u8>,
    pub redacted_user_certificate: Vec<u8>,
    pub redacted_device_certificate: Vec<u8>,
}

/// Checks a new user's certificates (reference `validate_new_user_certificates`,
/// commands.md §3.2 steps 3–7): signatures and author (the requesting
/// device), then timestamps, user id and redacted forms. The error is the reply.
///
/// The new user's profile is not checked, neither against the requester's
/// nor against `user_profile_outsider_allowed`: 2.10 enforces neither.
pub(crate) fn validate_new_user(
    client: &AuthenticatedClient,
    certs: NewUserCertificates,
    now: DateTime,
) -> Result<(User, Device), Value> {
    let key = &client.verify_key;
    let author = ExpectedAuthor::Device(&client.device_id);
    let invalid = |e: certif::CertifError| cmds::invalid_certification(e.reason());
    // The reference verifies the device certificate first.
    let d: DeviceCertificate = certif::verify_and_load(&certs.device_certificate, key, author).map_err(invalid)?;
    let u: UserCertificate = certif::verify_and_load(&certs.user_certificate, key, author).map_err(invalid)?;
    let ru: UserCertificate =
        certif::verify_and_load(&certs.redacted_user_certificate, key, author).map_err(invalid)?;
    let rd: DeviceCertificate =
        certif::verify_and_load(&certs.redacted_device_certificate, key, author).map_err(invalid)?;
    if u.timestamp != d.timestamp {
        return Err(invalid_data(
            "Device and User certificates must have the same timestamp.",
        ));
    }
    if !timestamps_in_the_ballpark(u.timestamp, now) {
        // The client reads "timestamp" in this reason as a clock drift.
        return Err(cmds::invalid_certification("Invalid timestamp in certificate."));
    }
    if u.user_id != d.device_id.user_id() {
        return Err(invalid_data("Device and User must have the same user ID."));
    }
    if let Some(reason) = check_redacted_user(&u, &ru).or_else(|| check_redacted_device(&d, &rd)) {
        return Err(invalid_data(reason));
    }
    let user = User {
        user_id: u.user_id,
        human_handle: u.human_handle,
        profile: u.profile,
        user_certificate: certs.user_certificate,
        redacted_user_certificate: certs.redacted_user_certificate,
        user_certifier: u.author,
        created_on: u.timestamp,
        revoked_on: None,
        revoked_user_certificate: None,
        revoked_user_certifier: None,
    };
    let device = Device {
        device_id: d.device_id,
        device_label: d.device_label,
        device_certificate: certs.device_certificate,
        redacted_device_certificate: certs.redacted_device_certificate,
        device_certifier: d.author,
        created_on: d.timestamp,
        verify_key: d.verify_key,
    };
    Ok((user, device))
}

/// `user_create` (commands.md §3.2, PG order). ADMIN only.
pub async fn create(actors: &Actors, client: &AuthenticatedClient, req: UserCreate) -> Result<Value, Internal> {
    if client.profile != UserProfile::Admin {
        return Ok(not_admin(client));
    }
    let certs = NewUserCertificates {
        user_certificate: req.user_certificate,
        device_certificate: req.device_certificate,
        redacted_user_certificate: req.redacted_user_certificate,
        redacted_device_certificate: req.redacted_device_certificate,
    };
    let now = DateTime::now();
    let (user, first_device) = match validate_new_user(client, certs, now) {
        Ok(checked) => checked,
        Err(rep) => return Ok(rep),
    };
    let user_id = user.user_id.clone();
    let msg = CreateUser {
        org: client.org.clone(),
        user,
        first_device,
        now,
    };
    Ok(match actors.user.send(msg).await? {
        Ok(()) => {
            log::info!("{client}: created user {user_id}");
            cmds::ok(vec![])
        }
        Err(UserCreateError::ActiveUsersLimitReached) => cmds::status("active_users_limit_reached", vec![]),
        Err(e @ (UserCreateError::UserAlreadyExists(_) | UserCreateError::HumanAlreadyExists(_))) => {
            cmds::status_reason("already_exists", e.to_string())
        }
        Err(UserCreateError::Internal(e)) => return Err(e),
    })
}

/// `user_revoke` (commands.md §3.3). ADMIN only.
///
/// The revocation takes effect at the certificate's timestamp (up to 50 s
/// ahead): the handshake refuses the user from then on. The user's live
/// connections are closed at once, as the reference does.
pub async fn revoke(actors: &Actors, client: &AuthenticatedClient, req: UserRevoke) -> Result<Value, Internal> {
    if client.profile != UserProfile::Admin {
        return Ok(not_admin(client));
    }
    let author = ExpectedAuthor::Device(&client.device_id);
    let cert: RevokedUserCertificate =
        match certif::verify_and_load(&req.revoked_user_certificate, &client.verify_key, author) {
            Ok(cert) => cert,
            Err(e) => return Ok(cmds::invalid_certification(e.reason())),
        };
    if !timestamps_in_the_ballpark(cert.timestamp, DateTime::now()) {
        return Ok(cmds::invalid_certification("Invalid timestamp in certification."));
    }
    if cert.user_id == client.user_id {
        return Ok(cmds::status_reason("not_allowed", "Cannot do self-revocation"));
    }
    let revocation = UserRevocation {
        user_id: cert.user_id.clone(),
        revoked_on: cert.timestamp,
        revoked_user_certificate: req.revoked_user_certificate,
        revoked_user_certifier: client.device_id.clone(),
    };
    Ok(
        match actors
            .user
            .send(RevokeUser {
                org: client.org.clone(),
                revocation,
            })
            .await?
        {
            Ok(()) => {
                log::info!("{client}: revoked user {} (effective {})", cert.user_id, cert.timestamp);
                actors.publish(Event::UserRevoked {
                    org: client.org.clone(),
                    user: cert.user_id,
                });
                cmds::ok(vec![])
            }
            Err(UserRevokeError::NotFound) => cmds::status("not_found", vec![]),
            Err(e @ UserRevokeError::AlreadyRevoked(_)) => cmds::status_reason("already_revoked", e.to_string()),
            Err(UserRevokeError::Internal(e)) => return Err(e),
        },
    )
}

/// `device_create` (commands.md §3.4). Any profile, for its own user only.
pub async fn create_device(
    actors: &Actors,
    client: &AuthenticatedClient,
    req: DeviceCreate,
) -> Result<Value, Internal> {
    let key = &client.verify_key;
    let author = ExpectedAuthor::Device(&client.device_id);
    let loaded = certif::verify_and_load::<DeviceCertificate>(&req.device_certificate, key, author).and_then(|d| {
        let rd = certif::verify_and_load::<DeviceCertificate>(&req.redacted_device_certificate, key, author)?;
        Ok((d, rd))
    });
    let (d, rd) = match loaded {
        Ok(certs) => certs,
        Err(e) => return Ok(cmds::invalid_certification(e.reason())),
    };
    if !timestamps_in_the_ballpark(d.timestamp, DateTime::now()) {
        return Ok(cmds::invalid_certification("Invalid timestamp in certification."));
    }
    if d.device_id.user_id() != client.user_id {
        return Ok(cmds::status_reason(
            "bad_user_id",
            "Device must be handled by it own user.",
        ));
    }
    if let Some(reason) = check_redacted_device(&d, &rd) {
        return Ok(invalid_data(reason));
    }
    let device = Device {
        device_id: d.device_id,
        device_label: d.device_label,
        device_certificate: req.device_certificate,
        redacted_device_certificate: req.redacted_device_certificate,
        device_certifier: d.author,
        created_on: d.timestamp,
        verify_key: d.verify_key,
    };
    let device_id = device.device_id.clone();
    Ok(
        match actors
            .user
            .send(CreateDevice {
                org: client.org.clone(),
                device,
            })
            .await?
        {
            Ok(()) => {
                log::info!("{client}: created device {device_id}");
                cmds::ok(vec![])
            }
            Err(e @ DeviceCreateError::AlreadyExists(_)) => cmds::status_reason("already_exists", e.to_string()),
            Err(DeviceCreateError::Internal(e)) => return Err(e),
        },
    )
}

/// ``"Not allowed for user with OUTSIDER profile."``.
pub(crate) fn outsider_cannot_find_humans() -> Value {
    cmds::status_reason("not_allowed", "Not allowed for user with OUTSIDER profile.")
}

/// `human_find` (commands.md §3.5). Not for OUTSIDERs.
pub async fn find_humans(actors: &Actors, client: &AuthenticatedClient, req: HumanFind) -> Result<Value, Internal> {
    if client.profile == UserProfile::Outsider {
        return Ok(outsider_cannot_find_humans());
    }
    // Both are ≥ 1 once parsed.
    let (page, per_page) = (req.page.max(1) as u64, req.per_page.max(1) as u64);
    let query = HumanFindQuery {
        query: req.query,
        omit_revoked: req.omit_revoked,
        omit_non_human: req.omit_non_human,
        page,
        per_page,
        now: DateTime::now(),
    };
    let found = actors
        .user
        .send(FindHumans {
            org: client.org.clone(),
            query,
        })
        .await??;
    let results = found
        .results
        .into_iter()
        .map(|item| {
            value::map([
                ("user_id", Value::from(item.user_id.as_str())),
                (
                    "human_handle",
                    item.human_handle.as_ref().map_or(Value::Nil, HumanHandle::to_value),
                ),
                ("revoked", Value::Boolean(item.revoked)),
            ])
        })
        .collect();
    Ok(cmds::ok(vec![
        ("results", Value::Array(results)),
        ("page", Value::from(page)),
        ("per_page", Value::from(per_page)),
        ("total", Value::from(found.total)),
    ]))
}
