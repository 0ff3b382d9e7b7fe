//! Cluster mode (issue 15): the JetStream bucket of retained messages (`gatehouse-retained`)
//! is bounded, not only each node's mirror of it. The attack: a client allowed to publish
//! retained messages sets and clears many topics, and sets messages that expire, through
//! several nodes; each clear used to leave a delete marker for good and each expired
//! message stayed until replaced, filling every NATS server's disk.

use std::time::Duration;

use async_nats::jetstream::stream::Stream;
use gatehouse_protocol::{Packet, PublishProperties, ReasonCode};
use gatehouse_tests::nats::NatsCluster;
use gatehouse_tests::raw::RawClient;

use super::cluster::Nodes;
use super::cluster_support::{retained_caps, retained_puback_props, retained_stream};

/// `broker.maxRetainedMessages` and `maxRetainedBytes` of the nodes.
const MAX_MESSAGES: u64 = 20;
const MAX_BYTES: u64 = 2000;

/// A retained PUBLISH at QoS 1 (`expiry`: Message Expiry Interval); the PUBACK's reason.
/// The PUBACK waits for the bucket to store the message, up to 15 s
/// (`cluster::retained::ACK_WAIT_LIMIT`).
async fn retain(c: &mut RawClient, topic: &str, payload: &[u8], expiry: Option<u32>) -> u8 {
    let properties = PublishProperties {
        message_expiry_interval: expiry,
        ..Default::default()
    };
    retained_puback_props(c, topic, payload, 1, properties).await
}

/// The stream's messages and bytes now.
async fn state(stream: &mut Stream) -> (u64, u64) {
    let info = stream.info().await.expect("stream info");
    (info.state.messages, info.state.bytes)
}

/// Wait until the stream holds `messages` records, within `within`.
async fn until_messages(stream: &mut Stream, messages: u64, within: Duration, what: &str) {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let (now, bytes) = state(stream).await;
        if now == messages {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: the bucket holds {now} records ({bytes} bytes), not {messages}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The topics of the retained messages a new subscriber to `filter` on node `n` gets.
async fn retained_topics_once(nodes: &Nodes, n: usize, filter: &str) -> Vec<String> {
    let mut c = nodes.client(n, &format!("reader-{n}")).await;
    c.sub_ok(1, filter, 0).await;
    let mut topics = Vec::new();
    while let Some(p) = c.recv(Duration::from_secs(1)).await {
        if let Packet::Publish(p) = p {
            topics.push(p.topic);
        }
    }
    topics.sort();
    topics
}

/// [`retained_topics_once`] until it equals `expected` (node `n`'s mirror follows the
/// bucket asynchronously: slower on a loaded machine), or what it last got after 15 s.
async fn retained_topics_until(
    nodes: &Nodes,
    n: usize,
    filter: &str,
    expected: &[String],
) -> Vec<String> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let got = retained_topics_once(nodes, n, filter).await;
        if got == expected || tokio::time::Instant::now() >= deadline {
            return got;
        }
    }
}

/// 1. The bucket has a size limit derived from `maxRetainedMessages` / `maxRetainedBytes`
///    (checked after 2.).
/// 2. Retained messages that expire (1 s) set through nodes 1 and 2 leave the bucket
///    by themselves (their TTL), nobody replacing them.
/// 3. At the retained store's bound (`maxRetainedMessages` live messages), one more is
///    refused, a clear (node 2) and a new message (node 1) still work.
/// 4. A flood of set-and-clear cycles of distinct topics through nodes 1 and 2, more
///    than the limit holds in clear records: the bucket stays under its limit (the nodes
///    pace the flooders' clears), and a new subscriber on node 3 still gets exactly the
///    live retained messages.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn retained_bucket_stays_bounded_under_clear_and_expiry_floods() {
    let Some(nodes) = Nodes::start_with(
        "retained_bucket_stays_bounded",
        3,
        retained_caps(MAX_MESSAGES, MAX_BYTES),
    )
    .await
    else {
        return;
    };
    let mut stream = retained_stream(&nodes).await;
    let mut a = nodes.client(1, "attacker-a").await;
    let mut b = nodes.client(2, "attacker-b").await;

    // 2. Expiring messages go by themselves.
    for i in 0..16 {
        let c = if i % 2 == 0 { &mut a } else { &mut b };
        assert_eq!(
            retain(c, &format!("exp/{i}"), b"soon gone", Some(1)).await,
            0
        );
    }
    // In the bucket: node 3 got them all through it (in a second: then they expire).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let mut seen = 0;
    while seen < 16 {
        seen = seen.max(nodes.nodes[2].server.broker.router.retained_count());
        seen = seen.max(state(&mut stream).await.0 as usize);
        assert!(
            tokio::time::Instant::now() < deadline,
            "{seen} of 16 in the bucket"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    until_messages(&mut stream, 0, Duration::from_secs(8), "expired messages").await;
    // Every node's mirror drops them every minute (they count against the caps until
    // then): now. Nothing may be written back for them.
    for n in &nodes.nodes {
        n.server.broker.router.purge_expired_retained();
        assert_eq!(n.server.broker.router.retained_count(), 0);
    }

    // 1. (Checked once the attack of 2. has shown what happens without it.)
    let limit = stream.info().await.expect("stream info").config.max_bytes;
    // 2 × (2 × maxRetainedBytes + 512 × maxRetainedMessages)
    assert_eq!(
        limit,
        (2 * (2 * MAX_BYTES + 512 * MAX_MESSAGES)) as i64,
        "the bucket's max_bytes"
    );

    // 3. The retained store at its bound: clears and replacements still work.
    for i in 0..MAX_MESSAGES {
        let c = if i % 2 == 0 { &mut a } else { &mut b };
        assert_eq!(
            retain(c, &format!("live/{i:02}"), &[b'v'; 40], None).await,
            0
        );
    }
    // Every node's mirror holds them all (node 1's count includes node 2's).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while nodes.nodes[0].server.broker.router.retained_count() < MAX_MESSAGES as usize {
        assert!(
            tokio::time::Instant::now() < deadline,
            "node 1 sees node 2's"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        retain(&mut a, "live/over", b"v", None).await,
        ReasonCode::QUOTA_EXCEEDED.0,
        "one more than maxRetainedMessages"
    );
    assert_eq!(retain(&mut b, "live/00", b"", None).await, 0, "a clear");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while nodes.nodes[0].server.broker.router.retained_count() >= MAX_MESSAGES as usize {
        assert!(
            tokio::time::Instant::now() < deadline,
            "node 1 sees the clear"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(retain(&mut a, "live/20", b"new", None).await, 0, "after it");
    // Room for the flood: keep ten live messages. The clears are spread over the three
    // nodes: each node writes clears at a bounded rate (a burst of five such here, then
    // one every twelve seconds; see `cluster_retained_clears`).
    let mut c = nodes.client(3, "attacker-c").await;
    for i in 10..MAX_MESSAGES {
        let client = match i % 3 {
            0 => &mut a,
            1 => &mut b,
            _ => &mut c,
        };
        assert_eq!(retain(client, &format!("live/{i:02}"), b"", None).await, 0);
    }
    let live: Vec<String> = (1..10)
        .map(|i| format!("live/{i:02}"))
        .chain(["live/20".to_owned()])
        .collect();
    // The live records plus the clears' records (of the last minute).
    until_messages(&mut stream, 21, Duration::from_secs(5), "live and clears").await;

    // 4. The flood: set and clear ever new topics through nodes 1 and 2 as fast as the
    //    nodes read them (QoS 0, pipelined) for 5 s, each clear a record. The nodes' clear
    //    budgets slow the flooders down (they are not read until it is repaid), so far
    //    fewer records are written than the flooders sent.
    let mut most = 0;
    let flooders: Vec<_> = [(a, 0), (b, 1)]
        .into_iter()
        .map(|(mut c, k)| {
            tokio::spawn(async move {
                for i in 0..300 {
                    let topic = format!("flood/{k}/{i:03}");
                    c.publish(&topic, &[b'f'; 40], 0, true, 0).await;
                    c.publish(&topic, b"", 0, true, 0).await;
                }
            })
        })
        .collect();
    let started = tokio::time::Instant::now();
    while started.elapsed() < Duration::from_secs(5) {
        most = most.max(state(&mut stream).await.1);
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    for f in flooders {
        f.abort();
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (messages, bytes) = state(&mut stream).await;
    most = most.max(bytes);
    eprintln!("after the flood: {messages} records, {bytes} bytes (max {most}, limit {limit})");
    assert!(
        most <= limit as u64,
        "the bucket took {most} bytes, over its max_bytes {limit} ({messages} records)"
    );
    assert!(
        messages < 300,
        "the bucket holds {messages} records after a flood of 600 clears"
    );
    // The live retained messages are intact, as a new subscriber on node 3 sees them.
    assert_eq!(
        retained_topics_until(&nodes, 3, "live/#", &live).await,
        live
    );
}

/// A bucket an older Gatehouse created (a plain key-value bucket: no size limit, no TTLs,
/// its clears delete markers kept for good) is upgraded in place when the nodes start:
/// it gets the size limit and per-message TTLs, and the stale delete markers are purged,
/// while the retained messages in it stay and reach a new subscriber.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_older_bucket_is_upgraded_in_place() {
    let Some(nats) = NatsCluster::start_or_skip("an_older_bucket_is_upgraded").await else {
        return;
    };
    let client = async_nats::connect(nats.urls()[0].as_str())
        .await
        .expect("connect to NATS");
    let js = async_nats::jetstream::new(client);
    // What the older Gatehouse created (bucket::open_watched).
    let kv = js
        .create_key_value(async_nats::jetstream::kv::Config {
            bucket: "gatehouse-retained".to_owned(),
            history: 1,
            num_replicas: 3,
            storage: async_nats::jetstream::stream::StorageType::File,
            ..Default::default()
        })
        .await
        .expect("the old bucket");
    let key_of = gatehouse::cluster::retained::key_of;
    for i in 0..10 {
        kv.delete(key_of(&format!("old/gone/{i}")))
            .await
            .expect("an old delete marker");
    }
    let nodes = Nodes::on(nats, 3, retained_caps(MAX_MESSAGES, MAX_BYTES)).await;
    let mut a = nodes.client(1, "upgrade-a").await;
    assert_eq!(retain(&mut a, "old/kept", b"kept", None).await, 0);
    // The longest Message Expiry Interval is a valid TTL too.
    assert_eq!(retain(&mut a, "old/long", b"long", Some(u32::MAX)).await, 0);
    let mut stream = retained_stream(&nodes).await;
    let info = stream.info().await.expect("stream info");
    assert_eq!(
        info.config.max_bytes,
        (2 * (2 * MAX_BYTES + 512 * MAX_MESSAGES)) as i64
    );
    assert!(info.config.allow_message_ttl);
    assert_eq!(info.config.subject_delete_marker_ttl, None);
    // The ten markers are gone; the new messages are there.
    until_messages(&mut stream, 2, Duration::from_secs(5), "after the upgrade").await;
    let expected = ["old/kept".to_owned(), "old/long".to_owned()];
    assert_eq!(
        retained_topics_until(&nodes, 3, "old/#", &expected).await,
        expected
    );
}
