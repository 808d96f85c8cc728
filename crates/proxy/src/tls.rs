//! TLS for client connections (rustls, with the `ring` provider): the server configuration built from the
//! PEM files of `tls:`, rebuilt at every config load, so a renewed certificate takes effect on reload for
//! new connections.

use std::sync::Arc;

use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// The server configuration for a certificate chain, its key, and optionally the CAs client certificates
/// must be signed by. An error names the config field and says why.
pub fn server_config(
    cert: &[u8],
    key: &[u8],
    client_ca: Option<&[u8]>,
) -> Result<Arc<ServerConfig>, (&'static str, String)> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert)
        .collect::<Result<_, _>>()
        .map_err(|e| ("tls.cert", format!("not a PEM certificate chain: {e}")))?;
    if chain.is_empty() {
        return Err(("tls.cert", "no certificate in the file".into()));
    }
    let key = PrivateKeyDer::from_pem_slice(key).map_err(|e| ("tls.key", format!("not a PEM private key: {e}")))?;
    let builder = ServerConfig::builder();
    let builder = match client_ca {
        None => builder.with_no_client_auth(),
        Some(pem) => {
            let mut roots = RootCertStore::empty();
            for ca in CertificateDer::pem_slice_iter(pem) {
                let ca = ca.map_err(|e| ("tls.client_ca", format!("not a PEM certificate: {e}")))?;
                roots.add(ca).map_err(|e| ("tls.client_ca", format!("unusable CA certificate: {e}")))?;
            }
            let verifier = WebPkiClientVerifier::builder(Arc::new(roots))
                .build()
                .map_err(|e| ("tls.client_ca", format!("cannot verify clients with it: {e}")))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let config =
        builder.with_single_cert(chain, key).map_err(|e| ("tls.key", format!("does not fit the certificate: {e}")))?;
    Ok(Arc::new(config))
}

/// The client configuration for TLS to a backend: the server's certificate must chain to one of the CAs in
/// `ca` (PEM) and name the host it is reached by; `client` is an optional certificate chain and key the
/// proxy presents (for accounts created `REQUIRE X509` or `SUBJECT`). An error names the field (relative to
/// the backend's `tls:`) and says why.
pub fn client_config(
    ca: &[u8],
    client: Option<(&[u8], &[u8])>,
) -> Result<Arc<rustls::ClientConfig>, (&'static str, String)> {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca) {
        let cert = cert.map_err(|e| ("ca", format!("not a PEM certificate: {e}")))?;
        roots.add(cert).map_err(|e| ("ca", format!("unusable CA certificate: {e}")))?;
    }
    if roots.is_empty() {
        return Err(("ca", "no certificate in the file".into()));
    }
    let builder = rustls::ClientConfig::builder().with_root_certificates(roots);
    let config = match client {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => {
            let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert)
                .collect::<Result<_, _>>()
                .map_err(|e| ("cert", format!("not a PEM certificate chain: {e}")))?;
            if chain.is_empty() {
                return Err(("cert", "no certificate in the file".into()));
            }
            let key = PrivateKeyDer::from_pem_slice(key).map_err(|e| ("key", format!("not a PEM private key: {e}")))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| ("key", format!("does not fit the certificate: {e}")))?
        }
    };
    Ok(Arc::new(config))
}
