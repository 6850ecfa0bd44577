//! `user_revoke` (commands.md §3.3): checks, effect, closing connections.

use parsec_actors::backend::UserLookupError;
use parsec_actors::user::GetHandshakeIdentity;
use parsec_protocol::cmds::authenticated as req;
use parsec_protocol::types::*;
use parsec_protocol::value::Value;

use crate::common::*;

/// Whether the handshake would now refuse the device as revoked.
async fn refused_at_handshake(env: &Env, dev: &Dev) -> bool {
    let msg = GetHandshakeIdentity {
        org: env.org.clone(),
        device_id: dev.device_id(),
    };
    match env.actors.user.send(msg).await.unwrap() {
        Ok(id) => id.is_revoked(DateTime::now()),
        Err(UserLookupError::NotFound) => panic!("device not found"),
        Err(UserLookupError::Internal(e)) => panic!("{e}"),
    }
}

#[actix_web::test]
async fn revoking_closes_the_users_connections() {
    let (env, alice) = Env::start().await;
    let bob = env
        .create_user(
            &alice,
            "bob@laptop",
            human("bob@example.com", "Bob"),
            UserProfile::Standard,
        )
        .await;
    let carol = env
        .create_user(&alice, "carol@laptop", None, UserProfile::Standard)
        .await;
    let bob_events = env.listen(&bob).await;
    let bob_again = env.listen(&env.reconnect(&bob)).await;
    let carol_events = env.listen(&carol).await;
    let alice_events = env.listen(&alice).await;

    let t = at(-1);
    let cert = alice.revoked_cert(&bob.user_id(), t);
    let r = req::UserRevoke {
        revoked_user_certificate: cert.clone(),
    };
    let rep = parsec_actors::user::revoke(&env.actors, &alice.client, r)
        .await
        .unwrap();
    assert_eq!(rep, Value::Map(vec![(Value::from("status"), Value::from("ok"))]));

    // Every connection of bob is closed, nobody else's.
    assert_eq!(bob_events.take().await, ["<close>"]);
    assert_eq!(bob_again.take().await, ["<close>"]);
    assert!(carol_events.take().await.is_empty());
    assert!(alice_events.take().await.is_empty());
    assert!(refused_at_handshake(&env, &bob).await);
    assert!(!refused_at_handshake(&env, &carol).await);

    // The certificate as received, visible to everyone, never redacted.
    let rep = env.user_get(&carol, &bob.user_id()).await;
    assert_eq!(field(&rep, "revoked_user_certificate"), &Value::Binary(cert.clone()));
    let outsider = env.create_user(&alice, "otto@pc", None, UserProfile::Outsider).await;
    let rep = env.user_get(&outsider, &bob.user_id()).await;
    assert_eq!(field(&rep, "revoked_user_certificate"), &Value::Binary(cert));

    // Twice is an error.
    assert_reason(
        &env.revoke(&alice, &bob.user_id(), now()).await,
        "already_revoked",
        "User `bob` already revoked",
    );
}

#[actix_web::test]
async fn revocation_takes_effect_at_the_certificate_timestamp() {
    let (env, alice) = Env::start().await;
    let bob = env.create_user(&alice, "bob@laptop", None, UserProfile::Standard).await;
    let bob_events = env.listen(&bob).await;
    assert_eq!(status(&env.revoke(&alice, &bob.user_id(), at(40)).await), "ok");
    // Live connections go at once; new ones are still accepted until then.
    assert_eq!(bob_events.take().await, ["<close>"]);
    assert!(!refused_at_handshake(&env, &bob).await);
    // Already revoked all the same.
    assert_eq!(
        status(&env.revoke(&alice, &bob.user_id(), now()).await),
        "already_revoked"
    );
}

#[actix_web::test]
async fn refusals_in_reference_order() {
    let (env, alice) = Env::start().await;
    let bob = env.create_user(&alice, "bob@laptop", None, UserProfile::Standard).await;
    let dave = env.create_user(&alice, "dave@laptop", None, UserProfile::Admin).await;
    let outsider = env
        .create_user(&alice, "otto@laptop", None, UserProfile::Outsider)
        .await;

    // Profile first.
    for dev in [&bob, &outsider] {
        let rep = env.revoke(dev, &dave.user_id(), now()).await;
        assert_reason(&rep, "not_allowed", &format!("User `{}` is not admin", dev.user_id()));
    }

    // Signature and author.
    let forged = dave.revoked_cert(&bob.user_id(), now());
    let r = req::UserRevoke {
        revoked_user_certificate: forged,
    };
    let rep = parsec_actors::user::revoke(&env.actors, &alice.client, r)
        .await
        .unwrap();
    assert_reason(
        &rep,
        "invalid_certification",
        "Invalid certification data (Signature was forged or corrupt).",
    );
    let mut wrong_author = env.reconnect(&alice);
    wrong_author.client.device_id = DeviceId::parse("alice@dev2").unwrap();
    let r = req::UserRevoke {
        revoked_user_certificate: alice.revoked_cert(&bob.user_id(), now()),
    };
    let rep = parsec_actors::user::revoke(&env.actors, &wrong_author.client, r)
        .await
        .unwrap();
    assert_reason(
        &rep,
        "invalid_certification",
        "Invalid certification data (Invalid author: expected `alice@dev2`, got `alice@dev1`).",
    );

    // Ballpark, before self-revocation and existence.
    for t in [at(-71), at(51)] {
        let rep = env.revoke(&alice, &alice.user_id(), t).await;
        assert_reason(&rep, "invalid_certification", "Invalid timestamp in certification.");
    }
    assert_reason(
        &env.revoke(&alice, &alice.user_id(), now()).await,
        "not_allowed",
        "Cannot do self-revocation",
    );
    assert_bare(
        &env.revoke(&alice, &UserId::parse("nobody").unwrap(), now()).await,
        "not_found",
    );

    // Another admin may revoke an admin.
    assert_eq!(status(&env.revoke(&alice, &dave.user_id(), now()).await), "ok");
    assert!(refused_at_handshake(&env, &dave).await);
}

#[actix_web::test]
async fn trustchain_carries_revocations() {
    let (env, alice) = Env::start().await;
    let dave = env.create_user(&alice, "dave@laptop", None, UserProfile::Admin).await;
    let erin = env.create_user(&dave, "erin@laptop", None, UserProfile::Standard).await;
    let revocation = alice.revoked_cert(&dave.user_id(), at(-1));
    let r = req::UserRevoke {
        revoked_user_certificate: revocation.clone(),
    };
    let rep = parsec_actors::user::revoke(&env.actors, &alice.client, r)
        .await
        .unwrap();
    assert_eq!(status(&rep), "ok");

    // erin was certified by dave, now revoked: the client needs dave's
    // revocation to judge erin's certificates.
    let rep = env.user_get(&alice, &erin.user_id()).await;
    let trustchain = field(&rep, "trustchain");
    assert_eq!(
        field(trustchain, "revoked_users"),
        &Value::Array(vec![Value::Binary(revocation)])
    );
    assert_eq!(field(trustchain, "users").as_array().unwrap().len(), 2);
    assert_eq!(field(trustchain, "devices").as_array().unwrap().len(), 2);
}

/// Handshake lookups sent together (on PostgreSQL they go in groups: one
/// statement for many) each get the identity, or the refusal, they would
/// get alone.
#[actix_web::test]
async fn handshake_lookups_sent_together_get_their_own_outcomes() {
    let (env, alice) = Env::start().await;
    let bob = env
        .create_user(
            &alice,
            "bob@laptop",
            human("bob@example.com", "Bob"),
            UserProfile::Standard,
        )
        .await;
    let carol = env
        .create_user(&alice, "carol@laptop", None, UserProfile::Outsider)
        .await;
    assert_eq!(status(&env.revoke(&alice, &carol.user_id(), at(-1)).await), "ok");
    let other_org = OrganizationId::parse("NoSuchOrg").unwrap();
    let unknown_device = DeviceId::parse("bob@phone").unwrap();
    // (organization, device, expected user and profile, revoked; None: not found)
    type Case = (OrganizationId, DeviceId, Option<(UserId, UserProfile, bool)>);
    let mut cases: Vec<Case> = Vec::new();
    for _ in 0..4 {
        cases.push((
            env.org.clone(),
            alice.device_id(),
            Some((alice.user_id(), UserProfile::Admin, false)),
        ));
        cases.push((
            env.org.clone(),
            bob.device_id(),
            Some((bob.user_id(), UserProfile::Standard, false)),
        ));
        cases.push((
            env.org.clone(),
            carol.device_id(),
            Some((carol.user_id(), UserProfile::Outsider, true)),
        ));
        cases.push((env.org.clone(), unknown_device.clone(), None));
        cases.push((other_org.clone(), alice.device_id(), None));
    }
    let lookups = cases.iter().map(|(org, device_id, _)| {
        env.actors.user.send(GetHandshakeIdentity {
            org: org.clone(),
            device_id: device_id.clone(),
        })
    });
    let outcomes = futures_util::future::join_all(lookups).await;
    for ((_, device_id, expected), outcome) in cases.iter().zip(outcomes) {
        match (expected, outcome.unwrap()) {
            (Some((user_id, profile, revoked)), Ok(id)) => {
                assert_eq!(&id.device_id, device_id);
                assert_eq!(&id.user_id, user_id);
                assert_eq!(id.profile, *profile);
                assert_eq!(id.is_revoked(DateTime::now()), *revoked);
            }
            (None, Err(UserLookupError::NotFound)) => {}
            (expected, outcome) => panic!("{device_id}: expected {expected:?}, got {outcome:?}"),
        }
    }
    let bob_id = env
        .actors
        .user
        .send(GetHandshakeIdentity {
            org: env.org.clone(),
            device_id: bob.device_id(),
        })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(bob_id.human_handle, human("bob@example.com", "Bob"));
}
