//! A committed message as stored in the state-machine tree.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The stored form of a message; its topic, queue and offset are in its key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredMessage {
    pub message_id: String,
    pub key: String,
    pub tag: String,
    #[serde(with = "serde_bytes")]
    pub body: Vec<u8>,
    pub properties: BTreeMap<String, String>,
    /// The leader's time when the message was committed.
    pub born_at_ms: u64,
}

/// A [`StoredMessage`] borrowing its fields: encodes to the same bytes, without copying a
/// message the state machine only reads (a publish, a commit).
#[derive(Debug, Clone, Copy, Serialize)]
pub struct StoredMessageRef<'a> {
    pub message_id: &'a str,
    pub key: &'a str,
    pub tag: &'a str,
    #[serde(with = "serde_bytes")]
    pub body: &'a [u8],
    pub properties: &'a BTreeMap<String, String>,
    pub born_at_ms: u64,
}

/// About the encoded size of a message's properties (names, values and their headers): part
/// of the size a buffer for a message or a record is reserved at.
pub fn properties_size_hint(properties: &BTreeMap<String, String>) -> usize {
    properties.iter().map(|(k, v)| k.len() + v.len() + 10).sum()
}

impl StoredMessageRef<'_> {
    /// The positional encoding, in a buffer allocated once at about its final size.
    pub fn encode(&self) -> Result<Vec<u8>, crate::codec::CodecError> {
        let names = properties_size_hint(self.properties);
        let size = 40 + self.message_id.len() + self.key.len() + self.tag.len() + names;
        let mut out = Vec::with_capacity(size + self.body.len());
        crate::codec::encode_compact_into(&mut out, self)?;
        Ok(out)
    }
}

impl StoredMessage {
    /// About the bytes this message takes in a response (its fields and their headers): what
    /// reads and receives size their responses by.
    pub fn response_size(&self) -> usize {
        self.message_id.len()
            + self.key.len()
            + self.tag.len()
            + self.body.len()
            + properties_size_hint(&self.properties)
            + 64
    }

    pub fn as_ref(&self) -> StoredMessageRef<'_> {
        StoredMessageRef {
            message_id: &self.message_id,
            key: &self.key,
            tag: &self.tag,
            body: &self.body,
            properties: &self.properties,
            born_at_ms: self.born_at_ms,
        }
    }
}

/// A message id: the log index of its entry and its position in that entry, as hex. Unique
/// across the cluster's lifetime because log indexes are never reused.
pub fn message_id(log_index: u64, position: usize) -> String {
    let mut out = String::with_capacity(24);
    push_hex(&mut out, log_index, 16);
    push_hex(&mut out, position as u64, 8);
    out
}

/// Appends `value` in upper-case hex, zero-padded to at least `width` digits (the same text as
/// `{:0width$X}`, without the formatting machinery: ids are made for every message).
pub fn push_hex(out: &mut String, value: u64, width: usize) {
    const DIGITS: &[u8; 16] = b"0123456789ABCDEF";
    let needed = (64 - value.leading_zeros() as usize).div_ceil(4);
    for i in (0..needed.max(width)).rev() {
        let nibble = if i < 16 { (value >> (i * 4)) & 0xF } else { 0 };
        out.push(DIGITS[nibble as usize] as char);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_borrowed_message_encodes_like_the_owned_one() {
        let m = StoredMessage {
            message_id: message_id(3, 1),
            key: "k".into(),
            tag: "t".into(),
            body: vec![1, 2, 3],
            properties: BTreeMap::from([("a".into(), "b".into())]),
            born_at_ms: 7,
        };
        let owned = crate::codec::encode_compact(&m).expect("encode");
        assert_eq!(
            crate::codec::encode_compact(&m.as_ref()).expect("encode"),
            owned
        );
        assert_eq!(
            crate::codec::decode::<StoredMessage>(&owned).expect("decode"),
            m
        );
    }

    #[test]
    fn ids_are_the_formatted_hex() {
        for (index, position) in [
            (0u64, 0usize),
            (1, 2),
            (0xABCDEF, 0xFF),
            (u64::MAX, 0xFFFF_FFFF),
        ] {
            assert_eq!(
                message_id(index, position),
                format!("{index:016X}{position:08X}")
            );
        }
        let mut wide = String::new();
        push_hex(&mut wide, 0x1_0000_0000, 8);
        assert_eq!(wide, format!("{:08X}", 0x1_0000_0000u64));
    }
}
