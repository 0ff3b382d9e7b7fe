//! The standard `process_*` metrics and `gatehouse_build_info` (issue 16 item 7), scraped
//! over HTTP from the real binary (a process of its own, so its start time and file
//! descriptors are the broker's, not the test runner's), parsed with an independent
//! Prometheus text parser, and compared with what `/proc/<pid>` says from outside.

use std::time::{Duration, SystemTime};

use gatehouse_tests::broker::{free_port, BrokerProcess, TempDir};
use openmetrics_parser::{MetricNumber, PrometheusType, PrometheusValue};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// `GET /metrics` on `port`: the body.
async fn scrape(port: u16) -> String {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect to the metrics port");
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .expect("send the request");
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut raw))
        .await
        .expect("the response within 10 s")
        .expect("read the response");
    let text = String::from_utf8(raw).expect("UTF-8");
    let (head, body) = text.split_once("\r\n\r\n").expect("headers");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    body.to_owned()
}

/// The one sample of `family` (with these labels), its type checked.
fn value(body: &str, family: &str, kind: PrometheusType, labels: &[(&str, &str)]) -> f64 {
    let parsed = openmetrics_parser::prometheus::parse_prometheus(body)
        .unwrap_or_else(|e| panic!("not valid Prometheus text ({e}):\n{body}"));
    let f = parsed
        .families
        .get(family)
        .unwrap_or_else(|| panic!("no {family} in\n{body}"));
    assert_eq!(f.family_type, kind, "{family}");
    let sample = f
        .iter_samples()
        .find(|s| {
            let set = s.get_labelset().expect("labels");
            labels
                .iter()
                .all(|(k, v)| set.get_label_value(k) == Some(*v))
        })
        .unwrap_or_else(|| panic!("no {family} {labels:?} in\n{body}"));
    let n = match &sample.value {
        PrometheusValue::Counter(c) => c.value,
        PrometheusValue::Gauge(n) | PrometheusValue::Unknown(n) => *n,
        other => panic!("{family}: unexpected value {other:?}"),
    };
    match n {
        MetricNumber::Int(i) => i as f64,
        MetricNumber::Float(f) => f,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn process_metrics_are_plausible_and_match_proc_from_outside() {
    let dir = TempDir::new("process-metrics");
    let (mqtt, ws, metrics) = (free_port(), free_port(), free_port());
    let config = dir.write(
        "gatehouse.yaml",
        &format!(
            "listeners:\n  - name: main\n    bindAddress: 127.0.0.1\n    ports:\n      - {{ port: {mqtt} }}\n      - {{ port: {ws}, protocol: WebSockets, path: /mqtt }}\ndataDir: {}\ndiagnostics: {{ metrics: {{ prometheusPort: {metrics} }} }}\n",
            dir.path().join("data").display()
        ),
    );
    let started_before = SystemTime::now();
    let broker = BrokerProcess::start(&config, mqtt).await;
    let pid = broker.child.id().expect("running");
    // Some CPU to count: a few scrapes.
    for _ in 0..3 {
        scrape(metrics).await;
    }
    let body = scrape(metrics).await;
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let launched = started_before
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();

    let build = value(
        &body,
        "gatehouse_build_info",
        PrometheusType::Gauge,
        &[("version", env!("CARGO_PKG_VERSION"))],
    );
    assert_eq!(build, 1.0);

    let rss = value(
        &body,
        "process_resident_memory_bytes",
        PrometheusType::Gauge,
        &[],
    );
    let vm = value(
        &body,
        "process_virtual_memory_bytes",
        PrometheusType::Gauge,
        &[],
    );
    assert!(rss > 1e6, "RSS {rss}");
    assert!(vm >= rss, "virtual {vm} < resident {rss}");
    // From outside: the kernel's own figure for the broker's process, read by the test.
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    let outside_kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS");
    let ratio = rss / (outside_kb * 1024.0);
    assert!(
        (0.5..2.0).contains(&ratio),
        "RSS {rss} vs /proc {outside_kb} kB"
    );

    let cpu = value(
        &body,
        "process_cpu_seconds_total",
        PrometheusType::Counter,
        &[],
    );
    assert!((0.0..600.0).contains(&cpu), "cpu {cpu}");

    // Two MQTT ports and the metrics port listen, plus stdio and the runtime's own.
    let open = value(&body, "process_open_fds", PrometheusType::Gauge, &[]);
    assert!(open >= 3.0, "open fds {open}");
    let outside = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("fd dir")
        .count() as f64;
    assert!(
        (open - outside).abs() <= 4.0,
        "open fds {open} vs {outside} in /proc/{pid}/fd"
    );
    let max = value(&body, "process_max_fds", PrometheusType::Gauge, &[]);
    assert!(max >= open, "max fds {max} < open {open}");

    let start = value(
        &body,
        "process_start_time_seconds",
        PrometheusType::Gauge,
        &[],
    );
    // Clock ticks are 10 ms and btime is whole seconds: allow a little either side.
    assert!(
        start >= launched - 2.0 && start <= now + 1.0,
        "start {start}, launched {launched}, now {now}"
    );
    assert!(
        now - start < 60.0,
        "started within the last minute: {start}"
    );
}
