//! Authentication and authorization of client requests.
//!
//! * [`layer::AuthLayer`]: a tower layer on the client port that turns a request's HTTP Basic
//!   credentials into a [`Caller`] (or answers `UNAUTHENTICATED`), before any handler runs.
//! * [`Access`]: what handlers ask — "may this caller do that?" — against the *current*
//!   replicated users and rights, so a grant or revoke made through any node holds everywhere
//!   at once. Denials and admin actions go to the audit log (target `txmq::audit`).
//! * [`passwords`]: argon2id hashes and a cache of logins; [`login_limiter`]: failed logins
//!   limited per source address; [`bootstrap`]: the first administrator from a file.
//!
//! With authentication off every caller is [`Caller::Anonymous`] and allowed everything.

pub mod bootstrap;
pub mod layer;
pub mod login_limiter;
pub mod passwords;
pub mod users;

use std::sync::Arc;

use tonic::{Request, Status};
use txmq_raft_store::StateReader;
use txmq_state::Need;

/// Who sent a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// Authentication is off on this node.
    Anonymous,
    /// An authenticated user (its rights are looked up at each check).
    User(String),
}

impl Caller {
    pub fn name(&self) -> &str {
        match self {
            Caller::Anonymous => "anonymous",
            Caller::User(name) => name,
        }
    }
}

/// Authorization checks for the handlers.
#[derive(Clone)]
pub struct Access {
    reader: StateReader,
    /// Present when authentication is on.
    authenticator: Option<Arc<layer::Authenticator>>,
}

impl Access {
    pub fn new(reader: StateReader, authentication: bool) -> Access {
        let authenticator =
            authentication.then(|| Arc::new(layer::Authenticator::new(reader.clone())));
        Access {
            reader,
            authenticator,
        }
    }

    /// The layer that authenticates requests on the client port.
    pub fn layer(&self) -> layer::AuthLayer {
        layer::AuthLayer::new(self.authenticator.clone())
    }

    pub fn authentication(&self) -> bool {
        self.authenticator.is_some()
    }

    /// The request's caller, as the layer found it.
    pub fn caller<T>(&self, request: &Request<T>) -> Result<Caller, Status> {
        if self.authenticator.is_none() {
            return Ok(Caller::Anonymous);
        }
        request
            .extensions()
            .get::<Caller>()
            .cloned()
            .ok_or_else(|| Status::unauthenticated("this request carries no credentials"))
    }

    /// Whether `caller` may do what `need` says (users' rights as applied on this node now).
    pub fn allows(&self, caller: &Caller, need: &Need<'_>) -> bool {
        self.first_denied(caller, std::slice::from_ref(need))
            .is_none()
    }

    /// The first of `needs` that `caller` may not do.
    fn first_denied<'a, 'n>(&self, caller: &Caller, needs: &'a [Need<'n>]) -> Option<&'a Need<'n>> {
        match caller {
            Caller::Anonymous if self.authenticator.is_none() => None,
            Caller::Anonymous => needs.first(),
            Caller::User(name) => self.reader.first_denied(name, needs),
        }
    }

    /// `Ok` when `caller` may do every one of `needs`; otherwise `PERMISSION_DENIED` naming the
    /// first missing right, and an audit line.
    pub fn require(&self, caller: &Caller, action: &str, needs: &[Need<'_>]) -> Result<(), Status> {
        let Some(missing) = self.first_denied(caller, needs) else {
            return Ok(());
        };
        let user = caller.name();
        tracing::warn!(target: "txmq::audit", user, action, need = %missing, outcome = "denied", "request denied");
        metrics::counter!("txmq_auth_denied_total").increment(1);
        Err(Status::permission_denied(format!(
            "user '{user}' may not {action}: it needs {missing} ({})",
            how_to_grant(user, missing)
        )))
    }

    /// Logs an administrative action and its outcome (target `txmq::audit`).
    pub fn audit<T>(
        &self,
        caller: &Caller,
        action: &str,
        resource: &str,
        outcome: &Result<T, Status>,
    ) {
        let user = caller.name();
        match outcome {
            Ok(_) => {
                tracing::info!(target: "txmq::audit", user, action, resource, outcome = "ok", "admin action")
            }
            Err(status) => {
                tracing::info!(target: "txmq::audit", user, action, resource, outcome = txmq_proto::codes::code_name(status.code()), "admin action failed")
            }
        }
    }
}

/// The command that would grant a missing right.
fn how_to_grant(user: &str, need: &Need<'_>) -> String {
    let grant = match need {
        Need::Admin => "--admin".to_string(),
        Need::Produce { topic } => format!("--produce {topic}"),
        Need::AnyProduce => "--produce TOPIC".to_string(),
        Need::Consume { topic, group } => format!("--consume {topic} --group {group}"),
        Need::Read { topic } => format!("--consume {topic} --group GROUP"),
    };
    format!("an administrator can grant it with `txmq acl grant {user} {grant}`")
}
