//! MQTT over WebSockets: a tungstenite client (subprotocol `mqtt`, binary frames) with
//! hand-made MQTT 5 packets, talking to Mosquitto clients on the TCP port.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::BytesMut;
use futures_util::{SinkExt, StreamExt};
use gatehouse_tests::broker::{unique, TestBroker};
use gatehouse_tests::mosquitto::{publish, Sub, WAIT};
use gatehouse_tests::raw::{
    connack_code, frame_body, publish_bytes, publish_v5_parts, split_frame, subscribe_bytes,
    ConnectBuilder, Props,
};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::handshake::client::Response;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

struct WsClient {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    /// Bytes received but not yet split into packets: MQTT packets may span frames.
    buf: BytesMut,
}

/// Open `ws://addr{path}` offering the `mqtt` subprotocol.
async fn ws_connect(addr: SocketAddr, path: &str) -> Result<(WsClient, Response), WsError> {
    let mut request = format!("ws://{addr}{path}")
        .into_client_request()
        .expect("valid URL");
    request
        .headers_mut()
        .insert("Sec-WebSocket-Protocol", HeaderValue::from_static("mqtt"));
    let (ws, response) = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(request))
        .await
        .expect("WebSocket handshake timed out")?;
    Ok((
        WsClient {
            ws,
            buf: BytesMut::new(),
        },
        response,
    ))
}

impl WsClient {
    async fn send(&mut self, bytes: Vec<u8>) {
        self.ws
            .send(Message::Binary(bytes.into()))
            .await
            .expect("send a WebSocket frame");
    }

    /// The next MQTT packet; `None` when the connection ends or `within` passes.
    async fn packet_within(&mut self, within: Duration) -> Option<Vec<u8>> {
        let until = tokio::time::Instant::now() + within;
        loop {
            if let Some(p) = split_frame(&mut self.buf) {
                return Some(p);
            }
            match tokio::time::timeout_at(until, self.ws.next()).await {
                Ok(Some(Ok(Message::Binary(data)))) => self.buf.extend_from_slice(&data),
                Ok(Some(Ok(Message::Text(t)))) => panic!("the broker sent a text frame: {t}"),
                Ok(Some(Ok(_))) => {} // ping, pong, close
                Ok(Some(Err(_))) | Ok(None) | Err(_) => return None,
            }
        }
    }

    /// Whether the broker ends the WebSocket within `within` (MQTT packets are skipped).
    async fn closed_within(&mut self, within: Duration) -> bool {
        let until = tokio::time::Instant::now() + within;
        loop {
            match tokio::time::timeout_at(until, self.ws.next()).await {
                Err(_) => return false,
                Ok(None) | Ok(Some(Err(_))) | Ok(Some(Ok(Message::Close(_)))) => return true,
                Ok(Some(Ok(_))) => {}
            }
        }
    }

    async fn packet(&mut self) -> Vec<u8> {
        self.packet_within(WAIT)
            .await
            .expect("no MQTT packet over the WebSocket")
    }

    /// CONNECT and expect a successful CONNACK.
    async fn mqtt_connect(&mut self, client_id: &str) {
        self.send(ConnectBuilder::new(client_id).build()).await;
        let connack = self.packet().await;
        assert_eq!(connack_code(&connack), 0, "CONNACK reason code");
    }

    async fn mqtt_subscribe(&mut self, filter: &str, qos: u8) {
        self.send(subscribe_bytes(1, filter, qos)).await;
        let suback = self.packet().await;
        assert_eq!(suback[0], 0x90, "{suback:02X?}");
        // packet id, property length 0, one reason code = granted QoS
        assert_eq!(frame_body(&suback), [0, 1, 0, qos], "SUBACK");
    }
}

fn assert_mqtt_subprotocol(response: &Response) {
    assert_eq!(
        response
            .headers()
            .get("sec-websocket-protocol")
            .map(|v| v.to_str().unwrap_or("?")),
        Some("mqtt"),
        "the upgrade response names the mqtt subprotocol: {response:?}"
    );
}

/// A WebSocket client subscribes; a Mosquitto client publishes over TCP.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_subscriber_gets_tcp_publish() {
    let broker = TestBroker::local().await;
    let topic = unique("ws-in");

    let (mut ws, response) = ws_connect(broker.ws_addr(), "/mqtt")
        .await
        .expect("WebSocket upgrade at /mqtt");
    assert_mqtt_subprotocol(&response);
    ws.mqtt_connect(&unique("ws-sub")).await;
    ws.mqtt_subscribe(&topic, 0).await;

    publish(
        broker.mqtt_addr(),
        &["-V", "mqttv311", "-q", "1", "-t", &topic, "-m", "over tcp"],
    )
    .await;
    let p = ws.packet().await;
    assert_eq!(publish_v5_parts(&p), (topic.clone(), b"over tcp".to_vec()));

    // A large message (100 kB) arrives whole, however the broker frames it.
    let big = "x".repeat(100_000);
    publish(
        broker.mqtt_addr(),
        &["-V", "mqttv5", "-q", "0", "-t", &topic, "-m", &big],
    )
    .await;
    let p = ws.packet().await;
    assert_eq!(publish_v5_parts(&p).1.len(), big.len());
    ws.send(vec![0xE0, 0x00]).await;
}

/// A WebSocket client publishes; a Mosquitto client subscribed over TCP receives it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_publish_reaches_tcp_subscriber() {
    let broker = TestBroker::local().await;
    let topic = unique("ws-out");
    let mut sub = Sub::subscribed(broker.mqtt_addr(), &["-V", "mqttv5", "-t", &topic]).await;

    let (mut ws, response) = ws_connect(broker.ws_addr(), "/mqtt")
        .await
        .expect("WebSocket upgrade at /mqtt");
    assert_mqtt_subprotocol(&response);
    ws.mqtt_connect(&unique("ws-pub")).await;
    ws.send(publish_bytes(
        0,
        topic.as_bytes(),
        None,
        Some(&Props::new()),
        b"over websockets",
    ))
    .await;

    let m = sub.next_message().await;
    assert_eq!(m.topic, topic);
    assert_eq!(m.payload, "over websockets");
    ws.send(vec![0xE0, 0x00]).await;
}

/// With `path: /mqtt`, an upgrade on another path is refused (404) and no MQTT session
/// starts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_wrong_path_is_refused() {
    let broker = TestBroker::local().await;
    for path in ["/", "/other", "/mqtt/x", "/MQTT"] {
        match ws_connect(broker.ws_addr(), path).await {
            Err(WsError::Http(response)) => {
                assert_eq!(response.status(), 404, "upgrade at {path}")
            }
            Err(e) => panic!("upgrade at {path}: expected an HTTP 404, got {e}"),
            Ok(_) => panic!("upgrade at {path} was accepted; only /mqtt is configured"),
        }
    }
    assert_eq!(broker.session_count(), 0);
    // The right path still works.
    let (mut ws, _) = ws_connect(broker.ws_addr(), "/mqtt").await.expect("/mqtt");
    ws.mqtt_connect(&unique("ws-right-path")).await;
}

/// Without `path`, every path is accepted (as AIO does).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_without_path_accepts_any_path() {
    let broker = TestBroker::start(
        "
listeners:
  - name: ws-any-path
    bindAddress: 127.0.0.1
    ports:
      - port: 0
        protocol: WebSockets
",
    )
    .await;
    for path in ["/", "/mqtt", "/some/where"] {
        let (mut ws, response) = ws_connect(broker.ws_addr(), path)
            .await
            .unwrap_or_else(|e| panic!("upgrade at {path}: {e}"));
        assert_mqtt_subprotocol(&response);
        ws.mqtt_connect(&unique("ws-any")).await;
    }
}

/// MQTT travels in binary frames only: a text frame ends the connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_text_frame_closes_the_connection() {
    let broker = TestBroker::local().await;
    let (mut ws, _) = ws_connect(broker.ws_addr(), "/mqtt").await.expect("/mqtt");
    ws.mqtt_connect(&unique("ws-text")).await;
    ws.ws
        .send(Message::Text("not mqtt".into()))
        .await
        .expect("send text frame");
    assert!(
        ws.closed_within(Duration::from_secs(3)).await,
        "the connection stays open after a text frame"
    );
    broker.wait_session_count(0).await;
}
