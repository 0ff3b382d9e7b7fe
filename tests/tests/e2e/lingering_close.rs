//! Issue 18 item 4: lingering close. A client that pipelines QoS 1 PUBLISH packets past
//! our Receive Maximum in one write is still sending when the broker decides to disconnect
//! it with 0x93. Closing the socket with that input unread makes the kernel send a reset,
//! and the client's kernel then drops the DISCONNECT before the client reads its reason
//! code. The broker now shuts down its sending side after the DISCONNECT (TLS:
//! close_notify) and reads and discards for at most about a second or 1 MiB before closing.
//!
//! Also checked: the linger is bounded (a client that keeps writing is cut off within
//! about a second), and the session is detached before it (the same client id reconnects
//! at once, session present, while the old socket still lingers).

use std::time::{Duration, Instant};

use gatehouse_tests::raw::{
    frame_body, publish_bytes, ConnectBuilder, Event, Props, RawClient, WAIT,
};

use crate::bounds_transport::{BoundsBroker, Transport};

/// A subscriber that does not read makes the broker hold the publisher's PUBACKs, so a
/// publisher flooding QoS 1 exceeds Receive Maximum (4) and gets DISCONNECT 0x93. The
/// flood is 400 PUBLISH packets of 1 KiB in one write, then, like a client library that
/// writes what it has queued before it reads, four more bursts 50 ms apart (while the
/// broker has already decided). Every write must succeed: once the broker has closed
/// with input unread, its kernel answers with a reset, the client's next write fails, and
/// such a client never reads the DISCONNECT waiting in its socket.
async fn flooding_publisher(t: Transport, name: &str) -> (BoundsBroker, RawClient, RawClient) {
    let b = BoundsBroker::start(
        t,
        name,
        "subscriberQueueLimit: { length: 2 }, maxReceiveMaximum: 4",
    )
    .await;
    let (mut sub, _) = b
        .v5_with(ConnectBuilder::new(&format!("{name}-sub")).receive_maximum(1))
        .await;
    sub.sub_ok(1, "linger/t", 1).await;
    let (mut flood, _) = b
        .v5_with(ConnectBuilder::new(&format!("{name}-pub")).session_expiry(600))
        .await;
    let payload = vec![b'x'; 1024];
    let burst = |ids: std::ops::RangeInclusive<u16>| {
        let mut out = Vec::new();
        for id in ids {
            out.extend(publish_bytes(
                0x02,
                b"linger/t",
                Some(id),
                Some(&Props::new()),
                &payload,
            ));
        }
        out
    };
    let mut next = 1u16;
    for round in 0..5 {
        let n = if round == 0 { 400 } else { 10 };
        if round > 0 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        if let Err(e) = flood.write(&burst(next..=next + n - 1)).await {
            panic!(
                "write {round} failed ({e}): the broker closed (reset) before the client \
                 read the DISCONNECT"
            );
        }
        next += n;
    }
    (b, flood, sub)
}

/// PUBACKs, then DISCONNECT 0x93 (not a reset), then the end of the stream.
async fn expect_0x93(flood: &mut RawClient) {
    loop {
        match flood.next_event(WAIT).await {
            Event::Frame(f) if f[0] == 0x40 => {}
            Event::Frame(f) if f[0] == 0xE0 => {
                assert_eq!(frame_body(&f).first(), Some(&0x93), "DISCONNECT {f:02X?}");
                break;
            }
            other => panic!("expected DISCONNECT 0x93, got {other:?} (a reset is Closed)"),
        }
    }
    flood.expect_closed(WAIT).await;
}

async fn reason_code_survives_a_pipelined_flood(t: Transport) {
    let (_b, mut flood, _sub) = flooding_publisher(t, "linger-rm").await;
    expect_0x93(&mut flood).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disconnect_0x93_is_read_despite_a_pipelined_flood() {
    reason_code_survives_a_pipelined_flood(Transport::Tcp).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disconnect_0x93_is_read_despite_a_pipelined_flood_over_tls() {
    reason_code_survives_a_pipelined_flood(Transport::Tls).await;
}

/// The linger ends: a client that keeps writing after the DISCONNECT is cut off (its
/// writes fail) within about a second, not served for ever. Meanwhile its session is
/// already detached: the same client id reconnects at once and finds it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_linger_is_bounded_and_the_session_is_free_during_it() {
    let (b, mut flood, _sub) = flooding_publisher(Transport::Tcp, "linger-bound").await;
    expect_0x93(&mut flood).await;
    let disconnected = Instant::now();

    let started = Instant::now();
    let (_again, ack) = b
        .v5_with(
            ConnectBuilder::new("linger-bound-pub")
                .clean_start(false)
                .session_expiry(600),
        )
        .await;
    assert!(ack.session_present, "the session outlived the connection");
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "reconnecting waited {:?} for the lingering connection",
        started.elapsed()
    );

    // Keep writing PINGREQs: the lingering broker reads and discards them, then closes.
    let cut_off = loop {
        if flood.write(&[0xC0, 0x00]).await.is_err() {
            break disconnected.elapsed();
        }
        assert!(
            disconnected.elapsed() < Duration::from_secs(4),
            "still accepting writes {:?} after the DISCONNECT",
            disconnected.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        cut_off < Duration::from_secs(3),
        "cut off after {cut_off:?}"
    );
}
