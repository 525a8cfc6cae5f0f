//! The frame both file formats use (the Raft log's segments and the queue files):
//! `[len: u32 LE][crc32 of payload: u32 LE][payload]`. A frame that is incomplete or fails its
//! checksum reads as absent, which at the end of a file means a write torn by a crash.

/// Frame header bytes.
pub const HEADER: usize = 8;
/// Bigger frames are not ours: the client and peer limits keep payloads far below.
pub const MAX_PAYLOAD: usize = 256 * 1024 * 1024;

/// Starts a frame at the end of `buf`; write the payload after it, then call [`finish`] with
/// the returned start.
pub fn begin(buf: &mut Vec<u8>) -> usize {
    let start = buf.len();
    buf.extend_from_slice(&[0u8; HEADER]);
    start
}

/// Fills in the header of the frame begun at `start`. Errors if the payload is too large.
pub fn finish(buf: &mut [u8], start: usize) -> std::io::Result<()> {
    let payload = &buf[start + HEADER..];
    let len = u32::try_from(payload.len())
        .ok()
        .filter(|l| (*l as usize) <= MAX_PAYLOAD)
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidInput, "frame too large"))?;
    let crc = crc32fast::hash(payload);
    buf[start..start + 4].copy_from_slice(&len.to_le_bytes());
    buf[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
    Ok(())
}

/// Appends `payload` as one frame.
pub fn write(buf: &mut Vec<u8>, payload: &[u8]) -> std::io::Result<()> {
    let start = begin(buf);
    buf.extend_from_slice(payload);
    finish(buf, start)
}

/// The payload of the frame at the start of `bytes` and the frame's total length, or `None`
/// if it is incomplete or fails its checksum.
pub fn read(bytes: &[u8]) -> Option<(&[u8], usize)> {
    let header = bytes.get(..HEADER)?;
    let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
    let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
    if len > MAX_PAYLOAD {
        return None;
    }
    let payload = bytes.get(HEADER..HEADER + len)?;
    (crc32fast::hash(payload) == crc).then_some((payload, HEADER + len))
}

/// The total length of the frame at the start of `bytes` as its header says (to read the rest).
pub fn declared_len(header: &[u8]) -> Option<usize> {
    let header = header.get(..HEADER)?;
    let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
    (len <= MAX_PAYLOAD).then_some(HEADER + len)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_torn_and_flipped() {
        let mut buf = Vec::new();
        write(&mut buf, b"hello").unwrap();
        write(&mut buf, b"").unwrap();
        let (p, n) = read(&buf).unwrap();
        assert_eq!((p, n), (&b"hello"[..], HEADER + 5));
        assert_eq!(read(&buf[n..]).unwrap(), (&b""[..], HEADER));
        assert!(read(&buf[..n - 1]).is_none());
        let mut flipped = buf.clone();
        flipped[HEADER + 1] ^= 1;
        assert!(read(&flipped).is_none());
        assert_eq!(declared_len(&buf), Some(HEADER + 5));
    }
}
