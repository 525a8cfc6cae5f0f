//! A node's transport security, built from its settings before anything listens: the TLS
//! configuration of each port (reloaded when the files change), how it dials peers, and the
//! cluster secret its peer port requires.

use crate::cluster_secret::{ClusterSecret, RequireSecret};
use crate::config::Security;
use crate::listener::PortTls;
use crate::peer_dialer::PeerDialer;
use crate::tls::{ClientTlsFiles, RELOAD_CHECK_EVERY, Reloading, ServerTlsFiles, server_config};

use super::NodeError;

/// The TLS and peer-authentication parts of a node.
pub(super) struct Transports {
    pub client_tls: PortTls,
    /// The RocketMQ port's: the client port's certificate.
    pub rocketmq_tls: PortTls,
    pub peer_tls: PortTls,
    pub dialer: PeerDialer,
    pub require_secret: RequireSecret,
}

impl Transports {
    /// Reads every certificate, key and secret now, so a bad file stops the start with its
    /// name, and starts watching the files for rotation.
    pub fn build(security: &Security, peer_addr: &str) -> Result<Transports, NodeError> {
        let client_tls = security
            .client_tls
            .as_ref()
            .map(|files| watched_server("client port", files))
            .transpose()?;
        let peer_tls = security
            .peer_tls
            .as_ref()
            .map(|files| watched_server("peer port", files))
            .transpose()?;
        let dialer_tls = security
            .peer_tls
            .as_ref()
            .map(watched_peer_client)
            .transpose()?;
        let secret = security
            .cluster_secret_file
            .as_deref()
            .map(ClusterSecret::from_file)
            .transpose()
            .map_err(NodeError::Security)?;
        if peer_tls.is_none() && secret.is_none() {
            tracing::warn!(
                peer_addr,
                "THE PEER PORT IS OPEN: anyone who can reach {peer_addr} can join this \
                 cluster's Raft and rewrite its data. Set --peer-tls-cert/--peer-tls-key/\
                 --peer-tls-ca (mutual TLS) or --cluster-secret-file, and keep the port off \
                 shared networks (docs/security.md)"
            );
        }
        Ok(Transports {
            rocketmq_tls: client_tls.clone(),
            client_tls,
            peer_tls,
            dialer: PeerDialer::new(dialer_tls, secret.clone()),
            require_secret: RequireSecret(secret),
        })
    }
}

fn watched_server(
    what: &'static str,
    files: &ServerTlsFiles,
) -> Result<std::sync::Arc<Reloading<rustls::ServerConfig>>, NodeError> {
    let owned = files.clone();
    let reloading = Reloading::new(what, files.paths(), move || server_config(&owned))
        .map_err(|e| NodeError::Security(format!("{what} TLS: {e}")))?;
    reloading.watch(RELOAD_CHECK_EVERY);
    Ok(reloading)
}

/// The client side of peer TLS: the node presents its peer certificate and trusts the peer CA.
fn watched_peer_client(
    files: &ServerTlsFiles,
) -> Result<std::sync::Arc<Reloading<tonic::transport::ClientTlsConfig>>, NodeError> {
    let client_files = ClientTlsFiles {
        ca: files.client_ca.clone().unwrap_or_default(),
        identity: Some((files.cert.clone(), files.key.clone())),
    };
    let reloading = Reloading::new("peer dialing", client_files.paths(), move || {
        client_files.client_config()
    })
    .map_err(|e| NodeError::Security(format!("peer TLS: {e}")))?;
    reloading.watch(RELOAD_CHECK_EVERY);
    Ok(reloading)
}
