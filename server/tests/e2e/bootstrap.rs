//! `organization_bootstrap` on the anonymous route, with good and bad
//! certificates, then the first commands of the bootstrapped device.

use ed25519_dalek::SigningKey;
use parsec_protocol::certif::{self, DeviceCertificate, UserCertificate};
use parsec_protocol::types::*;
use parsec_protocol::value::{self, Value};

use crate::common::*;

struct Fixture {
    server: TestServer,
    org: OrganizationId,
    token: String,
    root: SigningKey,
    device_id: DeviceId,
    device_key: SigningKey,
}

async fn fixture() -> Fixture {
    let server = start_server().await;
    let org = unique_org("Boot");
    let token = create_org(&server, &org).await;
    Fixture {
        server,
        org,
        token,
        root: new_key(),
        device_id: DeviceId::parse("alice@laptop").expect("device id"),
        device_key: new_key(),
    }
}

impl Fixture {
    async fn post(&self, req: &Value) -> Vec<(Value, Value)> {
        let (status, rep) = anonymous(&self.server, self.org.as_str(), &value::pack(req)).await;
        assert_eq!(status, 200);
        rep
    }
    fn certs(&self) -> BootstrapCerts {
        bootstrap_certs(&self.root, &self.device_id, &self.device_key, DateTime::now())
    }
    fn user(&self, now: DateTime) -> UserCertificate {
        UserCertificate {
            author: None,
            timestamp: now,
            user_id: self.device_id.user_id(),
            human_handle: Some(HumanHandle::new("alice@example.com", "Alice").expect("human handle")),
            public_key: [9; 32],
            profile: UserProfile::Admin,
        }
    }
    fn device(&self, now: DateTime) -> DeviceCertificate {
        DeviceCertificate {
            author: None,
            timestamp: now,
            device_id: self.device_id.clone(),
            device_label: None,
            verify_key: self.device_key.verifying_key().to_bytes(),
        }
    }
    fn sign_user(&self, c: &UserCertificate) -> Vec<u8> {
        certif::build::sign_payload(certif::build::user(c), sign(&self.root))
    }
    fn sign_device(&self, c: &DeviceCertificate) -> Vec<u8> {
        certif::build::sign_payload(certif::build::device(c), sign(&self.root))
    }
    fn with(&self, c: &BootstrapCerts, key: &str, v: Value) -> Value {
        let Value::Map(mut m) = bootstrap_req(&self.token, &self.root, c) else {
            unreachable!()
        };
        for (k, val) in m.iter_mut() {
            if k.as_str() == Some(key) {
                *val = v.clone();
            }
        }
        Value::Map(m)
    }
}

#[actix_web::test]
async fn good_bootstrap_then_commands() {
    let f = fixture().await;
    let wrong = f.post(&bootstrap_req(&"0".repeat(64), &f.root, &f.certs())).await;
    assert_eq!(status(&wrong), "not_found");
    let rep = f.post(&bootstrap_req(&f.token, &f.root, &f.certs())).await;
    assert_eq!(rep.len(), 1, "ok has no other field: {rep:?}");
    assert_eq!(status(&rep), "ok");
    let again = f.post(&bootstrap_req(&f.token, &f.root, &f.certs())).await;
    assert_eq!(status(&again), "already_bootstrapped");
    let (_, cfg) = admin(
        &f.server,
        "GET",
        &format!("/administration/organizations/{}", f.org),
        serde_json::Value::Null,
    )
    .await;
    assert_eq!(cfg["is_bootstrapped"], serde_json::json!(true));

    let rvk = f.root.verifying_key().to_bytes();
    let mut ws = try_login(&f.server, &f.org, &f.device_id, &f.device_key, &rvk)
        .await
        .unwrap();
    let rep = ws.req("organization_config", vec![]).await;
    assert_eq!(status(&rep), "ok");
    assert_eq!(field(&rep, "user_profile_outsider_allowed"), &Value::Boolean(true));
    assert_eq!(field(&rep, "active_users_limit"), &Value::Nil);
    let rep = ws.req("organization_stats", vec![]).await;
    assert_eq!(field(&rep, "users").as_u64(), Some(1));
    assert_eq!(field(&rep, "active_users").as_u64(), Some(1));
    let rep = ws.req("user_get", vec![("user_id", Value::from("alice"))]).await;
    assert_eq!(status(&rep), "ok");
    assert!(matches!(field(&rep, "user_certificate"), Value::Binary(_)));
    assert_eq!(field(&rep, "revoked_user_certificate"), &Value::Nil);
    assert_eq!(field(&rep, "device_certificates").as_array().map(Vec::len), Some(1));
    let rep = ws.req("user_get", vec![("user_id", Value::from("unknownuser"))]).await;
    assert_eq!(
        rep,
        value::unpack_map(&value::pack(&value::map([("status", Value::from("not_found"))]))).unwrap()
    );
}

#[actix_web::test]
async fn bad_certificates() {
    let f = fixture().await;
    let now = DateTime::now();
    let good = f.certs();

    // Signed by another key.
    let other = new_key();
    let forged = certif::build::sign_payload(certif::build::user(&f.user(now)), sign(&other));
    let rep = f.post(&f.with(&good, "user_certificate", Value::Binary(forged))).await;
    assert_eq!(status(&rep), "invalid_certification");
    let reason = field(&rep, "reason").as_str().unwrap();
    assert!(
        reason.starts_with("Invalid certification data (") && !reason.contains("timestamp"),
        "{reason}"
    );

    // Not even a certificate.
    let rep = f
        .post(&f.with(&good, "device_certificate", Value::Binary(b"short".to_vec())))
        .await;
    assert_eq!(status(&rep), "invalid_certification");

    // Not an admin.
    let mut standard = f.user(now);
    standard.profile = UserProfile::Standard;
    let rep = f
        .post(&f.with(&good, "user_certificate", Value::Binary(f.sign_user(&standard))))
        .await;
    assert_eq!(
        field(&rep, "reason").as_str(),
        Some("Bootstrapping user must have admin profile.")
    );

    // User and device timestamps differ.
    // (before `good`, made after `now`: never the same instant)
    let later = f.device(now.add_micros(-1_000_000));
    let rep = f
        .post(&f.with(&good, "device_certificate", Value::Binary(f.sign_device(&later))))
        .await;
    assert_eq!(
        field(&rep, "reason").as_str(),
        Some("Device and user certificates must have the same timestamp."),
        "{rep:?}"
    );

    // Device of another user.
    let mut bob = f.device(now);
    bob.device_id = DeviceId::parse("bob@laptop").unwrap();
    let user_now = f.user(now);
    let c = BootstrapCerts {
        user: f.sign_user(&user_now),
        device: f.sign_device(&bob),
        redacted_user: f.sign_user(&UserCertificate {
            human_handle: None,
            ..user_now.clone()
        }),
        redacted_device: f.sign_device(&bob),
    };
    let rep = f.post(&bootstrap_req(&f.token, &f.root, &c)).await;
    assert_eq!(
        field(&rep, "reason").as_str(),
        Some("Device and user must have the same user ID.")
    );

    // Out of the ballpark: bad_timestamp with the clock fields.
    let old = now.add_micros(-3_600_000_000);
    let c = BootstrapCerts {
        user: f.sign_user(&f.user(old)),
        device: f.sign_device(&f.device(old)),
        redacted_user: f.sign_user(&UserCertificate {
            human_handle: None,
            ..f.user(old)
        }),
        redacted_device: f.sign_device(&f.device(old)),
    };
    let rep = f.post(&bootstrap_req(&f.token, &f.root, &c)).await;
    assert_eq!(status(&rep), "bad_timestamp");
    assert_eq!(field(&rep, "ballpark_client_early_offset"), &Value::F64(50.0));
    assert_eq!(field(&rep, "client_timestamp"), &old.to_value());
    assert!(value::get(&rep, "reason").is_none());

    // Redacted user keeping its human handle.
    let rep = f
        .post(&f.with(&good, "redacted_user_certificate", Value::Binary(good.user.clone())))
        .await;
    assert_eq!(
        field(&rep, "reason").as_str(),
        Some("Redacted User certificate must not contain a human_handle field.")
    );
    // Redacted user differing in more than the human handle.
    let mut differs = f.user(now);
    differs.human_handle = None;
    differs.public_key = [1; 32];
    let rep = f
        .post(&f.with(&good, "redacted_user_certificate", Value::Binary(f.sign_user(&differs))))
        .await;
    assert_eq!(
        field(&rep, "reason").as_str(),
        Some("Redacted User certificate differs from User certificate.")
    );

    // Nothing of the above bootstrapped the organization.
    let rep = f.post(&bootstrap_req(&f.token, &f.root, &f.certs())).await;
    assert_eq!(status(&rep), "ok");
}

#[actix_web::test]
async fn anonymous_route_errors() {
    let f = fixture().await;
    // Unknown organization: 404 with an empty msgpack map.
    let (status_code, raw) = http_request(
        &f.server,
        "POST",
        "/anonymous/NoSuchOrg",
        &[],
        &value::pack(&bootstrap_req("", &f.root, &f.certs())),
    )
    .await;
    assert_eq!((status_code, raw), (404, vec![0x80]));
    let (status_code, _) = http_request(&f.server, "GET", &format!("/anonymous/{}", f.org), &[], b"").await;
    assert_eq!(status_code, 200);
    // Undecodable body, unknown command, bad fields.
    let (_, rep) = anonymous(&f.server, f.org.as_str(), b"\xc1garbage").await;
    assert_eq!(rep, vec![(Value::from("status"), Value::from("invalid_msg_format"))]);
    let rep = f
        .post(&value::map([("cmd", Value::from("ping")), ("ping", Value::from("x"))]))
        .await;
    assert_eq!(rep, vec![(Value::from("status"), Value::from("unknown_command"))]);
    let rep = f
        .post(&value::map([("cmd", Value::from("organization_bootstrap"))]))
        .await;
    assert_eq!(status(&rep), "bad_message");
}
