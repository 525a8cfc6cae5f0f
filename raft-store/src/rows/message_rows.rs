//! Message segments: consecutive messages of one queue as **one row** keyed by the first offset
//! (`keys::message_key(topic, queue, first)`). This is how snapshots carry messages (and how
//! the state machine's row model describes an apply's appends); the node itself keeps message
//! bodies in the queue files (`crate::files::queue_files`), and earlier versions kept these rows in sled
//! (moved into the files when such a node starts).
//!
//! Layout: `count: u32 BE`, then per message `len: u32 BE` and `len` bytes (a MessagePack
//! [`txmq_state::StoredMessage`]). The messages have the consecutive offsets
//! `first..first + count`. Offsets are dense per queue, so the segment holding offset `o` is the
//! row with the greatest key `<= message_key(topic, queue, o)`.

use std::io;

fn corrupt(what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("corrupt message segment: {what}"),
    )
}

/// Encodes already-encoded messages as one segment value.
pub fn encode(messages: &[Vec<u8>]) -> Vec<u8> {
    let size = 4 + messages.iter().map(|m| 4 + m.len()).sum::<usize>();
    let mut out = Vec::with_capacity(size);
    out.extend_from_slice(&(messages.len() as u32).to_be_bytes());
    for m in messages {
        out.extend_from_slice(&(m.len() as u32).to_be_bytes());
        out.extend_from_slice(m);
    }
    out
}

/// How many messages a segment holds (read from its header only).
pub fn count(value: &[u8]) -> io::Result<u64> {
    let header: [u8; 4] = value
        .get(..4)
        .and_then(|h| h.try_into().ok())
        .ok_or_else(|| corrupt("no header"))?;
    Ok(u64::from(u32::from_be_bytes(header)))
}

/// The encoded messages of a segment whose first offset is `first`: (offset, bytes).
pub fn decode(first: u64, value: &[u8]) -> io::Result<Vec<(u64, &[u8])>> {
    let n = count(value)?;
    // The count is read from disk: trust it only as far as the bytes could hold that many
    // messages (4 bytes each at least), or a damaged header asks for gigabytes (found by
    // fuzzing: fuzz/seeds/decode_stored/huge-count).
    let mut out = Vec::with_capacity((n as usize).min(value.len() / 4));
    let mut rest = &value[4..];
    for i in 0..n {
        let len: [u8; 4] = rest
            .get(..4)
            .and_then(|l| l.try_into().ok())
            .ok_or_else(|| corrupt("truncated length"))?;
        let len = u32::from_be_bytes(len) as usize;
        let bytes = rest
            .get(4..4 + len)
            .ok_or_else(|| corrupt("truncated message"))?;
        let offset = first
            .checked_add(i)
            .ok_or_else(|| corrupt("offsets past the largest"))?;
        out.push((offset, bytes));
        rest = &rest[4 + len..];
    }
    if !rest.is_empty() {
        return Err(corrupt("trailing bytes"));
    }
    Ok(out)
}

/// Of one queue's segment rows `(first offset, value)` in key order, the first offsets of those
/// that lie entirely below `below` (retention may delete them).
pub fn wholly_below<'a>(
    rows: impl IntoIterator<Item = (u64, &'a [u8])>,
    below: u64,
) -> io::Result<Vec<u64>> {
    let mut out = Vec::new();
    for (first, value) in rows {
        if first >= below {
            break;
        }
        if first + count(value)? <= below {
            out.push(first);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_damaged_count_is_an_error_not_a_huge_allocation() {
        // The fuzzer's find: a header claiming ~4 billion messages over a few bytes.
        let damaged = [0xff, 0xff, 0xff, 0xf0, 0, 0, 0, 1, 7];
        assert!(decode(0, &damaged).is_err());
        let one = encode(&[b"x".to_vec()]);
        assert!(decode(u64::MAX, &one).is_ok());
        assert!(decode(u64::MAX, &encode(&[b"x".to_vec(), b"y".to_vec()])).is_err());
    }

    #[test]
    fn round_trip_and_corruption() {
        let v = encode(&[b"a".to_vec(), b"bcd".to_vec(), Vec::new()]);
        assert_eq!(count(&v).unwrap(), 3);
        let d = decode(10, &v).unwrap();
        assert_eq!(d, vec![(10, &b"a"[..]), (11, &b"bcd"[..]), (12, &b""[..])]);
        assert!(decode(0, &v[..v.len() - 2]).is_err());
        assert!(decode(0, &[0, 0]).is_err());
        let mut extra = v.clone();
        extra.push(1);
        assert!(decode(0, &extra).is_err());
    }

    #[test]
    fn only_whole_segments_fall_below() {
        let two = encode(&[vec![1], vec![2]]);
        let three = encode(&[vec![1], vec![2], vec![3]]);
        let rows = [
            (0, two.as_slice()),
            (2, three.as_slice()),
            (5, two.as_slice()),
        ];
        assert_eq!(wholly_below(rows, 4).unwrap(), vec![0]);
        assert_eq!(wholly_below(rows, 5).unwrap(), vec![0, 2]);
        assert_eq!(wholly_below(rows, 7).unwrap(), vec![0, 2, 5]);
        assert_eq!(wholly_below(rows, 0).unwrap(), Vec::<u64>::new());
    }
}
