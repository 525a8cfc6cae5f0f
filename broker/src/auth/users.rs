//! The user and right administration of the client API: validate, hash, propose, convert.
//! No answer carries a password or its hash.

use tonic::Status;
use txmq_proto::client as pb;
use txmq_raft_store::StateReader;
use txmq_state::{CommandResult, Operation, PutUserMode, Right, User, access};

use super::Caller;
use super::passwords;
use crate::convert;
use crate::proposer::Proposer;

/// How long an answer waits for this node to apply the change it reports.
const APPLY_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

pub struct Users<'a> {
    proposer: &'a Proposer,
    reader: &'a StateReader,
}

impl<'a> Users<'a> {
    pub fn new(proposer: &'a Proposer, reader: &'a StateReader) -> Users<'a> {
        Users { proposer, reader }
    }

    pub async fn create(&self, req: pb::CreateUserRequest) -> Result<pb::UserInfo, Status> {
        self.put(req.name, req.password, PutUserMode::Create).await
    }

    pub async fn change_password(
        &self,
        req: pb::ChangePasswordRequest,
    ) -> Result<pb::UserInfo, Status> {
        self.put(req.name, req.password, PutUserMode::ChangePassword)
            .await
    }

    async fn put(
        &self,
        name: String,
        password: String,
        mode: PutUserMode,
    ) -> Result<pb::UserInfo, Status> {
        access::validate_user_name(&name).map_err(Status::invalid_argument)?;
        passwords::check_password(&password).map_err(Status::invalid_argument)?;
        let password_hash =
            tokio::task::spawn_blocking(move || passwords::hash_password(&password))
                .await
                .map_err(|e| Status::internal(format!("hashing the password failed: {e}")))?
                .map_err(Status::invalid_argument)?;
        let op = Operation::PutUser {
            name: name.clone(),
            password_hash,
            mode,
        };
        self.changed(op, &name).await
    }

    pub async fn delete(&self, name: String) -> Result<pb::DeleteUserResponse, Status> {
        access::validate_user_name(&name).map_err(Status::invalid_argument)?;
        match self.proposer.write(Operation::DeleteUser { name }).await? {
            CommandResult::UserChanged { .. } => Ok(pb::DeleteUserResponse {}),
            other => Err(convert::unexpected(other)),
        }
    }

    /// Grants (or, with `give` false, revokes) a right.
    pub async fn grant(
        &self,
        user: String,
        right: Option<pb::AccessRight>,
        give: bool,
    ) -> Result<pb::UserInfo, Status> {
        access::validate_user_name(&user).map_err(Status::invalid_argument)?;
        let right = right_from_pb(right)?;
        let op = match give {
            true => Operation::Grant {
                user: user.clone(),
                right,
            },
            false => Operation::Revoke {
                user: user.clone(),
                right,
            },
        };
        self.changed(op, &user).await
    }

    /// A new random access secret for `name` (or none, with `remove`), answered once.
    pub async fn create_access_key(
        &self,
        req: pb::CreateAccessKeyRequest,
    ) -> Result<pb::AccessKeyResponse, Status> {
        access::validate_user_name(&req.name).map_err(Status::invalid_argument)?;
        let secret = (!req.remove).then(passwords::new_access_secret);
        let op = Operation::SetAccessSecret {
            name: req.name.clone(),
            secret: secret.clone(),
        };
        self.changed(op, &req.name).await?;
        Ok(pb::AccessKeyResponse {
            access_key: req.name,
            secret_key: secret.map(|s| s.0).unwrap_or_default(),
        })
    }

    pub fn list(&self) -> pb::ListUsersResponse {
        pb::ListUsersResponse {
            users: self.reader.users().iter().map(user_info).collect(),
        }
    }

    pub fn who_am_i(&self, caller: &Caller) -> pb::UserInfo {
        match caller {
            Caller::Anonymous => pb::UserInfo {
                name: "anonymous".into(),
                rights: vec![right_to_pb(&Right::Admin)],
                created_ms: 0,
                authentication: false,
            },
            Caller::User(name) => {
                let mut info = self
                    .reader
                    .user(name)
                    .map(|u| user_info(&u))
                    .unwrap_or_default();
                info.authentication = true;
                info
            }
        }
    }

    /// Proposes a user change and answers the user as it is once this node applied it.
    async fn changed(&self, op: Operation, name: &str) -> Result<pb::UserInfo, Status> {
        let (result, index) = self.proposer.write_indexed(op).await?;
        match result {
            CommandResult::UserChanged { .. } => {
                let mut applied = self.reader.watch_applied_index();
                let _ = tokio::time::timeout(APPLY_WAIT, applied.wait_for(|i| *i >= index)).await;
                Ok(self
                    .reader
                    .user(name)
                    .map(|u| user_info(&u))
                    .unwrap_or_else(|| pb::UserInfo {
                        name: name.to_string(),
                        ..Default::default()
                    }))
            }
            other => Err(convert::unexpected(other)),
        }
    }
}

fn user_info(user: &User) -> pb::UserInfo {
    pb::UserInfo {
        name: user.name.clone(),
        rights: user.rights.iter().map(right_to_pb).collect(),
        created_ms: user.created_ms,
        authentication: true,
    }
}

pub fn right_to_pb(right: &Right) -> pb::AccessRight {
    match right {
        Right::Admin => pb::AccessRight {
            kind: "admin".into(),
            ..Default::default()
        },
        Right::Produce { topics } => pb::AccessRight {
            kind: "produce".into(),
            topics: topics.clone(),
            groups: String::new(),
        },
        Right::Consume { topics, groups } => pb::AccessRight {
            kind: "consume".into(),
            topics: topics.clone(),
            groups: groups.clone(),
        },
    }
}

fn right_from_pb(right: Option<pb::AccessRight>) -> Result<Right, Status> {
    let r = right.ok_or_else(|| Status::invalid_argument("no right given"))?;
    let right = match r.kind.as_str() {
        "admin" => Right::Admin,
        "produce" => Right::Produce { topics: r.topics },
        "consume" => Right::Consume {
            topics: r.topics,
            groups: r.groups,
        },
        other => {
            return Err(Status::invalid_argument(format!(
                "unknown right '{other}': use admin, produce or consume"
            )));
        }
    };
    right.validate().map_err(Status::invalid_argument)?;
    Ok(right)
}
