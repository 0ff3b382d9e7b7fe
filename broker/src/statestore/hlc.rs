//! Hybrid logical clock timestamps (statestore.md §3): the `__ts` request timestamp, the
//! key versions the server assigns, and `__ft` fencing tokens all share this format.
//!
//! The wall clock is injected ([`WallClock`]) so the skew limit and the update rule are
//! testable without sleeping.

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// How far ahead of the server clock a `__ts` or `__ft` may be (§3.2): more is rejected.
pub const MAX_SKEW_MS: u64 = 60_000;

/// `<wallclock-ms>:<counter>:<nodeId>` (§3.1).
///
/// Ordered by wall clock, then counter, then node id byte-wise (Go `Compare`, .NET
/// `CompareTo`), so two timestamps are equal only when all three parts are.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Hlc {
    /// Milliseconds since the Unix epoch.
    pub wall_ms: u64,
    /// Orders events within one millisecond. Parsed as u64 like the Rust SDK; the server
    /// never emits more than `i32::MAX` because .NET parses it as Int32.
    pub counter: u64,
    /// Non-empty and without `:` (the format has exactly three parts).
    pub node_id: Arc<str>,
}

/// Why a string is not an HLC; every case is `-ERR malformed timestamp` on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HlcParseError {
    #[error("a timestamp has exactly three ':'-separated parts")]
    Parts,
    #[error("the wall clock of a timestamp is not an unsigned decimal")]
    WallClock,
    #[error("the counter of a timestamp is not an unsigned decimal")]
    Counter,
    #[error("the node id of a timestamp is empty")]
    EmptyNodeId,
}

impl FromStr for Hlc {
    type Err = HlcParseError;

    /// Any width is accepted (SDKs emit zero-padded, D1's examples are not).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut parts = s.split(':');
        let (Some(wall), Some(counter), Some(node_id), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(HlcParseError::Parts);
        };
        let wall_ms =
            super::resp3::parse_decimal(wall.as_bytes()).ok_or(HlcParseError::WallClock)?;
        let counter =
            super::resp3::parse_decimal(counter.as_bytes()).ok_or(HlcParseError::Counter)?;
        if node_id.is_empty() {
            return Err(HlcParseError::EmptyNodeId);
        }
        Ok(Hlc {
            wall_ms,
            counter,
            node_id: node_id.into(),
        })
    }
}

impl fmt::Display for Hlc {
    /// The padded form every SDK emits: `{:015}:{:05}:{node_id}`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:015}:{:05}:{}",
            self.wall_ms, self.counter, self.node_id
        )
    }
}

impl Hlc {
    /// Whether this timestamp is more than [`MAX_SKEW_MS`] ahead of `now_ms` (exactly 60 s
    /// ahead is still accepted; anything behind is accepted, §3.2).
    pub fn is_too_far_ahead(&self, now_ms: u64) -> bool {
        self.wall_ms > now_ms.saturating_add(MAX_SKEW_MS)
    }
}

/// The source of "now" in milliseconds since the Unix epoch.
pub trait WallClock {
    fn now_ms(&self) -> u64;
}

/// The system clock; a clock before 1970 reads as 0.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl WallClock for SystemClock {
    fn now_ms(&self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }
}

impl<F: Fn() -> u64> WallClock for F {
    fn now_ms(&self) -> u64 {
        self()
    }
}

/// The HLC receive rule (statestore.md §3.3, the SDK's `HybridLogicalClock::update`): the
/// clock `(wall, counter)` after an event stamped `request`, the wall clock reading `now`.
/// A request stamped in the millisecond `now` itself is taken to arrive in the next one
/// (see [`HybridClock::update`]).
fn receive((wall, counter): (u64, u64), mut now: u64, request: &Hlc) -> (u64, u64) {
    if request.wall_ms == now {
        now = now.saturating_add(1);
    }
    if now > wall && now > request.wall_ms {
        return (now, 0);
    }
    match wall.cmp(&request.wall_ms) {
        Ordering::Equal => (wall, counter.max(request.counter).saturating_add(1)),
        Ordering::Greater => (wall, counter.saturating_add(1)),
        Ordering::Less => (request.wall_ms, request.counter.saturating_add(1)),
    }
}

/// The node id is empty or contains `:`, so the server's timestamps would not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid HLC node id {0:?}: it must be non-empty and contain no ':'")]
pub struct InvalidNodeId(pub String);

/// The server's one hybrid logical clock, which assigns key versions (§3.3).
#[derive(Debug)]
pub struct HybridClock<C> {
    clock: C,
    wall_ms: u64,
    counter: u64,
    node_id: Arc<str>,
}

impl<C: WallClock> HybridClock<C> {
    /// A clock that starts at zero; the first event moves it to the wall clock.
    pub fn new(node_id: &str, clock: C) -> Result<Self, InvalidNodeId> {
        if node_id.is_empty() || node_id.contains(':') {
            return Err(InvalidNodeId(node_id.to_owned()));
        }
        Ok(HybridClock {
            clock,
            wall_ms: 0,
            counter: 0,
            node_id: node_id.into(),
        })
    }

    /// The current wall clock, for the skew checks.
    pub fn wall_now_ms(&self) -> u64 {
        self.clock.now_ms()
    }

    /// A new version for a write that carries a request timestamp: the standard HLC receive
    /// rule with `request` as the other clock, so the result is greater than both the last
    /// version and `request`.
    ///
    /// A request stamped in the very millisecond the server reads (`request.wall_ms ==
    /// now`) is taken to arrive in the next one: the reading used is `now + 1`, so the
    /// version is `(now + 1, 0)` rather than `(now, request.counter + 1)`. Without this the
    /// counter of an otherwise identical write (a lease renewal, whose version becomes the
    /// fencing token) would be 0 or 1 depending on whether the request crossed a
    /// millisecond boundary on its way (issue 18), while a client on another host, or
    /// anything slower than a millisecond, always sees counter 0. The result still follows
    /// the AIO rules: greater than the request and the last version, and at most 1 ms ahead
    /// of the wall clock (far inside the 60 s drift clients accept). D1's "identical
    /// clocks" example (`…:0:Client1` → `…:1:StateStore`) is the case it changes.
    pub fn update(&mut self, request: &Hlc) -> Hlc {
        let now = self.clock.now_ms();
        (self.wall_ms, self.counter) = receive((self.wall_ms, self.counter), now, request);
        self.current()
    }

    /// The version of a write: to a key that is live with version `last` (a SET that
    /// overwrites it, such as a lease renewal), the receive rule runs on *that key's* last
    /// version instead of the server clock, so writes to other keys in the same millisecond
    /// do not raise its counter: a renewal's fencing token has counter 0 whatever other
    /// clients do meanwhile (issue 18; like a per-shard clock). The version is still greater
    /// than `last` and than `request`, and the server clock moves up to it, so a key created
    /// later (`last` is `None`: the server clock's rule, [`Self::update`] / [`Self::now`])
    /// gets a version above every version issued before, which keeps fencing across lock
    /// generations safe (a new holder's token exceeds the old holder's).
    pub fn version_for(&mut self, request: Option<&Hlc>, last: Option<&Hlc>) -> Hlc {
        let Some(last) = last else {
            return match request {
                Some(request) => self.update(request),
                None => self.now(),
            };
        };
        let now = self.clock.now_ms();
        let (wall_ms, counter) = match request {
            Some(request) => receive((last.wall_ms, last.counter), now, request),
            None if now > last.wall_ms => (now, 0),
            None => (last.wall_ms, last.counter.saturating_add(1)),
        };
        if (wall_ms, counter) > (self.wall_ms, self.counter) {
            (self.wall_ms, self.counter) = (wall_ms, counter);
        }
        Hlc {
            wall_ms,
            counter,
            node_id: self.node_id.clone(),
        }
    }

    /// A new version for a write without a request timestamp (DEL, VDEL, expiry): `(now, 0)`
    /// when the wall clock moved on, else the next counter, so versions stay monotonic.
    pub fn now(&mut self) -> Hlc {
        let now = self.clock.now_ms();
        if now > self.wall_ms {
            (self.wall_ms, self.counter) = (now, 0);
        } else {
            self.counter = self.counter.saturating_add(1);
        }
        self.current()
    }

    fn current(&self) -> Hlc {
        Hlc {
            wall_ms: self.wall_ms,
            counter: self.counter,
            node_id: self.node_id.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;
    use std::rc::Rc;

    fn hlc(s: &str) -> Hlc {
        s.parse().unwrap()
    }

    fn clock_at(ms: u64) -> (Rc<Cell<u64>>, impl Fn() -> u64) {
        let now = Rc::new(Cell::new(ms));
        let reader = now.clone();
        (now, move || reader.get())
    }

    #[test]
    fn parses_padded_and_unpadded() {
        let padded = hlc("001696374425000:00000:9f0c-uuid");
        assert_eq!((padded.wall_ms, padded.counter), (1_696_374_425_000, 0));
        assert_eq!(&*padded.node_id, "9f0c-uuid");
        let plain = hlc("1696374425000:1:StateStore");
        assert_eq!((plain.wall_ms, plain.counter), (1_696_374_425_000, 1));
        assert_eq!(plain.to_string(), "001696374425000:00001:StateStore");
        assert_eq!(hlc(&plain.to_string()), plain);
    }

    #[test]
    fn rejects_malformed() {
        use HlcParseError::*;
        for (input, error) in [
            ("abc", Parts),
            ("", Parts),
            ("1:2", Parts),
            ("1:2:a:b", Parts),
            (":0:n", WallClock),
            ("+1:0:n", WallClock),
            ("-1:0:n", WallClock),
            ("1x:0:n", WallClock),
            ("99999999999999999999999:0:n", WallClock),
            ("1::n", Counter),
            ("1: 2:n", Counter),
            ("1:2:", EmptyNodeId),
        ] {
            assert_eq!(input.parse::<Hlc>(), Err(error), "{input:?}");
        }
    }

    #[test]
    fn orders_by_wall_then_counter_then_node() {
        assert!(hlc("2:0:a") > hlc("1:9:z"));
        assert!(hlc("1:2:a") > hlc("1:1:z"));
        assert!(hlc("1:1:b") > hlc("1:1:a"));
        assert_eq!(hlc("01:1:a"), hlc("1:01:a"));
        assert_ne!(hlc("1:1:a"), hlc("1:1:b"));
    }

    #[test]
    fn skew_limit_is_sixty_seconds_exclusive() {
        let now = 1_000_000;
        assert!(!hlc("1060000:0:n").is_too_far_ahead(now));
        assert!(hlc("1060001:0:n").is_too_far_ahead(now));
        assert!(!hlc("0:0:n").is_too_far_ahead(now));
        assert!(!hlc("18446744073709551615:0:n").is_too_far_ahead(u64::MAX));
    }

    #[test]
    fn node_id_must_be_non_empty_without_colon() {
        assert!(HybridClock::new("", SystemClock).is_err());
        assert!(HybridClock::new("a:b", SystemClock).is_err());
        assert!(HybridClock::new("StateStore", SystemClock).is_ok());
    }

    /// §3.3, D1's "identical clocks" example (request `1696374425000:0:Client1`): the
    /// version is greater than the request, as D1 requires, but it is the next
    /// millisecond with counter 0 (issue 18: deterministic fencing tokens), not D1's
    /// `1696374425000:1:StateStore`.
    #[test]
    fn d1_example_identical_clocks() {
        let (_, wall) = clock_at(1_696_374_425_000);
        let mut clock = HybridClock::new("StateStore", wall).unwrap();
        let request = hlc("1696374425000:0:Client1");
        let version = clock.update(&request);
        assert_eq!(version, hlc("1696374425001:0:StateStore"));
        assert!(version > request);
    }

    /// Issue 18: a lease renewal's version (its next fencing token) has the same counter
    /// whether the request arrives in the millisecond it was stamped or later, and whatever
    /// counter the client's own clock carried.
    #[test]
    fn request_stamped_in_the_current_millisecond_is_deterministic() {
        for client_counter in [0, 1, 7] {
            for delay in [0, 1, 2, 50] {
                let (now, wall) = clock_at(5_000);
                let mut clock = HybridClock::new("S", wall).unwrap();
                // An earlier write (the acquire), two seconds before.
                now.set(3_000);
                clock.update(&hlc("3000:0:c"));
                now.set(5_000 + delay);
                let request = Hlc {
                    wall_ms: 5_000,
                    counter: client_counter,
                    node_id: "c".into(),
                };
                let version = clock.update(&request);
                assert_eq!(
                    version.counter, 0,
                    "delay {delay}, counter {client_counter}"
                );
                assert_eq!(version.wall_ms, (5_000 + delay).max(5_001));
                assert!(version > request);
            }
        }
    }

    /// Issue 18: a renewal (a SET over the live key) is versioned from the key's own last
    /// version, so another key written in the same millisecond does not raise its counter;
    /// a key created afterwards still gets a version above everything issued.
    #[test]
    fn renewal_counter_ignores_other_keys_written_in_the_same_millisecond() {
        let (now, wall) = clock_at(1_000);
        let mut clock = HybridClock::new("S", wall).unwrap();
        let lease_v1 = clock.version_for(Some(&hlc("1000:0:a")), None);
        assert_eq!(lease_v1, hlc("1001:0:S"));
        now.set(3_000);
        // Another client's write lands in the same millisecond just before the renewal.
        let other = clock.version_for(Some(&hlc("2999:0:b")), None);
        assert_eq!(other, hlc("3000:0:S"));
        let renewal = clock.version_for(Some(&hlc("2999:0:a")), Some(&lease_v1));
        assert_eq!(
            renewal,
            hlc("3000:0:S"),
            "counter 0 despite the other write"
        );
        // Same with the request stamped in this very millisecond.
        let renewal2 = clock.version_for(Some(&hlc("3000:0:a")), Some(&renewal));
        assert_eq!(renewal2, hlc("3001:0:S"));
        // A key created now is above every version issued (the server clock followed).
        let fresh = clock.version_for(Some(&hlc("2990:0:c")), None);
        assert!(fresh > renewal2 && fresh > other, "{fresh}");
        // Without a request timestamp: the key's own last version, else the clock.
        let del_like = clock.version_for(None, Some(&renewal2));
        assert!(del_like > renewal2);
        assert!(clock.now() > del_like);
    }

    /// The bump never breaks monotonicity: later writes in the same (real) millisecond, with
    /// or without a request timestamp, follow the bumped version.
    #[test]
    fn bumped_reading_stays_monotonic() {
        let (now, wall) = clock_at(100);
        let mut clock = HybridClock::new("S", wall).unwrap();
        let a = clock.update(&hlc("100:0:c"));
        let b = clock.update(&hlc("100:0:c"));
        let c = clock.now();
        let d = clock.update(&hlc("101:3:c"));
        now.set(101);
        let e = clock.update(&hlc("101:0:c"));
        now.set(103);
        let f = clock.update(&hlc("102:0:c"));
        assert_eq!(a, hlc("101:0:S"));
        assert_eq!(b, hlc("101:1:S"));
        assert_eq!(c, hlc("101:2:S"));
        assert_eq!(d, hlc("101:4:S"));
        assert_eq!(e, hlc("102:0:S"));
        assert_eq!(f, hlc("103:0:S"));
        assert!(a < b && b < c && c < d && d < e && e < f);
    }

    #[test]
    fn update_follows_each_branch() {
        let (now, wall) = clock_at(100);
        let mut clock = HybridClock::new("S", wall).unwrap();
        // now > both: (now, 0).
        assert_eq!(clock.update(&hlc("50:7:c")), hlc("100:0:S"));
        // hlc.ts > req.ts: c + 1 (the server clock is ahead of its wall clock here).
        assert_eq!(clock.update(&hlc("99:40:c")), hlc("100:1:S"));
        // request ahead (within skew): (req.ts, req.c + 1).
        assert_eq!(clock.update(&hlc("150:3:c")), hlc("150:4:S"));
        // hlc.ts == req.ts: max(c) + 1.
        assert_eq!(clock.update(&hlc("150:9:c")), hlc("150:10:S"));
        assert_eq!(clock.update(&hlc("150:2:c")), hlc("150:11:S"));
        // the wall clock catches up.
        now.set(151);
        assert_eq!(clock.update(&hlc("150:9:c")), hlc("151:0:S"));
        // a request stamped in the current millisecond: the next one, counter 0.
        now.set(200);
        assert_eq!(clock.update(&hlc("200:5:c")), hlc("201:0:S"));
    }

    #[test]
    fn now_is_monotonic_even_if_the_wall_clock_stalls_or_goes_back() {
        let (now, wall) = clock_at(100);
        let mut clock = HybridClock::new("S", wall).unwrap();
        let a = clock.now();
        let b = clock.now();
        now.set(50);
        let c = clock.now();
        now.set(200);
        let d = clock.now();
        assert_eq!(a, hlc("100:0:S"));
        assert!(a < b && b < c && c < d);
        assert_eq!(d, hlc("200:0:S"));
    }

    /// §8 vector 1 / 5: each write's version is greater than the previous one and than the
    /// request `__ts` (a NEX renewal gets a new, higher version).
    #[test]
    fn vector_05_renewal_gets_a_higher_version() {
        let (_, wall) = clock_at(1_000);
        let mut clock = HybridClock::new("S", wall).unwrap();
        let ts = hlc("1000:0:client");
        let v1 = clock.update(&ts);
        let v2 = clock.update(&ts);
        assert!(v1 > ts && v2 > v1);
    }
}
