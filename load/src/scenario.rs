//! The measured phase of each scenario.
//!
//! Request scenarios (`ping`, `vlob_*`, `block_*`, `mix`) first open every
//! connection, then release all clients at once; each client sends one request,
//! waits for its reply, and repeats (as the 2.10 client does: one request in
//! flight per connection) until the deadline or until the shared `--count`
//! tickets run out. `handshake`, `idle` and `fanout` have their own shapes,
//! described on their functions.
//!
//! Every loop checks [`Stop`] before each request and every wait is bounded by
//! a timeout, so a run ends by itself whatever the server does.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use parsec_protocol::types::{DateTime, Uuid, uuid_value};
use parsec_protocol::value::Value;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::sync::{Notify, Semaphore, mpsc, watch};
use tokio::task::JoinSet;

use crate::args::{Config, Scenario};
use crate::client::{ClientError, Map, WsClient, field, status};
use crate::procfs;
use crate::report::{Progress, Report, Stats};
use crate::setup::{self, Fixtures, Org};

/// Connections being opened at the same time (to stay below the server's
/// listen backlog).
const OPEN_CONCURRENCY: usize = 64;
/// Pause after a failed connection attempt before the next one.
const RECONNECT_PAUSE: Duration = Duration::from_millis(100);
/// Fanout: how long listeners wait for late events once the writer is done,
/// and how long the lockstep writer waits for one event to reach everyone.
const FANOUT_GRACE: Duration = Duration::from_secs(5);
/// Fanout listeners wake up this often to check whether the run is over.
const LISTEN_TICK: Duration = Duration::from_millis(500);

/// When the measured phase ends: a deadline and, optionally, a number of
/// requests shared by every client.
#[derive(Debug)]
pub struct Stop {
    deadline: OnceLock<Instant>,
    duration: Duration,
    count: Option<u64>,
    issued: AtomicU64,
}

impl Stop {
    pub fn new(duration: Duration, count: Option<u64>) -> Self {
        Stop {
            deadline: OnceLock::new(),
            duration,
            count,
            issued: AtomicU64::new(0),
        }
    }

    /// Starts the clock (first call only); returns the deadline.
    fn start(&self) -> Instant {
        *self.deadline.get_or_init(|| Instant::now() + self.duration)
    }

    fn deadline(&self) -> Instant {
        self.start()
    }

    fn remaining(&self) -> Duration {
        self.deadline().saturating_duration_since(Instant::now())
    }

    /// May one more request be sent?
    pub fn take(&self) -> bool {
        if Instant::now() >= self.deadline() {
            return false;
        }
        match self.count {
            Some(c) => self.issued.fetch_add(1, Ordering::Relaxed) < c,
            None => true,
        }
    }
}

/// Everything the clients of one run share.
pub struct Shared {
    pub cfg: Config,
    pub org: Org,
    pub fx: Fixtures,
    pub progress: Progress,
    pub stop: Stop,
    pub blob: Vec<u8>,
    pub block: Vec<u8>,
    pub notes: Mutex<Vec<String>>,
}

impl Shared {
    pub fn new(cfg: Config, org: Org, fx: Fixtures) -> Self {
        let stop = Stop::new(cfg.duration, cfg.count);
        Shared {
            blob: setup::random_bytes(cfg.blob_size),
            block: setup::random_bytes(cfg.block_size),
            progress: Progress::default(),
            notes: Mutex::new(Vec::new()),
            cfg,
            org,
            fx,
            stop,
        }
    }

    fn note(&self, n: String) {
        if let Ok(mut notes) = self.notes.lock() {
            notes.push(n);
        }
    }
}

/// CPU time of the server, of this tool and of the whole machine over the
/// measured phase.
struct CpuWindow {
    server: Option<Duration>,
    tool: Option<Duration>,
    machine: Option<Duration>,
}

/// What a [`CpuWindow`] measured.
#[derive(Debug, Clone, Copy, Default)]
struct CpuSpent {
    server: Option<Duration>,
    tool: Option<Duration>,
    machine: Option<Duration>,
}

impl CpuWindow {
    fn begin(sh: &Shared) -> Self {
        CpuWindow {
            server: sh.cfg.server_pid.and_then(|pid| match procfs::cpu_time(Some(pid)) {
                Ok(t) => Some(t),
                Err(e) => {
                    sh.note(format!("server CPU not measured: {e}"));
                    None
                }
            }),
            tool: procfs::cpu_time(None).ok(),
            machine: procfs::machine_busy_time().ok(),
        }
    }

    /// CPU time spent since `begin`.
    fn end(&self, sh: &Shared) -> CpuSpent {
        let since = |before: Option<Duration>, now: Result<Duration, String>| Some(now.ok()?.saturating_sub(before?));
        CpuSpent {
            server: match sh.cfg.server_pid {
                Some(pid) => since(self.server, procfs::cpu_time(Some(pid))),
                None => None,
            },
            tool: since(self.tool, procfs::cpu_time(None)),
            machine: since(self.machine, procfs::machine_busy_time()),
        }
    }
}

/// Prints requests done and the current rate on stderr once per second until
/// aborted.
fn spawn_progress(sh: Arc<Shared>, label: &'static str) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        if sh.cfg.quiet {
            return;
        }
        let start = Instant::now();
        let mut last = 0;
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.tick().await;
        loop {
            tick.tick().await;
            let done = sh.progress.done.load(Ordering::Relaxed);
            let errors = sh.progress.errors.load(Ordering::Relaxed);
            eprintln!(
                "[{:>6.1}s] {label} {done}, {} /s, errors {errors}",
                start.elapsed().as_secs_f64(),
                done - last
            );
            last = done;
        }
    })
}

async fn login(sh: &Shared, i: usize) -> Result<WsClient, ClientError> {
    sh.org.login(sh.org.device_for(i), sh.cfg.timeout).await
}

/// Runs the configured scenario.
pub async fn run(sh: Arc<Shared>) -> Result<Report, String> {
    match sh.cfg.scenario {
        Scenario::Handshake => run_handshakes(sh).await,
        Scenario::Idle => run_idle(sh).await,
        Scenario::Fanout => run_fanout(sh).await,
        _ => run_requests(sh).await,
    }
}

fn report(sh: &Shared, clients: usize, elapsed: Duration, stats: Stats, cpu: CpuSpent) -> Report {
    let mut notes = sh.notes.lock().map(|n| n.clone()).unwrap_or_default();
    if sh.cfg.count.is_some() && sh.stop.issued.load(Ordering::Relaxed) < sh.cfg.count.unwrap_or(0) {
        notes.push(format!(
            "stopped by the {:.0} s time bound before --count was reached",
            sh.cfg.duration.as_secs_f64()
        ));
    }
    Report {
        scenario: sh.cfg.scenario.name(),
        clients,
        elapsed,
        stats,
        main_op: None,
        server_cpu: cpu.server,
        tool_cpu: cpu.tool,
        machine_cpu: cpu.machine,
        extra: Vec::new(),
        notes,
    }
}

// ------------------------------------------------------ request scenarios

/// One kind of request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Ping,
    VlobCreate,
    VlobRead,
    VlobUpdate,
    VlobPollChanges,
    BlockCreate,
    BlockRead,
    /// Re-reads the client's own vlob after a failed update.
    Resync,
}

impl Op {
    fn name(self) -> &'static str {
        match self {
            Op::Ping => "ping",
            Op::VlobCreate => "vlob_create",
            Op::VlobRead => "vlob_read",
            Op::VlobUpdate => "vlob_update",
            Op::VlobPollChanges => "vlob_poll_changes",
            Op::BlockCreate => "block_create",
            Op::BlockRead => "block_read",
            Op::Resync => "vlob_read_resync",
        }
    }

    /// `mix`: mostly reads and polls, some writes and pings (percentages).
    const MIX: [(Op, u32); 7] = [
        (Op::VlobRead, 35),
        (Op::VlobPollChanges, 20),
        (Op::BlockRead, 15),
        (Op::Ping, 10),
        (Op::VlobUpdate, 10),
        (Op::VlobCreate, 5),
        (Op::BlockCreate, 5),
    ];
}

/// One client's state across its requests.
struct Worker {
    idx: usize,
    sh: Arc<Shared>,
    rng: StdRng,
    /// Own vlob and its current version.
    own: Option<(Uuid, u64)>,
    /// The next update must first learn the vlob's current version.
    resync: bool,
    last_checkpoint: u64,
    last_timestamp: DateTime,
    n: u64,
}

impl Worker {
    fn new(idx: usize, sh: Arc<Shared>) -> Self {
        let own = sh.fx.own_vlobs.get(idx).map(|v| (*v, 1));
        Worker {
            idx,
            sh,
            rng: StdRng::from_entropy(),
            own,
            resync: false,
            last_checkpoint: 0,
            last_timestamp: DateTime::from_micros(0),
            n: 0,
        }
    }

    /// Now, never before a timestamp this client already used (an update
    /// older than the previous version is refused).
    fn timestamp(&mut self) -> DateTime {
        self.last_timestamp = self.last_timestamp.max(DateTime::now());
        self.last_timestamp
    }

    fn pick<T: Copy>(&mut self, pool: &[T]) -> Option<T> {
        (!pool.is_empty()).then(|| pool[(self.idx + self.n as usize) % pool.len()])
    }

    fn next_op(&mut self) -> Op {
        match self.sh.cfg.scenario {
            Scenario::VlobCreate => Op::VlobCreate,
            Scenario::VlobRead => Op::VlobRead,
            Scenario::VlobUpdate => Op::VlobUpdate,
            Scenario::BlockCreate => Op::BlockCreate,
            Scenario::BlockRead => Op::BlockRead,
            Scenario::Mix => {
                let mut roll = self.rng.gen_range(0..100);
                for (op, weight) in Op::MIX {
                    if roll < weight {
                        return op;
                    }
                    roll -= weight;
                }
                Op::Ping
            }
            _ => Op::Ping,
        }
    }

    /// The next request, or `None` if the fixtures it needs are missing.
    fn plan(&mut self) -> Option<(Op, Value)> {
        self.n += 1;
        let sh = self.sh.clone();
        let realm = sh.fx.realm;
        let op = match self.next_op() {
            Op::VlobUpdate if self.resync => Op::Resync,
            op => op,
        };
        let req = match op {
            Op::Ping => setup::ping(&format!("load-{}-{}", self.idx, self.n)),
            Op::VlobCreate => setup::vlob_create(realm?, Uuid::new_v4(), self.timestamp(), &sh.blob),
            Op::VlobRead => setup::vlob_read(self.pick(&sh.fx.read_vlobs)?),
            Op::VlobUpdate => {
                let (vlob, version) = self.own?;
                let ts = self.timestamp();
                setup::vlob_update(vlob, version + 1, ts, &sh.blob)
            }
            Op::Resync => setup::vlob_read(self.own?.0),
            Op::VlobPollChanges => setup::vlob_poll_changes(realm?, self.last_checkpoint),
            // Its block goes straight into the frame (see `request_loop`).
            Op::BlockCreate => Value::Map(setup::block_create_head(Uuid::new_v4(), realm?)),
            Op::BlockRead => setup::block_read(self.pick(&sh.fx.blocks)?),
        };
        Some((op, req))
    }

    /// Checks a reply; `Err` carries the status to count.
    fn check(&mut self, op: Op, req: &Value, rep: &Map) -> Result<(), String> {
        let st = status(rep);
        if st != "ok" {
            if op == Op::VlobUpdate {
                self.resync = true;
            }
            return Err(st.to_string());
        }
        let int = |key: &str| field(rep, key).as_u64();
        match op {
            Op::Ping => {
                let sent = match req {
                    Value::Map(m) => field(m, "ping").as_str(),
                    _ => None,
                };
                if field(rep, "pong").as_str() != sent {
                    return Err("wrong_pong".into());
                }
            }
            Op::VlobRead => {
                int("version").ok_or("vlob_read_without_version")?;
            }
            Op::VlobUpdate => {
                if let Some((_, v)) = &mut self.own {
                    *v += 1;
                }
            }
            Op::Resync => {
                let version = int("version").ok_or("vlob_read_without_version")?;
                if let Some((_, v)) = &mut self.own {
                    *v = version;
                }
                self.resync = false;
            }
            Op::VlobPollChanges => {
                self.last_checkpoint = int("current_checkpoint").ok_or("poll_without_checkpoint")?;
            }
            Op::BlockRead => match field(rep, "block") {
                Value::Binary(b) if b.len() == self.sh.block.len() => {}
                _ => return Err("wrong_block".into()),
            },
            Op::VlobCreate | Op::BlockCreate => {}
        }
        Ok(())
    }
}

/// One client of a request scenario: requests until told to stop. Returns the
/// connection (if still up) so that closing it is not measured.
async fn request_loop(mut w: Worker, mut ws: Option<WsClient>) -> (Stats, Option<WsClient>) {
    let sh = w.sh.clone();
    let mut stats = Stats::default();
    while sh.stop.take() {
        let conn = match ws.as_mut() {
            Some(c) => c,
            None => match login(&sh, w.idx).await {
                Ok(c) => ws.insert(c),
                Err(e) => {
                    stats.error("connect", e.kind(), &sh.progress);
                    tokio::time::sleep(RECONNECT_PAUSE.min(sh.stop.remaining())).await;
                    continue;
                }
            },
        };
        let Some((op, req)) = w.plan() else {
            stats.error("setup", "missing_fixture", &sh.progress);
            break;
        };
        let t0 = Instant::now();
        let sent = match (&op, &req) {
            (Op::BlockCreate, Value::Map(head)) => conn.request_with_bytes(head, "block", &sh.block).await,
            _ => conn.request(&req).await,
        };
        match sent {
            Ok(rep) => match w.check(op, &req, &rep) {
                Ok(()) => stats.ok(op.name(), t0.elapsed(), &sh.progress),
                Err(st) => stats.error(op.name(), &st, &sh.progress),
            },
            Err(e) => {
                // The reply may still come: this connection is out of step.
                if op == Op::VlobUpdate {
                    w.resync = true;
                }
                stats.error(op.name(), e.kind(), &sh.progress);
                ws = None;
            }
        }
    }
    (stats, ws)
}

/// Opens `n` connections (bounded concurrency) with `open`, then waits for
/// the go signal; each task then runs `body`. Returns once every connection
/// is open (or failed), with the go sender and the tasks.
async fn open_then_run<T, O, B, OF, BF>(
    sh: &Arc<Shared>,
    n: usize,
    open: O,
    body: B,
) -> (watch::Sender<bool>, JoinSet<T>)
where
    T: Send + 'static,
    O: Fn(Arc<Shared>, usize) -> OF + Send + Sync + 'static,
    OF: Future<Output = (Option<WsClient>, Stats)> + Send + 'static,
    B: Fn(Arc<Shared>, usize, Option<WsClient>, Stats) -> BF + Send + Sync + 'static,
    BF: Future<Output = T> + Send + 'static,
{
    let (go_tx, go_rx) = watch::channel(false);
    let (ready_tx, mut ready_rx) = mpsc::channel::<()>(n.min(1024));
    let permits = Arc::new(Semaphore::new(OPEN_CONCURRENCY));
    let open = Arc::new(open);
    let body = Arc::new(body);
    let mut tasks = JoinSet::new();
    for i in 0..n {
        let (sh, permits, ready_tx, mut go_rx) = (sh.clone(), permits.clone(), ready_tx.clone(), go_rx.clone());
        let (open, body) = (open.clone(), body.clone());
        tasks.spawn(async move {
            let (ws, stats) = {
                let _permit = permits.acquire().await;
                open(sh.clone(), i).await
            };
            let _ = ready_tx.send(()).await;
            let _ = go_rx.wait_for(|go| *go).await;
            body(sh, i, ws, stats).await
        });
    }
    drop(ready_tx);
    let mut opened = 0;
    while opened < n && ready_rx.recv().await.is_some() {
        opened += 1;
    }
    (go_tx, tasks)
}

/// Closes connections concurrently, politely, without measuring it.
async fn close_all(conns: Vec<WsClient>) {
    let mut closing = JoinSet::new();
    for ws in conns {
        closing.spawn(ws.close());
    }
    while closing.join_next().await.is_some() {}
}

async fn run_requests(sh: Arc<Shared>) -> Result<Report, String> {
    let clients = sh.cfg.clients;
    let progress = spawn_progress(sh.clone(), "requests");
    let (go, mut tasks) = open_then_run(
        &sh,
        clients,
        |sh, i| async move {
            let mut stats = Stats::default();
            match login(&sh, i).await {
                Ok(ws) => (Some(ws), stats),
                Err(e) => {
                    stats.error("connect", e.kind(), &sh.progress);
                    (None, stats)
                }
            }
        },
        |sh, i, ws, stats| async move {
            let (mut more, ws) = request_loop(Worker::new(i, sh), ws).await;
            more.merge(&stats);
            (more, ws)
        },
    )
    .await;
    let cpu = CpuWindow::begin(&sh);
    let t0 = Instant::now();
    sh.stop.start();
    let _ = go.send(true);
    let mut stats = Stats::default();
    let mut conns = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        let (s, ws) = joined.map_err(|e| format!("client task failed: {e}"))?;
        stats.merge(&s);
        conns.extend(ws);
    }
    let elapsed = t0.elapsed();
    let cpu = cpu.end(&sh);
    progress.abort();
    close_all(conns).await;
    Ok(report(&sh, clients, elapsed, stats, cpu))
}

// -------------------------------------------------------------- handshake

/// `handshake`: each client repeatedly connects, authenticates, sends one
/// ping and closes. Latency covers TCP connect to pong; the close (client
/// sends a close frame, waits for the server's) is not counted.
async fn run_handshakes(sh: Arc<Shared>) -> Result<Report, String> {
    let clients = sh.cfg.clients;
    let progress = spawn_progress(sh.clone(), "handshakes");
    let cpu = CpuWindow::begin(&sh);
    let t0 = Instant::now();
    sh.stop.start();
    let mut tasks = JoinSet::new();
    for i in 0..clients {
        let sh = sh.clone();
        tasks.spawn(async move {
            let mut stats = Stats::default();
            let mut n = 0u64;
            while sh.stop.take() {
                n += 1;
                let started = Instant::now();
                let outcome = async {
                    let mut ws = login(&sh, i).await?;
                    let text = format!("hs-{i}-{n}");
                    let rep = ws.request(&setup::ping(&text)).await?;
                    Ok::<_, ClientError>((ws, rep, text))
                }
                .await;
                match outcome {
                    Ok((ws, rep, text)) => {
                        if status(&rep) == "ok" && field(&rep, "pong").as_str() == Some(text.as_str()) {
                            stats.ok("handshake", started.elapsed(), &sh.progress);
                        } else {
                            stats.error("handshake", status(&rep), &sh.progress);
                        }
                        ws.close().await;
                    }
                    Err(e) => {
                        stats.error("handshake", e.kind(), &sh.progress);
                        if matches!(e, ClientError::Io(_)) {
                            tokio::time::sleep(RECONNECT_PAUSE.min(sh.stop.remaining())).await;
                        }
                    }
                }
            }
            stats
        });
    }
    let mut stats = Stats::default();
    while let Some(joined) = tasks.join_next().await {
        stats.merge(&joined.map_err(|e| format!("client task failed: {e}"))?);
    }
    let elapsed = t0.elapsed();
    let cpu = cpu.end(&sh);
    progress.abort();
    Ok(report(&sh, clients, elapsed, stats, cpu))
}

// ------------------------------------------------------------------- idle

/// `idle`: opens N connections (all of the first device), each with
/// `events_subscribe` then a pending `events_listen(wait=true)`, holds them
/// for `--duration`, then checks each is still alive with a ping (which
/// abandons the pending listen). The
/// measured requests are the connection openings; with `--server-pid` the
/// server's RSS is read before opening and every second while holding.
async fn run_idle(sh: Arc<Shared>) -> Result<Report, String> {
    let clients = sh.cfg.clients;
    if sh.cfg.count.is_some() {
        sh.note("--count does not apply to idle: connections are held for --duration".into());
    }
    let pid = sh.cfg.server_pid;
    let rss = move || pid.and_then(|pid| procfs::rss_kb(pid).ok());
    let rss_before = rss();
    let progress = spawn_progress(sh.clone(), "connections");
    let cpu_open = CpuWindow::begin(&sh);
    let t_open = Instant::now();
    let (go, mut tasks) = open_then_run(
        &sh,
        clients,
        |sh, _| async move {
            let mut stats = Stats::default();
            let started = Instant::now();
            let opened = async {
                // One device for all: the liveness pings at the end must not
                // become `pinged` events for the other connections.
                let mut ws = sh.org.login(&sh.org.first, sh.cfg.timeout).await?;
                let rep = ws.request(&setup::events_subscribe()).await?;
                if status(&rep) != "ok" {
                    return Ok(Err(status(&rep).to_string()));
                }
                ws.send_value(&setup::events_listen(true)).await?;
                Ok::<_, ClientError>(Ok(ws))
            }
            .await;
            match opened {
                Ok(Ok(ws)) => {
                    stats.ok("open", started.elapsed(), &sh.progress);
                    (Some(ws), stats)
                }
                Ok(Err(st)) => {
                    stats.error("open", &format!("events_subscribe:{st}"), &sh.progress);
                    (None, stats)
                }
                Err(e) => {
                    stats.error("open", e.kind(), &sh.progress);
                    (None, stats)
                }
            }
        },
        |sh, i, ws, mut stats| async move {
            let Some(mut ws) = ws else { return stats };
            // Liveness: a ping abandons the pending listen; only its reply
            // (or, if an event raced it, the listen's) comes back.
            let text = format!("alive-{i}");
            let started = Instant::now();
            let alive = async {
                ws.send_value(&setup::ping(&text)).await?;
                for _ in 0..2 {
                    let rep = ws.recv().await?;
                    if field(&rep, "pong").as_str() == Some(text.as_str()) {
                        return Ok(true);
                    }
                }
                Ok::<_, ClientError>(false)
            }
            .await;
            match alive {
                Ok(true) => stats.ok("ping_after_hold", started.elapsed(), &sh.progress),
                Ok(false) => stats.error("ping_after_hold", "wrong_pong", &sh.progress),
                Err(e) => stats.error("ping_after_hold", e.kind(), &sh.progress),
            }
            ws.close().await;
            stats
        },
    )
    .await;
    let open_elapsed = t_open.elapsed();
    let open_cpu = cpu_open.end(&sh);

    // Hold.
    let cpu_hold = CpuWindow::begin(&sh);
    let deadline = sh.stop.start();
    let mut rss_holding: Option<u64> = None;
    loop {
        if let Some(now) = rss() {
            rss_holding = Some(rss_holding.unwrap_or(0).max(now));
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        tokio::time::sleep(left.min(Duration::from_secs(1))).await;
    }
    let hold_cpu = cpu_hold.end(&sh);
    progress.abort();
    let _ = go.send(true);
    let mut stats = Stats::default();
    while let Some(joined) = tasks.join_next().await {
        stats.merge(&joined.map_err(|e| format!("client task failed: {e}"))?);
    }

    let held = stats.ops.get("open").map(|h| h.count()).unwrap_or(0);
    let alive = stats.ops.get("ping_after_hold").map(|h| h.count()).unwrap_or(0);
    let mut r = report(&sh, clients, open_elapsed, stats, open_cpu);
    r.main_op = Some("open");
    r.extra.push(("connections_held".into(), held.into()));
    r.extra.push(("alive_after_hold".into(), alive.into()));
    r.extra.push(("hold_s".into(), sh.cfg.duration.as_secs_f64().into()));
    if let Some(cpu) = hold_cpu.server {
        r.extra
            .push(("server_cpu_ms_while_holding".into(), (cpu.as_millis() as u64).into()));
    }
    if let (Some(before), Some(holding)) = (rss_before, rss_holding) {
        r.extra.push(("server_rss_before_kb".into(), before.into()));
        r.extra.push(("server_rss_holding_kb".into(), holding.into()));
        if held > 0 {
            let per = (holding.saturating_sub(before)) as f64 / held as f64;
            r.extra.push((
                "server_rss_per_connection_kb".into(),
                ((per * 100.0).round() / 100.0).into(),
            ));
        }
    }
    Ok(r)
}

// ----------------------------------------------------------------- fanout

/// Per version of the fanout vlob: when the writer sent it and how many
/// listeners got its event.
#[derive(Debug, Clone, Copy)]
struct Slot {
    sent: Instant,
    delivered: usize,
}

struct Fanout {
    vlob: Uuid,
    slots: Mutex<Vec<Option<Slot>>>,
    delivered: Notify,
    /// Last version the writer wrote (0 while it is still writing).
    final_version: AtomicU64,
    writer_done: AtomicBool,
    /// Listeners subscribed and still listening.
    active: AtomicUsize,
}

impl Fanout {
    fn sent(&self, version: u64, at: Instant) {
        if let Ok(mut slots) = self.slots.lock() {
            let i = version as usize;
            if slots.len() <= i {
                slots.resize(i + 1, None);
            }
            slots[i] = Some(Slot { sent: at, delivered: 0 });
        }
    }

    /// Records a delivery; returns its latency.
    ///
    /// Only the delivery that completes a version wakes the writer: it runs
    /// on another thread than the listeners, and a wake per delivery (a
    /// futex call, then the writer re-checking) had made the tool itself the
    /// bottleneck at 1,000 listeners.
    fn delivered(&self, version: u64, at: Instant) -> Option<Duration> {
        let (latency, complete) = {
            let mut slots = self.slots.lock().ok()?;
            let slot = slots.get_mut(version as usize)?.as_mut()?;
            slot.delivered += 1;
            (
                at.saturating_duration_since(slot.sent),
                slot.delivered >= self.active.load(Ordering::SeqCst),
            )
        };
        if complete {
            self.delivered.notify_one();
        }
        Some(latency)
    }

    fn delivered_count(&self, version: u64) -> usize {
        self.slots
            .lock()
            .ok()
            .and_then(|s| s.get(version as usize).copied().flatten())
            .map(|s| s.delivered)
            .unwrap_or(0)
    }
}

/// `fanout`: `--listeners` connections of the second device subscribe and
/// loop on `events_listen(wait=true)`; one connection of the first device
/// updates a vlob of the realm. Latency = from the writer sending update `v`
/// to a listener receiving `realm.vlobs_updated` for `v`. Every listener must
/// get every version exactly once, in order. The writer waits for everyone
/// to get `v` before writing `v + 1`, unless `--rate` sets its pace.
async fn run_fanout(sh: Arc<Shared>) -> Result<Report, String> {
    let listeners = sh.cfg.listeners;
    let Some(listener_device) = sh.org.second.clone() else {
        return Err(
            "fanout needs a second device (events skip their author's device) and the server refused device_create"
                .into(),
        );
    };
    let vlob = sh.fx.fanout_vlob.ok_or("fanout: no vlob was created")?;
    let fan = Arc::new(Fanout {
        vlob,
        slots: Mutex::new(Vec::new()),
        delivered: Notify::new(),
        final_version: AtomicU64::new(0),
        writer_done: AtomicBool::new(false),
        active: AtomicUsize::new(0),
    });
    let progress = spawn_progress(sh.clone(), "deliveries");

    let device = Arc::new(listener_device);
    let fan_l = fan.clone();
    let (go, mut tasks) = open_then_run(
        &sh,
        listeners,
        move |sh, _| {
            let device = device.clone();
            async move {
                let mut stats = Stats::default();
                let opened = async {
                    let mut ws = sh.org.login(&device, sh.cfg.timeout).await?;
                    let rep = ws.request(&setup::events_subscribe()).await?;
                    Ok::<_, ClientError>((ws, rep))
                }
                .await;
                match opened {
                    Ok((ws, rep)) if status(&rep) == "ok" => (Some(ws), stats),
                    Ok((_, rep)) => {
                        stats.error("subscribe", &format!("events_subscribe:{}", status(&rep)), &sh.progress);
                        (None, stats)
                    }
                    Err(e) => {
                        stats.error("subscribe", e.kind(), &sh.progress);
                        (None, stats)
                    }
                }
            }
        },
        move |sh, _, ws, stats| listen_loop(sh, fan_l.clone(), ws, stats),
    )
    .await;

    let mut writer = sh
        .org
        .login(&sh.org.first, sh.cfg.timeout)
        .await
        .map_err(|e| format!("fanout writer login: {e}"))?;
    let cpu = CpuWindow::begin(&sh);
    let t0 = Instant::now();
    sh.stop.start();
    let _ = go.send(true);
    let (writer_stats, last) = write_loop(&sh, &fan, &mut writer).await;
    fan.final_version.store(last, Ordering::SeqCst);
    fan.writer_done.store(true, Ordering::SeqCst);
    let mut stats = writer_stats;
    while let Some(joined) = tasks.join_next().await {
        stats.merge(&joined.map_err(|e| format!("listener task failed: {e}"))?);
    }
    let elapsed = t0.elapsed();
    let cpu = cpu.end(&sh);
    progress.abort();
    writer.close().await;

    let updates = last.saturating_sub(1);
    let deliveries = stats.ops.get("delivery").map(|h| h.count()).unwrap_or(0);
    let mut r = report(&sh, listeners, elapsed, stats, cpu);
    r.main_op = Some("delivery");
    r.extra.push(("listeners".into(), listeners.into()));
    r.extra.push(("updates".into(), updates.into()));
    r.extra
        .push(("expected_deliveries".into(), (updates * listeners as u64).into()));
    r.extra.push(("deliveries".into(), deliveries.into()));
    r.extra.push((
        "writer_pace".into(),
        match sh.cfg.rate {
            Some(rate) => format!("{rate} updates/s").into(),
            None => "lockstep (next update once every listener got the previous one)".into(),
        },
    ));
    Ok(r)
}

/// The fanout writer: returns its stats and the last version written.
async fn write_loop(sh: &Shared, fan: &Fanout, ws: &mut WsClient) -> (Stats, u64) {
    let mut stats = Stats::default();
    let mut version = 1u64;
    let mut last_ts = DateTime::from_micros(0);
    let start = Instant::now();
    let mut n = 0u64;
    while sh.stop.take() {
        if let Some(rate) = sh.cfg.rate {
            let due = start + Duration::from_secs_f64(n as f64 / rate);
            tokio::time::sleep_until(due.min(sh.stop.deadline()).into()).await;
            if Instant::now() >= sh.stop.deadline() {
                break;
            }
        }
        n += 1;
        let next = version + 1;
        last_ts = last_ts.max(DateTime::now());
        let t0 = Instant::now();
        fan.sent(next, t0);
        match ws.request(&setup::vlob_update(fan.vlob, next, last_ts, &sh.blob)).await {
            Ok(rep) if status(&rep) == "ok" => {
                stats.ok("writer_vlob_update", t0.elapsed(), &sh.progress);
                version = next;
            }
            Ok(rep) => {
                stats.error("writer_vlob_update", status(&rep), &sh.progress);
                break;
            }
            Err(e) => {
                stats.error("writer_vlob_update", e.kind(), &sh.progress);
                break;
            }
        }
        if sh.cfg.rate.is_none() {
            // Lockstep: wait (bounded) until every listener got this version.
            let until = Instant::now() + FANOUT_GRACE;
            while fan.delivered_count(version) < fan.active.load(Ordering::SeqCst) && Instant::now() < until {
                let _ = tokio::time::timeout_at(until.into(), fan.delivered.notified()).await;
            }
        }
    }
    (stats, version)
}

/// One fanout listener: `events_listen(wait=true)` in a loop, checking order.
async fn listen_loop(sh: Arc<Shared>, fan: Arc<Fanout>, ws: Option<WsClient>, stats: Stats) -> Stats {
    let Some(mut ws) = ws else { return stats };
    ws.timeout = LISTEN_TICK;
    fan.active.fetch_add(1, Ordering::SeqCst);
    let stats = listen(&sh, &fan, &mut ws, stats).await;
    // The writer no longer waits for this one.
    fan.active.fetch_sub(1, Ordering::SeqCst);
    fan.delivered.notify_one();
    // A listen may still be pending: closing abandons it.
    ws.close().await;
    stats
}

async fn listen(sh: &Shared, fan: &Fanout, ws: &mut WsClient, mut stats: Stats) -> Stats {
    let vlob = uuid_value(fan.vlob);
    let mut expected = 2u64;
    let mut pending = false;
    loop {
        let done = fan.writer_done.load(Ordering::SeqCst);
        let last = fan.final_version.load(Ordering::SeqCst);
        if done && expected > last {
            break;
        }
        if done && Instant::now() > sh.stop.deadline() + FANOUT_GRACE {
            break;
        }
        // Absolute bound, even if the writer never reports.
        if Instant::now() > sh.stop.deadline() + 2 * FANOUT_GRACE + sh.cfg.timeout {
            break;
        }
        if !pending {
            if let Err(e) = ws.send_value(&setup::events_listen(true)).await {
                stats.error("delivery", e.kind(), &sh.progress);
                return stats;
            }
            pending = true;
        }
        let rep = match ws.recv().await {
            Ok(rep) => rep,
            Err(ClientError::Timeout) => continue,
            Err(e) => {
                stats.error("delivery", e.kind(), &sh.progress);
                return stats;
            }
        };
        let at = Instant::now();
        pending = false;
        if status(&rep) != "ok" {
            stats.error("delivery", &format!("events_listen:{}", status(&rep)), &sh.progress);
            continue;
        }
        if field(&rep, "event").as_str() != Some("realm.vlobs_updated") || field(&rep, "src_id") != &vlob {
            continue;
        }
        let Some(v) = field(&rep, "src_version").as_u64() else {
            stats.error("delivery", "event_without_version", &sh.progress);
            continue;
        };
        if v <= 1 {
            // Version 1 was written during setup, before anyone subscribed;
            // its event may still reach a listener that subscribed while it
            // was on its way (events are delivered asynchronously, through the
            // event log on PostgreSQL, by this server and the reference alike).
            // Not a delivery of the measured run, and not an error.
            continue;
        }
        if v + 1 == expected {
            stats.error("delivery", "duplicate_event", &sh.progress);
            continue;
        }
        if v < expected {
            stats.error("delivery", "out_of_order_event", &sh.progress);
            continue;
        }
        for _ in expected..v {
            stats.error("delivery", "missed_event", &sh.progress);
        }
        expected = v + 1;
        match fan.delivered(v, at) {
            Some(latency) => stats.ok("delivery", latency, &sh.progress),
            None => stats.error("delivery", "event_for_unsent_version", &sh.progress),
        }
    }
    let last = fan.final_version.load(Ordering::SeqCst);
    for _ in expected..=last {
        stats.error("delivery", "missed_event", &sh.progress);
    }
    stats
}
