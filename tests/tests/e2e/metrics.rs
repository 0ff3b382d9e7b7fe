//! Metrics and health (behaviour.md §7): `/metrics` scraped over real HTTP and parsed with
//! an independent Prometheus text-format parser (`openmetrics-parser`, which rejects
//! malformed lines, bad escapes, duplicate series and negative counters), before and after
//! real traffic from the Mosquitto clients and raw MQTT; `/healthz`; `/readyz` while a
//! Manual TLS port waits for its secret and once it has it.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use gatehouse_config::PrivateKeyAlgorithm;
use gatehouse_tests::broker::{unique, TempDir, TestBroker};
use gatehouse_tests::mosquitto::{try_publish_to, Sub};
use gatehouse_tests::raw::ProtocolBroker;
use gatehouse_tests::state_store::StateStoreClient;
use gatehouse_tests::tls::Pki;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use openmetrics_parser::{MetricNumber, PrometheusType, PrometheusValue};

const EC: PrivateKeyAlgorithm = PrivateKeyAlgorithm::Ec256;

fn p(path: &Path) -> String {
    path.to_str().expect("UTF-8 path").to_owned()
}

/// One HTTP/1.1 exchange: status, headers (lower-case names) and body.
pub(crate) struct Http {
    pub(crate) status: u16,
    headers: HashMap<String, String>,
    pub(crate) body: String,
}

pub(crate) async fn http(addr: SocketAddr, method: &str, path: &str) -> Http {
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .expect("connect to the metrics port");
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("HTTP/1.1 handshake");
    tokio::spawn(connection);
    let request = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header("host", addr.to_string())
        .header("user-agent", "e2e")
        .body(Empty::<Bytes>::new())
        .expect("request");
    let (parts, body) = tokio::time::timeout(Duration::from_secs(10), async {
        let response = sender.send_request(request).await.expect("send request");
        let (parts, body) = response.into_parts();
        (
            parts,
            body.collect().await.expect("read response").to_bytes(),
        )
    })
    .await
    .expect("the response within 10 s");
    let headers = parts
        .headers
        .iter()
        .map(|(k, v)| {
            let v = String::from_utf8_lossy(v.as_bytes()).into_owned();
            (k.as_str().to_owned(), v)
        })
        .collect::<HashMap<_, _>>();
    if let Some(len) = headers.get("content-length") {
        assert_eq!(
            len.parse::<usize>().ok(),
            Some(body.len()),
            "content-length"
        );
    }
    Http {
        status: parts.status.as_u16(),
        headers,
        body: String::from_utf8(body.to_vec()).expect("UTF-8 response"),
    }
}

/// A parsed scrape.
struct Scrape {
    families: HashMap<String, openmetrics_parser::MetricFamily<PrometheusType, PrometheusValue>>,
    text: String,
}

async fn scrape(broker: &TestBroker) -> Scrape {
    let r = http(broker.metrics_addr(), "GET", "/metrics").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        r.headers.get("content-type").map(String::as_str),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    let parsed = openmetrics_parser::prometheus::parse_prometheus(&r.body)
        .unwrap_or_else(|e| panic!("not valid Prometheus text ({e}):\n{}", r.body));
    Scrape {
        families: parsed.families,
        text: r.body,
    }
}

impl Scrape {
    /// The value of the sample of `family` whose labels include `labels`, if any.
    fn get(&self, family: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let f = self.families.get(family)?;
        let sample = f.iter_samples().find(|s| {
            let set = s.get_labelset().expect("labels");
            labels
                .iter()
                .all(|(k, v)| set.get_label_value(k) == Some(*v))
        })?;
        let number = match &sample.value {
            PrometheusValue::Counter(c) => c.value,
            PrometheusValue::Gauge(n) | PrometheusValue::Unknown(n) => *n,
            other => panic!("{family}: unexpected value {other:?}"),
        };
        Some(match number {
            MetricNumber::Int(i) => i as f64,
            MetricNumber::Float(f) => f,
        })
    }

    /// [`Self::get`], which must exist.
    fn value(&self, family: &str, labels: &[(&str, &str)]) -> f64 {
        self.get(family, labels)
            .unwrap_or_else(|| panic!("no {family} {labels:?} in\n{}", self.text))
    }

    fn kind(&self, family: &str) -> PrometheusType {
        self.families
            .get(family)
            .unwrap_or_else(|| panic!("no family {family}"))
            .family_type
            .clone()
    }
}

/// How much `family{labels}` grew from `before` to `after` (absent before counts as 0).
fn delta(before: &Scrape, after: &Scrape, family: &str, labels: &[(&str, &str)]) -> f64 {
    after.value(family, labels) - before.get(family, labels).unwrap_or(0.0)
}

/// Scrape until `check` holds (the broker sees a client leave a moment after it exits).
async fn scrape_until(broker: &TestBroker, what: &str, check: impl Fn(&Scrape) -> bool) -> Scrape {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let s = scrape(broker).await;
        if check(&s) {
            return s;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what} within 10 s:\n{}",
            s.text
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counters_follow_mqtt_traffic_and_state_store_requests() {
    let pb = ProtocolBroker::start().await;
    let b = &pb.broker;
    let port = pb.addr.port().to_string();
    let on_port = |qos: Option<&'static str>| {
        let mut l = vec![("listener", "protocol"), ("port", port.as_str())];
        l.extend(qos.map(|q| ("qos", q)));
        l
    };
    let before = scrape(b).await;
    for family in [
        "gatehouse_connections_accepted_total",
        "gatehouse_messages_received_total",
        "gatehouse_messages_sent_total",
        "gatehouse_received_bytes_total",
        "gatehouse_sent_bytes_total",
        "gatehouse_messages_dropped_total",
        "gatehouse_state_store_requests_total",
    ] {
        assert_eq!(before.kind(family), PrometheusType::Counter, "{family}");
    }
    for family in [
        "gatehouse_connections",
        "gatehouse_sessions",
        "gatehouse_retained_messages",
    ] {
        assert_eq!(before.kind(family), PrometheusType::Gauge, "{family}");
    }
    assert_eq!(before.value("gatehouse_connections", &on_port(None)), 0.0);
    assert_eq!(before.value("gatehouse_retained_messages", &[]), 0.0);

    // One subscriber at QoS 1; QoS 0, QoS 1 and a retained QoS 1 message from three
    // mosquitto_pub runs.
    let topic = unique("metrics/t");
    let mut sub = Sub::subscribed(pb.addr, &["-V", "mqttv5", "-q", "1", "-t", &topic]).await;
    for args in [
        vec!["-q", "0", "-m", "zero"],
        vec!["-q", "1", "-m", "one"],
        vec!["-q", "1", "-r", "-m", "kept"],
    ] {
        let mut all = vec!["-V", "mqttv5", "-t", topic.as_str()];
        all.extend(args);
        let out = try_publish_to("127.0.0.1", pb.addr.port(), &all).await;
        assert!(out.status.success(), "{all:?}: {}", out.stderr);
    }
    let got = sub.next_messages(3).await;
    assert_eq!(
        got.iter()
            .map(|m| (m.qos, m.payload.as_str()))
            .collect::<Vec<_>>(),
        [(0, "zero"), (1, "one"), (1, "kept")]
    );
    b.wait_session_count(1).await;
    // The three publishers have gone; only the subscriber stays connected.
    let after = scrape_until(b, "one connection open", |s| {
        s.get("gatehouse_connections", &on_port(None)) == Some(1.0)
    })
    .await;

    let d = |family: &str, labels: &[(&str, &str)]| delta(&before, &after, family, labels);
    assert_eq!(
        d("gatehouse_connections_accepted_total", &on_port(None)),
        4.0
    );
    assert_eq!(
        d("gatehouse_messages_received_total", &on_port(Some("0"))),
        1.0
    );
    assert_eq!(
        d("gatehouse_messages_received_total", &on_port(Some("1"))),
        2.0
    );
    assert_eq!(
        d("gatehouse_messages_received_total", &on_port(Some("2"))),
        0.0
    );
    assert_eq!(d("gatehouse_messages_sent_total", &on_port(Some("0"))), 1.0);
    assert_eq!(d("gatehouse_messages_sent_total", &on_port(Some("1"))), 2.0);
    assert_eq!(d("gatehouse_messages_routed_total", &[]), 3.0);
    assert_eq!(d("gatehouse_deliveries_queued_total", &[]), 3.0);
    assert_eq!(
        d(
            "gatehouse_messages_dropped_total",
            &[("reason", "queue_full")]
        ),
        0.0
    );
    // At least the topics and payloads crossed the wire, each way.
    let carried = (3 * topic.len() + "zero".len() + "one".len() + "kept".len()) as f64;
    assert!(d("gatehouse_received_bytes_total", &on_port(None)) >= carried);
    assert!(d("gatehouse_sent_bytes_total", &on_port(None)) >= carried);
    assert_eq!(after.value("gatehouse_retained_messages", &[]), 1.0);
    assert_eq!(after.value("gatehouse_sessions", &[]), 1.0);
    assert_eq!(after.value("gatehouse_subscriptions", &[]), 1.0);

    // State store: a SET, a GET and a command that does not exist.
    let client_id = unique("metrics-ss");
    let raw = pb.v5(&client_id).await;
    let mut ss = StateStoreClient::start(raw, &client_id).await;
    let set = ss
        .call(b"*3\r\n$3\r\nSET\r\n$7\r\nmetrics\r\n$1\r\nv\r\n", &[])
        .await;
    assert_eq!(&set.payload[..], b"+OK\r\n");
    let get = ss.call(b"*2\r\n$3\r\nGET\r\n$7\r\nmetrics\r\n", &[]).await;
    assert_eq!(&get.payload[..], b"$1\r\nv\r\n");
    let bad = ss.call(b"*1\r\n$4\r\nNOPE\r\n", &[]).await;
    assert!(bad.payload.starts_with(b"-ERR"), "{}", bad.text());
    let last = scrape(b).await;
    let ss_delta = |command: &str, result: &str| {
        delta(
            &after,
            &last,
            "gatehouse_state_store_requests_total",
            &[("command", command), ("result", result)],
        )
    };
    assert_eq!(ss_delta("set", "ok"), 1.0);
    assert_eq!(ss_delta("get", "ok"), 1.0);
    assert_eq!(ss_delta("unknown", "error"), 1.0);
    assert_eq!(ss_delta("set", "denied"), 0.0);
    assert_eq!(last.value("gatehouse_state_store_keys", &[]), 1.0);
    // Three requests at QoS 1 from the raw client.
    assert_eq!(
        delta(
            &after,
            &last,
            "gatehouse_messages_received_total",
            &on_port(Some("1"))
        ),
        3.0
    );
    drop(sub);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authentication_outcomes_and_authorization_denials_are_counted() {
    let dir = TempDir::new("metrics-authz");
    let pki = Pki::new(dir.path(), EC);
    let (crt, key) = pki.write_server(&pki.server(EC), "server");
    let b = TestBroker::start(&format!(
        "
listeners:
  - name: secure
    bindAddress: 127.0.0.1
    ports:
      - port: 0
        tls: {{ mode: Manual, manual: {{ secretRef: server-cert }} }}
        authenticationRef: certs
        authorizationRef: sensors
authentications:
  - name: certs
    authenticationMethods:
      - method: X509
        x509Settings: {{ trustedClientCaCert: client-ca }}
authorizations:
  - name: sensors
    authorizationPolicies:
      rules:
        - principals: {{ usernames: [sensor] }}
          brokerResources:
            - method: Connect
            - method: Publish
              topics: [\"allowed/#\"]
secrets:
  server-cert: {{ certFile: {crt}, keyFile: {key} }}
configMaps:
  client-ca: {{ files: [{root}] }}
",
        crt = p(&crt),
        key = p(&key),
        root = p(&pki.root_file()),
    ))
    .await;
    let port = b.server.ports[0].addr.port();
    let (ccrt, ckey) = pki.client("sensor", EC, Duration::from_secs(3600), "sensor");
    let before = scrape(&b).await;
    let x509 = [
        ("authentication", "certs"),
        ("method", "X509"),
        ("result", "accepted"),
    ];
    assert_eq!(before.value("gatehouse_authentications_total", &x509), 0.0);

    // The same client twice, publishing where it may not: the first run fills the
    // decision cache (CONNECT and PUBLISH misses), the second hits it.
    let client_id = unique("sensor");
    for _ in 0..2 {
        // The PUBACK says 0x87; whatever mosquitto_pub makes of it, the counts tell.
        try_publish_to(
            "localhost",
            port,
            &[
                "--cafile",
                &p(&pki.root_file()),
                "--cert",
                &p(&ccrt),
                "--key",
                &p(&ckey),
                "-V",
                "mqttv5",
                "-i",
                &client_id,
                "-q",
                "1",
                "-t",
                "denied/x",
                "-m",
                "no",
            ],
        )
        .await;
    }
    // Without a client certificate no method is relevant: CONNACK 0x87.
    let out = try_publish_to(
        "localhost",
        port,
        &[
            "--cafile",
            &p(&pki.root_file()),
            "-V",
            "mqttv5",
            "-t",
            "allowed/x",
            "-m",
            "anonymous",
        ],
    )
    .await;
    assert!(!out.status.success(), "connected without a certificate");

    let after = scrape(&b).await;
    let d = |family: &str, labels: &[(&str, &str)]| delta(&before, &after, family, labels);
    assert_eq!(d("gatehouse_authentications_total", &x509), 2.0);
    assert_eq!(
        d(
            "gatehouse_authentications_total",
            &[
                ("authentication", "certs"),
                ("method", "none"),
                ("result", "rejected")
            ]
        ),
        1.0
    );
    let sensors = ("authorization", "sensors");
    assert_eq!(
        d(
            "gatehouse_authorization_denials_total",
            &[sensors, ("action", "publish")]
        ),
        2.0
    );
    assert_eq!(
        d(
            "gatehouse_authorization_denials_total",
            &[sensors, ("action", "connect")]
        ),
        0.0
    );
    assert_eq!(
        d("gatehouse_authorization_cache_misses_total", &[sensors]),
        2.0
    );
    assert_eq!(
        d("gatehouse_authorization_cache_hits_total", &[sensors]),
        2.0
    );
    assert_eq!(
        after.value("gatehouse_authorization_cache_entries", &[sensors]),
        2.0
    );
    // Denied PUBLISHes are still PUBLISHes received.
    let port = port.to_string();
    let on_port = [
        ("listener", "secure"),
        ("port", port.as_str()),
        ("qos", "1"),
    ];
    assert_eq!(d("gatehouse_messages_received_total", &on_port), 2.0);
    // The port serves a certificate: its expiry is about the issued lifetime away.
    assert!(after.value("gatehouse_tls_certificate_expiry_seconds", &on_port[..2]) > 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_waits_for_a_manual_tls_secret_and_healthz_answers_throughout() {
    let dir = TempDir::new("metrics-ready");
    let pki = Pki::new(dir.path(), EC);
    let data = dir.path().join("data");
    let b = TestBroker::start(&format!(
        "
dataDir: {data}
listeners:
  - name: ready
    bindAddress: 127.0.0.1
    ports:
      - port: 0
      - port: 0
        tls: {{ mode: Manual, manual: {{ secretRef: late-cert }} }}
",
        data = p(&data)
    ))
    .await;
    let metrics = b.metrics_addr();
    assert!(
        metrics.ip().is_loopback(),
        "every listener is loopback: {metrics}"
    );
    let tls_port = b.server.ports[1].addr.port();

    let health = http(metrics, "GET", "/healthz").await;
    assert_eq!((health.status, health.body.as_str()), (200, "ok\n"));
    assert_eq!(
        health.headers.get("connection").map(String::as_str),
        Some("close")
    );
    let ready = http(metrics, "GET", "/readyz").await;
    assert_eq!(ready.status, 503, "{}", ready.body);
    assert!(
        ready.body.contains(&format!(
            "listeners[0].ports[1] (listener ready, port {tls_port})"
        )) && ready.body.contains("secret late-cert"),
        "{}",
        ready.body
    );
    assert!(
        !ready.body.contains("listeners[0].ports[0]"),
        "{}",
        ready.body
    );
    let s = scrape(&b).await;
    assert_eq!(
        s.get(
            "gatehouse_tls_certificate_expiry_seconds",
            &[("port", &tls_port.to_string())]
        ),
        None,
        "no certificate, no expiry"
    );
    // Unknown paths and other methods.
    assert_eq!(http(metrics, "GET", "/nope").await.status, 404);
    let post = http(metrics, "POST", "/metrics").await;
    assert_eq!(post.status, 405);
    assert_eq!(
        post.headers.get("allow").map(String::as_str),
        Some("GET, HEAD")
    );

    // The secret appears as a folder in the data directory, as Kubernetes mounts it.
    let secret = data.join("secrets").join("late-cert");
    std::fs::create_dir_all(&secret).expect("secret folder");
    let issued = pki.server(EC);
    std::fs::write(secret.join("tls.key"), issued.key_pem()).expect("key");
    std::fs::write(secret.join("tls.crt"), issued.chain_pem()).expect("chain");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let r = http(metrics, "GET", "/readyz").await;
        if r.status == 200 {
            assert_eq!(r.body, "ready\n");
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not ready 10 s after the secret appeared: {}",
            r.body
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let s = scrape(&b).await;
    let left = s.value(
        "gatehouse_tls_certificate_expiry_seconds",
        &[("listener", "ready"), ("port", &tls_port.to_string())],
    );
    let expected = issued
        .not_after()
        .duration_since(SystemTime::now())
        .expect("the certificate is valid")
        .as_secs_f64();
    assert!((left - expected).abs() <= 5.0, "{left} s vs {expected} s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_metrics_port_refuses_to_start_naming_the_setting() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("addr").port();
    let err = TestBroker::try_start(&format!(
        "
listeners:
  - name: busy
    bindAddress: 127.0.0.1
    ports: [ {{ port: 0 }} ]
diagnostics: {{ metrics: {{ prometheusPort: {port} }} }}
"
    ))
    .await
    .err()
    .expect("started although the metrics port is taken");
    assert!(
        err.contains("diagnostics.metrics.prometheusPort") && err.contains(&port.to_string()),
        "{err}"
    );
}

/// The parser the scrapes go through is strict, so a scrape that parses is well formed.
#[test]
fn the_parser_rejects_what_prometheus_would() {
    use openmetrics_parser::prometheus::parse_prometheus;
    let ok = "# HELP a_total A.\n# TYPE a_total counter\na_total{l=\"x\\\"y\"} 1\n";
    assert!(parse_prometheus(ok).is_ok());
    for bad in [
        // An unescaped quote in a label value.
        "# TYPE a_total counter\na_total{l=\"x\"y\"} 1\n",
        // The same series twice.
        "# TYPE a_total counter\na_total{l=\"x\"} 1\na_total{l=\"x\"} 2\n",
        // A negative counter.
        "# TYPE a_total counter\na_total -1\n",
        // Not a number.
        "# TYPE a gauge\na one\n",
    ] {
        assert!(parse_prometheus(bad).is_err(), "accepted {bad:?}");
    }
}

/// Connection tasks (issue 14, memory per connection): a socket waiting for CONNECT is one
/// task; a connected client is one task too, because the task that read CONNECT ends once
/// it has handed the connection to the task that serves it; and every one of them ends
/// with its connection. `gatehouse_runtime_tasks` is the runtime's own count.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_task_per_connection_and_none_after_close() {
    let pb = ProtocolBroker::start().await;
    let tasks = |s: &Scrape| s.value("gatehouse_runtime_tasks", &[]);
    let before = tasks(&scrape(&pb.broker).await);
    assert!(before >= 1.0, "the runtime counts its own tasks: {before}");
    let mut connected = Vec::new();
    for i in 0..40 {
        connected.push(pb.v5(&format!("tasks-{i}")).await);
    }
    let mut waiting = Vec::new();
    for _ in 0..10 {
        waiting.push(pb.client().await);
    }
    // Exactly one task more per connection: a handshake task that outlived its CONNECT
    // would make it two per connected client.
    let held = scrape_until(&pb.broker, "one task per connection", |s| {
        tasks(s) >= before + 50.0
    })
    .await;
    assert!(
        tasks(&held) <= before + 52.0,
        "{} tasks for 50 connections over a baseline of {before}",
        tasks(&held)
    );
    drop(connected);
    drop(waiting);
    scrape_until(&pb.broker, "every connection task ended", |s| {
        tasks(s) <= before
    })
    .await;
}
