//! Realms: the actor owning their storage, and the rules of `realm_create`,
//! `realm_status`, `realm_stats`, `realm_get_role_certificates`,
//! `realm_update_roles` and the re-encryption maintenance cycle
//! (`realm_start_reencryption_maintenance`,
//! `realm_finish_reencryption_maintenance`; the batches are in
//! [`crate::vlob`]).
//!
//! Accepts: [`CreateRealm`], [`GetRealmStatus`], [`GetRealmStats`],
//! [`GetRealmRoleCertificates`], [`UpdateRealmRoles`],
//! [`StartReencryptionMaintenance`], [`FinishReencryptionMaintenance`],
//! [`GetRealmsForUser`].
//!
//! The command functions check what needs no storage (certificate signature
//! and author, timestamp ballpark, self-signing) in the reference's order,
//! then let the backend check roles and write in one atomic step, then
//! publish the events of the outcome (`realm.roles_updated`,
//! `message.received`, `realm.maintenance_*`). They never publish before the
//! write succeeded.

use std::collections::HashSet;
use std::sync::Arc;

use actix::prelude::*;
use parsec_protocol::certif::{self, ExpectedAuthor, RealmRoleCertificate};
use parsec_protocol::cmds;
use parsec_protocol::cmds::authenticated::{
    RealmCreate, RealmFinishReencryptionMaintenance, RealmGetRoleCertificates, RealmStartReencryptionMaintenance,
    RealmStats as RealmStatsReq, RealmStatus as RealmStatusReq, RealmUpdateRoles,
};
use parsec_protocol::types::*;
use parsec_protocol::value::Value;

use crate::backend::*;
use crate::client::AuthenticatedClient;
use crate::event::Event;
use crate::{Actors, backend_handler};

/// Owns the realm backend.
pub struct RealmActor {
    backend: Arc<dyn RealmBackend>,
}

impl RealmActor {
    pub fn new(backend: Arc<dyn RealmBackend>) -> Self {
        Self { backend }
    }
}

impl Actor for RealmActor {
    type Context = Context<Self>;
}

/// Creates a realm with its creator's OWNER role.
#[derive(Message)]
#[rtype(result = "Result<(), RealmCreateError>")]
pub struct CreateRealm {
    pub org: OrganizationId,
    pub role: RealmGrantedRole,
}

/// Reads a realm's revision and maintenance state (members only).
#[derive(Message)]
#[rtype(result = "Result<RealmStatus, RealmReadError>")]
pub struct GetRealmStatus {
    pub org: OrganizationId,
    pub user: UserId,
    pub realm_id: Uuid,
}

/// Reads a realm's sizes (members only).
#[derive(Message)]
#[rtype(result = "Result<RealmStats, RealmReadError>")]
pub struct GetRealmStats {
    pub org: OrganizationId,
    pub user: UserId,
    pub realm_id: Uuid,
}

/// Reads every role certificate of a realm (members only).
#[derive(Message)]
#[rtype(result = "Result<Vec<Vec<u8>>, RealmReadError>")]
pub struct GetRealmRoleCertificates {
    pub org: OrganizationId,
    pub user: UserId,
    pub realm_id: Uuid,
}

/// Stores a role change (certificate already checked) and its message.
#[derive(Message)]
#[rtype(result = "Result<Option<DeliveredMessage>, RealmUpdateRolesError>")]
pub struct UpdateRealmRoles {
    pub org: OrganizationId,
    pub role: RealmGrantedRole,
    pub recipient_message: Option<Vec<u8>>,
}

/// Enters re-encryption maintenance and messages every participant.
#[derive(Message)]
#[rtype(result = "Result<Vec<DeliveredMessage>, RealmStartReencryptionError>")]
pub struct StartReencryptionMaintenance {
    pub org: OrganizationId,
    pub author: DeviceId,
    pub req: RealmStartReencryptionMaintenance,
    pub now: DateTime,
}

/// Leaves re-encryption maintenance.
#[derive(Message)]
#[rtype(result = "Result<u64, RealmFinishReencryptionError>")]
pub struct FinishReencryptionMaintenance {
    pub org: OrganizationId,
    pub author: DeviceId,
    pub realm_id: Uuid,
    pub encryption_revision: i64,
    pub now: DateTime,
}

/// Realms where a user currently has a role (`events_subscribe`).
#[derive(Message)]
#[rtype(result = "Result<HashSet<Uuid>, Internal>")]
pub struct GetRealmsForUser {
    pub org: OrganizationId,
    pub user: UserId,
}

backend_handler!(RealmActor, CreateRealm, |b, m| b.create(&m.org, m.role).await);
backend_handler!(RealmActor, GetRealmStatus, |b, m| b
    .get_status(&m.org, &m.user, m.realm_id)
    .await);
backend_handler!(RealmActor, GetRealmStats, |b, m| b
    .get_stats(&m.org, &m.user, m.realm_id)
    .await);
backend_handler!(RealmActor, GetRealmRoleCertificates, |b, m| {
    b.get_role_certificates(&m.org, &m.user, m.realm_id).await
});
backend_handler!(RealmActor, UpdateRealmRoles, |b, m| b
    .update_roles(&m.org, m.role, m.recipient_message)
    .await);
backend_handler!(RealmActor, StartReencryptionMaintenance, |b, m| {
    b.start_reencryption_maintenance(&m.org, &m.author, &m.req, m.now).await
});
backend_handler!(RealmActor, FinishReencryptionMaintenance, |b, m| {
    b.finish_reencryption_maintenance(&m.org, &m.author, m.realm_id, m.encryption_revision, m.now)
        .await
});
backend_handler!(RealmActor, GetRealmsForUser, |b, m| b
    .get_realms_for_user(&m.org, &m.user)
    .await);

/// ``"Realm `<hex>` doesn't exist"``: the reference prints ids as bare hex.
pub(crate) fn realm_not_found(realm_id: Uuid) -> Value {
    cmds::status_reason("not_found", format!("Realm `{}` doesn't exist", realm_id.simple()))
}

/// ``"Realm `<hex>` not under maintenance"``.
pub(crate) fn realm_not_in_maintenance(realm_id: Uuid) -> Value {
    cmds::status_reason(
        "not_in_maintenance",
        format!("Realm `{}` not under maintenance", realm_id.simple()),
    )
}

fn bare(status: &str) -> Value {
    cmds::status(status, vec![])
}

/// Verifies a role certificate signed by the requesting device, then its
/// timestamp: the first two checks of `realm_create` and `realm_update_roles`.
fn load_role_certificate(client: &AuthenticatedClient, raw: &[u8]) -> Result<RealmRoleCertificate, Value> {
    let expected = ExpectedAuthor::Device(&client.device_id);
    let cert: RealmRoleCertificate = certif::verify_and_load(raw, &client.verify_key, expected)
        .map_err(|e| cmds::invalid_certification(e.reason()))?;
    let now = DateTime::now();
    if !timestamps_in_the_ballpark(cert.timestamp, now) {
        return Err(cmds::bad_timestamp(now, cert.timestamp));
    }
    Ok(cert)
}

fn granted_role(client: &AuthenticatedClient, cert: RealmRoleCertificate, raw: Vec<u8>) -> RealmGrantedRole {
    RealmGrantedRole {
        realm_id: cert.realm_id,
        user_id: cert.user_id,
        role: cert.role,
        certificate: raw,
        // The certificate's author is the requesting device (checked on load).
        granted_by: client.device_id.clone(),
        granted_on: cert.timestamp,
    }
}

/// `realm_create` (commands.md §8.1). Any profile, OUTSIDER included: every
/// user needs a realm for its user manifest.
pub async fn create(actors: &Actors, client: &AuthenticatedClient, req: RealmCreate) -> Result<Value, Internal> {
    let cert = match load_role_certificate(client, &req.role_certificate) {
        Ok(cert) => cert,
        Err(rep) => return Ok(rep),
    };
    if cert.user_id != client.user_id {
        return Ok(cmds::status_reason(
            "invalid_data",
            "Initial realm role certificate must be self-signed.",
        ));
    }
    if cert.role != Some(RealmRole::Owner) {
        return Ok(cmds::status_reason(
            "invalid_data",
            "Initial realm role certificate must set OWNER role.",
        ));
    }
    let role = granted_role(client, cert, req.role_certificate);
    let realm_id = role.realm_id;
    Ok(
        match actors
            .realm
            .send(CreateRealm {
                org: client.org.clone(),
                role,
            })
            .await?
        {
            Ok(()) => {
                actors.publish(Event::RealmRolesUpdated {
                    org: client.org.clone(),
                    realm_id,
                    user: client.user_id.clone(),
                    role: Some(RealmRole::Owner),
                });
                cmds::ok(vec![])
            }
            Err(RealmCreateError::AlreadyExists) => bare("already_exists"),
            Err(RealmCreateError::Internal(e)) => return Err(e),
        },
    )
}

/// Maps the outcome of a realm read to its reply.
fn realm_read_rep<T>(
    realm_id: Uuid,
    outcome: Result<T, RealmReadError>,
    ok: impl FnOnce(T) -> Value,
) -> Result<Value, Internal> {
    Ok(match outcome {
        Ok(v) => ok(v),
        Err(RealmReadError::NotFound) => realm_not_found(realm_id),
        Err(RealmReadError::NotAllowed) => bare("not_allowed"),
        Err(RealmReadError::Internal(e)) => return Err(e),
    })
}

/// `realm_status` (commands.md §8.2).
pub async fn status(actors: &Actors, client: &AuthenticatedClient, req: RealmStatusReq) -> Result<Value, Internal> {
    let msg = GetRealmStatus {
        org: client.org.clone(),
        user: client.user_id.clone(),
        realm_id: req.realm_id,
    };
    realm_read_rep(req.realm_id, actors.realm.send(msg).await?, |s| {
        let m = s.maintenance.as_ref();
        cmds::ok(vec![
            ("in_maintenance", Value::Boolean(m.is_some())),
            ("maintenance_type", m.map_or(Value::Nil, |m| m.kind.to_value())),
            (
                "maintenance_started_on",
                m.map_or(Value::Nil, |m| m.started_on.to_value()),
            ),
            (
                "maintenance_started_by",
                m.map_or(Value::Nil, |m| Value::from(m.started_by.as_str())),
            ),
            ("encryption_revision", Value::from(s.encryption_revision)),
        ])
    })
}

/// `realm_stats` (commands.md §8.3).
pub async fn stats(actors: &Actors, client: &AuthenticatedClient, req: RealmStatsReq) -> Result<Value, Internal> {
    let msg = GetRealmStats {
        org: client.org.clone(),
        user: client.user_id.clone(),
        realm_id: req.realm_id,
    };
    realm_read_rep(req.realm_id, actors.realm.send(msg).await?, |s| {
        cmds::ok(vec![
            ("blocks_size", Value::from(s.blocks_size)),
            ("vlobs_size", Value::from(s.vlobs_size)),
        ])
    })
}

/// `realm_get_role_certificates` (commands.md §8.4).
pub async fn get_role_certificates(
    actors: &Actors,
    client: &AuthenticatedClient,
    req: RealmGetRoleCertificates,
) -> Result<Value, Internal> {
    let msg = GetRealmRoleCertificates {
        org: client.org.clone(),
        user: client.user_id.clone(),
        realm_id: req.realm_id,
    };
    realm_read_rep(req.realm_id, actors.realm.send(msg).await?, |certs| {
        cmds::ok(vec![(
            "certificates",
            Value::Array(certs.into_iter().map(Value::Binary).collect()),
        )])
    })
}

/// `realm_update_roles` (commands.md §8.5, PG check order).
pub async fn update_roles(
    actors: &Actors,
    client: &AuthenticatedClient,
    req: RealmUpdateRoles,
) -> Result<Value, Internal> {
    use RealmUpdateRolesError as E;
    // The reference checks this before even parsing the request. A profile
    // never changes, so the handshake's is authoritative.
    if client.profile == UserProfile::Outsider {
        return Ok(cmds::status_reason("not_allowed", "Outsider user cannot share realm"));
    }
    let cert = match load_role_certificate(client, &req.role_certificate) {
        Ok(cert) => cert,
        Err(rep) => return Ok(rep),
    };
    if cert.user_id == client.user_id {
        return Ok(cmds::status_reason(
            "invalid_data",
            "Realm role certificate cannot be self-signed.",
        ));
    }
    let role = granted_role(client, cert, req.role_certificate);
    let (realm_id, target, new_role) = (role.realm_id, role.user_id.clone(), role.role);
    let msg = UpdateRealmRoles {
        org: client.org.clone(),
        role,
        recipient_message: req.recipient_message,
    };
    Ok(match actors.realm.send(msg).await? {
        Ok(message) => {
            let org = client.org.clone();
            actors.publish(Event::RealmRolesUpdated {
                org: org.clone(),
                realm_id,
                user: target,
                role: new_role,
            });
            if let Some(m) = message {
                actors.publish(Event::MessageReceived {
                    org,
                    recipient: m.recipient,
                    index: m.index,
                });
            }
            cmds::ok(vec![])
        }
        Err(E::UserNotFound) => cmds::status_reason("not_found", format!("User `{target}` doesn't exist")),
        Err(E::IncompatibleProfile) => cmds::status_reason(
            "incompatible_profile",
            "User with OUTSIDER profile cannot be MANAGER or OWNER",
        ),
        Err(E::UserRevoked) => bare("user_revoked"),
        Err(E::RealmNotFound) => realm_not_found(realm_id),
        Err(E::InMaintenance) => bare("in_maintenance"),
        Err(E::NotAllowed) => bare("not_allowed"),
        Err(E::AlreadyGranted) => bare("already_granted"),
        Err(E::RequireGreaterTimestamp(t)) => cmds::require_greater_timestamp(t),
        Err(E::Internal(e)) => return Err(e),
    })
}

/// `realm_start_reencryption_maintenance` (commands.md §8.6).
pub async fn start_reencryption_maintenance(
    actors: &Actors,
    client: &AuthenticatedClient,
    req: RealmStartReencryptionMaintenance,
) -> Result<Value, Internal> {
    use RealmStartReencryptionError as E;
    let now = DateTime::now();
    if !timestamps_in_the_ballpark(req.timestamp, now) {
        return Ok(cmds::bad_timestamp(now, req.timestamp));
    }
    let (realm_id, revision) = (req.realm_id, req.encryption_revision);
    let msg = StartReencryptionMaintenance {
        org: client.org.clone(),
        author: client.device_id.clone(),
        req,
        now,
    };
    Ok(match actors.realm.send(msg).await? {
        Ok(messages) => {
            let org = client.org.clone();
            actors.publish(Event::RealmMaintenanceStarted {
                org: org.clone(),
                author: client.device_id.clone(),
                realm_id,
                // Checked equal to the realm's new revision, hence positive.
                encryption_revision: revision.unsigned_abs(),
            });
            for m in messages {
                actors.publish(Event::MessageReceived {
                    org: org.clone(),
                    recipient: m.recipient,
                    index: m.index,
                });
            }
            cmds::ok(vec![])
        }
        Err(E::RealmNotFound) => realm_not_found(realm_id),
        Err(E::InMaintenance) => bare("in_maintenance"),
        Err(E::BadEncryptionRevision) => bare("bad_encryption_revision"),
        Err(E::NotAllowed) => bare("not_allowed"),
        Err(E::ParticipantsMismatch) => cmds::status_reason(
            "participants_mismatch",
            "Realm participants and message recipients mismatch",
        ),
        Err(E::Internal(e)) => return Err(e),
    })
}

/// `realm_finish_reencryption_maintenance` (commands.md §8.7).
pub async fn finish_reencryption_maintenance(
    actors: &Actors,
    client: &AuthenticatedClient,
    req: RealmFinishReencryptionMaintenance,
) -> Result<Value, Internal> {
    use RealmFinishReencryptionError as E;
    let msg = FinishReencryptionMaintenance {
        org: client.org.clone(),
        author: client.device_id.clone(),
        realm_id: req.realm_id,
        encryption_revision: req.encryption_revision,
        now: DateTime::now(),
    };
    Ok(match actors.realm.send(msg).await? {
        Ok(encryption_revision) => {
            actors.publish(Event::RealmMaintenanceFinished {
                org: client.org.clone(),
                author: client.device_id.clone(),
                realm_id: req.realm_id,
                encryption_revision,
            });
            cmds::ok(vec![])
        }
        Err(E::RealmNotFound) => realm_not_found(req.realm_id),
        Err(E::NotAllowed) => bare("not_allowed"),
        Err(E::NotInMaintenance) => realm_not_in_maintenance(req.realm_id),
        Err(E::BadEncryptionRevision) => bare("bad_encryption_revision"),
        Err(E::ReencryptionNotOver) => cmds::status_reason("maintenance_error", "Reencryption operations are not over"),
        Err(E::Internal(e)) => return Err(e),
    })
}

/// The realms whose events a subscribing connection receives: those where
/// the user's current role is not nil (events.md §3).
pub async fn realms_for_user(actors: &Actors, client: &AuthenticatedClient) -> Result<HashSet<Uuid>, Internal> {
    actors
        .realm
        .send(GetRealmsForUser {
            org: client.org.clone(),
            user: client.user_id.clone(),
        })
        .await?
}
