//! The responses a session's recent requests got, so a QoS 1 retransmission of a request
//! is answered again instead of run again (statestore.md §6.6): a re-executed `SET NX`
//! would otherwise flip from `+OK` to `:-1`.
//!
//! The cache lives in the session (a retransmission arrives after a reconnect, on a new
//! connection) and is bounded twice: [`CAPACITY`] entries, each kept only for the request's
//! Message Expiry Interval (SDKs send their timeout) or [`DEFAULT_TTL`].

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::message::Message;

/// Responses remembered per session at most (oldest dropped first).
pub const CAPACITY: usize = 64;
/// How long a response is remembered when the request had no Message Expiry Interval.
pub const DEFAULT_TTL: Duration = Duration::from_secs(60);
/// The longest a response is remembered, whatever the request asked for.
pub const MAX_TTL: Duration = Duration::from_secs(300);

#[derive(Debug)]
struct Cached {
    correlation: Bytes,
    until: Instant,
    response: Arc<Message>,
}

#[derive(Debug, Default)]
pub struct ReplyCache {
    entries: VecDeque<Cached>,
}

impl ReplyCache {
    /// The response already sent for the request with this correlation data, if still
    /// remembered.
    pub fn get(&mut self, correlation: &[u8], now: Instant) -> Option<Arc<Message>> {
        self.entries.retain(|c| c.until > now);
        self.entries
            .iter()
            .find(|c| c.correlation == correlation)
            .map(|c| c.response.clone())
    }

    /// Remember `response` for `ttl` (the request's Message Expiry Interval, if any).
    pub fn insert(
        &mut self,
        correlation: Bytes,
        ttl: Option<Duration>,
        response: Arc<Message>,
        now: Instant,
    ) {
        let ttl = ttl.unwrap_or(DEFAULT_TTL).min(MAX_TTL);
        if self.entries.len() >= CAPACITY {
            self.entries.pop_front();
        }
        self.entries.push_back(Cached {
            correlation,
            until: now + ttl,
            response,
        });
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gatehouse_protocol::QoS;

    fn response(tag: &'static [u8]) -> Arc<Message> {
        Arc::new(Message {
            topic: "r".into(),
            payload: Bytes::from_static(tag),
            qos: QoS::AtLeastOnce,
            retain: false,
            properties: Default::default(),
            expires_at: None,
            origin: None,
        })
    }

    #[test]
    fn remembers_by_correlation_data_until_the_ttl() {
        let now = Instant::now();
        let mut cache = ReplyCache::default();
        cache.insert(
            Bytes::from_static(b"a"),
            Some(Duration::from_secs(2)),
            response(b"1"),
            now,
        );
        cache.insert(Bytes::from_static(b"b"), None, response(b"2"), now);
        assert_eq!(&cache.get(b"a", now).unwrap().payload[..], b"1");
        assert_eq!(&cache.get(b"b", now).unwrap().payload[..], b"2");
        assert!(cache.get(b"c", now).is_none());
        assert!(cache.get(b"a", now + Duration::from_secs(3)).is_none());
        assert!(cache.get(b"b", now + Duration::from_secs(3)).is_some());
        assert!(cache.get(b"b", now + MAX_TTL).is_none());
    }

    #[test]
    fn is_bounded() {
        let now = Instant::now();
        let mut cache = ReplyCache::default();
        for i in 0..(CAPACITY + 10) {
            cache.insert(Bytes::from(i.to_string()), None, response(b"x"), now);
        }
        assert_eq!(cache.len(), CAPACITY);
        assert!(cache.get(b"0", now).is_none());
        assert!(cache
            .get((CAPACITY + 9).to_string().as_bytes(), now)
            .is_some());
    }

    #[test]
    fn ttl_is_capped() {
        let now = Instant::now();
        let mut cache = ReplyCache::default();
        cache.insert(
            Bytes::from_static(b"a"),
            Some(Duration::from_secs(86_400)),
            response(b"1"),
            now,
        );
        assert!(cache.get(b"a", now + MAX_TTL).is_none());
    }
}
