//! Password hashing and verification, with a cache so a client pays the slow hash once.
//!
//! Passwords are stored as argon2id hashes (the `argon2` crate's defaults: 19 MiB, 2 passes),
//! which take tens of milliseconds to verify — on purpose, so a stolen hash is expensive to
//! attack. Verifying that on every request would cap a node at a few dozen requests a second,
//! so a successful login is remembered as a keyed SHA-256 digest of (user, password) next to
//! the stored hash it matched: the next request with the same password costs one SHA-256. The
//! key is random per process, so the cache holds nothing useful outside it; a changed password
//! (a different stored hash) or a deleted user misses the cache.

use std::collections::HashMap;
use std::sync::Mutex;

use argon2::password_hash::rand_core::{OsRng, RngCore};
use argon2::password_hash::{PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Argon2, PasswordHash as ParsedHash};
use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;
use txmq_state::{PasswordHash, User};

/// Logins remembered (one per user name); past it the cache starts over.
const MAX_CACHED_LOGINS: usize = 10_000;
/// Slow verifications at once: each holds a core and 19 MiB.
const CONCURRENT_VERIFICATIONS: usize = 2;
/// The shortest password accepted.
pub const MIN_PASSWORD_LEN: usize = 8;
/// The longest password accepted (argon2 takes any length; this bounds the work).
pub const MAX_PASSWORD_LEN: usize = 1024;

/// A new access secret: 24 random bytes, base64url (32 characters).
pub fn new_access_secret() -> txmq_state::access::AccessSecret {
    use base64::Engine;
    let mut bytes = [0u8; 24];
    OsRng.fill_bytes(&mut bytes);
    txmq_state::access::AccessSecret(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

/// Hashes a new password (argon2id, random salt). Slow: call it off the async threads.
pub fn hash_password(password: &str) -> Result<PasswordHash, String> {
    check_password(password)?;
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| PasswordHash(h.to_string()))
        .map_err(|e| format!("hashing the password failed: {e}"))
}

/// A new password's length is checked before it is hashed.
pub fn check_password(password: &str) -> Result<(), String> {
    let len = password.chars().count();
    if len < MIN_PASSWORD_LEN || password.len() > MAX_PASSWORD_LEN {
        return Err(format!(
            "a password must be {MIN_PASSWORD_LEN} to {MAX_PASSWORD_LEN} characters long, not {len}"
        ));
    }
    Ok(())
}

/// Checks passwords against users' stored hashes.
pub struct Passwords {
    key: [u8; 32],
    cache: Mutex<HashMap<String, Remembered>>,
    slow_slots: Semaphore,
}

/// A login that succeeded: the stored hash it matched and the keyed digest of the password.
struct Remembered {
    stored: PasswordHash,
    digest: [u8; 32],
}

impl Default for Passwords {
    fn default() -> Self {
        let mut key = [0u8; 32];
        OsRng.fill_bytes(&mut key);
        Passwords {
            key,
            cache: Mutex::new(HashMap::new()),
            slow_slots: Semaphore::new(CONCURRENT_VERIFICATIONS),
        }
    }
}

impl Passwords {
    /// Whether `password` is the user's.
    pub async fn verify(&self, user: &User, password: &str) -> bool {
        if password.len() > MAX_PASSWORD_LEN {
            return false;
        }
        let digest = self.digest(&user.name, password);
        if self.remembered(user, &digest) {
            return true;
        }
        let Ok(_slot) = self.slow_slots.acquire().await else {
            return false;
        };
        let stored = user.password_hash.clone();
        let attempt = password.to_string();
        let matches = tokio::task::spawn_blocking(move || slow_verify(&stored, &attempt))
            .await
            .unwrap_or(false);
        if matches {
            self.remember(user, digest);
        }
        matches
    }

    fn digest(&self, user: &str, password: &str) -> [u8; 32] {
        let mut hasher = Sha256::new();
        hasher.update(self.key);
        hasher.update(user.as_bytes());
        hasher.update([0u8]);
        hasher.update(password.as_bytes());
        hasher.finalize().into()
    }

    fn remembered(&self, user: &User, digest: &[u8; 32]) -> bool {
        let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        cache
            .get(&user.name)
            .is_some_and(|r| r.stored == user.password_hash && r.digest == *digest)
    }

    fn remember(&self, user: &User, digest: [u8; 32]) {
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if cache.len() >= MAX_CACHED_LOGINS && !cache.contains_key(&user.name) {
            cache.clear();
        }
        cache.insert(
            user.name.clone(),
            Remembered {
                stored: user.password_hash.clone(),
                digest,
            },
        );
    }
}

fn slow_verify(stored: &PasswordHash, password: &str) -> bool {
    match ParsedHash::new(&stored.0) {
        Ok(parsed) => Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok(),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(password: &str) -> User {
        User {
            name: "alice".into(),
            password_hash: hash_password(password).expect("hash"),
            created_ms: 0,
            rights: Vec::new(),
            access_secret: None,
        }
    }

    #[tokio::test]
    async fn the_right_password_verifies_and_a_wrong_one_does_not() {
        let passwords = Passwords::default();
        let alice = user("correct horse");
        assert!(alice.password_hash.0.starts_with("$argon2id$"));
        assert!(!alice.password_hash.0.contains("correct horse"));
        assert!(!passwords.verify(&alice, "wrong horse").await);
        assert!(passwords.verify(&alice, "correct horse").await);
        // Now from the cache, and still not for another password.
        assert!(passwords.verify(&alice, "correct horse").await);
        assert!(!passwords.verify(&alice, "wrong horse").await);
    }

    #[tokio::test]
    async fn a_changed_password_misses_the_cache() {
        let passwords = Passwords::default();
        let before = user("first password");
        assert!(passwords.verify(&before, "first password").await);
        let after = User {
            password_hash: hash_password("second password").expect("hash"),
            ..before
        };
        assert!(!passwords.verify(&after, "first password").await);
        assert!(passwords.verify(&after, "second password").await);
    }

    #[test]
    fn short_passwords_are_refused() {
        assert!(hash_password("short").is_err());
    }
}
