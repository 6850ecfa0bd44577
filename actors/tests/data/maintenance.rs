//! The re-encryption cycle: `realm_start_reencryption_maintenance`, the
//! batches, `realm_finish_reencryption_maintenance`, and what every other
//! command does while a realm is in maintenance.

use std::collections::BTreeMap;

use parsec_actors::{realm, vlob};
use parsec_protocol::cmds::authenticated::{self as req, ReencryptionBatchEntry};
use parsec_protocol::types::*;
use parsec_protocol::value::Value;

use crate::common::*;

fn messages(users: &[&Dev]) -> BTreeMap<UserId, Vec<u8>> {
    users
        .iter()
        .map(|d| (d.user_id(), format!("key for {}", d.user_id()).into_bytes()))
        .collect()
}

async fn start(env: &Env, dev: &Dev, realm_id: Uuid, revision: i64, timestamp: DateTime, to: &[&Dev]) -> Value {
    let r = req::RealmStartReencryptionMaintenance {
        realm_id,
        encryption_revision: revision,
        timestamp,
        per_participant_message: messages(to),
    };
    realm::start_reencryption_maintenance(&env.actors, &dev.client, r)
        .await
        .unwrap()
}

async fn finish(env: &Env, dev: &Dev, realm_id: Uuid, revision: i64) -> Value {
    let r = req::RealmFinishReencryptionMaintenance {
        realm_id,
        encryption_revision: revision,
    };
    realm::finish_reencryption_maintenance(&env.actors, &dev.client, r)
        .await
        .unwrap()
}

async fn get_batch(env: &Env, dev: &Dev, realm_id: Uuid, revision: i64, size: i64) -> Value {
    let r = req::VlobMaintenanceGetReencryptionBatch {
        realm_id,
        encryption_revision: revision,
        size,
    };
    vlob::maintenance_get_reencryption_batch(&env.actors, &dev.client, r)
        .await
        .unwrap()
}

async fn save_batch(env: &Env, dev: &Dev, realm_id: Uuid, revision: i64, batch: Vec<ReencryptionBatchEntry>) -> Value {
    let r = req::VlobMaintenanceSaveReencryptionBatch {
        realm_id,
        encryption_revision: revision,
        batch,
    };
    vlob::maintenance_save_reencryption_batch(&env.actors, &dev.client, r)
        .await
        .unwrap()
}

fn entry(vlob_id: Uuid, version: i64, blob: &[u8]) -> ReencryptionBatchEntry {
    ReencryptionBatchEntry {
        vlob_id,
        version,
        blob: blob.to_vec(),
    }
}

#[actix_web::test]
async fn full_cycle() {
    let (env, alice) = Env::start().await;
    let bob = env.add_user("bob@dev1", UserProfile::Standard).await;
    let (realm_id, _) = env.create_realm(&alice).await;
    env.share(&alice, realm_id, &bob, Some(RealmRole::Contributor), at(-10))
        .await;
    let (v1, v2) = (Uuid::new_v4(), Uuid::new_v4());
    assert_bare(&env.vlob_create(&alice, realm_id, v1, at(-9), b"v1.1").await, "ok");
    assert_bare(&env.vlob_update(&alice, v1, 1, 2, at(-8), b"v1.2").await, "ok");
    assert_bare(&env.vlob_create(&bob, realm_id, v2, at(-7), b"v2.1").await, "ok");
    let block_id = Uuid::new_v4();
    assert_bare(&env.block_create(&bob, realm_id, block_id, b"block").await, "ok");
    let bob_events = env.listen(&bob).await;
    let alice_events = env.listen(&alice).await;

    // Start.
    let t = at(-1);
    assert_bare(&start(&env, &alice, realm_id, 2, t, &[&alice, &bob]).await, "ok");
    let got = bob_events.take().await;
    let names: Vec<&str> = got.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["realm.maintenance_started", "message.received"]);
    assert_eq!(
        (field(&got[0].1, "realm_id"), int(&got[0].1, "encryption_revision")),
        (&uuid(realm_id), 2)
    );
    // The author's device only gets its own message.
    assert_eq!(alice_events.names().await, ["message.received"]);
    let rep = env.message_get(&bob, 0).await;
    let m = &field(&rep, "messages").as_array().unwrap()[0];
    assert_eq!(
        (field(m, "sender"), field(m, "timestamp"), bin(m, "body")),
        (&Value::from("alice@dev1"), &dt(t), &b"key for bob"[..])
    );

    let rep = env.realm_status(&bob, realm_id).await;
    assert_eq!(field(&rep, "in_maintenance"), &Value::Boolean(true));
    assert_eq!(field(&rep, "maintenance_type"), &Value::from("REENCRYPTION"));
    assert_eq!(field(&rep, "maintenance_started_on"), &dt(t));
    assert_eq!(field(&rep, "maintenance_started_by"), &Value::from("alice@dev1"));
    assert_eq!(int(&rep, "encryption_revision"), 2);

    // While in maintenance: reads at the previous revision, no writes, no sharing.
    assert_eq!(bin(&env.vlob_read(&bob, v1, 1, None, None).await, "blob"), b"v1.2");
    assert_eq!(bin(&env.vlob_read(&bob, v1, 1, Some(1), None).await, "blob"), b"v1.1");
    assert_bare(&env.vlob_read(&bob, v1, 2, None, None).await, "in_maintenance");
    assert_bare(&env.vlob_read(&bob, v1, 3, None, None).await, "bad_encryption_revision");
    assert_bare(&env.vlob_update(&bob, v1, 2, 3, now(), b"x").await, "in_maintenance");
    assert_bare(&env.vlob_update(&bob, v1, 1, 3, now(), b"x").await, "in_maintenance");
    let r = req::VlobCreate {
        realm_id,
        encryption_revision: 2,
        vlob_id: Uuid::new_v4(),
        timestamp: now(),
        blob: vec![],
    };
    assert_bare(
        &vlob::create(&env.actors, &bob.client, r).await.unwrap(),
        "in_maintenance",
    );
    let r = req::VlobPollChanges {
        realm_id,
        last_checkpoint: 0,
    };
    let rep = vlob::poll_changes(&env.actors, &bob.client, r).await.unwrap();
    assert_eq!(int(&rep, "current_checkpoint"), 3);
    let rep = vlob::list_versions(&env.actors, &bob.client, req::VlobListVersions { vlob_id: v1 })
        .await
        .unwrap();
    assert_eq!(field(&rep, "versions").as_map().unwrap().len(), 2);
    assert_bare(
        &env.block_create(&bob, realm_id, Uuid::new_v4(), b"x").await,
        "in_maintenance",
    );
    assert_eq!(bin(&env.block_read(&bob, block_id).await, "block"), b"block");
    let carol = env.add_user("carol@dev1", UserProfile::Standard).await;
    assert_bare(
        &env.update_roles(&alice, realm_id, &carol, Some(RealmRole::Reader), now(), None)
            .await,
        "in_maintenance",
    );
    assert_bare(
        &start(&env, &alice, realm_id, 3, now(), &[&alice, &bob]).await,
        "in_maintenance",
    );

    // Batches: OWNER only, at the new revision.
    assert_bare(&get_batch(&env, &bob, realm_id, 2, 10).await, "not_allowed");
    assert_bare(
        &get_batch(&env, &alice, realm_id, 1, 10).await,
        "bad_encryption_revision",
    );
    let rep = get_batch(&env, &alice, realm_id, 2, 2).await;
    assert_eq!(status(&rep), "ok");
    assert_eq!(field(&rep, "batch").as_array().unwrap().len(), 2);
    let rep = get_batch(&env, &alice, realm_id, 2, 1000).await;
    let batch = field(&rep, "batch").as_array().unwrap().clone();
    assert_eq!(batch.len(), 3);
    let mut todo: Vec<(Value, i64, Vec<u8>)> = batch
        .iter()
        .map(|e| (field(e, "vlob_id").clone(), int(e, "version"), bin(e, "blob").to_vec()))
        .collect();
    todo.sort_by_key(|(_, v, b)| (b.clone(), *v));
    assert_eq!(todo[0], (uuid(v1), 1, b"v1.1".to_vec()));
    assert_eq!(todo[1], (uuid(v1), 2, b"v1.2".to_vec()));
    assert_eq!(todo[2], (uuid(v2), 1, b"v2.1".to_vec()));

    // Not over yet.
    let rep = finish(&env, &alice, realm_id, 2).await;
    assert_eq!(
        (status(&rep), reason(&rep)),
        ("maintenance_error", "Reencryption operations are not over")
    );

    // Save some, plus entries that are ignored (unknown vlob, unknown version, version 0).
    let rep = save_batch(
        &env,
        &alice,
        realm_id,
        2,
        vec![
            entry(v1, 1, b"new1.1"),
            entry(Uuid::new_v4(), 1, b"?"),
            entry(v1, 9, b"?"),
            entry(v1, 0, b"?"),
        ],
    )
    .await;
    assert_eq!((status(&rep), int(&rep, "total"), int(&rep, "done")), ("ok", 3, 1));
    assert_bare(&save_batch(&env, &bob, realm_id, 2, vec![]).await, "not_allowed");
    assert_eq!(
        field(&get_batch(&env, &alice, realm_id, 2, 1000).await, "batch")
            .as_array()
            .unwrap()
            .len(),
        2
    );
    // Saving twice keeps the first copy.
    let rep = save_batch(
        &env,
        &alice,
        realm_id,
        2,
        vec![entry(v1, 1, b"other"), entry(v1, 2, b"new1.2"), entry(v2, 1, b"new2.1")],
    )
    .await;
    assert_eq!((int(&rep, "total"), int(&rep, "done")), (3, 3));
    assert_eq!(
        field(&get_batch(&env, &alice, realm_id, 2, 1000).await, "batch"),
        &Value::Array(vec![])
    );

    // Finish: OWNER, right revision.
    assert_bare(&finish(&env, &bob, realm_id, 2).await, "not_allowed");
    assert_bare(&finish(&env, &alice, realm_id, 1).await, "bad_encryption_revision");
    assert_bare(&finish(&env, &alice, realm_id, 2).await, "ok");
    assert_eq!(bob_events.names().await, ["realm.maintenance_finished"]);
    let rep = env.realm_status(&bob, realm_id).await;
    assert_eq!(
        (field(&rep, "in_maintenance"), int(&rep, "encryption_revision")),
        (&Value::Boolean(false), 2)
    );
    assert!(field(&rep, "maintenance_type").is_nil());

    // After: the new revision only.
    let rep = env.vlob_read(&bob, v1, 2, Some(1), None).await;
    assert_eq!(
        (bin(&rep, "blob"), field(&rep, "author")),
        (&b"new1.1"[..], &Value::from("alice@dev1"))
    );
    assert_eq!(bin(&env.vlob_read(&bob, v1, 2, None, None).await, "blob"), b"new1.2");
    assert_bare(&env.vlob_read(&bob, v1, 1, None, None).await, "bad_encryption_revision");
    assert_bare(&env.vlob_update(&bob, v1, 2, 3, now(), b"v1.3").await, "ok");
    assert_bare(
        &env.vlob_create(&bob, realm_id, Uuid::new_v4(), now(), b"x").await,
        "bad_encryption_revision",
    );
    // Re-encrypted copies count in the organization's metadata, not in the realm's.
    let rep = realm::stats(&env.actors, &bob.client, req::RealmStats { realm_id })
        .await
        .unwrap();
    assert_eq!(int(&rep, "vlobs_size"), 4 * 4);
    let stats = env
        .actors
        .organization
        .send(parsec_actors::organization::GetOrganizationStats(env.org.clone()));
    assert_eq!(stats.await.unwrap().unwrap().metadata_size, 12 + 18 + 4);

    // Not in maintenance any more.
    let not_in = format!("Realm `{}` not under maintenance", realm_id.simple());
    for rep in [
        finish(&env, &alice, realm_id, 2).await,
        get_batch(&env, &alice, realm_id, 2, 10).await,
        save_batch(&env, &alice, realm_id, 2, vec![]).await,
    ] {
        assert_eq!((status(&rep), reason(&rep)), ("not_in_maintenance", not_in.as_str()));
    }
}

#[actix_web::test]
async fn start_refusals_in_order() {
    let (env, alice) = Env::start().await;
    let bob = env.add_user("bob@dev1", UserProfile::Standard).await;
    let (realm_id, _) = env.create_realm(&alice).await;
    env.share(&alice, realm_id, &bob, Some(RealmRole::Manager), at(-4))
        .await;
    let everyone = [&alice, &bob];

    assert_eq!(
        status(&start(&env, &alice, Uuid::new_v4(), 2, at(-75), &everyone).await),
        "bad_timestamp"
    );
    let missing = Uuid::new_v4();
    let rep = start(&env, &alice, missing, 2, now(), &everyone).await;
    assert_eq!(
        (status(&rep), reason(&rep)),
        (
            "not_found",
            format!("Realm `{}` doesn't exist", missing.simple()).as_str()
        )
    );
    for revision in [1, 3, 0, -1] {
        assert_bare(
            &start(&env, &bob, realm_id, revision, now(), &everyone).await,
            "bad_encryption_revision",
        );
    }
    assert_bare(&start(&env, &bob, realm_id, 2, now(), &everyone).await, "not_allowed");
    let rep = start(&env, &alice, realm_id, 2, now(), &[&alice]).await;
    assert_eq!(
        (status(&rep), reason(&rep)),
        (
            "participants_mismatch",
            "Realm participants and message recipients mismatch"
        )
    );
    let carol = env.add_user("carol@dev1", UserProfile::Standard).await;
    assert_eq!(
        status(&start(&env, &alice, realm_id, 2, now(), &[&alice, &bob, &carol]).await),
        "participants_mismatch"
    );
    // Refusals changed nothing.
    assert_eq!(
        field(&env.realm_status(&alice, realm_id).await, "in_maintenance"),
        &Value::Boolean(false)
    );
    assert_eq!(
        field(&env.message_get(&bob, 0).await, "messages"),
        &Value::Array(vec![])
    );
}

#[actix_web::test]
async fn revoked_users_are_not_participants() {
    let (env, alice) = Env::start().await;
    let bob = env.add_user("bob@dev1", UserProfile::Standard).await;
    let (realm_id, _) = env.create_realm(&alice).await;
    env.share(&alice, realm_id, &bob, Some(RealmRole::Owner), at(-4)).await;
    let removed = env.add_user("eve@dev1", UserProfile::Standard).await;
    env.share(&alice, realm_id, &removed, Some(RealmRole::Reader), at(-4))
        .await;
    env.share(&alice, realm_id, &removed, None, at(-3)).await;
    // Revoke bob, from a second ago.
    env.revoke(&bob, at(-1)).await;
    assert_bare(&start(&env, &bob, realm_id, 2, now(), &[&alice]).await, "not_allowed");
    assert_eq!(
        status(&start(&env, &alice, realm_id, 2, now(), &[&alice, &bob]).await),
        "participants_mismatch"
    );
    assert_bare(&start(&env, &alice, realm_id, 2, now(), &[&alice]).await, "ok");
    // A realm without vlobs is done at once.
    assert_bare(&finish(&env, &bob, realm_id, 2).await, "not_allowed");
    assert_bare(&finish(&env, &alice, realm_id, 2).await, "ok");
    // A second cycle goes to revision 3.
    assert_bare(&start(&env, &alice, realm_id, 3, now(), &[&alice]).await, "ok");
    assert_eq!(int(&env.realm_status(&alice, realm_id).await, "encryption_revision"), 3);
}
