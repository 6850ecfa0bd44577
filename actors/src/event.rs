//! Backend events (events.md): what commands emit, and their wire form.
//!
//! Events are published to the [`crate::broker::Broker`], which decides who
//! receives them (the filters of events.md §3). Internal-only events (user
//! revoked, organization expired) close connections instead of being queued;
//! `invite.conduit_updated` only wakes conduit waiters.

use parsec_protocol::cmds;
use parsec_protocol::types::*;
use parsec_protocol::value::Value;

/// An event, with what the emitter knows (events.md §2).
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    Pinged {
        org: OrganizationId,
        author: DeviceId,
        ping: String,
    },
    MessageReceived {
        org: OrganizationId,
        recipient: UserId,
        index: u64,
    },
    InviteStatusChanged {
        org: OrganizationId,
        greeter: UserId,
        token: Uuid,
        status: InvitationStatus,
    },
    RealmRolesUpdated {
        org: OrganizationId,
        realm_id: Uuid,
        user: UserId,
        role: Option<RealmRole>,
    },
    RealmVlobsUpdated {
        org: OrganizationId,
        author: DeviceId,
        realm_id: Uuid,
        checkpoint: u64,
        src_id: Uuid,
        src_version: u64,
    },
    RealmMaintenanceStarted {
        org: OrganizationId,
        author: DeviceId,
        realm_id: Uuid,
        encryption_revision: u64,
    },
    RealmMaintenanceFinished {
        org: OrganizationId,
        author: DeviceId,
        realm_id: Uuid,
        encryption_revision: u64,
    },
    PkiEnrollmentUpdated {
        org: OrganizationId,
    },
    /// Internal: closes every authenticated connection of the user.
    UserRevoked {
        org: OrganizationId,
        user: UserId,
    },
    /// Internal: closes every authenticated connection of the organization.
    OrganizationExpired {
        org: OrganizationId,
    },
    /// Internal: a conduit step wrote to this invitation; wakes the peers
    /// waiting on it (commands.md §7).
    InviteConduitUpdated {
        org: OrganizationId,
        token: Uuid,
    },
}

impl Event {
    pub fn org(&self) -> &OrganizationId {
        match self {
            Event::Pinged { org, .. }
            | Event::MessageReceived { org, .. }
            | Event::InviteStatusChanged { org, .. }
            | Event::RealmRolesUpdated { org, .. }
            | Event::RealmVlobsUpdated { org, .. }
            | Event::RealmMaintenanceStarted { org, .. }
            | Event::RealmMaintenanceFinished { org, .. }
            | Event::PkiEnrollmentUpdated { org }
            | Event::UserRevoked { org, .. }
            | Event::OrganizationExpired { org }
            | Event::InviteConduitUpdated { org, .. } => org,
        }
    }

    /// The `events_listen` reply for a client-visible event.
    pub fn to_wire(&self) -> Option<Value> {
        let (name, fields): (&str, Vec<(&str, Value)>) = match self {
            Event::Pinged { ping, .. } => ("pinged", vec![("ping", Value::from(ping.as_str()))]),
            Event::MessageReceived { index, .. } => ("message.received", vec![("index", Value::from(*index))]),
            Event::InviteStatusChanged { token, status, .. } => (
                "invite.status_changed",
                vec![("token", uuid_value(*token)), ("invitation_status", status.to_value())],
            ),
            Event::RealmRolesUpdated { realm_id, role, .. } => (
                "realm.roles_updated",
                vec![
                    ("realm_id", uuid_value(*realm_id)),
                    ("role", role.map(RealmRole::to_value).unwrap_or(Value::Nil)),
                ],
            ),
            Event::RealmVlobsUpdated {
                realm_id,
                checkpoint,
                src_id,
                src_version,
                ..
            } => (
                "realm.vlobs_updated",
                vec![
                    ("realm_id", uuid_value(*realm_id)),
                    ("checkpoint", Value::from(*checkpoint)),
                    ("src_id", uuid_value(*src_id)),
                    ("src_version", Value::from(*src_version)),
                ],
            ),
            Event::RealmMaintenanceStarted {
                realm_id,
                encryption_revision,
                ..
            } => (
                "realm.maintenance_started",
                vec![
                    ("realm_id", uuid_value(*realm_id)),
                    ("encryption_revision", Value::from(*encryption_revision)),
                ],
            ),
            Event::RealmMaintenanceFinished {
                realm_id,
                encryption_revision,
                ..
            } => (
                "realm.maintenance_finished",
                vec![
                    ("realm_id", uuid_value(*realm_id)),
                    ("encryption_revision", Value::from(*encryption_revision)),
                ],
            ),
            Event::PkiEnrollmentUpdated { .. } => ("pki_enrollment.updated", vec![]),
            Event::UserRevoked { .. } | Event::OrganizationExpired { .. } | Event::InviteConduitUpdated { .. } => {
                return None;
            }
        };
        let mut all = vec![("event", Value::from(name))];
        all.extend(fields);
        Some(cmds::ok(all))
    }
}
