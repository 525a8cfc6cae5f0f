//! Bugs planted on purpose, to prove the simulator finds what it claims to find.
//!
//! They live only in this crate (the simulated store, request handlers and client): the
//! `txmq` binary has no code path that can turn one on. `txmq-sim run --bug NAME` runs with
//! one of them; the test suite checks that each is caught.

use std::fmt;
use std::str::FromStr;

/// One planted bug.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bug {
    /// The log store reports an append flushed before its fsync: a power loss of the nodes
    /// that acknowledged it loses a committed entry.
    FlushBeforeFsync,
    /// The client resends a write whose answer timed out: if the first one landed, the message
    /// is stored twice (duplicates must come only from redelivery, never from the broker or
    /// the SDK inventing a second copy).
    ResendAfterTimeout,
    /// A producer's commit is applied to the transaction opened just before it by the same
    /// group (an off-by-one at the edge): decisions are no longer fenced to their id.
    DecisionToWrongTxn,
    /// An acknowledgement also acknowledges every lease below it in the queue, including
    /// deliveries nobody processed.
    AckPastUnacked,
    /// A follower serving a receive reads the leased messages without waiting to apply the
    /// lease's entry: a follower behind the leader serves messages it does not have yet.
    FollowerReadBeforeApply,
}

impl Bug {
    pub const ALL: [Bug; 5] = [
        Bug::FlushBeforeFsync,
        Bug::ResendAfterTimeout,
        Bug::DecisionToWrongTxn,
        Bug::AckPastUnacked,
        Bug::FollowerReadBeforeApply,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Bug::FlushBeforeFsync => "flush-before-fsync",
            Bug::ResendAfterTimeout => "resend-after-timeout",
            Bug::DecisionToWrongTxn => "decision-to-wrong-txn",
            Bug::AckPastUnacked => "ack-past-unacked",
            Bug::FollowerReadBeforeApply => "follower-read-before-apply",
        }
    }
}

impl fmt::Display for Bug {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Bug {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Bug::ALL.into_iter().find(|b| b.name() == s).ok_or_else(|| {
            let names: Vec<&str> = Bug::ALL.iter().map(|b| b.name()).collect();
            format!(
                "no planted bug named {s:?}; there are: {}",
                names.join(", ")
            )
        })
    }
}
