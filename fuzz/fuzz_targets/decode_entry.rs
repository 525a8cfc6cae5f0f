//! Raft entries, commands and the openraft messages of the peer API from arbitrary bytes (what a
//! damaged log segment or a hostile peer could hand the decoder): never a panic, and whatever
//! decodes re-encodes to something that decodes to the same value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, StreamAppendResult, VoteRequest,
    VoteResponse,
};
use txmq_raft_store::TypeConfig;
use txmq_raft_store::types::alias::{Entry, SnapshotMeta, Vote};
use txmq_state::{Command, codec};

fuzz_target!(|bytes: &[u8]| {
    if let Ok(command) = codec::decode::<Command>(bytes) {
        let again = codec::encode(&command).expect("a decoded command encodes");
        let back: Command = codec::decode(&again).expect("its encoding decodes");
        assert_eq!(back.op(), command.op());
        assert_eq!(back.time_ms(), command.time_ms());
    }
    if let Ok(entry) = codec::decode::<Entry>(bytes) {
        let again = codec::encode(&entry).expect("a decoded entry encodes");
        let _: Entry = codec::decode(&again).expect("its encoding decodes");
    }
    // The peer API's openraft payloads (broker/src/peer_payload.rs lists them).
    let _ = codec::decode::<AppendEntriesRequest<TypeConfig>>(bytes);
    let _ = codec::decode::<AppendEntriesResponse<TypeConfig>>(bytes);
    let _ = codec::decode::<StreamAppendResult<TypeConfig>>(bytes);
    let _ = codec::decode::<VoteRequest<TypeConfig>>(bytes);
    let _ = codec::decode::<VoteResponse<TypeConfig>>(bytes);
    let _ = codec::decode::<(Vote, SnapshotMeta)>(bytes);
    let _ = codec::decode::<SnapshotResponse<TypeConfig>>(bytes);
});
