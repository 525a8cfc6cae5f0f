//! Users and their rights: replicated like topics, so a change made through any node holds on
//! every node and survives restarts and failover.
//!
//! The state stores a password only as the slow, salted hash the edge computed (a PHC string,
//! e.g. argon2id); it never sees a password and never verifies one (verification is the edge's,
//! with a cache, because it is deliberately expensive).

use serde::{Deserialize, Serialize};

use crate::limits;

/// The longest user name.
pub const MAX_USER_NAME_LEN: usize = 64;
/// The most rights one user may hold (each is checked on every request).
pub const MAX_RIGHTS_PER_USER: usize = 256;
/// The longest stored password hash (a PHC string is about 100 characters).
pub const MAX_PASSWORD_HASH_LEN: usize = 512;
/// The most users (each is a row, and every node keeps them in memory).
pub const MAX_USERS: usize = 10_000;

/// A password's slow, salted hash as a PHC string (`$argon2id$v=19$...`: algorithm,
/// parameters, salt and hash). Its `Debug` hides it, so logging an entry or a user never
/// prints it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PasswordHash(pub String);

impl std::fmt::Debug for PasswordHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PasswordHash(hidden)")
    }
}

/// A user's secret key for protocols that sign requests with it (RocketMQ's HMAC-SHA1
/// `authorization` header), which the verifier must hold itself: so unlike a password it is
/// stored as it is (docs/security.md says why and how it is protected). Its `Debug` hides it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct AccessSecret(pub String);

impl std::fmt::Debug for AccessSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AccessSecret(hidden)")
    }
}

/// The longest access secret.
pub const MAX_ACCESS_SECRET_LEN: usize = 256;

/// One user: a name, the hash of its password and what it may do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    pub name: String,
    pub password_hash: PasswordHash,
    pub created_ms: u64,
    /// Sorted, without repeats.
    pub rights: Vec<Right>,
    /// The secret key RocketMQ clients sign with (their access key is the user's name); none
    /// until an administrator makes one. Absent from users written before it existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_secret: Option<AccessSecret>,
}

impl User {
    /// Whether one of the user's rights allows `need`.
    pub fn may(&self, need: &Need<'_>) -> bool {
        self.rights.iter().any(|r| r.allows(need))
    }

    pub(crate) fn check_invariants(&self) {
        assert!(self.rights.windows(2).all(|w| w[0] < w[1]));
    }
}

/// What a right lets its user do. Patterns are a name, or a prefix ending in `*` (`orders*`),
/// or `*` alone (everything).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Right {
    /// Everything: topics, groups' settings, cluster membership, operator decisions, users.
    Admin,
    /// Send to the matching topics: plain and half messages, decisions of their transactions,
    /// and answering check-backs for them.
    Produce { topics: String },
    /// Receive from the matching topics in the matching groups: receive, ack, change
    /// invisibility, read, describe and reset those groups.
    Consume { topics: String, groups: String },
}

/// What one request needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need<'a> {
    Admin,
    Produce {
        topic: &'a str,
    },
    Consume {
        topic: &'a str,
        group: &'a str,
    },
    /// Reading a topic without a group (read by offset, message lookup): any consume right on
    /// the topic.
    Read {
        topic: &'a str,
    },
    /// Some produce right, whatever its topics (a checker registering before any check names
    /// a topic).
    AnyProduce,
}

impl Right {
    pub fn allows(&self, need: &Need<'_>) -> bool {
        match (self, need) {
            (Right::Admin, _) => true,
            (Right::Produce { topics }, Need::Produce { topic }) => matches(topics, topic),
            (Right::Produce { .. }, Need::AnyProduce) => true,
            (Right::Consume { topics, groups }, Need::Consume { topic, group }) => {
                matches(topics, topic) && matches(groups, group)
            }
            (Right::Consume { topics, .. }, Need::Read { topic }) => matches(topics, topic),
            _ => false,
        }
    }

    /// Checks the right's patterns.
    pub fn validate(&self) -> Result<(), String> {
        match self {
            Right::Admin => Ok(()),
            Right::Produce { topics } => validate_pattern("topic", topics),
            Right::Consume { topics, groups } => {
                validate_pattern("topic", topics).and(validate_pattern("group", groups))
            }
        }
    }
}

impl std::fmt::Display for Right {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Right::Admin => f.write_str("admin"),
            Right::Produce { topics } => write!(f, "produce {topics}"),
            Right::Consume { topics, groups } => write!(f, "consume {topics} group {groups}"),
        }
    }
}

impl std::fmt::Display for Need<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Need::Admin => f.write_str("admin"),
            Need::Produce { topic } => write!(f, "produce on topic '{topic}'"),
            Need::Consume { topic, group } => {
                write!(f, "consume on topic '{topic}' in group '{group}'")
            }
            Need::Read { topic } => write!(f, "consume on topic '{topic}'"),
            Need::AnyProduce => f.write_str("produce on some topic"),
        }
    }
}

/// Whether `name` matches `pattern`: equal, or `pattern` is a prefix followed by `*`.
pub fn matches(pattern: &str, name: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => name.starts_with(prefix),
        None => pattern == name,
    }
}

/// A pattern is a valid name, or a prefix of one followed by `*`, or `*`.
pub fn validate_pattern(what: &str, pattern: &str) -> Result<(), String> {
    match pattern.strip_suffix('*') {
        Some("") => Ok(()),
        Some(prefix) if prefix.contains('*') => Err(format!(
            "{what} pattern '{pattern}' has a '*' before its end; only a trailing '*' is allowed"
        )),
        Some(prefix) => limits::validate_name(what, prefix),
        None => limits::validate_name(what, pattern),
    }
}

/// A user name: 1..=64 characters from `[A-Za-z0-9._@-]` (an e-mail address fits).
pub fn validate_user_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > MAX_USER_NAME_LEN {
        return Err(format!(
            "user name must be 1 to {MAX_USER_NAME_LEN} characters long, not {}",
            name.len()
        ));
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@')))
    {
        return Err(format!(
            "user name '{}' contains {bad:?}; only [A-Za-z0-9._@-] are allowed",
            name.escape_debug()
        ));
    }
    Ok(())
}

/// A stored hash must look like a PHC string; the state never stores a password.
pub fn validate_password_hash(hash: &str) -> Result<(), String> {
    if !hash.starts_with('$') || hash.len() > MAX_PASSWORD_HASH_LEN || hash.len() < 16 {
        return Err("a password is stored only as a PHC hash string".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_exactly_or_by_prefix() {
        assert!(matches("orders", "orders"));
        assert!(!matches("orders", "orders2"));
        assert!(matches("orders*", "orders2"));
        assert!(matches("*", "anything"));
        assert!(!matches("orders*", "order"));
    }

    #[test]
    fn rights_allow_what_they_name_and_admin_allows_everything() {
        let produce = Right::Produce {
            topics: "orders*".into(),
        };
        let consume = Right::Consume {
            topics: "orders*".into(),
            groups: "g*".into(),
        };
        assert!(produce.allows(&Need::Produce { topic: "orders-eu" }));
        assert!(!produce.allows(&Need::Produce { topic: "pay" }));
        assert!(!produce.allows(&Need::Read { topic: "orders" }));
        let in_group = Need::Consume {
            topic: "orders",
            group: "g1",
        };
        assert!(consume.allows(&in_group));
        let other_group = Need::Consume {
            topic: "orders",
            group: "h",
        };
        assert!(!consume.allows(&other_group));
        assert!(!consume.allows(&Need::Admin));
        assert!(Right::Admin.allows(&other_group));
    }

    #[test]
    fn bad_patterns_and_names_are_refused() {
        assert!(validate_pattern("topic", "a*b*").is_err());
        assert!(validate_pattern("topic", "a b").is_err());
        assert!(validate_pattern("topic", "*").is_ok());
        assert!(validate_user_name("alice@example.com").is_ok());
        assert!(validate_user_name("al:ice").is_err());
        assert!(validate_user_name("").is_err());
        assert!(validate_password_hash("hunter2").is_err());
    }
}
