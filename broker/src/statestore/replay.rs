//! The responses a session's recent requests got, so a QoS 1 retransmission of a request
//! is answered again instead of run again (statestore.md §6.6): a re-executed `SET NX`
//! would otherwise flip from `+OK` to `:-1`.
//!
//! The cache lives in the session (a retransmission arrives after a reconnect, on a new
//! connection) and is bounded three times: [`CAPACITY`] entries, [`MAX_BYTES`] bytes, each
//! entry kept only for the request's Message Expiry Interval (SDKs send their timeout) or
//! [`DEFAULT_TTL`]. Without the byte bound 64 answers of 1 MiB values made 64 MiB per
//! session (issue 13).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::message::Message;

/// Responses remembered per session at most (oldest dropped first).
pub const CAPACITY: usize = 64;
/// Bytes of remembered responses per session at most ([`cached_bytes`]); the oldest are
/// dropped first. A response larger than this is not remembered at all: only GET answers
/// get that large, and a retransmitted GET that runs again does no harm (the answers
/// that must not run twice, of SET and DEL, are a few bytes). Fixed rather than
/// configurable: it only trades memory against answering a big GET twice.
pub const MAX_BYTES: usize = 1024 * 1024;
/// How long a response is remembered when the request had no Message Expiry Interval.
pub const DEFAULT_TTL: Duration = Duration::from_secs(60);
/// The longest a response is remembered, whatever the request asked for.
pub const MAX_TTL: Duration = Duration::from_secs(300);

#[derive(Debug)]
struct Cached {
    correlation: Bytes,
    until: Instant,
    response: Arc<Message>,
    bytes: usize,
}

/// What a remembered response counts against [`MAX_BYTES`]: the correlation data it is
/// found by, and what the response holds ([`Message::stored_bytes`]).
fn cached_bytes(correlation: &[u8], response: &Message) -> usize {
    correlation.len() + response.stored_bytes()
}

#[derive(Debug, Default)]
pub struct ReplyCache {
    entries: VecDeque<Cached>,
    /// Sum of the entries' `bytes`.
    bytes: usize,
}

impl ReplyCache {
    /// Forget every remembered answer: they were computed for the principal that held the
    /// session before a re-authentication, and hold values it could read.
    pub fn clear(&mut self) {
        self.entries.clear();
        self.bytes = 0;
    }

    /// The response already sent for the request with this correlation data, if still
    /// remembered.
    pub fn get(&mut self, correlation: &[u8], now: Instant) -> Option<Arc<Message>> {
        self.entries.retain(|c| c.until > now);
        self.bytes = self.entries.iter().map(|c| c.bytes).sum();
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
        let bytes = cached_bytes(&correlation, &response);
        if bytes > MAX_BYTES {
            return; // see MAX_BYTES
        }
        while self.entries.len() >= CAPACITY || self.bytes + bytes > MAX_BYTES {
            let Some(old) = self.entries.pop_front() else {
                break;
            };
            self.bytes -= old.bytes;
        }
        self.bytes += bytes;
        self.entries.push_back(Cached {
            correlation,
            until: now + ttl,
            response,
            bytes,
        });
    }

    /// Bytes of the remembered responses.
    pub fn bytes(&self) -> usize {
        self.bytes
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
    fn is_bounded_in_bytes() {
        let now = Instant::now();
        let mut cache = ReplyCache::default();
        let big = |n: usize| {
            Arc::new(Message {
                topic: "r".into(),
                payload: Bytes::from(vec![b'x'; n]),
                qos: QoS::AtLeastOnce,
                retain: false,
                properties: Default::default(),
                expires_at: None,
                origin: None,
            })
        };
        for i in 0..10 {
            cache.insert(Bytes::from(i.to_string()), None, big(300_000), now);
            assert!(cache.bytes() <= MAX_BYTES);
        }
        assert_eq!(cache.len(), 3);
        assert!(cache.get(b"6", now).is_none());
        assert!(cache.get(b"9", now).is_some());
        // Larger than the whole bound: not remembered, and nothing else is dropped for it.
        cache.insert(Bytes::from_static(b"huge"), None, big(MAX_BYTES), now);
        assert!(cache.get(b"huge", now).is_none());
        assert_eq!(cache.len(), 3);
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
