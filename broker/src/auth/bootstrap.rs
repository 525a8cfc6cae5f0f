//! The bootstrap administrator: read from `--auth-admin-file`, proposed by every node at every
//! start. The state machine creates it only if no user has its name, so repeating it is
//! harmless, and a password changed later with `txmq user passwd` is never reset by a restart.

use std::path::Path;
use std::time::Duration;

use txmq_state::{CommandResult, Operation, PasswordHash, PutUserMode, access};

use crate::proposer::Proposer;

/// The administrator named in the admin file, with its password already hashed.
pub struct BootstrapAdmin {
    pub name: String,
    password_hash: PasswordHash,
}

/// Reads the administrator and hashes its password. `path` is a file holding `NAME:PASSWORD`
/// (one line; surrounding whitespace ignored), or a directory holding the files `username` and
/// `password` (a Kubernetes `kubernetes.io/basic-auth` Secret mounted as a volume). Errors
/// never quote the contents.
pub fn read_admin_file(path: &Path) -> Result<BootstrapAdmin, String> {
    let read = |p: &Path| {
        std::fs::read_to_string(p)
            .map_err(|e| format!("cannot read the admin file {}: {e}", p.display()))
    };
    let (name, password) = if path.is_dir() {
        let name = read(&path.join("username"))?.trim().to_string();
        let password = read(&path.join("password"))?;
        (name, password.trim_end_matches(['\r', '\n']).to_string())
    } else {
        let text = read(path)?;
        let Some((name, password)) = text.trim().split_once(':') else {
            return Err(format!(
                "the admin file {} must hold one line NAME:PASSWORD",
                path.display()
            ));
        };
        (name.to_string(), password.to_string())
    };
    let (name, password) = (name.as_str(), password.as_str());
    access::validate_user_name(name)
        .map_err(|e| format!("the admin file {}: {e}", path.display()))?;
    let password_hash = super::passwords::hash_password(password)
        .map_err(|e| format!("the admin file {}: {e}", path.display()))?;
    Ok(BootstrapAdmin {
        name: name.to_string(),
        password_hash,
    })
}

/// Proposes the administrator until the cluster has applied it (retrying through elections
/// and while the cluster forms).
pub async fn propose_admin(proposer: Proposer, admin: BootstrapAdmin) {
    let mut wait = Duration::from_millis(200);
    loop {
        let op = Operation::PutUser {
            name: admin.name.clone(),
            password_hash: admin.password_hash.clone(),
            mode: PutUserMode::Bootstrap,
        };
        match proposer.write(op).await {
            Ok(CommandResult::UserChanged { changed }) => {
                if changed {
                    tracing::info!(target: "txmq::audit", user = %admin.name, action = "bootstrap_admin", outcome = "ok", "bootstrap administrator created");
                }
                return;
            }
            Ok(other) => {
                tracing::error!(user = %admin.name, "the bootstrap administrator was refused: {other:?}");
                return;
            }
            Err(e) => tracing::debug!("bootstrap administrator not proposed yet: {e}"),
        }
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(Duration::from_secs(5));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_admin_file_is_one_line_of_name_and_password() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("admin");
        std::fs::write(&path, "root:correct horse battery\n").expect("write");
        let admin = read_admin_file(&path).expect("read");
        assert_eq!(admin.name, "root");
        std::fs::write(&path, "no colon here").expect("write");
        let err = read_admin_file(&path).err().expect("refused");
        assert!(err.contains("NAME:PASSWORD") && !err.contains("no colon"));
        std::fs::write(&path, "root:short").expect("write");
        assert!(read_admin_file(&path).is_err());
    }

    #[test]
    fn a_basic_auth_secret_directory_is_read_too() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("username"), "ops").expect("write");
        std::fs::write(dir.path().join("password"), "a long password").expect("write");
        let admin = read_admin_file(dir.path()).expect("read");
        assert_eq!(admin.name, "ops");
    }
}
