//! Cluster mode (issue 15): the wills a surviving node publishes for the clients of a
//! node that died (`kill -9`) follow the single-node rules.
//!
//! - Authorization (security.md invariant 4, behaviour.md §4): a will is published only
//!   if the policy in force when it is published lets its client publish on its topic.
//!   The attack: a client whose will topic is allowed at CONNECT; the shared policy is
//!   then changed to forbid it; its node dies. The node that publishes the will must
//!   check it against the new policy, for the principal the owner verified (here its
//!   user attributes, which the topic filter substitutes), and not publish it.
//! - The same after a v5 re-authentication that changes the principal: the will is
//!   checked for the principal after it.
//! - A CONNECT on another node that takes over a dead node's session before the node is
//!   found gone handles the old will as a single-node takeover does.
//! - A will waiting out its delay when its node dies (its client has gone: here sent
//!   away 0x98 by the policy reload) is kept in the session's record and published by
//!   the surviving node at its due time, once; a resume cancels it.
//!
//! Two in-process Gatehouse nodes and one `gatehouse` process on a real three-server NATS
//! cluster; Password (or Custom, for re-authentication) authentication; raw MQTT clients.

use std::time::Duration;

use gatehouse_protocol::Packet;
use gatehouse_tests::broker::{free_port, run_gatehouse, BrokerProcess, TestBroker};
use gatehouse_tests::mosquitto::publish;
use gatehouse_tests::nats::NatsCluster;
use gatehouse_tests::raw::{frame, mqtt_str, Props, RawClient};
use tokio::time::Instant;

use super::cluster_support::{assert_wills, count, receive_for, subscribe_unacked, Got};

/// The policy at CONNECT: a client of zone `a` may publish anywhere under `will/a/`.
const BEFORE: &str = "will/{principal.attributes.zone}/#";
/// The policy reloaded before the node dies: only under `will/a/kept/`.
const AFTER: &str = "will/{principal.attributes.zone}/kept/#";

/// A v5 CONNECT with user name and password, keep alive 0, and optionally a will
/// (topic, payload, Will Delay).
pub(super) fn connect(
    id: &str,
    user: &str,
    password: &str,
    clean_start: bool,
    expiry: u32,
    will: Option<(&str, &[u8], u32)>,
) -> Vec<u8> {
    let mut body = Vec::new();
    mqtt_str(&mut body, b"MQTT");
    body.push(5);
    let mut flags = 0x80 | 0x40 | (u8::from(clean_start) << 1);
    if will.is_some() {
        flags |= 0x04;
    }
    body.push(flags);
    body.extend(0u16.to_be_bytes());
    let mut props = Props::new();
    if expiry > 0 {
        props = props.u32(0x11, expiry);
    }
    props.encode(&mut body);
    mqtt_str(&mut body, id.as_bytes());
    if let Some((topic, payload, delay)) = will {
        let mut wp = Props::new();
        if delay > 0 {
            wp = wp.u32(0x18, delay);
        }
        wp.encode(&mut body);
        mqtt_str(&mut body, topic.as_bytes());
        mqtt_str(&mut body, payload);
    }
    mqtt_str(&mut body, user.as_bytes());
    mqtt_str(&mut body, password.as_bytes());
    frame(0x10, &body)
}

/// A client `sensor-<name>` of user `sensor` (attribute zone=a) with a will on `topic`
/// (payload: the name).
async fn sensor(
    addr: std::net::SocketAddr,
    name: &str,
    topic: &str,
    expiry: u32,
    delay: u32,
) -> RawClient {
    let mut c = RawClient::connect(addr).await;
    c.send(&connect(
        &format!("sensor-{name}"),
        "sensor",
        "s",
        true,
        expiry,
        Some((topic, name.as_bytes(), delay)),
    ))
    .await;
    c.expect_connack_ok().await;
    c
}

/// A subscriber to `will/#` (user `watcher`) on `addr`.
async fn watcher(addr: std::net::SocketAddr, id: &str) -> RawClient {
    let mut c = RawClient::connect(addr).await;
    c.send(&connect(id, "watcher", "w", true, 0, None)).await;
    c.expect_connack_ok().await;
    // The SUBACK follows the record's write; the probe shows the subscription works.
    subscribe_unacked(&mut c, "will/#").await;
    c
}

/// Three nodes (1 and 2 in-process, 3 a process) sharing one password file and policy.
struct Nodes {
    nats: NatsCluster,
    node1: TestBroker,
    node2: TestBroker,
    node3: BrokerProcess,
    node3_port: u16,
    passwords: String,
}

impl Nodes {
    async fn start(test: &str) -> Option<Nodes> {
        let nats = NatsCluster::start_or_skip(test).await?;
        let passwords = nats.dir.path().join("passwd");
        let passwords = passwords.to_str().expect("UTF-8 path").to_owned();
        for (i, (user, pw)) in [("sensor", "s"), ("watcher", "w")].iter().enumerate() {
            let mut args = vec!["passwd"];
            if i == 0 {
                args.push("-c");
            }
            args.extend(["-b", &passwords, user, pw]);
            let out = run_gatehouse(&args).await;
            assert!(out.status.success(), "gatehouse {args:?}");
        }
        let node3_port = free_port();
        Some(Nodes {
            node1: TestBroker::start(&Self::yaml(&nats, &passwords, 1, 0, BEFORE)).await,
            node2: TestBroker::start(&Self::yaml(&nats, &passwords, 2, 0, BEFORE)).await,
            node3: {
                let config = nats.dir.write(
                    "node3.yaml",
                    &Self::yaml(&nats, &passwords, 3, node3_port, BEFORE),
                );
                BrokerProcess::start(&config, node3_port).await
            },
            nats,
            node3_port,
            passwords,
        })
    }

    fn yaml(nats: &NatsCluster, passwords: &str, n: usize, port: u16, sensor: &str) -> String {
        format!(
            "listeners:
  - name: e2e
    bindAddress: 127.0.0.1
    ports:
      - port: {port}
        protocol: Mqtt
        authenticationRef: users
        authorizationRef: policy
authentications:
  - name: users
    authenticationMethods:
      - method: Password
        passwordSettings:
          passwordFile: {passwords}
          userAttributes:
            sensor: {{ zone: \"a\" }}
authorizations:
  - name: policy
    authorizationPolicies:
      rules:
        - principals: {{ usernames: [watcher] }}
          brokerResources:
            - method: Connect
            - method: Subscribe
              topics: [\"will/#\"]
            - method: Publish
              topics: [\"will/probe\"]
        - principals:
            attributes: [ {{ zone: \"a\" }} ]
          brokerResources:
            - method: Connect
            - method: Publish
              topics: [\"{sensor}\"]
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

    /// Hot reload of the policy that allows only `will/a/kept/#` on the in-process nodes.
    fn reload_in_process(&self) {
        for (n, node) in [(1, &self.node1), (2, &self.node2)] {
            let yaml = Self::yaml(&self.nats, &self.passwords, n, 0, AFTER);
            let loaded = gatehouse_config::load_str(&yaml, "e2e-test.yaml").expect("valid YAML");
            let done = node
                .server
                .reloader()
                .apply(loaded.config)
                .expect("the new policy applies");
            assert_eq!(done.policies, vec!["policy".to_owned()], "node {n}");
        }
    }

    /// The same change in node 3's file (the process reloads it within a second).
    fn rewrite_node3(&self) {
        self.nats.dir.write(
            "node3.yaml",
            &Self::yaml(&self.nats, &self.passwords, 3, self.node3_port, AFTER),
        );
    }

    /// Watchers on nodes 1 and 2 whose subscriptions have reached each other's node.
    async fn watchers(&self) -> (RawClient, RawClient) {
        let mut s1 = watcher(self.node1.mqtt_addr(), "watch-1").await;
        let mut s2 = watcher(self.node2.mqtt_addr(), "watch-2").await;
        let deadline = Instant::now() + Duration::from_secs(20);
        let (mut seen1, mut seen2) = (Vec::new(), Vec::new());
        while count(&seen1, "will/probe") == 0 || count(&seen2, "will/probe") == 0 {
            assert!(
                Instant::now() < deadline,
                "the subscriptions did not reach the other node"
            );
            for addr in [self.node1.mqtt_addr(), self.node2.mqtt_addr()] {
                publish(
                    addr,
                    &["-u", "watcher", "-P", "w", "-t", "will/probe", "-m", "p"],
                )
                .await;
            }
            receive_for(&mut s1, Duration::from_millis(300), &mut seen1).await;
            receive_for(&mut s2, Duration::from_millis(300), &mut seen2).await;
        }
        (s1, s2)
    }

    async fn kill_node3(&mut self) -> Instant {
        self.node3.signal("KILL");
        self.node3.exit_within(Duration::from_secs(10)).await;
        Instant::now()
    }
}

/// Receive on both watchers until each has every topic of `wanted` (panics after
/// `within`), then `settle` longer for copies that should not come; then each must have
/// had every topic of `wanted` once and none of `never` (see [`assert_wills`]).
async fn collect(
    watchers: &mut (RawClient, RawClient),
    wanted: &[&str],
    never: &[(&str, &str)],
    within: Duration,
    settle: Duration,
) -> (Got, Got) {
    let (mut got1, mut got2) = (Vec::new(), Vec::new());
    let deadline = Instant::now() + within;
    while [&got1, &got2]
        .iter()
        .any(|g| wanted.iter().any(|t| count(g, t) == 0))
    {
        assert!(
            Instant::now() < deadline,
            "the wills {wanted:?} did not arrive within {within:?}: node 1 got {:?}, node 2 got {:?}",
            got1.iter().map(|g: &(String, Vec<u8>, Instant)| &g.0).collect::<Vec<_>>(),
            got2.iter().map(|g: &(String, Vec<u8>, Instant)| &g.0).collect::<Vec<_>>()
        );
        receive_for(&mut watchers.0, Duration::from_millis(200), &mut got1).await;
        receive_for(&mut watchers.1, Duration::from_millis(200), &mut got2).await;
    }
    receive_for(&mut watchers.0, settle, &mut got1).await;
    receive_for(&mut watchers.1, settle, &mut got2).await;
    assert_wills([&got1, &got2], wanted, never);
    (got1, got2)
}

/// The attack: two connected clients of node 3 whose will topics the policy allows at
/// CONNECT; the policy is changed to allow only one of them, and node 3 is killed before
/// it applies the change itself. The surviving node that publishes the wills checks them
/// against the policy in force on it now, for the principal node 3 verified: the kept
/// will arrives once on both nodes (its topic is allowed through the user's attribute,
/// so the attributes came along), the revoked one never.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_dead_nodes_will_is_authorized_against_the_policy_in_force_when_published() {
    let Some(mut nodes) = Nodes::start("cluster_wills_authz").await else {
        return;
    };
    let revoked = sensor(nodes.node3.addr(), "revoked", "will/a/revoked", 0, 0).await;
    let kept = sensor(nodes.node3.addr(), "kept", "will/a/kept/now", 0, 0).await;
    // The policy file changes; nodes 1 and 2 apply it, node 3 dies before it does (its
    // file is rewritten after the kill: a dead process reads nothing).
    nodes.reload_in_process();
    let killed = nodes.kill_node3().await;
    nodes.rewrite_node3();
    drop((revoked, kept));
    let mut watchers = nodes.watchers().await;
    // Found gone after three sweeps (about 15 s).
    collect(
        &mut watchers,
        &["will/a/kept/now"],
        &[(
            "will/a/revoked",
            "a will the policy in force forbids is not published",
        )],
        Duration::from_secs(45).saturating_sub(killed.elapsed()),
        Duration::from_secs(3),
    )
    .await;
}

/// Wills waiting out their delay when their node dies: the policy reload on every node
/// sends node 3's clients away (0x98), so their wills wait out their delay there; node 3
/// is killed during it. A surviving node publishes each will at its due time, once, if
/// the policy in force allows it: the kept one (5 s, due before node 3 is found gone:
/// published then), the late one (35 s: not before), never the revoked one, nor the one
/// whose client resumed its session on node 1 meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_will_waiting_out_its_delay_on_a_node_that_dies_is_published_once_when_due() {
    let Some(mut nodes) = Nodes::start("cluster_wills_delay").await else {
        return;
    };
    let mut clients = Vec::new();
    for (name, topic, delay) in [
        ("revoked", "will/a/revoked", 5),
        ("kept", "will/a/kept/now", 5),
        ("late", "will/a/kept/late", 35),
        ("resumed", "will/a/kept/resumed", 30),
    ] {
        clients.push(sensor(nodes.node3.addr(), name, topic, 300, delay).await);
    }
    nodes.rewrite_node3();
    nodes.reload_in_process();
    for c in &mut clients {
        c.expect_disconnect_within(0x98, Duration::from_secs(10))
            .await;
    }
    let gone = Instant::now();
    // Node 3 writes its clients' records (offline, will pending) in the background.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let killed = nodes.kill_node3().await;
    drop(clients);
    // The fourth client comes back on node 1 and resumes its session: its will is
    // cancelled (§3.1.3.2.2), whichever node would have published it.
    let mut back = RawClient::connect(nodes.node1.mqtt_addr()).await;
    back.send(&connect("sensor-resumed", "sensor", "s", false, 300, None))
        .await;
    let ack = back.expect_connack_ok().await;
    assert!(ack.session_present, "the session outlives its node");
    let mut watchers = nodes.watchers().await;
    let (got1, got2) = collect(
        &mut watchers,
        &["will/a/kept/now", "will/a/kept/late"],
        &[
            (
                "will/a/revoked",
                "a will the policy in force forbids is not published",
            ),
            (
                "will/a/kept/resumed",
                "resuming the session cancels its will",
            ),
        ],
        Duration::from_secs(70).saturating_sub(killed.elapsed()),
        Duration::from_secs(3),
    )
    .await;
    for (node, got) in [(1, &got1), (2, &got2)] {
        let late = got
            .iter()
            .find(|g| g.0 == "will/a/kept/late")
            .map(|g| g.2)
            .expect("received");
        assert!(
            late.duration_since(gone) >= Duration::from_secs(33),
            "node {node}: the late will came {:?} after its client went, before its 35 s delay",
            late.duration_since(gone)
        );
    }
    drop(back);
}

/// Clients of a node that dies reconnect elsewhere before it is found gone (the usual
/// case: clients retry within seconds, the other nodes take 15 s to declare a node
/// dead). The CONNECT that takes such a session over handles the old will as a takeover
/// does on one node: a will without a delay is published (resumed or not), a delayed
/// one is published when the CONNECT starts clean and cancelled when it resumes; each
/// once, and not again when the other nodes would have found the node gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_connect_taking_over_a_dead_nodes_session_handles_its_will_once() {
    let Some(mut nodes) = Nodes::start("cluster_wills_takeover").await else {
        return;
    };
    let mut watchers = nodes.watchers().await;
    let mut clients = Vec::new();
    for (name, delay) in [("quick", 0), ("fresh", 30), ("patient", 30)] {
        let topic = format!("will/a/kept/{name}");
        clients.push(sensor(nodes.node3.addr(), name, &topic, 300, delay).await);
    }
    let killed = nodes.kill_node3().await;
    drop(clients);
    let mut back = Vec::new();
    for (name, clean, addr) in [
        ("quick", false, nodes.node1.mqtt_addr()),
        ("fresh", true, nodes.node2.mqtt_addr()),
        ("patient", false, nodes.node1.mqtt_addr()),
    ] {
        let mut c = RawClient::connect(addr).await;
        c.send(&connect(
            &format!("sensor-{name}"),
            "sensor",
            "s",
            clean,
            300,
            None,
        ))
        .await;
        let ack = c.expect_connack_ok().await;
        assert_eq!(ack.session_present, !clean, "{name}");
        back.push(c);
    }
    // Past the time the other nodes find node 3 gone (about 15 s): no second copy.
    collect(
        &mut watchers,
        &["will/a/kept/quick", "will/a/kept/fresh"],
        &[(
            "will/a/kept/patient",
            "resuming the session cancels its delayed will",
        )],
        Duration::from_secs(10),
        Duration::from_secs(25).saturating_sub(killed.elapsed()),
    )
    .await;
    drop(back);
}

/// A v5 CONNECT with enhanced authentication (method `token`, `data`) and a will
/// (no delay, session expiry 0).
fn token_connect(id: &str, data: &[u8], will: Option<&str>) -> Vec<u8> {
    let mut body = Vec::new();
    mqtt_str(&mut body, b"MQTT");
    body.push(5);
    body.push(0x02 | if will.is_some() { 0x04 } else { 0 });
    body.extend(0u16.to_be_bytes());
    Props::new()
        .str(0x15, "token")
        .bin(0x16, data)
        .encode(&mut body);
    mqtt_str(&mut body, id.as_bytes());
    if let Some(topic) = will {
        Props::new().encode(&mut body);
        mqtt_str(&mut body, topic.as_bytes());
        mqtt_str(&mut body, id.as_bytes());
    }
    frame(0x10, &body)
}

/// Security invariant 3 across nodes: a client re-authenticates (v5 AUTH) and its new
/// principal (another attribute) may no longer publish on its will's topic; its node
/// dies. A single node would check the will for the principal after the
/// re-authentication; so must the node that publishes it: the record's copy of the
/// principal follows the re-authentication. A client that did not re-authenticate has
/// its will published (the control).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_dead_nodes_will_is_authorized_for_the_principal_after_re_authentication() {
    use gatehouse_protocol::ReasonCode;
    use gatehouse_tests::https_stub::ScriptedServer;
    use gatehouse_tests::tls::Pki;
    let Some(nats) = NatsCluster::start_or_skip("cluster_wills_reauth").await else {
        return;
    };
    let pki = Pki::new(
        nats.dir.path(),
        gatehouse_config::PrivateKeyAlgorithm::Ec256,
    );
    // Tokens name the attribute: zone a, zone b, or the watchers' role.
    let server = ScriptedServer::start(&pki, None, |seen| {
        let data = seen.body["enhancedAuthentication"]["data"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        // base64 of "zone-a" / "zone-b" / "watch"
        let attributes = match data.as_str() {
            "em9uZS1h" => r#"{"zone": "a"}"#,
            "em9uZS1i" => r#"{"zone": "b"}"#,
            "d2F0Y2g=" => r#"{"role": "watcher"}"#,
            _ => return (403, r#"{"reason": 135}"#.into()),
        };
        (
            200,
            format!(r#"{{"expiry": "2099-01-01T00:00:00Z", "attributes": {attributes}}}"#),
        )
    })
    .await;
    let yaml = |n: usize, port: u16| {
        format!(
            "listeners:
  - name: e2e
    bindAddress: 127.0.0.1
    ports:
      - port: {port}
        authenticationRef: users
        authorizationRef: policy
authentications:
  - name: users
    authenticationMethods:
      - method: Custom
        customSettings:
          endpoint: \"{endpoint}\"
          caCertConfigMap: auth-ca
authorizations:
  - name: policy
    authorizationPolicies:
      rules:
        - principals: {{ attributes: [{{ role: watcher }}] }}
          brokerResources:
            - method: Connect
            - method: Subscribe
              topics: [\"will/#\"]
            - method: Publish
              topics: [\"will/probe\"]
        - principals: {{ attributes: [{{ zone: a }}, {{ zone: b }}] }}
          brokerResources:
            - method: Connect
            - method: Publish
              topics: [\"will/{{principal.attributes.zone}}/#\"]
configMaps:
  auth-ca: {{ files: [{root}] }}
diagnostics: {{ metrics: {{ prometheusPort: 0 }} }}
cluster:
  nodeName: node{n}
  nats:
    servers: [\"{url}\"]
    replicas: 3
",
            endpoint = server.endpoint("/"),
            root = pki.root_file().to_str().expect("UTF-8 path"),
            url = nats.urls()[n - 1],
        )
    };
    let node1 = TestBroker::start(&yaml(1, 0)).await;
    let node2 = TestBroker::start(&yaml(2, 0)).await;
    let port = free_port();
    let config = nats.dir.write("node3.yaml", &yaml(3, port));
    let mut node3 = BrokerProcess::start(&config, port).await;

    let watch = |addr: std::net::SocketAddr, id: &'static str| async move {
        let mut c = RawClient::connect(addr).await;
        c.send(&token_connect(id, b"watch", None)).await;
        c.expect_connack_ok().await;
        subscribe_unacked(&mut c, "will/#").await;
        c
    };
    let mut watchers = (
        watch(node1.mqtt_addr(), "watch-1").await,
        watch(node2.mqtt_addr(), "watch-2").await,
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    let (mut seen1, mut seen2) = (Vec::new(), Vec::new());
    while count(&seen1, "will/probe") == 0 || count(&seen2, "will/probe") == 0 {
        assert!(
            Instant::now() < deadline,
            "the subscriptions did not spread"
        );
        let mut probe = RawClient::connect(node3.addr()).await;
        probe.send(&token_connect("probe", b"watch", None)).await;
        probe.expect_connack_ok().await;
        probe.publish("will/probe", b"p", 0, false, 0).await;
        receive_for(&mut watchers.0, Duration::from_millis(300), &mut seen1).await;
        receive_for(&mut watchers.1, Duration::from_millis(300), &mut seen2).await;
    }

    // Both connect in zone a with a will in zone a; one re-authenticates into zone b.
    let mut moved = RawClient::connect(node3.addr()).await;
    moved
        .send(&token_connect("moved", b"zone-a", Some("will/a/moved")))
        .await;
    moved.expect_connack_ok().await;
    let mut stayed = RawClient::connect(node3.addr()).await;
    stayed
        .send(&token_connect("stayed", b"zone-a", Some("will/a/stayed")))
        .await;
    stayed.expect_connack_ok().await;
    let mut auth = vec![0x19];
    Props::new()
        .str(0x15, "token")
        .bin(0x16, b"zone-b")
        .encode(&mut auth);
    moved.send(&frame(0xF0, &auth)).await;
    match moved.expect_packet().await {
        Packet::Auth(a) => assert_eq!(a.reason_code, ReasonCode::SUCCESS),
        other => panic!("expected AUTH 0x00, got {other:?}"),
    }
    // The owner rewrites the record in the background.
    tokio::time::sleep(Duration::from_secs(1)).await;
    node3.signal("KILL");
    node3.exit_within(Duration::from_secs(10)).await;
    drop((moved, stayed));
    collect(
        &mut watchers,
        &["will/a/stayed"],
        &[(
            "will/a/moved",
            "the principal after re-authentication may not publish it",
        )],
        Duration::from_secs(45),
        Duration::from_secs(3),
    )
    .await;
}
