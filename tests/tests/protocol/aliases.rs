//! Topic aliases (MQTT 5 §3.3.2.3.4) in both directions.

use gatehouse_protocol::{Packet, PublishProperties};
use gatehouse_tests::raw::*;

fn alias(a: u16) -> Props {
    Props::new().u16(prop::TOPIC_ALIAS, a)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_sets_an_alias_then_publishes_with_an_empty_topic() {
    let b = ProtocolBroker::start().await;
    let mut sub = b.v5("al-sub").await;
    sub.sub_ok(1, "al/#", 0).await;
    let mut c = b.v5("al-pub").await;
    c.send(&publish_bytes(0, b"al/one", None, Some(&alias(1)), b"set"))
        .await;
    c.send(&publish_bytes(0, b"", None, Some(&alias(1)), b"use"))
        .await;
    // Remap alias 1 to another topic, then use it.
    c.send(&publish_bytes(
        0,
        b"al/two",
        None,
        Some(&alias(1)),
        b"remap",
    ))
    .await;
    c.send(&publish_bytes(0, b"", None, Some(&alias(1)), b"use2"))
        .await;
    for (topic, payload) in [
        ("al/one", "set"),
        ("al/one", "use"),
        ("al/two", "remap"),
        ("al/two", "use2"),
    ] {
        let p = sub.expect_publish().await;
        assert_eq!(
            (p.topic.as_str(), &p.payload[..]),
            (topic, payload.as_bytes())
        );
        // The subscriber did not ask for aliases: none is forwarded.
        assert_eq!(p.properties.topic_alias, None);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alias_zero_or_above_the_maximum_gets_0x94() {
    let b = ProtocolBroker::start().await;
    let (mut c, ack) = b.v5_with(ConnectBuilder::new("al-zero")).await;
    c.send(&publish_bytes(0, b"al/z", None, Some(&alias(0)), b"x"))
        .await;
    c.expect_disconnect(0x94).await;

    let max = ack
        .properties
        .topic_alias_maximum
        .expect("Topic Alias Maximum");
    let mut c = b.v5("al-max").await;
    // The maximum itself is allowed...
    c.send(&publish_bytes(
        0x02,
        b"al/m",
        Some(1),
        Some(&alias(max)),
        b"x",
    ))
    .await;
    c.expect_raw(&puback_bytes(1)).await;
    // ...one above is not.
    c.send(&publish_bytes(
        0,
        b"al/m",
        None,
        Some(&alias(max + 1)),
        b"x",
    ))
    .await;
    c.expect_disconnect(0x94).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_alias_with_an_empty_topic_is_a_protocol_error() {
    let b = ProtocolBroker::start().await;
    let mut c = b.v5("al-unknown").await;
    c.send(&publish_bytes(0, b"", None, Some(&alias(3)), b"x"))
        .await;
    c.expect_disconnect(0x82).await;
}

/// "It is a Protocol Error if the Topic Name is zero length and there is no Topic
/// Alias" (MQTT 5 §3.3.2.1).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_topic_without_alias_is_a_protocol_error() {
    let b = ProtocolBroker::start().await;
    let mut c = b.v5("al-none").await;
    c.send(&publish_bytes(0, b"", None, Some(&Props::new()), b"x"))
        .await;
    c.expect_disconnect(0x82).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aliases_do_not_survive_the_connection() {
    let b = ProtocolBroker::start().await;
    let (mut c, _) = b
        .v5_with(ConnectBuilder::new("al-conn").session_expiry(60))
        .await;
    c.send(&publish_bytes(0, b"al/c", None, Some(&alias(2)), b"x"))
        .await;
    c.disconnect().await;
    let (mut c, _) = b
        .v5_with(
            ConnectBuilder::new("al-conn")
                .clean_start(false)
                .session_expiry(60),
        )
        .await;
    c.send(&publish_bytes(0, b"", None, Some(&alias(2)), b"x"))
        .await;
    c.expect_disconnect(0x82).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_uses_aliases_up_to_the_client_topic_alias_maximum() {
    let b = ProtocolBroker::start().await;
    let (mut sub, _) = b
        .v5_with(ConnectBuilder::new("al-srv-sub").topic_alias_maximum(2))
        .await;
    sub.sub_ok(1, "als/#", 0).await;
    let mut publ = b.v5("al-srv-pub").await;
    for t in [
        "als/a", "als/a", "als/b", "als/c", "als/a", "als/b", "als/c",
    ] {
        publ.publish(t, t.as_bytes(), 0, false, 0).await;
    }
    let mut seen = std::collections::HashMap::<u16, String>::new();
    let mut first_a_alias = None;
    for (i, t) in [
        "als/a", "als/a", "als/b", "als/c", "als/a", "als/b", "als/c",
    ]
    .into_iter()
    .enumerate()
    {
        let raw = sub.recv_raw(WAIT).await.expect("PUBLISH");
        let Packet::Publish(p) = sub.decode(&raw) else {
            panic!("{raw:02X?}")
        };
        assert_eq!(&p.payload[..], t.as_bytes());
        let topic = match (p.topic.is_empty(), p.properties.topic_alias) {
            (false, Some(a)) => {
                assert!(
                    (1..=2).contains(&a),
                    "alias {a} within the client maximum 2"
                );
                seen.insert(a, p.topic.clone());
                p.topic.clone()
            }
            (true, Some(a)) => {
                // Raw check: a zero-length topic on the wire.
                assert_eq!(&frame_body(&raw)[..2], [0, 0]);
                seen.get(&a).cloned().expect("alias used before being set")
            }
            (false, None) => p.topic.clone(),
            (true, None) => panic!("empty topic without alias"),
        };
        assert_eq!(topic, t, "message {i}");
        if t == "als/a" {
            match first_a_alias {
                None => {
                    assert!(!p.topic.is_empty(), "first use carries the topic");
                    first_a_alias = p.properties.topic_alias;
                    assert!(first_a_alias.is_some(), "an alias is assigned");
                }
                Some(a) => {
                    assert_eq!(p.properties.topic_alias, Some(a));
                    assert!(p.topic.is_empty(), "later uses send the alias alone");
                }
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_aliases_first_with_topic_then_alias_only() {
    let b = ProtocolBroker::start().await;
    let (mut sub, _) = b
        .v5_with(ConnectBuilder::new("al-s5").topic_alias_maximum(5))
        .await;
    sub.sub_ok(1, "al5/t", 0).await;
    let mut publ = b.v5("al-s5-pub").await;
    publ.publish_props("al5/t", b"1", 0, false, 0, PublishProperties::default())
        .await;
    publ.publish("al5/t", b"2", 0, false, 0).await;
    publ.publish("al5/t", b"3", 0, false, 0).await;
    // 30 0C | 00 05 al5/t | 03 23 00 01 | '1'
    sub.expect_raw(&[
        0x30, 0x0C, 0x00, 0x05, b'a', b'l', b'5', b'/', b't', 0x03, 0x23, 0x00, 0x01, b'1',
    ])
    .await;
    // 30 07 | 00 00 | 03 23 00 01 | '2'
    sub.expect_raw(&[0x30, 0x07, 0x00, 0x00, 0x03, 0x23, 0x00, 0x01, b'2'])
        .await;
    sub.expect_raw(&[0x30, 0x07, 0x00, 0x00, 0x03, 0x23, 0x00, 0x01, b'3'])
        .await;
}
