//! The notification broker: knows every authenticated connection of this
//! process and fans events out to those entitled to them (events.md §3).
//!
//! Accepts: [`Register`] / [`Unregister`] (every authenticated connection, so
//! that revocation and expiry can close it even if it never subscribed),
//! [`Subscribe`] (`events_subscribe`: start capturing events, with the
//! connection's realm set), and [`Publish`].
//!
//! It must never wait on a connection: delivery is `try_send` into the
//! connection's bounded mailbox. A connection whose mailbox is full is too slow
//! to keep up; it is told to close (through a flag it checks, since its
//! mailbox cannot take one more message) and dropped from the broker, so one
//! stalled client never holds the others back. The client reconnects and
//! resyncs, which is better than silently missing a change.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use actix::prelude::*;
use parsec_protocol::types::*;
use parsec_protocol::value::Value;

use crate::event::Event;

/// What the broker sends to a connection.
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub enum Push {
    /// A client-visible event, already in wire form.
    Event(Value),
    /// Close the connection (revoked user, expired organization).
    Close,
}

/// Identity of an authenticated connection, as the broker filters on it.
#[derive(Debug, Clone)]
pub struct ConnInfo {
    pub conn_id: u64,
    pub org: OrganizationId,
    pub user_id: UserId,
    pub device_id: DeviceId,
    pub profile: UserProfile,
}

struct Conn {
    info: ConnInfo,
    addr: Recipient<Push>,
    /// `None` until `events_subscribe`.
    realms: Option<HashSet<Uuid>>,
    overflowed: Arc<AtomicBool>,
}

/// Registers an authenticated connection.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Register {
    pub info: ConnInfo,
    pub addr: Recipient<Push>,
    /// Set by the broker when the connection could not keep up.
    pub overflowed: Arc<AtomicBool>,
}

/// The connection ended.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Unregister {
    pub org: OrganizationId,
    pub conn_id: u64,
}

/// `events_subscribe`: start capturing events for this connection.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Subscribe {
    pub org: OrganizationId,
    pub conn_id: u64,
    /// Realms where the user currently has a role.
    pub realms: HashSet<Uuid>,
}

/// An event emitted by a command.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Publish(pub Event);

/// See the module documentation.
#[derive(Default)]
pub struct Broker {
    orgs: HashMap<OrganizationId, HashMap<u64, Conn>>,
}

/// Publishers use `do_send`, which does not wait on the mailbox's capacity:
/// the broker never makes a command wait.
impl Actor for Broker {
    type Context = Context<Self>;
}

impl Handler<Register> for Broker {
    type Result = ();
    fn handle(&mut self, msg: Register, _: &mut Self::Context) {
        let conn = Conn { info: msg.info, addr: msg.addr, realms: None, overflowed: msg.overflowed };
        self.orgs.entry(conn.info.org.clone()).or_default().insert(conn.info.conn_id, conn);
    }
}

impl Handler<Unregister> for Broker {
    type Result = ();
    fn handle(&mut self, msg: Unregister, _: &mut Self::Context) {
        if let Some(conns) = self.orgs.get_mut(&msg.org) {
            conns.remove(&msg.conn_id);
            if conns.is_empty() {
                self.orgs.remove(&msg.org);
            }
        }
    }
}

impl Handler<Subscribe> for Broker {
    type Result = ();
    fn handle(&mut self, msg: Subscribe, _: &mut Self::Context) {
        if let Some(conn) = self.orgs.get_mut(&msg.org).and_then(|c| c.get_mut(&msg.conn_id)) {
            conn.realms.get_or_insert(msg.realms);
        }
    }
}

/// What to do with one event for one connection.
enum Action {
    Skip,
    Deliver,
    Close,
}

fn action_for(conn: &mut Conn, event: &Event) -> Action {
    let info = &conn.info;
    match event {
        Event::UserRevoked { user, .. } if *user == info.user_id => return Action::Close,
        Event::OrganizationExpired { .. } => return Action::Close,
        _ => {}
    }
    let Some(realms) = conn.realms.as_mut() else { return Action::Skip };
    let deliver = match event {
        Event::Pinged { author, .. } => *author != info.device_id,
        Event::MessageReceived { recipient, .. } => *recipient == info.user_id,
        Event::InviteStatusChanged { greeter, .. } => *greeter == info.user_id,
        Event::RealmRolesUpdated { user, realm_id, role, .. } => {
            if *user == info.user_id {
                if role.is_some() {
                    realms.insert(*realm_id);
                } else {
                    realms.remove(realm_id);
                }
            }
            *user == info.user_id
        }
        Event::RealmVlobsUpdated { author, realm_id, .. }
        | Event::RealmMaintenanceStarted { author, realm_id, .. }
        | Event::RealmMaintenanceFinished { author, realm_id, .. } => {
            *author != info.device_id && realms.contains(realm_id)
        }
        // The reference also leaks these to other organizations' admins; we
        // keep them inside the organization.
        Event::PkiEnrollmentUpdated { .. } => true,
        Event::UserRevoked { .. } | Event::OrganizationExpired { .. } => false,
    };
    if deliver { Action::Deliver } else { Action::Skip }
}

impl Handler<Publish> for Broker {
    type Result = ();
    fn handle(&mut self, Publish(event): Publish, _: &mut Self::Context) {
        let Some(conns) = self.orgs.get_mut(event.org()) else { return };
        let wire = event.to_wire();
        let mut dropped = Vec::new();
        for (id, conn) in conns.iter_mut() {
            let push = match action_for(conn, &event) {
                Action::Skip => continue,
                Action::Close => Push::Close,
                Action::Deliver => match &wire {
                    Some(v) => Push::Event(v.clone()),
                    None => continue,
                },
            };
            if conn.addr.try_send(push).is_err() {
                log::warn!(
                    "conn={} org={} device={}: event queue full, closing the connection",
                    id,
                    conn.info.org,
                    conn.info.device_id
                );
                conn.overflowed.store(true, Ordering::Release);
                dropped.push(*id);
            }
        }
        for id in dropped {
            conns.remove(&id);
        }
    }
}
