//! Signed certificates the server opens and checks (certificates.md).
//!
//! Layout: `ed25519_signature(64) || zlib(msgpack(map))`, signed over the
//! compressed bytes. The server keeps the bytes exactly as received (other
//! clients re-verify them), so loading never re-serialises anything.

use std::io::Read;

use crate::fields::{Fields, SchemaErrors};
use crate::types::*;
use crate::value::{self, Value};

/// Decompressed certificates are tiny; this bounds a zlib bomb.
const MAX_DECOMPRESSED: u64 = 1024 * 1024;

/// Why a certificate was refused. `Display` gives the detail that goes into
/// `"Invalid certification data (<detail>)."`; none of these texts contains
/// the word the client treats as a clock problem.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CertifError {
    #[error("Signature was forged or corrupt")]
    BadSignature,
    #[error("Error while decompressing data: {0}")]
    Decompress(String),
    #[error("Invalid msgpack data: {0}")]
    Decode(String),
    #[error("{0}")]
    Schema(SchemaErrors),
    #[error("Invalid author: expected `{expected}`, got `{got}`")]
    UnexpectedAuthor { expected: String, got: String },
}

impl CertifError {
    /// The `reason` of the `invalid_certification` reply.
    pub fn reason(&self) -> String {
        format!("Invalid certification data ({self}).")
    }
}

/// Who must have signed a certificate.
#[derive(Debug, Clone, Copy)]
pub enum ExpectedAuthor<'a> {
    /// The organization's root key (`author` nil).
    Root,
    Device(&'a DeviceId),
}

/// A certificate kind: its `type` constant and its schema.
pub trait Certificate: Sized {
    const TYPE: &'static str;
    /// Loads the fields after the common `type` / `author` / `timestamp`.
    fn load(f: &mut Fields, author: Option<DeviceId>, timestamp: DateTime) -> Option<Self>;
    fn author(&self) -> Option<&DeviceId>;
}

fn decompress(data: &[u8]) -> Result<Vec<u8>, CertifError> {
    let mut out = Vec::new();
    flate2::read::ZlibDecoder::new(data)
        .take(MAX_DECOMPRESSED + 1)
        .read_to_end(&mut out)
        .map_err(|e| CertifError::Decompress(e.to_string()))?;
    if out.len() as u64 > MAX_DECOMPRESSED {
        return Err(CertifError::Decompress("data too large".into()));
    }
    Ok(out)
}

/// Decodes a certificate without checking its signature (the payload after
/// the 64-byte signature). Used for the checks that compare two certificates.
pub fn load_unverified<T: Certificate>(signed: &[u8]) -> Result<T, CertifError> {
    let compressed = signed.get(64..).ok_or(CertifError::BadSignature)?;
    load_payload(compressed)
}

fn load_payload<T: Certificate>(compressed: &[u8]) -> Result<T, CertifError> {
    let raw = decompress(compressed)?;
    let map = value::unpack_map(&raw).map_err(|e| CertifError::Decode(e.to_string()))?;
    let mut f = Fields::new(&map);
    let kind: Option<String> = f.req("type");
    if let Some(k) = &kind
        && k != T::TYPE
    {
        f.error("type", format!("Invalid value, should be `{}`", T::TYPE));
    }
    let author: Option<Option<DeviceId>> = f.req_nullable("author");
    let timestamp: Option<DateTime> = f.req("timestamp");
    let built = match (author, timestamp) {
        (Some(author), Some(timestamp)) => T::load(&mut f, author, timestamp),
        _ => None,
    };
    f.finish(built).map_err(CertifError::Schema)
}

/// The full check (certificates.md §1.1): signature, zlib, msgpack, schema,
/// expected author.
pub fn verify_and_load<T: Certificate>(signed: &[u8], key: &Key32, expected: ExpectedAuthor) -> Result<T, CertifError> {
    let compressed = crate::signature::open(signed, key).ok_or(CertifError::BadSignature)?;
    let cert: T = load_payload(compressed)?;
    match (expected, cert.author()) {
        (ExpectedAuthor::Root, None) => Ok(cert),
        (ExpectedAuthor::Device(d), Some(a)) if a == d => Ok(cert),
        (ExpectedAuthor::Root, Some(got)) => Err(CertifError::UnexpectedAuthor {
            expected: "<root key>".into(),
            got: got.to_string(),
        }),
        (ExpectedAuthor::Device(d), got) => Err(CertifError::UnexpectedAuthor {
            expected: d.to_string(),
            got: got.map(ToString::to_string).unwrap_or_else(|| "<root key>".into()),
        }),
    }
}

/// `user_certificate`.
#[derive(Debug, Clone, PartialEq)]
pub struct UserCertificate {
    pub author: Option<DeviceId>,
    pub timestamp: DateTime,
    pub user_id: UserId,
    pub human_handle: Option<HumanHandle>,
    pub public_key: Key32,
    /// Effective profile (legacy `is_admin` folded in).
    pub profile: UserProfile,
}

impl Certificate for UserCertificate {
    const TYPE: &'static str = "user_certificate";
    fn load(f: &mut Fields, author: Option<DeviceId>, timestamp: DateTime) -> Option<Self> {
        let user_id = f.req("user_id");
        let human_handle = f.opt("human_handle");
        let public_key = f.req("public_key");
        let is_admin: Option<bool> = f.req("is_admin");
        let profile: Option<Option<UserProfile>> = match f.raw("profile") {
            Some(Value::Nil) => {
                f.error("profile", crate::fields::NULL);
                None
            }
            _ => f.opt("profile"),
        };
        let profile = match (is_admin?, profile?) {
            (true, Some(p)) if p != UserProfile::Admin => {
                f.error("_schema", "Fields `profile` and `is_admin` have incompatible values");
                return None;
            }
            (_, Some(p)) => p,
            (true, None) => UserProfile::Admin,
            (false, None) => UserProfile::Standard,
        };
        Some(Self {
            author,
            timestamp,
            user_id: user_id?,
            human_handle: human_handle?,
            public_key: public_key?,
            profile,
        })
    }
    fn author(&self) -> Option<&DeviceId> {
        self.author.as_ref()
    }
}

/// `device_certificate`.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceCertificate {
    pub author: Option<DeviceId>,
    pub timestamp: DateTime,
    pub device_id: DeviceId,
    pub device_label: Option<DeviceLabel>,
    pub verify_key: Key32,
}

impl Certificate for DeviceCertificate {
    const TYPE: &'static str = "device_certificate";
    fn load(f: &mut Fields, author: Option<DeviceId>, timestamp: DateTime) -> Option<Self> {
        let device_id = f.req("device_id");
        let device_label = f.opt("device_label");
        let verify_key = f.req("verify_key");
        Some(Self {
            author,
            timestamp,
            device_id: device_id?,
            device_label: device_label?,
            verify_key: verify_key?,
        })
    }
    fn author(&self) -> Option<&DeviceId> {
        self.author.as_ref()
    }
}

/// `revoked_user_certificate`.
#[derive(Debug, Clone, PartialEq)]
pub struct RevokedUserCertificate {
    pub author: Option<DeviceId>,
    pub timestamp: DateTime,
    pub user_id: UserId,
}

impl Certificate for RevokedUserCertificate {
    const TYPE: &'static str = "revoked_user_certificate";
    fn load(f: &mut Fields, author: Option<DeviceId>, timestamp: DateTime) -> Option<Self> {
        if author.is_none() {
            f.error("author", crate::fields::NULL);
        }
        let user_id = f.req("user_id");
        Some(Self {
            author: Some(author?),
            timestamp,
            user_id: user_id?,
        })
    }
    fn author(&self) -> Option<&DeviceId> {
        self.author.as_ref()
    }
}

/// `realm_role_certificate`.
#[derive(Debug, Clone, PartialEq)]
pub struct RealmRoleCertificate {
    pub author: Option<DeviceId>,
    pub timestamp: DateTime,
    pub realm_id: Uuid,
    pub user_id: UserId,
    /// `None`: the role is removed.
    pub role: Option<RealmRole>,
}

impl Certificate for RealmRoleCertificate {
    const TYPE: &'static str = "realm_role_certificate";
    fn load(f: &mut Fields, author: Option<DeviceId>, timestamp: DateTime) -> Option<Self> {
        if author.is_none() {
            f.error("author", crate::fields::NULL);
        }
        let realm_id = f.req("realm_id");
        let user_id = f.req("user_id");
        let role = f.req_nullable("role");
        Some(Self {
            author: Some(author?),
            timestamp,
            realm_id: realm_id?,
            user_id: user_id?,
            role: role?,
        })
    }
    fn author(&self) -> Option<&DeviceId> {
        self.author.as_ref()
    }
}

/// An unsigned PKI enrollment payload (certificates.md §5): `zlib(msgpack(map))`
/// whose X.509 signature travels separately and is never checked by the
/// server. It only decodes them to refuse garbage, and keeps the raw bytes.
pub trait PkiPayload: Sized {
    const TYPE: &'static str;
    /// Loads the fields after `type`.
    fn load(f: &mut Fields) -> Option<Self>;
}

/// Decodes a PKI payload; the error's `Display` is the `invalid_payload_data` reason.
pub fn load_pki_payload<T: PkiPayload>(raw: &[u8]) -> Result<T, CertifError> {
    let raw = decompress(raw)?;
    let map = value::unpack_map(&raw).map_err(|e| CertifError::Decode(e.to_string()))?;
    let mut f = Fields::new(&map);
    let kind: Option<String> = f.req("type");
    if let Some(k) = &kind
        && k != T::TYPE
    {
        f.error("type", format!("Invalid value, should be `{}`", T::TYPE));
    }
    let built = T::load(&mut f);
    f.finish(built).map_err(CertifError::Schema)
}

/// `pki_enrollment_submit_payload` (field `submit_payload` of `pki_enrollment_submit`).
#[derive(Debug, Clone, PartialEq)]
pub struct PkiEnrollmentSubmitPayload {
    pub verify_key: Key32,
    pub public_key: Key32,
    pub requested_device_label: DeviceLabel,
}

impl PkiPayload for PkiEnrollmentSubmitPayload {
    const TYPE: &'static str = "pki_enrollment_submit_payload";
    fn load(f: &mut Fields) -> Option<Self> {
        let verify_key = f.req("verify_key");
        let public_key = f.req("public_key");
        let requested_device_label = f.req("requested_device_label");
        Some(Self {
            verify_key: verify_key?,
            public_key: public_key?,
            requested_device_label: requested_device_label?,
        })
    }
}

/// `pki_enrollment_answer_payload` (field `accept_payload` of `pki_enrollment_accept`).
#[derive(Debug, Clone, PartialEq)]
pub struct PkiEnrollmentAcceptPayload {
    pub device_id: DeviceId,
    pub device_label: Option<DeviceLabel>,
    pub human_handle: Option<HumanHandle>,
    pub profile: UserProfile,
    pub root_verify_key: Key32,
}

impl PkiPayload for PkiEnrollmentAcceptPayload {
    const TYPE: &'static str = "pki_enrollment_answer_payload";
    fn load(f: &mut Fields) -> Option<Self> {
        let device_id = f.req("device_id");
        let device_label = f.req_nullable("device_label");
        let human_handle = f.req_nullable("human_handle");
        let profile = f.req("profile");
        let root_verify_key = f.req("root_verify_key");
        Some(Self {
            device_id: device_id?,
            device_label: device_label?,
            human_handle: human_handle?,
            profile: profile?,
            root_verify_key: root_verify_key?,
        })
    }
}

/// Test and client-side helpers: build certificates as the 2.10 client does.
pub mod build {
    use std::io::Write;

    use super::*;

    fn author_value(author: &Option<DeviceId>) -> Value {
        author.as_ref().map(|a| Value::from(a.as_str())).unwrap_or(Value::Nil)
    }

    /// `sign(zlib(msgpack(fields)))`, signature first.
    pub fn sign_payload(fields: Value, sign: impl FnOnce(&[u8]) -> [u8; 64]) -> Vec<u8> {
        let raw = value::pack(&fields);
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        // Writing into a Vec cannot fail.
        let _ = z.write_all(&raw);
        let compressed = z.finish().unwrap_or_default();
        let mut out = sign(&compressed).to_vec();
        out.extend_from_slice(&compressed);
        out
    }

    pub fn user(c: &UserCertificate) -> Value {
        value::map([
            ("type", Value::from(UserCertificate::TYPE)),
            ("author", author_value(&c.author)),
            ("timestamp", c.timestamp.to_value()),
            ("user_id", Value::from(c.user_id.as_str())),
            (
                "human_handle",
                c.human_handle.as_ref().map(HumanHandle::to_value).unwrap_or(Value::Nil),
            ),
            ("public_key", Value::Binary(c.public_key.to_vec())),
            ("is_admin", Value::Boolean(c.profile == UserProfile::Admin)),
            ("profile", c.profile.to_value()),
        ])
    }

    pub fn device(c: &DeviceCertificate) -> Value {
        value::map([
            ("type", Value::from(DeviceCertificate::TYPE)),
            ("author", author_value(&c.author)),
            ("timestamp", c.timestamp.to_value()),
            ("device_id", Value::from(c.device_id.as_str())),
            (
                "device_label",
                c.device_label
                    .as_ref()
                    .map(|l| Value::from(l.as_str()))
                    .unwrap_or(Value::Nil),
            ),
            ("verify_key", Value::Binary(c.verify_key.to_vec())),
        ])
    }

    pub fn revoked_user(c: &RevokedUserCertificate) -> Value {
        value::map([
            ("type", Value::from(RevokedUserCertificate::TYPE)),
            ("author", author_value(&c.author)),
            ("timestamp", c.timestamp.to_value()),
            ("user_id", Value::from(c.user_id.as_str())),
        ])
    }

    pub fn realm_role(c: &RealmRoleCertificate) -> Value {
        value::map([
            ("type", Value::from(RealmRoleCertificate::TYPE)),
            ("author", author_value(&c.author)),
            ("timestamp", c.timestamp.to_value()),
            ("realm_id", uuid_value(c.realm_id)),
            ("user_id", Value::from(c.user_id.as_str())),
            ("role", c.role.map(RealmRole::to_value).unwrap_or(Value::Nil)),
        ])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::{Signer, SigningKey};

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    fn user_cert(author: Option<DeviceId>) -> UserCertificate {
        UserCertificate {
            author,
            timestamp: DateTime::from_micros(1_654_084_800_123_456),
            user_id: UserId::parse("alice").unwrap(),
            human_handle: Some(HumanHandle::new("alice@example.com", "Alice").unwrap()),
            public_key: [7; 32],
            profile: UserProfile::Admin,
        }
    }

    #[test]
    fn round_trip_and_refusals() {
        let root = key(1);
        let rvk = root.verifying_key().to_bytes();
        let signed = build::sign_payload(build::user(&user_cert(None)), |m| root.sign(m).to_bytes());
        let c: UserCertificate = verify_and_load(&signed, &rvk, ExpectedAuthor::Root).unwrap();
        assert_eq!(c, user_cert(None));

        let other = key(2).verifying_key().to_bytes();
        assert_eq!(
            verify_and_load::<UserCertificate>(&signed, &other, ExpectedAuthor::Root),
            Err(CertifError::BadSignature)
        );
        let dev = DeviceId::parse("alice@dev1").unwrap();
        let e = verify_and_load::<UserCertificate>(&signed, &rvk, ExpectedAuthor::Device(&dev)).unwrap_err();
        assert_eq!(
            e.reason(),
            "Invalid certification data (Invalid author: expected `alice@dev1`, got `<root key>`)."
        );
        // Wrong kind
        assert!(matches!(
            verify_and_load::<DeviceCertificate>(&signed, &rvk, ExpectedAuthor::Root),
            Err(CertifError::Schema(_))
        ));
        // Not zlib
        let mut garbage = root.sign(b"nope").to_bytes().to_vec();
        garbage.extend_from_slice(b"nope");
        assert!(matches!(
            verify_and_load::<UserCertificate>(&garbage, &rvk, ExpectedAuthor::Root),
            Err(CertifError::Decompress(_))
        ));
    }

    #[test]
    fn profile_and_is_admin() {
        let root = key(1);
        let rvk = root.verifying_key().to_bytes();
        let mut fields = build::user(&user_cert(None));
        if let Value::Map(m) = &mut fields {
            m.retain(|(k, _)| k.as_str() != Some("profile"));
            for (k, v) in m.iter_mut() {
                if k.as_str() == Some("is_admin") {
                    *v = Value::Boolean(false);
                }
            }
        }
        let signed = build::sign_payload(fields, |m| root.sign(m).to_bytes());
        let c: UserCertificate = verify_and_load(&signed, &rvk, ExpectedAuthor::Root).unwrap();
        assert_eq!(c.profile, UserProfile::Standard);
    }
}
