//! `realm_create`, `realm_status`, `realm_stats`, `realm_get_role_certificates`,
//! `realm_update_roles`, `message_get`, and the events they emit.

use parsec_actors::realm;
use parsec_protocol::cmds::authenticated as req;
use parsec_protocol::types::*;
use parsec_protocol::value::Value;

use crate::common::*;

#[actix_web::test]
async fn realm_create_then_reads() {
    let (env, alice) = Env::start().await;
    let events = env.listen(&alice).await;
    let (realm_id, t) = env.create_realm(&alice).await;
    // realm.roles_updated is not filtered by author.
    let got = events.take().await;
    assert_eq!(got.len(), 1);
    let (name, ev) = &got[0];
    assert_eq!(name, "realm.roles_updated");
    assert_eq!(field(ev, "realm_id"), &uuid(realm_id));
    assert_eq!(field(ev, "role"), &Value::from("OWNER"));

    let rep = env.realm_status(&alice, realm_id).await;
    assert_eq!(status(&rep), "ok");
    assert_eq!(field(&rep, "in_maintenance"), &Value::Boolean(false));
    for key in ["maintenance_type", "maintenance_started_on", "maintenance_started_by"] {
        assert!(has_field(&rep, key) && field(&rep, key).is_nil(), "{key} in {rep:?}");
    }
    assert_eq!(int(&rep, "encryption_revision"), 1);

    let rep = realm::stats(&env.actors, &alice.client, req::RealmStats { realm_id })
        .await
        .unwrap();
    assert_eq!(
        (status(&rep), int(&rep, "blocks_size"), int(&rep, "vlobs_size")),
        ("ok", 0, 0)
    );

    let cert = alice.role_cert(realm_id, &alice.user_id(), Some(RealmRole::Owner), t);
    let r = req::RealmGetRoleCertificates { realm_id };
    let rep = realm::get_role_certificates(&env.actors, &alice.client, r)
        .await
        .unwrap();
    assert_eq!(status(&rep), "ok");
    // Signatures are deterministic: the same content gives the same bytes.
    assert_eq!(
        field(&rep, "certificates"),
        &Value::Array(vec![Value::Binary(cert.clone())])
    );

    let rep = realm::create(&env.actors, &alice.client, req::RealmCreate { role_certificate: cert })
        .await
        .unwrap();
    assert_bare(&rep, "already_exists");
}

#[actix_web::test]
async fn realm_create_refusals() {
    let (env, alice) = Env::start().await;
    let bob = env.add_user("bob@dev1", UserProfile::Standard).await;
    let create = |cert: Vec<u8>| realm::create(&env.actors, &alice.client, req::RealmCreate { role_certificate: cert });
    let realm_id = Uuid::new_v4();
    let me = alice.user_id();

    // Signed by another device's key.
    let forged = bob.role_cert(realm_id, &me, Some(RealmRole::Owner), now());
    let rep = create(forged).await.unwrap();
    assert_eq!(status(&rep), "invalid_certification");
    assert!(reason(&rep).starts_with("Invalid certification data (") && !reason(&rep).contains("timestamp"));

    // Certificate checks come before the ballpark, which comes before the content checks.
    let old = at(-100);
    let rep = create(alice.role_cert(realm_id, &bob.user_id(), Some(RealmRole::Reader), old))
        .await
        .unwrap();
    assert_eq!(status(&rep), "bad_timestamp");
    assert_eq!(field(&rep, "client_timestamp"), &dt(old));
    assert_eq!(field(&rep, "ballpark_client_early_offset"), &Value::F64(50.0));
    assert!(has_field(&rep, "backend_timestamp") && !has_field(&rep, "reason"));

    let rep = create(alice.role_cert(realm_id, &bob.user_id(), Some(RealmRole::Owner), now()))
        .await
        .unwrap();
    assert_eq!(
        (status(&rep), reason(&rep)),
        ("invalid_data", "Initial realm role certificate must be self-signed.")
    );
    for role in [None, Some(RealmRole::Manager), Some(RealmRole::Reader)] {
        let rep = create(alice.role_cert(realm_id, &me, role, now())).await.unwrap();
        assert_eq!(
            (status(&rep), reason(&rep)),
            ("invalid_data", "Initial realm role certificate must set OWNER role.")
        );
    }
    // Nothing was created.
    let rep = env.realm_status(&alice, realm_id).await;
    assert_eq!(status(&rep), "not_found");
}

#[actix_web::test]
async fn outsider_creates_its_own_realm() {
    let (env, _alice) = Env::start().await;
    let out = env.add_user("out@dev1", UserProfile::Outsider).await;
    let (realm_id, _) = env.create_realm(&out).await;
    assert_eq!(status(&env.realm_status(&out, realm_id).await), "ok");
}

#[actix_web::test]
async fn realm_reads_need_a_role() {
    let (env, alice) = Env::start().await;
    let bob = env.add_user("bob@dev1", UserProfile::Standard).await;
    let (realm_id, realm_t) = env.create_realm(&alice).await;
    let missing = Uuid::new_v4();
    let not_found = format!("Realm `{}` doesn't exist", missing.simple());

    let rep = env.realm_status(&alice, missing).await;
    assert_eq!((status(&rep), reason(&rep)), ("not_found", not_found.as_str()));
    assert_bare(&env.realm_status(&bob, realm_id).await, "not_allowed");

    let stats = |dev, realm_id| realm::stats(&env.actors, dev, req::RealmStats { realm_id });
    assert_eq!(reason(&stats(&alice.client, missing).await.unwrap()), not_found);
    assert_bare(&stats(&bob.client, realm_id).await.unwrap(), "not_allowed");

    let certs =
        |dev, realm_id| realm::get_role_certificates(&env.actors, dev, req::RealmGetRoleCertificates { realm_id });
    assert_eq!(reason(&certs(&alice.client, missing).await.unwrap()), not_found);
    assert_bare(&certs(&bob.client, realm_id).await.unwrap(), "not_allowed");

    // Access follows the latest certificate: granted, then removed.
    let (granted, removed) = (at(-4), at(-3));
    env.share(&alice, realm_id, &bob, Some(RealmRole::Reader), granted)
        .await;
    assert_eq!(status(&env.realm_status(&bob, realm_id).await), "ok");
    let rep = certs(&bob.client, realm_id).await.unwrap();
    assert_eq!(field(&rep, "certificates").as_array().unwrap().len(), 2);
    env.share(&alice, realm_id, &bob, None, removed).await;
    assert_bare(&env.realm_status(&bob, realm_id).await, "not_allowed");
    // Every certificate stays, removals included, by timestamp.
    let rep = certs(&alice.client, realm_id).await.unwrap();
    let expected = [
        alice.role_cert(realm_id, &alice.user_id(), Some(RealmRole::Owner), realm_t),
        alice.role_cert(realm_id, &bob.user_id(), Some(RealmRole::Reader), granted),
        alice.role_cert(realm_id, &bob.user_id(), None, removed),
    ];
    assert_eq!(
        field(&rep, "certificates"),
        &Value::Array(expected.into_iter().map(Value::Binary).collect())
    );
}

#[actix_web::test]
async fn update_roles_delivers_role_and_message() {
    let (env, alice) = Env::start().await;
    let bob = env.add_user("bob@dev1", UserProfile::Standard).await;
    let (realm_id, _) = env.create_realm(&alice).await;
    let bob_events = env.listen(&bob).await;
    let alice_events = env.listen(&alice).await;

    let t = at(-4);
    let rep = env
        .update_roles(&alice, realm_id, &bob, Some(RealmRole::Reader), t, Some(b"welcome"))
        .await;
    assert_bare(&rep, "ok");

    // roles_updated first, then message.received; only the target hears them.
    let got = bob_events.take().await;
    let names: Vec<&str> = got.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["realm.roles_updated", "message.received"]);
    assert_eq!(field(&got[0].1, "role"), &Value::from("READER"));
    assert_eq!(field(&got[0].1, "realm_id"), &uuid(realm_id));
    assert_eq!(int(&got[1].1, "index"), 1);
    assert!(alice_events.take().await.is_empty());

    let rep = env.message_get(&bob, 0).await;
    assert_eq!(status(&rep), "ok");
    let messages = field(&rep, "messages").as_array().unwrap();
    assert_eq!(messages.len(), 1);
    let m = &messages[0];
    assert_eq!(int(m, "count"), 1);
    assert_eq!(field(m, "sender"), &Value::from("alice@dev1"));
    assert_eq!(field(m, "timestamp"), &dt(t));
    assert_eq!(bin(m, "body"), b"welcome");

    // Removal: role nil, and an empty message is not a message (PG).
    let rep = env.update_roles(&alice, realm_id, &bob, None, at(-3), Some(b"")).await;
    assert_bare(&rep, "ok");
    let got = bob_events.take().await;
    assert_eq!(got.len(), 1);
    assert!(field(&got[0].1, "role").is_nil());
    let rep = env.message_get(&bob, 0).await;
    assert_eq!(field(&rep, "messages").as_array().unwrap().len(), 1);

    // A second message gets index 2; offsets skip and count on.
    let rep = env
        .update_roles(
            &alice,
            realm_id,
            &bob,
            Some(RealmRole::Contributor),
            at(-2),
            Some(b"again"),
        )
        .await;
    assert_bare(&rep, "ok");
    let got = bob_events.take().await;
    assert_eq!(int(&got[1].1, "index"), 2);
    let rep = env.message_get(&bob, 1).await;
    let messages = field(&rep, "messages").as_array().unwrap();
    assert_eq!(messages.len(), 1);
    assert_eq!(
        (int(&messages[0], "count"), bin(&messages[0], "body")),
        (2, &b"again"[..])
    );
    let rep = env.message_get(&bob, 5).await;
    assert_eq!(field(&rep, "messages"), &Value::Array(vec![]));
    // Messages go to the user: any of its devices reads them.
    let bob2 = env.second_device(&bob, "dev2").await;
    let rep = env.message_get(&bob2, 0).await;
    assert_eq!(field(&rep, "messages").as_array().unwrap().len(), 2);
    // Alice has none.
    assert_eq!(
        field(&env.message_get(&alice, 0).await, "messages"),
        &Value::Array(vec![])
    );
}

#[actix_web::test]
async fn update_roles_refusals_in_order() {
    let (env, alice) = Env::start().await;
    let bob = env.add_user("bob@dev1", UserProfile::Standard).await;
    let out = env.add_user("out@dev1", UserProfile::Outsider).await;
    let gone = env.add_revoked_user("gone@dev1", at(3600)).await;
    let (realm_id, _) = env.create_realm(&alice).await;
    let role = Some(RealmRole::Reader);

    // 1. OUTSIDER requester, before anything else (even a garbage certificate).
    let r = req::RealmUpdateRoles {
        role_certificate: b"garbage".to_vec(),
        recipient_message: None,
    };
    let rep = realm::update_roles(&env.actors, &out.client, r).await.unwrap();
    assert_eq!(
        (status(&rep), reason(&rep)),
        ("not_allowed", "Outsider user cannot share realm")
    );
    // 3. certificate
    let r = req::RealmUpdateRoles {
        role_certificate: b"garbage".to_vec(),
        recipient_message: None,
    };
    let rep = realm::update_roles(&env.actors, &alice.client, r).await.unwrap();
    assert_eq!(status(&rep), "invalid_certification");
    // 4. ballpark
    let rep = env.update_roles(&alice, realm_id, &bob, role, at(60), None).await;
    assert_eq!(status(&rep), "bad_timestamp");
    // 5. self-signed
    let rep = env.update_roles(&alice, realm_id, &alice, role, now(), None).await;
    assert_eq!(
        (status(&rep), reason(&rep)),
        ("invalid_data", "Realm role certificate cannot be self-signed.")
    );
    // 6. unknown user
    let cert = alice.role_cert(realm_id, &UserId::parse("zack").unwrap(), role, now());
    let r = req::RealmUpdateRoles {
        role_certificate: cert,
        recipient_message: None,
    };
    let rep = realm::update_roles(&env.actors, &alice.client, r).await.unwrap();
    assert_eq!((status(&rep), reason(&rep)), ("not_found", "User `zack` doesn't exist"));
    // 7. OUTSIDER target as MANAGER/OWNER (checked before the realm exists)
    for r in [RealmRole::Manager, RealmRole::Owner] {
        let rep = env
            .update_roles(&alice, Uuid::new_v4(), &out, Some(r), now(), None)
            .await;
        assert_eq!(
            (status(&rep), reason(&rep)),
            (
                "incompatible_profile",
                "User with OUTSIDER profile cannot be MANAGER or OWNER"
            )
        );
    }
    // 8. revoked target, even with a revocation dated in the future
    assert_bare(
        &env.update_roles(&alice, realm_id, &gone, role, now(), None).await,
        "user_revoked",
    );
    // 9. realm missing
    let missing = Uuid::new_v4();
    let rep = env.update_roles(&alice, missing, &bob, role, now(), None).await;
    assert_eq!(
        (status(&rep), reason(&rep)),
        (
            "not_found",
            format!("Realm `{}` doesn't exist", missing.simple()).as_str()
        )
    );
    // 11. requester without the needed role
    let carol = env.add_user("carol@dev1", UserProfile::Standard).await;
    assert_bare(
        &env.update_roles(&bob, realm_id, &carol, role, now(), None).await,
        "not_allowed",
    );
    // The outsider may be READER/CONTRIBUTOR.
    let granted = at(-4);
    env.share(&alice, realm_id, &out, Some(RealmRole::Contributor), granted)
        .await;
    // 12. already granted (nil == nil too)
    assert_bare(
        &env.update_roles(&alice, realm_id, &out, Some(RealmRole::Contributor), now(), None)
            .await,
        "already_granted",
    );
    assert_bare(
        &env.update_roles(&alice, realm_id, &carol, None, now(), None).await,
        "already_granted",
    );
    // 13. not after the target's last certificate
    for t in [granted, granted.add_micros(-1)] {
        let rep = env.update_roles(&alice, realm_id, &out, role, t, None).await;
        assert_eq!(
            (status(&rep), field(&rep, "strictly_greater_than")),
            ("require_greater_timestamp", &dt(granted))
        );
    }
    // Nothing was written by the refusals.
    let rep = realm::get_role_certificates(&env.actors, &alice.client, req::RealmGetRoleCertificates { realm_id });
    assert_eq!(field(&rep.await.unwrap(), "certificates").as_array().unwrap().len(), 2);
}

#[actix_web::test]
async fn manager_and_owner_rights() {
    let (env, alice) = Env::start().await;
    let bob = env.add_user("bob@dev1", UserProfile::Standard).await;
    let carol = env.add_user("carol@dev1", UserProfile::Standard).await;
    let dave = env.add_user("dave@dev1", UserProfile::Standard).await;
    let (realm_id, _) = env.create_realm(&alice).await;
    env.share(&alice, realm_id, &bob, Some(RealmRole::Manager), at(-10))
        .await;

    // A manager handles contributors and readers…
    env.share(&bob, realm_id, &carol, Some(RealmRole::Contributor), at(-9))
        .await;
    env.share(&bob, realm_id, &carol, Some(RealmRole::Reader), at(-8)).await;
    // …but neither grants nor touches management roles.
    assert_bare(
        &env.update_roles(&bob, realm_id, &dave, Some(RealmRole::Manager), at(-7), None)
            .await,
        "not_allowed",
    );
    assert_bare(
        &env.update_roles(&bob, realm_id, &alice, None, at(-7), None).await,
        "not_allowed",
    );
    // An owner does.
    env.share(&alice, realm_id, &dave, Some(RealmRole::Owner), at(-7)).await;
    env.share(&dave, realm_id, &bob, Some(RealmRole::Reader), at(-6)).await;
    // Bob is no manager any more.
    assert_bare(
        &env.update_roles(&bob, realm_id, &carol, None, at(-5), None).await,
        "not_allowed",
    );
}

#[actix_web::test]
async fn downgrades_come_after_the_last_write_and_role_change() {
    let (env, alice) = Env::start().await;
    let bob = env.add_user("bob@dev1", UserProfile::Standard).await;
    let carol = env.add_user("carol@dev1", UserProfile::Standard).await;
    let (realm_id, _) = env.create_realm(&alice).await;
    env.share(&alice, realm_id, &bob, Some(RealmRole::Manager), at(-10))
        .await;

    // Bob writes at +10 s and changes carol's role at +20 s (both in the ballpark).
    let write_t = at(10);
    assert_bare(
        &env.vlob_create(&bob, realm_id, Uuid::new_v4(), write_t, b"x").await,
        "ok",
    );
    let change_t = at(20);
    env.share(&bob, realm_id, &carol, Some(RealmRole::Reader), change_t)
        .await;

    // Losing write access must come after bob's last write.
    let rep = env
        .update_roles(&alice, realm_id, &bob, Some(RealmRole::Reader), at(5), None)
        .await;
    assert_eq!(
        (status(&rep), field(&rep, "strictly_greater_than")),
        ("require_greater_timestamp", &dt(write_t))
    );
    // Losing management must come after bob's last role change.
    let rep = env
        .update_roles(&alice, realm_id, &bob, Some(RealmRole::Contributor), at(15), None)
        .await;
    assert_eq!(
        (status(&rep), field(&rep, "strictly_greater_than")),
        ("require_greater_timestamp", &dt(change_t))
    );
    // An OWNER upgrade has neither constraint.
    env.share(&alice, realm_id, &bob, Some(RealmRole::Owner), at(5)).await;
    // After both, the downgrade goes through.
    env.share(&alice, realm_id, &bob, Some(RealmRole::Reader), at(25)).await;
}

#[actix_web::test]
async fn subscription_realm_set() {
    let (env, alice) = Env::start().await;
    let bob = env.add_user("bob@dev1", UserProfile::Standard).await;
    let (r1, _) = env.create_realm(&alice).await;
    let (r2, _) = env.create_realm(&alice).await;
    let (r3, _) = env.create_realm(&bob).await;
    env.share(&alice, r2, &bob, Some(RealmRole::Reader), at(-4)).await;
    env.share(&alice, r1, &bob, Some(RealmRole::Reader), at(-4)).await;
    env.share(&alice, r1, &bob, None, at(-3)).await;
    let set = realm::realms_for_user(&env.actors, &bob.client).await.unwrap();
    assert_eq!(set, [r2, r3].into_iter().collect());

    // The broker follows role changes: vlob events of r1 reach bob once re-shared.
    let events = env.listen(&bob).await;
    assert_bare(&env.vlob_create(&alice, r1, Uuid::new_v4(), now(), b"x").await, "ok");
    assert!(events.take().await.is_empty());
    env.share(&alice, r1, &bob, Some(RealmRole::Reader), at(-2)).await;
    assert_bare(&env.vlob_create(&alice, r1, Uuid::new_v4(), now(), b"x").await, "ok");
    assert_eq!(events.names().await, ["realm.roles_updated", "realm.vlobs_updated"]);
}
