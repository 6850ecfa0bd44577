//! Blocks: the actor owning block metadata and the block store, and the
//! rules of `block_create` and `block_read`.
//!
//! Accepts: [`CreateBlock`], [`ReadBlock`], [`Health`].
//!
//! Access checks and metadata belong to the [`BlockBackend`]; the bytes go
//! to the [`BlockStore`] (`--blockstore`). Any block store failure reaches
//! the client as the legacy `timeout` status (reference `block.py`) and is
//! logged here, since it most likely needs an operator.

use std::sync::Arc;

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

/// Owns the block backend and the block store.
pub struct BlockActor {
    backend: Arc<dyn BlockBackend>,
    store: Arc<dyn BlockStore>,
}

impl BlockActor {
    pub fn new(backend: Arc<dyn BlockBackend>, store: Arc<dyn BlockStore>) -> Self {
        Self { backend, store }
    }
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
    fn handle(&mut self, m: CreateBlock, _: &mut Self::Context) -> Self::Result {
        let (backend, store) = (self.backend.clone(), self.store.clone());
        Box::pin(async move { backend.create(&m.org, &m.author, m.req, DateTime::now(), &*store).await })
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
