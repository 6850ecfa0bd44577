//! The stored form of an [`Event`]: a msgpack map with the event's kind and
//! every field the broker filters on, so that an event written by one server
//! instance is delivered by every other one exactly as it would be locally.

use parsec_protocol::fields::Fields;
use parsec_protocol::types::*;
use parsec_protocol::value::{self, Value};

use crate::event::Event;

fn s(v: &impl std::fmt::Display) -> Value {
    Value::from(v.to_string())
}

/// Encodes an event for the event log, as published by the instance `origin`.
pub fn encode(event: &Event, origin: u64) -> Vec<u8> {
    let (kind, fields): (&str, Vec<(&str, Value)>) = match event {
        Event::Pinged { org, author, ping } => (
            "pinged",
            vec![
                ("org", s(org)),
                ("author", s(author)),
                ("ping", Value::from(ping.as_str())),
            ],
        ),
        Event::MessageReceived { org, recipient, index } => (
            "message.received",
            vec![
                ("org", s(org)),
                ("recipient", s(recipient)),
                ("index", Value::from(*index)),
            ],
        ),
        Event::InviteStatusChanged {
            org,
            greeter,
            token,
            status,
        } => (
            "invite.status_changed",
            vec![
                ("org", s(org)),
                ("greeter", s(greeter)),
                ("token", uuid_value(*token)),
                ("status", status.to_value()),
            ],
        ),
        Event::RealmRolesUpdated {
            org,
            realm_id,
            user,
            role,
        } => (
            "realm.roles_updated",
            vec![
                ("org", s(org)),
                ("realm_id", uuid_value(*realm_id)),
                ("user", s(user)),
                ("role", role.map(RealmRole::to_value).unwrap_or(Value::Nil)),
            ],
        ),
        Event::RealmVlobsUpdated {
            org,
            author,
            realm_id,
            checkpoint,
            src_id,
            src_version,
        } => (
            "realm.vlobs_updated",
            vec![
                ("org", s(org)),
                ("author", s(author)),
                ("realm_id", uuid_value(*realm_id)),
                ("checkpoint", Value::from(*checkpoint)),
                ("src_id", uuid_value(*src_id)),
                ("src_version", Value::from(*src_version)),
            ],
        ),
        Event::RealmMaintenanceStarted {
            org,
            author,
            realm_id,
            encryption_revision,
        } => (
            "realm.maintenance_started",
            vec![
                ("org", s(org)),
                ("author", s(author)),
                ("realm_id", uuid_value(*realm_id)),
                ("encryption_revision", Value::from(*encryption_revision)),
            ],
        ),
        Event::RealmMaintenanceFinished {
            org,
            author,
            realm_id,
            encryption_revision,
        } => (
            "realm.maintenance_finished",
            vec![
                ("org", s(org)),
                ("author", s(author)),
                ("realm_id", uuid_value(*realm_id)),
                ("encryption_revision", Value::from(*encryption_revision)),
            ],
        ),
        Event::PkiEnrollmentUpdated { org } => ("pki_enrollment.updated", vec![("org", s(org))]),
        Event::UserRevoked { org, user } => ("user.revoked", vec![("org", s(org)), ("user", s(user))]),
        Event::OrganizationExpired { org } => ("organization.expired", vec![("org", s(org))]),
        Event::InviteConduitUpdated { org, token } => (
            "invite.conduit_updated",
            vec![("org", s(org)), ("token", uuid_value(*token))],
        ),
    };
    let mut all = vec![("kind", Value::from(kind)), ("origin", Value::from(origin))];
    all.extend(fields);
    value::pack(&value::map(all))
}

/// Decodes a stored event and the instance that published it (absent from
/// records of older versions); `None` for a record this version does not
/// know (written by a newer instance during a rolling upgrade: skipped, not
/// fatal).
pub fn decode(raw: &[u8]) -> Option<(Event, Option<u64>)> {
    match decode_unless_from(raw, None)? {
        Decoded::Event(event, origin) => Some((event, origin)),
        Decoded::From(_) => None,
    }
}

/// A record read back from the log.
pub enum Decoded {
    Event(Event, Option<u64>),
    /// Published by the instance asked about: not decoded further.
    From(u64),
}

/// Like [`decode`], stopping short for a record of the instance `skip`
/// (an instance reads back its own records only to pass over them).
pub fn decode_unless_from(raw: &[u8], skip: Option<u64>) -> Option<Decoded> {
    let map = value::unpack_map(raw).ok()?;
    let mut f = Fields::new(&map);
    let kind: String = f.req("kind")?;
    let origin: Option<u64> = f.opt("origin")?;
    if let Some(origin) = origin.filter(|o| Some(*o) == skip) {
        return Some(Decoded::From(origin));
    }
    let org: OrganizationId = f.req("org")?;
    let event = match kind.as_str() {
        "pinged" => Event::Pinged {
            org,
            author: f.req("author")?,
            ping: f.req("ping")?,
        },
        "message.received" => Event::MessageReceived {
            org,
            recipient: f.req("recipient")?,
            index: f.req("index")?,
        },
        "invite.status_changed" => Event::InviteStatusChanged {
            org,
            greeter: f.req("greeter")?,
            token: f.req("token")?,
            status: f.req("status")?,
        },
        "realm.roles_updated" => Event::RealmRolesUpdated {
            org,
            realm_id: f.req("realm_id")?,
            user: f.req("user")?,
            role: f.req_nullable("role")?,
        },
        "realm.vlobs_updated" => Event::RealmVlobsUpdated {
            org,
            author: f.req("author")?,
            realm_id: f.req("realm_id")?,
            checkpoint: f.req("checkpoint")?,
            src_id: f.req("src_id")?,
            src_version: f.req("src_version")?,
        },
        "realm.maintenance_started" => Event::RealmMaintenanceStarted {
            org,
            author: f.req("author")?,
            realm_id: f.req("realm_id")?,
            encryption_revision: f.req("encryption_revision")?,
        },
        "realm.maintenance_finished" => Event::RealmMaintenanceFinished {
            org,
            author: f.req("author")?,
            realm_id: f.req("realm_id")?,
            encryption_revision: f.req("encryption_revision")?,
        },
        "pki_enrollment.updated" => Event::PkiEnrollmentUpdated { org },
        "user.revoked" => Event::UserRevoked {
            org,
            user: f.req("user")?,
        },
        "organization.expired" => Event::OrganizationExpired { org },
        "invite.conduit_updated" => Event::InviteConduitUpdated {
            org,
            token: f.req("token")?,
        },
        _ => return None,
    };
    Some(Decoded::Event(event, origin))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_event_round_trips() {
        let org = OrganizationId::parse("Org").unwrap();
        let dev = DeviceId::parse("alice@laptop").unwrap();
        let user = UserId::parse("bob").unwrap();
        let id = Uuid::new_v4();
        let events = vec![
            Event::Pinged {
                org: org.clone(),
                author: dev.clone(),
                ping: "p".into(),
            },
            Event::MessageReceived {
                org: org.clone(),
                recipient: user.clone(),
                index: 3,
            },
            Event::InviteStatusChanged {
                org: org.clone(),
                greeter: user.clone(),
                token: id,
                status: InvitationStatus::Ready,
            },
            Event::RealmRolesUpdated {
                org: org.clone(),
                realm_id: id,
                user: user.clone(),
                role: None,
            },
            Event::RealmRolesUpdated {
                org: org.clone(),
                realm_id: id,
                user: user.clone(),
                role: Some(RealmRole::Reader),
            },
            Event::RealmVlobsUpdated {
                org: org.clone(),
                author: dev.clone(),
                realm_id: id,
                checkpoint: 7,
                src_id: Uuid::new_v4(),
                src_version: 2,
            },
            Event::RealmMaintenanceStarted {
                org: org.clone(),
                author: dev.clone(),
                realm_id: id,
                encryption_revision: 2,
            },
            Event::RealmMaintenanceFinished {
                org: org.clone(),
                author: dev,
                realm_id: id,
                encryption_revision: 2,
            },
            Event::PkiEnrollmentUpdated { org: org.clone() },
            Event::UserRevoked { org: org.clone(), user },
            Event::OrganizationExpired { org: org.clone() },
            Event::InviteConduitUpdated {
                org: org.clone(),
                token: id,
            },
        ];
        for e in events {
            assert_eq!(decode(&encode(&e, 42)), Some((e, Some(42))));
        }
        // Records of earlier versions name no origin.
        let older = value::pack(&value::map([
            ("kind", Value::from("organization.expired")),
            ("org", Value::from("Org")),
        ]));
        assert_eq!(decode(&older), Some((Event::OrganizationExpired { org }, None)));
        assert_eq!(decode(b"\x80"), None);
        let ping = Event::Pinged {
            org: OrganizationId::parse("Org").unwrap(),
            author: DeviceId::parse("alice@laptop").unwrap(),
            ping: "x".into(),
        };
        assert!(matches!(
            decode_unless_from(&encode(&ping, 7), Some(7)),
            Some(Decoded::From(7))
        ));
        assert!(matches!(
            decode_unless_from(&encode(&ping, 7), Some(8)),
            Some(Decoded::Event(e, Some(7))) if e == ping
        ));
    }
}
