//! Message Expiry Interval (MQTT 5 §3.3.2.3.3): forwarded, decremented by the time
//! waited, and expired messages are not delivered.

use std::time::Duration;

use gatehouse_protocol::PublishProperties;
use gatehouse_tests::raw::*;

use crate::marker;

fn expiring(secs: u32) -> PublishProperties {
    PublishProperties {
        message_expiry_interval: Some(secs),
        ..Default::default()
    }
}

async fn offline_subscriber(b: &ProtocolBroker, id: &str, topic: &str) {
    let (mut s, _) = b.v5_with(ConnectBuilder::new(id).session_expiry(60)).await;
    s.sub_ok(1, topic, 1).await;
    s.disconnect().await;
}

async fn resume(b: &ProtocolBroker, id: &str) -> RawClient {
    let (c, ack) = b
        .v5_with(
            ConnectBuilder::new(id)
                .clean_start(false)
                .session_expiry(60),
        )
        .await;
    assert!(ack.session_present);
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expiry_is_forwarded_on_live_delivery() {
    let b = ProtocolBroker::start().await;
    let mut s = b.v5("ex-live").await;
    s.sub_ok(1, "ex/live", 0).await;
    let mut publ = b.v5("ex-live-pub").await;
    publ.publish_props("ex/live", b"x", 0, false, 0, expiring(30))
        .await;
    publ.publish("ex/live", b"y", 0, false, 0).await;
    let p = s.expect_publish().await;
    let e = p
        .properties
        .message_expiry_interval
        .expect("expiry forwarded");
    assert!((29..=30).contains(&e), "{e}");
    let p = s.expect_publish().await;
    assert_eq!(
        p.properties.message_expiry_interval, None,
        "none when none was set"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expiry_is_decremented_by_the_time_spent_queued() {
    let b = ProtocolBroker::start().await;
    offline_subscriber(&b, "ex-dec", "ex/dec").await;
    let mut publ = b.v5("ex-dec-pub").await;
    publ.publish_props("ex/dec", b"x", 1, false, 1, expiring(10))
        .await;
    publ.expect_raw(&puback_bytes(1)).await;
    tokio::time::sleep(Duration::from_millis(2000)).await;
    let mut s = resume(&b, "ex-dec").await;
    let p = s.expect_publish().await;
    let e = p
        .properties
        .message_expiry_interval
        .expect("expiry present");
    assert!((1..=8).contains(&e), "10 s minus ~2 s waited: got {e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_messages_are_not_delivered() {
    let b = ProtocolBroker::start().await;
    offline_subscriber(&b, "ex-gone", "ex/gone").await;
    let mut publ = b.v5("ex-gone-pub").await;
    publ.publish_props("ex/gone", b"old", 1, false, 1, expiring(1))
        .await;
    publ.expect_raw(&puback_bytes(1)).await;
    publ.publish_props("ex/gone", b"fresh", 1, false, 2, expiring(60))
        .await;
    publ.expect_raw(&puback_bytes(2)).await;
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let mut s = resume(&b, "ex-gone").await;
    let p = s.expect_publish().await;
    assert_eq!(&p.payload[..], b"fresh", "the expired message was dropped");
    s.puback(p.packet_id.unwrap()).await;
    marker(&mut publ, &mut s, "ex/gone").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expiry_is_capped_by_the_broker_maximum() {
    let b = ProtocolBroker::with_limits("maxMessageExpirySeconds: 5").await;
    let mut s = b.v5("ex-cap").await;
    s.sub_ok(1, "ex/cap", 0).await;
    let mut publ = b.v5("ex-cap-pub").await;
    publ.publish_props("ex/cap", b"x", 0, false, 0, expiring(1000))
        .await;
    let p = s.expect_publish().await;
    let e = p
        .properties
        .message_expiry_interval
        .expect("expiry present");
    assert!((4..=5).contains(&e), "capped at 5: got {e}");
}
