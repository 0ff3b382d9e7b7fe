//! The decision cache (`authorizationPolicies.cache: Enabled`, behaviour.md §4): decisions
//! per (client, action, resource), bounded, one cache per installed policy.
//!
//! # What a key holds
//!
//! A decision is a pure function of the policy, the subject (client id, username,
//! attributes) and the action, so a key holds all of the subject and all of the action, in
//! full: the client id, the username, every attribute, the kind of action and its resource
//! (topic, filter as requested, state store key bytes). Lookups compare whole keys, never a
//! digest of them, so a hash collision costs a comparison and can never return another
//! client's decision.
//!
//! - **Policy change**: the cache belongs to the policy it was filled from
//!   ([`super::Authorizer::replace`] installs a new policy with a new, empty cache), so a
//!   check that raced with a reload can only write into the old, unreachable cache.
//! - **Re-authentication**: the new principal's username and attributes are part of every
//!   key it looks up, so decisions made for the old credentials are never found for the new
//!   ones (they still describe the old credentials correctly, and age out).
//!
//! # Bounds
//!
//! At most [`CAPACITY_ENTRIES`] decisions and about [`CAPACITY_BYTES`] of keys per policy:
//! every entry weighs its key's bytes plus [`ENTRY_OVERHEAD`], and at least
//! `CAPACITY_BYTES / CAPACITY_ENTRIES` (rounded up). A client that publishes to ever new (or long) topics
//! only evicts older entries (quick_cache's S3-FIFO-like policy keeps entries that are hit
//! again).
//!
//! A hit allocates nothing: the lookup key borrows the subject and the action
//! ([`quick_cache::Equivalent`]); only a miss builds an owned key.

use std::fmt;
use std::hash::{Hash, Hasher};

use quick_cache::sync::Cache;
use quick_cache::{Equivalent, Weighter};

use super::policy::{Action, Decision};
use super::template::Subject;

/// Most decisions one policy's cache keeps.
pub const CAPACITY_ENTRIES: usize = 100_000;
/// About how many bytes of keys one policy's cache keeps (topics may be 64 KiB long).
pub const CAPACITY_BYTES: u64 = 32 << 20;
/// Bytes counted per entry beyond its strings: the key's boxes, the decision, the map slot.
pub const ENTRY_OVERHEAD: u64 = 128;
/// The least an entry weighs, so that small keys are bounded by [`CAPACITY_ENTRIES`].
const MIN_WEIGHT: u64 = CAPACITY_BYTES.div_ceil(CAPACITY_ENTRIES as u64);

/// Which action, without its resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Connect,
    Publish,
    Subscribe,
    StateStoreRead,
    StateStoreWrite,
}

fn kind_and_resource<'a>(action: &Action<'a>) -> (Kind, &'a [u8]) {
    match *action {
        Action::Connect => (Kind::Connect, &[]),
        Action::Publish(topic) => (Kind::Publish, topic.as_bytes()),
        Action::Subscribe(filter) => (Kind::Subscribe, filter.as_bytes()),
        Action::StateStore { write: false, key } => (Kind::StateStoreRead, key),
        Action::StateStore { write: true, key } => (Kind::StateStoreWrite, key),
    }
}

/// One key, owned (stored in the cache).
struct Key {
    kind: Kind,
    resource: Box<[u8]>,
    client_id: Box<str>,
    username: Option<Box<str>>,
    attributes: Box<[(Box<str>, Box<str>)]>,
}

/// One key, borrowed (looked up; nothing is copied).
struct Lookup<'s, 'a> {
    kind: Kind,
    resource: &'s [u8],
    subject: &'s Subject<'a>,
}

/// Both key forms hash the same parts in the same order (quick_cache requires equal hashes
/// for equivalent keys); lengths first, so that parts cannot run into each other.
fn hash_parts<'k, H: Hasher>(
    state: &mut H,
    kind: Kind,
    resource: &[u8],
    client_id: &str,
    username: Option<&str>,
    attributes: impl ExactSizeIterator<Item = (&'k str, &'k str)>,
) {
    fn bytes<H: Hasher>(state: &mut H, b: &[u8]) {
        state.write_usize(b.len());
        state.write(b);
    }
    state.write_u8(kind as u8);
    bytes(state, resource);
    bytes(state, client_id.as_bytes());
    match username {
        None => state.write_u8(0),
        Some(u) => {
            state.write_u8(1);
            bytes(state, u.as_bytes());
        }
    }
    state.write_usize(attributes.len());
    for (k, v) in attributes {
        bytes(state, k.as_bytes());
        bytes(state, v.as_bytes());
    }
}

impl Hash for Key {
    fn hash<H: Hasher>(&self, state: &mut H) {
        hash_parts(
            state,
            self.kind,
            &self.resource,
            &self.client_id,
            self.username.as_deref(),
            self.attributes.iter().map(|(k, v)| (&**k, &**v)),
        );
    }
}

impl Hash for Lookup<'_, '_> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        hash_parts(
            state,
            self.kind,
            self.resource,
            self.subject.client_id,
            self.subject.username,
            self.subject
                .attributes
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str())),
        );
    }
}

impl PartialEq for Key {
    fn eq(&self, other: &Key) -> bool {
        self.kind == other.kind
            && self.resource == other.resource
            && self.client_id == other.client_id
            && self.username == other.username
            && self.attributes == other.attributes
    }
}

impl Eq for Key {}

impl Equivalent<Key> for Lookup<'_, '_> {
    fn equivalent(&self, key: &Key) -> bool {
        let s = self.subject;
        self.kind == key.kind
            && self.resource == &*key.resource
            && s.client_id == &*key.client_id
            && s.username == key.username.as_deref()
            && s.attributes.len() == key.attributes.len()
            && s.attributes
                .iter()
                .zip(key.attributes.iter())
                .all(|((k1, v1), (k2, v2))| k1.as_str() == &**k2 && v1.as_str() == &**v2)
    }
}

impl Lookup<'_, '_> {
    fn to_owned_key(&self) -> Key {
        let s = self.subject;
        Key {
            kind: self.kind,
            resource: self.resource.into(),
            client_id: s.client_id.into(),
            username: s.username.map(Into::into),
            attributes: s
                .attributes
                .iter()
                .map(|(k, v)| (k.as_str().into(), v.as_str().into()))
                .collect(),
        }
    }
}

impl Key {
    fn bytes(&self) -> u64 {
        let strings = self.resource.len()
            + self.client_id.len()
            + self.username.as_ref().map_or(0, |u| u.len())
            + self
                .attributes
                .iter()
                .map(|(k, v)| k.len() + v.len())
                .sum::<usize>();
        strings as u64 + 32 * self.attributes.len() as u64
    }
}

#[derive(Clone)]
struct Weigh;

impl Weighter<Key, Decision> for Weigh {
    fn weight(&self, key: &Key, _: &Decision) -> u64 {
        (key.bytes() + ENTRY_OVERHEAD).max(MIN_WEIGHT)
    }
}

/// The decisions of one policy.
pub(super) struct DecisionCache {
    entries: Cache<Key, Decision, Weigh>,
}

impl DecisionCache {
    pub(super) fn new() -> DecisionCache {
        DecisionCache {
            // Nothing is allocated until entries arrive.
            entries: Cache::with_weighter(CAPACITY_ENTRIES, CAPACITY_BYTES, Weigh),
        }
    }

    /// The cached decision, if any; otherwise `decide()`'s, which is then kept.
    /// The flag says whether it came from the cache.
    pub(super) fn get_or_decide(
        &self,
        subject: &Subject<'_>,
        action: &Action<'_>,
        decide: impl FnOnce() -> Decision,
    ) -> (Decision, bool) {
        let (kind, resource) = kind_and_resource(action);
        let lookup = Lookup {
            kind,
            resource,
            subject,
        };
        if let Some(decision) = self.entries.get(&lookup) {
            return (decision, true);
        }
        let decision = decide();
        self.entries.insert(lookup.to_owned_key(), decision.clone());
        (decision, false)
    }

    pub(super) fn len(&self) -> usize {
        self.entries.len()
    }
}

impl fmt::Debug for DecisionCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DecisionCache")
            .field("entries", &self.entries.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::hash::BuildHasher;

    use super::*;

    fn attrs(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn allow() -> Decision {
        Decision {
            allowed: true,
            rule: Some(0),
            reason: "allowed by rule",
        }
    }

    #[test]
    fn borrowed_and_owned_keys_hash_and_compare_alike() {
        let a = attrs(&[("building", "b22"), ("city", "seattle")]);
        let s = Subject {
            client_id: "dev-1",
            username: Some("alice"),
            attributes: &a,
        };
        let hasher = quick_cache::DefaultHashBuilder::default();
        for action in [
            Action::Connect,
            Action::Publish("a/b"),
            Action::Subscribe("$share/g/a/#"),
            Action::StateStore {
                write: true,
                key: &[0, 1, 2],
            },
        ] {
            let (kind, resource) = kind_and_resource(&action);
            let lookup = Lookup {
                kind,
                resource,
                subject: &s,
            };
            let key = lookup.to_owned_key();
            assert!(lookup.equivalent(&key));
            assert_eq!(hasher.hash_one(&lookup), hasher.hash_one(&key));
        }
    }

    /// Anything that differs (one attribute, the username, read vs write) is another key.
    #[test]
    fn every_part_of_the_subject_and_action_is_in_the_key() {
        let cache = DecisionCache::new();
        let a = attrs(&[("building", "b22")]);
        let b = attrs(&[("building", "b23")]);
        let more = attrs(&[("building", "b22"), ("x", "")]);
        let subject = |client_id, username, attributes| Subject {
            client_id,
            username,
            attributes,
        };
        let base = subject("c", Some("u"), &a);
        let publish = Action::Publish("t");
        assert_eq!(
            cache.get_or_decide(&base, &publish, allow),
            (allow(), false)
        );
        assert!(cache.get_or_decide(&base, &publish, || unreachable!()).1);
        let others = [
            subject("c", Some("u"), &b),
            subject("c", Some("u"), &more),
            subject("c", None, &a),
            subject("c", Some("v"), &a),
            subject("d", Some("u"), &a),
        ];
        for s in &others {
            assert!(!cache.get_or_decide(s, &publish, allow).1, "{s:?}");
        }
        for action in [
            Action::Publish("t/"),
            Action::Subscribe("t"),
            Action::Connect,
            Action::StateStore {
                write: false,
                key: b"t",
            },
            Action::StateStore {
                write: true,
                key: b"t",
            },
        ] {
            assert!(!cache.get_or_decide(&base, &action, allow).1, "{action:?}");
        }
        assert_eq!(cache.len(), 1 + others.len() + 5);
    }

    #[test]
    fn bounded_by_entries_and_by_bytes() {
        let cache = DecisionCache::new();
        let a = attrs(&[]);
        let s = Subject {
            client_id: "c",
            username: None,
            attributes: &a,
        };
        for i in 0..CAPACITY_ENTRIES + 20_000 {
            cache.get_or_decide(&s, &Action::Publish(&format!("t/{i}")), allow);
        }
        assert!(cache.len() <= CAPACITY_ENTRIES, "{}", cache.len());
        let cache = DecisionCache::new();
        let long = "x".repeat(60_000);
        for i in 0..1_000 {
            cache.get_or_decide(&s, &Action::Publish(&format!("{long}/{i}")), allow);
        }
        let bytes = cache.len() as u64 * (60_000 + ENTRY_OVERHEAD);
        assert!(bytes <= CAPACITY_BYTES, "{} entries", cache.len());
    }
}
