//! The client port's authentication: HTTP Basic credentials in each request's metadata,
//! checked against the replicated users before any handler runs.

use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use base64::Engine as _;
use tonic::Status;
use tonic::transport::server::TcpConnectInfo;
use txmq_raft_store::StateReader;

use super::Caller;
use super::login_limiter::LoginLimiter;
use super::passwords::Passwords;

/// Paths served without credentials: load balancers and Kubernetes probe health.
const OPEN_PATH_PREFIX: &str = "/grpc.health.v1.Health/";

/// Checks credentials against the users applied on this node.
pub struct Authenticator {
    reader: StateReader,
    passwords: Passwords,
    limiter: LoginLimiter,
}

impl Authenticator {
    pub fn new(reader: StateReader) -> Authenticator {
        Authenticator {
            reader,
            passwords: Passwords::default(),
            limiter: LoginLimiter::default(),
        }
    }

    /// The user a request's `authorization` value names, if its password is right.
    pub async fn authenticate(
        &self,
        authorization: Option<&[u8]>,
        source: Option<IpAddr>,
    ) -> Result<String, Status> {
        let now = Instant::now();
        if let Some(ip) = source
            && let Err(wait) = self.limiter.check(ip, now)
        {
            failure("rate_limited");
            return Err(Status::unauthenticated(format!(
                "too many failed logins from {ip}; retry in {} s",
                wait.as_secs() + 1
            )));
        }
        let Some((name, password)) = authorization.and_then(basic_credentials) else {
            failure("missing");
            return Err(Status::unauthenticated(
                "this node requires a user name and password: give --user and --password \
                 (or TXMQ_USER and TXMQ_PASSWORD)",
            ));
        };
        let verified = match self.reader.user(&name) {
            Some(user) => self.passwords.verify(&user, &password).await,
            None => false,
        };
        if verified {
            return Ok(name);
        }
        if let Some(ip) = source {
            self.limiter.failed(ip, now);
        }
        failure("wrong_credentials");
        let from = source.map(|ip| ip.to_string()).unwrap_or_default();
        tracing::warn!(target: "txmq::audit", user = %name, action = "login", source = %from, outcome = "denied", "wrong user name or password");
        Err(Status::unauthenticated("wrong user name or password"))
    }
}

fn failure(reason: &'static str) {
    metrics::counter!("txmq_auth_failures_total", "reason" => reason).increment(1);
}

/// `Basic base64(name:password)` → (name, password).
fn basic_credentials(value: &[u8]) -> Option<(String, String)> {
    let encoded = value.strip_prefix(b"Basic ")?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (name, password) = text.split_once(':')?;
    Some((name.to_string(), password.to_string()))
}

/// Authenticates every request but health checks; a no-op when authentication is off.
#[derive(Clone)]
pub struct AuthLayer {
    authenticator: Option<Arc<Authenticator>>,
}

impl AuthLayer {
    pub fn new(authenticator: Option<Arc<Authenticator>>) -> AuthLayer {
        AuthLayer { authenticator }
    }
}

impl<S> tower::Layer<S> for AuthLayer {
    type Service = Authenticated<S>;
    fn layer(&self, inner: S) -> Authenticated<S> {
        Authenticated {
            inner,
            authenticator: self.authenticator.clone(),
        }
    }
}

#[derive(Clone)]
pub struct Authenticated<S> {
    inner: S,
    authenticator: Option<Arc<Authenticator>>,
}

impl<S, B, RB> tower::Service<http::Request<B>> for Authenticated<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<RB>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
    RB: Default,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        let Some(authenticator) = self.authenticator.clone() else {
            return Box::pin(self.inner.call(request));
        };
        if request.uri().path().starts_with(OPEN_PATH_PREFIX) {
            return Box::pin(self.inner.call(request));
        }
        // The ready service goes into the future; a fresh clone waits for the next call.
        let fresh = self.inner.clone();
        let mut ready = std::mem::replace(&mut self.inner, fresh);
        Box::pin(async move {
            let authorization = request
                .headers()
                .get(http::header::AUTHORIZATION)
                .map(|v| v.as_bytes().to_vec());
            let source = request
                .extensions()
                .get::<TcpConnectInfo>()
                .and_then(|info| info.remote_addr())
                .map(|addr| addr.ip());
            match authenticator
                .authenticate(authorization.as_deref(), source)
                .await
            {
                Ok(name) => {
                    request.extensions_mut().insert(Caller::User(name));
                    ready.call(request).await
                }
                Err(status) => Ok(status.into_http()),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_credentials_are_decoded_and_garbage_is_not() {
        let value = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode("alice:pa:ss")
        );
        assert_eq!(
            basic_credentials(value.as_bytes()),
            Some(("alice".into(), "pa:ss".into()))
        );
        assert_eq!(basic_credentials(b"Basic !!!"), None);
        assert_eq!(basic_credentials(b"Bearer abc"), None);
        let no_colon = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode("alice")
        );
        assert_eq!(basic_credentials(no_colon.as_bytes()), None);
    }
}
