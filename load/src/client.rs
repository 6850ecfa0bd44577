//! A small Parsec v2 client over plain TCP: HTTP/1.1 requests (administration
//! API, anonymous route) and a websocket client with the authenticated
//! handshake.
//!
//! It is written by hand, without an HTTP or websocket library, for two users:
//! the load tool, which needs a cheap client that it fully controls, and the
//! server's end-to-end tests, which also send what a real client never would
//! (unmasked or reserved-bit frames, absurd lengths) through [`WsClient::send_frame`]
//! and [`frame`].
//!
//! Websocket side (RFC 6455, client role): every frame we send is masked with a
//! fresh random key; messages the server fragments are reassembled; a ping from
//! the server is answered with a pong at once; pongs and close frames are
//! surfaced as [`WsEvent`]s. Every wait is bounded by a timeout, and every
//! failure is a [`ClientError`], never a panic: a load tool meets broken
//! connections as a matter of course.
//!
//! Only `no_ssl` servers are reachable: there is no TLS here.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use ed25519_dalek::SigningKey;
use parsec_protocol::handshake;
use parsec_protocol::types::{DeviceId, Key32, OrganizationId};
use parsec_protocol::value::{self, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::identity::sign;

/// A decoded msgpack map, as every Parsec message is.
pub type Map = Vec<(Value, Value)>;

/// Default bound on any single wait (connect, one reply, one HTTP exchange).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest websocket message accepted from the server. Parsec replies are at
/// most a 1 MiB block plus a few bytes of envelope.
pub const MAX_MESSAGE: usize = 8 * 1024 * 1024;
/// Largest HTTP response accepted (headers and body).
const MAX_HTTP_RESPONSE: u64 = 8 * 1024 * 1024;
/// Largest HTTP response head accepted during the websocket upgrade.
const MAX_UPGRADE_HEAD: usize = 16 * 1024;

/// Why a request did not get a usable answer.
#[derive(Debug)]
pub enum ClientError {
    /// The TCP connection failed (refused, reset, …).
    Io(std::io::Error),
    /// Nothing came back in time.
    Timeout,
    /// The server ended the connection: a close frame with its code, or TCP
    /// closed without one (`None`).
    Closed(Option<u16>),
    /// The server sent something this client cannot make sense of.
    Protocol(String),
    /// The handshake ended with a result other than `ok`.
    Refused { result: String, help: String },
}

impl ClientError {
    /// Short stable name, used to count errors by kind.
    pub fn kind(&self) -> &'static str {
        match self {
            ClientError::Io(_) => "io_error",
            ClientError::Timeout => "timeout_no_reply",
            ClientError::Closed(_) => "connection_closed",
            ClientError::Protocol(_) => "protocol_error",
            ClientError::Refused { .. } => "handshake_refused",
        }
    }
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::Io(e) => write!(f, "network error: {e}"),
            ClientError::Timeout => f.write_str("no reply in time"),
            ClientError::Closed(Some(code)) => write!(f, "connection closed by the server (close code {code})"),
            ClientError::Closed(None) => f.write_str("connection closed by the server (no close frame)"),
            ClientError::Protocol(what) => write!(f, "unexpected data from the server: {what}"),
            ClientError::Refused { result, help } => write!(f, "handshake refused: {result} ({help})"),
        }
    }
}

impl std::error::Error for ClientError {}

impl From<std::io::Error> for ClientError {
    fn from(e: std::io::Error) -> Self {
        ClientError::Io(e)
    }
}

async fn bounded<T>(
    limit: Duration,
    fut: impl std::future::Future<Output = Result<T, ClientError>>,
) -> Result<T, ClientError> {
    tokio::time::timeout(limit, fut)
        .await
        .unwrap_or(Err(ClientError::Timeout))
}

// ------------------------------------------------------------------ HTTP

/// One HTTP/1.1 request on a fresh connection (`Connection: close`); returns
/// the status code and the body (de-chunked). A `Host` header is added unless
/// `headers` has one.
pub async fn http_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<(u16, Vec<u8>), ClientError> {
    bounded(DEFAULT_TIMEOUT, async {
        let mut stream = TcpStream::connect(addr).await?;
        let mut req = format!("{method} {path} HTTP/1.1\r\n");
        if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
            req.push_str(&format!("Host: {addr}\r\n"));
        }
        req.push_str(&format!("Connection: close\r\nContent-Length: {}\r\n", body.len()));
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        stream.write_all(req.as_bytes()).await?;
        stream.write_all(body).await?;
        let mut raw = Vec::new();
        (&mut stream).take(MAX_HTTP_RESPONSE).read_to_end(&mut raw).await?;
        parse_http_response(&raw)
    })
    .await
}

fn header_end(raw: &[u8]) -> Option<usize> {
    raw.windows(4).position(|w| w == b"\r\n\r\n").map(|p| p + 4)
}

/// Status code and body of a complete HTTP/1.1 response.
fn parse_http_response(raw: &[u8]) -> Result<(u16, Vec<u8>), ClientError> {
    let bad = |what: &str| ClientError::Protocol(format!("HTTP response: {what}"));
    let end = header_end(raw).ok_or_else(|| bad("no end of headers"))?;
    let head = String::from_utf8_lossy(&raw[..end]).to_lowercase();
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| bad("no status code"))?;
    let body = &raw[end..];
    let header = |name: &str| {
        head.lines()
            .filter_map(|l| l.split_once(':'))
            .find(|(k, _)| k.trim() == name)
            .map(|(_, v)| v.trim().to_string())
    };
    if header("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
        return dechunk(body)
            .ok_or_else(|| bad("bad chunked encoding"))
            .map(|b| (status, b));
    }
    match header("content-length").and_then(|v| v.parse::<usize>().ok()) {
        Some(n) if n <= body.len() => Ok((status, body[..n].to_vec())),
        Some(_) => Err(bad("body shorter than its content-length")),
        None => Ok((status, body.to_vec())),
    }
}

fn dechunk(mut data: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let pos = data.windows(2).position(|w| w == b"\r\n")?;
        let size_text = std::str::from_utf8(&data[..pos]).ok()?;
        let size_text = size_text.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_text, 16).ok()?;
        if size == 0 {
            return Some(out);
        }
        let chunk = data.get(pos + 2..pos + 2 + size)?;
        out.extend_from_slice(chunk);
        data = data.get(pos + 2 + size + 2..)?;
    }
}

/// A request to the administration REST API with `Authorization: Bearer
/// <token>`; a `Null` body sends no body. Returns the status and the JSON
/// reply (`Null` when it is not JSON).
pub async fn admin(
    addr: SocketAddr,
    token: &str,
    method: &str,
    path: &str,
    body: &serde_json::Value,
) -> Result<(u16, serde_json::Value), ClientError> {
    let body = if body.is_null() {
        Vec::new()
    } else {
        body.to_string().into_bytes()
    };
    let auth = format!("Bearer {token}");
    let (status, out) = http_request(addr, method, path, &[("Authorization", &auth)], &body).await?;
    Ok((status, serde_json::from_slice(&out).unwrap_or(serde_json::Value::Null)))
}

/// POSTs a msgpack request to `/anonymous/<org>`; returns the HTTP status and
/// the decoded reply (empty when it is not a msgpack map).
pub async fn anonymous(addr: SocketAddr, org: &str, body: &[u8]) -> Result<(u16, Map), ClientError> {
    let (status, raw) = http_request(addr, "POST", &format!("/anonymous/{org}"), &[], body).await?;
    Ok((status, value::unpack_map(&raw).unwrap_or_default()))
}

// ------------------------------------------------------------- websocket

/// What the server sent, one complete message or control frame at a time.
#[derive(Debug, PartialEq)]
pub enum WsEvent {
    Binary(Vec<u8>),
    Text(Vec<u8>),
    Close(Option<u16>),
    Pong(Vec<u8>),
    /// TCP closed without a close frame.
    Eof,
}

/// One frame as read from the wire (payload already unmasked).
struct RawFrame {
    fin: bool,
    opcode: u8,
    payload: Vec<u8>,
}

/// A websocket connection to `/ws`.
///
/// Reads are cancel-safe at frame granularity: bytes are only consumed once
/// a whole frame is buffered, and a message being reassembled is kept in the
/// client, so a `recv` abandoned by a timeout can be retried.
#[derive(Debug)]
pub struct WsClient {
    pub stream: TcpStream,
    /// Received bytes not yet parsed into frames.
    buf: Vec<u8>,
    /// Opcode and data of a fragmented message being reassembled.
    partial: Option<(u8, Vec<u8>)>,
    /// Scratch buffer for outgoing frames.
    wbuf: Vec<u8>,
    /// Bound on each `recv_event`/`recv`.
    pub timeout: Duration,
    /// Websocket pings received from the server (and answered).
    pub pings: u64,
}

const UPGRADE_REQUEST: &str = "Upgrade: websocket\r\nConnection: Upgrade\r\n\
                               Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";

impl WsClient {
    /// Connects to `/ws` and completes the HTTP upgrade.
    pub async fn connect(addr: SocketAddr) -> Result<WsClient, ClientError> {
        bounded(DEFAULT_TIMEOUT, async {
            let mut stream = TcpStream::connect(addr).await?;
            // Requests are written in one piece: no point delaying them.
            stream.set_nodelay(true)?;
            let req = format!("GET /ws HTTP/1.1\r\nHost: {addr}\r\n{UPGRADE_REQUEST}");
            stream.write_all(req.as_bytes()).await?;
            let mut buf = Vec::with_capacity(4096);
            let end = loop {
                if let Some(end) = header_end(&buf) {
                    break end;
                }
                if buf.len() > MAX_UPGRADE_HEAD {
                    return Err(ClientError::Protocol("upgrade reply headers too long".into()));
                }
                buf.reserve(4096);
                if stream.read_buf(&mut buf).await? == 0 {
                    return Err(ClientError::Closed(None));
                }
            };
            let head = String::from_utf8_lossy(&buf[..end]);
            if !head.starts_with("HTTP/1.1 101") {
                let first = head.lines().next().unwrap_or("").to_string();
                return Err(ClientError::Protocol(format!("websocket upgrade refused: {first}")));
            }
            Ok(WsClient {
                stream,
                buf: buf[end..].to_vec(),
                partial: None,
                wbuf: Vec::new(),
                timeout: DEFAULT_TIMEOUT,
                pings: 0,
            })
        })
        .await
    }

    /// Writes one frame, masked unless asked otherwise. `rsv` goes into the
    /// three reserved bits (tests use it to break the protocol on purpose).
    pub async fn send_frame(
        &mut self,
        opcode: u8,
        payload: &[u8],
        fin: bool,
        masked: bool,
        rsv: u8,
    ) -> Result<(), ClientError> {
        self.wbuf.clear();
        let key = masked.then(rand::random::<[u8; 4]>);
        encode_frame(&mut self.wbuf, opcode, payload, fin, key, rsv, None);
        self.stream.write_all(&self.wbuf).await?;
        Ok(())
    }

    /// Sends one binary message.
    pub async fn send(&mut self, payload: &[u8]) -> Result<(), ClientError> {
        self.send_frame(0x2, payload, true, true, 0).await
    }

    /// Sends a msgpack value as one binary message.
    pub async fn send_value(&mut self, v: &Value) -> Result<(), ClientError> {
        self.send(&value::pack(v)).await
    }

    /// Sends the map `head` with one more entry, `key` → the bytes `bulk`,
    /// as one binary message. The bytes are copied once, into the frame,
    /// instead of into a `Value`, then its packing, then the frame: at
    /// 64 KiB blocks those copies were a third of the tool's time, on the
    /// machine the server is measured on.
    pub async fn send_with_bytes(
        &mut self,
        head: &[(Value, Value)],
        key: &str,
        bulk: &[u8],
    ) -> Result<(), ClientError> {
        let prefix = bulk_prefix(head, key, bulk.len());
        self.wbuf.clear();
        let key = rand::random::<[u8; 4]>();
        encode_frame_parts(&mut self.wbuf, 0x2, &[&prefix, bulk], key);
        self.stream.write_all(&self.wbuf).await?;
        Ok(())
    }

    /// Makes sure `self.buf` holds `n` bytes; false on end of stream.
    async fn fill(&mut self, n: usize) -> Result<bool, ClientError> {
        while self.buf.len() < n {
            self.buf.reserve((n - self.buf.len()).max(16 * 1024));
            if self.stream.read_buf(&mut self.buf).await? == 0 {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Next frame, or `None` when TCP ends first.
    async fn read_frame(&mut self) -> Result<Option<RawFrame>, ClientError> {
        if !self.fill(2).await? {
            return Ok(None);
        }
        let (b0, b1) = (self.buf[0], self.buf[1]);
        if b0 & 0x70 != 0 {
            return Err(ClientError::Protocol("reserved bits set in a frame".into()));
        }
        let masked = b1 & 0x80 != 0;
        let mut len = (b1 & 0x7f) as u64;
        let mut head = 2;
        if len == 126 {
            if !self.fill(4).await? {
                return Ok(None);
            }
            len = u16::from_be_bytes([self.buf[2], self.buf[3]]) as u64;
            head = 4;
        } else if len == 127 {
            if !self.fill(10).await? {
                return Ok(None);
            }
            let mut be = [0u8; 8];
            be.copy_from_slice(&self.buf[2..10]);
            len = u64::from_be_bytes(be);
            head = 10;
        }
        if len > MAX_MESSAGE as u64 {
            return Err(ClientError::Protocol(format!("frame of {len} bytes")));
        }
        let len = len as usize;
        let key_at = head;
        if masked {
            // Servers must not mask, but unmasking costs nothing.
            head += 4;
        }
        if !self.fill(head + len).await? {
            return Ok(None);
        }
        let mut payload = self.buf[head..head + len].to_vec();
        if masked {
            let key = [
                self.buf[key_at],
                self.buf[key_at + 1],
                self.buf[key_at + 2],
                self.buf[key_at + 3],
            ];
            apply_mask(&mut payload, key);
        }
        self.buf.drain(..head + len);
        Ok(Some(RawFrame {
            fin: b0 & 0x80 != 0,
            opcode: b0 & 0x0f,
            payload,
        }))
    }

    /// Next complete message or control frame from the server, within
    /// `self.timeout`. Server pings are answered here and not returned.
    pub async fn recv_event(&mut self) -> Result<WsEvent, ClientError> {
        let limit = self.timeout;
        bounded(limit, self.recv_event_unbounded()).await
    }

    async fn recv_event_unbounded(&mut self) -> Result<WsEvent, ClientError> {
        loop {
            let Some(f) = self.read_frame().await? else {
                return Ok(WsEvent::Eof);
            };
            if f.opcode >= 0x8 && (!f.fin || f.payload.len() > 125) {
                return Err(ClientError::Protocol("fragmented or oversized control frame".into()));
            }
            match f.opcode {
                0x9 => {
                    self.pings += 1;
                    self.send_frame(0xa, &f.payload, true, true, 0).await?
                }
                0xa => return Ok(WsEvent::Pong(f.payload)),
                0x8 => {
                    let code = (f.payload.len() >= 2).then(|| u16::from_be_bytes([f.payload[0], f.payload[1]]));
                    return Ok(WsEvent::Close(code));
                }
                0x1 | 0x2 if self.partial.is_some() => {
                    return Err(ClientError::Protocol("new message inside a fragmented one".into()));
                }
                0x1 | 0x2 if !f.fin => self.partial = Some((f.opcode, f.payload)),
                0x1 => return Ok(WsEvent::Text(f.payload)),
                0x2 => return Ok(WsEvent::Binary(f.payload)),
                0x0 => {
                    let Some((opcode, mut data)) = self.partial.take() else {
                        return Err(ClientError::Protocol("continuation frame without a message".into()));
                    };
                    if data.len() + f.payload.len() > MAX_MESSAGE {
                        return Err(ClientError::Protocol("fragmented message too long".into()));
                    }
                    data.extend_from_slice(&f.payload);
                    if !f.fin {
                        self.partial = Some((opcode, data));
                    } else if opcode == 0x1 {
                        return Ok(WsEvent::Text(data));
                    } else {
                        return Ok(WsEvent::Binary(data));
                    }
                }
                other => return Err(ClientError::Protocol(format!("unknown opcode {other}"))),
            }
        }
    }

    /// Next binary message, decoded as a msgpack map. Unsolicited pongs are
    /// skipped; anything else is an error.
    pub async fn recv(&mut self) -> Result<Map, ClientError> {
        loop {
            match self.recv_event().await? {
                WsEvent::Binary(b) => {
                    return value::unpack_map(&b).map_err(|e| ClientError::Protocol(format!("reply: {e}")));
                }
                WsEvent::Pong(_) => continue,
                WsEvent::Close(code) => return Err(ClientError::Closed(code)),
                WsEvent::Eof => return Err(ClientError::Closed(None)),
                WsEvent::Text(_) => return Err(ClientError::Protocol("text message".into())),
            }
        }
    }

    /// Sends a request and waits for its reply.
    pub async fn request(&mut self, req: &Value) -> Result<Map, ClientError> {
        self.send_value(req).await?;
        self.recv().await
    }

    /// [`WsClient::request`] of [`WsClient::send_with_bytes`]'s message.
    pub async fn request_with_bytes(
        &mut self,
        head: &[(Value, Value)],
        key: &str,
        bulk: &[u8],
    ) -> Result<Map, ClientError> {
        self.send_with_bytes(head, key, bulk).await?;
        self.recv().await
    }

    /// Sends a command (`cmd` plus `fields`) and decodes its reply.
    pub async fn req(&mut self, cmd: &str, fields: Vec<(&str, Value)>) -> Result<Map, ClientError> {
        let mut all = vec![("cmd", Value::from(cmd))];
        all.extend(fields);
        self.request(&value::map(all)).await
    }

    /// Reads the challenge, answers as `device_id` of `organization_id`, and
    /// returns the server's result map, whatever it says.
    pub async fn handshake_raw(
        &mut self,
        organization_id: &OrganizationId,
        device_id: &DeviceId,
        signing_key: &SigningKey,
        rvk: &Key32,
    ) -> Result<Map, ClientError> {
        let challenge = match self.recv_event().await? {
            WsEvent::Binary(b) => b,
            WsEvent::Close(code) => return Err(ClientError::Closed(code)),
            WsEvent::Eof => return Err(ClientError::Closed(None)),
            other => return Err(ClientError::Protocol(format!("expected a challenge, got {other:?}"))),
        };
        let answer = handshake::authenticated_answer(&challenge, organization_id, device_id, rvk, sign(signing_key))
            .map_err(|e| ClientError::Protocol(format!("challenge: {e}")))?;
        self.send(&answer).await?;
        self.recv().await
    }

    /// Connects and authenticates; a result other than `ok` is
    /// [`ClientError::Refused`].
    pub async fn login(
        addr: SocketAddr,
        organization_id: &OrganizationId,
        device_id: &DeviceId,
        signing_key: &SigningKey,
        rvk: &Key32,
    ) -> Result<WsClient, ClientError> {
        let mut ws = WsClient::connect(addr).await?;
        let result = ws.handshake_raw(organization_id, device_id, signing_key, rvk).await?;
        match field(&result, "result").as_str() {
            Some("ok") => Ok(ws),
            other => Err(ClientError::Refused {
                result: other.unwrap_or("<none>").to_string(),
                help: field(&result, "help").as_str().unwrap_or("").to_string(),
            }),
        }
    }

    /// Closes politely: sends a close frame (1000) and waits a little for the
    /// server's close frame or the end of TCP, so that the server, not us,
    /// holds the TIME_WAIT. Errors are ignored: the connection is going away.
    pub async fn close(mut self) {
        let _ = self.send_frame(0x8, &1000u16.to_be_bytes(), true, true, 0).await;
        self.timeout = Duration::from_secs(2);
        for _ in 0..16 {
            match self.recv_event().await {
                Ok(WsEvent::Close(_) | WsEvent::Eof) | Err(_) => break,
                Ok(_) => continue,
            }
        }
    }
}

fn apply_mask(data: &mut [u8], key: [u8; 4]) {
    // Eight bytes at a time: the key repeats every four.
    let word = u64::from_ne_bytes([key[0], key[1], key[2], key[3], key[0], key[1], key[2], key[3]]);
    let mut chunks = data.chunks_exact_mut(8);
    for c in &mut chunks {
        let v = u64::from_ne_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]) ^ word;
        c.copy_from_slice(&v.to_ne_bytes());
    }
    for (i, b) in chunks.into_remainder().iter_mut().enumerate() {
        *b ^= key[i % 4];
    }
}

/// The msgpack of the map `head` plus `key` → bin of `len` bytes, up to
/// where those bytes start.
fn bulk_prefix(head: &[(Value, Value)], key: &str, len: usize) -> Vec<u8> {
    let mut prefix = Vec::with_capacity(64 + 16 * head.len());
    map_header(&mut prefix, head.len() + 1);
    for (k, v) in head {
        prefix.extend_from_slice(&value::pack(k));
        prefix.extend_from_slice(&value::pack(v));
    }
    prefix.extend_from_slice(&value::pack(&Value::from(key)));
    bin_header(&mut prefix, len);
    prefix
}

/// A msgpack map header for `len` entries.
fn map_header(out: &mut Vec<u8>, len: usize) {
    match len {
        0..16 => out.push(0x80 | len as u8),
        16..65536 => {
            out.push(0xde);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        }
        _ => {
            out.push(0xdf);
            out.extend_from_slice(&(len as u32).to_be_bytes());
        }
    }
}

/// A msgpack bin header for `len` bytes.
fn bin_header(out: &mut Vec<u8>, len: usize) {
    match len {
        0..256 => out.extend_from_slice(&[0xc4, len as u8]),
        256..65536 => {
            out.push(0xc5);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        }
        _ => {
            out.push(0xc6);
            out.extend_from_slice(&(len as u32).to_be_bytes());
        }
    }
}

/// Appends one final masked frame whose payload is `parts` one after the other.
fn encode_frame_parts(out: &mut Vec<u8>, opcode: u8, parts: &[&[u8]], key: [u8; 4]) {
    let len: usize = parts.iter().map(|p| p.len()).sum();
    out.reserve(len + 14);
    frame_header(out, 0x80 | (opcode & 0x0f), len as u64, true);
    out.extend_from_slice(&key);
    let start = out.len();
    for part in parts {
        out.extend_from_slice(part);
    }
    apply_mask(&mut out[start..], key);
}

/// The first byte, then the length field (mask bit set if `masked`).
fn frame_header(out: &mut Vec<u8>, first: u8, len: u64, masked: bool) {
    out.push(first);
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
}

/// Appends one frame to `out`. `declared` overrides the length field (to
/// announce more than is sent); `key` masks the payload.
fn encode_frame(
    out: &mut Vec<u8>,
    opcode: u8,
    payload: &[u8],
    fin: bool,
    key: Option<[u8; 4]>,
    rsv: u8,
    declared: Option<u64>,
) {
    out.reserve(payload.len() + 14);
    let first = (if fin { 0x80 } else { 0 }) | ((rsv & 0x7) << 4) | (opcode & 0x0f);
    let len = declared.unwrap_or(payload.len() as u64);
    frame_header(out, first, len, key.is_some());
    let start = out.len();
    if let Some(key) = key {
        out.extend_from_slice(&key);
        out.extend_from_slice(payload);
        apply_mask(&mut out[start + 4..], key);
    } else {
        out.extend_from_slice(payload);
    }
}

/// One websocket frame, client style (random mask key when `masked`).
pub fn frame(opcode: u8, payload: &[u8], fin: bool, masked: bool, rsv: u8, declared: Option<u64>) -> Vec<u8> {
    let mut out = Vec::new();
    encode_frame(
        &mut out,
        opcode,
        payload,
        fin,
        masked.then(rand::random::<[u8; 4]>),
        rsv,
        declared,
    );
    out
}

/// Field of a decoded map (`Nil` when absent).
pub fn field<'a>(m: &'a [(Value, Value)], key: &str) -> &'a Value {
    value::get(m, key).unwrap_or(&Value::Nil)
}

/// `status` of a reply (`<none>` when absent).
pub fn status(m: &[(Value, Value)]) -> &str {
    field(m, "status").as_str().unwrap_or("<none>")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masking_round_trips_and_matches_bytewise() {
        let payload: Vec<u8> = (0..1031u32).map(|i| (i * 7) as u8).collect();
        let key = [0x12, 0x34, 0x56, 0x78];
        let mut out = Vec::new();
        encode_frame(&mut out, 0x2, &payload, true, Some(key), 0, None);
        assert_eq!(&out[..4], &[0x82, 0x80 | 126, 0x04, 0x07]);
        assert_eq!(&out[4..8], &key);
        let expected: Vec<u8> = payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]).collect();
        assert_eq!(&out[8..], &expected[..]);
        let mut back = out[8..].to_vec();
        apply_mask(&mut back, key);
        assert_eq!(back, payload);
    }

    /// A message sent with its bulk bytes apart is the frame of the whole
    /// packed map, whatever the sizes of the headers.
    #[test]
    fn bulk_bytes_frame_as_the_packed_map() {
        let key = [0x9a, 0x01, 0xff, 0x42];
        for (entries, size) in [(3, 65536), (3, 300), (2, 7), (17, 70000)] {
            let head: Vec<(Value, Value)> = (0..entries)
                .map(|i| (Value::from(format!("k{i}")), Value::from(i as i64)))
                .collect();
            let bulk: Vec<u8> = (0..size as u32).map(|i| (i * 13) as u8).collect();
            let mut whole = head.clone();
            whole.push((Value::from("block"), Value::Binary(bulk.clone())));
            let mut expected = Vec::new();
            encode_frame(
                &mut expected,
                0x2,
                &value::pack(&Value::Map(whole)),
                true,
                Some(key),
                0,
                None,
            );
            let mut out = Vec::new();
            encode_frame_parts(&mut out, 0x2, &[&bulk_prefix(&head, "block", size), &bulk], key);
            assert_eq!(out, expected, "{entries} entries, {size} bytes");
        }
    }

    #[test]
    fn parts_mask_as_one_payload_at_any_split() {
        let key = [0x9a, 0x01, 0xff, 0x42];
        let payload: Vec<u8> = (0..61u32).map(|i| (i * 29 + 7) as u8).collect();
        let mut expected = Vec::new();
        encode_frame(&mut expected, 0x2, &payload, true, Some(key), 0, None);
        for cuts in [[0, 0], [1, 2], [3, 16], [5, 13], [8, 60], [61, 61]] {
            let parts = [&payload[..cuts[0]], &payload[cuts[0]..cuts[1]], &payload[cuts[1]..]];
            let mut out = Vec::new();
            encode_frame_parts(&mut out, 0x2, &parts, key);
            assert_eq!(out, expected, "cut at {cuts:?}");
        }
    }

    #[test]
    fn frame_lengths_and_flags() {
        let f = frame(0x9, b"hb", true, false, 0, None);
        assert_eq!(f, vec![0x89, 0x02, b'h', b'b']);
        let f = frame(0x2, b"abc", false, false, 0b100, Some(1 << 62));
        assert_eq!(f[0], 0x42);
        assert_eq!(f[1], 127);
        assert_eq!(u64::from_be_bytes(f[2..10].try_into().unwrap()), 1 << 62);
        assert_eq!(frame(0x2, &[0; 70000], true, true, 0, None).len(), 70000 + 14);
    }

    #[test]
    fn http_responses() {
        let raw = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}";
        assert_eq!(parse_http_response(raw).unwrap(), (200, b"{}".to_vec()));
        let raw = b"HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n";
        assert_eq!(parse_http_response(raw).unwrap(), (404, b"abcde".to_vec()));
        assert!(parse_http_response(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nff\r\nab").is_err());
        assert!(parse_http_response(b"garbage").is_err());
        let raw = b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\nuntil eof";
        assert_eq!(parse_http_response(raw).unwrap().1, b"until eof".to_vec());
    }
}
