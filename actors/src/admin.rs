//! The administration REST API (http.md §2), independent of the HTTP server:
//! each function takes the request's parts and returns a status and a JSON body.
//!
//! Authentication is checked first, before any other validation, and the
//! token is compared in constant time.

use parsec_protocol::types::OrganizationId;
use serde_json::{Map, Value as Json, json};

use crate::Actors;
use crate::backend::*;
use crate::event::Event;
use crate::organization::{self, CreateOrganization, GetOrganization, GetOrganizationStats, UpdateOrganization};

/// HTTP status and JSON body of an admin reply.
#[derive(Debug, Clone, PartialEq)]
pub struct JsonReply {
    pub status: u16,
    pub body: Json,
}

impl JsonReply {
    fn new(status: u16, body: Json) -> Self {
        Self { status, body }
    }
    fn not_found() -> Self {
        Self::new(404, json!({"error": "not_found"}))
    }
    fn bad_data(reason: Json) -> Self {
        Self::new(400, json!({"error": "bad_data", "reason": reason}))
    }
    fn internal(e: Internal) -> Self {
        log::error!("administration API: {:#}", e.0);
        Self::new(500, json!({"error": "internal"}))
    }
}

/// Compares without short-circuiting on the first differing byte.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

/// `Authorization` must be exactly `Bearer <token>`; otherwise 403.
pub fn authorize(actors: &Actors, authorization: Option<&[u8]>) -> Result<(), JsonReply> {
    let expected = format!("Bearer {}", actors.settings.administration_token);
    match authorization {
        Some(h) if constant_time_eq(h, expected.as_bytes()) => Ok(()),
        _ => Err(JsonReply::new(403, json!({"error": "not_allowed"}))),
    }
}

fn parse_body(body: &[u8]) -> Result<Map<String, Json>, JsonReply> {
    let invalid = || JsonReply::bad_data(json!("Invalid JSON"));
    let text = std::str::from_utf8(body).map_err(|_| invalid())?;
    match serde_json::from_str::<Json>(text).map_err(|_| invalid())? {
        Json::Object(m) => Ok(m),
        _ => Err(JsonReply::bad_data(json!({"_schema": ["Invalid input type."]}))),
    }
}

/// Field errors, marshmallow style.
#[derive(Default)]
struct Errors(Map<String, Json>);

impl Errors {
    fn add(&mut self, field: &str, msg: &str) {
        self.0.insert(field.to_string(), json!([msg]));
    }
    fn into_result(self) -> Result<(), JsonReply> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(JsonReply::bad_data(Json::Object(self.0)))
        }
    }
}

fn opt_bool(m: &Map<String, Json>, key: &str, errors: &mut Errors) -> Option<bool> {
    match m.get(key) {
        None => None,
        Some(Json::Bool(b)) => Some(*b),
        Some(Json::Null) => {
            errors.add(key, "Field may not be null.");
            None
        }
        Some(_) => {
            errors.add(key, "Not a valid boolean.");
            None
        }
    }
}

/// `active_users_limit`: absent → `None`; null → unlimited; else an int ≥ 0.
fn opt_limit(m: &Map<String, Json>, errors: &mut Errors) -> Option<Option<u64>> {
    match m.get("active_users_limit") {
        None => None,
        Some(Json::Null) => Some(None),
        Some(v) => match v.as_u64() {
            Some(n) => Some(Some(n)),
            None => {
                errors.add("active_users_limit", "Invalid value.");
                None
            }
        },
    }
}

fn new_bootstrap_token() -> String {
    hex::encode(rand::random::<[u8; 32]>())
}

/// `POST /administration/organizations`.
pub async fn create(actors: &Actors, body: &[u8]) -> JsonReply {
    let m = match parse_body(body) {
        Ok(m) => m,
        Err(r) => return r,
    };
    let mut errors = Errors::default();
    let id = match m.get("organization_id") {
        None => {
            errors.add("organization_id", "Missing data for required field.");
            None
        }
        Some(Json::String(s)) => match OrganizationId::parse(s) {
            Ok(id) => Some(id),
            Err(e) => {
                errors.add("organization_id", &e);
                None
            }
        },
        Some(_) => {
            errors.add("organization_id", "Not a valid string.");
            None
        }
    };
    let outsider = opt_bool(&m, "user_profile_outsider_allowed", &mut errors);
    let limit = opt_limit(&m, &mut errors);
    if let Err(r) = errors.into_result() {
        return r;
    }
    let Some(id) = id else {
        return JsonReply::bad_data(json!("Invalid JSON"));
    };
    let settings = &actors.settings;
    let token = new_bootstrap_token();
    let msg = CreateOrganization {
        id: id.clone(),
        bootstrap_token: token.clone(),
        active_users_limit: limit.unwrap_or(settings.organization_initial_active_users_limit),
        user_profile_outsider_allowed: outsider.unwrap_or(settings.organization_initial_user_profile_outsider_allowed),
    };
    match actors.organization.send(msg).await.map_err(Internal::from) {
        Ok(Ok(())) => {
            log::info!("org={id}: created through the administration API");
            JsonReply::new(200, json!({"bootstrap_token": token}))
        }
        Ok(Err(OrganizationCreateError::AlreadyExists)) => JsonReply::new(400, json!({"error": "already_exists"})),
        Ok(Err(OrganizationCreateError::Internal(e))) | Err(e) => JsonReply::internal(e),
    }
}

fn parse_org_id(raw: &str) -> Result<OrganizationId, JsonReply> {
    OrganizationId::parse(raw).map_err(|_| JsonReply::not_found())
}

/// `GET /administration/organizations/<id>`.
pub async fn get(actors: &Actors, raw_id: &str) -> JsonReply {
    let id = match parse_org_id(raw_id) {
        Ok(id) => id,
        Err(r) => return r,
    };
    match actors
        .organization
        .send(GetOrganization(id))
        .await
        .map_err(Internal::from)
    {
        Ok(Ok(org)) => JsonReply::new(
            200,
            json!({
                "is_bootstrapped": org.is_bootstrapped(),
                "is_expired": org.is_expired,
                "user_profile_outsider_allowed": org.user_profile_outsider_allowed,
                "active_users_limit": org.active_users_limit,
            }),
        ),
        Ok(Err(OrganizationLookupError::NotFound)) => JsonReply::not_found(),
        Ok(Err(OrganizationLookupError::Internal(e))) | Err(e) => JsonReply::internal(e),
    }
}

/// `PATCH /administration/organizations/<id>`.
pub async fn patch(actors: &Actors, raw_id: &str, body: &[u8]) -> JsonReply {
    let id = match parse_org_id(raw_id) {
        Ok(id) => id,
        Err(r) => return r,
    };
    let m = match parse_body(body) {
        Ok(m) => m,
        Err(r) => return r,
    };
    let mut errors = Errors::default();
    let patch = OrganizationPatch {
        is_expired: opt_bool(&m, "is_expired", &mut errors),
        user_profile_outsider_allowed: opt_bool(&m, "user_profile_outsider_allowed", &mut errors),
        active_users_limit: opt_limit(&m, &mut errors),
    };
    if let Err(r) = errors.into_result() {
        return r;
    }
    let expire = patch.is_expired == Some(true);
    match actors
        .organization
        .send(UpdateOrganization { id: id.clone(), patch })
        .await
        .map_err(Internal::from)
    {
        Ok(Ok(())) => {
            if expire {
                actors.publish(Event::OrganizationExpired { org: id });
            }
            JsonReply::new(200, json!({}))
        }
        Ok(Err(OrganizationLookupError::NotFound)) => JsonReply::not_found(),
        Ok(Err(OrganizationLookupError::Internal(e))) | Err(e) => JsonReply::internal(e),
    }
}

/// `GET|PATCH /administration/organizations/<id>/stats`. PATCH still needs
/// a JSON body, as in the reference.
pub async fn stats(actors: &Actors, raw_id: &str, patch_body: Option<&[u8]>) -> JsonReply {
    let id = match parse_org_id(raw_id) {
        Ok(id) => id,
        Err(r) => return r,
    };
    if let Some(body) = patch_body
        && let Err(r) = parse_body(body)
    {
        return r;
    }
    match actors
        .organization
        .send(GetOrganizationStats(id))
        .await
        .map_err(Internal::from)
    {
        Ok(Ok(s)) => {
            let fields = organization::stats_fields(&s);
            let mut out = Map::new();
            for (k, v) in fields {
                out.insert(k.to_string(), msgpack_to_json(&v));
            }
            JsonReply::new(200, Json::Object(out))
        }
        Ok(Err(OrganizationLookupError::NotFound)) => JsonReply::not_found(),
        Ok(Err(OrganizationLookupError::Internal(e))) | Err(e) => JsonReply::internal(e),
    }
}

/// The stats are built once, as msgpack; JSON gets the same figures.
fn msgpack_to_json(v: &parsec_protocol::value::Value) -> Json {
    use parsec_protocol::value::Value;
    match v {
        Value::Nil => Json::Null,
        Value::Boolean(b) => Json::Bool(*b),
        Value::Integer(i) => i
            .as_u64()
            .map(Json::from)
            .or_else(|| i.as_i64().map(Json::from))
            .unwrap_or(Json::Null),
        Value::String(s) => Json::String(s.as_str().unwrap_or_default().to_string()),
        Value::Array(a) => Json::Array(a.iter().map(msgpack_to_json).collect()),
        Value::Map(m) => Json::Object(
            m.iter()
                .map(|(k, v)| (k.as_str().unwrap_or_default().to_string(), msgpack_to_json(v)))
                .collect(),
        ),
        _ => Json::Null,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_time() {
        assert!(constant_time_eq(b"Bearer abc", b"Bearer abc"));
        assert!(!constant_time_eq(b"Bearer abd", b"Bearer abc"));
        assert!(!constant_time_eq(b"Bearer ab", b"Bearer abc"));
    }
}
