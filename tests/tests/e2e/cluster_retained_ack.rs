//! Cluster mode (issue 15): a QoS 1/2 retained PUBLISH is acknowledged only once the
//! retained bucket (`gatehouse-retained`, R3) has stored its message. Before, the PUBACK
//! left after the local fan-out and the bucket was written afterwards by a task: a node
//! dying in between lost a retained message it had acknowledged.
//!
//! The attack on the old behaviour: JetStream cannot commit (two NATS servers of three
//! stopped with SIGSTOP, so the node's own server still answers core NATS and the
//! forwarding round trip that QoS 1 PUBACKs wait for anyway) while a client publishes a
//! retained message at QoS 1. The PUBACK must not arrive until the servers resume, and
//! then the message is what a subscriber on another node gets. When the bucket cannot
//! store it within the node's limit (`cluster::retained::ACK_WAIT_LIMIT`, 15 s), a v5
//! publisher gets 0x80 Unspecified error instead of a success. And a real `gatehouse`
//! process killed with `kill -9` right after a retained PUBACK has lost nothing: the
//! message is what a subscriber on another node gets.

use std::time::Duration;

use gatehouse_protocol::Packet;
use gatehouse_tests::broker::TempDir;
use gatehouse_tests::raw::{ConnectBuilder, RawClient};

use super::cluster::{NodeConfig, Nodes};
use super::cluster_support::{connect_v5, process_node};

/// Three plain nodes, node `i` a client of NATS server `i` only.
async fn start_or_skip(test: &str) -> Option<Nodes> {
    Nodes::start_with(test, 3, NodeConfig::default()).await
}

/// SIGSTOP NATS servers 2 and 3: JetStream (R3) has no quorum, server 1 still routes
/// node 1's core NATS traffic.
fn stop_quorum(nodes: &Nodes) {
    nodes.nats.servers[1].stop();
    nodes.nats.servers[2].stop();
}

fn cont_quorum(nodes: &Nodes) {
    nodes.nats.servers[1].cont();
    nodes.nats.servers[2].cont();
}

/// The payload of the retained message on `topic` a new subscriber on node `n` gets,
/// polled (node `n` mirrors the bucket asynchronously, and may be reconnecting to its
/// NATS server) until it is `expected` or `within` has passed.
async fn retained_until(
    nodes: &Nodes,
    n: usize,
    topic: &str,
    expected: &[u8],
    within: Duration,
) -> Option<Vec<u8>> {
    let deadline = tokio::time::Instant::now() + within;
    let mut last = None;
    let mut i = 0;
    while tokio::time::Instant::now() < deadline {
        i += 1;
        let mut raw = RawClient::connect(nodes.addr(n)).await;
        raw.send(&ConnectBuilder::new(&format!("reader-{n}-{i}")).build())
            .await;
        if let Some(Packet::ConnAck(c)) = raw.recv(Duration::from_secs(5)).await {
            if c.reason_code.0 == 0 {
                raw.sub_ok(1, topic, 0).await;
                if let Some(Packet::Publish(p)) = raw.recv(Duration::from_secs(1)).await {
                    last = Some(p.payload.to_vec());
                    if p.payload.as_ref() == expected {
                        return last;
                    }
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    last
}

/// The next acknowledgement of a PUBLISH (PUBACK or PUBREC) within `within`: its packet
/// id and reason code; `None` when none came.
async fn next_ack(c: &mut RawClient, within: Duration) -> Option<(u16, u8)> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match c.recv(left).await? {
            Packet::PubAck(a) | Packet::PubRec(a) => {
                return Some((a.packet_id.get(), a.reason_code.0))
            }
            _ => continue,
        }
    }
}

/// A retained QoS 1 PUBLISH (packet id 1) that is acknowledged 0x00 within 10 s: the
/// bucket takes writes (each test's starting point).
async fn retained_ok(c: &mut RawClient, topic: &str, payload: &[u8]) {
    c.publish(topic, payload, 1, true, 1).await;
    assert_eq!(next_ack(c, Duration::from_secs(10)).await, Some((1, 0)));
}

/// While JetStream cannot commit, a retained QoS 1 PUBLISH gets no PUBACK (another
/// client's plain QoS 1 PUBLISH on the same node is acknowledged meanwhile: nothing
/// blocks a thread); once the servers resume, the PUBACK 0x00 arrives and the retained
/// message is what a new subscriber on node 2 gets.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_retained_puback_waits_until_the_bucket_has_stored_it() {
    let Some(nodes) = start_or_skip("a_retained_puback_waits").await else {
        return;
    };
    let mut p = nodes.client(1, "ret-ack-p").await;
    let mut q = nodes.client(1, "ret-ack-q").await;
    // The bucket takes writes.
    retained_ok(&mut p, "ret-ack/warm", b"warm").await;

    stop_quorum(&nodes);
    let started = tokio::time::Instant::now();
    p.publish("ret-ack/held", b"kept", 1, true, 2).await;
    q.publish("ret-ack/plain", b"plain", 1, false, 1).await;
    assert_eq!(
        next_ack(&mut q, Duration::from_secs(2)).await,
        Some((1, 0)),
        "a plain QoS 1 PUBLISH on the same node is acknowledged while the bucket waits"
    );
    let early = next_ack(&mut p, Duration::from_millis(2500)).await;
    cont_quorum(&nodes);
    assert_eq!(
        early,
        None,
        "acknowledged {:?} after the publish while JetStream could not store it",
        started.elapsed()
    );
    let ack = next_ack(&mut p, Duration::from_secs(15)).await;
    eprintln!(
        "retained PUBACK {ack:?} {:?} after the publish (servers resumed at 2.5 s)",
        started.elapsed()
    );
    assert_eq!(ack, Some((2, 0)), "the PUBACK once the bucket has it");
    assert_eq!(
        retained_until(&nodes, 2, "ret-ack/held", b"kept", Duration::from_secs(20))
            .await
            .as_deref(),
        Some(&b"kept"[..]),
        "node 2 has the acknowledged retained message"
    );
}

/// JetStream without quorum for longer than the node's wait limit (15 s): the retained
/// QoS 1 PUBLISH gets PUBACK 0x80 and the QoS 2 one PUBREC 0x80 (in order), not a
/// success. The node keeps trying to write them: once quorum is back, new retained
/// PUBLISHes succeed and the late one is kept after all.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_retained_publish_not_stored_in_time_gets_0x80() {
    let Some(nodes) = start_or_skip("a_retained_publish_not_stored_in_time").await else {
        return;
    };
    let mut p = nodes.client(1, "ret-late-p").await;
    retained_ok(&mut p, "ret-late/warm", b"warm").await;

    stop_quorum(&nodes);
    let started = tokio::time::Instant::now();
    p.publish("ret-late/one", b"late", 1, true, 2).await;
    p.publish("ret-late/two", b"late2", 2, true, 3).await;
    let first = next_ack(&mut p, Duration::from_secs(30)).await;
    let took = started.elapsed();
    let second = next_ack(&mut p, Duration::from_secs(2)).await;
    cont_quorum(&nodes);
    eprintln!("acknowledged {first:?} {second:?} {took:?} after the publish");
    assert_eq!(first, Some((2, 0x80)), "PUBACK 0x80 Unspecified error");
    assert_eq!(second, Some((3, 0x80)), "PUBREC 0x80 Unspecified error");
    assert!(
        took >= Duration::from_secs(14),
        "0x80 only past the wait limit, not after {took:?}"
    );

    // Quorum back: retained PUBLISHes succeed again (refused with 0x80 until the node
    // sees JetStream answer).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let mut id = 10;
    loop {
        id += 1;
        p.publish("ret-late/after", b"after", 1, true, id).await;
        let ack = next_ack(&mut p, Duration::from_secs(20)).await;
        if ack == Some((id, 0)) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no retained PUBLISH succeeded within 30 s of quorum ({ack:?})"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    for (topic, payload) in [("ret-late/after", &b"after"[..]), ("ret-late/one", b"late")] {
        assert_eq!(
            retained_until(&nodes, 2, topic, payload, Duration::from_secs(20))
                .await
                .as_deref(),
            Some(payload),
            "node 2's retained message on {topic}"
        );
    }
}

/// A real node process (a client of NATS server 1 only) acknowledges two retained QoS 1
/// PUBLISHes and is killed with SIGKILL right after the PUBACKs arrive. Servers 2 and 3
/// are stopped while they are published, so the bucket cannot store them at once: the
/// old code acknowledged them at once anyway, and the second, still waiting in the node
/// for the first's write, was lost with it; now the PUBACKs come once the servers resume
/// and the bucket has them. Either way, what was acknowledged must be what a new
/// subscriber on node 2 gets.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_right_after_a_retained_puback_loses_nothing() {
    let Some(nodes) = start_or_skip("kill_9_right_after_a_retained_puback").await else {
        return;
    };
    let dir = TempDir::new("retained-kill");
    let node = process_node(&dir, "killed", &nodes.nats.urls()[..1], "").await;
    let mut p = connect_v5(node.addr(), "ret-kill-p").await;
    retained_ok(&mut p, "ret-kill/t", b"old").await;
    assert_eq!(
        retained_until(&nodes, 2, "ret-kill/t", b"old", Duration::from_secs(10))
            .await
            .as_deref(),
        Some(&b"old"[..])
    );

    // Two retained messages while JetStream cannot commit: the node's writer hands the
    // first to NATS server 1 (which keeps it until the others resume) and waits for its
    // acknowledgement; the second waits in the node, behind it.
    stop_quorum(&nodes);
    p.publish("ret-kill/t", b"first", 1, true, 2).await;
    p.publish("ret-kill/u", b"second", 1, true, 3).await;
    let mut acks = Vec::new();
    while acks.len() < 2 {
        let Some(ack) = next_ack(&mut p, Duration::from_secs(2)).await else {
            break;
        };
        acks.push(ack);
    }
    let early = acks.len();
    if early == 2 {
        node.signal("KILL");
    }
    cont_quorum(&nodes);
    while acks.len() < 2 {
        let Some(ack) = next_ack(&mut p, Duration::from_secs(15)).await else {
            break;
        };
        acks.push(ack);
    }
    node.signal("KILL");
    eprintln!("PUBACKs {acks:?}, {early} of them while JetStream could not store them");
    assert_eq!(acks, vec![(2, 0), (3, 0)], "both acknowledged");
    for (topic, payload) in [("ret-kill/t", &b"first"[..]), ("ret-kill/u", b"second")] {
        assert_eq!(
            retained_until(&nodes, 2, topic, payload, Duration::from_secs(15))
                .await
                .as_deref(),
            Some(payload),
            "node 2's retained message on {topic} after the node that acknowledged it was killed"
        );
    }
}
