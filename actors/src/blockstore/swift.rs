//! The `swift:` block store: one object per block in an OpenStack Swift
//! container (reference `swift_blockstore.py`, which uses python-swiftclient).
//!
//! - Authentication is Swift's v1 auth, as swiftclient's default: `GET
//!   <auth_url>` with `X-Auth-User: <user>:<tenant>` and `X-Auth-Key:
//!   <password>` answers `X-Storage-Url` and `X-Auth-Token`. Both are kept
//!   and reused until `X-Auth-Token-Expires` says the token is about to
//!   expire, or a request is refused with 401; then they are renewed (once per
//!   request, like swiftclient, and by one caller at a time).
//! - At startup the container must answer `HEAD` (the reference refuses to
//!   start otherwise): wrong credentials, a missing container or an
//!   unreachable server is a one-line error.
//! - Object `<container>/<organization>/<block uuid with dashes>`, URL-quoted
//!   with `/` kept, as swiftclient quotes it.
//! - Uploads send the `ETag` (MD5) of the block, which Swift checks.
//! - One `reqwest` client (the one rust-s3 already brings, on OpenSSL) so
//!   connections are pooled; every call is bounded by a timeout. A request
//!   failing at the transport level (a pooled connection that the server
//!   closed, as after a Swift restart) is sent once more: reads and writes of
//!   a block are idempotent.

use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use parsec_protocol::types::*;
use reqwest::{Method, StatusCode};

use super::{BlockStore, BlockStoreError, object_name, with_deadline};

/// What `swift:<auth_url>:<tenant>:<container>:<user>:<password>` says.
#[derive(Clone)]
pub struct SwiftSettings {
    /// v1 auth endpoint, with its scheme, e.g. `https://host/auth/v1.0`.
    pub auth_url: String,
    pub tenant: String,
    pub container: String,
    pub user: String,
    pub password: String,
}

impl std::fmt::Debug for SwiftSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SwiftSettings")
            .field("auth_url", &self.auth_url)
            .field("tenant", &self.tenant)
            .field("container", &self.container)
            .field("user", &self.user)
            .field("password", &"***")
            .finish()
    }
}

/// A token and where it is valid.
#[derive(Clone, Debug)]
struct Session {
    storage_url: String,
    token: String,
    /// When to stop using the token (a little before Swift's own expiry).
    renew_at: Option<Instant>,
}

impl Session {
    fn is_fresh(&self) -> bool {
        self.renew_at.is_none_or(|at| Instant::now() < at)
    }
}

/// Blocks in a Swift container.
pub struct SwiftBlockStore {
    http: reqwest::Client,
    settings: SwiftSettings,
    /// The current session; the lock is held while (re)authenticating only,
    /// so concurrent requests wait for one authentication instead of each
    /// making their own.
    session: tokio::sync::Mutex<Option<Session>>,
    timeout: Duration,
}

/// Why a Swift exchange failed (before it becomes a [`BlockStoreError`] or a
/// startup error).
#[derive(Debug, thiserror::Error)]
enum SwiftError {
    #[error("authentication refused by {url} (HTTP {status}): check the user, tenant and password")]
    AuthRefused { url: String, status: u16 },
    #[error("authentication at {url} answered HTTP {status} without a storage URL and token")]
    AuthIncomplete { url: String, status: u16 },
    #[error("no such container (HTTP 404)")]
    NoContainer,
    #[error("HTTP {status} {reason}")]
    Status { status: u16, reason: String },
    #[error("{0}")]
    Transport(String),
}

/// reqwest's text stops at "error sending request": the cause (refused,
/// reset, timeout, TLS…) is further down the chain.
fn transport(e: &reqwest::Error) -> SwiftError {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    SwiftError::Transport(text)
}

fn status_error(status: StatusCode) -> SwiftError {
    SwiftError::Status {
        status: status.as_u16(),
        reason: status.canonical_reason().unwrap_or("").to_string(),
    }
}

/// Python's `urllib.parse.quote(text, safe='/')`: percent-encodes the UTF-8
/// bytes of everything but ASCII letters, digits, `_.-~` and `/`.
fn quote(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for &byte in text.as_bytes() {
        if byte.is_ascii_alphanumeric() || b"_.-~/".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

impl SwiftBlockStore {
    /// The store, without contacting Swift (see [`SwiftBlockStore::connect`]).
    pub fn new(settings: &SwiftSettings, timeout: Duration) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .timeout(timeout)
            // Swift's proxy closes idle connections after 60 s by default.
            .pool_idle_timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| anyhow::anyhow!("Swift blockstore: HTTP client: {e}"))?;
        Ok(Self {
            http,
            settings: settings.clone(),
            session: tokio::sync::Mutex::new(None),
            timeout,
        })
    }

    /// The store, once authenticated and with its container checked (`HEAD`).
    pub async fn connect(settings: &SwiftSettings, timeout: Duration) -> anyhow::Result<Self> {
        let store = Self::new(settings, timeout)?;
        store.check().await?;
        Ok(store)
    }

    /// Authenticates and checks the container.
    pub async fn check(&self) -> anyhow::Result<()> {
        let what = format!(
            "Swift blockstore: container `{}` at {}",
            self.settings.container, self.settings.auth_url
        );
        let head = async {
            match self.request(Method::HEAD, None, None).await? {
                status if status.is_success() => Ok(()),
                StatusCode::NOT_FOUND => Err(SwiftError::NoContainer),
                status => Err(status_error(status)),
            }
        };
        match tokio::time::timeout(self.timeout, head).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => anyhow::bail!("{what}: {e}"),
            Err(_) => anyhow::bail!("{what}: no answer within {:?}", self.timeout),
        }
    }

    /// A fresh session: the current one, or a new one if there is none, it
    /// expired, or it is `stale` (the token a request just saw refused).
    async fn session(&self, stale: Option<&str>) -> Result<Session, SwiftError> {
        let mut current = self.session.lock().await;
        if let Some(session) = current.as_ref()
            && session.is_fresh()
            && stale != Some(session.token.as_str())
        {
            return Ok(session.clone());
        }
        *current = None;
        let session = self.authenticate().await?;
        *current = Some(session.clone());
        Ok(session)
    }

    /// v1 auth.
    async fn authenticate(&self) -> Result<Session, SwiftError> {
        let url = &self.settings.auth_url;
        let rep = self
            .http
            .get(url)
            .header(
                "X-Auth-User",
                format!("{}:{}", self.settings.user, self.settings.tenant),
            )
            .header("X-Auth-Key", &self.settings.password)
            .send()
            .await
            .map_err(|e| transport(&e))?;
        let status = rep.status();
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            return Err(SwiftError::AuthRefused {
                url: url.clone(),
                status: status.as_u16(),
            });
        }
        if !status.is_success() {
            return Err(status_error(status));
        }
        let header = |name: &str| {
            rep.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let (Some(storage_url), Some(token)) = (
            header("X-Storage-Url"),
            header("X-Auth-Token").or_else(|| header("X-Storage-Token")),
        ) else {
            return Err(SwiftError::AuthIncomplete {
                url: url.clone(),
                status: status.as_u16(),
            });
        };
        // Renew a little early: a request must not leave with a token that
        // expires on the way.
        let renew_at = header("X-Auth-Token-Expires")
            .and_then(|v| v.trim().parse::<f64>().ok())
            .filter(|secs| secs.is_finite() && *secs >= 0.0)
            .map(|secs| {
                let margin = (secs / 10.0).min(60.0);
                Instant::now() + Duration::from_secs_f64(secs - margin)
            });
        Ok(Session {
            storage_url: storage_url.trim_end_matches('/').to_string(),
            token,
            renew_at,
        })
    }

    /// One request on the container (`object: None`) or on an object, with
    /// the session's token; a 401 renews the session and retries once, a
    /// transport failure retries once. Returns the status; a body of a
    /// successful `GET` is read by [`SwiftBlockStore::request_body`].
    async fn request(
        &self,
        method: Method,
        object: Option<&str>,
        body: Option<&Bytes>,
    ) -> Result<StatusCode, SwiftError> {
        self.exchange(method, object, body).await.map(|(status, _)| status)
    }

    async fn request_body(&self, object: &str) -> Result<(StatusCode, Bytes), SwiftError> {
        let (status, body) = self.exchange(Method::GET, Some(object), None).await?;
        Ok((status, body.unwrap_or_default()))
    }

    async fn exchange(
        &self,
        method: Method,
        object: Option<&str>,
        body: Option<&Bytes>,
    ) -> Result<(StatusCode, Option<Bytes>), SwiftError> {
        let mut session = self.session(None).await?;
        let mut renewed = false;
        let mut resent = false;
        loop {
            let mut url = format!("{}/{}", session.storage_url, quote(&self.settings.container));
            if let Some(object) = object {
                url.push('/');
                url.push_str(&quote(object));
            }
            let mut req = self
                .http
                .request(method.clone(), &url)
                .header("X-Auth-Token", &session.token);
            if let Some(body) = body {
                req = req
                    .header("ETag", md5_hex(body))
                    .header("Content-Type", "application/octet-stream")
                    .body(body.clone());
            }
            let rep = match req.send().await {
                Ok(rep) => rep,
                Err(e) if !resent && !e.is_timeout() => {
                    log::debug!("Swift blockstore: {method} {url}: {}; sending again", transport(&e));
                    resent = true;
                    continue;
                }
                Err(e) => return Err(transport(&e)),
            };
            let status = rep.status();
            if status == StatusCode::UNAUTHORIZED && !renewed {
                renewed = true;
                session = self.session(Some(&session.token)).await?;
                continue;
            }
            let body = if method == Method::GET && status.is_success() {
                Some(rep.bytes().await.map_err(|e| transport(&e))?)
            } else {
                None
            };
            return Ok((status, body));
        }
    }

    fn failure(&self, op: &str, org: &OrganizationId, block_id: Uuid, e: BlockStoreError) -> BlockStoreError {
        log::warn!(
            "Swift blockstore: block {op} error: container `{}` at {} org={} block={}: {e}",
            self.settings.container,
            self.settings.auth_url,
            org.as_str(),
            block_id.hyphenated()
        );
        e
    }
}

fn md5_hex(data: &[u8]) -> String {
    match openssl::hash::hash(openssl::hash::MessageDigest::md5(), data) {
        Ok(digest) => hex::encode(digest),
        // Only if OpenSSL lost its default provider; Swift then skips the check.
        Err(_) => String::new(),
    }
}

fn unavailable(e: SwiftError) -> BlockStoreError {
    BlockStoreError::Unavailable(e.into())
}

#[async_trait]
impl BlockStore for SwiftBlockStore {
    async fn read(&self, org: &OrganizationId, block_id: Uuid) -> Result<Bytes, BlockStoreError> {
        let name = object_name(org, block_id);
        let call = async {
            match self.request_body(&name).await.map_err(unavailable)? {
                (status, body) if status.is_success() => Ok(body),
                (StatusCode::NOT_FOUND, _) => Err(BlockStoreError::NotFound),
                (status, _) => Err(unavailable(status_error(status))),
            }
        };
        with_deadline(self.timeout, call)
            .await
            .map_err(|e| self.failure("read", org, block_id, e))
    }

    async fn create(&self, org: &OrganizationId, block_id: Uuid, block: Bytes) -> Result<(), BlockStoreError> {
        let name = object_name(org, block_id);
        let call = async {
            match self
                .request(Method::PUT, Some(&name), Some(&block))
                .await
                .map_err(unavailable)?
            {
                status if status.is_success() => Ok(()),
                status => Err(unavailable(status_error(status))),
            }
        };
        with_deadline(self.timeout, call)
            .await
            .map_err(|e| self.failure("create", org, block_id, e))
    }

    /// Authenticated `HEAD` on the container, as at startup.
    async fn health(&self) -> Result<(), BlockStoreError> {
        self.check().await.map_err(BlockStoreError::Unavailable)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[test]
    fn quoting_as_swiftclient() {
        assert_eq!(quote("Org_1-x/3b917792-35ac"), "Org_1-x/3b917792-35ac");
        assert_eq!(quote("a b:c"), "a%20b%3Ac");
        assert_eq!(quote("Éa"), "%C3%89a");
        assert_eq!(quote("~."), "~.");
    }

    #[test]
    fn md5_of_a_block() {
        assert_eq!(md5_hex(b""), "d41d8cd98f00b204e9800998ecf8427e");
    }

    #[test]
    fn password_is_not_in_debug_output() {
        let s = SwiftSettings {
            auth_url: "http://x".into(),
            tenant: "t".into(),
            container: "c".into(),
            user: "u".into(),
            password: "TOPSECRET".into(),
        };
        assert!(!format!("{s:?}").contains("TOPSECRET"));
    }

    /// A fake v1-auth object server: counts authentications, can expire
    /// tokens early (`token_life`) or revoke them all (a 401 mid-session).
    #[derive(Default)]
    struct Fake {
        auths: AtomicUsize,
        valid_from: AtomicUsize,
        token_life: Option<u64>,
        objects: std::sync::Mutex<std::collections::HashMap<String, Vec<u8>>>,
    }

    async fn fake_swift(fake: Arc<Fake>) -> String {
        use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
        fn token_ok(req: &HttpRequest, fake: &Fake) -> bool {
            let token = req.headers().get("X-Auth-Token").and_then(|v| v.to_str().ok());
            token
                .and_then(|t| t.strip_prefix("tok-"))
                .and_then(|n| n.parse::<usize>().ok())
                .is_some_and(|n| n >= fake.valid_from.load(Ordering::SeqCst))
        }
        async fn handle(req: HttpRequest, body: web::Bytes, fake: web::Data<Arc<Fake>>) -> HttpResponse {
            let path = req.path().to_string();
            if path == "/auth/v1.0" {
                let user = req.headers().get("X-Auth-User").and_then(|v| v.to_str().ok());
                let key = req.headers().get("X-Auth-Key").and_then(|v| v.to_str().ok());
                if (user, key) != (Some("u:t"), Some("p")) {
                    return HttpResponse::Unauthorized().finish();
                }
                let n = fake.auths.fetch_add(1, Ordering::SeqCst) + 1;
                let mut rep = HttpResponse::Ok();
                let host = req.connection_info().host().to_string();
                rep.insert_header(("X-Storage-Url", format!("http://{host}/v1/AUTH_u")));
                rep.insert_header(("X-Auth-Token", format!("tok-{n}")));
                if let Some(life) = fake.token_life {
                    rep.insert_header(("X-Auth-Token-Expires", life.to_string()));
                }
                return rep.finish();
            }
            if !token_ok(&req, &fake) {
                return HttpResponse::Unauthorized().finish();
            }
            let Some(name) = path.strip_prefix("/v1/AUTH_u/c") else {
                return HttpResponse::NotFound().finish();
            };
            let mut objects = fake.objects.lock().unwrap();
            match (req.method().as_str(), name) {
                ("HEAD", "") => HttpResponse::NoContent().finish(),
                ("PUT", name) => {
                    let etag = req.headers().get("ETag").and_then(|v| v.to_str().ok());
                    if etag != Some(md5_hex(&body).as_str()) {
                        return HttpResponse::UnprocessableEntity().finish();
                    }
                    objects.insert(name.to_string(), body.to_vec());
                    HttpResponse::Created().finish()
                }
                ("GET", name) => match objects.get(name) {
                    Some(data) => HttpResponse::Ok().body(data.clone()),
                    None => HttpResponse::NotFound().finish(),
                },
                _ => HttpResponse::MethodNotAllowed().finish(),
            }
        }
        let data = web::Data::new(fake);
        let server = HttpServer::new(move || App::new().app_data(data.clone()).default_service(web::to(handle)))
            .workers(1)
            .disable_signals()
            .bind(("127.0.0.1", 0))
            .unwrap();
        let url = format!("http://{}/auth/v1.0", server.addrs()[0]);
        actix_web::rt::spawn(server.run());
        url
    }

    fn fake_settings(auth_url: String, password: &str) -> SwiftSettings {
        SwiftSettings {
            auth_url,
            tenant: "t".into(),
            container: "c".into(),
            user: "u".into(),
            password: password.into(),
        }
    }

    #[actix_web::test]
    async fn session_is_reused_then_renewed() {
        let fake = Arc::new(Fake::default());
        let url = fake_swift(fake.clone()).await;
        let org = OrganizationId::parse("Org").unwrap();
        let store = SwiftBlockStore::connect(&fake_settings(url.clone(), "p"), Duration::from_secs(5))
            .await
            .unwrap();
        let id = Uuid::new_v4();
        store.create(&org, id, Bytes::from_static(b"block")).await.unwrap();
        for _ in 0..5 {
            assert_eq!(store.read(&org, id).await.unwrap(), Bytes::from_static(b"block"));
        }
        assert_eq!(fake.auths.load(Ordering::SeqCst), 1, "one token for every call");
        assert!(
            fake.objects
                .lock()
                .unwrap()
                .contains_key(&format!("/Org/{}", id.hyphenated()))
        );
        assert!(matches!(
            store.read(&org, Uuid::new_v4()).await,
            Err(BlockStoreError::NotFound)
        ));

        // Tokens revoked behind our back: a 401, one renewal, the call succeeds.
        fake.valid_from.store(2, Ordering::SeqCst);
        assert_eq!(store.read(&org, id).await.unwrap(), Bytes::from_static(b"block"));
        assert_eq!(fake.auths.load(Ordering::SeqCst), 2);

        // A wrong password is refused at startup with a clear message.
        let err = SwiftBlockStore::connect(&fake_settings(url, "wrong"), Duration::from_secs(5))
            .await
            .err()
            .unwrap();
        let text = format!("{err:#}");
        assert!(
            text.contains("authentication refused") && text.contains("HTTP 401"),
            "{text}"
        );
    }

    #[actix_web::test]
    async fn expiring_tokens_are_renewed_before_use() {
        let fake = Arc::new(Fake {
            token_life: Some(1),
            ..Fake::default()
        });
        let url = fake_swift(fake.clone()).await;
        let org = OrganizationId::parse("Org").unwrap();
        let store = SwiftBlockStore::connect(&fake_settings(url, "p"), Duration::from_secs(5))
            .await
            .unwrap();
        let id = Uuid::new_v4();
        store.create(&org, id, Bytes::from_static(b"x")).await.unwrap();
        assert_eq!(fake.auths.load(Ordering::SeqCst), 1);
        tokio::time::sleep(Duration::from_millis(1100)).await;
        store.read(&org, id).await.unwrap();
        assert_eq!(fake.auths.load(Ordering::SeqCst), 2, "renewed on expiry, no 401 needed");
    }

    #[actix_web::test]
    async fn unreachable_auth_url_is_a_one_line_error() {
        let port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap().port()
        };
        let s = SwiftSettings {
            auth_url: format!("http://127.0.0.1:{port}/auth/v1.0"),
            tenant: "t".into(),
            container: "c".into(),
            user: "u".into(),
            password: "p".into(),
        };
        let err = SwiftBlockStore::connect(&s, Duration::from_secs(5))
            .await
            .err()
            .unwrap();
        let text = format!("{err:#}");
        assert!(
            text.starts_with(&format!("Swift blockstore: container `c` at {}: ", s.auth_url)),
            "{text}"
        );
        assert!(!text.contains('\n'), "{text}");
    }
}
