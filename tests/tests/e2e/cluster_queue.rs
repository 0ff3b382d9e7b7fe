//! Cluster mode (issue 15): QoS 1/2 messages for an offline persistent session are kept in
//! a JetStream stream (`gatehouse-queued`), so the session gets them wherever it resumes:
//! a backlog queued while its client was away, published through node 1 (and through
//! node 2, the node that held the session), is received after the client reconnects to
//! node 3; and it is still received when the node that held the session is gone.
//!
//! Three Gatehouse nodes (in-process) on a real three-server NATS cluster; raw MQTT
//! clients (Session Present, subscription identifiers), `mosquitto_pub` for publishing.

use std::time::Duration;

use gatehouse_protocol::{Packet, SubscriptionOptions};
use gatehouse_tests::broker::TempDir;
use gatehouse_tests::mosquitto::publish;
use gatehouse_tests::raw::{opts, ConnectBuilder, RawClient};

use super::cluster::Nodes;
use super::cluster_support::{connect_session, process_node, receive_all};

/// Wait until every node knows the session subscribed to `topic` is offline (the sessions
/// bucket's watch reached it): from then on their publishes keep messages for it.
async fn wait_offline_everywhere(nodes: &Nodes, topic: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    for n in 1..=3 {
        while !nodes.cluster(n).queue().wanted(topic) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "node {n} never saw the offline session of {topic}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// A persistent session `session` of `addr`, subscribed to `filter` (QoS 1), that has
/// gone offline, once every node knows (see [`wait_offline_everywhere`] for `topic`).
async fn offline_session(
    nodes: &Nodes,
    addr: std::net::SocketAddr,
    session: &ConnectBuilder,
    filter: &str,
    topic: &str,
) {
    let (mut c, _) = connect_session(addr, session).await;
    c.sub_ok(1, filter, 1).await;
    c.disconnect().await;
    wait_offline_everywhere(nodes, topic).await;
}

/// The payloads of [`receive_all`], in the order received.
async fn payloads_received(c: &mut RawClient, quiet: Duration) -> Vec<String> {
    receive_all(c, quiet)
        .await
        .into_iter()
        .map(|(_, p, _)| p)
        .collect()
}

/// `{tag}-0` .. `{tag}-{n - 1}`: the payloads the tests publish, in order.
fn numbered(tag: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{tag}-{i}")).collect()
}

/// A persistent v5 session `client_id` on node 2 with a Receive Maximum of 1, subscribed
/// to `{prefix}/#`, after five QoS 1 messages `{tag}-0` .. `{tag}-4` were published on
/// `{prefix}/t` through node 2: the first was received (and is not acknowledged), the
/// other four wait in the session's queue on node 2 (what a node holds for a client).
async fn holding_five(nodes: &Nodes, client_id: &str, prefix: &str, tag: &str) -> RawClient {
    let session = ConnectBuilder::new(client_id)
        .session_expiry(600)
        .receive_maximum(1);
    let (mut c, _) = nodes.connect(2, &session).await;
    c.sub_ok(1, &format!("{prefix}/#"), 1).await;
    for i in 0..5 {
        publish(
            nodes.addr(2),
            &[
                "-q",
                "1",
                "-t",
                &format!("{prefix}/t"),
                "-m",
                &format!("{tag}-{i}"),
            ],
        )
        .await;
    }
    match c.recv(Duration::from_secs(5)).await {
        Some(Packet::Publish(p)) => assert_eq!(p.payload[..], *format!("{tag}-0").as_bytes()),
        other => panic!("expected the first PUBLISH, got {other:?}"),
    }
    c
}

/// A persistent v5 session subscribed on node 2 goes offline. 20 QoS 1 messages are
/// published through node 1 and 10 through node 2 (each PUBACKed to mosquitto_pub). The
/// client reconnects with clean start 0 to node 3: Session Present 1, and it receives all
/// 30, in publication order per publishing node, once each although two of its
/// subscriptions (`bl/#`, `bl/+`) match, with both subscription identifiers.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn qos1_backlog_queued_via_node_1_is_received_after_reconnecting_to_node_3() {
    let Some(nodes) = Nodes::start_or_skip("qos1_backlog_moves").await else {
        return;
    };
    let session = ConnectBuilder::new("backlog-v5").session_expiry(600);
    let (mut c, _) = nodes.connect(2, &session).await;
    let ack = c
        .subscribe_with(1, "bl/#", SubscriptionOptions { ..opts(1) }, Some(5))
        .await;
    assert_eq!(ack.reason_codes[0].0, 1);
    // Overlapping filters: one copy per message, with both identifiers.
    let ack = c.subscribe_with(2, "bl/+", opts(1), Some(6)).await;
    assert_eq!(ack.reason_codes[0].0, 1);
    c.disconnect().await;
    wait_offline_everywhere(&nodes, "bl/x").await;

    for i in 0..20 {
        publish(
            nodes.addr(1),
            &["-q", "1", "-t", "bl/one", "-m", &format!("n1-{i}")],
        )
        .await;
    }
    for i in 0..10 {
        publish(
            nodes.addr(2),
            &["-q", "1", "-t", "bl/two", "-m", &format!("n2-{i}")],
        )
        .await;
    }

    let (mut c, present) = nodes.connect(3, &session.clone().clean_start(false)).await;
    assert!(present, "the session moved to node 3 (Session Present 1)");
    let got = receive_all(&mut c, Duration::from_secs(3)).await;
    let from = |prefix: &str| -> Vec<String> {
        got.iter()
            .filter(|(_, p, _)| p.starts_with(prefix))
            .map(|(_, p, _)| p.clone())
            .collect()
    };
    assert_eq!(
        from("n1-"),
        numbered("n1", 20),
        "every message published through node 1 while the session was offline, in order"
    );
    assert_eq!(
        from("n2-"),
        numbered("n2", 10),
        "every message published through node 2 (the old owner), in order"
    );
    assert_eq!(got.len(), 30, "each message once: {got:?}");
    assert!(
        got.iter().all(|(_, _, ids)| {
            let mut ids = ids.clone();
            ids.sort();
            ids == [5, 6]
        }),
        "the subscription identifiers of both matching subscriptions came with the session: {got:?}"
    );

    // Read once: reconnecting to node 1 now brings nothing again.
    c.disconnect().await;
    let (mut c, present) = nodes.connect(1, &session.clone().clean_start(false)).await;
    assert!(present);
    let again = receive_all(&mut c, Duration::from_secs(2)).await;
    assert!(again.is_empty(), "the backlog is delivered once: {again:?}");
}

/// Messages the client had not received when it went away (queued on node 2 behind a
/// Receive Maximum of 1 it never acknowledges) are in the stream too: after the client
/// reconnects to node 3 it gets them.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn messages_held_for_the_client_when_it_left_follow_it_to_another_node() {
    let Some(nodes) = Nodes::start_or_skip("held_backlog_moves").await else {
        return;
    };
    // Published on node 2 itself while the client is connected: one is sent (never
    // acknowledged), the others wait in the session's queue on node 2.
    let c = holding_five(&nodes, "held-v5", "held", "h").await;
    c.disconnect().await; // without acknowledging it
    wait_offline_everywhere(&nodes, "held/t").await;

    let (mut c, present) = nodes
        .connect(
            3,
            &ConnectBuilder::new("held-v5")
                .session_expiry(600)
                .clean_start(false),
        )
        .await;
    assert!(present);
    let got = payloads_received(&mut c, Duration::from_secs(3)).await;
    let mut unique = got.clone();
    unique.dedup();
    assert_eq!(
        unique,
        numbered("h", 5),
        "the unacknowledged message and the queued ones, in order"
    );
}

/// The node that held an offline session is killed (`kill -9` of a real `gatehouse`
/// process) after messages for the session were acknowledged to their publisher on node
/// 1: the client reconnects to node 3 and gets every one of them (they were in JetStream,
/// not only in the dead node's memory).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn backlog_survives_the_death_of_the_node_that_held_the_session() {
    let Some(nodes) = Nodes::start_or_skip("backlog_survives_node_death").await else {
        return;
    };
    let dir = TempDir::new("queue-kill");
    let node = process_node(
        &dir,
        "doomed",
        &nodes.nats_urls(),
        "diagnostics: { metrics: { prometheusPort: 0 } }\n",
    )
    .await;

    let session = ConnectBuilder::new("orphan-backlog").session_expiry(600);
    offline_session(&nodes, node.addr(), &session, "orph/+", "orph/t").await;

    for i in 0..10 {
        publish(
            nodes.addr(1),
            &["-q", "1", "-t", "orph/t", "-m", &format!("o-{i}")],
        )
        .await;
    }
    node.signal("KILL");

    let (mut c, present) = nodes.connect(3, &session.clone().clean_start(false)).await;
    assert!(present, "the dead node's session resumes on node 3");
    let got = payloads_received(&mut c, Duration::from_secs(3)).await;
    assert_eq!(
        got,
        numbered("o", 10),
        "every acknowledged message, once, in order"
    );
}

/// A QoS 1 PUBLISH that an offline session wants is acknowledged only once JetStream has
/// stored it: 200 pipelined PUBLISHes through node 1; when each PUBACK arrives, node 1
/// has had at least that many stream writes acknowledged by JetStream.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn puback_waits_until_jetstream_stored_the_message() {
    let Some(nodes) = Nodes::start_or_skip("puback_waits_for_jetstream").await else {
        return;
    };
    let session = ConnectBuilder::new("ack-wait").session_expiry(600);
    offline_session(&nodes, nodes.addr(2), &session, "aw/#", "aw/t").await;

    let stored = || {
        nodes
            .cluster(1)
            .queue()
            .stats
            .stored
            .load(std::sync::atomic::Ordering::Relaxed)
    };
    let before = stored();
    let (mut publisher, _) = nodes.connect(1, &ConnectBuilder::new("ack-wait-pub")).await;
    const N: u16 = 200;
    for id in 1..=N {
        publisher
            .publish("aw/t", format!("m{id}").as_bytes(), 1, false, id)
            .await;
    }
    let mut acked = 0u64;
    while acked < u64::from(N) {
        match publisher.recv(Duration::from_secs(15)).await {
            Some(Packet::PubAck(_)) => {
                acked += 1;
                let now_stored = stored() - before;
                assert!(
                    now_stored >= acked,
                    "PUBACK number {acked} arrived when JetStream had stored only {now_stored}"
                );
            }
            other => panic!("expected PUBACK, got {other:?}"),
        }
    }
}

/// Without JetStream quorum (two NATS servers of three killed), a v5 QoS 1 PUBLISH that an
/// offline session wants is refused with PUBACK 0x80 (it cannot be kept) once the node
/// knows (after `disconnectGrace`), and not delivered; one nobody offline wants is still
/// acknowledged 0x00 and delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn without_quorum_a_message_an_offline_session_wants_is_refused_with_0x80() {
    let Some(mut nodes) = Nodes::start_or_skip("offline_queue_without_quorum").await else {
        return;
    };
    let session = ConnectBuilder::new("no-quorum-offline").session_expiry(600);
    offline_session(&nodes, nodes.addr(2), &session, "nq/kept", "nq/kept").await;
    let (mut online, _) = nodes.connect(1, &ConnectBuilder::new("nq-online")).await;
    online.sub_ok(1, "nq/#", 1).await;
    let (mut publisher, _) = nodes.connect(1, &ConnectBuilder::new("nq-pub")).await;

    nodes.nats_mut().kill(1);
    nodes.nats_mut().kill(2);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while nodes.cluster(1).health().storage_available() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "node 1 did not notice the lost quorum within 30 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    publisher
        .publish("nq/kept", b"cannot keep", 1, false, 1)
        .await;
    match publisher.recv(Duration::from_secs(5)).await {
        Some(Packet::PubAck(ack)) => assert_eq!(
            ack.reason_code.0, 0x80,
            "a message an offline session wants, without quorum"
        ),
        other => panic!("expected PUBACK, got {other:?}"),
    }
    publisher.publish("nq/other", b"flows", 1, false, 2).await;
    match publisher.recv(Duration::from_secs(5)).await {
        Some(Packet::PubAck(ack)) => assert_eq!(ack.reason_code.0, 0, "nobody offline wants it"),
        other => panic!("expected PUBACK, got {other:?}"),
    }
    let got: Vec<String> = receive_all(&mut online, Duration::from_secs(2))
        .await
        .into_iter()
        .map(|(t, _, _)| t)
        .collect();
    assert_eq!(got, ["nq/other"], "the refused message was not routed");
}

/// A connected session is taken over by a CONNECT on another node (the client reconnects
/// elsewhere before its old connection closed): what node 2 held for the old connection
/// (one message sent and never acknowledged, four queued behind a Receive Maximum of 1)
/// is handed over through the stream and received on node 3.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn takeover_of_a_connected_session_carries_what_its_node_held() {
    let Some(nodes) = Nodes::start_or_skip("takeover_carries_held").await else {
        return;
    };
    let mut c = holding_five(&nodes, "carried", "car", "c").await;
    // Not acknowledged, not disconnected: node 3 takes the session over.
    let (mut new, present) = nodes
        .connect(
            3,
            &ConnectBuilder::new("carried")
                .session_expiry(600)
                .clean_start(false),
        )
        .await;
    assert!(present, "the takeover resumes the session");
    c.expect_disconnect_within(0x8E, Duration::from_secs(10))
        .await;
    let got = payloads_received(&mut new, Duration::from_secs(3)).await;
    assert_eq!(
        got,
        numbered("c", 5),
        "the unacknowledged message and the queued ones, once each, in order"
    );
}
