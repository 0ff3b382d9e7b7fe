//! Persistence of sessions and retained messages across restarts of the real binary
//! (issue 7): a persistent session's subscriptions and the QoS 1 messages queued for it,
//! and retained messages, are there after a graceful restart and after `kill -9` (every
//! message the broker acknowledged); with persistence off they are not.

use std::time::Duration;

use gatehouse_tests::broker::{free_port, BrokerProcess, TempDir};
use gatehouse_tests::raw::{ConnectBuilder, RawClient};

fn config(dir: &TempDir, port: u16, persistence: &str) -> std::path::PathBuf {
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
{persistence}
",
            dir.path().join("data").display()
        ),
    )
}

const PERSIST_ALL: &str = "persistence:
  maxSize: 100M
  retain: { mode: All }
  subscriberQueue: { mode: All }";

async fn connect(broker: &BrokerProcess, id: &str, clean: bool) -> (RawClient, u8) {
    let mut c = RawClient::connect(broker.addr()).await;
    c.send(
        &ConnectBuilder::new(id)
            .clean_start(clean)
            .session_expiry(3600)
            .build(),
    )
    .await;
    let raw = c.recv_raw(Duration::from_secs(3)).await.expect("CONNACK");
    assert_eq!((raw[0], raw[3]), (0x20, 0x00), "CONNACK {raw:02X?}");
    (c, raw[2] & 1)
}

/// A subscriber with a persistent session on `q/#` goes away; five QoS 1 messages and a
/// retained one are published (and acknowledged) while it is gone.
async fn prepare(broker: &BrokerProcess) {
    let (mut sub, present) = connect(broker, "keeper", true).await;
    assert_eq!(present, 0);
    sub.sub_ok(1, "q/#", 1).await;
    sub.disconnect().await;
    let (mut publisher, _) = connect(broker, "publisher", true).await;
    for i in 1..=5u16 {
        publisher
            .publish_q1(&format!("q/{i}"), format!("m{i}").as_bytes(), false, i)
            .await;
    }
    publisher.publish_q1("r/t", b"kept", true, 9).await;
}

/// The session is back (session present), its queued messages arrive in order, and the
/// retained message is there for a new subscription.
async fn check_restored(broker: &BrokerProcess) {
    let (mut sub, present) = connect(broker, "keeper", false).await;
    assert_eq!(present, 1, "session present after the restart");
    for i in 1..=5 {
        let p = sub.expect_publish().await;
        assert_eq!(
            (p.topic.as_str(), &p.payload[..]),
            (format!("q/{i}").as_str(), format!("m{i}").as_bytes())
        );
        sub.puback(p.packet_id.expect("QoS 1")).await;
    }
    // The subscription itself survived: a new message reaches it.
    let (mut publisher, _) = connect(broker, "publisher2", true).await;
    publisher.publish_q1("q/6", b"m6", false, 1).await;
    let p = sub.expect_publish().await;
    assert_eq!(p.topic, "q/6");
    sub.puback(p.packet_id.expect("QoS 1")).await;
    let (mut reader, _) = connect(broker, "reader", true).await;
    reader.sub_ok(1, "r/#", 1).await;
    let p = reader.expect_publish().await;
    assert_eq!(
        (p.topic.as_str(), &p.payload[..], p.retain),
        ("r/t", &b"kept"[..], true)
    );
}

#[tokio::test]
async fn sessions_and_retained_messages_survive_a_graceful_restart() {
    let dir = TempDir::new("persist-graceful");
    let port = free_port();
    let file = config(&dir, port, PERSIST_ALL);
    let mut broker = BrokerProcess::start(&file, port).await;
    prepare(&broker).await;
    broker.signal("TERM");
    assert!(broker.exit_within(Duration::from_secs(8)).await.success());
    let broker = BrokerProcess::start(&file, port).await;
    check_restored(&broker).await;
}

#[tokio::test]
async fn acknowledged_messages_survive_kill_9() {
    let dir = TempDir::new("persist-kill");
    let port = free_port();
    let file = config(&dir, port, PERSIST_ALL);
    let mut broker = BrokerProcess::start(&file, port).await;
    prepare(&broker).await;
    // No grace: whatever was acknowledged must already be on disk.
    broker.signal("KILL");
    broker.exit_within(Duration::from_secs(5)).await;
    let broker = BrokerProcess::start(&file, port).await;
    check_restored(&broker).await;
}

#[tokio::test]
async fn an_unacknowledged_delivery_is_sent_again_after_kill_9() {
    let dir = TempDir::new("persist-inflight");
    let port = free_port();
    let file = config(&dir, port, PERSIST_ALL);
    let mut broker = BrokerProcess::start(&file, port).await;
    let (mut sub, _) = connect(&broker, "slow", true).await;
    sub.sub_ok(1, "in/#", 1).await;
    let (mut publisher, _) = connect(&broker, "pub", true).await;
    publisher.publish_q1("in/1", b"once", false, 1).await;
    let first = sub.expect_publish().await;
    assert_eq!(first.topic, "in/1");
    // Never acknowledged.
    broker.signal("KILL");
    broker.exit_within(Duration::from_secs(5)).await;
    let broker = BrokerProcess::start(&file, port).await;
    let (mut sub, present) = connect(&broker, "slow", false).await;
    assert_eq!(present, 1);
    let again = sub.expect_publish().await;
    assert_eq!(
        (again.topic.as_str(), &again.payload[..]),
        ("in/1", &b"once"[..])
    );
    sub.puback(again.packet_id.expect("QoS 1")).await;
    sub.ping().await;
}

#[tokio::test]
async fn without_persistence_nothing_survives() {
    let dir = TempDir::new("persist-off");
    let port = free_port();
    let file = config(&dir, port, "");
    let mut broker = BrokerProcess::start(&file, port).await;
    prepare(&broker).await;
    broker.signal("TERM");
    assert!(broker.exit_within(Duration::from_secs(8)).await.success());
    let broker = BrokerProcess::start(&file, port).await;
    let (mut sub, present) = connect(&broker, "keeper", false).await;
    assert_eq!(present, 0, "in-memory mode: no session after a restart");
    sub.expect_nothing(gatehouse_tests::raw::QUIET).await;
    let (mut reader, _) = connect(&broker, "reader", true).await;
    reader.sub_ok(1, "r/#", 1).await;
    reader.expect_nothing(gatehouse_tests::raw::QUIET).await;
}

#[tokio::test]
async fn a_retained_message_that_expired_while_down_does_not_come_back() {
    let dir = TempDir::new("persist-expired");
    let port = free_port();
    let file = config(&dir, port, PERSIST_ALL);
    let mut broker = BrokerProcess::start(&file, port).await;
    let (mut publisher, _) = connect(&broker, "publisher", true).await;
    let short = gatehouse_protocol::PublishProperties {
        message_expiry_interval: Some(1),
        ..Default::default()
    };
    publisher
        .publish_props("r/short", b"brief", 1, true, 1, short)
        .await;
    publisher.expect_raw(&[0x40, 0x02, 0x00, 0x01]).await;
    publisher.publish_q1("r/long", b"stays", true, 2).await;
    broker.signal("KILL");
    broker.exit_within(Duration::from_secs(5)).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let broker = BrokerProcess::start(&file, port).await;
    let (mut reader, _) = connect(&broker, "reader", true).await;
    reader.sub_ok(1, "r/#", 1).await;
    let p = reader.expect_publish().await;
    assert_eq!(
        (p.topic.as_str(), &p.payload[..]),
        ("r/long", &b"stays"[..])
    );
    reader.expect_nothing(gatehouse_tests::raw::QUIET).await;
}
