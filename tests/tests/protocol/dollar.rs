//! Topics beginning with `$` are not matched by filters starting with a wildcard
//! (MQTT 5 §4.7.2).

use gatehouse_tests::raw::*;

use crate::marker;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leading_wildcards_do_not_match_dollar_topics() {
    let b = ProtocolBroker::start().await;
    let mut hash = b.v5("dl-hash").await;
    hash.sub_ok(1, "#", 0).await;
    let mut plus = b.v5("dl-plus").await;
    plus.sub_ok(1, "+/x", 0).await;
    let mut sys = b.v5("dl-sys").await;
    sys.sub_ok(1, "$SYS/#", 0).await;
    let mut sys_plus = b.v5("dl-sys-plus").await;
    sys_plus.sub_ok(1, "$SYS/+", 0).await;
    let mut publ = b.v5("dl-pub").await;

    publ.publish("$SYS/x", b"dollar", 0, false, 0).await;
    assert_eq!(&sys.expect_publish().await.payload[..], b"dollar");
    assert_eq!(&sys_plus.expect_publish().await.payload[..], b"dollar");
    publ.ping().await;
    // `#` and `+/x` did not get it: their next message is a plain-topic marker.
    marker(&mut publ, &mut plus, "a/x").await;
    // `#` also got the marker a/x (published above) before this one.
    assert_eq!(hash.expect_publish().await.topic, "a/x");
    marker(&mut publ, &mut hash, "b").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retained_dollar_topics_are_not_sent_to_leading_wildcards() {
    let b = ProtocolBroker::start().await;
    let mut publ = b.v5("dlr-pub").await;
    publ.publish_q1("$SYS/dlr", b"r", true, 1).await;
    let mut hash = b.v5("dlr-hash").await;
    hash.sub_ok(1, "#", 0).await;
    marker(&mut publ, &mut hash, "dlr/m").await;
    let mut sys = b.v5("dlr-sys").await;
    sys.sub_ok(1, "$SYS/#", 0).await;
    assert_eq!(sys.expect_publish().await.topic, "$SYS/dlr");
}
