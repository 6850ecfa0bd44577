//! `vlob_create`, `vlob_read`, `vlob_update`, `vlob_poll_changes`,
//! `vlob_list_versions`, and `realm.vlobs_updated`.

use parsec_actors::vlob;
use parsec_protocol::cmds::authenticated as req;
use parsec_protocol::types::*;
use parsec_protocol::value::Value;

use crate::common::*;

async fn poll(env: &Env, dev: &Dev, realm_id: Uuid, last_checkpoint: i64) -> Value {
    vlob::poll_changes(
        &env.actors,
        &dev.client,
        req::VlobPollChanges {
            realm_id,
            last_checkpoint,
        },
    )
    .await
    .unwrap()
}

async fn list(env: &Env, dev: &Dev, vlob_id: Uuid) -> Value {
    vlob::list_versions(&env.actors, &dev.client, req::VlobListVersions { vlob_id })
        .await
        .unwrap()
}

#[actix_web::test]
async fn create_read_update_and_events() {
    let (env, alice) = Env::start().await;
    let bob = env.add_user("bob@dev1", UserProfile::Standard).await;
    let (realm_id, realm_t) = env.create_realm(&alice).await;
    env.share(&alice, realm_id, &bob, Some(RealmRole::Reader), at(-4)).await;
    let bob_events = env.listen(&bob).await;
    let alice_events = env.listen(&alice).await;
    let alice2 = env.second_device(&alice, "dev2").await;
    let alice2_events = env.listen(&alice2).await;

    let vlob_id = Uuid::new_v4();
    let t1 = at(-2);
    assert_bare(&env.vlob_create(&alice, realm_id, vlob_id, t1, b"v1").await, "ok");
    let t2 = at(-1);
    assert_bare(&env.vlob_update(&alice, vlob_id, 1, 2, t2, b"v2").await, "ok");
    // Equal to the previous version's timestamp is fine.
    assert_bare(&env.vlob_update(&alice, vlob_id, 1, 3, t2, b"v3").await, "ok");

    // Members get the event, the author's own device does not, its other devices do.
    let got = bob_events.take().await;
    assert_eq!(got.len(), 3);
    for (i, (name, ev)) in got.iter().enumerate() {
        assert_eq!(name, "realm.vlobs_updated");
        assert_eq!(field(ev, "realm_id"), &uuid(realm_id));
        assert_eq!(field(ev, "src_id"), &uuid(vlob_id));
        assert_eq!(int(ev, "checkpoint"), i as i64 + 1);
        assert_eq!(int(ev, "src_version"), i as i64 + 1);
    }
    assert!(alice_events.take().await.is_empty());
    assert_eq!(alice2_events.names().await.len(), 3);

    // Latest, by version, by timestamp.
    let rep = env.vlob_read(&bob, vlob_id, 1, None, None).await;
    assert_eq!(status(&rep), "ok");
    assert_eq!((int(&rep, "version"), bin(&rep, "blob")), (3, &b"v3"[..]));
    assert_eq!(field(&rep, "author"), &Value::from("alice@dev1"));
    assert_eq!(field(&rep, "timestamp"), &dt(t2));
    // The writer's (alice's) latest role certificate, not the reader's.
    assert_eq!(field(&rep, "author_last_role_granted_on"), &dt(realm_t));
    let rep = env.vlob_read(&bob, vlob_id, 1, Some(1), None).await;
    assert_eq!(
        (int(&rep, "version"), bin(&rep, "blob"), field(&rep, "timestamp")),
        (1, &b"v1"[..], &dt(t1))
    );
    let rep = env.vlob_read(&bob, vlob_id, 1, None, Some(t1.add_micros(1))).await;
    assert_eq!(int(&rep, "version"), 1);
    let rep = env.vlob_read(&bob, vlob_id, 1, None, Some(t2)).await;
    assert_eq!(int(&rep, "version"), 3);
    // The version wins over the timestamp when both are given.
    let rep = env.vlob_read(&bob, vlob_id, 1, Some(2), Some(t1)).await;
    assert_eq!(int(&rep, "version"), 2);
    assert_bare(&env.vlob_read(&bob, vlob_id, 1, Some(4), None).await, "bad_version");
    assert_bare(
        &env.vlob_read(&bob, vlob_id, 1, None, Some(t1.add_micros(-1))).await,
        "bad_version",
    );

    // Poll: latest version per vlob after the checkpoint.
    let other = Uuid::new_v4();
    assert_bare(&env.vlob_create(&alice, realm_id, other, now(), b"o").await, "ok");
    let rep = poll(&env, &bob, realm_id, 0).await;
    assert_eq!(status(&rep), "ok");
    assert_eq!(int(&rep, "current_checkpoint"), 4);
    let changes = field(&rep, "changes").as_map().unwrap();
    assert_eq!(changes.len(), 2);
    assert!(changes.contains(&(uuid(vlob_id), Value::from(3))));
    assert!(changes.contains(&(uuid(other), Value::from(1))));
    let rep = poll(&env, &bob, realm_id, 3).await;
    assert_eq!(field(&rep, "changes"), &Value::Map(vec![(uuid(other), Value::from(1))]));
    // Nothing newer: the requested checkpoint is echoed back (PG).
    for last in [4, 10] {
        let rep = poll(&env, &bob, realm_id, last).await;
        assert_eq!(
            (int(&rep, "current_checkpoint"), field(&rep, "changes")),
            (last, &Value::Map(vec![]))
        );
    }

    // List versions: integer keys, [timestamp, author] values.
    let rep = list(&env, &bob, vlob_id).await;
    assert_eq!(status(&rep), "ok");
    let expected = [(1, t1), (2, t2), (3, t2)]
        .map(|(v, t)| (Value::from(v), Value::Array(vec![dt(t), Value::from("alice@dev1")])));
    assert_eq!(field(&rep, "versions"), &Value::Map(expected.to_vec()));

    // Stats count every version written.
    let rep = parsec_actors::realm::stats(&env.actors, &bob.client, req::RealmStats { realm_id })
        .await
        .unwrap();
    assert_eq!(int(&rep, "vlobs_size"), 7);
}

#[actix_web::test]
async fn create_refusals() {
    let (env, alice) = Env::start().await;
    let bob = env.add_user("bob@dev1", UserProfile::Standard).await;
    let (realm_id, realm_t) = env.create_realm(&alice).await;
    env.share(&alice, realm_id, &bob, Some(RealmRole::Reader), at(-4)).await;
    let id = Uuid::new_v4();

    let rep = env.vlob_create(&alice, realm_id, id, at(-71), b"x").await;
    assert_eq!(status(&rep), "bad_timestamp");
    // A missing realm is not told apart from a forbidden one.
    assert_bare(
        &env.vlob_create(&alice, Uuid::new_v4(), id, now(), b"x").await,
        "not_allowed",
    );
    assert_bare(&env.vlob_create(&bob, realm_id, id, now(), b"x").await, "not_allowed");
    let r = req::VlobCreate {
        realm_id,
        encryption_revision: 2,
        vlob_id: id,
        timestamp: now(),
        blob: vec![],
    };
    assert_bare(
        &vlob::create(&env.actors, &alice.client, r).await.unwrap(),
        "bad_encryption_revision",
    );
    // Strictly after the writer's last role certificate.
    let rep = env.vlob_create(&alice, realm_id, id, realm_t, b"x").await;
    assert_eq!(
        (status(&rep), field(&rep, "strictly_greater_than")),
        ("require_greater_timestamp", &dt(realm_t))
    );

    assert_bare(&env.vlob_create(&alice, realm_id, id, now(), b"x").await, "ok");
    // Vlob ids are unique in the organization, across realms; reason is "".
    let (other_realm, _) = env.create_realm(&alice).await;
    for realm in [realm_id, other_realm] {
        let rep = env.vlob_create(&alice, realm, id, now(), b"y").await;
        assert_eq!((status(&rep), reason(&rep)), ("already_exists", ""));
    }
    // Stats: only the one that was written.
    let rep = parsec_actors::realm::stats(&env.actors, &alice.client, req::RealmStats { realm_id })
        .await
        .unwrap();
    assert_eq!(int(&rep, "vlobs_size"), 1);
}

#[actix_web::test]
async fn read_update_list_refusals() {
    let (env, alice) = Env::start().await;
    let bob = env.add_user("bob@dev1", UserProfile::Standard).await;
    let (realm_id, _) = env.create_realm(&alice).await;
    let id = Uuid::new_v4();
    let t = at(-2);
    assert_bare(&env.vlob_create(&alice, realm_id, id, t, b"x").await, "ok");
    let missing = Uuid::new_v4();
    let not_found = format!("Vlob `{}` doesn't exist", missing.simple());

    // read
    let rep = env.vlob_read(&alice, missing, 1, None, None).await;
    assert_eq!((status(&rep), reason(&rep)), ("not_found", not_found.as_str()));
    assert_bare(&env.vlob_read(&bob, id, 1, None, None).await, "not_allowed");
    assert_bare(
        &env.vlob_read(&alice, id, 2, None, None).await,
        "bad_encryption_revision",
    );
    // The realm check comes before the role check.
    assert_bare(&env.vlob_read(&bob, id, 2, None, None).await, "bad_encryption_revision");

    // update, in order: ballpark, vlob, realm, role, role timestamp, version, previous timestamp
    assert_eq!(
        status(&env.vlob_update(&bob, missing, 1, 2, at(-80), b"y").await),
        "bad_timestamp"
    );
    let rep = env.vlob_update(&alice, missing, 1, 2, now(), b"y").await;
    assert_eq!((status(&rep), reason(&rep)), ("not_found", not_found.as_str()));
    assert_bare(
        &env.vlob_update(&bob, id, 3, 2, now(), b"y").await,
        "bad_encryption_revision",
    );
    assert_bare(&env.vlob_update(&bob, id, 1, 2, now(), b"y").await, "not_allowed");
    let granted = at(-1);
    env.share(&alice, realm_id, &bob, Some(RealmRole::Contributor), granted)
        .await;
    let rep = env.vlob_update(&bob, id, 1, 5, granted, b"y").await;
    assert_eq!(
        (status(&rep), field(&rep, "strictly_greater_than")),
        ("require_greater_timestamp", &dt(granted))
    );
    assert_bare(&env.vlob_update(&bob, id, 1, 1, now(), b"y").await, "bad_version");
    assert_bare(&env.vlob_update(&bob, id, 1, 3, now(), b"y").await, "bad_version");
    let rep = env.vlob_update(&alice, id, 1, 2, t.add_micros(-1), b"y").await;
    assert_eq!(
        (status(&rep), field(&rep, "strictly_greater_than")),
        ("require_greater_timestamp", &dt(t))
    );
    // A contributor writes; its own role certificate becomes the reported one.
    assert_bare(&env.vlob_update(&bob, id, 1, 2, now(), b"y").await, "ok");
    let rep = env.vlob_read(&alice, id, 1, None, None).await;
    assert_eq!(
        (field(&rep, "author"), field(&rep, "author_last_role_granted_on")),
        (&Value::from("bob@dev1"), &dt(granted))
    );

    // poll / list
    let carol = env.add_user("carol@dev1", UserProfile::Standard).await;
    let missing_realm = Uuid::new_v4();
    let rep = poll(&env, &alice, missing_realm, 0).await;
    assert_eq!(
        (status(&rep), reason(&rep)),
        (
            "not_found",
            format!("Realm `{}` doesn't exist", missing_realm.simple()).as_str()
        )
    );
    assert_bare(&poll(&env, &carol, realm_id, 0).await, "not_allowed");
    let rep = list(&env, &alice, missing).await;
    assert_eq!((status(&rep), reason(&rep)), ("not_found", not_found.as_str()));
    assert_bare(&list(&env, &carol, id).await, "not_allowed");
}

#[actix_web::test]
async fn losing_the_role_stops_writes_and_reads() {
    let (env, alice) = Env::start().await;
    let bob = env.add_user("bob@dev1", UserProfile::Standard).await;
    let (realm_id, _) = env.create_realm(&alice).await;
    env.share(&alice, realm_id, &bob, Some(RealmRole::Contributor), at(-4))
        .await;
    let id = Uuid::new_v4();
    assert_bare(&env.vlob_create(&bob, realm_id, id, at(-3), b"x").await, "ok");
    env.share(&alice, realm_id, &bob, Some(RealmRole::Reader), at(-2)).await;
    assert_bare(&env.vlob_update(&bob, id, 1, 2, now(), b"y").await, "not_allowed");
    assert_eq!(status(&env.vlob_read(&bob, id, 1, None, None).await), "ok");
    env.share(&alice, realm_id, &bob, None, at(-1)).await;
    assert_bare(&env.vlob_read(&bob, id, 1, None, None).await, "not_allowed");
    // The reader's writer info still points at bob's latest certificate (the removal).
    let rep = env.vlob_read(&alice, id, 1, None, None).await;
    assert_eq!(field(&rep, "author"), &Value::from("bob@dev1"));
}

/// Reads sent together (on PostgreSQL they go in groups: one statement for
/// many) each get the outcome they would get alone, whichever way each one
/// chooses its version.
#[actix_web::test]
async fn reads_sent_together_get_their_own_outcomes() {
    let (env, alice) = Env::start().await;
    let bob = env.add_user("bob@dev1", UserProfile::Standard).await;
    let carol = env.add_user("carol@dev1", UserProfile::Standard).await;
    let (realm_id, _) = env.create_realm(&alice).await;
    env.share(&alice, realm_id, &bob, Some(RealmRole::Reader), at(-4)).await;
    // Vlob i has i + 1 versions, written at t1 (version 1) and now.
    let t1 = at(-2);
    let mut vlobs = Vec::new();
    for i in 0..6i64 {
        let id = Uuid::new_v4();
        assert_bare(&env.vlob_create(&alice, realm_id, id, t1, b"v1").await, "ok");
        for version in 2..=i + 1 {
            let blob = format!("v{version}");
            assert_bare(
                &env.vlob_update(&alice, id, 1, version, now(), blob.as_bytes()).await,
                "ok",
            );
        }
        vlobs.push((id, i + 1));
    }
    // (reader, vlob, revision, version, timestamp, expected version or refusal)
    type Case<'a> = (&'a Dev, Uuid, i64, Option<i64>, Option<DateTime>, Result<i64, &'a str>);
    let mut cases: Vec<Case> = Vec::new();
    for (i, &(id, last)) in vlobs.iter().enumerate() {
        let reader = if i % 2 == 0 { &alice } else { &bob };
        cases.push((reader, id, 1, None, None, Ok(last)));
        cases.push((reader, id, 1, Some(1), None, Ok(1)));
        cases.push((reader, id, 1, Some(last), Some(t1), Ok(last)));
        cases.push((reader, id, 1, None, Some(t1), Ok(1)));
        cases.push((reader, id, 1, Some(last + 1), None, Err("bad_version")));
        cases.push((reader, id, 1, None, Some(t1.add_micros(-1)), Err("bad_version")));
        cases.push((reader, id, 2, None, None, Err("bad_encryption_revision")));
        cases.push((&carol, id, 1, None, None, Err("not_allowed")));
        cases.push((&alice, Uuid::new_v4(), 1, None, None, Err("not_found")));
    }
    let reps = futures_util::future::join_all(
        cases
            .iter()
            .map(|(dev, id, revision, version, t, _)| env.vlob_read(dev, *id, *revision, *version, *t)),
    )
    .await;
    for ((_, _, _, _, _, expected), rep) in cases.iter().zip(&reps) {
        match expected {
            Ok(version) => {
                assert_eq!(status(rep), "ok", "{rep:?}");
                assert_eq!(int(rep, "version"), *version);
                let blob = format!("v{version}");
                assert_eq!(bin(rep, "blob"), blob.as_bytes());
            }
            Err("not_found") => assert_eq!(status(rep), "not_found", "{rep:?}"),
            Err(refusal) => assert_bare(rep, refusal),
        }
    }
}
