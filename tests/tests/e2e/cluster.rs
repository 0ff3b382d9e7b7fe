//! Cluster mode (issue 15): Gatehouse nodes joined through a real NATS cluster with
//! JetStream (three `nats-server` processes, `gatehouse_tests::nats`).

use std::time::Duration;

use gatehouse_tests::broker::TestBroker;
use gatehouse_tests::mosquitto::{publish, Msg, Sub};
use gatehouse_tests::nats::NatsCluster;
use gatehouse_tests::raw::{ConnectBuilder, RawClient};
use gatehouse_tests::state_store::StateStoreClient;

use super::cluster_support::{connect_session, connect_v5};

/// The harness itself: three routed servers elect a JetStream meta leader and fsync every
/// write (checked inside `start`); killing one leaves the other two with a leader.
#[tokio::test]
async fn nats_cluster_starts_with_jetstream_and_survives_one_server() {
    let Some(mut nats) = NatsCluster::start_or_skip("nats_cluster_starts_with_jetstream").await
    else {
        return;
    };
    assert_eq!(nats.urls().len(), 3);
    nats.servers[0].kill();
    nats.wait_ready(Duration::from_secs(30)).await;
}

/// Three Gatehouse nodes (in-process, each on its own free MQTT port), node `i` a client
/// of NATS server `i`, so messages cross NATS routes too. The one harness of every
/// cluster test file (a test that needs other settings, other node counts or an existing
/// NATS cluster says so with a [`NodeConfig`]), so that a change to how a cluster node
/// is configured is made once. Its fields are the test files' to reach into (kill and
/// restart NATS servers, read a node's broker state).
pub(crate) struct Nodes {
    pub(crate) nodes: Vec<TestBroker>,
    pub(crate) nats: NatsCluster,
    config: NodeConfig,
}

/// What a test's nodes add to the plain cluster node configuration ([`Nodes::start_with`]).
#[derive(Clone, Default)]
pub(crate) struct NodeConfig {
    /// Each node serves Prometheus metrics on a free port of its own.
    pub(crate) metrics: bool,
    /// Top-level YAML lines, each ending in a newline (e.g. `broker: { ... }`).
    pub(crate) top: String,
    /// YAML lines under `cluster.nats`, each indented four spaces and ending in a newline
    /// (e.g. `disconnectGrace`).
    pub(crate) nats: String,
}

impl Nodes {
    /// The three default nodes (with metrics); `None` when nats-server is missing outside CI.
    pub(crate) async fn start_or_skip(test: &str) -> Option<Nodes> {
        let config = NodeConfig {
            metrics: true,
            ..NodeConfig::default()
        };
        Self::start_with(test, 3, config).await
    }

    /// `count` nodes configured with `config` on a new NATS cluster; `None` when
    /// nats-server is missing outside CI.
    pub(crate) async fn start_with(test: &str, count: usize, config: NodeConfig) -> Option<Nodes> {
        let nats = NatsCluster::start_or_skip(test).await?;
        Some(Self::on(nats, count, config).await)
    }

    /// `count` nodes configured with `config` on an existing NATS cluster.
    pub(crate) async fn on(nats: NatsCluster, count: usize, config: NodeConfig) -> Nodes {
        let mut nodes = Nodes {
            nodes: Vec::new(),
            nats,
            config,
        };
        for _ in 0..count {
            nodes.add().await;
        }
        nodes
    }

    /// Start one more node, a client of NATS server (its number modulo 3).
    async fn add(&mut self) {
        let n = self.nodes.len() + 1;
        let url = &self.nats.urls()[(n - 1) % 3];
        let diagnostics = if self.config.metrics {
            let metrics = gatehouse_tests::broker::free_port();
            format!("diagnostics: {{ metrics: {{ prometheusPort: {metrics} }} }}\n")
        } else {
            String::new()
        };
        let NodeConfig { top, nats, .. } = &self.config;
        let yaml = format!(
            "listeners:\n  - name: e2e\n    bindAddress: 127.0.0.1\n    ports:\n      - port: 0\n        protocol: Mqtt\n\
             {diagnostics}{top}\
             cluster:\n  nodeName: node{n}\n  nats:\n    servers: [\"{url}\"]\n    replicas: 3\n{nats}"
        );
        self.nodes.push(TestBroker::start(&yaml).await);
    }

    /// A v5 client `client_id` of node `n` (CONNACK 0x00).
    pub(crate) async fn client(&self, n: usize, client_id: &str) -> RawClient {
        connect_v5(self.addr(n), client_id).await
    }

    /// A state store client `client_id` of node `n`.
    pub(crate) async fn state_store(&self, n: usize, client_id: &str) -> StateStoreClient {
        StateStoreClient::start(self.client(n, client_id).await, client_id).await
    }

    /// `builder`'s CONNECT to node `n`: the client and Session Present (see
    /// [`connect_session`]).
    pub(crate) async fn connect(&self, n: usize, builder: &ConnectBuilder) -> (RawClient, bool) {
        connect_session(self.addr(n), builder).await
    }

    /// Node `n` (1-based, as in the test names).
    pub(crate) fn addr(&self, n: usize) -> std::net::SocketAddr {
        self.nodes[n - 1].mqtt_addr()
    }

    /// The NATS servers' client URLs.
    pub(crate) fn nats_urls(&self) -> Vec<String> {
        self.nats.urls()
    }

    /// The NATS cluster (to kill and restart its servers).
    pub(crate) fn nats_mut(&mut self) -> &mut NatsCluster {
        &mut self.nats
    }

    /// Node `n` (1-based).
    pub(crate) fn node(&self, n: usize) -> &TestBroker {
        &self.nodes[n - 1]
    }

    /// Node `n`'s link to the cluster (1-based).
    pub(crate) fn cluster(&self, n: usize) -> &gatehouse::cluster::Cluster {
        self.nodes[n - 1]
            .server
            .cluster
            .as_deref()
            .expect("a node in cluster mode")
    }
}

/// Publish warm-up messages on `topic` through node `via` until every one of `subs` has
/// received one (NATS spreads a new subscription through its cluster asynchronously),
/// then drop the warm-up messages still arriving.
async fn warm_up(nodes: &Nodes, via: usize, topic: &str, subs: &mut [&mut Sub]) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let mut got = vec![false; subs.len()];
    while !got.iter().all(|g| *g) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the subscriptions did not reach node {via} through NATS within 20 s ({got:?})"
        );
        publish(nodes.addr(via), &["-q", "1", "-t", topic, "-m", "warm"]).await;
        for (i, sub) in subs.iter_mut().enumerate() {
            while let Some(m) = sub.message_within(Duration::from_millis(200)).await {
                got[i] |= m.topic == topic;
            }
        }
    }
    for sub in subs.iter_mut() {
        while sub
            .message_within(Duration::from_millis(300))
            .await
            .is_some()
        {}
    }
}

/// Every message of `sub` until it is quiet for a second.
async fn drain(sub: &mut Sub) -> Vec<Msg> {
    let mut out = Vec::new();
    while let Some(m) = sub.message_within(Duration::from_secs(1)).await {
        out.push(m);
    }
    out
}

/// The payloads of `msgs`, sorted, to compare with what was published.
fn payloads(msgs: &[Msg]) -> Vec<String> {
    let mut p: Vec<String> = msgs.iter().map(|m| m.payload.clone()).collect();
    p.sort();
    p
}

/// A wildcard subscription on node 2 (two overlapping filters) and node 3, and one on the
/// publishing node 1: each subscriber gets each message published on node 1 exactly once
/// (not one copy per NATS subscription, not a local and a NATS copy on node 1).
#[tokio::test]
async fn wildcard_subscribers_on_every_node_get_each_message_once() {
    let Some(nodes) = Nodes::start_or_skip("wildcard_subscribers_on_every_node").await else {
        return;
    };
    let mut sub1 = Sub::subscribed(nodes.addr(1), &["-q", "1", "-t", "wc/#"]).await;
    let mut sub2 = Sub::subscribed(nodes.addr(2), &["-q", "1", "-t", "wc/+/x", "-t", "wc/#"]).await;
    let mut sub3 = Sub::subscribed(nodes.addr(3), &["-q", "1", "-t", "wc/+/x"]).await;
    warm_up(
        &nodes,
        1,
        "wc/warm/x",
        &mut [&mut sub1, &mut sub2, &mut sub3],
    )
    .await;
    let sent: Vec<String> = (0..20).map(|i| format!("m{i:02}")).collect();
    for m in &sent {
        publish(nodes.addr(1), &["-q", "1", "-t", "wc/t/x", "-m", m]).await;
    }
    for (n, sub) in [(1, &mut sub1), (2, &mut sub2), (3, &mut sub3)] {
        let got = drain(sub).await;
        assert_eq!(
            payloads(&got),
            sent,
            "node {n}'s subscriber: each message exactly once"
        );
        assert!(got.iter().all(|m| m.topic == "wc/t/x" && m.qos == 1));
    }
    // The other direction too: node 3 publishes, node 1 and 2 receive once.
    publish(nodes.addr(3), &["-q", "1", "-t", "wc/back/x", "-m", "back"]).await;
    for (n, sub) in [(1, &mut sub1), (2, &mut sub2)] {
        assert_eq!(
            payloads(&drain(sub).await),
            ["back"],
            "node {n}: a message of node 3"
        );
    }
    let node1 = nodes.nodes[0]
        .server
        .cluster
        .as_ref()
        .expect("cluster mode");
    assert!(
        node1
            .stats()
            .forwarded
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 20
    );
}

/// A `$share` group with members on node 2 and node 3 gets each message published on
/// node 1 once in total; a group whose only member is on the publishing node gets its
/// messages through NATS too (the local fan-out leaves shared groups to NATS). Group h's
/// filter has a `+`: a message from a NATS queue group finds its local group by filter,
/// wildcards included.
#[tokio::test]
async fn shared_group_across_nodes_gets_each_message_once_in_total() {
    let Some(nodes) = Nodes::start_or_skip("shared_group_across_nodes").await else {
        return;
    };
    let mut a = Sub::subscribed(nodes.addr(2), &["-q", "1", "-t", "$share/g/sh/#"]).await;
    let mut b = Sub::subscribed(nodes.addr(3), &["-q", "1", "-t", "$share/g/sh/#"]).await;
    let mut local = Sub::subscribed(nodes.addr(1), &["-q", "1", "-t", "$share/h/sh/+"]).await;
    warm_up(&nodes, 1, "sh/warm", &mut [&mut a, &mut b, &mut local]).await;
    let sent: Vec<String> = (0..30).map(|i| format!("s{i:02}")).collect();
    for m in &sent {
        publish(nodes.addr(1), &["-q", "1", "-t", "sh/t", "-m", m]).await;
    }
    let (got_a, got_b) = (drain(&mut a).await, drain(&mut b).await);
    let mut both = got_a.clone();
    both.extend(got_b.iter().cloned());
    assert_eq!(
        payloads(&both),
        sent,
        "group g: each message once over both nodes (node 2 got {}, node 3 got {})",
        got_a.len(),
        got_b.len()
    );
    assert_eq!(
        payloads(&drain(&mut local).await),
        sent,
        "group h on node 1"
    );
}

/// A topic with a '.', a space and empty levels, and every MQTT 5 property a subscriber
/// sees, crosses from node 1 to node 3 intact (NATS reserves '.' and whitespace).
#[tokio::test]
async fn reserved_characters_and_properties_cross_nodes_intact() {
    let Some(nodes) = Nodes::start_or_skip("reserved_characters_cross_nodes").await else {
        return;
    };
    let mut sub = Sub::subscribed(
        nodes.addr(3),
        &[
            "-V",
            "mqttv5",
            "-q",
            "2",
            "-t",
            "rc/a.b/+",
            "-t",
            "rc//*/>/#",
        ],
    )
    .await;
    warm_up(&nodes, 1, "rc/a.b/warm", &mut [&mut sub]).await;
    publish(
        nodes.addr(1),
        &[
            "-V",
            "mqttv5",
            "-q",
            "2",
            "-t",
            "rc/a.b/c d",
            "-m",
            "one",
            "-D",
            "publish",
            "user-property",
            "k",
            "v w",
            "-D",
            "publish",
            "content-type",
            "text/plain",
            "-D",
            "publish",
            "response-topic",
            "re/ply",
            "-D",
            "publish",
            "correlation-data",
            "cd",
            "-D",
            "publish",
            "message-expiry-interval",
            "300",
        ],
    )
    .await;
    publish(
        nodes.addr(1),
        &["-V", "mqttv5", "-q", "1", "-t", "rc//*/>/ /", "-m", "two"],
    )
    .await;
    let got = drain(&mut sub).await;
    assert_eq!(got.len(), 2, "{got:?}\n{}", sub.transcript());
    let one = got
        .iter()
        .find(|m| m.payload == "one")
        .expect("message one");
    assert_eq!(one.topic, "rc/a.b/c d");
    assert_eq!(one.qos, 2);
    assert_eq!(one.user_properties, "k:v w");
    assert_eq!(one.content_type, "text/plain");
    assert_eq!(one.response_topic, "re/ply");
    assert_eq!(one.correlation_data, "cd");
    let expiry: u32 = one.expiry.parse().expect("an expiry interval");
    assert!((295..=300).contains(&expiry), "expiry {expiry}");
    let two = got
        .iter()
        .find(|m| m.payload == "two")
        .expect("message two");
    assert_eq!(two.topic, "rc//*/>/ /");
    assert_eq!(two.qos, 1);
}

/// The retained message of `topic` a new subscriber on `addr` gets, if any.
async fn retained_on(addr: std::net::SocketAddr, topic: &str) -> Option<Msg> {
    let mut sub = Sub::subscribed(addr, &["-V", "mqttv5", "-q", "1", "-t", topic]).await;
    let m = sub.message_within(Duration::from_millis(300)).await;
    sub.kill().await;
    m
}

/// Poll `addr` until its retained message of `topic` is `want` (a payload, or none).
async fn until_retained(
    addr: std::net::SocketAddr,
    topic: &str,
    want: Option<&str>,
) -> Option<Msg> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let got = retained_on(addr, topic).await;
        if got.as_ref().map(|m| m.payload.as_str()) == want {
            return got;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{addr}: retained {topic} is {got:?}, expected {want:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A retained message set on node 1 is seen by a new subscriber on node 3 (with its
/// properties and its expiry counting on), by a node started afterwards at once (it loads
/// the bucket before opening its ports), and cleared on every node by an empty retained
/// payload published on node 2.
#[tokio::test]
async fn retained_messages_are_shared_by_every_node() {
    let Some(mut nodes) = Nodes::start_or_skip("retained_messages_are_shared").await else {
        return;
    };
    let topic = "ret/a.b/c d";
    publish(
        nodes.addr(1),
        &[
            "-V",
            "mqttv5",
            "-q",
            "1",
            "-r",
            "-t",
            topic,
            "-m",
            "kept",
            "-D",
            "publish",
            "content-type",
            "text/plain",
            "-D",
            "publish",
            "message-expiry-interval",
            "600",
        ],
    )
    .await;
    let m = until_retained(nodes.addr(3), topic, Some("kept"))
        .await
        .unwrap();
    assert!(m.retain, "{m:?}");
    assert_eq!(m.topic, topic);
    assert_eq!(m.content_type, "text/plain");
    let expiry: u32 = m.expiry.parse().expect("an expiry interval");
    assert!((590..=600).contains(&expiry), "expiry {expiry}");
    // A node started now has it before it accepts its first client.
    nodes.add().await;
    let m = retained_on(nodes.addr(4), topic).await;
    assert_eq!(
        m.map(|m| m.payload),
        Some("kept".to_owned()),
        "node 4 at start"
    );
    // Replaced from node 3, cleared from node 2: every node follows.
    publish(
        nodes.addr(3),
        &["-q", "1", "-r", "-t", topic, "-m", "newer"],
    )
    .await;
    until_retained(nodes.addr(1), topic, Some("newer")).await;
    publish(nodes.addr(2), &["-q", "1", "-r", "-t", topic, "-n"]).await;
    for n in 1..=4 {
        until_retained(nodes.addr(n), topic, None).await;
    }
}

/// One NATS subscription per distinct local filter, counted: two sessions on one filter
/// (and one on the same filter shared) make two NATS interests on node 2, and when the
/// sessions end they are gone, so node 2 no longer receives node 1's messages from NATS.
#[tokio::test]
async fn nats_interest_follows_local_subscriptions() {
    let Some(nodes) = Nodes::start_or_skip("nats_interest_follows_local_subscriptions").await
    else {
        return;
    };
    let node2 = nodes.nodes[1]
        .server
        .cluster
        .as_ref()
        .expect("cluster mode");
    assert_eq!(node2.interest_count(), 0);
    let mut a = Sub::subscribed(nodes.addr(2), &["-q", "1", "-t", "ri/#"]).await;
    let mut b = Sub::subscribed(nodes.addr(2), &["-q", "1", "-t", "ri/#"]).await;
    let mut c = Sub::subscribed(nodes.addr(2), &["-q", "1", "-t", "$share/g/ri/#"]).await;
    assert_eq!(node2.interest_count(), 2, "ri/# and $share/g/ri/#");
    warm_up(&nodes, 1, "ri/warm", &mut [&mut a, &mut b, &mut c]).await;
    a.kill().await;
    b.kill().await;
    c.kill().await;
    nodes.nodes[1].wait_session_count(0).await;
    assert_eq!(node2.interest_count(), 0);
    node2.flush().await.unwrap();
    // Unsubscribed on NATS: node 1's messages no longer reach node 2.
    let received = || {
        node2
            .stats()
            .received
            .load(std::sync::atomic::Ordering::Relaxed)
    };
    let before = received();
    tokio::time::sleep(Duration::from_millis(200)).await;
    for _ in 0..5 {
        publish(nodes.addr(1), &["-q", "1", "-t", "ri/t", "-m", "x"]).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(received(), before, "node 2 still receives ri/ from NATS");
}

/// A node whose NATS servers do not answer does not start (rather than run unclustered),
/// and says which servers it tried.
#[tokio::test]
async fn a_node_without_nats_does_not_start() {
    let port = gatehouse_tests::broker::free_port();
    let yaml = format!(
        "listeners:\n  - name: e2e\n    bindAddress: 127.0.0.1\n    ports:\n      - port: 0\n        protocol: Mqtt\n\
         cluster:\n  nodeName: lonely\n  nats:\n    servers: [\"nats://127.0.0.1:{port}\"]\n    replicas: 1\n"
    );
    let err = match TestBroker::try_start(&yaml).await {
        Ok(_) => panic!("a node started without NATS"),
        Err(e) => e,
    };
    assert!(
        err.contains("cannot connect to NATS") && err.contains(&format!("127.0.0.1:{port}")),
        "{err}"
    );
}
