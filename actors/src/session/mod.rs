//! One actor per websocket client: handshake, request queue, events.
//!
//! Life of a connection:
//! 1. `started`: send the challenge, arm the handshake timeout.
//! 2. First message: the answer, checked by [`handshake::identify`] in a
//!    spawned future. A refusal sends the result and drops the connection
//!    without a close frame, as the reference does.
//! 3. Command loop. Requests are answered strictly in order, one at a time
//!    (v2 clients never pipeline, but a raw client may, and must get its
//!    answers in order). They wait in a bounded queue while a command runs;
//!    the websocket stream itself is never paused, so pings are answered even
//!    while a command (or `events_listen`) waits.
//!
//! `events_listen(wait=true)` parks the connection until an event arrives;
//! a new request abandons it without a reply (README §5.5), and so does
//! `invite_1_claimer_wait_peer`.
//!
//! Invited (claimer) connections are registered with the broker and announce
//! READY / IDLE to the greeter when they open / end. Deleting their
//! invitation closes them (1000, no message), after the answer of the command
//! they are running; a claimer step that finds its invitation deleted closes
//! without answering (README §6).
//!
//! Fatal input: an undecodable message or a text frame gets
//! `invalid_msg_format` then a close frame; a websocket framing violation
//! gets a close frame only. Either way, only this connection ends.

mod dispatch;
mod handshake;
pub mod ws;

use std::collections::VecDeque;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use actix::prelude::*;
use bytes::Bytes;
use futures_util::future::LocalBoxFuture;
use parsec_protocol::cmds::{self, anonymous, authenticated, invited};
use parsec_protocol::handshake::CHALLENGE_SIZE;
use parsec_protocol::types::DateTime;
use parsec_protocol::value::{self, Value};
use rand::Rng;

use crate::Actors;
use crate::anonymous::status_of;
use crate::backend::Internal;
use crate::broker::{self, ConnInfo, Push};
use crate::client::{AnonymousClient, AuthenticatedClient, InvitedClient};
use dispatch::Reply;
use handshake::{Identity, Refusal};
use ws::{Assembler, CloseCode, CloseReason, Incoming, WebsocketContext};

/// A client must answer the challenge within this time.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);
/// Events waiting for `events_listen` (reference `client_context.py`).
const MAX_QUEUED_EVENTS: usize = 100;
/// Requests waiting behind the running one; a client piling up more is
/// misbehaving.
const MAX_QUEUED_REQUESTS: usize = 64;

fn new_challenge() -> [u8; CHALLENGE_SIZE] {
    let mut c = [0u8; CHALLENGE_SIZE];
    rand::thread_rng().fill(&mut c[..]);
    c
}

static NEXT_CONN_ID: AtomicU64 = AtomicU64::new(1);

enum Phase {
    /// Challenge sent, waiting for the answer.
    Challenge([u8; CHALLENGE_SIZE]),
    /// Answer received, being checked.
    Handshaking,
    Authenticated(Arc<AuthenticatedClient>),
    Invited(Arc<InvitedClient>),
    AnonymousV1(Arc<AnonymousClient>),
}

/// What the connection is busy with.
enum InFlight {
    /// A command's future; `cancellable` ones are abandoned by a new request.
    Command { handle: SpawnHandle, cancellable: bool },
    /// `events_listen(wait=true)` with an empty queue.
    Listening,
}

/// See the module documentation.
///
/// Kept small: an idle connection is mostly this struct and its context (the
/// server serves websockets without HTTP machinery under them, see
/// [`ws::run`]), and a server holds tens of thousands of them.
/// Hence the shared [`Actors`] (see [`ws::start_shared`]), queues that give
/// their memory back once empty, and the handshake timer cancelled once done.
pub struct ClientSession {
    /// Shared, not owned: see [`ws::start_shared`].
    actors: ActorsRef,
    conn_id: u64,
    phase: Phase,
    frames: Assembler,
    queue: VecDeque<Bytes>,
    in_flight: Option<InFlight>,
    events: VecDeque<Bytes>,
    subscribed: bool,
    /// Set by the broker when this connection could not keep up.
    overflowed: Arc<AtomicBool>,
    closing: bool,
    /// When the client last sent anything (frames, pongs included).
    last_activity: Instant,
    /// Invited: the invitation was deleted while a command ran; close once
    /// it has answered, and take no new request.
    close_after_reply: bool,
    /// Invited: the report of the connection's opening, which its end waits
    /// for (the store must count the opening first).
    claimer_opened: Option<tokio::task::JoinHandle<()>>,
    /// The close code used then (server stopping: 1001).
    close_after_reply_code: CloseCode,
    /// The handshake timeout, cancelled once the handshake is answered.
    handshake_timer: Option<SpawnHandle>,
}

/// The actors' handles as a session and its commands' futures hold them:
/// a reference count on the shared [`Actors`] instead of a copy of its ten
/// addresses per command, whose clones and drops (two atomic counters each,
/// shared by every thread) took about 6 % of an HTTP worker's time under
/// `vlob_update`.
#[derive(Clone)]
pub(crate) struct ActorsRef(Rc<dyn AsRef<Actors>>);

impl std::ops::Deref for ActorsRef {
    type Target = Actors;
    fn deref(&self) -> &Actors {
        (*self.0).as_ref()
    }
}

impl ClientSession {
    pub fn new(actors: Rc<dyn AsRef<Actors>>) -> Self {
        Self {
            actors: ActorsRef(actors),
            conn_id: NEXT_CONN_ID.fetch_add(1, Ordering::Relaxed),
            phase: Phase::Challenge(new_challenge()),
            frames: Assembler::default(),
            queue: VecDeque::new(),
            in_flight: None,
            events: VecDeque::new(),
            subscribed: false,
            overflowed: Arc::new(AtomicBool::new(false)),
            closing: false,
            last_activity: Instant::now(),
            close_after_reply: false,
            claimer_opened: None,
            close_after_reply_code: CloseCode::Normal,
            handshake_timer: None,
        }
    }

    fn actors(&self) -> &Actors {
        &self.actors
    }

    /// The actors' handles, for a command's future.
    fn actors_owned(&self) -> ActorsRef {
        self.actors.clone()
    }

    fn send(&self, ctx: &mut WebsocketContext<Self>, v: &Value) {
        ctx.binary(value::pack(v));
    }

    /// Closes with a close frame (after whatever was already queued).
    fn close(&mut self, ctx: &mut WebsocketContext<Self>, code: CloseCode) {
        if !self.closing {
            self.closing = true;
            ctx.close(Some(CloseReason {
                code,
                description: None,
            }));
        }
        ctx.stop();
    }

    /// Drops the connection without a close frame (handshake refusals).
    fn drop_connection(&mut self, ctx: &mut WebsocketContext<Self>) {
        self.closing = true;
        ctx.stop();
    }

    fn fatal_invalid_msg(&mut self, ctx: &mut WebsocketContext<Self>) {
        if !self.closing {
            self.send(ctx, &cmds::invalid_msg_format());
        }
        self.close(ctx, CloseCode::Normal);
    }

    fn on_message(&mut self, raw: Bytes, ctx: &mut WebsocketContext<Self>) {
        if self.closing || self.close_after_reply {
            return;
        }
        if let Phase::Challenge(challenge) = self.phase {
            self.phase = Phase::Handshaking;
            let fut = handshake::identify(self.actors_owned(), self.conn_id, raw.to_vec(), challenge.to_vec());
            ctx.spawn(fut.into_actor(self).map(|res, act, ctx| act.on_identified(res, ctx)));
            return;
        }
        // A new request abandons a pending `events_listen(wait=true)` or
        // `invite_1_claimer_wait_peer`, without replying to it.
        match self.in_flight {
            Some(InFlight::Listening) => self.in_flight = None,
            Some(InFlight::Command {
                handle,
                cancellable: true,
            }) => {
                ctx.cancel_future(handle);
                self.in_flight = None;
            }
            _ => {}
        }
        if self.queue.len() >= MAX_QUEUED_REQUESTS {
            log::warn!(
                "conn={}: more than {MAX_QUEUED_REQUESTS} queued requests, closing",
                self.conn_id
            );
            return self.close(ctx, CloseCode::Policy);
        }
        self.queue.push_back(raw);
        self.pump(ctx);
    }

    fn on_identified(&mut self, res: Result<Identity, Refusal>, ctx: &mut WebsocketContext<Self>) {
        if let Some(timer) = self.handshake_timer.take() {
            ctx.cancel_future(timer);
        }
        match res {
            Ok(identity) => {
                ctx.binary(parsec_protocol::handshake::result_ok());
                self.phase = match identity {
                    Identity::Authenticated(c) => {
                        log::info!("{c}: authenticated");
                        let info = ConnInfo {
                            conn_id: c.conn_id,
                            org: c.org.clone(),
                            user_id: c.user_id.clone(),
                            device_id: c.device_id.clone(),
                            profile: c.profile,
                        };
                        self.actors().broker.do_send(broker::Register {
                            info,
                            addr: ctx.address().recipient(),
                            overflowed: self.overflowed.clone(),
                        });
                        Phase::Authenticated(Arc::new(c))
                    }
                    Identity::Invited(c) => {
                        log::info!("conn={} org={}: invited", c.conn_id, c.org);
                        // Registered before READY goes out, so that a deletion
                        // the greeter makes on seeing READY reaches us.
                        self.actors().broker.do_send(broker::RegisterInvited {
                            org: c.org.clone(),
                            token: c.token,
                            conn_id: c.conn_id,
                            addr: ctx.address().recipient(),
                        });
                        let c = Arc::new(c);
                        let (actors, client) = (self.actors_owned(), c.clone());
                        self.claimer_opened = Some(actix::spawn(async move {
                            if let Err(e) = crate::invite::claimer_presence(&actors, &client, true).await {
                                log::error!("conn={}: claimer presence not recorded: {:#}", client.conn_id, e.0);
                            }
                        }));
                        Phase::Invited(c)
                    }
                    Identity::AnonymousV1(c) => Phase::AnonymousV1(Arc::new(c)),
                };
                self.pump(ctx);
            }
            Err(Refusal::Refused(e)) => {
                log::info!("conn={}: handshake refused: {} ({e})", self.conn_id, e.result());
                ctx.binary(e.to_result_message());
                self.drop_connection(ctx);
            }
            Err(Refusal::Internal(e)) => {
                log::error!("conn={}: handshake failed: {:#}", self.conn_id, e.0);
                self.drop_connection(ctx);
            }
        }
    }

    /// Starts the next queued request if nothing is running.
    fn pump(&mut self, ctx: &mut WebsocketContext<Self>) {
        while self.in_flight.is_none() && !self.closing {
            let Some(raw) = self.queue.pop_front() else { return };
            release_if_empty(&mut self.queue);
            let mut map = match value::unpack_map(&raw) {
                Ok(m) => m,
                Err(e) => {
                    log::info!("conn={}: undecodable message ({e}), closing", self.conn_id);
                    return self.fatal_invalid_msg(ctx);
                }
            };
            let started = Instant::now();
            let mut cancellable = false;
            let fut: LocalBoxFuture<(String, Result<Reply, Internal>)> = match &self.phase {
                Phase::Authenticated(client) => match authenticated::AnyReq::load_moving_bytes(&mut map) {
                    Err(e) => {
                        // Some profile checks come before parsing in the reference.
                        match crate::permissions::refused_before_parsing(client, &e) {
                            Some(rep) => self.send(ctx, &rep),
                            None => self.reply_bad_request(ctx, &e),
                        }
                        continue;
                    }
                    Ok(authenticated::AnyReq::EventsSubscribe) => {
                        // Idempotent: only the first call computes the realm set.
                        if self.subscribed {
                            self.send(ctx, &cmds::ok(vec![]));
                            continue;
                        }
                        self.subscribed = true;
                        // Runs as a command, so requests sent after it wait
                        // until the broker has the subscription.
                        let who = format!("{client} cmd=events_subscribe");
                        let fut = events_subscribe(self.actors_owned(), client.clone());
                        Box::pin(async move { (who, fut.await.map(Reply::from)) })
                    }
                    Ok(authenticated::AnyReq::EventsListen(r)) => {
                        if let Some(ev) = self.events.pop_front() {
                            ctx.binary(ev);
                            release_if_empty(&mut self.events);
                        } else if r.wait {
                            self.in_flight = Some(InFlight::Listening);
                        } else {
                            self.send(ctx, &cmds::status("no_events", vec![]));
                        }
                        continue;
                    }
                    Ok(req) => {
                        let who = client.to_string();
                        let cmd = req.name();
                        let fut = dispatch::authenticated(self.actors_owned(), client.clone(), req);
                        Box::pin(async move { (format!("{who} cmd={cmd}"), fut.await.map(Reply::from)) })
                    }
                },
                Phase::Invited(client) => match invited::AnyReq::load(&map) {
                    Err(e) => {
                        self.reply_bad_request(ctx, &e);
                        continue;
                    }
                    Ok(req) => {
                        // A long request: the next one abandons it (README §5.5).
                        cancellable = matches!(req, invited::AnyReq::Invite1ClaimerWaitPeer(_));
                        let who = format!("conn={} org={} invited cmd={}", client.conn_id, client.org, req.name());
                        let fut = dispatch::invited(self.actors_owned(), client.clone(), req);
                        Box::pin(async move { (who, fut.await) })
                    }
                },
                Phase::AnonymousV1(client) => match anonymous::AnyV1Req::load(&map) {
                    Err(e) => {
                        self.reply_bad_request(ctx, &e);
                        continue;
                    }
                    Ok(req) => {
                        let who = format!(
                            "conn={} org={} anonymous cmd={}",
                            client.conn_id,
                            client.org,
                            req.name()
                        );
                        let fut = dispatch::anonymous_v1(self.actors_owned(), client.clone(), req);
                        Box::pin(async move { (who, fut.await.map(Reply::from)) })
                    }
                },
                Phase::Challenge(_) | Phase::Handshaking => {
                    // Requests sent before the handshake result wait for it.
                    self.queue.push_front(raw);
                    return;
                }
            };
            let handle = ctx.spawn(fut.into_actor(self).map(move |(who, out), act, ctx| {
                act.in_flight = None;
                match out {
                    Ok(Reply::Send(rep)) => {
                        log::info!("{who} status={} {}ms", status_of(&rep), started.elapsed().as_millis());
                        act.send(ctx, &rep);
                        if act.close_after_reply {
                            log::info!("{who}: closing after the answer (invitation deleted or server stopping)");
                            return act.close(ctx, act.close_after_reply_code);
                        }
                        act.pump(ctx);
                    }
                    Ok(Reply::CloseInvited) => {
                        log::info!("{who}: invitation deleted, closing without answer");
                        act.close(ctx, CloseCode::Normal);
                    }
                    Err(e) => {
                        log::error!("{who}: internal error: {:#}", e.0);
                        act.close(ctx, CloseCode::Error);
                    }
                }
            }));
            self.in_flight = Some(InFlight::Command { handle, cancellable });
        }
    }

    fn reply_bad_request(&mut self, ctx: &mut WebsocketContext<Self>, e: &cmds::LoadError) {
        match e {
            cmds::LoadError::UnknownCommand => log::info!("conn={}: unknown command", self.conn_id),
            cmds::LoadError::BadMessage { cmd, errors } => {
                log::info!("conn={} cmd={cmd}: bad message {errors}", self.conn_id)
            }
        }
        self.send(ctx, &e.to_rep());
    }

    fn check_overflow(&mut self, ctx: &mut WebsocketContext<Self>) -> bool {
        if self.overflowed.load(Ordering::Acquire) {
            log::warn!("conn={}: too slow to take its events, closing", self.conn_id);
            self.close(ctx, CloseCode::Policy);
            return true;
        }
        false
    }
}

/// Gives an emptied queue's memory back: a connection queues a request or
/// an event now and then, and then idles for hours.
fn release_if_empty<T>(queue: &mut VecDeque<T>) {
    if queue.is_empty() && queue.capacity() > 0 {
        *queue = VecDeque::new();
    }
}

/// `events_subscribe`: registers the connection with the broker, with the
/// realms where its user currently has a role (events.md §3); the broker
/// keeps that set up to date from `realm.roles_updated` events afterwards.
///
/// Like the reference, the realm set is read before the broker starts
/// capturing, so a role granted in between is missed (both its event and
/// its realm) until the client reconnects. Closing that window needs the
/// broker to record role changes from subscription time and merge them.
async fn events_subscribe(actors: ActorsRef, client: Arc<AuthenticatedClient>) -> Result<Value, Internal> {
    let realms = crate::realm::realms_for_user(&actors, &client).await?;
    actors
        .broker
        .send(broker::Subscribe {
            org: client.org.clone(),
            conn_id: client.conn_id,
            realms,
        })
        .await?;
    Ok(cmds::ok(vec![]))
}

impl Actor for ClientSession {
    type Context = WebsocketContext<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        // Bounded: the broker `try_send`s events, and a full mailbox means
        // this client does not keep up (see broker.rs).
        ctx.set_mailbox_capacity(MAX_QUEUED_EVENTS);
        if let Phase::Challenge(challenge) = &self.phase {
            ctx.binary(parsec_protocol::handshake::challenge(challenge, DateTime::now()));
        }
        let keepalive = self.actors().keepalive;
        ctx.run_interval(keepalive, move |act, ctx| {
            if act.last_activity.elapsed() >= keepalive {
                ctx.ping(b"parsec-keepalive");
            }
        });
        self.handshake_timer = Some(ctx.run_later(HANDSHAKE_TIMEOUT, |act, ctx| {
            if matches!(act.phase, Phase::Challenge(_) | Phase::Handshaking) {
                log::info!("conn={}: handshake timeout", act.conn_id);
                act.drop_connection(ctx);
            }
        }));
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        if let Phase::Authenticated(c) = &self.phase {
            self.actors().broker.do_send(broker::Unregister {
                org: c.org.clone(),
                conn_id: c.conn_id,
            });
            log::info!("{c}: disconnected");
        }
        if let Phase::Invited(c) = &self.phase {
            let msg = broker::UnregisterInvited {
                org: c.org.clone(),
                token: c.token,
                conn_id: c.conn_id,
            };
            self.actors().broker.do_send(msg);
            // IDLE for the greeter, even after a deletion (README §6), once
            // the opening has been counted.
            let (actors, client, opened) = (self.actors_owned(), c.clone(), self.claimer_opened.take());
            actix::spawn(async move {
                if let Some(opened) = opened {
                    let _ = opened.await;
                }
                if let Err(e) = crate::invite::claimer_presence(&actors, &client, false).await {
                    log::error!("conn={}: claimer departure not recorded: {:#}", client.conn_id, e.0);
                }
            });
            log::info!("conn={} org={}: invited connection ended", c.conn_id, c.org);
        }
    }
}

impl StreamHandler<Result<ws::Message, ws::ProtocolError>> for ClientSession {
    fn handle(&mut self, item: Result<ws::Message, ws::ProtocolError>, ctx: &mut Self::Context) {
        self.last_activity = Instant::now();
        if self.check_overflow(ctx) {
            return;
        }
        match self.frames.push(item) {
            Incoming::Message(raw) => self.on_message(raw, ctx),
            Incoming::Text => {
                log::info!("conn={}: text frame, closing", self.conn_id);
                self.fatal_invalid_msg(ctx);
            }
            Incoming::Violation(e) => {
                log::info!("conn={}: websocket violation ({e}), closing", self.conn_id);
                self.close(ctx, CloseCode::Protocol);
            }
            Incoming::Ping(b) => ctx.pong(&b),
            Incoming::Close(reason) => {
                self.closing = true;
                ctx.close(reason);
                ctx.stop();
            }
            Incoming::Nothing => {}
        }
    }

    fn finished(&mut self, ctx: &mut Self::Context) {
        ctx.stop();
    }
}

impl Handler<Push> for ClientSession {
    type Result = ();

    fn handle(&mut self, msg: Push, ctx: &mut Self::Context) {
        if self.closing || self.check_overflow(ctx) {
            return;
        }
        match msg {
            Push::Close => {
                log::info!(
                    "conn={}: closed by the server (revoked user or expired organization)",
                    self.conn_id
                );
                self.close(ctx, CloseCode::Normal);
            }
            Push::InvitationDeleted => {
                // The command running may be the claimer's last
                // `invite_4_claimer_communicate`, whose answer the client
                // needs: let it answer first (a conduit step still waiting
                // is woken by the same deletion and closes without answer).
                // Queued requests are dropped.
                self.queue = VecDeque::new();
                if matches!(self.in_flight, Some(InFlight::Command { .. })) {
                    self.close_after_reply = true;
                } else {
                    log::info!("conn={}: invitation deleted, closing", self.conn_id);
                    self.close(ctx, CloseCode::Normal);
                }
            }
            Push::Shutdown => {
                // In-flight commands finish and answer (their writes are
                // acknowledged); what is queued behind them is not started.
                self.queue = VecDeque::new();
                if matches!(self.in_flight, Some(InFlight::Command { cancellable: false, .. })) {
                    log::info!("conn={}: server stopping, closing after its command", self.conn_id);
                    self.close_after_reply = true;
                    self.close_after_reply_code = CloseCode::Away;
                } else {
                    log::info!("conn={}: server stopping, closing", self.conn_id);
                    self.close(ctx, CloseCode::Away);
                }
            }
            Push::Event(ev) => {
                if matches!(self.in_flight, Some(InFlight::Listening)) {
                    self.in_flight = None;
                    ctx.binary(ev);
                    self.pump(ctx);
                } else if self.events.len() >= MAX_QUEUED_EVENTS {
                    log::warn!(
                        "conn={}: {MAX_QUEUED_EVENTS} events not listened to, closing",
                        self.conn_id
                    );
                    self.close(ctx, CloseCode::Policy);
                } else {
                    self.events.push_back(ev);
                }
            }
        }
    }
}
