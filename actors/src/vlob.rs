//! Vlobs: the actor owning their storage, and the rules of `vlob_create`,
//! `vlob_read`, `vlob_update`, `vlob_poll_changes`, `vlob_list_versions`,
//! `vlob_maintenance_get_reencryption_batch` and
//! `vlob_maintenance_save_reencryption_batch`.
//!
//! Accepts: [`CreateVlob`], [`ReadVlob`], [`UpdateVlob`], [`PollVlobChanges`],
//! [`ListVlobVersions`], [`GetReencryptionBatch`], [`SaveReencryptionBatch`].
//!
//! The command functions check the timestamp ballpark, then the backend runs
//! the realm, role and ordering checks and writes in one atomic step
//! (commands.md §9.1). `realm.vlobs_updated` is published only once the
//! write succeeded, with the checkpoint the write got.
//!
//! Writes are group-committed: while an organization's batch runs, its new
//! writes queue up, and go together in the next [`VlobBackend::write_batch`]
//! (at most [`MAX_BATCH`], one write per vlob, arrival order). Writers into
//! one realm are serialised by its lock anyway; one transaction for many of
//! them turns a lock hold per write into one per batch. A batch has the
//! outcomes its writes would have one after the other, so batching changes
//! no answer; the queue is bounded by the sessions' own request bounds.
//!
//! Where the backend says it pays ([`VlobBackend::groups_reads`]: one
//! PostgreSQL statement for many reads costs the database far less than one
//! each), reads are gathered the same way as block reads: up to
//! [`READ_GROUPS_IN_FLIGHT`] groups run at once, and the reads arriving
//! meanwhile go together in the next [`VlobBackend::read_group`] (at most
//! [`MAX_READ_GROUP`], arrival order). A lone read goes at once.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::Arc;

use actix::prelude::*;
use parsec_protocol::cmds;
use parsec_protocol::cmds::authenticated::{
    ReencryptionBatchEntry, VlobCreate, VlobListVersions, VlobMaintenanceGetReencryptionBatch,
    VlobMaintenanceSaveReencryptionBatch, VlobPollChanges, VlobRead, VlobUpdate,
};
use parsec_protocol::types::*;
use parsec_protocol::value::{self, Value};

use crate::backend::*;
use crate::client::AuthenticatedClient;
use crate::event::Event;
use crate::grouping::{Counted, Grouping, start_counted};
use crate::realm::{realm_not_found, realm_not_in_maintenance};
use crate::{Actors, backend_handler};

/// Most writes one batch carries.
pub const MAX_BATCH: usize = 256;

/// After a batch of at least this many writes, the next one lingers (see
/// [`LINGER`]); below it, writers are few and a batch starts at once.
const LINGER_AFTER: usize = 8;

/// How long, at most, the next batch waits for the writers the last batch
/// answered to send their next write. Much of a batch's cost is fixed (its
/// round trips and statements), and without the wait busy writers split
/// into cohorts that take turns, each paying that cost for part of the
/// writes.
const LINGER: std::time::Duration = std::time::Duration::from_millis(1);

/// Share of the writers a batch answered that the next batch waits for, at
/// first (see [`OrgWrites::returning`]).
const RETURNING_AT_FIRST: f32 = 1.0;

/// Most groups of reads running at once: enough for PostgreSQL to use
/// every core, few enough to leave pooled connections to everything else.
pub const READ_GROUPS_IN_FLIGHT: usize = 2;

/// Most reads in one group.
pub const MAX_READ_GROUP: usize = 32;

/// Owns the vlob backend.
pub struct VlobActor {
    backend: Arc<dyn VlobBackend>,
    /// Writes waiting for their organization's running batch to end.
    writes: HashMap<OrganizationId, OrgWrites>,
    /// Reads waiting for a group slot, when they go in groups.
    reads: Option<Grouping<VlobToRead, Result<VlobVersionRead, VlobReadError>>>,
}

struct OrgWrites {
    queue: VecDeque<PendingWrite>,
    running: bool,
    /// Lingering before the next batch: what ends the wait.
    linger: Option<Linger>,
    /// Share of the writers a batch answered that write again within
    /// [`LINGER`], as the last lingers saw it: writers that write in a loop
    /// (a sync) all come back, and the next batch waits for all of them
    /// (one batch instead of cohorts: 8–13 % more writes/s at 50 writers,
    /// 35 % at 10, BENCHMARKS.md); writers that mostly read do not, and the
    /// next batch waits for few. A linger that gets all it waited for
    /// raises the share a little, to find out whether more would come.
    returning: f32,
}

impl Default for OrgWrites {
    fn default() -> Self {
        Self {
            queue: VecDeque::new(),
            running: false,
            linger: None,
            returning: RETURNING_AT_FIRST,
        }
    }
}

/// The wait of an organization's next batch for the writers the last one
/// answered.
struct Linger {
    /// Queue length that ends the wait...
    target: usize,
    /// ... or this timer.
    timer: SpawnHandle,
    /// Queue length when the wait started, and how many writes the last
    /// batch answered.
    from: usize,
    answered: usize,
}

impl OrgWrites {
    /// The wait is over, `reached` if by its target: folds the share of the
    /// answered writers that came back into [`OrgWrites::returning`].
    fn lingered(&mut self, reached: bool) {
        let Some(linger) = self.linger.take() else { return };
        let back = self.queue.len().saturating_sub(linger.from) as f32 / linger.answered.max(1) as f32;
        let seen = if reached { (back + 0.25).min(1.0) } else { back.min(1.0) };
        self.returning = (self.returning + seen) / 2.0;
    }
}

struct PendingWrite {
    write: VlobWrite,
    reply: tokio::sync::oneshot::Sender<VlobWritten>,
}

impl VlobActor {
    pub fn new(backend: Arc<dyn VlobBackend>) -> Self {
        let reads = backend.groups_reads().then(|| Grouping::new(READ_GROUPS_IN_FLIGHT));
        Self {
            backend,
            writes: HashMap::new(),
            reads,
        }
    }

    /// How reads run in groups.
    const READS: Counted<Self, VlobToRead, Result<VlobVersionRead, VlobReadError>> = Counted {
        max: MAX_READ_GROUP,
        grouping: |act| act.reads.as_mut(),
        run: |act, reads, mut replies| {
            let backend = act.backend.clone();
            Box::pin(async move { replies.send_all(backend.read_group(reads).await) })
        },
        missing: || Err(no_read_outcome().into()),
    };

    /// Queues a write; the receiver gets its outcome.
    fn enqueue(
        &mut self,
        org: OrganizationId,
        write: VlobWrite,
        ctx: &mut Context<Self>,
    ) -> tokio::sync::oneshot::Receiver<VlobWritten> {
        let (reply, outcome) = tokio::sync::oneshot::channel();
        let pending = self.writes.entry(org.clone()).or_default();
        pending.queue.push_back(PendingWrite { write, reply });
        if let Some(linger) = &pending.linger
            && pending.queue.len() >= linger.target
        {
            ctx.cancel_future(linger.timer);
            pending.lingered(true);
        }
        self.start_batch(org, ctx);
        outcome
    }

    /// Starts the organization's next batch unless one is running.
    fn start_batch(&mut self, org: OrganizationId, ctx: &mut Context<Self>) {
        let Some(pending) = self.writes.get_mut(&org) else {
            return;
        };
        if pending.running || pending.linger.is_some() {
            return;
        }
        if pending.queue.is_empty() {
            // Kept while it knows something: its writers' share.
            if pending.returning >= RETURNING_AT_FIRST {
                self.writes.remove(&org);
            }
            return;
        }
        // Arrival order, stopping before a second write to the same vlob:
        // it must see the first one's outcome, so it waits for the next batch.
        let mut seen = HashSet::new();
        let mut batch = Vec::new();
        while batch.len() < MAX_BATCH
            && let Some(next) = pending.queue.front()
            && seen.insert(next.write.vlob_id())
        {
            batch.extend(pending.queue.pop_front());
        }
        pending.running = true;
        let (writes, replies): (Vec<VlobWrite>, Vec<_>) = batch.into_iter().map(|p| (p.write, p.reply)).unzip();
        let answered = replies.len();
        let backend = self.backend.clone();
        let batch_org = org.clone();
        let run = async move { backend.write_batch(&batch_org, &writes).await };
        ctx.spawn(run.into_actor(self).map(move |outcomes, act, ctx| {
            for (reply, outcome) in replies.into_iter().zip(outcomes) {
                // The requester may be gone (connection closed): nothing to do.
                let _ = reply.send(outcome);
            }
            if let Some(pending) = act.writes.get_mut(&org) {
                pending.running = false;
                if answered >= LINGER_AFTER {
                    let from = pending.queue.len();
                    let waited = ((answered as f32 * pending.returning).round() as usize).max(1);
                    let lingering = org.clone();
                    let timer = ctx.run_later(LINGER, move |act, ctx| {
                        if let Some(pending) = act.writes.get_mut(&lingering) {
                            pending.lingered(false);
                        }
                        act.start_batch(lingering, ctx);
                    });
                    pending.linger = Some(Linger {
                        target: from + waited,
                        timer,
                        from,
                        answered,
                    });
                    return;
                }
            }
            act.start_batch(org, ctx);
        }));
    }
}

/// A batch answered nothing for this write: only a backend bug does that.
fn no_outcome() -> Internal {
    Internal(anyhow::anyhow!("vlob write batch gave no outcome"))
}

/// A group answered nothing for this read: only a backend bug does that.
fn no_read_outcome() -> Internal {
    Internal(anyhow::anyhow!("vlob read group gave no outcome"))
}

impl Actor for VlobActor {
    type Context = Context<Self>;
}

/// Writes version 1 of a vlob; answers the new checkpoint.
#[derive(Message)]
#[rtype(result = "Result<u64, VlobCreateError>")]
pub struct CreateVlob {
    pub org: OrganizationId,
    pub author: DeviceId,
    pub req: VlobCreate,
}

/// Reads one version of a vlob.
#[derive(Message)]
#[rtype(result = "Result<VlobVersionRead, VlobReadError>")]
pub struct ReadVlob {
    pub org: OrganizationId,
    pub user: UserId,
    pub req: VlobRead,
}

/// Writes the next version of a vlob; answers its realm and the new checkpoint.
#[derive(Message)]
#[rtype(result = "Result<(Uuid, u64), VlobUpdateError>")]
pub struct UpdateVlob {
    pub org: OrganizationId,
    pub author: DeviceId,
    pub req: VlobUpdate,
}

/// Vlobs changed in a realm after a checkpoint.
#[derive(Message)]
#[rtype(result = "Result<VlobChanges, VlobPollChangesError>")]
pub struct PollVlobChanges {
    pub org: OrganizationId,
    pub user: UserId,
    pub req: VlobPollChanges,
}

/// Every version of a vlob with its timestamp and author.
#[derive(Message)]
#[rtype(result = "Result<BTreeMap<u64, (DateTime, DeviceId)>, VlobListVersionsError>")]
pub struct ListVlobVersions {
    pub org: OrganizationId,
    pub user: UserId,
    pub vlob_id: Uuid,
}

/// Vlob versions still to re-encrypt.
#[derive(Message)]
#[rtype(result = "Result<Vec<ReencryptionBatchEntry>, VlobMaintenanceError>")]
pub struct GetReencryptionBatch {
    pub org: OrganizationId,
    pub user: UserId,
    pub req: VlobMaintenanceGetReencryptionBatch,
}

/// Stores re-encrypted vlob versions; answers (total, done).
#[derive(Message)]
#[rtype(result = "Result<(u64, u64), VlobMaintenanceError>")]
pub struct SaveReencryptionBatch {
    pub org: OrganizationId,
    pub user: UserId,
    pub req: VlobMaintenanceSaveReencryptionBatch,
}

impl Handler<CreateVlob> for VlobActor {
    type Result = ResponseFuture<Result<u64, VlobCreateError>>;
    fn handle(&mut self, m: CreateVlob, ctx: &mut Self::Context) -> Self::Result {
        let outcome = self.enqueue(
            m.org,
            VlobWrite::Create {
                author: m.author,
                req: m.req,
            },
            ctx,
        );
        Box::pin(async move {
            match outcome.await {
                Ok(VlobWritten::Create(r)) => r,
                _ => Err(no_outcome().into()),
            }
        })
    }
}

impl Handler<UpdateVlob> for VlobActor {
    type Result = ResponseFuture<Result<(Uuid, u64), VlobUpdateError>>;
    fn handle(&mut self, m: UpdateVlob, ctx: &mut Self::Context) -> Self::Result {
        let outcome = self.enqueue(
            m.org,
            VlobWrite::Update {
                author: m.author,
                req: m.req,
            },
            ctx,
        );
        Box::pin(async move {
            match outcome.await {
                Ok(VlobWritten::Update(r)) => r,
                _ => Err(no_outcome().into()),
            }
        })
    }
}

impl Handler<ReadVlob> for VlobActor {
    type Result = ResponseFuture<Result<VlobVersionRead, VlobReadError>>;
    fn handle(&mut self, m: ReadVlob, ctx: &mut Self::Context) -> Self::Result {
        let Some(reads) = self.reads.as_mut() else {
            let backend = self.backend.clone();
            return Box::pin(async move { backend.read(&m.org, &m.user, &m.req).await });
        };
        let outcome = reads.push(VlobToRead {
            org: m.org,
            user: m.user,
            req: m.req,
        });
        start_counted(self, ctx, Self::READS);
        Box::pin(async move { outcome.await.unwrap_or_else(|_| Err(no_read_outcome().into())) })
    }
}

backend_handler!(VlobActor, PollVlobChanges, |b, m| {
    b.poll_changes(&m.org, &m.user, m.req.realm_id, m.req.last_checkpoint)
        .await
});
backend_handler!(VlobActor, ListVlobVersions, |b, m| b
    .list_versions(&m.org, &m.user, m.vlob_id)
    .await);
backend_handler!(VlobActor, GetReencryptionBatch, |b, m| {
    // The schema bounds `size` to 0..=1000.
    let size = usize::try_from(m.req.size).unwrap_or(0);
    b.maintenance_get_reencryption_batch(&m.org, &m.user, m.req.realm_id, m.req.encryption_revision, size)
        .await
});
backend_handler!(VlobActor, SaveReencryptionBatch, |b, m| {
    b.maintenance_save_reencryption_batch(&m.org, &m.user, m.req.realm_id, m.req.encryption_revision, &m.req.batch)
        .await
});

/// ``"Vlob `<hex>` doesn't exist"``.
fn vlob_not_found(vlob_id: Uuid) -> Value {
    cmds::status_reason("not_found", format!("Vlob `{}` doesn't exist", vlob_id.simple()))
}

fn bare(status: &str) -> Value {
    cmds::status(status, vec![])
}

/// The ballpark check of the two write commands (README §5.4).
fn check_ballpark(timestamp: DateTime) -> Result<(), Value> {
    let now = DateTime::now();
    if timestamps_in_the_ballpark(timestamp, now) {
        Ok(())
    } else {
        Err(cmds::bad_timestamp(now, timestamp))
    }
}

/// `vlob_create` (commands.md §9.2).
pub async fn create(actors: &Actors, client: &AuthenticatedClient, req: VlobCreate) -> Result<Value, Internal> {
    use VlobCreateError as E;
    if let Err(rep) = check_ballpark(req.timestamp) {
        return Ok(rep);
    }
    let (realm_id, vlob_id) = (req.realm_id, req.vlob_id);
    let msg = CreateVlob {
        org: client.org.clone(),
        author: client.device_id.clone(),
        req,
    };
    Ok(match actors.vlob.send(msg).await? {
        Ok(checkpoint) => {
            actors.publish(Event::RealmVlobsUpdated {
                org: client.org.clone(),
                author: client.device_id.clone(),
                realm_id,
                checkpoint,
                src_id: vlob_id,
                src_version: 1,
            });
            cmds::ok(vec![])
        }
        // The reference does not tell a missing realm from a forbidden one here.
        Err(E::RealmNotFound | E::NotAllowed) => bare("not_allowed"),
        Err(E::InMaintenance) => bare("in_maintenance"),
        Err(E::BadEncryptionRevision) => bare("bad_encryption_revision"),
        Err(E::RequireGreaterTimestamp(t)) => cmds::require_greater_timestamp(t),
        // The reference's exception carries no text: `reason` is "".
        Err(E::AlreadyExists) => cmds::status_reason("already_exists", ""),
        Err(E::Internal(e)) => return Err(e),
    })
}

/// `vlob_read` (commands.md §9.3).
pub async fn read(actors: &Actors, client: &AuthenticatedClient, req: VlobRead) -> Result<Value, Internal> {
    use VlobReadError as E;
    let vlob_id = req.vlob_id;
    let msg = ReadVlob {
        org: client.org.clone(),
        user: client.user_id.clone(),
        req,
    };
    Ok(match actors.vlob.send(msg).await? {
        Ok(v) => cmds::ok(vec![
            ("version", Value::from(v.version)),
            ("blob", Value::Binary(v.blob)),
            ("author", Value::from(v.author.as_str())),
            ("timestamp", v.timestamp.to_value()),
            (
                "author_last_role_granted_on",
                v.author_last_role_granted_on.map_or(Value::Nil, DateTime::to_value),
            ),
        ]),
        // A vlob's realm always exists; the reference would crash on this one.
        Err(E::VlobNotFound | E::RealmNotFound) => vlob_not_found(vlob_id),
        Err(E::InMaintenance) => bare("in_maintenance"),
        Err(E::BadEncryptionRevision) => bare("bad_encryption_revision"),
        Err(E::NotAllowed) => bare("not_allowed"),
        Err(E::BadVersion) => bare("bad_version"),
        Err(E::Internal(e)) => return Err(e),
    })
}

/// `vlob_update` (commands.md §9.4).
pub async fn update(actors: &Actors, client: &AuthenticatedClient, req: VlobUpdate) -> Result<Value, Internal> {
    use VlobUpdateError as E;
    if let Err(rep) = check_ballpark(req.timestamp) {
        return Ok(rep);
    }
    let (vlob_id, version) = (req.vlob_id, req.version);
    let msg = UpdateVlob {
        org: client.org.clone(),
        author: client.device_id.clone(),
        req,
    };
    Ok(match actors.vlob.send(msg).await? {
        Ok((realm_id, checkpoint)) => {
            actors.publish(Event::RealmVlobsUpdated {
                org: client.org.clone(),
                author: client.device_id.clone(),
                realm_id,
                checkpoint,
                src_id: vlob_id,
                // Checked to be the latest version + 1, hence positive.
                src_version: version.unsigned_abs(),
            });
            cmds::ok(vec![])
        }
        Err(E::VlobNotFound | E::RealmNotFound) => vlob_not_found(vlob_id),
        Err(E::InMaintenance) => bare("in_maintenance"),
        Err(E::BadEncryptionRevision) => bare("bad_encryption_revision"),
        Err(E::NotAllowed) => bare("not_allowed"),
        Err(E::RequireGreaterTimestamp(t)) => cmds::require_greater_timestamp(t),
        Err(E::BadVersion) => bare("bad_version"),
        Err(E::Internal(e)) => return Err(e),
    })
}

/// `vlob_poll_changes` (commands.md §9.5). The `changes` map has UUID keys.
pub async fn poll_changes(
    actors: &Actors,
    client: &AuthenticatedClient,
    req: VlobPollChanges,
) -> Result<Value, Internal> {
    use VlobPollChangesError as E;
    let realm_id = req.realm_id;
    let msg = PollVlobChanges {
        org: client.org.clone(),
        user: client.user_id.clone(),
        req,
    };
    Ok(match actors.vlob.send(msg).await? {
        Ok(c) => {
            let changes = c
                .changes
                .into_iter()
                .map(|(id, version)| (uuid_value(id), Value::from(version)))
                .collect();
            cmds::ok(vec![
                ("changes", Value::Map(changes)),
                ("current_checkpoint", Value::from(c.current_checkpoint)),
            ])
        }
        Err(E::RealmNotFound) => realm_not_found(realm_id),
        Err(E::InMaintenance) => bare("in_maintenance"),
        Err(E::NotAllowed) => bare("not_allowed"),
        Err(E::Internal(e)) => return Err(e),
    })
}

/// `vlob_list_versions` (commands.md §9.6). The `versions` map has integer keys.
pub async fn list_versions(
    actors: &Actors,
    client: &AuthenticatedClient,
    req: VlobListVersions,
) -> Result<Value, Internal> {
    use VlobListVersionsError as E;
    let msg = ListVlobVersions {
        org: client.org.clone(),
        user: client.user_id.clone(),
        vlob_id: req.vlob_id,
    };
    Ok(match actors.vlob.send(msg).await? {
        Ok(versions) => {
            let versions = versions.into_iter().map(|(version, (timestamp, author))| {
                let entry = Value::Array(vec![timestamp.to_value(), Value::from(author.as_str())]);
                (Value::from(version), entry)
            });
            cmds::ok(vec![("versions", Value::Map(versions.collect()))])
        }
        Err(E::VlobNotFound | E::RealmNotFound) => vlob_not_found(req.vlob_id),
        Err(E::InMaintenance) => bare("in_maintenance"),
        Err(E::NotAllowed) => bare("not_allowed"),
        Err(E::Internal(e)) => return Err(e),
    })
}

fn maintenance_rep<T>(
    realm_id: Uuid,
    outcome: Result<T, VlobMaintenanceError>,
    ok: impl FnOnce(T) -> Value,
) -> Result<Value, Internal> {
    use VlobMaintenanceError as E;
    Ok(match outcome {
        Ok(v) => ok(v),
        Err(E::RealmNotFound) => realm_not_found(realm_id),
        Err(E::NotInMaintenance) => realm_not_in_maintenance(realm_id),
        Err(E::BadEncryptionRevision) => bare("bad_encryption_revision"),
        Err(E::NotAllowed) => bare("not_allowed"),
        Err(E::Internal(e)) => return Err(e),
    })
}

/// `vlob_maintenance_get_reencryption_batch` (commands.md §9.7).
pub async fn maintenance_get_reencryption_batch(
    actors: &Actors,
    client: &AuthenticatedClient,
    req: VlobMaintenanceGetReencryptionBatch,
) -> Result<Value, Internal> {
    let realm_id = req.realm_id;
    let msg = GetReencryptionBatch {
        org: client.org.clone(),
        user: client.user_id.clone(),
        req,
    };
    maintenance_rep(realm_id, actors.vlob.send(msg).await?, |batch| {
        let entries = batch.into_iter().map(|e| {
            value::map([
                ("vlob_id", uuid_value(e.vlob_id)),
                ("version", Value::from(e.version)),
                ("blob", Value::Binary(e.blob)),
            ])
        });
        cmds::ok(vec![("batch", Value::Array(entries.collect()))])
    })
}

/// `vlob_maintenance_save_reencryption_batch` (commands.md §9.8). No event.
pub async fn maintenance_save_reencryption_batch(
    actors: &Actors,
    client: &AuthenticatedClient,
    req: VlobMaintenanceSaveReencryptionBatch,
) -> Result<Value, Internal> {
    let realm_id = req.realm_id;
    let msg = SaveReencryptionBatch {
        org: client.org.clone(),
        user: client.user_id.clone(),
        req,
    };
    maintenance_rep(realm_id, actors.vlob.send(msg).await?, |(total, done)| {
        cmds::ok(vec![("total", Value::from(total)), ("done", Value::from(done))])
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Lingers after batches of `answered`, in which `back` writes arrive
    /// (by the target or the timer); the share each time.
    fn shares(rounds: &[(usize, usize)]) -> Vec<f32> {
        let mut org = OrgWrites::default();
        let mut out = Vec::new();
        for &(answered, back) in rounds {
            let waited = ((answered as f32 * org.returning).round() as usize).max(1);
            org.linger = Some(Linger {
                target: waited,
                timer: SpawnHandle::default(),
                from: 0,
                answered,
            });
            org.queue.clear();
            for _ in 0..back.min(waited) {
                org.queue.push_back(PendingWrite {
                    write: VlobWrite::Update {
                        author: "a@b".parse().expect("device id"),
                        req: VlobUpdate {
                            encryption_revision: 1,
                            vlob_id: Uuid::new_v4(),
                            timestamp: DateTime::now(),
                            version: 2,
                            blob: Vec::new(),
                        },
                    },
                    reply: tokio::sync::oneshot::channel().0,
                });
            }
            org.lingered(back >= waited);
            out.push(org.returning);
        }
        out
    }

    #[test]
    fn writers_that_come_back_are_waited_for_and_others_not() {
        // All 50 come back each time: the next batch waits for all of them.
        assert!(shares(&[(50, 50); 5]).iter().all(|s| *s == 1.0));
        // Few come back (writers that mostly read): the wait shrinks.
        let falling = shares(&[(20, 2); 6]);
        assert!(falling.windows(2).all(|w| w[1] <= w[0]), "{falling:?}");
        assert!(*falling.last().expect("rounds") < 0.3, "{falling:?}");
        // They come back again: the share climbs back.
        let mut rounds = vec![(20, 2); 6];
        rounds.extend([(20, 20); 8]);
        let climbing = shares(&rounds);
        assert!(*climbing.last().expect("rounds") > 0.9, "{climbing:?}");
    }
}
