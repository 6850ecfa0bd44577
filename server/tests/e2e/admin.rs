//! Administration REST API: good, bad and missing tokens; each route's replies.

use serde_json::{Value as Json, json};

use crate::common::*;

#[actix_web::test]
async fn tokens_checked_first() {
    let server = start_server().await;
    let routes = [
        ("POST", "/administration/organizations".to_string()),
        ("GET", "/administration/organizations/Unknown".to_string()),
        ("PATCH", "/administration/organizations/Unknown".to_string()),
        ("GET", "/administration/organizations/Unknown/stats".to_string()),
    ];
    for (method, path) in &routes {
        for auth in [
            None,
            Some("Bearer wrong"),
            Some("bearer s3cr3t"),
            Some("s3cr3t"),
            Some("Bearer  s3cr3t"),
        ] {
            let headers: Vec<(&str, &str)> = auth.map(|a| ("Authorization", a)).into_iter().collect();
            let (status, body) = http_request(&server, method, path, &headers, b"{}").await;
            assert_eq!(status, 403, "{method} {path} {auth:?}");
            assert_eq!(
                serde_json::from_slice::<Json>(&body).unwrap(),
                json!({"error": "not_allowed"})
            );
        }
    }
}

#[actix_web::test]
async fn create_get_patch_stats() {
    let server = start_server().await;
    let id = unique_org("Adm");
    let token = create_org(&server, &id).await;
    assert_eq!(token.len(), 64);
    assert!(token.chars().all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
    let path = format!("/administration/organizations/{id}");
    let (status, body) = admin(&server, "GET", &path, Json::Null).await;
    assert_eq!(status, 200);
    assert_eq!(
        body,
        json!({"is_bootstrapped": false, "is_expired": false, "user_profile_outsider_allowed": true, "active_users_limit": null})
    );
    // Re-creating a not-yet-bootstrapped organization replaces its token.
    let token2 = create_org(&server, &id).await;
    assert_ne!(token, token2);

    let (status, body) = admin(
        &server,
        "PATCH",
        &path,
        json!({"active_users_limit": 3, "user_profile_outsider_allowed": false}),
    )
    .await;
    assert_eq!((status, body), (200, json!({})));
    let (_, body) = admin(&server, "GET", &path, Json::Null).await;
    assert_eq!(body["active_users_limit"], json!(3));
    assert_eq!(body["user_profile_outsider_allowed"], json!(false));
    let (status, _) = admin(&server, "PATCH", &path, json!({"active_users_limit": null})).await;
    assert_eq!(status, 200);
    let (_, body) = admin(&server, "GET", &path, Json::Null).await;
    assert_eq!(body["active_users_limit"], Json::Null);

    let (status, body) = admin(&server, "GET", &format!("{path}/stats"), Json::Null).await;
    assert_eq!(status, 200);
    assert_eq!(body["users"], json!(0));
    assert_eq!(
        body["users_per_profile_detail"][0],
        json!({"profile": "ADMIN", "active": 0, "revoked": 0})
    );
}

#[actix_web::test]
async fn errors() {
    let server = start_server().await;
    let org = new_org(&server).await;
    // Bootstrapped: creation refused.
    let (status, body) = admin(
        &server,
        "POST",
        "/administration/organizations",
        json!({"organization_id": org.id.as_str()}),
    )
    .await;
    assert_eq!((status, body), (400, json!({"error": "already_exists"})));
    // Unknown and invalid organizations.
    for path in [
        "/administration/organizations/Unknown",
        "/administration/organizations/bad%20id",
        "/administration/organizations/Unknown/stats",
    ] {
        let (status, body) = admin(&server, "GET", path, Json::Null).await;
        assert_eq!((status, body), (404, json!({"error": "not_found"})), "{path}");
    }
    // Bad bodies.
    let auth = format!("Bearer {TOKEN}");
    let (status, body) = http_request(
        &server,
        "POST",
        "/administration/organizations",
        &[("Authorization", &auth)],
        b"{not json",
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(
        serde_json::from_slice::<Json>(&body).unwrap(),
        json!({"error": "bad_data", "reason": "Invalid JSON"})
    );
    let (status, body) = admin(&server, "POST", "/administration/organizations", json!({})).await;
    assert_eq!((status, body["error"].clone()), (400, json!("bad_data")));
    assert!(body["reason"]["organization_id"].is_array());
    let path = format!("/administration/organizations/{}", org.id);
    let (status, body) = admin(
        &server,
        "PATCH",
        &path,
        json!({"is_expired": "maybe", "active_users_limit": -1}),
    )
    .await;
    assert_eq!(status, 400);
    assert!(body["reason"]["is_expired"].is_array() && body["reason"]["active_users_limit"].is_array());
    // Wrong method.
    let (status, _) = http_request(&server, "DELETE", &path, &[("Authorization", &auth)], b"").await;
    assert_eq!(status, 405);
}

#[actix_web::test]
async fn landing_redirect_static_and_404() {
    let server = start_server().await;
    let (status, body) = http_request(&server, "GET", "/", &[], b"").await;
    assert_eq!(status, 200);
    assert!(String::from_utf8_lossy(&body).contains("Parsec"));
    let (status, _) = http_request(&server, "GET", "/static/parsec-vert.png", &[], b"").await;
    assert_eq!(status, 200);
    let (status, _) = http_request(&server, "GET", "/static/nope.png", &[], b"").await;
    assert_eq!(status, 404);
    let (status, body) = http_request(&server, "GET", "/no/such/page", &[], b"").await;
    assert_eq!(status, 404);
    assert!(String::from_utf8_lossy(&body).contains("<html"));

    // Redirect: no_ssl from the request dropped, the backend address's own added.
    let mut stream = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    stream
        .write_all(b"GET /redirect/Org8?action=claim_user&token=abc&no_ssl=false HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.unwrap();
    let text = String::from_utf8_lossy(&raw).to_lowercase();
    assert!(text.starts_with("http/1.1 302"), "{text}");
    assert!(
        text.contains("location: parsec://127.0.0.1:6777/org8?action=claim_user&token=abc&no_ssl=true"),
        "{text}"
    );
}
