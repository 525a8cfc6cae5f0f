//! A value built from files and rebuilt when they change.

use std::path::PathBuf;
use std::sync::{Arc, RwLock, Weak};
use std::time::SystemTime;

use super::TlsError;

type Build<T> = Box<dyn Fn() -> Result<T, TlsError> + Send + Sync>;

/// What a file looked like: a replaced file (or a Kubernetes Secret's swapped symlink) shows a
/// new modification time or length.
type Stamp = Option<(SystemTime, u64)>;

/// The current value built from `paths`; [`Reloading::watch`] rebuilds it when they change. A
/// rebuild that fails (a half-written file, a key that does not match) keeps the previous value
/// and is logged; the next change is tried again.
pub struct Reloading<T> {
    what: &'static str,
    paths: Vec<PathBuf>,
    build: Build<T>,
    current: RwLock<(u64, Arc<T>)>,
    stamps: RwLock<Vec<Stamp>>,
}

impl<T: Send + Sync + 'static> Reloading<T> {
    /// Builds the first value; an error here stops the node from starting.
    pub fn new(
        what: &'static str,
        paths: Vec<PathBuf>,
        build: impl Fn() -> Result<T, TlsError> + Send + Sync + 'static,
    ) -> Result<Arc<Self>, TlsError> {
        let stamps = stamps(&paths);
        let value = build()?;
        Ok(Arc::new(Reloading {
            what,
            paths,
            build: Box::new(build),
            current: RwLock::new((0, Arc::new(value))),
            stamps: RwLock::new(stamps),
        }))
    }

    /// The current value.
    pub fn current(&self) -> Arc<T> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .1
            .clone()
    }

    /// The current value and its generation (bumped by every successful reload), so a cache
    /// of things built from it knows when to rebuild them.
    pub fn generation(&self) -> u64 {
        self.current.read().unwrap_or_else(|p| p.into_inner()).0
    }

    /// Checks the files every `every` until the last holder of this value is gone.
    pub fn watch(self: &Arc<Self>, every: std::time::Duration) {
        let weak: Weak<Self> = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                let Some(this) = weak.upgrade() else { return };
                this.reload_if_changed();
            }
        });
    }

    /// Rebuilds if any file changed since the last look; true if the value was replaced.
    pub fn reload_if_changed(&self) -> bool {
        let now = stamps(&self.paths);
        {
            let mut seen = self.stamps.write().unwrap_or_else(|p| p.into_inner());
            if *seen == now {
                return false;
            }
            *seen = now;
        }
        match (self.build)() {
            Ok(value) => {
                let mut current = self.current.write().unwrap_or_else(|p| p.into_inner());
                *current = (current.0 + 1, Arc::new(value));
                tracing::info!(what = self.what, "TLS files changed; reloaded");
                metrics::counter!("txmq_tls_reloads_total", "what" => self.what, "outcome" => "ok")
                    .increment(1);
                true
            }
            Err(e) => {
                tracing::warn!(what = self.what, error = %e, "TLS files changed but cannot be used; keeping the previous ones");
                metrics::counter!("txmq_tls_reloads_total", "what" => self.what, "outcome" => "failed")
                    .increment(1);
                false
            }
        }
    }
}

fn stamps(paths: &[PathBuf]) -> Vec<Stamp> {
    paths
        .iter()
        .map(|p| {
            let meta = std::fs::metadata(p).ok()?;
            Some((meta.modified().ok()?, meta.len()))
        })
        .collect()
}
