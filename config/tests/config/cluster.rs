//! `cluster:` (issue 15): absent by default, defaults, every rule at its YAML path.

use gatehouse_config::*;

use crate::{assert_problem, assert_warning, load, problems};

/// One listener, then `cluster:` with `body` (indented block YAML).
fn with(body: &str) -> String {
    format!("listeners: [ {{ name: default, ports: [ {{ port: 1883 }} ] }} ]\ncluster:\n{body}")
}

#[test]
fn absent_means_one_node() {
    let config = load("listeners: [ { name: default, ports: [ { port: 1883 } ] } ]").config;
    assert_eq!(config.cluster, None);
    assert_eq!(Config::local_default().cluster, None);
}

#[test]
fn defaults_and_full_form() {
    let c = load(&with("  nats:\n    servers: [nats://127.0.0.1:4222]\n"))
        .config
        .cluster
        .expect("cluster");
    assert_eq!(c.nats.replicas, 3);
    assert_eq!(c.node_name, None);
    assert_eq!(c.nats.tls, None);
    let c = load(&with(
        "  nodeName: gh-1\n  nats:\n    servers: [nats://a:4222, 'tls://b:4222', nats://c]\n    \
         replicas: 1\n    credentialsFile: /etc/gh/nats.creds\n    \
         tls: { caFile: /etc/gh/ca.crt, certFile: /etc/gh/n.crt, keyFile: /etc/gh/n.key }\n",
    ))
    .config
    .cluster
    .expect("cluster");
    assert_eq!(c.node_name.as_deref(), Some("gh-1"));
    assert_eq!(c.nats.servers.len(), 3);
    assert_eq!(c.nats.replicas, 1);
    assert!(c.nats.credentials_file.is_some());
    assert!(c.nats.tls.and_then(|t| t.key_file).is_some());
}

#[test]
fn rules_at_their_paths() {
    assert_problem(
        &with("  nats:\n    servers: []\n"),
        "cluster.nats.servers",
        "at least one",
    );
    for replicas in ["0", "6"] {
        assert_problem(
            &with(&format!(
                "  nats:\n    servers: [nats://a:4222]\n    replicas: {replicas}\n"
            )),
            "cluster.nats.replicas",
            "1 to 5",
        );
    }
    for (url, needle) in [
        ("localhost:4222", "not a NATS URL"),
        ("http://a:4222", "scheme"),
        ("nats://u:p@a:4222", "credentials"),
        ("nats://a:70000", "port"),
    ] {
        assert_problem(
            &with(&format!(
                "  nats:\n    servers: [nats://ok:4222, '{url}']\n"
            )),
            "cluster.nats.servers[1]",
            needle,
        );
    }
    assert_problem(
        &with("  nats:\n    servers: [nats://a:4222]\n    tls: { certFile: x.crt }\n"),
        "cluster.nats.tls",
        "keyFile",
    );
    assert_problem(
        &with("  nodeName: 'a.b'\n  nats:\n    servers: [nats://a:4222]\n"),
        "cluster.nodeName",
        "not a node name",
    );
    assert_warning(
        &with("  nats:\n    servers: [nats://a:4222]\n"),
        "cluster.nats.replicas",
        "only one is listed",
    );
    // Unknown keys are refused, with the other problems.
    assert!(!problems(&with(
        "  nats:\n    servers: [nats://a:4222]\n    replica: 3\n"
    ))
    .is_empty());
}

/// Failure handling (issue 15): `nats.disconnectGrace`, default 5 s, at most 10 min, in Go
/// duration syntax.
#[test]
fn disconnect_grace() {
    let c = load(&with("  nats:\n    servers: [nats://a:4222]\n"))
        .config
        .cluster
        .expect("cluster");
    assert_eq!(c.nats.disconnect_grace, std::time::Duration::from_secs(5));
    let c = load(&with(
        "  nats:\n    servers: [nats://a:4222]\n    disconnectGrace: 1500ms\n",
    ))
    .config
    .cluster
    .expect("cluster");
    assert_eq!(
        c.nats.disconnect_grace,
        std::time::Duration::from_millis(1500)
    );
    assert_problem(
        &with("  nats:\n    servers: [nats://a:4222]\n    disconnectGrace: 11m\n"),
        "cluster.nats.disconnectGrace",
        "at most 10m",
    );
    assert_problem(
        &with("  nats:\n    servers: [nats://a:4222]\n    disconnectGrace: 5x\n"),
        "cluster.nats.disconnectGrace",
        "invalid duration",
    );
}

/// Offline sessions' messages (issue 15): `queueMaxBytes`, default 1 GiB, at least 1 MiB,
/// in the size syntax of the other byte limits.
#[test]
fn queue_max_bytes() {
    let c = load(&with("  nats:\n    servers: [nats://a:4222]\n"))
        .config
        .cluster
        .expect("cluster");
    assert_eq!(c.queue_max_bytes, 1 << 30);
    let c = load(&with(
        "  queueMaxBytes: 256MiB\n  nats:\n    servers: [nats://a:4222]\n",
    ))
    .config
    .cluster
    .expect("cluster");
    assert_eq!(c.queue_max_bytes, 256 << 20);
    assert_problem(
        &with("  queueMaxBytes: 1000\n  nats:\n    servers: [nats://a:4222]\n"),
        "cluster.queueMaxBytes",
        "at least 1MiB",
    );
}
