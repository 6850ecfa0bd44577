//! PKI enrollment (commands.md §11): submission and status over the
//! anonymous route, list / reject / accept by admins, and their events.

use parsec_actors::{anonymous, pki};
use parsec_protocol::cmds::anonymous::{PkiEnrollmentInfo, PkiEnrollmentSubmit};
use parsec_protocol::cmds::authenticated::{PkiEnrollmentAccept, PkiEnrollmentReject};
use parsec_protocol::types::*;
use parsec_protocol::value::{self, Value};

use crate::common::*;

fn submission(enrollment_id: Uuid, der: &[u8], email: Option<&str>, force: bool) -> PkiEnrollmentSubmit {
    PkiEnrollmentSubmit {
        enrollment_id,
        force,
        submitter_der_x509_certificate: der.to_vec(),
        submitter_der_x509_certificate_email: email.map(str::to_string),
        submit_payload_signature: b"signature".to_vec(),
        submit_payload: submit_payload(),
    }
}

impl Env {
    async fn submit(&self, r: PkiEnrollmentSubmit) -> Value {
        pki::submit(&self.actors, &self.org, r).await.unwrap()
    }

    async fn info(&self, enrollment_id: Uuid) -> Value {
        pki::info(&self.actors, &self.org, PkiEnrollmentInfo { enrollment_id })
            .await
            .unwrap()
    }

    async fn list(&self, by: &Dev) -> Value {
        pki::list(&self.actors, &by.client).await.unwrap()
    }

    async fn reject(&self, by: &Dev, enrollment_id: Uuid) -> Value {
        pki::reject(&self.actors, &by.client, PkiEnrollmentReject { enrollment_id })
            .await
            .unwrap()
    }

    async fn accept(&self, by: &Dev, enrollment_id: Uuid, new: &NewUser) -> Value {
        let certs = new.signed(&by.key);
        let r = PkiEnrollmentAccept {
            enrollment_id,
            accepter_der_x509_certificate: b"accepter der".to_vec(),
            accept_payload_signature: b"accept signature".to_vec(),
            accept_payload: accept_payload(),
            user_certificate: certs.user_certificate,
            device_certificate: certs.device_certificate,
            redacted_user_certificate: certs.redacted_user_certificate,
            redacted_device_certificate: certs.redacted_device_certificate,
        };
        pki::accept(&self.actors, &by.client, r).await.unwrap()
    }
}

fn enrollment_status(rep: &Value) -> &str {
    field(rep, "enrollment_status").as_str().unwrap_or("<none>")
}

fn listed(rep: &Value) -> Vec<Value> {
    let items = field(rep, "enrollments").as_array().unwrap();
    items.iter().map(|e| field(e, "enrollment_id").clone()).collect()
}

#[actix_web::test]
async fn submit_over_the_anonymous_route_then_reject() {
    let (env, alice) = Env::start().await;
    let admin_events = env.listen(&alice).await;
    let id = Uuid::new_v4();

    // The wire path: msgpack body on POST /anonymous/<org>.
    let body = value::pack(&value::map([
        ("cmd", Value::from("pki_enrollment_submit")),
        ("enrollment_id", uuid_value(id)),
        ("force", Value::Boolean(false)),
        ("submitter_der_x509_certificate", Value::Binary(b"der 1".to_vec())),
        ("submit_payload_signature", Value::Binary(b"sig".to_vec())),
        ("submit_payload", Value::Binary(submit_payload())),
    ]));
    let reply = anonymous::post(&env.actors, "CoolOrg", &body).await;
    assert_eq!(reply.status, 200);
    let rep = value::unpack_map(&reply.body).map(Value::Map).unwrap();
    assert_eq!(status(&rep), "ok", "{rep:?}");
    let submitted_on = datetime(&rep, "submitted_on");
    assert_eq!(admin_events.take().await, ["pki_enrollment.updated"]);

    let body = value::pack(&value::map([
        ("cmd", Value::from("pki_enrollment_info")),
        ("enrollment_id", uuid_value(id)),
    ]));
    let reply = anonymous::post(&env.actors, "CoolOrg", &body).await;
    let rep = value::unpack_map(&reply.body).map(Value::Map).unwrap();
    assert_eq!((status(&rep), enrollment_status(&rep)), ("ok", "SUBMITTED"), "{rep:?}");
    assert_eq!(datetime(&rep, "submitted_on"), submitted_on);

    let rep = env.list(&alice).await;
    assert_eq!(listed(&rep), [uuid_value(id)]);
    let item = &field(&rep, "enrollments").as_array().unwrap()[0];
    assert_eq!(
        field(item, "submitter_der_x509_certificate"),
        &Value::Binary(b"der 1".to_vec())
    );
    assert_eq!(field(item, "submit_payload"), &Value::Binary(submit_payload()));
    assert_eq!(field(item, "submit_payload_signature"), &Value::Binary(b"sig".to_vec()));
    assert_eq!(datetime(item, "submitted_on"), submitted_on);

    let rep = env.reject(&alice, id).await;
    assert_eq!(rep, Value::Map(vec![(Value::from("status"), Value::from("ok"))]));
    assert_eq!(admin_events.take().await, ["pki_enrollment.updated"]);
    let rep = env.info(id).await;
    assert_eq!(enrollment_status(&rep), "REJECTED");
    assert!(datetime(&rep, "rejected_on") >= submitted_on);
    assert!(listed(&env.list(&alice).await).is_empty());
    assert_reason(&env.reject(&alice, id).await, "no_longer_available", "");
    assert_reason(&env.reject(&alice, Uuid::new_v4()).await, "not_found", "");
    assert_reason(&env.info(Uuid::new_v4()).await, "not_found", "");

    // A rejected certificate may be submitted again.
    assert_eq!(
        status(&env.submit(submission(Uuid::new_v4(), b"der 1", None, false)).await),
        "ok"
    );
}

#[actix_web::test]
async fn payloads_must_decode() {
    let (env, alice) = Env::start().await;
    let mut r = submission(Uuid::new_v4(), b"der", None, false);
    r.submit_payload = b"not zlib".to_vec();
    assert_eq!(status(&env.submit(r).await), "invalid_payload_data");
    let mut r = submission(Uuid::new_v4(), b"der", None, false);
    r.submit_payload = accept_payload();
    let rep = env.submit(r).await;
    assert_eq!(status(&rep), "invalid_payload_data");
    assert!(reason(&rep).contains("type"), "{rep:?}");
    let mut r = submission(Uuid::new_v4(), b"der", None, false);
    r.submit_payload = zip(value::map([("type", Value::from("pki_enrollment_submit_payload"))]));
    let rep = env.submit(r).await;
    assert!(reason(&rep).contains("verify_key"), "{rep:?}");
    assert!(listed(&env.list(&alice).await).is_empty());

    let id = Uuid::new_v4();
    assert_eq!(status(&env.submit(submission(id, b"der", None, false)).await), "ok");
    let new = NewUser::new(
        &alice,
        "zack@laptop",
        human("zack@example.com", "Zack"),
        UserProfile::Standard,
    );
    let certs = new.signed(&alice.key);
    let r = PkiEnrollmentAccept {
        enrollment_id: id,
        accepter_der_x509_certificate: vec![],
        accept_payload_signature: vec![],
        accept_payload: submit_payload(),
        user_certificate: certs.user_certificate,
        device_certificate: certs.device_certificate,
        redacted_user_certificate: certs.redacted_user_certificate,
        redacted_device_certificate: certs.redacted_device_certificate,
    };
    let rep = pki::accept(&env.actors, &alice.client, r).await.unwrap();
    assert_eq!(status(&rep), "invalid_payload_data", "{rep:?}");
    assert_eq!(enrollment_status(&env.info(id).await), "SUBMITTED");
}

#[actix_web::test]
async fn one_pending_enrollment_per_certificate() {
    let (env, alice) = Env::start().await;
    let events = env.listen(&alice).await;
    let first = Uuid::new_v4();
    let rep = env.submit(submission(first, b"der", None, false)).await;
    let first_on = datetime(&rep, "submitted_on");

    // The id is the client's: reuse is refused, whatever the certificate.
    assert_bare(
        &env.submit(submission(first, b"other der", None, true)).await,
        "enrollment_id_already_used",
    );

    // Same certificate: refused with the pending one's date, unless forced.
    let rep = env.submit(submission(Uuid::new_v4(), b"der", None, false)).await;
    assert_eq!(status(&rep), "already_submitted");
    assert_eq!(datetime(&rep, "submitted_on"), first_on);
    assert!(!has_field(&rep, "reason"));
    assert_eq!(events.take().await, ["pki_enrollment.updated"]);

    let second = Uuid::new_v4();
    let rep = env.submit(submission(second, b"der", None, true)).await;
    assert_eq!(status(&rep), "ok");
    // One event for the cancellation, one for the submission.
    assert_eq!(
        events.take().await,
        ["pki_enrollment.updated", "pki_enrollment.updated"]
    );
    let info = env.info(first).await;
    assert_eq!(enrollment_status(&info), "CANCELLED");
    assert_eq!(datetime(&info, "cancelled_on"), datetime(&rep, "submitted_on"));
    assert_eq!(listed(&env.list(&alice).await), [uuid_value(second)]);
}

#[actix_web::test]
async fn email_of_a_user_without_revocation_is_taken() {
    let (env, alice) = Env::start().await;
    assert_bare(
        &env.submit(submission(Uuid::new_v4(), b"der", Some("alice@example.com"), false))
            .await,
        "email_already_used",
    );
    // A refused forced submission leaves the pending one alone.
    let pending = Uuid::new_v4();
    assert_eq!(
        status(&env.submit(submission(pending, b"der", None, false)).await),
        "ok"
    );
    assert_bare(
        &env.submit(submission(Uuid::new_v4(), b"der", Some("alice@example.com"), true))
            .await,
        "email_already_used",
    );
    assert_eq!(enrollment_status(&env.info(pending).await), "SUBMITTED");

    // Exact match only; empty means not given.
    assert_eq!(
        status(
            &env.submit(submission(Uuid::new_v4(), b"d2", Some("ALICE@example.com"), false))
                .await
        ),
        "ok"
    );
    assert_eq!(
        status(&env.submit(submission(Uuid::new_v4(), b"d3", Some(""), false)).await),
        "ok"
    );

    // Any revocation frees it, even one taking effect later.
    let bob = env
        .create_user(
            &alice,
            "bob@laptop",
            human("bob@example.com", "Bob"),
            UserProfile::Standard,
        )
        .await;
    assert_bare(
        &env.submit(submission(Uuid::new_v4(), b"d4", Some("bob@example.com"), false))
            .await,
        "email_already_used",
    );
    assert_eq!(status(&env.revoke(&alice, &bob.user_id(), at(30)).await), "ok");
    assert_eq!(
        status(
            &env.submit(submission(Uuid::new_v4(), b"d4", Some("bob@example.com"), false))
                .await
        ),
        "ok"
    );
}

#[actix_web::test]
async fn accept_creates_the_user() {
    let (env, alice) = Env::start().await;
    let events = env.listen(&alice).await;
    let id = Uuid::new_v4();
    env.submit(submission(id, b"zack der", Some("zack@example.com"), false))
        .await;
    events.take().await;

    let new = NewUser::new(
        &alice,
        "zack@laptop",
        human("zack@example.com", "Zack"),
        UserProfile::Standard,
    );
    let rep = env.accept(&alice, id, &new).await;
    assert_eq!(rep, Value::Map(vec![(Value::from("status"), Value::from("ok"))]));
    assert_eq!(events.take().await, ["pki_enrollment.updated"]);

    let info = env.info(id).await;
    assert_eq!(enrollment_status(&info), "ACCEPTED", "{info:?}");
    assert_eq!(
        field(&info, "accepter_der_x509_certificate"),
        &Value::Binary(b"accepter der".to_vec())
    );
    assert_eq!(
        field(&info, "accept_payload_signature"),
        &Value::Binary(b"accept signature".to_vec())
    );
    assert_eq!(field(&info, "accept_payload"), &Value::Binary(accept_payload()));
    assert!(datetime(&info, "accepted_on") >= datetime(&info, "submitted_on"));
    assert!(listed(&env.list(&alice).await).is_empty());

    // The user exists, with its device key.
    let zack = env.dev(new.device.device_id.clone(), UserProfile::Standard, new.key.clone());
    assert_eq!(status(&env.user_get(&zack, &zack.user_id()).await), "ok");

    // Done once.
    assert_reason(&env.accept(&alice, id, &new).await, "no_longer_available", "");
    assert_reason(&env.reject(&alice, id).await, "no_longer_available", "");

    // The certificate is enrolled while its user has no revocation.
    assert_bare(
        &env.submit(submission(Uuid::new_v4(), b"zack der", None, false)).await,
        "already_enrolled",
    );
    assert_eq!(status(&env.revoke(&alice, &zack.user_id(), at(30)).await), "ok");
    assert_eq!(
        status(&env.submit(submission(Uuid::new_v4(), b"zack der", None, false)).await),
        "ok"
    );
}

#[actix_web::test]
async fn accept_refusals() {
    let (env, alice) = Env::start_with(Some(3), true).await;
    let bob = env
        .create_user(
            &alice,
            "bob@laptop",
            human("bob@example.com", "Bob"),
            UserProfile::Standard,
        )
        .await;
    let id = Uuid::new_v4();
    env.submit(submission(id, b"der", None, false)).await;
    let zack = || {
        NewUser::new(
            &alice,
            "zack@laptop",
            human("zack@example.com", "Zack"),
            UserProfile::Standard,
        )
    };

    // Certificates as in user_create, before the enrollment is looked at.
    let rep = env.accept(&alice, Uuid::new_v4(), &zack().at(at(-100))).await;
    assert_reason(&rep, "invalid_certification", "Invalid timestamp in certificate.");
    let mut bad = zack();
    bad.redacted_user.human_handle = bad.user.human_handle.clone();
    assert_eq!(status(&env.accept(&alice, Uuid::new_v4(), &bad).await), "invalid_data");
    let mut certs = zack().signed(&new_key());
    certs.user_certificate.truncate(10);
    let r = PkiEnrollmentAccept {
        enrollment_id: id,
        accepter_der_x509_certificate: vec![],
        accept_payload_signature: vec![],
        accept_payload: accept_payload(),
        user_certificate: certs.user_certificate,
        device_certificate: certs.device_certificate,
        redacted_user_certificate: certs.redacted_user_certificate,
        redacted_device_certificate: certs.redacted_device_certificate,
    };
    let rep = pki::accept(&env.actors, &alice.client, r).await.unwrap();
    assert_reason(
        &rep,
        "invalid_certification",
        "Invalid certification data (Signature was forged or corrupt).",
    );

    assert_reason(&env.accept(&alice, Uuid::new_v4(), &zack()).await, "not_found", "");

    // User creation refusals: no reason at all for the limit, an empty one
    // for existing users (unlike user_create).
    let taken_id = NewUser::new(&alice, "bob@phone", None, UserProfile::Standard);
    assert_reason(&env.accept(&alice, id, &taken_id).await, "already_exists", "");
    let taken_email = NewUser::new(
        &alice,
        "bobby@phone",
        human("bob@example.com", "B"),
        UserProfile::Standard,
    );
    assert_reason(&env.accept(&alice, id, &taken_email).await, "already_exists", "");
    env.create_user(&alice, "carol@laptop", None, UserProfile::Standard)
        .await;
    assert_bare(&env.accept(&alice, id, &zack()).await, "active_users_limit_reached");
    // Still pending after all that.
    assert_eq!(enrollment_status(&env.info(id).await), "SUBMITTED");

    // ADMIN only.
    for rep in [
        env.list(&bob).await,
        env.reject(&bob, id).await,
        env.accept(
            &bob,
            id,
            &NewUser::new(&bob, "zack@laptop", None, UserProfile::Standard),
        )
        .await,
    ] {
        assert_reason(&rep, "not_allowed", "User `bob` is not admin");
    }
}

/// Submissions of one certificate racing each other (on PostgreSQL, possibly
/// through several server instances): exactly one is pending afterwards.
#[actix_web::test]
async fn concurrent_submissions_of_one_certificate() {
    let (env, alice) = Env::start().await;
    let tasks: Vec<_> = (0..6)
        .map(|_| {
            let (actors, org) = (env.actors.clone(), env.org.clone());
            let r = submission(Uuid::new_v4(), b"racing der", None, false);
            actix_web::rt::spawn(async move { pki::submit(&actors, &org, r).await.unwrap() })
        })
        .collect();
    let mut statuses = Vec::new();
    for task in tasks {
        statuses.push(status(&task.await.unwrap()).to_string());
    }
    statuses.sort();
    assert_eq!(
        statuses,
        ["already_submitted"; 5].into_iter().chain(["ok"]).collect::<Vec<_>>()
    );
    assert_eq!(listed(&env.list(&alice).await).len(), 1);
}

/// An acceptance and a rejection of one enrollment racing: one of them
/// wins, the other finds it no longer available, and the outcome is whole.
#[actix_web::test]
async fn accept_and_reject_race() {
    let (env, alice) = Env::start().await;
    let id = Uuid::new_v4();
    env.submit(submission(id, b"der", None, false)).await;
    let new = NewUser::new(
        &alice,
        "zack@laptop",
        human("zack@example.com", "Zack"),
        UserProfile::Standard,
    );
    let (accepted, rejected) = futures_util::join!(env.accept(&alice, id, &new), env.reject(&alice, id));
    let zack = env.dev(new.device.device_id.clone(), UserProfile::Standard, new.key.clone());
    let user = env.user_get(&alice, &zack.user_id()).await;
    match (status(&accepted), status(&rejected)) {
        ("ok", "no_longer_available") => {
            assert_eq!(enrollment_status(&env.info(id).await), "ACCEPTED");
            assert_eq!(status(&user), "ok");
        }
        ("no_longer_available", "ok") => {
            assert_eq!(enrollment_status(&env.info(id).await), "REJECTED");
            assert_eq!(status(&user), "not_found", "{user:?}");
        }
        other => panic!("{other:?}: {accepted:?} {rejected:?}"),
    }
}
