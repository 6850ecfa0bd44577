//! Harness of the identity behaviour suite: an organization bootstrapped
//! through the real command by `alice@dev1` (ADMIN, `alice@example.com`),
//! users and devices created through the real commands with certificates
//! signed like the 2.10 client does, and a listener registered with the
//! broker like a subscribed connection (it also sees connection closes).

use std::io::Write;

use std::sync::atomic::{AtomicU64, Ordering};

use ed25519_dalek::{Signer, SigningKey};
use parsec_actors::broker::Push;
use parsec_actors::client::AuthenticatedClient;
use parsec_actors::organization::{self, BootstrapRequest, CreateOrganization};
use parsec_actors::{Actors, Settings, user};
use parsec_protocol::certif::{self, DeviceCertificate, RevokedUserCertificate, UserCertificate};
use parsec_protocol::cmds::authenticated as req;
use parsec_protocol::types::*;
use parsec_protocol::value::{self, Value};

#[path = "../support/events.rs"]
mod events;

pub fn new_key() -> SigningKey {
    SigningKey::from_bytes(&rand::random::<[u8; 32]>())
}

pub fn now() -> DateTime {
    DateTime::now()
}

/// `now` shifted by whole seconds (negative: in the past).
pub fn at(secs: i64) -> DateTime {
    DateTime::now().add_micros(secs * 1_000_000)
}

pub fn human(email: &str, label: &str) -> Option<HumanHandle> {
    Some(HumanHandle::new(email, label).unwrap())
}

static NEXT_CONN: AtomicU64 = AtomicU64::new(2_000_000);

/// A connected device able to run commands.
pub struct Dev {
    pub client: AuthenticatedClient,
    pub key: SigningKey,
}

impl Dev {
    pub fn user_id(&self) -> UserId {
        self.client.user_id.clone()
    }

    pub fn device_id(&self) -> DeviceId {
        self.client.device_id.clone()
    }

    pub fn sign(&self, fields: Value) -> Vec<u8> {
        sign_with(&self.key, fields)
    }

    /// A revoked-user certificate authored by this device.
    pub fn revoked_cert(&self, user: &UserId, timestamp: DateTime) -> Vec<u8> {
        let c = RevokedUserCertificate {
            author: Some(self.device_id()),
            timestamp,
            user_id: user.clone(),
        };
        self.sign(certif::build::revoked_user(&c))
    }
}

pub fn sign_with(key: &SigningKey, fields: Value) -> Vec<u8> {
    certif::build::sign_payload(fields, |m| key.sign(m).to_bytes())
}

/// The content of a new user's four certificates, to tweak before signing.
pub struct NewUser {
    pub user: UserCertificate,
    pub device: DeviceCertificate,
    pub redacted_user: UserCertificate,
    pub redacted_device: DeviceCertificate,
    /// The new device's signing key.
    pub key: SigningKey,
}

impl NewUser {
    /// `device_id` with a label, certified by `author` at `now`.
    pub fn new(author: &Dev, device_id: &str, human: Option<HumanHandle>, profile: UserProfile) -> Self {
        let key = new_key();
        let device_id = DeviceId::parse(device_id).unwrap();
        let t = now();
        let user = UserCertificate {
            author: Some(author.device_id()),
            timestamp: t,
            user_id: device_id.user_id(),
            human_handle: human,
            public_key: [3; 32],
            profile,
        };
        let device = DeviceCertificate {
            author: Some(author.device_id()),
            timestamp: t,
            device_id,
            device_label: Some(DeviceLabel::parse("laptop").unwrap()),
            verify_key: key.verifying_key().to_bytes(),
        };
        let redacted_user = UserCertificate {
            human_handle: None,
            ..user.clone()
        };
        let redacted_device = DeviceCertificate {
            device_label: None,
            ..device.clone()
        };
        Self {
            user,
            device,
            redacted_user,
            redacted_device,
            key,
        }
    }

    /// Both certificates' timestamps.
    pub fn at(mut self, t: DateTime) -> Self {
        for ts in [
            &mut self.user.timestamp,
            &mut self.device.timestamp,
            &mut self.redacted_user.timestamp,
            &mut self.redacted_device.timestamp,
        ] {
            *ts = t;
        }
        self
    }

    /// The four certificates signed with `key`.
    pub fn signed(&self, key: &SigningKey) -> req::UserCreate {
        req::UserCreate {
            user_certificate: sign_with(key, certif::build::user(&self.user)),
            device_certificate: sign_with(key, certif::build::device(&self.device)),
            redacted_user_certificate: sign_with(key, certif::build::user(&self.redacted_user)),
            redacted_device_certificate: sign_with(key, certif::build::device(&self.redacted_device)),
        }
    }
}

/// One organization in a fresh server.
pub struct Env {
    pub actors: Actors,
    pub org: OrganizationId,
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
    /// A server on the test store (memory, or PostgreSQL with `PARSEC_TEST_DB`), with `CoolOrg` bootstrapped by `alice@dev1` (ADMIN).
    pub async fn start() -> (Env, Dev) {
        Self::start_with(None, true).await
    }

    /// Same, with the organization's settings.
    pub async fn start_with(active_users_limit: Option<u64>, user_profile_outsider_allowed: bool) -> (Env, Dev) {
        let actors = parsec_actors::backend::postgres::start_actors_for_tests(settings()).await;
        let org = OrganizationId::parse("CoolOrg").unwrap();
        let create = CreateOrganization {
            id: org.clone(),
            bootstrap_token: "bootstrap".into(),
            active_users_limit,
            user_profile_outsider_allowed,
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
            human_handle: human("alice@example.com", "Alice"),
            public_key: [1; 32],
            profile: UserProfile::Admin,
        };
        let device = DeviceCertificate {
            author: None,
            timestamp: t,
            device_id: device_id.clone(),
            device_label: Some(DeviceLabel::parse("desktop").unwrap()),
            verify_key: key.verifying_key().to_bytes(),
        };
        let redacted_user = UserCertificate {
            human_handle: None,
            ..user.clone()
        };
        let redacted_device = DeviceCertificate {
            device_label: None,
            ..device.clone()
        };
        let req = BootstrapRequest {
            bootstrap_token: "bootstrap".into(),
            root_verify_key: root.verifying_key().to_bytes(),
            user_certificate: sign_with(&root, certif::build::user(&user)),
            device_certificate: sign_with(&root, certif::build::device(&device)),
            redacted_user_certificate: Some(sign_with(&root, certif::build::user(&redacted_user))),
            redacted_device_certificate: Some(sign_with(&root, certif::build::device(&redacted_device))),
        };
        let rep = organization::bootstrap(&actors, &org, req).await.unwrap();
        assert_eq!(status(&rep), "ok", "{rep:?}");

        let env = Env { actors, org };
        let alice = env.dev(device_id, UserProfile::Admin, key);
        (env, alice)
    }

    /// A connection of `device_id`, as the handshake would build it.
    pub fn dev(&self, device_id: DeviceId, profile: UserProfile, key: SigningKey) -> Dev {
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

    /// Another connection of the same device (same key).
    pub fn reconnect(&self, dev: &Dev) -> Dev {
        self.dev(dev.device_id(), dev.client.profile, dev.key.clone())
    }

    // ------------------------------------------------------------ commands

    pub async fn user_create(&self, by: &Dev, r: req::UserCreate) -> Value {
        user::create(&self.actors, &by.client, r).await.unwrap()
    }

    /// `user_create` by `by`, asserting it worked; returns the new device.
    pub async fn create_user(
        &self,
        by: &Dev,
        device_id: &str,
        human: Option<HumanHandle>,
        profile: UserProfile,
    ) -> Dev {
        let new = NewUser::new(by, device_id, human, profile);
        let rep = self.user_create(by, new.signed(&by.key)).await;
        assert_eq!(status(&rep), "ok", "{rep:?}");
        self.dev(new.device.device_id, profile, new.key)
    }

    pub async fn revoke(&self, by: &Dev, user: &UserId, timestamp: DateTime) -> Value {
        let r = req::UserRevoke {
            revoked_user_certificate: by.revoked_cert(user, timestamp),
        };
        user::revoke(&self.actors, &by.client, r).await.unwrap()
    }

    pub async fn device_create(&self, by: &Dev, r: req::DeviceCreate) -> Value {
        user::create_device(&self.actors, &by.client, r).await.unwrap()
    }

    pub async fn user_get(&self, by: &Dev, user: &UserId) -> Value {
        user::get(&self.actors, &by.client, user.clone()).await.unwrap()
    }

    pub async fn find(
        &self,
        by: &Dev,
        query: Option<&str>,
        omit_revoked: bool,
        omit_non_human: bool,
        page: i64,
        per_page: i64,
    ) -> Value {
        let r = req::HumanFind {
            query: query.map(str::to_string),
            omit_revoked,
            omit_non_human,
            page,
            per_page,
        };
        user::find_humans(&self.actors, &by.client, r).await.unwrap()
    }

    /// Registers `dev` with the broker and subscribes it as `events_subscribe` does.
    pub async fn listen(&self, dev: &Dev) -> Listener {
        Listener(events::subscribe(&self.actors, &dev.client, Default::default()).await)
    }
}

// ------------------------------------------------------------------ events

/// What the broker pushed to one subscribed connection.
pub struct Listener(events::Subscribed);

impl Listener {
    /// Everything pushed so far, drained: event names, and `"<close>"` for a close.
    pub async fn take(&self) -> Vec<String> {
        self.0
            .drain()
            .await
            .into_iter()
            .map(|p| match p {
                Push::Close => "<close>".to_string(),
                Push::Event(_) => field(&p.event_value().unwrap(), "event").as_str().unwrap().to_string(),
                #[allow(unreachable_patterns)]
                other => format!("<{other:?}>"),
            })
            .collect()
    }
}

// ------------------------------------------------------------------ payloads

/// `zlib(msgpack(fields))`, as the client builds PKI payloads.
pub fn zip(fields: Value) -> Vec<u8> {
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    z.write_all(&value::pack(&fields)).unwrap();
    z.finish().unwrap()
}

pub fn submit_payload() -> Vec<u8> {
    zip(value::map([
        ("type", Value::from("pki_enrollment_submit_payload")),
        ("verify_key", Value::Binary(vec![1; 32])),
        ("public_key", Value::Binary(vec![2; 32])),
        ("requested_device_label", Value::from("laptop")),
    ]))
}

pub fn accept_payload() -> Vec<u8> {
    zip(value::map([
        ("type", Value::from("pki_enrollment_answer_payload")),
        ("device_id", Value::from("zack@laptop")),
        ("device_label", Value::from("laptop")),
        ("human_handle", human("zack@example.com", "Zack").unwrap().to_value()),
        ("profile", Value::from("STANDARD")),
        ("root_verify_key", Value::Binary(vec![4; 32])),
    ]))
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

pub fn reason(v: &Value) -> &str {
    field(v, "reason")
        .as_str()
        .unwrap_or_else(|| panic!("no reason in {v:?}"))
}

pub fn datetime(v: &Value, key: &str) -> DateTime {
    match field(v, key) {
        Value::Ext(1, raw) => DateTime::from_f64(f64::from_be_bytes(raw.as_slice().try_into().unwrap())).unwrap(),
        other => panic!("{key} not a datetime: {other:?}"),
    }
}

/// Asserts the status and that the reply has no `reason`.
#[track_caller]
pub fn assert_bare(v: &Value, expected: &str) {
    assert_eq!(status(v), expected, "{v:?}");
    assert!(!has_field(v, "reason"), "unexpected reason in {v:?}");
}

/// Asserts the status and the exact reason.
#[track_caller]
pub fn assert_reason(v: &Value, expected_status: &str, expected_reason: &str) {
    assert_eq!(status(v), expected_status, "{v:?}");
    assert_eq!(reason(v), expected_reason, "{v:?}");
}
