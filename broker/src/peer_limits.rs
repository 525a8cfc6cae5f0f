//! How big a peer message may be: what a legitimate peer sends, and no more.

/// An AppendEntries request that encodes to more than this goes out as several peer messages
/// (openraft batches up to 256 entries per request, whatever their size).
pub const SPLIT_BYTES: usize = 16 * 1024 * 1024;
pub const MIB: usize = 1024 * 1024;

/// The largest peer message a legitimate peer sends, for a `--max-message-bytes` setting: a
/// split part of an AppendEntries request (at most [`SPLIT_BYTES`], or a single entry), where
/// an entry holds about 4 MiB of batched operations plus one client request (the largest body
/// and 1 MiB of envelope) or about one message's worth of dead letters; forwarded requests and
/// snapshot chunks are smaller. The peer port refuses anything bigger.
pub const fn peer_message_limit(max_message_bytes: usize) -> usize {
    let entry = max_message_bytes + 8 * MIB;
    let part = if entry > SPLIT_BYTES {
        entry
    } else {
        SPLIT_BYTES
    };
    part + MIB
}

/// What this node's outgoing peer calls may encode and decode: the limit for the largest body
/// a node may be configured with (64 MiB).
pub const MAX_PEER_MESSAGE: usize = peer_message_limit(64 * MIB);
