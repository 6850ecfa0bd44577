//! The listening side, shared by `parsec-server run` and the end-to-end
//! tests: binds, accepts (through TLS when configured) and gives each
//! connection to [`crate::conn`], which serves websocket upgrades itself and
//! everything else through actix-web's HTTP service and our [`http::app`].
//!
//! This replaces actix-web's `HttpServer`, whose HTTP/1 dispatcher stays
//! under a websocket for its whole life with two 8 KiB buffers: with tens of
//! thousands of idle clients, that was half of the server's memory. The
//! settings below are the ones `HttpServer` applied, so plain HTTP behaves
//! as before.

use std::net::{SocketAddr, TcpListener, ToSocketAddrs};
use std::time::Duration;

use actix_http::{HttpService, KeepAlive, Protocol};
use actix_server::{GracefulShutdownSignal, Server, ServerBuilder};
use actix_service::{ServiceFactory, ServiceFactoryExt as _, map_config};
use actix_tls::accept::openssl::{Acceptor, TlsStream};
use actix_web::dev::AppConfig;
use actix_web::rt::net::TcpStream;
use actix_web::web;
use openssl::ssl::SslAcceptorBuilder;

use crate::conn::{self, ConnError, ConnFactory, Replay};
use crate::http::{self, AppState};

/// Pending connections the kernel queues for us (actix-web's default).
const BACKLOG: i32 = 1024;
/// TCP keepalive of accepted connections: the first probe after this long
/// without traffic,
const KEEPALIVE_IDLE: Duration = Duration::from_secs(60);
/// then one per interval,
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
/// and the connection is dropped after this many go unanswered.
const KEEPALIVE_RETRIES: u32 = 3;
/// A client must send its first request head within this time (then, with
/// keep-alive, each following one).
pub const CLIENT_REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Bound on closing a connection cleanly once we are done with it.
pub const CLIENT_DISCONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// Bound on a TLS handshake.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(3);

/// Where and how to listen.
pub struct Options {
    pub host: String,
    pub port: u16,
    /// TLS (`--ssl-certfile`/`--ssl-keyfile`), see [`crate::tls::acceptor`].
    pub tls: Option<SslAcceptorBuilder>,
    /// Worker threads; `None`: one per core.
    pub workers: Option<usize>,
    /// A graceful stop waits this long for open connections, then drops them.
    pub shutdown_timeout_secs: u64,
}

/// A started server and the addresses it listens on (a port 0 asked for
/// in [`Options`] is resolved there).
pub struct Listening {
    pub server: Server,
    pub addrs: Vec<SocketAddr>,
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot resolve {addr}: {source}")]
    Resolve { addr: String, source: std::io::Error },
    #[error("{addr}: {source}")]
    Bind { addr: String, source: std::io::Error },
    #[error("TLS setup: {0}")]
    Tls(#[from] openssl::error::ErrorStack),
}

/// Binds every address `host` resolves to (as `HttpServer::bind` did: it
/// is enough that one of them works) and starts serving there. Must run
/// inside an actix system; OS signals are not handled (the caller stops the
/// server through [`Server::handle`]).
pub fn start(state: AppState, opts: Options) -> Result<Listening, ServeError> {
    let listeners = bind(&opts.host, opts.port)?;
    let tls = opts.tls.map(crate::tls::finish);
    let mut builder = ServerBuilder::default()
        .disable_signals()
        .backlog(BACKLOG as u32)
        .shutdown_timeout(opts.shutdown_timeout_secs);
    if let Some(n) = opts.workers {
        builder = builder.workers(n);
    }
    let shutdown = builder.graceful_shutdown_signal();
    let mut addrs = Vec::new();
    for listener in listeners {
        let addr = listener.local_addr().map_err(|source| ServeError::Bind {
            addr: format!("{}:{}", opts.host, opts.port),
            source,
        })?;
        addrs.push(addr);
        let (state, shutdown) = (state.clone(), shutdown.clone());
        let name = format!("parsec-{addr}");
        let bound = match &tls {
            None => builder.listen(name, listener, move || {
                let data = web::Data::new(state.clone());
                ConnFactory::<TcpStream, _>::new(http_service(data.clone(), addr, shutdown.clone()), data)
            }),
            Some(acceptor) => {
                let acceptor = acceptor.clone();
                builder.listen(name, listener, move || {
                    let data = web::Data::new(state.clone());
                    let mut tls = Acceptor::new(acceptor.clone());
                    tls.set_handshake_timeout(TLS_HANDSHAKE_TIMEOUT);
                    tls.map_err(|e| ConnError::Tls(format!("{e:?}"))).and_then(
                        ConnFactory::<TlsStream<TcpStream>, _>::new(
                            http_service(data.clone(), addr, shutdown.clone()),
                            data,
                        ),
                    )
                })
            }
        };
        builder = bound.map_err(|source| ServeError::Bind {
            addr: addr.to_string(),
            source,
        })?;
    }
    Ok(Listening {
        server: builder.run(),
        addrs,
    })
}

/// actix-web's HTTP/1 service around our application, configured as
/// `HttpServer` configured it.
fn http_service<T>(
    data: web::Data<AppState>,
    local_addr: SocketAddr,
    shutdown: GracefulShutdownSignal,
) -> impl ServiceFactory<
    (Replay<T>, Protocol, Option<SocketAddr>),
    Config = (),
    Response = (),
    Error = actix_http::error::DispatchError,
    InitError = (),
> + 'static
where
    T: conn::Transport,
{
    HttpService::build()
        .keep_alive(KeepAlive::default())
        .client_request_timeout(CLIENT_REQUEST_TIMEOUT)
        .client_disconnect_timeout(CLIENT_DISCONNECT_TIMEOUT)
        .h1_allow_half_closed(true)
        .local_addr(local_addr)
        // Idle keep-alive connections close when a graceful stop begins.
        .graceful_shutdown_signal(move || {
            let shutdown = shutdown.clone();
            async move { shutdown.notified().await }
        })
        .finish(map_config(http::app(data), |_| AppConfig::default()))
}

/// One listener per address `host:port` resolves to, with `SO_REUSEADDR`
/// (a restarted server binds at once despite connections in `TIME_WAIT`).
fn bind(host: &str, port: u16) -> Result<Vec<TcpListener>, ServeError> {
    let addr = format!("{host}:{port}");
    let resolved = (host, port).to_socket_addrs().map_err(|source| ServeError::Resolve {
        addr: addr.clone(),
        source,
    })?;
    let mut listeners = Vec::new();
    let mut last_error = None;
    for a in resolved {
        match listen_on(a) {
            Ok(l) => listeners.push(l),
            Err(e) => last_error = Some(e),
        }
    }
    match (listeners.is_empty(), last_error) {
        (false, _) => Ok(listeners),
        (true, Some(source)) => Err(ServeError::Bind { addr, source }),
        (true, None) => Err(ServeError::Resolve {
            addr,
            source: std::io::Error::other("no address"),
        }),
    }
}

/// A listening socket whose accepted connections are tuned (they inherit
/// its options, which saves five system calls per connection):
/// - no Nagle: a reply written right after an event (two small writes) must
///   not wait for the client's delayed ACK (~40 ms);
/// - TCP keepalive: a peer that vanished (power cut, network gone) is detected
///   by the kernel and its connection closed, even if the client never reads
///   (an idle 2.10 client does not answer websocket pings until it reads).
fn listen_on(addr: SocketAddr) -> std::io::Result<TcpListener> {
    use socket2::{Domain, Protocol, Socket, TcpKeepalive, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_tcp_nodelay(true)?;
    let keepalive = TcpKeepalive::new()
        .with_time(KEEPALIVE_IDLE)
        .with_interval(KEEPALIVE_INTERVAL)
        .with_retries(KEEPALIVE_RETRIES);
    socket.set_tcp_keepalive(&keepalive)?;
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    Ok(socket.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepted_connections_inherit_the_listening_sockets_options() {
        let listener = listen_on("127.0.0.1:0".parse().unwrap()).unwrap();
        let _client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (accepted, _) = listener.accept().unwrap();
        let s = socket2::SockRef::from(&accepted);
        assert!(s.tcp_nodelay().unwrap());
        assert!(s.keepalive().unwrap());
        assert_eq!(s.tcp_keepalive_time().unwrap(), KEEPALIVE_IDLE);
        assert_eq!(s.tcp_keepalive_interval().unwrap(), KEEPALIVE_INTERVAL);
        assert_eq!(s.tcp_keepalive_retries().unwrap(), KEEPALIVE_RETRIES);
    }
}
