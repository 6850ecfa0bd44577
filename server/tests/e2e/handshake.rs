//! The handshake: challenge contents, each refusal, and a good login.

use parsec_protocol::types::*;
use parsec_protocol::value::{self, Value};

use crate::common::*;

fn answer(fields: Vec<(&str, Value)>) -> Value {
    let mut all = vec![("handshake", Value::from("answer"))];
    all.extend(fields);
    value::map(all)
}

fn version(major: u32, minor: u32) -> Value {
    Value::Array(vec![Value::from(major), Value::from(minor)])
}

/// Sends `answer` after the challenge; returns the result map, and checks
/// the server then drops the connection without a close frame.
async fn refused(server: &TestServer, answer: &[u8]) -> Vec<(Value, Value)> {
    let mut ws = WsClient::connect(server).await;
    let _challenge = ws.recv().await;
    ws.send(answer).await;
    let result = ws.recv().await;
    assert_eq!(field(&result, "handshake").as_str(), Some("result"));
    assert_eq!(
        ws.recv_event().await,
        WsEvent::Eof,
        "refusals drop TCP without a close frame"
    );
    result
}

#[actix_web::test]
async fn challenge_contents() {
    let server = start_server().await;
    let mut ws = WsClient::connect(&server).await;
    let ch = ws.recv().await;
    assert_eq!(field(&ch, "handshake").as_str(), Some("challenge"));
    assert!(matches!(field(&ch, "challenge"), Value::Binary(b) if b.len() == 48));
    assert_eq!(
        field(&ch, "supported_api_versions"),
        &Value::Array(vec![version(1, 3), version(2, 7), version(3, 1)])
    );
    assert_eq!(field(&ch, "ballpark_client_early_offset"), &Value::F64(50.0));
    assert_eq!(field(&ch, "ballpark_client_late_offset"), &Value::F64(70.0));
    assert!(matches!(field(&ch, "backend_timestamp"), Value::Ext(1, b) if b.len() == 8));
}

#[actix_web::test]
async fn good_login_and_ping() {
    let server = start_server().await;
    let org = new_org(&server).await;
    let mut ws = login(&server, &org).await;
    let rep = ws.req("ping", vec![("ping", Value::from("hello"))]).await;
    assert_eq!(rep.len(), 2);
    assert_eq!(status(&rep), "ok");
    assert_eq!(field(&rep, "pong").as_str(), Some("hello"));
}

#[actix_web::test]
async fn refusals() {
    let server = start_server().await;
    let org = new_org(&server).await;
    let rvk = org.root.verifying_key().to_bytes();
    let alice = &org.alice;

    // Unknown organization, unknown device: bad_identity.
    let r = try_login(&server, &unique_org("Nope"), &alice.device_id, &alice.signing_key, &rvk)
        .await
        .unwrap_err();
    assert_eq!(field(&r, "result").as_str(), Some("bad_identity"));
    assert_eq!(field(&r, "help").as_str(), Some("Invalid handshake information"));
    let ghost = DeviceId::parse("alice@ghost").unwrap();
    let r = try_login(&server, &org.id, &ghost, &alice.signing_key, &rvk)
        .await
        .unwrap_err();
    assert_eq!(field(&r, "result").as_str(), Some("bad_identity"));

    // Wrong root verify key.
    let other = new_key().verifying_key().to_bytes();
    let r = try_login(&server, &org.id, &alice.device_id, &alice.signing_key, &other)
        .await
        .unwrap_err();
    assert_eq!(field(&r, "result").as_str(), Some("rvk_mismatch"));

    // Wrong signing key.
    let r = try_login(&server, &org.id, &alice.device_id, &new_key(), &rvk)
        .await
        .unwrap_err();
    assert_eq!(field(&r, "result").as_str(), Some("bad_protocol"));
    assert_eq!(field(&r, "help").as_str(), Some("Invalid answer signature"));

    // Garbage answer.
    let r = refused(&server, b"\x00\x01garbage").await;
    assert_eq!(field(&r, "result").as_str(), Some("bad_protocol"));
    assert!(
        field(&r, "help")
            .as_str()
            .unwrap()
            .starts_with("Invalid msgpack data: ")
    );

    // No common API version.
    let a = answer(vec![
        ("type", Value::from("AUTHENTICATED")),
        ("client_api_version", version(99, 0)),
    ]);
    let r = refused(&server, &value::pack(&a)).await;
    assert_eq!(
        field(&r, "help").as_str(),
        Some("No overlap between client API versions {99.0} and backend API versions {1.3, 2.7, 3.1}")
    );

    // Missing fields.
    let a = answer(vec![
        ("type", Value::from("AUTHENTICATED")),
        ("client_api_version", version(2, 5)),
        ("organization_id", Value::from(org.id.as_str())),
    ]);
    assert_eq!(
        field(&refused(&server, &value::pack(&a)).await, "result").as_str(),
        Some("bad_protocol")
    );

    // Type / version mismatch.
    let a = answer(vec![
        ("type", Value::from("anonymous")),
        ("client_api_version", version(3, 1)),
        ("organization_id", Value::from(org.id.as_str())),
    ]);
    let r = refused(&server, &value::pack(&a)).await;
    assert_eq!(
        field(&r, "help").as_str(),
        Some("{'type': ['Unsupported value: anonymous']}")
    );

    // Invitation that does not exist: the exact help text the client matches.
    let a = answer(vec![
        ("type", Value::from("INVITED")),
        ("client_api_version", version(3, 1)),
        ("organization_id", Value::from(org.id.as_str())),
        ("invitation_type", Value::from("USER")),
        ("token", uuid_value(Uuid::new_v4())),
    ]);
    let r = refused(&server, &value::pack(&a)).await;
    assert_eq!(
        field(&r, "help").as_str(),
        Some("Invalid handshake: Invitation not found")
    );

    // Legacy v1 anonymous on an unknown organization.
    let a = answer(vec![
        ("type", Value::from("anonymous")),
        ("client_api_version", version(1, 3)),
        ("organization_id", Value::from("UnknownOrg")),
    ]);
    assert_eq!(
        field(&refused(&server, &value::pack(&a)).await, "result").as_str(),
        Some("bad_identity")
    );
}

#[actix_web::test]
async fn expired_organization_is_refused_and_disconnected() {
    let server = start_server().await;
    let org = new_org(&server).await;
    let mut live = login(&server, &org).await;
    let (status, _) = admin(
        &server,
        "PATCH",
        &format!("/administration/organizations/{}", org.id),
        serde_json::json!({"is_expired": true}),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(live.recv_event().await, WsEvent::Close(Some(1000)));
    let rvk = org.root.verifying_key().to_bytes();
    let r = try_login(&server, &org.id, &org.alice.device_id, &org.alice.signing_key, &rvk)
        .await
        .unwrap_err();
    assert_eq!(field(&r, "result").as_str(), Some("organization_expired"));
    assert_eq!(field(&r, "help").as_str(), Some("Trial organization has expired"));
}

#[actix_web::test]
async fn legacy_v1_ping() {
    let server = start_server().await;
    let org = new_org(&server).await;
    let mut ws = WsClient::connect(&server).await;
    let _ = ws.recv().await;
    let a = answer(vec![
        ("type", Value::from("anonymous")),
        ("client_api_version", Value::Array(vec![Value::from(1), Value::from(3)])),
        ("organization_id", Value::from(org.id.as_str())),
    ]);
    ws.send_value(&a).await;
    assert_eq!(field(&ws.recv().await, "result").as_str(), Some("ok"));
    let rep = ws.req("ping", vec![("ping", Value::from("v1"))]).await;
    assert_eq!(field(&rep, "pong").as_str(), Some("v1"));
}
