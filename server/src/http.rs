//! HTTP routes (http.md): landing page, redirect, static files, the
//! administration REST API, the anonymous route, and the websocket upgrade.
//!
//! Thin by design: each handler extracts the request's parts and calls the
//! matching function of `parsec_actors::{admin, anonymous, session}`.

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceFactory, ServiceRequest, ServiceResponse};
use actix_web::http::{StatusCode, header};
use actix_web::{App, HttpRequest, HttpResponse, middleware, web};
use parsec_actors::Actors;
use parsec_actors::admin::{self, JsonReply};
use parsec_actors::anonymous::{self, MsgpackReply};

/// Shared state of the routes.
#[derive(Clone)]
pub struct AppState {
    pub actors: Actors,
    /// `parsec://host[:port]` (netloc) of this server, for redirects.
    pub backend_netloc: String,
    /// Query parameters the backend address adds to redirects (`no_ssl=true`).
    pub backend_query: Vec<(String, String)>,
    /// `--forward-proto-enforce-https`: (header name, expected value).
    pub forward_proto_enforce_https: Option<(String, String)>,
}

/// Request bodies above this are not for us (certificates and admin JSON are
/// a few KiB).
pub const MAX_BODY: usize = 1024 * 1024;

const HTML: &str = "text/html;charset=utf-8";

/// Our `server` header, on every response.
pub const SERVER_HEADER: &str = "parsec";

/// The application: every route, behind its middleware (outermost first):
/// access log, `server` header, HTTPS enforcement.
pub fn app(
    state: web::Data<AppState>,
) -> App<
    impl ServiceFactory<
        ServiceRequest,
        Config = (),
        Response = ServiceResponse<impl MessageBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    App::new()
        .app_data(state)
        .wrap(middleware::from_fn(enforce_https))
        .wrap(middleware::DefaultHeaders::new().add(("server", SERVER_HEADER)))
        .wrap(middleware::from_fn(access_log))
        .configure(configure)
}

/// Registers every route.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.app_data(web::PayloadConfig::new(MAX_BODY))
        .service(
            web::resource("/")
                .route(web::get().to(landing))
                .default_service(web::to(method_not_allowed)),
        )
        .service(
            web::resource("/redirect/{path:.*}")
                .route(web::get().to(redirect))
                .default_service(web::to(method_not_allowed)),
        )
        .service(
            web::resource("/static/{name:.*}")
                .route(web::get().to(static_file))
                .default_service(web::to(method_not_allowed)),
        )
        .service(
            web::resource("/administration/organizations")
                .route(web::post().to(admin_create))
                .default_service(web::to(method_not_allowed)),
        )
        .service(
            web::resource("/administration/organizations/{id}")
                .route(web::get().to(admin_get))
                .route(web::patch().to(admin_patch))
                .default_service(web::to(method_not_allowed)),
        )
        .service(
            web::resource("/administration/organizations/{id}/stats")
                .route(web::get().to(admin_stats))
                .route(web::patch().to(admin_stats))
                .default_service(web::to(method_not_allowed)),
        )
        .service(
            web::resource("/anonymous/{id}")
                .route(web::get().to(anonymous_get))
                .route(web::post().to(anonymous_post))
                .default_service(web::to(method_not_allowed)),
        )
        .service(
            web::resource("/ws")
                .route(web::get().to(websocket))
                .default_service(web::to(not_found)),
        )
        .service(web::resource("/health").route(web::get().to(health)))
        .service(web::resource("/ready").route(web::get().to(ready)))
        .default_service(web::to(not_found));
}

/// Liveness for load balancers: the process serves HTTP.
async fn health() -> HttpResponse {
    HttpResponse::Ok().content_type("text/plain").body("ok")
}

/// Readiness: the storage this instance depends on answers (the database and
/// the block store, each probe bounded by `health::PROBE_TIMEOUT`); `503`
/// otherwise, so that a load balancer stops sending clients here.
async fn ready(state: web::Data<AppState>) -> HttpResponse {
    match parsec_actors::health::check(&state.actors).await {
        Ok(()) => HttpResponse::Ok().content_type("text/plain").body("ready"),
        Err(e) => {
            log::warn!("readiness check failed: {e}");
            HttpResponse::ServiceUnavailable()
                .content_type("text/plain")
                .body("not ready")
        }
    }
}

/// Access log: one line per HTTP request with its method, path (never the
/// query string: invitation links carry tokens there), organization when the
/// route names one, status and duration. INFO, except load balancer probes
/// and websocket upgrades (whose session logs every command) at DEBUG.
pub async fn access_log(
    req: actix_web::dev::ServiceRequest,
    next: actix_web::middleware::Next<impl actix_web::body::MessageBody + 'static>,
) -> Result<actix_web::dev::ServiceResponse<impl actix_web::body::MessageBody>, actix_web::Error> {
    const MAX_PATH: usize = 200;
    let started = std::time::Instant::now();
    let method = req.method().clone();
    let mut path = req.path().to_string();
    if path.len() > MAX_PATH {
        let cut = (0..=MAX_PATH).rev().find(|&i| path.is_char_boundary(i)).unwrap_or(0);
        path.truncate(cut);
        path.push('…');
    }
    let res = next.call(req).await;
    let (status, org) = match &res {
        Ok(r) => (r.status(), r.request().match_info().get("id").map(str::to_string)),
        Err(e) => (e.as_response_error().status_code(), None),
    };
    log_request(
        method.as_str(),
        &path,
        org.as_deref(),
        status.as_u16(),
        started.elapsed(),
    );
    res
}

/// The access log line of one request (see [`access_log`]; websocket
/// upgrades answered without actix-web log theirs here too).
pub(crate) fn log_request(method: &str, path: &str, org: Option<&str>, status: u16, elapsed: std::time::Duration) {
    let quiet = matches!(path, "/health" | "/ready") || status == StatusCode::SWITCHING_PROTOCOLS.as_u16();
    let level = if quiet { log::Level::Debug } else { log::Level::Info };
    let org = org.map(|o| format!(" org={o}")).unwrap_or_default();
    log::log!(
        level,
        "http {method} {path}{org} status={status} {}ms",
        elapsed.as_millis()
    );
}

/// `--forward-proto-enforce-https H:V`: a request whose header H is present
/// with another value than V came over plain HTTP through a proxy; send it to
/// the HTTPS address (a missing header does not trigger it, as in the reference).
pub async fn enforce_https(
    req: actix_web::dev::ServiceRequest,
    next: actix_web::middleware::Next<impl actix_web::body::MessageBody + 'static>,
) -> Result<actix_web::dev::ServiceResponse<actix_web::body::BoxBody>, actix_web::Error> {
    let redirect = req.app_data::<web::Data<AppState>>().and_then(|state| {
        let (name, expected) = state.forward_proto_enforce_https.as_ref()?;
        let value = req.headers().get(name.as_str())?;
        (value.as_bytes() != expected.as_bytes()).then(|| {
            let target = req.uri().path_and_query().map(|p| p.as_str()).unwrap_or("/");
            format!("https://{}{}", state.backend_netloc, target)
        })
    });
    match redirect {
        Some(location) => {
            let resp = HttpResponse::MovedPermanently()
                .insert_header((header::LOCATION, location))
                .finish();
            Ok(req.into_response(resp))
        }
        None => Ok(next.call(req).await?.map_into_boxed_body()),
    }
}

async fn landing() -> HttpResponse {
    HttpResponse::Ok().content_type(HTML).body(LANDING_PAGE)
}

/// The reference's 404 is an HTML page.
pub async fn not_found() -> HttpResponse {
    HttpResponse::NotFound().content_type(HTML).body(NOT_FOUND_PAGE)
}

async fn method_not_allowed() -> HttpResponse {
    HttpResponse::MethodNotAllowed().finish()
}

/// Form-style quoting of a path, `/` kept (`a b/c` → `a+b/c`).
fn quote_plus(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'_' | b'.' | b'-' | b'~' | b'/' => out.push(b as char),
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// `GET /redirect/<path>` → `parsec://<netloc>/<path>?<query>` (http.md §4).
async fn redirect(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let path = req.match_info().get("path").unwrap_or_default();
    let mut query: Vec<(String, String)> = web::Query::<Vec<(String, String)>>::from_query(req.query_string())
        .map(|q| q.into_inner())
        .unwrap_or_default()
        .into_iter()
        .filter(|(k, v)| k != "no_ssl" && !v.is_empty())
        .collect();
    query.extend(state.backend_query.iter().cloned());
    let mut location = format!("parsec://{}/{}", state.backend_netloc, quote_plus(path));
    if !query.is_empty() {
        let q: Vec<String> = query
            .iter()
            .map(|(k, v)| format!("{}={}", quote_plus(k), quote_plus(v)))
            .collect();
        location.push('?');
        location.push_str(&q.join("&"));
    }
    HttpResponse::Found()
        .insert_header((header::LOCATION, location))
        .finish()
}

/// Static files shipped in the binary (used by the landing page and the
/// invitation e-mail).
async fn static_file(req: HttpRequest) -> HttpResponse {
    let name = req.match_info().get("name").unwrap_or_default();
    let file: Option<(&str, &'static [u8])> = match name {
        "base.css" => Some(("text/css", include_bytes!("../static/base.css"))),
        "favicon.ico" => Some(("image/vnd.microsoft.icon", include_bytes!("../static/favicon.ico"))),
        "parsec.png" => Some(("image/png", include_bytes!("../static/parsec.png"))),
        "parsec-vert.png" => Some(("image/png", include_bytes!("../static/parsec-vert.png"))),
        _ => None,
    };
    match file {
        Some((content_type, body)) => HttpResponse::Ok().content_type(content_type).body(body),
        None => HttpResponse::NotFound().finish(),
    }
}

fn json(reply: JsonReply) -> HttpResponse {
    HttpResponse::build(StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .content_type("application/json;charset=utf-8")
        .body(reply.body.to_string())
}

fn msgpack(reply: MsgpackReply) -> HttpResponse {
    HttpResponse::build(StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .content_type("application/msgpack")
        .body(reply.body)
}

/// The refusal of a request without the administration token, if it is one.
fn refusal(req: &HttpRequest, state: &AppState) -> Option<HttpResponse> {
    let auth = req.headers().get(header::AUTHORIZATION).map(|h| h.as_bytes());
    admin::authorize(&state.actors, auth).err().map(json)
}

fn org_id(req: &HttpRequest) -> String {
    req.match_info().get("id").unwrap_or_default().to_string()
}

async fn admin_create(req: HttpRequest, body: web::Bytes, state: web::Data<AppState>) -> HttpResponse {
    if let Some(r) = refusal(&req, &state) {
        return r;
    }
    json(admin::create(&state.actors, &body).await)
}

async fn admin_get(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    if let Some(r) = refusal(&req, &state) {
        return r;
    }
    json(admin::get(&state.actors, &org_id(&req)).await)
}

async fn admin_patch(req: HttpRequest, body: web::Bytes, state: web::Data<AppState>) -> HttpResponse {
    if let Some(r) = refusal(&req, &state) {
        return r;
    }
    json(admin::patch(&state.actors, &org_id(&req), &body).await)
}

async fn admin_stats(req: HttpRequest, body: web::Bytes, state: web::Data<AppState>) -> HttpResponse {
    if let Some(r) = refusal(&req, &state) {
        return r;
    }
    let patch_body = (req.method() == actix_web::http::Method::PATCH).then_some(&body[..]);
    json(admin::stats(&state.actors, &org_id(&req), patch_body).await)
}

async fn anonymous_get(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    msgpack(anonymous::get(&state.actors, &org_id(&req)).await)
}

async fn anonymous_post(req: HttpRequest, body: web::Bytes, state: web::Data<AppState>) -> HttpResponse {
    msgpack(anonymous::post(&state.actors, &org_id(&req), &body).await)
}

/// The application state's actors, lent to a websocket session: an `Arc`
/// clone, where cloning [`Actors`] allocates twice per actor address and
/// would be held by every connection for its whole life.
pub(crate) struct SharedActors(pub(crate) web::Data<AppState>);

impl AsRef<Actors> for SharedActors {
    fn as_ref(&self) -> &Actors {
        &self.0.actors
    }
}

/// `/ws`: a websocket upgrade becomes a session; anything else is a 404 page.
///
/// Valid upgrades starting a connection never get here: `conn` answers them
/// without actix-web. This handler serves the rest: refusals (with
/// actix-web-actors' statuses), and upgrades `conn` leaves to actix-web
/// (HTTP/1.0, a second request on a kept-alive connection…).
async fn websocket(req: HttpRequest, payload: web::Payload, state: web::Data<AppState>) -> HttpResponse {
    let is_upgrade = req
        .headers()
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    if !is_upgrade {
        return not_found().await;
    }
    match parsec_actors::session::ws::start_shared(&req, payload, SharedActors(state)) {
        Ok(resp) => resp,
        Err(e) => {
            log::info!("websocket upgrade refused: {e}");
            e.error_response()
        }
    }
}

const LANDING_PAGE: &str = r#"<!DOCTYPE html>
<html lang="en">
<head><meta charset="utf-8"><title>Parsec server</title><link rel="stylesheet" href="/static/base.css"><link rel="icon" href="/static/favicon.ico"></head>
<body><main><img src="/static/parsec.png" alt="Parsec" width="120"><h1>Welcome to this Parsec server</h1>
<p>This server stores end-to-end encrypted data for Parsec clients. To use it, install the
<a href="https://parsec.cloud/get-parsec">Parsec client</a> and connect it with the link you were given.</p></main></body>
</html>
"#;

const NOT_FOUND_PAGE: &str = r#"<!DOCTYPE html>
<html lang="en">
<head><meta charset="utf-8"><title>Not found - Parsec server</title><link rel="stylesheet" href="/static/base.css"></head>
<body><main><h1>404 - Not found</h1><p>There is nothing here. <a href="/">Back to the welcome page</a>.</p></main></body>
</html>
"#;

#[cfg(test)]
mod tests {
    use super::quote_plus;

    #[test]
    fn quoting() {
        assert_eq!(quote_plus("a b/c"), "a+b/c");
        assert_eq!(quote_plus("Org8"), "Org8");
        assert_eq!(quote_plus("é"), "%C3%A9");
    }
}
