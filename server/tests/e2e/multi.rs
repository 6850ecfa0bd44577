//! Two server instances on one PostgreSQL database behave as one server:
//! an event caused through one reaches a client of the other, and an
//! invitation greeted on one is claimed on the other. Runs in the PostgreSQL
//! pass of `scripts/test.sh` (`PARSEC_TEST_DB=postgresql`); there is nothing to
//! share in the in-memory pass, where it returns at once.

use std::time::Duration;

use parsec_actors::backend::postgres::{start_actors_on_database, test_database_url};
use parsec_protocol::types::*;
use parsec_protocol::value::{self, Value};

use crate::common::*;

fn settings() -> parsec_actors::Settings {
    parsec_actors::Settings {
        administration_token: TOKEN.into(),
        spontaneous_organization_bootstrap: false,
        organization_initial_active_users_limit: None,
        organization_initial_user_profile_outsider_allowed: true,
        email: Default::default(),
        backend_addr: Default::default(),
    }
}

/// A server instance on the shared database `url`.
async fn instance(url: &str) -> TestServer {
    start_server_with(start_actors_on_database(url, settings()).await).await
}

fn bin(v: &[u8]) -> Value {
    Value::Binary(v.to_vec())
}

async fn login_as(server: &TestServer, org: &Org, device: &Device) -> WsClient {
    let rvk = org.root.verifying_key().to_bytes();
    try_login(server, &org.id, &device.device_id, &device.signing_key, &rvk)
        .await
        .expect("login")
}

/// A new device of Alice (events skip their author device), logged in on
/// `server` and subscribed to events.
async fn subscribed_device(server: &TestServer, org: &Org, writer: &mut WsClient, name: &str) -> WsClient {
    let device = create_device(writer, &org.alice, name).await;
    let mut ws = login_as(server, org, &device).await;
    assert_eq!(status(&ws.req("events_subscribe", vec![]).await), "ok");
    ws
}

/// Creates a vlob through `writer`; the test fails unless it is accepted.
async fn vlob_created(writer: &mut WsClient, realm_id: Uuid, vlob_id: Uuid, blob: &[u8]) {
    let rep = writer
        .req("vlob_create", vlob_create_fields(realm_id, vlob_id, blob))
        .await;
    assert_eq!(status(&rep), "ok", "{rep:?}");
}

/// Sends `events_listen(wait=true)`; the answer is the next event.
async fn wait_for_event(ws: &mut WsClient) {
    ws.send_value(&value::map([
        ("cmd", Value::from("events_listen")),
        ("wait", Value::Boolean(true)),
    ]))
    .await;
}

#[actix_web::test]
async fn an_event_caused_on_one_instance_reaches_a_client_of_the_other() {
    let Some(url) = test_database_url().await else { return };
    let (a, b) = (instance(&url).await, instance(&url).await);

    // Organization created and bootstrapped through A, used through B.
    let org = new_org(&a).await;
    let mut writer = login(&b, &org).await;
    let realm_id = create_realm(&mut writer, &org.alice).await;

    // A second device of the same user listens on A.
    let mut listener = subscribed_device(&a, &org, &mut writer, "phone").await;
    wait_for_event(&mut listener).await;

    let vlob_id = Uuid::new_v4();
    vlob_created(&mut writer, realm_id, vlob_id, b"v1").await;
    let ev = listener.recv().await;
    assert_eq!(field(&ev, "event").as_str(), Some("realm.vlobs_updated"), "{ev:?}");
    assert_eq!(field(&ev, "src_id"), &uuid_value(vlob_id));
    assert_eq!(field(&ev, "src_version").as_u64(), Some(1));

    // Revocation-like closings cross instances too: expiring the organization
    // through A's admin API closes B's connection.
    let (code, _) = admin(
        &a,
        "PATCH",
        &format!("/administration/organizations/{}", org.id),
        serde_json::json!({"is_expired": true}),
    )
    .await;
    assert_eq!(code, 200);
    assert_eq!(writer.recv_event().await, WsEvent::Close(Some(1000)));
}

/// Sends a conduit step and waits for its reply.
async fn step(ws: &mut WsClient, cmd: &str, fields: Vec<(&str, Value)>) -> Vec<(Value, Value)> {
    let rep = ws.req(cmd, fields).await;
    assert_eq!(status(&rep), "ok", "{cmd}: {rep:?}");
    rep
}

#[actix_web::test]
async fn an_invitation_greeted_on_one_instance_is_claimed_on_the_other() {
    let Some(url) = test_database_url().await else { return };
    let (a, b) = (instance(&url).await, instance(&url).await);
    let org = new_org(&a).await;
    let mut greeter = login(&a, &org).await;
    let rep = greeter
        .req(
            "invite_new",
            vec![("type", Value::from("DEVICE")), ("send_email", Value::Boolean(false))],
        )
        .await;
    assert_eq!(status(&rep), "ok", "{rep:?}");
    let token = field(&rep, "token").clone();

    // The claimer connects to B.
    let mut claimer = WsClient::connect(&b).await;
    let _challenge = claimer.recv().await;
    claimer
        .send_value(&value::map([
            ("handshake", Value::from("answer")),
            ("type", Value::from("INVITED")),
            ("client_api_version", Value::Array(vec![Value::from(3), Value::from(1)])),
            ("organization_id", Value::from(org.id.as_str())),
            ("invitation_type", Value::from("DEVICE")),
            ("token", token.clone()),
        ]))
        .await;
    assert_eq!(field(&claimer.recv().await, "result").as_str(), Some("ok"));

    // Each side's steps run concurrently: one waits for the other across instances.
    let greeter_side = async {
        let t = || ("token", token.clone());
        let r = step(
            &mut greeter,
            "invite_1_greeter_wait_peer",
            vec![t(), ("greeter_public_key", bin(&[1; 32]))],
        )
        .await;
        assert_eq!(field(&r, "claimer_public_key"), &bin(&[2; 32]));
        let r = step(&mut greeter, "invite_2a_greeter_get_hashed_nonce", vec![t()]).await;
        assert_eq!(field(&r, "claimer_hashed_nonce"), &bin(b"hashed"));
        let r = step(
            &mut greeter,
            "invite_2b_greeter_send_nonce",
            vec![t(), ("greeter_nonce", bin(b"gn"))],
        )
        .await;
        assert_eq!(field(&r, "claimer_nonce"), &bin(b"cn"));
        step(&mut greeter, "invite_3a_greeter_wait_peer_trust", vec![t()]).await;
        step(&mut greeter, "invite_3b_greeter_signify_trust", vec![t()]).await;
        let r = step(
            &mut greeter,
            "invite_4_greeter_communicate",
            vec![t(), ("payload", bin(b"to claimer"))],
        )
        .await;
        assert_eq!(field(&r, "payload"), &bin(b"to greeter"));
    };
    let claimer_side = async {
        let r = step(
            &mut claimer,
            "invite_1_claimer_wait_peer",
            vec![("claimer_public_key", bin(&[2; 32]))],
        )
        .await;
        assert_eq!(field(&r, "greeter_public_key"), &bin(&[1; 32]));
        let r = step(
            &mut claimer,
            "invite_2a_claimer_send_hashed_nonce",
            vec![("claimer_hashed_nonce", bin(b"hashed"))],
        )
        .await;
        assert_eq!(field(&r, "greeter_nonce"), &bin(b"gn"));
        step(
            &mut claimer,
            "invite_2b_claimer_send_nonce",
            vec![("claimer_nonce", bin(b"cn"))],
        )
        .await;
        step(&mut claimer, "invite_3a_claimer_signify_trust", vec![]).await;
        step(&mut claimer, "invite_3b_claimer_wait_peer_trust", vec![]).await;
        let r = step(
            &mut claimer,
            "invite_4_claimer_communicate",
            vec![("payload", bin(b"to greeter"))],
        )
        .await;
        assert_eq!(field(&r, "payload"), &bin(b"to claimer"));
    };
    tokio::time::timeout(Duration::from_secs(30), async {
        futures_util::join!(greeter_side, claimer_side)
    })
    .await
    .expect("the exchange across instances completes");

    // The greeter creates the device; it logs in through B.
    let laptop2 = create_device(&mut greeter, &org.alice, "laptop2").await;
    let mut ws = login_as(&b, &org, &laptop2).await;
    assert_eq!(
        status(&ws.req("ping", vec![("ping", Value::from("joined"))]).await),
        "ok"
    );
}

/// An instance started once the retention has emptied the event log (after
/// ten idle minutes) delivers events at once, however many came before the
/// one its client waits for: it starts past every id already allocated, and
/// never reads again what it handled.
#[actix_web::test]
async fn an_instance_started_after_the_log_was_emptied_delivers_events() {
    let Some(url) = test_database_url().await else { return };
    let psql = |sql: &str| {
        let done = std::process::Command::new("psql")
            .args(["-q", &url, "-c", sql])
            .status();
        assert!(done.is_ok_and(|s| s.success()), "{sql}");
    };
    // Records no version understands (each is skipped with a warning),
    // standing for the events of a busy past.
    let junk = |n: u32| {
        format!(
            "INSERT INTO event_log (organization_id, payload) \
             SELECT 'Busy', '\\x80'::bytea FROM generate_series(1, {n})"
        )
    };
    let a = instance(&url).await;
    // Ids allocated, then the retention deletes every row.
    psql(&junk(20));
    psql("DELETE FROM event_log");

    let b = instance(&url).await;
    // More rows than one read of the log returns, all before the awaited one.
    psql(&junk(1100));
    let org = new_org(&a).await;
    let mut writer = login(&a, &org).await;
    let realm_id = create_realm(&mut writer, &org.alice).await;
    let mut listener = subscribed_device(&b, &org, &mut writer, "phone").await;
    wait_for_event(&mut listener).await;
    let vlob_id = Uuid::new_v4();
    vlob_created(&mut writer, realm_id, vlob_id, b"v1").await;
    let ev = tokio::time::timeout(Duration::from_secs(5), listener.recv())
        .await
        .expect("the event reaches the instance started after the log was emptied");
    assert_eq!(field(&ev, "event").as_str(), Some("realm.vlobs_updated"), "{ev:?}");
    assert_eq!(field(&ev, "src_id"), &uuid_value(vlob_id));
}

/// Pings travel whole in the notification, not through the log; one too big
/// for a notification goes through the log. Either way it reaches a client
/// of the other instance, once.
#[actix_web::test]
async fn a_ping_on_one_instance_reaches_a_client_of_the_other() {
    let Some(url) = test_database_url().await else { return };
    let (a, b) = (instance(&url).await, instance(&url).await);
    let org = new_org(&a).await;
    let mut pinger = login(&a, &org).await;
    let mut listener = subscribed_device(&b, &org, &mut pinger, "phone").await;
    let big = "b".repeat(10_000);
    for ping in ["small", big.as_str()] {
        wait_for_event(&mut listener).await;
        let rep = pinger.req("ping", vec![("ping", Value::from(ping))]).await;
        assert_eq!(status(&rep), "ok");
        let ev = tokio::time::timeout(Duration::from_secs(5), listener.recv())
            .await
            .expect("the ping reaches the other instance");
        assert_eq!(field(&ev, "event").as_str(), Some("pinged"), "{ev:?}");
        assert_eq!(field(&ev, "ping").as_str(), Some(ping));
    }
    // Long enough for both listeners to have read the log past the pings.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let none = listener
        .req("events_listen", vec![("wait", Value::Boolean(false))])
        .await;
    assert_eq!(status(&none), "no_events");
}

/// An instance delivers its own events at once and once: not again when its
/// listener reads them back from the log, while the other instance gets them
/// from there.
#[actix_web::test]
async fn an_instance_delivers_its_own_events_once() {
    let Some(url) = test_database_url().await else { return };
    let (a, b) = (instance(&url).await, instance(&url).await);
    let org = new_org(&a).await;
    let mut writer = login(&a, &org).await;
    let realm_id = create_realm(&mut writer, &org.alice).await;
    let mut same = subscribed_device(&a, &org, &mut writer, "phone").await;
    let mut other = subscribed_device(&b, &org, &mut writer, "tablet").await;
    for i in 0..3u8 {
        vlob_created(&mut writer, realm_id, Uuid::new_v4(), &[i]).await;
    }
    // Long enough for both listeners to have read the log past the writes.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    for listener in [&mut same, &mut other] {
        for _ in 0..3 {
            let ev = listener
                .req("events_listen", vec![("wait", Value::Boolean(false))])
                .await;
            assert_eq!(field(&ev, "event").as_str(), Some("realm.vlobs_updated"), "{ev:?}");
        }
        let none = listener
            .req("events_listen", vec![("wait", Value::Boolean(false))])
            .await;
        assert_eq!(status(&none), "no_events");
    }
}
