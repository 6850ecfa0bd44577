//! The first request head of a connection: is it a websocket upgrade for
//! `/ws` that we answer ourselves, or something for actix-web?
//!
//! We only take the plain, valid case: an HTTP/1.1 `GET /ws` with the
//! headers actix-web-actors' handshake requires and nothing that gives the
//! request a body. Everything else, the refusals included, goes to
//! actix-web, which answers exactly as it always did (same statuses, same
//! reason phrases). So for any request taken here actix-web would have
//! upgraded too: every check below is at least as strict as its own.

/// At most this many headers are parsed; a head with more goes to actix-web
/// (whose own limit is the same).
const MAX_HEADERS: usize = 96;

/// What the bytes read so far say about the connection.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Sniff {
    /// Not enough bytes to tell yet.
    Incomplete,
    /// Anything but an upgrade we serve ourselves.
    Http,
    /// A valid websocket upgrade on `/ws`.
    Websocket(Upgrade),
}

/// A websocket upgrade request, accepted.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Upgrade {
    /// Length of the request head: bytes after it are websocket frames.
    pub head_len: usize,
    /// The `Sec-WebSocket-Accept` value answering the client's key.
    pub accept: [u8; 28],
}

/// Looks at the start of a connection. `enforce_https` is the
/// `--forward-proto-enforce-https` (header, value) pair: a request that must
/// be redirected is left to actix-web's middleware.
pub(crate) fn sniff(buf: &[u8], enforce_https: Option<(&str, &str)>) -> Sniff {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(buf) {
        // Malformed, or too many headers: actix-web answers it.
        Err(_) => Sniff::Http,
        // The request line alone can rule a websocket out, and then there
        // is no point waiting for the rest of the head.
        Ok(httparse::Status::Partial) => {
            let other_method = req.method.is_some_and(|m| m != "GET");
            let other_path = req.path.is_some_and(|p| !is_ws_target(p));
            let other_version = req.version.is_some_and(|v| v != 1);
            if other_method || other_path || other_version {
                Sniff::Http
            } else {
                Sniff::Incomplete
            }
        }
        Ok(httparse::Status::Complete(head_len)) => match accept_upgrade(&req, enforce_https) {
            Some(accept) => Sniff::Websocket(Upgrade { head_len, accept }),
            None => Sniff::Http,
        },
    }
}

/// `/ws`, possibly with a query string made of characters every URI parser
/// accepts (the route ignores the query; a client never sends one, but
/// actix-web upgraded such requests, so we do too).
fn is_ws_target(target: &str) -> bool {
    match target.strip_prefix("/ws") {
        Some("") => true,
        Some(rest) => rest.strip_prefix('?').is_some_and(|query| {
            query
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._~%!$&'()*+,;=:@/?".contains(&b))
        }),
        None => false,
    }
}

/// The `Sec-WebSocket-Accept` value if `req` is an upgrade we serve.
fn accept_upgrade(req: &httparse::Request<'_, '_>, enforce_https: Option<(&str, &str)>) -> Option<[u8; 28]> {
    if req.method != Some("GET") || req.version != Some(1) || !req.path.is_some_and(is_ws_target) {
        return None;
    }
    let headers = &*req.headers;
    let named = |name: &'static str| headers.iter().filter(move |h| h.name.eq_ignore_ascii_case(name));
    let first = |name: &'static str| named(name).next().map(|h| h.value);

    // HTTP/1.1 needs exactly one Host (actix-web answers 400 otherwise).
    if named("host").count() != 1 {
        return None;
    }
    // A body, or a body announced with `Expect`: not a plain upgrade.
    if ["content-length", "transfer-encoding", "expect"]
        .iter()
        .any(|name| named(name).next().is_some())
    {
        return None;
    }
    // Behind a proxy that says the client came over plain HTTP: the
    // middleware redirects it.
    if let Some((name, expected)) = enforce_https
        && let Some(value) = headers.iter().find(|h| h.name.eq_ignore_ascii_case(name))
        && value.value != expected.as_bytes()
    {
        return None;
    }
    // `Upgrade: websocket` (the route's test, which is stricter than the
    // handshake's "contains websocket").
    if !first("upgrade")
        .and_then(visible_ascii)
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
    {
        return None;
    }
    // `Connection` lists `upgrade`, and never `close`, across all its lines.
    let mut upgrade = false;
    for value in named("connection") {
        let value = visible_ascii(value.value)?;
        for option in value.split(',').map(str::trim) {
            if option.eq_ignore_ascii_case("close") {
                return None;
            }
            upgrade |= option.eq_ignore_ascii_case("upgrade");
        }
    }
    if !upgrade {
        return None;
    }
    // The versions actix-web-actors accepts.
    if !first("sec-websocket-version").is_some_and(|v| matches!(v, b"13" | b"8" | b"7")) {
        return None;
    }
    let key = first("sec-websocket-key")?;
    Some(actix_http::ws::hash_key(key))
}

/// A header value as text, if it is visible ASCII (what `HeaderValue::to_str`
/// accepts).
fn visible_ascii(value: &[u8]) -> Option<&str> {
    value
        .iter()
        .all(|&b| b == b'\t' || (0x20..0x7f).contains(&b))
        .then(|| std::str::from_utf8(value).ok())
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";

    fn upgrade(extra: &str) -> String {
        format!(
            "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n{KEY}Sec-WebSocket-Version: 13\r\n{extra}\r\n"
        )
    }

    fn websocket(head: &str) -> Upgrade {
        match sniff(head.as_bytes(), None) {
            Sniff::Websocket(up) => up,
            other => panic!("{other:?} for {head:?}"),
        }
    }

    #[test]
    fn a_valid_upgrade_is_ours() {
        let head = upgrade("");
        let up = websocket(&head);
        assert_eq!(up.head_len, head.len());
        // RFC 6455 §1.3's example key and answer.
        assert_eq!(&up.accept, b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
        // Frames already sent after the head are not part of it.
        let pipelined = format!("{head}\u{82}\u{80}");
        assert_eq!(websocket(&pipelined).head_len, head.len());
        // Variants actix-web accepted too.
        websocket(&upgrade("").replace("Connection: Upgrade", "Connection: keep-alive, Upgrade"));
        websocket(&upgrade("").replace("Upgrade: websocket", "Upgrade: WebSocket"));
        websocket(&upgrade("").replace("Version: 13", "Version: 8"));
        websocket(&upgrade("").replace("GET /ws ", "GET /ws?x=1 "));
    }

    #[test]
    fn anything_else_goes_to_actix_web() {
        for head in [
            upgrade("").replace("GET ", "POST "),
            upgrade("").replace("GET /ws ", "GET /ws/ "),
            upgrade("").replace("GET /ws ", "GET /ws?a\"b "),
            upgrade("").replace("HTTP/1.1", "HTTP/1.0"),
            upgrade("").replace("Host: x\r\n", ""),
            upgrade("Host: y\r\n"),
            upgrade("Content-Length: 0\r\n"),
            upgrade("Transfer-Encoding: chunked\r\n"),
            upgrade("Expect: 100-continue\r\n"),
            upgrade("").replace("Upgrade: websocket", "Upgrade: foo, websocket"),
            upgrade("").replace("Connection: Upgrade", "Connection: keep-alive"),
            upgrade("Connection: close\r\n"),
            upgrade("").replace("Version: 13", "Version: 12"),
            upgrade("").replace(KEY, ""),
            upgrade("").replace("Sec-WebSocket-Version: 13\r\n", ""),
            "GET /ws HTTP/1.1\r\nBad Header: 1\r\n\r\n".to_string(),
            "\u{16}\u{3}\u{1}".to_string(),
        ] {
            assert_eq!(sniff(head.as_bytes(), None), Sniff::Http, "{head:?}");
        }
        // A plain-HTTP client behind the proxy is redirected by actix-web.
        let proxied = upgrade("X-Forwarded-Proto: http\r\n");
        assert_eq!(
            sniff(proxied.as_bytes(), Some(("X-Forwarded-Proto", "https"))),
            Sniff::Http
        );
        let secure = upgrade("x-forwarded-proto: https\r\n");
        assert!(matches!(
            sniff(secure.as_bytes(), Some(("X-Forwarded-Proto", "https"))),
            Sniff::Websocket(_)
        ));
    }

    #[test]
    fn the_request_line_decides_early() {
        assert_eq!(sniff(b"GET /ws HTTP/1.1\r\nHost: x\r\n", None), Sniff::Incomplete);
        assert_eq!(sniff(b"GET /w", None), Sniff::Incomplete);
        assert_eq!(sniff(b"", None), Sniff::Incomplete);
        assert_eq!(sniff(b"POST /ws", None), Sniff::Http);
        assert_eq!(sniff(b"GET /administration/organizations ", None), Sniff::Http);
        assert_eq!(sniff(b"GET /ws HTTP/1.0\r\n", None), Sniff::Http);
    }
}
