//! Which forwarded messages this node has delivered already.
//!
//! NATS delivers one copy of a message per matching subscription of a connection, so a
//! node subscribed to `a/+` and `a/#` gets `a/b` twice; the first copy is routed through
//! the whole local index (every matching session, one copy each), later ones are dropped.
//! Copies are recognised by (origin, sequence number). They arrive through different
//! subscriptions, read by different tasks, so not in order: per origin, a sliding window
//! of the last [`WINDOW`] sequence numbers remembers which were seen (as in IPsec's
//! anti-replay window). A copy older than the window is let through (a rare duplicate,
//! which QoS 1 allows, rather than a loss).

use std::collections::HashMap;

/// Sequence numbers remembered per origin: more than a subscription's buffer (the
/// async-nats subscription capacity the cluster sets), so that copies reordered between
/// subscriptions stay inside it.
pub const WINDOW: u64 = 1 << 17;

/// Origins remembered; beyond this the least recently seen is forgotten (an origin is one
/// start of one node, so this only fills up over many restarts).
const MAX_ORIGINS: usize = 64;

struct Window {
    highest: u64,
    bits: Box<[u64]>,
    last_used: u64,
}

impl Window {
    fn new(seq: u64, tick: u64) -> Window {
        let mut w = Window {
            highest: seq,
            bits: vec![0; (WINDOW / 64) as usize].into_boxed_slice(),
            last_used: tick,
        };
        w.set(seq);
        w
    }

    fn slot(seq: u64) -> (usize, u64) {
        let i = seq % WINDOW;
        ((i / 64) as usize, 1 << (i % 64))
    }

    fn set(&mut self, seq: u64) {
        let (word, bit) = Self::slot(seq);
        self.bits[word] |= bit;
    }

    fn clear(&mut self, seq: u64) {
        let (word, bit) = Self::slot(seq);
        self.bits[word] &= !bit;
    }

    /// Records `seq`; true if it was not seen before.
    fn first_time(&mut self, seq: u64) -> bool {
        if seq > self.highest {
            // Forget what slides out of the window: the slots the new numbers reuse.
            if seq - self.highest >= WINDOW {
                self.bits.iter_mut().for_each(|w| *w = 0);
            } else {
                for s in self.highest + 1..seq {
                    self.clear(s);
                }
            }
            self.highest = seq;
            self.set(seq);
            return true;
        }
        if self.highest - seq >= WINDOW {
            return true;
        }
        let (word, bit) = Self::slot(seq);
        let seen = self.bits[word] & bit != 0;
        self.bits[word] |= bit;
        !seen
    }
}

/// Every origin's window.
#[derive(Default)]
pub struct Seen {
    origins: HashMap<String, Window>,
    tick: u64,
}

impl Seen {
    /// Records (`origin`, `seq`); true the first time.
    pub fn first_time(&mut self, origin: &str, seq: u64) -> bool {
        self.tick += 1;
        let tick = self.tick;
        if let Some(w) = self.origins.get_mut(origin) {
            w.last_used = tick;
            return w.first_time(seq);
        }
        if self.origins.len() >= MAX_ORIGINS {
            if let Some(oldest) = self
                .origins
                .iter()
                .min_by_key(|(_, w)| w.last_used)
                .map(|(k, _)| k.clone())
            {
                self.origins.remove(&oldest);
            }
        }
        self.origins
            .insert(origin.to_owned(), Window::new(seq, tick));
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicates_are_caught_in_any_order() {
        let mut seen = Seen::default();
        assert!(seen.first_time("n1", 5));
        assert!(!seen.first_time("n1", 5));
        assert!(seen.first_time("n1", 3));
        assert!(seen.first_time("n1", 9));
        assert!(!seen.first_time("n1", 3));
        assert!(seen.first_time("n1", 4));
        assert!(seen.first_time("n2", 5), "origins are apart");
        // Far ahead: the window slides, older ones inside it are still known.
        assert!(seen.first_time("n1", WINDOW + 2));
        assert!(!seen.first_time("n1", WINDOW + 2));
        assert!(seen.first_time("n1", WINDOW + 1));
        // Older than the window: let through.
        assert!(seen.first_time("n1", 1));
        // A slot reused after sliding is not mistaken for its old number.
        assert!(seen.first_time("n1", 2 * WINDOW + 5));
        assert!(seen.first_time("n1", WINDOW + 5 + WINDOW - 1));
    }

    #[test]
    fn origins_are_bounded() {
        let mut seen = Seen::default();
        for i in 0..MAX_ORIGINS * 2 {
            assert!(seen.first_time(&format!("n{i}"), 1));
        }
        assert!(seen.origins.len() <= MAX_ORIGINS);
        assert!(!seen.first_time(&format!("n{}", MAX_ORIGINS * 2 - 1), 1));
    }
}
