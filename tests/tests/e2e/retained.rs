//! Retained messages with the Mosquitto clients: set, delivered to new subscribers with
//! the retain flag, cleared by an empty retained message.
//!
//! Retain Handling and Retain As Published are not options of mosquitto_sub 2.0; the
//! protocol tests cover them with raw packets.

use std::net::SocketAddr;

use gatehouse_tests::broker::{unique, TestBroker};
use gatehouse_tests::mosquitto::{publish, Msg, Sub};

/// Subscribe to `filter` with a new client, then publish a non-retained marker to
/// `marker_topic` (matched by `filter`): every message before the marker is what the
/// subscription brought (retained messages come right after SUBACK, before anything
/// published later), so "nothing retained" needs no waiting.
async fn retained_on_subscribe(
    addr: SocketAddr,
    version: &str,
    qos: &str,
    filter: &str,
    marker_topic: &str,
) -> Vec<Msg> {
    let mut sub = Sub::subscribed(addr, &["-V", version, "-q", qos, "-t", filter]).await;
    publish(
        addr,
        &["-V", version, "-q", "1", "-t", marker_topic, "-m", "marker"],
    )
    .await;
    let mut got = Vec::new();
    loop {
        let m = sub.next_message().await;
        if m.topic == marker_topic && m.payload == "marker" {
            assert!(!m.retain, "the marker is not retained: {m:?}");
            return got;
        }
        got.push(m);
    }
}

async fn retained_lifecycle(version: &str) {
    let broker = TestBroker::local().await;
    let addr = broker.mqtt_addr();
    let base = unique(&format!("retained-{version}"));
    let topic = format!("{base}/state");
    let filter = format!("{base}/#");
    let marker = format!("{base}/marker");

    // A subscriber already there gets the retained publication live, retain flag 0.
    let mut live = Sub::subscribed(addr, &["-V", version, "-q", "1", "-t", &filter]).await;
    publish(
        addr,
        &["-V", version, "-q", "1", "-r", "-t", &topic, "-m", "on"],
    )
    .await;
    let m = live.next_message().await;
    assert_eq!(
        (m.topic.as_str(), m.payload.as_str()),
        (topic.as_str(), "on")
    );
    assert!(
        !m.retain,
        "live delivery of a retained message has retain 0: {m:?}"
    );

    // A new subscriber gets it on subscribing, retain flag 1, at min(QoS) as usual.
    for (sub_qos, expect_qos) in [("0", 0), ("1", 1), ("2", 1)] {
        let got = retained_on_subscribe(addr, version, sub_qos, &filter, &marker).await;
        assert_eq!(
            got.len(),
            1,
            "{version} subscriber at QoS {sub_qos}: {got:#?}"
        );
        assert_eq!(got[0].topic, topic);
        assert_eq!(got[0].payload, "on");
        assert!(
            got[0].retain,
            "retained delivery has retain 1: {:?}",
            got[0]
        );
        assert_eq!(got[0].qos, expect_qos);
    }

    // A second retained publish replaces the first.
    publish(
        addr,
        &["-V", version, "-q", "1", "-r", "-t", &topic, "-m", "off"],
    )
    .await;
    let got = retained_on_subscribe(addr, version, "1", &topic, &topic).await;
    // `topic` is the marker topic too: the retained "off", then the marker.
    assert_eq!(got.len(), 1, "{got:#?}");
    assert_eq!(got[0].payload, "off");
    assert!(got[0].retain);

    // An empty retained message clears it.
    publish(addr, &["-V", version, "-q", "1", "-r", "-n", "-t", &topic]).await;
    let got = retained_on_subscribe(addr, version, "1", &filter, &marker).await;
    assert!(
        got.is_empty(),
        "cleared retained message still delivered: {got:#?}"
    );
    drop(live);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retained_set_delivered_cleared_v5() {
    retained_lifecycle("mqttv5").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retained_set_delivered_cleared_v311() {
    retained_lifecycle("mqttv311").await;
}

/// A retained message set by a 3.1.1 client reaches a v5 subscriber and vice versa, and
/// a wildcard subscription gets every retained topic it matches, and only those.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retained_across_versions_and_wildcards() {
    let broker = TestBroker::local().await;
    let addr = broker.mqtt_addr();
    let base = unique("retained-mixed");
    let a = format!("{base}/room/a");
    let b = format!("{base}/room/b");
    let other = format!("{base}/hall/c");
    publish(
        addr,
        &["-V", "mqttv311", "-q", "1", "-r", "-t", &a, "-m", "A"],
    )
    .await;
    publish(
        addr,
        &["-V", "mqttv5", "-q", "1", "-r", "-t", &b, "-m", "B"],
    )
    .await;
    publish(
        addr,
        &["-V", "mqttv5", "-q", "1", "-r", "-t", &other, "-m", "C"],
    )
    .await;

    let filter = format!("{base}/room/+");
    let marker = format!("{base}/room/marker");
    for version in ["mqttv5", "mqttv311"] {
        let mut got = retained_on_subscribe(addr, version, "1", &filter, &marker).await;
        got.sort_by(|x, y| x.topic.cmp(&y.topic));
        let seen: Vec<(&str, &str, bool)> = got
            .iter()
            .map(|m| (m.topic.as_str(), m.payload.as_str(), m.retain))
            .collect();
        assert_eq!(
            seen,
            vec![(a.as_str(), "A", true), (b.as_str(), "B", true)],
            "{version}"
        );
    }
}
