//! Request / response and other message properties pass through unchanged (MQTT 5
//! §3.3.2.3, §4.10).

use bytes::Bytes;
use gatehouse_protocol::PublishProperties;
use gatehouse_tests::raw::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn response_topic_correlation_data_content_type_and_user_properties_pass_through() {
    let b = ProtocolBroker::start().await;
    let mut responder = b.v5("rr-resp").await;
    responder.sub_ok(1, "rr/req", 1).await;
    let mut requester = b.v5("rr-req").await;
    requester.sub_ok(1, "rr/reply/me", 1).await;

    let user: Vec<(String, String)> = [
        ("z", "1"),
        ("a", "2"),
        ("z", "0"),
        ("", ""),
        ("ключ", "значение"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let request = PublishProperties {
        payload_format_indicator: Some(1),
        content_type: Some("application/json; charset=utf-8".into()),
        response_topic: Some("rr/reply/me".into()),
        correlation_data: Some(Bytes::from_static(&[0x00, 0xFF, 0x10, 0x00])),
        user_properties: user.clone(),
        ..Default::default()
    };
    requester
        .publish_props("rr/req", b"{\"q\":1}", 1, false, 1, request.clone())
        .await;
    requester.expect_raw(&puback_bytes(1)).await;

    let req = responder.expect_publish().await;
    responder.puback(req.packet_id.unwrap()).await;
    assert_eq!(
        req.properties, request,
        "every property unchanged, user properties in order"
    );
    assert_eq!(&req.payload[..], b"{\"q\":1}");

    // The responder answers on the response topic with the correlation data.
    let reply = PublishProperties {
        correlation_data: req.properties.correlation_data.clone(),
        ..Default::default()
    };
    responder
        .publish_props(
            req.properties.response_topic.as_deref().unwrap(),
            b"42",
            1,
            false,
            2,
            reply.clone(),
        )
        .await;
    responder.expect_raw(&puback_bytes(2)).await;
    let resp = requester.expect_publish().await;
    assert_eq!(resp.properties, reply);
    assert_eq!(&resp.payload[..], b"42");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_properties_on_the_wire_keep_their_order() {
    let b = ProtocolBroker::start().await;
    let mut s = b.v5("rr-raw-sub").await;
    s.sub_ok(1, "rr/raw", 0).await;
    let mut p = b.v5("rr-raw-pub").await;
    let props = Props::new().pair("b", "2").pair("a", "1").pair("b", "3");
    p.send(&publish_bytes(0, b"rr/raw", None, Some(&props), b"x"))
        .await;
    let mut expected_props = Vec::new();
    props.encode(&mut expected_props);
    let mut expected = Vec::new();
    mqtt_str(&mut expected, b"rr/raw");
    expected.extend(&expected_props);
    expected.push(b'x');
    s.expect_raw(&frame(0x30, &expected)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_response_topic_is_a_protocol_error() {
    let b = ProtocolBroker::start().await;
    let mut c = b.v5("rr-bad").await;
    let props = Props::new().str(prop::RESPONSE_TOPIC, "rr/+/wild");
    c.send(&publish_bytes(0, b"rr/bad", None, Some(&props), b"x"))
        .await;
    c.expect_disconnect(0x82).await;
}
