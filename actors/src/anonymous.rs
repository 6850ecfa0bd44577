//! The anonymous HTTP route `/anonymous/<organization_id>` (http.md §3):
//! `organization_bootstrap` and the PKI enrollment submission commands, with
//! msgpack bodies. Command-level errors are HTTP 200; an unknown organization
//! is 404 with an empty msgpack map, which the 2.10 client takes as "old
//! server" and retries over the legacy v1 websocket.

use parsec_protocol::cmds::{self, LoadError, anonymous};
use parsec_protocol::types::OrganizationId;
use parsec_protocol::value::{self, Value};

use crate::Actors;
use crate::backend::*;
use crate::organization::{self, BootstrapRequest, CreateOrganization, GetOrganization};

/// HTTP status and msgpack body.
#[derive(Debug, Clone, PartialEq)]
pub struct MsgpackReply {
    pub status: u16,
    pub body: Vec<u8>,
}

impl MsgpackReply {
    fn not_found() -> Self {
        Self {
            status: 404,
            body: value::pack(&Value::Map(vec![])),
        }
    }
    fn ok(v: &Value) -> Self {
        Self {
            status: 200,
            body: value::pack(v),
        }
    }
    fn internal(e: Internal) -> Self {
        log::error!("anonymous route: {:#}", e.0);
        Self {
            status: 500,
            body: b"Parsec server has crashed :'(".to_vec(),
        }
    }
}

async fn org_exists(actors: &Actors, id: &OrganizationId) -> Result<bool, Internal> {
    match actors.organization.send(GetOrganization(id.clone())).await? {
        Ok(_) => Ok(true),
        Err(OrganizationLookupError::NotFound) => Ok(false),
        Err(OrganizationLookupError::Internal(e)) => Err(e),
    }
}

/// `GET /anonymous/<org>`: 200 `{}` if the organization exists.
pub async fn get(actors: &Actors, raw_id: &str) -> MsgpackReply {
    let Ok(id) = OrganizationId::parse(raw_id) else {
        return MsgpackReply::not_found();
    };
    match org_exists(actors, &id).await {
        Ok(true) => MsgpackReply::ok(&Value::Map(vec![])),
        Ok(false) => MsgpackReply::not_found(),
        Err(e) => MsgpackReply::internal(e),
    }
}

/// Creates the organization with token `""` for a spontaneous bootstrap.
/// "Already exists" is a race with another bootstrap, and is fine.
async fn create_spontaneously(actors: &Actors, id: &OrganizationId) -> Result<(), Internal> {
    let settings = &actors.settings;
    let msg = CreateOrganization {
        id: id.clone(),
        bootstrap_token: String::new(),
        active_users_limit: settings.organization_initial_active_users_limit,
        user_profile_outsider_allowed: settings.organization_initial_user_profile_outsider_allowed,
    };
    match actors.organization.send(msg).await? {
        Ok(()) | Err(OrganizationCreateError::AlreadyExists) => Ok(()),
        Err(OrganizationCreateError::Internal(e)) => Err(e),
    }
}

/// `POST /anonymous/<org>`.
pub async fn post(actors: &Actors, raw_id: &str, body: &[u8]) -> MsgpackReply {
    match post_inner(actors, raw_id, body).await {
        Ok(r) => r,
        Err(e) => MsgpackReply::internal(e),
    }
}

async fn post_inner(actors: &Actors, raw_id: &str, body: &[u8]) -> Result<MsgpackReply, Internal> {
    let Ok(id) = OrganizationId::parse(raw_id) else {
        return Ok(MsgpackReply::not_found());
    };
    let decoded = value::unpack_map(body);
    if !org_exists(actors, &id).await? {
        let is_bootstrap = decoded
            .as_ref()
            .is_ok_and(|m| cmds::cmd_name(m) == Some("organization_bootstrap"));
        if !(actors.settings.spontaneous_organization_bootstrap && is_bootstrap) {
            return Ok(MsgpackReply::not_found());
        }
        create_spontaneously(actors, &id).await?;
    }
    let Ok(map) = decoded else {
        return Ok(MsgpackReply::ok(&cmds::status("invalid_msg_format", vec![])));
    };
    let req = match anonymous::AnyReq::load(&map) {
        Ok(req) => req,
        // This route's `unknown_command` has no reason.
        Err(LoadError::UnknownCommand) => return Ok(MsgpackReply::ok(&cmds::status("unknown_command", vec![]))),
        Err(e) => return Ok(MsgpackReply::ok(&e.to_rep())),
    };
    let cmd = req.name();
    let started = std::time::Instant::now();
    let rep = match req {
        anonymous::AnyReq::OrganizationBootstrap(r) => {
            let req = BootstrapRequest {
                bootstrap_token: r.bootstrap_token,
                root_verify_key: r.root_verify_key,
                user_certificate: r.user_certificate,
                device_certificate: r.device_certificate,
                redacted_user_certificate: Some(r.redacted_user_certificate),
                redacted_device_certificate: Some(r.redacted_device_certificate),
            };
            organization::bootstrap(actors, &id, req).await?
        }
        anonymous::AnyReq::PkiEnrollmentSubmit(r) => crate::pki::submit(actors, &id, r).await?,
        anonymous::AnyReq::PkiEnrollmentInfo(r) => crate::pki::info(actors, &id, r).await?,
    };
    log::info!(
        "anonymous org={id} cmd={cmd} status={} {}ms",
        status_of(&rep),
        started.elapsed().as_millis()
    );
    Ok(MsgpackReply::ok(&rep))
}

/// The `status` of a reply, for logs.
pub fn status_of(rep: &Value) -> &str {
    match rep {
        Value::Map(m) => value::get(m, "status").and_then(Value::as_str).unwrap_or("?"),
        _ => "?",
    }
}
