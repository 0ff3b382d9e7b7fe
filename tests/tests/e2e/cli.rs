//! The `gatehouse` binary: `check`, running from a config file, refusing ports it cannot
//! serve safely yet, and the embedded defaults.
//!
//! `gatehouse` without arguments would bind 127.0.0.1:1883, which may be in use on the
//! test machine, so the defaults are checked in-process instead.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use gatehouse_config::{Config, Protocol};
use gatehouse_tests::broker::{free_port, gatehouse_bin, run_gatehouse, unique, TempDir};
use gatehouse_tests::mosquitto::{publish, Sub};
use tokio::io::{AsyncBufReadExt, BufReader};

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The shipped examples are valid YAML configurations. `check` also checks the files they
/// refer to (issue 16), which the repository does not ship for `full.yaml` and
/// `aio-manifests.yaml` (certificates, keys, JWKS; and AIO's default SAT needs a
/// Kubernetes pod): those are their only errors.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_accepts_the_shipped_examples() {
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/examples");
    for name in ["gatehouse.yaml", "full.yaml", "aio-manifests.yaml"] {
        let path = examples.join(name);
        let path = path.to_str().expect("UTF-8 path");
        let out = run_gatehouse(&["check", "--config", path]).await;
        let stderr = text(&out.stderr);
        assert!(
            !stderr.contains("invalid configuration"),
            "{name}: {stderr}"
        );
        for line in stderr.lines().filter(|l| l.starts_with("error: ")) {
            assert!(
                line.contains("does not exist") || line.contains("no backend for service account"),
                "gatehouse check {name}: {line}"
            );
        }
        if name == "gatehouse.yaml" {
            assert!(out.status.success(), "{name}: {}\n{stderr}", out.status);
            assert!(
                text(&out.stdout).contains("configuration is valid"),
                "{}",
                text(&out.stdout)
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_without_config_checks_the_defaults() {
    let out = run_gatehouse(&["check"]).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("embedded defaults are valid"),
        "{}",
        text(&out.stdout)
    );
}

/// `gatehouse --config FILE` serves MQTT on the configured port and stops cleanly on
/// SIGTERM.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_serves_mqtt_from_a_config_file() {
    let dir = TempDir::new("run");
    let config = dir.write(
        "gatehouse.yaml",
        "
listeners:
  - name: cli
    bindAddress: 127.0.0.1
    ports:
      - port: 0
diagnostics:
  logs: { level: info, format: json }
  metrics: { prometheusPort: 0 }
",
    );
    let mut child = tokio::process::Command::new(gatehouse_bin())
        .arg("--config")
        .arg(&config)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start gatehouse");
    let mut stderr = BufReader::new(child.stderr.take().expect("stderr")).lines();

    // The port was 0: learn it from the "listening on" log line (JSON logs).
    let mut seen = Vec::new();
    let addr: SocketAddr = tokio::time::timeout(Duration::from_secs(20), async {
        while let Ok(Some(line)) = stderr.next_line().await {
            seen.push(line.clone());
            let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) else {
                continue;
            };
            // JSON lines have the event's fields at the top level (issue 16).
            if let Some(at) = v["message"]
                .as_str()
                .and_then(|m| m.strip_prefix("listening on "))
            {
                return at.parse().ok();
            }
        }
        None
    })
    .await
    .ok()
    .flatten()
    .unwrap_or_else(|| panic!("no 'listening on' log line:\n{}", seen.join("\n")));
    assert_eq!(addr.ip(), IpAddr::V4(Ipv4Addr::LOCALHOST));
    // Keep draining the log so the broker never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = stderr.next_line().await {} });

    let topic = unique("cli");
    let mut sub = Sub::subscribed(addr, &["-V", "mqttv5", "-q", "1", "-t", &topic]).await;
    publish(
        addr,
        &[
            "-V",
            "mqttv311",
            "-q",
            "1",
            "-t",
            &topic,
            "-m",
            "from the binary",
        ],
    )
    .await;
    assert_eq!(sub.next_message().await.payload, "from the binary");

    let pid = child.id().expect("running").to_string();
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("run kill");
    assert!(status.success());
    let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .expect("gatehouse did not stop on SIGTERM")
        .expect("wait");
    assert!(status.success(), "exit status after SIGTERM: {status}");
}

/// A port the broker cannot secure makes the binary refuse to start, naming the YAML
/// path and the reason, before any port is opened: SAT authentication by TokenReview
/// outside a cluster (no API server to ask).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_refuses_ports_it_cannot_secure_yet() {
    let dir = TempDir::new("refuse");
    let cases = [(
        "authenticationRef",
        "in-cluster",
        "authenticationRef: sat",
        "
authentications:
  - name: sat
    authenticationMethods:
      - method: ServiceAccountToken
        serviceAccountTokenSettings:
          audiences: [aio-internal]
",
    )];
    for (field, reason, setting, extra) in cases {
        let plain = free_port();
        let guarded = free_port();
        let path = dir.write(
            &format!("{field}.yaml"),
            &format!(
                "
listeners:
  - name: refused
    bindAddress: 127.0.0.1
    ports:
      - port: {plain}
      - port: {guarded}
        {setting}
{extra}"
            ),
        );
        let path = path.to_str().expect("UTF-8 path");

        // `check` refuses it too, naming the same path (issue 16: `check` is a preflight).
        let out = run_gatehouse(&["check", "--config", path]).await;
        assert_eq!(
            out.status.code(),
            Some(1),
            "check {field}: {}",
            text(&out.stderr)
        );
        assert!(
            text(&out.stderr).contains("no backend for service account tokens"),
            "check {field}: {}",
            text(&out.stderr)
        );

        let mut child = tokio::process::Command::new(gatehouse_bin())
            .args(["--config", path])
            .env_remove("RUST_LOG")
            // Outside a cluster whatever runs the tests.
            .env_remove("KUBERNETES_SERVICE_HOST")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start gatehouse");
        // Until it exits, neither port may accept a connection.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        let status = loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                break status;
            }
            for port in [plain, guarded] {
                let open = tokio::net::TcpStream::connect((Ipv4Addr::LOCALHOST, port))
                    .await
                    .is_ok();
                assert!(!open, "{field}: port {port} accepted a connection");
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{field}: gatehouse kept running"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let out = child.wait_with_output().await.expect("output");
        let stderr = text(&out.stderr);
        assert!(!status.success(), "{field}: exit status {status}");
        assert!(
            stderr.contains(&format!("listeners[0].ports[1].{field}")) && stderr.contains(reason),
            "{field}: stderr does not name the path and the reason:\n{stderr}"
        );
    }
}

/// The configuration used when no file is given: local-only MQTT and WebSockets.
#[test]
fn local_default_is_loopback_mqtt_and_websockets() {
    let config = Config::local_default();
    config.validate().expect("the defaults are valid");
    assert_eq!(config.listeners.len(), 1);
    let listener = &config.listeners[0];
    assert_eq!(listener.name, "default");
    assert_eq!(listener.bind_address, IpAddr::V4(Ipv4Addr::LOCALHOST));
    let ports: Vec<(u16, Protocol, Option<&str>)> = listener
        .ports
        .iter()
        .map(|p| (p.port, p.protocol, p.path.as_deref()))
        .collect();
    assert_eq!(
        ports,
        vec![
            (1883, Protocol::Mqtt, None),
            (8080, Protocol::WebSockets, Some("/mqtt"))
        ]
    );
    assert!(listener.ports.iter().all(|p| p.tls.is_none()
        && p.authentication_ref.is_none()
        && p.authorization_ref.is_none()));
    // The shipped example says it is exactly the defaults.
    let example = include_str!("../../../config/examples/gatehouse.yaml");
    let loaded = gatehouse_config::load_str(example, "gatehouse.yaml").expect("example loads");
    assert_eq!(loaded.config.listeners, config.listeners);
    assert_eq!(loaded.config.broker, config.broker);
}
