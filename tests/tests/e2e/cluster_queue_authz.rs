//! Cluster mode (issue 15), attack: a session's offline backlog must not outlive a policy
//! reload. A persistent session subscribed to `bk/secret/#` and `bk/open/#` goes offline
//! on node 2; the policy is reloaded on every node so that its user may no longer
//! subscribe to `bk/secret/#`; messages on both are published (the publisher may still
//! publish them, so they are kept in the stream for the offline session). The client
//! resumes on node 1: it gets the `bk/open/` message from its backlog and never the
//! `bk/secret/` one (the moved subscriptions are re-checked under the policy in force
//! before the backlog is read, as a single node re-checks a resumed session).
//!
//! Two Gatehouse nodes (in-process) on a real three-server NATS cluster, password users
//! from a file made with `gatehouse passwd`, `mosquitto_pub` publishing.

use std::time::Duration;

use gatehouse_tests::broker::{run_gatehouse, TestBroker};
use gatehouse_tests::mosquitto::publish;
use gatehouse_tests::nats::NatsCluster;
use gatehouse_tests::raw::RawClient;

use super::cluster_support::receive_all;
use super::cluster_wills_authz::connect;

/// The policy before the reload lets `reader` subscribe to both; after, to `bk/open/#`.
const BEFORE: &str = "[\"bk/secret/#\", \"bk/open/#\"]";
const AFTER: &str = "[\"bk/open/#\"]";

fn yaml(nats: &NatsCluster, passwords: &str, n: usize, reader_may: &str) -> String {
    format!(
        "listeners:
  - name: e2e
    bindAddress: 127.0.0.1
    ports:
      - port: 0
        protocol: Mqtt
        authenticationRef: users
        authorizationRef: policy
authentications:
  - name: users
    authenticationMethods:
      - method: Password
        passwordSettings:
          passwordFile: {passwords}
authorizations:
  - name: policy
    authorizationPolicies:
      rules:
        - principals: {{ usernames: [reader] }}
          brokerResources:
            - method: Connect
            - method: Subscribe
              topics: {reader_may}
        - principals: {{ usernames: [writer] }}
          brokerResources:
            - method: Connect
            - method: Publish
              topics: [\"bk/#\"]
diagnostics: {{ metrics: {{ prometheusPort: 0 }} }}
cluster:
  nodeName: node{n}
  nats:
    servers: [\"{}\"]
    replicas: 3
",
        nats.urls()[n - 1]
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_backlog_is_not_delivered_through_a_subscription_revoked_while_offline() {
    let Some(nats) = NatsCluster::start_or_skip("backlog_after_policy_reload").await else {
        return;
    };
    let passwords = nats.dir.path().join("passwd");
    let passwords = passwords.to_str().expect("UTF-8 path").to_owned();
    for (i, (user, pw)) in [("reader", "r"), ("writer", "w")].iter().enumerate() {
        let mut args = vec!["passwd"];
        if i == 0 {
            args.push("-c");
        }
        args.extend(["-b", &passwords, user, pw]);
        let out = run_gatehouse(&args).await;
        assert!(out.status.success(), "gatehouse {args:?}");
    }
    let nodes = [
        TestBroker::start(&yaml(&nats, &passwords, 1, BEFORE)).await,
        TestBroker::start(&yaml(&nats, &passwords, 2, BEFORE)).await,
    ];

    let mut c = RawClient::connect(nodes[1].mqtt_addr()).await;
    c.send(&connect("bk-reader", "reader", "r", true, 600, None))
        .await;
    c.expect_connack_ok().await;
    c.sub_ok(1, "bk/secret/#", 1).await;
    c.sub_ok(2, "bk/open/#", 1).await;
    c.disconnect().await;
    // Both nodes know the session is offline: publishes keep messages for it.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    for node in &nodes {
        let cluster = node.server.cluster.as_deref().expect("cluster mode");
        while !(cluster.queue().wanted("bk/secret/x") && cluster.queue().wanted("bk/open/x")) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "a node never saw the offline session"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    // The reload revokes `bk/secret/#` for `reader` on every node.
    for (i, node) in nodes.iter().enumerate() {
        let loaded =
            gatehouse_config::load_str(&yaml(&nats, &passwords, i + 1, AFTER), "e2e-test.yaml")
                .expect("valid YAML");
        node.server
            .reloader()
            .apply(loaded.config)
            .expect("the new policy applies");
    }
    for topic in ["bk/secret/x", "bk/open/x"] {
        publish(
            nodes[0].mqtt_addr(),
            &[
                "-u", "writer", "-P", "w", "-q", "1", "-t", topic, "-m", topic,
            ],
        )
        .await;
    }

    let mut c = RawClient::connect(nodes[0].mqtt_addr()).await;
    c.send(&connect("bk-reader", "reader", "r", false, 600, None))
        .await;
    let ack = c.expect_connack_ok().await;
    assert!(ack.session_present, "the session moved to node 1");
    let got: Vec<String> = receive_all(&mut c, Duration::from_secs(3))
        .await
        .into_iter()
        .map(|(topic, _, _)| topic)
        .collect();
    assert_eq!(
        got,
        ["bk/open/x"],
        "only what the policy in force still lets the session receive"
    );
}
