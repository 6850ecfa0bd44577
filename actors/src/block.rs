//! Blocks: the actor owning block metadata and the block store, and the
//! rules of `block_create` and `block_read`.
//!
//! Accepts: [`CreateBlock`], [`ReadBlock`], [`Health`].
//!
//! Access checks and metadata belong to the [`BlockBackend`]; the bytes go
//! to the [`BlockStore`] (`--blockstore`). Any block store failure reaches
//! the client as the legacy `timeout` status (reference `block.py`) and is
//! logged here, since it most likely needs an operator.
//!
//! Where the backend says grouping pays ([`BlockBackend::groups_creates`]:
//! PostgreSQL keeping the bytes in its own database), creates are gathered:
//! up to [`GROUPS_IN_FLIGHT`] groups run at once, and the creates arriving
//! meanwhile wait for the next free slot and go together in one
//! [`BlockBackend::create_group`] (at most [`MAX_GROUP`] blocks or
//! [`MAX_GROUP_BYTES`], one create per block id, arrival order). Each create
//! gets the outcome it would have had alone; a lone create goes at once. The
//! queue is bounded by the sessions' own request bounds.

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;

use actix::prelude::*;
use bytes::Bytes;
use parsec_protocol::cmds;
use parsec_protocol::cmds::authenticated::{BlockCreate, BlockRead};
use parsec_protocol::types::*;
use parsec_protocol::value::Value;
use tokio::sync::oneshot;

use crate::Actors;
use crate::backend::*;
use crate::blockstore::BlockStore;
use crate::client::AuthenticatedClient;

/// Most groups of creates running at once: enough for PostgreSQL to use
/// every core, few enough to leave pooled connections to everything else.
pub const GROUPS_IN_FLIGHT: usize = 3;

/// Most creates in one group.
pub const MAX_GROUP: usize = 32;

/// Most block bytes in one group (a bigger first block goes alone).
pub const MAX_GROUP_BYTES: usize = 4 << 20;

/// Owns the block backend and the block store.
pub struct BlockActor {
    backend: Arc<dyn BlockBackend>,
    store: Arc<dyn BlockStore>,
    /// Whether creates go in groups (fixed by the backend and the store).
    grouped: bool,
    /// Creates waiting for a free group slot.
    queue: VecDeque<PendingCreate>,
    running: usize,
}

struct PendingCreate {
    block: NewBlock,
    reply: oneshot::Sender<Result<(), BlockCreateError>>,
}

impl BlockActor {
    pub fn new(backend: Arc<dyn BlockBackend>, store: Arc<dyn BlockStore>) -> Self {
        let grouped = backend.groups_creates(&*store);
        Self {
            backend,
            store,
            grouped,
            queue: VecDeque::new(),
            running: 0,
        }
    }

    /// Starts groups from the queue while slots are free.
    fn start_groups(&mut self, ctx: &mut Context<Self>) {
        while self.running < GROUPS_IN_FLIGHT && !self.queue.is_empty() {
            let (blocks, replies): (Vec<NewBlock>, Vec<_>) = next_group(&mut self.queue)
                .into_iter()
                .map(|p| (p.block, p.reply))
                .unzip();
            self.running += 1;
            let (backend, store) = (self.backend.clone(), self.store.clone());
            let run = async move { backend.create_group(blocks, DateTime::now(), &*store).await };
            ctx.spawn(run.into_actor(self).map(move |outcomes, act, ctx| {
                let mut outcomes = outcomes.into_iter();
                for reply in replies {
                    let outcome = outcomes.next().unwrap_or_else(|| Err(no_outcome().into()));
                    // The requester may be gone (connection closed): nothing to do.
                    let _ = reply.send(outcome);
                }
                act.running -= 1;
                act.start_groups(ctx);
            }));
        }
    }
}

/// The queue's next group: arrival order, stopping at [`MAX_GROUP`], at
/// [`MAX_GROUP_BYTES`] or before a second create of one block id (it must
/// see the first one's outcome, so it waits for the next group).
fn next_group(queue: &mut VecDeque<PendingCreate>) -> Vec<PendingCreate> {
    let mut seen = HashSet::new();
    let mut bytes = 0;
    let mut group = Vec::new();
    while group.len() < MAX_GROUP
        && let Some(next) = queue.front()
        && (group.is_empty() || bytes + next.block.req.block.len() <= MAX_GROUP_BYTES)
        && seen.insert((next.block.org.clone(), next.block.req.block_id))
    {
        bytes += next.block.req.block.len();
        group.extend(queue.pop_front());
    }
    group
}

/// A group answered nothing for this create: only a backend bug does that.
fn no_outcome() -> Internal {
    Internal(anyhow::anyhow!("block create group gave no outcome"))
}

impl Actor for BlockActor {
    type Context = Context<Self>;
}

/// Checks access, stores the bytes, records the metadata.
#[derive(Message)]
#[rtype(result = "Result<(), BlockCreateError>")]
pub struct CreateBlock {
    pub org: OrganizationId,
    pub author: DeviceId,
    pub req: BlockCreate,
}

/// Checks access, then fetches the bytes.
#[derive(Message)]
#[rtype(result = "Result<Bytes, BlockReadError>")]
pub struct ReadBlock {
    pub org: OrganizationId,
    pub user: UserId,
    pub block_id: Uuid,
}

impl Handler<CreateBlock> for BlockActor {
    type Result = ResponseFuture<Result<(), BlockCreateError>>;
    fn handle(&mut self, m: CreateBlock, ctx: &mut Self::Context) -> Self::Result {
        if !self.grouped {
            let (backend, store) = (self.backend.clone(), self.store.clone());
            return Box::pin(async move { backend.create(&m.org, &m.author, m.req, DateTime::now(), &*store).await });
        }
        let (reply, outcome) = oneshot::channel();
        let block = NewBlock {
            org: m.org,
            author: m.author,
            req: m.req,
        };
        self.queue.push_back(PendingCreate { block, reply });
        self.start_groups(ctx);
        Box::pin(async move { outcome.await.unwrap_or_else(|_| Err(no_outcome().into())) })
    }
}

impl Handler<ReadBlock> for BlockActor {
    type Result = ResponseFuture<Result<Bytes, BlockReadError>>;
    fn handle(&mut self, m: ReadBlock, _: &mut Self::Context) -> Self::Result {
        let (backend, store) = (self.backend.clone(), self.store.clone());
        Box::pin(async move { backend.read(&m.org, &m.user, m.block_id, &*store).await })
    }
}

/// Readiness probe of the block store (`/ready`).
#[derive(Message)]
#[rtype(result = "Result<(), crate::blockstore::BlockStoreError>")]
pub struct Health;

impl Handler<Health> for BlockActor {
    type Result = ResponseFuture<Result<(), crate::blockstore::BlockStoreError>>;
    fn handle(&mut self, _: Health, _: &mut Self::Context) -> Self::Result {
        let store = self.store.clone();
        Box::pin(async move { store.health().await })
    }
}

fn bare(status: &str) -> Value {
    cmds::status(status, vec![])
}

/// `block_create` (commands.md §10.1). Every status comes without reason.
pub async fn create(actors: &Actors, client: &AuthenticatedClient, req: BlockCreate) -> Result<Value, Internal> {
    use BlockCreateError as E;
    let block_id = req.block_id;
    let msg = CreateBlock {
        org: client.org.clone(),
        author: client.device_id.clone(),
        req,
    };
    Ok(match actors.block.send(msg).await? {
        Ok(()) => cmds::ok(vec![]),
        Err(E::RealmNotFound) => bare("not_found"),
        Err(E::InMaintenance) => bare("in_maintenance"),
        Err(E::NotAllowed) => bare("not_allowed"),
        Err(E::AlreadyExists) => bare("already_exists"),
        Err(E::Store(e)) => {
            log::error!("{client} block={}: block store write failed: {e}", block_id.simple());
            bare("timeout") // legacy name, reference block.py
        }
        Err(E::Internal(e)) => return Err(e),
    })
}

/// `block_read` (commands.md §10.2). Every error comes without reason.
pub async fn read(actors: &Actors, client: &AuthenticatedClient, req: BlockRead) -> Result<Value, Internal> {
    use BlockReadError as E;
    let msg = ReadBlock {
        org: client.org.clone(),
        user: client.user_id.clone(),
        block_id: req.block_id,
    };
    Ok(match actors.block.send(msg).await? {
        Ok(block) => cmds::ok(vec![("block", Value::Binary(block.into()))]),
        Err(E::NotFound) => bare("not_found"),
        Err(E::InMaintenance) => bare("in_maintenance"),
        Err(E::NotAllowed) => bare("not_allowed"),
        Err(E::Store(e)) => {
            log::error!("{client} block={}: block store read failed: {e}", req.block_id.simple());
            bare("timeout") // legacy name, reference block.py
        }
        Err(E::Internal(e)) => return Err(e),
    })
}
