//! Invitations: the actor owning their storage and the invitation mailer,
//! and the rules of the greeter commands (`invite_new`, `invite_delete`,
//! `invite_list`, `invite_{1..4}_greeter_*`) and the claimer commands
//! (`invite_info`, `invite_{1..4}_claimer_*`), commands.md §5–§7.
//!
//! Accepts: [`NewInvitation`], [`DeleteInvitation`], [`ListInvitations`],
//! [`GetInvitation`], [`ConduitTalk`], [`ConduitListen`],
//! [`ClaimerConnection`], [`SendInvitationEmail`].
//!
//! The conduit: each step is one or two *exchanges* ([`exchange`]). An
//! exchange subscribes to the invitation's wake-ups at the broker, *talks*
//! (stores its payload), then *listens* until the peer's payload is there,
//! waiting for a wake-up between two listens. The actor publishes
//! `invite.conduit_updated` after every talk and every listen that moves the
//! conduit on, and `invite.status_changed` after a deletion; the broker turns
//! both into wake-ups. The waits
//! live in the requesting connection's future, never in this actor, whose
//! handlers are single atomic store operations: the actor never blocks, and a
//! connection abandoning its request (`invite_1_claimer_wait_peer` cancelled
//! by the next request) cannot leave a store operation half done. There is
//! no timeout on a wait, as in the reference.
//!
//! What the connection must do on its side (`crate::session`): report its
//! opening and its end ([`claimer_presence`], the end after the opening has
//! been counted), close it when its
//! invitation is deleted (after answering the command it is running), and
//! close it without replying when a claimer step finds the invitation
//! deleted ([`ClaimerOutcome::InvitationDeleted`]).

use std::sync::Arc;

use actix::prelude::*;
use futures_util::future::BoxFuture;
use parsec_protocol::cmds;
use parsec_protocol::cmds::authenticated::{
    Invite1GreeterWaitPeer, Invite2aGreeterGetHashedNonce, Invite2bGreeterSendNonce, Invite3aGreeterWaitPeerTrust,
    Invite3bGreeterSignifyTrust, Invite4GreeterCommunicate, InviteDelete, InviteNew, InviteNewKind,
};
use parsec_protocol::cmds::invited::{
    Invite1ClaimerWaitPeer, Invite2aClaimerSendHashedNonce, Invite2bClaimerSendNonce, Invite4ClaimerCommunicate,
};
use parsec_protocol::types::*;
use parsec_protocol::value::Value;

use crate::backend::*;
use crate::broker::{Broker, WatchConduit};
use crate::client::{AuthenticatedClient, InvitedClient};
use crate::email::{self, BackendAddr, EmailConfig, InvitationEmail, Mailer};
use crate::event::Event;
use crate::{Actors, EventBus, backend_handler};

// ------------------------------------------------------------------- actor

/// Owns the invite backend and the invitation mailer.
///
/// Its handlers publish the events of the writes they make, inside the same
/// future: a requester disconnecting, or `invite_1_claimer_wait_peer` being
/// abandoned, drops the request's future but never this one, so no write
/// goes unannounced (a lost `invite.conduit_updated` would leave the peer
/// waiting forever). Events go through the [`EventBus`], so that with
/// PostgreSQL they reach the brokers of every instance, whose waiters may be
/// the peers.
pub struct InviteActor {
    backend: Arc<dyn InviteBackend>,
    broker: Addr<Broker>,
    events: EventBus,
    mailer: Arc<dyn Mailer>,
    sender: String,
    backend_addr: BackendAddr,
}

impl InviteActor {
    /// Also creates the mailer (the MOCKED one makes its folder now).
    pub fn new(
        backend: Arc<dyn InviteBackend>,
        broker: Addr<Broker>,
        events: EventBus,
        email: &EmailConfig,
        backend_addr: BackendAddr,
    ) -> Self {
        let mailer = email::mailer(&email.transport);
        Self::with_mailer(backend, broker, events, mailer, email.sender.clone(), backend_addr)
    }

    /// With a given mailer (tests).
    pub fn with_mailer(
        backend: Arc<dyn InviteBackend>,
        broker: Addr<Broker>,
        events: EventBus,
        mailer: Arc<dyn Mailer>,
        sender: String,
        backend_addr: BackendAddr,
    ) -> Self {
        Self {
            backend,
            broker,
            events,
            mailer,
            sender,
            backend_addr,
        }
    }

    /// Runs a backend operation, then publishes the event `announce` makes
    /// of its success, all in the actor's future.
    fn publishing<T: 'static, E: 'static>(
        &self,
        op: impl FnOnce(Arc<dyn InviteBackend>) -> BoxFuture<'static, Result<T, E>>,
        announce: impl FnOnce(&T) -> Option<Event> + 'static,
    ) -> ResponseFuture<Result<T, E>> {
        let (outcome, broker, events) = (op(self.backend.clone()), self.broker.clone(), self.events.clone());
        Box::pin(async move {
            let outcome = outcome.await;
            if let Ok(done) = &outcome
                && let Some(event) = announce(done)
            {
                events.publish(&broker, event);
            }
            outcome
        })
    }
}

impl Actor for InviteActor {
    type Context = Context<Self>;
}

/// `invite_new`: creates or reuses an invitation; answers its token.
#[derive(Message)]
#[rtype(result = "Result<Uuid, InviteNewError>")]
pub struct NewInvitation {
    pub org: OrganizationId,
    pub greeter: UserId,
    pub kind: InvitationKind,
    pub now: DateTime,
}

/// `invite_delete`.
#[derive(Message)]
#[rtype(result = "Result<(), InviteLookupError>")]
pub struct DeleteInvitation {
    pub org: OrganizationId,
    pub greeter: UserId,
    pub token: Uuid,
    pub on: DateTime,
    pub reason: InvitationDeletedReason,
}

/// `invite_list`.
#[derive(Message)]
#[rtype(result = "Result<Vec<Invitation>, Internal>")]
pub struct ListInvitations {
    pub org: OrganizationId,
    pub greeter: UserId,
}

/// The invited handshake's lookup.
#[derive(Message)]
#[rtype(result = "Result<Invitation, InviteLookupError>")]
pub struct GetInvitation {
    pub org: OrganizationId,
    pub token: Uuid,
}

/// First half of an exchange.
#[derive(Message)]
#[rtype(result = "Result<ListenCtx, ConduitError>")]
pub struct ConduitTalk {
    pub org: OrganizationId,
    pub peer: ConduitPeer,
    pub token: Uuid,
    pub state: ConduitState,
    pub payload: Vec<u8>,
}

/// One listen of an exchange.
#[derive(Message)]
#[rtype(result = "Result<ListenStep, ConduitError>")]
pub struct ConduitListen(pub ListenCtx);

/// Sends the e-mail of an invitation; answers `email_sent`.
#[derive(Message)]
#[rtype(result = "InvitationEmailSentStatus")]
pub struct SendInvitationEmail {
    pub org: OrganizationId,
    pub token: Uuid,
    pub kind: InvitationType,
    pub to: String,
    /// USER: the greeter's label, else its user id. DEVICE: `None`.
    pub greeter_name: Option<String>,
    pub reply_to: Option<HumanHandle>,
}

impl Handler<NewInvitation> for InviteActor {
    type Result = ResponseFuture<Result<Uuid, InviteNewError>>;
    /// IDLE also when an existing invitation is returned, as the reference.
    fn handle(&mut self, m: NewInvitation, _: &mut Self::Context) -> Self::Result {
        let (org, greeter) = (m.org.clone(), m.greeter.clone());
        self.publishing(
            move |b| Box::pin(async move { b.new_invitation(&m.org, &m.greeter, &m.kind, m.now).await }),
            move |token| {
                let status = InvitationStatus::Idle;
                Some(Event::InviteStatusChanged {
                    org,
                    greeter,
                    token: *token,
                    status,
                })
            },
        )
    }
}

impl Handler<DeleteInvitation> for InviteActor {
    type Result = ResponseFuture<Result<(), InviteLookupError>>;
    /// DELETED also closes the claimer's connections and wakes its waiters.
    fn handle(&mut self, m: DeleteInvitation, _: &mut Self::Context) -> Self::Result {
        let status = InvitationStatus::Deleted;
        let event = Event::InviteStatusChanged {
            org: m.org.clone(),
            greeter: m.greeter.clone(),
            token: m.token,
            status,
        };
        self.publishing(
            move |b| Box::pin(async move { b.delete_invitation(&m.org, &m.greeter, m.token, m.on, m.reason).await }),
            move |()| Some(event),
        )
    }
}

backend_handler!(InviteActor, ListInvitations, |b, m| b
    .list_invitations(&m.org, &m.greeter)
    .await);
backend_handler!(InviteActor, GetInvitation, |b, m| b
    .get_invitation(&m.org, m.token)
    .await);
impl Handler<ConduitTalk> for InviteActor {
    type Result = ResponseFuture<Result<ListenCtx, ConduitError>>;
    /// Wakes a peer already waiting; after a reset (step 1 out of sync) it is
    /// what makes that peer notice and fail with `invalid_state`.
    fn handle(&mut self, m: ConduitTalk, _: &mut Self::Context) -> Self::Result {
        let event = Event::InviteConduitUpdated {
            org: m.org.clone(),
            token: m.token,
        };
        self.publishing(
            move |b| Box::pin(async move { b.conduit_talk(&m.org, &m.peer, m.token, m.state, m.payload).await }),
            move |_| Some(event),
        )
    }
}

/// An invited connection opened (`opened`) or ended; answers how many of
/// the invitation's claimer connections are open now, on any instance.
#[derive(Message)]
#[rtype(result = "Result<u64, Internal>")]
pub struct ClaimerConnection {
    pub org: OrganizationId,
    pub greeter: UserId,
    pub token: Uuid,
    pub opened: bool,
}

impl Handler<ClaimerConnection> for InviteActor {
    type Result = ResponseFuture<Result<u64, Internal>>;
    /// READY at each opening; IDLE once the last connection is gone (a
    /// claimer's second connection closing leaves it READY).
    fn handle(&mut self, m: ClaimerConnection, _: &mut Self::Context) -> Self::Result {
        let (org, greeter, token, opened) = (m.org.clone(), m.greeter, m.token, m.opened);
        self.publishing(
            move |b| Box::pin(async move { b.claimer_connection(&m.org, m.token, m.opened).await }),
            move |open| {
                let status = if opened {
                    InvitationStatus::Ready
                } else {
                    InvitationStatus::Idle
                };
                (opened || *open == 0).then_some(Event::InviteStatusChanged {
                    org,
                    greeter,
                    token,
                    status,
                })
            },
        )
    }
}

impl Handler<ConduitListen> for InviteActor {
    type Result = ResponseFuture<Result<ListenStep, ConduitError>>;
    /// A listen that moved the conduit on tells the peer, which waits for it.
    fn handle(&mut self, ConduitListen(ctx): ConduitListen, _: &mut Self::Context) -> Self::Result {
        let event = Event::InviteConduitUpdated {
            org: ctx.org.clone(),
            token: ctx.token,
        };
        self.publishing(
            move |b| Box::pin(async move { b.conduit_listen(&ctx).await }),
            move |step| matches!(step, ListenStep::Done { advanced: true, .. }).then_some(event),
        )
    }
}

impl Handler<SendInvitationEmail> for InviteActor {
    /// A future, not a wait: other invitations go on while an SMTP server is slow.
    type Result = ResponseFuture<InvitationEmailSentStatus>;
    fn handle(&mut self, m: SendInvitationEmail, _: &mut Self::Context) -> Self::Result {
        let (mailer, sender) = (self.mailer.clone(), self.sender.clone());
        let email = InvitationEmail {
            to: m.to,
            greeter_name: m.greeter_name,
            reply_to: m.reply_to,
            invitation_url: self.backend_addr.invitation_url(&m.org, m.kind, m.token),
            backend_url: self.backend_addr.http_url(),
            org: m.org,
        };
        Box::pin(async move { email::send_invitation(mailer.as_ref(), &sender, &email).await })
    }
}

// ---------------------------------------------------------------- helpers

fn bare(status: &str) -> Value {
    cmds::status(status, vec![])
}

fn bin(b: Vec<u8>) -> Value {
    Value::Binary(b)
}

fn human_handle_value(h: &Option<HumanHandle>) -> Value {
    h.as_ref().map(HumanHandle::to_value).unwrap_or(Value::Nil)
}

// ------------------------------------------------------------ greeter side

/// `invite_new` (commands.md §5.1).
pub async fn new(actors: &Actors, client: &AuthenticatedClient, req: InviteNew) -> Result<Value, Internal> {
    let kind = match req.kind {
        InviteNewKind::User { claimer_email } => {
            if client.profile != UserProfile::Admin {
                return Ok(bare("not_allowed"));
            }
            InvitationKind::User { claimer_email }
        }
        InviteNewKind::Device => {
            if req.send_email && client.human_handle.is_none() {
                return Ok(bare("not_available"));
            }
            InvitationKind::Device
        }
    };
    let msg = NewInvitation {
        org: client.org.clone(),
        greeter: client.user_id.clone(),
        kind,
        now: DateTime::now(),
    };
    let kind = msg.kind.clone();
    let token = match actors.invite.send(msg).await? {
        Ok(token) => token,
        Err(InviteNewError::AlreadyMember) => return Ok(bare("already_member")),
        Err(InviteNewError::Internal(e)) => return Err(e),
    };
    let mut fields = vec![("token", uuid_value(token))];
    if req.send_email {
        let msg = match kind {
            InvitationKind::User { claimer_email } => SendInvitationEmail {
                org: client.org.clone(),
                token,
                kind: InvitationType::User,
                to: claimer_email,
                greeter_name: Some(match &client.human_handle {
                    Some(h) => h.label.clone(),
                    None => client.user_id.to_string(),
                }),
                reply_to: client.human_handle.clone(),
            },
            InvitationKind::Device => SendInvitationEmail {
                org: client.org.clone(),
                token,
                kind: InvitationType::Device,
                // Checked above: a DEVICE invitation e-mail needs a human handle.
                to: client
                    .human_handle
                    .as_ref()
                    .map(|h| h.email.clone())
                    .unwrap_or_default(),
                greeter_name: None,
                reply_to: None,
            },
        };
        let sent = actors.invite.send(msg).await?;
        fields.push(("email_sent", sent.to_value()));
    }
    Ok(cmds::ok(fields))
}

/// `invite_delete` (commands.md §5.2). The DELETED event also closes the
/// claimer's connections and wakes its conduit waiters.
pub async fn delete(actors: &Actors, client: &AuthenticatedClient, req: InviteDelete) -> Result<Value, Internal> {
    let msg = DeleteInvitation {
        org: client.org.clone(),
        greeter: client.user_id.clone(),
        token: req.token,
        on: DateTime::now(),
        reason: req.reason,
    };
    match actors.invite.send(msg).await? {
        Ok(()) => {}
        Err(InviteLookupError::NotFound) => return Ok(bare("not_found")),
        Err(InviteLookupError::AlreadyDeleted) => return Ok(bare("already_deleted")),
        Err(InviteLookupError::Internal(e)) => return Err(e),
    }
    Ok(cmds::ok(vec![]))
}

/// `invite_list` (commands.md §5.3): READY while a claimer connection is
/// open, on any server instance (counted in the store).
pub async fn list(actors: &Actors, client: &AuthenticatedClient) -> Result<Value, Internal> {
    let msg = ListInvitations {
        org: client.org.clone(),
        greeter: client.user_id.clone(),
    };
    let invitations = actors.invite.send(msg).await??;
    let items = invitations
        .iter()
        .map(|i| {
            let status = if i.claimer_online {
                InvitationStatus::Ready
            } else {
                InvitationStatus::Idle
            };
            let mut item = vec![
                ("type", i.kind.invitation_type().to_value()),
                ("token", uuid_value(i.token)),
                ("created_on", i.created_on.to_value()),
            ];
            if let Some(email) = i.kind.claimer_email() {
                item.push(("claimer_email", Value::from(email)));
            }
            item.push(("status", status.to_value()));
            parsec_protocol::value::map(item)
        })
        .collect();
    Ok(cmds::ok(vec![("invitations", Value::Array(items))]))
}

/// Greeter step outcome → reply: the statuses shared by the six steps.
fn greeter_rep(outcome: Result<Vec<(&str, Value)>, ConduitError>) -> Result<Value, Internal> {
    match outcome {
        Ok(fields) => Ok(cmds::ok(fields)),
        Err(ConduitError::NotFound) => Ok(bare("not_found")),
        Err(ConduitError::AlreadyDeleted) => Ok(bare("already_deleted")),
        Err(ConduitError::InvalidState(_)) => Ok(bare("invalid_state")),
        Err(ConduitError::Internal(e)) => Err(e),
    }
}

fn greeter(client: &AuthenticatedClient) -> ConduitPeer {
    ConduitPeer::Greeter(client.user_id.clone())
}

/// `invite_1_greeter_wait_peer`: public keys.
pub async fn greeter_1_wait_peer(
    actors: &Actors,
    client: &AuthenticatedClient,
    req: Invite1GreeterWaitPeer,
) -> Result<Value, Internal> {
    let key = req.greeter_public_key.to_vec();
    let outcome = exchange(
        actors,
        &client.org,
        &greeter(client),
        req.token,
        ConduitState::WaitPeers,
        key,
    )
    .await;
    greeter_rep(outcome.map(|k| vec![("claimer_public_key", bin(k))]))
}

/// `invite_2a_greeter_get_hashed_nonce`.
pub async fn greeter_2a_get_hashed_nonce(
    actors: &Actors,
    client: &AuthenticatedClient,
    req: Invite2aGreeterGetHashedNonce,
) -> Result<Value, Internal> {
    let state = ConduitState::ClaimerHashedNonce;
    let outcome = exchange(actors, &client.org, &greeter(client), req.token, state, vec![]).await;
    greeter_rep(outcome.map(|h| vec![("claimer_hashed_nonce", bin(h))]))
}

/// `invite_2b_greeter_send_nonce`: two exchanges, the second brings the claimer's nonce.
pub async fn greeter_2b_send_nonce(
    actors: &Actors,
    client: &AuthenticatedClient,
    req: Invite2bGreeterSendNonce,
) -> Result<Value, Internal> {
    let peer = greeter(client);
    let outcome = async {
        exchange(
            actors,
            &client.org,
            &peer,
            req.token,
            ConduitState::GreeterNonce,
            req.greeter_nonce,
        )
        .await?;
        exchange(
            actors,
            &client.org,
            &peer,
            req.token,
            ConduitState::ClaimerNonce,
            vec![],
        )
        .await
    }
    .await;
    greeter_rep(outcome.map(|n| vec![("claimer_nonce", bin(n))]))
}

/// `invite_3a_greeter_wait_peer_trust`.
pub async fn greeter_3a_wait_peer_trust(
    actors: &Actors,
    client: &AuthenticatedClient,
    req: Invite3aGreeterWaitPeerTrust,
) -> Result<Value, Internal> {
    let state = ConduitState::ClaimerTrust;
    let outcome = exchange(actors, &client.org, &greeter(client), req.token, state, vec![]).await;
    greeter_rep(outcome.map(|_| vec![]))
}

/// `invite_3b_greeter_signify_trust`.
pub async fn greeter_3b_signify_trust(
    actors: &Actors,
    client: &AuthenticatedClient,
    req: Invite3bGreeterSignifyTrust,
) -> Result<Value, Internal> {
    let state = ConduitState::GreeterTrust;
    let outcome = exchange(actors, &client.org, &greeter(client), req.token, state, vec![]).await;
    greeter_rep(outcome.map(|_| vec![]))
}

/// `invite_4_greeter_communicate`: repeatable.
pub async fn greeter_4_communicate(
    actors: &Actors,
    client: &AuthenticatedClient,
    req: Invite4GreeterCommunicate,
) -> Result<Value, Internal> {
    let state = ConduitState::Communicate;
    let outcome = exchange(actors, &client.org, &greeter(client), req.token, state, req.payload).await;
    greeter_rep(outcome.map(|p| vec![("payload", bin(p))]))
}

// ------------------------------------------------------------ claimer side

/// What a claimer command leads to.
#[derive(Debug, Clone, PartialEq)]
pub enum ClaimerOutcome {
    /// Answer this.
    Rep(Value),
    /// The invitation is deleted: close the connection without replying.
    InvitationDeleted,
}

/// The invited handshake: the invitation to snapshot into the connection.
pub async fn lookup(actors: &Actors, org: &OrganizationId, token: Uuid) -> Result<Invitation, InviteLookupError> {
    actors
        .invite
        .send(GetInvitation {
            org: org.clone(),
            token,
        })
        .await
        .map_err(Internal::from)?
}

/// An invited connection opened (`ready`) or ended: the store counts it, so
/// that `invite_list` on every instance agrees, and the greeter's devices
/// hear READY / IDLE. A connection must report its end only once its
/// opening has been counted (the count never goes below zero: an end
/// counted first would be lost, and the claimer would look connected until
/// the invitation goes).
pub async fn claimer_presence(actors: &Actors, client: &InvitedClient, ready: bool) -> Result<(), Internal> {
    let msg = ClaimerConnection {
        org: client.org.clone(),
        greeter: client.invitation.greeter_user_id.clone(),
        token: client.token,
        opened: ready,
    };
    actors.invite.send(msg).await??;
    Ok(())
}

/// `invite_info` (commands.md §6.1): from the handshake's snapshot, never
/// re-read (a deletion since is not seen here).
pub fn info(client: &InvitedClient) -> Value {
    let i = &client.invitation;
    let mut fields = vec![("type", i.kind.invitation_type().to_value())];
    if let Some(email) = i.kind.claimer_email() {
        fields.push(("claimer_email", Value::from(email)));
    }
    fields.push(("greeter_user_id", Value::from(i.greeter_user_id.as_str())));
    fields.push(("greeter_human_handle", human_handle_value(&i.greeter_human_handle)));
    cmds::ok(fields)
}

fn claimer_rep(outcome: Result<Vec<(&str, Value)>, ConduitError>) -> Result<ClaimerOutcome, Internal> {
    Ok(match outcome {
        Ok(fields) => ClaimerOutcome::Rep(cmds::ok(fields)),
        Err(ConduitError::NotFound) => ClaimerOutcome::Rep(bare("not_found")),
        Err(ConduitError::AlreadyDeleted) => ClaimerOutcome::InvitationDeleted,
        Err(ConduitError::InvalidState(_)) => ClaimerOutcome::Rep(bare("invalid_state")),
        Err(ConduitError::Internal(e)) => return Err(e),
    })
}

async fn claimer_exchange(
    actors: &Actors,
    client: &InvitedClient,
    state: ConduitState,
    payload: Vec<u8>,
) -> Result<Vec<u8>, ConduitError> {
    exchange(actors, &client.org, &ConduitPeer::Claimer, client.token, state, payload).await
}

/// `invite_1_claimer_wait_peer`: public keys. The session abandons it when
/// the next request arrives (README §5.5).
pub async fn claimer_1_wait_peer(
    actors: &Actors,
    client: &InvitedClient,
    req: Invite1ClaimerWaitPeer,
) -> Result<ClaimerOutcome, Internal> {
    let outcome = claimer_exchange(actors, client, ConduitState::WaitPeers, req.claimer_public_key.to_vec()).await;
    claimer_rep(outcome.map(|k| vec![("greeter_public_key", bin(k))]))
}

/// `invite_2a_claimer_send_hashed_nonce`: two exchanges, the second brings
/// the greeter's nonce.
pub async fn claimer_2a_send_hashed_nonce(
    actors: &Actors,
    client: &InvitedClient,
    req: Invite2aClaimerSendHashedNonce,
) -> Result<ClaimerOutcome, Internal> {
    let outcome = async {
        claimer_exchange(
            actors,
            client,
            ConduitState::ClaimerHashedNonce,
            req.claimer_hashed_nonce,
        )
        .await?;
        claimer_exchange(actors, client, ConduitState::GreeterNonce, vec![]).await
    }
    .await;
    claimer_rep(outcome.map(|n| vec![("greeter_nonce", bin(n))]))
}

/// `invite_2b_claimer_send_nonce`.
pub async fn claimer_2b_send_nonce(
    actors: &Actors,
    client: &InvitedClient,
    req: Invite2bClaimerSendNonce,
) -> Result<ClaimerOutcome, Internal> {
    let outcome = claimer_exchange(actors, client, ConduitState::ClaimerNonce, req.claimer_nonce).await;
    claimer_rep(outcome.map(|_| vec![]))
}

/// `invite_3a_claimer_signify_trust`.
pub async fn claimer_3a_signify_trust(actors: &Actors, client: &InvitedClient) -> Result<ClaimerOutcome, Internal> {
    let outcome = claimer_exchange(actors, client, ConduitState::ClaimerTrust, vec![]).await;
    claimer_rep(outcome.map(|_| vec![]))
}

/// `invite_3b_claimer_wait_peer_trust`.
pub async fn claimer_3b_wait_peer_trust(actors: &Actors, client: &InvitedClient) -> Result<ClaimerOutcome, Internal> {
    let outcome = claimer_exchange(actors, client, ConduitState::GreeterTrust, vec![]).await;
    claimer_rep(outcome.map(|_| vec![]))
}

/// `invite_4_claimer_communicate`: repeatable.
pub async fn claimer_4_communicate(
    actors: &Actors,
    client: &InvitedClient,
    req: Invite4ClaimerCommunicate,
) -> Result<ClaimerOutcome, Internal> {
    let outcome = claimer_exchange(actors, client, ConduitState::Communicate, req.payload).await;
    claimer_rep(outcome.map(|p| vec![("payload", bin(p))]))
}

// ---------------------------------------------------------------- conduit

/// One exchange (commands.md §7): subscribe, talk, then listen until the
/// peer's payload is there. Answers the peer's payload.
pub async fn exchange(
    actors: &Actors,
    org: &OrganizationId,
    peer: &ConduitPeer,
    token: Uuid,
    state: ConduitState,
    payload: Vec<u8>,
) -> Result<Vec<u8>, ConduitError> {
    // Subscribe before talking (README §0 item 9): a peer acting between our
    // talk and our first wait still leaves a change to see.
    let mut wakeups = actors
        .broker
        .send(WatchConduit {
            org: org.clone(),
            token,
        })
        .await
        .map_err(Internal::from)?;
    let talk = ConduitTalk {
        org: org.clone(),
        peer: peer.clone(),
        token,
        state,
        payload,
    };
    // The actor announces our talk (and a listen moving the conduit on).
    let ctx = actors.invite.send(talk).await.map_err(Internal::from)??;
    loop {
        match actors
            .invite
            .send(ConduitListen(ctx.clone()))
            .await
            .map_err(Internal::from)??
        {
            ListenStep::Done { payload, .. } => return Ok(payload),
            ListenStep::Wait => {}
        }
        // Level-triggered: one change pending, however many events made it.
        if wakeups.changed().await.is_err() {
            return Err(Internal(anyhow::anyhow!("the broker dropped the wake-ups of an invitation")).into());
        }
    }
}
