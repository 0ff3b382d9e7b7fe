//! IPv6: an IPv6 bind address, the dual-stack default, and 127.0.0.1 meaning both
//! loopbacks. Skipped (with a note) where `::1` cannot be bound.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use gatehouse_tests::broker::{free_port, ipv6_loopback_available, unique, TestBroker};
use gatehouse_tests::mosquitto::{publish, Sub};

/// Whether `test` cannot run here: then it says so on stderr, naming itself, and returns
/// early (the harness has no "skipped" state, so a pass without this line means it ran).
fn skip(test: &str) -> bool {
    if ipv6_loopback_available() {
        return false;
    }
    eprintln!("SKIPPED ipv6::{test}: ::1 cannot be bound on this machine, so it did not run");
    true
}

/// Subscribe at `sub_addr`, publish at `pub_addr`, and check the message arrives.
async fn round_trip(sub_addr: SocketAddr, pub_addr: SocketAddr) {
    let topic = unique("ipv6");
    let mut sub = Sub::subscribed(sub_addr, &["-V", "mqttv5", "-q", "1", "-t", &topic]).await;
    publish(
        pub_addr,
        &["-V", "mqttv5", "-q", "1", "-t", &topic, "-m", "hello"],
    )
    .await;
    let m = sub.next_message().await;
    assert_eq!(
        (m.topic.as_str(), m.payload.as_str()),
        (topic.as_str(), "hello")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipv6_bind_address() {
    if skip("ipv6_bind_address") {
        return;
    }
    let broker = TestBroker::start(
        r#"
listeners:
  - name: ipv6-only
    bindAddress: "::1"
    ports:
      - port: 0
"#,
    )
    .await;
    let addr = broker.mqtt_addr();
    assert_eq!(addr.ip(), IpAddr::V6(Ipv6Addr::LOCALHOST));
    round_trip(addr, addr).await;
}

/// The default bind address 0.0.0.0 serves IPv4 and IPv6 clients alike.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_bind_address_is_dual_stack() {
    if skip("default_bind_address_is_dual_stack") {
        return;
    }
    let broker = TestBroker::start(
        "
listeners:
  - name: everywhere
    ports:
      - port: 0
",
    )
    .await;
    let port = broker.mqtt_addr().port();
    let v4 = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port);
    let v6 = SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), port);
    round_trip(v6, v4).await;
}

/// `bindAddress: 127.0.0.1` with a fixed port listens on `::1` too (the same port), so
/// `localhost` works whichever address it resolves to.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipv4_loopback_also_listens_on_ipv6_loopback() {
    if skip("ipv4_loopback_also_listens_on_ipv6_loopback") {
        return;
    }
    let port = free_port();
    let broker = TestBroker::start(&format!(
        "
listeners:
  - name: loopback
    bindAddress: 127.0.0.1
    ports:
      - port: {port}
"
    ))
    .await;
    assert!(
        broker
            .server
            .ports
            .iter()
            .any(|p| p.addr == SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), port)),
        "bound: {:?}",
        broker.server.ports
    );
    let v4 = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port);
    let v6 = SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), port);
    round_trip(v6, v4).await;
}
