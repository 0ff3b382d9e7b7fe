//! Graceful shutdown of the real binary (issue 7): on SIGTERM and SIGINT, v5 clients get
//! DISCONNECT 0x8B, 3.1.1 clients a closed connection, no will is published, and the
//! process exits 0 in time.

use std::time::{Duration, Instant};

use gatehouse_tests::broker::{free_port, BrokerProcess, TempDir};
use gatehouse_tests::raw::{ConnectBuilder, RawClient, WillSpec};

async fn start(dir: &TempDir) -> BrokerProcess {
    let port = free_port();
    let config = dir.write(
        "gatehouse.yaml",
        &format!(
            "listeners:\n  - name: main\n    bindAddress: 127.0.0.1\n    ports: [ {{ port: {port} }} ]\ndataDir: {}\ndiagnostics: {{ metrics: {{ prometheusPort: 0 }} }}\n",
            dir.path().join("data").display()
        ),
    );
    BrokerProcess::start(&config, port).await
}

async fn shuts_down_on(signal: &str) {
    let dir = TempDir::new("shutdown");
    let mut broker = start(&dir).await;
    let mut v5 = RawClient::connect(broker.addr()).await;
    v5.send(&ConnectBuilder::new("v5-client").build()).await;
    v5.expect_connack_ok().await;
    let mut watcher = RawClient::connect(broker.addr()).await;
    watcher.send(&ConnectBuilder::new("watcher").build()).await;
    watcher.expect_connack_ok().await;
    watcher.sub_ok(1, "wills/#", 1).await;
    let mut v3 = RawClient::connect(broker.addr()).await;
    v3.send(
        &ConnectBuilder::v311("v3-client")
            .will(WillSpec::new("wills/v3", b"gone"))
            .build(),
    )
    .await;
    assert_eq!(
        v3.recv_raw(Duration::from_secs(3)).await,
        Some(vec![0x20, 0x02, 0x00, 0x00])
    );

    let started = Instant::now();
    broker.signal(signal);
    v5.expect_disconnect(0x8B).await;
    // The watcher is sent away too, without first receiving the 3.1.1 client's will.
    watcher.expect_disconnect(0x8B).await;
    v3.expect_closed(Duration::from_secs(3)).await;
    let status = broker.exit_within(Duration::from_secs(8)).await;
    assert!(
        status.success(),
        "exit status {status}; log:\n{}",
        broker.log_text()
    );
    let took = started.elapsed();
    assert!(took < Duration::from_secs(6), "shutdown took {took:?}");
    assert!(
        broker.log_text().contains("shutting down"),
        "{}",
        broker.log_text()
    );
    // Nothing listens any more.
    assert!(tokio::net::TcpStream::connect(broker.addr()).await.is_err());
}

#[tokio::test]
async fn sigterm_disconnects_clients_with_0x8b_and_exits() {
    shuts_down_on("TERM").await;
}

#[tokio::test]
async fn sigint_does_the_same() {
    shuts_down_on("INT").await;
}
