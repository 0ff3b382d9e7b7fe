//! Cluster mode (issue 15): a state store request waiting for JetStream holds no worker
//! thread and does not stall its own connection's deliveries. The NATS servers are
//! stopped (SIGSTOP: sockets open, nothing answered, as a stalled JetStream) while
//! clients have requests in flight; the node runs on ONE worker thread (the test's
//! runtime: the node runs in-process), so a blocked thread would show.

use std::time::Duration;

use gatehouse_protocol::Packet;
use gatehouse_tests::broker::TestBroker;
use gatehouse_tests::nats::NatsCluster;
use gatehouse_tests::raw::RawClient;
use gatehouse_tests::state_store::{ts_now, StateStoreClient};

use super::cluster_support::{connect_v5, resp};

/// The next PUBLISH on `topic` within `within`, skipping PUBACKs; `None` when none came.
/// Panics on a state store response (`forbidden`): it must not be answered yet.
async fn publish_on(
    c: &mut RawClient,
    topic: &str,
    forbidden: &str,
    within: Duration,
) -> Option<Vec<u8>> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match c.recv(left).await? {
            Packet::Publish(p) if p.topic == topic => return Some(p.payload.to_vec()),
            Packet::Publish(p) if p.topic == forbidden => {
                panic!("answered while JetStream is stopped: {p:?}")
            }
            Packet::PubAck(_) => {}
            other => panic!("unexpected packet: {other:?}"),
        }
    }
}

/// The next `n` responses on `topic` (correlation data and payload), acknowledging them
/// and skipping PUBACKs, within 10 s each.
async fn responses(c: &mut RawClient, topic: &str, n: usize) -> Vec<(Vec<u8>, String)> {
    let mut out = Vec::new();
    while out.len() < n {
        match c.recv(Duration::from_secs(10)).await {
            Some(Packet::Publish(p)) if p.topic == topic => {
                if let Some(id) = p.packet_id {
                    c.puback(id).await;
                }
                out.push((
                    p.properties
                        .correlation_data
                        .as_deref()
                        .unwrap_or_default()
                        .to_vec(),
                    String::from_utf8_lossy(&p.payload).into_owned(),
                ));
            }
            Some(Packet::PubAck(_)) => {}
            other => panic!("waiting for {n} responses on {topic}: {other:?}"),
        }
    }
    out
}

/// While every NATS server is stopped: a client with two state store requests in flight
/// still receives what is published to it at once (its connection is not blocked in its
/// request), and a publisher and a subscriber on the same node, beside ten more clients
/// with requests in flight, exchange messages at once. When NATS continues, the requests
/// are answered in the order sent and took effect in that order.
///
/// Before requests were awaited (`block_in_place` for each round trip), the requester's
/// own task waited up to 5 s in its request, so the message to it came only then.
#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn a_request_waiting_for_jetstream_blocks_no_thread_and_no_delivery() {
    let Some(nats) = NatsCluster::start_or_skip("a_request_waiting_for_jetstream").await else {
        return;
    };
    let url = &nats.urls()[0];
    let node = TestBroker::start(&format!(
        "listeners:\n  - name: e2e\n    bindAddress: 127.0.0.1\n    ports:\n      - port: 0\n        protocol: Mqtt\n\
         cluster:\n  nodeName: async1\n  nats:\n    servers: [\"{url}\"]\n    replicas: 3\n"
    ))
    .await;
    let addr = node.mqtt_addr();
    let mut r =
        StateStoreClient::start_with(connect_v5(addr, "async-r").await, "async-r", false).await;
    r.raw.sub_ok(3, "live/r", 0).await;
    let mut s = connect_v5(addr, "async-s").await;
    s.sub_ok(1, "live/s", 0).await;
    let mut p = connect_v5(addr, "async-p").await;
    let mut others = Vec::new();
    for i in 0..10 {
        let id = format!("async-o{i}");
        others.push(StateStoreClient::start_with(connect_v5(addr, &id).await, &id, false).await);
    }
    // JetStream answers.
    assert_eq!(
        r.call(&resp(&[b"SET", b"k", b"v0"]), &[]).await.text(),
        "+OK\r\n"
    );

    nats.stop_all();
    let ts = ts_now();
    let first = r
        .send(&resp(&[b"SET", b"k", b"v1"]), &[("__ts", &ts)])
        .await;
    let ts = ts_now();
    let second = r
        .send(&resp(&[b"SET", b"k", b"v2"]), &[("__ts", &ts)])
        .await;
    let mut sent = Vec::new();
    for (i, o) in others.iter_mut().enumerate() {
        let ts = ts_now();
        let key = format!("o{i}");
        sent.push(
            o.send(&resp(&[b"SET", key.as_bytes(), b"x"]), &[("__ts", &ts)])
                .await,
        );
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = tokio::time::Instant::now();
    p.publish("live/r", b"to-r", 0, false, 0).await;
    p.publish("live/s", b"to-s", 0, false, 0).await;
    let response_topic = r.response_topic.clone();
    let to_r = publish_on(
        &mut r.raw,
        "live/r",
        &response_topic,
        Duration::from_secs(2),
    )
    .await;
    assert_eq!(
        to_r.as_deref(),
        Some(&b"to-r"[..]),
        "the requester receives while its request waits for JetStream"
    );
    let to_s = publish_on(&mut s, "live/s", "-", Duration::from_secs(2)).await;
    assert_eq!(
        to_s.as_deref(),
        Some(&b"to-s"[..]),
        "other clients are served"
    );
    let took = started.elapsed();
    assert!(took < Duration::from_secs(2), "deliveries took {took:?}");

    nats.cont_all();
    let answers = responses(&mut r.raw, &response_topic, 2).await;
    assert_eq!(
        answers,
        vec![
            (first.1.to_vec(), "+OK\r\n".to_owned()),
            (second.1.to_vec(), "+OK\r\n".to_owned())
        ],
        "both answered, in the order sent"
    );
    let get = r.call(&resp(&[b"GET", b"k"]), &[]).await;
    assert_eq!(
        get.text(),
        "$2\r\nv2\r\n",
        "the requests took effect in order"
    );
    for (o, (_, correlation)) in others.iter_mut().zip(sent) {
        let topic = o.response_topic.clone();
        let answer = responses(&mut o.raw, &topic, 1).await;
        assert_eq!(answer, vec![(correlation.to_vec(), "+OK\r\n".to_owned())]);
    }
}
