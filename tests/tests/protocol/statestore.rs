//! The state store over MQTT (statestore.md): every test vector of §8 byte for byte, the
//! response envelope (§1.3), malformed RESP3, and the wiring choices (QoS 0 requests,
//! retransmissions, requests not routed to subscribers, notifications delivered only to
//! the watcher). RESP3 payloads are written and compared as raw bytes.

use std::time::Duration;

use gatehouse_tests::raw::{ProtocolBroker, QUIET};
use gatehouse_tests::state_store::{
    hex, hlc, now_ms, ts_now, StateStoreClient, NOTIFY_PREFIX, REQUEST_TOPIC,
};

async fn client(b: &ProtocolBroker, id: &str) -> StateStoreClient {
    StateStoreClient::start(b.v5(id).await, id).await
}

fn parse_hlc(s: &str) -> (u64, u64, String) {
    let parts: Vec<&str> = s.split(':').collect();
    assert_eq!(parts.len(), 3, "HLC {s}");
    (
        parts[0].parse().expect("wall ms"),
        parts[1].parse().expect("counter"),
        parts[2].to_owned(),
    )
}

const SET_K_V: &[u8] = b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n";
const GET_K: &[u8] = b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n";
const DEL_K: &[u8] = b"*2\r\n$3\r\nDEL\r\n$1\r\nk\r\n";

/// Vector 1 and 16: SET then GET return the same version; every reply has `__stat=200`,
/// the echoed correlation data and the octet-stream content type, at QoS 1.
#[tokio::test]
async fn vector_01_set_then_get_and_the_envelope() {
    let b = ProtocolBroker::start().await;
    let mut c = client(&b, "v01").await;
    let (id, corr) = c.send(SET_K_V, &[("__ts", &ts_now())]).await;
    let set = c.await_response(id, &corr).await;
    assert_eq!(&set.payload[..], b"+OK\r\n");
    assert_eq!(set.prop("__stat"), Some("200"));
    assert_eq!(set.correlation_data.as_deref(), Some(&corr[..]));
    assert_eq!(
        set.content_type.as_deref(),
        Some("application/octet-stream")
    );
    assert_eq!(set.qos as u8, 1);
    let v1 = set.prop("__ts").expect("SET +OK carries __ts").to_owned();
    let (_, _, node) = parse_hlc(&v1);
    assert!(!node.is_empty() && !node.contains(':'));
    let get = c.call(GET_K, &[]).await;
    assert_eq!(&get.payload[..], b"$1\r\nv\r\n");
    assert_eq!(get.prop("__ts"), Some(v1.as_str()));
    assert_eq!(get.prop("__stat"), Some("200"));
}

/// Vector 2 and 3: timestamps.
#[tokio::test]
async fn vector_02_03_missing_malformed_and_future_timestamps() {
    let b = ProtocolBroker::start().await;
    let mut c = client(&b, "v02").await;
    let r = c.request(SET_K_V, &[]).await;
    assert_eq!(&r.payload[..], b"-ERR missing timestamp\r\n");
    assert_eq!(r.prop("__stat"), Some("200"));
    let r = c.request(SET_K_V, &[("__ts", "abc")]).await;
    assert_eq!(&r.payload[..], b"-ERR malformed timestamp\r\n");
    let ahead = hlc(now_ms() + 120_000, 0, "c");
    let r = c.request(SET_K_V, &[("__ts", &ahead)]).await;
    assert_eq!(
        r.text(),
        "-ERR the request timestamp is too far in the future; ensure that the client and broker system clocks are synchronized\r\n"
    );
    // None of them stored anything.
    assert_eq!(&c.call(GET_K, &[]).await.payload[..], b"$-1\r\n");
}

/// Vector 4 and 5: NX and NEX.
#[tokio::test]
async fn vector_04_05_nx_and_nex() {
    let b = ProtocolBroker::start().await;
    let mut c = client(&b, "v04").await;
    let nx = b"*4\r\n$3\r\nSET\r\n$1\r\nk\r\n$2\r\nv1\r\n$2\r\nNX\r\n";
    let first = c.call(nx, &[]).await;
    assert_eq!(&first.payload[..], b"+OK\r\n");
    let stored = first.prop("__ts").unwrap().to_owned();
    let again = c.call(nx, &[]).await;
    assert_eq!(&again.payload[..], b":-1\r\n");
    assert_eq!(
        again.prop("__ts"),
        Some(stored.as_str()),
        ":-1 carries the stored version"
    );
    let nex_other = c
        .call(
            b"*4\r\n$3\r\nSET\r\n$1\r\nk\r\n$2\r\nv2\r\n$3\r\nNEX\r\n",
            &[],
        )
        .await;
    assert_eq!(&nex_other.payload[..], b":-1\r\n");
    let renew = c
        .call(
            b"*6\r\n$3\r\nSET\r\n$1\r\nk\r\n$2\r\nv1\r\n$3\r\nNEX\r\n$2\r\nPX\r\n$4\r\n1000\r\n",
            &[],
        )
        .await;
    assert_eq!(&renew.payload[..], b"+OK\r\n");
    let newer = renew.prop("__ts").unwrap();
    assert!(parse_hlc(newer) > parse_hlc(&stored), "{newer} > {stored}");
}

/// Vector 6 and 7: VDEL, DEL and GET of missing keys.
#[tokio::test]
async fn vector_06_07_vdel_del_and_missing_keys() {
    let b = ProtocolBroker::start().await;
    let mut c = client(&b, "v06").await;
    c.call(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$2\r\nv1\r\n", &[])
        .await;
    let wrong = c
        .call(b"*3\r\n$4\r\nVDEL\r\n$1\r\nk\r\n$5\r\nwrong\r\n", &[])
        .await;
    assert_eq!(&wrong.payload[..], b":-1\r\n");
    let right = c
        .call(b"*3\r\n$4\r\nVDEL\r\n$1\r\nk\r\n$2\r\nv1\r\n", &[])
        .await;
    assert_eq!(&right.payload[..], b":1\r\n");
    let again = c
        .call(b"*3\r\n$4\r\nVDEL\r\n$1\r\nk\r\n$2\r\nv1\r\n", &[])
        .await;
    assert_eq!(&again.payload[..], b":0\r\n");
    let del = c.call(b"*2\r\n$3\r\nDEL\r\n$7\r\nmissing\r\n", &[]).await;
    assert_eq!(&del.payload[..], b":0\r\n");
    let get = c.call(b"*2\r\n$3\r\nGET\r\n$7\r\nmissing\r\n", &[]).await;
    assert_eq!(&get.payload[..], b"$-1\r\n");
    assert_eq!(get.prop("__ts"), None, "a GET miss carries no __ts");
}

/// Vector 8: fencing tokens.
#[tokio::test]
async fn vector_08_fencing() {
    let b = ProtocolBroker::start().await;
    let mut c = client(&b, "v08").await;
    let f = hlc(now_ms(), 5, "lock");
    let lower = hlc(now_ms().saturating_sub(10_000), 0, "lock");
    let higher = hlc(now_ms() + 1, 0, "lock");
    assert_eq!(
        &c.call(SET_K_V, &[("__ft", &f)]).await.payload[..],
        b"+OK\r\n"
    );
    assert_eq!(
        c.call(SET_K_V, &[]).await.text(),
        "-ERR a fencing token is required for this request\r\n"
    );
    assert_eq!(
        c.call(SET_K_V, &[("__ft", &lower)]).await.text(),
        "-ERR the request fencing token is a lower version than the fencing token protecting the resource\r\n"
    );
    assert_eq!(
        c.call(DEL_K, &[]).await.text(),
        "-ERR a fencing token is required for this request\r\n"
    );
    assert_eq!(
        &c.call(GET_K, &[]).await.payload[..],
        b"$1\r\nv\r\n",
        "GET needs no token"
    );
    assert_eq!(
        &c.call(DEL_K, &[("__ft", &higher)]).await.payload[..],
        b":1\r\n"
    );
    // The token went with the key.
    assert_eq!(&c.call(SET_K_V, &[]).await.payload[..], b"+OK\r\n");
}

/// Vector 9: a fencing token too far ahead, on a new key.
#[tokio::test]
async fn vector_09_fencing_token_too_far_ahead() {
    let b = ProtocolBroker::start().await;
    let mut c = client(&b, "v09").await;
    let ten_years = hlc(now_ms() + 10 * 365 * 86_400_000, 0, "lock");
    let r = c
        .call(
            b"*3\r\n$3\r\nSET\r\n$6\r\nnewkey\r\n$1\r\nv\r\n",
            &[("__ft", &ten_years)],
        )
        .await;
    assert_eq!(
        r.text(),
        "-ERR the request fencing token timestamp is too far in the future; ensure that the client and broker system clocks are synchronized\r\n"
    );
}

/// Vector 10 and 11, and malformed RESP3: a clear `-ERR`, no disconnect, the store unharmed.
#[tokio::test]
async fn vector_10_11_and_malformed_payloads() {
    let b = ProtocolBroker::start().await;
    let mut c = client(&b, "v10").await;
    let cases: &[(&[u8], &str)] = &[
        (
            b"*2\r\n$3\r\nGET\r\n$0\r\n\r\n",
            "-ERR the key length is zero\r\n",
        ),
        (
            b"*2\r\n$3\r\nFOO\r\n$1\r\nk\r\n",
            "-ERR unknown command\r\n",
        ),
        (b"*1\r\n$3\r\nGET\r\n", "-ERR wrong number of arguments\r\n"),
        (b"hello", "-ERR syntax error\r\n"),
        (b"", "-ERR syntax error\r\n"),
        (b"*2\r\n$3\r\nGET\r\n$5\r\nk\r\n", "-ERR syntax error\r\n"),
        (
            b"*2\r\n$3\r\nGET\r\n$99999999999999999999\r\nk\r\n",
            "-ERR syntax error\r\n",
        ),
        (b"*-1\r\n", "-ERR syntax error\r\n"),
        (
            b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\nTRAILING",
            "-ERR syntax error\r\n",
        ),
        (b"*2\r\n:3\r\n$1\r\nk\r\n", "-ERR syntax error\r\n"),
        (
            b"*4\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n$7\r\nKEEPTTL\r\n",
            "-ERR syntax error\r\n",
        ),
        (
            b"*5\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n$2\r\nPX\r\n$2\r\n-5\r\n",
            "-ERR syntax error\r\n",
        ),
        (
            b"*5\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n$2\r\nNX\r\n$3\r\nNEX\r\n",
            "-ERR syntax error\r\n",
        ),
        (&[0xff; 64], "-ERR syntax error\r\n"),
    ];
    for (payload, expected) in cases {
        let r = c.call(payload, &[]).await;
        assert_eq!(
            r.text(),
            *expected,
            "payload {:?}",
            String::from_utf8_lossy(payload)
        );
        assert_eq!(r.prop("__stat"), Some("200"));
    }
    // Binary-safe keys and values (CRLF and NUL inside), and the connection still serves.
    let set = c
        .call(b"*3\r\n$3\r\nSET\r\n$3\r\n\r\n\0\r\n$4\r\n\0\r\nx\r\n", &[])
        .await;
    assert_eq!(&set.payload[..], b"+OK\r\n");
    let get = c.call(b"*2\r\n$3\r\nGET\r\n$3\r\n\r\n\0\r\n", &[]).await;
    assert_eq!(&get.payload[..], b"$4\r\n\0\r\nx\r\n");
}

/// Vector 12: KEYNOTIFY, the notification topic and payloads, STOP twice.
#[tokio::test]
async fn vector_12_keynotify() {
    let b = ProtocolBroker::start().await;
    let mut c = client(&b, "client-id1").await;
    let mut writer = client(&b, "v12-writer").await;
    let r = c
        .call(b"*2\r\n$9\r\nKEYNOTIFY\r\n$7\r\nSOMEKEY\r\n", &[])
        .await;
    assert_eq!(&r.payload[..], b"+OK\r\n");
    let set = writer
        .call(b"*3\r\n$3\r\nSET\r\n$7\r\nSOMEKEY\r\n$3\r\nabc\r\n", &[])
        .await;
    let n = c.notification().await;
    assert_eq!(
        n.topic,
        "clients/statestore/v1/FA9AE35F-2F64-47CD-9BFF-08E2B32A0FE8/636C69656E742D696431/command/notify/534F4D454B4559"
    );
    assert_eq!(
        &n.payload[..],
        b"*4\r\n$6\r\nNOTIFY\r\n$3\r\nSET\r\n$5\r\nVALUE\r\n$3\r\nabc\r\n"
    );
    assert_eq!(
        n.prop("__ts"),
        set.prop("__ts"),
        "the notification carries the new version"
    );
    assert_eq!(n.qos as u8, 1);
    let del = writer
        .call(b"*2\r\n$3\r\nDEL\r\n$7\r\nSOMEKEY\r\n", &[])
        .await;
    let n = c.notification().await;
    assert_eq!(&n.payload[..], b"*2\r\n$6\r\nNOTIFY\r\n$6\r\nDELETE\r\n");
    assert_eq!(n.prop("__ts"), del.prop("__ts"));
    let stop = b"*3\r\n$9\r\nKEYNOTIFY\r\n$7\r\nSOMEKEY\r\n$4\r\nSTOP\r\n";
    assert_eq!(&c.call(stop, &[]).await.payload[..], b"+OK\r\n");
    assert_eq!(&c.call(stop, &[]).await.payload[..], b":0\r\n");
    writer
        .call(b"*3\r\n$3\r\nSET\r\n$7\r\nSOMEKEY\r\n$3\r\nxyz\r\n", &[])
        .await;
    c.no_notification(QUIET).await;
}

/// Vector 13: PX expiry produces a SET then (about 1 s later) a DELETE notification.
#[tokio::test]
async fn vector_13_expiry_notifies_delete() {
    let b = ProtocolBroker::start().await;
    let mut c = client(&b, "v13").await;
    c.call(b"*2\r\n$9\r\nKEYNOTIFY\r\n$1\r\nk\r\n", &[]).await;
    let started = std::time::Instant::now();
    c.call(
        b"*5\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n$2\r\nPX\r\n$4\r\n1000\r\n",
        &[],
    )
    .await;
    let set = c.notification().await;
    assert!(set.payload.starts_with(b"*4\r\n$6\r\nNOTIFY\r\n$3\r\nSET"));
    let del = c
        .notification_within(Duration::from_secs(5))
        .await
        .expect("DELETE on expiry");
    assert_eq!(&del.payload[..], b"*2\r\n$6\r\nNOTIFY\r\n$6\r\nDELETE\r\n");
    assert!(del.prop("__ts").is_some());
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(900),
        "expired after {waited:?}"
    );
    assert_eq!(&c.call(GET_K, &[]).await.payload[..], b"$-1\r\n");
}

/// Vector 14: a disconnect drops the registrations.
#[tokio::test]
async fn vector_14_disconnect_drops_registrations() {
    let b = ProtocolBroker::start().await;
    let mut writer = client(&b, "v14-writer").await;
    let mut c = client(&b, "v14").await;
    c.call(b"*2\r\n$9\r\nKEYNOTIFY\r\n$1\r\nk\r\n", &[]).await;
    c.raw.disconnect().await;
    let mut c = client(&b, "v14").await;
    writer.call(SET_K_V, &[]).await;
    c.no_notification(QUIET).await;
    c.call(b"*2\r\n$9\r\nKEYNOTIFY\r\n$1\r\nk\r\n", &[]).await;
    writer.call(SET_K_V, &[]).await;
    assert!(c
        .notification()
        .await
        .payload
        .starts_with(b"*4\r\n$6\r\nNOTIFY"));
}

/// Vector 15: a forbidden response topic closes the connection (DISCONNECT 0x82).
#[tokio::test]
async fn vector_15_forbidden_response_topics_disconnect() {
    let b = ProtocolBroker::start().await;
    for topic in [
        REQUEST_TOPIC.to_owned(),
        format!("{NOTIFY_PREFIX}/{}/command/notify/x", hex(b"v15")),
    ] {
        let mut c = client(&b, "v15").await;
        c.send_with(GET_K, &[], |p| p.response_topic = Some(topic.clone()))
            .await;
        c.raw.expect_disconnect(0x82).await;
    }
}

/// §6.5: another major protocol version gets 505 and an empty payload.
#[tokio::test]
async fn unsupported_protocol_version_gets_505() {
    let b = ProtocolBroker::start().await;
    let mut c = client(&b, "ver").await;
    let r = c.call(GET_K, &[("__protVer", "2.0")]).await;
    assert!(r.payload.is_empty());
    assert_eq!(r.prop("__stat"), Some("505"));
    assert_eq!(r.prop("__supProtMajVer"), Some("1"));
    assert_eq!(r.prop("__requestProtVer"), Some("2.0"));
    let ok = c.call(GET_K, &[("__protVer", "1.0")]).await;
    assert_eq!(ok.prop("__stat"), Some("200"));
    assert_eq!(ok.prop("__protVer"), Some("1.0"));
}

/// §6.6: a retransmitted request (DUP, same correlation data) is answered from the
/// cache, not run again: a second `SET NX` would otherwise answer `:-1`.
#[tokio::test]
async fn retransmitted_request_is_answered_from_the_cache() {
    let b = ProtocolBroker::start().await;
    let mut c = client(&b, "dup").await;
    let nx = b"*4\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n$2\r\nNX\r\n";
    let ts = ts_now();
    let (id, corr) = c.send(nx, &[("__ts", &ts)]).await;
    let first = c.await_response(id, &corr).await;
    assert_eq!(&first.payload[..], b"+OK\r\n");
    // The same PUBLISH again with DUP set (as after a reconnect).
    let mut p = gatehouse_protocol::Publish {
        dup: true,
        qos: gatehouse_protocol::QoS::AtLeastOnce,
        retain: false,
        topic: REQUEST_TOPIC.into(),
        packet_id: Some(gatehouse_tests::raw::pid(id)),
        properties: Default::default(),
        payload: bytes::Bytes::from_static(nx),
    };
    p.properties.response_topic = Some(c.response_topic.clone());
    p.properties.correlation_data = Some(corr.clone());
    p.properties.user_properties = vec![("__ts".into(), ts.clone())];
    c.raw
        .send_packet(&gatehouse_protocol::Packet::Publish(p))
        .await;
    let again = c.await_response(id, &corr).await;
    assert_eq!(&again.payload[..], b"+OK\r\n", "answered from the cache");
    assert_eq!(again.prop("__ts"), first.prop("__ts"));
    // A new request (new correlation data) runs: NX now fails.
    assert_eq!(&c.call(nx, &[]).await.payload[..], b":-1\r\n");
}

/// QoS 0 requests are not served; requests are not routed to other subscribers; and
/// notifications reach only the watcher, not a wildcard subscriber of the notification
/// prefix. (Responses are ordinary PUBLISHes to the response topic.)
#[tokio::test]
async fn requests_and_notifications_stay_private() {
    let b = ProtocolBroker::start().await;
    let mut spy = b.v5("spy").await;
    spy.sub_ok(1, "statestore/#", 1).await;
    spy.sub_ok(2, "clients/statestore/#", 1).await;
    let mut c = client(&b, "private").await;
    c.call(b"*2\r\n$9\r\nKEYNOTIFY\r\n$1\r\nk\r\n", &[]).await;
    c.call(SET_K_V, &[]).await;
    c.notification().await;
    spy.expect_nothing(QUIET).await;
    // QoS 0: nothing stored, nothing answered.
    let props = gatehouse_protocol::PublishProperties {
        response_topic: Some(c.response_topic.clone()),
        correlation_data: Some(bytes::Bytes::from_static(b"0123456789abcdef")),
        user_properties: vec![("__ts".into(), ts_now())],
        ..Default::default()
    };
    c.raw
        .publish_props(
            REQUEST_TOPIC,
            b"*3\r\n$3\r\nSET\r\n$2\r\nq0\r\n$1\r\nv\r\n",
            0,
            false,
            0,
            props,
        )
        .await;
    c.raw.expect_nothing(QUIET).await;
    assert_eq!(
        &c.call(b"*2\r\n$3\r\nGET\r\n$2\r\nq0\r\n", &[])
            .await
            .payload[..],
        b"$-1\r\n"
    );
}

/// §6.3: the key quota (`broker.stateStoreKeyQuota`) refuses new keys, not updates.
#[tokio::test]
async fn key_quota_refuses_new_keys() {
    let b = ProtocolBroker::with_limits("stateStoreKeyQuota: 2").await;
    let mut c = client(&b, "quota").await;
    for key in ["a", "b"] {
        let payload = format!("*3\r\n$3\r\nSET\r\n$1\r\n{key}\r\n$1\r\nv\r\n");
        assert_eq!(
            &c.call(payload.as_bytes(), &[]).await.payload[..],
            b"+OK\r\n"
        );
    }
    let third = c
        .call(b"*3\r\n$3\r\nSET\r\n$1\r\nc\r\n$1\r\nv\r\n", &[])
        .await;
    assert_eq!(third.text(), "-ERR the quota has been exceeded\r\n");
    let update = c
        .call(b"*3\r\n$3\r\nSET\r\n$1\r\na\r\n$2\r\nv2\r\n", &[])
        .await;
    assert_eq!(&update.payload[..], b"+OK\r\n");
    c.call(b"*2\r\n$3\r\nDEL\r\n$1\r\nb\r\n", &[]).await;
    assert_eq!(
        &c.call(b"*3\r\n$3\r\nSET\r\n$1\r\nc\r\n$1\r\nv\r\n", &[])
            .await
            .payload[..],
        b"+OK\r\n"
    );
}

/// SCAN (§10, unreleased): pages of matching keys.
#[tokio::test]
async fn scan_returns_matching_keys() {
    let b = ProtocolBroker::start().await;
    let mut c = client(&b, "scan").await;
    for key in ["app/a", "app/b", "other"] {
        let payload = format!("*3\r\n$3\r\nSET\r\n${}\r\n{key}\r\n$1\r\nv\r\n", key.len());
        c.call(payload.as_bytes(), &[]).await;
    }
    let r = c.call(b"*2\r\n$4\r\nSCAN\r\n$5\r\napp/*\r\n", &[]).await;
    assert_eq!(
        &r.payload[..],
        b"*1\r\n*2\r\n$5\r\napp/a\r\n$5\r\napp/b\r\n"
    );
}
