//! Helpers shared by the cluster test files (`cluster*.rs`): connecting raw clients,
//! starting a real `gatehouse` process as a cluster node, state store requests, retained
//! PUBACKs and collecting what a client receives. Each was written again in several test
//! files; kept here once so that the files agree on what, e.g., "connected" or "a retained
//! PUBACK" means, and a fix reaches every test. The nodes themselves: `cluster::Nodes`.

use std::net::SocketAddr;
use std::time::Duration;

use async_nats::jetstream::stream::Stream;
use gatehouse_protocol::{Packet, ProtocolVersion, PublishProperties, Subscribe};
use gatehouse_tests::broker::{free_port, BrokerProcess, TempDir};
use gatehouse_tests::raw::{frame_body, opts, pid, ConnectBuilder, RawClient};
use tokio::time::Instant;

use super::cluster::{NodeConfig, Nodes};

/// A RESP3 array of bulk strings: a state store request's payload.
pub(crate) fn resp(parts: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", parts.len()).into_bytes();
    for p in parts {
        out.extend_from_slice(format!("${}\r\n", p.len()).as_bytes());
        out.extend_from_slice(p);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// A plain v5 client `client_id` of `addr` (CONNACK 0x00), the client most cluster tests
/// start from.
pub(crate) async fn connect_v5(addr: SocketAddr, client_id: &str) -> RawClient {
    let mut c = RawClient::connect(addr).await;
    c.send(&ConnectBuilder::new(client_id).build()).await;
    c.expect_connack_ok().await;
    c
}

/// `builder`'s CONNECT (v5, or 3.1.1 for a 3.1.1 builder) to `addr`: the client and
/// Session Present, read from the raw CONNACK (which must accept, within 10 s). Session
/// Present is what says where a cluster session resumed.
pub(crate) async fn connect_session(
    addr: SocketAddr,
    builder: &ConnectBuilder,
) -> (RawClient, bool) {
    let mut c = RawClient::connect(addr).await;
    if builder.level == 4 {
        c.version = ProtocolVersion::V311;
    }
    c.send(&builder.build()).await;
    let raw = c
        .recv_raw(Duration::from_secs(10))
        .await
        .expect("a CONNACK");
    assert_eq!(raw[0], 0x20, "expected CONNACK, got {raw:02X?}");
    let body = frame_body(&raw);
    assert_eq!(body[1], 0, "CONNACK refused: {raw:02X?}");
    (c, body[0] & 1 == 1)
}

/// A real `gatehouse` process as a cluster node `name` (MQTT on a free port, its data in
/// `dir`), a client of the NATS servers `servers`, with the top-level YAML lines `extra`
/// (each ending in a newline). A process, not an in-process node, because these tests
/// kill it with `kill -9`. Keep `dir` as long as the process runs.
pub(crate) async fn process_node(
    dir: &TempDir,
    name: &str,
    servers: &[String],
    extra: &str,
) -> BrokerProcess {
    let port = free_port();
    let servers = servers
        .iter()
        .map(|u| format!("\"{u}\""))
        .collect::<Vec<_>>()
        .join(", ");
    let config = dir.write(
        "node.yaml",
        &format!(
            "dataDir: {data}\nlisteners:\n  - name: e2e\n    bindAddress: 127.0.0.1\n    ports: [ {{ port: {port} }} ]\n\
             {extra}\
             cluster:\n  nodeName: {name}\n  nats: {{ servers: [{servers}], replicas: 3 }}\n",
            data = dir.path().join("data").display()
        ),
    );
    BrokerProcess::start(&config, port).await
}

/// A retained QoS 1 PUBLISH through `c`: its PUBACK reason code. The PUBACK waits for the
/// retained bucket to store the message, up to `cluster::retained::ACK_WAIT_LIMIT` (15 s),
/// so this waits 20 s; PUBLISHes meanwhile are skipped, anything else panics.
pub(crate) async fn retained_puback(c: &mut RawClient, topic: &str, payload: &[u8], id: u16) -> u8 {
    retained_puback_props(c, topic, payload, id, PublishProperties::default()).await
}

/// [`retained_puback`] with PUBLISH properties (e.g. a Message Expiry Interval).
pub(crate) async fn retained_puback_props(
    c: &mut RawClient,
    topic: &str,
    payload: &[u8],
    id: u16,
    properties: PublishProperties,
) -> u8 {
    c.publish_props(topic, payload, 1, true, id, properties)
        .await;
    loop {
        match c.recv(Duration::from_secs(20)).await {
            Some(Packet::PubAck(a)) if a.packet_id == pid(id) => return a.reason_code.0,
            Some(Packet::Publish(_)) => {}
            other => panic!("expected the PUBACK of {id} (retained on {topic}), got {other:?}"),
        }
    }
}

/// Every PUBLISH `c` receives until quiet for `quiet` (acknowledged): (topic, payload,
/// subscription identifiers).
pub(crate) async fn receive_all(
    c: &mut RawClient,
    quiet: Duration,
) -> Vec<(String, String, Vec<u32>)> {
    let mut got = Vec::new();
    while let Some(packet) = c.recv(quiet).await {
        if let Packet::Publish(p) = packet {
            if let Some(id) = p.packet_id {
                c.puback(id).await;
            }
            got.push((
                p.topic.clone(),
                String::from_utf8_lossy(&p.payload).into_owned(),
                p.properties.subscription_identifiers.clone(),
            ));
        }
    }
    got
}

/// What a client received: (topic, payload, when).
pub(crate) type Got = Vec<(String, Vec<u8>, Instant)>;

/// What `c` receives within `within`, added to `got` (the wills tests time when each
/// will arrives).
pub(crate) async fn receive_for(c: &mut RawClient, within: Duration, got: &mut Got) {
    let until = Instant::now() + within;
    loop {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return;
        }
        if let Some(Packet::Publish(p)) = c.recv(left).await {
            got.push((p.topic, p.payload.to_vec(), Instant::now()));
        }
    }
}

/// How many of `got` were on `topic`.
pub(crate) fn count(got: &[(String, Vec<u8>, Instant)], topic: &str) -> usize {
    got.iter().filter(|(t, _, _)| t == topic).count()
}

/// SUBSCRIBE to `filter` (QoS 0) without waiting for the SUBACK: in cluster mode it
/// follows the session record's write; the tests show the subscription works with a probe
/// message instead.
pub(crate) async fn subscribe_unacked(c: &mut RawClient, filter: &str) {
    c.send_packet(&Packet::Subscribe(Subscribe {
        packet_id: pid(1),
        subscription_identifier: None,
        user_properties: Vec::new(),
        filters: vec![(filter.to_owned(), opts(0))],
    }))
    .await;
}

/// The configuration of nodes with retained caps (`broker.maxRetainedMessages`,
/// `maxRetainedBytes`): the retained bucket's size follows them, so small caps make a
/// bucket a test can fill.
pub(crate) fn retained_caps(max_messages: u64, max_bytes: u64) -> NodeConfig {
    NodeConfig {
        top: format!(
            "broker: {{ maxRetainedMessages: {max_messages}, maxRetainedBytes: {max_bytes} }}\n"
        ),
        ..NodeConfig::default()
    }
}

/// The retained bucket's stream (`KV_gatehouse-retained`), read through NATS server 1:
/// its records and bytes are what the retained tests measure.
pub(crate) async fn retained_stream(nodes: &Nodes) -> Stream {
    let client = async_nats::connect(nodes.nats.urls()[0].as_str())
        .await
        .expect("connect to NATS");
    async_nats::jetstream::new(client)
        .get_stream("KV_gatehouse-retained")
        .await
        .expect("the retained bucket's stream")
}

/// The configuration of nodes with `cluster.nats.disconnectGrace` `grace` (the default
/// is 5 s): how long a node waits before it acts on losing NATS or JetStream.
pub(crate) fn disconnect_grace(grace: Duration) -> NodeConfig {
    NodeConfig {
        nats: format!("    disconnectGrace: {}ms\n", grace.as_millis()),
        ..NodeConfig::default()
    }
}

/// What the wills tests' two watchers (on nodes 1 and 2) got: each topic of `once`
/// exactly once (a will is published once cluster-wide), none of `never` (topic, why it
/// must not be published).
pub(crate) fn assert_wills(got: [&Got; 2], once: &[&str], never: &[(&str, &str)]) {
    for (node, got) in [(1, got[0]), (2, got[1])] {
        for topic in once {
            assert_eq!(count(got, topic), 1, "node {node}: {got:?}");
        }
        for (topic, why) in never {
            assert_eq!(count(got, topic), 0, "node {node}: {why}: {got:?}");
        }
    }
}
