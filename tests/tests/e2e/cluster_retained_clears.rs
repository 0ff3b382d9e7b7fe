//! Cluster mode (issue 15): one client setting and clearing retained messages in a loop
//! cannot deny retained messages to everyone. A clear is a purge record that stays in
//! the `gatehouse-retained` bucket for 60 s and counts against its `max_bytes`; a flood
//! of them used to fill the bucket for about a minute, and then every node refused every
//! retained PUBLISH with 0x80. Now each node writes clears' records at a bounded rate (a
//! budget of bytes per 60 s, an eighth of the bucket's room for them), and a client whose
//! clear finds the budget spent is not read until it is repaid.

use std::time::Duration;

use gatehouse_protocol::Packet;

use super::cluster::Nodes;
use super::cluster_support::{retained_caps, retained_puback, retained_stream};

/// `broker.maxRetainedMessages` and `maxRetainedBytes` of the nodes (small, so that the
/// bucket is small: `max_bytes` 28,480, of which 14,240 for clears).
const MAX_MESSAGES: u64 = 20;
const MAX_BYTES: u64 = 2000;

/// The retained message on `topic` a new subscriber on node `n` gets, if any.
async fn retained_on(nodes: &Nodes, n: usize, topic: &str, reader: &str) -> Option<Vec<u8>> {
    let mut c = nodes.client(n, reader).await;
    c.sub_ok(1, topic, 0).await;
    match c.recv(Duration::from_secs(1)).await {
        Some(Packet::Publish(p)) => Some(p.payload.to_vec()),
        _ => None,
    }
}

/// One client on node 1 sets and clears ever new topics as fast as it can (QoS 0,
/// pipelined: 2,000 cycles). Meanwhile another client, on node 3, sets retained messages
/// every 300 ms for 20 s: every one is acknowledged 0x00 (on the code before the clear
/// budget, the flood filled the bucket within a second or two and they got 0x80). The
/// bucket holds few records, the flood was slowed, and the other client's retained
/// messages and its own clear reach node 2.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_set_and_clear_flood_does_not_deny_retained_messages_to_others() {
    let Some(nodes) = Nodes::start_with(
        "a_set_and_clear_flood",
        3,
        retained_caps(MAX_MESSAGES, MAX_BYTES),
    )
    .await
    else {
        return;
    };
    let mut stream = retained_stream(&nodes).await;
    let mut victim = nodes.client(3, "clears-victim").await;
    assert_eq!(
        retained_puback(&mut victim, "victim/warm", b"warm", 1).await,
        0
    );

    let mut flooder = nodes.client(1, "clears-flooder").await;
    let flood = tokio::spawn(async move {
        let mut cycles = 0;
        for i in 0..2000 {
            let topic = format!("flood/{i:04}");
            flooder.publish(&topic, &[b'f'; 40], 0, true, 0).await;
            flooder.publish(&topic, b"", 0, true, 0).await;
            cycles += 1;
        }
        cycles
    });

    let started = tokio::time::Instant::now();
    let mut id = 1;
    let mut refused = Vec::new();
    while started.elapsed() < Duration::from_secs(20) {
        id += 1;
        let code = retained_puback(&mut victim, &format!("victim/{}", id % 5), b"mine", id).await;
        if code != 0 {
            refused.push((started.elapsed(), code));
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let info = stream.info().await.expect("stream info");
    let flooded = flood.is_finished();
    flood.abort();
    eprintln!(
        "after 20 s of flood: the bucket holds {} records, {} bytes (max_bytes {}); the \
         flooder finished writing: {flooded}; the victim's refusals: {refused:?}",
        info.state.messages, info.state.bytes, info.config.max_bytes
    );
    assert_eq!(
        refused,
        Vec::new(),
        "the other client's retained PUBLISHes during the flood were refused"
    );
    assert!(
        info.state.messages < 60,
        "the flood left {} records in the bucket",
        info.state.messages
    );
    // The other client's retained messages are everywhere, and its own clear works.
    assert_eq!(
        retained_on(&nodes, 2, &format!("victim/{}", id % 5), "reader-1")
            .await
            .as_deref(),
        Some(&b"mine"[..])
    );
    assert_eq!(
        retained_puback(&mut victim, "victim/warm", b"", 1000).await,
        0
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut i = 0;
    while retained_on(&nodes, 2, "victim/warm", &format!("reader-c{i}"))
        .await
        .is_some()
    {
        i += 1;
        assert!(
            tokio::time::Instant::now() < deadline,
            "node 2 still has the cleared message"
        );
    }
}
