//! The files `txmq dev` keeps beside its nodes' data: `dev.pid` (the running `txmq dev`),
//! `node-N.log`, `node-N.cmd` (the node's exact command line), `node-N.pid`, and
//! `node-N.restart` (a request from `txmq dev restart N` to the running `txmq dev`).

use std::path::{Path, PathBuf};

/// The dev cluster's directory and its bookkeeping files.
pub struct DevFiles {
    dir: PathBuf,
    /// This process owns `dev.pid` (and removes it when done).
    owner: bool,
}

/// Whether a process with this pid is alive.
fn alive(pid: u32) -> bool {
    // SAFETY: kill(2) with signal 0 only checks that the process exists; no memory effects.
    pid != 0 && unsafe { libc::kill(pid as i32, 0) } == 0
}

fn read_pid(path: &Path) -> Option<u32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

impl DevFiles {
    /// Takes the directory for a new `txmq dev`, refusing one that another running `txmq dev`
    /// uses.
    pub fn claim(dir: &Path) -> Result<DevFiles, String> {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let pid_file = dir.join("dev.pid");
        if let Some(pid) = read_pid(&pid_file).filter(|p| alive(*p) && *p != std::process::id()) {
            return Err(format!(
                "another txmq dev (pid {pid}) is running on {}; stop it first (Ctrl-C in its \
                 terminal, or kill {pid})",
                dir.display()
            ));
        }
        std::fs::write(&pid_file, std::process::id().to_string())
            .map_err(|e| format!("cannot write {}: {e}", pid_file.display()))?;
        let files = DevFiles {
            dir: dir.to_path_buf(),
            owner: true,
        };
        let _ = files.take_restart_requests();
        Ok(files)
    }

    /// The directory of a running `txmq dev` (for `txmq dev restart`).
    pub fn open(dir: &Path) -> Result<DevFiles, String> {
        match read_pid(&dir.join("dev.pid")) {
            Some(pid) if alive(pid) => Ok(DevFiles {
                dir: dir.to_path_buf(),
                owner: false,
            }),
            _ => Err(format!(
                "no txmq dev is running on {} (start one with `txmq dev`; it resumes the data)",
                dir.display()
            )),
        }
    }

    /// Whether any node already has data here (the cluster resumes).
    pub fn holds_data(&self, nodes: &[super::DevNode]) -> bool {
        nodes.iter().any(|n| {
            std::fs::read_dir(self.data_dir(n.id)).is_ok_and(|mut entries| entries.next().is_some())
        })
    }

    pub fn data_dir(&self, node: u64) -> PathBuf {
        self.dir.join(format!("node-{node}"))
    }

    pub fn log_path(&self, node: u64) -> PathBuf {
        self.dir.join(format!("node-{node}.log"))
    }

    /// Records how node `node` was started and its pid.
    pub fn record_start(&self, node: u64, command_line: &str, pid: u32) -> Result<(), String> {
        let write = |name: String, text: String| {
            let path = self.dir.join(name);
            std::fs::write(&path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))
        };
        write(format!("node-{node}.cmd"), format!("{command_line}\n"))?;
        write(format!("node-{node}.pid"), format!("{pid}\n"))
    }

    /// The pid node `node` was last started with, if that process is alive.
    pub fn node_pid(&self, node: u64) -> Option<u32> {
        read_pid(&self.dir.join(format!("node-{node}.pid"))).filter(|p| alive(*p))
    }

    fn restart_path(&self, node: u64) -> PathBuf {
        self.dir.join(format!("node-{node}.restart"))
    }

    /// Asks the running `txmq dev` to start node `node` again; refused while it runs.
    pub fn request_restart(&self, node: u64) -> Result<(), String> {
        if let Some(pid) = self.node_pid(node) {
            return Err(format!(
                "node {node} is running (pid {pid}); nothing to restart"
            ));
        }
        let path = self.restart_path(node);
        std::fs::write(&path, b"").map_err(|e| format!("cannot write {}: {e}", path.display()))
    }

    pub fn restart_requested(&self, node: u64) -> bool {
        self.restart_path(node).exists()
    }

    /// The nodes whose restart was asked for (the requests are taken: removed).
    pub fn take_restart_requests(&self) -> Vec<u64> {
        (1..=3)
            .filter(|&n| std::fs::remove_file(self.restart_path(n)).is_ok())
            .collect()
    }
}

impl Drop for DevFiles {
    fn drop(&mut self) {
        if self.owner {
            let _ = std::fs::remove_file(self.dir.join("dev.pid"));
        }
    }
}

/// A command line as a shell would take it back (arguments quoted where needed).
pub fn shell_line(program: &Path, args: &[String]) -> String {
    let quote = |a: &str| {
        let plain = !a.is_empty()
            && a.chars()
                .all(|c| c.is_ascii_alphanumeric() || "_./:=,-@".contains(c));
        if plain {
            a.to_string()
        } else {
            format!("'{}'", a.replace('\'', r"'\''"))
        }
    };
    std::iter::once(quote(&program.display().to_string()))
        .chain(args.iter().map(|a| quote(a)))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_lines_quote_what_a_shell_would_split() {
        let line = shell_line(
            Path::new("/opt/tx mq/txmq"),
            &[
                "serve".into(),
                "--data-dir".into(),
                "it's here".into(),
                "--node-id".into(),
                "1".into(),
            ],
        );
        assert_eq!(
            line,
            r"'/opt/tx mq/txmq' serve --data-dir 'it'\''s here' --node-id 1"
        );
    }

    #[test]
    fn a_directory_is_claimed_once_and_restarts_are_requests() {
        let dir = tempfile::tempdir().expect("tempdir");
        let files = DevFiles::claim(dir.path()).expect("claim");
        // Our own pid in dev.pid: claiming again from this process is allowed (a restart of
        // `txmq dev` after a crash finds its own stale file too), another process is refused.
        assert!(DevFiles::open(dir.path()).is_ok(), "a running dev is found");
        let other = DevFiles::open(dir.path()).expect("open");
        other.request_restart(2).expect("request");
        assert!(files.restart_requested(2));
        assert_eq!(files.take_restart_requests(), vec![2]);
        assert!(!files.restart_requested(2));
        drop(other);
        drop(files);
        assert!(
            DevFiles::open(dir.path()).is_err(),
            "dev.pid is removed when dev ends"
        );
    }
}
