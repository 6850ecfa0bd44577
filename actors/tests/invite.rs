//! Behaviour of invitations (commands.md §5–§7, README §4.5, §5.5, §6), on
//! the store `Backends::for_tests` picks: memory by default, PostgreSQL with
//! `PARSEC_TEST_DB=postgresql` (users are seeded through the store's public
//! traits, so both run the same tests).
//!
//! Three layers:
//! - the command functions, as the dispatcher calls them: `invite_new` /
//!   `invite_delete` / `invite_list` rules, and the conduit with greeter and
//!   claimer running concurrently (every step, both speaking orders, resets,
//!   `invalid_state`, deletion while waiting);
//! - real websocket connections to a test server: the invited handshake,
//!   READY / IDLE events, deletion closing the claimer (after its last
//!   answer), `invite_1_claimer_wait_peer` abandoned by the next request;
//! - two server instances on one store: the conduit's state and claimer
//!   presence live in the store, only wake-ups travel between instances;
//! - e-mail: an SMTP server written here (recipient refused, sender refused,
//!   silence, login), and a real receiver given by `PARSEC_TEST_SMTP_ADDR`
//!   (`scripts/test.sh` starts one; under `CI=true` its absence fails).
//!
//! Nothing asserts on speed: "the other side is waiting" is established by
//! letting it run first and checking it has not answered yet.

// Helpers panic on purpose: a failing helper is a failing test.
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix::prelude::*;
use actix_web::{App, HttpRequest, HttpServer, web};
use async_trait::async_trait;
use ed25519_dalek::{Signer, SigningKey};
use parsec_actors::backend::*;
use parsec_actors::broker::Push;
use parsec_actors::client::{AuthenticatedClient, InvitedClient};
use parsec_actors::email::{self, BackendAddr, InvitationEmail, Mailer, SendError, SmtpConfig, SmtpMailer};
use parsec_actors::event::Event;
use parsec_actors::invite::{self, ClaimerOutcome, InviteActor};
use parsec_actors::{Actors, Settings};
use parsec_protocol::cmds::authenticated as greq;
use parsec_protocol::cmds::invited as creq;
use parsec_protocol::types::*;
use parsec_protocol::value::{self, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

#[path = "support/events.rs"]
mod events;

const WAIT: Duration = Duration::from_secs(10);

// ================================================================= harness

fn settings() -> Settings {
    Settings {
        administration_token: "token".into(),
        spontaneous_organization_bootstrap: false,
        organization_initial_active_users_limit: None,
        organization_initial_user_profile_outsider_allowed: true,
        email: Default::default(),
        backend_addr: Default::default(),
    }
}

/// Records the e-mails instead of sending them.
#[derive(Default, Clone)]
struct Outbox(Arc<Mutex<Vec<lettre::Message>>>);

#[async_trait]
impl Mailer for Outbox {
    async fn send(&self, message: lettre::Message) -> Result<(), SendError> {
        self.0.lock().unwrap().push(message);
        Ok(())
    }
}

impl Outbox {
    fn take(&self) -> Vec<lettre::Message> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

struct Env {
    actors: Actors,
    backends: Backends,
    org: OrganizationId,
    root: SigningKey,
    outbox: Outbox,
}

/// A device able to run commands (and to log in over a websocket).
#[derive(Clone)]
struct Dev {
    client: AuthenticatedClient,
    key: SigningKey,
}

fn new_key() -> SigningKey {
    SigningKey::from_bytes(&rand::random::<[u8; 32]>())
}

fn human(email: &str, label: &str) -> Option<HumanHandle> {
    Some(HumanHandle::new(email, label).unwrap())
}

fn user(dev: &Dev) -> (User, Device) {
    let c = &dev.client;
    let user = User {
        user_id: c.user_id.clone(),
        human_handle: c.human_handle.clone(),
        profile: c.profile,
        user_certificate: vec![],
        redacted_user_certificate: vec![],
        user_certifier: None,
        created_on: DateTime::now(),
        revoked_on: None,
        revoked_user_certificate: None,
        revoked_user_certifier: None,
    };
    let device = Device {
        device_id: c.device_id.clone(),
        device_label: None,
        device_certificate: vec![],
        redacted_device_certificate: vec![],
        device_certifier: None,
        created_on: DateTime::now(),
        verify_key: c.verify_key,
    };
    (user, device)
}

/// The admin bootstrapping every test organization.
const ALICE: &str = "alice@laptop";

/// One server instance's actors on `backends`, its e-mails recorded in `outbox`.
fn instance(backends: &Backends, outbox: &Outbox) -> Actors {
    with_outbox(Actors::start(backends.clone(), settings()), backends, outbox)
}

/// `actors` with an invite actor recording its e-mails in `outbox`.
fn with_outbox(mut actors: Actors, backends: &Backends, outbox: &Outbox) -> Actors {
    let addr = BackendAddr {
        netloc: "parsec.example.com".into(),
        no_ssl: false,
    };
    let mailer: Arc<dyn Mailer> = Arc::new(outbox.clone());
    let broker = actors.broker.clone();
    let sender = "no-reply@parsec.com".into();
    let events = actors.events.clone();
    actors.invite = InviteActor::with_mailer(backends.invite.clone(), broker, events, mailer, sender, addr).start();
    actors
}

/// Two server instances on one new PostgreSQL database, each with its own
/// pool and the production event transport (event log, NOTIFY, listener);
/// `None` unless `PARSEC_TEST_DB=postgresql`.
async fn two_postgres_instances(outbox: &Outbox) -> Option<(Backends, Actors, Actors)> {
    use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
    use parsec_actors::backend::postgres::{PgStore, blockstore::PgBlockStore, events};

    if std::env::var("PARSEC_TEST_DB").as_deref() != Ok("postgresql") {
        return None;
    }
    let cluster = std::env::var("PARSEC_TEST_PG_URL").expect("PARSEC_TEST_DB=postgresql needs PARSEC_TEST_PG_URL");
    let name = format!("parsec_test_{}", hex::encode(rand::random::<[u8; 8]>()));
    let mut admin = AsyncPgConnection::establish(&format!("{cluster}/postgres"))
        .await
        .unwrap();
    // Concurrent clones of one template can collide: retry.
    for attempt in 0.. {
        let create = diesel::sql_query(format!("CREATE DATABASE {name} TEMPLATE parsec_template"));
        match create.execute(&mut admin).await {
            Ok(_) => break,
            Err(e) if attempt < 50 => {
                eprintln!("CREATE DATABASE {name}: {e}, retrying");
                actix_web::rt::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("CREATE DATABASE {name}: {e}"),
        }
    }
    let url = format!("{cluster}/{name}");
    let mut instances = Vec::new();
    for _ in 0..2 {
        let store = PgStore::connect(&url, 8, Duration::from_secs(10)).unwrap();
        let backends = Backends::postgres(store.clone(), Arc::new(PgBlockStore::new(store.clone())));
        let (bus, listener) = events::start(url.clone(), store.pool().clone());
        let actors = Actors::start_with_events(backends.clone(), settings(), bus);
        let actors = with_outbox(actors, &backends, outbox);
        listener.spawn(actors.broker.clone());
        instances.push((backends, actors));
    }
    // The listeners start from the log's end: let them get there first.
    actix_web::rt::time::sleep(Duration::from_millis(300)).await;
    let (b, second) = instances.pop()?;
    let (backends, first) = instances.pop()?;
    drop(b);
    Some((backends, first, second))
}

impl Env {
    /// A server on the test store with `InvOrg…` bootstrapped by
    /// `alice@laptop` (ADMIN, `alice@example.com`).
    async fn start() -> (Env, Dev) {
        let backends = Backends::for_tests().await;
        let outbox = Outbox::default();
        let actors = instance(&backends, &outbox);
        Self::bootstrap(backends, actors, outbox).await
    }

    /// A new organization on `backends`, bootstrapped by alice; commands go
    /// to `actors`.
    async fn bootstrap(backends: Backends, actors: Actors, outbox: Outbox) -> (Env, Dev) {
        let org = OrganizationId::parse(&format!("InvOrg{}", hex::encode(rand::random::<[u8; 4]>()))).unwrap();
        let root = new_key();
        backends
            .organization
            .create(&org, "t", None, true, DateTime::now())
            .await
            .unwrap();
        let env = Env {
            actors,
            backends,
            org,
            root,
            outbox,
        };
        let alice = env.dev(ALICE, UserProfile::Admin, human("alice@example.com", "Alice"));
        let (user, first_device) = user(&alice);
        let data = BootstrapData {
            bootstrap_token: "t".into(),
            root_verify_key: env.root.verifying_key().to_bytes(),
            user,
            first_device,
            now: DateTime::now(),
        };
        env.backends.organization.bootstrap(&env.org, data).await.unwrap();
        (env, alice)
    }

    /// Another server instance on the same store (its own broker and actors).
    fn second_instance(&self) -> Actors {
        instance(&self.backends, &self.outbox)
    }

    fn dev(&self, device_id: &str, profile: UserProfile, human_handle: Option<HumanHandle>) -> Dev {
        let key = new_key();
        let device_id = DeviceId::parse(device_id).unwrap();
        let client = AuthenticatedClient {
            conn_id: rand::random::<u32>() as u64,
            org: self.org.clone(),
            user_id: device_id.user_id(),
            device_id,
            profile,
            human_handle,
            device_label: None,
            verify_key: key.verifying_key().to_bytes(),
        };
        Dev { client, key }
    }

    /// Seeds a user with one device through the store (its certificates are
    /// not checked there, so they are left empty).
    async fn add_user(&self, device_id: &str, profile: UserProfile, human_handle: Option<HumanHandle>) -> Dev {
        let dev = self.dev(device_id, profile, human_handle);
        let (user, device) = user(&dev);
        let now = DateTime::now();
        self.backends
            .user
            .create_user(&self.org, user, device, now)
            .await
            .unwrap();
        dev
    }

    /// Revokes `dev`'s user now, certified by alice.
    async fn revoke(&self, dev: &Dev) {
        let revocation = UserRevocation {
            user_id: dev.client.user_id.clone(),
            revoked_on: DateTime::now(),
            revoked_user_certificate: vec![],
            revoked_user_certifier: DeviceId::parse(ALICE).unwrap(),
        };
        self.backends.user.revoke_user(&self.org, revocation).await.unwrap();
    }

    /// `invite_new` answering `ok`; the token.
    async fn invite(&self, by: &Dev, kind: greq::InviteNewKind) -> Uuid {
        let rep = self.invite_new(by, kind, false).await;
        assert_eq!(status(&rep), "ok", "{rep:?}");
        token(&rep)
    }

    async fn invite_new(&self, by: &Dev, kind: greq::InviteNewKind, send_email: bool) -> Value {
        invite::new(&self.actors, &by.client, greq::InviteNew { kind, send_email })
            .await
            .unwrap()
    }

    async fn delete(&self, by: &Dev, token: Uuid) -> Value {
        let req = greq::InviteDelete {
            token,
            reason: InvitationDeletedReason::Cancelled,
        };
        invite::delete(&self.actors, &by.client, req).await.unwrap()
    }

    async fn list(&self, by: &Dev) -> Vec<Value> {
        list_on(&self.actors, by).await
    }

    /// Waits until `invite_list` on `actors` shows `token` with `expected`
    /// (claimer presence is recorded in the background of the connection).
    async fn status_becomes(&self, actors: &Actors, by: &Dev, token: Uuid, expected: &str) {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let items = list_on(actors, by).await;
            let item = items.iter().find(|i| uuid_of(field(i, "token")) == token);
            let status = item.and_then(|i| field(i, "status").as_str());
            if status == Some(expected) {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{token} is {status:?}, never {expected}"
            );
            actix_web::rt::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The claimer side of an invitation, as the handshake would snapshot it.
    async fn claimer(&self, token: Uuid) -> InvitedClient {
        let invitation = invite::lookup(&self.actors, &self.org, token).await.unwrap();
        InvitedClient {
            conn_id: rand::random::<u32>() as u64,
            org: self.org.clone(),
            invitation_type: invitation.kind.invitation_type(),
            token,
            invitation,
        }
    }

    /// Registers `dev` with the broker as a subscribed connection.
    async fn listen(&self, dev: &Dev) -> Listener {
        Listener(events::subscribe(&self.actors, &dev.client, Default::default()).await)
    }
}

/// Events received by one subscribed device.
struct Listener(events::Subscribed);

impl Listener {
    /// `(token, invitation_status)` of the events delivered so far; drains them.
    async fn statuses(&self) -> Vec<(Uuid, String)> {
        self.0
            .drain()
            .await
            .iter()
            .filter_map(Push::event_value)
            .map(|e| {
                assert_eq!(field(&e, "event").as_str(), Some("invite.status_changed"), "{e:?}");
                (
                    uuid_of(field(&e, "token")),
                    field(&e, "invitation_status").as_str().unwrap().to_string(),
                )
            })
            .collect()
    }
}

async fn list_on(actors: &Actors, by: &Dev) -> Vec<Value> {
    let rep = invite::list(actors, &by.client).await.unwrap();
    assert_eq!(status(&rep), "ok");
    match field(&rep, "invitations") {
        Value::Array(items) => items.clone(),
        other => panic!("{other:?}"),
    }
}

// ------------------------------------------------------------------ replies

fn field<'a>(v: &'a Value, key: &str) -> &'a Value {
    match v {
        Value::Map(m) => value::get(m, key).unwrap_or(&Value::Nil),
        _ => &Value::Nil,
    }
}

fn has_field(v: &Value, key: &str) -> bool {
    matches!(v, Value::Map(m) if value::get(m, key).is_some())
}

fn status(v: &Value) -> &str {
    field(v, "status").as_str().unwrap_or("<none>")
}

fn uuid_of(v: &Value) -> Uuid {
    match v {
        Value::Ext(2, b) => Uuid::from_slice(b).unwrap(),
        other => panic!("not a uuid: {other:?}"),
    }
}

fn token(rep: &Value) -> Uuid {
    uuid_of(field(rep, "token"))
}

fn bin<'a>(v: &'a Value, key: &str) -> &'a [u8] {
    match field(v, key) {
        Value::Binary(b) => b,
        other => panic!("{key} not bytes: {other:?}"),
    }
}

/// A bare status: no other key.
#[track_caller]
fn assert_bare(v: &Value, expected: &str) {
    assert_eq!(status(v), expected, "{v:?}");
    assert!(matches!(v, Value::Map(m) if m.len() == 1), "unexpected fields in {v:?}");
}

#[track_caller]
fn claimer_rep(o: ClaimerOutcome) -> Value {
    match o {
        ClaimerOutcome::Rep(v) => v,
        ClaimerOutcome::InvitationDeleted => panic!("unexpected close"),
    }
}

fn user_kind(email: &str) -> greq::InviteNewKind {
    greq::InviteNewKind::User {
        claimer_email: email.into(),
    }
}

/// Runs a future on the current arbiter; its result comes back on `join`.
fn spawn<T: 'static>(fut: impl Future<Output = T> + 'static) -> tokio::task::JoinHandle<T> {
    actix_web::rt::spawn(fut)
}

/// Lets spawned futures progress until they block.
async fn settle() {
    for _ in 0..20 {
        actix_web::rt::task::yield_now().await;
    }
    actix_web::rt::time::sleep(Duration::from_millis(50)).await;
}

async fn join<T>(h: tokio::task::JoinHandle<T>) -> T {
    tokio::time::timeout(WAIT, h)
        .await
        .expect("still waiting")
        .expect("panicked")
}

// ========================================================= invite_new etc.

#[actix_web::test]
async fn invite_new_user_rules() {
    let (env, alice) = Env::start().await;
    let bob = env
        .add_user("bob@pc", UserProfile::Standard, human("bob@example.com", "Bob"))
        .await;
    let carl = env
        .add_user("carl@pc", UserProfile::Standard, human("carl@example.com", "Carl"))
        .await;
    env.revoke(&carl).await;
    let listener = env.listen(&alice).await;

    // ADMIN only, before anything else (no reason).
    assert_bare(
        &env.invite_new(&bob, user_kind("zoe@example.com"), true).await,
        "not_allowed",
    );
    // An active member's e-mail.
    assert_bare(
        &env.invite_new(&alice, user_kind("bob@example.com"), true).await,
        "already_member",
    );
    // A revoked user's e-mail can be invited again.
    let carl = env.invite(&alice, user_kind("carl@example.com")).await;

    let rep = env.invite_new(&alice, user_kind("zoe@example.com"), false).await;
    assert_eq!(status(&rep), "ok");
    assert!(
        !has_field(&rep, "email_sent"),
        "email_sent only when an e-mail was asked: {rep:?}"
    );
    let zoe = token(&rep);
    // Same greeter, same e-mail: the same invitation.
    let again = env.invite_new(&alice, user_kind("zoe@example.com"), true).await;
    assert_eq!(token(&again), zoe);
    assert_eq!(field(&again, "email_sent").as_str(), Some("SUCCESS"));
    // Another e-mail, or another greeter: another invitation.
    assert_ne!(env.invite(&alice, user_kind("yves@example.com")).await, zoe);
    let admin2 = env.add_user("dan@pc", UserProfile::Admin, None).await;
    assert_ne!(env.invite(&admin2, user_kind("zoe@example.com")).await, zoe);

    // IDLE for every ok, reused invitations included.
    let statuses = listener.statuses().await;
    let idle = |t: Uuid| (t, "IDLE".to_string());
    assert_eq!(statuses[..3], [idle(carl), idle(zoe), idle(zoe)]);
    assert_eq!(statuses.len(), 4, "dan's invitation goes to dan: {statuses:?}");

    // The e-mail: to the claimer, from the greeter (Reply-To), with the link.
    let mails = env.outbox.take();
    assert_eq!(mails.len(), 1);
    let raw = String::from_utf8(mails[0].formatted())
        .unwrap()
        .replace("=\r\n", "")
        .replace("=3D", "=");
    assert!(raw.contains("To: zoe@example.com\r\n"), "{raw}");
    assert!(raw.contains("Reply-To: Alice <alice@example.com>\r\n"), "{raw}");
    assert!(
        raw.contains(&format!("Subject: [Parsec] Alice invited you to {}\r\n", env.org)),
        "{raw}"
    );
    let link = format!(
        "https://parsec.example.com/redirect/{}?action=claim_user&token={}",
        env.org,
        zoe.simple()
    );
    assert!(raw.contains(&link), "{raw}");
}

#[actix_web::test]
async fn invite_new_user_greeter_without_human_handle() {
    let (env, _) = Env::start().await;
    let admin = env.add_user("root@pc", UserProfile::Admin, None).await;
    let rep = env.invite_new(&admin, user_kind("zoe@example.com"), true).await;
    assert_eq!(field(&rep, "email_sent").as_str(), Some("SUCCESS"));
    let raw = String::from_utf8(env.outbox.take()[0].formatted()).unwrap();
    assert!(
        raw.contains(&format!("Subject: [Parsec] root invited you to {}\r\n", env.org)),
        "{raw}"
    );
    assert!(!raw.contains("Reply-To"), "{raw}");
}

#[actix_web::test]
async fn invite_new_device_rules() {
    let (env, alice) = Env::start().await;
    let anon = env.add_user("anon@pc", UserProfile::Outsider, None).await;

    // Any profile; no human handle means no e-mail to send it to.
    assert_bare(
        &env.invite_new(&anon, greq::InviteNewKind::Device, true).await,
        "not_available",
    );
    let t = env.invite(&anon, greq::InviteNewKind::Device).await;
    assert_eq!(env.invite(&anon, greq::InviteNewKind::Device).await, t, "reused");

    let rep = env.invite_new(&alice, greq::InviteNewKind::Device, true).await;
    assert_eq!(field(&rep, "email_sent").as_str(), Some("SUCCESS"));
    assert_ne!(token(&rep), t);
    let mails = env.outbox.take();
    let raw = String::from_utf8(mails[0].formatted())
        .unwrap()
        .replace("=\r\n", "")
        .replace("=3D", "=");
    assert!(raw.contains("To: alice@example.com\r\n"), "{raw}");
    assert!(
        raw.contains(&format!("Subject: [Parsec] New device invitation to {}\r\n", env.org)),
        "{raw}"
    );
    assert!(raw.contains("action=claim_device&token="), "{raw}");
    assert!(!raw.contains("Reply-To"), "{raw}");

    // A USER and a DEVICE invitation of the same greeter live side by side.
    let u = env.invite(&alice, user_kind("zoe@example.com")).await;
    assert_ne!(u, token(&rep));
}

#[actix_web::test]
async fn invite_list_and_delete() {
    let (env, alice) = Env::start().await;
    let bob = env.add_user("bob@pc", UserProfile::Standard, None).await;
    let listener = env.listen(&alice).await;

    let u = env.invite(&alice, user_kind("zoe@example.com")).await;
    let d = env.invite(&alice, greq::InviteNewKind::Device).await;
    let theirs = env.invite(&bob, greq::InviteNewKind::Device).await;

    let items = env.list(&alice).await;
    assert_eq!(items.len(), 2, "only the requester's invitations: {items:?}");
    assert_eq!(field(&items[0], "type").as_str(), Some("USER"));
    assert_eq!(uuid_of(field(&items[0], "token")), u);
    assert_eq!(field(&items[0], "claimer_email").as_str(), Some("zoe@example.com"));
    assert_eq!(field(&items[0], "status").as_str(), Some("IDLE"));
    assert!(matches!(field(&items[0], "created_on"), Value::Ext(1, _)));
    assert_eq!(field(&items[1], "type").as_str(), Some("DEVICE"));
    assert!(!has_field(&items[1], "claimer_email"));
    assert_eq!(uuid_of(field(&items[1], "token")), d);

    // A claimer connected: READY, in the list and as an event.
    let claimer = env.claimer(d).await;
    invite::claimer_presence(&env.actors, &claimer, true).await.unwrap();
    env.status_becomes(&env.actors, &alice, d, "READY").await;
    invite::claimer_presence(&env.actors, &claimer, false).await.unwrap();
    env.status_becomes(&env.actors, &alice, d, "IDLE").await;

    // Deleting: only one's own, once.
    assert_bare(&env.delete(&alice, theirs).await, "not_found");
    assert_bare(&env.delete(&alice, Uuid::new_v4()).await, "not_found");
    assert_bare(&env.delete(&alice, d).await, "ok");
    assert_bare(&env.delete(&alice, d).await, "already_deleted");
    let items = env.list(&alice).await;
    assert_eq!(items.len(), 1, "deleted ones are not listed");
    // A deleted invitation is not reused.
    assert_ne!(env.invite(&alice, greq::InviteNewKind::Device).await, d);

    let statuses = listener.statuses().await;
    let s = |t: Uuid, st: &str| (t, st.to_string());
    assert_eq!(
        statuses,
        [
            s(u, "IDLE"),
            s(d, "IDLE"),
            s(d, "READY"),
            s(d, "IDLE"),
            s(d, "DELETED"),
            (statuses[5].0, "IDLE".into())
        ]
    );
}

#[actix_web::test]
async fn invite_info_is_the_handshake_snapshot() {
    let (env, alice) = Env::start().await;
    let u = env.invite(&alice, user_kind("zoe@example.com")).await;
    let claimer = env.claimer(u).await;
    let rep = invite::info(&claimer);
    assert_eq!(status(&rep), "ok");
    assert_eq!(field(&rep, "type").as_str(), Some("USER"));
    assert_eq!(field(&rep, "claimer_email").as_str(), Some("zoe@example.com"));
    assert_eq!(field(&rep, "greeter_user_id").as_str(), Some("alice"));
    assert_eq!(
        field(&rep, "greeter_human_handle"),
        &human("alice@example.com", "Alice").unwrap().to_value()
    );
    // Not re-read: a deletion since is not seen.
    env.delete(&alice, u).await;
    assert_eq!(invite::info(&claimer), rep);

    let anon = env.add_user("anon@pc", UserProfile::Standard, None).await;
    let d = env.invite(&anon, greq::InviteNewKind::Device).await;
    let rep = invite::info(&env.claimer(d).await);
    assert_eq!(field(&rep, "type").as_str(), Some("DEVICE"));
    assert!(!has_field(&rep, "claimer_email"));
    assert_eq!(field(&rep, "greeter_human_handle"), &Value::Nil);
    assert!(has_field(&rep, "greeter_human_handle"));

    // A greeter revoked since the invitation: its handle is not shown
    // (reference PostgreSQL).
    let gone = env
        .add_user("gone@pc", UserProfile::Standard, human("gone@example.com", "Gone"))
        .await;
    let g = env.invite(&gone, greq::InviteNewKind::Device).await;
    env.revoke(&gone).await;
    assert_eq!(
        field(&invite::info(&env.claimer(g).await), "greeter_human_handle"),
        &Value::Nil
    );

    // The handshake's lookup.
    let lookup = |t| invite::lookup(&env.actors, &env.org, t);
    assert!(matches!(lookup(Uuid::new_v4()).await, Err(InviteLookupError::NotFound)));
    assert!(matches!(lookup(u).await, Err(InviteLookupError::AlreadyDeleted)));
    assert!(matches!(lookup(d).await, Ok(i) if i.kind == InvitationKind::Device));
}

/// Claimer presence is a count in the store, so that every server instance
/// shows the same READY / IDLE, and a claimer with two connections stays
/// READY until both are gone.
#[actix_web::test]
async fn claimer_connections_are_counted_in_the_store() {
    let (env, alice) = Env::start().await;
    let store = &*env.backends.invite;
    let (org, me) = (&env.org, &alice.client.user_id);
    let d = env.invite(&alice, greq::InviteNewKind::Device).await;
    let u = env.invite(&alice, user_kind("zoe@example.com")).await;
    let online = async || -> Vec<Uuid> {
        let list = store.list_invitations(org, me).await.unwrap();
        list.iter().filter(|i| i.claimer_online).map(|i| i.token).collect()
    };
    assert!(online().await.is_empty());

    assert_eq!(store.claimer_connection(org, d, true).await.unwrap(), 1);
    // A second connection (another tab, or another server instance).
    assert_eq!(store.claimer_connection(org, d, true).await.unwrap(), 2);
    assert_eq!(online().await, [d]);
    assert_eq!(store.claimer_connection(org, d, false).await.unwrap(), 1);
    assert_eq!(online().await, [d], "one connection is still open");
    assert_eq!(store.claimer_connection(org, d, false).await.unwrap(), 0);
    assert!(online().await.is_empty());

    // Never below zero; unknown invitations count nothing.
    assert_eq!(store.claimer_connection(org, d, false).await.unwrap(), 0);
    assert_eq!(store.claimer_connection(org, d, true).await.unwrap(), 1);
    assert_eq!(store.claimer_connection(org, Uuid::new_v4(), true).await.unwrap(), 0);
    let nowhere = OrganizationId::parse("NoSuchOrg").unwrap();
    assert_eq!(store.claimer_connection(&nowhere, d, true).await.unwrap(), 0);

    // The handshake's view carries it too; a deleted invitation still counts
    // its connections down as they close.
    assert_eq!(store.claimer_connection(org, u, true).await.unwrap(), 1);
    assert!(store.get_invitation(org, u).await.unwrap().claimer_online);
    assert_bare(&env.delete(&alice, u).await, "ok");
    assert_eq!(store.claimer_connection(org, u, false).await.unwrap(), 0);
    assert_eq!(online().await, [d]);
}

/// Two connections of one claimer: READY until the last one closes, for
/// every server instance (a new or restarted one included).
#[actix_web::test]
async fn claimer_with_two_connections_stays_ready() {
    let (env, alice) = Env::start().await;
    let listener = env.listen(&alice).await;
    let d = env.invite(&alice, greq::InviteNewKind::Device).await;
    let (first, second) = (env.claimer(d).await, env.claimer(d).await);
    invite::claimer_presence(&env.actors, &first, true).await.unwrap();
    invite::claimer_presence(&env.actors, &second, true).await.unwrap();
    invite::claimer_presence(&env.actors, &first, false).await.unwrap();
    env.status_becomes(&env.actors, &alice, d, "READY").await;
    env.status_becomes(&env.second_instance(), &alice, d, "READY").await;
    invite::claimer_presence(&env.actors, &second, false).await.unwrap();
    env.status_becomes(&env.actors, &alice, d, "IDLE").await;
    let s = |status: &str| (d, status.to_string());
    assert_eq!(
        listener.statuses().await,
        [s("IDLE"), s("READY"), s("READY"), s("IDLE")],
        "no IDLE while a connection is open"
    );
}

/// Concurrent `invite_new` for the same claimer make one invitation (on
/// PostgreSQL, they serialise on the organization row).
#[actix_web::test]
async fn concurrent_invite_new_make_one_invitation() {
    let (env, alice) = Env::start().await;
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let (actors, client) = (env.actors.clone(), alice.client.clone());
            let kind = if i % 2 == 0 {
                user_kind("zoe@example.com")
            } else {
                greq::InviteNewKind::Device
            };
            spawn(async move {
                let req = greq::InviteNew {
                    kind,
                    send_email: false,
                };
                token(&invite::new(&actors, &client, req).await.unwrap())
            })
        })
        .collect();
    let mut tokens = Vec::new();
    for task in tasks {
        tokens.push(join(task).await);
    }
    let (user, device) = (tokens[0], tokens[1]);
    assert_ne!(user, device);
    for (i, t) in tokens.iter().enumerate() {
        assert_eq!(*t, if i % 2 == 0 { user } else { device }, "{tokens:?}");
    }
    assert_eq!(env.list(&alice).await.len(), 2);
}

// ================================================================ conduit

type G = Arc<AuthenticatedClient>;
type C = Arc<InvitedClient>;

/// The six greeter steps and six claimer steps, as spawnable futures.
mod step {
    use super::*;

    pub fn g1(a: &Actors, g: &G, t: Uuid, key: u8) -> tokio::task::JoinHandle<Value> {
        let (a, g) = (a.clone(), g.clone());
        let r = greq::Invite1GreeterWaitPeer {
            token: t,
            greeter_public_key: [key; 32],
        };
        spawn(async move { invite::greeter_1_wait_peer(&a, &g, r).await.unwrap() })
    }
    pub fn g2a(a: &Actors, g: &G, t: Uuid) -> tokio::task::JoinHandle<Value> {
        let (a, g) = (a.clone(), g.clone());
        let r = greq::Invite2aGreeterGetHashedNonce { token: t };
        spawn(async move { invite::greeter_2a_get_hashed_nonce(&a, &g, r).await.unwrap() })
    }
    pub fn g2b(a: &Actors, g: &G, t: Uuid, nonce: &[u8]) -> tokio::task::JoinHandle<Value> {
        let (a, g) = (a.clone(), g.clone());
        let r = greq::Invite2bGreeterSendNonce {
            token: t,
            greeter_nonce: nonce.to_vec(),
        };
        spawn(async move { invite::greeter_2b_send_nonce(&a, &g, r).await.unwrap() })
    }
    pub fn g3a(a: &Actors, g: &G, t: Uuid) -> tokio::task::JoinHandle<Value> {
        let (a, g) = (a.clone(), g.clone());
        let r = greq::Invite3aGreeterWaitPeerTrust { token: t };
        spawn(async move { invite::greeter_3a_wait_peer_trust(&a, &g, r).await.unwrap() })
    }
    pub fn g3b(a: &Actors, g: &G, t: Uuid) -> tokio::task::JoinHandle<Value> {
        let (a, g) = (a.clone(), g.clone());
        let r = greq::Invite3bGreeterSignifyTrust { token: t };
        spawn(async move { invite::greeter_3b_signify_trust(&a, &g, r).await.unwrap() })
    }
    pub fn g4(a: &Actors, g: &G, t: Uuid, payload: &[u8]) -> tokio::task::JoinHandle<Value> {
        let (a, g) = (a.clone(), g.clone());
        let r = greq::Invite4GreeterCommunicate {
            token: t,
            payload: payload.to_vec(),
        };
        spawn(async move { invite::greeter_4_communicate(&a, &g, r).await.unwrap() })
    }
    pub fn c1(a: &Actors, c: &C, key: u8) -> tokio::task::JoinHandle<ClaimerOutcome> {
        let (a, c) = (a.clone(), c.clone());
        let r = creq::Invite1ClaimerWaitPeer {
            claimer_public_key: [key; 32],
        };
        spawn(async move { invite::claimer_1_wait_peer(&a, &c, r).await.unwrap() })
    }
    pub fn c2a(a: &Actors, c: &C, hashed: &[u8]) -> tokio::task::JoinHandle<ClaimerOutcome> {
        let (a, c) = (a.clone(), c.clone());
        let r = creq::Invite2aClaimerSendHashedNonce {
            claimer_hashed_nonce: hashed.to_vec(),
        };
        spawn(async move { invite::claimer_2a_send_hashed_nonce(&a, &c, r).await.unwrap() })
    }
    pub fn c2b(a: &Actors, c: &C, nonce: &[u8]) -> tokio::task::JoinHandle<ClaimerOutcome> {
        let (a, c) = (a.clone(), c.clone());
        let r = creq::Invite2bClaimerSendNonce {
            claimer_nonce: nonce.to_vec(),
        };
        spawn(async move { invite::claimer_2b_send_nonce(&a, &c, r).await.unwrap() })
    }
    pub fn c3a(a: &Actors, c: &C) -> tokio::task::JoinHandle<ClaimerOutcome> {
        let (a, c) = (a.clone(), c.clone());
        spawn(async move { invite::claimer_3a_signify_trust(&a, &c).await.unwrap() })
    }
    pub fn c3b(a: &Actors, c: &C) -> tokio::task::JoinHandle<ClaimerOutcome> {
        let (a, c) = (a.clone(), c.clone());
        spawn(async move { invite::claimer_3b_wait_peer_trust(&a, &c).await.unwrap() })
    }
    pub fn c4(a: &Actors, c: &C, payload: &[u8]) -> tokio::task::JoinHandle<ClaimerOutcome> {
        let (a, c) = (a.clone(), c.clone());
        let r = creq::Invite4ClaimerCommunicate {
            payload: payload.to_vec(),
        };
        spawn(async move { invite::claimer_4_communicate(&a, &c, r).await.unwrap() })
    }
}

/// Starts `first`, checks it waits for its peer, then starts `second`;
/// both answers.
async fn pair<A: 'static, B: 'static>(
    first: tokio::task::JoinHandle<A>,
    second: impl FnOnce() -> tokio::task::JoinHandle<B>,
) -> (A, B) {
    settle().await;
    assert!(!first.is_finished(), "the first peer must wait for the second");
    let second = second();
    (join(first).await, join(second).await)
}

/// The whole dance. `two_instances`: the greeter talks to one server
/// instance and the claimer to another, on the same store.
async fn greeting(greeter_first: bool, two_instances: bool) {
    let (env, alice) = Env::start().await;
    let t = env.invite(&alice, user_kind("zoe@example.com")).await;
    let other = two_instances.then(|| env.second_instance());
    // `ga`: the greeter's instance, `ca`: the claimer's.
    let (ga, ca) = (&env.actors, other.as_ref().unwrap_or(&env.actors));
    let (g, c) = (&Arc::new(alice.client.clone()), &Arc::new(env.claimer(t).await));
    // Between instances, wake-ups travel as events (on PostgreSQL, through
    // the event log). Here a relay stands in for that transport, waking the
    // invitation's waiters on both instances over and over: whatever the
    // peers see comes from the store.
    let relay = two_instances.then(|| {
        let (instances, org) = ([ga.clone(), ca.clone()], env.org.clone());
        spawn(async move {
            loop {
                for actors in &instances {
                    let org = org.clone();
                    actors.publish(Event::InviteConduitUpdated { org, token: t });
                }
                actix_web::rt::time::sleep(Duration::from_millis(20)).await;
            }
        })
    });
    use step::*;

    // Both orders of every step, the first one waiting for the second.
    macro_rules! both {
        ($g:expr, $c:expr) => {
            if greeter_first {
                pair($g, || $c).await
            } else {
                let (c, g) = pair($c, || $g).await;
                (g, c)
            }
        };
    }

    let (gr, cr) = both!(g1(ga, g, t, 1), c1(ca, c, 2));
    assert_eq!(bin(&gr, "claimer_public_key"), [2; 32]);
    assert_eq!(bin(&claimer_rep(cr), "greeter_public_key"), [1; 32]);

    let (gr, cr) = if greeter_first {
        let gr = g2a(ga, g, t);
        settle().await;
        assert!(!gr.is_finished());
        (gr, c2a(ca, c, b"hashed"))
    } else {
        let cr = c2a(ca, c, b"hashed");
        settle().await;
        assert!(!cr.is_finished());
        (g2a(ga, g, t), cr)
    };
    assert_eq!(bin(&join(gr).await, "claimer_hashed_nonce"), b"hashed");
    // 2a (claimer) is two exchanges: it ends with the greeter's nonce, so it
    // is still waiting for 2b (greeter).
    settle().await;
    assert!(!cr.is_finished());
    let gr = g2b(ga, g, t, b"greeter nonce");
    let cr = join(cr).await;
    assert_eq!(bin(&claimer_rep(cr), "greeter_nonce"), b"greeter nonce");
    // 2b (greeter) is two exchanges as well: it waits for 2b (claimer).
    settle().await;
    assert!(!gr.is_finished());
    let cr = c2b(ca, c, b"claimer nonce");
    assert_eq!(bin(&join(gr).await, "claimer_nonce"), b"claimer nonce");
    assert_eq!(claimer_rep(join(cr).await), parsec_protocol::cmds::ok(vec![]));

    let (gr, cr) = both!(g3a(ga, g, t), c3a(ca, c));
    assert_bare(&gr, "ok");
    assert_bare(&claimer_rep(cr), "ok");
    let (gr, cr) = both!(g3b(ga, g, t), c3b(ca, c));
    assert_bare(&gr, "ok");
    assert_bare(&claimer_rep(cr), "ok");

    // Step 4 repeats; an empty payload is a payload.
    for (gp, cp) in [(&b"user request"[..], &b""[..]), (b"", b"certificates"), (b"", b"")] {
        let (gr, cr) = both!(g4(ga, g, t, gp), c4(ca, c, cp));
        assert_eq!(bin(&gr, "payload"), cp);
        assert_eq!(bin(&claimer_rep(cr), "payload"), gp);
    }
    if let Some(relay) = relay {
        relay.abort();
    }
}

#[actix_web::test]
async fn greeting_greeter_first() {
    greeting(true, false).await;
}

#[actix_web::test]
async fn greeting_claimer_first() {
    greeting(false, false).await;
}

#[actix_web::test]
async fn greeting_across_two_instances() {
    greeting(true, true).await;
    greeting(false, true).await;
}

/// The acceptance test: the greeter on one server instance, the
/// claimer on another, one PostgreSQL database and the real event transport
/// between them (no relay). The dance completes, READY / IDLE show on the
/// greeter's instance, and a deletion there ends the claimer's wait.
#[actix_web::test]
async fn postgres_rendezvous_across_instances() {
    let outbox = Outbox::default();
    let Some((backends, first, second)) = two_postgres_instances(&outbox).await else {
        eprintln!("postgres_rendezvous_across_instances skipped: PARSEC_TEST_DB is not postgresql");
        return;
    };
    let (env, alice) = Env::bootstrap(backends, first, outbox).await;
    let t = env.invite(&alice, greq::InviteNewKind::Device).await;
    let (ga, ca) = (&env.actors, &second);
    let (g, c) = (&Arc::new(alice.client.clone()), &Arc::new(env.claimer(t).await));
    use step::*;

    let (gr, cr) = pair(g1(ga, g, t, 1), || c1(ca, c, 2)).await;
    assert_eq!(bin(&gr, "claimer_public_key"), [2; 32]);
    assert_eq!(bin(&claimer_rep(cr), "greeter_public_key"), [1; 32]);
    // 2a (claimer) is two exchanges: its hashed nonce, then the greeter's nonce.
    let cr = c2a(ca, c, b"hashed");
    settle().await;
    assert!(!cr.is_finished());
    assert_eq!(bin(&join(g2a(ga, g, t)).await, "claimer_hashed_nonce"), b"hashed");
    settle().await;
    assert!(!cr.is_finished(), "waits for the greeter's nonce");
    let gr = g2b(ga, g, t, b"greeter nonce");
    assert_eq!(bin(&claimer_rep(join(cr).await), "greeter_nonce"), b"greeter nonce");
    let cr = c2b(ca, c, b"claimer nonce");
    assert_eq!(bin(&join(gr).await, "claimer_nonce"), b"claimer nonce");
    assert_eq!(status(&claimer_rep(join(cr).await)), "ok");
    let (gr, cr) = pair(g3a(ga, g, t), || c3a(ca, c)).await;
    assert_bare(&gr, "ok");
    assert_bare(&claimer_rep(cr), "ok");
    let (cr, gr) = pair(c3b(ca, c), || g3b(ga, g, t)).await;
    assert_bare(&gr, "ok");
    assert_bare(&claimer_rep(cr), "ok");
    let (gr, cr) = pair(g4(ga, g, t, b"request"), || c4(ca, c, b"certificates")).await;
    assert_eq!(bin(&gr, "payload"), b"certificates");
    assert_eq!(bin(&claimer_rep(cr), "payload"), b"request");

    // The claimer connects to the second instance: the first one shows it.
    invite::claimer_presence(ca, c, true).await.unwrap();
    env.status_becomes(ga, &alice, t, "READY").await;
    invite::claimer_presence(ca, c, false).await.unwrap();
    env.status_becomes(ga, &alice, t, "IDLE").await;

    // A claimer waiting on the second instance when the greeter deletes the
    // invitation on the first.
    let waiting = c4(ca, c, b"more");
    settle().await;
    assert!(!waiting.is_finished());
    assert_bare(&env.delete(&alice, t).await, "ok");
    assert_eq!(join(waiting).await, ClaimerOutcome::InvitationDeleted);
}

#[actix_web::test]
async fn step_one_restarts_the_dance() {
    let (env, alice) = Env::start().await;
    let t = env.invite(&alice, greq::InviteNewKind::Device).await;
    let (a, g, c) = (
        &env.actors,
        &Arc::new(alice.client.clone()),
        &Arc::new(env.claimer(t).await),
    );
    use step::*;

    let (gr, cr) = pair(g1(a, g, t, 1), || c1(a, c, 2)).await;
    assert_eq!(status(&gr), "ok");
    assert_eq!(status(&claimer_rep(cr)), "ok");

    // The greeter waits at 2a; the claimer starts over: the greeter's wait
    // ends with invalid_state, and step 1 works again for both.
    let waiting = g2a(a, g, t);
    settle().await;
    assert!(!waiting.is_finished());
    let restart = c1(a, c, 3);
    assert_bare(&join(waiting).await, "invalid_state");
    let gr = g1(a, g, t, 4);
    assert_eq!(bin(&join(gr).await, "claimer_public_key"), [3; 32]);
    assert_eq!(bin(&claimer_rep(join(restart).await), "greeter_public_key"), [4; 32]);

    // Step 1 while a step 1 of the same side is pending: the pending one is
    // overwritten (reset); the peer gets the latest key.
    let first = g1(a, g, t, 5);
    settle().await;
    let second = g1(a, g, t, 6);
    settle().await;
    let cr = c1(a, c, 7);
    assert_eq!(bin(&claimer_rep(join(cr).await), "greeter_public_key"), [6; 32]);
    assert_eq!(bin(&join(second).await, "claimer_public_key"), [7; 32]);
    // The overwritten one saw its payload replaced under it.
    assert_bare(&join(first).await, "invalid_state");
}

#[actix_web::test]
async fn out_of_sync_steps_are_invalid_state() {
    let (env, alice) = Env::start().await;
    let t = env.invite(&alice, greq::InviteNewKind::Device).await;
    let (a, g, c) = (
        &env.actors,
        &Arc::new(alice.client.clone()),
        &Arc::new(env.claimer(t).await),
    );
    use step::*;

    // Nothing but step 1 is possible on a fresh conduit, on either side.
    assert_bare(&join(g2a(a, g, t)).await, "invalid_state");
    assert_bare(&join(g3b(a, g, t)).await, "invalid_state");
    assert_bare(&join(g4(a, g, t, b"x")).await, "invalid_state");
    assert_bare(&claimer_rep(join(c2b(a, c, b"n")).await), "invalid_state");
    assert_bare(&claimer_rep(join(c4(a, c, b"x")).await), "invalid_state");

    // Same step twice from one side (a retry): the second is refused, the
    // first keeps waiting and completes.
    let (gr, cr) = pair(g1(a, g, t, 1), || c1(a, c, 2)).await;
    assert_eq!(status(&gr), "ok");
    assert_eq!(status(&claimer_rep(cr)), "ok");
    let first = c2a(a, c, b"h");
    settle().await;
    assert_bare(&claimer_rep(join(c2a(a, c, b"h")).await), "invalid_state");
    let gr = g2a(a, g, t);
    assert_eq!(bin(&join(gr).await, "claimer_hashed_nonce"), b"h");
    settle().await;
    assert!(!first.is_finished(), "waits for the greeter's nonce");
    let gr = g2b(a, g, t, b"gn");
    assert_eq!(bin(&claimer_rep(join(first).await), "greeter_nonce"), b"gn");
    // Wrong step on a waiting peer's conduit.
    assert_bare(&claimer_rep(join(c3a(a, c)).await), "invalid_state");
    let cr = c2b(a, c, b"cn");
    assert_eq!(bin(&join(gr).await, "claimer_nonce"), b"cn");
    assert_eq!(status(&claimer_rep(join(cr).await)), "ok");
}

#[actix_web::test]
async fn deletion_ends_the_conduit() {
    let (env, alice) = Env::start().await;
    let bob = env.add_user("bob@pc", UserProfile::Admin, None).await;
    let t = env.invite(&alice, user_kind("zoe@example.com")).await;
    let (a, g, c) = (
        &env.actors,
        &Arc::new(alice.client.clone()),
        &Arc::new(env.claimer(t).await),
    );
    use step::*;

    // Not the requester's invitation: not_found, for any step.
    let other = Arc::new(bob.client.clone());
    assert_bare(&join(g1(a, &other, t, 1)).await, "not_found");
    assert_bare(&join(g4(a, &other, t, b"")).await, "not_found");
    assert_bare(&join(g1(a, g, Uuid::new_v4(), 1)).await, "not_found");

    // A greeter waiting when the invitation goes.
    let gw = g1(a, g, t, 1);
    settle().await;
    assert!(!gw.is_finished());
    assert_bare(&env.delete(&alice, t).await, "ok");
    assert_bare(&join(gw).await, "already_deleted");
    assert_bare(&join(g2a(a, g, t)).await, "already_deleted");
    // The claimer finds it deleted: close without answer.
    assert_eq!(join(c1(a, c, 2)).await, ClaimerOutcome::InvitationDeleted);
    assert_eq!(join(c4(a, c, b"")).await, ClaimerOutcome::InvitationDeleted);

    // A claimer waiting when the invitation goes.
    let t = env.invite(&alice, user_kind("yann@example.com")).await;
    let c = &Arc::new(env.claimer(t).await);
    let cw = c1(a, c, 2);
    settle().await;
    assert!(!cw.is_finished());
    env.delete(&alice, t).await;
    assert_eq!(join(cw).await, ClaimerOutcome::InvitationDeleted);
}

/// The end of a greeting: the greeter's last exchange completes and its
/// client deletes the invitation at once, possibly before the claimer's
/// listen. The claimer still gets its answer.
#[actix_web::test]
async fn completed_exchange_survives_deletion() {
    let (env, alice) = Env::start().await;
    let t = env.invite(&alice, greq::InviteNewKind::Device).await;
    let store: &dyn InviteBackend = &*env.backends.invite;
    let greeter = ConduitPeer::Greeter(alice.client.user_id.clone());
    let state = ConduitState::WaitPeers;
    let g = store
        .conduit_talk(&env.org, &greeter, t, state, b"g".to_vec())
        .await
        .unwrap();
    let c = store
        .conduit_talk(&env.org, &ConduitPeer::Claimer, t, state, b"c".to_vec())
        .await
        .unwrap();
    assert_eq!(c.peer_payload.as_deref(), Some(&b"g"[..]));
    let done = store.conduit_listen(&g).await.unwrap();
    assert_eq!(
        done,
        ListenStep::Done {
            payload: b"c".to_vec(),
            advanced: true
        }
    );
    let finished = InvitationDeletedReason::Finished;
    store
        .delete_invitation(&env.org, &alice.client.user_id, t, DateTime::now(), finished)
        .await
        .unwrap();
    let done = store.conduit_listen(&c).await.unwrap();
    assert_eq!(
        done,
        ListenStep::Done {
            payload: b"g".to_vec(),
            advanced: false
        }
    );
    // But nothing new can start.
    let next = ConduitState::ClaimerHashedNonce;
    let talk = store
        .conduit_talk(&env.org, &ConduitPeer::Claimer, t, next, vec![])
        .await;
    assert!(matches!(talk, Err(ConduitError::AlreadyDeleted)));

    // A waiting peer whose exchange was not completed does see the deletion.
    let t = env.invite(&alice, user_kind("x@example.com")).await;
    let g = store
        .conduit_talk(&env.org, &greeter, t, ConduitState::WaitPeers, b"g".to_vec())
        .await
        .unwrap();
    store
        .delete_invitation(
            &env.org,
            &alice.client.user_id,
            t,
            DateTime::now(),
            InvitationDeletedReason::Cancelled,
        )
        .await
        .unwrap();
    assert!(matches!(
        store.conduit_listen(&g).await,
        Err(ConduitError::AlreadyDeleted)
    ));
}

// ============================================================== websocket

/// A test server routing `/ws` to sessions, as `parsec-server` does.
async fn serve(actors: Actors) -> SocketAddr {
    async fn ws(
        req: HttpRequest,
        payload: web::Payload,
        actors: web::Data<Actors>,
    ) -> actix_web::Result<actix_web::HttpResponse> {
        parsec_actors::session::ws::start(&req, payload, actors.get_ref().clone())
    }
    let server = HttpServer::new(move || {
        App::new()
            .app_data(web::Data::new(actors.clone()))
            .route("/ws", web::get().to(ws))
    })
    .workers(1)
    .disable_signals()
    .bind(("127.0.0.1", 0))
    .unwrap();
    let addr = server.addrs()[0];
    actix_web::rt::spawn(server.run());
    addr
}

/// What the server sent.
#[derive(Debug, PartialEq)]
enum Frame {
    Msg(Value),
    Close(Option<u16>),
    Pong,
    /// TCP closed without a close frame.
    Eof,
}

/// A minimal websocket client (client frames masked, server frames never
/// fragmented by our server).
struct Ws {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Ws {
    async fn connect(addr: SocketAddr) -> Ws {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let req = "GET /ws HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                   Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
        stream.write_all(req.as_bytes()).await.unwrap();
        let mut buf = Vec::new();
        let end = loop {
            let mut chunk = [0u8; 4096];
            let n = stream.read(&mut chunk).await.unwrap();
            assert!(n > 0, "closed during the upgrade");
            buf.extend_from_slice(&chunk[..n]);
            if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break p + 4;
            }
        };
        assert!(buf.starts_with(b"HTTP/1.1 101"));
        Ws {
            stream,
            buf: buf[end..].to_vec(),
        }
    }

    async fn send_frame(&mut self, opcode: u8, payload: &[u8]) {
        let mut out = vec![0x80 | opcode];
        let len = payload.len();
        if len < 126 {
            out.push(0x80 | len as u8);
        } else if len < 65536 {
            out.push(0x80 | 126);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        } else {
            out.push(0x80 | 127);
            out.extend_from_slice(&(len as u64).to_be_bytes());
        }
        let mask = rand::random::<[u8; 4]>();
        out.extend_from_slice(&mask);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        self.stream.write_all(&out).await.unwrap();
    }

    async fn send(&mut self, v: &Value) {
        self.send_frame(0x2, &value::pack(v)).await;
    }

    async fn fill(&mut self, n: usize) -> bool {
        while self.buf.len() < n {
            let mut chunk = vec![0u8; 65536];
            match self.stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return false,
                Ok(k) => self.buf.extend_from_slice(&chunk[..k]),
            }
        }
        true
    }

    async fn frame(&mut self) -> Frame {
        tokio::time::timeout(WAIT, self.frame_inner())
            .await
            .expect("nothing from the server")
    }

    async fn frame_inner(&mut self) -> Frame {
        if !self.fill(2).await {
            return Frame::Eof;
        }
        let opcode = self.buf[0] & 0x0f;
        let (head, len) = match self.buf[1] & 0x7f {
            126 => {
                if !self.fill(4).await {
                    return Frame::Eof;
                }
                (4, u16::from_be_bytes([self.buf[2], self.buf[3]]) as usize)
            }
            127 => {
                if !self.fill(10).await {
                    return Frame::Eof;
                }
                (10, u64::from_be_bytes(self.buf[2..10].try_into().unwrap()) as usize)
            }
            n => (2, n as usize),
        };
        if !self.fill(head + len).await {
            return Frame::Eof;
        }
        let payload: Vec<u8> = self.buf.drain(..head + len).skip(head).collect();
        match opcode {
            0x2 => Frame::Msg(value::unpack(&payload).unwrap()),
            0x8 => Frame::Close((payload.len() >= 2).then(|| u16::from_be_bytes([payload[0], payload[1]]))),
            0xa => Frame::Pong,
            other => panic!("unexpected opcode {other}"),
        }
    }

    async fn msg(&mut self) -> Value {
        match self.frame().await {
            Frame::Msg(v) => v,
            other => panic!("expected a message, got {other:?}"),
        }
    }

    async fn req(&mut self, cmd: &str, fields: Vec<(&str, Value)>) -> Value {
        self.send(&cmd_map(cmd, fields)).await;
        self.msg().await
    }

    /// Nothing arrives for a while (the server is waiting).
    async fn silent(&mut self) {
        let quiet = tokio::time::timeout(Duration::from_millis(200), self.frame_inner()).await;
        assert!(quiet.is_err(), "unexpected {quiet:?}");
    }
}

fn cmd_map(cmd: &str, fields: Vec<(&str, Value)>) -> Value {
    let mut all = vec![("cmd", Value::from(cmd))];
    all.extend(fields);
    value::map(all)
}

/// Invited handshake; the result map.
async fn claim(addr: SocketAddr, org: &OrganizationId, kind: &str, token: Uuid) -> (Ws, Value) {
    let mut ws = Ws::connect(addr).await;
    let _challenge = ws.msg().await;
    let answer = value::map([
        ("handshake", Value::from("answer")),
        ("type", Value::from("INVITED")),
        (
            "client_api_version",
            Value::Array(vec![Value::from(3u64), Value::from(1u64)]),
        ),
        ("organization_id", Value::from(org.as_str())),
        ("invitation_type", Value::from(kind)),
        ("token", uuid_value(token)),
    ]);
    ws.send(&answer).await;
    let result = ws.msg().await;
    (ws, result)
}

async fn claim_ok(addr: SocketAddr, org: &OrganizationId, kind: &str, token: Uuid) -> Ws {
    let (ws, result) = claim(addr, org, kind, token).await;
    assert_eq!(field(&result, "result").as_str(), Some("ok"), "{result:?}");
    ws
}

async fn login(addr: SocketAddr, env: &Env, dev: &Dev) -> Ws {
    let mut ws = Ws::connect(addr).await;
    let challenge = match ws.frame().await {
        Frame::Msg(v) => value::pack(&v),
        other => panic!("{other:?}"),
    };
    let rvk = env.root.verifying_key().to_bytes();
    let c = &dev.client;
    let answer = parsec_protocol::handshake::authenticated_answer(&challenge, &c.org, &c.device_id, &rvk, |m| {
        dev.key.sign(m).to_bytes()
    })
    .unwrap();
    ws.send_frame(0x2, &answer).await;
    let result = ws.msg().await;
    assert_eq!(field(&result, "result").as_str(), Some("ok"), "{result:?}");
    ws
}

/// Next `invite.status_changed` of a subscribed connection.
async fn next_status(ws: &mut Ws) -> (Uuid, String) {
    let ev = ws.req("events_listen", vec![("wait", Value::Boolean(true))]).await;
    assert_eq!(field(&ev, "event").as_str(), Some("invite.status_changed"), "{ev:?}");
    (
        uuid_of(field(&ev, "token")),
        field(&ev, "invitation_status").as_str().unwrap().to_string(),
    )
}

#[actix_web::test]
async fn invited_handshake() {
    let (env, alice) = Env::start().await;
    let addr = serve(env.actors.clone()).await;
    let u = env.invite(&alice, user_kind("zoe@example.com")).await;
    let d = env.invite(&alice, greq::InviteNewKind::Device).await;

    let refused = |result: &Value, help: &str| {
        assert_eq!(field(result, "result").as_str(), Some("bad_identity"), "{result:?}");
        assert_eq!(field(result, "help").as_str(), Some(help), "{result:?}");
    };
    let unknown = OrganizationId::parse("NoSuchOrg").unwrap();
    let (mut ws, r) = claim(addr, &unknown, "USER", u).await;
    refused(&r, "Invalid handshake information");
    assert_eq!(ws.frame().await, Frame::Eof, "refusals drop TCP without a close frame");
    let (_, r) = claim(addr, &env.org, "USER", Uuid::new_v4()).await;
    refused(&r, "Invalid handshake: Invitation not found");
    let (_, r) = claim(addr, &env.org, "DEVICE", u).await;
    refused(&r, "Invalid handshake information");

    let mut ws = claim_ok(addr, &env.org, "USER", u).await;
    let info = ws.req("invite_info", vec![]).await;
    assert_eq!(field(&info, "claimer_email").as_str(), Some("zoe@example.com"));
    assert_eq!(field(&info, "greeter_user_id").as_str(), Some("alice"));
    let pong = ws.req("ping", vec![("ping", Value::from("hi"))]).await;
    assert_eq!(field(&pong, "pong").as_str(), Some("hi"));
    // Greeter commands do not exist here.
    let rep = ws.req("invite_list", vec![]).await;
    assert_eq!(status(&rep), "unknown_command");

    let mut ws = claim_ok(addr, &env.org, "DEVICE", d).await;
    assert_eq!(
        field(&ws.req("invite_info", vec![]).await, "type").as_str(),
        Some("DEVICE")
    );

    env.delete(&alice, d).await;
    assert_eq!(ws.frame().await, Frame::Close(Some(1000)));
    let (_, r) = claim(addr, &env.org, "DEVICE", d).await;
    refused(&r, "Invalid handshake: Invitation already deleted");
}

#[actix_web::test]
async fn claimer_presence_and_deletion_over_websockets() {
    let (env, alice) = Env::start().await;
    let addr = serve(env.actors.clone()).await;
    let mut greeter = login(addr, &env, &alice).await;
    assert_eq!(status(&greeter.req("events_subscribe", vec![]).await), "ok");

    let rep = greeter
        .req(
            "invite_new",
            vec![("type", Value::from("DEVICE")), ("send_email", Value::Boolean(false))],
        )
        .await;
    let t = token(&rep);
    assert_eq!(next_status(&mut greeter).await, (t, "IDLE".into()));

    // READY while connected, IDLE once gone.
    let mut claimer = claim_ok(addr, &env.org, "DEVICE", t).await;
    assert_eq!(next_status(&mut greeter).await, (t, "READY".into()));
    let list = greeter.req("invite_list", vec![]).await;
    let Value::Array(items) = field(&list, "invitations") else {
        panic!("{list:?}")
    };
    assert_eq!(field(&items[0], "status").as_str(), Some("READY"));
    claimer.send_frame(0x8, &1000u16.to_be_bytes()).await;
    assert_eq!(claimer.frame().await, Frame::Close(Some(1000)));
    assert_eq!(next_status(&mut greeter).await, (t, "IDLE".into()));

    // Deleting closes the claimer (1000, no message); IDLE follows DELETED.
    let mut claimer = claim_ok(addr, &env.org, "DEVICE", t).await;
    assert_eq!(next_status(&mut greeter).await, (t, "READY".into()));
    let rep = greeter
        .req(
            "invite_delete",
            vec![("token", uuid_value(t)), ("reason", Value::from("CANCELLED"))],
        )
        .await;
    assert_eq!(status(&rep), "ok");
    assert_eq!(claimer.frame().await, Frame::Close(Some(1000)));
    assert_eq!(next_status(&mut greeter).await, (t, "DELETED".into()));
    assert_eq!(next_status(&mut greeter).await, (t, "IDLE".into()));
}

#[actix_web::test]
async fn claimer_wait_peer_is_abandoned_by_the_next_request() {
    let (env, alice) = Env::start().await;
    let addr = serve(env.actors.clone()).await;
    let t = env.invite(&alice, greq::InviteNewKind::Device).await;
    let mut claimer = claim_ok(addr, &env.org, "DEVICE", t).await;

    let wait = |key: u8| {
        cmd_map(
            "invite_1_claimer_wait_peer",
            vec![("claimer_public_key", Value::Binary(vec![key; 32]))],
        )
    };
    claimer.send(&wait(1)).await;
    claimer.silent().await;
    // Pings are answered while it waits.
    claimer.send_frame(0x9, b"p").await;
    assert_eq!(claimer.frame().await, Frame::Pong);
    // A new request: the wait is dropped without an answer.
    let pong = claimer.req("ping", vec![("ping", Value::from("x"))]).await;
    assert_eq!(field(&pong, "pong").as_str(), Some("x"));

    // Waiting again, the greeter arrives: only this one is answered.
    claimer.send(&wait(2)).await;
    claimer.silent().await;
    let g = Arc::new(alice.client.clone());
    let gr = step::g1(&env.actors, &g, t, 9);
    let rep = claimer.msg().await;
    assert_eq!(bin(&rep, "greeter_public_key"), [9; 32]);
    assert_eq!(bin(&join(gr).await, "claimer_public_key"), [2; 32]);
    claimer.silent().await;
}

/// The greeter's last `invite_4_greeter_communicate` returns and the
/// invitation is deleted at once: the claimer gets its answer, then the close.
#[actix_web::test]
async fn last_answer_is_flushed_before_the_close() {
    for greeter_first in [true, false] {
        let (env, alice) = Env::start().await;
        let addr = serve(env.actors.clone()).await;
        let t = env.invite(&alice, greq::InviteNewKind::Device).await;
        let mut claimer = claim_ok(addr, &env.org, "DEVICE", t).await;
        let (a, g) = (&env.actors, &Arc::new(alice.client.clone()));

        // Walk to step 4.
        let gr = step::g1(a, g, t, 1);
        assert_eq!(
            status(
                &claimer
                    .req(
                        "invite_1_claimer_wait_peer",
                        vec![("claimer_public_key", Value::Binary(vec![2; 32]))]
                    )
                    .await
            ),
            "ok"
        );
        join(gr).await;
        let gr = step::g2a(a, g, t);
        claimer
            .send(&cmd_map(
                "invite_2a_claimer_send_hashed_nonce",
                vec![("claimer_hashed_nonce", Value::Binary(vec![3; 32]))],
            ))
            .await;
        join(gr).await;
        let gr = step::g2b(a, g, t, b"gn");
        assert_eq!(bin(&claimer.msg().await, "greeter_nonce"), b"gn");
        assert_eq!(
            status(
                &claimer
                    .req(
                        "invite_2b_claimer_send_nonce",
                        vec![("claimer_nonce", Value::Binary(b"cn".to_vec()))]
                    )
                    .await
            ),
            "ok"
        );
        join(gr).await;
        let gr = step::g3a(a, g, t);
        assert_eq!(
            status(&claimer.req("invite_3a_claimer_signify_trust", vec![]).await),
            "ok"
        );
        join(gr).await;
        let gr = step::g3b(a, g, t);
        assert_eq!(
            status(&claimer.req("invite_3b_claimer_wait_peer_trust", vec![]).await),
            "ok"
        );
        join(gr).await;

        // The last exchange, then the deletion right away.
        let last = cmd_map("invite_4_claimer_communicate", vec![("payload", Value::Binary(vec![]))]);
        let gr = if greeter_first {
            let gr = step::g4(a, g, t, b"device certificate");
            settle().await;
            claimer.send(&last).await;
            gr
        } else {
            claimer.send(&last).await;
            claimer.silent().await;
            step::g4(a, g, t, b"device certificate")
        };
        assert_eq!(bin(&join(gr).await, "payload"), b"");
        assert_bare(&env.delete(&alice, t).await, "ok");
        let rep = claimer.msg().await;
        assert_eq!(bin(&rep, "payload"), b"device certificate");
        assert_eq!(claimer.frame().await, Frame::Close(Some(1000)));
    }
}

#[actix_web::test]
async fn claimer_step_on_a_deleted_invitation_closes_without_answer() {
    let (env, alice) = Env::start().await;
    let addr = serve(env.actors.clone()).await;
    let t = env.invite(&alice, greq::InviteNewKind::Device).await;
    let mut claimer = claim_ok(addr, &env.org, "DEVICE", t).await;
    let gr = step::g1(&env.actors, &Arc::new(alice.client.clone()), t, 1);
    let key = Value::Binary(vec![2; 32]);
    let rep = claimer
        .req("invite_1_claimer_wait_peer", vec![("claimer_public_key", key)])
        .await;
    assert_eq!(status(&rep), "ok");
    join(gr).await;
    // Waiting for the greeter's step 2a when the invitation goes: the
    // connection closes, the request is never answered.
    let hashed = Value::Binary(vec![3; 32]);
    claimer
        .send(&cmd_map(
            "invite_2a_claimer_send_hashed_nonce",
            vec![("claimer_hashed_nonce", hashed)],
        ))
        .await;
    claimer.silent().await;
    env.delete(&alice, t).await;
    assert_eq!(claimer.frame().await, Frame::Close(Some(1000)));
    assert_eq!(claimer.frame().await, Frame::Eof);

    // A claimer step finding the invitation already deleted: no answer either
    // (the connection itself is closed by the deletion).
    let t = env.invite(&alice, greq::InviteNewKind::Device).await;
    let mut claimer = claim_ok(addr, &env.org, "DEVICE", t).await;
    let c = Arc::new(env.claimer(t).await);
    env.delete(&alice, t).await;
    assert_eq!(
        join(step::c3a(&env.actors, &c)).await,
        ClaimerOutcome::InvitationDeleted
    );
    assert_eq!(claimer.frame().await, Frame::Close(Some(1000)));
}

// ================================================================== e-mail

fn mail(to: &str) -> InvitationEmail {
    let addr = BackendAddr {
        netloc: "127.0.0.1:6777".into(),
        no_ssl: true,
    };
    let org = OrganizationId::parse("CoolOrg").unwrap();
    InvitationEmail {
        to: to.into(),
        greeter_name: Some("Alice".into()),
        reply_to: human("alice@example.com", "Alice"),
        invitation_url: addr.invitation_url(&org, InvitationType::User, Uuid::new_v4()),
        backend_url: addr.http_url(),
        org,
    }
}

/// What a scripted SMTP server saw.
#[derive(Debug, Default, Clone)]
struct Transcript {
    commands: Vec<String>,
    data: String,
}

/// How the scripted SMTP server behaves.
#[derive(Clone, Copy, PartialEq)]
enum Script {
    Accept,
    RefuseRecipient,
    RefuseSender,
    /// Greets, then never answers.
    Silent,
}

/// A one-connection SMTP server speaking just enough of RFC 5321.
async fn smtp_server(script: Script) -> (u16, tokio::task::JoinHandle<Transcript>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let handle = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        let (r, mut w) = stream.into_split();
        let mut lines = BufReader::new(r).lines();
        let mut t = Transcript::default();
        w.write_all(b"220 test ESMTP\r\n").await.unwrap();
        while let Ok(Some(line)) = lines.next_line().await {
            t.commands.push(line.clone());
            let verb = line.split([' ', ':']).next().unwrap_or("").to_ascii_uppercase();
            if script == Script::Silent && verb != "EHLO" {
                tokio::time::sleep(Duration::from_secs(30)).await;
                break;
            }
            let reply: &[u8] = match verb.as_str() {
                "EHLO" => b"250-test\r\n250-AUTH PLAIN LOGIN\r\n250 8BITMIME\r\n",
                "AUTH" => b"235 ok\r\n",
                "MAIL" if script == Script::RefuseSender => b"553 sender refused\r\n",
                "RCPT" if script == Script::RefuseRecipient => b"550 no such user\r\n",
                "DATA" => {
                    w.write_all(b"354 go on\r\n").await.unwrap();
                    while let Ok(Some(l)) = lines.next_line().await {
                        if l == "." {
                            break;
                        }
                        t.data.push_str(&l);
                        t.data.push('\n');
                    }
                    b"250 queued\r\n"
                }
                "QUIT" => {
                    w.write_all(b"221 bye\r\n").await.unwrap();
                    break;
                }
                _ => b"250 ok\r\n",
            };
            w.write_all(reply).await.unwrap();
        }
        t
    });
    (port, handle)
}

async fn smtp_send(config: SmtpConfig, to: &str) -> InvitationEmailSentStatus {
    let mailer = SmtpMailer::new(config);
    email::send_invitation(&mailer, "Parsec <no-reply@parsec.com>", &mail(to)).await
}

#[actix_web::test]
async fn smtp_delivery() {
    let (port, server) = smtp_server(Script::Accept).await;
    let config = SmtpConfig {
        user: Some("u".into()),
        password: Some("p".into()),
        ..SmtpConfig::new("127.0.0.1", port)
    };
    assert_eq!(
        smtp_send(config, "bob@example.com").await,
        InvitationEmailSentStatus::Success
    );
    let t = server.await.unwrap();
    let verbs: Vec<&str> = t.commands.iter().map(|c| c.split([' ', ':']).next().unwrap()).collect();
    assert_eq!(verbs, ["EHLO", "AUTH", "MAIL", "RCPT", "DATA", "QUIT"], "{t:?}");
    assert!(t.commands[2].contains("<no-reply@parsec.com>"), "{t:?}");
    assert!(t.commands[3].contains("<bob@example.com>"), "{t:?}");
    assert!(
        t.data.contains("Subject: [Parsec] Alice invited you to CoolOrg"),
        "{t:?}"
    );
    assert!(t.data.contains("Reply-To: Alice <alice@example.com>"), "{t:?}");
    assert!(t.data.contains("multipart/alternative"), "{t:?}");
}

#[actix_web::test]
async fn smtp_failures() {
    let (port, server) = smtp_server(Script::RefuseRecipient).await;
    assert_eq!(
        smtp_send(SmtpConfig::new("127.0.0.1", port), "bob@example.com").await,
        InvitationEmailSentStatus::BadRecipient
    );
    let t = server.await.unwrap();
    assert!(!t.commands.iter().any(|c| c.starts_with("DATA")), "{t:?}");

    // Login only with both user and password.
    let (port, server) = smtp_server(Script::RefuseSender).await;
    let config = SmtpConfig {
        user: Some("u".into()),
        ..SmtpConfig::new("127.0.0.1", port)
    };
    assert_eq!(
        smtp_send(config, "bob@example.com").await,
        InvitationEmailSentStatus::NotAvailable
    );
    let t = server.await.unwrap();
    assert!(!t.commands.iter().any(|c| c.starts_with("AUTH")), "{t:?}");

    // Nobody listening.
    let free = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    assert_eq!(
        smtp_send(SmtpConfig::new("127.0.0.1", free), "bob@example.com").await,
        InvitationEmailSentStatus::NotAvailable
    );

    // A server that stops answering: bounded by the timeout.
    let (port, _server) = smtp_server(Script::Silent).await;
    let config = SmtpConfig {
        timeout: Duration::from_millis(500),
        ..SmtpConfig::new("127.0.0.1", port)
    };
    let sent = tokio::time::timeout(WAIT, smtp_send(config, "bob@example.com"))
        .await
        .expect("the timeout must fire");
    assert_eq!(sent, InvitationEmailSentStatus::NotAvailable);

    // Not an address at all: refused before connecting.
    assert_eq!(
        smtp_send(SmtpConfig::new("127.0.0.1", free), "not an address").await,
        InvitationEmailSentStatus::BadRecipient
    );
}

/// Against a real SMTP receiver (`scripts/test.sh` starts
/// `python3 -m smtpd -n -c DebuggingServer 127.0.0.1:<port>` and sets
/// `PARSEC_TEST_SMTP_ADDR=127.0.0.1:<port>`).
#[actix_web::test]
async fn smtp_real_receiver() {
    let Ok(addr) = std::env::var("PARSEC_TEST_SMTP_ADDR") else {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("PARSEC_TEST_SMTP_ADDR is not set: under CI=true the SMTP receiver is required");
        }
        eprintln!("smtp_real_receiver skipped: PARSEC_TEST_SMTP_ADDR is not set");
        return;
    };
    let (host, port) = addr.rsplit_once(':').expect("PARSEC_TEST_SMTP_ADDR is host:port");
    let config = SmtpConfig::new(host, port.parse().expect("port"));
    let recipient = format!("real-{}@example.com", hex::encode(rand::random::<[u8; 4]>()));
    assert_eq!(smtp_send(config, &recipient).await, InvitationEmailSentStatus::Success);
    // The receiver writes each message it got to a file: ours arrived, to the
    // right recipient, with the invitation link.
    let dir = std::env::var("PARSEC_TEST_SMTP_DIR").expect("PARSEC_TEST_SMTP_DIR goes with PARSEC_TEST_SMTP_ADDR");
    let mut found = None;
    for _ in 0..50 {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
            if text.contains(&format!("X-Test-Rcpt-To: {recipient}")) {
                found = Some(text);
            }
        }
        if found.is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let mail = found.expect("the invitation e-mail reached the SMTP receiver");
    let unfolded = mail.replace("=\r\n", "").replace("=3D", "=");
    assert!(
        unfolded.contains("/redirect/CoolOrg?action=claim_user&token="),
        "{mail}"
    );
}
