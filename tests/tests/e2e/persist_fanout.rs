//! Persisted fan-out (issue 14 item 5): a message queued for many offline persistent
//! sessions is stored once, not once per session, and every session still gets it exactly
//! once after a restart, also after another session acknowledged it.
//!
//! Against the real binary and its files: 200 persistent subscribers go offline, one
//! 256 KiB QoS 1 message is published to their topic, and `dataDir` (`gatehouse.redb` +
//! `journal.log`) grows by about one copy of it (before shared bodies: 200 copies, 51 MB).

use std::path::Path;
use std::time::Duration;

use gatehouse_tests::broker::{free_port, BrokerProcess, TempDir};
use gatehouse_tests::raw::{ConnectBuilder, RawClient, QUIET};

const SUBSCRIBERS: usize = 200;
const PAYLOAD: usize = 256 * 1024;

fn config(dir: &TempDir, port: u16) -> std::path::PathBuf {
    dir.write(
        "gatehouse.yaml",
        &format!(
            "
listeners:
  - name: main
    bindAddress: 127.0.0.1
    ports: [ {{ port: {port} }} ]
dataDir: {}
diagnostics: {{ metrics: {{ prometheusPort: 0 }} }}
persistence:
  maxSize: 1Gi
  subscriberQueue: {{ mode: All }}
",
            dir.path().join("data").display()
        ),
    )
}

async fn connect(broker: &BrokerProcess, id: &str, clean: bool) -> (RawClient, u8) {
    let mut c = RawClient::connect(broker.addr()).await;
    c.send(
        &ConnectBuilder::new(id)
            .clean_start(clean)
            .session_expiry(3600)
            .build(),
    )
    .await;
    let raw = c.recv_raw(Duration::from_secs(5)).await.expect("CONNACK");
    assert_eq!((raw[0], raw[3]), (0x20, 0x00), "CONNACK {raw:02X?}");
    (c, raw[2] & 1)
}

/// Bytes of the store: the database file and the journal log.
fn store_bytes(dir: &TempDir) -> u64 {
    let data = dir.path().join("data");
    ["gatehouse.redb", "journal.log"]
        .iter()
        .map(|f| std::fs::metadata(Path::new(&data).join(f)).map_or(0, |m| m.len()))
        .sum()
}

async fn stop(broker: &mut BrokerProcess) {
    broker.signal("TERM");
    assert!(broker.exit_within(Duration::from_secs(10)).await.success());
}

fn payload() -> Vec<u8> {
    (0..PAYLOAD).map(|i| (i % 251) as u8).collect()
}

/// Reconnect `id` and receive the message once (acknowledged).
async fn receive_once(broker: &BrokerProcess, id: &str) -> RawClient {
    let (mut c, present) = connect(broker, id, false).await;
    assert_eq!(present, 1, "{id}: session present after the restart");
    let p = c.expect_publish().await;
    assert_eq!(p.topic, "fan/big", "{id}");
    assert!(
        p.payload[..] == payload()[..],
        "{id}: the payload as published"
    );
    c.puback(p.packet_id.expect("QoS 1")).await;
    c
}

#[tokio::test]
async fn one_publish_to_200_offline_sessions_is_stored_once_and_delivered_once_each() {
    let dir = TempDir::new("persist-fanout");
    let port = free_port();
    let file = config(&dir, port);
    let ids: Vec<String> = (0..SUBSCRIBERS).map(|i| format!("fan-{i}")).collect();

    // 200 persistent sessions subscribed at QoS 1, all offline.
    let mut broker = BrokerProcess::start(&file, port).await;
    for id in &ids {
        let (mut c, _) = connect(&broker, id, true).await;
        c.sub_ok(1, "fan/#", 1).await;
        c.disconnect().await;
    }
    stop(&mut broker).await;
    let before = store_bytes(&dir);

    // One 256 KiB publish to all of them (acknowledged: it is in the journal).
    let mut broker = BrokerProcess::start(&file, port).await;
    let (mut publisher, _) = connect(&broker, "fan-publisher", true).await;
    publisher.publish_q1("fan/big", &payload(), false, 1).await;
    publisher.disconnect().await;
    stop(&mut broker).await;
    let grown = store_bytes(&dir).saturating_sub(before);
    eprintln!("store: {before} bytes with the sessions, grew by {grown} with the message");
    // About one copy: the body, 200 small delivery records and the database's own
    // overhead; 200 copies would be 51 MB.
    assert!(
        grown < 4 * PAYLOAD as u64,
        "the store grew by {grown} bytes for one {PAYLOAD}-byte message to {SUBSCRIBERS} sessions"
    );

    // One subscriber acknowledges it; the others' deliveries keep the body.
    let broker = BrokerProcess::start(&file, port).await;
    let first = receive_once(&broker, &ids[0]).await;
    first.disconnect().await;
    let mut broker = broker;
    stop(&mut broker).await;

    // After another restart every other subscriber gets it exactly once, the first none.
    let mut broker = BrokerProcess::start(&file, port).await;
    let (mut first, present) = connect(&broker, &ids[0], false).await;
    assert_eq!(present, 1);
    first.expect_nothing(QUIET).await;
    first.disconnect().await;
    let mut clients = tokio::task::JoinSet::new();
    for id in &ids[1..] {
        let c = receive_once(&broker, id).await;
        clients.spawn(async move {
            let mut c = c;
            // Nothing more: not a second copy.
            c.expect_nothing(QUIET).await;
            c.disconnect().await;
        });
    }
    while let Some(done) = clients.join_next().await {
        done.unwrap();
    }
    stop(&mut broker).await;
}
