//! A transaction's id: the log index of the entry that stored its half message and the position
//! of its message id in that entry. Clients see it as `T` + the message id (25 characters);
//! inside the state it is two integers, so indexing a transaction costs an integer compare,
//! not a string compare and a string copy.

use std::fmt;

use serde::{Deserialize, Serialize};

/// See the module comment. Ordered by (index, position): the order the half messages were
/// stored in. Serialized as the two integers (the transaction journal); rows and results carry
/// the client form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct TxnId {
    pub index: u64,
    pub position: u32,
}

/// Hex digits of the index and of the position in a message id.
const INDEX_DIGITS: usize = 16;
const POSITION_DIGITS: usize = 8;

impl TxnId {
    pub fn new(index: u64, position: u32) -> Self {
        Self { index, position }
    }

    /// Parses the client form `T` + 16 + 8 upper-case hex digits; `None` for anything else
    /// (such an id can name no transaction).
    pub fn parse(text: &str) -> Option<Self> {
        let digits = text.strip_prefix('T')?;
        if digits.len() != INDEX_DIGITS + POSITION_DIGITS
            || !digits
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(&b))
        {
            return None;
        }
        let index = u64::from_str_radix(&digits[..INDEX_DIGITS], 16).ok()?;
        let position = u32::from_str_radix(&digits[INDEX_DIGITS..], 16).ok()?;
        Some(Self { index, position })
    }

    /// The id of the transaction's message (the message keeps it once committed).
    pub fn message_id(&self) -> String {
        crate::message::message_id(self.index, self.position as usize)
    }
}

impl fmt::Display for TxnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text())
    }
}

impl TxnId {
    /// The client form (what `to_string` gives, made without the formatting machinery).
    pub fn text(&self) -> String {
        let mut out = String::with_capacity(1 + INDEX_DIGITS + POSITION_DIGITS);
        out.push('T');
        crate::message::push_hex(&mut out, self.index, INDEX_DIGITS);
        crate::message::push_hex(&mut out, u64::from(self.position), POSITION_DIGITS);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_through_their_text() {
        let id = TxnId::new(0x1234, 7);
        let text = id.to_string();
        assert_eq!(text, "T000000000000123400000007");
        assert_eq!(TxnId::parse(&text), Some(id));
        assert_eq!(id.message_id(), text[1..]);
    }

    #[test]
    fn malformed_ids_name_nothing() {
        for bad in [
            "",
            "T",
            "t000000000000123400000007",
            "T000000000000123400000007X",
            "T00000000000012340000000",
            "T00000000000012340000000g",
            "T00000000000012340000000a",
            "T+00000000000123400000007",
        ] {
            assert_eq!(TxnId::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn order_is_the_order_of_storing() {
        assert!(TxnId::new(5, 9) < TxnId::new(6, 0));
        assert!(TxnId::new(6, 0) < TxnId::new(6, 1));
    }
}
