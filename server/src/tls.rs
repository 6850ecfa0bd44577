//! TLS through openssl (`--ssl-certfile` / `--ssl-keyfile`).

use std::path::Path;

use openssl::ssl::{AlpnError, SslAcceptor, SslAcceptorBuilder, SslFiletype, SslMethod};

/// An acceptor serving the certificate chain in `certfile` with the private
/// key in `keyfile` (PEM). Mozilla's "intermediate" profile: TLS 1.2 and 1.3.
pub fn acceptor(certfile: &Path, keyfile: &Path) -> anyhow::Result<SslAcceptorBuilder> {
    let mut builder = SslAcceptor::mozilla_intermediate_v5(SslMethod::tls())?;
    builder
        .set_certificate_chain_file(certfile)
        .map_err(|e| anyhow::anyhow!("cannot load certificate {}: {e}", certfile.display()))?;
    builder
        .set_private_key_file(keyfile, SslFiletype::PEM)
        .map_err(|e| anyhow::anyhow!("cannot load private key {}: {e}", keyfile.display()))?;
    builder
        .check_private_key()
        .map_err(|e| anyhow::anyhow!("the private key does not match the certificate: {e}"))?;
    Ok(builder)
}

/// The acceptor the server uses, from [`acceptor`]'s builder (or a test's),
/// answering ALPN as actix-web configured it: `http/1.1` when the client
/// offers it (we speak nothing else), no ALPN answer otherwise.
pub fn finish(mut builder: SslAcceptorBuilder) -> SslAcceptor {
    builder.set_alpn_select_callback(|_, offered| {
        const HTTP_1_1: &[u8] = b"\x08http/1.1";
        if offered.windows(HTTP_1_1.len()).any(|w| w == HTTP_1_1) {
            Ok(b"http/1.1")
        } else {
            Err(AlpnError::NOACK)
        }
    });
    builder.build()
}
