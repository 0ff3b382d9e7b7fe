//! Cluster mode (issue 15) under a publisher faster than NATS: the node holds the
//! publisher back (it stops reading its socket) while the way to the other nodes is
//! congested, instead of reading its messages and dropping those that do not fit in the
//! outbox. Measured before this: `benches/cluster.sh` QoS 0 1 → 2 across nodes delivered
//! 0.9 % of what node 1 accepted.

use std::sync::atomic::Ordering;
use std::time::Duration;

use gatehouse_protocol::codec;
use gatehouse_protocol::packet::{Packet, Publish};
use gatehouse_protocol::{ProtocolVersion, QoS};
use gatehouse_tests::raw::{ConnectBuilder, RawClient};

use crate::cluster::Nodes;

async fn connect(addr: std::net::SocketAddr, id: &str) -> RawClient {
    let mut c = RawClient::connect(addr).await;
    c.send(&ConnectBuilder::new(id).build()).await;
    c.expect_connack_ok().await;
    c
}

const MESSAGES: usize = 60_000;

/// 60,000 QoS 0 PUBLISHes written to node 1 in one burst (pre-encoded, as a device fleet's
/// gateway or a bridge would): the outbox to NATS (16,384 messages) would overflow many
/// times over; with backpressure node 1 forwards every one (`not_forwarded` stays 0) and
/// a subscriber on node 2 that keeps up receives (nearly) all of them.
#[tokio::test]
async fn a_publisher_faster_than_nats_is_held_not_dropped() {
    let Some(nodes) = Nodes::start_or_skip("a_publisher_faster_than_nats_is_held").await else {
        return;
    };
    let topic = "bp/fast";
    let mut sub = connect(nodes.addr(2), "bp-sub").await;
    sub.subscribe(1, topic, 0).await;
    let mut publisher = connect(nodes.addr(1), "bp-pub").await;
    // NATS spreads node 2's subscription through its cluster asynchronously: publish
    // until the subscriber sees one.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        assert!(
            tokio::time::Instant::now() < deadline,
            "node 2's subscription did not reach node 1 through NATS within 20 s"
        );
        publisher.publish(topic, b"warm", 0, false, 0).await;
        if sub.recv(Duration::from_millis(200)).await.is_some() {
            break;
        }
    }
    while sub.recv(Duration::from_millis(500)).await.is_some() {}
    let before = nodes
        .cluster(1)
        .stats()
        .not_forwarded
        .load(Ordering::Relaxed);

    let mut burst = bytes::BytesMut::new();
    for i in 0..MESSAGES {
        let mut payload = format!("{i:08}").into_bytes();
        payload.resize(64, b'.');
        let p = Publish {
            dup: false,
            qos: QoS::AtMostOnce,
            retain: false,
            topic: topic.to_owned(),
            packet_id: None,
            properties: Default::default(),
            payload: payload.into(),
        };
        codec::encode(&Packet::Publish(p), ProtocolVersion::V5, &mut burst).expect("encode");
    }
    let writer = tokio::spawn(async move {
        publisher.write(&burst).await.expect("the burst is written");
        publisher
    });

    let mut received = 0usize;
    while let Some(raw) = sub.recv_raw(Duration::from_secs(3)).await {
        if raw[0] >> 4 == 3 {
            received += 1;
        }
    }
    let _publisher = writer.await.expect("writer task");
    let not_forwarded = nodes
        .cluster(1)
        .stats()
        .not_forwarded
        .load(Ordering::Relaxed)
        - before;
    assert_eq!(
        not_forwarded, 0,
        "node 1 dropped {not_forwarded} of {MESSAGES} messages on the way to NATS (received {received})"
    );
    assert!(
        received * 10 >= MESSAGES * 9,
        "the subscriber on node 2 received {received} of {MESSAGES}"
    );

    // The same figures on /metrics (cluster families appear in cluster mode only).
    let node1 = crate::metrics::http(nodes.node(1).metrics_addr(), "GET", "/metrics").await;
    assert_eq!(node1.status, 200);
    let value = |text: &str, name: &str| -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("{name} missing from /metrics:\n{text}"))
    };
    let forwarded = value(&node1.body, "gatehouse_cluster_forwarded_total");
    assert!(forwarded >= MESSAGES as f64, "node 1 forwarded {forwarded}");
    assert_eq!(
        value(&node1.body, "gatehouse_cluster_not_forwarded_total"),
        before as f64
    );
    assert!(node1
        .body
        .contains("gatehouse_cluster_info{node=\"node1\"} 1"));
    let node2 = crate::metrics::http(nodes.node(2).metrics_addr(), "GET", "/metrics").await;
    let received_copies = value(&node2.body, "gatehouse_cluster_received_total");
    assert!(
        received_copies >= received as f64,
        "node 2 received {received_copies} copies from NATS, its subscriber {received}"
    );
    assert!(node2
        .body
        .contains("gatehouse_cluster_nats_subscriptions 1"));
}
