//! Organization policies of the command line: `--spontaneous-organization-bootstrap`,
//! `--organization-initial-active-users-limit` and
//! `--organization-initial-user-profile-outsider-allowed` (commands.md §2.3,
//! http.md §2.2).

use parsec_actors::Settings;
use parsec_protocol::types::*;
use parsec_protocol::value;

use crate::common::*;

fn settings(spontaneous: bool) -> Settings {
    Settings {
        administration_token: TOKEN.into(),
        spontaneous_organization_bootstrap: spontaneous,
        organization_initial_active_users_limit: Some(3),
        organization_initial_user_profile_outsider_allowed: false,
        email: Default::default(),
        backend_addr: Default::default(),
    }
}

async fn server(spontaneous: bool) -> TestServer {
    start_server_with(parsec_actors::backend::postgres::start_actors_for_tests(settings(spontaneous)).await).await
}

/// `organization_bootstrap` of `id` with `token` on the anonymous route.
async fn bootstrap_with(server: &TestServer, id: &OrganizationId, token: &str) -> (u16, String) {
    let root = new_key();
    let device_id = DeviceId::parse("alice@laptop").expect("device id");
    let certs = bootstrap_certs(&root, &device_id, &new_key(), DateTime::now());
    let (http, rep) = anonymous(server, id.as_str(), &value::pack(&bootstrap_req(token, &root, &certs))).await;
    (http, status(&rep).to_string())
}

async fn organization(server: &TestServer, id: &OrganizationId) -> (u16, serde_json::Value) {
    admin(
        server,
        "GET",
        &format!("/administration/organizations/{id}"),
        serde_json::Value::Null,
    )
    .await
}

#[actix_web::test]
async fn spontaneous_bootstrap_creates_the_organization_with_the_defaults() {
    let server = server(true).await;
    let id = unique_org("Spont");
    assert_eq!(bootstrap_with(&server, &id, "").await, (200, "ok".to_string()));
    let (http, body) = organization(&server, &id).await;
    assert_eq!(http, 200);
    assert_eq!(
        body,
        serde_json::json!({
            "is_bootstrapped": true,
            "is_expired": false,
            "active_users_limit": 3,
            "user_profile_outsider_allowed": false,
        })
    );
    // A non-empty token on an unknown organization creates it, then fails.
    let other = unique_org("Spont");
    assert_eq!(
        bootstrap_with(&server, &other, "sometoken").await,
        (200, "not_found".to_string())
    );
    let (http, body) = organization(&server, &other).await;
    assert_eq!(
        (http, &body["is_bootstrapped"]),
        (200, &serde_json::json!(false)),
        "{body}"
    );
    // Then the empty token bootstraps it.
    assert_eq!(bootstrap_with(&server, &other, "").await, (200, "ok".to_string()));
}

#[actix_web::test]
async fn without_spontaneous_bootstrap_unknown_organizations_are_not_found() {
    let server = server(false).await;
    let id = unique_org("NoSpont");
    assert_eq!(bootstrap_with(&server, &id, "").await.0, 404);
    assert_eq!(organization(&server, &id).await.0, 404);
}

#[actix_web::test]
async fn new_organizations_get_the_initial_limits_unless_given() {
    let server = server(false).await;
    let id = unique_org("Limits");
    create_org(&server, &id).await;
    let (_, body) = organization(&server, &id).await;
    assert_eq!(body["active_users_limit"], 3, "{body}");
    assert_eq!(body["user_profile_outsider_allowed"], false, "{body}");
    let id = unique_org("Limits");
    let (http, body) = admin(
        &server,
        "POST",
        "/administration/organizations",
        serde_json::json!({"organization_id": id.as_str(), "active_users_limit": null, "user_profile_outsider_allowed": true}),
    )
    .await;
    assert_eq!(http, 200, "{body}");
    let (_, body) = organization(&server, &id).await;
    assert_eq!(body["active_users_limit"], serde_json::Value::Null, "{body}");
    assert_eq!(body["user_profile_outsider_allowed"], true, "{body}");
}
