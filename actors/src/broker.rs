//! The notification broker: knows every authenticated connection of this
//! process and fans events out to those entitled to them (events.md §3).
//!
//! Accepts: [`Register`] / [`Unregister`] (every authenticated connection, so
//! that revocation and expiry can close it even if it never subscribed),
//! [`Subscribe`] (`events_subscribe`: start capturing events, with the
//! connection's realm set), and [`Publish`].
//!
//! Invitations (see the section at the end): [`RegisterInvited`] /
//! [`UnregisterInvited`] (claimer connections, closed when their invitation
//! is deleted) and [`WatchConduit`] (wake-ups of conduit waiters). Claimer
//! presence (`invite_list`'s READY) is counted in the store, not here.
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
use bytes::Bytes;
use parsec_protocol::types::*;
use parsec_protocol::value::{self, Value};

use crate::event::Event;

/// What the broker sends to a connection.
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub enum Push {
    /// A client-visible event, already encoded: once per event, whatever
    /// the number of connections it goes to (a fan-out to N listeners
    /// would otherwise copy and encode it N times).
    Event(Bytes),
    /// Close the connection (revoked user, expired organization).
    Close,
    /// The invitation of an invited connection was deleted: close it, once
    /// the command it is running (if any) has been answered.
    InvitationDeleted,
    /// The server is stopping: close (1001), once the command running (if
    /// any) has been answered; queued requests are dropped unanswered.
    Shutdown,
}

impl Push {
    /// The event, decoded (for tests and logs).
    pub fn event_value(&self) -> Option<Value> {
        match self {
            Push::Event(bytes) => value::unpack(bytes).ok(),
            _ => None,
        }
    }
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

/// Server shutdown: ask every registered connection to close cleanly, after
/// the command it is running ([`Push::Shutdown`]). Returns how many were asked.
#[derive(Message)]
#[rtype(result = "usize")]
pub struct CloseAll;

/// See the module documentation.
#[derive(Default)]
pub struct Broker {
    orgs: HashMap<OrganizationId, HashMap<u64, Conn>>,
    /// Invited connections, claimer presence and conduit wake-ups.
    invitations: Invitations,
}

/// Publishers use `do_send`, which does not wait on the mailbox's capacity:
/// the broker never makes a command wait.
impl Actor for Broker {
    type Context = Context<Self>;
}

impl Handler<Register> for Broker {
    type Result = ();
    fn handle(&mut self, msg: Register, _: &mut Self::Context) {
        let conn = Conn {
            info: msg.info,
            addr: msg.addr,
            realms: None,
            overflowed: msg.overflowed,
        };
        self.orgs
            .entry(conn.info.org.clone())
            .or_default()
            .insert(conn.info.conn_id, conn);
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

impl Handler<CloseAll> for Broker {
    type Result = usize;
    fn handle(&mut self, _: CloseAll, _: &mut Self::Context) -> usize {
        // `do_send`, past the mailbox's bound: one message per connection,
        // once, and a connection whose mailbox happens to be full (events
        // piling up while its socket write is slow) must still close with
        // 1001 rather than be cut at the shutdown timeout.
        let mut asked = 0;
        for conn in self.orgs.values().flat_map(|c| c.values()) {
            conn.addr.do_send(Push::Shutdown);
            asked += 1;
        }
        for addr in self.invitations.claimers.values().flat_map(|c| c.values()) {
            addr.do_send(Push::Shutdown);
            asked += 1;
        }
        asked
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
    let Some(realms) = conn.realms.as_mut() else {
        return Action::Skip;
    };
    let deliver = match event {
        Event::Pinged { author, .. } => *author != info.device_id,
        Event::MessageReceived { recipient, .. } => *recipient == info.user_id,
        Event::InviteStatusChanged { greeter, .. } => *greeter == info.user_id,
        Event::RealmRolesUpdated {
            user, realm_id, role, ..
        } => {
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
        Event::UserRevoked { .. } | Event::OrganizationExpired { .. } | Event::InviteConduitUpdated { .. } => false,
    };
    if deliver { Action::Deliver } else { Action::Skip }
}

impl Handler<Publish> for Broker {
    type Result = ();
    fn handle(&mut self, Publish(event): Publish, _: &mut Self::Context) {
        self.invitations.on_event(&event);
        if matches!(event, Event::InviteConduitUpdated { .. }) {
            return; // internal only: no connection receives it
        }
        let Some(conns) = self.orgs.get_mut(event.org()) else {
            return;
        };
        let wire = event.to_wire().map(|v| Bytes::from(value::pack(&v)));
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

// ------------------------------------------------------------- invitations
//
// Everything here is fed by published events only (`invite.status_changed`,
// `invite.conduit_updated`), never by the invite domain directly: once events
// arrive from PostgreSQL's NOTIFY, claimer presence and wake-ups follow peers
// connected to other server instances through the same path.

/// Registers an invited (claimer) connection, so that deleting its
/// invitation closes it.
#[derive(Message)]
#[rtype(result = "()")]
pub struct RegisterInvited {
    pub org: OrganizationId,
    pub token: Uuid,
    pub conn_id: u64,
    pub addr: Recipient<Push>,
}

/// The invited connection ended.
#[derive(Message)]
#[rtype(result = "()")]
pub struct UnregisterInvited {
    pub org: OrganizationId,
    pub token: Uuid,
    pub conn_id: u64,
}

/// Subscribes to the wake-ups of one invitation's conduit. The receiver
/// sees a new value after each `invite.conduit_updated` or
/// `invite.status_changed` of that invitation published after this message
/// was handled: subscribe, then write, then wait, and no peer action falls in
/// between (README §0 item 9). Wake-ups are level-triggered: several events
/// while the waiter is busy leave one pending change, hence one more look.
#[derive(Message)]
#[rtype(result = "tokio::sync::watch::Receiver<u64>")]
pub struct WatchConduit {
    pub org: OrganizationId,
    pub token: Uuid,
}

type InvitationKey = (OrganizationId, Uuid);

#[derive(Default)]
struct Invitations {
    /// Invited connections per invitation.
    claimers: HashMap<InvitationKey, HashMap<u64, Recipient<Push>>>,
    /// One channel per invitation someone waits on; the value is a counter.
    wakeups: HashMap<InvitationKey, tokio::sync::watch::Sender<u64>>,
}

impl Invitations {
    fn on_event(&mut self, event: &Event) {
        let key = match event {
            Event::InviteConduitUpdated { org, token } => (org.clone(), *token),
            Event::InviteStatusChanged { org, token, status, .. } => {
                let key = (org.clone(), *token);
                if *status == InvitationStatus::Deleted {
                    // Each connection flushes its running command's answer
                    // first (the last `invite_4_claimer_communicate`).
                    for (conn_id, addr) in self.claimers.remove(&key).unwrap_or_default() {
                        if addr.try_send(Push::InvitationDeleted).is_err() {
                            log::warn!("conn={conn_id}: cannot tell an invited connection its invitation is deleted");
                        }
                    }
                }
                key
            }
            _ => return,
        };
        if let Some(tx) = self.wakeups.get(&key) {
            if tx.receiver_count() == 0 {
                self.wakeups.remove(&key);
            } else {
                tx.send_modify(|n| *n = n.wrapping_add(1));
            }
        }
    }
}

impl Handler<RegisterInvited> for Broker {
    type Result = ();
    fn handle(&mut self, msg: RegisterInvited, _: &mut Self::Context) {
        let claimers = self.invitations.claimers.entry((msg.org, msg.token)).or_default();
        claimers.insert(msg.conn_id, msg.addr);
    }
}

impl Handler<UnregisterInvited> for Broker {
    type Result = ();
    fn handle(&mut self, msg: UnregisterInvited, _: &mut Self::Context) {
        let key = (msg.org, msg.token);
        if let Some(claimers) = self.invitations.claimers.get_mut(&key) {
            claimers.remove(&msg.conn_id);
            if claimers.is_empty() {
                self.invitations.claimers.remove(&key);
            }
        }
    }
}

impl Handler<WatchConduit> for Broker {
    type Result = MessageResult<WatchConduit>;
    fn handle(&mut self, msg: WatchConduit, _: &mut Self::Context) -> Self::Result {
        let wakeups = &mut self.invitations.wakeups;
        let key = (msg.org, msg.token);
        if let Some(tx) = wakeups.get(&key) {
            return MessageResult(tx.subscribe());
        }
        // A new channel: drop those nobody waits on any more (finished or
        // abandoned exchanges), so the map stays as small as the number of
        // exchanges in progress.
        wakeups.retain(|_, tx| tx.receiver_count() > 0);
        let (tx, rx) = tokio::sync::watch::channel(0);
        wakeups.insert(key, tx);
        MessageResult(rx)
    }
}
