//! Requests of the anonymous HTTP route and of the legacy API v1 anonymous websocket.
//!
//! `POST /anonymous/<organization_id>` serves [`AnyReq`] (bootstrap and PKI
//! enrollment submission/status); the organization is the one of the URL.
//! The API v1 anonymous websocket, which the 2.10 client falls back to for
//! bootstrap, serves [`AnyV1Req`]: `ping` and a bootstrap whose redacted
//! certificates may be absent (README §1.3, commands.md §2.3). Fields are
//! loaded as the reference's 2.10 schemas (`organization.py`, `pki.py`) load
//! them; every field is read before the struct is built so that a
//! `bad_message` lists all faulty fields.

use super::{LoadError, cmd_name, load_fields};
use crate::fields::Fields;
use crate::types::{Key32, Uuid};
use crate::value::Value;

/// `organization_bootstrap` on the HTTP route: creates the first (ADMIN) user.
#[derive(Debug, Clone, PartialEq)]
pub struct OrganizationBootstrap {
    /// Token given at organization creation; `""` for spontaneous bootstrap.
    pub bootstrap_token: String,
    /// The organization's root Ed25519 verify key, which signed the certificates.
    pub root_verify_key: Key32,
    /// User certificate signed by the root key (author nil).
    pub user_certificate: Vec<u8>,
    /// Device certificate signed by the root key (author nil).
    pub device_certificate: Vec<u8>,
    /// Same as `user_certificate` without `human_handle`.
    pub redacted_user_certificate: Vec<u8>,
    /// Same as `device_certificate` without `device_label`.
    pub redacted_device_certificate: Vec<u8>,
}

impl OrganizationBootstrap {
    fn load(f: &mut Fields) -> Option<Self> {
        let bootstrap_token = f.req("bootstrap_token");
        let root_verify_key = f.req("root_verify_key");
        let user_certificate = f.req("user_certificate");
        let device_certificate = f.req("device_certificate");
        let redacted_user_certificate = f.req("redacted_user_certificate");
        let redacted_device_certificate = f.req("redacted_device_certificate");
        Some(Self {
            bootstrap_token: bootstrap_token?,
            root_verify_key: root_verify_key?,
            user_certificate: user_certificate?,
            device_certificate: device_certificate?,
            redacted_user_certificate: redacted_user_certificate?,
            redacted_device_certificate: redacted_device_certificate?,
        })
    }
}

/// `pki_enrollment_submit`: asks to join the organization with an X.509 identity.
#[derive(Debug, Clone, PartialEq)]
pub struct PkiEnrollmentSubmit {
    /// Client-chosen enrollment id.
    pub enrollment_id: Uuid,
    /// Cancel a pending (SUBMITTED) enrollment with the same certificate.
    pub force: bool,
    /// Submitter's X.509 certificate (DER), opaque to the server.
    pub submitter_der_x509_certificate: Vec<u8>,
    /// E-mail of that certificate; optional key (absent or nil = `None`), sent by ≥ 2.8.3 clients.
    pub submitter_der_x509_certificate_email: Option<String>,
    /// Signature of `submit_payload`, opaque to the server.
    pub submit_payload_signature: Vec<u8>,
    /// `PkiEnrollmentSubmitPayload` (zlib + msgpack); must decode.
    pub submit_payload: Vec<u8>,
}

impl PkiEnrollmentSubmit {
    fn load(f: &mut Fields) -> Option<Self> {
        let enrollment_id = f.req("enrollment_id");
        let force = f.req("force");
        let submitter_der_x509_certificate = f.req("submitter_der_x509_certificate");
        let submitter_der_x509_certificate_email = f.opt("submitter_der_x509_certificate_email");
        let submit_payload_signature = f.req("submit_payload_signature");
        let submit_payload = f.req("submit_payload");
        Some(Self {
            enrollment_id: enrollment_id?,
            force: force?,
            submitter_der_x509_certificate: submitter_der_x509_certificate?,
            submitter_der_x509_certificate_email: submitter_der_x509_certificate_email?,
            submit_payload_signature: submit_payload_signature?,
            submit_payload: submit_payload?,
        })
    }
}

/// `pki_enrollment_info`: state of an enrollment.
#[derive(Debug, Clone, PartialEq)]
pub struct PkiEnrollmentInfo {
    /// The enrollment.
    pub enrollment_id: Uuid,
}

impl PkiEnrollmentInfo {
    fn load(f: &mut Fields) -> Option<Self> {
        Some(Self {
            enrollment_id: f.req("enrollment_id")?,
        })
    }
}

/// Every request the anonymous HTTP route serves.
#[derive(Debug, Clone, PartialEq)]
pub enum AnyReq {
    /// `organization_bootstrap`.
    OrganizationBootstrap(OrganizationBootstrap),
    /// `pki_enrollment_submit`.
    PkiEnrollmentSubmit(PkiEnrollmentSubmit),
    /// `pki_enrollment_info`.
    PkiEnrollmentInfo(PkiEnrollmentInfo),
}

impl AnyReq {
    /// Loads a decoded request map (see the module doc of `cmds` for the steps).
    pub fn load(map: &[(Value, Value)]) -> Result<Self, LoadError> {
        use AnyReq as R;
        let cmd = cmd_name(map).ok_or(LoadError::UnknownCommand)?;
        Ok(match cmd {
            "organization_bootstrap" => {
                R::OrganizationBootstrap(load_fields("organization_bootstrap", map, OrganizationBootstrap::load)?)
            }
            "pki_enrollment_submit" => {
                R::PkiEnrollmentSubmit(load_fields("pki_enrollment_submit", map, PkiEnrollmentSubmit::load)?)
            }
            "pki_enrollment_info" => {
                R::PkiEnrollmentInfo(load_fields("pki_enrollment_info", map, PkiEnrollmentInfo::load)?)
            }
            _ => return Err(LoadError::UnknownCommand),
        })
    }

    /// Wire name of the command.
    pub fn name(&self) -> &'static str {
        match self {
            AnyReq::OrganizationBootstrap(_) => "organization_bootstrap",
            AnyReq::PkiEnrollmentSubmit(_) => "pki_enrollment_submit",
            AnyReq::PkiEnrollmentInfo(_) => "pki_enrollment_info",
        }
    }
}

// ---------------------------------------------------------------- API v1 websocket

/// `ping` on the API v1 anonymous websocket: echo, no event.
#[derive(Debug, Clone, PartialEq)]
pub struct Ping {
    /// Echoed back as `pong`.
    pub ping: String,
}

impl Ping {
    fn load(f: &mut Fields) -> Option<Self> {
        Some(Self { ping: f.req("ping")? })
    }
}

/// `organization_bootstrap` with the API v1 schema: the redacted certificates
/// may be absent (pre-1.14 clients), but not nil. When both are absent the
/// non-redacted ones stand in for them; exactly one absent is `invalid_data`.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiV1OrganizationBootstrap {
    /// Token given at organization creation.
    pub bootstrap_token: String,
    /// The organization's root Ed25519 verify key, which signed the certificates.
    pub root_verify_key: Key32,
    /// User certificate signed by the root key (author nil).
    pub user_certificate: Vec<u8>,
    /// Device certificate signed by the root key (author nil).
    pub device_certificate: Vec<u8>,
    /// Same as `user_certificate` without `human_handle`; optional key, never nil.
    pub redacted_user_certificate: Option<Vec<u8>>,
    /// Same as `device_certificate` without `device_label`; optional key, never nil.
    pub redacted_device_certificate: Option<Vec<u8>>,
}

impl ApiV1OrganizationBootstrap {
    fn load(f: &mut Fields) -> Option<Self> {
        let bootstrap_token = f.req("bootstrap_token");
        let root_verify_key = f.req("root_verify_key");
        let user_certificate = f.req("user_certificate");
        let device_certificate = f.req("device_certificate");
        let redacted_user_certificate = f.opt_non_nil("redacted_user_certificate");
        let redacted_device_certificate = f.opt_non_nil("redacted_device_certificate");
        Some(Self {
            bootstrap_token: bootstrap_token?,
            root_verify_key: root_verify_key?,
            user_certificate: user_certificate?,
            device_certificate: device_certificate?,
            redacted_user_certificate: redacted_user_certificate?,
            redacted_device_certificate: redacted_device_certificate?,
        })
    }
}

/// Every request the legacy API v1 anonymous websocket serves.
#[derive(Debug, Clone, PartialEq)]
pub enum AnyV1Req {
    /// `ping`.
    Ping(Ping),
    /// `organization_bootstrap` (v1 schema).
    OrganizationBootstrap(ApiV1OrganizationBootstrap),
}

impl AnyV1Req {
    /// Loads a decoded request map (see the module doc of `cmds` for the steps).
    pub fn load(map: &[(Value, Value)]) -> Result<Self, LoadError> {
        let cmd = cmd_name(map).ok_or(LoadError::UnknownCommand)?;
        Ok(match cmd {
            "ping" => AnyV1Req::Ping(load_fields("ping", map, Ping::load)?),
            "organization_bootstrap" => AnyV1Req::OrganizationBootstrap(load_fields(
                "organization_bootstrap",
                map,
                ApiV1OrganizationBootstrap::load,
            )?),
            _ => return Err(LoadError::UnknownCommand),
        })
    }

    /// Wire name of the command.
    pub fn name(&self) -> &'static str {
        match self {
            AnyV1Req::Ping(_) => "ping",
            AnyV1Req::OrganizationBootstrap(_) => "organization_bootstrap",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::uuid_value;
    use crate::value::map;

    fn entries_of(cmd: &'static str, fields: Vec<(&'static str, Value)>) -> Vec<(Value, Value)> {
        let mut entries = vec![("cmd", Value::from(cmd))];
        entries.extend(fields);
        let Value::Map(m) = map(entries) else { unreachable!() };
        m
    }

    fn bin(b: &[u8]) -> Value {
        Value::Binary(b.to_vec())
    }

    fn bootstrap_fields() -> Vec<(&'static str, Value)> {
        vec![
            ("bootstrap_token", Value::from("")),
            ("root_verify_key", bin(&[5; 32])),
            ("user_certificate", bin(b"u")),
            ("device_certificate", bin(b"d")),
            ("redacted_user_certificate", bin(b"ru")),
            ("redacted_device_certificate", bin(b"rd")),
        ]
    }

    fn submit_fields() -> Vec<(&'static str, Value)> {
        vec![
            ("enrollment_id", uuid_value(Uuid::from_u128(7))),
            ("force", Value::Boolean(false)),
            ("submitter_der_x509_certificate", bin(b"der")),
            ("submit_payload_signature", bin(b"sig")),
            ("submit_payload", bin(b"payload")),
        ]
    }

    fn with(
        mut fields: Vec<(&'static str, Value)>,
        key: &'static str,
        value: Option<Value>,
    ) -> Vec<(&'static str, Value)> {
        fields.retain(|(k, _)| *k != key);
        fields.extend(value.map(|v| (key, v)));
        fields
    }

    fn is_bad_message<T>(r: Result<T, LoadError>) -> bool {
        matches!(r, Err(LoadError::BadMessage { .. }))
    }

    #[test]
    fn http_commands_load() {
        let req = AnyReq::load(&entries_of("organization_bootstrap", bootstrap_fields())).unwrap();
        assert_eq!(req.name(), "organization_bootstrap");
        assert_eq!(
            req,
            AnyReq::OrganizationBootstrap(OrganizationBootstrap {
                bootstrap_token: String::new(),
                root_verify_key: [5; 32],
                user_certificate: b"u".to_vec(),
                device_certificate: b"d".to_vec(),
                redacted_user_certificate: b"ru".to_vec(),
                redacted_device_certificate: b"rd".to_vec(),
            })
        );

        let req = AnyReq::load(&entries_of("pki_enrollment_submit", submit_fields())).unwrap();
        assert_eq!(req.name(), "pki_enrollment_submit");
        let AnyReq::PkiEnrollmentSubmit(submit) = req else {
            unreachable!()
        };
        assert_eq!(submit.enrollment_id, Uuid::from_u128(7));
        assert_eq!(submit.submitter_der_x509_certificate_email, None);
        let email = with(
            submit_fields(),
            "submitter_der_x509_certificate_email",
            Some(Value::from("a@b.c")),
        );
        let Ok(AnyReq::PkiEnrollmentSubmit(submit)) = AnyReq::load(&entries_of("pki_enrollment_submit", email)) else {
            panic!()
        };
        assert_eq!(submit.submitter_der_x509_certificate_email.as_deref(), Some("a@b.c"));
        let nil_email = with(
            submit_fields(),
            "submitter_der_x509_certificate_email",
            Some(Value::Nil),
        );
        assert!(AnyReq::load(&entries_of("pki_enrollment_submit", nil_email)).is_ok());

        let info = vec![("enrollment_id", uuid_value(Uuid::from_u128(7)))];
        assert_eq!(
            AnyReq::load(&entries_of("pki_enrollment_info", info)),
            Ok(AnyReq::PkiEnrollmentInfo(PkiEnrollmentInfo {
                enrollment_id: Uuid::from_u128(7)
            }))
        );
    }

    #[test]
    fn http_bad_messages() {
        for cmd in ["organization_bootstrap", "pki_enrollment_submit", "pki_enrollment_info"] {
            assert!(is_bad_message(AnyReq::load(&entries_of(cmd, vec![]))), "{cmd}");
        }
        // The HTTP route requires the redacted certificates.
        let missing = with(bootstrap_fields(), "redacted_user_certificate", None);
        assert!(is_bad_message(AnyReq::load(&entries_of(
            "organization_bootstrap",
            missing
        ))));
        let short_key = with(bootstrap_fields(), "root_verify_key", Some(bin(&[5; 31])));
        assert!(is_bad_message(AnyReq::load(&entries_of(
            "organization_bootstrap",
            short_key
        ))));
        let nil_token = with(bootstrap_fields(), "bootstrap_token", Some(Value::Nil));
        assert!(is_bad_message(AnyReq::load(&entries_of(
            "organization_bootstrap",
            nil_token
        ))));
        let str_id = with(submit_fields(), "enrollment_id", Some(Value::from("0000")));
        assert!(is_bad_message(AnyReq::load(&entries_of(
            "pki_enrollment_submit",
            str_id
        ))));
        let bad_email = with(
            submit_fields(),
            "submitter_der_x509_certificate_email",
            Some(bin(b"a@b.c")),
        );
        assert!(is_bad_message(AnyReq::load(&entries_of(
            "pki_enrollment_submit",
            bad_email
        ))));
        let no_force = with(submit_fields(), "force", None);
        assert!(is_bad_message(AnyReq::load(&entries_of(
            "pki_enrollment_submit",
            no_force
        ))));
    }

    #[test]
    fn v1_commands_load() {
        let req = AnyV1Req::load(&entries_of("ping", vec![("ping", Value::from("hi"))])).unwrap();
        assert_eq!(req, AnyV1Req::Ping(Ping { ping: "hi".into() }));
        assert_eq!(req.name(), "ping");

        let req = AnyV1Req::load(&entries_of("organization_bootstrap", bootstrap_fields())).unwrap();
        assert_eq!(req.name(), "organization_bootstrap");
        let AnyV1Req::OrganizationBootstrap(b) = req else {
            unreachable!()
        };
        assert_eq!(b.redacted_user_certificate, Some(b"ru".to_vec()));
        assert_eq!(b.redacted_device_certificate, Some(b"rd".to_vec()));

        // Redacted certificates may be absent (one or both)...
        let legacy = with(
            with(bootstrap_fields(), "redacted_user_certificate", None),
            "redacted_device_certificate",
            None,
        );
        let Ok(AnyV1Req::OrganizationBootstrap(b)) = AnyV1Req::load(&entries_of("organization_bootstrap", legacy))
        else {
            panic!()
        };
        assert_eq!(
            (b.redacted_user_certificate, b.redacted_device_certificate),
            (None, None)
        );
        let one = with(bootstrap_fields(), "redacted_device_certificate", None);
        assert!(AnyV1Req::load(&entries_of("organization_bootstrap", one)).is_ok());
        // ...but not nil.
        let nil = with(bootstrap_fields(), "redacted_user_certificate", Some(Value::Nil));
        assert!(is_bad_message(AnyV1Req::load(&entries_of(
            "organization_bootstrap",
            nil
        ))));
    }

    #[test]
    fn v1_bad_messages() {
        assert!(is_bad_message(AnyV1Req::load(&entries_of(
            "ping",
            vec![("ping", Value::from(42))]
        ))));
        assert!(is_bad_message(AnyV1Req::load(&entries_of("ping", vec![]))));
        assert!(is_bad_message(AnyV1Req::load(&entries_of(
            "organization_bootstrap",
            vec![]
        ))));
    }

    #[test]
    fn unknown_commands() {
        let http_unknown = ["ping", "pki_enrollment_list", "invite_info", "events_subscribe", ""];
        for cmd in http_unknown {
            assert_eq!(
                AnyReq::load(&entries_of(cmd, vec![])),
                Err(LoadError::UnknownCommand),
                "{cmd}"
            );
        }
        let v1_unknown = [
            "pki_enrollment_submit",
            "pki_enrollment_info",
            "invite_info",
            "user_get",
            "",
        ];
        for cmd in v1_unknown {
            assert_eq!(
                AnyV1Req::load(&entries_of(cmd, vec![])),
                Err(LoadError::UnknownCommand),
                "{cmd}"
            );
        }
        let Value::Map(numeric) = map([("cmd", Value::from(42))]) else {
            unreachable!()
        };
        assert_eq!(AnyReq::load(&numeric), Err(LoadError::UnknownCommand));
        assert_eq!(AnyV1Req::load(&numeric), Err(LoadError::UnknownCommand));
        assert_eq!(AnyReq::load(&[]), Err(LoadError::UnknownCommand));
        assert_eq!(AnyV1Req::load(&[]), Err(LoadError::UnknownCommand));
    }
}
