//! One accepted connection, after TLS when there is TLS.
//!
//! We read the start of the first request into a small buffer and look at
//! it ([`head::sniff`]):
//! - a websocket upgrade for `/ws` is answered here and becomes a session
//!   ([`websocket`]): nothing of actix-web's HTTP machinery stays under it;
//! - anything else (the administration API, anonymous routes, static
//!   files, errors, and upgrades we leave to actix-web) is handed to
//!   actix-web's HTTP service, the bytes already read replayed first
//!   ([`Replay`]). The connection is then actix-web's until it closes.

mod answer;
mod head;
mod replay;
mod websocket;

use std::marker::PhantomData;
use std::net::SocketAddr;
use std::rc::Rc;
use std::task::{Context, Poll};

use actix_http::Protocol;
use actix_http::error::DispatchError;
use actix_service::{Service, ServiceFactory};
use actix_tls::accept::openssl::TlsStream;
use actix_web::rt::net::TcpStream;
use actix_web::web;
use bytes::{Bytes, BytesMut};
use futures_util::future::LocalBoxFuture;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::http::AppState;
use crate::serve::{CLIENT_DISCONNECT_TIMEOUT, CLIENT_REQUEST_TIMEOUT};
use head::Sniff;
pub use replay::Replay;

/// First read of a connection; request heads of websocket clients fit.
const HEAD_CHUNK: usize = 1024;
/// Beyond this, the head is not a websocket upgrade of ours (clients send
/// a few hundred bytes): actix-web reads the rest and applies its limits.
const MAX_HEAD: usize = 8 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ConnError {
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("TLS handshake: {0}")]
    Tls(String),
    #[error("HTTP: {0}")]
    Http(DispatchError),
    #[error("websocket output: {0}")]
    Encode(String),
}

/// A connection's byte stream, and the TCP socket under it.
pub trait Transport: AsyncRead + AsyncWrite + Unpin + 'static {
    fn tcp(&self) -> &TcpStream;
}

impl Transport for TcpStream {
    fn tcp(&self) -> &TcpStream {
        self
    }
}

impl Transport for TlsStream<TcpStream> {
    fn tcp(&self) -> &TcpStream {
        self.get_ref()
    }
}

/// Makes a [`Conn`] per worker thread, around that worker's actix-web
/// HTTP service (`http`).
pub struct ConnFactory<T, F> {
    http: F,
    state: web::Data<AppState>,
    _io: PhantomData<fn(T)>,
}

impl<T, F> ConnFactory<T, F> {
    pub fn new(http: F, state: web::Data<AppState>) -> Self {
        Self {
            http,
            state,
            _io: PhantomData,
        }
    }
}

impl<T, F> ServiceFactory<T> for ConnFactory<T, F>
where
    T: Transport,
    F: ServiceFactory<
            (Replay<T>, Protocol, Option<SocketAddr>),
            Config = (),
            Response = (),
            Error = DispatchError,
            InitError = (),
        >,
    F::Service: 'static,
    F::Future: 'static,
{
    type Response = ();
    type Error = ConnError;
    type Config = ();
    type Service = Conn<F::Service>;
    type InitError = ();
    type Future = LocalBoxFuture<'static, Result<Self::Service, ()>>;

    fn new_service(&self, _: ()) -> Self::Future {
        let http = self.http.new_service(());
        let state = self.state.clone();
        Box::pin(async move {
            Ok(Conn {
                http: Rc::new(http.await?),
                state,
            })
        })
    }
}

/// Serves connections: see the module documentation.
pub struct Conn<H> {
    http: Rc<H>,
    state: web::Data<AppState>,
}

impl<T, H> Service<T> for Conn<H>
where
    T: Transport,
    H: Service<(Replay<T>, Protocol, Option<SocketAddr>), Response = (), Error = DispatchError> + 'static,
{
    type Response = ();
    type Error = ConnError;
    type Future = LocalBoxFuture<'static, Result<(), ConnError>>;

    fn poll_ready(&self, cx: &mut Context<'_>) -> Poll<Result<(), ConnError>> {
        self.http.poll_ready(cx).map_err(ConnError::Http)
    }

    fn call(&self, io: T) -> Self::Future {
        // No socket options to set here: accepted sockets inherit those of
        // the listening one (crate::serve::listen_on). The peer's address
        // costs a system call: asked for only where it is used (actix-web's
        // requests, debug lines).
        let peer = log::log_enabled!(log::Level::Debug)
            .then(|| io.tcp().peer_addr().ok())
            .flatten();
        let (http, state) = (self.http.clone(), self.state.clone());
        // One allocation per connection holds all of its state (a
        // websocket's session included); errors end here, as the server
        // would only drop them.
        Box::pin(async move {
            if let Err(e) = serve(io, peer, http, state).await {
                log::debug!("connection from {peer:?}: {e}");
            }
            Ok(())
        })
    }
}

/// The life of one connection (see the module documentation); an error is
/// only worth a debug line (clients vanish all the time).
async fn serve<T, H>(
    mut io: T,
    peer: Option<SocketAddr>,
    http: Rc<H>,
    state: web::Data<AppState>,
) -> Result<(), ConnError>
where
    T: Transport,
    H: Service<(Replay<T>, Protocol, Option<SocketAddr>), Response = (), Error = DispatchError> + 'static,
{
    let mut head = BytesMut::with_capacity(HEAD_CHUNK);
    let enforce_https = state
        .forward_proto_enforce_https
        .as_ref()
        .map(|(name, value)| (name.as_str(), value.as_str()));
    let verdict = match tokio::time::timeout(CLIENT_REQUEST_TIMEOUT, read_head(&mut io, &mut head, enforce_https)).await
    {
        Ok(Ok(Some(verdict))) => verdict,
        // Closed before sending anything: nothing to answer.
        Ok(Ok(None)) if head.is_empty() => return Ok(()),
        // Closed mid-head: actix-web deals with the partial request as it
        // always did.
        Ok(Ok(None)) => Sniff::Http,
        Ok(Err(e)) => return Err(e.into()),
        // Too slow: what actix-web answered, at the same moment (handing
        // over would start its own timeout again).
        Err(_) => {
            drop(head);
            let bounded = tokio::time::timeout(CLIENT_DISCONNECT_TIMEOUT, async {
                io.write_all(&answer::request_timeout()).await?;
                io.shutdown().await
            });
            return match bounded.await {
                Ok(written) => written.map_err(ConnError::from),
                Err(_) => Ok(()),
            };
        }
    };
    match verdict {
        Sniff::Websocket(upgrade) => {
            // Frames the client sent without waiting for our answer, copied
            // out so that the head's buffer goes now.
            let early = Bytes::copy_from_slice(&head[upgrade.head_len..]);
            drop(head);
            websocket::serve(io, upgrade, early, &state, CLIENT_DISCONNECT_TIMEOUT).await
        }
        Sniff::Http | Sniff::Incomplete => {
            let peer = peer.or_else(|| io.tcp().peer_addr().ok());
            let io = Replay::new(io, head.freeze());
            // Boxed: actix-web's dispatcher is large, and only these
            // connections should pay for it.
            Box::pin(http.call((io, Protocol::Http1, peer)))
                .await
                .map_err(ConnError::Http)
        }
    }
}

/// Reads until [`head::sniff`] can tell what the connection is; `None` if
/// the client closed first.
async fn read_head<T: AsyncRead + Unpin>(
    io: &mut T,
    head: &mut BytesMut,
    enforce_https: Option<(&str, &str)>,
) -> std::io::Result<Option<Sniff>> {
    loop {
        match head::sniff(head, enforce_https) {
            Sniff::Incomplete if head.len() >= MAX_HEAD => return Ok(Some(Sniff::Http)),
            Sniff::Incomplete => {}
            verdict => return Ok(Some(verdict)),
        }
        head.reserve(HEAD_CHUNK);
        if io.read_buf(head).await? == 0 {
            return Ok(None);
        }
    }
}
