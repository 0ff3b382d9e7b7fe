//! Sessions with the Mosquitto clients: messages kept for an offline persistent session,
//! clean start, session expiry, takeover, message expiry while queued.

use std::net::SocketAddr;
use std::time::Duration;

use gatehouse_tests::broker::{unique, TestBroker};
use gatehouse_tests::mosquitto::{publish, Msg, Sub};

/// Subscribe with a persistent session (`-c`, plus `extra`) and leave with DISCONNECT.
async fn subscribe_and_leave(
    addr: SocketAddr,
    version: &str,
    id: &str,
    topic: &str,
    extra: &[&str],
) {
    let mut args = vec!["-V", version, "-c", "-i", id, "-q", "1", "-t", topic, "-E"];
    args.extend_from_slice(extra);
    let mut sub = Sub::subscribed(addr, &args).await;
    assert!(sub.exit().await.success(), "{}", sub.transcript());
}

/// Publish a marker to `topic` once `sub` is subscribed and return everything before it.
async fn until_marker(addr: SocketAddr, sub: &mut Sub, topic: &str) -> Vec<Msg> {
    sub.wait_subscribed().await;
    publish(
        addr,
        &["-V", "mqttv5", "-q", "1", "-t", topic, "-m", "marker"],
    )
    .await;
    let mut got = Vec::new();
    loop {
        let m = sub.next_message().await;
        if m.payload == "marker" {
            return got;
        }
        got.push(m);
    }
}

async fn persistent_session(version: &str, session_args: &[&str]) {
    let broker = TestBroker::local().await;
    let addr = broker.mqtt_addr();
    let id = unique(&format!("persistent-{version}"));
    let topic = unique("offline");

    subscribe_and_leave(addr, version, &id, &topic, session_args).await;
    broker.wait_session_count(1).await; // the session outlives the connection
    for payload in ["one", "two", "three"] {
        publish(
            addr,
            &["-V", "mqttv5", "-q", "1", "-t", &topic, "-m", payload],
        )
        .await;
    }

    // Back with the same id and -c: the queued messages, in order.
    let mut args = vec!["-V", version, "-c", "-i", &id, "-q", "1", "-t", &topic];
    args.extend_from_slice(session_args);
    let mut back = Sub::spawn(addr, &args);
    let got = until_marker(addr, &mut back, &topic).await;
    let payloads: Vec<&str> = got.iter().map(|m| m.payload.as_str()).collect();
    assert_eq!(
        payloads,
        ["one", "two", "three"],
        "{version}: messages published while the session was offline"
    );
    assert!(got.iter().all(|m| m.qos == 1 && m.topic == topic));
    back.kill().await;

    // Offline again (killed: the session stays), then back with clean start: the session
    // and what was queued for it are gone.
    publish(
        addr,
        &["-V", "mqttv5", "-q", "1", "-t", &topic, "-m", "four"],
    )
    .await;
    let mut clean = Sub::spawn(addr, &["-V", version, "-i", &id, "-q", "1", "-t", &topic]);
    let got = until_marker(addr, &mut clean, &topic).await;
    assert!(
        got.is_empty(),
        "{version}: clean start must discard the old session, got {got:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn persistent_session_v5() {
    persistent_session("mqttv5", &["-x", "60"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn persistent_session_v311() {
    persistent_session("mqttv311", &[]).await;
}

/// v5 Session Expiry Interval: a session is gone once its interval has passed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_expires_after_its_interval() {
    let broker = TestBroker::local().await;
    let addr = broker.mqtt_addr();
    let id = unique("expiring");
    let topic = unique("expiring-topic");

    subscribe_and_leave(addr, "mqttv5", &id, &topic, &["-x", "2"]).await;
    let left = std::time::Instant::now();
    publish(
        addr,
        &["-V", "mqttv5", "-q", "1", "-t", &topic, "-m", "lost"],
    )
    .await;
    // Gone after its 2 s (wait_session_count gives it 5 s), not before.
    broker.wait_session_count(0).await;
    assert!(
        left.elapsed() >= Duration::from_millis(1500),
        "the session ended after {:?}, before its 2 s expiry",
        left.elapsed()
    );

    let mut back = Sub::spawn(
        addr,
        &[
            "-V", "mqttv5", "-c", "-x", "60", "-i", &id, "-q", "1", "-t", &topic,
        ],
    );
    let got = until_marker(addr, &mut back, &topic).await;
    assert!(got.is_empty(), "an expired session kept messages: {got:#?}");
}

/// A second connection with the same client id takes the session over: a v5 client is
/// told so (DISCONNECT 0x8E, mosquitto_sub prints it and exits); the newcomer is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_takeover_v5() {
    let broker = TestBroker::local().await;
    let addr = broker.mqtt_addr();
    let id = unique("takeover");
    let topic = unique("takeover-topic");
    let args = ["-V", "mqttv5", "-i", &id, "-q", "1", "-t", &topic];

    let mut first = Sub::subscribed(addr, &args).await;
    let mut second = Sub::subscribed(addr, &args).await;
    first
        .wait_line(|l| l.contains("Received DISCONNECT (142)"))
        .await;
    assert!(
        first.exit_within(Duration::from_secs(5)).await.is_some(),
        "the client that was taken over is still running:\n{}",
        first.transcript()
    );

    publish(
        addr,
        &[
            "-V",
            "mqttv5",
            "-q",
            "1",
            "-t",
            &topic,
            "-m",
            "to the new one",
        ],
    )
    .await;
    assert_eq!(second.next_message().await.payload, "to the new one");
    broker.wait_session_count(1).await; // one session for the shared client id
}

/// 3.1.1 has no DISCONNECT from the server: the old connection is closed, which
/// mosquitto_sub notices and answers by connecting again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_takeover_v311_closes_the_old_connection() {
    let broker = TestBroker::local().await;
    let addr = broker.mqtt_addr();
    let id = unique("takeover-311");
    let topic = unique("takeover-311-topic");
    let args = ["-V", "mqttv311", "-i", &id, "-t", &topic];

    let mut first = Sub::subscribed(addr, &args).await;
    let mut second = Sub::subscribed(addr, &args).await;
    // The first client's second CONNECT: it lost its connection.
    first.wait_line(|l| l.ends_with("sending CONNECT")).await;
    first.kill().await;
    second.kill().await;
}

/// v5 Message Expiry Interval on messages queued for an offline session: an expired one
/// is not delivered, a live one is delivered with its remaining lifetime.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_expiry_while_queued() {
    let broker = TestBroker::local().await;
    let addr = broker.mqtt_addr();
    let id = unique("expiry");
    let topic = unique("expiry-topic");
    subscribe_and_leave(addr, "mqttv5", &id, &topic, &["-x", "60"]).await;

    for (payload, expiry) in [("short", "1"), ("long", "30")] {
        publish(
            addr,
            &[
                "-V",
                "mqttv5",
                "-q",
                "1",
                "-t",
                &topic,
                "-m",
                payload,
                "-D",
                "publish",
                "message-expiry-interval",
                expiry,
            ],
        )
        .await;
    }
    publish(
        addr,
        &["-V", "mqttv5", "-q", "1", "-t", &topic, "-m", "forever"],
    )
    .await;
    tokio::time::sleep(Duration::from_millis(2100)).await;

    let mut back = Sub::spawn(
        addr,
        &[
            "-V", "mqttv5", "-c", "-x", "60", "-i", &id, "-q", "1", "-t", &topic,
        ],
    );
    // Queued messages come in order right after CONNACK, so the first two are decisive.
    let got = back.next_messages(2).await;
    assert_eq!(
        got[0].payload, "long",
        "expired message delivered? {got:#?}"
    );
    let remaining: u32 = got[0].expiry.parse().expect("expiry interval sent");
    assert!(
        (25..=28).contains(&remaining),
        "remaining message expiry after ~2 s of 30: {remaining}"
    );
    assert_eq!(got[1].payload, "forever");
    assert_eq!(got[1].expiry, "", "no expiry was given, none is added");
}
