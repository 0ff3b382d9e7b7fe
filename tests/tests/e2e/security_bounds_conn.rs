//! Connection-level resource bounds (issue 13, security.md invariant 6), each attacked
//! over real sockets: a lowered `maxConnections` at runtime, Receive Maximum for QoS 1
//! (v5: DISCONNECT 0x93; 3.1.1: backpressure), the WebSocket message limit, and the
//! pre-CONNECT budget that keeps silent sockets (plain or after a TLS handshake) from
//! locking real clients out. The QoS 1 flood also runs over a TLS port with X.509 client
//! certificates made in the test (`bounds_transport`).

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use gatehouse_config::PrivateKeyAlgorithm;
use gatehouse_tests::broker::{unique, TempDir, TestBroker};
use gatehouse_tests::raw::{
    connack_code, frame_body, publish_bytes, split_frame, ConnectBuilder, Event, Props,
    ProtocolBroker, RawClient, QUIET, WAIT,
};
use gatehouse_tests::tls::{connect as tls_connect, Pki};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::MaybeTlsStream;

use crate::bounds_transport::{BoundsBroker, Transport};

/// `broker.maxConnections` etc. on one plain MQTT port (and a WebSockets one).
fn yaml(broker: &str) -> String {
    format!(
        "
listeners:
  - name: bounds
    bindAddress: 127.0.0.1
    ports:
      - port: 0
      - port: 0
        protocol: WebSockets
broker: {{ {broker} }}
diagnostics: {{ metrics: {{ prometheusPort: 0 }} }}
"
    )
}

/// A TCP connection that has sent CONNECT (the broker may not serve it yet).
async fn connecting(addr: SocketAddr) -> RawClient {
    let mut c = RawClient::connect(addr).await;
    c.write(&ConnectBuilder::new(&unique("bounds")).build())
        .await
        .expect("write CONNECT");
    c
}

/// CONNACK 0x00 within `within`.
async fn expect_connack(c: &mut RawClient, within: Duration, what: &str) {
    match c.next_event(within).await {
        Event::Frame(p) if p[0] == 0x20 => assert_eq!(connack_code(&p), 0, "{what}"),
        other => panic!("{what}: expected CONNACK within {within:?}, got {other:?}"),
    }
}

/// No answer (and no close) for `within`: the client waits for a connection permit.
async fn expect_waiting(c: &mut RawClient, within: Duration, what: &str) {
    match c.next_event(within).await {
        Event::Timeout => {}
        other => panic!("{what}: expected no answer, got {other:?}"),
    }
}

async fn reload(broker: &TestBroker, yaml: &str) {
    let loaded = gatehouse_config::load_str(yaml, "reload.yaml").expect("valid config");
    let done = broker
        .server
        .reloader()
        .apply(loaded.config)
        .expect("reload");
    assert!(done.limits);
    assert_eq!(done.disconnected, 0);
}

/// A TCP connection from `source` (another loopback address) to `addr`.
async fn connect_from(source: IpAddr, addr: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().expect("socket");
    socket
        .bind(SocketAddr::new(source, 0))
        .expect("bind a second loopback address");
    socket.connect(addr).await.expect("TCP connect")
}

// ---------------------------------------------------------------------------------------
// maxConnections lowered at runtime
// ---------------------------------------------------------------------------------------

/// Lowering `maxConnections` from 4 to 2 with 4 clients connected: they all carry on, but
/// the permits of the two that leave first are retired, not returned, so a newcomer still
/// waits; raising it to 3 then admits exactly one more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lowering_max_connections_at_runtime_holds_and_raising_restores_exactly() {
    let broker = TestBroker::start(&yaml("maxConnections: 4")).await;
    let addr = broker.mqtt_addr();
    let mut clients = Vec::new();
    for i in 0..4 {
        let mut c = connecting(addr).await;
        expect_connack(&mut c, WAIT, &format!("client {i} of 4")).await;
        clients.push(c);
    }
    reload(&broker, &yaml("maxConnections: 2")).await;
    // Connections above the lowered limit finish normally.
    for c in &mut clients {
        c.ping().await;
    }
    // Two leave: 2 remain, which is the new limit: a newcomer waits.
    for mut c in clients.drain(..2) {
        c.write(&[0xE0, 0x00]).await.expect("DISCONNECT");
        c.expect_closed(WAIT).await;
    }
    let mut newcomer = connecting(addr).await;
    expect_waiting(
        &mut newcomer,
        Duration::from_secs(1),
        "a newcomer while 2 of a lowered limit of 2 are connected",
    )
    .await;
    // One more leaves: the newcomer takes its place.
    let mut c = clients.remove(0);
    c.write(&[0xE0, 0x00]).await.expect("DISCONNECT");
    c.expect_closed(WAIT).await;
    expect_connack(&mut newcomer, WAIT, "the newcomer once one left").await;
    let mut third = connecting(addr).await;
    expect_waiting(
        &mut third,
        Duration::from_secs(1),
        "a third at the limit of 2",
    )
    .await;
    // Raised to 3: exactly one more.
    reload(&broker, &yaml("maxConnections: 3")).await;
    expect_connack(&mut third, WAIT, "a third under the raised limit of 3").await;
    let mut fourth = connecting(addr).await;
    expect_waiting(
        &mut fourth,
        Duration::from_secs(1),
        "a fourth at the limit of 3",
    )
    .await;
    assert_eq!(
        broker.server.open_connections(),
        3,
        "3 served (the fourth waits without a permit)"
    );
    drop((clients, newcomer, third));
}

/// Shutdown reports "drained" only when no connection is left, not when as many permits
/// as the (lowered) cap came back: two silent sockets are still open after the connected
/// clients were sent away, so shutdown waits for them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_is_drained_only_when_every_connection_is_gone() {
    let broker = TestBroker::start(&yaml("maxConnections: 4")).await;
    let addr = broker.mqtt_addr();
    let mut connected = Vec::new();
    for i in 0..2 {
        let mut c = connecting(addr).await;
        expect_connack(&mut c, WAIT, &format!("client {i}")).await;
        connected.push(c);
    }
    let silent = [
        TcpStream::connect(addr).await.expect("connect"),
        TcpStream::connect(addr).await.expect("connect"),
    ];
    // Wait until the broker holds all four.
    let until = Instant::now() + WAIT;
    while broker.server.open_connections() < 4 {
        assert!(
            Instant::now() < until,
            "the broker did not accept 4 sockets"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    reload(&broker, &yaml("maxConnections: 2")).await;
    let TestBroker { server, .. } = broker;
    let shutdown = tokio::spawn(server.shutdown(Duration::from_secs(5)));
    for mut c in connected {
        c.expect_disconnect(0x8B).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !shutdown.is_finished(),
        "shutdown finished while two connections were still open"
    );
    drop(silent);
    let done = tokio::time::timeout(WAIT, shutdown)
        .await
        .expect("shutdown ends once the last connections close")
        .expect("shutdown task");
    assert!(
        done.drained,
        "every connection ended within the grace period"
    );
}

// ---------------------------------------------------------------------------------------
// Receive Maximum for QoS 1
// ---------------------------------------------------------------------------------------

/// A congested subscriber makes the broker hold its publishers' PUBACKs. A v5 publisher
/// that ignores our Receive Maximum (4) and floods QoS 1 gets DISCONNECT 0x93 instead of
/// growing the held-acknowledgement queue; the subscriber is not affected.
async fn a_qos1_flood_past_receive_maximum_over(t: Transport) {
    let b = BoundsBroker::start(
        t,
        "bounds-rm",
        "subscriberQueueLimit: { length: 2 }, maxReceiveMaximum: 4",
    )
    .await;
    let (mut sub, _) = b
        .v5_with(ConnectBuilder::new("bounds-rm-sub").receive_maximum(1))
        .await;
    sub.sub_ok(1, "bounds/rm", 1).await;
    let (mut flood, ack) = b.v5_with(ConnectBuilder::new("bounds-rm-pub")).await;
    assert_eq!(ack.properties.receive_maximum, Some(4));
    let mut burst = Vec::new();
    for id in 1..=200u16 {
        burst.extend(publish_bytes(
            0x02,
            b"bounds/rm",
            Some(id),
            Some(&Props::new()),
            b"x",
        ));
    }
    flood.send(&burst).await;
    let mut pubacks = 0;
    loop {
        match flood.next_event(WAIT).await {
            Event::Frame(f) if f[0] == 0x40 => pubacks += 1,
            Event::Frame(f) if f[0] == 0xE0 => {
                assert_eq!(frame_body(&f).first(), Some(&0x93), "DISCONNECT {f:02X?}");
                break;
            }
            other => panic!(
                "expected PUBACKs then DISCONNECT 0x93, got {other:?} after {pubacks} PUBACKs"
            ),
        }
    }
    assert!(pubacks < 10, "{pubacks} PUBACKs before the disconnect");
    flood.expect_closed(WAIT).await;
    // The subscriber is still served.
    let p = sub.expect_publish().await;
    assert_eq!(&p.payload[..], b"x");
    sub.ping().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_qos1_flood_past_receive_maximum_gets_0x93() {
    a_qos1_flood_past_receive_maximum_over(Transport::Tcp).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_qos1_flood_past_receive_maximum_gets_0x93_over_tls() {
    a_qos1_flood_past_receive_maximum_over(Transport::Tls).await;
}

/// A 3.1.1 client cannot be told a Receive Maximum: its QoS 1 flood to a congested
/// subscriber is paced by not reading it while the held PUBACKs reach our Receive
/// Maximum, so the broker does not take in (and drop) more than the subscriber's queue
/// holds: every message arrives, in order, and every PUBACK follows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_v311_qos1_flood_is_paced_by_backpressure_and_loses_nothing() {
    const N: u16 = 60;
    // The queue's slack above `length` (another `length` for QoS 1) covers a window of 4.
    let b =
        ProtocolBroker::with_limits("subscriberQueueLimit: { length: 5 }, maxReceiveMaximum: 4")
            .await;
    let (mut sub, _) = b
        .v5_with(ConnectBuilder::new("bounds-v3-sub").receive_maximum(1))
        .await;
    sub.sub_ok(1, "bounds/v3", 1).await;
    let mut flood = b.v311("bounds-v3-pub").await;
    let mut burst = Vec::new();
    for id in 1..=N {
        burst.extend(publish_bytes(
            0x02,
            b"bounds/v3",
            Some(id),
            None,
            format!("m{id}").as_bytes(),
        ));
    }
    flood.send(&burst).await;
    // Let the broker take in what it will before the subscriber starts reading.
    tokio::time::sleep(QUIET).await;
    for i in 1..=N {
        let p = sub.expect_publish().await;
        assert_eq!(
            p.payload,
            format!("m{i}").as_bytes(),
            "message {i} (a flood that was read at once overflows the subscriber's queue)"
        );
        sub.puback(p.packet_id.expect("QoS 1")).await;
    }
    let mut order = Vec::new();
    while order.len() < usize::from(N) {
        match flood.next_event(WAIT).await {
            Event::Frame(f) if f[0] == 0x40 => {
                order.push(u16::from_be_bytes([f[2], f[3]]));
            }
            other => panic!("expected PUBACK, got {other:?} after {}", order.len()),
        }
    }
    assert_eq!(order, (1..=N).collect::<Vec<_>>());
}

/// While a 3.1.1 client is not read because its window is full, its keep alive does not
/// run out (the silence is ours): with keep alive 1 s and a subscriber that never reads,
/// the publisher stays connected through the 5 s hold and then gets every PUBACK.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_v311_client_is_not_timed_out_by_its_keep_alive() {
    const N: u16 = 20;
    let b =
        ProtocolBroker::with_limits("subscriberQueueLimit: { length: 2 }, maxReceiveMaximum: 4")
            .await;
    let (mut sub, _) = b
        .v5_with(ConnectBuilder::new("bounds-ka-sub").receive_maximum(1))
        .await;
    sub.sub_ok(1, "bounds/ka", 1).await;
    let mut flood = b
        .sending(&ConnectBuilder::v311("bounds-ka-pub").keep_alive(1).build())
        .await;
    assert_eq!(
        flood.recv_raw(WAIT).await,
        Some(vec![0x20, 0x02, 0x00, 0x00])
    );
    let mut burst = Vec::new();
    for id in 1..=N {
        burst.extend(publish_bytes(0x02, b"bounds/ka", Some(id), None, b"x"));
    }
    flood.send(&burst).await;
    let mut acked = Vec::new();
    let started = Instant::now();
    while acked.len() < usize::from(N) {
        assert!(
            started.elapsed() < Duration::from_secs(12),
            "{} PUBACKs after {:?}",
            acked.len(),
            started.elapsed()
        );
        flood.send(&[0xC0, 0x00]).await; // PINGREQ, as a client keeps doing
        loop {
            match flood.next_event(Duration::from_millis(500)).await {
                Event::Frame(f) if f[0] == 0x40 => acked.push(u16::from_be_bytes([f[2], f[3]])),
                Event::Frame(f) if f[0] == 0xD0 => {}
                Event::Frame(f) => panic!("unexpected {f:02X?}"),
                Event::Timeout => break,
                Event::Closed => panic!(
                    "the paused client was closed after {:?} with {} PUBACKs",
                    started.elapsed(),
                    acked.len()
                ),
            }
        }
    }
    assert_eq!(acked, (1..=N).collect::<Vec<_>>());
    drop(sub);
}

// ---------------------------------------------------------------------------------------
// WebSocket message size
// ---------------------------------------------------------------------------------------

async fn ws_client(
    addr: SocketAddr,
) -> tokio_tungstenite::WebSocketStream<MaybeTlsStream<TcpStream>> {
    let mut request = format!("ws://{addr}/").into_client_request().expect("URL");
    request
        .headers_mut()
        .insert("Sec-WebSocket-Protocol", HeaderValue::from_static("mqtt"));
    let (mut ws, _) = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(request))
        .await
        .expect("handshake in time")
        .expect("WebSocket handshake");
    ws.send(Message::Binary(
        ConnectBuilder::new(&unique("bounds-ws")).build().into(),
    ))
    .await
    .expect("send CONNECT");
    let mut buf = bytes::BytesMut::new();
    loop {
        if let Some(p) = split_frame(&mut buf) {
            assert_eq!(connack_code(&p), 0, "CONNACK over WebSockets");
            break;
        }
        match tokio::time::timeout(WAIT, ws.next()).await {
            Ok(Some(Ok(Message::Binary(d)))) => buf.extend_from_slice(&d),
            other => panic!("expected CONNACK, got {other:?}"),
        }
    }
    ws
}

/// A WebSocket message larger than `maxPacketSizeBytes` (plus a small allowance) is
/// refused with close code 1009 rather than buffered and handed to MQTT; other clients
/// carry on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_message_above_max_packet_size_is_refused_with_1009() {
    let broker = TestBroker::start(&yaml("maxPacketSizeBytes: 1024")).await;
    let mut bystander = connecting(broker.mqtt_addr()).await;
    expect_connack(&mut bystander, WAIT, "bystander").await;
    let mut ws = ws_client(broker.ws_addr()).await;
    // A PUBLISH of 64 KiB in one message.
    let big = publish_bytes(0x00, b"bounds/ws", None, Some(&Props::new()), &[7u8; 65536]);
    let _ = ws.send(Message::Binary(big.into())).await;
    let code = loop {
        match tokio::time::timeout(WAIT, ws.next()).await {
            Ok(Some(Ok(Message::Close(Some(frame))))) => break Some(frame.code),
            Ok(Some(Ok(Message::Binary(d)))) => {
                panic!("the broker read the message as MQTT and answered {d:02X?}")
            }
            Ok(Some(Ok(Message::Close(None)))) | Ok(Some(Err(_))) | Ok(None) => break None,
            Ok(Some(Ok(_))) => {}
            Err(_) => panic!("the connection is still open"),
        }
    };
    assert_eq!(code, Some(CloseCode::Size), "close code 1009");
    bystander.ping().await;
}

/// A frame header announcing a 12 MiB message gets the connection closed right after the
/// header, before its payload is read (the library defaults would read and buffer a
/// frame of up to 16 MiB, a message of up to 64 MiB, before MQTT sees a byte of it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_websocket_frame_is_refused_from_its_header() {
    let broker = TestBroker::start(&yaml("maxPacketSizeBytes: 1024")).await;
    let ws = ws_client(broker.ws_addr()).await;
    let MaybeTlsStream::Plain(mut tcp) = ws.into_inner() else {
        panic!("plain TCP")
    };
    // FIN + binary, masked, 64-bit length: 12 MiB; mask key 0.
    let mut header = vec![0x82, 0x80 | 127];
    header.extend((12u64 << 20).to_be_bytes());
    header.extend([0, 0, 0, 0]);
    tcp.write_all(&header).await.expect("frame header");
    let started = Instant::now();
    let chunk = vec![0u8; 64 * 1024];
    let mut sent = 0usize;
    let mut reply = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    let (mut rd, mut wr) = tcp.split();
    let closed = loop {
        // Keep sending payload while watching for the broker's answer.
        tokio::select! {
            r = rd.read_buf(&mut reply) => match r {
                Ok(0) | Err(_) => break true,
                Ok(_) => {}
            },
            w = wr.write_all(&chunk), if sent < 4 << 20 => match w {
                Ok(()) => sent += chunk.len(),
                Err(_) => break true,
            },
            _ = tokio::time::sleep_until(deadline) => break false,
        }
    };
    assert!(
        closed,
        "still open after {sent} bytes of payload and {:?}",
        started.elapsed()
    );
    assert!(
        sent < 4 << 20,
        "the broker read {sent} bytes of an oversized frame before closing"
    );
    if reply.len() >= 4 {
        assert_eq!(reply[0], 0x88, "a Close frame: {:02X?}", &reply[..4]);
        assert_eq!(&reply[2..4], &1009u16.to_be_bytes(), "close code 1009");
    }
    // Others are served.
    let mut other = connecting(broker.mqtt_addr()).await;
    expect_connack(&mut other, WAIT, "another client").await;
}

// ---------------------------------------------------------------------------------------
// Pre-CONNECT budget
// ---------------------------------------------------------------------------------------

/// The attack: 50 sockets that never send CONNECT against `maxConnections: 50`.
/// A real client is still served within moments (the oldest silent socket is closed to
/// make room), not after the connect deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_sockets_do_not_lock_out_real_clients() {
    let broker = TestBroker::start(&yaml("maxConnections: 50, connectTimeout: 20s")).await;
    let addr = broker.mqtt_addr();
    let mut silent = Vec::new();
    for _ in 0..50 {
        silent.push(RawClient::connect(addr).await);
    }
    // Pending connections younger than a second are never closed for a newcomer.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let started = Instant::now();
    let mut real = connecting(addr).await;
    expect_connack(
        &mut real,
        Duration::from_secs(2),
        "a real client behind 50 silent sockets",
    )
    .await;
    assert!(started.elapsed() < Duration::from_secs(2));
    // The oldest silent socket made room.
    silent[0].expect_closed(WAIT).await;
    real.ping().await;
}

/// `maxPendingConnections: 5`: a sixth socket while five young ones are pending is closed
/// at once; once they are a second old, a real client displaces the oldest and gets its
/// CONNACK promptly. Connected clients never count as pending.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pending_budget_closes_the_newest_or_the_oldest_pending_socket() {
    let broker = TestBroker::start(&yaml(
        "maxConnections: 50, maxPendingConnections: 5, connectTimeout: 20s",
    ))
    .await;
    let addr = broker.mqtt_addr();
    let mut connected = Vec::new();
    for i in 0..8 {
        let mut c = connecting(addr).await;
        expect_connack(&mut c, WAIT, &format!("connected client {i}")).await;
        connected.push(c);
    }
    let mut silent = Vec::new();
    for _ in 0..5 {
        silent.push(RawClient::connect(addr).await);
    }
    let mut sixth = RawClient::connect(addr).await;
    sixth.expect_closed(Duration::from_millis(800)).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let mut real = connecting(addr).await;
    expect_connack(
        &mut real,
        WAIT,
        "a real client once the pending sockets are old",
    )
    .await;
    silent[0].expect_closed(WAIT).await;
    for s in &mut silent[1..] {
        s.expect_nothing(QUIET).await;
    }
    for c in &mut connected {
        c.ping().await;
    }
}

/// `maxPendingConnectionsPerAddress: 3`: one address filling `maxConnections: 8` with
/// silent sockets gets only three of them pending (the others are closed at once), so a
/// client from another address is served at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_cannot_take_the_whole_pending_budget() {
    let broker = TestBroker::start(&yaml(
        "maxConnections: 8, maxPendingConnectionsPerAddress: 3, connectTimeout: 20s",
    ))
    .await;
    let addr = broker.mqtt_addr();
    let mut silent = Vec::new();
    for _ in 0..8 {
        silent.push(RawClient::connect(addr).await);
    }
    for s in &mut silent[3..] {
        s.expect_closed(Duration::from_millis(800)).await;
    }
    let other: IpAddr = "127.0.0.2".parse().expect("IP");
    let mut real = RawClient::over(connect_from(other, addr).await);
    real.write(&ConnectBuilder::new(&unique("bounds-other")).build())
        .await
        .expect("CONNECT");
    expect_connack(
        &mut real,
        Duration::from_secs(1),
        "a client from another address",
    )
    .await;
    for s in &mut silent[..3] {
        s.expect_nothing(QUIET).await;
    }
}

/// TLS handshakes count as pending too: sockets that complete a TLS handshake and then
/// stay silent fill `maxConnections: 4` on a TLS port, and a real TLS client is still
/// served promptly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_tls_sessions_do_not_lock_out_real_clients() {
    const EC: PrivateKeyAlgorithm = PrivateKeyAlgorithm::Ec256;
    let dir = TempDir::new("bounds-tls");
    let pki = Pki::new(dir.path(), EC);
    let (crt, key) = pki.write_server(&pki.server(EC), "server");
    let broker = TestBroker::start(&format!(
        "
dataDir: {data}
listeners:
  - name: tls
    bindAddress: 127.0.0.1
    ports:
      - port: 0
        tls: {{ mode: Manual, manual: {{ secretRef: server-cert }} }}
secrets:
  server-cert: {{ certFile: {crt}, keyFile: {key} }}
broker: {{ maxConnections: 4, connectTimeout: 20s }}
",
        data = dir.path().join("data").display(),
        crt = crt.display(),
        key = key.display(),
    ))
    .await;
    let port = broker.mqtt_addr().port();
    let ca = pki.root_file();
    let mut silent = Vec::new();
    for _ in 0..4 {
        silent.push(
            tls_connect(&ca, port, "localhost")
                .await
                .expect("TLS handshake"),
        );
    }
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let started = Instant::now();
    let stream = tokio::time::timeout(Duration::from_secs(2), tls_connect(&ca, port, "localhost"))
        .await
        .expect("a TLS handshake behind 4 silent TLS sessions, in time")
        .expect("TLS handshake");
    let mut real = RawClient::over(stream);
    real.write(&ConnectBuilder::new(&unique("bounds-tls")).build())
        .await
        .expect("CONNECT");
    expect_connack(&mut real, Duration::from_secs(2), "a real TLS client").await;
    assert!(started.elapsed() < Duration::from_secs(3));
    real.ping().await;
}

/// The oversized WebSocket message over `wss` (TLS with a certificate made in the test):
/// refused with close code 1009 from what the frame announces, and a client on the same TLS
/// port is unaffected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_message_above_max_packet_size_over_wss_is_refused_with_1009() {
    const EC: PrivateKeyAlgorithm = PrivateKeyAlgorithm::Ec256;
    let dir = TempDir::new("bounds-wss");
    let pki = Pki::new(dir.path(), EC);
    let (crt, key) = pki.write_server(&pki.server(EC), "server");
    let broker = TestBroker::start(&format!(
        "
listeners:
  - name: wss
    bindAddress: 127.0.0.1
    ports:
      - port: 0
        protocol: WebSockets
        path: /mqtt
        tls: {{ mode: Manual, manual: {{ secretRef: server-cert }} }}
secrets:
  server-cert: {{ certFile: {crt}, keyFile: {key} }}
broker: {{ maxPacketSizeBytes: 1024 }}
",
        crt = crt.display(),
        key = key.display(),
    ))
    .await;
    let port = broker.ws_addr().port();
    let ca = pki.root_file();
    let wss = |id: String| {
        let ca = ca.clone();
        async move {
            let tls = tls_connect(&ca, port, "localhost")
                .await
                .expect("TLS handshake");
            let mut request = format!("wss://localhost:{port}/mqtt")
                .into_client_request()
                .expect("URL");
            request
                .headers_mut()
                .insert("Sec-WebSocket-Protocol", HeaderValue::from_static("mqtt"));
            let (mut ws, _) =
                tokio::time::timeout(WAIT, tokio_tungstenite::client_async(request, tls))
                    .await
                    .expect("upgrade in time")
                    .expect("WebSocket upgrade over TLS");
            ws.send(Message::Binary(ConnectBuilder::new(&id).build().into()))
                .await
                .expect("send CONNECT");
            match tokio::time::timeout(WAIT, ws.next()).await {
                Ok(Some(Ok(Message::Binary(d)))) => {
                    assert_eq!(connack_code(&d), 0, "CONNACK over wss")
                }
                other => panic!("expected CONNACK, got {other:?}"),
            }
            ws
        }
    };
    let mut bystander = wss(unique("wss-bystander")).await;
    let mut ws = wss(unique("wss-attacker")).await;
    let big = publish_bytes(
        0x00,
        b"bounds/wss",
        None,
        Some(&Props::new()),
        &[7u8; 65536],
    );
    let _ = ws.send(Message::Binary(big.into())).await;
    let code = loop {
        match tokio::time::timeout(WAIT, ws.next()).await {
            Ok(Some(Ok(Message::Close(Some(frame))))) => break Some(frame.code),
            Ok(Some(Ok(Message::Binary(d)))) => {
                panic!("the broker read the message as MQTT and answered {d:02X?}")
            }
            Ok(Some(Ok(Message::Close(None)))) | Ok(Some(Err(_))) | Ok(None) => break None,
            Ok(Some(Ok(_))) => {}
            Err(_) => panic!("the connection is still open"),
        }
    };
    assert_eq!(code, Some(CloseCode::Size), "close code 1009");
    // PINGREQ → PINGRESP on the bystander's wss connection.
    bystander
        .send(Message::Binary(vec![0xC0, 0x00].into()))
        .await
        .expect("PINGREQ");
    match tokio::time::timeout(WAIT, bystander.next()).await {
        Ok(Some(Ok(Message::Binary(d)))) => assert_eq!(&d[..], [0xD0, 0x00]),
        other => panic!("expected PINGRESP, got {other:?}"),
    }
}

/// Lowering `maxConnections` at runtime, over TLS with X.509 client certificates made in
/// the test: after the reload, clients leaving above the lowered limit do not give their
/// permits back, so a newcomer's TLS handshake (its socket waits in the backlog) completes
/// only once the count is under the new limit. Before the fix the shortfall was lost and
/// the newcomer got in as soon as two clients left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lowering_max_connections_holds_for_tls_clients() {
    const EC: PrivateKeyAlgorithm = PrivateKeyAlgorithm::Ec256;
    let dir = TempDir::new("bounds-tls-cap");
    let pki = Pki::new(dir.path(), EC);
    let (crt, key) = pki.write_server(&pki.server(EC), "server");
    let (ccrt, ckey) = pki.client("device", EC, Duration::from_secs(3600), "device");
    let config = |max: u32| {
        format!(
            "
listeners:
  - name: tls
    bindAddress: 127.0.0.1
    ports:
      - port: 0
        tls: {{ mode: Manual, manual: {{ secretRef: server-cert }} }}
        authenticationRef: certs
authentications:
  - name: certs
    authenticationMethods:
      - method: X509
        x509Settings: {{ trustedClientCaCert: client-ca }}
secrets:
  server-cert: {{ certFile: {crt}, keyFile: {key} }}
configMaps:
  client-ca: {{ files: [{root}] }}
broker: {{ maxConnections: {max}, connectTimeout: 30s }}
diagnostics: {{ metrics: {{ prometheusPort: 0 }} }}
",
            crt = crt.display(),
            key = key.display(),
            root = pki.root_file().display(),
        )
    };
    let broker = TestBroker::start(&config(4)).await;
    let port = broker.mqtt_addr().port();
    let root = pki.root_file();
    // TLS handshake with the client certificate, CONNECT, CONNACK 0x00.
    let join = |id: String| {
        let (root, ccrt, ckey) = (root.clone(), ccrt.clone(), ckey.clone());
        async move {
            let tls = gatehouse_tests::tls::connect_as(&root, port, "localhost", &ccrt, &ckey)
                .await
                .expect("TLS handshake");
            let mut c = RawClient::over(tls);
            c.write(&ConnectBuilder::new(&id).build())
                .await
                .expect("CONNECT");
            expect_connack(&mut c, Duration::from_secs(20), &id).await;
            c
        }
    };
    let mut clients = Vec::new();
    for i in 0..4 {
        clients.push(join(format!("tls-cap-{i}")).await);
    }
    reload(&broker, &config(2)).await;
    for c in &mut clients {
        c.ping().await;
    }
    for mut c in clients.drain(..2) {
        c.write(&[0xE0, 0x00]).await.expect("DISCONNECT");
        c.expect_closed(WAIT).await;
    }
    // 2 connected, the new limit: a newcomer's handshake cannot complete.
    let mut newcomer = tokio::spawn(join("tls-cap-new".into()));
    assert!(
        tokio::time::timeout(Duration::from_secs(1), &mut newcomer)
            .await
            .is_err(),
        "a newcomer got in while 2 of a lowered limit of 2 are connected"
    );
    // One more leaves: the newcomer takes its place.
    let mut c = clients.remove(0);
    c.write(&[0xE0, 0x00]).await.expect("DISCONNECT");
    c.expect_closed(WAIT).await;
    let mut newcomer = tokio::time::timeout(Duration::from_secs(20), newcomer)
        .await
        .expect("the newcomer gets in once one left")
        .expect("the newcomer's task");
    newcomer.ping().await;
    assert_eq!(broker.server.open_connections(), 2);
}
