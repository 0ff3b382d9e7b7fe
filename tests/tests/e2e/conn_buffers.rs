//! Connection buffers sized for idle connections (issue 14, memory per connection): the
//! read buffer starts at a few hundred bytes before CONNECT and while a client is quiet,
//! grows while it streams, and is dropped when empty; the write buffer is dropped once
//! written out. Packets larger than the small buffers, packets split across reads, and
//! traffic after a quiet spell must all still arrive intact.

use std::time::Duration;

use gatehouse_tests::raw::{publish_bytes, ConnectBuilder, Props, ProtocolBroker, WillSpec};

/// A CONNECT far larger than the initial read buffer (a 60 KB will payload, near the 64 KiB a will payload can have), written in
/// small pieces: it is read whole and its will is published intact when the client drops.
#[tokio::test]
async fn large_connect_written_in_pieces_is_read_whole() {
    let b = ProtocolBroker::start().await;
    let mut watcher = b.v5("buffers-watcher").await;
    watcher.sub_ok(1, "buffers/will", 0).await;
    let payload: Vec<u8> = (0..60_000u32).map(|i| (i % 251) as u8).collect();
    let connect = ConnectBuilder::new("buffers-big-connect")
        .will(WillSpec::new("buffers/will", &payload))
        .build();
    let mut c = b.client().await;
    for piece in connect.chunks(97) {
        c.send(piece).await;
    }
    c.expect_connack_ok().await;
    drop(c);
    let will = watcher.expect_publish().await;
    assert_eq!(will.topic, "buffers/will");
    assert_eq!(&will.payload[..], &payload[..]);
}

/// A quiet connection (small read buffer) then sends a burst: a 300 KB PUBLISH, then many
/// small ones in one write, then, after another quiet spell, one more. Every message
/// reaches the subscriber intact and in order; the subscriber's write buffer, dropped
/// between batches, is rebuilt each time.
#[tokio::test]
async fn bursts_after_quiet_spells_arrive_intact() {
    let b = ProtocolBroker::start().await;
    let mut sub = b.v5("buffers-sub").await;
    sub.sub_ok(1, "buffers/t", 0).await;
    let mut publisher = b.v5("buffers-pub").await;
    tokio::time::sleep(Duration::from_millis(200)).await;

    let big: Vec<u8> = (0..300_000u32).map(|i| (i % 253) as u8).collect();
    publisher.publish("buffers/t", &big, 0, false, 0).await;
    let got = sub.expect_publish().await;
    assert_eq!(&got.payload[..], &big[..]);

    let mut burst = Vec::new();
    for i in 0..500u32 {
        burst.extend(publish_bytes(
            0,
            b"buffers/t",
            None,
            Some(&Props::default()),
            format!("m{i}").as_bytes(),
        ));
    }
    publisher.send(&burst).await;
    for i in 0..500u32 {
        let got = sub.expect_publish().await;
        assert_eq!(&got.payload[..], format!("m{i}").as_bytes(), "message {i}");
    }

    tokio::time::sleep(Duration::from_millis(200)).await;
    publisher.publish("buffers/t", b"after", 0, false, 0).await;
    assert_eq!(&sub.expect_publish().await.payload[..], b"after");
}
