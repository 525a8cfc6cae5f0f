//! Rebuilding a node whose storage is damaged, without letting it vote on a log it lost.
//!
//! Why not simply cut the damaged part off: a voter that forgets entries it acknowledged can
//! form a majority with a lagging node and elect a leader that lacks them — committed data lost
//! (Alagappan et al., "Protocol-Aware Recovery for Consensus-Based Storage", FAST 2018). So a
//! damaged node refuses to start, and with `--repair-damaged-storage` it is rebuilt this way:
//!
//! 1. Its data is moved aside into `DATA_DIR/damaged-<unix seconds>/` (kept for inspection) and
//!    a marker file ([`MARKER`]) records that a repair is under way, so a restart mid-repair
//!    carries on with it.
//! 2. It starts with empty storage, **elections off and every vote request refused**. It is
//!    still a member, so the leader replicates to it (a snapshot, then the log).
//! 3. It asks the leader for the index of its last entry. A leader exists only if a majority
//!    elected it without this node's vote, so that leader holds every committed entry,
//!    including those this node acknowledged before its damage.
//! 4. Once its own log reaches that index, it holds everything it ever acknowledged that
//!    counted: the marker goes, and it votes and may stand for election again.
//!
//! When a majority of voters is damaged, no leader can be elected and the repairing nodes wait,
//! saying so — the cluster stays unavailable rather than electing a leader that lost data.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use openraft::async_runtime::WatchReceiver;
use txmq_raft_store::Raft;

use crate::network::PeerRoutes;

/// Present in the data dir while a repair is under way.
pub const MARKER: &str = "REPAIRING";
const POLL: Duration = Duration::from_millis(500);
/// How often a repair that keeps waiting says why (in polls).
const REPORT_EVERY: u32 = 20;

/// Whether this node may vote: closed while it rebuilds damaged storage. Shared by the peer
/// service (which refuses vote requests) and the repair task (which opens it).
#[derive(Debug, Default)]
pub struct VoteGate {
    refusing: AtomicBool,
}

impl VoteGate {
    pub fn new(refusing: bool) -> Arc<Self> {
        Arc::new(Self {
            refusing: AtomicBool::new(refusing),
        })
    }

    pub fn refusing(&self) -> bool {
        self.refusing.load(Ordering::Acquire)
    }

    fn open(&self) {
        self.refusing.store(false, Ordering::Release);
    }
}

/// Whether a repair of `data_dir` is under way (a restart mid-repair continues it).
pub fn in_progress(data_dir: &Path) -> bool {
    data_dir.join(MARKER).exists()
}

/// Moves everything in `data_dir` but earlier `damaged-*` folders into a new
/// `damaged-<unix seconds>` folder and writes the marker, durably. Returns the new folder.
pub fn set_aside(data_dir: &Path) -> std::io::Result<PathBuf> {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let aside = data_dir.join(format!("damaged-{secs}"));
    std::fs::create_dir_all(&aside)?;
    for entry in std::fs::read_dir(data_dir)? {
        let entry = entry?;
        let name = entry.file_name();
        if name.to_string_lossy().starts_with("damaged-") {
            continue;
        }
        std::fs::rename(entry.path(), aside.join(&name))?;
    }
    std::fs::File::create(data_dir.join(MARKER))?.sync_all()?;
    std::fs::File::open(data_dir)?.sync_all()?;
    Ok(aside)
}

/// Runs until this node's log holds everything the leader had when asked, then ends the
/// repair: removes the marker, opens the vote gate and turns elections back on.
pub async fn finish_when_caught_up(
    raft: Raft,
    gate: Arc<VoteGate>,
    data_dir: PathBuf,
    routes: Arc<PeerRoutes>,
) {
    let mut target: Option<u64> = None;
    let mut round = 0u32;
    loop {
        let waiting = match target {
            None => match leader_last_index(&raft, &routes).await {
                Ok(index) => {
                    tracing::info!(
                        target = index,
                        "repair: catching up to the leader's log before voting again"
                    );
                    target = Some(index);
                    continue;
                }
                Err(why) => why,
            },
            Some(target) => {
                let have = raft.metrics().borrow_watched().last_log_index.unwrap_or(0);
                if have >= target {
                    break;
                }
                format!("log at {have} of {target}")
            }
        };
        if round.is_multiple_of(REPORT_EVERY) {
            tracing::warn!("repair of damaged storage still under way, not voting: {waiting}");
        }
        round += 1;
        tokio::time::sleep(POLL).await;
    }
    if let Err(e) = std::fs::remove_file(data_dir.join(MARKER))
        .and_then(|()| std::fs::File::open(&data_dir)?.sync_all())
    {
        tracing::error!("repair: caught up, but cannot remove the repair marker: {e}");
        return;
    }
    gate.open();
    raft.runtime_config().elect(true);
    tracing::info!("repair finished: the node holds the leader's log and votes again");
}

/// The last log index of the current leader, asked over the peer API.
async fn leader_last_index(raft: &Raft, routes: &PeerRoutes) -> Result<u64, String> {
    let metrics = raft.metrics().borrow_watched().clone();
    let Some(leader) = metrics.current_leader.filter(|l| *l != metrics.id) else {
        return Err("no leader yet (one needs a majority of undamaged voters)".into());
    };
    let Some(info) = metrics.membership_config.get_node(&leader) else {
        return Err(format!(
            "leader {leader} is not in the membership known yet"
        ));
    };
    let addr = routes.resolve(leader, &info.peer_addr);
    let Some(status) = crate::status::ask_peer(routes, &addr).await else {
        return Err(format!("leader {leader} at {addr} did not answer"));
    };
    if status.role != "leader" {
        return Err(format!("node {leader} is no longer the leader"));
    }
    Ok(status.last_log_index.max(status.commit_index))
}
