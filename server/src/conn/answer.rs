//! The two responses a connection gets from us rather than from actix-web,
//! written as actix-web wrote them so that clients see no change.

/// `101 Switching Protocols` for a websocket upgrade, `accept` being the
/// `Sec-WebSocket-Accept` value (`server` and `content-type` included: the
/// application's middleware and actix-web-actors added them).
pub(super) fn switching_protocols(accept: &[u8; 28]) -> Vec<u8> {
    let mut head = Vec::with_capacity(256);
    head.extend_from_slice(b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: upgrade\r\n");
    head.extend_from_slice(b"sec-websocket-accept: ");
    head.extend_from_slice(accept);
    head.extend_from_slice(b"\r\nserver: ");
    head.extend_from_slice(crate::http::SERVER_HEADER.as_bytes());
    head.extend_from_slice(b"\r\ncontent-type: application/octet-stream\r\n");
    end_with_date(head)
}

/// `408 Request Timeout`: no complete request head in time (actix-web's
/// answer, which never reaches the application).
pub(super) fn request_timeout() -> Vec<u8> {
    let mut head = Vec::with_capacity(128);
    head.extend_from_slice(b"HTTP/1.1 408 Request Timeout\r\ncontent-length: 0\r\nconnection: close\r\n");
    end_with_date(head)
}

/// Adds the `date` header and the blank line ending the head.
fn end_with_date(mut head: Vec<u8>) -> Vec<u8> {
    head.extend_from_slice(b"date: ");
    head.extend_from_slice(httpdate::fmt_http_date(std::time::SystemTime::now()).as_bytes());
    head.extend_from_slice(b"\r\n\r\n");
    head
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(head: Vec<u8>) -> Vec<String> {
        let head = String::from_utf8(head).unwrap();
        assert!(head.ends_with(" GMT\r\n\r\n"), "{head}");
        head.trim_end().split("\r\n").map(str::to_string).collect()
    }

    #[test]
    fn the_upgrade_answer_has_the_headers_clients_saw_before() {
        let lines = lines(switching_protocols(b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="));
        assert_eq!(lines[0], "HTTP/1.1 101 Switching Protocols");
        for line in [
            "upgrade: websocket",
            "connection: upgrade",
            "sec-websocket-accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=",
            "server: parsec",
            "content-type: application/octet-stream",
        ] {
            assert!(lines.iter().any(|l| l == line), "{line} in {lines:?}");
        }
        assert!(lines.iter().any(|l| l.starts_with("date: ")), "{lines:?}");
    }

    #[test]
    fn the_timeout_answer_closes() {
        let lines = lines(request_timeout());
        assert_eq!(lines[0], "HTTP/1.1 408 Request Timeout");
        assert!(lines.iter().any(|l| l == "content-length: 0"));
        assert!(lines.iter().any(|l| l == "connection: close"));
    }
}
