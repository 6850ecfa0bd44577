//! The PostgreSQL store (`--db postgresql://...`), with diesel-async.
//!
//! Every trait method that writes is one transaction that checks the
//! invariants it guards and writes (a vlob write batch is one transaction
//! for many writes); reads that need one snapshot are one statement. Row
//! locks (`FOR UPDATE` on the organization, realm, user or invitation row)
//! order concurrent writers, and constraints back them up, so that any
//! number of server instances on one database behave as one server. No
//! method holds a pooled connection while waiting for another.
//!
//! Layout: one module per domain (`organization`, `user`, `data`, `invite`,
//! `pki`), each implementing its backend trait for [`PgStore`]; `events` is
//! the durable event log and the LISTEN task that feeds the local broker;
//! `blockstore` is the `POSTGRESQL` blockstore; `prepared` runs hot
//! statements as cached prepared statements.

pub mod blockstore;
mod data;
pub mod events;
mod invite;
mod organization;
mod pki;
mod prepared;
mod user;

use std::sync::Arc;
use std::time::Duration;

use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use parsec_protocol::types::*;
use parsec_schema::{Pool, PooledConnection};

use super::Internal;
pub(crate) use prepared::{BindValue, ByteaArray, bind, by_ordinal, prepared};

/// A PostgreSQL-backed store. Cheap to clone (the pool is shared).
#[derive(Clone)]
pub struct PgStore {
    pool: Pool,
}

impl PgStore {
    /// A store over `pool`.
    pub fn new(pool: Pool) -> Self {
        Self { pool }
    }

    /// Connects with a pool of `max_connections`; every wait is bounded by `timeout`.
    pub fn connect(url: &str, max_connections: usize, timeout: Duration) -> anyhow::Result<Self> {
        Ok(Self::new(parsec_schema::pool(url, max_connections, timeout)?))
    }

    /// Opens `count` connections now, so the first requests do not pay for it
    /// (`--db-min-connections`).
    pub async fn warm_up(&self, count: usize) -> Result<(), Internal> {
        let mut held = Vec::with_capacity(count);
        for _ in 0..count.min(self.pool.status().max_size) {
            held.push(self.conn().await?);
        }
        Ok(())
    }

    /// Borrows a connection from the pool.
    pub(crate) async fn conn(&self) -> Result<PooledConnection, Internal> {
        self.pool
            .get()
            .await
            .map_err(|e| Internal(anyhow::anyhow!("database connection pool: {e}")))
    }

    /// Whether `other` is a clone of this store (one pool, one database).
    pub(crate) fn same_pool(&self, other: &PgStore) -> bool {
        std::ptr::eq(self.pool.manager(), other.pool.manager())
    }

    /// The store's pool (for the event log writer).
    pub fn pool(&self) -> &Pool {
        &self.pool
    }
}

impl super::Backends {
    /// The store the behaviour tests run on: in memory by default, or a fresh
    /// PostgreSQL database when `PARSEC_TEST_DB=postgresql` (then
    /// `PARSEC_TEST_PG_URL` must point at a cluster holding a migrated
    /// `parsec_template` database, as `scripts/test.sh` prepares). Each call
    /// gets a database of its own, so tests stay independent.
    pub async fn for_tests() -> Self {
        match std::env::var("PARSEC_TEST_DB").as_deref() {
            Ok("postgresql") => {
                let url = std::env::var("PARSEC_TEST_PG_URL")
                    .unwrap_or_else(|_| panic!("PARSEC_TEST_DB=postgresql needs PARSEC_TEST_PG_URL"));
                let (store, _) = test_database(&url).await;
                let blockstore = Arc::new(blockstore::PgBlockStore::new(store.clone()));
                Self::postgres(store, blockstore)
            }
            _ => Self::memory(),
        }
    }

    /// Every domain on PostgreSQL; blocks go to `blockstore`.
    pub fn postgres(store: PgStore, blockstore: Arc<dyn crate::blockstore::BlockStore>) -> Self {
        let store = Arc::new(store);
        Self {
            organization: store.clone(),
            user: store.clone(),
            realm: store.clone(),
            vlob: store.clone(),
            block: store.clone(),
            invite: store.clone(),
            pki: store.clone(),
            message: store,
            blockstore,
        }
    }
}

// ---------------------------------------------------------------- errors

impl From<diesel::result::Error> for Internal {
    fn from(e: diesel::result::Error) -> Self {
        Internal(anyhow::anyhow!("database: {e}"))
    }
}

/// `From<diesel::result::Error>` for domain errors with an `Internal`
/// variant, so that `?` works inside transactions.
macro_rules! internal_from_diesel {
    ($($t:ty),+ $(,)?) => {$(
        impl From<diesel::result::Error> for $t {
            fn from(e: diesel::result::Error) -> Self {
                <$t>::Internal(e.into())
            }
        }
    )+};
}
pub(crate) use internal_from_diesel;

/// True for a unique-constraint violation (another writer got there first).
pub(crate) fn is_unique_violation(e: &diesel::result::Error) -> bool {
    matches!(
        e,
        diesel::result::Error::DatabaseError(diesel::result::DatabaseErrorKind::UniqueViolation, _)
    )
}

// ------------------------------------------------------------ conversions

/// `timestamptz` value of a protocol datetime.
pub(crate) fn ts(d: DateTime) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::from_timestamp_micros(d.as_micros()).unwrap_or_default()
}

/// Protocol datetime of a `timestamptz` (microsecond precision, as stored).
pub(crate) fn dt(t: chrono::DateTime<chrono::Utc>) -> DateTime {
    DateTime::from_micros(t.timestamp_micros())
}

/// Parses an identifier read back from the database. It was validated on
/// the way in, so a failure means the database holds something we did not
/// write: an internal error, not a panic.
pub(crate) fn parse_id<T: std::str::FromStr<Err = String>>(raw: &str) -> Result<T, Internal> {
    raw.parse()
        .map_err(|e: String| Internal(anyhow::anyhow!("invalid identifier in database `{raw}`: {e}")))
}

/// A 32-byte key read back from the database.
pub(crate) fn key32(raw: &[u8]) -> Result<Key32, Internal> {
    raw.try_into()
        .map_err(|_| Internal(anyhow::anyhow!("invalid key length in database")))
}

// ------------------------------------------------------------------ locks

/// The organization's row id, locking the row for the rest of the
/// transaction when `lock` is set (user/device/PKI writes serialise on it:
/// active-users limit and one live user per e-mail are race-free). The lock
/// is `FOR NO KEY UPDATE`: inserts referencing the organization (their
/// `KEY SHARE` lock) do not queue behind it.
pub(crate) async fn org_pk(
    conn: &mut AsyncPgConnection,
    org: &OrganizationId,
    lock: bool,
) -> Result<Option<i64>, diesel::result::Error> {
    use parsec_schema::schema::organization::dsl as o;
    let q = o::organization
        .filter(o::organization_id.eq(org.as_str()))
        .select(o::_id);
    if lock {
        q.for_no_key_update().first(conn).await.optional()
    } else {
        q.first(conn).await.optional()
    }
}

/// Row ids of a device and of its user.
pub(crate) async fn device_pk(
    conn: &mut AsyncPgConnection,
    org_pk: i64,
    device_id: &DeviceId,
) -> Result<Option<(i64, i64)>, diesel::result::Error> {
    use parsec_schema::schema::device::dsl as d;
    d::device
        .filter(d::organization.eq(org_pk).and(d::device_id.eq(device_id.as_str())))
        .select((d::_id, d::user_))
        .first(conn)
        .await
        .optional()
}

/// Row id of a user.
pub(crate) async fn user_pk(
    conn: &mut AsyncPgConnection,
    org_pk: i64,
    user_id: &UserId,
) -> Result<Option<i64>, diesel::result::Error> {
    use parsec_schema::schema::user_::dsl as u;
    u::user_
        .filter(u::organization.eq(org_pk).and(u::user_id.eq(user_id.as_str())))
        .select(u::_id)
        .first(conn)
        .await
        .optional()
}

/// Starts the actors on [`super::Backends::for_tests`]; on PostgreSQL, events
/// take the production path (event log, NOTIFY, listener).
pub async fn start_actors_for_tests(settings: crate::Settings) -> crate::Actors {
    match test_database_url().await {
        Some(url) => start_actors_on_database(&url, settings).await,
        None => crate::Actors::start(super::Backends::memory(), settings),
    }
}

/// With `PARSEC_TEST_DB=postgresql`: the URL of a fresh test database.
pub async fn test_database_url() -> Option<String> {
    match std::env::var("PARSEC_TEST_DB").as_deref() {
        Ok("postgresql") => {
            let url = std::env::var("PARSEC_TEST_PG_URL")
                .unwrap_or_else(|_| panic!("PARSEC_TEST_DB=postgresql needs PARSEC_TEST_PG_URL"));
            Some(test_database(&url).await.1)
        }
        _ => None,
    }
}

/// One server instance's actors on the database at `url`, as `run` starts
/// them: several calls on one URL make several instances sharing it.
pub async fn start_actors_on_database(url: &str, settings: crate::Settings) -> crate::Actors {
    // The reference's default pool size: what a default deployment runs with.
    let store = PgStore::connect(url, 7, Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("cannot connect to test database {url}: {e}"));
    let blockstore = Arc::new(blockstore::PgBlockStore::new(store.clone()));
    let (bus, listener) = events::start(url.to_string(), store.pool().clone());
    let actors = crate::Actors::start_with_events(super::Backends::postgres(store.clone(), blockstore), settings, bus);
    listener.spawn(actors.broker.clone());
    // The listener starts from the log's end: let it get there first.
    tokio::time::sleep(Duration::from_millis(200)).await;
    actors
}

/// A new database cloned from the migrated `parsec_template`, for one test.
async fn test_database(cluster_url: &str) -> (PgStore, String) {
    let name = format!("parsec_test_{}", hex::encode(rand::random::<[u8; 8]>()));
    let admin_url = format!("{cluster_url}/postgres");
    let mut admin = <AsyncPgConnection as diesel_async::AsyncConnection>::establish(&admin_url)
        .await
        .unwrap_or_else(|e| panic!("cannot reach the test cluster {admin_url}: {e}"));
    // Concurrent clones of one template can collide ("being accessed by
    // other users"): retry a few times.
    let mut attempt = 0;
    loop {
        match diesel::sql_query(format!("CREATE DATABASE {name} TEMPLATE parsec_template"))
            .execute(&mut admin)
            .await
        {
            Ok(_) => break,
            Err(e) if attempt < 50 => {
                attempt += 1;
                log::debug!("CREATE DATABASE {name}: {e}, retrying");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("cannot create test database {name}: {e}"),
        }
    }
    let url = format!("{cluster_url}/{name}");
    let store = PgStore::connect(&url, 8, Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("cannot connect to test database {name}: {e}"));
    (store, url)
}
