//! `--organization-bootstrap-webhook` (http.md §6): the receiver gets the
//! reference's exact JSON body after a successful bootstrap, before the
//! client's `ok`; a failing or unreachable webhook does not fail the
//! bootstrap; a refused bootstrap calls nothing.

use std::time::{Duration, Instant};

use parsec_actors::Settings;
use parsec_actors::webhook::BootstrapWebhook;
use parsec_protocol::types::*;
use parsec_protocol::value;

use crate::common::*;
use crate::receiver::{Receiver, closed_port};

fn settings() -> Settings {
    Settings {
        administration_token: TOKEN.into(),
        spontaneous_organization_bootstrap: false,
        organization_initial_active_users_limit: None,
        organization_initial_user_profile_outsider_allowed: true,
        email: Default::default(),
        backend_addr: Default::default(),
    }
}

async fn server_with_webhook(url: &str) -> TestServer {
    let hook = BootstrapWebhook::new(url).expect("webhook URL");
    let actors = parsec_actors::backend::postgres::start_actors_for_tests(settings())
        .await
        .with_bootstrap_webhook(Some(hook));
    start_server_with(actors).await
}

/// Bootstraps a new organization through the anonymous route; returns its id
/// and the reply status.
async fn bootstrap(server: &TestServer, token_override: Option<&str>) -> (OrganizationId, String) {
    let id = unique_org("Hook");
    let token = create_org(server, &id).await;
    let root = new_key();
    let device_id = DeviceId::parse("alice@laptop").expect("device id");
    let certs = bootstrap_certs(&root, &device_id, &new_key(), DateTime::now());
    let req = bootstrap_req(token_override.unwrap_or(&token), &root, &certs);
    let (http, rep) = anonymous(server, id.as_str(), &value::pack(&req)).await;
    assert_eq!(http, 200);
    (id, status(&rep).to_string())
}

#[actix_web::test]
async fn the_receiver_gets_the_reference_payload() {
    let mut receiver = Receiver::start(200).await;
    let server = server_with_webhook(&format!("http://{}/hooks/bootstrap?src=parsec", receiver.addr)).await;
    let (org, status) = bootstrap(&server, None).await;
    assert_eq!(status, "ok");
    // Synchronous: the call was made before the client got its answer.
    let got = receiver
        .next(Duration::from_millis(100))
        .await
        .expect("webhook called before the reply");
    assert_eq!(got.method, "POST");
    assert_eq!(got.target, "/hooks/bootstrap?src=parsec");
    assert_eq!(got.header("content-type"), Some("application/json; charset=utf-8"));
    let expected = format!(
        r#"{{"device_id": "alice@laptop", "device_label": "laptop", "human_email": "alice@example.com", "human_label": "Alice", "organization_id": "{org}"}}"#
    );
    assert_eq!(String::from_utf8_lossy(&got.body), expected);
    assert!(receiver.next(Duration::from_millis(200)).await.is_none(), "called once");

    // A refused bootstrap (bad token) calls nothing.
    let (_, status) = bootstrap(&server, Some("not the token")).await;
    assert_eq!(status, "not_found");
    assert!(receiver.next(Duration::from_millis(300)).await.is_none());
}

#[actix_web::test]
async fn a_failing_webhook_does_not_fail_the_bootstrap() {
    let mut receiver = Receiver::start(500).await;
    let server = server_with_webhook(&format!("http://{}/hook", receiver.addr)).await;
    let (_, status) = bootstrap(&server, None).await;
    assert_eq!(status, "ok");
    assert!(receiver.next(Duration::from_secs(1)).await.is_some());
}

#[actix_web::test]
async fn an_unreachable_webhook_does_not_fail_the_bootstrap() {
    let server = server_with_webhook(&format!("http://127.0.0.1:{}/hook", closed_port())).await;
    let started = Instant::now();
    let (id, status) = bootstrap(&server, None).await;
    assert_eq!(status, "ok");
    assert!(started.elapsed() < Duration::from_secs(10), "{:?}", started.elapsed());
    // The bootstrap went through.
    let (_, body) = admin(
        &server,
        "GET",
        &format!("/administration/organizations/{id}"),
        serde_json::Value::Null,
    )
    .await;
    assert_eq!(body["is_bootstrapped"], true, "{body}");
}
