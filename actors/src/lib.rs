//! The Parsec server's actor system and domain rules.
//!
//! Layout:
//! - [`session`]: one actor per websocket client (handshake, request queue,
//!   events), and the dispatch from commands to domains;
//! - [`organization`], [`user`], [`realm`], [`vlob`], [`block`], [`message`],
//!   [`invite`], [`pki`]: domain actors owning their storage backend, with the
//!   rules of each command;
//! - [`permissions`]: the profile checks the reference makes before parsing;
//! - [`email`]: invitation e-mails (MOCKED folder or SMTP);
//! - [`broker`]: fan-out of [`event`]s to connections;
//! - [`admin`], [`anonymous`]: the administration REST API and the anonymous
//!   HTTP route, as plain functions of the actors;
//! - [`backend`]: storage traits, and the in-memory store;
//! - [`blockstore`]: where block bytes live;
//! - [`webhook`]: the organization bootstrap webhook;
//! - [`health`]: the readiness probe of the storage.
//!
//! Nothing here knows about HTTP servers or command lines: `parsec-server`
//! starts the actors and routes requests to them.

pub mod admin;
pub mod anonymous;
pub mod backend;
pub mod block;
pub mod blockstore;
pub mod broker;
pub mod client;
pub mod email;
pub mod event;
pub mod event_record;
mod grouping;
pub mod health;
pub mod invite;
pub mod message;
pub mod organization;
pub mod permissions;
pub mod pki;
pub mod realm;
pub mod session;
pub mod user;
pub mod vlob;
pub mod webhook;

pub use grouping::Replies;

use std::sync::Arc;

use actix::prelude::*;

use backend::{Backends, Internal};

/// Server settings the domain rules depend on.
#[derive(Clone)]
pub struct Settings {
    /// Bearer token of the administration API.
    pub administration_token: String,
    /// Allow bootstrapping organizations that were never created (token `""`).
    pub spontaneous_organization_bootstrap: bool,
    /// Default `active_users_limit` of new organizations.
    pub organization_initial_active_users_limit: Option<u64>,
    /// Default `user_profile_outsider_allowed` of new organizations.
    pub organization_initial_user_profile_outsider_allowed: bool,
    /// Invitation e-mails (`--email-*`): sender, and MOCKED or SMTP.
    pub email: email::EmailConfig,
    /// `--backend-addr`, for the links of invitation e-mails.
    pub backend_addr: email::BackendAddr,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("administration_token", &"***")
            .field(
                "spontaneous_organization_bootstrap",
                &self.spontaneous_organization_bootstrap,
            )
            .field(
                "organization_initial_active_users_limit",
                &self.organization_initial_active_users_limit,
            )
            .field(
                "organization_initial_user_profile_outsider_allowed",
                &self.organization_initial_user_profile_outsider_allowed,
            )
            .field("email", &self.email)
            .field("backend_addr", &self.backend_addr)
            .finish()
    }
}

/// Addresses of the running actors, cloned into every connection.
#[derive(Clone)]
pub struct Actors {
    pub organization: Addr<organization::OrganizationActor>,
    pub user: Addr<user::UserActor>,
    pub realm: Addr<realm::RealmActor>,
    pub vlob: Addr<vlob::VlobActor>,
    pub block: Addr<block::BlockActor>,
    pub message: Addr<message::MessageActor>,
    pub invite: Addr<invite::InviteActor>,
    pub pki: Addr<pki::PkiActor>,
    pub broker: Addr<broker::Broker>,
    /// Where published events go (see [`EventBus`]).
    pub events: EventBus,
    /// A websocket idle this long gets a ping (keeps proxies and NATs from
    /// dropping quiet connections; dead peers are found by TCP keepalive).
    pub keepalive: std::time::Duration,
    pub settings: Arc<Settings>,
    /// `--organization-bootstrap-webhook`, called after each bootstrap.
    pub bootstrap_webhook: Option<Arc<webhook::BootstrapWebhook>>,
}

/// Default of [`Actors::keepalive`].
pub const DEFAULT_KEEPALIVE: std::time::Duration = std::time::Duration::from_secs(30);

/// Where events go once a command has published them.
#[derive(Clone)]
pub enum EventBus {
    /// Straight to this process's broker (in-memory store: one instance).
    Local,
    /// To this process's broker and through the database's event log, which
    /// every other instance reads and feeds to its own broker.
    Postgres(Addr<backend::postgres::events::EventWriter>),
}

impl EventBus {
    /// Publishes an event, for this process's `broker` or through the log;
    /// never waits. Actors publishing from their own futures (the invite
    /// actor) hold the bus and the broker to call this.
    pub fn publish(&self, broker: &Addr<broker::Broker>, event: event::Event) {
        match self {
            EventBus::Local => broker.do_send(broker::Publish(event)),
            EventBus::Postgres(writer) => {
                broker.do_send(broker::Publish(event.clone()));
                writer.do_send(backend::postgres::events::Append(event));
            }
        }
    }
}

impl Actors {
    /// Starts every actor once, on the current arbiter (call from the actix
    /// system, before the HTTP server's per-worker factories).
    pub fn start(backends: Backends, settings: Settings) -> Self {
        Self::start_with_events(backends, settings, EventBus::Local)
    }

    /// Like [`Actors::start`], with events going through `events`.
    pub fn start_with_events(backends: Backends, settings: Settings, events: EventBus) -> Self {
        // First: the invite actor publishes through it.
        let broker = broker::Broker::default().start();
        Self {
            organization: organization::OrganizationActor::new(backends.organization.clone()).start(),
            user: user::UserActor::new(backends.user.clone()).start(),
            realm: realm::RealmActor::new(backends.realm.clone()).start(),
            vlob: vlob::VlobActor::new(backends.vlob.clone()).start(),
            block: block::BlockActor::new(backends.block.clone(), backends.blockstore.clone()).start(),
            message: message::MessageActor::new(backends.message.clone()).start(),
            invite: invite::InviteActor::new(
                backends.invite.clone(),
                broker.clone(),
                events.clone(),
                &settings.email,
                settings.backend_addr.clone(),
            )
            .start(),
            pki: pki::PkiActor::new(backends.pki.clone()).start(),
            broker,
            events,
            keepalive: DEFAULT_KEEPALIVE,
            settings: Arc::new(settings),
            bootstrap_webhook: None,
        }
    }

    /// Calls `hook` after every successful organization bootstrap.
    pub fn with_bootstrap_webhook(mut self, hook: Option<webhook::BootstrapWebhook>) -> Self {
        self.bootstrap_webhook = hook.map(Arc::new);
        self
    }

    /// Publishes an event; never waits.
    pub fn publish(&self, event: event::Event) {
        self.events.publish(&self.broker, event)
    }
}

/// A mailbox failure is an internal error: the actor is gone or overloaded.
impl From<MailboxError> for Internal {
    fn from(e: MailboxError) -> Self {
        Internal(anyhow::anyhow!("actor mailbox: {e}"))
    }
}

/// Implements `Handler<$msg>` for a domain actor as a future over its backend.
macro_rules! backend_handler {
    ($actor:ty, $msg:ty, |$backend:ident, $m:ident| $body:expr) => {
        impl actix::Handler<$msg> for $actor {
            type Result = actix::ResponseFuture<<$msg as actix::Message>::Result>;
            fn handle(&mut self, $m: $msg, _: &mut Self::Context) -> Self::Result {
                let $backend = self.backend.clone();
                Box::pin(async move { $body })
            }
        }
    };
}
pub(crate) use backend_handler;
