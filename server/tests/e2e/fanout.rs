//! Events fan-out and connection upkeep: 200 listeners on one realm and one
//! writer, a stalled listener that must not hold the others back, and
//! keepalive pings on idle connections.

use std::time::Duration;

use parsec_protocol::types::*;
use parsec_protocol::value::{self, Value};

use crate::common::*;

const LISTENERS: usize = 200;
/// More than a connection's queue holds (100), so the stalled one overflows.
const EVENTS: usize = 110;

fn listen_req() -> Value {
    value::map([("cmd", Value::from("events_listen")), ("wait", Value::Boolean(true))])
}

#[actix_web::test]
async fn every_listener_gets_each_event_once_in_order_and_a_stalled_one_is_cut_off() {
    let server = start_server().await;
    let org = new_org(&server).await;
    let mut writer = login(&server, &org).await;
    let realm_id = create_realm(&mut writer, &org.alice).await;
    // Listeners are another device of the same user (events skip their author device).
    let phone = create_device(&mut writer, &org.alice, "phone").await;
    let rvk = org.root.verifying_key().to_bytes();
    let mut listeners = Vec::with_capacity(LISTENERS);
    for _ in 0..LISTENERS {
        let mut ws = try_login(&server, &org.id, &phone.device_id, &phone.signing_key, &rvk)
            .await
            .expect("login");
        assert_eq!(status(&ws.req("events_subscribe", vec![]).await), "ok");
        listeners.push(ws);
    }
    // The stalled listener subscribed like the others, then never listens.
    let mut stalled = listeners.pop().expect("a listener");

    let listening = listeners.into_iter().map(|mut ws| async move {
        let mut seen = Vec::with_capacity(EVENTS);
        while seen.len() < EVENTS {
            ws.send_value(&listen_req()).await;
            let ev = ws.recv().await;
            assert_eq!(field(&ev, "event").as_str(), Some("realm.vlobs_updated"), "{ev:?}");
            seen.push((
                field(&ev, "checkpoint").as_u64().expect("checkpoint"),
                field(&ev, "src_id").clone(),
            ));
        }
        seen
    });
    let writing = async {
        let mut written = Vec::with_capacity(EVENTS);
        for i in 0..EVENTS {
            let vlob_id = Uuid::new_v4();
            let rep = writer
                .req("vlob_create", vlob_create_fields(realm_id, vlob_id, &[i as u8]))
                .await;
            assert_eq!(status(&rep), "ok", "{rep:?}");
            written.push(uuid_value(vlob_id));
        }
        written
    };
    let (seen_by_all, written) = tokio::time::timeout(
        Duration::from_secs(120),
        futures_util::future::join(futures_util::future::join_all(listening), writing),
    )
    .await
    .expect("the listeners get their events although one of them is stalled");

    for seen in &seen_by_all {
        let checkpoints: Vec<u64> = seen.iter().map(|(c, _)| *c).collect();
        assert!(checkpoints.windows(2).all(|w| w[0] < w[1]), "in order: {checkpoints:?}");
        let ids: Vec<&Value> = seen.iter().map(|(_, id)| id).collect();
        assert_eq!(
            ids,
            written.iter().collect::<Vec<_>>(),
            "each event exactly once, in write order"
        );
    }
    // The stalled connection overflowed its queue and was closed; it never
    // slowed the others down (they all finished above).
    let end = stalled.recv_event().await;
    assert!(matches!(end, WsEvent::Close(Some(1008)) | WsEvent::Eof), "{end:?}");
}

#[actix_web::test]
async fn idle_connections_get_keepalive_pings() {
    let settings = parsec_actors::Settings {
        administration_token: TOKEN.into(),
        spontaneous_organization_bootstrap: false,
        organization_initial_active_users_limit: None,
        organization_initial_user_profile_outsider_allowed: true,
        email: Default::default(),
        backend_addr: Default::default(),
    };
    let mut actors = parsec_actors::backend::postgres::start_actors_for_tests(settings).await;
    actors.keepalive = Duration::from_millis(100);
    let server = start_server_with(actors).await;
    let org = new_org(&server).await;
    let mut ws = login(&server, &org).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    // Reading the next reply also reads (and answers) the pings sent meanwhile.
    assert_eq!(
        status(&ws.req("ping", vec![("ping", Value::from("after idling"))]).await),
        "ok"
    );
    assert!(ws.pings_received() >= 1, "an idle connection is pinged");
}
