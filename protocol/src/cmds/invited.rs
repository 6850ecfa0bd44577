//! Requests of INVITED connections (8 commands, README §8.1).
//!
//! The claimer side of an invitation. No request names its invitation: the
//! token is the one the connection's handshake was made with. Fields are
//! loaded as the reference's 2.10 schemas (`parsec/api/protocol/invite.py`)
//! load them; every field is read before the struct is built so that a
//! `bad_message` lists all faulty fields.

use super::{LoadError, cmd_name, load_fields};
use crate::fields::Fields;
use crate::types::Key32;
use crate::value::Value;

/// `ping`: echo (no event is emitted for invited connections).
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

/// `invite_1_claimer_wait_peer`: exchanges public keys with the greeter.
#[derive(Debug, Clone, PartialEq)]
pub struct Invite1ClaimerWaitPeer {
    /// Claimer's Curve25519 public key.
    pub claimer_public_key: Key32,
}

impl Invite1ClaimerWaitPeer {
    fn load(f: &mut Fields) -> Option<Self> {
        Some(Self {
            claimer_public_key: f.req("claimer_public_key")?,
        })
    }
}

/// `invite_2a_claimer_send_hashed_nonce`: commits to a nonce, gets the greeter's.
#[derive(Debug, Clone, PartialEq)]
pub struct Invite2aClaimerSendHashedNonce {
    /// SHA-256 of the claimer's nonce (length not checked, as in the reference).
    pub claimer_hashed_nonce: Vec<u8>,
}

impl Invite2aClaimerSendHashedNonce {
    fn load(f: &mut Fields) -> Option<Self> {
        Some(Self {
            claimer_hashed_nonce: f.req("claimer_hashed_nonce")?,
        })
    }
}

/// `invite_2b_claimer_send_nonce`: reveals the claimer's nonce.
#[derive(Debug, Clone, PartialEq)]
pub struct Invite2bClaimerSendNonce {
    /// The nonce whose hash was sent in step 2a.
    pub claimer_nonce: Vec<u8>,
}

impl Invite2bClaimerSendNonce {
    fn load(f: &mut Fields) -> Option<Self> {
        Some(Self {
            claimer_nonce: f.req("claimer_nonce")?,
        })
    }
}

/// `invite_4_claimer_communicate`: exchanges one opaque payload with the greeter.
#[derive(Debug, Clone, PartialEq)]
pub struct Invite4ClaimerCommunicate {
    /// Claimer's payload (may be empty; empty is not "no payload").
    pub payload: Vec<u8>,
}

impl Invite4ClaimerCommunicate {
    fn load(f: &mut Fields) -> Option<Self> {
        Some(Self {
            payload: f.req("payload")?,
        })
    }
}

/// Every request an invited connection may send.
#[derive(Debug, Clone, PartialEq)]
pub enum AnyReq {
    /// `ping`.
    Ping(Ping),
    /// `invite_info`: the invitation as snapshotted at handshake (no field).
    InviteInfo,
    /// `invite_1_claimer_wait_peer`.
    Invite1ClaimerWaitPeer(Invite1ClaimerWaitPeer),
    /// `invite_2a_claimer_send_hashed_nonce`.
    Invite2aClaimerSendHashedNonce(Invite2aClaimerSendHashedNonce),
    /// `invite_2b_claimer_send_nonce`.
    Invite2bClaimerSendNonce(Invite2bClaimerSendNonce),
    /// `invite_3a_claimer_signify_trust`: tells the greeter the claimer trusts it (no field).
    Invite3aClaimerSignifyTrust,
    /// `invite_3b_claimer_wait_peer_trust`: waits for the greeter's trust (no field).
    Invite3bClaimerWaitPeerTrust,
    /// `invite_4_claimer_communicate`.
    Invite4ClaimerCommunicate(Invite4ClaimerCommunicate),
}

impl AnyReq {
    /// Loads a decoded request map (see the module doc of `cmds` for the steps).
    pub fn load(map: &[(Value, Value)]) -> Result<Self, LoadError> {
        use AnyReq as R;
        let cmd = cmd_name(map).ok_or(LoadError::UnknownCommand)?;
        Ok(match cmd {
            "ping" => R::Ping(load_fields("ping", map, Ping::load)?),
            "invite_info" => R::InviteInfo,
            "invite_1_claimer_wait_peer" => R::Invite1ClaimerWaitPeer(load_fields(
                "invite_1_claimer_wait_peer",
                map,
                Invite1ClaimerWaitPeer::load,
            )?),
            "invite_2a_claimer_send_hashed_nonce" => R::Invite2aClaimerSendHashedNonce(load_fields(
                "invite_2a_claimer_send_hashed_nonce",
                map,
                Invite2aClaimerSendHashedNonce::load,
            )?),
            "invite_2b_claimer_send_nonce" => R::Invite2bClaimerSendNonce(load_fields(
                "invite_2b_claimer_send_nonce",
                map,
                Invite2bClaimerSendNonce::load,
            )?),
            "invite_3a_claimer_signify_trust" => R::Invite3aClaimerSignifyTrust,
            "invite_3b_claimer_wait_peer_trust" => R::Invite3bClaimerWaitPeerTrust,
            "invite_4_claimer_communicate" => R::Invite4ClaimerCommunicate(load_fields(
                "invite_4_claimer_communicate",
                map,
                Invite4ClaimerCommunicate::load,
            )?),
            _ => return Err(LoadError::UnknownCommand),
        })
    }

    /// Wire name of the command.
    pub fn name(&self) -> &'static str {
        match self {
            AnyReq::Ping(_) => "ping",
            AnyReq::InviteInfo => "invite_info",
            AnyReq::Invite1ClaimerWaitPeer(_) => "invite_1_claimer_wait_peer",
            AnyReq::Invite2aClaimerSendHashedNonce(_) => "invite_2a_claimer_send_hashed_nonce",
            AnyReq::Invite2bClaimerSendNonce(_) => "invite_2b_claimer_send_nonce",
            AnyReq::Invite3aClaimerSignifyTrust => "invite_3a_claimer_signify_trust",
            AnyReq::Invite3bClaimerWaitPeerTrust => "invite_3b_claimer_wait_peer_trust",
            AnyReq::Invite4ClaimerCommunicate(_) => "invite_4_claimer_communicate",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::value::map;

    fn load(entries: Vec<(&str, Value)>) -> Result<AnyReq, LoadError> {
        let Value::Map(m) = map(entries) else { unreachable!() };
        AnyReq::load(&m)
    }

    fn is_bad_message(r: Result<AnyReq, LoadError>) -> bool {
        matches!(r, Err(LoadError::BadMessage { .. }))
    }

    fn s(v: &str) -> Value {
        Value::from(v)
    }
    fn bin(b: &[u8]) -> Value {
        Value::Binary(b.to_vec())
    }

    /// A command name, its fields, and what they load to.
    type Case = (&'static str, Vec<(&'static str, Value)>, AnyReq);

    #[test]
    fn every_command_loads() {
        let requests: Vec<Case> = vec![
            (
                "ping",
                vec![("ping", s("hi"))],
                AnyReq::Ping(Ping { ping: "hi".into() }),
            ),
            ("invite_info", vec![], AnyReq::InviteInfo),
            (
                "invite_1_claimer_wait_peer",
                vec![("claimer_public_key", bin(&[1; 32]))],
                AnyReq::Invite1ClaimerWaitPeer(Invite1ClaimerWaitPeer {
                    claimer_public_key: [1; 32],
                }),
            ),
            (
                "invite_2a_claimer_send_hashed_nonce",
                vec![("claimer_hashed_nonce", bin(&[2; 32]))],
                AnyReq::Invite2aClaimerSendHashedNonce(Invite2aClaimerSendHashedNonce {
                    claimer_hashed_nonce: vec![2; 32],
                }),
            ),
            (
                "invite_2b_claimer_send_nonce",
                vec![("claimer_nonce", bin(b"nonce"))],
                AnyReq::Invite2bClaimerSendNonce(Invite2bClaimerSendNonce {
                    claimer_nonce: b"nonce".to_vec(),
                }),
            ),
            (
                "invite_3a_claimer_signify_trust",
                vec![],
                AnyReq::Invite3aClaimerSignifyTrust,
            ),
            (
                "invite_3b_claimer_wait_peer_trust",
                vec![],
                AnyReq::Invite3bClaimerWaitPeerTrust,
            ),
            (
                "invite_4_claimer_communicate",
                vec![("payload", bin(b""))],
                AnyReq::Invite4ClaimerCommunicate(Invite4ClaimerCommunicate { payload: vec![] }),
            ),
        ];
        assert_eq!(requests.len(), 8);
        for (cmd, fields, expected) in requests {
            let has_fields = !fields.is_empty();
            let mut entries = vec![("cmd", s(cmd)), ("ignored", Value::Nil)];
            entries.extend(fields);
            assert_eq!(load(entries), Ok(expected.clone()), "{cmd}");
            assert_eq!(expected.name(), cmd);
            if has_fields {
                let err = load(vec![("cmd", s(cmd))]);
                assert!(
                    matches!(err, Err(LoadError::BadMessage { cmd: name, .. }) if name == cmd),
                    "{cmd}"
                );
            }
        }
    }

    #[test]
    fn bad_messages() {
        assert!(is_bad_message(load(vec![
            ("cmd", s("ping")),
            ("ping", Value::from(42))
        ])));
        assert!(is_bad_message(load(vec![("cmd", s("ping"))])));
        assert!(is_bad_message(load(vec![
            ("cmd", s("invite_1_claimer_wait_peer")),
            ("claimer_public_key", bin(&[1; 33]))
        ])));
        assert!(is_bad_message(load(vec![
            ("cmd", s("invite_1_claimer_wait_peer")),
            ("claimer_public_key", Value::Nil)
        ])));
        assert!(is_bad_message(load(vec![
            ("cmd", s("invite_2a_claimer_send_hashed_nonce")),
            ("claimer_hashed_nonce", s("x"))
        ])));
        assert!(is_bad_message(load(vec![
            ("cmd", s("invite_2b_claimer_send_nonce")),
            ("claimer_nonce", Value::Nil)
        ])));
        assert!(is_bad_message(load(vec![
            ("cmd", s("invite_4_claimer_communicate")),
            ("payload", Value::from(1))
        ])));
    }

    #[test]
    fn unknown_commands() {
        for cmd in [
            "invite_1_greeter_wait_peer",
            "invite_new",
            "events_subscribe",
            "organization_bootstrap",
            "pki_enrollment_info",
            "realm_stats",
            "",
        ] {
            assert_eq!(load(vec![("cmd", s(cmd))]), Err(LoadError::UnknownCommand), "{cmd}");
        }
        assert_eq!(load(vec![("cmd", Value::from(42))]), Err(LoadError::UnknownCommand));
        assert_eq!(load(vec![]), Err(LoadError::UnknownCommand));
    }
}
