//! Events across server instances.
//!
//! Writing: [`EventWriter`] appends each published event to `event_log` and
//! sends `NOTIFY parsec_event` in the same transaction (delivered on commit):
//! one statement, so one round trip. It batches: while one flush runs, and
//! for [`FLUSH_SPACING`] after one started, newly published events queue up
//! and go in the next single multi-row insert, so a busy instance writes few,
//! larger transactions, in publication order (a NOTIFY serializes commits
//! and wakes every listener: a write per ping cost the handshake scenario a
//! sixth of the machine's cycles), while an event after a quiet spell goes
//! at once.
//!
//! Pings are the exception to the log: they change nothing a client could
//! resync from, so, as the reference sends every event, they travel whole in
//! their batch's notification (a [`Notice`]) as long as they fit in it. A
//! listener that is reconnecting misses them, and they may overtake logged
//! events published before them.
//!
//! Reading: [`listen`] runs for the life of the process on a dedicated,
//! non-pooled connection (LISTEN must not sit on a pooled one), which also
//! reads the log: a wake-up costs one round trip and takes nothing from the
//! pool. A notification, or a one-second tick, makes it read `event_log` past
//! the last id it handled and hand the events to the local broker. NOTIFY is
//! only the wake-up: notifications can be coalesced or missed (the listener
//! connection may drop), the log is what counts, so nothing logged is lost.
//! When the connection drops, the loop reconnects and resumes from the last
//! id it handled.
//!
//! An instance's own clients get its events at once: [`crate::EventBus`]
//! hands them to the local broker as it queues them for the log, and the
//! records name their [`Origin`], so that the listener skips them on the way
//! back. So do notifications: one of the instance's own wakes nothing up
//! (its rows are passed over by the next read, at the latest on the tick).
//! For the other instances, an event costs two round trips after the
//! command's own commit (the write, then the listener's read), and the read
//! never waits for a pooled connection busy with commands.
//!
//! Ids are allocated before commit, so a transaction that commits late can
//! make an id appear after larger ones were read: ids past a hole are
//! delivered at once, and the hole is re-read on every pass until it fills or
//! has stayed empty for [`GAP_TIMEOUT`] (a rolled-back insert leaves a hole
//! forever).

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use actix::prelude::*;
use diesel::sql_types::{BigInt, Bytea, Text};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use futures_util::{FutureExt, StreamExt};
use parsec_protocol::value::{self, Value};
use parsec_schema::Pool;

use super::{bind, prepared};
use crate::broker::{Broker, Publish};
use crate::event::Event;
use crate::event_record;

const CHANNEL: &str = "parsec_event";
/// How long a hole in the ids is waited for.
const GAP_TIMEOUT: Duration = Duration::from_secs(10);
/// How often the log is read without a notification.
const POLL_INTERVAL: Duration = Duration::from_secs(1);
/// Events older than this are deleted from the log.
const RETENTION_SQL: &str = "DELETE FROM event_log WHERE created_on < now() - interval '10 minutes'";
/// Least time between the starts of two writes (see the module
/// documentation): what other instances' clients may wait on top.
const FLUSH_SPACING: Duration = Duration::from_millis(2);
/// Bound on a notification's payload (PostgreSQL's is 8,000 bytes).
const NOTICE_BUDGET: usize = 7900;
/// Largest batch read or written at once.
const BATCH: usize = 1000;
/// Bound on one read of the log (the listener's connection has no
/// `statement_timeout`); past it the connection is dropped and reopened.
const READ_TIMEOUT: Duration = Duration::from_secs(30);

/// The server instance that wrote a log record. An instance delivers its
/// own events at once, through its broker, and its listener skips them when
/// they come back through the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Origin(u64);

/// What a notification says: who wrote, whether rows were appended to the
/// log, and the events it carries whole (records of [`event_record`]).
/// Written as text: `<origin hex>;<0|1>;<hex of a msgpack array of records>`.
/// The notifications of earlier versions are empty: no [`Notice`].
#[derive(Debug, Clone, PartialEq)]
struct Notice {
    origin: u64,
    logged: bool,
    carried: Vec<Vec<u8>>,
}

impl Notice {
    fn into_payload(self) -> String {
        let carried = if self.carried.is_empty() {
            String::new()
        } else {
            let records = self.carried.into_iter().map(Value::Binary).collect();
            hex::encode(value::pack(&Value::Array(records)))
        };
        format!("{:x};{};{carried}", self.origin, u8::from(self.logged))
    }

    /// The origin a payload names, read without decoding the rest.
    fn origin_of(payload: &str) -> Option<u64> {
        u64::from_str_radix(payload.split(';').next()?, 16).ok()
    }

    fn parse(payload: &str) -> Option<Notice> {
        let origin = Notice::origin_of(payload)?;
        let mut parts = payload.splitn(3, ';').skip(1);
        let logged = match parts.next()? {
            "0" => false,
            "1" => true,
            _ => return None,
        };
        let carried = match parts.next()? {
            "" => Vec::new(),
            packed => match value::unpack(&hex::decode(packed).ok()?).ok()? {
                Value::Array(records) => records
                    .into_iter()
                    .map(|r| match r {
                        Value::Binary(b) => Some(b),
                        _ => None,
                    })
                    .collect::<Option<_>>()?,
                _ => return None,
            },
        };
        Some(Notice {
            origin,
            logged,
            carried,
        })
    }

    /// Room left for one more carried record of `len` bytes.
    fn fits(&self, len: usize) -> bool {
        let records: usize = self.carried.iter().map(|r| r.len() + 5).sum();
        // Hex doubles the packed array (its header and each record's).
        40 + 2 * (5 + records + len + 5) <= NOTICE_BUDGET
    }
}

/// Whether an event may travel in a notification instead of the log (see
/// the module documentation).
fn carried_whole(event: &Event) -> bool {
    matches!(event, Event::Pinged { .. })
}

/// One instance's share of the event log: the bus its actors publish on,
/// and the [`Listener`] to run once its broker exists. Both name the same
/// [`Origin`].
pub fn start(url: String, pool: Pool) -> (crate::EventBus, Listener) {
    let origin = Origin(rand::random());
    let writer = EventWriter {
        pool: pool.clone(),
        origin,
        queue: Vec::new(),
        flushing: false,
        last_flush: None,
        waiting: false,
    };
    (
        crate::EventBus::Postgres(writer.start()),
        Listener { url, pool, origin },
    )
}

/// The reading half of [`start`].
pub struct Listener {
    url: String,
    pool: Pool,
    origin: Origin,
}

impl Listener {
    /// Reads the log for the life of the process, handing other instances'
    /// events to `broker`. Call on the main arbiter.
    pub fn spawn(self, broker: Addr<Broker>) {
        actix::spawn(listen(self.url, self.pool, broker, self.origin));
    }
}

/// Appends published events to the log (see the module documentation).
pub struct EventWriter {
    pool: Pool,
    origin: Origin,
    queue: Vec<Event>,
    flushing: bool,
    /// When the last flush started.
    last_flush: Option<Instant>,
    /// A flush is scheduled for the end of the current [`FLUSH_SPACING`].
    waiting: bool,
}

impl EventWriter {
    fn flush(&mut self, ctx: &mut Context<Self>) {
        if self.flushing || self.waiting || self.queue.is_empty() {
            return;
        }
        let now = Instant::now();
        if let Some(since) = self.last_flush.map(|t| now.duration_since(t))
            && since < FLUSH_SPACING
        {
            self.waiting = true;
            ctx.run_later(FLUSH_SPACING - since, |act, ctx| {
                act.waiting = false;
                act.flush(ctx);
            });
            return;
        }
        self.last_flush = Some(now);
        self.flushing = true;
        let n = self.queue.len().min(BATCH);
        let batch: Vec<Event> = self.queue.drain(..n).collect();
        let (pool, origin) = (self.pool.clone(), self.origin);
        let fut = async move {
            let result = write_batch(&pool, origin, &batch).await;
            (result, batch)
        };
        ctx.spawn(fut.into_actor(self).map(|(result, batch), act, ctx| {
            act.flushing = false;
            if let Err(e) = result {
                // The database is down: keep the events (in order) and retry,
                // rather than dropping them silently.
                log::error!("event log: cannot write {} events: {e:#}", batch.len());
                let mut retry = batch;
                retry.append(&mut act.queue);
                act.queue = retry;
                ctx.run_later(Duration::from_millis(500), |act, ctx| act.flush(ctx));
                return;
            }
            act.flush(ctx);
        }));
    }
}

impl Actor for EventWriter {
    type Context = Context<Self>;
}

/// Publishes one event (through the log, to every instance).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Append(pub Event);

impl Handler<Append> for EventWriter {
    type Result = ();
    fn handle(&mut self, Append(event): Append, ctx: &mut Self::Context) {
        self.queue.push(event);
        self.flush(ctx);
    }
}

async fn write_batch(pool: &Pool, origin: Origin, batch: &[Event]) -> anyhow::Result<()> {
    let mut notice = Notice {
        origin: origin.0,
        logged: false,
        carried: Vec::new(),
    };
    let (mut orgs, mut payloads) = (Vec::new(), Vec::new());
    for event in batch {
        let record = event_record::encode(event, origin.0);
        if carried_whole(event) && notice.fits(record.len()) {
            notice.carried.push(record);
        } else {
            orgs.push(event.org().to_string());
            payloads.push(record);
        }
    }
    notice.logged = !payloads.is_empty();
    let mut conn = pool.get().await.map_err(|e| anyhow::anyhow!("pool: {e}"))?;
    let (channel, notice) = (bind::<Text, _>(CHANNEL), bind::<Text, _>(notice.into_payload()));
    if payloads.is_empty() {
        prepared("SELECT pg_notify($1, $2)", &[&channel, &notice])
            .execute(&mut conn)
            .await?;
        return Ok(());
    }
    // One statement is one transaction: the rows and the notification commit
    // together (a data-modifying CTE always runs), in one round trip instead
    // of four (BEGIN, INSERT, NOTIFY, COMMIT). `unnest WITH ORDINALITY` keeps
    // the publication order in the ids.
    let (orgs, payloads) = (
        bind::<diesel::sql_types::Array<Text>, _>(&orgs),
        bind::<diesel::sql_types::Array<Bytea>, _>(&payloads),
    );
    prepared(
        "WITH appended AS (\
             INSERT INTO event_log (organization_id, payload) \
             SELECT o, p FROM unnest($1::text[], $2::bytea[]) WITH ORDINALITY AS t(o, p, n) ORDER BY n \
             RETURNING 1) \
         SELECT pg_notify($3, $4)",
        &[&orgs, &payloads, &channel, &notice],
    )
    .execute(&mut conn)
    .await?;
    Ok(())
}

#[derive(diesel::QueryableByName)]
struct LogRow {
    #[diesel(sql_type = BigInt)]
    _id: i64,
    #[diesel(sql_type = Bytea)]
    payload: Vec<u8>,
}

#[derive(diesel::QueryableByName)]
struct LastId {
    #[diesel(sql_type = BigInt)]
    last_id: i64,
}

/// Which ids were handled: all up to `floor`, and those in `above`.
struct Cursor {
    floor: i64,
    above: BTreeSet<i64>,
    holes: HashMap<i64, Instant>,
}

impl Cursor {
    /// Marks `id` handled; `true` if it was new.
    fn take(&mut self, id: i64) -> bool {
        id > self.floor && self.above.insert(id)
    }

    /// Moves `floor` up over handled ids and expired holes.
    ///
    /// The ids of one run of missing ids were all seen missing at once (below
    /// the same handled id), so they expire together: a run of a thousand
    /// (a rolled-back batch) is skipped after one timeout, not a thousand.
    fn advance(&mut self, now: Instant) {
        let mut run_since: Option<Instant> = None;
        loop {
            let next = self.floor + 1;
            if self.above.remove(&next) {
                self.floor = next;
                self.holes.remove(&next);
                run_since = None;
                continue;
            }
            if self.above.is_empty() {
                break;
            }
            let since = *self.holes.entry(next).or_insert(run_since.unwrap_or(now));
            if now.duration_since(since) < GAP_TIMEOUT {
                break;
            }
            log::debug!("event log: id {next} never committed, skipped");
            self.holes.remove(&next);
            self.floor = next;
            run_since = Some(since);
        }
    }

    /// The highest id handled.
    fn last_seen(&self) -> i64 {
        self.above.last().copied().unwrap_or(self.floor)
    }

    /// Ids between `floor` and [`Self::last_seen`] not handled yet (holes
    /// that may still commit), at most `max`.
    fn missing(&self, max: usize) -> Vec<i64> {
        let mut missing = Vec::new();
        let mut handled = self.above.iter().peekable();
        for id in self.floor + 1..self.last_seen() {
            if missing.len() >= max {
                break;
            }
            if handled.next_if(|&&h| h == id).is_none() {
                missing.push(id);
            }
        }
        missing
    }
}

/// The rows not handled yet: past the last one handled, and those of the
/// holes below it (ids that may still commit). Rows already handled are not
/// read again, however long a hole stays open.
async fn read_unhandled(conn: &mut AsyncPgConnection, cursor: &Cursor) -> anyhow::Result<Vec<LogRow>> {
    let (last_seen, holes, limit) = (
        bind::<BigInt, _>(cursor.last_seen()),
        cursor.missing(BATCH),
        bind::<BigInt, _>(BATCH as i64),
    );
    let read = if holes.is_empty() {
        prepared(
            "SELECT _id, payload FROM event_log WHERE _id > $1 ORDER BY _id LIMIT $2",
            &[&last_seen, &limit],
        )
        .load(conn)
    } else {
        let holes = bind::<diesel::sql_types::Array<BigInt>, _>(&holes);
        prepared(
            // Two index scans merged (an OR of the two conditions is planned
            // as one scan of the whole index).
            "SELECT _id, payload FROM (\
               (SELECT _id, payload FROM event_log WHERE _id > $1 ORDER BY _id LIMIT $3) \
               UNION ALL (SELECT _id, payload FROM event_log WHERE _id = ANY($2))) t \
             ORDER BY _id",
            &[&last_seen, &holes, &limit],
        )
        .load(conn)
    };
    match tokio::time::timeout(READ_TIMEOUT, read).await {
        Ok(rows) => Ok(rows?),
        Err(_) => anyhow::bail!("reading the event log took more than {READ_TIMEOUT:?}"),
    }
}

/// Reads the log from the current end; runs until the process stops.
async fn listen(url: String, pool: Pool, broker: Addr<Broker>, origin: Origin) {
    let mut cursor: Option<Cursor> = None;
    let mut backoff = Duration::from_millis(200);
    let mut last_prune = Instant::now();
    loop {
        match listen_once(&url, &pool, &broker, origin, &mut cursor, &mut last_prune).await {
            Ok(()) => {}
            Err(e) => log::error!("event listener: {e:#}; reconnecting in {backoff:?}"),
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

async fn listen_once(
    url: &str,
    pool: &Pool,
    broker: &Addr<Broker>,
    origin: Origin,
    cursor: &mut Option<Cursor>,
    last_prune: &mut Instant,
) -> anyhow::Result<()> {
    let mut listener = AsyncPgConnection::establish(url).await?;
    diesel::sql_query(format!("LISTEN {CHANNEL}"))
        .execute(&mut listener)
        .await?;
    if cursor.is_none() {
        // A fresh process delivers what happens from now on: past every id
        // allocated so far. Not past the largest id in the log: once the
        // retention has emptied it (ten idle minutes), that would make every
        // id ever allocated a hole to wait for.
        let start: LastId = diesel::sql_query(
            "SELECT GREATEST(\
               (SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM event_log__id_seq), \
               (SELECT COALESCE(MAX(_id), 0) FROM event_log))::BIGINT AS last_id",
        )
        .get_result(&mut listener)
        .await?;
        *cursor = Some(Cursor {
            floor: start.last_id,
            above: BTreeSet::new(),
            holes: HashMap::new(),
        });
    }
    log::info!("event listener: listening on channel {CHANNEL}");
    let mut tick = tokio::time::interval(POLL_INTERVAL);
    loop {
        // Whether rows of other instances may be waiting in the log.
        let foreign_rows = {
            // Notifications wait in the connection's own queue, so the
            // stream can be set aside while the connection reads the log.
            let notifications = listener.notifications_stream();
            futures_util::pin_mut!(notifications);
            let mut foreign_rows = tokio::select! {
                n = notifications.next() => woken(n, origin, broker)?,
                _ = tick.tick() => true,
            };
            // Those already queued are covered by the read below.
            while let Some(n) = notifications.next().now_or_never() {
                foreign_rows |= woken(n, origin, broker)?;
            }
            foreign_rows
        };
        if !foreign_rows {
            continue;
        }
        let Some(cur) = cursor.as_mut() else { continue };
        loop {
            let rows = read_unhandled(&mut listener, cur).await?;
            let full = rows.len() >= BATCH;
            let mut new = 0;
            for row in rows {
                if !cur.take(row._id) {
                    continue;
                }
                new += 1;
                match event_record::decode_unless_from(&row.payload, Some(origin.0)) {
                    // Delivered by this instance when it was published.
                    Some(event_record::Decoded::From(_)) => {}
                    Some(event_record::Decoded::Event(event, _)) => broker.do_send(Publish(event)),
                    None => log::warn!("event log: record {} not understood, skipped", row._id),
                }
            }
            cur.advance(Instant::now());
            if !full || new == 0 {
                break;
            }
        }
        if last_prune.elapsed() > Duration::from_secs(60) {
            *last_prune = Instant::now();
            // On a pooled connection (bounded by its `statement_timeout`),
            // beside the reads rather than in their way.
            let pool = pool.clone();
            actix::spawn(async move {
                let pruned = match pool.get().await {
                    Ok(mut conn) => diesel::sql_query(RETENTION_SQL)
                        .execute(&mut conn)
                        .await
                        .map_err(anyhow::Error::from),
                    Err(e) => Err(anyhow::anyhow!("pool: {e}")),
                };
                if let Err(e) = pruned {
                    log::warn!("event log: pruning failed: {e:#}");
                }
            });
        }
    }
}

/// A wake-up of the listener: hands the events another instance's
/// notification carries to `broker`; `true` if it may have logged rows.
fn woken(
    n: Option<diesel::QueryResult<diesel::pg::PgNotification>>,
    origin: Origin,
    broker: &Addr<Broker>,
) -> anyhow::Result<bool> {
    let n = match n {
        Some(Ok(n)) => n,
        Some(Err(e)) => return Err(e.into()),
        None => anyhow::bail!("notification stream ended"),
    };
    // Our own: its pings were delivered when published, nothing to decode.
    if Notice::origin_of(&n.payload) == Some(origin.0) {
        return Ok(false);
    }
    let Some(notice) = Notice::parse(&n.payload) else {
        // An earlier version's, or not understood: the log says what is new.
        return Ok(true);
    };
    for record in &notice.carried {
        match event_record::decode(record) {
            Some((event, _)) => broker.do_send(Publish(event)),
            None => log::warn!("event notification: record not understood, skipped"),
        }
    }
    Ok(notice.logged)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_notice_round_trips_within_its_budget() {
        let ping = |n: usize| Event::Pinged {
            org: parsec_protocol::types::OrganizationId::parse("Org").unwrap(),
            author: parsec_protocol::types::DeviceId::parse("alice@laptop").unwrap(),
            ping: "p".repeat(n),
        };
        let mut notice = Notice {
            origin: u64::MAX,
            logged: true,
            carried: Vec::new(),
        };
        assert_eq!(Notice::parse(&notice.clone().into_payload()), Some(notice.clone()));
        // Small pings until the budget is reached, then the payload is
        // still within PostgreSQL's limit.
        loop {
            let record = event_record::encode(&ping(40), 1);
            if !notice.fits(record.len()) {
                break;
            }
            notice.carried.push(record);
        }
        assert!(notice.carried.len() > 20, "{}", notice.carried.len());
        let payload = notice.clone().into_payload();
        assert!(payload.len() <= NOTICE_BUDGET, "{}", payload.len());
        assert_eq!(Notice::parse(&payload), Some(notice.clone()));
        // A ping too big for any notification goes to the log.
        let empty = Notice {
            origin: 1,
            logged: false,
            carried: Vec::new(),
        };
        assert!(!empty.fits(event_record::encode(&ping(NOTICE_BUDGET / 2), 1).len()));
        // Notifications of earlier versions, or garbage: no notice.
        for bad in ["", "zz;0;", "1;2;", "1;0;zz", "1;0;00"] {
            assert_eq!(Notice::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn cursor_waits_for_holes_then_skips_them() {
        let t0 = Instant::now();
        let mut c = Cursor {
            floor: 0,
            above: BTreeSet::new(),
            holes: HashMap::new(),
        };
        assert!(c.take(1) && c.take(3));
        c.advance(t0);
        assert_eq!(c.floor, 1, "2 is a hole: wait for it");
        assert!(!c.take(3), "3 is delivered once");
        assert!(c.take(2));
        c.advance(t0);
        assert_eq!(c.floor, 3);
        assert!(c.take(5));
        c.advance(t0);
        assert_eq!(c.floor, 3);
        c.advance(t0 + GAP_TIMEOUT);
        assert_eq!(c.floor, 5, "a hole older than the timeout is skipped");
        assert!(!c.take(4), "an id committing after the timeout comes too late");
    }

    #[test]
    fn a_run_of_holes_expires_at_once() {
        let t0 = Instant::now();
        let mut c = Cursor {
            floor: 0,
            above: BTreeSet::new(),
            holes: HashMap::new(),
        };
        assert!(c.take(1001) && c.take(1003));
        c.advance(t0);
        assert_eq!((c.floor, c.last_seen()), (0, 1003));
        assert_eq!(c.missing(5), [1, 2, 3, 4, 5]);
        assert_eq!(c.missing(2000).len(), 1001, "1..=1000 and 1002");
        c.advance(t0 + GAP_TIMEOUT / 2);
        assert!(c.take(1004));
        // 1002 was first seen missing after 1..=1000 were skipped, so it
        // gets a timeout of its own.
        c.advance(t0 + GAP_TIMEOUT);
        assert_eq!(c.floor, 1001, "1..=1000 expired together");
        assert_eq!(c.missing(10), [1002]);
        c.advance(t0 + GAP_TIMEOUT * 2);
        assert_eq!((c.floor, c.missing(10)), (1004, vec![]));
    }
}
