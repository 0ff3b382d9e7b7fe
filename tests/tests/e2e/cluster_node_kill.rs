//! Cluster mode (issue 15): `kill -9` of a Gatehouse node during QoS 1 traffic loses no
//! message it acknowledged. A node's PUBACK waits until the message is in the NATS
//! server's hands (a confirmation round trip through the server after each run of
//! forwarded messages), so a subscriber on another node gets every acknowledged message.
//! The killed node is a real `gatehouse` process (the other nodes run in-process).

use std::collections::BTreeSet;
use std::time::Duration;

use bytes::BytesMut;
use gatehouse_protocol::codec;
use gatehouse_protocol::packet::{Packet, PacketId, Publish};
use gatehouse_protocol::{ProtocolVersion, QoS};
use gatehouse_tests::broker::TempDir;

use crate::cluster::Nodes;
use crate::cluster_support::{connect_v5, process_node};

/// QoS 1 PUBLISHes in flight at once (below the broker's Receive Maximum).
const WINDOW: usize = 1000;

fn publish(topic: &str, i: usize) -> Publish {
    Publish {
        dup: false,
        qos: QoS::AtLeastOnce,
        retain: false,
        topic: topic.to_owned(),
        packet_id: PacketId::new((i % WINDOW + 1) as u16),
        properties: Default::default(),
        payload: format!("{i:08}").into_bytes().into(),
    }
}

/// Windows of 1,000 pipelined QoS 1 PUBLISHes to the node process; as soon as the first
/// PUBACK of the second window arrives the process gets SIGKILL. Every PUBLISH whose PUBACK
/// the client read (before the kill and from what was already on its socket) must reach
/// the subscriber on node 2.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_of_a_node_loses_no_acknowledged_qos1_message() {
    let Some(nodes) = Nodes::start_or_skip("kill_9_of_a_node_loses_no_acknowledged").await else {
        return;
    };
    let dir = TempDir::new("node-kill");
    let node = process_node(
        &dir,
        "killed",
        &nodes.nats_urls(),
        "diagnostics: { metrics: { prometheusPort: 0 } }\n",
    )
    .await;

    let topic = "kill9/t";
    let mut sub = connect_v5(nodes.addr(2), "k9-sub").await;
    sub.subscribe(1, topic, 1).await;
    let mut publisher = connect_v5(node.addr(), "k9-pub").await;
    // Node 2's subscription spreads through NATS asynchronously: QoS 0 until it arrives.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        assert!(
            tokio::time::Instant::now() < deadline,
            "node 2's subscription did not reach the node process within 20 s"
        );
        publisher.publish(topic, b"warm", 0, false, 0).await;
        if sub.recv(Duration::from_millis(200)).await.is_some() {
            break;
        }
    }
    while sub.recv(Duration::from_millis(300)).await.is_some() {}

    let mut acked = BTreeSet::new();
    let mut killed = false;
    'windows: for w in 0..2 {
        let mut burst = BytesMut::new();
        for i in w * WINDOW..(w + 1) * WINDOW {
            codec::encode(
                &Packet::Publish(publish(topic, i)),
                ProtocolVersion::V5,
                &mut burst,
            )
            .expect("encode");
        }
        publisher.write(&burst).await.expect("write a window");
        let mut got = 0;
        while got < WINDOW {
            let Some(packet) = publisher.recv(Duration::from_secs(10)).await else {
                break 'windows;
            };
            let Packet::PubAck(ack) = packet else {
                panic!("expected PUBACK, got {packet:?}");
            };
            // Packet id k of window w is message w * WINDOW + k - 1.
            acked.insert(w * WINDOW + usize::from(ack.packet_id.get()) - 1);
            got += 1;
            if w == 1 && !killed {
                node.signal("KILL");
                killed = true;
            }
        }
    }
    assert!(killed, "the second window got no PUBACK");
    // Whatever PUBACKs were on the socket already count as acknowledged too.
    while let Some(Packet::PubAck(ack)) = publisher.recv(Duration::from_millis(500)).await {
        acked.insert(WINDOW + usize::from(ack.packet_id.get()) - 1);
    }

    let mut received = BTreeSet::new();
    while let Some(packet) = sub.recv(Duration::from_secs(3)).await {
        if let Packet::Publish(p) = packet {
            let i: usize = std::str::from_utf8(&p.payload)
                .ok()
                .and_then(|s| s.parse().ok())
                .expect("a numbered payload");
            received.insert(i);
            if let Some(id) = p.packet_id {
                sub.puback(id).await;
            }
        }
    }
    let lost: Vec<_> = acked.difference(&received).copied().collect();
    assert!(
        lost.is_empty(),
        "{} of {} acknowledged messages never reached node 2 (first: {:?}); received {}",
        lost.len(),
        acked.len(),
        &lost[..lost.len().min(10)],
        received.len()
    );
    assert!(acked.len() > WINDOW, "acknowledged {}", acked.len());
}
