//! MessagePack encoding of everything txmq stores or sends between peers.
//!
//! Structs are encoded as maps (named fields) so that optional fields can be added later and
//! openraft's own serde representations round-trip. The high-volume types — an entry's command,
//! stored messages, transaction records, consumer-group rows — use the positional form
//! ([`encode_compact`]): no field names in every message. [`decode`] reads both.

use serde::{Serialize, de::DeserializeOwned};

/// Encoding or decoding failed: on decode this means corrupt or foreign bytes.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("encode: {0}")]
    Encode(#[from] rmp_serde::encode::Error),
    #[error("decode: {0}")]
    Decode(#[from] rmp_serde::decode::Error),
}

pub fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, CodecError> {
    Ok(rmp_serde::to_vec_named(value)?)
}

/// Positional encoding (structs as arrays): smaller and faster, for records with many fields
/// written often (transaction records). [`decode`] reads both forms; fields may only be
/// appended (with a default), never reordered or removed.
pub fn encode_compact<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, CodecError> {
    Ok(rmp_serde::to_vec(value)?)
}

/// [`encode_compact`] appended to `out`. With `out` reserved for the value's approximate size
/// (a message: its body and names), the buffer is allocated once instead of growing — and
/// being copied — seven or eight times from empty, which had been a visible share of every
/// apply and checkpoint.
pub fn encode_compact_into<T: Serialize + ?Sized>(
    out: &mut Vec<u8>,
    value: &T,
) -> Result<(), CodecError> {
    Ok(rmp_serde::encode::write(out, value)?)
}

pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    Ok(rmp_serde::from_slice(bytes)?)
}

impl From<CodecError> for std::io::Error {
    fn from(e: CodecError) -> Self {
        std::io::Error::new(std::io::ErrorKind::InvalidData, e)
    }
}
