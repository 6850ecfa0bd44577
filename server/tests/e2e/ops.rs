//! Operator-facing behaviour: TLS, HTTPS enforcement behind a proxy, health
//! and readiness endpoints (readiness fails while the database or the block
//! store is unreachable).

use std::io::{Read, Write};

use openssl::asn1::Asn1Time;
use openssl::ec::{EcGroup, EcKey};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::PKey;
use openssl::ssl::{SslConnector, SslMethod};
use openssl::x509::extension::SubjectAlternativeName;
use openssl::x509::{X509, X509NameBuilder};
use parsec_actors::backend::Backends;
use parsec_actors::blockstore::BlockStoreError;
use parsec_actors::{Actors, Settings};
use parsec_server::{http, serve, tls};

use crate::common::*;

#[actix_web::test]
async fn https_enforcement_behind_a_proxy() {
    let server = start_server().await;
    let (status, _) = http_request(&server, "GET", "/", &[("X-Forwarded-Proto", "https")], b"").await;
    assert_eq!(status, 200);
    let (status, _) = http_request(&server, "GET", "/", &[], b"").await;
    assert_eq!(status, 200, "a missing header does not trigger the redirect");
    let mut stream = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    stream
        .write_all(b"GET /ws?x=1 HTTP/1.1\r\nHost: x\r\nX-Forwarded-Proto: http\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.unwrap();
    let text = String::from_utf8_lossy(&raw).to_lowercase();
    assert!(text.starts_with("http/1.1 301"), "{text}");
    assert!(text.contains("location: https://127.0.0.1:6777/ws?x=1"), "{text}");
}

#[actix_web::test]
async fn health_and_readiness() {
    let server = start_server().await;
    assert_eq!(
        http_request(&server, "GET", "/health", &[], b"").await,
        (200, b"ok".to_vec())
    );
    assert_eq!(
        http_request(&server, "GET", "/ready", &[], b"").await,
        (200, b"ready".to_vec())
    );
}

fn self_signed() -> Result<(X509, PKey<openssl::pkey::Private>), openssl::error::ErrorStack> {
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1)?;
    let key = PKey::from_ec_key(EcKey::generate(&group)?)?;
    let mut name = X509NameBuilder::new()?;
    name.append_entry_by_nid(Nid::COMMONNAME, "localhost")?;
    let name = name.build();
    let mut b = X509::builder()?;
    b.set_version(2)?;
    b.set_subject_name(&name)?;
    b.set_issuer_name(&name)?;
    b.set_pubkey(&key)?;
    let not_before = Asn1Time::days_from_now(0)?;
    let not_after = Asn1Time::days_from_now(1)?;
    b.set_not_before(&not_before)?;
    b.set_not_after(&not_after)?;
    let san = SubjectAlternativeName::new()
        .dns("localhost")
        .ip("127.0.0.1")
        .build(&b.x509v3_context(None, None))?;
    b.append_extension(san)?;
    b.sign(&key, MessageDigest::sha256())?;
    Ok((b.build(), key))
}

#[actix_web::test]
async fn tls_with_a_custom_ca() {
    let (cert, key) = self_signed().expect("self-signed certificate");
    let dir = std::env::temp_dir().join(format!("parsec-tls-{}", hex::encode(rand::random::<[u8; 6]>())));
    std::fs::create_dir_all(&dir).unwrap();
    let (cert_path, key_path) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert_path, cert.to_pem().unwrap()).unwrap();
    std::fs::write(&key_path, key.private_key_to_pem_pkcs8().unwrap()).unwrap();

    let settings = Settings {
        administration_token: TOKEN.into(),
        spontaneous_organization_bootstrap: false,
        organization_initial_active_users_limit: None,
        organization_initial_user_profile_outsider_allowed: true,
        email: Default::default(),
        backend_addr: Default::default(),
    };
    let state = http::AppState {
        actors: Actors::start(Backends::memory(), settings),
        backend_netloc: "localhost".into(),
        backend_query: vec![],
        forward_proto_enforce_https: None,
    };
    let listening = serve::start(
        state,
        serve::Options {
            host: "127.0.0.1".into(),
            port: 0,
            tls: Some(tls::acceptor(&cert_path, &key_path).unwrap()),
            workers: Some(1),
            shutdown_timeout_secs: 1,
        },
    )
    .unwrap();
    let addr = listening.addrs[0];
    actix_web::rt::spawn(listening.server);

    let trusted = cert.clone();
    let reply = tokio::task::spawn_blocking(move || {
        let mut connector = SslConnector::builder(SslMethod::tls()).unwrap();
        connector.cert_store_mut().add_cert(trusted).unwrap();
        let connector = connector.build();
        let tcp = std::net::TcpStream::connect(addr).unwrap();
        let mut tls = connector
            .connect("localhost", tcp)
            .expect("TLS handshake with the custom CA");
        tls.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut out = Vec::new();
        let _ = tls.read_to_end(&mut out);
        out
    })
    .await
    .unwrap();
    assert!(String::from_utf8_lossy(&reply).starts_with("HTTP/1.1 200"));

    // A websocket over TLS, answered by the server's own upgrade: the
    // challenge arrives, and the session answers a ping frame.
    let trusted = cert.clone();
    let (head, challenge, pong) = tokio::task::spawn_blocking(move || {
        let mut connector = SslConnector::builder(SslMethod::tls()).unwrap();
        connector.cert_store_mut().add_cert(trusted).unwrap();
        let tcp = std::net::TcpStream::connect(addr).unwrap();
        let mut tls = connector.build().connect("localhost", tcp).unwrap();
        tls.write_all(
            b"GET /ws HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
              Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        )
        .unwrap();
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        let head_end = loop {
            let n = tls.read(&mut chunk).unwrap();
            assert!(n > 0, "closed during the upgrade");
            buf.extend_from_slice(&chunk[..n]);
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
        let mut rest = buf[head_end..].to_vec();
        // Server frames are unmasked; the ones here are below 64 KiB.
        fn read_frame(tls: &mut impl Read, rest: &mut Vec<u8>) -> (u8, Vec<u8>) {
            loop {
                if rest.len() >= 4 {
                    let (len, start) = match rest[1] & 0x7f {
                        126 => (u16::from_be_bytes([rest[2], rest[3]]) as usize, 4),
                        n => (n as usize, 2),
                    };
                    if rest.len() >= start + len {
                        let frame: Vec<u8> = rest.drain(..start + len).collect();
                        return (frame[0], frame[start..].to_vec());
                    }
                }
                let mut chunk = [0u8; 4096];
                let n = tls.read(&mut chunk).unwrap();
                assert!(n > 0, "closed before a frame");
                rest.extend_from_slice(&chunk[..n]);
            }
        }
        let challenge = read_frame(&mut tls, &mut rest);
        // A masked ping (mask 0: payload unchanged).
        tls.write_all(&[0x89, 0x82, 0, 0, 0, 0, b'h', b'i']).unwrap();
        let pong = read_frame(&mut tls, &mut rest);
        (head, challenge, pong)
    })
    .await
    .unwrap();
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(
        head.contains("sec-websocket-accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo="),
        "{head}"
    );
    assert_eq!(challenge.0, 0x82, "a binary frame");
    let challenge = parsec_protocol::value::unpack_map(&challenge.1).unwrap();
    assert_eq!(field(&challenge, "handshake").as_str(), Some("challenge"));
    assert_eq!(pong, (0x8a, b"hi".to_vec()));

    // A client that does not trust the CA is refused.
    let refused = tokio::task::spawn_blocking(move || {
        let connector = SslConnector::builder(SslMethod::tls()).unwrap().build();
        let tcp = std::net::TcpStream::connect(addr).unwrap();
        connector.connect("localhost", tcp).is_err()
    })
    .await
    .unwrap();
    assert!(refused);
    let _ = std::fs::remove_dir_all(dir);
}

/// A block store that cannot be reached.
struct UnreachableBlockStore;

#[async_trait::async_trait]
impl parsec_actors::blockstore::BlockStore for UnreachableBlockStore {
    async fn read(
        &self,
        _: &parsec_protocol::types::OrganizationId,
        _: parsec_protocol::types::Uuid,
    ) -> Result<bytes::Bytes, BlockStoreError> {
        Err(BlockStoreError::Unavailable(anyhow::anyhow!("connection refused")))
    }
    async fn create(
        &self,
        _: &parsec_protocol::types::OrganizationId,
        _: parsec_protocol::types::Uuid,
        _: bytes::Bytes,
    ) -> Result<(), BlockStoreError> {
        Err(BlockStoreError::Unavailable(anyhow::anyhow!("connection refused")))
    }
    async fn health(&self) -> Result<(), BlockStoreError> {
        Err(BlockStoreError::Unavailable(anyhow::anyhow!("connection refused")))
    }
}

fn plain_settings() -> Settings {
    Settings {
        administration_token: TOKEN.into(),
        spontaneous_organization_bootstrap: false,
        organization_initial_active_users_limit: None,
        organization_initial_user_profile_outsider_allowed: true,
        email: Default::default(),
        backend_addr: Default::default(),
    }
}

#[actix_web::test]
async fn not_ready_while_the_blockstore_is_unreachable() {
    let mut backends = Backends::memory();
    backends.blockstore = std::sync::Arc::new(UnreachableBlockStore);
    let server = start_server_with(Actors::start(backends, plain_settings())).await;
    assert_eq!(http_request(&server, "GET", "/health", &[], b"").await.0, 200);
    assert_eq!(
        http_request(&server, "GET", "/ready", &[], b"").await,
        (503, b"not ready".to_vec())
    );
}

#[actix_web::test]
async fn not_ready_while_the_database_is_unreachable() {
    use parsec_actors::backend::postgres::PgStore;
    // Nothing listens there: every pool checkout fails (within 2 s).
    let url = format!(
        "postgresql://parsec@127.0.0.1:{}/parsec",
        crate::receiver::closed_port()
    );
    let store = PgStore::connect(&url, 2, std::time::Duration::from_secs(2)).expect("lazy pool");
    let blockstore = std::sync::Arc::new(parsec_actors::backend::postgres::blockstore::PgBlockStore::new(
        store.clone(),
    ));
    let server = start_server_with(Actors::start(Backends::postgres(store, blockstore), plain_settings())).await;
    assert_eq!(http_request(&server, "GET", "/health", &[], b"").await.0, 200);
    let started = std::time::Instant::now();
    assert_eq!(
        http_request(&server, "GET", "/ready", &[], b"").await,
        (503, b"not ready".to_vec())
    );
    assert!(started.elapsed() <= parsec_actors::health::PROBE_TIMEOUT + std::time::Duration::from_secs(1));
}
