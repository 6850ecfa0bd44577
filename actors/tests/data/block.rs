//! `block_create`, `block_read`, the block store seam, and the organization stats.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use parsec_actors::blockstore::{BlockStore, BlockStoreError};
use parsec_actors::organization::GetOrganizationStats;
use parsec_protocol::cmds::authenticated as req;
use parsec_protocol::types::*;

use crate::common::*;

#[actix_web::test]
async fn create_and_read() {
    let (env, alice) = Env::start().await;
    let bob = env.add_user("bob@dev1", UserProfile::Standard).await;
    let carol = env.add_user("carol@dev1", UserProfile::Standard).await;
    let (realm_id, _) = env.create_realm(&alice).await;
    env.share(&alice, realm_id, &bob, Some(RealmRole::Reader), at(-4)).await;
    let id = Uuid::new_v4();

    assert_bare(&env.block_create(&alice, realm_id, id, b"block data").await, "ok");
    for dev in [&alice, &bob] {
        let rep = env.block_read(dev, id).await;
        assert_eq!((status(&rep), bin(&rep, "block")), ("ok", &b"block data"[..]));
    }
    // Every refusal comes without reason.
    assert_bare(&env.block_read(&carol, id).await, "not_allowed");
    assert_bare(&env.block_read(&alice, Uuid::new_v4()).await, "not_found");
    assert_bare(
        &env.block_create(&alice, Uuid::new_v4(), Uuid::new_v4(), b"x").await,
        "not_found",
    );
    assert_bare(
        &env.block_create(&bob, realm_id, Uuid::new_v4(), b"x").await,
        "not_allowed",
    );
    assert_bare(
        &env.block_create(&carol, realm_id, Uuid::new_v4(), b"x").await,
        "not_allowed",
    );
    // Block ids are unique in the organization.
    let (other_realm, _) = env.create_realm(&alice).await;
    assert_bare(
        &env.block_create(&alice, other_realm, id, b"other").await,
        "already_exists",
    );
    assert_eq!(bin(&env.block_read(&alice, id).await, "block"), b"block data");

    let rep = parsec_actors::realm::stats(&env.actors, &bob.client, req::RealmStats { realm_id })
        .await
        .unwrap();
    assert_eq!((int(&rep, "blocks_size"), int(&rep, "vlobs_size")), (10, 0));
}

#[actix_web::test]
async fn organization_stats_count_data() {
    let (env, alice) = Env::start().await;
    let (r1, _) = env.create_realm(&alice).await;
    let (r2, _) = env.create_realm(&alice).await;
    assert_bare(&env.block_create(&alice, r1, Uuid::new_v4(), b"12345").await, "ok");
    assert_bare(&env.block_create(&alice, r2, Uuid::new_v4(), b"123").await, "ok");
    let vlob_id = Uuid::new_v4();
    assert_bare(&env.vlob_create(&alice, r2, vlob_id, at(-2), b"ab").await, "ok");
    assert_bare(&env.vlob_update(&alice, vlob_id, 1, 2, at(-1), b"abcd").await, "ok");

    let stats = env
        .actors
        .organization
        .send(GetOrganizationStats(env.org.clone()))
        .await
        .unwrap()
        .unwrap();
    assert_eq!((stats.realms, stats.data_size, stats.metadata_size), (2, 8, 6));
    let rep = parsec_actors::organization::stats(&env.actors, &alice.client)
        .await
        .unwrap();
    assert_eq!(
        (int(&rep, "realms"), int(&rep, "data_size"), int(&rep, "metadata_size")),
        (2, 8, 6)
    );
}

/// A block store that is down.
struct DownStore;

#[async_trait]
impl BlockStore for DownStore {
    async fn read(&self, _: &OrganizationId, _: Uuid) -> Result<Bytes, BlockStoreError> {
        Err(BlockStoreError::Unavailable(anyhow::anyhow!("connection refused")))
    }
    async fn create(&self, _: &OrganizationId, _: Uuid, _: Bytes) -> Result<(), BlockStoreError> {
        Err(BlockStoreError::Unavailable(anyhow::anyhow!("connection refused")))
    }
}

#[actix_web::test]
async fn block_store_failures_are_timeouts() {
    let (env, alice) = Env::start_with(|mut b| {
        b.blockstore = Arc::new(DownStore);
        b
    })
    .await;
    let (realm_id, _) = env.create_realm(&alice).await;
    let id = Uuid::new_v4();
    assert_bare(&env.block_create(&alice, realm_id, id, b"x").await, "timeout");
    // Nothing was recorded: the metadata comes after the store write.
    assert_bare(&env.block_read(&alice, id).await, "not_found");
    // Checks run before the store is touched.
    assert_bare(&env.block_create(&alice, Uuid::new_v4(), id, b"x").await, "not_found");
}

/// A block store whose writes wait until the test lets them through, so that
/// the test can change things between a block create's checks and its
/// metadata insert.
struct GatedStore {
    inner: Arc<dyn BlockStore>,
    entered: tokio::sync::mpsc::Sender<()>,
    release: tokio::sync::Mutex<tokio::sync::mpsc::Receiver<()>>,
}

#[async_trait]
impl BlockStore for GatedStore {
    async fn read(&self, org: &OrganizationId, id: Uuid) -> Result<Bytes, BlockStoreError> {
        self.inner.read(org, id).await
    }
    async fn create(&self, org: &OrganizationId, id: Uuid, block: Bytes) -> Result<(), BlockStoreError> {
        let _ = self.entered.send(()).await;
        self.release.lock().await.recv().await;
        self.inner.create(org, id, block).await
    }
}

/// A gated environment: `entered` says a store write started, `release`
/// lets one through.
async fn gated_env() -> (Env, Dev, tokio::sync::mpsc::Receiver<()>, tokio::sync::mpsc::Sender<()>) {
    let (entered_tx, entered) = tokio::sync::mpsc::channel(8);
    let (release, release_rx) = tokio::sync::mpsc::channel(8);
    let (env, alice) = Env::start_with(|mut b| {
        b.blockstore = Arc::new(GatedStore {
            inner: b.blockstore.clone(),
            entered: entered_tx,
            release: tokio::sync::Mutex::new(release_rx),
        });
        b
    })
    .await;
    (env, alice, entered, release)
}

/// What happens while the block bytes are being stored counts: the checks
/// hold again when the metadata is inserted, and a refused create leaves no
/// readable block.
#[actix_web::test]
async fn changes_during_the_store_write_are_seen() {
    let (env, alice, mut entered, release) = gated_env().await;
    let bob = env.add_user("bob@dev1", UserProfile::Standard).await;
    let (realm_id, _) = env.create_realm(&alice).await;
    env.share(&alice, realm_id, &bob, Some(RealmRole::Contributor), at(-4))
        .await;

    // Bob's role is taken away while his block is stored.
    let id = Uuid::new_v4();
    let create = env.block_create(&bob, realm_id, id, b"bob's");
    let revoke = async {
        entered.recv().await.unwrap();
        env.share(&alice, realm_id, &bob, None, at(-3)).await;
        release.send(()).await.unwrap();
    };
    let (rep, ()) = tokio::join!(create, revoke);
    assert_bare(&rep, "not_allowed");
    assert_bare(&env.block_read(&alice, id).await, "not_found");

    // The same id created twice at once: one wins, the other finds it taken.
    let id = Uuid::new_v4();
    let first = env.block_create(&alice, realm_id, id, b"same");
    let second = env.block_create(&alice, realm_id, id, b"same");
    let both_in = async {
        entered.recv().await.unwrap();
        entered.recv().await.unwrap();
        release.send(()).await.unwrap();
        release.send(()).await.unwrap();
    };
    let (a, b, ()) = tokio::join!(first, second, both_in);
    let mut outcomes = [status(&a).to_owned(), status(&b).to_owned()];
    outcomes.sort();
    assert_eq!(outcomes, ["already_exists", "ok"]);
    assert_eq!(bin(&env.block_read(&alice, id).await, "block"), b"same");

    // A re-encryption starts while a block is stored.
    let id = Uuid::new_v4();
    let create = env.block_create(&alice, realm_id, id, b"late");
    let start = async {
        entered.recv().await.unwrap();
        start_reencryption(&env, &alice, realm_id).await;
        release.send(()).await.unwrap();
    };
    let (rep, ()) = tokio::join!(create, start);
    assert_bare(&rep, "in_maintenance");
    assert_bare(&env.block_read(&alice, id).await, "not_found");
}

/// Puts `realm_id` (of which `owner` is the only member) in re-encryption
/// maintenance.
async fn start_reencryption(env: &Env, owner: &Dev, realm_id: Uuid) {
    let r = req::RealmStartReencryptionMaintenance {
        realm_id,
        encryption_revision: 2,
        timestamp: now(),
        per_participant_message: [(owner.user_id(), b"key".to_vec())].into(),
    };
    let rep = parsec_actors::realm::start_reencryption_maintenance(&env.actors, &owner.client, r)
        .await
        .unwrap();
    assert_eq!(status(&rep), "ok", "{rep:?}");
}

/// Whatever path a create takes (on PostgreSQL with its own block store, one
/// statement checks, stores and records), a refused create stores nothing
/// that a later create of the same id would find in place of its bytes.
#[actix_web::test]
async fn a_refused_create_stores_no_bytes() {
    let (env, alice) = Env::start().await;
    let bob = env.add_user("bob@dev1", UserProfile::Standard).await;
    let (realm_id, _) = env.create_realm(&alice).await;
    env.share(&alice, realm_id, &bob, Some(RealmRole::Reader), at(-4)).await;
    let id = Uuid::new_v4();
    assert_bare(&env.block_create(&bob, realm_id, id, b"bob's").await, "not_allowed");
    assert_bare(
        &env.block_create(&alice, Uuid::new_v4(), id, b"nowhere").await,
        "not_found",
    );
    assert_bare(&env.block_create(&alice, realm_id, id, b"alice's").await, "ok");
    assert_eq!(bin(&env.block_read(&bob, id).await, "block"), b"alice's");
}

/// Concurrent creates of one id with different bytes: one wins, the others
/// find the id taken, and every reader gets the winner's bytes.
#[actix_web::test]
async fn concurrent_creates_of_one_id_keep_the_winners_bytes() {
    let (env, alice) = Env::start().await;
    let (realm_id, _) = env.create_realm(&alice).await;
    let id = Uuid::new_v4();
    let contents: Vec<Vec<u8>> = (0..8u8).map(|i| vec![i; 1000]).collect();
    let reps = futures_util::future::join_all(
        contents
            .iter()
            .map(|bytes| env.block_create(&alice, realm_id, id, bytes)),
    )
    .await;
    let winners: Vec<usize> = (0..reps.len()).filter(|&i| status(&reps[i]) == "ok").collect();
    assert_eq!(winners.len(), 1, "{reps:?}");
    for (i, rep) in reps.iter().enumerate() {
        if i != winners[0] {
            assert_bare(rep, "already_exists");
        }
    }
    assert_eq!(
        bin(&env.block_read(&alice, id).await, "block"),
        &contents[winners[0]][..]
    );
}

/// Creates sent together (on PostgreSQL with its own block store they go in
/// groups: one statement for many) each get the outcome they would get alone,
/// and only the accepted ones store their bytes.
#[actix_web::test]
async fn creates_sent_together_get_their_own_outcomes() {
    let (env, alice) = Env::start().await;
    let bob = env.add_user("bob@dev1", UserProfile::Standard).await;
    let (realm_id, _) = env.create_realm(&alice).await;
    let (frozen, _) = env.create_realm(&alice).await;
    env.share(&alice, realm_id, &bob, Some(RealmRole::Reader), at(-4)).await;
    start_reencryption(&env, &alice, frozen).await;
    let taken = Uuid::new_v4();
    assert_bare(&env.block_create(&alice, realm_id, taken, b"first").await, "ok");

    let twice = Uuid::new_v4();
    // Expected status None: one of the two creates of `twice`.
    type Case<'a> = (&'a Dev, Uuid, Uuid, Vec<u8>, Option<&'a str>);
    let mut cases: Vec<Case> = (0..20u8)
        .map(|i| (&alice, realm_id, Uuid::new_v4(), vec![i; 100 + i as usize], Some("ok")))
        .collect();
    cases.insert(
        3,
        (&bob, realm_id, Uuid::new_v4(), b"reader".to_vec(), Some("not_allowed")),
    );
    cases.insert(
        7,
        (
            &alice,
            Uuid::new_v4(),
            Uuid::new_v4(),
            b"nowhere".to_vec(),
            Some("not_found"),
        ),
    );
    cases.insert(
        9,
        (
            &alice,
            frozen,
            Uuid::new_v4(),
            b"frozen".to_vec(),
            Some("in_maintenance"),
        ),
    );
    cases.insert(
        11,
        (&alice, realm_id, taken, b"second".to_vec(), Some("already_exists")),
    );
    cases.insert(12, (&alice, realm_id, twice, b"twice-a".to_vec(), None));
    cases.insert(13, (&alice, realm_id, twice, b"twice-b".to_vec(), None));
    let reps = futures_util::future::join_all(
        cases
            .iter()
            .map(|(dev, realm, id, bytes, _)| env.block_create(dev, *realm, *id, bytes)),
    )
    .await;

    let mut twice_outcomes = Vec::new();
    for ((_, _, id, bytes, expected), rep) in cases.iter().zip(&reps) {
        let read = env.block_read(&alice, *id).await;
        match expected {
            Some("ok") => {
                assert_bare(rep, "ok");
                assert_eq!(bin(&read, "block"), &bytes[..]);
            }
            Some(refusal) => {
                assert_bare(rep, refusal);
                if *id != taken {
                    assert_bare(&read, "not_found");
                }
            }
            None => twice_outcomes.push((status(rep).to_owned(), bytes.clone())),
        }
    }
    assert_eq!(bin(&env.block_read(&alice, taken).await, "block"), b"first");
    twice_outcomes.sort();
    assert_eq!(
        twice_outcomes.iter().map(|(s, _)| s.as_str()).collect::<Vec<_>>(),
        ["already_exists", "ok"]
    );
    assert_eq!(
        bin(&env.block_read(&alice, twice).await, "block"),
        &twice_outcomes[1].1[..]
    );
}

/// Reads sent together (on PostgreSQL with its own block store they go in
/// groups: one statement for many) each get the outcome they would get alone.
#[actix_web::test]
async fn reads_sent_together_get_their_own_outcomes() {
    let (env, alice) = Env::start().await;
    let bob = env.add_user("bob@dev1", UserProfile::Standard).await;
    let carol = env.add_user("carol@dev1", UserProfile::Standard).await;
    let (realm_id, _) = env.create_realm(&alice).await;
    env.share(&alice, realm_id, &bob, Some(RealmRole::Reader), at(-4)).await;
    let mut blocks = Vec::new();
    for i in 0..12u8 {
        let (id, bytes) = (Uuid::new_v4(), vec![i; 1000 + i as usize]);
        assert_bare(&env.block_create(&alice, realm_id, id, &bytes).await, "ok");
        blocks.push((id, bytes));
    }
    // (reader, block, expected bytes or refusal)
    type Case<'a> = (&'a Dev, Uuid, Result<&'a [u8], &'a str>);
    let mut cases: Vec<Case> = Vec::new();
    for (i, (id, bytes)) in blocks.iter().enumerate() {
        cases.push((if i % 2 == 0 { &alice } else { &bob }, *id, Ok(&bytes[..])));
        if i % 4 == 1 {
            cases.push((&carol, *id, Err("not_allowed")));
            cases.push((&alice, Uuid::new_v4(), Err("not_found")));
            // The same block twice in a row.
            cases.push((&bob, *id, Ok(&bytes[..])));
        }
    }
    let reps = futures_util::future::join_all(cases.iter().map(|(dev, id, _)| env.block_read(dev, *id))).await;
    for ((_, _, expected), rep) in cases.iter().zip(&reps) {
        match expected {
            Ok(bytes) => {
                assert_eq!(status(rep), "ok", "{rep:?}");
                assert_eq!(bin(rep, "block"), *bytes);
            }
            Err(refusal) => assert_bare(rep, refusal),
        }
    }
}
