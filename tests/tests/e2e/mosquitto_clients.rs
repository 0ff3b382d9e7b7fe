//! mosquitto_pub → broker → mosquitto_sub: topics, payloads, QoS, v5 properties, and
//! both protocol versions talking to each other.

use gatehouse_tests::broker::{unique, TestBroker};
use gatehouse_tests::mosquitto::{publish, Msg, Sub};

/// Publish at QoS 0, 1 and 2 to subscribers at QoS 0, 1 and 2: every subscriber gets
/// every message exactly once, at QoS min(publish, subscription).
async fn qos_matrix(version: &str) {
    let broker = TestBroker::local().await;
    let addr = broker.mqtt_addr();
    let base = unique(&format!("qos-{version}"));
    let filter = format!("{base}/#");

    let mut subs = Vec::new();
    for sub_qos in 0..3u8 {
        let id = unique("qos-sub");
        let q = sub_qos.to_string();
        let sub = Sub::subscribed(addr, &["-V", version, "-i", &id, "-q", &q, "-t", &filter]).await;
        subs.push((sub_qos, sub));
    }
    for pub_qos in 0..3u8 {
        let topic = format!("{base}/q{pub_qos}");
        let payload = format!("payload at qos {pub_qos}");
        let q = pub_qos.to_string();
        publish(
            addr,
            &["-V", version, "-q", &q, "-t", &topic, "-m", &payload],
        )
        .await;
    }
    // A last message, so "nothing more" can be asserted without waiting.
    let end = format!("{base}/end");
    publish(addr, &["-V", version, "-q", "1", "-t", &end, "-m", "end"]).await;

    for (sub_qos, sub) in &mut subs {
        // The QoS 0 publisher gets no acknowledgement, so its message may in principle
        // be routed after the end marker: wait for both.
        let mut got: Vec<Msg> = Vec::new();
        let mut ended = false;
        while !(ended && got.len() >= 3) {
            let m = sub.next_message().await;
            if m.topic == end {
                ended = true;
            } else {
                got.push(m);
            }
        }
        got.sort_by(|a, b| a.topic.cmp(&b.topic));
        assert_eq!(
            got.len(),
            3,
            "subscriber at QoS {sub_qos} ({version}) got {got:#?}"
        );
        for (pub_qos, m) in got.iter().enumerate() {
            let pub_qos = pub_qos as u8;
            assert_eq!(m.topic, format!("{base}/q{pub_qos}"));
            assert_eq!(m.payload, format!("payload at qos {pub_qos}"));
            assert_eq!(
                m.qos,
                pub_qos.min(*sub_qos),
                "QoS of a QoS {pub_qos} message to a QoS {sub_qos} subscription ({version})"
            );
            assert!(!m.retain, "a live message has retain 0: {m:?}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pub_sub_every_qos_v5() {
    qos_matrix("mqttv5").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pub_sub_every_qos_v311() {
    qos_matrix("mqttv311").await;
}

/// A v5 publisher and a 3.1.1 subscriber, and the other way round.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v5_and_v311_clients_exchange_messages() {
    let broker = TestBroker::local().await;
    let addr = broker.mqtt_addr();
    let topic = unique("mixed");

    let mut v311 = Sub::subscribed(addr, &["-V", "mqttv311", "-q", "2", "-t", &topic]).await;
    let mut v5 = Sub::subscribed(addr, &["-V", "mqttv5", "-q", "2", "-t", &topic]).await;

    publish(
        addr,
        &[
            "-V",
            "mqttv5",
            "-q",
            "2",
            "-t",
            &topic,
            "-m",
            "from v5",
            "-D",
            "publish",
            "user-property",
            "k",
            "v",
        ],
    )
    .await;
    publish(
        addr,
        &[
            "-V",
            "mqttv311",
            "-q",
            "1",
            "-t",
            &topic,
            "-m",
            "from 3.1.1",
        ],
    )
    .await;

    for (sub, user_properties) in [(&mut v311, ""), (&mut v5, "k:v")] {
        let a = sub.next_message().await;
        let b = sub.next_message().await;
        let mut got = [a, b];
        got.sort_by(|a, b| a.payload.cmp(&b.payload));
        assert_eq!(got[0].payload, "from 3.1.1");
        assert_eq!(got[0].qos, 1);
        assert_eq!(got[1].payload, "from v5");
        assert_eq!(got[1].qos, 2);
        // v5 properties reach v5 subscribers only.
        assert_eq!(got[1].user_properties, user_properties);
        assert!(got.iter().all(|m| m.topic == topic));
    }
}

/// User properties (in order, duplicates kept), response topic, correlation data,
/// content type and message expiry pass through to a v5 subscriber.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v5_properties_pass_through() {
    let broker = TestBroker::local().await;
    let addr = broker.mqtt_addr();
    let topic = unique("props");
    let response = unique("reply");

    let mut sub = Sub::subscribed(addr, &["-V", "mqttv5", "-q", "1", "-t", &topic]).await;
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
            "with properties",
            "-D",
            "publish",
            "user-property",
            "region",
            "north",
            "-D",
            "publish",
            "user-property",
            "tag",
            "a",
            "-D",
            "publish",
            "user-property",
            "tag",
            "b",
            "-D",
            "publish",
            "response-topic",
            &response,
            "-D",
            "publish",
            "correlation-data",
            "req-42",
            "-D",
            "publish",
            "content-type",
            "text/plain",
            "-D",
            "publish",
            "message-expiry-interval",
            "100",
        ],
    )
    .await;
    let m = sub.next_message().await;
    assert_eq!(m.topic, topic);
    assert_eq!(m.payload, "with properties");
    assert_eq!(m.user_properties, "region:north tag:a tag:b");
    assert_eq!(m.response_topic, response);
    assert_eq!(m.correlation_data, "req-42");
    assert_eq!(m.content_type, "text/plain");
    let expiry: u32 = m
        .expiry
        .parse()
        .unwrap_or_else(|_| panic!("message expiry interval missing: {m:?}"));
    assert!(
        (95..=100).contains(&expiry),
        "the remaining expiry is sent on: {expiry}"
    );

    // Without properties, none appear.
    publish(
        addr,
        &["-V", "mqttv5", "-q", "1", "-t", &topic, "-m", "plain"],
    )
    .await;
    let m = sub.next_message().await;
    assert_eq!(m.payload, "plain");
    assert_eq!(
        (
            m.user_properties.as_str(),
            m.response_topic.as_str(),
            m.correlation_data.as_str(),
            m.expiry.as_str(),
            m.content_type.as_str()
        ),
        ("", "", "", "", "")
    );
}

/// Wildcards: `+` matches one level, `#` the rest; a non-matching topic is not delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wildcard_subscriptions() {
    let broker = TestBroker::local().await;
    let addr = broker.mqtt_addr();
    let base = unique("wild");
    let plus = format!("{base}/+/temp");
    let mut sub = Sub::subscribed(addr, &["-V", "mqttv5", "-q", "1", "-t", &plus]).await;

    for (topic, payload) in [
        (format!("{base}/a/humidity"), "no"),
        (format!("{base}/a/b/temp"), "no"),
        (format!("{base}/kitchen/temp"), "yes"),
    ] {
        publish(
            addr,
            &["-V", "mqttv5", "-q", "1", "-t", &topic, "-m", payload],
        )
        .await;
    }
    let m = sub.next_message().await;
    assert_eq!(
        (m.topic.as_str(), m.payload.as_str()),
        (format!("{base}/kitchen/temp").as_str(), "yes")
    );
}
