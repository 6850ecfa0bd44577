//! Group-committed vlob writes ([`VlobBackend::write_batch`] and the vlob
//! actor's batching): a batch answers what its writes would one after the
//! other, whatever mix of outcomes it holds.
//!
//! [`VlobBackend::write_batch`]: parsec_actors::backend::VlobBackend::write_batch

use futures_util::future::join_all;
use parsec_actors::backend::{VlobCreateError as CE, VlobUpdateError as UE, VlobWrite, VlobWritten};
use parsec_protocol::cmds::authenticated as req;
use parsec_protocol::types::*;

use crate::common::*;

fn create(dev: &Dev, realm_id: Uuid, vlob_id: Uuid, encryption_revision: i64, timestamp: DateTime) -> VlobWrite {
    VlobWrite::Create {
        author: dev.client.device_id.clone(),
        req: req::VlobCreate {
            realm_id,
            encryption_revision,
            vlob_id,
            timestamp,
            blob: vlob_id.as_bytes().to_vec(),
        },
    }
}

fn update(dev: &Dev, vlob_id: Uuid, version: i64, timestamp: DateTime) -> VlobWrite {
    VlobWrite::Update {
        author: dev.client.device_id.clone(),
        req: req::VlobUpdate {
            encryption_revision: 1,
            vlob_id,
            timestamp,
            version,
            blob: format!("{vlob_id} v{version}").into_bytes(),
        },
    }
}

/// A compact view of an outcome, to compare with the expected one.
fn summary(o: &VlobWritten) -> String {
    match o {
        VlobWritten::Create(Ok(cp)) => format!("created {cp}"),
        VlobWritten::Update(Ok((_, cp))) => format!("updated {cp}"),
        VlobWritten::Create(Err(CE::RequireGreaterTimestamp(_))) => "create RequireGreaterTimestamp".into(),
        VlobWritten::Update(Err(UE::RequireGreaterTimestamp(_))) => "update RequireGreaterTimestamp".into(),
        VlobWritten::Create(Err(e)) => format!("create {e:?}"),
        VlobWritten::Update(Err(e)) => format!("update {e:?}"),
    }
}

/// What changed in `realm` after `checkpoint`, as `dev` polls it.
async fn poll(env: &Env, dev: &Dev, realm: Uuid, checkpoint: i64) -> parsec_actors::backend::VlobChanges {
    env.backends
        .vlob
        .poll_changes(&env.org, &dev.user_id(), realm, checkpoint)
        .await
        .expect("poll_changes")
}

/// Runs `batch` on the backend; the [`summary`] of each outcome.
async fn write_summaries(env: &Env, batch: &[VlobWrite]) -> Vec<String> {
    env.backends
        .vlob
        .write_batch(&env.org, batch)
        .await
        .iter()
        .map(summary)
        .collect()
}

#[actix_web::test]
async fn a_mixed_batch_answers_each_write_as_one_by_one() {
    let (env, alice) = Env::start().await;
    let bob = env.add_user("bob@dev1", UserProfile::Standard).await;
    let carol = env.add_user("carol@dev1", UserProfile::Standard).await;
    let (r1, _) = env.create_realm(&alice).await;
    let (r2, _) = env.create_realm(&alice).await;
    env.share(&alice, r1, &bob, Some(RealmRole::Contributor), at(-20)).await;
    env.share(&alice, r1, &carol, Some(RealmRole::Reader), at(-20)).await;
    let (v0, v1, v2) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    assert_bare(&env.vlob_create(&alice, r1, v0, at(-10), b"v0").await, "ok"); // r1: 1
    assert_bare(&env.vlob_create(&alice, r2, v1, at(-10), b"v1").await, "ok"); // r2: 1
    assert_bare(&env.vlob_create(&alice, r2, v2, at(-5), b"v2").await, "ok"); // r2: 2

    let (a, f, g) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    let batch = vec![
        create(&alice, r1, a, 1, now()),
        create(&carol, r1, Uuid::new_v4(), 1, now()),
        create(&alice, Uuid::new_v4(), Uuid::new_v4(), 1, now()),
        update(&bob, v0, 2, now()),
        update(&alice, Uuid::new_v4(), 2, now()),
        update(&alice, v1, 5, now()),
        create(&alice, r2, Uuid::new_v4(), 2, now()),
        create(&bob, r1, Uuid::new_v4(), 1, at(-25)),
        create(&alice, r2, f, 1, now()),
        update(&alice, v2, 2, at(-8)),
        create(&alice, r1, g, 1, now()),
    ];
    let outcomes = env.backends.vlob.write_batch(&env.org, &batch).await;
    let got: Vec<String> = outcomes.iter().map(summary).collect();
    let expected = [
        "created 2",
        "create NotAllowed",
        "create RealmNotFound",
        "updated 3",
        "update VlobNotFound",
        "update BadVersion",
        "create BadEncryptionRevision",
        "create RequireGreaterTimestamp",
        "created 3",
        "update RequireGreaterTimestamp",
        "created 4",
    ];
    assert_eq!(got, expected);
    match &outcomes[3] {
        VlobWritten::Update(Ok((realm, _))) => assert_eq!(*realm, r1),
        o => panic!("{o:?}"),
    }

    // What was written reads back, and the change logs have no gap.
    let changes = poll(&env, &alice, r1, 0).await;
    assert_eq!(changes.current_checkpoint, 4);
    assert_eq!(changes.changes.len(), 3);
    assert_eq!(changes.changes.get(&v0), Some(&2));
    assert_eq!(changes.changes.get(&a), Some(&1));
    assert_eq!(changes.changes.get(&g), Some(&1));
    let changes = poll(&env, &alice, r2, 2).await;
    assert_eq!(changes.current_checkpoint, 3);
    assert_eq!(changes.changes.into_iter().collect::<Vec<_>>(), vec![(f, 1)]);
    let read = env.vlob_read(&bob, v0, 1, None, None).await;
    assert_eq!(int(&read, "version"), 2);
    assert_eq!(bin(&read, "blob"), format!("{v0} v2").as_bytes());
    assert_eq!(field(&read, "author"), &parsec_protocol::value::Value::from("bob@dev1"));
    let read = env.vlob_read(&alice, a, 1, None, None).await;
    assert_eq!(bin(&read, "blob"), a.as_bytes());

    // Bob's write moved his latest write forward: a downgrade dated before
    // it is refused.
    let rep = env
        .update_roles(&alice, r1, &bob, Some(RealmRole::Reader), at(-1), None)
        .await;
    assert_eq!(status(&rep), "require_greater_timestamp", "{rep:?}");
}

/// A create of a taken id fails the batch's insert (on PostgreSQL), and
/// the batch runs again one write at a time: every write still gets its own
/// answer, and the change log has no gap.
#[actix_web::test]
async fn a_taken_id_in_a_batch_changes_no_other_answer() {
    let (env, alice) = Env::start().await;
    let (r1, _) = env.create_realm(&alice).await;
    let (r2, _) = env.create_realm(&alice).await;
    let (v0, v1) = (Uuid::new_v4(), Uuid::new_v4());
    assert_bare(&env.vlob_create(&alice, r1, v0, at(-10), b"v0").await, "ok"); // r1: 1
    assert_bare(&env.vlob_create(&alice, r2, v1, at(-10), b"v1").await, "ok"); // r2: 1
    let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
    let batch = vec![
        create(&alice, r1, a, 1, now()),
        create(&alice, r1, v1, 1, now()), // taken, in another realm
        update(&alice, v0, 2, now()),
        create(&alice, r1, v0, 1, now()), // taken, in this realm
        create(&alice, r2, b, 1, now()),
    ];
    let got = write_summaries(&env, &batch).await;
    assert_eq!(
        got,
        [
            "created 2",
            "create AlreadyExists",
            "updated 3",
            "create AlreadyExists",
            "created 2"
        ]
    );
    let changes = poll(&env, &alice, r1, 0).await;
    assert_eq!(changes.current_checkpoint, 3);
    assert_eq!(
        changes
            .changes
            .into_iter()
            .collect::<std::collections::BTreeMap<_, _>>(),
        [(v0, 2), (a, 1)].into_iter().collect()
    );
}

#[actix_web::test]
async fn writes_to_one_vlob_in_a_batch_see_each_other() {
    let (env, alice) = Env::start().await;
    let (realm_id, _) = env.create_realm(&alice).await;
    let x = Uuid::new_v4();
    let batch = vec![
        create(&alice, realm_id, x, 1, at(-3)),
        update(&alice, x, 2, at(-2)),
        create(&alice, realm_id, x, 1, at(-1)),
        update(&alice, x, 2, at(-1)),
        update(&alice, x, 3, at(-1)),
    ];
    let got = write_summaries(&env, &batch).await;
    assert_eq!(
        got,
        [
            "created 1",
            "updated 2",
            "create AlreadyExists",
            "update BadVersion",
            "updated 3"
        ]
    );
}

/// Many clients writing at once through the actor, which batches them: all
/// succeed, checkpoints are consecutive, the log agrees; a second write to
/// the same vlob queued behind the first one sees it.
#[actix_web::test]
async fn concurrent_commands_are_batched_without_changing_answers() {
    let (env, alice) = Env::start().await;
    let bob = env.add_user("bob@dev1", UserProfile::Standard).await;
    let (realm_id, _) = env.create_realm(&alice).await;
    env.share(&alice, realm_id, &bob, Some(RealmRole::Contributor), at(-20))
        .await;
    let ids: Vec<Uuid> = (0..120).map(|_| Uuid::new_v4()).collect();
    let creates = ids.iter().enumerate().map(|(i, id)| {
        let dev = if i % 2 == 0 { &alice } else { &bob };
        env.vlob_create(dev, realm_id, *id, at(-5), b"one")
    });
    for rep in join_all(creates).await {
        assert_bare(&rep, "ok");
    }
    // Every id twice at once: one of each pair gets version 2, the other
    // is refused — never both, never neither.
    let updates = ids.iter().flat_map(|id| {
        [
            env.vlob_update(&alice, *id, 1, 2, at(-4), b"two"),
            env.vlob_update(&bob, *id, 1, 2, at(-4), b"two"),
        ]
    });
    let reps = join_all(updates).await;
    for pair in reps.chunks(2) {
        let mut statuses: Vec<&str> = pair.iter().map(status).collect();
        statuses.sort_unstable();
        assert_eq!(statuses, ["bad_version", "ok"], "{pair:?}");
    }
    let changes = poll(&env, &alice, realm_id, 0).await;
    assert_eq!(changes.current_checkpoint, 240);
    assert!(ids.iter().all(|id| changes.changes.get(id) == Some(&2)));
}

/// Two batches writing the same vlobs at once (as two server instances
/// would): for each vlob exactly one of them wins, the other gets the
/// answer it would get second, and the change log has no gap.
#[actix_web::test]
async fn racing_batches_on_the_same_vlobs_agree_on_one_order() {
    let (env, alice) = Env::start().await;
    let (realm_id, _) = env.create_realm(&alice).await;
    let existing: Vec<Uuid> = (0..30).map(|_| Uuid::new_v4()).collect();
    for id in &existing {
        assert_bare(&env.vlob_create(&alice, realm_id, *id, at(-5), b"one").await, "ok");
    }
    let fresh: Vec<Uuid> = (0..30).map(|_| Uuid::new_v4()).collect();
    let batch = || -> Vec<VlobWrite> {
        let updates = existing.iter().map(|id| update(&alice, *id, 2, at(-4)));
        let creates = fresh.iter().map(|id| create(&alice, realm_id, *id, 1, at(-4)));
        updates.chain(creates).collect()
    };
    let (a, b) = (batch(), batch());
    let (first, second) = futures_util::future::join(
        env.backends.vlob.write_batch(&env.org, &a),
        env.backends.vlob.write_batch(&env.org, &b),
    )
    .await;
    for (x, y) in first.iter().zip(&second) {
        let mut pair = [summary(x), summary(y)];
        pair.sort();
        let won = pair
            .iter()
            .filter(|s| s.starts_with("created") || s.starts_with("updated"))
            .count();
        assert_eq!(won, 1, "{pair:?}");
        assert!(
            pair.iter()
                .any(|s| s == "update BadVersion" || s == "create AlreadyExists"),
            "{pair:?}"
        );
    }
    let changes = poll(&env, &alice, realm_id, 0).await;
    assert_eq!(changes.current_checkpoint, 90);
    assert!(existing.iter().all(|id| changes.changes.get(id) == Some(&2)));
    assert!(fresh.iter().all(|id| changes.changes.get(id) == Some(&1)));
}
