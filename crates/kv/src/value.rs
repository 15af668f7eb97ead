//! A key's value: opaque bytes, as in etcd and ZooKeeper. The service never
//! looks inside one; it stores it, returns it and compares it by its bytes.
//!
//! A value of up to 7 bytes is held in place; a longer one is shared
//! (`Arc<[u8]>`): commands, log entries, snapshots and replies copy the
//! pointer, not the bytes, and the value is allocated once, where it is made
//! or decoded. (The simulator's values are short: in place, they cost it no
//! allocation and no atomic reference count.) It is at most [`VALUE_MAX`] bytes; the
//! machine itself accepts any length (limits are the service's, enforced
//! where bytes arrive: the client library and the server's request decoder).
//!
//! Encoding: with serde, a value is a byte string (postcard: its length as a
//! varint, then the bytes). In a human-readable format (JSON: traces and
//! histories) a value that is UTF-8 is written as a string and any other as
//! an array of bytes; either reads back.

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

/// The largest value, in bytes. A client request carries one, framed in at
/// most `paxkv`'s 64 KiB client frame; etcd's default request limit is
/// 1.5 MiB, ZooKeeper's znode limit 1 MiB, and a coordination service's
/// values are small (etcd's benchmarks use 256 bytes).
pub const VALUE_MAX: usize = 32 << 10;

/// Values this short are held in place: no allocation, no reference count.
/// Seven bytes, because then the enum below is 16 bytes, as an `Arc<[u8]>`
/// alone is (the inline bytes sit beside the pointer, whose never-null
/// word holds the variant).
const INLINE: usize = 7;

#[derive(Clone)]
pub struct Value(Repr);

/// A value of at most [`INLINE`] bytes is always `Inline`, a longer one
/// always `Shared`, so each value has one representation (equality,
/// ordering and hashing look at the bytes anyway).
#[derive(Clone)]
enum Repr {
    Inline { len: u8, bytes: [u8; INLINE] },
    Shared(Arc<[u8]>),
}

const _: () = assert!(std::mem::size_of::<Value>() == 16);

impl Value {
    pub fn as_bytes(&self) -> &[u8] {
        match &self.0 {
            Repr::Inline { len, bytes } => &bytes[..*len as usize],
            Repr::Shared(b) => b,
        }
    }
    pub fn len(&self) -> usize {
        self.as_bytes().len()
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The value as text, if it is UTF-8.
    pub fn as_str(&self) -> Option<&str> {
        std::str::from_utf8(self.as_bytes()).ok()
    }
}

impl PartialEq for Value {
    fn eq(&self, other: &Value) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}
impl Eq for Value {}

impl PartialOrd for Value {
    fn partial_cmp(&self, other: &Value) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Value {
    fn cmp(&self, other: &Value) -> std::cmp::Ordering {
        self.as_bytes().cmp(other.as_bytes())
    }
}

/// The bytes' hash, as `[u8]` hashes them (whatever the representation).
impl Hash for Value {
    fn hash<H: Hasher>(&self, h: &mut H) {
        self.as_bytes().hash(h);
    }
}

impl From<&[u8]> for Value {
    fn from(b: &[u8]) -> Value {
        if b.len() <= INLINE {
            let mut bytes = [0; INLINE];
            bytes[..b.len()].copy_from_slice(b);
            Value(Repr::Inline {
                len: b.len() as u8,
                bytes,
            })
        } else {
            Value(Repr::Shared(Arc::from(b)))
        }
    }
}

impl From<Vec<u8>> for Value {
    fn from(b: Vec<u8>) -> Value {
        if b.len() <= INLINE {
            Value::from(&b[..])
        } else {
            Value(Repr::Shared(Arc::from(b)))
        }
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Value {
        Value::from(s.as_bytes())
    }
}

/// The value whose bytes are `n`'s decimal digits: small, unique values that
/// read well in a trace (the simulator's workload and the Jepsen harness
/// write these). One allocation, no `String` in between.
impl From<u64> for Value {
    fn from(mut n: u64) -> Value {
        let mut buf = [0u8; 20];
        let mut at = buf.len();
        loop {
            at -= 1;
            buf[at] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        Value::from(&buf[at..])
    }
}

/// A UTF-8 value as a quoted string (`"42"`), any other as a byte string
/// with escapes (`b"\x00\xff"`).
impl fmt::Debug for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.as_str() {
            Some(s) => write!(f, "{s:?}"),
            None => write!(f, "b\"{}\"", self.as_bytes().escape_ascii()),
        }
    }
}

/// The text of a UTF-8 value as it is; any other as escaped bytes.
impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.as_str() {
            Some(s) => f.write_str(s),
            None => write!(f, "{}", self.as_bytes().escape_ascii()),
        }
    }
}

impl Serialize for Value {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            if let Some(text) = self.as_str() {
                return s.serialize_str(text);
            }
        }
        s.serialize_bytes(self.as_bytes())
    }
}

impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Value, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Value;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a byte string")
            }
            fn visit_bytes<E: de::Error>(self, b: &[u8]) -> Result<Value, E> {
                Ok(Value::from(b))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Value, E> {
                Ok(Value::from(s))
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
                let mut b = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(VALUE_MAX));
                while let Some(x) = seq.next_element::<u8>()? {
                    b.push(x);
                }
                Ok(Value::from(b))
            }
        }
        if d.is_human_readable() {
            d.deserialize_any(V)
        } else {
            d.deserialize_bytes(V)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_number_is_its_decimal_digits() {
        for n in [0, 7, 10, 42, 999_999, u64::MAX] {
            assert_eq!(Value::from(n).as_bytes(), n.to_string().as_bytes());
        }
    }

    #[test]
    fn short_and_long_values_compare_order_and_hash_by_their_bytes() {
        use rustc_hash::FxHasher;
        let hash = |v: &Value| {
            let mut h = FxHasher::default();
            v.hash(&mut h);
            h.finish()
        };
        let slice_hash = |b: &[u8]| {
            let mut h = FxHasher::default();
            b.hash(&mut h);
            h.finish()
        };
        // Around the inline limit, both ways of making a value.
        for n in [0, 1, INLINE - 1, INLINE, INLINE + 1, 100, 4096] {
            let bytes: Vec<u8> = (0..n).map(|i| i as u8).collect();
            let a = Value::from(&bytes[..]);
            let b = Value::from(bytes.clone());
            assert_eq!(a.as_bytes(), &bytes[..]);
            assert_eq!(a, b);
            assert_eq!(a.len(), n);
            assert_eq!(hash(&a), slice_hash(&bytes), "n = {n}");
            assert_eq!(a.clone(), a);
            let mut longer = bytes.clone();
            longer.push(0);
            let c = Value::from(longer);
            assert!(a < c, "n = {n}: a prefix sorts first");
            assert_ne!(a, c);
        }
        assert!(Value::from("b") > Value::from("abc"));
    }

    #[test]
    fn debug_and_display_show_text_as_text_and_other_bytes_escaped() {
        assert_eq!(format!("{:?}", Value::from(42)), "\"42\"");
        assert_eq!(format!("{}", Value::from("a b")), "a b");
        let bin = Value::from(&[0u8, 0xff, b'a'][..]);
        assert_eq!(format!("{bin:?}"), "b\"\\x00\\xffa\"");
        assert_eq!(format!("{bin}"), "\\x00\\xffa");
    }

    #[test]
    fn postcard_writes_the_length_then_the_bytes_and_reads_them_back() {
        let v = Value::from(&[1u8, 2, 3][..]);
        let b = postcard::to_stdvec(&v).unwrap();
        assert_eq!(b, [3, 1, 2, 3]);
        assert_eq!(postcard::from_bytes::<Value>(&b).unwrap(), v);
        let empty = Value::from(&[][..]);
        let b = postcard::to_stdvec(&empty).unwrap();
        assert_eq!(b, [0]);
        assert_eq!(postcard::from_bytes::<Value>(&b).unwrap(), empty);
        // A length past the end of the input is an error, not a panic.
        assert!(postcard::from_bytes::<Value>(&[200, 1, 1]).is_err());
    }

    #[test]
    fn json_writes_text_as_a_string_and_other_bytes_as_an_array() {
        let text = Value::from("17");
        let j = serde_json::to_string(&text).unwrap();
        assert_eq!(j, "\"17\"");
        assert_eq!(serde_json::from_str::<Value>(&j).unwrap(), text);
        let bin = Value::from(&[0u8, 0xff][..]);
        let j = serde_json::to_string(&bin).unwrap();
        assert_eq!(j, "[0,255]");
        assert_eq!(serde_json::from_str::<Value>(&j).unwrap(), bin);
    }
}
