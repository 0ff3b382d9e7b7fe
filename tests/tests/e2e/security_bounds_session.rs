//! Session bounds (issue 13, security.md invariant 6), each attack performed end to end with
//! TLS clients presenting X.509 certificates made in the test (CN = user name):
//!
//! - a subscriber that does not read fills its queue with large messages: the queue is
//!   bounded in bytes (`subscriberQueueLimit.maxBytes`, default 16 MiB), not only in count;
//! - a client creates session after session with fresh client ids: `maxSessions`;
//! - a client registers KEYNOTIFY on key after key: `stateStoreMaxKeyNotifyPerClient`;
//! - a client makes the broker remember large state store answers for retransmissions:
//!   the reply cache is bounded in bytes (1 MiB per session).

use std::time::Duration;

use bytes::Bytes;
use gatehouse_protocol::{Packet, Publish, PublishProperties, QoS};
use gatehouse_tests::broker::{TempDir, TestBroker};
use gatehouse_tests::raw::{connack_code, pid, ConnectBuilder, RawClient};
use gatehouse_tests::secure::SecurePort;
use gatehouse_tests::state_store::{ts_now, StateStoreClient, REQUEST_TOPIC};

const QUIET: Duration = Duration::from_millis(700);
const QUOTA: &[u8] = b"-ERR the quota has been exceeded\r\n";

/// Everyone may connect with any client id, publish and subscribe to `data/#`, and use
/// the state store on keys `k/*` with answers in its own `clients/{clientId}/#`.
const RULES: &str = "        - principals: { usernames: [alice, mallory, pub, bob] }
          brokerResources:
            - method: Connect
            - method: Publish
              topics: [\"data/#\", \"statestore/v1/FA9AE35F-2F64-47CD-9BFF-08E2B32A0FE8/command/invoke\"]
            - method: Subscribe
              topics: [\"data/#\", \"clients/{principal.clientId}/#\"]
          stateStoreResources:
            - method: ReadWrite
              keyType: Pattern
              keys: [\"k/*\"]
";

/// The X.509 TLS port of these tests ([`SecurePort`]) with [`RULES`] and its users.
struct X509Setup(SecurePort);

impl X509Setup {
    fn new(name: &str) -> X509Setup {
        X509Setup(SecurePort::new(name, &["alice", "mallory", "pub", "bob"]))
    }

    fn yaml(&self, broker: &str) -> String {
        self.0.yaml(RULES, broker)
    }

    async fn start(&self, broker: &str) -> TestBroker {
        TestBroker::start(&self.yaml(broker)).await
    }

    /// Connect as `user`; returns the client and the raw CONNACK frame.
    async fn try_connect(
        &self,
        b: &TestBroker,
        user: &str,
        builder: ConnectBuilder,
    ) -> (RawClient, Vec<u8>) {
        self.0.try_connect(b, user, builder).await
    }

    /// Connect as `user`; the CONNACK must be a success. Returns Session Present.
    async fn connect(
        &self,
        b: &TestBroker,
        user: &str,
        builder: ConnectBuilder,
    ) -> (RawClient, bool) {
        let (c, ack) = self.0.connect(b, user, builder).await;
        (c, ack.session_present)
    }
}

/// Receive and acknowledge PUBLISHes until none arrives for [`QUIET`]; returns how many.
async fn drain_count(c: &mut RawClient) -> usize {
    let mut n = 0;
    while let Some(packet) = c.recv(QUIET).await {
        match packet {
            Packet::Publish(m) => {
                n += 1;
                if let (QoS::AtLeastOnce, Some(id)) = (m.qos, m.packet_id) {
                    c.puback(id).await;
                }
            }
            other => panic!("expected PUBLISH, got {other:?}"),
        }
    }
    n
}

/// `GET /metrics`, by hand.
async fn scrape_metrics(b: &TestBroker) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(b.metrics_addr())
        .await
        .expect("metrics port");
    s.write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .await
        .expect("request");
    let mut out = String::new();
    s.read_to_string(&mut out).await.expect("response");
    out
}

/// The value of the sample `name` in a metrics text.
fn sample(metrics: &str, name: &str) -> u64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no sample {name} in\n{metrics}"))
}

/// Queue bytes, with the default limits: Mallory subscribes with a persistent session and
/// goes away; 24 messages of 1 MB are published to her filter. Before the fix all 24 were
/// kept for her (only the count, 1000, was bounded: 1000 such messages are 1 GB for one
/// session). Now her queue stops at `subscriberQueueLimit.maxBytes` (16 MiB: 16 of them)
/// and the rest are dropped and counted as `queue_full`; the publisher is still
/// acknowledged, and Bob, connected and reading, gets every message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_subscriber_queue_is_bounded_in_bytes() {
    const MESSAGES: usize = 24;
    const PAYLOAD: usize = 1_000_000;
    let s = X509Setup::new("sec-bnd-qbytes");
    let b = s.start("").await;

    let hog = ConnectBuilder::new("hog")
        .clean_start(true)
        .session_expiry(300);
    let (mut mallory, _) = s.connect(&b, "mallory", hog).await;
    mallory.sub_ok(1, "data/#", 1).await;
    mallory.disconnect().await;

    let (mut bob, _) = s.connect(&b, "bob", ConnectBuilder::new("bob-1")).await;
    bob.sub_ok(1, "data/#", 1).await;
    let bob_reads = tokio::spawn(async move {
        let mut got = 0;
        while got < MESSAGES {
            match bob.recv(Duration::from_secs(20)).await {
                Some(Packet::Publish(m)) => {
                    got += 1;
                    if let Some(id) = m.packet_id {
                        bob.puback(id).await;
                    }
                }
                other => panic!("Bob expected PUBLISH, got {other:?} after {got}"),
            }
        }
        bob
    });

    let (mut publisher, _) = s.connect(&b, "pub", ConnectBuilder::new("pub-1")).await;
    let payload = vec![b'x'; PAYLOAD];
    for i in 0..MESSAGES {
        // Acknowledged at once: the offline session is not congested, only bounded.
        publisher
            .publish_q1(&format!("data/{i}"), &payload, false, i as u16 + 1)
            .await;
    }
    let bob = tokio::time::timeout(Duration::from_secs(30), bob_reads)
        .await
        .expect("Bob receives every message in time")
        .expect("Bob's reader");
    drop(bob);

    let back = ConnectBuilder::new("hog")
        .clean_start(false)
        .session_expiry(300);
    let (mut mallory, present) = s.connect(&b, "mallory", back).await;
    assert!(present, "Mallory's session was kept");
    let kept = drain_count(&mut mallory).await;
    let bound = (16 * 1024 * 1024) / (PAYLOAD + "data/10".len());
    assert_eq!(
        kept, bound,
        "the queue holds what fits in 16 MiB, not all {MESSAGES}"
    );
    let metrics = scrape_metrics(&b).await;
    assert!(
        sample(
            &metrics,
            "gatehouse_messages_dropped_total{reason=\"queue_full\"}"
        ) >= (MESSAGES - bound) as u64,
        "{metrics}"
    );
}

/// Queue bytes for a connected subscriber that does not read, with `DropOldest` and a
/// small bound: the publisher's PUBACK is held while the session is congested at its byte
/// bound (as at its length bound), then the queue overflows by the strategy: what Mallory
/// finally gets is the newest messages and never more bytes than twice the bound (the
/// ceiling of a connected session). Bob, reading, gets everything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connected_subscriber_that_does_not_read_is_bounded_in_bytes() {
    const PAYLOAD: usize = 100_000;
    const MESSAGES: u16 = 20;
    let s = X509Setup::new("sec-bnd-qbytes-online");
    let b = s
        .start("subscriberQueueLimit: { length: 1000, strategy: DropOldest, maxBytes: 500000 }")
        .await;
    // Receive Maximum 1: one message in flight, everything else waits in the queue.
    let hog = ConnectBuilder::new("hog-online").receive_maximum(1);
    let (mut mallory, _) = s.connect(&b, "mallory", hog).await;
    mallory.sub_ok(1, "data/#", 1).await;
    let (mut bob, _) = s.connect(&b, "bob", ConnectBuilder::new("bob-2")).await;
    bob.sub_ok(1, "data/#", 1).await;
    let bob_reads = tokio::spawn(async move {
        let mut got = 0;
        while got < MESSAGES {
            match bob.recv(Duration::from_secs(20)).await {
                Some(Packet::Publish(m)) => {
                    got += 1;
                    if let Some(id) = m.packet_id {
                        bob.puback(id).await;
                    }
                }
                other => panic!("Bob expected PUBLISH, got {other:?} after {got}"),
            }
        }
        bob
    });

    let (mut publisher, _) = s.connect(&b, "pub", ConnectBuilder::new("pub-2")).await;
    let payload = vec![b'y'; PAYLOAD];
    publisher.publish_q1("data/1", &payload, false, 1).await;
    // In flight to Mallory, never acknowledged: the rest stays queued.
    let first = mallory.expect_publish().await;
    // 4 × 100 kB queued, under the bound; the 5th reaches it: congested.
    for i in 2..=5u16 {
        publisher
            .publish_q1(&format!("data/{i}"), &payload, false, i)
            .await;
    }
    publisher.publish("data/6", &payload, 1, false, 6).await;
    assert!(
        publisher.recv(Duration::from_millis(1500)).await.is_none(),
        "the PUBACK is held while the subscriber is congested at its byte bound"
    );
    // Released after the hold limit (5 s); then the queue drops its oldest.
    match publisher.recv(Duration::from_secs(8)).await {
        Some(Packet::PubAck(ack)) => assert_eq!(ack.packet_id, pid(6)),
        other => panic!("expected the held PUBACK, got {other:?}"),
    }
    for i in 7..=MESSAGES {
        publisher
            .publish_q1(&format!("data/{i}"), &payload, false, i)
            .await;
    }
    tokio::time::timeout(Duration::from_secs(30), bob_reads)
        .await
        .expect("Bob receives every message in time")
        .expect("Bob's reader");

    // Mallory reads now: at most 2 × 500 kB of the newest were kept for her.
    mallory.puback(first.packet_id.expect("QoS 1")).await;
    let mut topics = Vec::new();
    while let Some(packet) = mallory.recv(QUIET).await {
        let Packet::Publish(m) = packet else {
            panic!("expected PUBLISH, got {packet:?}");
        };
        topics.push(m.topic.clone());
        if let Some(id) = m.packet_id {
            mallory.puback(id).await;
        }
    }
    assert!(
        !topics.is_empty() && topics.len() <= 9,
        "at most 1 MB (9 messages) queued, got {topics:?}"
    );
    assert_eq!(topics.last().map(String::as_str), Some("data/20"));
    let metrics = scrape_metrics(&b).await;
    let dropped = sample(
        &metrics,
        "gatehouse_messages_dropped_total{reason=\"queue_full_oldest\"}",
    );
    assert_eq!(
        dropped,
        u64::from(MESSAGES) - 1 - topics.len() as u64,
        "{metrics}"
    );
}

/// `maxSessions`: Mallory connects again and again with fresh client ids and a session
/// expiry, leaving a session behind each time. Before the fix every one was kept. Now the
/// CONNECT that would create a session past the bound gets 0x97 Quota exceeded (3.1.1:
/// 0x03 Server unavailable), while Alice resumes her existing session, a client id with a
/// session can still be taken over or restarted with Clean Start, a session that ends
/// makes room, and a reload applies a new bound at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_are_bounded() {
    let s = X509Setup::new("sec-bnd-sessions");
    let b = s.start("maxSessions: 5").await;
    let persistent = |id: &str| {
        ConnectBuilder::new(id)
            .clean_start(false)
            .session_expiry(300)
    };

    let (alice, _) = s.connect(&b, "alice", persistent("alice-dev")).await;
    alice.disconnect().await;
    let mut refused = 0;
    for i in 0..20 {
        let (c, ack) = s
            .try_connect(&b, "mallory", persistent(&format!("junk-{i}")))
            .await;
        match connack_code(&ack) {
            0x00 => c.disconnect().await,
            0x97 => refused += 1,
            other => panic!("CONNACK {other:#04X} for junk-{i}"),
        }
    }
    assert_eq!(refused, 16, "4 sessions besides Alice's, then 0x97");
    assert_eq!(b.session_count(), 5);

    // 3.1.1: return code 3, Server unavailable.
    let (_, ack) = s
        .try_connect(
            &b,
            "bob",
            ConnectBuilder::v311("bob-311").clean_start(false),
        )
        .await;
    assert_eq!(ack, [0x20, 0x02, 0x00, 0x03]);

    // Resuming always works.
    let (mut alice, present) = s.connect(&b, "alice", persistent("alice-dev")).await;
    assert!(
        present,
        "Alice resumes her session while the broker is full"
    );
    // Taking over a connected session works too (the registry does not grow).
    let (mut alice2, present) = s.connect(&b, "alice", persistent("alice-dev")).await;
    assert!(present);
    alice.expect_disconnect(0x8E).await;
    alice2.ping().await;
    // Clean Start on an existing client id replaces its session.
    let (junk, present) = s
        .connect(
            &b,
            "mallory",
            ConnectBuilder::new("junk-0").session_expiry(300),
        )
        .await;
    assert!(!present);
    junk.disconnect().await;
    assert_eq!(b.session_count(), 5);

    // A session that ends makes room: Clean Start with expiry 0, then leave.
    let (junk, _) = s
        .connect(&b, "mallory", ConnectBuilder::new("junk-1"))
        .await;
    junk.disconnect().await;
    b.wait_session_count(4).await;
    let (bob, _) = s.connect(&b, "bob", ConnectBuilder::new("bob-new")).await;
    // Sessions with expiry 0 count while connected.
    let (_, ack) = s.try_connect(&b, "mallory", persistent("junk-x")).await;
    assert_eq!(connack_code(&ack), 0x97);
    bob.disconnect().await;

    b.wait_session_count(4).await;

    // A reload raises the bound at once.
    let loaded = gatehouse_config::load_str(&s.yaml("maxSessions: 6"), "reload.yaml")
        .expect("valid configuration");
    b.server.reloader().apply(loaded.config).expect("reload");
    for id in ["junk-y", "junk-z"] {
        let (c, _) = s.connect(&b, "mallory", persistent(id)).await;
        c.disconnect().await;
    }
    let (_, ack) = s.try_connect(&b, "mallory", persistent("junk-w")).await;
    assert_eq!(connack_code(&ack), 0x97);
    alice2.ping().await;
}

fn command(parts: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", parts.len()).into_bytes();
    for part in parts {
        out.extend_from_slice(format!("${}\r\n", part.len()).as_bytes());
        out.extend_from_slice(part);
        out.extend_from_slice(b"\r\n");
    }
    out
}

async fn keynotify(c: &mut StateStoreClient, key: &str, stop: bool) -> Vec<u8> {
    let cmd = if stop {
        command(&[b"KEYNOTIFY", key.as_bytes(), b"STOP"])
    } else {
        command(&[b"KEYNOTIFY", key.as_bytes()])
    };
    c.call(&cmd, &[]).await.payload.to_vec()
}

/// A state store client over TLS as `user` with client id `client_id`.
async fn state_store_client(
    s: &X509Setup,
    b: &TestBroker,
    user: &str,
    client_id: &str,
) -> StateStoreClient {
    let (raw, _) = s.connect(b, user, ConnectBuilder::new(client_id)).await;
    StateStoreClient::start_with(raw, client_id, false).await
}

/// `stateStoreMaxKeyNotifyPerClient`, with the default (1000): Mallory registers KEYNOTIFY
/// on key after key. Before the fix every registration was kept. Now the 1001st new key
/// gets `-ERR the quota has been exceeded`; a key she watches already still answers OK,
/// a STOP makes room, and Bob registers and is notified as usual.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keynotify_registrations_per_client_are_bounded() {
    let s = X509Setup::new("sec-bnd-keynotify");
    let b = s.start("").await;
    let mut mallory = state_store_client(&s, &b, "mallory", "mallory-ss").await;
    for i in 0..1000 {
        let reply = keynotify(&mut mallory, &format!("k/{i}"), false).await;
        assert_eq!(reply, b"+OK\r\n", "registration {i}");
    }
    assert_eq!(keynotify(&mut mallory, "k/1000", false).await, QUOTA);
    assert_eq!(keynotify(&mut mallory, "k/999", false).await, b"+OK\r\n");
    assert_eq!(keynotify(&mut mallory, "k/0", true).await, b"+OK\r\n");
    assert_eq!(keynotify(&mut mallory, "k/1000", false).await, b"+OK\r\n");
    assert_eq!(keynotify(&mut mallory, "k/1001", false).await, QUOTA);

    let mut bob = state_store_client(&s, &b, "bob", "bob-ss").await;
    assert_eq!(keynotify(&mut bob, "k/1001", false).await, b"+OK\r\n");
    let set = command(&[b"SET", b"k/1001", b"v"]);
    assert_eq!(&mallory.call(&set, &[]).await.payload[..], b"+OK\r\n");
    let n = bob.notification().await;
    assert!(n.payload.starts_with(b"*"), "{}", n.text());
    mallory.no_notification(QUIET).await;
}

/// A QoS 1 state store request with correlation data `corr`, DUP as given.
fn request(payload: &[u8], id: u16, response_topic: &str, corr: &[u8], dup: bool) -> Packet {
    Packet::Publish(Publish {
        dup,
        qos: QoS::AtLeastOnce,
        retain: false,
        topic: REQUEST_TOPIC.to_owned(),
        packet_id: Some(pid(id)),
        properties: PublishProperties {
            response_topic: Some(response_topic.to_owned()),
            correlation_data: Some(Bytes::copy_from_slice(corr)),
            user_properties: vec![("__ts".to_owned(), ts_now())],
            ..Default::default()
        },
        payload: Bytes::copy_from_slice(payload),
    })
}

/// The state store reply cache (answers remembered for retransmissions, statestore.md
/// §6.6) is bounded in bytes: Mallory GETs a 300 kB value ten times. Before the fix all
/// ten answers (up to 64 of them, 64 MB with 1 MB values) were remembered, so a
/// retransmission of the first GET was answered from the cache with the old value. Now
/// only the newest answers within 1 MiB are kept: the first GET, retransmitted after the
/// value changed, runs again and sees the new value, while the last one is still answered
/// from the cache.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_state_store_reply_cache_is_bounded_in_bytes() {
    let s = X509Setup::new("sec-bnd-replay");
    let b = s.start("").await;
    let mut mallory = state_store_client(&s, &b, "mallory", "mallory-rc").await;
    let big = vec![b'o'; 300_000];
    let set_old = command(&[b"SET", b"k/big", &big]);
    assert_eq!(&mallory.call(&set_old, &[]).await.payload[..], b"+OK\r\n");
    let get = command(&[b"GET", b"k/big"]);
    let topic = mallory.response_topic.clone();
    for i in 0..10u16 {
        let corr = format!("get-{i}");
        mallory
            .raw
            .send_packet(&request(&get, 100 + i, &topic, corr.as_bytes(), false))
            .await;
        let answer = mallory.await_response(100 + i, corr.as_bytes()).await;
        assert_eq!(answer.payload.len(), big.len() + 11, "GET {i}");
    }
    let set_new = command(&[b"SET", b"k/big", b"new"]);
    assert_eq!(&mallory.call(&set_new, &[]).await.payload[..], b"+OK\r\n");

    // The first GET, retransmitted: no longer remembered, so it runs again.
    mallory
        .raw
        .send_packet(&request(&get, 200, &topic, b"get-0", true))
        .await;
    let again = mallory.await_response(200, b"get-0").await;
    assert!(
        again.payload[..] == b"$3\r\nnew\r\n"[..],
        "answered again, not from a 3 MB cache: got {} bytes",
        again.payload.len()
    );
    // The newest is still answered from the cache (the old value).
    mallory
        .raw
        .send_packet(&request(&get, 201, &topic, b"get-9", true))
        .await;
    let cached = mallory.await_response(201, b"get-9").await;
    assert_eq!(cached.payload.len(), big.len() + 11, "still remembered");
}

/// The byte bound counts what a restart restored: a persistent session's queue holds
/// 1.5 MB when the broker is killed and restarted with `maxBytes: 1MB`; the restored
/// messages all come back, and a message published after the restart is not queued on
/// top of them (before the fix nothing bounded the bytes; a bound that started from
/// zero after a restart would have taken it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restored_queues_count_against_the_byte_bound() {
    use gatehouse_tests::broker::{free_port, BrokerProcess};
    const PAYLOAD: usize = 100_000;
    let dir = TempDir::new("sec-bnd-restore");
    let port = free_port();
    let config = |max_bytes: &str| {
        dir.write(
            "gatehouse.yaml",
            &format!(
                "
listeners:
  - name: main
    bindAddress: 127.0.0.1
    ports: [ {{ port: {port} }} ]
dataDir: {data}
broker: {{ subscriberQueueLimit: {{ maxBytes: {max_bytes} }} }}
diagnostics: {{ metrics: {{ prometheusPort: 0 }} }}
persistence:
  maxSize: 100M
  subscriberQueue: {{ mode: All }}
",
                data = dir.path().join("data").display()
            ),
        )
    };
    let connect = |id: &'static str, clean: bool| async move {
        let mut c = RawClient::connect(std::net::SocketAddr::from(([127, 0, 0, 1], port))).await;
        c.send(
            &ConnectBuilder::new(id)
                .clean_start(clean)
                .session_expiry(3600)
                .build(),
        )
        .await;
        let ack = c.expect_connack_ok().await;
        (c, ack.session_present)
    };

    let file = config("2MB");
    let mut broker = BrokerProcess::start(&file, port).await;
    let (mut hog, _) = connect("hog", true).await;
    hog.sub_ok(1, "q/#", 1).await;
    hog.disconnect().await;
    let (mut publisher, _) = connect("pub", true).await;
    let payload = vec![b'z'; PAYLOAD];
    for i in 1..=15u16 {
        publisher
            .publish_q1(&format!("q/{i:02}"), &payload, false, i)
            .await;
    }
    broker.signal("KILL");
    broker.exit_within(Duration::from_secs(5)).await;

    let file = config("1MB");
    let _broker = BrokerProcess::start(&file, port).await;
    let (mut publisher, _) = connect("pub", true).await;
    publisher.publish_q1("q/16", &payload, false, 16).await;
    let (mut hog, present) = connect("hog", false).await;
    assert!(present, "the session was restored");
    let mut topics = Vec::new();
    while let Some(packet) = hog.recv(QUIET).await {
        let Packet::Publish(m) = packet else {
            panic!("expected PUBLISH, got {packet:?}");
        };
        topics.push(m.topic.clone());
        if let Some(id) = m.packet_id {
            hog.puback(id).await;
        }
    }
    let expected: Vec<String> = (1..=15).map(|i| format!("q/{i:02}")).collect();
    assert_eq!(
        topics, expected,
        "the restored queue, and nothing on top of it"
    );
}
