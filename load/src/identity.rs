//! Keys and signed certificates, built as the 2.10 client builds them: the
//! bootstrap set (user and device, full and redacted, root-signed), a second
//! device certified by the first, and the OWNER role of a new realm.
//!
//! Pure functions: no I/O. Used by the load tool's setup and by the server's
//! end-to-end tests.

use ed25519_dalek::{Signer, SigningKey};
use parsec_protocol::certif::{self, DeviceCertificate, RealmRoleCertificate, UserCertificate};
use parsec_protocol::types::*;
use parsec_protocol::value::{self, Value};

/// A device's identity and signing key.
#[derive(Debug, Clone)]
pub struct Device {
    pub device_id: DeviceId,
    pub signing_key: SigningKey,
}

/// A fresh random Ed25519 signing key.
pub fn new_key() -> SigningKey {
    SigningKey::from_bytes(&rand::random::<[u8; 32]>())
}

/// The signing callback the protocol crate's builders take.
pub fn sign(key: &SigningKey) -> impl Fn(&[u8]) -> [u8; 64] + '_ {
    move |m| key.sign(m).to_bytes()
}

/// `<prefix><12 random hex digits>`, a valid OrganizationID if `prefix` is.
pub fn unique_org(prefix: &str) -> Result<OrganizationId, String> {
    OrganizationId::parse(&format!("{prefix}{}", hex::encode(rand::random::<[u8; 6]>())))
}

/// Certificates for a bootstrap: full and redacted user and device.
pub struct BootstrapCerts {
    pub user: Vec<u8>,
    pub device: Vec<u8>,
    pub redacted_user: Vec<u8>,
    pub redacted_device: Vec<u8>,
}

/// The bootstrap certificates of an ADMIN user `alice@example.com` and its
/// device labelled `laptop`, signed by the root key, all at `now`.
pub fn bootstrap_certs(
    root: &SigningKey,
    device_id: &DeviceId,
    device_key: &SigningKey,
    now: DateTime,
) -> BootstrapCerts {
    let user = UserCertificate {
        author: None,
        timestamp: now,
        user_id: device_id.user_id(),
        human_handle: HumanHandle::new("alice@example.com", "Alice").ok(),
        public_key: [9; 32],
        profile: UserProfile::Admin,
    };
    let device = DeviceCertificate {
        author: None,
        timestamp: now,
        device_id: device_id.clone(),
        device_label: DeviceLabel::parse("laptop").ok(),
        verify_key: device_key.verifying_key().to_bytes(),
    };
    let redacted_user = UserCertificate {
        human_handle: None,
        ..user.clone()
    };
    let redacted_device = DeviceCertificate {
        device_label: None,
        ..device.clone()
    };
    BootstrapCerts {
        user: certif::build::sign_payload(certif::build::user(&user), sign(root)),
        device: certif::build::sign_payload(certif::build::device(&device), sign(root)),
        redacted_user: certif::build::sign_payload(certif::build::user(&redacted_user), sign(root)),
        redacted_device: certif::build::sign_payload(certif::build::device(&redacted_device), sign(root)),
    }
}

/// The `organization_bootstrap` request for the anonymous route.
pub fn bootstrap_req(token: &str, root: &SigningKey, c: &BootstrapCerts) -> Value {
    value::map([
        ("cmd", Value::from("organization_bootstrap")),
        ("bootstrap_token", Value::from(token)),
        (
            "root_verify_key",
            Value::Binary(root.verifying_key().to_bytes().to_vec()),
        ),
        ("user_certificate", Value::Binary(c.user.clone())),
        ("device_certificate", Value::Binary(c.device.clone())),
        ("redacted_user_certificate", Value::Binary(c.redacted_user.clone())),
        ("redacted_device_certificate", Value::Binary(c.redacted_device.clone())),
    ])
}

/// The `device_create` request adding `new` (same user) certified by `author`.
pub fn device_create_req(author: &Device, new: &Device, now: DateTime) -> Value {
    let device = DeviceCertificate {
        author: Some(author.device_id.clone()),
        timestamp: now,
        device_id: new.device_id.clone(),
        device_label: DeviceLabel::parse(new.device_id.device_name().as_str()).ok(),
        verify_key: new.signing_key.verifying_key().to_bytes(),
    };
    let redacted = DeviceCertificate {
        device_label: None,
        ..device.clone()
    };
    let key = &author.signing_key;
    value::map([
        ("cmd", Value::from("device_create")),
        (
            "device_certificate",
            Value::Binary(certif::build::sign_payload(certif::build::device(&device), sign(key))),
        ),
        (
            "redacted_device_certificate",
            Value::Binary(certif::build::sign_payload(certif::build::device(&redacted), sign(key))),
        ),
    ])
}

/// The `realm_create` request: `author`'s user becomes OWNER of `realm_id`,
/// self-signed by `author`.
pub fn realm_create_req(author: &Device, realm_id: Uuid, now: DateTime) -> Value {
    let role = RealmRoleCertificate {
        author: Some(author.device_id.clone()),
        timestamp: now,
        realm_id,
        user_id: author.device_id.user_id(),
        role: Some(RealmRole::Owner),
    };
    value::map([
        ("cmd", Value::from("realm_create")),
        (
            "role_certificate",
            Value::Binary(certif::build::sign_payload(
                certif::build::realm_role(&role),
                sign(&author.signing_key),
            )),
        ),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;
    use parsec_protocol::certif::{ExpectedAuthor, verify_and_load};

    #[test]
    fn certificates_verify() {
        let root = new_key();
        let dev1 = Device {
            device_id: DeviceId::parse("alice@dev1").unwrap(),
            signing_key: new_key(),
        };
        let now = DateTime::now();
        let c = bootstrap_certs(&root, &dev1.device_id, &dev1.signing_key, now);
        let rvk = root.verifying_key().to_bytes();
        let u: UserCertificate = verify_and_load(&c.user, &rvk, ExpectedAuthor::Root).unwrap();
        assert_eq!(u.profile, UserProfile::Admin);
        let d: DeviceCertificate = verify_and_load(&c.redacted_device, &rvk, ExpectedAuthor::Root).unwrap();
        assert_eq!(d.device_label, None);

        let dev2 = Device {
            device_id: DeviceId::parse("alice@dev2").unwrap(),
            signing_key: new_key(),
        };
        let req = device_create_req(&dev1, &dev2, now);
        let Value::Map(m) = req else { panic!() };
        let Some(Value::Binary(signed)) = value::get(&m, "device_certificate") else {
            panic!()
        };
        let vk = dev1.signing_key.verifying_key().to_bytes();
        let d: DeviceCertificate = verify_and_load(signed, &vk, ExpectedAuthor::Device(&dev1.device_id)).unwrap();
        assert_eq!(d.device_id, dev2.device_id);

        let realm = Uuid::new_v4();
        let Value::Map(m) = realm_create_req(&dev1, realm, now) else {
            panic!()
        };
        let Some(Value::Binary(signed)) = value::get(&m, "role_certificate") else {
            panic!()
        };
        let r: RealmRoleCertificate = verify_and_load(signed, &vk, ExpectedAuthor::Device(&dev1.device_id)).unwrap();
        assert_eq!((r.realm_id, r.role), (realm, Some(RealmRole::Owner)));
        assert!(unique_org("Load").unwrap().as_str().starts_with("Load"));
        assert!(unique_org("bad prefix").is_err());
    }
}
