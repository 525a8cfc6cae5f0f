//! The rustls server configuration of a port.

use std::path::PathBuf;
use std::sync::Arc;

use rustls::server::WebPkiClientVerifier;

use super::TlsError;
use super::pem;

/// A port's certificate and key, and the CA its clients' certificates must be signed by when
/// client certificates are required (mutual TLS).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerTlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub client_ca: Option<PathBuf>,
}

impl ServerTlsFiles {
    /// The files a change of which calls for a rebuild.
    pub fn paths(&self) -> Vec<PathBuf> {
        let mut paths = vec![self.cert.clone(), self.key.clone()];
        paths.extend(self.client_ca.clone());
        paths
    }
}

/// The server configuration for `files`, speaking HTTP/2 only (gRPC).
pub fn server_config(files: &ServerTlsFiles) -> Result<rustls::ServerConfig, TlsError> {
    // ring rather than aws-lc-rs: tonic's client TLS uses ring already, and aws-lc-rs would add
    // a second C library to every build. rustls marks ring's provider deprecated only because
    // it lacks post-quantum key exchange.
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Invalid(e.to_string()))?;
    let builder = match &files.client_ca {
        Some(ca) => {
            let verifier =
                WebPkiClientVerifier::builder_with_provider(Arc::new(pem::roots(ca)?), provider)
                    .build()
                    .map_err(|e| TlsError::Invalid(format!("{}: {e}", ca.display())))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let chain = pem::certificates(&files.cert)?;
    let key = pem::private_key(&files.key)?;
    let mut config = builder.with_single_cert(chain, key).map_err(|e| {
        TlsError::Invalid(format!(
            "{} and {} do not make a usable certificate and key: {e}",
            files.cert.display(),
            files.key.display()
        ))
    })?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(config)
}
