//! Will messages: published when a client dies (SIGKILL: no DISCONNECT), not when it
//! disconnects normally; retained wills; the v5 Will Delay Interval.

use std::net::SocketAddr;
use std::time::Duration;

use gatehouse_tests::broker::{unique, TestBroker};
use gatehouse_tests::mosquitto::{publish, Sub};

/// Publish "marker" on `topic`: it must be the next message `watcher` gets (no will came
/// before it), else `why`.
async fn expect_marker_next(addr: SocketAddr, watcher: &mut Sub, topic: &str, why: &str) {
    publish(
        addr,
        &["-V", "mqttv5", "-q", "1", "-t", topic, "-m", "marker"],
    )
    .await;
    let m = watcher.next_message().await;
    assert_eq!(m.payload, "marker", "{why}");
}

/// A `mosquitto_sub` with a will on `will_topic`, connected and subscribed.
async fn client_with_will(
    addr: SocketAddr,
    version: &str,
    will_topic: &str,
    extra: &[&str],
) -> Sub {
    let id = unique("will-client");
    let idle = unique("will-client-idle");
    let mut args = vec![
        "-V",
        version,
        "-i",
        &id,
        "--will-topic",
        will_topic,
        "--will-payload",
        "died",
        "--will-qos",
        "1",
        "-t",
        &idle,
    ];
    args.extend_from_slice(extra);
    Sub::subscribed(addr, &args).await
}

async fn will_on_kill(version: &str) {
    let broker = TestBroker::local().await;
    let addr = broker.mqtt_addr();
    let will_topic = unique("will");
    let mut watcher = Sub::subscribed(addr, &["-V", "mqttv5", "-q", "2", "-t", &will_topic]).await;

    let mut client = client_with_will(addr, version, &will_topic, &[]).await;
    client.kill().await;

    let m = watcher.next_message().await;
    assert_eq!(m.topic, will_topic);
    assert_eq!(m.payload, "died");
    assert_eq!(m.qos, 1, "the will's QoS");
    assert!(!m.retain);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn will_published_when_client_dies_v5() {
    will_on_kill("mqttv5").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn will_published_when_client_dies_v311() {
    will_on_kill("mqttv311").await;
}

/// A client that ends with DISCONNECT (mosquitto_sub -E) leaves no will.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_will_after_normal_disconnect() {
    let broker = TestBroker::local().await;
    let addr = broker.mqtt_addr();
    for version in ["mqttv5", "mqttv311"] {
        let will_topic = unique("no-will");
        let mut watcher =
            Sub::subscribed(addr, &["-V", "mqttv5", "-q", "1", "-t", &will_topic]).await;
        assert_eq!(broker.session_count(), 1, "only the watcher is connected");

        let mut client = client_with_will(addr, version, &will_topic, &["-E"]).await;
        assert!(client.exit().await.success(), "{}", client.transcript());
        // Once the broker has ended the client's session, a will would have been routed.
        broker.wait_session_count(1).await;
        expect_marker_next(
            addr,
            &mut watcher,
            &will_topic,
            &format!("a {version} client that disconnected normally had its will published"),
        )
        .await;
        assert!(watcher
            .message_within(Duration::from_millis(300))
            .await
            .is_none());
        watcher.kill().await;
        broker.wait_session_count(0).await;
    }
}

/// `--will-retain`: the will is kept as the topic's retained message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retained_will_reaches_later_subscribers() {
    let broker = TestBroker::local().await;
    let addr = broker.mqtt_addr();
    let will_topic = unique("will-retained");
    let mut client = client_with_will(addr, "mqttv5", &will_topic, &["--will-retain"]).await;
    client.kill().await;
    broker.wait_session_count(0).await;

    let mut later = Sub::subscribed(addr, &["-V", "mqttv311", "-q", "1", "-t", &will_topic]).await;
    let m = later.next_message().await;
    assert_eq!(m.payload, "died");
    assert!(m.retain, "the retained will has retain 1: {m:?}");
}

/// v5 Will Delay Interval: the will waits out the delay; a client that comes back to its
/// session within the delay cancels it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn will_delay_interval() {
    let broker = TestBroker::local().await;
    let addr = broker.mqtt_addr();
    let will_topic = unique("will-delay");
    let mut watcher = Sub::subscribed(addr, &["-V", "mqttv5", "-q", "1", "-t", &will_topic]).await;
    let delayed = ["-x", "30", "-D", "will", "will-delay-interval", "1"];

    // Dies, stays away: the will comes after about a second, not at once.
    let mut client = client_with_will(addr, "mqttv5", &will_topic, &delayed).await;
    client.kill().await;
    assert!(
        watcher
            .message_within(Duration::from_millis(500))
            .await
            .is_none(),
        "the will came before its delay"
    );
    let m = watcher.next_message().await;
    assert_eq!(m.payload, "died");

    // Dies, comes back to the same session within the delay: no will.
    let id = unique("will-delay-back");
    let idle = unique("idle");
    let args = [
        "-V",
        "mqttv5",
        "-i",
        &id,
        "-c",
        "-x",
        "30",
        "--will-topic",
        &will_topic,
        "--will-payload",
        "died again",
        "-D",
        "will",
        "will-delay-interval",
        "2",
        "-t",
        &idle,
    ];
    let mut first = Sub::subscribed(addr, &args).await;
    first.kill().await;
    let _back = Sub::subscribed(addr, &args).await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    expect_marker_next(
        addr,
        &mut watcher,
        &will_topic,
        "the will was published although the client came back within the delay",
    )
    .await;
}
