//! Websocket plumbing: the only module that touches `actix-web-actors`, so a
//! move to `actix-ws` changes this file alone.
//!
//! Decodes the client's frames into a buffer that an idle connection does
//! not keep ([`Frames`]), reassembles fragmented messages (continuation
//! frames, with control frames allowed in between), bounds the size of a
//! message, and turns everything else into an [`Incoming`] the session
//! understands.

use actix_web::{HttpRequest, HttpResponse, web};
use std::pin::Pin;
use std::task::{Context, Poll};

use actix_http::error::PayloadError;
use actix_http::ws::Item;
use actix_web_actors::ws;
use bytes::{Bytes, BytesMut};
use futures_util::Stream;

use super::ClientSession;
use crate::Actors;

/// Largest websocket frame, and largest reassembled message. A v2 message
/// carries at most one 1 MiB `bin` (a block) plus a few fields; anything much
/// larger is refused before it is buffered.
pub const MAX_MESSAGE_SIZE: usize = 4 * 1024 * 1024;

/// Upgrades an HTTP request on `/ws` into a session.
pub fn start(req: &HttpRequest, payload: web::Payload, actors: Actors) -> Result<HttpResponse, actix_web::Error> {
    start_shared(req, payload, actors)
}

/// Like [`start`], with the actors' handles borrowed from something the
/// caller already shares (the server's application state): every
/// connection then points at one [`Actors`] instead of cloning its ten
/// addresses, each clone being two small allocations held as long as the
/// connection (about 1 KiB of each idle connection's memory).
pub fn start_shared(
    req: &HttpRequest,
    payload: web::Payload,
    actors: impl AsRef<Actors> + 'static,
) -> Result<HttpResponse, actix_web::Error> {
    let mut response = ws::handshake(req)?;
    Ok(response.streaming(run(payload, actors)))
}

/// Runs a session on a websocket whose upgrade the caller answered itself
/// (the server's own connection handling, which keeps no HTTP machinery
/// alive under an idle websocket). `input` is everything the client sends
/// after its request head; the returned stream is what to write back, and
/// ends once the session is over (after its close frame, if any).
///
/// Frames and messages are bounded by [`MAX_MESSAGE_SIZE`], oversized
/// headers refused by the [`FrameGuard`], and frames decoded by [`Frames`].
pub fn run<S>(input: S, actors: impl AsRef<Actors> + 'static) -> impl Stream<Item = Result<Bytes, actix_web::Error>>
where
    S: Stream<Item = Result<Bytes, PayloadError>> + Unpin + 'static,
{
    let session = ClientSession::new(std::rc::Rc::new(actors));
    let frames = Frames::new(FrameGuard::new(input));
    // The context's own decoder is given a stream that never yields: ours
    // replaces it (see [`Frames`]). The context encodes what the session
    // writes, with no size limit on that side.
    let unused = futures_util::stream::pending::<Result<Bytes, PayloadError>>();
    ws::WebsocketContext::with_factory(unused, move |ctx| {
        use actix::AsyncContext as _;
        ctx.add_stream(frames);
        session
    })
}

impl AsRef<Actors> for Actors {
    fn as_ref(&self) -> &Actors {
        self
    }
}

/// Refuses a frame as soon as its header announces more than
/// [`MAX_MESSAGE_SIZE`]. actix's codec checks the limit only once the whole
/// frame is buffered, so a client announcing 2^62 bytes and trickling them
/// would otherwise grow the buffer without bound.
struct FrameGuard<S> {
    inner: S,
    /// Bytes of the frame header read so far (at most 14: 2, 8 of length,
    /// 4 of mask), inline rather than a per-connection allocation.
    header: [u8; 14],
    header_len: usize,
    /// Payload bytes of the current frame still to come.
    remaining: u64,
    failed: bool,
}

impl<S> FrameGuard<S> {
    fn new(inner: S) -> Self {
        Self {
            inner,
            header: [0; 14],
            header_len: 0,
            remaining: 0,
            failed: false,
        }
    }

    /// `(header length, payload length)` once the header is complete enough to tell.
    fn header_lengths(h: &[u8]) -> Option<(usize, u64)> {
        let second = *h.get(1)?;
        let mask_len = if second & 0x80 != 0 { 4 } else { 0 };
        let (ext, len) = match second & 0x7f {
            126 => (2, u16::from_be_bytes(h.get(2..4)?.try_into().ok()?) as u64),
            127 => (8, u64::from_be_bytes(h.get(2..10)?.try_into().ok()?)),
            n => (0, n as u64),
        };
        Some((2 + ext + mask_len, len))
    }

    /// Follows frame boundaries through `chunk`; `false` on an oversized frame.
    fn scan(&mut self, chunk: &[u8]) -> bool {
        let mut i = 0;
        while i < chunk.len() {
            if self.remaining > 0 {
                let take = self.remaining.min((chunk.len() - i) as u64);
                self.remaining -= take;
                i += take as usize;
                continue;
            }
            // A header is complete by 14 bytes at the latest (reset below),
            // so the slot always exists; refusing is only a safety net.
            let Some(slot) = self.header.get_mut(self.header_len) else {
                return false;
            };
            *slot = chunk[i];
            self.header_len += 1;
            i += 1;
            if let Some((header_len, payload_len)) = Self::header_lengths(&self.header[..self.header_len]) {
                if payload_len > MAX_MESSAGE_SIZE as u64 {
                    return false;
                }
                if self.header_len == header_len {
                    self.remaining = payload_len;
                    self.header_len = 0;
                }
            }
        }
        true
    }
}

impl<S> futures_util::Stream for FrameGuard<S>
where
    S: futures_util::Stream<Item = Result<Bytes, PayloadError>> + Unpin,
{
    type Item = Result<Bytes, PayloadError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.failed {
            return Poll::Ready(None);
        }
        match Pin::new(&mut self.inner).poll_next(cx) {
            Poll::Ready(Some(Ok(chunk))) => {
                if self.scan(&chunk) {
                    Poll::Ready(Some(Ok(chunk)))
                } else {
                    self.failed = true;
                    Poll::Ready(Some(Err(PayloadError::Overflow)))
                }
            }
            other => other,
        }
    }
}

/// The client's frames, decoded with actix's codec into a buffer that is
/// given back as soon as it is empty. actix-web-actors' own decoder keeps
/// its buffer, at its largest size, for the connection's life: after one
/// 512 KiB block, an idle connection held on to 512 KiB or more.
struct Frames<S> {
    input: S,
    codec: actix_http::ws::Codec,
    /// Bytes received and not yet decoded: empty, and unallocated, between
    /// messages.
    buf: BytesMut,
    /// The input ended (or failed): decode what is left, then end.
    ended: bool,
}

impl<S> Frames<S> {
    fn new(input: S) -> Self {
        Self {
            input,
            codec: actix_http::ws::Codec::new().max_size(MAX_MESSAGE_SIZE),
            buf: BytesMut::new(),
            ended: false,
        }
    }

    /// The next frame already in `buf`, if complete.
    fn decode(&mut self) -> Option<Result<ws::Message, ws::ProtocolError>> {
        use tokio_util::codec::Decoder as _;
        let frame = match self.codec.decode(&mut self.buf) {
            Ok(Some(frame)) => frame,
            Ok(None) => return None,
            Err(e) => {
                // The stream is unusable past a framing error.
                self.ended = true;
                self.buf = BytesMut::new();
                return Some(Err(e));
            }
        };
        if self.buf.is_empty() {
            // The frame's payload keeps what it needs of the allocation.
            self.buf = BytesMut::new();
        }
        Some(match frame {
            ws::Frame::Binary(b) => Ok(ws::Message::Binary(b)),
            ws::Frame::Text(b) => bytestring::ByteString::try_from(b)
                .map(ws::Message::Text)
                .map_err(|e| ws::ProtocolError::Io(std::io::Error::other(e.to_string()))),
            ws::Frame::Continuation(item) => Ok(ws::Message::Continuation(item)),
            ws::Frame::Ping(b) => Ok(ws::Message::Ping(b)),
            ws::Frame::Pong(b) => Ok(ws::Message::Pong(b)),
            ws::Frame::Close(reason) => Ok(ws::Message::Close(reason)),
        })
    }
}

impl<S> futures_util::Stream for Frames<S>
where
    S: futures_util::Stream<Item = Result<Bytes, PayloadError>> + Unpin,
{
    type Item = Result<ws::Message, ws::ProtocolError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        loop {
            if let Some(item) = self.decode() {
                return Poll::Ready(Some(item));
            }
            if self.ended {
                return Poll::Ready(None);
            }
            match Pin::new(&mut self.input).poll_next(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Ok(chunk))) if self.buf.is_empty() => {
                    // Most messages arrive whole: take the chunk as it is.
                    self.buf = BytesMut::from(chunk);
                }
                Poll::Ready(Some(Ok(chunk))) => self.buf.extend_from_slice(&chunk),
                Poll::Ready(Some(Err(e))) => {
                    self.ended = true;
                    return Poll::Ready(Some(Err(ws::ProtocolError::Io(std::io::Error::other(e.to_string())))));
                }
                Poll::Ready(None) => self.ended = true,
            }
        }
    }
}

/// What one websocket item means to the session.
pub(crate) enum Incoming {
    /// A complete binary message.
    Message(Bytes),
    /// A complete text message (refused with `invalid_msg_format`).
    Text,
    Ping(Bytes),
    Close(Option<ws::CloseReason>),
    /// Framing violation: unmasked frame, bad opcode, RSV bits, oversized…
    Violation(String),
    /// Pong, nop, or a fragment of a message still being assembled.
    Nothing,
}

/// Continuation-frame reassembly.
#[derive(Default)]
pub(crate) struct Assembler {
    partial: Option<(BytesMut, bool)>,
}

impl Assembler {
    pub(crate) fn push(&mut self, item: Result<ws::Message, ws::ProtocolError>) -> Incoming {
        let msg = match item {
            Ok(m) => m,
            Err(e) => return Incoming::Violation(e.to_string()),
        };
        match msg {
            ws::Message::Binary(b) if self.partial.is_none() => Incoming::Message(b),
            ws::Message::Text(_) if self.partial.is_none() => Incoming::Text,
            ws::Message::Binary(_) | ws::Message::Text(_) => {
                Incoming::Violation("new message inside a fragmented one".into())
            }
            ws::Message::Ping(b) => Incoming::Ping(b),
            ws::Message::Pong(_) | ws::Message::Nop => Incoming::Nothing,
            ws::Message::Close(reason) => Incoming::Close(reason),
            ws::Message::Continuation(item) => self.continuation(item),
        }
    }

    fn continuation(&mut self, item: Item) -> Incoming {
        let last = matches!(item, Item::Last(_));
        match item {
            Item::FirstBinary(_) | Item::FirstText(_) if self.partial.is_some() => {
                Incoming::Violation("new message inside a fragmented one".into())
            }
            Item::FirstBinary(b) => {
                self.partial = Some((BytesMut::from(&b[..]), false));
                Incoming::Nothing
            }
            Item::FirstText(b) => {
                self.partial = Some((BytesMut::from(&b[..]), true));
                Incoming::Nothing
            }
            Item::Continue(b) | Item::Last(b) => {
                let Some((buf, _)) = self.partial.as_mut() else {
                    return Incoming::Violation("continuation frame without a first frame".into());
                };
                if buf.len() + b.len() > MAX_MESSAGE_SIZE {
                    self.partial = None;
                    return Incoming::Violation("fragmented message too large".into());
                }
                buf.extend_from_slice(&b);
                if !last {
                    return Incoming::Nothing;
                }
                match self.partial.take() {
                    Some((buf, false)) => Incoming::Message(buf.freeze()),
                    Some((_, true)) => Incoming::Text,
                    None => Incoming::Nothing,
                }
            }
        }
    }
}

pub(crate) use ws::{CloseCode, CloseReason, Message, ProtocolError, WebsocketContext};

#[cfg(test)]
mod tests {
    use super::*;

    fn guard() -> FrameGuard<()> {
        FrameGuard::new(())
    }

    /// A client frame (masked), FIN set.
    fn client_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
        let mask = [1u8, 2, 3, 4];
        let mut out = vec![0x80 | opcode];
        match payload.len() {
            n if n < 126 => out.push(0x80 | n as u8),
            n if n <= u16::MAX as usize => {
                out.push(0x80 | 126);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                out.push(0x80 | 127);
                out.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        out.extend_from_slice(&mask);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        out
    }

    fn frames_of(
        chunks: Vec<Vec<u8>>,
    ) -> Frames<impl futures_util::Stream<Item = Result<Bytes, PayloadError>> + Unpin> {
        Frames::new(futures_util::stream::iter(
            chunks.into_iter().map(|c| Ok(Bytes::from(c))),
        ))
    }

    #[tokio::test]
    async fn frames_are_decoded_across_chunks() {
        use futures_util::StreamExt;
        let mut wire = client_frame(0x2, b"first");
        wire.extend(client_frame(0x9, b"ping"));
        wire.extend(client_frame(0x1, b"text"));
        wire.extend(client_frame(0x8, &1000u16.to_be_bytes()));
        // Cut everywhere, including inside headers.
        let chunks: Vec<Vec<u8>> = wire.chunks(3).map(<[u8]>::to_vec).collect();
        let mut frames = frames_of(chunks);
        assert!(matches!(frames.next().await, Some(Ok(Message::Binary(b))) if b == "first"));
        assert!(matches!(frames.next().await, Some(Ok(Message::Ping(b))) if b == "ping"));
        assert!(matches!(frames.next().await, Some(Ok(Message::Text(t))) if t == "text"));
        assert!(matches!(frames.next().await, Some(Ok(Message::Close(Some(r)))) if r.code == CloseCode::Normal));
        assert!(frames.next().await.is_none());
    }

    #[tokio::test]
    async fn a_large_message_leaves_no_buffer_behind() {
        use futures_util::StreamExt;
        let big = vec![7u8; 512 * 1024];
        let wire = client_frame(0x2, &big);
        let chunks: Vec<Vec<u8>> = wire.chunks(16 * 1024).map(<[u8]>::to_vec).collect();
        let mut frames = frames_of(chunks);
        match frames.next().await {
            Some(Ok(Message::Binary(b))) => assert_eq!(b.len(), big.len()),
            _ => panic!("expected the binary message"),
        }
        assert_eq!(frames.buf.capacity(), 0, "buffer given back once empty");
    }

    #[tokio::test]
    async fn bad_input_ends_the_stream_with_an_error() {
        use futures_util::StreamExt;
        // Text that is not UTF-8.
        let mut frames = frames_of(vec![client_frame(0x1, &[0xff, 0xfe])]);
        assert!(matches!(frames.next().await, Some(Err(ProtocolError::Io(_)))));
        // An unmasked frame.
        let mut frames = frames_of(vec![vec![0x82, 0x01, b'x'], client_frame(0x2, b"after")]);
        assert!(matches!(frames.next().await, Some(Err(_))));
        assert!(frames.next().await.is_none(), "nothing after a framing error");
    }

    #[test]
    fn frame_guard_follows_frames_across_chunks() {
        let mut g = guard();
        // Masked binary frame of 3 bytes, split in odd places.
        let frame = [0x82u8, 0x83, 1, 2, 3, 4, b'a', b'b', b'c'];
        assert!(g.scan(&frame[..1]));
        assert!(g.scan(&frame[1..5]));
        assert!(g.scan(&frame[5..]));
        assert_eq!((g.remaining, g.header_len), (0, 0));
        // 16-bit length.
        assert!(g.scan(&[0x82, 0xfe, 0x01, 0x00, 0, 0, 0, 0]));
        assert_eq!(g.remaining, 256);
        assert!(g.scan(&[0u8; 256]));
        // 64-bit absurd length: refused from the header alone.
        let mut absurd = vec![0x82, 0xff];
        absurd.extend_from_slice(&(1u64 << 62).to_be_bytes());
        assert!(!guard().scan(&absurd));
        let mut big = vec![0x82, 0xff];
        big.extend_from_slice(&((MAX_MESSAGE_SIZE as u64) + 1).to_be_bytes());
        assert!(!guard().scan(&big));
    }
}
