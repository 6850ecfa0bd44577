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

use super::head::Upgrade;
use super::{ConnError, answer};
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
    // The 101 goes out with the session's first message (the challenge,
    // sent as the session starts): one segment instead of two, one wake-up
    // less for the client on every connection.
    let mut head = Some(answer::switching_protocols(&upgrade.accept));

    let input = SocketInput {
        early: (!early.is_empty()).then_some(early),
        reader: Some(reader),
    };
    let output = parsec_actors::session::ws::run(input, SharedActors(state.clone()));
    let mut output = std::pin::pin!(output);
    while let Some(chunk) = output.next().await {
        let chunk = chunk.map_err(|e| ConnError::Encode(e.to_string()))?;
        match head.take() {
            Some(mut head) => {
                head.extend_from_slice(&chunk);
                writer.write_all(&head).await?;
                http::log_request("GET", "/ws", None, 101, started.elapsed());
            }
            None => writer.write_all(&chunk).await?,
        }
        // A no-op on TCP; pushes the TLS record out under TLS.
        writer.flush().await?;
    }
    if let Some(head) = head {
        writer.write_all(&head).await?;
        http::log_request("GET", "/ws", None, 101, started.elapsed());
    }
    // The session is over (its close frame, if any, is written): end our
    // side cleanly, without waiting long for a peer that does not read.
    let _ = tokio::time::timeout(disconnect_timeout, writer.shutdown()).await;
    Ok(())
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
