//! Which stored bodies the journal's delivery records reference, and how many times: a
//! message queued for many persisted sessions is stored once (`bodies` table) and each
//! delivery record names it by id (see [`super::records`]).
//!
//! A body is known by the message it stores: the router hands every subscriber of one
//! publish the same `Arc<Message>`, so its address identifies the publish without a field
//! in [`Message`] or a step in routing. Each entry keeps a [`Weak`] to the message, which
//! keeps the allocation (not the payload) alive, so the address cannot be reused by
//! another message while the entry exists. Entries go when their last delivery record does.
//!
//! Reference counts live here only, never on disk: restore rebuilds them from the delivery
//! records, so a crash cannot leave a count that disagrees with the records.

use std::collections::HashMap;
use std::sync::{Arc, Weak};

use crate::message::Message;

#[derive(Debug)]
struct Body {
    id: u64,
    /// Delivery records (written or pending) that reference it.
    refs: u64,
    /// Pins the message's allocation, hence its address (see the module docs).
    _pin: Weak<Message>,
}

/// The bodies referenced by delivery records, and the next body id.
#[derive(Debug, Default)]
pub(super) struct Bodies {
    by_message: HashMap<usize, Body, BuildAddressHasher>,
    next_id: u64,
}

fn address(m: &Arc<Message>) -> usize {
    Arc::as_ptr(m) as usize
}

impl Bodies {
    /// Bodies restored at start: each message with its id and the number of delivery
    /// records that reference it; ids go on after `next_id`.
    pub(super) fn restored(
        bodies: impl IntoIterator<Item = (u64, Arc<Message>, u64)>,
        next_id: u64,
    ) -> Bodies {
        let mut out = Bodies {
            by_message: HashMap::default(),
            next_id,
        };
        for (id, message, refs) in bodies {
            out.next_id = out.next_id.max(id + 1);
            out.by_message.insert(
                address(&message),
                Body {
                    id,
                    refs,
                    _pin: Arc::downgrade(&message),
                },
            );
        }
        out
    }

    /// The id of `m`'s body, if a delivery record references it.
    pub(super) fn id_of(&self, m: &Arc<Message>) -> Option<u64> {
        self.by_message.get(&address(m)).map(|b| b.id)
    }

    /// One more delivery record references `m`'s body: its id, or `None` when it has no
    /// body yet (see [`Bodies::create`]).
    pub(super) fn acquire(&mut self, m: &Arc<Message>) -> Option<u64> {
        let body = self.by_message.get_mut(&address(m))?;
        body.refs += 1;
        Some(body.id)
    }

    /// `m` gets a body, referenced once: its new id.
    pub(super) fn create(&mut self, m: &Arc<Message>) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        self.by_message.insert(
            address(m),
            Body {
                id,
                refs: 1,
                _pin: Arc::downgrade(m),
            },
        );
        id
    }

    /// One delivery record of `m` is gone: the body's id when that was its last one (the
    /// body goes too), else `None` (also for a message without a body).
    pub(super) fn release(&mut self, m: &Arc<Message>) -> Option<u64> {
        let key = address(m);
        let body = self.by_message.get_mut(&key)?;
        body.refs -= 1;
        if body.refs > 0 {
            return None;
        }
        self.by_message.remove(&key).map(|b| b.id)
    }

    /// How many bodies are referenced (tests).
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.by_message.len()
    }
}

/// Addresses of live allocations are distinct and never chosen by a client, so a
/// multiplicative hash spreads them well; SipHash would cost more than the lookup is
/// worth on the fan-out path (one per persisted delivery).
#[derive(Default, Clone, Copy)]
struct BuildAddressHasher;

#[derive(Default)]
struct AddressHasher(u64);

impl std::hash::BuildHasher for BuildAddressHasher {
    type Hasher = AddressHasher;

    fn build_hasher(&self) -> AddressHasher {
        AddressHasher(0)
    }
}

impl std::hash::Hasher for AddressHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(*b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }

    fn write_usize(&mut self, n: usize) {
        // Allocations are at least 8-byte aligned: the low bits carry nothing.
        self.0 = ((n as u64) >> 3).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use gatehouse_protocol::{PublishProperties, QoS};

    use super::*;

    fn message() -> Arc<Message> {
        Arc::new(Message {
            topic: "t".into(),
            payload: Bytes::from_static(b"p"),
            qos: QoS::AtLeastOnce,
            retain: false,
            properties: PublishProperties::default(),
            expires_at: None,
            origin: None,
        })
    }

    #[test]
    fn a_body_lives_until_its_last_reference() {
        let mut bodies = Bodies::restored([], 5);
        let (a, b) = (message(), message());
        assert_eq!(bodies.acquire(&a), None);
        assert_eq!(bodies.create(&a), 5);
        assert_eq!(bodies.acquire(&a.clone()), Some(5));
        assert_eq!(bodies.create(&b), 6);
        assert_eq!(bodies.id_of(&a), Some(5));
        assert_eq!(bodies.release(&a), None);
        assert_eq!(bodies.release(&a), Some(5));
        assert_eq!(bodies.id_of(&a), None);
        assert_eq!(bodies.release(&a), None, "no body, nothing to release");
        assert_eq!(bodies.release(&b), Some(6));
        assert_eq!(bodies.len(), 0);
        // Ids never repeat within a run.
        assert_eq!(bodies.create(&a), 7);
    }

    #[test]
    fn restored_bodies_keep_their_ids_and_counts() {
        let (a, b) = (message(), message());
        let mut bodies = Bodies::restored([(9, a.clone(), 2), (3, b.clone(), 1)], 4);
        assert_eq!(bodies.id_of(&a), Some(9));
        assert_eq!(bodies.release(&b), Some(3));
        assert_eq!(bodies.release(&a), None);
        assert_eq!(bodies.release(&a), Some(9));
        assert_eq!(bodies.create(&message()), 10);
    }
}
