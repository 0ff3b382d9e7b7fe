//! Cluster mode (issue 15): sessions owned by one node at a time, cluster-wide (a JetStream
//! key-value bucket, claimed by compare-and-set). A persistent session moves to the node
//! its client reconnects to (subscriptions kept, Session Present 1); a CONNECT on another
//! node takes a session over (the old client gets DISCONNECT 0x8E there, its will follows
//! the single-node rules, published once cluster-wide); of two CONNECTs racing on two
//! nodes exactly one stays connected; clean start discards the cluster's session.
//!
//! Three Gatehouse nodes (in-process) on a real three-server NATS cluster; raw MQTT
//! clients where reason codes and Session Present matter, mosquitto clients elsewhere.

use std::time::Duration;

use gatehouse_protocol::{Packet, SubscriptionOptions};
use gatehouse_tests::mosquitto::{publish, Sub};
use gatehouse_tests::raw::{
    frame_body, opts, subscribe_bytes, ConnectBuilder, Event, Props, RawClient, WillSpec,
};

use super::cluster::Nodes;

/// The Will Delay Interval property.
const WILL_DELAY: u8 = 0x18;

/// Publish `payload` on `topic` through node `via` (mosquitto_pub, QoS 1) until `client`
/// receives a PUBLISH on `topic` (the client's subscription reaches the other nodes
/// through NATS asynchronously); returns the first one received, acknowledged.
async fn publish_until_received(
    nodes: &Nodes,
    via: usize,
    topic: &str,
    client: &mut RawClient,
) -> gatehouse_protocol::Publish {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        assert!(
            tokio::time::Instant::now() < deadline,
            "nothing published on {topic} through node {via} arrived within 20 s"
        );
        publish(nodes.addr(via), &["-q", "1", "-t", topic, "-m", "hello"]).await;
        // Late copies of an earlier call's messages (other topics) are skipped.
        while let Some(Packet::Publish(p)) = client.recv(Duration::from_millis(500)).await {
            if let Some(id) = p.packet_id {
                client.puback(id).await;
            }
            if p.topic == topic {
                return p;
            }
        }
    }
}

/// Subscribers of `filter` on every node, each having received a warm-up message
/// published on node 1 (their NATS subscriptions have spread).
async fn watchers(nodes: &Nodes, filter: &str, warm_topic: &str) -> Vec<Sub> {
    let mut subs = Vec::new();
    for n in 1..=3 {
        subs.push(Sub::subscribed(nodes.addr(n), &["-q", "1", "-t", filter]).await);
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let mut got = [false; 3];
    while !got.iter().all(|g| *g) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "warm-up did not reach every node ({got:?})"
        );
        publish(nodes.addr(1), &["-q", "1", "-t", warm_topic, "-m", "warm"]).await;
        for (i, s) in subs.iter_mut().enumerate() {
            while let Some(m) = s.message_within(Duration::from_millis(200)).await {
                got[i] |= m.topic == warm_topic;
            }
        }
    }
    for s in &mut subs {
        while s.message_within(Duration::from_millis(300)).await.is_some() {}
    }
    subs
}

/// What each watcher received on `topic` until quiet for `quiet`.
async fn received(subs: &mut [Sub], topic: &str, quiet: Duration) -> Vec<usize> {
    let mut counts = Vec::new();
    for s in subs.iter_mut() {
        let mut n = 0;
        while let Some(m) = s.message_within(quiet).await {
            n += usize::from(m.topic == topic);
        }
        counts.push(n);
    }
    counts
}

/// A persistent v5 session with a subscription (QoS 1, identifier 7) is made on node 1;
/// its client reconnects with clean start 0 to node 3: Session Present 1, and a message
/// published on node 2 reaches it through the moved subscription, with its identifier.
/// The same for a 3.1.1 client (clean session 0) moving from node 1 to node 2.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn persistent_session_moves_to_another_node_with_its_subscriptions() {
    let Some(nodes) = Nodes::start_or_skip("persistent_session_moves").await else {
        return;
    };
    let v5 = ConnectBuilder::new("mover-v5").session_expiry(300);
    let (mut c, present) = nodes.connect(1, &v5).await;
    assert!(!present, "a new session");
    let ack = c
        .subscribe_with(
            1,
            "mv/+",
            SubscriptionOptions {
                no_local: true,
                ..opts(1)
            },
            Some(7),
        )
        .await;
    assert_eq!(ack.reason_codes[0].0, 1);
    c.disconnect().await;

    let (mut c, present) = nodes.connect(3, &v5.clone().clean_start(false)).await;
    assert!(
        present,
        "clean start 0 on node 3 resumes the session made on node 1 (Session Present 1)"
    );
    let p = publish_until_received(&nodes, 2, "mv/x", &mut c).await;
    assert_eq!(p.topic, "mv/x");
    assert_eq!(
        p.properties.subscription_identifiers,
        [7],
        "the subscription identifier moved with the subscription"
    );
    c.disconnect().await;

    // 3.1.1: clean session 0 is a session that never expires.
    let v311 = ConnectBuilder::v311("mover-v311").clean_start(false);
    let (mut c, present) = nodes.connect(1, &v311).await;
    assert!(!present);
    c.sub_ok(1, "mv311/#", 1).await;
    c.disconnect().await;
    let (mut c, present) = nodes.connect(2, &v311).await;
    assert!(present, "3.1.1: session present on node 2");
    let p = publish_until_received(&nodes, 3, "mv311/a/b", &mut c).await;
    assert_eq!(p.topic, "mv311/a/b");
}

/// A client connected to node 1 is taken over by a CONNECT with its client id on node 3:
/// the node 1 client gets DISCONNECT 0x8E and its will (no delay) is published once in
/// the whole cluster (each watcher on each node gets it once). With a Will Delay, a
/// takeover that resumes the session (node 2, clean start 0) cancels the will; one that
/// starts clean (node 3) ends the session, so the will is published at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn takeover_across_nodes_disconnects_the_old_client_and_handles_its_will() {
    let Some(nodes) = Nodes::start_or_skip("takeover_across_nodes").await else {
        return;
    };
    let mut subs = watchers(&nodes, "tw/#", "tw/warm").await;

    // 1. Will without delay: published once, by node 1, as the old client is sent away.
    let old = ConnectBuilder::new("taken").will(WillSpec::new("tw/gone", b"bye"));
    let (mut c1, _) = nodes.connect(1, &old).await;
    let (c3, _) = nodes.connect(3, &ConnectBuilder::new("taken")).await;
    c1.expect_disconnect_within(0x8E, Duration::from_secs(10))
        .await;
    assert_eq!(
        received(&mut subs, "tw/gone", Duration::from_secs(2)).await,
        [1, 1, 1],
        "the will, once per watcher (nodes 1, 2, 3)"
    );
    c3.disconnect().await;

    // 2. Will Delay 30 s, session expiry 300: a takeover resuming the session cancels it.
    let delayed = ConnectBuilder::new("taken-delay")
        .session_expiry(300)
        .will(WillSpec {
            props: Props::new().u32(WILL_DELAY, 30),
            ..WillSpec::new("tw/delayed", b"late")
        });
    let (mut c1, _) = nodes.connect(1, &delayed).await;
    let resume = ConnectBuilder::new("taken-delay")
        .session_expiry(300)
        .clean_start(false);
    let (c2, present) = nodes.connect(2, &resume).await;
    assert!(present, "the takeover resumes the session");
    c1.expect_disconnect_within(0x8E, Duration::from_secs(10))
        .await;
    assert_eq!(
        received(&mut subs, "tw/delayed", Duration::from_secs(2)).await,
        [0, 0, 0],
        "resumed within the will delay: no will"
    );
    drop(c2); // the session (on node 2) now has no client and no will

    // 3. The same will, taken over by a clean start: the session ends, the will goes now.
    let (mut c1, _) = nodes.connect(1, &delayed.clone().clean_start(true)).await;
    let (c3, present) = nodes.connect(3, &ConnectBuilder::new("taken-delay")).await;
    assert!(!present);
    c1.expect_disconnect_within(0x8E, Duration::from_secs(10))
        .await;
    assert_eq!(
        received(&mut subs, "tw/delayed", Duration::from_secs(2)).await,
        [1, 1, 1],
        "clean start ends the old session: its will once per watcher"
    );
    c3.disconnect().await;
}

/// How one racer ended: still connected (answers PING) or disconnected with a reason.
#[derive(Debug, PartialEq)]
enum Outcome {
    Connected,
    Disconnected(u8),
    Refused(u8),
    Closed,
}

/// Connect to `addr` as `client_id`, then watch for `settle`: a DISCONNECT or close ends
/// it, else it must answer a PING.
async fn race_one(addr: std::net::SocketAddr, client_id: String, settle: Duration) -> Outcome {
    let mut c = RawClient::connect(addr).await;
    c.send(&ConnectBuilder::new(&client_id).build()).await;
    let Some(raw) = c.recv_raw(Duration::from_secs(10)).await else {
        return Outcome::Closed;
    };
    assert_eq!(raw[0], 0x20, "CONNACK first");
    if frame_body(&raw)[1] != 0 {
        return Outcome::Refused(frame_body(&raw)[1]);
    }
    match c.next_event(settle).await {
        Event::Frame(f) if f[0] == 0xE0 => Outcome::Disconnected(frame_body(&f)[0]),
        Event::Frame(f) => panic!("unexpected packet {f:02X?}"),
        Event::Closed => Outcome::Closed,
        Event::Timeout => {
            c.send(&[0xC0, 0x00]).await;
            match c.next_event(Duration::from_secs(5)).await {
                Event::Frame(f) if f == [0xD0, 0x00] => Outcome::Connected,
                Event::Frame(f) if f[0] == 0xE0 => Outcome::Disconnected(frame_body(&f)[0]),
                _ => Outcome::Closed,
            }
        }
    }
}

/// Two CONNECTs with one client id sent at the same moment to node 1 and node 2, for 40
/// client ids at once and twice over: each time exactly one client stays connected and
/// the other is disconnected with 0x8E (Session taken over), never both connected.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_connects_racing_on_two_nodes_leave_exactly_one_connected() {
    let Some(nodes) = Nodes::start_or_skip("two_connects_racing").await else {
        return;
    };
    for round in 0..2 {
        let mut races = Vec::new();
        for i in 0..40 {
            let id = format!("racer-{round}-{i}");
            let (a, b) = (nodes.addr(1), nodes.addr(2));
            let settle = Duration::from_secs(3);
            races.push(tokio::spawn(async move {
                tokio::join!(race_one(a, id.clone(), settle), race_one(b, id, settle))
            }));
        }
        for (i, race) in races.into_iter().enumerate() {
            let (one, two) = race.await.unwrap();
            let outcomes = [&one, &two];
            let connected = outcomes
                .iter()
                .filter(|o| ***o == Outcome::Connected)
                .count();
            assert_eq!(
                connected, 1,
                "round {round}, racer {i}: exactly one connected (node 1: {one:?}, node 2: {two:?})"
            );
            assert!(
                outcomes
                    .iter()
                    .any(|o| matches!(o, Outcome::Disconnected(0x8E) | Outcome::Refused(_))),
                "round {round}, racer {i}: the loser is taken over (node 1: {one:?}, node 2: {two:?})"
            );
        }
    }
}

/// Clean start discards the cluster's session: a session made on node 1 is resumed on
/// node 2 (Session Present 1), then a clean start on node 3 replaces it (its subscription
/// is gone: a later resume on node 1 has Session Present 1 but receives nothing on the old
/// filter), and a session ended by a clean-start client's disconnect (expiry 0) is gone for
/// every node (Session Present 0).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn clean_start_discards_the_cluster_session() {
    let Some(nodes) = Nodes::start_or_skip("clean_start_discards").await else {
        return;
    };
    let persistent = ConnectBuilder::new("cleaner").session_expiry(300);
    let (mut c, _) = nodes.connect(1, &persistent).await;
    c.sub_ok(1, "cs/t", 1).await;
    c.disconnect().await;
    let (c, present) = nodes
        .connect(2, &persistent.clone().clean_start(false))
        .await;
    assert!(present, "node 2 resumes node 1's session");
    c.disconnect().await;

    let (mut c, present) = nodes.connect(3, &persistent).await;
    assert!(!present, "clean start: Session Present 0");
    c.sub_ok(1, "cs/other", 1).await;
    c.disconnect().await;
    let (mut c, present) = nodes
        .connect(1, &persistent.clone().clean_start(false))
        .await;
    assert!(present, "node 1 resumes the session node 3 started");
    // The new session's subscription works; the discarded one's does not.
    publish_until_received(&nodes, 2, "cs/other", &mut c).await;
    publish(nodes.addr(2), &["-q", "1", "-t", "cs/t", "-m", "old"]).await;
    publish(nodes.addr(1), &["-q", "1", "-t", "cs/t", "-m", "old"]).await;
    c.expect_nothing(Duration::from_secs(2)).await;
    c.disconnect().await;

    // Session expiry 0 (the default of clean start): the session ends at disconnect and
    // its record with it.
    let (c, _) = nodes.connect(2, &ConnectBuilder::new("cleaner")).await;
    c.disconnect().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (_c, present) = nodes
        .connect(3, &persistent.clone().clean_start(false))
        .await;
    assert!(!present, "no session left after an expiry-0 disconnect");
}

/// A connected persistent session taken over again and again around the three nodes,
/// each client subscribing to one more filter the moment it is connected: every taken
/// over client gets 0x8E, and the last one holds every subscription (a takeover first has
/// the previous owner write what it has queued, so a SUBSCRIBE acknowledged just before
/// the takeover is not lost).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_session_taken_over_around_the_nodes_keeps_every_subscription() {
    let Some(nodes) = Nodes::start_or_skip("taken_over_around_the_nodes").await else {
        return;
    };
    let builder = ConnectBuilder::new("roamer")
        .session_expiry(300)
        .clean_start(false);
    const SUBS: u16 = 10;
    let mut previous: Option<RawClient> = None;
    for i in 0..6u16 {
        let n = usize::from(i % 3) + 1;
        let (mut c, present) = nodes.connect(n, &builder).await;
        assert_eq!(present, i > 0, "move {i} to node {n}: Session Present");
        if let Some(mut old) = previous.take() {
            old.expect_disconnect_within(0x8E, Duration::from_secs(10))
                .await;
        }
        // Ten SUBSCRIBE packets at once (ten record writes queued on this node), then
        // their SUBACKs; the next CONNECT follows at once.
        for j in 1..=SUBS {
            c.send(&subscribe_bytes(j, &format!("rm/{i}/{j}"), 1)).await;
        }
        for _ in 1..=SUBS {
            match c.expect_packet().await {
                Packet::SubAck(a) => assert_eq!(a.reason_codes[0].0, 1),
                other => panic!("expected SUBACK, got {other:?}"),
            }
        }
        previous = Some(c);
    }
    let mut last = previous.unwrap();
    for i in 0..6 {
        for j in 1..=SUBS {
            let topic = format!("rm/{i}/{j}");
            let p = publish_until_received(&nodes, 2, &topic, &mut last).await;
            assert_eq!(p.topic, topic, "subscription kept");
        }
    }
}

/// The owning node dies (`kill -9` of a `gatehouse` process, node 3 here; nodes 1 and 2
/// in-process): its sessions stay owned by it in the bucket, and a CONNECT on node 1 with
/// clean start 0 still takes its connected persistent session over, without waiting for
/// the dead node (Session Present 1, its subscription with its identifier: a message
/// published on node 2 arrives). A session the dead node held offline with a 2 s expiry
/// has expired for every node (Session Present 0) though no node ended it; one whose
/// client was connected to the dead node expires too, once the other nodes have found
/// the node gone (no answer on its flush subject for three sweeps in a row).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_session_of_a_killed_node_is_taken_over_on_another_node() {
    use gatehouse_tests::broker::{free_port, BrokerProcess, TestBroker};
    use gatehouse_tests::nats::NatsCluster;
    let Some(nats) = NatsCluster::start_or_skip("a_session_of_a_killed_node").await else {
        return;
    };
    let yaml = |n: usize, port: u16| {
        format!(
            "listeners:\n  - name: e2e\n    bindAddress: 127.0.0.1\n    ports:\n      - port: {port}\n        protocol: Mqtt\n\
             diagnostics: {{ metrics: {{ prometheusPort: 0 }} }}\n\
             cluster:\n  nodeName: node{n}\n  nats:\n    servers: [\"{}\"]\n    replicas: 3\n",
            nats.urls()[n - 1]
        )
    };
    let node1 = TestBroker::start(&yaml(1, 0)).await;
    let node2 = TestBroker::start(&yaml(2, 0)).await;
    let port = free_port();
    let config = nats.dir.write("node3.yaml", &yaml(3, port));
    let mut node3 = BrokerProcess::start(&config, port).await;

    // An offline session with a short expiry, and a connected one, both on node 3.
    let short = ConnectBuilder::new("dead-short").session_expiry(2);
    let mut c = RawClient::connect(node3.addr()).await;
    c.send(&short.build()).await;
    c.expect_connack_ok().await;
    c.sub_ok(1, "short/t", 1).await;
    c.disconnect().await;
    // A connected session with a short expiry: it expires once the others have found
    // node 3 gone (three sweeps, about 15 s) and its expiry has run.
    let connected_short = ConnectBuilder::new("dead-connected-short").session_expiry(2);
    let mut connected = RawClient::connect(node3.addr()).await;
    connected.send(&connected_short.build()).await;
    connected.expect_connack_ok().await;
    connected.sub_ok(1, "short/c", 1).await;
    let builder = ConnectBuilder::new("orphan").session_expiry(300);
    let mut c = RawClient::connect(node3.addr()).await;
    c.send(&builder.build()).await;
    c.expect_connack_ok().await;
    let ack = c.subscribe_with(1, "dead/+", opts(1), Some(9)).await;
    assert_eq!(ack.reason_codes[0].0, 1);
    node3.signal("KILL");
    node3.exit_within(Duration::from_secs(10)).await;
    let killed = tokio::time::Instant::now();
    drop((c, connected));

    let started = tokio::time::Instant::now();
    let mut c = RawClient::connect(node1.mqtt_addr()).await;
    c.send(&builder.clone().clean_start(false).build()).await;
    let ack = c.expect_connack_ok().await;
    assert!(
        ack.session_present,
        "node 1 takes over the dead node's session"
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "the takeover does not wait for the dead node ({:?})",
        started.elapsed()
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let p = loop {
        assert!(tokio::time::Instant::now() < deadline, "nothing arrived");
        publish(node2.mqtt_addr(), &["-q", "1", "-t", "dead/x", "-m", "m"]).await;
        if let Some(Packet::Publish(p)) = c.recv(Duration::from_millis(500)).await {
            break p;
        }
    };
    assert_eq!(p.topic, "dead/x");
    assert_eq!(p.properties.subscription_identifiers, [9]);

    tokio::time::sleep(Duration::from_millis(2500)).await;
    let mut c = RawClient::connect(node2.mqtt_addr()).await;
    c.send(&short.clone().clean_start(false).build()).await;
    let ack = c.expect_connack_ok().await;
    assert!(
        !ack.session_present,
        "the dead node's expired session is gone"
    );

    tokio::time::sleep_until(killed + Duration::from_secs(25)).await;
    let mut c = RawClient::connect(node1.mqtt_addr()).await;
    c.send(&connected_short.clone().clean_start(false).build())
        .await;
    let ack = c.expect_connack_ok().await;
    assert!(
        !ack.session_present,
        "a session connected on the dead node expires once the node is found gone"
    );
}

/// Client ids are hostile input to the bucket keys: ids with NATS's reserved characters,
/// one that looks like an escape, one like a hashed key, and ids too long for a key
/// (keyed by their hash) each keep their own session when they move from node 1 to
/// node 2: Session Present 1 and exactly their own subscription, none of another's.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hostile_client_ids_each_keep_their_own_session_across_nodes() {
    let Some(nodes) = Nodes::start_or_skip("hostile_client_ids").await else {
        return;
    };
    let ids = [
        "dot.ted".to_owned(),
        "dot ted".to_owned(),
        "*".to_owned(),
        ">".to_owned(),
        "~2E".to_owned(),
        "h.0123".to_owned(),
        "$KV.gatehouse-sessions.x".to_owned(),
        "x".repeat(3000),
        format!("{}y", "x".repeat(2999)),
    ];
    for (i, id) in ids.iter().enumerate() {
        let b = ConnectBuilder::new(id).session_expiry(300);
        let (mut c, _) = nodes.connect(1, &b).await;
        c.sub_ok(1, &format!("hid/{i}"), 1).await;
        c.disconnect().await;
    }
    let mut clients = Vec::new();
    for id in &ids {
        let b = ConnectBuilder::new(id)
            .session_expiry(300)
            .clean_start(false);
        let (c, present) = nodes.connect(2, &b).await;
        assert!(present, "{:.40}: its session moved to node 2", id);
        clients.push(c);
    }
    for (i, c) in clients.iter_mut().enumerate() {
        let p = publish_until_received(&nodes, 3, &format!("hid/{i}"), c).await;
        assert_eq!(p.topic, format!("hid/{i}"));
    }
    // Nobody got another's messages: each published topic reached its own client only.
    for (i, c) in clients.iter_mut().enumerate() {
        while let Some(packet) = c.recv(Duration::from_millis(300)).await {
            if let Packet::Publish(p) = packet {
                assert_eq!(
                    p.topic,
                    format!("hid/{i}"),
                    "client {i} got another's message"
                );
            }
        }
    }
}
