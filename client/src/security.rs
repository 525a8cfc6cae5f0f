//! How a client proves who it is and checks whom it talks to: TLS settings and credentials.

use base64::Engine;
use tonic::metadata::AsciiMetadataValue;
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};
use tonic::{Request, Status};

use crate::error::ClientError;

/// The channel every client call goes through: credentials added to each request.
pub(crate) type Transport = InterceptedService<Channel, Authorization>;

/// TLS towards the cluster: the CA that signed the servers' certificates, the name to expect
/// in them when the address is not, and a client certificate for servers that require one.
#[derive(Clone, Default)]
pub struct ClientTls {
    pub ca_pem: Vec<u8>,
    pub server_name: Option<String>,
    /// Certificate and key (PEM) for servers started with `--tls-client-ca`.
    pub identity: Option<(Vec<u8>, Vec<u8>)>,
}

impl std::fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientTls")
            .field("server_name", &self.server_name)
            .field("client_certificate", &self.identity.is_some())
            .finish()
    }
}

impl ClientTls {
    pub(crate) fn config(&self) -> ClientTlsConfig {
        let mut config = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(&self.ca_pem));
        if let Some(name) = &self.server_name {
            config = config.domain_name(name.clone());
        }
        if let Some((cert, key)) = &self.identity {
            config = config.identity(Identity::from_pem(cert, key));
        }
        config
    }
}

/// A user name and password, sent with every request (HTTP Basic, in gRPC metadata).
#[derive(Clone)]
pub struct Credentials {
    pub user: String,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

/// Adds the `authorization` header to each request, when credentials were given.
#[derive(Clone, Default)]
pub(crate) struct Authorization(Option<AsciiMetadataValue>);

impl Authorization {
    pub(crate) fn new(credentials: Option<&Credentials>) -> Result<Self, ClientError> {
        let Some(c) = credentials else {
            return Ok(Self(None));
        };
        if c.user.contains(':') {
            return Err(ClientError::new(
                "invalid_argument",
                "a user name cannot contain ':'",
            ));
        }
        let token =
            base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", c.user, c.password));
        let value = format!("Basic {token}")
            .parse()
            .map_err(|_| ClientError::new("invalid_argument", "credentials are not usable"))?;
        Ok(Self(Some(value)))
    }
}

impl Interceptor for Authorization {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        if let Some(value) = &self.0 {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        Ok(request)
    }
}

/// Whether `endpoint` (`host:port`, maybe with a scheme) names this machine.
pub(crate) fn is_loopback(endpoint: &str) -> bool {
    let without_scheme = endpoint.split("://").last().unwrap_or(endpoint);
    let host = without_scheme
        .rsplit_once(':')
        .map_or(without_scheme, |(host, _)| host)
        .trim_matches(|c| c == '[' || c == ']');
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_addresses_are_recognised() {
        for local in [
            "127.0.0.1:9870",
            "localhost:1",
            "[::1]:9870",
            "http://127.0.0.2:5",
        ] {
            assert!(is_loopback(local), "{local}");
        }
        for remote in [
            "10.0.0.1:9870",
            "txmq-0.txmq:9870",
            "https://example.com:443",
        ] {
            assert!(!is_loopback(remote), "{remote}");
        }
    }

    #[test]
    fn the_password_never_shows_in_debug_output() {
        let c = Credentials {
            user: "alice".into(),
            password: "s3cret-pw".into(),
        };
        assert!(!format!("{c:?}").contains("s3cret"));
        let mut auth = Authorization::new(Some(&c)).expect("valid");
        let request = auth.call(Request::new(())).expect("adds");
        let header = request.metadata().get("authorization").expect("set");
        assert_eq!(header.to_str().ok(), Some("Basic YWxpY2U6czNjcmV0LXB3"));
    }
}
