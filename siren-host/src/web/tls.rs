//! HTTPS and `wss:` on the web listener (`[web] tls_cert`, `tls_key`): rustls with its default,
//! safe protocol versions and cipher suites (ring provider, no C build). Browsers need a secure
//! context for a page that holds keys anywhere but on loopback; a reverse proxy in front is the
//! other way (docs/web.md).

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context as _, bail};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject as _;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// Loads the certificate chain and key; the error names the file and what is wrong.
pub fn acceptor(cert: &Path, key: &Path) -> anyhow::Result<TlsAcceptor> {
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(Iterator::collect::<Result<Vec<_>, _>>)
        .with_context(|| format!("web.tls_cert: cannot read {}", cert.display()))?;
    if chain.is_empty() {
        bail!("web.tls_cert: {} holds no PEM certificate", cert.display());
    }
    let key = PrivateKeyDer::from_pem_file(key).with_context(|| {
        format!(
            "web.tls_key: cannot read a PEM private key from {}",
            key.display()
        )
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("web TLS: no protocol version")?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .context("web.tls_key: does not match web.tls_cert, or is not a usable key")?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}
