//! `human_find` (commands.md §3.5, PG semantics).

use parsec_protocol::types::*;
use parsec_protocol::value::Value;

use crate::common::*;

fn ids(rep: &Value) -> Vec<String> {
    field(rep, "results")
        .as_array()
        .unwrap()
        .iter()
        .map(|r| field(r, "user_id").as_str().unwrap().to_string())
        .collect()
}

fn total(rep: &Value) -> i64 {
    field(rep, "total").as_i64().unwrap()
}

/// alice (bootstrap), plus: bob "bob Marley" STANDARD, carol "Carol" OUTSIDER,
/// dave "Dave" ADMIN revoked, zed and yan without human handle, yan revoked
/// in the future.
async fn directory() -> (Env, Dev) {
    let (env, alice) = Env::start().await;
    env.create_user(
        &alice,
        "bob@laptop",
        human("bob@example.com", "bob Marley"),
        UserProfile::Standard,
    )
    .await;
    env.create_user(
        &alice,
        "carol@laptop",
        human("carol@music.org", "Carol"),
        UserProfile::Outsider,
    )
    .await;
    let dave = env
        .create_user(
            &alice,
            "dave@laptop",
            human("dave@example.com", "Dave"),
            UserProfile::Admin,
        )
        .await;
    env.create_user(&alice, "zed@laptop", None, UserProfile::Standard).await;
    let yan = env.create_user(&alice, "yan@laptop", None, UserProfile::Standard).await;
    assert_eq!(status(&env.revoke(&alice, &dave.user_id(), at(-1)).await), "ok");
    assert_eq!(status(&env.revoke(&alice, &yan.user_id(), at(40)).await), "ok");
    (env, alice)
}

#[actix_web::test]
async fn everyone_sorted_by_label_non_humans_last() {
    let (env, alice) = directory().await;
    let rep = env.find(&alice, None, false, false, 1, 100).await;
    assert_eq!(status(&rep), "ok", "{rep:?}");
    // Case-insensitive label order, then users without human handle by id.
    assert_eq!(ids(&rep), ["alice", "bob", "carol", "dave", "yan", "zed"]);
    assert_eq!(total(&rep), 6);
    assert_eq!(field(&rep, "page"), &Value::from(1));
    assert_eq!(field(&rep, "per_page"), &Value::from(100));

    let results = field(&rep, "results").as_array().unwrap();
    let bob = &results[1];
    assert_eq!(
        field(bob, "human_handle"),
        &human("bob@example.com", "bob Marley").unwrap().to_value()
    );
    assert_eq!(field(bob, "revoked"), &Value::Boolean(false));
    // Revoked only once in effect.
    assert_eq!(field(&results[3], "revoked"), &Value::Boolean(true));
    assert_eq!(field(&results[4], "revoked"), &Value::Boolean(false));
    assert_eq!(field(&results[5], "human_handle"), &Value::Nil);

    // An empty query is no query.
    let rep = env.find(&alice, Some(""), false, false, 1, 100).await;
    assert_eq!(total(&rep), 6);
}

#[actix_web::test]
async fn filters() {
    let (env, alice) = directory().await;
    let rep = env.find(&alice, None, true, false, 1, 100).await;
    assert_eq!(ids(&rep), ["alice", "bob", "carol", "yan", "zed"]);
    let rep = env.find(&alice, None, false, true, 1, 100).await;
    assert_eq!(ids(&rep), ["alice", "bob", "carol", "dave"]);
    let rep = env.find(&alice, None, true, true, 1, 100).await;
    assert_eq!(
        (ids(&rep), total(&rep)),
        (vec!["alice".to_string(), "bob".into(), "carol".into()], 3)
    );
}

#[actix_web::test]
async fn query_is_a_case_insensitive_substring_of_label_then_email() {
    let (env, alice) = directory().await;
    let find = |q: &'static str| {
        let (env, alice) = (&env, &alice);
        async move { ids(&env.find(alice, Some(q), false, false, 1, 100).await) }
    };
    assert_eq!(find("BOB").await, ["bob"]);
    assert_eq!(find("marley").await, ["bob"]);
    assert_eq!(find("CAROL@").await, ["carol"]);
    assert_eq!(find("music.ORG").await, ["carol"]);
    // Across label and e-mail, as PG's `label || email`.
    assert_eq!(find("carolcarol").await, ["carol"]);
    assert_eq!(find("example.com").await, ["alice", "bob", "dave"]);
    // Non-humans never match; revoked ones do unless omitted.
    assert_eq!(find("a").await, ["alice", "bob", "carol", "dave"]);
    assert!(find("zed").await.is_empty());
    assert!(find("nobody-matches-this").await.is_empty());
    // Plain text: no regular expression.
    assert!(find("b.b").await.is_empty());
    assert!(find("(").await.is_empty());
    let rep = env.find(&alice, Some("example"), true, false, 1, 100).await;
    assert_eq!((ids(&rep), total(&rep)), (vec!["alice".to_string(), "bob".into()], 2));
}

#[actix_web::test]
async fn pagination() {
    let (env, alice) = directory().await;
    let page = |n: i64| {
        let (env, alice) = (&env, &alice);
        async move { env.find(alice, None, false, false, n, 4).await }
    };
    let (p1, p2, p3) = (page(1).await, page(2).await, page(3).await);
    assert_eq!(ids(&p1), ["alice", "bob", "carol", "dave"]);
    assert_eq!(ids(&p2), ["yan", "zed"]);
    assert!(ids(&p3).is_empty());
    assert_eq!((total(&p1), total(&p2), total(&p3)), (6, 6, 6));
    assert_eq!(field(&p3, "page"), &Value::from(3));
    assert_eq!(field(&p3, "per_page"), &Value::from(4));
    // Far beyond the end.
    let rep = env.find(&alice, None, false, false, i64::MAX, 100).await;
    assert!(ids(&rep).is_empty());
    assert_eq!(total(&rep), 6);
}

#[actix_web::test]
async fn an_email_keeps_the_label_of_its_first_user() {
    // PG keeps one `human` row per e-mail: a later user with the same e-mail
    // is listed, and sorted, under the first one's label.
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
        human("bob@example.com", "Zorro"),
        UserProfile::Standard,
    )
    .await;
    let rep = env.find(&alice, None, false, false, 1, 100).await;
    assert_eq!(ids(&rep), ["alice", "bob", "bob2"]);
    let results = field(&rep, "results").as_array().unwrap();
    assert_eq!(
        field(&results[2], "human_handle"),
        &human("bob@example.com", "Bob").unwrap().to_value()
    );
}

#[actix_web::test]
async fn not_for_outsiders() {
    let (env, alice) = directory().await;
    let otto = env
        .create_user(&alice, "otto@laptop", None, UserProfile::Outsider)
        .await;
    let rep = env.find(&otto, None, false, false, 1, 100).await;
    assert_reason(&rep, "not_allowed", "Not allowed for user with OUTSIDER profile.");
    let bob = env.dev(DeviceId::parse("bob@laptop").unwrap(), UserProfile::Standard, new_key());
    assert_eq!(status(&env.find(&bob, None, false, false, 1, 100).await), "ok");
}
