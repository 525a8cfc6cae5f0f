//! openraft settings this store's guarantees depend on, shared by the node and the simulator
//! so the simulator proves the configuration that runs.

/// Applies the settings every txmq Raft node must run with.
///
/// * `enable_leader_restore: false`. openraft lets a leader that restarts resume its term
///   without an election. A leader replicates an entry before its own fsync completes, so a
///   power loss can take an entry from the leader that its followers keep; resuming the same
///   term, it would write a different entry under the same log id, which the followers take
///   for the one they have — replicas then apply different commands at one index. Found by
///   the simulator; its regression seeds are in `sim/tests/simulation.rs`.
/// * `allow_log_reversion: false` (openraft's default, made explicit): a follower whose log
///   went backwards is an error, never silently accepted.
pub fn with_safety_settings(config: openraft::Config) -> openraft::Config {
    openraft::Config {
        enable_leader_restore: Some(false),
        allow_log_reversion: Some(false),
        ..config
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_restarted_leader_never_resumes_its_term() {
        let config = with_safety_settings(openraft::Config {
            enable_leader_restore: Some(true),
            ..Default::default()
        });
        assert_eq!(config.enable_leader_restore, Some(false));
        assert_eq!(config.allow_log_reversion, Some(false));
        assert_eq!(
            with_safety_settings(openraft::Config::default()).enable_leader_restore,
            Some(false)
        );
    }
}
