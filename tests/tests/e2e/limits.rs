//! `broker:` limits seen from the network: the connection cap and the connect deadline.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use gatehouse_tests::broker::{unique, TestBroker};
use gatehouse_tests::raw::{connack_code, ConnectBuilder, Event, RawClient};

/// Open a TCP connection and send a v5 CONNECT (the broker may not read it yet).
async fn connect_and_send(addr: SocketAddr) -> RawClient {
    let mut client = RawClient::connect(addr).await;
    client
        .write(&ConnectBuilder::new(&unique("cap")).build())
        .await
        .expect("write CONNECT");
    client
}

async fn expect_connack(client: &mut RawClient, within: Duration, what: &str) {
    match client.next_event(within).await {
        Event::Frame(p) if p[0] == 0x20 => {
            assert_eq!(connack_code(&p), 0, "{what}: CONNACK reason code")
        }
        other => panic!("{what}: expected CONNACK, got {other:?}"),
    }
}

/// `maxConnections: 2`: a third client is not served while two are connected, and is
/// served as soon as one of them leaves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_cap_holds_back_extra_clients() {
    let broker = TestBroker::start(
        "
listeners:
  - name: capped
    bindAddress: 127.0.0.1
    ports:
      - port: 0
broker:
  maxConnections: 2
",
    )
    .await;
    let addr = broker.mqtt_addr();
    let mut first = connect_and_send(addr).await;
    expect_connack(&mut first, Duration::from_secs(5), "first client").await;
    let mut second = connect_and_send(addr).await;
    expect_connack(&mut second, Duration::from_secs(5), "second client").await;

    let mut third = connect_and_send(addr).await;
    match third.next_event(Duration::from_secs(1)).await {
        Event::Timeout => {}
        other => panic!("a third client was answered while two are connected: {other:?}"),
    }

    first.write(&[0xE0, 0x00]).await.expect("write DISCONNECT");
    drop(first);
    expect_connack(
        &mut third,
        Duration::from_secs(5),
        "third client after one left",
    )
    .await;
    drop(second); // held until here: two clients were connected throughout
}

/// The cap counts connections, not listening sockets: with a second (idle) port, two
/// clients on the first port are still both served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_cap_is_not_used_up_by_idle_ports() {
    let broker = TestBroker::start(
        "
listeners:
  - name: capped
    bindAddress: 127.0.0.1
    ports:
      - port: 0
      - port: 0
        protocol: WebSockets
broker:
  maxConnections: 2
",
    )
    .await;
    let addr = broker.mqtt_addr();
    let mut first = connect_and_send(addr).await;
    expect_connack(&mut first, Duration::from_secs(5), "first client").await;
    let mut second = connect_and_send(addr).await;
    expect_connack(
        &mut second,
        Duration::from_secs(3),
        "second client of two allowed (maxConnections: 2, the WebSockets port is idle)",
    )
    .await;
}

/// `connectTimeout`: a client that connects and sends nothing is closed at the deadline,
/// not before; one that sent CONNECT in time is not closed by it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_deadline_closes_silent_clients() {
    let broker = TestBroker::start(
        "
listeners:
  - name: deadline
    bindAddress: 127.0.0.1
    ports:
      - port: 0
      - port: 0
        protocol: WebSockets
broker:
  connectTimeout: 1s
",
    )
    .await;

    for (what, addr) in [
        ("MQTT port", broker.mqtt_addr()),
        ("WebSockets port (no upgrade request)", broker.ws_addr()),
    ] {
        let start = Instant::now();
        let mut silent = RawClient::connect(addr).await;
        match silent.next_event(Duration::from_millis(600)).await {
            Event::Timeout => {}
            other => panic!("{what}: closed before the connect deadline: {other:?}"),
        }
        match silent.next_event(Duration::from_secs(3)).await {
            Event::Closed => {}
            other => panic!("{what}: a silent client was not closed at the deadline: {other:?}"),
        }
        let elapsed = start.elapsed();
        assert!(
            elapsed >= Duration::from_millis(900),
            "{what}: closed after {elapsed:?}, before the 1 s deadline"
        );
    }

    // CONNECT in time: the deadline no longer applies.
    let mut client = connect_and_send(broker.mqtt_addr()).await;
    expect_connack(&mut client, Duration::from_secs(3), "prompt client").await;
    match client.next_event(Duration::from_millis(1500)).await {
        Event::Timeout => {}
        other => panic!("a connected client was disturbed after the deadline: {other:?}"),
    }
}
