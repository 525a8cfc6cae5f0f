//! How this node dials its peers: plaintext or mutual TLS (certificates reloaded when their
//! files change), with the cluster secret when one is configured.

use std::sync::Arc;
use std::time::Duration;

use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};
use txmq_proto::peer::peer_client::PeerClient;

use crate::cluster_secret::{ClusterSecret, PresentSecret};
use crate::peer_limits::MAX_PEER_MESSAGE;
use crate::tls::Reloading;

/// A gRPC client of one peer's peer API.
pub type PeerRpc = PeerClient<InterceptedService<Channel, PresentSecret>>;

/// Opens channels to peers.
#[derive(Clone, Default)]
pub struct PeerDialer {
    tls: Option<Arc<Reloading<ClientTlsConfig>>>,
    secret: PresentSecret,
}

impl PeerDialer {
    pub fn new(
        tls: Option<Arc<Reloading<ClientTlsConfig>>>,
        secret: Option<ClusterSecret>,
    ) -> Self {
        Self {
            tls,
            secret: PresentSecret(secret),
        }
    }

    /// Changes whenever the TLS files were reloaded: a cached client older than this should be
    /// replaced, so new connections present the new certificate.
    pub fn generation(&self) -> u64 {
        self.tls.as_ref().map_or(0, |t| t.generation())
    }

    /// A lazily connecting client of the peer at `addr` (`host:port`).
    pub fn client(&self, addr: &str) -> Result<PeerRpc, tonic::transport::Error> {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        let mut endpoint = Endpoint::from_shared(format!("{scheme}://{addr}"))?
            .connect_timeout(Duration::from_secs(2))
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(10));
        if let Some(tls) = &self.tls {
            endpoint = endpoint.tls_config(tls.current().as_ref().clone())?;
        }
        let channel = endpoint.connect_lazy();
        Ok(PeerClient::with_interceptor(channel, self.secret.clone())
            .max_decoding_message_size(MAX_PEER_MESSAGE)
            .max_encoding_message_size(MAX_PEER_MESSAGE))
    }
}
