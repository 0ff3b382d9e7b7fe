//! The subscription index: which sessions want a topic.
//!
//! Exact filters (no wildcard) live in a hash map, so the common case is one lookup;
//! wildcard filters live in a trie keyed by topic level, walked once per publish. Both
//! stay fast at 100k subscriptions (see `benches/benches/matching.rs`).
//!
//! The index is generic over the subscriber value so it can be tested and benchmarked
//! without sessions; the router stores `Arc<Session>`-bearing entries in it.

use std::collections::HashMap;

/// The subscribers of one filter: plain ones by subscriber key, shared ones by group.
#[derive(Debug)]
pub struct FilterEntry<K, V> {
    pub direct: HashMap<K, V>,
    pub shared: HashMap<String, SharedGroup<K, V>>,
}

impl<K, V> Default for FilterEntry<K, V> {
    fn default() -> Self {
        FilterEntry {
            direct: HashMap::new(),
            shared: HashMap::new(),
        }
    }
}

impl<K, V> FilterEntry<K, V> {
    fn is_empty(&self) -> bool {
        self.direct.is_empty() && self.shared.is_empty()
    }
}

/// Members of a `$share/<group>/<filter>` subscription; messages go round-robin.
#[derive(Debug)]
pub struct SharedGroup<K, V> {
    pub members: Vec<(K, V)>,
    /// Next member to try; advanced by the router as it picks.
    pub cursor: std::sync::atomic::AtomicUsize,
}

#[derive(Debug)]
struct TrieNode<K, V> {
    /// Children by literal level.
    children: HashMap<Box<str>, TrieNode<K, V>>,
    /// The `+` child, apart from the literal ones: a publish then looks up one level
    /// name per level instead of two (the lookups hash topic levels with SipHash, which
    /// stays because levels are the client's to choose, and were most of a fan-in
    /// publish's routing cost).
    plus: Option<Box<TrieNode<K, V>>>,
    /// Subscribers whose filter ends at this node.
    here: Option<Box<FilterEntry<K, V>>>,
    /// Subscribers of `<this node>/#`.
    multi: Option<Box<FilterEntry<K, V>>>,
}

impl<K, V> Default for TrieNode<K, V> {
    fn default() -> Self {
        TrieNode {
            children: HashMap::new(),
            plus: None,
            here: None,
            multi: None,
        }
    }
}

impl<K, V> TrieNode<K, V> {
    fn is_empty(&self) -> bool {
        self.children.is_empty()
            && self.plus.is_none()
            && self.here.is_none()
            && self.multi.is_none()
    }
}

#[derive(Debug)]
pub struct SubscriptionIndex<K, V> {
    exact: HashMap<Box<str>, FilterEntry<K, V>>,
    wild: TrieNode<K, V>,
    len: usize,
}

impl<K, V> Default for SubscriptionIndex<K, V> {
    fn default() -> Self {
        SubscriptionIndex {
            exact: HashMap::new(),
            wild: TrieNode::default(),
            len: 0,
        }
    }
}

impl<K: Eq + std::hash::Hash + Clone, V> SubscriptionIndex<K, V> {
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of (filter, subscriber) entries.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Add or replace a subscription; returns the previous value for that subscriber.
    /// `filter` must be a valid, non-shared filter.
    pub fn insert(&mut self, filter: &str, group: Option<&str>, key: K, value: V) -> Option<V> {
        let entry = self.entry_mut(filter);
        let old = match group {
            None => entry.direct.insert(key, value),
            Some(g) => {
                let group = entry
                    .shared
                    .entry(g.to_owned())
                    .or_insert_with(|| SharedGroup {
                        members: Vec::new(),
                        cursor: Default::default(),
                    });
                match group.members.iter_mut().find(|(k, _)| *k == key) {
                    Some(slot) => Some(std::mem::replace(&mut slot.1, value)),
                    None => {
                        group.members.push((key, value));
                        None
                    }
                }
            }
        };
        if old.is_none() {
            self.len += 1;
        }
        old
    }

    /// Remove a subscription; returns its value if it existed.
    pub fn remove(&mut self, filter: &str, group: Option<&str>, key: &K) -> Option<V> {
        let removed = if gatehouse_protocol::topic::has_wildcard(filter) {
            remove_from_trie(&mut self.wild, &mut filter.split('/'), group, key)
        } else {
            let entry = self.exact.get_mut(filter)?;
            let removed = remove_from_entry(entry, group, key);
            if entry.is_empty() {
                self.exact.remove(filter);
            }
            removed
        };
        if removed.is_some() {
            self.len -= 1;
        }
        removed
    }

    fn entry_mut(&mut self, filter: &str) -> &mut FilterEntry<K, V> {
        if !gatehouse_protocol::topic::has_wildcard(filter) {
            return self.exact.entry(filter.into()).or_default();
        }
        let mut node = &mut self.wild;
        for level in filter.split('/') {
            node = match level {
                "#" => return node.multi.get_or_insert_with(Default::default),
                "+" => node.plus.get_or_insert_with(Default::default),
                _ => node.children.entry(level.into()).or_default(),
            };
        }
        node.here.get_or_insert_with(Default::default)
    }

    /// The entry of exactly `filter` (a valid, non-shared filter), if it has subscribers.
    pub fn get(&self, filter: &str) -> Option<&FilterEntry<K, V>> {
        if !gatehouse_protocol::topic::has_wildcard(filter) {
            return self.exact.get(filter);
        }
        let mut node = &self.wild;
        for level in filter.split('/') {
            node = match level {
                "#" => return node.multi.as_deref(),
                "+" => node.plus.as_deref()?,
                _ => node.children.get(level)?,
            };
        }
        node.here.as_deref()
    }

    /// Call `visit` for every filter entry matching `topic` (a valid topic name).
    pub fn for_each_match<'a>(&'a self, topic: &str, mut visit: impl FnMut(&'a FilterEntry<K, V>)) {
        if let Some(e) = self.exact.get(topic) {
            visit(e);
        }
        if self.wild.is_empty() {
            return;
        }
        let dollar = topic.starts_with('$');
        let levels = levels(topic);
        walk(&self.wild, &levels, dollar, &mut visit);
    }
}

/// The levels of `topic`, split at each `/` with a plain byte scan: `str::split`'s
/// searcher costs about a hundred instructions per level, more than the scan of a
/// whole topic.
fn levels(topic: &str) -> smallvec::SmallVec<[&str; 16]> {
    let mut out = smallvec::SmallVec::new();
    let mut start = 0;
    for (i, b) in topic.bytes().enumerate() {
        if b == b'/' {
            // '/' is ASCII: both ends are character boundaries.
            out.push(topic.get(start..i).unwrap_or_default());
            start = i + 1;
        }
    }
    out.push(topic.get(start..).unwrap_or_default());
    out
}

fn walk<'a, K, V>(
    node: &'a TrieNode<K, V>,
    levels: &[&str],
    first_is_dollar: bool,
    visit: &mut impl FnMut(&'a FilterEntry<K, V>),
) {
    // `#` also matches the parent level itself ("a/#" matches "a").
    if !first_is_dollar {
        if let Some(m) = &node.multi {
            visit(m);
        }
    }
    let Some((level, rest)) = levels.split_first() else {
        if let Some(h) = &node.here {
            visit(h);
        }
        return;
    };
    if let Some(child) = node.children.get(*level) {
        walk(child, rest, false, visit);
    }
    if !first_is_dollar {
        if let Some(child) = &node.plus {
            walk(child, rest, false, visit);
        }
    }
}

fn remove_from_entry<K: Eq + std::hash::Hash, V>(
    entry: &mut FilterEntry<K, V>,
    group: Option<&str>,
    key: &K,
) -> Option<V> {
    match group {
        None => entry.direct.remove(key),
        Some(g) => {
            let shared = entry.shared.get_mut(g)?;
            let pos = shared.members.iter().position(|(k, _)| k == key)?;
            let (_, v) = shared.members.remove(pos);
            if shared.members.is_empty() {
                entry.shared.remove(g);
            }
            Some(v)
        }
    }
}

fn remove_from_trie<'f, K: Eq + std::hash::Hash, V>(
    node: &mut TrieNode<K, V>,
    levels: &mut impl Iterator<Item = &'f str>,
    group: Option<&str>,
    key: &K,
) -> Option<V> {
    let slot = match levels.next() {
        Some("#") => &mut node.multi,
        None => &mut node.here,
        Some("+") => {
            let child = node.plus.as_mut()?;
            let removed = remove_from_trie(child, levels, group, key);
            if child.is_empty() {
                node.plus = None;
            }
            return removed;
        }
        Some(level) => {
            let child = node.children.get_mut(level)?;
            let removed = remove_from_trie(child, levels, group, key);
            if child.is_empty() {
                node.children.remove(level);
            }
            return removed;
        }
    };
    let entry = slot.as_mut()?;
    let removed = remove_from_entry(entry, group, key);
    if entry.is_empty() {
        *slot = None;
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matching(index: &SubscriptionIndex<u32, ()>, topic: &str) -> Vec<u32> {
        let mut out = Vec::new();
        index.for_each_match(topic, |e| {
            out.extend(e.direct.keys().copied());
            for g in e.shared.values() {
                out.extend(g.members.iter().map(|(k, _)| *k));
            }
        });
        out.sort();
        out
    }

    #[test]
    fn matches_exact_and_wildcard_filters() {
        let mut idx = SubscriptionIndex::new();
        idx.insert("a/b", None, 1, ());
        idx.insert("a/+", None, 2, ());
        idx.insert("a/#", None, 3, ());
        idx.insert("#", None, 4, ());
        idx.insert("+/+/c", None, 5, ());
        idx.insert("x/y", None, 6, ());
        assert_eq!(matching(&idx, "a/b"), vec![1, 2, 3, 4]);
        assert_eq!(matching(&idx, "a"), vec![3, 4]);
        assert_eq!(matching(&idx, "a/b/c"), vec![3, 4, 5]);
        assert_eq!(matching(&idx, "q"), vec![4]);
        assert_eq!(idx.len(), 6);
    }

    #[test]
    fn get_finds_each_filter_with_its_wildcards() {
        let mut idx = SubscriptionIndex::new();
        for (i, f) in ["a/b", "a/+", "a/+/c", "+/#", "#", "+"].iter().enumerate() {
            idx.insert(f, None, i as u32, ());
        }
        for (i, f) in ["a/b", "a/+", "a/+/c", "+/#", "#", "+"].iter().enumerate() {
            let entry = idx.get(f).unwrap_or_else(|| panic!("{f} not found"));
            assert!(entry.direct.contains_key(&(i as u32)), "{f}");
        }
        assert!(idx.get("a/+/d").is_none());
        assert!(idx.get("b/+").is_none());
    }

    #[test]
    fn levels_split_like_str_split() {
        for t in ["", "/", "a", "a/b", "/a/", "a//b", "ä/€/𝄞", "$SYS/x/"] {
            let want: Vec<&str> = t.split('/').collect();
            assert_eq!(levels(t).to_vec(), want, "topic {t:?}");
        }
    }

    #[test]
    fn dollar_topics_skip_leading_wildcards() {
        let mut idx = SubscriptionIndex::new();
        idx.insert("#", None, 1, ());
        idx.insert("+/x", None, 2, ());
        idx.insert("$SYS/#", None, 3, ());
        idx.insert("$SYS/+", None, 4, ());
        assert_eq!(matching(&idx, "$SYS/x"), vec![3, 4]);
    }

    #[test]
    fn remove_prunes_and_counts() {
        let mut idx = SubscriptionIndex::new();
        idx.insert("a/+/c", None, 1, ());
        idx.insert("a/+/c", Some("g"), 2, ());
        idx.insert("a/b", None, 1, ());
        assert!(idx.insert("a/b", None, 1, ()).is_some());
        assert_eq!(idx.len(), 3);
        assert!(idx.remove("a/+/c", None, &1).is_some());
        assert!(idx.remove("a/+/c", None, &1).is_none());
        assert!(idx.remove("a/+/c", Some("g"), &2).is_some());
        assert!(idx.remove("a/b", None, &1).is_some());
        assert!(idx.is_empty());
        assert!(idx.wild.is_empty());
        assert!(idx.exact.is_empty());
    }

    #[test]
    fn agrees_with_topic_matches_on_many_pairs() {
        let filters = [
            "#", "+", "a/#", "a/+", "+/b", "a/b", "+/+", "a/+/#", "/+", "+/", "$s/#",
        ];
        let topics = ["a", "a/b", "a/b/c", "b", "/", "/a", "a/", "$s/x", "$s"];
        let mut idx = SubscriptionIndex::new();
        for (i, f) in filters.iter().enumerate() {
            idx.insert(f, None, i as u32, ());
        }
        for t in topics {
            let expected: Vec<u32> = filters
                .iter()
                .enumerate()
                .filter(|(_, f)| gatehouse_protocol::topic::matches(f, t))
                .map(|(i, _)| i as u32)
                .collect();
            assert_eq!(matching(&idx, t), expected, "topic {t}");
        }
    }
}
