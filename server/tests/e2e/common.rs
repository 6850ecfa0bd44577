//! Test harness: the real HTTP server on a free port, a raw websocket client
//! (frames built by hand, so tests can also send what a real client never
//! would), and helpers to create and bootstrap organizations.

use std::net::SocketAddr;
use std::time::Duration;

use actix_web::{App, HttpServer, web};
use ed25519_dalek::{Signer, SigningKey};
use parsec_actors::backend::Backends;
use parsec_actors::{Actors, Settings};
use parsec_protocol::certif::{self, DeviceCertificate, UserCertificate};
use parsec_protocol::handshake;
use parsec_protocol::types::*;
use parsec_protocol::value::{self, Value};
use parsec_server::http;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub const TOKEN: &str = "s3cr3t";

/// A running server.
pub struct TestServer {
    pub addr: SocketAddr,
}

impl TestServer {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }
}

/// Starts the server as `run --dev` would, on a free port.
pub async fn start_server() -> TestServer {
    let settings = Settings {
        administration_token: TOKEN.into(),
        spontaneous_organization_bootstrap: false,
        organization_initial_active_users_limit: None,
        organization_initial_user_profile_outsider_allowed: true,
    };
    let actors = Actors::start(Backends::memory(), settings);
    let state = http::AppState {
        actors,
        backend_netloc: "127.0.0.1:6777".into(),
        backend_query: vec![("no_ssl".into(), "true".into())],
    };
    let server = HttpServer::new(move || App::new().app_data(web::Data::new(state.clone())).configure(http::configure))
        .workers(1)
        .disable_signals()
        .bind(("127.0.0.1", 0))
        .expect("bind");
    let addr = server.addrs()[0];
    actix_web::rt::spawn(server.run());
    TestServer { addr }
}

// ------------------------------------------------------------------ HTTP

/// A plain HTTP/1.1 request; returns status and body.
pub async fn http_request(
    server: &TestServer,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, Vec<u8>) {
    let mut stream = TcpStream::connect(server.addr).await.expect("connect");
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Length: {}\r\n", body.len());
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    stream.write_all(req.as_bytes()).await.expect("write");
    stream.write_all(body).await.expect("write");
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut raw))
        .await
        .expect("timeout")
        .expect("read");
    parse_http_response(&raw)
}

fn parse_http_response(raw: &[u8]) -> (u16, Vec<u8>) {
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n").expect("headers end") + 4;
    let head = String::from_utf8_lossy(&raw[..end]).to_string();
    let status: u16 = head.split(' ').nth(1).expect("status").parse().expect("status code");
    let mut body = raw[end..].to_vec();
    if head.to_lowercase().contains("transfer-encoding: chunked") {
        body = dechunk(&body);
    }
    (status, body)
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(pos) = data.windows(2).position(|w| w == b"\r\n") else { break };
        let size = usize::from_str_radix(std::str::from_utf8(&data[..pos]).unwrap_or("0").trim(), 16).unwrap_or(0);
        if size == 0 {
            break;
        }
        out.extend_from_slice(&data[pos + 2..pos + 2 + size]);
        data = &data[pos + 2 + size + 2..];
    }
    out
}

pub async fn admin(server: &TestServer, method: &str, path: &str, body: serde_json::Value) -> (u16, serde_json::Value) {
    let body = if body.is_null() { Vec::new() } else { body.to_string().into_bytes() };
    let auth = format!("Bearer {TOKEN}");
    let (status, out) = http_request(server, method, path, &[("Authorization", &auth)], &body).await;
    (status, serde_json::from_slice(&out).unwrap_or(serde_json::Value::Null))
}

// ------------------------------------------------------------- websocket

/// A raw websocket client connection.
#[derive(Debug)]
pub struct WsClient {
    pub stream: TcpStream,
    buf: Vec<u8>,
}

/// What the server sent.
#[derive(Debug, PartialEq)]
pub enum WsEvent {
    Binary(Vec<u8>),
    Text(Vec<u8>),
    Close(Option<u16>),
    Pong(Vec<u8>),
    /// TCP closed without a close frame.
    Eof,
}

impl WsClient {
    /// Connects to `/ws` and completes the HTTP upgrade.
    pub async fn connect(server: &TestServer) -> WsClient {
        let mut stream = TcpStream::connect(server.addr).await.expect("connect");
        let req = "GET /ws HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                   Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
        stream.write_all(req.as_bytes()).await.expect("write");
        let mut buf = Vec::new();
        let end = loop {
            let mut chunk = [0u8; 4096];
            let n = stream.read(&mut chunk).await.expect("read");
            assert!(n > 0, "server closed during upgrade");
            buf.extend_from_slice(&chunk[..n]);
            if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break p + 4;
            }
        };
        let head = String::from_utf8_lossy(&buf[..end]).to_string();
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        WsClient { stream, buf: buf[end..].to_vec() }
    }

    /// Writes one frame, masked unless asked otherwise.
    pub async fn send_frame(&mut self, opcode: u8, payload: &[u8], fin: bool, masked: bool, rsv: u8) {
        let frame = frame(opcode, payload, fin, masked, rsv, None);
        self.stream.write_all(&frame).await.expect("write");
    }

    pub async fn send(&mut self, payload: &[u8]) {
        self.send_frame(0x2, payload, true, true, 0).await;
    }

    pub async fn send_value(&mut self, v: &Value) {
        self.send(&value::pack(v)).await;
    }

    async fn fill(&mut self, n: usize) -> bool {
        while self.buf.len() < n {
            let mut chunk = vec![0u8; 65536];
            match self.stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return false,
                Ok(k) => self.buf.extend_from_slice(&chunk[..k]),
            }
        }
        true
    }

    /// Next complete frame from the server (unfragmented: our server never fragments).
    pub async fn recv_event(&mut self) -> WsEvent {
        tokio::time::timeout(Duration::from_secs(10), self.recv_inner()).await.expect("recv timeout")
    }

    async fn recv_inner(&mut self) -> WsEvent {
        if !self.fill(2).await {
            return WsEvent::Eof;
        }
        let opcode = self.buf[0] & 0x0f;
        let mut len = (self.buf[1] & 0x7f) as usize;
        let mut head = 2;
        if len == 126 {
            if !self.fill(4).await {
                return WsEvent::Eof;
            }
            len = u16::from_be_bytes([self.buf[2], self.buf[3]]) as usize;
            head = 4;
        } else if len == 127 {
            if !self.fill(10).await {
                return WsEvent::Eof;
            }
            len = u64::from_be_bytes(self.buf[2..10].try_into().unwrap()) as usize;
            head = 10;
        }
        if !self.fill(head + len).await {
            return WsEvent::Eof;
        }
        let payload = self.buf[head..head + len].to_vec();
        self.buf.drain(..head + len);
        match opcode {
            0x2 => WsEvent::Binary(payload),
            0x1 => WsEvent::Text(payload),
            0x8 => WsEvent::Close((payload.len() >= 2).then(|| u16::from_be_bytes([payload[0], payload[1]]))),
            0xa => WsEvent::Pong(payload),
            other => panic!("unexpected opcode {other}"),
        }
    }

    /// Next binary message, decoded.
    pub async fn recv(&mut self) -> Vec<(Value, Value)> {
        match self.recv_event().await {
            WsEvent::Binary(b) => value::unpack_map(&b).expect("msgpack map"),
            other => panic!("expected a binary message, got {other:?}"),
        }
    }

    /// Sends a command and decodes its reply.
    pub async fn req(&mut self, cmd: &str, fields: Vec<(&str, Value)>) -> Vec<(Value, Value)> {
        let mut all = vec![("cmd", Value::from(cmd))];
        all.extend(fields);
        self.send_value(&value::map(all)).await;
        self.recv().await
    }
}

/// One websocket frame, client style.
pub fn frame(opcode: u8, payload: &[u8], fin: bool, masked: bool, rsv: u8, declared: Option<u64>) -> Vec<u8> {
    let mut out = vec![(if fin { 0x80 } else { 0 }) | (rsv << 4) | opcode];
    let len = declared.unwrap_or(payload.len() as u64);
    let mask_bit = if masked { 0x80 } else { 0 };
    if len < 126 {
        out.push(mask_bit | len as u8);
    } else if len < 65536 {
        out.push(mask_bit | 126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(mask_bit | 127);
        out.extend_from_slice(&len.to_be_bytes());
    }
    if masked {
        let key = [0x12, 0x34, 0x56, 0x78];
        out.extend_from_slice(&key);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    } else {
        out.extend_from_slice(payload);
    }
    out
}

/// Field of a decoded map.
pub fn field<'a>(m: &'a [(Value, Value)], key: &str) -> &'a Value {
    value::get(m, key).unwrap_or(&Value::Nil)
}

pub fn status(m: &[(Value, Value)]) -> &str {
    field(m, "status").as_str().unwrap_or("<none>")
}

// ------------------------------------------------------------ identities

/// A bootstrapped organization with its first device.
pub struct Org {
    pub id: OrganizationId,
    pub root: SigningKey,
    pub alice: Device,
}

/// A device's identity and keys.
pub struct Device {
    pub device_id: DeviceId,
    pub signing_key: SigningKey,
}

pub fn new_key() -> SigningKey {
    SigningKey::from_bytes(&rand::random::<[u8; 32]>())
}

pub fn sign(key: &SigningKey) -> impl Fn(&[u8]) -> [u8; 64] + '_ {
    move |m| key.sign(m).to_bytes()
}

pub fn unique_org(prefix: &str) -> OrganizationId {
    OrganizationId::parse(&format!("{prefix}{}", &hex::encode(rand::random::<[u8; 6]>()))).unwrap()
}

/// Certificates for a bootstrap: full and redacted user and device.
pub struct BootstrapCerts {
    pub user: Vec<u8>,
    pub device: Vec<u8>,
    pub redacted_user: Vec<u8>,
    pub redacted_device: Vec<u8>,
}

pub fn bootstrap_certs(root: &SigningKey, device_id: &DeviceId, device_key: &SigningKey, now: DateTime) -> BootstrapCerts {
    let user = UserCertificate {
        author: None,
        timestamp: now,
        user_id: device_id.user_id(),
        human_handle: Some(HumanHandle::new("alice@example.com", "Alice").unwrap()),
        public_key: [9; 32],
        profile: UserProfile::Admin,
    };
    let device = DeviceCertificate {
        author: None,
        timestamp: now,
        device_id: device_id.clone(),
        device_label: Some(DeviceLabel::parse("laptop").unwrap()),
        verify_key: device_key.verifying_key().to_bytes(),
    };
    let redacted_user = UserCertificate { human_handle: None, ..user.clone() };
    let redacted_device = DeviceCertificate { device_label: None, ..device.clone() };
    BootstrapCerts {
        user: certif::build::sign_payload(certif::build::user(&user), sign(root)),
        device: certif::build::sign_payload(certif::build::device(&device), sign(root)),
        redacted_user: certif::build::sign_payload(certif::build::user(&redacted_user), sign(root)),
        redacted_device: certif::build::sign_payload(certif::build::device(&redacted_device), sign(root)),
    }
}

pub fn bootstrap_req(token: &str, root: &SigningKey, c: &BootstrapCerts) -> Value {
    value::map([
        ("cmd", Value::from("organization_bootstrap")),
        ("bootstrap_token", Value::from(token)),
        ("root_verify_key", Value::Binary(root.verifying_key().to_bytes().to_vec())),
        ("user_certificate", Value::Binary(c.user.clone())),
        ("device_certificate", Value::Binary(c.device.clone())),
        ("redacted_user_certificate", Value::Binary(c.redacted_user.clone())),
        ("redacted_device_certificate", Value::Binary(c.redacted_device.clone())),
    ])
}

/// POSTs to the anonymous route; returns the HTTP status and decoded body.
pub async fn anonymous(server: &TestServer, org: &str, body: &[u8]) -> (u16, Vec<(Value, Value)>) {
    let (status, raw) = http_request(server, "POST", &format!("/anonymous/{org}"), &[], body).await;
    (status, value::unpack_map(&raw).unwrap_or_default())
}

/// Creates an organization through the admin API; returns its bootstrap token.
pub async fn create_org(server: &TestServer, id: &OrganizationId) -> String {
    let (status, body) = admin(server, "POST", "/administration/organizations", serde_json::json!({"organization_id": id.as_str()})).await;
    assert_eq!(status, 200, "{body}");
    body["bootstrap_token"].as_str().unwrap().to_string()
}

/// Creates and bootstraps an organization.
pub async fn new_org(server: &TestServer) -> Org {
    let id = unique_org("Test");
    let token = create_org(server, &id).await;
    let root = new_key();
    let alice = Device { device_id: DeviceId::parse("alice@laptop").unwrap(), signing_key: new_key() };
    let certs = bootstrap_certs(&root, &alice.device_id, &alice.signing_key, DateTime::now());
    let (status, rep) = anonymous(server, id.as_str(), &value::pack(&bootstrap_req(&token, &root, &certs))).await;
    assert_eq!((status, self::status(&rep)), (200, "ok"), "{rep:?}");
    Org { id, root, alice }
}

/// Opens an authenticated connection; returns the client or the handshake result map.
pub async fn try_login(
    server: &TestServer,
    org: &OrganizationId,
    device_id: &DeviceId,
    key: &SigningKey,
    rvk: &Key32,
) -> Result<WsClient, Vec<(Value, Value)>> {
    let mut ws = WsClient::connect(server).await;
    let challenge = match ws.recv_event().await {
        WsEvent::Binary(b) => b,
        other => panic!("no challenge: {other:?}"),
    };
    let answer = handshake::authenticated_answer(&challenge, org, device_id, rvk, sign(key)).unwrap();
    ws.send(&answer).await;
    let result = ws.recv().await;
    if field(&result, "result").as_str() == Some("ok") { Ok(ws) } else { Err(result) }
}

pub async fn login(server: &TestServer, org: &Org) -> WsClient {
    let rvk = org.root.verifying_key().to_bytes();
    match try_login(server, &org.id, &org.alice.device_id, &org.alice.signing_key, &rvk).await {
        Ok(ws) => ws,
        Err(r) => panic!("login refused: {r:?}"),
    }
}
