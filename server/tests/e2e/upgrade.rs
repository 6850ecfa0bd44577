//! The server's own websocket upgrade (`conn`), at its edges: refusals keep
//! the statuses actix-web gave them, plain HTTP still works on a kept-alive
//! connection (an upgrade there included), frames a client sends right
//! behind its request head reach the session, and a head that never ends
//! gets its 408 in time.

use std::time::Duration;

use parsec_protocol::value::{self, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common::*;

const KEY: &str = "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";
/// The answer to `KEY` (RFC 6455 §1.3), lowercased as `Response::head` is.
const ACCEPT: &str = "sec-websocket-accept: s3pplmbitxaq9kygzzhzrbk+xoo=";

/// A valid upgrade request head, with `extra` header lines.
fn upgrade(extra: &str) -> String {
    format!(
        "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n{KEY}Sec-WebSocket-Version: 13\r\n{extra}\r\n"
    )
}

/// A raw connection: bytes in, HTTP responses and websocket frames out.
struct Raw {
    stream: TcpStream,
    buf: Vec<u8>,
}

struct Response {
    status: u16,
    /// Status line and headers, lowercased.
    head: String,
}

impl Raw {
    async fn connect(server: &TestServer) -> Raw {
        let stream = TcpStream::connect(server.addr).await.expect("connect");
        stream.set_nodelay(true).expect("nodelay");
        Raw {
            stream,
            buf: Vec::new(),
        }
    }

    async fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.expect("write");
    }

    /// Reads more bytes; false on end of stream.
    async fn fill(&mut self) -> bool {
        let mut chunk = [0u8; 4096];
        let n = tokio::time::timeout(Duration::from_secs(10), self.stream.read(&mut chunk))
            .await
            .expect("timed out waiting for the server")
            .unwrap_or(0);
        self.buf.extend_from_slice(&chunk[..n]);
        n > 0
    }

    /// The next HTTP response (its body read and dropped, per Content-Length).
    async fn response(&mut self) -> Response {
        let end = loop {
            if let Some(i) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            assert!(
                self.fill().await,
                "closed before a response: {:?}",
                String::from_utf8_lossy(&self.buf)
            );
        };
        let head = String::from_utf8_lossy(&self.buf[..end]).to_lowercase();
        let status = head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no status in {head}"));
        let body_len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length: "))
            .map_or(0, |n| n.trim().parse().expect("content-length"));
        while self.buf.len() < end + body_len {
            assert!(self.fill().await, "closed in a body");
        }
        self.buf.drain(..end + body_len);
        Response { status, head }
    }

    /// The next websocket frame from the server (unmasked): opcode, payload.
    async fn frame(&mut self) -> (u8, Vec<u8>) {
        loop {
            if self.buf.len() >= 2 {
                let (len, start) = match self.buf[1] & 0x7f {
                    126 if self.buf.len() >= 4 => (u16::from_be_bytes([self.buf[2], self.buf[3]]) as usize, 4),
                    126 => (usize::MAX, 0),
                    127 => panic!("unexpectedly large frame"),
                    n => (n as usize, 2),
                };
                if len != usize::MAX && self.buf.len() >= start + len {
                    let frame: Vec<u8> = self.buf.drain(..start + len).collect();
                    return (frame[0] & 0x0f, frame[start..].to_vec());
                }
            }
            assert!(self.fill().await, "closed before a frame");
        }
    }

    /// Expects the session's challenge as the next frame.
    async fn challenge(&mut self) {
        let (opcode, payload) = self.frame().await;
        assert_eq!(opcode, 0x2, "a binary frame");
        let map = value::unpack_map(&payload).expect("msgpack");
        assert_eq!(field(&map, "handshake").as_str(), Some("challenge"));
    }
}

/// What one request head gets as an answer on a fresh connection.
async fn answer(server: &TestServer, request: &str) -> Response {
    let mut raw = Raw::connect(server).await;
    raw.send(request.as_bytes()).await;
    raw.response().await
}

#[actix_web::test]
async fn a_valid_upgrade_gets_the_headers_it_always_got() {
    let server = start_server().await;
    let mut raw = Raw::connect(&server).await;
    raw.send(upgrade("").as_bytes()).await;
    let res = raw.response().await;
    assert_eq!(res.status, 101, "{}", res.head);
    for line in [
        "upgrade: websocket",
        "connection: upgrade",
        ACCEPT,
        "server: parsec",
        "content-type: application/octet-stream",
    ] {
        assert!(res.head.contains(&format!("\r\n{line}\r\n")), "{line} in {}", res.head);
    }
    assert!(res.head.contains("\r\ndate: "), "{}", res.head);
    raw.challenge().await;
}

#[actix_web::test]
async fn refused_upgrades_keep_their_statuses() {
    let server = start_server().await;
    let version_line = "Sec-WebSocket-Version: 13\r\n";
    for (request, status) in [
        // actix-web-actors' handshake refusals.
        (
            upgrade("").replace("Connection: Upgrade", "Connection: keep-alive"),
            400,
        ),
        (upgrade("Connection: close\r\n"), 400),
        (upgrade("").replace(version_line, ""), 400),
        (upgrade("").replace("Version: 13", "Version: 12"), 426),
        (upgrade("").replace(KEY, ""), 400),
        // The route's: not an upgrade, or not a GET.
        (upgrade("").replace("Upgrade: websocket\r\n", ""), 404),
        (
            upgrade("").replace("Upgrade: websocket", "Upgrade: h2c, websocket"),
            404,
        ),
        (upgrade("Content-Length: 0\r\n").replace("GET ", "POST "), 404),
        ("GET /ws HTTP/1.1\r\nHost: x\r\n\r\n".to_string(), 404),
        // HTTP itself: no Host.
        (upgrade("").replace("Host: x\r\n", ""), 400),
        // Behind a proxy, from plain HTTP: sent to HTTPS.
        (upgrade("X-Forwarded-Proto: http\r\n"), 301),
    ] {
        let res = answer(&server, &request).await;
        assert_eq!(res.status, status, "{request:?} got {}", res.head);
    }
    // The proxy said HTTPS: upgraded.
    assert_eq!(
        answer(&server, &upgrade("X-Forwarded-Proto: https\r\n")).await.status,
        101
    );
}

#[actix_web::test]
async fn http_on_a_kept_alive_connection() {
    let server = start_server().await;
    let mut raw = Raw::connect(&server).await;
    for path in ["/health", "/ready", "/nowhere", "/health"] {
        raw.send(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
            .await;
        let res = raw.response().await;
        let expected = if path == "/nowhere" { 404 } else { 200 };
        assert_eq!(res.status, expected, "{path}: {}", res.head);
    }
    // Pipelined requests are answered in order.
    raw.send(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\nGET /nowhere HTTP/1.1\r\nHost: x\r\n\r\n")
        .await;
    assert_eq!(raw.response().await.status, 200);
    assert_eq!(raw.response().await.status, 404);
    // An upgrade after HTTP requests, on the same connection, still works
    // (actix-web serves it).
    raw.send(upgrade("").as_bytes()).await;
    let res = raw.response().await;
    assert_eq!(res.status, 101, "{}", res.head);
    raw.challenge().await;
    raw.send(&frame(0x9, b"late", true, true, 0, None)).await;
    assert_eq!(raw.frame().await, (0xa, b"late".to_vec()));
}

#[actix_web::test]
async fn frames_sent_right_behind_the_head_are_not_lost() {
    let server = start_server().await;
    // Head and two pings in one write.
    let mut raw = Raw::connect(&server).await;
    let mut bytes = upgrade("").into_bytes();
    bytes.extend(frame(0x9, b"one", true, true, 0, None));
    bytes.extend(frame(0x9, b"two", true, true, 0, None));
    raw.send(&bytes).await;
    assert_eq!(raw.response().await.status, 101);
    raw.challenge().await;
    assert_eq!(raw.frame().await, (0xa, b"one".to_vec()));
    assert_eq!(raw.frame().await, (0xa, b"two".to_vec()));

    // The head in pieces, the last one carrying the start of a frame.
    let mut raw = Raw::connect(&server).await;
    let head = upgrade("");
    let ping = frame(0x9, b"split", true, true, 0, None);
    let (a, b) = head.as_bytes().split_at(10);
    raw.send(a).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    raw.send(&[b, &ping[..3]].concat()).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    raw.send(&ping[3..]).await;
    assert_eq!(raw.response().await.status, 101);
    raw.challenge().await;
    assert_eq!(raw.frame().await, (0xa, b"split".to_vec()));
}

#[actix_web::test]
async fn a_session_over_the_servers_own_upgrade_works() {
    // `login` goes through the same path as any client; here a whole
    // session, then the close handshake.
    let server = start_server().await;
    let org = new_org(&server).await;
    let mut ws = login(&server, &org).await;
    let rep = ws.req("ping", vec![("ping", Value::from("own"))]).await;
    assert_eq!(field(&rep, "pong").as_str(), Some("own"));
    ws.send_frame(0x8, &1000u16.to_be_bytes(), true, true, 0).await;
    assert_eq!(ws.recv_event().await, WsEvent::Close(Some(1000)));
    assert_eq!(ws.recv_event().await, WsEvent::Eof);
}

#[actix_web::test]
async fn an_unfinished_head_gets_a_timeout_in_time() {
    // Half an upgrade request, then nothing: 408 after the request timeout,
    // as actix-web answered (not twice as late).
    let server = start_server().await;
    let mut raw = Raw::connect(&server).await;
    let started = std::time::Instant::now();
    raw.send(b"GET /ws HTTP/1.1\r\nHost: x\r\n").await;
    let res = raw.response().await;
    assert_eq!(res.status, 408, "{}", res.head);
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(4) && took < Duration::from_secs(7),
        "{took:?}"
    );
    assert!(!raw.fill().await, "closed after the 408");
}
