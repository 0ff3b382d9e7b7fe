//! The load generator (`benches/src/bin/loadgen.rs`, issue 14) counts what it claims:
//! it publishes a fixed number of messages through the broker while `mosquitto_sub`, an
//! independent client, subscribes to the same topics, and the generator's published,
//! accepted and delivered counts must match exactly what `mosquitto_sub` received.
//! (Figures are never asserted here; only counts.)

use std::process::Stdio;
use std::time::Duration;

use gatehouse_tests::broker::{workspace_bin, TestBroker};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// `mosquitto_sub` printing one `MSG <topic> <payload length>` line per message (the
/// payload holds binary timestamps, so it is not printed).
struct CountingSub {
    /// Held so `kill_on_drop` ends mosquitto_sub with the test.
    _child: Child,
    lines: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
}

impl CountingSub {
    async fn start(port: u16, version: &str, qos: u8, filter: &str) -> CountingSub {
        let mut child = Command::new("stdbuf")
            .args([
                "-oL",
                "mosquitto_sub",
                "-h",
                "127.0.0.1",
                "-p",
                &port.to_string(),
            ])
            .args(["-V", version, "-q", &qos.to_string(), "-t", filter])
            .args(["-d", "-F", "MSG %t %l"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("run stdbuf mosquitto_sub (Debian mosquitto-clients)");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut sub = CountingSub {
            _child: child,
            lines: BufReader::new(stdout).lines(),
        };
        let subscribed = tokio::time::timeout(Duration::from_secs(10), async {
            while let Ok(Some(l)) = sub.lines.next_line().await {
                if l.starts_with("Subscribed (mid:") {
                    return true;
                }
            }
            false
        })
        .await;
        assert_eq!(subscribed, Ok(true), "mosquitto_sub did not subscribe");
        sub
    }

    /// Messages (topic, payload length) until `want` arrived and then nothing more for
    /// half a second, or 20 s passed.
    async fn collect(&mut self, want: usize) -> Vec<(String, usize)> {
        let mut got = Vec::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let quiet = if got.len() >= want {
                tokio::time::Instant::now() + Duration::from_millis(500)
            } else {
                deadline
            };
            match tokio::time::timeout_at(quiet.min(deadline), self.lines.next_line()).await {
                Ok(Ok(Some(l))) => {
                    if let Some(rest) = l.strip_prefix("MSG ") {
                        let (topic, len) = rest.rsplit_once(' ').expect("MSG topic length");
                        got.push((topic.to_string(), len.parse().expect("payload length")));
                    }
                }
                _ => return got,
            }
        }
    }
}

/// Run the generator against `port`; its JSON line.
async fn loadgen(port: u16, args: &[&str]) -> serde_json::Value {
    let bin = tokio::task::spawn_blocking(|| workspace_bin("gatehouse-benches", "loadgen"))
        .await
        .expect("build loadgen");
    let out = Command::new(bin)
        .args(["--host", "127.0.0.1", "--port", &port.to_string()])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .await
        .expect("run loadgen");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "loadgen {args:?} failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let line = stdout.lines().last().expect("a JSON line");
    serde_json::from_str(line).expect("loadgen's JSON line")
}

fn total(v: &serde_json::Value, key: &str) -> u64 {
    v["total"][key]
        .as_u64()
        .unwrap_or_else(|| panic!("total.{key} in {v}"))
}

/// 1,000 QoS 1 messages, MQTT 5, 1 publisher → 1 generator subscriber + mosquitto_sub.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loadgen_qos1_counts_match_mosquitto_sub() {
    let broker = TestBroker::local().await;
    let port = broker.mqtt_addr().port();
    let run = "vq1";
    let mut sub = CountingSub::start(port, "mqttv5", 1, &format!("lg/{run}/t/+")).await;
    let r = loadgen(
        port,
        &[
            "--run-id",
            run,
            "pubsub",
            "--qos",
            "1",
            "--window",
            "64",
            "--publishers",
            "1",
            "--subscribers",
            "1",
            "--count",
            "1000",
            "--payload",
            "64",
        ],
    )
    .await;
    let got = sub.collect(1000).await;
    assert_eq!(
        got.len(),
        1000,
        "mosquitto_sub received {} of 1000",
        got.len()
    );
    assert!(
        got.iter()
            .all(|(t, len)| t == &format!("lg/{run}/t/0") && *len == 64),
        "{got:?}"
    );
    assert_eq!(total(&r, "sent"), 1000, "{r}");
    assert_eq!(total(&r, "accepted"), 1000, "{r}");
    assert_eq!(total(&r, "refused"), 0, "{r}");
    assert_eq!(total(&r, "delivered"), 1000, "{r}");
    assert_eq!(r["delivered_ratio"].as_f64(), Some(1.0), "{r}");
    assert_eq!(r["errors"].as_u64(), Some(0), "{r}");
    // Every delivered message had its timestamps read.
    assert_eq!(r["latency_us"]["count"].as_u64(), Some(1000), "{r}");
}

/// QoS 2, MQTT 3.1.1, 4 publishers × 250 → 2 generator subscribers + mosquitto_sub:
/// the generator must count 1,000 accepted (PUBCOMP) and 2,000 delivered, and
/// mosquitto_sub must see 250 on each publisher's topic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loadgen_qos2_fan_out_counts_match_mosquitto_sub() {
    let broker = TestBroker::local().await;
    let port = broker.mqtt_addr().port();
    let run = "vq2";
    let mut sub = CountingSub::start(port, "mqttv311", 2, &format!("lg/{run}/t/+")).await;
    let r = loadgen(
        port,
        &[
            "--run-id",
            run,
            "--mqtt",
            "3",
            "pubsub",
            "--qos",
            "2",
            "--publishers",
            "4",
            "--subscribers",
            "2",
            "--count",
            "250",
            "--payload",
            "32",
        ],
    )
    .await;
    let got = sub.collect(1000).await;
    assert_eq!(
        got.len(),
        1000,
        "mosquitto_sub received {} of 1000",
        got.len()
    );
    for p in 0..4 {
        let topic = format!("lg/{run}/t/{p}");
        let n = got
            .iter()
            .filter(|(t, len)| t == &topic && *len == 32)
            .count();
        assert_eq!(n, 250, "{topic}: {n}");
    }
    assert_eq!(total(&r, "sent"), 1000, "{r}");
    assert_eq!(total(&r, "accepted"), 1000, "{r}");
    assert_eq!(total(&r, "delivered"), 2000, "{r}");
    assert_eq!(total(&r, "expected_delivered"), 2000, "{r}");
    assert_eq!(r["errors"].as_u64(), Some(0), "{r}");
}
