//! Cluster mode (issue 15): "a node dies (… its sessions' wills are published once)".
//! The will of a client connected to a node that is killed (`kill -9`, so the node
//! itself publishes nothing) is published by the node that finds the owner gone (three
//! sweeps, about 15 s, plus the will delay), exactly once cluster-wide; a client that
//! disconnected normally before the kill has no will left to publish.
//!
//! Two in-process Gatehouse nodes and one `gatehouse` process on a real three-server
//! NATS cluster; raw MQTT clients.

use std::time::Duration;

use gatehouse_tests::mosquitto::publish;
use gatehouse_tests::raw::{ConnectBuilder, Props, RawClient, WillSpec};

use super::cluster_support::{assert_wills, count, receive_for, subscribe_unacked};

/// The Will Delay Interval property.
const WILL_DELAY: u8 = 0x18;

/// A subscriber to `will/#` (QoS 0) on `addr`.
async fn subscriber(addr: std::net::SocketAddr, id: &str) -> RawClient {
    let mut c = RawClient::connect(addr).await;
    c.send(&ConnectBuilder::new(id).keep_alive(0).build()).await;
    c.expect_connack_ok().await;
    // The SUBACK is not waited for (it follows the session record's write): the probe
    // below shows the subscription works across the nodes.
    subscribe_unacked(&mut c, "will/#").await;
    c
}

/// A killed node's connected clients' wills (one without a delay, one with 3 s) reach a
/// subscriber on each of the two other nodes exactly once, the delayed one at least its
/// delay later; the will of a client that sent DISCONNECT 0x00 before the kill never does,
/// nor the delayed will (6 s) of a client that resumes its session on node 1 meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_wills_of_a_killed_nodes_clients_are_published_once_cluster_wide() {
    use gatehouse_tests::broker::{free_port, BrokerProcess, TestBroker};
    use gatehouse_tests::nats::NatsCluster;
    let Some(nats) = NatsCluster::start_or_skip("cluster_wills").await else {
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

    let mut s1 = subscriber(node1.mqtt_addr(), "will-watch-1").await;
    let mut s2 = subscriber(node2.mqtt_addr(), "will-watch-2").await;
    // Both subscriptions have reached node 3 through NATS once a probe published there
    // arrives on both.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let (mut seen1, mut seen2) = (Vec::new(), Vec::new());
    while count(&seen1, "will/probe") == 0 || count(&seen2, "will/probe") == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the subscriptions did not reach node 3"
        );
        publish(node3.addr(), &["-t", "will/probe", "-m", "p"]).await;
        receive_for(&mut s1, Duration::from_millis(300), &mut seen1).await;
        receive_for(&mut s2, Duration::from_millis(300), &mut seen2).await;
    }

    // On node 3: a client whose will has no delay (session expiry 0), one whose will
    // waits 3 s (session expiry 300), and one that leaves normally before the kill.
    let mut dying = RawClient::connect(node3.addr()).await;
    dying
        .send(
            &ConnectBuilder::new("will-dying")
                .will(WillSpec {
                    qos: 1,
                    ..WillSpec::new("will/dying", b"gone")
                })
                .build(),
        )
        .await;
    dying.expect_connack_ok().await;
    let mut delayed = RawClient::connect(node3.addr()).await;
    delayed
        .send(
            &ConnectBuilder::new("will-delayed")
                .session_expiry(300)
                .will(WillSpec {
                    props: Props::new().u32(WILL_DELAY, 3),
                    ..WillSpec::new("will/delayed", b"late")
                })
                .build(),
        )
        .await;
    delayed.expect_connack_ok().await;
    // Will Delay 6 s: its client resumes the session on node 1 before that.
    let resumer = ConnectBuilder::new("will-resumed")
        .session_expiry(300)
        .will(WillSpec {
            props: Props::new().u32(WILL_DELAY, 6),
            ..WillSpec::new("will/resumed", b"cancelled")
        });
    let mut resumed = RawClient::connect(node3.addr()).await;
    resumed.send(&resumer.build()).await;
    resumed.expect_connack_ok().await;
    let mut polite = RawClient::connect(node3.addr()).await;
    polite
        .send(
            &ConnectBuilder::new("will-polite")
                .session_expiry(300)
                .will(WillSpec::new("will/polite", b"never"))
                .build(),
        )
        .await;
    polite.expect_connack_ok().await;
    polite.disconnect().await;
    // The owner writes the polite client's record (offline, no will) in the background.
    tokio::time::sleep(Duration::from_secs(1)).await;

    node3.signal("KILL");
    node3.exit_within(Duration::from_secs(10)).await;
    let killed = tokio::time::Instant::now();
    drop((dying, delayed, resumed));

    // Found gone after three sweeps (about 15 s), plus 3 s of delay.
    let (mut got1, mut got2) = (Vec::new(), Vec::new());
    let deadline = killed + Duration::from_secs(45);
    let mut back = None;
    while [&got1, &got2]
        .iter()
        .any(|g| count(g, "will/dying") == 0 || count(g, "will/delayed") == 0)
    {
        // Node 3 was found gone (the first will is out): the third client comes back
        // on node 1 and resumes its session, which cancels its delayed will.
        if back.is_none() && count(&got1, "will/dying") > 0 {
            tokio::time::sleep(Duration::from_millis(500)).await;
            let mut c = RawClient::connect(node1.mqtt_addr()).await;
            c.send(&resumer.clone().clean_start(false).build()).await;
            let ack = c.expect_connack_ok().await;
            assert!(ack.session_present, "the session outlives its node");
            back = Some(c);
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the wills did not arrive within 45 s of the kill: node 1 got {:?}, node 2 got {:?}",
            got1.iter().map(|g| &g.0).collect::<Vec<_>>(),
            got2.iter().map(|g| &g.0).collect::<Vec<_>>()
        );
        receive_for(&mut s1, Duration::from_millis(200), &mut got1).await;
        receive_for(&mut s2, Duration::from_millis(200), &mut got2).await;
    }
    // No second copy (and no cancelled will: its 6 s have run by then).
    receive_for(&mut s1, Duration::from_secs(5), &mut got1).await;
    receive_for(&mut s2, Duration::from_secs(3), &mut got2).await;
    assert_wills(
        [&got1, &got2],
        &["will/dying", "will/delayed"],
        &[
            ("will/polite", "a normal DISCONNECT discards the will"),
            (
                "will/resumed",
                "resuming the session cancels its delayed will",
            ),
        ],
    );
    for (node, got) in [(1, &got1), (2, &got2)] {
        let at = |topic: &str| {
            got.iter()
                .find(|g| g.0 == topic)
                .map(|g| (g.1.clone(), g.2))
                .expect("received")
        };
        let (payload, first) = at("will/dying");
        assert_eq!(payload, b"gone");
        let (payload, late) = at("will/delayed");
        assert_eq!(payload, b"late");
        assert!(
            late.duration_since(first) >= Duration::from_secs(2),
            "node {node}: the will delay runs from when the owner was found gone"
        );
    }
}
