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
//! up to [`CREATE_GROUPS_IN_FLIGHT`] groups run at once (another one waits for
//! [`SECOND_GROUP_MIN`] creates or [`SECOND_GROUP_LINGER`]), and the
//! creates arriving meanwhile wait for the next free slot and go together in one
//! [`BlockBackend::create_group`] (at most [`MAX_GROUP`] blocks or
//! [`MAX_GROUP_BYTES`], one create per block id, arrival order). Each create
//! gets the outcome it would have had alone; a lone create goes at once. The
//! queue is bounded by the sessions' own request bounds.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use bytes::Bytes;
use parsec_protocol::cmds;
use parsec_protocol::cmds::authenticated::{BlockCreate, BlockRead};
use parsec_protocol::types::*;
use parsec_protocol::value::Value;

use crate::Actors;
use crate::backend::*;
use crate::blockstore::BlockStore;
use crate::client::AuthenticatedClient;
use crate::grouping::{Counted, Grouping, Replies, start_counted};

/// Most groups of creates running at once. PostgreSQL receives a group's
/// megabytes before it runs the statement: with three groups, one is being
/// received while the others run, and `block_create` went 3–4 % faster than
/// with two in five alternating runs (BENCHMARKS.md, third session of
/// 2026-11-23). More did no better for the CPU they took: concurrent
/// groups wait for each other to extend the block tables (`Lock: extend`).
pub const CREATE_GROUPS_IN_FLIGHT: usize = 3;

/// Most groups of reads running at once: enough for PostgreSQL to use
/// every core (one group leaves a core idle), few enough to leave pooled
/// connections to everything else. A third group made reads slower.
pub const READ_GROUPS_IN_FLIGHT: usize = 2;

/// Most requests in one group.
pub const MAX_GROUP: usize = 32;

/// While another group of creates runs, a new one waits for this many
/// creates...
pub const SECOND_GROUP_MIN: usize = 16;

/// ... or for this long, whichever comes first. Without it, a create
/// arriving while one group ran started a group of its own: a fifth of the
/// groups were single blocks, each paying a whole statement (BENCHMARKS.md).
/// Reads do not wait: it gained them nothing.
pub const SECOND_GROUP_LINGER: Duration = Duration::from_millis(2);

/// Most block bytes in one group of creates (a bigger first block goes
/// alone); reads, whose sizes are not known beforehand, stop at
/// [`MAX_READ_GROUP`].
pub const MAX_GROUP_BYTES: usize = 4 << 20;

/// Most reads in one group. With two groups in flight, 16 cost about 6 %
/// fewer instructions per read than 8, and 32 no fewer (BENCHMARKS.md).
/// Blocks are at most 1 MiB: a group's answer is at most 16 MiB.
pub const MAX_READ_GROUP: usize = 16;

/// Owns the block backend and the block store.
pub struct BlockActor {
    backend: Arc<dyn BlockBackend>,
    store: Arc<dyn BlockStore>,
    /// Creates and reads waiting for a group slot, when they go in groups
    /// (fixed by the backend and the store).
    creates: Option<Grouping<NewBlock, Result<(), BlockCreateError>>>,
    reads: Option<Grouping<BlockToRead, Result<Bytes, BlockReadError>>>,
}

impl BlockActor {
    pub fn new(backend: Arc<dyn BlockBackend>, store: Arc<dyn BlockStore>) -> Self {
        let creates = backend
            .groups_creates(&*store)
            .then(|| Grouping::new(CREATE_GROUPS_IN_FLIGHT));
        let reads = backend
            .groups_reads(&*store)
            .then(|| Grouping::new(READ_GROUPS_IN_FLIGHT));
        Self {
            backend,
            store,
            creates,
            reads,
        }
    }

    /// Starts groups of creates while slots are free: arrival order,
    /// stopping at [`MAX_GROUP`], at [`MAX_GROUP_BYTES`] or before a second
    /// create of one block id (it must see the first one's outcome, so it
    /// waits for the next group).
    fn start_creates(&mut self, ctx: &mut Context<Self>) {
        loop {
            let (mut seen, mut bytes, mut count) = (HashSet::new(), 0, 0);
            let admit = |b: &NewBlock| {
                let len = b.req.block.len();
                let ok = count < MAX_GROUP
                    && (count == 0 || bytes + len <= MAX_GROUP_BYTES)
                    && seen.insert((b.org.clone(), b.req.block_id));
                if ok {
                    (bytes, count) = (bytes + len, count + 1);
                }
                ok
            };
            let Some(creates) = self.creates.as_mut() else { return };
            if creates.has_slot()
                && creates.holds(ctx, SECOND_GROUP_MIN, SECOND_GROUP_LINGER, |act, ctx| {
                    if let Some(c) = act.creates.as_mut() {
                        c.lingered();
                    }
                    act.start_creates(ctx);
                })
            {
                return;
            }
            let Some((blocks, replies)) = creates.next(admit) else {
                return;
            };
            let (backend, store) = (self.backend.clone(), self.store.clone());
            let run = async move { backend.create_group(blocks, DateTime::now(), &*store).await };
            ctx.spawn(run.into_actor(self).map(move |outcomes, act, ctx| {
                Replies::new(replies, || Err(no_outcome().into())).send_all(outcomes);
                if let Some(creates) = act.creates.as_mut() {
                    creates.done();
                }
                act.start_creates(ctx);
            }));
        }
    }

    /// How reads run in groups.
    const READS: Counted<Self, BlockToRead, Result<Bytes, BlockReadError>> = Counted {
        max: MAX_READ_GROUP,
        grouping: |act| act.reads.as_mut(),
        run: |act, reads, mut replies| {
            let (backend, store) = (act.backend.clone(), act.store.clone());
            Box::pin(async move { backend.read_group(reads, &*store, &mut replies).await })
        },
        missing: || Err(no_outcome().into()),
    };
}

/// A group answered nothing for this request: only a backend bug does that.
fn no_outcome() -> Internal {
    Internal(anyhow::anyhow!("block group gave no outcome"))
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
        let Some(creates) = self.creates.as_mut() else {
            let (backend, store) = (self.backend.clone(), self.store.clone());
            return Box::pin(async move { backend.create(&m.org, &m.author, m.req, DateTime::now(), &*store).await });
        };
        let outcome = creates.push(NewBlock {
            org: m.org,
            author: m.author,
            req: m.req,
        });
        self.start_creates(ctx);
        Box::pin(async move { outcome.await.unwrap_or_else(|_| Err(no_outcome().into())) })
    }
}

impl Handler<ReadBlock> for BlockActor {
    type Result = ResponseFuture<Result<Bytes, BlockReadError>>;
    fn handle(&mut self, m: ReadBlock, ctx: &mut Self::Context) -> Self::Result {
        let Some(reads) = self.reads.as_mut() else {
            let (backend, store) = (self.backend.clone(), self.store.clone());
            return Box::pin(async move { backend.read(&m.org, &m.user, m.block_id, &*store).await });
        };
        let outcome = reads.push(BlockToRead {
            org: m.org,
            user: m.user,
            block_id: m.block_id,
        });
        start_counted(self, ctx, Self::READS);
        Box::pin(async move { outcome.await.unwrap_or_else(|_| Err(no_outcome().into())) })
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
