//! `user_create` (commands.md §3.2) and `user_get` of created users.

use parsec_actors::backend::OrganizationPatch;
use parsec_actors::organization::UpdateOrganization;
use parsec_protocol::types::*;
use parsec_protocol::value::Value;

use crate::common::*;

#[actix_web::test]
async fn create_user_then_get_it() {
    let (env, alice) = Env::start().await;
    let new = NewUser::new(
        &alice,
        "bob@laptop",
        human("bob@example.com", "Bob"),
        UserProfile::Standard,
    );
    let signed = new.signed(&alice.key);
    let rep = env.user_create(&alice, signed.clone()).await;
    assert_eq!(rep, Value::Map(vec![(Value::from("status"), Value::from("ok"))]));

    // Certificates are stored byte-for-byte, redacted ones for OUTSIDERs.
    let bob = env.dev(new.device.device_id.clone(), UserProfile::Standard, new.key);
    let rep = env.user_get(&bob, &bob.user_id()).await;
    assert_eq!(status(&rep), "ok", "{rep:?}");
    assert_eq!(
        field(&rep, "user_certificate"),
        &Value::Binary(signed.user_certificate.clone())
    );
    assert_eq!(field(&rep, "revoked_user_certificate"), &Value::Nil);
    assert_eq!(
        field(&rep, "device_certificates"),
        &Value::Array(vec![Value::Binary(signed.device_certificate.clone())])
    );
    // Trustchain: alice's device and user certificates (she certified bob).
    let trustchain = field(&rep, "trustchain");
    assert_eq!(field(trustchain, "devices").as_array().unwrap().len(), 1);
    assert_eq!(field(trustchain, "users").as_array().unwrap().len(), 1);
    assert_eq!(field(trustchain, "revoked_users"), &Value::Array(vec![]));

    let carol = env.create_user(&alice, "carol@pc", None, UserProfile::Outsider).await;
    let rep = env.user_get(&carol, &bob.user_id()).await;
    assert_eq!(
        field(&rep, "user_certificate"),
        &Value::Binary(signed.redacted_user_certificate)
    );
    assert_eq!(
        field(&rep, "device_certificates"),
        &Value::Array(vec![Value::Binary(signed.redacted_device_certificate)])
    );

    // The new device's key is the one the server now trusts for it: an
    // ADMIN created through user_create can create users in turn.
    let dave = env.create_user(&alice, "dave@pc", None, UserProfile::Admin).await;
    env.create_user(&dave, "erin@pc", None, UserProfile::Standard).await;
    let rep = env.user_get(&alice, &UserId::parse("erin").unwrap()).await;
    let trustchain = field(&rep, "trustchain");
    // dave (certifier) and alice (dave's certifier).
    assert_eq!(field(trustchain, "devices").as_array().unwrap().len(), 2);
    assert_eq!(field(trustchain, "users").as_array().unwrap().len(), 2);
}

#[actix_web::test]
async fn only_admins_create_users() {
    let (env, alice) = Env::start().await;
    let bob = env.create_user(&alice, "bob@laptop", None, UserProfile::Standard).await;
    let carol = env
        .create_user(&alice, "carol@laptop", None, UserProfile::Outsider)
        .await;
    for dev in [&bob, &carol] {
        let new = NewUser::new(dev, "zed@pc", None, UserProfile::Standard);
        let rep = env.user_create(dev, new.signed(&dev.key)).await;
        let expected = format!("User `{}` is not admin", dev.user_id());
        assert_reason(&rep, "not_allowed", &expected);
    }
}

#[actix_web::test]
async fn any_profile_may_be_granted_whatever_the_organization_says() {
    // 2.10 does not enforce `user_profile_outsider_allowed` on creation.
    let (env, alice) = Env::start_with(None, false).await;
    env.create_user(&alice, "carol@pc", None, UserProfile::Outsider).await;
    env.create_user(&alice, "dave@pc", None, UserProfile::Admin).await;
}

#[actix_web::test]
async fn certificates_must_be_signed_by_the_requesting_device() {
    let (env, alice) = Env::start().await;
    let new = NewUser::new(&alice, "bob@laptop", None, UserProfile::Standard);

    // Another key.
    let rep = env.user_create(&alice, new.signed(&new_key())).await;
    assert_reason(
        &rep,
        "invalid_certification",
        "Invalid certification data (Signature was forged or corrupt).",
    );

    // One certificate of four forged.
    let mut signed = new.signed(&alice.key);
    signed.redacted_device_certificate[70] ^= 1;
    let rep = env.user_create(&alice, signed).await;
    assert_reason(
        &rep,
        "invalid_certification",
        "Invalid certification data (Signature was forged or corrupt).",
    );

    // Another author.
    let mut other = NewUser::new(&alice, "bob@laptop", None, UserProfile::Standard);
    other.user.author = Some(DeviceId::parse("zed@pc").unwrap());
    let rep = env.user_create(&alice, other.signed(&alice.key)).await;
    assert_reason(
        &rep,
        "invalid_certification",
        "Invalid certification data (Invalid author: expected `alice@dev1`, got `zed@pc`).",
    );

    // Garbage.
    let mut signed = new.signed(&alice.key);
    signed.user_certificate = b"garbage".to_vec();
    let rep = env.user_create(&alice, signed).await;
    assert_eq!(status(&rep), "invalid_certification", "{rep:?}");
    assert!(!reason(&rep).contains("timestamp"), "{rep:?}");
}

#[actix_web::test]
async fn timestamps() {
    let (env, alice) = Env::start().await;
    for t in [at(-71), at(51)] {
        let new = NewUser::new(&alice, "bob@laptop", None, UserProfile::Standard).at(t);
        let rep = env.user_create(&alice, new.signed(&alice.key)).await;
        // The client reads "timestamp" in it as a clock drift.
        assert_reason(&rep, "invalid_certification", "Invalid timestamp in certificate.");
    }

    // Different timestamps are refused before the ballpark is looked at.
    let mut new = NewUser::new(&alice, "bob@laptop", None, UserProfile::Standard).at(at(-300));
    new.device.timestamp = at(-299);
    new.redacted_device.timestamp = new.device.timestamp;
    let rep = env.user_create(&alice, new.signed(&alice.key)).await;
    assert_reason(
        &rep,
        "invalid_data",
        "Device and User certificates must have the same timestamp.",
    );

    // Within the ballpark, either way.
    let new = NewUser::new(&alice, "bob@laptop", None, UserProfile::Standard).at(at(-60));
    assert_eq!(status(&env.user_create(&alice, new.signed(&alice.key)).await), "ok");
    let new = NewUser::new(&alice, "carol@laptop", None, UserProfile::Standard).at(at(40));
    assert_eq!(status(&env.user_create(&alice, new.signed(&alice.key)).await), "ok");
}

#[actix_web::test]
async fn certificates_must_agree() {
    let (env, alice) = Env::start().await;
    let create = |new: NewUser| {
        let signed = new.signed(&alice.key);
        let env = &env;
        let alice = &alice;
        async move { env.user_create(alice, signed).await }
    };
    let base = || {
        NewUser::new(
            &alice,
            "bob@laptop",
            human("bob@example.com", "Bob"),
            UserProfile::Standard,
        )
    };

    let mut new = base();
    new.device.device_id = DeviceId::parse("zed@laptop").unwrap();
    new.redacted_device.device_id = new.device.device_id.clone();
    assert_reason(
        &create(new).await,
        "invalid_data",
        "Device and User must have the same user ID.",
    );

    let mut new = base();
    new.redacted_user.public_key = [9; 32];
    assert_reason(
        &create(new).await,
        "invalid_data",
        "Redacted User certificate differs from User certificate.",
    );

    let mut new = base();
    new.redacted_user.profile = UserProfile::Admin;
    assert_reason(
        &create(new).await,
        "invalid_data",
        "Redacted User certificate differs from User certificate.",
    );

    let mut new = base();
    new.redacted_user.human_handle = new.user.human_handle.clone();
    assert_reason(
        &create(new).await,
        "invalid_data",
        "Redacted User certificate must not contain a human_handle field.",
    );

    let mut new = base();
    new.redacted_device.verify_key = [9; 32];
    assert_reason(
        &create(new).await,
        "invalid_data",
        "Redacted Device certificate differs from Device certificate.",
    );

    let mut new = base();
    new.redacted_device.device_label = new.device.device_label.clone();
    assert_reason(
        &create(new).await,
        "invalid_data",
        "Redacted Device certificate must not contain a device_label field.",
    );

    // Without human handle nor label, full and redacted may be the same bytes.
    let new = NewUser::new(&alice, "bob@laptop", None, UserProfile::Standard);
    let mut signed = new.signed(&alice.key);
    signed.redacted_user_certificate = signed.user_certificate.clone();
    let mut device = new.device.clone();
    device.device_label = None;
    signed.device_certificate = sign_with(&alice.key, parsec_protocol::certif::build::device(&device));
    signed.redacted_device_certificate = signed.device_certificate.clone();
    assert_eq!(status(&env.user_create(&alice, signed).await), "ok");
}

#[actix_web::test]
async fn user_ids_and_humans_are_unique() {
    let (env, alice) = Env::start().await;
    let bob = env
        .create_user(
            &alice,
            "bob@laptop",
            human("bob@example.com", "Bob"),
            UserProfile::Standard,
        )
        .await;

    // Same user id (another device name), even once revoked.
    let new = NewUser::new(&alice, "bob@other", None, UserProfile::Standard);
    assert_reason(
        &env.user_create(&alice, new.signed(&alice.key)).await,
        "already_exists",
        "User `bob` already exists",
    );

    // Same e-mail, another label: the e-mail identifies the human.
    let new = NewUser::new(
        &alice,
        "bob2@laptop",
        human("bob@example.com", "Robert"),
        UserProfile::Standard,
    );
    let signed = new.signed(&alice.key);
    assert_reason(
        &env.user_create(&alice, signed.clone()).await,
        "already_exists",
        "Human handle `Robert <bob@example.com>` already corresponds to a non-revoked user",
    );

    // A revocation taking effect later still holds the e-mail...
    assert_eq!(status(&env.revoke(&alice, &bob.user_id(), at(30)).await), "ok");
    assert_eq!(status(&env.user_create(&alice, signed).await), "already_exists");
    let new = NewUser::new(&alice, "bob@other", None, UserProfile::Standard);
    assert_eq!(
        status(&env.user_create(&alice, new.signed(&alice.key)).await),
        "already_exists"
    );

    // ...and frees it once in effect.
    let (env, alice) = Env::start().await;
    let bob = env
        .create_user(
            &alice,
            "bob@laptop",
            human("bob@example.com", "Bob"),
            UserProfile::Standard,
        )
        .await;
    assert_eq!(status(&env.revoke(&alice, &bob.user_id(), at(-1)).await), "ok");
    env.create_user(
        &alice,
        "bob2@laptop",
        human("bob@example.com", "Robert"),
        UserProfile::Standard,
    )
    .await;
    // The user id stays taken.
    let new = NewUser::new(&alice, "bob@other", None, UserProfile::Standard);
    assert_eq!(
        status(&env.user_create(&alice, new.signed(&alice.key)).await),
        "already_exists"
    );
}

#[actix_web::test]
async fn active_users_limit() {
    let (env, alice) = Env::start_with(Some(2), true).await;
    let bob = env.create_user(&alice, "bob@laptop", None, UserProfile::Standard).await;

    // No reason; checked before the user id.
    let new = NewUser::new(&alice, "carol@laptop", None, UserProfile::Standard);
    let signed = new.signed(&alice.key);
    assert_bare(
        &env.user_create(&alice, signed.clone()).await,
        "active_users_limit_reached",
    );
    let new = NewUser::new(&alice, "bob@other", None, UserProfile::Standard);
    assert_bare(
        &env.user_create(&alice, new.signed(&alice.key)).await,
        "active_users_limit_reached",
    );

    // A revoked user frees its seat, even before the revocation takes
    // effect (PG counts users with no revocation).
    assert_eq!(status(&env.revoke(&alice, &bob.user_id(), at(30)).await), "ok");
    assert_eq!(status(&env.user_create(&alice, signed).await), "ok");

    // Raising the limit through the admin API is seen at once.
    let new = NewUser::new(&alice, "dave@laptop", None, UserProfile::Standard);
    let signed = new.signed(&alice.key);
    assert_bare(
        &env.user_create(&alice, signed.clone()).await,
        "active_users_limit_reached",
    );
    let patch = OrganizationPatch {
        active_users_limit: Some(None),
        ..Default::default()
    };
    env.actors
        .organization
        .send(UpdateOrganization {
            id: env.org.clone(),
            patch,
        })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status(&env.user_create(&alice, signed).await), "ok");
}

#[actix_web::test]
async fn user_get_unknown_user() {
    let (env, alice) = Env::start().await;
    assert_bare(
        &env.user_get(&alice, &UserId::parse("nobody").unwrap()).await,
        "not_found",
    );
}
