//! Applying user and right changes.
//!
//! Invariants: a user's rights are sorted and unique; once some user holds the admin right, a
//! change that would leave none is refused (an operator must never lock everyone out).

use crate::access::{self, MAX_RIGHTS_PER_USER, MAX_USERS, PasswordHash};
use crate::{BrokerState, Changes, CommandResult, PutUserMode, Rejection, Right, User};

fn rejected(why: String) -> CommandResult {
    CommandResult::Rejected(Rejection::Invalid(why))
}

impl BrokerState {
    pub(crate) fn set_access_secret(
        &mut self,
        name: &str,
        secret: Option<&access::AccessSecret>,
        changes: &mut Changes,
    ) -> CommandResult {
        if let Some(s) = secret
            && (s.0.is_empty() || s.0.len() > access::MAX_ACCESS_SECRET_LEN)
        {
            return rejected(format!(
                "an access secret has 1 to {} characters",
                access::MAX_ACCESS_SECRET_LEN
            ));
        }
        let Some(user) = self.users.get_mut(name) else {
            return CommandResult::Rejected(Rejection::UnknownUser(name.to_string()));
        };
        let changed = user.access_secret.as_ref() != secret;
        user.access_secret = secret.cloned();
        if changed {
            changes.user(name);
        }
        CommandResult::UserChanged { changed }
    }

    pub(crate) fn put_user(
        &mut self,
        now_ms: u64,
        name: &str,
        password_hash: &PasswordHash,
        mode: PutUserMode,
        changes: &mut Changes,
    ) -> CommandResult {
        if let Err(why) = access::validate_user_name(name)
            .and_then(|()| access::validate_password_hash(&password_hash.0))
        {
            return rejected(why);
        }
        match (self.users.get_mut(name), mode) {
            (Some(_), PutUserMode::Create) => {
                CommandResult::Rejected(Rejection::UserExists(name.to_string()))
            }
            (Some(_), PutUserMode::Bootstrap) => CommandResult::UserChanged { changed: false },
            (Some(user), PutUserMode::ChangePassword) => {
                user.password_hash = password_hash.clone();
                changes.user(name);
                CommandResult::UserChanged { changed: true }
            }
            (None, PutUserMode::ChangePassword) => {
                CommandResult::Rejected(Rejection::UnknownUser(name.to_string()))
            }
            (None, PutUserMode::Create | PutUserMode::Bootstrap) => {
                if self.users.len() >= MAX_USERS {
                    return rejected(format!("there are {MAX_USERS} users, the most allowed"));
                }
                let rights = match mode {
                    PutUserMode::Bootstrap => vec![Right::Admin],
                    _ => Vec::new(),
                };
                let user = User {
                    name: name.to_string(),
                    password_hash: password_hash.clone(),
                    created_ms: now_ms,
                    rights,
                    access_secret: None,
                };
                self.users.insert(name.to_string(), user);
                changes.user(name);
                CommandResult::UserChanged { changed: true }
            }
        }
    }

    pub(crate) fn delete_user(&mut self, name: &str, changes: &mut Changes) -> CommandResult {
        let Some(user) = self.users.get(name) else {
            return CommandResult::Rejected(Rejection::UnknownUser(name.to_string()));
        };
        if user.rights.contains(&Right::Admin) && self.admins() == 1 {
            return CommandResult::Rejected(Rejection::LastAdmin);
        }
        self.users.remove(name);
        changes.user(name);
        CommandResult::UserChanged { changed: true }
    }

    pub(crate) fn grant(
        &mut self,
        name: &str,
        right: &Right,
        changes: &mut Changes,
    ) -> CommandResult {
        if let Err(why) = right.validate() {
            return rejected(why);
        }
        let Some(user) = self.users.get_mut(name) else {
            return CommandResult::Rejected(Rejection::UnknownUser(name.to_string()));
        };
        let Err(at) = user.rights.binary_search(right) else {
            return CommandResult::UserChanged { changed: false };
        };
        if user.rights.len() >= MAX_RIGHTS_PER_USER {
            return rejected(format!(
                "user '{name}' holds {MAX_RIGHTS_PER_USER} rights, the most allowed; revoke some first"
            ));
        }
        user.rights.insert(at, right.clone());
        changes.user(name);
        CommandResult::UserChanged { changed: true }
    }

    pub(crate) fn revoke(
        &mut self,
        name: &str,
        right: &Right,
        changes: &mut Changes,
    ) -> CommandResult {
        let admins = self.admins();
        let Some(user) = self.users.get_mut(name) else {
            return CommandResult::Rejected(Rejection::UnknownUser(name.to_string()));
        };
        let Ok(at) = user.rights.binary_search(right) else {
            return CommandResult::UserChanged { changed: false };
        };
        if *right == Right::Admin && admins == 1 {
            return CommandResult::Rejected(Rejection::LastAdmin);
        }
        user.rights.remove(at);
        changes.user(name);
        CommandResult::UserChanged { changed: true }
    }

    fn admins(&self) -> usize {
        self.users
            .values()
            .filter(|u| u.rights.contains(&Right::Admin))
            .count()
    }
}

#[cfg(test)]
mod tests {
    use crate::access::PasswordHash;
    use crate::{BrokerState, Command, CommandResult, Operation, PutUserMode, Rejection, Right};

    const HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNo";

    fn apply(state: &mut BrokerState, index: u64, op: Operation) -> CommandResult {
        state
            .apply(index, &Command::new(index, op))
            .expect("apply")
            .result
    }

    fn put(name: &str, mode: PutUserMode) -> Operation {
        Operation::PutUser {
            name: name.into(),
            password_hash: PasswordHash(HASH.into()),
            mode,
        }
    }

    #[test]
    fn the_bootstrap_admin_is_created_once_and_cannot_be_removed_while_alone() {
        let mut state = BrokerState::default();
        let first = apply(&mut state, 1, put("root", PutUserMode::Bootstrap));
        assert_eq!(first, CommandResult::UserChanged { changed: true });
        let again = apply(&mut state, 2, put("root", PutUserMode::Bootstrap));
        assert_eq!(again, CommandResult::UserChanged { changed: false });
        assert_eq!(state.users()["root"].rights, vec![Right::Admin]);
        let delete = Operation::DeleteUser {
            name: "root".into(),
        };
        assert_eq!(
            apply(&mut state, 3, delete.clone()),
            CommandResult::Rejected(Rejection::LastAdmin)
        );
        apply(&mut state, 4, put("ops", PutUserMode::Create));
        let grant = Operation::Grant {
            user: "ops".into(),
            right: Right::Admin,
        };
        apply(&mut state, 5, grant);
        assert_eq!(
            apply(&mut state, 6, delete),
            CommandResult::UserChanged { changed: true }
        );
        assert!(!state.users().contains_key("root"));
    }

    #[test]
    fn grants_are_kept_sorted_once_and_revoked() {
        let mut state = BrokerState::default();
        apply(&mut state, 1, put("alice", PutUserMode::Create));
        let right = Right::Produce {
            topics: "orders*".into(),
        };
        let grant = Operation::Grant {
            user: "alice".into(),
            right: right.clone(),
        };
        apply(&mut state, 2, grant.clone());
        assert_eq!(
            apply(&mut state, 3, grant),
            CommandResult::UserChanged { changed: false }
        );
        assert_eq!(state.users()["alice"].rights, vec![right.clone()]);
        apply(
            &mut state,
            4,
            Operation::Revoke {
                user: "alice".into(),
                right,
            },
        );
        assert!(state.users()["alice"].rights.is_empty());
        let bad = Operation::Grant {
            user: "alice".into(),
            right: Right::Produce {
                topics: "a*b".into(),
            },
        };
        assert!(matches!(
            apply(&mut state, 5, bad),
            CommandResult::Rejected(_)
        ));
        let plain = Operation::PutUser {
            name: "bob".into(),
            password_hash: PasswordHash("hunter2".into()),
            mode: PutUserMode::Create,
        };
        assert!(matches!(
            apply(&mut state, 6, plain),
            CommandResult::Rejected(_)
        ));
    }
}
