//! The on-disk byte format, the same bytes in simulation and in production.
//!
//! A file is a header followed by records:
//!
//! ```text
//! header  magic "PAXSIMWL" | version u32 | flags u32 (0) | cluster id u64 | crc32c of the 24 bytes before
//! record  length u32 | crc32c(length) u32 | crc32c(payload) u32 | payload (length bytes)
//! ```
//!
//! All integers are little-endian. The length has its own checksum so that a
//! flipped bit in it is told apart from a write cut short. Reading classifies
//! what it finds the way recovery must act on it:
//!
//! - a file shorter than a header, or empty: **wiped** (never written, or
//!   lost whole); the replica rebuilds from its peers;
//! - a header that fails its checksum or magic, or any record that fails a
//!   checksum: **corrupt**; the replica rebuilds, because a durable record
//!   it may have acted on (a vote) can no longer be trusted;
//! - a header naming another cluster, or a format version other than this
//!   build's (newer, or older without a reader here): an **error** for the
//!   operator, never silently rebuilt over;
//! - a last record cut short (the file ends inside its 12-byte frame header
//!   or inside its payload): **torn**, a write that never completed and so
//!   was never acknowledged; it is dropped.
//!
//! A torn write can only shorten the file; a bit flip anywhere (header,
//! length, checksums, payload) fails a checksum. A record whose bytes are all
//! present but fail their checksum is corrupt even when it is the last one:
//! treating it as torn could drop a synced vote.

/// The format version this build writes, and the only one it reads. (What
/// each version means, payloads included, is `multipaxos::storage`'s.)
pub const VERSION: u32 = 3;
/// The header's first bytes.
pub const MAGIC: [u8; 8] = *b"PAXSIMWL";
/// Bytes in the file header.
pub const HEADER_LEN: usize = 28;
/// Bytes before each record's payload.
pub const FRAME_LEN: usize = 12;
/// The largest payload a record may carry (a snapshot included).
pub const MAX_RECORD: usize = 256 << 20;

/// The file header for `cluster`, naming no replica.
pub fn header(cluster: u64) -> [u8; HEADER_LEN] {
    header_of(cluster, None)
}

/// The file header for `cluster` and, if given, the replica whose file it
/// is (bytes 12..16: the replica's id plus one; 0 names none, as files
/// written before replicas were named do).
pub fn header_of(cluster: u64, replica: Option<u8>) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[..8].copy_from_slice(&MAGIC);
    h[8..12].copy_from_slice(&VERSION.to_le_bytes());
    let owner = replica.map_or(0, |r| u32::from(r) + 1);
    h[12..16].copy_from_slice(&owner.to_le_bytes());
    h[16..24].copy_from_slice(&cluster.to_le_bytes());
    let crc = crc32c::crc32c(&h[..24]);
    h[24..28].copy_from_slice(&crc.to_le_bytes());
    h
}

/// Appends one record holding `payload` to `out`.
pub fn frame_into(payload: &[u8], out: &mut Vec<u8>) {
    out.reserve(FRAME_LEN + payload.len());
    frame_with(out, |out| out.extend_from_slice(payload));
}

/// Appends one record to `out` whose payload `payload` appends in place
/// (an encoder writing straight into the file's buffer, with no copy).
pub fn frame_with(out: &mut Vec<u8>, payload: impl FnOnce(&mut Vec<u8>)) {
    let at = out.len();
    out.extend_from_slice(&[0; FRAME_LEN]);
    payload(out);
    assert!(
        out.len() >= at + FRAME_LEN,
        "the payload truncated the file"
    );
    let n = out.len() - at - FRAME_LEN;
    assert!(
        n <= MAX_RECORD,
        "a record of {n} bytes exceeds the {MAX_RECORD}-byte limit"
    );
    let len = (n as u32).to_le_bytes();
    let crc = crc32c::crc32c(&out[at + FRAME_LEN..]);
    out[at..at + 4].copy_from_slice(&len);
    out[at + 4..at + 8].copy_from_slice(&crc32c::crc32c(&len).to_le_bytes());
    out[at + 8..at + 12].copy_from_slice(&crc.to_le_bytes());
}

/// One record holding `payload`, framed.
pub fn frame(payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    frame_into(payload, &mut v);
    v
}

/// A well-formed file's contents.
#[derive(Debug, PartialEq, Eq)]
pub struct Contents<'a> {
    /// The payloads of the intact records, in order.
    pub records: Vec<&'a [u8]>,
    /// Bytes of a torn last record (0: none). The file's good part is
    /// `len - torn_bytes` long: recovery truncates it there.
    pub torn_bytes: usize,
}

/// Why a file cannot be read as this cluster's state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReadError {
    /// Empty, or shorter than a header: the replica rebuilds.
    Wiped,
    /// A checksum failed: the replica rebuilds. `at` is the byte offset of
    /// the header (0) or of the record's frame.
    Corrupt { at: usize, why: &'static str },
    /// The header names another cluster: the wrong data directory.
    OtherCluster { found: u64, expected: u64 },
    /// Written by a newer paxsim.
    NewerFormat { found: u32 },
    /// Written by an older paxsim, in a format this build has no reader for.
    OlderFormat { found: u32 },
}

impl std::fmt::Display for ReadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReadError::Wiped => write!(f, "no header: the file is empty or was never written"),
            ReadError::Corrupt { at, why } => write!(f, "corrupt at byte {at}: {why}"),
            ReadError::OtherCluster { found, expected } => write!(
                f,
                "the file belongs to cluster {found:#x}, not this cluster {expected:#x}"
            ),
            ReadError::NewerFormat { found } => write!(
                f,
                "format version {found} is newer than this build reads ({VERSION})"
            ),
            ReadError::OlderFormat { found } => write!(
                f,
                "format version {found} is older than this build reads ({VERSION}); \
                 this build has no reader for it"
            ),
        }
    }
}

/// The replica a file's header names, if its header is intact and names
/// one.
pub fn replica(bytes: &[u8]) -> Option<u8> {
    let h = bytes.get(..HEADER_LEN)?;
    if crc32c::crc32c(&h[..24]) != u32_at(h, 24) || h[..8] != MAGIC {
        return None;
    }
    u32_at(h, 12)
        .checked_sub(1)
        .and_then(|r| u8::try_from(r).ok())
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

/// Reads a file of `cluster` (see the module docs for what each outcome
/// means).
pub fn read(bytes: &[u8], cluster: u64) -> Result<Contents<'_>, ReadError> {
    if bytes.len() < HEADER_LEN {
        return Err(ReadError::Wiped);
    }
    let h = &bytes[..HEADER_LEN];
    if crc32c::crc32c(&h[..24]) != u32_at(h, 24) || h[..8] != MAGIC {
        return Err(ReadError::Corrupt {
            at: 0,
            why: "the file header fails its checksum",
        });
    }
    let version = u32_at(h, 8);
    if version > VERSION {
        return Err(ReadError::NewerFormat { found: version });
    }
    if version < VERSION {
        return Err(ReadError::OlderFormat { found: version });
    }
    let found = u64::from_le_bytes(h[16..24].try_into().expect("8 bytes"));
    if found != cluster {
        return Err(ReadError::OtherCluster {
            found,
            expected: cluster,
        });
    }
    let mut records = Vec::new();
    let mut at = HEADER_LEN;
    while at < bytes.len() {
        let rest = bytes.len() - at;
        if rest < FRAME_LEN {
            return Ok(Contents {
                records,
                torn_bytes: rest,
            });
        }
        let len = u32_at(bytes, at);
        if crc32c::crc32c(&len.to_le_bytes()) != u32_at(bytes, at + 4) {
            return Err(ReadError::Corrupt {
                at,
                why: "a record's length fails its checksum",
            });
        }
        let len = len as usize;
        if len > MAX_RECORD {
            return Err(ReadError::Corrupt {
                at,
                why: "a record's length exceeds the limit",
            });
        }
        if rest < FRAME_LEN + len {
            return Ok(Contents {
                records,
                torn_bytes: rest,
            });
        }
        let payload = &bytes[at + FRAME_LEN..at + FRAME_LEN + len];
        if crc32c::crc32c(payload) != u32_at(bytes, at + 8) {
            return Err(ReadError::Corrupt {
                at,
                why: "a record's payload fails its checksum",
            });
        }
        records.push(payload);
        at += FRAME_LEN + len;
    }
    Ok(Contents {
        records,
        torn_bytes: 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_header_names_its_replica_or_none() {
        assert_eq!(replica(&header_of(7, Some(3))), Some(3));
        assert_eq!(replica(&header_of(7, Some(0))), Some(0));
        assert_eq!(replica(&header(7)), None);
        let mut h = header_of(7, Some(3));
        h[12] ^= 1;
        assert_eq!(
            replica(&h),
            None,
            "a header failing its checksum names no one"
        );
        assert!(read(&header_of(7, Some(3)), 7).is_ok());
    }

    const CLUSTER: u64 = 0x5eed;

    fn file(payloads: &[Vec<u8>]) -> Vec<u8> {
        let mut f = header(CLUSTER).to_vec();
        for p in payloads {
            frame_into(p, &mut f);
        }
        f
    }

    fn payloads() -> impl Strategy<Value = Vec<Vec<u8>>> {
        proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..40), 1..6)
    }

    #[test]
    fn an_empty_or_short_file_is_wiped() {
        assert_eq!(read(&[], CLUSTER), Err(ReadError::Wiped));
        assert_eq!(read(&header(CLUSTER)[..27], CLUSTER), Err(ReadError::Wiped));
        let h = header(CLUSTER);
        let c = read(&h, CLUSTER).unwrap();
        assert!(c.records.is_empty() && c.torn_bytes == 0);
    }

    #[test]
    fn another_cluster_or_another_format_is_an_error_not_a_rebuild() {
        let f = file(&[b"x".to_vec()]);
        assert_eq!(
            read(&f, 7),
            Err(ReadError::OtherCluster {
                found: CLUSTER,
                expected: 7
            })
        );
        let version = |v: u32| {
            let mut g = f.clone();
            g[8..12].copy_from_slice(&v.to_le_bytes());
            let crc = crc32c::crc32c(&g[..24]);
            g[24..28].copy_from_slice(&crc.to_le_bytes());
            g
        };
        assert_eq!(
            read(&version(VERSION + 1), CLUSTER),
            Err(ReadError::NewerFormat { found: VERSION + 1 })
        );
        assert_eq!(
            read(&version(VERSION - 1), CLUSTER),
            Err(ReadError::OlderFormat { found: VERSION - 1 })
        );
    }

    proptest! {
        #[test]
        fn what_is_written_reads_back(ps in payloads()) {
            let f = file(&ps);
            let c = read(&f, CLUSTER).unwrap();
            prop_assert_eq!(c.torn_bytes, 0);
            prop_assert_eq!(c.records, ps.iter().map(|p| &p[..]).collect::<Vec<_>>());
        }

        /// A write cut anywhere inside the last record is torn: every
        /// earlier record reads back, and recovery drops exactly the cut one.
        #[test]
        fn a_cut_inside_the_last_record_is_torn(ps in payloads(), cut in any::<prop::sample::Index>()) {
            let whole = file(&ps);
            let last = FRAME_LEN + ps.last().unwrap().len();
            let keep = whole.len() - last + cut.index(last); // 0..last bytes of it
            let c = read(&whole[..keep], CLUSTER).unwrap();
            prop_assert_eq!(c.records.len(), ps.len() - 1);
            prop_assert_eq!(c.torn_bytes, keep - (whole.len() - last));
        }

        /// A flipped bit anywhere in the file (header, length, checksums,
        /// payload) is caught as corruption, never read as data or as a tear.
        #[test]
        fn a_flipped_bit_anywhere_is_corruption(ps in payloads(), bit in any::<prop::sample::Index>()) {
            let mut f = file(&ps);
            let b = bit.index(f.len() * 8);
            f[b / 8] ^= 1 << (b % 8);
            let r = read(&f, CLUSTER);
            prop_assert!(matches!(r, Err(ReadError::Corrupt { .. })), "bit {}: {:?}", b, r);
        }
    }
}
