//! `broker:` limits seen from the network: the connection cap and the connect deadline.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use gatehouse_tests::broker::{unique, TestBroker};
use gatehouse_tests::handmade::{self, PacketReader, Read, CONNACK};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

type Client = PacketReader<TcpStream>;

/// Open a TCP connection and send a v5 CONNECT (the broker may not read it yet).
async fn connect_and_send(addr: SocketAddr) -> Client {
    let mut stream = TcpStream::connect(addr).await.expect("TCP connect");
    stream
        .write_all(&handmade::connect_v5(&unique("cap")))
        .await
        .expect("write CONNECT");
    PacketReader::new(stream)
}

async fn expect_connack(client: &mut Client, within: Duration, what: &str) {
    match client.read(within).await {
        Read::Packet(p) if p.first == CONNACK => {
            assert_eq!(p.connack_code(), 0, "{what}: CONNACK reason code")
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
    match third.read(Duration::from_secs(1)).await {
        Read::TimedOut => {}
        other => panic!("a third client was answered while two are connected: {other:?}"),
    }

    first
        .inner
        .write_all(&handmade::disconnect_v5())
        .await
        .expect("write DISCONNECT");
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
        let mut silent = PacketReader::new(TcpStream::connect(addr).await.expect("connect"));
        match silent.read(Duration::from_millis(600)).await {
            Read::TimedOut => {}
            other => panic!("{what}: closed before the connect deadline: {other:?}"),
        }
        match silent.read(Duration::from_secs(3)).await {
            Read::Closed => {}
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
    match client.read(Duration::from_millis(1500)).await {
        Read::TimedOut => {}
        other => panic!("a connected client was disturbed after the deadline: {other:?}"),
    }
}
