//! Peer authentication by a shared secret, for clusters without peer TLS: every peer request
//! carries the secret in a metadata header and the peer port refuses requests without it.
//! Without TLS the secret crosses the network in the clear, so it only keeps out whoever
//! cannot watch the traffic; docs/security.md says so.

use std::path::Path;
use std::sync::Arc;

use tonic::metadata::{AsciiMetadataValue, MetadataValue};
use tonic::service::Interceptor;
use tonic::{Request, Status};

/// The metadata header that carries the secret.
const HEADER: &str = "x-txmq-cluster-secret";
/// Shortest secret accepted: guessing must be hopeless.
const MIN_SECRET_CHARS: usize = 16;

/// The cluster's shared secret (never logged: `Debug` hides it).
#[derive(Clone)]
pub struct ClusterSecret(Arc<AsciiMetadataValue>);

impl std::fmt::Debug for ClusterSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClusterSecret(…)")
    }
}

impl ClusterSecret {
    /// Reads the secret from its file (surrounding whitespace ignored).
    pub fn from_file(path: &Path) -> Result<ClusterSecret, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read the cluster secret {}: {e}", path.display()))?;
        let secret = text.trim();
        if secret.len() < MIN_SECRET_CHARS || !secret.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(format!(
                "the cluster secret in {} must be at least {MIN_SECRET_CHARS} printable ASCII \
                 characters without spaces (e.g. `openssl rand -hex 32`)",
                path.display()
            ));
        }
        let value = MetadataValue::try_from(secret)
            .map_err(|_| format!("the cluster secret in {} is not usable", path.display()))?;
        Ok(ClusterSecret(Arc::new(value)))
    }

    /// Whether `presented` is the secret, in time independent of where they differ.
    fn matches(&self, presented: &[u8]) -> bool {
        let secret = self.0.as_bytes();
        presented.len() == secret.len()
            && presented
                .iter()
                .zip(secret)
                .fold(0u8, |differ, (a, b)| differ | (a ^ b))
                == 0
    }
}

/// Adds the secret (if any) to each outgoing peer request.
#[derive(Clone, Debug, Default)]
pub struct PresentSecret(pub Option<ClusterSecret>);

impl Interceptor for PresentSecret {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        if let Some(secret) = &self.0 {
            request
                .metadata_mut()
                .insert(HEADER, secret.0.as_ref().clone());
        }
        Ok(request)
    }
}

/// Refuses incoming peer requests that do not carry the secret (when one is configured).
#[derive(Clone, Debug, Default)]
pub struct RequireSecret(pub Option<ClusterSecret>);

impl Interceptor for RequireSecret {
    fn call(&mut self, request: Request<()>) -> Result<Request<()>, Status> {
        let Some(secret) = &self.0 else {
            return Ok(request);
        };
        let presented = request.metadata().get(HEADER).map(|v| v.as_bytes());
        if presented.is_some_and(|p| secret.matches(p)) {
            return Ok(request);
        }
        metrics::counter!("txmq_peer_auth_failures_total").increment(1);
        tracing::debug!("refused a peer request without the cluster secret");
        Err(Status::unauthenticated(
            "this peer port requires the cluster secret (--cluster-secret-file)",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(text: &str) -> ClusterSecret {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("secret");
        std::fs::write(&path, text).expect("write");
        ClusterSecret::from_file(&path).expect("a valid secret")
    }

    #[test]
    fn a_request_passes_only_with_the_same_secret() {
        let mine = secret("0123456789abcdef0123\n");
        let mut check = RequireSecret(Some(mine.clone()));
        let mut present = PresentSecret(Some(mine));
        let signed = present.call(Request::new(())).expect("adds");
        assert!(check.call(signed).is_ok());
        assert!(check.call(Request::new(())).is_err());
        let mut other = PresentSecret(Some(secret("0123456789abcdef0124")));
        let wrong = other.call(Request::new(())).expect("adds");
        let refused = check.call(wrong).expect_err("a different secret");
        assert_eq!(refused.code(), tonic::Code::Unauthenticated);
    }

    #[test]
    fn short_or_spaced_secrets_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("secret");
        for bad in ["short", "has a space in the middle of it"] {
            std::fs::write(&path, bad).expect("write");
            assert!(ClusterSecret::from_file(&path).is_err(), "{bad}");
        }
        assert!(format!("{:?}", secret("0123456789abcdef0123")).contains('…'));
    }
}
