use gatehouse_config::Config;
use gatehouse_protocol::QoS;
use hyper::{Method, StatusCode};

use super::*;
use crate::limits::Limits;

fn config() -> Config {
    let yaml = "
listeners:
  - name: plain
    bindAddress: 127.0.0.1
    ports: [ { port: 1883 } ]
  - name: secure
    serviceType: LoadBalancer
    bindAddress: 127.0.0.1
    ports:
      - port: 8883
        tls: { mode: Manual, manual: { secretRef: late-cert } }
";
    match gatehouse_config::load_str(yaml, "metrics-test.yaml") {
        Ok(loaded) => loaded.config,
        Err(e) => panic!("{e}"),
    }
}

/// The registry of `config()`: port 1883 plain, port 8883 with an empty slot.
fn registry() -> (Registry, Arc<PortMetrics>, Arc<CertSlot>) {
    let config = config();
    let broker = Broker::new(Limits::from_config(&config.broker));
    let mut ports = Ports::default();
    let plain = ports.add(
        (0, 0),
        &config.listeners[0],
        &config.listeners[0].ports[0],
        1883,
        None,
    );
    let slot = Arc::new(CertSlot::default());
    ports.add(
        (1, 0),
        &config.listeners[1],
        &config.listeners[1].ports[0],
        8883,
        Some(slot.clone()),
    );
    (Registry::new(broker, ports, [], []), plain, slot)
}

#[test]
fn a_tls_port_without_a_certificate_is_not_ready_and_is_named() {
    let (registry, _, slot) = registry();
    let unready = registry.unready();
    assert_eq!(unready.len(), 1, "{unready:?}");
    assert!(
        unready[0].starts_with("listeners[1].ports[0] (listener secure, port 8883)")
            && unready[0].contains("Manual TLS, secret late-cert"),
        "{}",
        unready[0]
    );
    let r = http::respond(&registry, &Method::GET, "/readyz");
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    // Once the slot holds a certificate the port serves (end to end, with a real
    // certificate and its expiry metric, in tests/tests/e2e/metrics.rs).
    assert!(slot.is_empty());
}

#[test]
fn routes_and_methods() {
    let (registry, _, _) = registry();
    let status = |m: Method, p: &str| http::respond(&registry, &m, p).status();
    assert_eq!(status(Method::GET, "/healthz"), StatusCode::OK);
    assert_eq!(status(Method::HEAD, "/metrics"), StatusCode::OK);
    assert_eq!(status(Method::GET, "/nope"), StatusCode::NOT_FOUND);
    let post = http::respond(&registry, &Method::POST, "/metrics");
    assert_eq!(post.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(post.headers()["allow"], "GET, HEAD");
    let metrics = http::respond(&registry, &Method::GET, "/metrics");
    assert_eq!(metrics.headers()["content-type"], render::CONTENT_TYPE);
}

#[test]
fn port_counters_appear_with_listener_port_and_qos_labels() {
    let (registry, plain, _) = registry();
    plain.inbound.messages.inc(QoS::AtLeastOnce);
    plain.inbound.messages.inc(QoS::AtLeastOnce);
    plain.outbound.messages.inc(QoS::ExactlyOnce);
    plain.outbound.expired.inc();
    let text = registry.render();
    for line in [
        "# TYPE gatehouse_messages_received_total counter",
        "gatehouse_messages_received_total{listener=\"plain\",port=\"1883\",qos=\"1\"} 2",
        "gatehouse_messages_received_total{listener=\"secure\",port=\"8883\",qos=\"1\"} 0",
        "gatehouse_messages_sent_total{listener=\"plain\",port=\"1883\",qos=\"2\"} 1",
        "gatehouse_messages_dropped_total{reason=\"expired\"} 1",
        "gatehouse_connections{listener=\"plain\",port=\"1883\"} 0",
        "gatehouse_sessions 0",
        "gatehouse_retained_messages 0",
        "gatehouse_state_store_requests_total{command=\"get\",result=\"ok\"} 0",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing {line:?} in\n{text}"
        );
    }
    // No TLS port has a certificate: no expiry family; no chain: no authentication family.
    assert!(!text.contains("gatehouse_tls_certificate_expiry_seconds"));
    assert!(!text.contains("gatehouse_authentications_total"));
    // Each family's HELP and TYPE appear once.
    let types: Vec<&str> = text.lines().filter(|l| l.starts_with("# TYPE ")).collect();
    let mut unique = types.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(types.len(), unique.len(), "{types:?}");
}
