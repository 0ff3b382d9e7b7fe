//! Retained messages, indexed by topic level so a subscription's filter walks only the
//! branches it can match instead of scanning every retained topic.

use std::collections::HashMap;

#[derive(Debug)]
struct Node<V> {
    children: HashMap<Box<str>, Node<V>>,
    value: Option<V>,
}

impl<V> Default for Node<V> {
    fn default() -> Self {
        Node {
            children: HashMap::new(),
            value: None,
        }
    }
}

#[derive(Debug)]
pub struct RetainedStore<V> {
    root: Node<V>,
    len: usize,
}

impl<V> Default for RetainedStore<V> {
    fn default() -> Self {
        RetainedStore {
            root: Node::default(),
            len: 0,
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

    /// Store `value` for `topic`, replacing any previous one.
    pub fn set(&mut self, topic: &str, value: V) {
        let mut node = &mut self.root;
        for level in topic.split('/') {
            node = node.children.entry(level.into()).or_default();
        }
        if node.value.replace(value).is_none() {
            self.len += 1;
        }
    }

    /// Clear the retained message of `topic` (a PUBLISH with an empty payload).
    pub fn remove(&mut self, topic: &str) -> Option<V> {
        let levels: Vec<&str> = topic.split('/').collect();
        let removed = remove(&mut self.root, &levels);
        if removed.is_some() {
            self.len -= 1;
        }
        removed
    }

    /// Every retained value whose topic matches `filter` (valid, non-shared).
    pub fn matching(&self, filter: &str) -> Vec<&V> {
        let levels: Vec<&str> = filter.split('/').collect();
        let mut out = Vec::new();
        collect(&self.root, &levels, true, &mut out);
        out
    }

    /// Drop entries for which `keep` is false (expired messages).
    pub fn retain(&mut self, mut keep: impl FnMut(&V) -> bool) {
        let mut removed = 0;
        prune(&mut self.root, &mut keep, &mut removed);
        self.len -= removed;
    }
}

fn remove<V>(node: &mut Node<V>, levels: &[&str]) -> Option<V> {
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

fn collect<'a, V>(node: &'a Node<V>, filter: &[&str], at_root: bool, out: &mut Vec<&'a V>) {
    let Some((level, rest)) = filter.split_first() else {
        out.extend(node.value.as_ref());
        return;
    };
    match *level {
        "#" => {
            // "a/#" matches "a" itself, then everything below.
            out.extend(node.value.as_ref().filter(|_| !at_root));
            collect_all(node, at_root, out);
        }
        "+" => {
            for (name, child) in &node.children {
                if at_root && name.starts_with('$') {
                    continue;
                }
                collect(child, rest, false, out);
            }
        }
        exact => {
            if let Some(child) = node.children.get(exact) {
                collect(child, rest, false, out);
            }
        }
    }
}

fn collect_all<'a, V>(node: &'a Node<V>, at_root: bool, out: &mut Vec<&'a V>) {
    for (name, child) in &node.children {
        if at_root && name.starts_with('$') {
            continue;
        }
        out.extend(child.value.as_ref());
        collect_all(child, false, out);
    }
}

fn prune<V>(node: &mut Node<V>, keep: &mut impl FnMut(&V) -> bool, removed: &mut usize) {
    if node.value.as_ref().is_some_and(|v| !keep(v)) {
        node.value = None;
        *removed += 1;
    }
    node.children.retain(|_, child| {
        prune(child, keep, removed);
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

    #[test]
    fn filters_select_retained_topics() {
        let mut s = RetainedStore::default();
        for t in ["a", "a/b", "a/b/c", "a/x", "$SYS/up", "/lead"] {
            s.set(t, t.to_string());
        }
        assert_eq!(topics(&s, "a/#"), ["a", "a/b", "a/b/c", "a/x"]);
        assert_eq!(topics(&s, "a/+"), ["a/b", "a/x"]);
        assert_eq!(topics(&s, "#"), ["/lead", "a", "a/b", "a/b/c", "a/x"]);
        assert_eq!(topics(&s, "+"), ["a"]);
        assert_eq!(topics(&s, "+/+"), ["/lead", "a/b", "a/x"]);
        assert_eq!(topics(&s, "$SYS/#"), ["$SYS/up"]);
        assert_eq!(topics(&s, "a/b"), ["a/b"]);
        assert_eq!(s.len(), 6);
    }

    #[test]
    fn remove_and_expire_prune_the_tree() {
        let mut s = RetainedStore::default();
        s.set("a/b", "1".to_string());
        s.set("a/c", "2".to_string());
        assert_eq!(s.remove("a/b").as_deref(), Some("1"));
        assert!(s.remove("a/b").is_none());
        s.retain(|v| v != "2");
        assert!(s.is_empty());
        assert!(s.root.children.is_empty());
    }
}
