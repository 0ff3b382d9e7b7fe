//! Raw-byte protocol conformance tests (MQTT 5 unless a test says 3.1.1): the broker
//! in-process on a free loopback port, a raw client writing hand-made bytes, one
//! module per feature. Reason codes that matter are asserted on the bytes themselves.

#![allow(
    clippy::unwrap_used,
    clippy::disallowed_methods,
    reason = "test code: a panic is a failed test, and fixtures are written synchronously"
)]

mod aliases;
mod backpressure;
mod connect;
mod dollar;
mod expiry;
mod flow_control;
mod malformed;
mod qos;
mod redelivery;
mod request_response;
mod retained;
mod sessions;
mod shared;
mod statestore;
mod subscriptions;
mod v311;
mod will;

use gatehouse_tests::raw::*;

/// Publish a QoS 0 marker from `publisher` and expect it as the very next packet at
/// `subscriber` (subscribed to `topic`): whatever was routed to `subscriber` before the
/// marker would have arrived first, so this proves nothing else was sent.
pub async fn marker(publisher: &mut RawClient, subscriber: &mut RawClient, topic: &str) {
    publisher.publish(topic, b"marker", 0, false, 0).await;
    let p = subscriber.expect_publish().await;
    assert_eq!(
        (p.topic.as_str(), &p.payload[..]),
        (topic, &b"marker"[..]),
        "expected only the marker, got {p:?}"
    );
}
