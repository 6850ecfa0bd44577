//! The websocket handshake (README §4): challenge, answer, result.
//!
//! The server sends a challenge, the client answers with its identity (and,
//! for AUTHENTICATED, a signature over the challenge), the server replies with
//! a result. This module encodes and decodes those three messages and checks
//! the signature; looking identities up is the server's business.

use crate::fields::{Fields, SchemaErrors};
use crate::types::*;
use crate::value::{self, Value};

/// API versions the 2.10 server announces: `[[1,3],[2,7],[3,1]]`.
pub const SUPPORTED_API_VERSIONS: [ApiVersion; 3] = [
    ApiVersion { major: 1, minor: 3 },
    ApiVersion { major: 2, minor: 7 },
    ApiVersion { major: 3, minor: 1 },
];

/// Size of the random challenge.
pub const CHALLENGE_SIZE: usize = 48;

/// `[major, minor]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ApiVersion {
    pub major: u32,
    pub minor: u32,
}

impl ApiVersion {
    fn to_value(self) -> Value {
        Value::Array(vec![Value::from(self.major), Value::from(self.minor)])
    }
}

impl std::fmt::Display for ApiVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

/// The challenge message (README §10.1 shows a capture).
pub fn challenge(challenge: &[u8; CHALLENGE_SIZE], now: DateTime) -> Vec<u8> {
    value::pack(&value::map([
        ("handshake", Value::from("challenge")),
        ("challenge", Value::Binary(challenge.to_vec())),
        (
            "supported_api_versions",
            Value::Array(SUPPORTED_API_VERSIONS.iter().map(|v| v.to_value()).collect()),
        ),
        ("ballpark_client_early_offset", Value::F64(BALLPARK_CLIENT_EARLY_OFFSET)),
        ("ballpark_client_late_offset", Value::F64(BALLPARK_CLIENT_LATE_OFFSET)),
        ("backend_timestamp", now.to_value()),
    ]))
}

/// Handshake outcomes other than `ok`, with the reference's help texts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandshakeError {
    #[error("{0}")]
    BadProtocol(String),
    #[error("Invalid handshake information")]
    BadIdentity,
    #[error("Invalid handshake: Invitation not found")]
    InvitationNotFound,
    #[error("Invalid handshake: Invitation already deleted")]
    InvitationAlreadyDeleted,
    #[error("Root verify key for organization differs between client and server")]
    RvkMismatch,
    #[error("Trial organization has expired")]
    OrganizationExpired,
    #[error("Device has been revoked")]
    RevokedDevice,
}

impl HandshakeError {
    /// The `result` code on the wire.
    pub fn result(&self) -> &'static str {
        match self {
            HandshakeError::BadProtocol(_) => "bad_protocol",
            HandshakeError::BadIdentity
            | HandshakeError::InvitationNotFound
            | HandshakeError::InvitationAlreadyDeleted => "bad_identity",
            HandshakeError::RvkMismatch => "rvk_mismatch",
            HandshakeError::OrganizationExpired => "organization_expired",
            HandshakeError::RevokedDevice => "revoked_device",
        }
    }

    /// The result message for this refusal.
    pub fn to_result_message(&self) -> Vec<u8> {
        value::pack(&value::map([
            ("handshake", Value::from("result")),
            ("result", Value::from(self.result())),
            ("help", Value::from(self.to_string())),
        ]))
    }
}

/// The `ok` result: `help` is absent, not nil.
pub fn result_ok() -> Vec<u8> {
    value::pack(&value::map([
        ("handshake", Value::from("result")),
        ("result", Value::from("ok")),
    ]))
}

/// What the client claims to be.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    Authenticated {
        version: ApiVersion,
        organization_id: OrganizationId,
        device_id: DeviceId,
        rvk: Key32,
        /// `signature(64) || message`, checked by [`verify_signed_answer`].
        answer: Vec<u8>,
    },
    Invited {
        version: ApiVersion,
        organization_id: OrganizationId,
        invitation_type: InvitationType,
        token: Uuid,
    },
    /// Legacy API v1, used for bootstrap only.
    AnonymousV1 {
        version: ApiVersion,
        organization_id: OrganizationId,
        rvk: Option<Key32>,
    },
}

impl Answer {
    pub fn organization_id(&self) -> &OrganizationId {
        match self {
            Answer::Authenticated { organization_id, .. }
            | Answer::Invited { organization_id, .. }
            | Answer::AnonymousV1 { organization_id, .. } => organization_id,
        }
    }
}

fn schema_error(errors: SchemaErrors) -> HandshakeError {
    HandshakeError::BadProtocol(errors.to_string())
}

fn parse_version(v: &Value) -> Result<ApiVersion, String> {
    match v.as_array().map(Vec::as_slice) {
        Some([a, b]) => match (a.as_u64(), b.as_u64()) {
            (Some(major), Some(minor)) if major <= u32::MAX as u64 && minor <= u32::MAX as u64 => Ok(ApiVersion {
                major: major as u32,
                minor: minor as u32,
            }),
            _ => Err("Not a valid integer.".into()),
        },
        _ => Err("Not a valid list.".into()),
    }
}

/// Picks the supported version with the client's major (revision ignored).
pub fn negotiate(client: ApiVersion) -> Result<ApiVersion, HandshakeError> {
    SUPPORTED_API_VERSIONS
        .iter()
        .copied()
        .find(|v| v.major == client.major)
        .ok_or_else(|| {
            let backend: Vec<String> = SUPPORTED_API_VERSIONS.iter().map(ToString::to_string).collect();
            HandshakeError::BadProtocol(format!(
                "No overlap between client API versions {{{client}}} and backend API versions {{{}}}",
                backend.join(", ")
            ))
        })
}

/// Decodes and validates the client's answer, negotiating the API version.
pub fn parse_answer(raw: &[u8]) -> Result<Answer, HandshakeError> {
    let map = value::unpack_map(raw).map_err(|e| HandshakeError::BadProtocol(format!("Invalid msgpack data: {e}")))?;

    // Step 1: only `handshake` and `client_api_version`, then negotiation.
    let mut f = Fields::new(&map);
    let handshake: Option<String> = f.req("handshake");
    if let Some(h) = &handshake
        && h != "answer"
    {
        f.error("handshake", format!("Invalid value, should be `answer`, got `{h}`"));
    }
    let version = match f.raw("client_api_version") {
        None => {
            f.error("client_api_version", crate::fields::MISSING);
            None
        }
        Some(v) => match parse_version(v) {
            Ok(v) => Some(v),
            Err(e) => {
                f.error("client_api_version", e);
                None
            }
        },
    };
    let client_version = f.finish(version).map_err(schema_error)?;
    let version = negotiate(client_version)?;

    // Step 2: the rest, with the schema of the negotiated major.
    let mut f = Fields::new(&map);
    let kind: Option<String> = f.req("type");
    let organization_id: Option<OrganizationId> = f.req("organization_id");
    let answer = match (version.major, kind.as_deref()) {
        (1, Some("anonymous")) => {
            let rvk: Option<Option<Key32>> = f.opt("rvk");
            (|| {
                Some(Answer::AnonymousV1 {
                    version: client_version,
                    organization_id: organization_id?,
                    rvk: rvk?,
                })
            })()
        }
        (2 | 3, Some("AUTHENTICATED")) => {
            let device_id = f.req("device_id");
            let rvk = f.req("rvk");
            let answer = f.req("answer");
            (|| {
                Some(Answer::Authenticated {
                    version: client_version,
                    organization_id: organization_id?,
                    device_id: device_id?,
                    rvk: rvk?,
                    answer: answer?,
                })
            })()
        }
        (2 | 3, Some("INVITED")) => {
            let invitation_type = f.req("invitation_type");
            let token = f.req("token");
            (|| {
                Some(Answer::Invited {
                    version: client_version,
                    organization_id: organization_id?,
                    invitation_type: invitation_type?,
                    token: token?,
                })
            })()
        }
        (_, Some(other)) => {
            f.error("type", format!("Unsupported value: {other}"));
            None
        }
        (_, None) => None,
    };
    f.finish(answer).map_err(schema_error)
}

/// Checks an AUTHENTICATED answer against the device's verify key and the
/// challenge sent: from API 2.5 the signed message is msgpack
/// `{"type": "signed_answer", "answer": <challenge>}`, before it the raw challenge.
pub fn verify_signed_answer(
    version: ApiVersion,
    answer: &[u8],
    verify_key: &Key32,
    challenge: &[u8],
) -> Result<(), HandshakeError> {
    let msg = crate::signature::open(answer, verify_key)
        .ok_or_else(|| HandshakeError::BadProtocol("Invalid answer signature".into()))?;
    let returned = if version >= (ApiVersion { major: 2, minor: 5 }) {
        let map =
            value::unpack_map(msg).map_err(|e| HandshakeError::BadProtocol(format!("Invalid msgpack data: {e}")))?;
        let mut f = Fields::new(&map);
        let kind: Option<String> = f.req("type");
        let returned: Option<Vec<u8>> = f.req("answer");
        if kind.as_deref().is_some_and(|k| k != "signed_answer") {
            f.error("type", "Invalid value, should be `signed_answer`");
        }
        f.finish(returned).map_err(schema_error)?
    } else {
        msg.to_vec()
    };
    if returned != challenge {
        return Err(HandshakeError::BadProtocol("Invalid returned challenge".into()));
    }
    Ok(())
}

/// Client side of the handshake (used by tests and the load tool): builds the
/// AUTHENTICATED answer for a received challenge, signed by `sign`.
pub fn authenticated_answer(
    challenge_msg: &[u8],
    organization_id: &OrganizationId,
    device_id: &DeviceId,
    rvk: &Key32,
    sign: impl FnOnce(&[u8]) -> [u8; 64],
) -> Result<Vec<u8>, HandshakeError> {
    let map = value::unpack_map(challenge_msg).map_err(|e| HandshakeError::BadProtocol(e.to_string()))?;
    let challenge = match value::get(&map, "challenge") {
        Some(Value::Binary(c)) => c.clone(),
        _ => return Err(HandshakeError::BadProtocol("no challenge".into())),
    };
    let msg = value::pack(&value::map([
        ("type", Value::from("signed_answer")),
        ("answer", Value::Binary(challenge)),
    ]));
    let mut signed = sign(&msg).to_vec();
    signed.extend_from_slice(&msg);
    Ok(value::pack(&value::map([
        ("handshake", Value::from("answer")),
        ("type", Value::from("AUTHENTICATED")),
        ("client_api_version", ApiVersion { major: 3, minor: 1 }.to_value()),
        ("organization_id", Value::from(organization_id.as_str())),
        ("device_id", Value::from(device_id.as_str())),
        ("rvk", Value::Binary(rvk.to_vec())),
        ("answer", Value::Binary(signed)),
    ])))
}

#[cfg(test)]
mod tests {
    use super::*;

    // README §10.2, a real answer from the 2.10 client.
    const AUTH_ANSWER: &str = "87a968616e647368616b65a6616e73776572a474797065ad41555448454e54494341544544b2636c69656e745f6170695f76657273696f6e920301af6f7267616e697a6174696f6e5f6964a44f726731a96465766963655f6964aa616c6963654064657631a372766bc420735b008ce51c9c3ff22d0664ec3a8b90454303c04440f1702f3142677781e23ca6616e73776572c48d1a16bb26245a14ca12671a5fa646e61917652f93aa8b1f2938bf7e60ffaa963b6a16dbbc98a29a607a9ca44663bf0b41a14f72d549004b9a360d4cfd98be720982a6616e73776572c4308ebaebb73c837d337a55de68e49729ee710a19ba31fea566e9ba17ebacfbec2ad4f117224b946f19a2643ebb191984f6a474797065ad7369676e65645f616e73776572";

    #[test]
    fn challenge_capture_shape() {
        // README §10.1: same bytes but for the random challenge and the clock.
        let ch: [u8; 48] = hex::decode(
            "8ebaebb73c837d337a55de68e49729ee710a19ba31fea566e9ba17ebacfbec2ad4f117224b946f19a2643ebb191984f6",
        )
        .unwrap()
        .try_into()
        .unwrap();
        let now = DateTime::from_f64(f64::from_be_bytes([0x41, 0xda, 0xc0, 0x87, 0x00, 0xc1, 0x6b, 0xa9])).unwrap();
        let out = challenge(&ch, now);
        assert_eq!(out.len(), 217);
        let m = value::unpack_map(&out).unwrap();
        assert_eq!(value::get(&m, "handshake").and_then(Value::as_str), Some("challenge"));
        assert_eq!(
            hex::encode(result_ok()),
            "82a968616e647368616b65a6726573756c74a6726573756c74a26f6b"
        );
    }

    #[test]
    fn parses_real_authenticated_answer() {
        let raw = hex::decode(AUTH_ANSWER).unwrap();
        let Answer::Authenticated {
            version,
            organization_id,
            device_id,
            rvk,
            answer,
        } = parse_answer(&raw).unwrap()
        else {
            panic!("not authenticated");
        };
        assert_eq!(version, ApiVersion { major: 3, minor: 1 });
        assert_eq!(organization_id.as_str(), "Org1");
        assert_eq!(device_id.as_str(), "alice@dev1");
        assert_eq!(rvk[0], 0x73);
        assert_eq!(answer.len(), 141);
    }

    #[test]
    fn refusals() {
        let bad = |m: Value| parse_answer(&value::pack(&m)).unwrap_err();
        assert!(
            matches!(parse_answer(b"\x00\x01garbage"), Err(HandshakeError::BadProtocol(h)) if h.starts_with("Invalid msgpack data: "))
        );
        let e = bad(value::map([
            ("handshake", Value::from("answer")),
            ("type", Value::from("AUTHENTICATED")),
            ("client_api_version", ApiVersion { major: 99, minor: 0 }.to_value()),
        ]));
        assert_eq!(
            e,
            HandshakeError::BadProtocol(
                "No overlap between client API versions {99.0} and backend API versions {1.3, 2.7, 3.1}".into()
            )
        );
        let e = bad(value::map([
            ("handshake", Value::from("answer")),
            ("type", Value::from("anonymous")),
            ("client_api_version", ApiVersion { major: 3, minor: 1 }.to_value()),
            ("organization_id", Value::from("Org")),
        ]));
        assert_eq!(
            e,
            HandshakeError::BadProtocol("{'type': ['Unsupported value: anonymous']}".into())
        );
        let e = bad(value::map([
            ("handshake", Value::from("answer")),
            ("type", Value::from("AUTHENTICATED")),
            ("client_api_version", ApiVersion { major: 2, minor: 5 }.to_value()),
            ("organization_id", Value::from("Org")),
        ]));
        assert_eq!(e.result(), "bad_protocol");
    }
}
