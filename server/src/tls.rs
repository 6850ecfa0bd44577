//! TLS through openssl (`--ssl-certfile` / `--ssl-keyfile`).

use std::path::Path;

use openssl::ssl::{SslAcceptor, SslAcceptorBuilder, SslFiletype, SslMethod};

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
