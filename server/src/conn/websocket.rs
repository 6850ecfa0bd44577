//! A websocket connection served without actix-web: we answer the upgrade,
//! then shuttle bytes between the socket and the session
//! ([`parsec_actors::session::ws::run`]).
//!
//! What an idle connection keeps is the point of this module: no read or
//! write buffer lives between two messages. Reads go through a buffer on the
//! stack and only what was read is copied out; writes go out as the session
//! produces them.

use std::mem::MaybeUninit;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use actix_http::error::PayloadError;
use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf, ReadHalf};

use super::ConnError;
use super::head::Upgrade;
use crate::http::{self, SharedActors};

/// Largest read at once. On the stack, only while reading.
const READ_CHUNK: usize = 16 * 1024;

/// Serves the websocket of an accepted upgrade. `early` holds bytes the
/// client sent right after its request head (frames it did not wait to
/// send), which the session reads first.
pub(super) async fn serve<T>(
    io: T,
    upgrade: Upgrade,
    early: Bytes,
    state: &actix_web::web::Data<http::AppState>,
    disconnect_timeout: Duration,
) -> Result<(), ConnError>
where
    T: AsyncRead + AsyncWrite + Unpin + 'static,
{
    let started = Instant::now();
    let (reader, mut writer) = tokio::io::split(io);
    writer.write_all(&response_head(&upgrade.accept)).await?;
    http::log_request("GET", "/ws", None, 101, started.elapsed());

    let input = SocketInput {
        early: (!early.is_empty()).then_some(early),
        reader: Some(reader),
    };
    let output = parsec_actors::session::ws::run(input, SharedActors(state.clone()));
    let mut output = std::pin::pin!(output);
    while let Some(chunk) = output.next().await {
        let chunk = chunk.map_err(|e| ConnError::Encode(e.to_string()))?;
        writer.write_all(&chunk).await?;
        // A no-op on TCP; pushes the TLS record out under TLS.
        writer.flush().await?;
    }
    // The session is over (its close frame, if any, is written): end our
    // side cleanly, without waiting long for a peer that does not read.
    let _ = tokio::time::timeout(disconnect_timeout, writer.shutdown()).await;
    Ok(())
}

/// The `101 Switching Protocols` answer, with the headers actix-web sent
/// (`server` and `content-type` included, so that clients see no change).
fn response_head(accept: &[u8; 28]) -> Vec<u8> {
    let date = httpdate::fmt_http_date(std::time::SystemTime::now());
    let mut head = Vec::with_capacity(256);
    head.extend_from_slice(b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: upgrade\r\n");
    head.extend_from_slice(b"sec-websocket-accept: ");
    head.extend_from_slice(accept);
    head.extend_from_slice(b"\r\nserver: ");
    head.extend_from_slice(http::SERVER_HEADER.as_bytes());
    head.extend_from_slice(b"\r\ncontent-type: application/octet-stream\r\ndate: ");
    head.extend_from_slice(date.as_bytes());
    head.extend_from_slice(b"\r\n\r\n");
    head
}

/// The client's bytes, as the session's input stream.
struct SocketInput<T> {
    /// Bytes read with the request head, given first.
    early: Option<Bytes>,
    /// `None` once the client has closed its side or the read failed.
    reader: Option<ReadHalf<T>>,
}

impl<T: AsyncRead + Unpin> Stream for SocketInput<T> {
    type Item = Result<Bytes, PayloadError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if let Some(early) = self.early.take() {
            return Poll::Ready(Some(Ok(early)));
        }
        let Some(reader) = self.reader.as_mut() else {
            return Poll::Ready(None);
        };
        let mut stack = [MaybeUninit::<u8>::uninit(); READ_CHUNK];
        let mut buf = ReadBuf::uninit(&mut stack);
        match Pin::new(reader).poll_read(cx, &mut buf) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Ok(())) if buf.filled().is_empty() => {
                self.reader = None;
                Poll::Ready(None)
            }
            Poll::Ready(Ok(())) => Poll::Ready(Some(Ok(Bytes::copy_from_slice(buf.filled())))),
            Poll::Ready(Err(e)) => {
                self.reader = None;
                Poll::Ready(Some(Err(PayloadError::Io(e))))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_answer_has_the_headers_clients_saw_before() {
        let head = String::from_utf8(response_head(b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")).unwrap();
        assert!(head.starts_with("HTTP/1.1 101 Switching Protocols\r\n"), "{head}");
        assert!(head.ends_with(" GMT\r\n\r\n"), "{head}");
        for line in [
            "upgrade: websocket",
            "connection: upgrade",
            "sec-websocket-accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=",
            "server: parsec",
            "content-type: application/octet-stream",
        ] {
            assert!(head.contains(&format!("\r\n{line}\r\n")), "{line} in {head}");
        }
    }
}
