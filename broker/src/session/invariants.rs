//! The session state machine ([`QosState`]) under arbitrary sequences of events, checked
//! against its invariants after every step: the property shared by the fuzz target
//! (`fuzz/fuzz_targets/session.rs`, run in CI for a bounded time) and the property test
//! at the end of this file (stable Rust, part of `cargo test`).
//!
//! The input bytes are read as a configuration (queue policy, Receive Maximum both ways,
//! protocol version, a starting packet id near the wrap-around) and then as events:
//! PUBLISH in at QoS 0/1/2 with arbitrary ids, PUBACK/PUBREC/PUBREL/PUBCOMP with arbitrary
//! ids or ids in flight, deliveries (written or discarded), messages queued at any QoS and
//! size (some expiring), time passing, disconnect and resume.
//!
//! Checked after every step, besides [`QosState::check`] (ids unique in flight, window and
//! queue bounds, byte count):
//! - a packet id handed out for a new PUBLISH is not in flight;
//! - a message is sent as a new PUBLISH at most once; after that only resent (DUP) under
//!   the same id on resume, and never again once its PUBREC came (PUBREL instead);
//! - a QoS 2 PUBLISH from the client is routed at most once until released (PUBREL), and
//!   the unreleased ids are exactly the ones routed and not released;
//! - our Receive Maximum holds: a PUBLISH past it is refused, never routed;
//! - QoS 0 is shed: not queued for an offline session, nor past the queue length;
//! - nothing is lost: every message queued is still queued, in flight, or accounted for
//!   (acknowledged, sent at QoS 0, expired, discarded, or dropped to make room);
//! - no panic.

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use gatehouse_protocol::{PacketId, PublishProperties, QoS, ReasonCode};

use super::machine::{InboundWindow, Next, PublishIn, QosState, Reply, Resend, Stage};
use super::queue::{EnqueueOutcome, QueuePolicy};
use crate::message::{Delivery, Message};

/// One in-flight delivery as the model expects it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Flight {
    packet_id: u16,
    tag: u64,
    /// PUBREC came: only PUBREL may be resent.
    released: bool,
}

/// The state machine and a model of what it must do.
struct Harness {
    qos: QosState,
    policy: QueuePolicy,
    /// The client's Receive Maximum (our window towards it).
    receive_maximum: usize,
    /// Our Receive Maximum (the client's window towards us).
    inbound_maximum: usize,
    v311: bool,
    online: bool,
    now: Instant,
    next_tag: u64,
    /// Messages sent as a new PUBLISH so far.
    sent: HashSet<u64>,
    /// In flight, in send order.
    flights: Vec<Flight>,
    /// Client QoS 2 ids routed and not yet released.
    unreleased: BTreeSet<u16>,
    /// Messages accepted into the queue.
    accepted: u64,
    /// Messages accounted for: acknowledged, sent at QoS 0, expired, discarded, evicted.
    gone: u64,
}

/// Reads the input a byte at a time; zeros once it runs out.
struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn next(&mut self) -> Option<u8> {
        let (&b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(b)
    }
    fn byte(&mut self) -> u8 {
        self.next().unwrap_or(0)
    }
}

fn delivery(tag: u64, qos: QoS, size: usize, expires_at: Option<Instant>) -> Delivery {
    Delivery {
        message: Arc::new(Message {
            topic: format!("t/{tag}"),
            payload: Bytes::from(vec![0u8; size]),
            qos,
            retain: false,
            properties: PublishProperties::default(),
            expires_at,
            origin: None,
        }),
        qos,
        retain: false,
        subscription_ids: Default::default(),
        seq: None,
    }
}

fn tag_of(d: &Delivery) -> u64 {
    d.message
        .topic
        .strip_prefix("t/")
        .and_then(|t| t.parse().ok())
        .unwrap_or(u64::MAX)
}

fn qos_of(b: u8) -> QoS {
    match b % 3 {
        0 => QoS::AtMostOnce,
        1 => QoS::AtLeastOnce,
        _ => QoS::ExactlyOnce,
    }
}

fn fail<T>(why: String) -> Result<T, String> {
    Err(why)
}

impl Harness {
    fn new(input: &mut Input<'_>) -> Harness {
        let config = input.byte();
        let policy = QueuePolicy {
            length: usize::from(input.byte() % 8) + 1,
            max_bytes: usize::from(input.byte() % 64) * 4 + 8,
            drop_oldest: config & 1 != 0,
        };
        let now = Instant::now();
        let mut h = Harness {
            qos: QosState::default(),
            policy,
            receive_maximum: usize::from(input.byte() % 8) + 1,
            inbound_maximum: usize::from(input.byte() % 8) + 1,
            v311: config & 2 != 0,
            online: true,
            now,
            next_tag: 0,
            sent: HashSet::new(),
            flights: Vec::new(),
            unreleased: BTreeSet::new(),
            accepted: 0,
            gone: 0,
        };
        if config & 4 != 0 {
            // Start near the wrap-around of packet ids, as a session restored with one
            // message in flight would.
            let id = u16::MAX - u16::from(input.byte() % 8);
            if let Some(packet_id) = PacketId::new(id) {
                let tag = h.tag();
                h.qos.restore_in_flight(
                    packet_id,
                    Stage::AwaitPubAck,
                    delivery(tag, QoS::AtLeastOnce, 0, None),
                );
                h.accepted += 1;
                h.sent.insert(tag);
                h.flights.push(Flight {
                    packet_id: id,
                    tag,
                    released: false,
                });
            }
        }
        h
    }

    fn tag(&mut self) -> u64 {
        self.next_tag += 1;
        self.next_tag
    }

    /// An id: one in flight (to acknowledge), or any small one.
    fn id(&self, b: u8) -> PacketId {
        if b & 0x80 != 0 && !self.flights.is_empty() {
            let f = self.flights[usize::from(b & 0x7F) % self.flights.len()];
            return PacketId::new(f.packet_id).unwrap_or(PacketId::MIN);
        }
        PacketId::new(u16::from(b % 16) + 1).unwrap_or(PacketId::MIN)
    }

    fn window(&self, held: u8) -> InboundWindow {
        InboundWindow {
            maximum: self.inbound_maximum,
            held_pubacks: (!self.v311).then_some(usize::from(held % 4)),
        }
    }

    fn forget(&mut self, id: PacketId) -> Option<Flight> {
        let pos = self.flights.iter().position(|f| f.packet_id == id.get())?;
        Some(self.flights.remove(pos))
    }

    fn step(&mut self, input: &mut Input<'_>) -> Result<(), String> {
        let op = input.byte();
        match op % 11 {
            // PUBLISH in.
            0 => {
                let qos = qos_of(input.byte());
                let id = self.id(input.byte());
                let held = input.byte();
                let window = self.window(held);
                let counted = window.held_pubacks.unwrap_or(0) + self.unreleased.len();
                let expected = match qos {
                    QoS::AtMostOnce => PublishIn::Route,
                    QoS::AtLeastOnce if !self.v311 && counted >= self.inbound_maximum => {
                        PublishIn::ReceiveMaximumExceeded
                    }
                    QoS::AtLeastOnce => PublishIn::Route,
                    // Routed already, not released: never routed again.
                    QoS::ExactlyOnce if self.unreleased.contains(&id.get()) => PublishIn::Duplicate,
                    QoS::ExactlyOnce if counted >= self.inbound_maximum => {
                        PublishIn::ReceiveMaximumExceeded
                    }
                    QoS::ExactlyOnce => PublishIn::Route,
                };
                let step = self.qos.on_publish_in(qos, id, window);
                if step != expected {
                    return fail(format!(
                        "{qos:?} PUBLISH {} ({} unreleased, window {counted}/{}): {step:?}, expected {expected:?}",
                        id.get(),
                        self.unreleased.len(),
                        self.inbound_maximum
                    ));
                }
                if qos == QoS::ExactlyOnce && step == PublishIn::Route {
                    self.unreleased.insert(id.get());
                }
            }
            // PUBREL.
            1 => {
                let id = self.id(input.byte());
                let known = self.unreleased.remove(&id.get());
                let expected = if known {
                    ReasonCode::SUCCESS
                } else {
                    ReasonCode::PACKET_IDENTIFIER_NOT_FOUND
                };
                let reply = self.qos.on_pubrel(id);
                if reply != Reply::PubComp(id, expected) {
                    return fail(format!("PUBREL {}: {reply:?}", id.get()));
                }
            }
            // A QoS 2 PUBLISH refused after all (error PUBREC).
            2 => {
                let id = self.id(input.byte());
                let known = self.unreleased.remove(&id.get());
                if self.qos.on_publish_in_refused(id) != known {
                    return fail(format!("refused QoS 2 PUBLISH {}", id.get()));
                }
            }
            // PUBACK.
            3 => {
                let id = self.id(input.byte());
                let expected = self.forget(id);
                match (self.qos.on_puback(id), expected) {
                    (super::Changed::Done(d), Some(f)) if tag_of(&d) == f.tag => self.gone += 1,
                    (super::Changed::Nothing, None) => {}
                    (got, want) => {
                        return fail(format!("PUBACK {}: {got:?}, expected {want:?}", id.get()))
                    }
                }
            }
            // PUBREC, success or error.
            4 => {
                let id = self.id(input.byte());
                let reason = if input.byte() & 1 == 0 {
                    ReasonCode::SUCCESS
                } else {
                    ReasonCode::UNSPECIFIED_ERROR
                };
                let pos = self.flights.iter().position(|f| f.packet_id == id.get());
                let (reply, changed) = self.qos.on_pubrec(id, reason);
                let changed = format!("{changed:?}");
                match pos {
                    None => {
                        if reply != Reply::PubRel(id, ReasonCode::PACKET_IDENTIFIER_NOT_FOUND) {
                            return fail(format!("PUBREC for unknown {}: {reply:?}", id.get()));
                        }
                    }
                    Some(pos) if reason.is_error() => {
                        self.flights.remove(pos);
                        self.gone += 1;
                        if reply != Reply::Nothing || !changed.starts_with("Done") {
                            return fail(format!("error PUBREC {}: {reply:?}", id.get()));
                        }
                    }
                    Some(pos) => {
                        self.flights[pos].released = true;
                        if reply != Reply::PubRel(id, ReasonCode::SUCCESS) {
                            return fail(format!("PUBREC {}: {reply:?}", id.get()));
                        }
                    }
                }
            }
            // PUBCOMP.
            5 => {
                let id = self.id(input.byte());
                let pos = self
                    .flights
                    .iter()
                    .position(|f| f.packet_id == id.get() && f.released);
                let done = matches!(self.qos.on_pubcomp(id), super::Changed::Done(_));
                if done != pos.is_some() {
                    return fail(format!("PUBCOMP {}: done {done}", id.get()));
                }
                if let Some(pos) = pos {
                    self.flights.remove(pos);
                    self.gone += 1;
                }
            }
            // Deliver up to n, some discarded (too large for the client).
            6 => {
                let n = input.byte() % 8 + 1;
                let discard = input.byte();
                for i in 0..n {
                    if !self.deliver_one(discard & (1 << i) != 0)? {
                        break;
                    }
                }
            }
            // Queue a message (pressure: several at once).
            7 | 8 => {
                let qos = qos_of(input.byte());
                let size = usize::from(input.byte() % 32);
                let copies = input.byte() % 4 + 1;
                let expires = input.byte();
                for _ in 0..copies {
                    self.enqueue(qos, size, expires)?;
                }
            }
            // Time passes.
            9 => self.now += Duration::from_millis(u64::from(input.byte()) * 10),
            // Disconnect, or reconnect and resume.
            _ => {
                if self.online {
                    self.online = false;
                } else {
                    self.online = true;
                    self.resume()?;
                }
            }
        }
        self.check()
    }

    fn enqueue(&mut self, qos: QoS, size: usize, expires: u8) -> Result<(), String> {
        let tag = self.tag();
        let expires_at =
            (expires & 1 != 0).then(|| self.now + Duration::from_millis(u64::from(expires) * 5));
        let before = self.qos.queued().len();
        let (outcome, evicted) = self.qos.enqueue(
            delivery(tag, qos, size, expires_at),
            &self.policy,
            self.online,
        );
        if outcome != EnqueueOutcome::Dropped {
            self.accepted += 1;
        }
        self.gone += evicted.len() as u64;
        if qos == QoS::AtMostOnce && outcome.queued() {
            if !self.online {
                return fail("QoS 0 queued for an offline session".into());
            }
            if before > 0 && before >= self.policy.length {
                return fail(format!("QoS 0 queued past the length ({before} queued)"));
            }
        }
        if outcome == EnqueueOutcome::QueuedDroppedOldest && evicted.is_empty() {
            return fail("dropped the oldest without dropping any".into());
        }
        Ok(())
    }

    /// One round of `next_delivery`; false when nothing more can go now.
    fn deliver_one(&mut self, discard: bool) -> Result<bool, String> {
        let in_flight: BTreeSet<u16> = self.flights.iter().map(|f| f.packet_id).collect();
        match self.qos.next_delivery(self.receive_maximum, self.now) {
            Next::Empty | Next::Blocked => Ok(false),
            Next::Expired(d) => {
                match d.message.expires_at {
                    Some(at) if at <= self.now => {}
                    _ => return fail(format!("message {} expired early", tag_of(&d))),
                }
                self.gone += 1;
                Ok(true)
            }
            Next::Publish {
                delivery,
                packet_id,
                ..
            } => {
                let (tag, qos) = (tag_of(delivery), delivery.qos);
                if !self.sent.insert(tag) {
                    return fail(format!("message {tag} sent as a new PUBLISH twice"));
                }
                match (qos, packet_id) {
                    (QoS::AtMostOnce, None) => {}
                    (QoS::AtMostOnce, Some(_)) => return fail("QoS 0 with a packet id".into()),
                    (_, None) => return fail("QoS 1/2 without a packet id".into()),
                    (_, Some(id)) if in_flight.contains(&id.get()) => {
                        return fail(format!("packet id {} handed out while in flight", id.get()))
                    }
                    (_, Some(_)) if self.flights.len() >= self.receive_maximum => {
                        return fail("sent past the client's Receive Maximum".into())
                    }
                    (_, Some(_)) => {}
                }
                if discard || qos == QoS::AtMostOnce {
                    // Discarded, or QoS 0: done with once written.
                    if discard {
                        self.qos.discarded();
                    } else {
                        self.qos.sent(packet_id);
                    }
                    self.gone += 1;
                    return Ok(true);
                }
                if let Some(id) = packet_id {
                    self.flights.push(Flight {
                        packet_id: id.get(),
                        tag,
                        released: false,
                    });
                }
                self.qos.sent(packet_id);
                Ok(true)
            }
        }
    }

    fn resume(&mut self) -> Result<(), String> {
        let resent: Vec<(u16, Option<u64>)> = self
            .qos
            .resume(self.now)
            .map(|r| match r {
                Resend::PubRel(id) => (id.get(), None),
                Resend::Publish {
                    delivery,
                    packet_id,
                    ..
                } => (packet_id.get(), Some(tag_of(delivery))),
            })
            .collect();
        let expected: Vec<(u16, Option<u64>)> = self
            .flights
            .iter()
            .map(|f| (f.packet_id, (!f.released).then_some(f.tag)))
            .collect();
        if resent != expected {
            return fail(format!("resumed with {resent:?}, expected {expected:?}"));
        }
        Ok(())
    }

    fn check(&self) -> Result<(), String> {
        self.qos.check(&self.policy, self.receive_maximum)?;
        if self.qos.unreleased() != self.unreleased.len()
            || !self
                .qos
                .unreleased_ids()
                .eq(self.unreleased.iter().copied())
        {
            return fail("unreleased QoS 2 ids differ from those routed".into());
        }
        if self.qos.in_flight() != self.flights.len() {
            return fail(format!(
                "{} in flight, expected {}",
                self.qos.in_flight(),
                self.flights.len()
            ));
        }
        let held = (self.qos.queued().len() + self.qos.in_flight()) as u64;
        if self.accepted != held + self.gone {
            return fail(format!(
                "{} accepted, {held} held and {} accounted for",
                self.accepted, self.gone
            ));
        }
        Ok(())
    }
}

/// Run the events `data` describes (see the module documentation), checking the
/// invariants after each; the first violation comes back.
pub fn run(data: &[u8]) -> Result<(), String> {
    let mut input = Input(data);
    let mut h = Harness::new(&mut input);
    let mut step = 0usize;
    while !input.0.is_empty() {
        h.step(&mut input)
            .map_err(|e| format!("step {step}: {e}"))?;
        step += 1;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]
        /// The invariants of the module documentation under arbitrary event sequences.
        #[test]
        fn session_invariants_hold_under_any_event_sequence(
            data in proptest::collection::vec(any::<u8>(), 0..1500)
        ) {
            if let Err(violation) = super::run(&data) {
                prop_assert!(false, "{violation}");
            }
        }
    }

    /// A long fixed sequence from a small PRNG: deterministic, reaches deeper states
    /// (full windows, wrapped ids, evictions) than the short proptest cases.
    #[test]
    fn session_invariants_hold_on_long_seeded_sequences() {
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for _ in 0..50 {
            let data: Vec<u8> = (0..20_000)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    (x >> 24) as u8
                })
                .collect();
            if let Err(violation) = super::run(&data) {
                panic!("{violation}");
            }
        }
    }
}
