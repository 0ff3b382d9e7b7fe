//! Session state (MQTT 5 §3.1.2.4, §3.1.2.11.2, §4.1), takeover (§3.1.4) and the
//! Session Expiry Interval in DISCONNECT (§3.14.2.2.2).

use std::time::Duration;

use gatehouse_tests::raw::*;
use gatehouse_tests::wait;

use crate::marker;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clean_start_0_resumes_and_clean_start_1_discards_the_session() {
    let b = ProtocolBroker::start().await;
    let mut publ = b.v5("ss-pub").await;
    let (mut c, present) = b
        .connect_session(ConnectBuilder::new("ss-cs").session_expiry(60))
        .await;
    assert_eq!(present, 0, "a new session");
    c.sub_ok(1, "ss/cs", 1).await;
    c.disconnect().await;

    // Resume: session present 1 and the subscription is still there.
    let (mut c, present) = b
        .connect_session(
            ConnectBuilder::new("ss-cs")
                .clean_start(false)
                .session_expiry(60),
        )
        .await;
    assert_eq!(present, 1, "session resumed");
    publ.publish("ss/cs", b"kept", 0, false, 0).await;
    assert_eq!(&c.expect_publish().await.payload[..], b"kept");
    c.disconnect().await;

    // Clean start 1: session present 0 and no subscription left.
    let (mut c, present) = b
        .connect_session(ConnectBuilder::new("ss-cs").session_expiry(60))
        .await;
    assert_eq!(present, 0, "clean start discards the session");
    c.sub_ok(2, "ss/other", 0).await;
    publ.publish("ss/cs", b"gone", 0, false, 0).await;
    publ.ping().await;
    marker(&mut publ, &mut c, "ss/other").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_without_expiry_ends_at_disconnect() {
    let b = ProtocolBroker::start().await;
    let (mut c, _) = b.connect_session(ConnectBuilder::new("ss-zero")).await;
    c.sub_ok(1, "ss/zero", 0).await;
    c.disconnect().await;
    let (_c, present) = b
        .connect_session(ConnectBuilder::new("ss-zero").clean_start(false))
        .await;
    assert_eq!(present, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_expires_after_its_interval() {
    let b = ProtocolBroker::start().await;
    let (c, _) = b
        .connect_session(ConnectBuilder::new("ss-exp").session_expiry(1))
        .await;
    c.disconnect().await;
    // Gone once the broker has ended it (1 s after the disconnect), not after a guess.
    b.broker.wait_session_count(0).await;
    let (_c, present) = b
        .connect_session(
            ConnectBuilder::new("ss-exp")
                .clean_start(false)
                .session_expiry(1),
        )
        .await;
    assert_eq!(present, 0, "expired after 1 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_within_its_interval_is_resumed() {
    let b = ProtocolBroker::start().await;
    let (c, _) = b
        .connect_session(ConnectBuilder::new("ss-alive").session_expiry(3))
        .await;
    c.disconnect().await;
    wait::until(
        Duration::from_secs(5),
        "the broker saw ss-alive leave",
        || b.broker.server.open_connections() == 0,
    )
    .await;
    let (_c, present) = b
        .connect_session(
            ConnectBuilder::new("ss-alive")
                .clean_start(false)
                .session_expiry(3),
        )
        .await;
    assert_eq!(present, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_connection_with_the_same_id_takes_over_with_0x8e() {
    let b = ProtocolBroker::start().await;
    let mut publ = b.v5("ss-to-pub").await;
    let (mut first, _) = b
        .connect_session(ConnectBuilder::new("ss-to").session_expiry(60))
        .await;
    first.sub_ok(1, "ss/to", 1).await;
    let (mut second, present) = b
        .connect_session(
            ConnectBuilder::new("ss-to")
                .clean_start(false)
                .session_expiry(60),
        )
        .await;
    first.expect_disconnect(0x8E).await;
    assert_eq!(present, 1, "the taken-over session continues");
    publ.publish("ss/to", b"to second", 0, false, 0).await;
    assert_eq!(&second.expect_publish().await.payload[..], b"to second");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v311_takeover_closes_the_first_connection_without_disconnect() {
    let b = ProtocolBroker::start().await;
    let mut first = b.v311("ss-to311").await;
    let mut second = b.v311("ss-to311").await;
    first.expect_closed(WAIT).await;
    second.ping().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disconnect_may_not_set_a_session_expiry_when_connect_had_zero() {
    let b = ProtocolBroker::start().await;
    let mut c = b.v5("ss-dse").await;
    // E0 07 | 00 | props 05: 11 0000001E
    c.send(&[0xE0, 0x07, 0x00, 0x05, 0x11, 0x00, 0x00, 0x00, 0x1E])
        .await;
    c.expect_disconnect(0x82).await;
    // And the session was not kept.
    let (_c, present) = b
        .connect_session(ConnectBuilder::new("ss-dse").clean_start(false))
        .await;
    assert_eq!(present, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disconnect_may_end_a_session_by_setting_expiry_zero() {
    let b = ProtocolBroker::start().await;
    let (mut c, _) = b
        .connect_session(ConnectBuilder::new("ss-dz").session_expiry(60))
        .await;
    c.send(&[0xE0, 0x07, 0x00, 0x05, 0x11, 0x00, 0x00, 0x00, 0x00])
        .await;
    c.expect_closed(WAIT).await;
    let (_c, present) = b
        .connect_session(ConnectBuilder::new("ss-dz").clean_start(false))
        .await;
    assert_eq!(
        present, 0,
        "DISCONNECT with session expiry 0 ends the session"
    );
}
