//! Per-connection bounds on what topic names a client makes the broker hold (issue 13,
//! security.md invariant 6), each attacked end to end over a TLS port with an X.509 client
//! certificate made in the test:
//!
//! - client→server topic aliases: 1024 aliases × 64 KiB topics were 64 MiB per
//!   connection; now 64 KiB of topics, past which DISCONNECT 0x97 Quota exceeded;
//! - server→client topic aliases: as many as the client's Topic Alias Maximum (up to
//!   65535, each with its topic); now at most 1024 aliases and 64 KiB of topics, then
//!   full topic names (always legal);
//! - subscription filter bytes per client: `maxSubscriptionsPerClient` (1000) filters of
//!   up to 64 KiB were 64 MiB; now `maxSubscriptionBytesPerClient` (default 256 KiB), past
//!   which a filter gets SUBACK 0x97 (3.1.1: 0x80).

use std::collections::HashMap;

use gatehouse_protocol::{Packet, Publish};
use gatehouse_tests::raw::{
    frame, mqtt_str, opts, pid, publish_bytes, ConnectBuilder, Props, RawClient, QUIET,
};

use crate::bounds_transport::{BoundsBroker, Transport};

/// MQTT 5 property identifier of Topic Alias.
const TOPIC_ALIAS: u8 = 0x23;

/// A v5 QoS 0 PUBLISH setting (or, with an empty topic, using) `alias`.
fn aliased_publish(topic: &str, alias: u16, payload: &[u8]) -> Vec<u8> {
    publish_bytes(
        0x00,
        topic.as_bytes(),
        None,
        Some(&Props::new().u16(TOPIC_ALIAS, alias)),
        payload,
    )
}

/// A topic of exactly `len` bytes under `prefix`.
fn long_topic(prefix: &str, i: usize, len: usize) -> String {
    let head = format!("{prefix}/{i:05}/");
    assert!(head.len() < len);
    format!("{head}{}", "x".repeat(len - head.len()))
}

/// The issue's attack on the client→server alias table, scaled down: distinct 8000-byte
/// topics under aliases 1, 2, 3, ... Before the bound every one was stored (up to 1024 ×
/// 64 KiB); now the ninth would pass 64 KiB and the client is disconnected with 0x97.
/// Re-using an alias number for ever new long topics is fine (a replacement frees the
/// bytes of the topic it replaces), and a topic of the largest legal size can be aliased.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inbound_alias_table_is_bounded_in_topic_bytes() {
    let b = BoundsBroker::start(Transport::Tls, "alias-in", "").await;
    let mut sub = b.v5("alias-in-sub").await;
    sub.sub_ok(1, "alias/in/#", 0).await;

    // Ordinary use: set an alias, then publish by it alone.
    let mut client = b.v5("alias-in-client").await;
    client.send(&aliased_publish("alias/in/a", 1, b"set")).await;
    client.send(&aliased_publish("", 1, b"by-alias")).await;
    for payload in [&b"set"[..], b"by-alias"] {
        let p = sub.expect_publish().await;
        assert_eq!((p.topic.as_str(), &p.payload[..]), ("alias/in/a", payload));
    }
    // One alias number re-used for 20 topics of 60000 bytes: each replaces the last.
    for i in 0..20 {
        client
            .send(&aliased_publish(&long_topic("big", i, 60_000), 2, b"r"))
            .await;
    }
    // A topic of the largest legal size under a third alias once the second is short.
    client.send(&aliased_publish("alias/in/b", 2, b"s")).await;
    client
        .send(&aliased_publish(
            &long_topic("max", 0, 65_535 - 20),
            3,
            b"m",
        ))
        .await;
    client.ping().await;
    let p = sub.expect_publish().await;
    assert_eq!(p.topic, "alias/in/b");
    client.send(&aliased_publish("", 1, b"still")).await;
    assert_eq!(&sub.expect_publish().await.payload[..], b"still");
    client.disconnect().await;

    // The attack: new aliases for distinct 8000-byte topics, in one burst.
    let mut attacker = b.v5("alias-in-attacker").await;
    let mut burst = Vec::new();
    for alias in 1..=16u16 {
        burst.extend(aliased_publish(
            &long_topic("flood", usize::from(alias), 8000),
            alias,
            b"x",
        ));
    }
    attacker.send(&burst).await;
    // 0x97 Quota exceeded: the ninth (72000 bytes of topics) is past 64 KiB.
    attacker.expect_disconnect(0x97).await;

    // Others are not affected.
    let mut other = b.v5("alias-in-other").await;
    other.send(&aliased_publish("alias/in/c", 1, b"ok")).await;
    assert_eq!(sub.expect_publish().await.topic, "alias/in/c");
    sub.expect_nothing(QUIET).await;
}

/// What a subscriber saw of the server's topic aliases.
#[derive(Default)]
struct AliasView {
    /// alias → topic, as the client must keep it.
    map: HashMap<u16, String>,
    /// Aliases the server set (a PUBLISH with a topic and an alias).
    assigned: usize,
    /// Bytes of the topics it set aliases for.
    assigned_bytes: usize,
    /// PUBLISHes with the full topic and no alias.
    unaliased: usize,
}

impl AliasView {
    /// The topic `p` is for, checking the alias rules a client relies on.
    fn resolve(&mut self, p: &Publish) -> String {
        match (p.topic.is_empty(), p.properties.topic_alias) {
            (false, None) => {
                self.unaliased += 1;
                p.topic.clone()
            }
            (false, Some(alias)) => {
                let old = self.map.insert(alias, p.topic.clone());
                assert!(old.is_none(), "alias {alias} re-assigned");
                self.assigned += 1;
                self.assigned_bytes += p.topic.len();
                p.topic.clone()
            }
            (true, Some(alias)) => self
                .map
                .get(&alias)
                .unwrap_or_else(|| panic!("alias {alias} used before it was set"))
                .clone(),
            (true, None) => panic!("a PUBLISH without topic or alias"),
        }
    }
}

/// Publish `topics` (QoS 0, payload = the topic's index) in rounds of 100 and read them
/// at `sub`, checking each resolves to its topic.
async fn deliver(
    publisher: &mut RawClient,
    sub: &mut RawClient,
    view: &mut AliasView,
    topics: &[String],
) {
    for (round, chunk) in topics.chunks(100).enumerate() {
        for (j, t) in chunk.iter().enumerate() {
            let i = round * 100 + j;
            publisher
                .send(&publish_bytes(
                    0x00,
                    t.as_bytes(),
                    None,
                    Some(&Props::new()),
                    i.to_string().as_bytes(),
                ))
                .await;
        }
        publisher.ping().await;
        for (j, t) in chunk.iter().enumerate() {
            let p = sub.expect_publish().await;
            assert_eq!(p.payload, (round * 100 + j).to_string().as_bytes());
            assert_eq!(&view.resolve(&p), t);
        }
    }
}

/// A subscriber announcing Topic Alias Maximum 65535 used to get an alias (and make the
/// broker keep the topic) for every distinct topic up to 65535 of them. Now the broker
/// assigns at most 1024 aliases and 64 KiB of topics per connection and sends the rest
/// with their full topic names; aliases already assigned keep working.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbound_aliases_are_bounded_in_count_and_bytes() {
    let b = BoundsBroker::start(Transport::Tls, "alias-out", "").await;
    let mut publisher = b.v5("alias-out-pub").await;

    // Bytes: 100 distinct topics of 1000 bytes (100,000 bytes of topics).
    let (mut long_sub, _) = b
        .v5_with(ConnectBuilder::new("alias-out-long").topic_alias_maximum(u16::MAX))
        .await;
    long_sub.sub_ok(1, "aout/long/#", 0).await;
    let long: Vec<String> = (0..100).map(|i| long_topic("aout/long", i, 1000)).collect();
    let mut view = AliasView::default();
    deliver(&mut publisher, &mut long_sub, &mut view, &long).await;
    assert!(
        view.assigned_bytes <= 64 * 1024,
        "{} aliases for {} bytes of topics",
        view.assigned,
        view.assigned_bytes
    );
    assert_eq!(
        view.assigned, 65,
        "as many 1000-byte topics as fit in 64 KiB"
    );
    assert_eq!(view.unaliased, 35);
    // Again: the aliased ones come by alias alone, the others in full.
    let mut again = AliasView {
        map: view.map.clone(),
        ..Default::default()
    };
    deliver(&mut publisher, &mut long_sub, &mut again, &long).await;
    assert_eq!((again.assigned, again.unaliased), (0, 35));

    // Count: 1500 distinct short topics.
    let (mut short_sub, _) = b
        .v5_with(ConnectBuilder::new("alias-out-short").topic_alias_maximum(u16::MAX))
        .await;
    short_sub.sub_ok(1, "aout/short/#", 0).await;
    let short: Vec<String> = (0..1500).map(|i| format!("aout/short/{i}")).collect();
    let mut view = AliasView::default();
    deliver(&mut publisher, &mut short_sub, &mut view, &short).await;
    assert_eq!(view.assigned, 1024, "at most 1024 aliases per connection");
    assert_eq!(view.unaliased, 1500 - 1024);

    // A client's own lower maximum still applies.
    let (mut small_sub, _) = b
        .v5_with(ConnectBuilder::new("alias-out-small").topic_alias_maximum(3))
        .await;
    small_sub.sub_ok(1, "aout/short/#", 0).await;
    let mut view = AliasView::default();
    deliver(&mut publisher, &mut small_sub, &mut view, &short[..10]).await;
    assert_eq!((view.assigned, view.unaliased), (3, 7));
}

/// A v5 SUBSCRIBE of `filters` at QoS 1, written by hand.
fn subscribe_filters(packet_id: u16, filters: &[String]) -> Packet {
    Packet::Subscribe(gatehouse_protocol::Subscribe {
        packet_id: pid(packet_id),
        subscription_identifier: None,
        user_properties: Vec::new(),
        filters: filters.iter().map(|f| (f.clone(), opts(1))).collect(),
    })
}

async fn suback_codes(c: &mut RawClient) -> Vec<u8> {
    match c.expect_packet().await {
        Packet::SubAck(s) => s.reason_codes.iter().map(|r| r.0).collect(),
        other => panic!("expected SUBACK, got {other:?}"),
    }
}

/// The attack with the default bounds: filters of 32 KiB, ten of them in one SUBSCRIBE.
/// Before the byte bound all ten were granted (and up to 1000 of up to 64 KiB could be);
/// now the eight that fit in 256 KiB are, and the rest get 0x97 and are not subscribed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscription_filter_bytes_past_the_default_bound_get_quota_exceeded() {
    let b = BoundsBroker::start(Transport::Tls, "sub-bytes", "").await;
    let mut attacker = b.v5("sub-bytes-attacker").await;
    let filters: Vec<String> = (0..10).map(|i| long_topic("sb", i, 32 * 1024)).collect();
    attacker.send_packet(&subscribe_filters(1, &filters)).await;
    let mut expected = vec![1u8; 8];
    expected.extend([0x97, 0x97]);
    assert_eq!(suback_codes(&mut attacker).await, expected);
    // Re-subscribing to a held filter is a replacement and passes; a new short one not.
    attacker
        .send_packet(&subscribe_filters(2, &[filters[0].clone(), "sb/x".into()]))
        .await;
    assert_eq!(suback_codes(&mut attacker).await, [1, 0x97]);

    // Nothing is delivered for a refused filter, and the granted ones work.
    let mut publisher = b.v5("sub-bytes-pub").await;
    publisher
        .publish_q1(&filters[9], b"refused", false, 1)
        .await;
    publisher
        .publish_q1(&filters[7], b"granted", false, 2)
        .await;
    let p = attacker.expect_publish().await;
    assert_eq!(&p.payload[..], b"granted");
    attacker.expect_nothing(QUIET).await;
}

fn v311_subscribe(packet_id: u16, filter: &str) -> Vec<u8> {
    let mut body = packet_id.to_be_bytes().to_vec();
    mqtt_str(&mut body, filter.as_bytes());
    body.push(0);
    frame(0x82, &body)
}

/// `maxSubscriptionBytesPerClient: 40`: the bound counts the filters as written (shared
/// subscriptions with their `$share/<group>/`), UNSUBSCRIBE makes room, each client has
/// its own budget, 3.1.1 gets 0x80, and a reload applies at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscription_filter_bytes_follow_the_configured_bound() {
    let b = BoundsBroker::start(
        Transport::Tls,
        "sub-bytes-cfg",
        "maxSubscriptionBytesPerClient: 40",
    )
    .await;
    let mut c = b.v5("sub-bytes-cfg").await;
    // 15 + 15 bytes, then a 14-byte shared subscription that does not fit (44 > 40).
    let f = |s: &str| s.to_string();
    c.send_packet(&subscribe_filters(
        1,
        &[
            f("sbc/aaaaaaaaaaa"),
            f("sbc/bbbbbbbbbbb"),
            f("$share/g/sbc/c"),
        ],
    ))
    .await;
    assert_eq!(suback_codes(&mut c).await, [1, 1, 0x97]);
    // 10 more bytes fit exactly (40).
    c.send_packet(&subscribe_filters(2, &[f("sbc/dddddd")]))
        .await;
    assert_eq!(suback_codes(&mut c).await, [1]);
    c.send_packet(&subscribe_filters(3, &[f("sbc/e")])).await;
    assert_eq!(suback_codes(&mut c).await, [0x97]);
    // Room again after an UNSUBSCRIBE (15 + 10 + 14 = 39).
    c.unsubscribe(4, "sbc/aaaaaaaaaaa").await;
    c.send_packet(&subscribe_filters(5, &[f("$share/g/sbc/c")]))
        .await;
    assert_eq!(suback_codes(&mut c).await, [1]);

    // Another client has its own budget; 3.1.1 has one failure code, 0x80.
    let mut old = b.v311("sub-bytes-311").await;
    old.send(&v311_subscribe(1, "sbc/0123456789012345678901234567890"))
        .await;
    old.expect_raw(&[0x90, 0x03, 0x00, 0x01, 0x00]).await;
    old.send(&v311_subscribe(2, "sbc/0123456789")).await;
    old.expect_raw(&[0x90, 0x03, 0x00, 0x02, 0x80]).await;

    // A reload lowers the bound for the next SUBSCRIBE of connected clients too.
    let x509 = b.x509.as_ref().expect("TLS");
    let yaml =
        crate::bounds_transport::bounds_yaml(Some(x509), "maxSubscriptionBytesPerClient: 20");
    let loaded = gatehouse_config::load_str(&yaml, "reload.yaml").expect("valid");
    let done = b
        .broker
        .server
        .reloader()
        .apply(loaded.config)
        .expect("reload");
    assert!(done.limits);
    let mut fresh = b.v5("sub-bytes-fresh").await;
    fresh
        .send_packet(&subscribe_filters(1, &[f("sbc/01234567890123456")]))
        .await;
    assert_eq!(suback_codes(&mut fresh).await, [0x97]);
    fresh
        .send_packet(&subscribe_filters(2, &[f("sbc/012345")]))
        .await;
    assert_eq!(suback_codes(&mut fresh).await, [1]);
    // One byte would still fit under 40 (39 held), not under 20.
    c.send_packet(&subscribe_filters(6, &[f("s")])).await;
    assert_eq!(suback_codes(&mut c).await, [0x97]);
}
