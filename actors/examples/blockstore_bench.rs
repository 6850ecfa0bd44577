//! The POSTGRESQL blockstore alone, as the server drives it: `PgBlockStore`
//! on a pool of the server's default size (7), N concurrent writers of
//! incompressible blocks, then N readers of N of the blocks written (at most
//! 64, the working set of `parsec-load block_read`), for a duration. `scripts/bench.sh`
//! compares `block_create` / `block_read` with it: unlike a pgbench script,
//! the block bytes travel to and from PostgreSQL in binary, as they do
//! under the server.
//!
//!   cargo run --release -p parsec-actors --example blockstore_bench -- \
//!       postgresql://…/db [clients=50] [seconds=8] [block_size=65536] [pool=7]
//!
//! The database must be migrated (`parsec-server migrate`). Prints one JSON
//! line: `{"insert_per_s": …, "select_per_s": …}`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use parsec_actors::backend::postgres::PgStore;
use parsec_actors::backend::postgres::blockstore::PgBlockStore;
use parsec_actors::blockstore::BlockStore;
use parsec_protocol::types::{OrganizationId, Uuid};
use rand::RngCore;

fn arg<T: std::str::FromStr>(args: &[String], i: usize, default: T) -> anyhow::Result<T> {
    match args.get(i) {
        None => Ok(default),
        Some(s) => s.parse().map_err(|_| anyhow::anyhow!("bad argument {i}: {s}")),
    }
}

/// Runs `op` from `clients` tasks until `duration` passes; returns ops/s.
async fn drive<F, Fut>(clients: usize, duration: Duration, op: F) -> anyhow::Result<f64>
where
    F: Fn(u64) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send,
{
    let op = Arc::new(op);
    let done = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|client| {
            let (op, done) = (op.clone(), done.clone());
            tokio::spawn(async move {
                let mut n = 0u64;
                while start.elapsed() < duration {
                    op(client as u64 * 1_000_000_000 + n).await?;
                    n += 1;
                    done.fetch_add(1, Ordering::Relaxed);
                }
                anyhow::Ok(())
            })
        })
        .collect();
    for t in tasks {
        t.await??;
    }
    Ok(done.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64())
}

/// `VACUUM` (the database of `url`), `CHECKPOINT`, then `sync`.
async fn settle(url: &str) -> anyhow::Result<()> {
    use diesel_async::{AsyncConnection, RunQueryDsl};
    let mut conn = diesel_async::AsyncPgConnection::establish(url).await?;
    diesel::sql_query("VACUUM").execute(&mut conn).await?;
    diesel::sql_query("CHECKPOINT").execute(&mut conn).await?;
    let synced = tokio::process::Command::new("sync").status().await?;
    anyhow::ensure!(synced.success(), "sync failed");
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let url = args
        .first()
        .ok_or_else(|| anyhow::anyhow!("usage: blockstore_bench DB_URL [clients] [seconds] [block_size] [pool]"))?;
    let clients: usize = arg(&args, 1, 50)?;
    let duration = Duration::from_secs(arg(&args, 2, 8)?);
    let block_size: usize = arg(&args, 3, 65536)?;
    let pool: usize = arg(&args, 4, 7)?;
    // The server's own runtime: one thread (actix's system), the other core
    // left to PostgreSQL.
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(async {
        let store = Arc::new(PgBlockStore::new(PgStore::connect(url, pool, Duration::from_secs(30))?));
        let org = OrganizationId::parse("BlockstoreBench").map_err(|e| anyhow::anyhow!("{e:?}"))?;
        // Incompressible, like encrypted blocks; one block shared by all
        // writes (the keys differ), so the bench measures the store.
        let mut block = vec![0u8; block_size];
        rand::thread_rng().fill_bytes(&mut block);
        let block = Bytes::from(block);
        let ids: Arc<std::sync::Mutex<Vec<Uuid>>> = Arc::default();

        let (s, o, b, i) = (store.clone(), org.clone(), block.clone(), ids.clone());
        let insert_per_s = drive(clients, duration, move |_| {
            let (s, o, b, i) = (s.clone(), o.clone(), b.clone(), i.clone());
            async move {
                let id = Uuid::new_v4();
                s.create(&o, id, b).await.map_err(|e| anyhow::anyhow!("{e}"))?;
                i.lock().map_err(|_| anyhow::anyhow!("poisoned"))?.push(id);
                Ok(())
            }
        })
        .await?;

        // The reads start as a scenario of `scripts/bench.sh` does: with
        // the writes vacuumed and flushed (PostgreSQL's buffers, then the
        // kernel's dirty pages), not paying for either in the background.
        settle(url).await?;

        // The same working set as `parsec-load block_read` reads (one block
        // per client, at most 64: parsec_load::setup::MAX_READ_POOL), so that
        // both read blocks equally likely to be in PostgreSQL's buffers.
        let mut written = std::mem::take(&mut *ids.lock().map_err(|_| anyhow::anyhow!("poisoned"))?);
        written.truncate(clients.clamp(1, 64));
        let written: Arc<Vec<Uuid>> = Arc::new(written);
        anyhow::ensure!(!written.is_empty(), "no block written");
        let (s, o) = (store.clone(), org.clone());
        let select_per_s = drive(clients, duration, move |n| {
            let (s, o, w) = (s.clone(), o.clone(), written.clone());
            async move {
                let id = w[(n.wrapping_mul(2_654_435_761) % w.len() as u64) as usize];
                let data = s.read(&o, id).await.map_err(|e| anyhow::anyhow!("{e}"))?;
                anyhow::ensure!(data.len() == block_size, "short block");
                Ok(())
            }
        })
        .await?;
        println!("{{\"insert_per_s\": {insert_per_s:.0}, \"select_per_s\": {select_per_s:.0}}}");
        Ok(())
    })
}
