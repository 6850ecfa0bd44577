//! Shared by the behaviour suites: a stand-in connection that records what
//! the broker pushes to it, and a way to wait until every event published so
//! far has been delivered, on either store.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use actix::prelude::*;
use parsec_actors::Actors;
use parsec_actors::broker::{ConnInfo, Push, Register, Subscribe};
use parsec_actors::client::AuthenticatedClient;
use parsec_protocol::types::*;

struct Collector {
    pushed: Arc<Mutex<Vec<Push>>>,
}

impl Actor for Collector {
    type Context = Context<Self>;
}

impl Handler<Push> for Collector {
    type Result = ();
    fn handle(&mut self, msg: Push, _: &mut Self::Context) {
        self.pushed.lock().unwrap().push(msg);
    }
}

#[derive(Message)]
#[rtype(result = "()")]
struct Flush;

impl Handler<Flush> for Collector {
    type Result = ();
    fn handle(&mut self, _: Flush, _: &mut Self::Context) {}
}

/// A connection registered with the broker and subscribed to events.
pub struct Subscribed {
    actors: Actors,
    org: OrganizationId,
    addr: Addr<Collector>,
    pushed: Arc<Mutex<Vec<Push>>>,
}

/// Registers `client` with the broker and subscribes it, with `realms`, as
/// `events_subscribe` does.
pub async fn subscribe(actors: &Actors, client: &AuthenticatedClient, realms: HashSet<Uuid>) -> Subscribed {
    let pushed = Arc::new(Mutex::new(Vec::new()));
    let addr = Collector { pushed: pushed.clone() }.start();
    let info = ConnInfo {
        conn_id: client.conn_id,
        org: client.org.clone(),
        user_id: client.user_id.clone(),
        device_id: client.device_id.clone(),
        profile: client.profile,
    };
    let register = Register {
        info,
        addr: addr.clone().recipient(),
        overflowed: Default::default(),
    };
    actors.broker.send(register).await.unwrap();
    actors
        .broker
        .send(Subscribe {
            org: client.org.clone(),
            conn_id: client.conn_id,
            realms,
        })
        .await
        .unwrap();
    Subscribed {
        actors: actors.clone(),
        org: client.org.clone(),
        addr,
        pushed,
    }
}

impl Subscribed {
    /// Everything pushed so far, drained, once every event published before
    /// this call has been delivered.
    pub async fn drain(&self) -> Vec<Push> {
        if matches!(self.actors.events, parsec_actors::EventBus::Postgres(_)) {
            barrier(&self.actors).await;
        }
        // Mailboxes are FIFO: once the broker answered a later message, it
        // has handled every publication before it; same for the collector.
        let probe = Subscribe {
            org: self.org.clone(),
            conn_id: u64::MAX,
            realms: Default::default(),
        };
        self.actors.broker.send(probe).await.unwrap();
        self.addr.send(Flush).await.unwrap();
        std::mem::take(&mut *self.pushed.lock().unwrap())
    }
}

static BARRIERS: AtomicU64 = AtomicU64::new(1);

/// On PostgreSQL, events reach the broker through the event log: publish a
/// marker event after everything published so far and wait until the broker
/// delivers it, which it does in log order, so after every earlier event.
async fn barrier(actors: &Actors) {
    let org = OrganizationId::parse(&format!("Barrier{}", BARRIERS.fetch_add(1, Ordering::Relaxed))).unwrap();
    let pushed = Arc::new(Mutex::new(Vec::new()));
    let addr = Collector { pushed: pushed.clone() }.start();
    let conn_id = u64::MAX - 1;
    let info = ConnInfo {
        conn_id,
        org: org.clone(),
        user_id: UserId::parse("barrier").unwrap(),
        device_id: DeviceId::parse("barrier@barrier").unwrap(),
        profile: UserProfile::Admin,
    };
    actors
        .broker
        .send(Register {
            info,
            addr: addr.clone().recipient(),
            overflowed: Default::default(),
        })
        .await
        .unwrap();
    actors
        .broker
        .send(Subscribe {
            org: org.clone(),
            conn_id,
            realms: Default::default(),
        })
        .await
        .unwrap();
    actors.publish(parsec_actors::event::Event::PkiEnrollmentUpdated { org });
    for _ in 0..400 {
        addr.send(Flush).await.unwrap();
        if !pushed.lock().unwrap().is_empty() {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    panic!("the barrier event never came back through the event log");
}
