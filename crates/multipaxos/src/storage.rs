//! The on-disk format of a replica's durable state: bytes, the same in
//! simulation and in production.
//!
//! A replica's file is [`wal`]'s: a header naming the format version and the
//! cluster, then one length-prefixed, CRC32C-checked record per [`Write`].
//! A record's payload is the write encoded with [postcard] (a documented,
//! stable wire format). The first record is [`Write::Init`] (a new replica)
//! or [`Write::Rebuilt`] (a replica that rebuilt a lost disk from its peers);
//! either starts a new file ([`new_file`]), every other write is appended
//! ([`encode_into`]).
//!
//! **Version 3** ([`wal::VERSION`]) is wal's framing with postcard's encoding
//! of [`Write`] as its variants and fields stand; `the_encoding_is_pinned`
//! below fails when they change, and a change that moves the bytes needs a
//! new version (and a reader of the old one, or a clear refusal). The
//! command and snapshot types are the service's, so their encodings are part
//! of the format too: version 1 was the same framing and `Write` with the
//! coordination service's values as `u64`s; version 2 made them bytes
//! (`kv::Value`); version 3 added membership changes (a configuration
//! entry, [`Entry::Config`](crate::Entry), and the configurations a
//! snapshot carries). Older files are refused ([`Loaded::OlderFormat`]): no
//! reader of them is kept, as none was ever deployed beyond trials.
//!
//! [`load`] reads a file back and tells recovery what to do:
//! - [`Loaded::Ok`]: the durable state; a torn last record (a write that a
//!   crash cut short, so it was never acknowledged) is dropped, and the
//!   caller truncates the file to `len - torn_bytes`, as etcd's WAL does;
//! - [`Loaded::Wiped`]: no header, or no first record (the file was lost,
//!   or its creation never completed): rebuild from the peers
//!   ([`Node::rebuild`](crate::Node::rebuild));
//! - [`Loaded::Corrupt`]: a checksum failed anywhere (a bit flip in the
//!   header, a length, a checksum or a payload; a record whose bytes are all
//!   there fails even when it is the last one), or a payload passed its
//!   checksum but does not decode to a write that fits where it lies:
//!   rebuild, since a vote it held can no longer be trusted;
//! - [`Loaded::OtherCluster`], [`Loaded::NewerFormat`],
//!   [`Loaded::OlderFormat`]: the operator pointed the replica at the wrong
//!   file, downgraded it, or upgraded it past a format change. Never rebuilt
//!   over: a server reports them and stops.
//!
//! No IO here: the caller reads and writes the file.

use crate::{Durable, Write};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::fmt;

/// Whether `w` starts a new file instead of being appended: the first record
/// of every file, [`Write::Init`] or [`Write::Rebuilt`].
pub fn starts_file<C, S>(w: &Write<C, S>) -> bool {
    matches!(w, Write::Init | Write::Rebuilt(_))
}

/// Appends the record of `w` (frame and payload) to `out`.
pub fn encode_into<C: Serialize, S: Serialize>(w: &Write<C, S>, out: &mut Vec<u8>) {
    wal::frame_with(out, |out| {
        let v = std::mem::take(out);
        *out = postcard::to_extend(w, v).expect("a write always encodes");
    });
}

/// The record of `w`: what appending `w` adds to the file.
pub fn encode<C: Serialize, S: Serialize>(w: &Write<C, S>) -> Vec<u8> {
    // Room for the frame and a small write's payload: one allocation.
    let mut out = Vec::with_capacity(64);
    encode_into(w, &mut out);
    out
}

/// A new file of `cluster` holding `first` ([`Write::Init`] or
/// [`Write::Rebuilt`]): the header, then its record.
pub fn new_file<C: Serialize, S: Serialize>(cluster: u64, first: &Write<C, S>) -> Vec<u8> {
    new_file_of(cluster, None, first)
}

/// [`new_file`], naming the replica whose file it is (`wal::header_of`).
pub fn new_file_of<C: Serialize, S: Serialize>(
    cluster: u64,
    replica: Option<u8>,
    first: &Write<C, S>,
) -> Vec<u8> {
    assert!(starts_file(first), "a file starts with Init or Rebuilt");
    let mut out = Vec::with_capacity(wal::HEADER_LEN + 64);
    out.extend_from_slice(&wal::header_of(cluster, replica));
    encode_into(first, &mut out);
    out
}

/// The replica a file names, if any (files before replicas were named
/// name none).
pub fn replica_of(bytes: &[u8]) -> Option<u8> {
    wal::replica(bytes)
}

/// What [`load`] found in a file (see the module docs for what each means).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Loaded<C, S> {
    /// The durable state. The last `torn_bytes` bytes of the file are a torn
    /// record (0: none), dropped: truncate the file to `len - torn_bytes`.
    Ok {
        state: Durable<C, S>,
        torn_bytes: usize,
    },
    /// No header or no first record: the replica rebuilds.
    Wiped,
    /// The header (`at` 0) or the record whose frame starts at byte `at`
    /// failed a checksum, or does not decode: the replica rebuilds.
    Corrupt { at: usize, why: &'static str },
    /// The file belongs to another cluster: an operator's error.
    OtherCluster { found: u64, expected: u64 },
    /// The file was written by a newer format version: an operator's error.
    NewerFormat { found: u32 },
    /// The file was written by an older format version that this build
    /// cannot read: an operator's error.
    OlderFormat { found: u32 },
}

impl<C, S> fmt::Display for Loaded<C, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Loaded::Ok { torn_bytes: 0, .. } => write!(f, "intact"),
            Loaded::Ok { torn_bytes, .. } => {
                write!(f, "intact but for a torn last record of {torn_bytes} bytes")
            }
            Loaded::Wiped => wal::ReadError::Wiped.fmt(f),
            Loaded::Corrupt { at, why } => wal::ReadError::Corrupt { at: *at, why }.fmt(f),
            Loaded::OtherCluster { found, expected } => wal::ReadError::OtherCluster {
                found: *found,
                expected: *expected,
            }
            .fmt(f),
            Loaded::NewerFormat { found } => wal::ReadError::NewerFormat { found: *found }.fmt(f),
            Loaded::OlderFormat { found } => wal::ReadError::OlderFormat { found: *found }.fmt(f),
        }
    }
}

/// A record's frame (length, its checksum, the payload's checksum).
pub const FRAME_LEN: usize = wal::FRAME_LEN;
/// Bytes in a file's header, before its first record.
pub const HEADER_LEN: usize = wal::HEADER_LEN;

/// Reads the file `bytes` of `cluster` back into the durable state its
/// records describe.
pub fn load<C, S>(bytes: &[u8], cluster: u64) -> Loaded<C, S>
where
    C: DeserializeOwned + Clone,
    S: DeserializeOwned + Clone,
{
    let contents = match wal::read(bytes, cluster) {
        Ok(c) => c,
        Err(wal::ReadError::Wiped) => return Loaded::Wiped,
        Err(wal::ReadError::Corrupt { at, why }) => return Loaded::Corrupt { at, why },
        Err(wal::ReadError::OtherCluster { found, expected }) => {
            return Loaded::OtherCluster { found, expected }
        }
        Err(wal::ReadError::NewerFormat { found }) => return Loaded::NewerFormat { found },
        Err(wal::ReadError::OlderFormat { found }) => return Loaded::OlderFormat { found },
    };
    if contents.records.is_empty() {
        // A header and at most a torn first record: the file's creation
        // never completed, so nothing in it was ever acknowledged.
        return Loaded::Wiped;
    }
    let mut d = Durable::default();
    let mut at = wal::HEADER_LEN;
    for (i, payload) in contents.records.iter().enumerate() {
        let w: Write<C, S> = match postcard::take_from_bytes(payload) {
            Ok((w, [])) => w,
            _ => {
                return Loaded::Corrupt {
                    at,
                    why: "a record passes its checksum but does not decode",
                }
            }
        };
        if starts_file(&w) != (i == 0) {
            let why = if i == 0 {
                "the first record is neither Init nor Rebuilt"
            } else {
                "Init or Rebuilt after the first record"
            };
            return Loaded::Corrupt { at, why };
        }
        let snap = match &w {
            Write::Snapshot(s) => Some(s),
            Write::Rebuilt(r) => r.snapshot.as_ref(),
            _ => None,
        };
        if snap.is_some_and(|s| s.configs.keys().next().is_none_or(|k| *k > s.upto)) {
            // Every snapshot a node writes carries who votes after it.
            return Loaded::Corrupt {
                at,
                why: "a snapshot without its configuration",
            };
        }
        if snap.is_some_and(|s| !crate::types::configs_chain_ok(&s.configs)) {
            // What recovery would assert of them: refused instead.
            return Loaded::Corrupt {
                at,
                why: "a snapshot whose configurations do not follow each other",
            };
        }
        d.apply(&w);
        at += wal::FRAME_LEN + payload.len();
    }
    assert!(d.initialized, "an intact first record initializes");
    assert_eq!(at + contents.torn_bytes, bytes.len(), "every byte read");
    Loaded::Ok {
        state: d,
        torn_bytes: contents.torn_bytes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Entry, Snap};
    use paxos::Ballot;
    use proptest::prelude::*;

    const CLUSTER: u64 = 0xc105;
    type W = Write<u32, u32>;

    fn b(round: u32, node: u8) -> Ballot {
        Ballot { round, node }
    }

    fn writes() -> Vec<W> {
        vec![
            Write::Init,
            Write::Promise(b(2, 1)),
            Write::Accept {
                slot: 0,
                ballot: b(2, 1),
                entry: Entry::Cmds(vec![7, 8].into()),
            },
        ]
    }

    /// The file holding `ws` (the first starts it), and where each record ends.
    fn file(ws: &[W]) -> (Vec<u8>, Vec<usize>) {
        let mut f = new_file(CLUSTER, &ws[0]);
        let mut ends = vec![f.len()];
        for w in &ws[1..] {
            encode_into(w, &mut f);
            ends.push(f.len());
        }
        (f, ends)
    }

    fn replay(ws: &[W]) -> Durable<u32, u32> {
        let mut d = Durable::default();
        for w in ws {
            d.apply(w);
        }
        d
    }

    /// A snapshot as a node of three first voters writes it.
    fn first_snap(upto: u64, state: u32) -> Snap<u32> {
        Snap {
            configs: [(0, crate::Members::first(0b111))].into(),
            ..Snap::new(upto, state)
        }
    }

    /// A snapshot record without its configurations is refused as corrupt.
    #[test]
    fn a_snapshot_without_its_configuration_is_corrupt() {
        let mut ws = writes();
        ws.push(W::Snapshot(Snap::new(1, 9)));
        let (f, _) = file(&ws);
        assert!(matches!(
            loads(&f),
            Loaded::Corrupt {
                why: "a snapshot without its configuration",
                ..
            }
        ));
        // Two configurations of one epoch: not a chain a node writes.
        let mut ws = writes();
        ws.push(W::Snapshot(Snap {
            configs: [
                (0, crate::Members::first(0b111)),
                (1, crate::Members::first(0b11)),
            ]
            .into(),
            ..Snap::new(1, 9)
        }));
        let (f, _) = file(&ws);
        assert!(matches!(
            loads(&f),
            Loaded::Corrupt {
                why: "a snapshot whose configurations do not follow each other",
                ..
            }
        ));
    }

    fn loads(bytes: &[u8]) -> Loaded<u32, u32> {
        load(bytes, CLUSTER)
    }

    /// Postcard's encoding of a few writes, pinned: if this changes, the
    /// bytes on disk changed, and the format needs a new version.
    #[test]
    fn the_encoding_is_pinned() {
        let hex = |w: &W| -> String { encode(w).iter().map(|x| format!("{x:02x}")).collect() };
        assert_eq!(wal::VERSION, 3);
        let members = crate::Members {
            epoch: 3,
            voters: 0b1011,
            learners: 0b100,
            leaving: 0b1,
            gone: 0b1_0000,
        };
        let got: Vec<String> = [
            Write::Init,
            Write::Promise(b(2, 1)),
            writes()[2].clone(),
            Write::Snapshot(Snap {
                upto: 300,
                state: 5,
                configs: crate::Configs::from([(0, crate::Members::first(0b111)), (299, members)]),
            }),
            Write::Accept {
                slot: 4,
                ballot: b(2, 1),
                entry: Entry::Config(members),
            },
        ]
        .iter()
        .map(hex)
        .collect();
        // length | crc32c(length) | crc32c(payload) | payload, where the
        // payload is postcard's: the variant's index, then its fields
        // (integers as varints; Promise(2.1) is 01 02 01).
        let want = [
            "010000007fe1229551537d5200",
            "03000000fec2452ae9820b10010201",
            "08000000212823be94ee539f0200020101020708",
            // Snapshot(300, 5) with two configurations: 02 entries, slot 0
            // of epoch 0 voting {0,1,2}, slot 299 (ab02) of epoch 3 with
            // voters, learners, leaving and gone as u16 varints.
            "120000007bd9641e398e872a05ac020502000007000000ab02030b040110",
            // An acceptance of a configuration: Entry's third variant (02).
            "0a000000a00b44018f64d2ce0204020102030b040110",
        ];
        assert_eq!(got, want);
    }

    #[test]
    fn an_intact_file_loads_its_state() {
        let (f, _) = file(&writes());
        let Loaded::Ok { state, torn_bytes } = loads(&f) else {
            panic!("an intact file did not load")
        };
        assert_eq!(torn_bytes, 0);
        assert_eq!(state, replay(&writes()));
        assert_eq!(state.promised, b(2, 1));
        assert_eq!(state.accepted.len(), 1);
    }

    #[test]
    fn an_empty_file_or_a_header_alone_was_wiped() {
        assert_eq!(loads(&[]), Loaded::Wiped);
        assert_eq!(loads(&wal::header(CLUSTER)), Loaded::Wiped);
        assert_eq!(loads(&wal::header(CLUSTER)[..10]), Loaded::Wiped);
    }

    #[test]
    fn a_first_record_cut_anywhere_was_a_wipe() {
        // The file of a replica that crashed while creating it (Rebuilt is
        // written to a new file): nothing in it was ever acknowledged.
        let rebuilt = new_file::<u32, u32>(CLUSTER, &Write::Rebuilt(Box::new(replay(&writes()))));
        for cut in 0..rebuilt.len() {
            assert_eq!(loads(&rebuilt[..cut]), Loaded::Wiped, "cut at {cut}");
        }
        assert!(matches!(loads(&rebuilt), Loaded::Ok { .. }));
    }

    #[test]
    fn another_cluster_or_a_newer_format_is_refused_not_rebuilt_over() {
        let (f, _) = file(&writes());
        assert_eq!(
            load::<u32, u32>(&f, 7),
            Loaded::OtherCluster {
                found: CLUSTER,
                expected: 7
            }
        );
        let mut newer = f.clone();
        newer[8..12].copy_from_slice(&(wal::VERSION + 1).to_le_bytes());
        let sum = crc(&newer[..24]);
        newer[24..28].copy_from_slice(&sum.to_le_bytes());
        assert_eq!(
            loads(&newer),
            Loaded::NewerFormat {
                found: wal::VERSION + 1
            }
        );
        assert!(loads(&newer).to_string().contains("newer"));
        let mut older = f.clone();
        older[8..12].copy_from_slice(&(wal::VERSION - 1).to_le_bytes());
        let sum = crc(&older[..24]);
        older[24..28].copy_from_slice(&sum.to_le_bytes());
        assert_eq!(
            loads(&older),
            Loaded::OlderFormat {
                found: wal::VERSION - 1
            }
        );
        assert!(loads(&older).to_string().contains("older"));
    }

    /// The CRC32C wal uses (Castagnoli, reflected), to forge records whose
    /// checksums pass.
    fn crc(bytes: &[u8]) -> u32 {
        let mut c = !0u32;
        for &x in bytes {
            c ^= x as u32;
            for _ in 0..8 {
                c = if c & 1 == 1 {
                    (c >> 1) ^ 0x82f6_3b78
                } else {
                    c >> 1
                };
            }
        }
        !c
    }

    #[test]
    fn a_record_that_passes_its_checksum_but_does_not_decode_is_corrupt() {
        assert_eq!(crc(b"123456789"), 0xe306_9283, "the CRC32C check value");
        let (mut f, ends) = file(&writes());
        // A variant past the last one, checksummed as if it were written.
        let forged = wal::frame(&[0x7f]);
        f.extend_from_slice(&forged);
        assert_eq!(
            loads(&f),
            Loaded::Corrupt {
                at: ends[2],
                why: "a record passes its checksum but does not decode"
            }
        );
        // Trailing bytes after a whole write are not a write either.
        let (mut f, ends) = file(&writes());
        let mut p = postcard::to_stdvec(&W::Promise(b(3, 0))).unwrap();
        p.push(0);
        wal::frame_into(&p, &mut f);
        assert!(matches!(loads(&f), Loaded::Corrupt { at, .. } if at == ends[2]));
    }

    #[test]
    fn a_file_that_does_not_start_with_init_or_has_it_twice_is_corrupt() {
        let mut f = wal::header(CLUSTER).to_vec();
        encode_into(&W::Promise(b(1, 0)), &mut f);
        assert!(matches!(
            loads(&f),
            Loaded::Corrupt {
                at: wal::HEADER_LEN,
                ..
            }
        ));
        let (mut f, ends) = file(&writes());
        encode_into(&W::Init, &mut f);
        assert!(matches!(loads(&f), Loaded::Corrupt { at, .. } if at == ends[2]));
    }

    #[test]
    fn every_flipped_bit_of_every_record_is_corruption() {
        let (f, _) = file(&writes());
        for bit in 0..f.len() * 8 {
            let mut g = f.clone();
            g[bit / 8] ^= 1 << (bit % 8);
            let l = loads(&g);
            assert!(matches!(l, Loaded::Corrupt { .. }), "bit {bit}: {l:?}");
        }
    }

    #[test]
    fn the_newest_snapshot_on_disk_wins() {
        let snap = |upto, state| W::Snapshot(first_snap(upto, state));
        let mut ws = writes();
        ws.push(snap(3, 30));
        ws.push(snap(5, 50));
        let Loaded::Ok { state, .. } = loads(&file(&ws).0) else {
            panic!("an intact file did not load")
        };
        assert_eq!(state.snapshot.map(|s| (s.upto, s.state)), Some((5, 50)));
    }

    #[test]
    fn a_snapshot_record_drops_the_log_below_it_atomically() {
        let mut ws = writes();
        ws.push(W::Chosen {
            slot: 0,
            entry: Entry::Cmds(vec![7].into()),
        });
        ws.push(W::Snapshot(first_snap(1, 9)));
        let (f, ends) = file(&ws);
        let Loaded::Ok { state, .. } = loads(&f) else {
            panic!()
        };
        assert!(state.accepted.is_empty());
        assert!(state.chosen.is_empty());
        assert_eq!(state.base(), 1);
        // Torn while writing the snapshot: the log before it is intact.
        let Loaded::Ok { state, torn_bytes } = loads(&f[..f.len() - 1]) else {
            panic!()
        };
        assert_eq!((state.base(), state.chosen.len()), (0, 1));
        assert_eq!(torn_bytes, f.len() - 1 - ends[3]);
    }

    fn ballot() -> impl Strategy<Value = Ballot> {
        (0u32..4, 0u8..3).prop_map(|(round, node)| b(round, node))
    }

    fn entry() -> impl Strategy<Value = Entry<u32>> {
        prop_oneof![
            Just(Entry::Noop),
            proptest::collection::vec(any::<u32>(), 0..5).prop_map(|v| Entry::Cmds(v.into())),
        ]
    }

    fn write() -> impl Strategy<Value = W> {
        prop_oneof![
            ballot().prop_map(W::Promise),
            (0u64..20, ballot(), entry()).prop_map(|(slot, ballot, entry)| W::Accept {
                slot,
                ballot,
                entry
            }),
            (0u64..20, entry()).prop_map(|(slot, entry)| W::Chosen { slot, entry }),
            (0u64..20).prop_map(|slot| W::ChosenMark { slot }),
            (0u64..20, any::<u32>()).prop_map(|(upto, state)| W::Snapshot(first_snap(upto, state))),
        ]
    }

    /// A file's writes: Init or a Rebuilt state first, then 1..8 others.
    fn disk() -> impl Strategy<Value = Vec<W>> {
        let first = prop_oneof![
            Just(W::Init),
            proptest::collection::vec(write(), 0..4).prop_map(|ws| {
                let mut all = vec![W::Init];
                all.extend(ws);
                W::Rebuilt(Box::new(replay(&all)))
            }),
        ];
        (first, proptest::collection::vec(write(), 1..8)).prop_map(|(f, mut ws)| {
            ws.insert(0, f);
            ws
        })
    }

    proptest! {
        #[test]
        fn what_is_encoded_loads_back(ws in disk()) {
            let (f, _) = file(&ws);
            prop_assert_eq!(loads(&f), Loaded::Ok { state: replay(&ws), torn_bytes: 0 });
        }

        /// A flip of any bit of any record (the header and the first record
        /// included) makes the file corrupt: never a different state, never
        /// a tear.
        #[test]
        fn a_flipped_bit_anywhere_is_corruption(ws in disk(), bit in any::<prop::sample::Index>()) {
            let (mut f, _) = file(&ws);
            let bit = bit.index(f.len() * 8);
            f[bit / 8] ^= 1 << (bit % 8);
            let l = loads(&f);
            prop_assert!(matches!(l, Loaded::Corrupt { .. }), "bit {}: {:?}", bit, l);
        }

        /// A cut anywhere inside the last record is a torn tail: recovery
        /// drops exactly it, and every earlier write is intact.
        #[test]
        fn a_cut_inside_the_last_record_is_a_torn_tail(ws in disk(), cut in any::<prop::sample::Index>()) {
            let (f, ends) = file(&ws);
            let before = ends[ends.len() - 2];
            let keep = before + cut.index(f.len() - before);
            prop_assert_eq!(
                loads(&f[..keep]),
                Loaded::Ok { state: replay(&ws[..ws.len() - 1]), torn_bytes: keep - before }
            );
        }
    }
}
