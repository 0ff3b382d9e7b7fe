//! The boundary where GET/SET/DEL/VDEL read and write keys when they do not live in this
//! node's own [`Store`](super::super::store::Store): cluster mode (issue 15) keeps them in a
//! store shared by every node (a JetStream key-value bucket, `cluster/statestore.rs`).
//!
//! The service stays the one place that decides: it reads the key's current record and
//! its revision, runs the request on a scratch [`Store`](super::super::store::Store)
//! holding only that record (the same code as a single node: fencing, NX/NEX, VDEL,
//! expiry, versions), and commits the resulting record by compare-and-set on the
//! revision. On a conflict (another node wrote the key in between) it reads again and
//! decides again on the fresh record, a bounded number of times.
//!
//! The calls block (the connection task that runs a request waits for the round trip):
//! the service is synchronous and its caller, the connection task, too. See
//! ARCHITECTURE.md "Cluster mode" for what that costs.

use super::super::hlc::Hlc;
use super::super::persist::codec;
use super::super::store::Entry;

/// What the shared store holds for one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stored {
    /// A live (or expired, not yet removed) entry.
    Live(Entry),
    /// Deleted (DEL, VDEL or expiry) with the delete's version: kept as a record so that
    /// every node's KEYNOTIFY gets the version, and a key created again gets a version
    /// above it.
    Deleted(Hlc),
}

/// First byte of a record.
const LIVE: u8 = b'S';
const DELETED: u8 = b'D';

impl Stored {
    /// The record's bytes: a tag, then the entry in the persistence codec's layout, or
    /// the delete's version as an HLC string.
    pub fn encode(&self) -> Vec<u8> {
        match self {
            Stored::Live(entry) => {
                let mut out = vec![LIVE];
                out.extend_from_slice(&codec::encode(entry));
                out
            }
            Stored::Deleted(version) => {
                let mut out = vec![DELETED];
                out.extend_from_slice(version.to_string().as_bytes());
                out
            }
        }
    }

    /// The record of `bytes`, or `None` when it is not one (another writer's).
    pub fn decode(bytes: &[u8]) -> Option<Stored> {
        let (&tag, rest) = bytes.split_first()?;
        match tag {
            LIVE => codec::decode(rest).ok().map(Stored::Live),
            DELETED => std::str::from_utf8(rest)
                .ok()?
                .parse::<Hlc>()
                .ok()
                .map(Stored::Deleted),
            _ => None,
        }
    }

    /// The version of the write that left this record.
    pub fn version(&self) -> &Hlc {
        match self {
            Stored::Live(entry) => &entry.version,
            Stored::Deleted(version) => version,
        }
    }
}

/// A key's current record and the revision to compare-and-set against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Current {
    /// The shared store's revision of the key's last write (any kind).
    pub revision: u64,
    /// `None`: the last write was not a Gatehouse record (e.g. a delete by an operator):
    /// the key is absent.
    pub stored: Option<Stored>,
}

/// Why a shared read or write did not happen.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SharedError {
    /// The key changed since it was read (compare-and-set lost): read and decide again.
    #[error("the key was written by another node meanwhile")]
    Conflict,
    /// The shared store did not answer (unreachable, no quorum, timeout) or refused.
    #[error("the shared state store is unavailable: {0}")]
    Unavailable(String),
}

/// The keys of the state store shared by every node (cluster mode).
pub trait SharedKeys: Send + Sync {
    /// The key's current record: its last write as seen by the store's leader, so a read
    /// sees every write acknowledged before it, this node's own included.
    fn read(&self, key: &[u8]) -> Result<Option<Current>, SharedError>;

    /// Write `record` if the key's last revision is still `expected` (`None`: the key has
    /// never been written); [`SharedError::Conflict`] otherwise. Returns the new revision.
    fn write(&self, key: &[u8], expected: Option<u64>, record: &Stored)
        -> Result<u64, SharedError>;
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use bytes::Bytes;

    use super::*;

    #[test]
    fn records_round_trip() {
        let version: Hlc = "001700000000000:00003:Gatehouse".parse().unwrap();
        let live = Stored::Live(Entry {
            value: Bytes::from_static(b"v\r\n\0"),
            version: version.clone(),
            fencing_token: Some("001700000000000:00001:c".parse().unwrap()),
            expires_at_ms: Some(1_700_000_001_000),
            persist: false,
            owner: Some(Arc::from("client")),
        });
        assert_eq!(Stored::decode(&live.encode()), Some(live.clone()));
        let deleted = Stored::Deleted(version.clone());
        assert_eq!(Stored::decode(&deleted.encode()), Some(deleted));
        assert_eq!(live.version(), &version);
        assert_eq!(Stored::decode(b""), None);
        assert_eq!(Stored::decode(b"Xabc"), None);
        assert_eq!(Stored::decode(b"Dnot a version"), None);
    }
}
