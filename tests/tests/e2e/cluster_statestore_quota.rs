//! Cluster mode (issue 15): the state store's quotas (`broker.stateStoreKeyQuota`,
//! `stateStoreMaxTotalBytes`, `stateStorePerClientBytes`) hold for the whole cluster, not
//! per node, with the answers a single node gives (`-ERR the quota has been exceeded`);
//! DEL still works on a full store and frees room. The attack: authorized clients on
//! different nodes together filling the JetStream bucket (every NATS server's disk) past
//! what any one node would allow.
//!
//! Also what nats-server itself does with a full key-value bucket (discard new), which the
//! bucket's `max_bytes` backstop relies on.

use std::time::Duration;

use gatehouse_tests::nats::NatsCluster;
use gatehouse_tests::state_store::StateStoreClient;

use super::cluster::{NodeConfig, Nodes};
use super::cluster_support::resp;

const QUOTA: &str = "-ERR the quota has been exceeded\r\n";

/// Three nodes with `broker` limits, node `i` a client of NATS server `i`.
async fn start_or_skip(test: &str, broker: &str) -> Option<Nodes> {
    let config = NodeConfig {
        top: format!("broker: {{ {broker} }}\n"),
        ..NodeConfig::default()
    };
    Nodes::start_with(test, 3, config).await
}

/// A state store client `client_id` of node `n` (without the client library's
/// notification handling: `StateStoreClient::start_with(.., false)`).
async fn client(nodes: &Nodes, n: usize, client_id: &str) -> StateStoreClient {
    StateStoreClient::start_with(nodes.client(n, client_id).await, client_id, false).await
}

/// `SET key value` until it is answered `want` (another node's change reaches this node's
/// count through its watch of the bucket, normally within milliseconds), within 5 s.
async fn set_until(c: &mut StateStoreClient, key: &[u8], value: &[u8], want: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let got = c.call(&resp(&[b"SET", key, value]), &[]).await.text();
        if got == want {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "SET {} answered {got:?}, not {want:?}",
            String::from_utf8_lossy(key)
        );
        // Undo an unexpected success, so the count stays what the test set up.
        if got == "+OK\r\n" {
            c.call(&resp(&[b"DEL", key]), &[]).await;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Key quota 6: three keys through node 1, three through node 2 fill it; a seventh new key
/// is refused on every node with the single-node answer, while overwriting a key still
/// works; a DEL on the full store works (through node 3) and frees room for one new key
/// (on node 1), after which the store is full again everywhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_key_quota_holds_across_nodes_and_del_frees_room() {
    let Some(nodes) =
        start_or_skip("the_key_quota_holds_across_nodes", "stateStoreKeyQuota: 6").await
    else {
        return;
    };
    let mut a = client(&nodes, 1, "quota-a").await;
    let mut b = client(&nodes, 2, "quota-b").await;
    let mut c = client(&nodes, 3, "quota-c").await;
    for k in [&b"a1"[..], b"a2", b"a3"] {
        assert_eq!(
            a.call(&resp(&[b"SET", k, b"v"]), &[]).await.text(),
            "+OK\r\n"
        );
    }
    for k in [&b"b1"[..], b"b2", b"b3"] {
        assert_eq!(
            b.call(&resp(&[b"SET", k, b"v"]), &[]).await.text(),
            "+OK\r\n"
        );
    }
    // Full: a new key is refused on every node, as a single node refuses it.
    set_until(&mut a, b"a4", b"v", QUOTA).await;
    set_until(&mut b, b"b4", b"v", QUOTA).await;
    set_until(&mut c, b"c1", b"v", QUOTA).await;
    // Replacing a key is not a new key.
    assert_eq!(
        b.call(&resp(&[b"SET", b"a1", b"w"]), &[]).await.text(),
        "+OK\r\n"
    );
    // DEL on the full store works and frees room for one key.
    assert_eq!(c.call(&resp(&[b"DEL", b"b2"]), &[]).await.text(), ":1\r\n");
    set_until(&mut a, b"a4", b"v", "+OK\r\n").await;
    // Full again, everywhere.
    set_until(&mut c, b"c1", b"v", QUOTA).await;
    set_until(&mut b, b"b4", b"v", QUOTA).await;
    let get = c.call(&resp(&[b"GET", b"a4"]), &[]).await;
    assert_eq!(get.text(), "$1\r\nv\r\n");
}

/// Byte quotas: 100 bytes per client, 250 in all (key and value bytes). Client A (node 1)
/// holds 60 and is refused 60 more of its own, whichever node it writes through; B
/// (node 2) and C (node 3) each add 60 (180 in all is under 250), then D (node 1) is
/// refused another 100 by the total; a DEL of A's key makes room for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_byte_quotas_hold_across_nodes() {
    let Some(nodes) = start_or_skip(
        "the_byte_quotas_hold_across_nodes",
        "stateStorePerClientBytes: 100, stateStoreMaxTotalBytes: 250",
    )
    .await
    else {
        return;
    };
    let v58 = vec![b'x'; 58];
    let v98 = vec![b'y'; 98];
    let mut a = client(&nodes, 1, "bytes-a").await;
    assert_eq!(
        a.call(&resp(&[b"SET", b"a1", &v58]), &[]).await.text(),
        "+OK\r\n"
    );
    set_until(&mut a, b"a2", &v58, QUOTA).await;
    drop(a);
    // Answers to A's requests on node 1 also cross to the other nodes (the response
    // topic is an ordinary topic): let them pass before A subscribes there again.
    tokio::time::sleep(Duration::from_millis(500)).await;
    // The same client through another node: its bytes are counted cluster-wide (each
    // record names its owner).
    let mut a2 = client(&nodes, 2, "bytes-a").await;
    set_until(&mut a2, b"a2", &v58, QUOTA).await;
    let mut b = client(&nodes, 2, "bytes-b").await;
    let mut c = client(&nodes, 3, "bytes-c").await;
    assert_eq!(
        b.call(&resp(&[b"SET", b"b1", &v58]), &[]).await.text(),
        "+OK\r\n"
    );
    assert_eq!(
        c.call(&resp(&[b"SET", b"c1", &v58]), &[]).await.text(),
        "+OK\r\n"
    );
    let mut d = client(&nodes, 1, "bytes-d").await;
    set_until(&mut d, b"d1", &v98, QUOTA).await;
    assert_eq!(c.call(&resp(&[b"DEL", b"a1"]), &[]).await.text(), ":1\r\n");
    set_until(&mut d, b"d1", &v98, "+OK\r\n").await;
}

/// What nats-server (2.11+, tested with 2.15.1) does with a key-value bucket at its
/// `max_bytes` (discard new, as every KV bucket; the state store's bucket has such a limit
/// behind the quotas). Found by this experiment:
/// - a new key is refused with 10077 "maximum bytes exceeded";
/// - so is a record that replaces a key's last one, even a smaller one (a delete record),
///   on a replicated bucket (R3): the clustered leader checks the stream's bytes plus the
///   new message before it is stored, without counting the message it replaces. So a
///   bucket AT its `max_bytes` refuses DEL, VDEL and expiry deletes too: Gatehouse keeps
///   live records under three quarters of it by its own count, and its delete records
///   carry a per-message TTL;
/// - a record with a per-message TTL (`Nats-TTL`) is removed when it expires even on a
///   full bucket that keeps refusing writes, and the room it held takes a new key, but
///   only WITHOUT subject delete markers (`subject_delete_marker_ttl`, what a key-value
///   configuration's `limit_markers` turns on with the TTLs): with them the expiring
///   record's marker cannot be written on the full bucket and the record stays (8 s
///   here, 30 s when tried), so the bucket would stay full for good. Gatehouse's bucket
///   allows TTLs without markers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_server_full_bucket_refuses_every_write_until_ttl_frees_room() {
    let Some(nats) = NatsCluster::start_or_skip("nats_server_full_bucket").await else {
        return;
    };
    let client = async_nats::connect(nats.urls()[0].as_str())
        .await
        .expect("connect to NATS");
    let js = async_nats::jetstream::new(client);
    let (without, with) = tokio::join!(
        fill_expire_and_refill(&js, "plain", false),
        fill_expire_and_refill(&js, "markers", true)
    );
    assert!(without.is_some(), "the TTL record expired on a full bucket");
    assert!(
        with.is_none(),
        "with delete markers the TTL record of a full bucket stays ({with:?})"
    );
}

/// Fill bucket `bucket` (a record with a 1 s TTL first), check what a full bucket refuses,
/// and return how long the TTL record took to go, if it went within 8 s; without
/// `markers` check that its room then takes a new key.
async fn fill_expire_and_refill(
    js: &async_nats::jetstream::Context,
    bucket: &str,
    markers: bool,
) -> Option<Duration> {
    // The stream a key-value bucket is (what `create_key_value` makes), spelled out.
    let mut stream = js
        .create_stream(async_nats::jetstream::stream::Config {
            name: format!("KV_{bucket}"),
            subjects: vec![format!("$KV.{bucket}.>")],
            max_messages_per_subject: 1,
            max_bytes: 2048,
            num_replicas: 3,
            discard: async_nats::jetstream::stream::DiscardPolicy::New,
            allow_rollup: true,
            deny_delete: true,
            allow_direct: true,
            allow_message_ttl: true,
            subject_delete_marker_ttl: markers.then_some(Duration::from_secs(1)),
            ..Default::default()
        })
        .await
        .expect("create the bucket");
    let publish = |key: &str, expected: u64, payload: Vec<u8>, ttl: Option<u64>| {
        let js = js.clone();
        let subject = format!("$KV.{bucket}.{key}");
        async move {
            let mut headers = async_nats::HeaderMap::new();
            headers.insert(
                "Nats-Expected-Last-Subject-Sequence",
                expected.to_string().as_str(),
            );
            if let Some(ttl) = ttl {
                headers.insert("Nats-TTL", ttl.to_string().as_str());
            }
            match js
                .publish_with_headers(subject, headers, bytes::Bytes::from(payload))
                .await
            {
                Ok(ack) => ack.await.map(|a| a.sequence).map_err(|e| format!("{e:?}")),
                Err(e) => Err(format!("{e:?}")),
            }
        }
    };
    let full = |r: &Result<u64, String>| {
        r.as_ref()
            .is_err_and(|e| e.contains("10077") && e.contains("maximum bytes exceeded"))
    };
    publish("gone", 0, vec![b'd'; 300], Some(1))
        .await
        .expect("a record with a TTL");
    let mut stored = Vec::new();
    loop {
        let key = format!("k{}", stored.len());
        let r = publish(&key, 0, vec![b'v'; 300], None).await;
        match r {
            Ok(revision) => stored.push((key, revision)),
            Err(_) => {
                assert!(full(&r), "{r:?}");
                break;
            }
        }
        assert!(stored.len() < 20, "max_bytes never refused a write");
    }
    assert!(stored.len() >= 2, "{stored:?}");
    let (k0, r0) = stored[0].clone();
    let bigger = publish(&k0, r0, vec![b'w'; 400], None).await;
    assert!(full(&bigger), "a larger replacement: {bigger:?}");
    let smaller = publish(&k0, r0, b"D0:0:x".to_vec(), Some(60)).await;
    assert!(
        full(&smaller),
        "a smaller replacement (a delete): {smaller:?}"
    );
    let t0 = std::time::Instant::now();
    let before = stream.info().await.expect("stream info").state.messages;
    let mut expired = None;
    while t0.elapsed() < Duration::from_secs(8) {
        // Writes the full bucket refuses meanwhile do not hold the expiry back.
        let refused = publish("probe", 0, vec![b'p'; 2048], None).await;
        assert!(full(&refused), "{refused:?}");
        let gone_now = stream
            .get_last_raw_message_by_subject(&format!("$KV.{bucket}.gone"))
            .await
            .is_err();
        if gone_now || stream.info().await.expect("stream info").state.messages < before {
            expired = Some(t0.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    if expired.is_some() {
        let room = publish("new", 0, vec![b'n'; 300], None).await;
        assert!(room.is_ok(), "the expired record's room: {room:?}");
    }
    expired
}
