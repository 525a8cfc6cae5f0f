//! TLS for the client and peer ports: certificates read from PEM files and reloaded when the
//! files change (Kubernetes rotates a Secret by replacing its files), so a rotation needs no
//! restart and drops no connection.
//!
//! The server side is rustls through our own acceptor ([`crate::listener`]) rather than
//! tonic's built-in TLS, because tonic fixes its certificate when the server starts. The
//! client side (a node dialing its peers) is tonic's `ClientTlsConfig`, rebuilt on change: a
//! channel opened after a rotation presents the new certificate.

mod pem;
mod reloading;
mod server_config;

pub use pem::TlsError;
pub use reloading::Reloading;
pub use server_config::{ServerTlsFiles, server_config};

/// How often the certificate files are checked for changes.
pub const RELOAD_CHECK_EVERY: std::time::Duration = std::time::Duration::from_secs(2);

/// The PEM files of a client-side TLS identity: whom to trust, and optionally who we are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientTlsFiles {
    pub ca: std::path::PathBuf,
    pub identity: Option<(std::path::PathBuf, std::path::PathBuf)>,
}

impl ClientTlsFiles {
    /// The files a change of which calls for a rebuild.
    pub fn paths(&self) -> Vec<std::path::PathBuf> {
        let mut paths = vec![self.ca.clone()];
        if let Some((cert, key)) = &self.identity {
            paths.push(cert.clone());
            paths.push(key.clone());
        }
        paths
    }

    /// tonic's client configuration for these files.
    pub fn client_config(&self) -> Result<tonic::transport::ClientTlsConfig, TlsError> {
        let ca = pem::read(&self.ca)?;
        pem::certificates(&self.ca)?;
        let mut config = tonic::transport::ClientTlsConfig::new()
            .ca_certificate(tonic::transport::Certificate::from_pem(ca));
        if let Some((cert, key)) = &self.identity {
            pem::certificates(cert)?;
            pem::private_key(key)?;
            config = config.identity(tonic::transport::Identity::from_pem(
                pem::read(cert)?,
                pem::read(key)?,
            ));
        }
        Ok(config)
    }
}
