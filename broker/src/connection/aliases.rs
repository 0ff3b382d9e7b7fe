//! Topic alias tables (MQTT 5 §3.3.2.3.4), bounded in entries and in topic bytes.
//!
//! Each entry holds a topic name of up to 64 KiB, so a count bound alone still lets one
//! connection hold 1024 × 64 KiB = 64 MiB client→server and 65535 × 64 KiB (4 GiB)
//! server→client (security.md invariant 6). Both tables are therefore also bounded in
//! the bytes of the topics they hold. The bounds are fixed, not configured: they only
//! ever bite clients that alias very long topics, and the answers differ by direction:
//!
//! - client→server: the client decides what it aliases and relies on every mapping it
//!   set, so a mapping we cannot keep ends the connection (DISCONNECT 0x97 Quota
//!   exceeded, see [`InboundAliases::set`]);
//! - server→client: we decide, and sending the full topic name without an alias is
//!   always legal, so past the bound we simply stop assigning aliases.

use std::collections::HashMap;

/// Bytes of topic names the client→server alias table holds at most, all aliases
/// together: one topic of the largest legal size (65535 bytes) always fits, and so do
/// all 1024 aliases we allow (`limits::TOPIC_ALIAS_MAXIMUM`) for topics averaging 64
/// bytes. A client that needs more re-uses alias numbers: replacing a mapping frees
/// the bytes of the topic it replaced.
pub(crate) const INBOUND_ALIAS_BYTES: usize = 64 * 1024;

/// Server→client aliases assigned at most per connection, whatever Topic Alias Maximum
/// the client announced (up to 65535): as many as we accept from clients.
pub(crate) const OUTBOUND_ALIAS_MAXIMUM: u16 = 1024;

/// Bytes of topic names the server→client alias table holds at most (as
/// [`INBOUND_ALIAS_BYTES`]); topics past it are sent in full.
pub(crate) const OUTBOUND_ALIAS_BYTES: usize = 64 * 1024;

/// Why a client→server alias mapping was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("topic alias table full: {held} bytes of topics held, {wanted} more would pass the {INBOUND_ALIAS_BYTES}-byte bound")]
pub(crate) struct AliasTableFull {
    pub held: usize,
    pub wanted: usize,
}

/// Client→server aliases: alias → topic, with the bytes of the topics held. The table is
/// allocated with the first alias (most clients never use one, and an empty map still
/// costs its 48 bytes in every connection).
#[derive(Debug, Default)]
#[allow(
    clippy::box_collection,
    reason = "boxed to be small while empty, see above"
)]
pub(crate) struct InboundAliases {
    map: Option<Box<HashMap<u16, String>>>,
    bytes: usize,
}

impl InboundAliases {
    /// The topic `alias` stands for.
    pub(crate) fn get(&self, alias: u16) -> Option<&str> {
        self.map.as_ref()?.get(&alias).map(String::as_str)
    }

    /// Map `alias` to `topic` (replacing what it stood for), unless the table would then
    /// hold more than [`INBOUND_ALIAS_BYTES`] of topics; the table is unchanged then.
    ///
    /// The caller ends the connection with DISCONNECT 0x97 Quota exceeded ("an
    /// implementation or administrative imposed limit has been exceeded", MQTT 5
    /// §3.14.2.1): the client may not use an alias we did not store, and 0x94 Topic
    /// Alias invalid would wrongly say the alias number was out of range.
    pub(crate) fn set(&mut self, alias: u16, topic: &str) -> Result<(), AliasTableFull> {
        let replaced = self.get(alias).map_or(0, str::len);
        let held = self.bytes - replaced;
        if held + topic.len() > INBOUND_ALIAS_BYTES {
            return Err(AliasTableFull {
                held,
                wanted: topic.len(),
            });
        }
        self.map
            .get_or_insert_with(Default::default)
            .insert(alias, topic.to_owned());
        self.bytes = held + topic.len();
        Ok(())
    }

    #[cfg(test)]
    fn bytes(&self) -> usize {
        self.bytes
    }
}

/// Server→client aliases we have assigned: topic → alias. The table is allocated with
/// the first alias assigned (see [`InboundAliases`]).
#[derive(Debug)]
#[allow(
    clippy::box_collection,
    reason = "boxed to be small while empty, see above"
)]
pub(crate) struct OutboundAliases {
    map: Option<Box<HashMap<String, u16>>>,
    bytes: usize,
    /// The client's Topic Alias Maximum, capped at [`OUTBOUND_ALIAS_MAXIMUM`].
    maximum: u16,
}

impl OutboundAliases {
    /// For a client that announced Topic Alias Maximum `client_maximum` (0: none).
    pub(crate) fn new(client_maximum: u16) -> OutboundAliases {
        OutboundAliases {
            map: None,
            bytes: 0,
            maximum: client_maximum.min(OUTBOUND_ALIAS_MAXIMUM),
        }
    }

    /// Topic and alias to send: the alias alone once assigned; topic and a new alias
    /// while there is room (count and bytes); else the topic alone, which is always legal.
    pub(crate) fn assign<'t>(&mut self, topic: &'t str) -> (&'t str, Option<u16>) {
        if self.maximum == 0 {
            return (topic, None);
        }
        let map = self.map.get_or_insert_with(Default::default);
        if let Some(&alias) = map.get(topic) {
            return ("", Some(alias));
        }
        let n = map.len();
        if n < usize::from(self.maximum) && self.bytes + topic.len() <= OUTBOUND_ALIAS_BYTES {
            // Aliases are never removed except the one just assigned (`forget`), so
            // 1..=n are taken and n + 1 is free; n < maximum ≤ u16::MAX.
            let alias = u16::try_from(n + 1).unwrap_or(u16::MAX);
            map.insert(topic.to_owned(), alias);
            self.bytes += topic.len();
            return (topic, Some(alias));
        }
        (topic, None)
    }

    /// Undo the assignment of `topic`'s alias: the PUBLISH that set it was not sent.
    pub(crate) fn forget(&mut self, topic: &str) {
        if self.map.as_mut().and_then(|m| m.remove(topic)).is_some() {
            self.bytes -= topic.len();
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.map.as_ref().map_or(0, |m| m.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inbound_bytes_are_bounded_and_replacement_frees_them() {
        let mut t = InboundAliases::default();
        let big = "a".repeat(65_535);
        t.set(1, &big).expect("one topic of the largest size fits");
        assert_eq!(
            t.set(2, "bb"),
            Err(AliasTableFull {
                held: 65_535,
                wanted: 2
            })
        );
        assert_eq!(t.get(2), None, "a refused mapping is not stored");
        // Replacing alias 1 frees its bytes.
        t.set(1, "short").expect("replace");
        assert_eq!(t.bytes(), 5);
        for alias in 2..=1024u16 {
            t.set(alias, &"t".repeat(60))
                .expect("1024 topics of 60 bytes");
        }
        assert_eq!(t.get(1), Some("short"));
        assert!(t.bytes() <= INBOUND_ALIAS_BYTES);
    }

    #[test]
    fn outbound_aliases_stop_at_the_count_and_byte_caps() {
        let mut t = OutboundAliases::new(u16::MAX);
        for i in 0..2000 {
            let topic = format!("t/{i}");
            let (_, alias) = t.assign(&topic);
            assert_eq!(alias.is_some(), i < 1024, "topic {i}");
        }
        assert_eq!(t.len(), 1024);
        assert_eq!(t.assign("t/5"), ("", Some(6)), "assigned ones are reused");

        let mut t = OutboundAliases::new(u16::MAX);
        let topics: Vec<String> = (0..100)
            .map(|i| format!("{i:04}{}", "x".repeat(996)))
            .collect();
        let aliased = topics.iter().filter(|t2| t.assign(t2).1.is_some()).count();
        assert_eq!(aliased, OUTBOUND_ALIAS_BYTES / 1000);
        // A short topic still fits in what is left.
        assert!(t.assign("short").1.is_some());
    }

    #[test]
    fn outbound_forget_frees_the_alias_and_its_bytes() {
        let mut t = OutboundAliases::new(2);
        assert_eq!(t.assign("a"), ("a", Some(1)));
        assert_eq!(t.assign("b"), ("b", Some(2)));
        t.forget("b");
        assert_eq!(t.assign("c"), ("c", Some(2)));
        assert_eq!(t.assign("d"), ("d", None));
        assert_eq!(OutboundAliases::new(0).assign("a"), ("a", None));
    }
}
