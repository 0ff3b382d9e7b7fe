//! QoS 0 backpressure (issue 14, fair delivery): a publisher whose QoS 0 PUBLISH finds a
//! subscriber's queue full is not read until that subscriber drains, for at most 200 ms
//! per congestion, instead of being read, routed and then shed.

use std::time::{Duration, Instant};

use super::*;

const TOPIC: &str = "bp/t";
/// Large messages fill the kernel's socket buffers (a few MiB on loopback) quickly, so
/// the subscriber's queue (length 10) is reached while it is not reading.
const PAYLOAD: usize = 128 * 1024;
const COUNT: usize = 300;

async fn broker() -> ProtocolBroker {
    ProtocolBroker::with_limits("subscriberQueueLimit: { length: 10 }, maxPacketSizeBytes: 1048576")
        .await
}

async fn flood(publisher: &mut RawClient) {
    let payload = vec![7u8; PAYLOAD];
    for _ in 0..COUNT {
        publisher.publish(TOPIC, &payload, 0, false, 0).await;
    }
}

/// The subscriber starts reading 60 ms after the flood starts (well within the 200 ms
/// hold): it gets every message. Before the change, the broker read the whole flood and
/// dropped what did not fit in the queue and the socket buffers.
#[tokio::test]
async fn a_subscriber_that_reads_late_gets_every_qos0_message() {
    let b = broker().await;
    let mut sub = b.v5("bp-sub").await;
    sub.sub_ok(1, TOPIC, 0).await;
    let mut publisher = b.v5("bp-pub").await;
    let read = async {
        tokio::time::sleep(Duration::from_millis(60)).await;
        let mut got = 0;
        while got < COUNT {
            match sub.next_event(Duration::from_secs(3)).await {
                Event::Frame(f) if f[0] >> 4 == 3 => got += 1,
                Event::Frame(f) => panic!("unexpected packet {:02X?}", &f[..2]),
                _ => break,
            }
        }
        got
    };
    let (_, got) = tokio::join!(flood(&mut publisher), read);
    assert_eq!(
        got, COUNT,
        "QoS 0 messages delivered to a subscriber that keeps up"
    );
}

/// A subscriber that never reads holds the publisher back once, briefly: the publisher
/// is read again (its PINGREQ answered) soon after, and other subscribers are served.
#[tokio::test]
async fn a_subscriber_that_never_reads_holds_a_qos0_publisher_only_briefly() {
    let b = broker().await;
    let mut dead = b.v5("bp-dead").await;
    dead.sub_ok(1, TOPIC, 0).await;
    let mut publisher = b.v5("bp-pub2").await;
    let start = Instant::now();
    flood(&mut publisher).await;
    publisher.ping().await;
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "the publisher was held {:?} by a subscriber that never reads",
        start.elapsed()
    );
    let mut other = b.v5("bp-other").await;
    other.sub_ok(1, "bp/other", 0).await;
    marker(&mut publisher, &mut other, "bp/other").await;
    drop(dead);
}
