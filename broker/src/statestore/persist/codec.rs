//! The stored form of an [`Entry`]: the value of the `statestore` table, whose key is the
//! raw key bytes.
//!
//! Hand-written and versioned: a record starts with its layout version, so a later layout
//! can be read next to this one. Layout 1, integers as LEB128 varints (a wall clock in ms
//! takes 6 bytes, a counter usually 1):
//!
//! ```text
//! u8      layout version = 1
//! u8      flags: 1 = fencing token, 2 = expiry, 4 = persist flag, 8 = owner
//!         (other bits zero)
//! hlc     version         varint wall_ms, varint counter, varint length, node id (UTF-8)
//! hlc     fencing token   (flag 1)
//! varint  expires_at_ms   (flag 2)
//! str     owner           (flag 8) varint length, client id (UTF-8): the last writer,
//!                         whose per-client byte quota the key counts against
//! ...     value           the rest of the record
//! ```
//!
//! The owner flag was added later within layout 1: records written before it simply lack
//! it (their keys count against the total only); a build that predates it refuses records
//! that carry it (unknown flag) instead of misreading them.

use std::sync::Arc;

use bytes::Bytes;

use super::super::hlc::Hlc;
use super::super::store::Entry;

/// The layout this build writes.
const LAYOUT: u8 = 1;

const FENCING: u8 = 1;
const EXPIRY: u8 = 2;
const PERSIST: u8 = 4;
const OWNER: u8 = 8;

/// Why a stored record cannot be read back.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("empty record")]
    Empty,
    #[error("record layout {0} is unknown (this build reads layout {LAYOUT})")]
    UnknownLayout(u8),
    #[error("unknown flags 0x{0:02x}")]
    UnknownFlags(u8),
    #[error("record ends inside {0}")]
    Truncated(&'static str),
    #[error("{0} does not fit in 64 bits")]
    Overflow(&'static str),
    #[error("invalid node id in {0} (empty, not UTF-8, or contains ':')")]
    NodeId(&'static str),
    #[error("the owner is not UTF-8")]
    Owner,
}

/// The record of `entry`.
pub fn encode(entry: &Entry) -> Vec<u8> {
    let mut out = Vec::with_capacity(entry.value.len() + 32);
    let mut flags = 0;
    if entry.fencing_token.is_some() {
        flags |= FENCING;
    }
    if entry.expires_at_ms.is_some() {
        flags |= EXPIRY;
    }
    if entry.persist {
        flags |= PERSIST;
    }
    if entry.owner.is_some() {
        flags |= OWNER;
    }
    out.push(LAYOUT);
    out.push(flags);
    put_hlc(&mut out, &entry.version);
    if let Some(token) = &entry.fencing_token {
        put_hlc(&mut out, token);
    }
    if let Some(at) = entry.expires_at_ms {
        put_varint(&mut out, at);
    }
    if let Some(owner) = &entry.owner {
        put_varint(&mut out, owner.len() as u64);
        out.extend_from_slice(owner.as_bytes());
    }
    out.extend_from_slice(&entry.value);
    out
}

/// The entry of a record.
pub fn decode(record: &[u8]) -> Result<Entry, DecodeError> {
    let (&layout, rest) = record.split_first().ok_or(DecodeError::Empty)?;
    if layout != LAYOUT {
        return Err(DecodeError::UnknownLayout(layout));
    }
    let mut reader = Reader(rest);
    let flags = reader.byte("flags")?;
    if flags & !(FENCING | EXPIRY | PERSIST | OWNER) != 0 {
        return Err(DecodeError::UnknownFlags(flags));
    }
    let version = reader.hlc("version")?;
    let fencing_token = match flags & FENCING {
        0 => None,
        _ => Some(reader.hlc("fencing token")?),
    };
    let expires_at_ms = match flags & EXPIRY {
        0 => None,
        _ => Some(reader.varint("expiry")?),
    };
    let owner = match flags & OWNER {
        0 => None,
        _ => {
            let len = reader.varint("owner")?;
            let owner =
                std::str::from_utf8(reader.bytes(len, "owner")?).map_err(|_| DecodeError::Owner)?;
            Some(Arc::from(owner))
        }
    };
    Ok(Entry {
        value: Bytes::copy_from_slice(reader.0),
        version,
        fencing_token,
        expires_at_ms,
        persist: flags & PERSIST != 0,
        owner,
    })
}

fn put_varint(out: &mut Vec<u8>, mut n: u64) {
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

fn put_hlc(out: &mut Vec<u8>, hlc: &Hlc) {
    put_varint(out, hlc.wall_ms);
    put_varint(out, hlc.counter);
    put_varint(out, hlc.node_id.len() as u64);
    out.extend_from_slice(hlc.node_id.as_bytes());
}

/// The unread rest of a record.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn byte(&mut self, what: &'static str) -> Result<u8, DecodeError> {
        let (&b, rest) = self.0.split_first().ok_or(DecodeError::Truncated(what))?;
        self.0 = rest;
        Ok(b)
    }

    fn varint(&mut self, what: &'static str) -> Result<u64, DecodeError> {
        let mut n: u64 = 0;
        for shift in (0..64).step_by(7) {
            let b = self.byte(what)?;
            let bits = u64::from(b & 0x7F);
            if shift == 63 && bits > 1 {
                return Err(DecodeError::Overflow(what));
            }
            n |= bits << shift;
            if b & 0x80 == 0 {
                return Ok(n);
            }
        }
        Err(DecodeError::Overflow(what))
    }

    fn bytes(&mut self, len: u64, what: &'static str) -> Result<&'a [u8], DecodeError> {
        let len = usize::try_from(len).map_err(|_| DecodeError::Truncated(what))?;
        if len > self.0.len() {
            return Err(DecodeError::Truncated(what));
        }
        let (taken, rest) = self.0.split_at(len);
        self.0 = rest;
        Ok(taken)
    }

    fn hlc(&mut self, what: &'static str) -> Result<Hlc, DecodeError> {
        let wall_ms = self.varint(what)?;
        let counter = self.varint(what)?;
        let len = self.varint(what)?;
        let node_id = std::str::from_utf8(self.bytes(len, what)?)
            .ok()
            .filter(|id| !id.is_empty() && !id.contains(':'))
            .ok_or(DecodeError::NodeId(what))?;
        Ok(Hlc {
            wall_ms,
            counter,
            node_id: Arc::from(node_id),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hlc(s: &str) -> Hlc {
        s.parse().unwrap()
    }

    fn entry() -> Entry {
        Entry {
            value: Bytes::from_static(b"value\x00\xff"),
            version: hlc("1700000000000:3:gatehouse"),
            fencing_token: Some(hlc("1700000000001:0:client-1")),
            expires_at_ms: Some(1_700_000_060_000),
            persist: true,
            owner: Some(Arc::from("client-1")),
        }
    }

    #[test]
    fn roundtrips_every_field() {
        let e = entry();
        assert_eq!(decode(&encode(&e)), Ok(e));
    }

    #[test]
    fn roundtrips_without_fencing_token_expiry_or_persist_flag() {
        let e = Entry {
            fencing_token: None,
            expires_at_ms: None,
            persist: false,
            owner: None,
            ..entry()
        };
        let record = encode(&e);
        assert_eq!(record[1], 0, "no flags");
        assert_eq!(decode(&record), Ok(e));
    }

    #[test]
    fn roundtrips_empty_and_extreme_values() {
        let e = Entry {
            value: Bytes::new(),
            version: Hlc {
                wall_ms: u64::MAX,
                counter: u64::MAX,
                node_id: "n".into(),
            },
            fencing_token: Some(Hlc {
                wall_ms: 0,
                counter: 0,
                node_id: "é".repeat(200).into(),
            }),
            expires_at_ms: Some(u64::MAX),
            persist: false,
            owner: Some(Arc::from("")),
        };
        assert_eq!(decode(&encode(&e)), Ok(e));
    }

    #[test]
    fn is_compact() {
        let e = Entry {
            value: Bytes::from_static(b"v"),
            version: hlc("1700000000000:0:gh"),
            fencing_token: None,
            expires_at_ms: None,
            persist: false,
            owner: None,
        };
        // layout, flags, 6-byte wall clock, counter, length, "gh", value.
        assert_eq!(encode(&e).len(), 1 + 1 + 6 + 1 + 1 + 2 + 1);
    }

    #[test]
    fn damaged_records_are_errors() {
        let record = encode(&entry());
        assert_eq!(decode(&[]), Err(DecodeError::Empty));
        assert_eq!(decode(&[9]), Err(DecodeError::UnknownLayout(9)));
        assert_eq!(
            decode(&[LAYOUT, 0x80]),
            Err(DecodeError::UnknownFlags(0x80))
        );
        let bad_owner = [LAYOUT, OWNER, 1, 1, 1, b'n', 1, 0xFF];
        assert_eq!(decode(&bad_owner), Err(DecodeError::Owner));
        assert_eq!(decode(&[LAYOUT]), Err(DecodeError::Truncated("flags")));
        // Every cut inside the header (before the value) is an error, never a panic.
        let header = record.len() - entry().value.len();
        for cut in 2..header {
            assert!(decode(&record[..cut]).is_err(), "cut at {cut}");
        }
        let mut overlong = vec![LAYOUT, 0];
        overlong.extend([0xFF; 10]);
        overlong.push(0x01);
        assert_eq!(decode(&overlong), Err(DecodeError::Overflow("version")));
        let colon = [LAYOUT, 0, 1, 1, 3, b'a', b':', b'b'];
        assert_eq!(decode(&colon), Err(DecodeError::NodeId("version")));
        let not_utf8 = [LAYOUT, 0, 1, 1, 1, 0xFF];
        assert_eq!(decode(&not_utf8), Err(DecodeError::NodeId("version")));
        let empty_id = [LAYOUT, 0, 1, 1, 0];
        assert_eq!(decode(&empty_id), Err(DecodeError::NodeId("version")));
    }

    #[test]
    fn varints_roundtrip_at_the_edges() {
        for n in [0, 1, 127, 128, 16_383, 16_384, u64::MAX - 1, u64::MAX] {
            let mut out = Vec::new();
            put_varint(&mut out, n);
            let mut reader = Reader(&out);
            assert_eq!(reader.varint("n"), Ok(n));
            assert!(reader.0.is_empty());
        }
    }
}
