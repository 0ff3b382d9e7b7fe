//! The session's QoS state machine (`gatehouse::session::machine::QosState`) fed arbitrary
//! event sequences: PUBLISH in at QoS 0/1/2 with arbitrary ids, PUBACK/PUBREC/PUBREL/
//! PUBCOMP with arbitrary ids or ids in flight, deliveries written or discarded, messages
//! queued at any QoS and size (queue pressure, some expiring), time passing, disconnect
//! and resume.
//!
//! Invariants checked after every step (`gatehouse::session::invariants`, shared with the
//! property tests there; any violation aborts the fuzzer): no packet id handed out or held
//! twice while in flight; a message sent as a new PUBLISH at most once, resent only with
//! DUP under its id and never after PUBREC; a client's QoS 2 PUBLISH routed at most once
//! until released; both Receive Maximums held; queue bounds held and QoS 0 shed; every
//! queued message accounted for; no panic.
//!
//! CI runs it for a bounded time (`.ci/run`):
//!   cargo +nightly fuzz run session -- -max_total_time=60

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(violation) = gatehouse::session::invariants::run(data) {
        panic!("session invariant violated: {violation}");
    }
});
