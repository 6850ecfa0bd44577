//! Storage seam of invitations: what an invitation is, the conduit's rules,
//! and the [`InviteBackend`] trait.
//!
//! The conduit is the rendezvous of a greeter and a claimer (commands.md §7).
//! Its whole state lives in the store, next to the invitation, never in a
//! connection: the two peers may sit on two connections of two server
//! instances. The rules that move it ([`Conduit::talk`], [`Conduit::listen`])
//! are pure functions over that state, so the memory store and PostgreSQL
//! (which loads the row `FOR UPDATE`, applies them and writes it back) cannot
//! drift apart.
//!
//! Nothing here publishes events or waits: the command functions in
//! [`crate::invite`] publish once an operation succeeded, and wait for the
//! peer through the broker's wake-ups.

use async_trait::async_trait;
use parsec_protocol::types::*;

use super::Internal;

// ------------------------------------------------------------- invitations

/// What an invitation invites.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InvitationKind {
    /// A new user, reached at this address (not validated as an e-mail).
    User { claimer_email: String },
    /// A new device of the greeter.
    Device,
}

impl InvitationKind {
    /// The wire `type`.
    pub fn invitation_type(&self) -> InvitationType {
        match self {
            InvitationKind::User { .. } => InvitationType::User,
            InvitationKind::Device => InvitationType::Device,
        }
    }

    /// The claimer's address (USER invitations only).
    pub fn claimer_email(&self) -> Option<&str> {
        match self {
            InvitationKind::User { claimer_email } => Some(claimer_email),
            InvitationKind::Device => None,
        }
    }
}

/// A non-deleted invitation, as `invite_list` and the invited handshake see it.
#[derive(Debug, Clone, PartialEq)]
pub struct Invitation {
    pub token: Uuid,
    pub kind: InvitationKind,
    pub greeter_user_id: UserId,
    /// The greeter's human handle while the greeter is not revoked (the
    /// reference's PostgreSQL query joins on non-revoked users only).
    pub greeter_human_handle: Option<HumanHandle>,
    pub created_on: DateTime,
    /// A claimer connection to it is open, on any server instance
    /// (`invite_list`'s READY; see [`InviteBackend::claimer_connection`]).
    pub claimer_online: bool,
}

// ------------------------------------------------------------------ conduit

/// Where a conduit is in the greeting dance (commands.md §7). The wire
/// never carries these; the names are the reference's column values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ConduitState {
    /// Public keys (`1_WAIT_PEERS`); also where either peer restarts the dance.
    #[default]
    WaitPeers,
    /// `2_1_CLAIMER_HASHED_NONCE`.
    ClaimerHashedNonce,
    /// `2_2_GREETER_NONCE`.
    GreeterNonce,
    /// `2_3_CLAIMER_NONCE`.
    ClaimerNonce,
    /// `3_1_CLAIMER_TRUST`.
    ClaimerTrust,
    /// `3_2_GREETER_TRUST`.
    GreeterTrust,
    /// `4_COMMUNICATE`: repeated as often as the peers like.
    Communicate,
}

impl ConduitState {
    /// Every state, in the order of the dance.
    pub const ALL: [ConduitState; 7] = [
        ConduitState::WaitPeers,
        ConduitState::ClaimerHashedNonce,
        ConduitState::GreeterNonce,
        ConduitState::ClaimerNonce,
        ConduitState::ClaimerTrust,
        ConduitState::GreeterTrust,
        ConduitState::Communicate,
    ];

    /// The state after a completed exchange; `4_COMMUNICATE` stays put.
    pub fn next(self) -> Self {
        use ConduitState::*;
        match self {
            WaitPeers => ClaimerHashedNonce,
            ClaimerHashedNonce => GreeterNonce,
            GreeterNonce => ClaimerNonce,
            ClaimerNonce => ClaimerTrust,
            ClaimerTrust => GreeterTrust,
            GreeterTrust | Communicate => Communicate,
        }
    }

    /// The reference's name (PostgreSQL column value).
    pub fn as_str(self) -> &'static str {
        use ConduitState::*;
        match self {
            WaitPeers => "1_WAIT_PEERS",
            ClaimerHashedNonce => "2_1_CLAIMER_HASHED_NONCE",
            GreeterNonce => "2_2_GREETER_NONCE",
            ClaimerNonce => "2_3_CLAIMER_NONCE",
            ClaimerTrust => "3_1_CLAIMER_TRUST",
            GreeterTrust => "3_2_GREETER_TRUST",
            Communicate => "4_COMMUNICATE",
        }
    }

    /// Inverse of [`Self::as_str`].
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|state| state.as_str() == s)
    }
}

/// Which side of the conduit a request speaks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConduitPeer {
    /// An authenticated user: the invitation must be one of theirs.
    Greeter(UserId),
    /// The invited connection: found by token alone.
    Claimer,
}

impl ConduitPeer {
    fn is_greeter(&self) -> bool {
        matches!(self, ConduitPeer::Greeter(_))
    }
}

/// The conduit columns of an invitation. `None` is "no payload yet"; an empty
/// payload is a payload (README §0 item 9).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Conduit {
    pub state: ConduitState,
    pub greeter_payload: Option<Vec<u8>>,
    pub claimer_payload: Option<Vec<u8>>,
}

/// What a peer remembers between its talk and its listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenCtx {
    pub org: OrganizationId,
    pub token: Uuid,
    pub peer: ConduitPeer,
    pub state: ConduitState,
    /// What we said.
    pub payload: Vec<u8>,
    /// What the peer had said when we talked (`None`: we spoke first).
    pub peer_payload: Option<Vec<u8>>,
}

/// Result of one listen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenStep {
    /// The peer has not acted yet: wait for a wake-up and listen again.
    Wait,
    /// The exchange is complete: the peer's payload.
    Done {
        payload: Vec<u8>,
        /// This listen moved the conduit to the next state, which the peer
        /// must hear about (`invite.conduit_updated`).
        advanced: bool,
    },
}

/// The conduit is not where this peer expects it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("conduit out of sync")]
pub struct InvalidState;

impl Conduit {
    fn slots(&mut self, greeter: bool) -> (&mut Option<Vec<u8>>, &mut Option<Vec<u8>>) {
        if greeter {
            (&mut self.greeter_payload, &mut self.claimer_payload)
        } else {
            (&mut self.claimer_payload, &mut self.greeter_payload)
        }
    }

    /// Stores our payload for `state`; returns the peer's payload if it
    /// spoke first. A conduit out of sync (other state, or our slot already
    /// filled, e.g. a retried command) is reset when we are at step 1, which
    /// is how either peer restarts the dance; at any other step it is
    /// `invalid_state`.
    pub fn talk(
        &mut self,
        greeter: bool,
        state: ConduitState,
        payload: Vec<u8>,
    ) -> Result<Option<Vec<u8>>, InvalidState> {
        if self.state != state || self.slots(greeter).0.is_some() {
            if state != ConduitState::WaitPeers {
                return Err(InvalidState);
            }
            *self = Conduit::default();
        }
        let (ours, peer) = self.slots(greeter);
        *ours = Some(payload);
        Ok(peer.clone())
    }

    /// One listen after [`Self::talk`] (commands.md §7 step 3).
    ///
    /// - We spoke first: once the peer's payload is there, move to the next
    ///   state, clear both slots and return it.
    /// - The peer spoke first: we are done once the peer moved the conduit on
    ///   (next state, our slot cleared); we return what it had said.
    ///
    /// Anything else changing under us (a reset by the peer) is
    /// `invalid_state`.
    pub fn listen(&mut self, ctx: &ListenCtx) -> Result<ListenStep, InvalidState> {
        let greeter = ctx.peer.is_greeter();
        let (state, next) = (self.state, ctx.state.next());
        let (ours, peer) = self.slots(greeter);
        match &ctx.peer_payload {
            None => {
                if state != ctx.state || ours.as_deref() != Some(ctx.payload.as_slice()) {
                    return Err(InvalidState);
                }
                let Some(payload) = peer.take() else {
                    return Ok(ListenStep::Wait);
                };
                *ours = None;
                self.state = next;
                Ok(ListenStep::Done {
                    payload,
                    advanced: true,
                })
            }
            Some(peer_payload) => {
                if state == next && ours.is_none() {
                    return Ok(ListenStep::Done {
                        payload: peer_payload.clone(),
                        advanced: false,
                    });
                }
                if state != ctx.state
                    || ours.as_deref() != Some(ctx.payload.as_slice())
                    || peer.as_deref() != Some(peer_payload.as_slice())
                {
                    return Err(InvalidState);
                }
                Ok(ListenStep::Wait)
            }
        }
    }

    /// Whether the exchange of `ctx` is already complete: we spoke second and
    /// the peer's listen has moved the conduit on. Such an exchange stands
    /// even if the invitation is deleted right after. That is the normal end
    /// of a greeting: the greeter's last `invite_4_greeter_communicate`
    /// returns, and its client deletes the invitation at once, possibly
    /// before the claimer's listen ran; the claimer must still get its answer.
    pub fn completed_for(&self, ctx: &ListenCtx) -> bool {
        let ours = if ctx.peer.is_greeter() {
            &self.greeter_payload
        } else {
            &self.claimer_payload
        };
        ctx.peer_payload.is_some() && self.state == ctx.state.next() && ours.is_none()
    }
}

// ------------------------------------------------------------------ errors

/// `invite_new` outcomes.
#[derive(Debug, thiserror::Error)]
pub enum InviteNewError {
    /// USER: an active user already has this e-mail.
    #[error("a user with this e-mail already exists")]
    AlreadyMember,
    #[error(transparent)]
    Internal(#[from] Internal),
}

/// `invite_delete` outcomes, and the handshake's lookup.
#[derive(Debug, thiserror::Error)]
pub enum InviteLookupError {
    /// No such token (for `invite_delete`: none greeted by the requester).
    #[error("invitation not found")]
    NotFound,
    #[error("invitation already deleted")]
    AlreadyDeleted,
    #[error(transparent)]
    Internal(#[from] Internal),
}

/// Conduit outcomes.
#[derive(Debug, thiserror::Error)]
pub enum ConduitError {
    /// No such token (greeter: none greeted by the requester).
    #[error("invitation not found")]
    NotFound,
    #[error("invitation already deleted")]
    AlreadyDeleted,
    #[error(transparent)]
    InvalidState(#[from] InvalidState),
    #[error(transparent)]
    Internal(#[from] Internal),
}

// ------------------------------------------------------------------- trait

/// Invitations and their conduits.
#[async_trait]
pub trait InviteBackend: Send + Sync {
    /// `invite_new`: USER checks that no active user has the e-mail. A
    /// non-deleted invitation of the same greeter for the same claimer
    /// (same e-mail; for DEVICE, any) is returned instead of a new one.
    /// Answers the token.
    async fn new_invitation(
        &self,
        org: &OrganizationId,
        greeter: &UserId,
        kind: &InvitationKind,
        now: DateTime,
    ) -> Result<Uuid, InviteNewError>;

    /// `invite_delete`: only the greeter's own invitations.
    async fn delete_invitation(
        &self,
        org: &OrganizationId,
        greeter: &UserId,
        token: Uuid,
        on: DateTime,
        reason: InvitationDeletedReason,
    ) -> Result<(), InviteLookupError>;

    /// `invite_list`: the greeter's non-deleted invitations, oldest first.
    async fn list_invitations(&self, org: &OrganizationId, greeter: &UserId) -> Result<Vec<Invitation>, Internal>;

    /// The invited handshake: the invitation of a token, unless deleted.
    async fn get_invitation(&self, org: &OrganizationId, token: Uuid) -> Result<Invitation, InviteLookupError>;

    /// First half of an exchange ([`Conduit::talk`]), atomically.
    async fn conduit_talk(
        &self,
        org: &OrganizationId,
        peer: &ConduitPeer,
        token: Uuid,
        state: ConduitState,
        payload: Vec<u8>,
    ) -> Result<ListenCtx, ConduitError>;

    /// One listen ([`Conduit::listen`]), atomically. A deleted invitation is
    /// `AlreadyDeleted` unless [`Conduit::completed_for`] holds.
    async fn conduit_listen(&self, ctx: &ListenCtx) -> Result<ListenStep, ConduitError>;

    /// An invited connection to `token` opened (`opened`) or closed, on this
    /// or any other server instance. The store counts them, so that every
    /// instance agrees on [`Invitation::claimer_online`], and a claimer with
    /// two connections stays online until both are gone. Answers how many
    /// are open now (0 for an unknown token; deleted invitations count too).
    ///
    /// The count never goes below zero: a connection's close must be counted
    /// after its open was, or the close is lost and the claimer looks online
    /// until the invitation is deleted.
    async fn claimer_connection(&self, org: &OrganizationId, token: Uuid, opened: bool) -> Result<u64, Internal>;
}

#[cfg(test)]
mod tests {
    use super::*;
    use ConduitState::*;

    fn ctx(greeter: bool, state: ConduitState, payload: &[u8], peer_payload: Option<&[u8]>) -> ListenCtx {
        ListenCtx {
            org: OrganizationId::parse("Org").unwrap(),
            token: Uuid::nil(),
            peer: if greeter {
                ConduitPeer::Greeter(UserId::parse("alice").unwrap())
            } else {
                ConduitPeer::Claimer
            },
            state,
            payload: payload.to_vec(),
            peer_payload: peer_payload.map(<[u8]>::to_vec),
        }
    }

    #[test]
    fn states_round_trip_and_chain() {
        for s in ConduitState::ALL {
            assert_eq!(ConduitState::parse(s.as_str()), Some(s));
        }
        let mut s = WaitPeers;
        for expected in &ConduitState::ALL[1..] {
            s = s.next();
            assert_eq!(s, *expected);
        }
        assert_eq!(Communicate.next(), Communicate);
    }

    #[test]
    fn exchange_greeter_first() {
        let mut c = Conduit::default();
        assert_eq!(c.talk(true, WaitPeers, b"gk".to_vec()), Ok(None));
        let g = ctx(true, WaitPeers, b"gk", None);
        assert_eq!(c.listen(&g), Ok(ListenStep::Wait));
        assert_eq!(c.talk(false, WaitPeers, b"ck".to_vec()), Ok(Some(b"gk".to_vec())));
        let cl = ctx(false, WaitPeers, b"ck", Some(b"gk"));
        assert_eq!(c.listen(&cl), Ok(ListenStep::Wait));
        assert_eq!(
            c.listen(&g),
            Ok(ListenStep::Done {
                payload: b"ck".to_vec(),
                advanced: true
            })
        );
        assert_eq!(
            c,
            Conduit {
                state: ClaimerHashedNonce,
                greeter_payload: None,
                claimer_payload: None
            }
        );
        assert!(c.completed_for(&cl));
        assert_eq!(
            c.listen(&cl),
            Ok(ListenStep::Done {
                payload: b"gk".to_vec(),
                advanced: false
            })
        );
    }

    #[test]
    fn empty_payload_is_a_payload() {
        let mut c = Conduit {
            state: ClaimerTrust,
            ..Default::default()
        };
        assert_eq!(c.talk(true, ClaimerTrust, vec![]), Ok(None));
        assert_eq!(c.talk(false, ClaimerTrust, vec![]), Ok(Some(vec![])));
        let g = ctx(true, ClaimerTrust, b"", None);
        assert_eq!(
            c.listen(&g),
            Ok(ListenStep::Done {
                payload: vec![],
                advanced: true
            })
        );
        assert_eq!(c.state, GreeterTrust);
    }

    #[test]
    fn communicate_repeats() {
        let mut c = Conduit {
            state: Communicate,
            ..Default::default()
        };
        for round in 0..3u8 {
            assert_eq!(c.talk(false, Communicate, vec![round]), Ok(None));
            assert_eq!(c.talk(true, Communicate, vec![round + 10]), Ok(Some(vec![round])));
            let cl = ctx(false, Communicate, &[round], None);
            assert_eq!(
                c.listen(&cl),
                Ok(ListenStep::Done {
                    payload: vec![round + 10],
                    advanced: true
                })
            );
            let g = ctx(true, Communicate, &[round + 10], Some(&[round]));
            assert_eq!(
                c.listen(&g),
                Ok(ListenStep::Done {
                    payload: vec![round],
                    advanced: false
                })
            );
            assert_eq!(c.state, Communicate);
        }
    }

    #[test]
    fn step_one_resets_other_steps_refuse() {
        let mut c = Conduit {
            state: GreeterNonce,
            greeter_payload: Some(b"x".to_vec()),
            claimer_payload: None,
        };
        assert_eq!(c.talk(false, ClaimerNonce, b"n".to_vec()), Err(InvalidState));
        // Our slot already filled (a retried command) at a later step: refused.
        assert_eq!(c.talk(true, GreeterNonce, b"y".to_vec()), Err(InvalidState));
        // Step 1 resets from anywhere, dropping the peer's payload.
        assert_eq!(c.talk(false, WaitPeers, b"ck".to_vec()), Ok(None));
        assert_eq!(
            c,
            Conduit {
                state: WaitPeers,
                greeter_payload: None,
                claimer_payload: Some(b"ck".to_vec())
            }
        );
        // Step 1 twice from the same side: reset again.
        assert_eq!(c.talk(false, WaitPeers, b"ck2".to_vec()), Ok(None));
        assert_eq!(c.claimer_payload.as_deref(), Some(&b"ck2"[..]));
    }

    #[test]
    fn reset_under_a_waiting_peer_is_invalid_state() {
        let mut c = Conduit {
            state: ClaimerHashedNonce,
            ..Default::default()
        };
        assert_eq!(c.talk(true, ClaimerHashedNonce, vec![]), Ok(None));
        let g = ctx(true, ClaimerHashedNonce, b"", None);
        // The claimer restarts at step 1.
        assert_eq!(c.talk(false, WaitPeers, b"ck".to_vec()), Ok(None));
        assert_eq!(c.listen(&g), Err(InvalidState));

        // Peer spoke first, then reset before completing.
        let mut c = Conduit {
            state: ClaimerHashedNonce,
            ..Default::default()
        };
        c.talk(false, ClaimerHashedNonce, b"h".to_vec()).unwrap();
        assert_eq!(c.talk(true, ClaimerHashedNonce, vec![]), Ok(Some(b"h".to_vec())));
        let g = ctx(true, ClaimerHashedNonce, b"", Some(b"h"));
        c.talk(false, WaitPeers, b"ck".to_vec()).unwrap();
        assert_eq!(c.listen(&g), Err(InvalidState));
        assert!(!c.completed_for(&g));
    }
}
