//! How client commands reach the cluster: TLS and credentials (flags or environment).

use std::path::PathBuf;

use clap::Args;
use txmq_client::{ClientError, ClientOptions, ClientTls, Credentials};

const HEADING: &str = "Client options";

/// TLS and credential options of the client commands.
#[derive(Debug, Clone, Default, Args)]
pub struct ConnectionArgs {
    /// Use TLS, trusting servers whose certificate this CA (PEM) signed.
    #[arg(long, global = true, env = "TXMQ_TLS_CA", help_heading = HEADING)]
    pub tls_ca: Option<PathBuf>,
    /// The name to expect in the server's certificate, when the address is not in it.
    #[arg(long, global = true, env = "TXMQ_TLS_SERVER_NAME", help_heading = HEADING)]
    pub tls_server_name: Option<String>,
    /// Client certificate (PEM) for servers that require one (`serve --tls-client-ca`).
    #[arg(long = "tls-client-cert", global = true, env = "TXMQ_TLS_CLIENT_CERT", help_heading = HEADING)]
    pub tls_client_cert: Option<PathBuf>,
    /// The private key (PEM) of `--tls-client-cert`.
    #[arg(long = "tls-client-key", global = true, env = "TXMQ_TLS_CLIENT_KEY", help_heading = HEADING)]
    pub tls_client_key: Option<PathBuf>,
    /// User name, sent with every request (for clusters with authentication, see
    /// docs/security.md).
    #[arg(long, global = true, env = "TXMQ_USER", help_heading = HEADING)]
    pub user: Option<String>,
    /// Password of `--user` (prefer the TXMQ_PASSWORD environment variable: arguments are
    /// visible to other users of the machine).
    #[arg(long, global = true, env = "TXMQ_PASSWORD", hide_env_values = true, help_heading = HEADING)]
    pub password: Option<String>,
}

impl ConnectionArgs {
    /// The client options these flags ask for.
    /// The client options these flags ask for, warning on stderr when they would send
    /// credentials in the clear to another machine.
    pub fn options(&self, endpoints: &[String]) -> Result<ClientOptions, ClientError> {
        let mut options = ClientOptions {
            tls: self.tls()?,
            ..ClientOptions::default()
        };
        options.credentials = match (&self.user, &self.password) {
            (Some(user), Some(password)) => Some(Credentials {
                user: user.clone(),
                password: password.clone(),
            }),
            (None, None) => None,
            (Some(_), None) => return Err(invalid("--user needs --password (or TXMQ_PASSWORD)")),
            (None, Some(_)) => return Err(invalid("--password needs --user (or TXMQ_USER)")),
        };
        if let Some(remote) = txmq_client::credentials_in_clear(endpoints, &options) {
            eprintln!(
                "warning: sending credentials without TLS to {remote}; anyone on the path can \
                 read them (give the cluster's CA with --tls-ca or TXMQ_TLS_CA)"
            );
        }
        Ok(options)
    }

    fn tls(&self) -> Result<Option<ClientTls>, ClientError> {
        let Some(ca) = &self.tls_ca else {
            if self.tls_client_cert.is_some() || self.tls_server_name.is_some() {
                return Err(invalid(
                    "--tls-server-name and --tls-client-cert need --tls-ca (the CA that signed the servers' certificates)",
                ));
            }
            return Ok(None);
        };
        let identity = match (&self.tls_client_cert, &self.tls_client_key) {
            (Some(cert), Some(key)) => Some((read(cert)?, read(key)?)),
            (None, None) => None,
            _ => {
                return Err(invalid(
                    "give --tls-client-cert and --tls-client-key together",
                ));
            }
        };
        Ok(Some(ClientTls {
            ca_pem: read(ca)?,
            server_name: self.tls_server_name.clone(),
            identity,
        }))
    }
}

fn read(path: &PathBuf) -> Result<Vec<u8>, ClientError> {
    std::fs::read(path).map_err(|e| invalid(&format!("cannot read {}: {e}", path.display())))
}

fn invalid(message: &str) -> ClientError {
    ClientError::new("invalid_argument", message)
}
