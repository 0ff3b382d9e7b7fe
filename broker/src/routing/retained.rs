//! Retained messages, indexed by topic level so a subscription's filter walks only the
//! branches it can match instead of scanning every retained topic.
//!
//! The store also keeps what the caps need (count and bytes, see [`Caps`]) and a sequence
//! number per entry, so a new subscription can walk its matches lazily
//! ([`RetainedStore::next_match`]) in topic order, a few at a time, and still see exactly
//! the messages that were retained when it subscribed: entries set later carry a higher
//! sequence number (and reach the subscriber as live messages instead).

use std::collections::BTreeMap;
use std::ops::Bound;

#[derive(Debug)]
struct Entry<V> {
    value: V,
    /// When it was set (see [`RetainedStore::seq`]).
    seq: u64,
    /// What it counts against `maxRetainedBytes`.
    size: usize,
}

#[derive(Debug)]
struct Node<V> {
    /// Ordered, so a lazy walk can resume after the last topic it returned.
    children: BTreeMap<Box<str>, Node<V>>,
    value: Option<Entry<V>>,
}

impl<V> Default for Node<V> {
    fn default() -> Self {
        Node {
            children: BTreeMap::new(),
            value: None,
        }
    }
}

/// `broker.maxRetainedMessages` and `broker.maxRetainedBytes`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caps {
    pub max_messages: usize,
    pub max_bytes: usize,
}

/// Why a retained message was not stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RetainRefused {
    #[error(
        "the retained message store holds its maximum of {0} messages (broker.maxRetainedMessages)"
    )]
    Count(usize),
    #[error("the retained message store would exceed its maximum of {0} bytes (broker.maxRetainedBytes)")]
    Bytes(usize),
    /// The store cannot keep it now (cluster mode: JetStream has no quorum).
    #[error("retained messages cannot be stored now (cluster mode: JetStream does not answer)")]
    Unavailable,
}

#[derive(Debug)]
pub struct RetainedStore<V> {
    root: Node<V>,
    len: usize,
    bytes: usize,
    /// The sequence number of the latest `set`.
    seq: u64,
}

impl<V> Default for RetainedStore<V> {
    fn default() -> Self {
        RetainedStore {
            root: Node::default(),
            len: 0,
            bytes: 0,
            seq: 0,
        }
    }
}

impl<V> RetainedStore<V> {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// What the stored entries count against `maxRetainedBytes`, together.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// The sequence number of the latest change: a walk with this `max_seq` sees the store
    /// as it is now, ignoring entries set afterwards.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// Store `value` (counting `size` bytes) for `topic`, replacing any previous one,
    /// whatever the caps say (retained messages restored at start).
    pub fn set(&mut self, topic: &str, value: V, size: usize) {
        self.seq += 1;
        let entry = Entry {
            value,
            seq: self.seq,
            size,
        };
        let mut node = &mut self.root;
        for level in topic.split('/') {
            node = node.children.entry(level.into()).or_default();
        }
        match node.value.replace(entry) {
            Some(old) => self.bytes -= old.size,
            None => self.len += 1,
        }
        self.bytes += size;
    }

    /// [`Self::set`] within `caps`. Replacing a topic's message never adds to the count,
    /// and a replacement no larger than the message it replaces is always accepted (so a
    /// full store can still be updated in place); clearing is [`Self::remove`].
    pub fn try_set(
        &mut self,
        topic: &str,
        value: V,
        size: usize,
        caps: Caps,
    ) -> Result<(), RetainRefused> {
        let old = self.get_entry(topic).map(|e| e.size);
        if old.is_none() && self.len >= caps.max_messages {
            return Err(RetainRefused::Count(caps.max_messages));
        }
        let old_size = old.unwrap_or(0);
        if size > old_size && self.bytes - old_size + size > caps.max_bytes {
            return Err(RetainRefused::Bytes(caps.max_bytes));
        }
        self.set(topic, value, size);
        Ok(())
    }

    fn get_entry(&self, topic: &str) -> Option<&Entry<V>> {
        let mut node = &self.root;
        for level in topic.split('/') {
            node = node.children.get(level)?;
        }
        node.value.as_ref()
    }

    /// Clear the retained message of `topic` (a PUBLISH with an empty payload).
    pub fn remove(&mut self, topic: &str) -> Option<V> {
        let levels: Vec<&str> = topic.split('/').collect();
        let removed = remove(&mut self.root, &levels)?;
        self.len -= 1;
        self.bytes -= removed.size;
        Some(removed.value)
    }

    /// Every retained value whose topic matches `filter` (valid, non-shared), in topic
    /// order (a walk with [`Self::next_match`] to the end; tests and benchmarks).
    pub fn matching(&self, filter: &str) -> Vec<&V> {
        let mut out = Vec::new();
        let mut after: Option<String> = None;
        while let Some((topic, v)) = self.next_match(filter, after.as_deref(), u64::MAX) {
            out.push(v);
            after = Some(topic);
        }
        out
    }

    /// The first retained value after topic `after` (in topic order: level by level, a
    /// topic before the topics below it; `None` = from the start) whose topic matches
    /// `filter` (valid, non-shared) and that was set at or before `max_seq`, with its
    /// topic. A walk holds only its position, so it costs no memory per match, and
    /// entries removed or replaced after it started are not returned.
    pub fn next_match(
        &self,
        filter: &str,
        after: Option<&str>,
        max_seq: u64,
    ) -> Option<(String, &V)> {
        let filter: Vec<&str> = filter.split('/').collect();
        let after: Option<Vec<&str>> = after.map(|a| a.split('/').collect());
        let mut path = Vec::new();
        let found = seek(
            &self.root,
            &filter,
            true,
            after.as_deref(),
            max_seq,
            &mut path,
        )?;
        Some((path.join("/"), found))
    }

    /// Drop entries for which `keep` is false (expired messages).
    pub fn retain(&mut self, mut keep: impl FnMut(&V) -> bool) {
        let (mut removed, mut bytes) = (0, 0);
        prune(&mut self.root, &mut keep, &mut removed, &mut bytes);
        self.len -= removed;
        self.bytes -= bytes;
    }
}

fn remove<V>(node: &mut Node<V>, levels: &[&str]) -> Option<Entry<V>> {
    match levels.split_first() {
        None => node.value.take(),
        Some((level, rest)) => {
            let child = node.children.get_mut(*level)?;
            let removed = remove(child, rest);
            if child.value.is_none() && child.children.is_empty() {
                node.children.remove(*level);
            }
            removed
        }
    }
}

/// The first value in `node`'s subtree, in topic order, that matches `filter` (the filter
/// levels left at this node), was set at or before `max_seq`, and lies strictly after
/// this node's path followed by `after` (`None`: anywhere in the subtree). `path` gets
/// the levels down to the value found.
fn seek<'a, V>(
    node: &'a Node<V>,
    filter: &[&str],
    at_root: bool,
    after: Option<&[&str]>,
    max_seq: u64,
    path: &mut Vec<&'a str>,
) -> Option<&'a V> {
    let Some((&level, rest)) = filter.split_first() else {
        // The whole filter matched down to here: this node's own value, nothing below.
        return node
            .value
            .as_ref()
            .filter(|e| after.is_none() && e.seq <= max_seq)
            .map(|e| &e.value);
    };
    // "a/#" matches "a" itself (the node before the "#" level), then everything below.
    if level == "#" && !at_root && after.is_none() {
        if let Some(e) = node.value.as_ref().filter(|e| e.seq <= max_seq) {
            return Some(&e.value);
        }
    }
    // The bound for the children: those before its first level are skipped, the one
    // on it continues the bound, the ones after it are unbounded.
    let (start, below): (Option<&str>, Option<&[&str]>) = match after {
        Some([first, tail @ ..]) => (Some(first), Some(tail)),
        _ => (None, None),
    };
    // Below "#", everything matches: the child keeps the "#".
    let child_filter = if level == "#" { filter } else { rest };
    let visit = |name: &'a str, child: &'a Node<V>, path: &mut Vec<&'a str>| {
        let bound = if start == Some(name) { below } else { None };
        path.push(name);
        let found = seek(child, child_filter, false, bound, max_seq, path);
        if found.is_none() {
            path.pop();
        }
        found
    };
    match level {
        "#" | "+" => {
            let lower = start.map_or(Bound::Unbounded, Bound::Included);
            for (name, child) in node.children.range::<str, _>((lower, Bound::Unbounded)) {
                // Wildcards at the first level do not match `$` topics (MQTT 5 §4.7.2).
                if at_root && name.starts_with('$') {
                    continue;
                }
                if let Some(found) = visit(name, child, path) {
                    return Some(found);
                }
            }
            None
        }
        exact => {
            if start.is_some_and(|s| exact < s) {
                return None;
            }
            let (name, child) = node.children.get_key_value(exact)?;
            visit(name, child, path)
        }
    }
}

fn prune<V>(
    node: &mut Node<V>,
    keep: &mut impl FnMut(&V) -> bool,
    removed: &mut usize,
    bytes: &mut usize,
) {
    if let Some(e) = node.value.take_if(|e| !keep(&e.value)) {
        *removed += 1;
        *bytes += e.size;
    }
    node.children.retain(|_, child| {
        prune(child, keep, removed, bytes);
        child.value.is_some() || !child.children.is_empty()
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topics(store: &RetainedStore<String>, filter: &str) -> Vec<String> {
        let mut v: Vec<String> = store.matching(filter).into_iter().cloned().collect();
        v.sort();
        v
    }

    fn store(topics: &[&str]) -> RetainedStore<String> {
        let mut s = RetainedStore::default();
        for t in topics {
            s.set(t, t.to_string(), t.len());
        }
        s
    }

    #[test]
    fn filters_select_retained_topics() {
        let s = store(&["a", "a/b", "a/b/c", "a/x", "$SYS/up", "/lead"]);
        assert_eq!(topics(&s, "a/#"), ["a", "a/b", "a/b/c", "a/x"]);
        assert_eq!(topics(&s, "a/+"), ["a/b", "a/x"]);
        assert_eq!(topics(&s, "#"), ["/lead", "a", "a/b", "a/b/c", "a/x"]);
        assert_eq!(topics(&s, "+"), ["a"]);
        assert_eq!(topics(&s, "+/+"), ["/lead", "a/b", "a/x"]);
        assert_eq!(topics(&s, "$SYS/#"), ["$SYS/up"]);
        assert_eq!(topics(&s, "a/b"), ["a/b"]);
        assert_eq!(topics(&s, "a/b/#"), ["a/b", "a/b/c"]);
        assert_eq!(topics(&s, "+/b/+"), ["a/b/c"]);
        assert_eq!(s.len(), 6);
        assert_eq!(s.bytes(), 1 + 3 + 5 + 3 + 7 + 5);
    }

    #[test]
    fn walks_agree_with_topic_matches_and_come_in_topic_order() {
        let filters = [
            "#", "+", "a/#", "a/+", "+/b", "a/b", "+/+", "a/+/#", "/+", "+/", "$s/#", "a/b/#",
            "+/+/+", "a//#",
        ];
        let all = [
            "a", "a/b", "a/b/c", "b", "/", "/a", "a/", "$s/x", "$s", "a//c", "ab", "a/b/c/d",
        ];
        let s = store(&all);
        for f in filters {
            let mut expected: Vec<&str> = all
                .iter()
                .copied()
                .filter(|t| gatehouse_protocol::topic::matches(f, t))
                .collect();
            expected.sort_by(|x, y| x.split('/').cmp(y.split('/')));
            let walked: Vec<&str> = s.matching(f).into_iter().map(String::as_str).collect();
            assert_eq!(walked, expected, "filter {f}");
        }
    }

    #[test]
    fn a_walk_resumes_in_topic_order_and_ignores_later_changes() {
        let mut s = store(&["a", "a/b", "a/b/c", "a/x", "b", "c/d"]);
        let start = s.seq();
        let mut walked = Vec::new();
        let mut after: Option<String> = None;
        while let Some((topic, value)) = s.next_match("#", after.as_deref(), start) {
            assert_eq!(&topic, value);
            walked.push(topic.clone());
            if topic == "a/b" {
                // Changed after the walk started: a replaced and a new topic are left to
                // live delivery, a removed one is gone.
                s.set("a/x", "new".into(), 3);
                s.set("a/y", "a/y".into(), 3);
                s.remove("b");
            }
            after = Some(topic);
        }
        assert_eq!(walked, ["a", "a/b", "a/b/c", "c/d"]);
        assert_eq!(
            s.next_match("a/+", Some("a/b"), u64::MAX).map(|(t, _)| t),
            Some("a/x".to_string())
        );
        assert_eq!(s.next_match("a/b", Some("a/b"), u64::MAX), None);
    }

    #[test]
    fn caps_bound_count_and_bytes_but_not_replacement_or_removal() {
        let caps = Caps {
            max_messages: 2,
            max_bytes: 10,
        };
        let mut s = RetainedStore::default();
        assert_eq!(s.try_set("a", "1".to_string(), 4, caps), Ok(()));
        assert_eq!(s.try_set("b", "2".to_string(), 4, caps), Ok(()));
        assert_eq!(
            s.try_set("c", "3".to_string(), 1, caps),
            Err(RetainRefused::Count(2))
        );
        // Growing a replacement past the bytes cap is refused; same size or smaller is not.
        assert_eq!(
            s.try_set("a", "4".to_string(), 7, caps),
            Err(RetainRefused::Bytes(10))
        );
        assert_eq!(s.try_set("a", "5".to_string(), 6, caps), Ok(()));
        assert_eq!(s.bytes(), 10);
        // Caps lowered below what is held: replacing in place still works.
        let tight = Caps {
            max_messages: 1,
            max_bytes: 1,
        };
        assert_eq!(s.try_set("b", "6".to_string(), 4, tight), Ok(()));
        assert_eq!(s.remove("b").as_deref(), Some("6"));
        assert_eq!((s.len(), s.bytes()), (1, 6));
        assert_eq!(s.try_set("c", "7".to_string(), 4, caps), Ok(()));
    }

    #[test]
    fn remove_and_expire_prune_the_tree() {
        let mut s = RetainedStore::default();
        s.set("a/b", "1".to_string(), 1);
        s.set("a/c", "2".to_string(), 1);
        assert_eq!(s.remove("a/b").as_deref(), Some("1"));
        assert!(s.remove("a/b").is_none());
        s.retain(|v| v != "2");
        assert!(s.is_empty());
        assert_eq!(s.bytes(), 0);
        assert!(s.root.children.is_empty());
    }
}
