//! Harness of the data behaviour suite: an organization bootstrapped through
//! the real command, extra users created through the public [`UserBackend`]
//! seam, role certificates signed like the 2.10 client does, and an event
//! listener registered with the broker like a subscribed connection.
//!
//! The store is [`Backends::for_tests`]: memory by default, a fresh
//! PostgreSQL database with `PARSEC_TEST_DB=postgresql`.

use std::sync::atomic::{AtomicU64, Ordering};

use ed25519_dalek::{Signer, SigningKey};
use parsec_actors::backend::{Backends, Device, User, UserRevocation};
use parsec_actors::client::AuthenticatedClient;
use parsec_actors::organization::{self, BootstrapRequest, CreateOrganization};
use parsec_actors::{Actors, Settings, realm};
use parsec_protocol::certif::{self, DeviceCertificate, RealmRoleCertificate, UserCertificate};
use parsec_protocol::cmds::authenticated as req;
use parsec_protocol::types::*;
use parsec_protocol::value::{self, Value};

#[path = "../support/events.rs"]
mod events;

pub fn new_key() -> SigningKey {
    SigningKey::from_bytes(&rand::random::<[u8; 32]>())
}

fn sign(key: &SigningKey) -> impl Fn(&[u8]) -> [u8; 64] + '_ {
    move |m| key.sign(m).to_bytes()
}

pub fn now() -> DateTime {
    DateTime::now()
}

/// `now` shifted by whole seconds (negative: in the past).
pub fn at(secs: i64) -> DateTime {
    DateTime::now().add_micros(secs * 1_000_000)
}

static NEXT_CONN: AtomicU64 = AtomicU64::new(1_000_000);

/// A device able to run commands.
pub struct Dev {
    pub client: AuthenticatedClient,
    pub key: SigningKey,
}

impl Dev {
    pub fn user_id(&self) -> UserId {
        self.client.user_id.clone()
    }

    /// A realm role certificate authored by this device.
    pub fn role_cert(&self, realm_id: Uuid, user: &UserId, role: Option<RealmRole>, timestamp: DateTime) -> Vec<u8> {
        let c = RealmRoleCertificate {
            author: Some(self.client.device_id.clone()),
            timestamp,
            realm_id,
            user_id: user.clone(),
            role,
        };
        certif::build::sign_payload(certif::build::realm_role(&c), sign(&self.key))
    }
}

/// One organization in a fresh server.
pub struct Env {
    pub actors: Actors,
    /// The stores behind the actors, for tests that call them directly.
    pub backends: Backends,
    pub org: OrganizationId,
    /// The bootstrap device (`alice@dev1`), certifier of the users added.
    pub admin: DeviceId,
}

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

impl Env {
    /// A server on the test store, with `CoolOrg` bootstrapped by `alice@dev1` (ADMIN).
    pub async fn start() -> (Env, Dev) {
        Self::start_with(|b| b).await
    }

    /// Same, letting the test swap backends (e.g. a failing block store).
    pub async fn start_with(tweak: impl FnOnce(Backends) -> Backends) -> (Env, Dev) {
        let backends = tweak(Backends::for_tests().await);
        let actors = Actors::start(backends.clone(), settings());
        let org = OrganizationId::parse("CoolOrg").unwrap();
        let create = CreateOrganization {
            id: org.clone(),
            bootstrap_token: "bootstrap".into(),
            active_users_limit: None,
            user_profile_outsider_allowed: true,
        };
        actors.organization.send(create).await.unwrap().unwrap();

        let root = new_key();
        let key = new_key();
        let device_id = DeviceId::parse("alice@dev1").unwrap();
        let t = now();
        let user = UserCertificate {
            author: None,
            timestamp: t,
            user_id: device_id.user_id(),
            human_handle: None,
            public_key: [1; 32],
            profile: UserProfile::Admin,
        };
        let device = DeviceCertificate {
            author: None,
            timestamp: t,
            device_id: device_id.clone(),
            device_label: None,
            verify_key: key.verifying_key().to_bytes(),
        };
        let user_certificate = certif::build::sign_payload(certif::build::user(&user), sign(&root));
        let device_certificate = certif::build::sign_payload(certif::build::device(&device), sign(&root));
        let req = BootstrapRequest {
            bootstrap_token: "bootstrap".into(),
            root_verify_key: root.verifying_key().to_bytes(),
            user_certificate: user_certificate.clone(),
            device_certificate: device_certificate.clone(),
            redacted_user_certificate: Some(user_certificate),
            redacted_device_certificate: Some(device_certificate),
        };
        let rep = organization::bootstrap(&actors, &org, req).await.unwrap();
        assert_eq!(status(&rep), "ok", "{rep:?}");

        let env = Env {
            actors,
            backends,
            org,
            admin: device_id,
        };
        let alice = env.dev("alice@dev1", UserProfile::Admin, key);
        (env, alice)
    }

    fn dev(&self, device_id: &str, profile: UserProfile, key: SigningKey) -> Dev {
        let device_id = DeviceId::parse(device_id).unwrap();
        let client = AuthenticatedClient {
            conn_id: NEXT_CONN.fetch_add(1, Ordering::Relaxed),
            org: self.org.clone(),
            user_id: device_id.user_id(),
            device_id,
            profile,
            human_handle: None,
            device_label: None,
            verify_key: key.verifying_key().to_bytes(),
        };
        Dev { client, key }
    }

    /// Creates a user with one device through [`UserBackend::create_user`]
    /// (certificates are not checked there, so they are left empty).
    pub async fn add_user(&self, device_id: &str, profile: UserProfile) -> Dev {
        let dev = self.dev(device_id, profile, new_key());
        let user = User {
            user_id: dev.user_id(),
            human_handle: None,
            profile,
            user_certificate: vec![],
            redacted_user_certificate: vec![],
            user_certifier: Some(self.admin.clone()),
            created_on: at(-60),
            revoked_on: None,
            revoked_user_certificate: None,
            revoked_user_certifier: None,
        };
        let device = self.device_of(&dev);
        self.backends
            .user
            .create_user(&self.org, user, device, now())
            .await
            .unwrap();
        dev
    }

    /// Creates a STANDARD user revoked at `revoked_on` (possibly in the future).
    pub async fn add_revoked_user(&self, device_id: &str, revoked_on: DateTime) -> Dev {
        let dev = self.add_user(device_id, UserProfile::Standard).await;
        self.revoke(&dev, revoked_on).await;
        dev
    }

    /// Revokes the user of `dev` at `revoked_on` through [`UserBackend::revoke_user`].
    pub async fn revoke(&self, dev: &Dev, revoked_on: DateTime) {
        let revocation = UserRevocation {
            user_id: dev.user_id(),
            revoked_on,
            revoked_user_certificate: b"revoked".to_vec(),
            revoked_user_certifier: self.admin.clone(),
        };
        self.backends.user.revoke_user(&self.org, revocation).await.unwrap();
    }

    /// Another device of an existing user (same user id, its own key),
    /// created through [`UserBackend::create_device`].
    pub async fn second_device(&self, of: &Dev, name: &str) -> Dev {
        let device_id = format!("{}@{name}", of.user_id());
        let dev = self.dev(&device_id, of.client.profile, new_key());
        self.backends
            .user
            .create_device(&self.org, self.device_of(&dev))
            .await
            .unwrap();
        dev
    }

    fn device_of(&self, dev: &Dev) -> Device {
        Device {
            device_id: dev.client.device_id.clone(),
            device_label: None,
            device_certificate: vec![],
            redacted_device_certificate: vec![],
            device_certifier: Some(self.admin.clone()),
            created_on: at(-60),
            verify_key: dev.client.verify_key,
        }
    }

    // ------------------------------------------------------------ commands

    /// `realm_create` by `dev` of a new realm; returns the realm id and the
    /// certificate's timestamp.
    pub async fn create_realm(&self, dev: &Dev) -> (Uuid, DateTime) {
        let realm_id = Uuid::new_v4();
        // Early enough for the tests' later role changes and writes.
        let t = at(-30);
        let cert = dev.role_cert(realm_id, &dev.user_id(), Some(RealmRole::Owner), t);
        let rep = realm::create(&self.actors, &dev.client, req::RealmCreate { role_certificate: cert })
            .await
            .unwrap();
        assert_eq!(status(&rep), "ok", "{rep:?}");
        (realm_id, t)
    }

    pub async fn update_roles(
        &self,
        by: &Dev,
        realm_id: Uuid,
        user: &Dev,
        role: Option<RealmRole>,
        timestamp: DateTime,
        message: Option<&[u8]>,
    ) -> Value {
        let cert = by.role_cert(realm_id, &user.user_id(), role, timestamp);
        let r = req::RealmUpdateRoles {
            role_certificate: cert,
            recipient_message: message.map(<[u8]>::to_vec),
        };
        realm::update_roles(&self.actors, &by.client, r).await.unwrap()
    }

    /// Grants a role and asserts it worked.
    pub async fn share(&self, by: &Dev, realm_id: Uuid, user: &Dev, role: Option<RealmRole>, timestamp: DateTime) {
        let rep = self.update_roles(by, realm_id, user, role, timestamp, None).await;
        assert_eq!(status(&rep), "ok", "{rep:?}");
    }

    pub async fn vlob_create(
        &self,
        dev: &Dev,
        realm_id: Uuid,
        vlob_id: Uuid,
        timestamp: DateTime,
        blob: &[u8],
    ) -> Value {
        let r = req::VlobCreate {
            realm_id,
            encryption_revision: 1,
            vlob_id,
            timestamp,
            blob: blob.to_vec(),
        };
        parsec_actors::vlob::create(&self.actors, &dev.client, r).await.unwrap()
    }

    pub async fn vlob_update(
        &self,
        dev: &Dev,
        vlob_id: Uuid,
        encryption_revision: i64,
        version: i64,
        timestamp: DateTime,
        blob: &[u8],
    ) -> Value {
        let r = req::VlobUpdate {
            encryption_revision,
            vlob_id,
            timestamp,
            version,
            blob: blob.to_vec(),
        };
        parsec_actors::vlob::update(&self.actors, &dev.client, r).await.unwrap()
    }

    pub async fn vlob_read(
        &self,
        dev: &Dev,
        vlob_id: Uuid,
        encryption_revision: i64,
        version: Option<i64>,
        timestamp: Option<DateTime>,
    ) -> Value {
        let r = req::VlobRead {
            encryption_revision,
            vlob_id,
            version,
            timestamp,
        };
        parsec_actors::vlob::read(&self.actors, &dev.client, r).await.unwrap()
    }

    pub async fn realm_status(&self, dev: &Dev, realm_id: Uuid) -> Value {
        realm::status(&self.actors, &dev.client, req::RealmStatus { realm_id })
            .await
            .unwrap()
    }

    pub async fn block_create(&self, dev: &Dev, realm_id: Uuid, block_id: Uuid, block: &[u8]) -> Value {
        let r = req::BlockCreate {
            block_id,
            realm_id,
            block: block.to_vec(),
        };
        parsec_actors::block::create(&self.actors, &dev.client, r)
            .await
            .unwrap()
    }

    pub async fn block_read(&self, dev: &Dev, block_id: Uuid) -> Value {
        parsec_actors::block::read(&self.actors, &dev.client, req::BlockRead { block_id })
            .await
            .unwrap()
    }

    pub async fn message_get(&self, dev: &Dev, offset: i64) -> Value {
        parsec_actors::message::get(&self.actors, &dev.client, req::MessageGet { offset })
            .await
            .unwrap()
    }

    /// Registers `dev` with the broker and subscribes it as `events_subscribe` does.
    pub async fn listen(&self, dev: &Dev) -> Listener {
        let realms = realm::realms_for_user(&self.actors, &dev.client).await.unwrap();
        Listener(events::subscribe(&self.actors, &dev.client, realms).await)
    }
}

// ------------------------------------------------------------------ events

/// Events received by one subscribed device.
pub struct Listener(events::Subscribed);

impl Listener {
    /// Every event delivered so far, as (name, event); drains them.
    pub async fn take(&self) -> Vec<(String, Value)> {
        self.0
            .drain()
            .await
            .into_iter()
            .filter_map(|p| p.event_value())
            .map(|e| (field(&e, "event").as_str().unwrap().to_string(), e))
            .collect()
    }

    /// Names of the events delivered so far; drains them.
    pub async fn names(&self) -> Vec<String> {
        self.take().await.into_iter().map(|(n, _)| n).collect()
    }
}

// ------------------------------------------------------------------ replies

pub fn field<'a>(v: &'a Value, key: &str) -> &'a Value {
    match v {
        Value::Map(m) => value::get(m, key).unwrap_or(&Value::Nil),
        _ => &Value::Nil,
    }
}

pub fn status(v: &Value) -> &str {
    field(v, "status").as_str().unwrap_or("<none>")
}

pub fn has_field(v: &Value, key: &str) -> bool {
    matches!(v, Value::Map(m) if value::get(m, key).is_some())
}

pub fn int(v: &Value, key: &str) -> i64 {
    field(v, key)
        .as_i64()
        .unwrap_or_else(|| panic!("{key} not an int in {v:?}"))
}

pub fn bin<'a>(v: &'a Value, key: &str) -> &'a [u8] {
    match field(v, key) {
        Value::Binary(b) => b,
        other => panic!("{key} not bytes: {other:?}"),
    }
}

pub fn reason(v: &Value) -> &str {
    field(v, "reason")
        .as_str()
        .unwrap_or_else(|| panic!("no reason in {v:?}"))
}

pub fn dt(t: DateTime) -> Value {
    t.to_value()
}

pub fn uuid(id: Uuid) -> Value {
    uuid_value(id)
}

/// Asserts `status` and that the reply carries nothing else but what is listed.
#[track_caller]
pub fn assert_bare(v: &Value, expected: &str) {
    assert_eq!(status(v), expected, "{v:?}");
    assert!(!has_field(v, "reason"), "unexpected reason in {v:?}");
}
