//! Logs as useful as `mosquitto -v` (issue 16 item 2), read from the real binary's output
//! at the default level: the start-up lines (version, configuration file, every port with
//! its protocol, TLS, authentication and authorization), a connect line for an anonymous
//! and for an authenticated client with every field, refused connects, a disconnect line
//! with its reason, a denial line per denied request within a per-client budget (the rest
//! counted, not lost), `--log-format json` (one object per line, the same fields),
//! `--log-level` winning over `RUST_LOG`, escaped client strings (a client id cannot start
//! a forged line) and no password anywhere.

use std::path::PathBuf;
use std::time::Duration;

use gatehouse_tests::broker::{free_port, run_gatehouse, unique, BrokerProcess, TempDir};
use gatehouse_tests::mosquitto::try_publish;
use gatehouse_tests::raw::{connack_code, frame, mqtt_str, RawClient};

const WAIT: Duration = Duration::from_secs(10);
/// The password of `alice`; it must never reach the log.
const PASSWORD: &str = "Corr3ct-H0rse-Battery";
/// A wrong password tried on CONNECT; it must not reach the log either.
const WRONG: &str = "Wr0ng-Guess-Staple";
/// Denial lines per client per second (the broker's `DENIALS_PER_SECOND`).
const DENIALS_PER_SECOND: usize = 5;

/// The real binary, its stdout and stderr captured in one file.
struct Logged {
    _broker: BrokerProcess,
    log: PathBuf,
    config: PathBuf,
    /// Anonymous MQTT port.
    anon: u16,
    /// MQTT port with the `Password` method (`users`) and the `policy` authorization.
    secure: u16,
}

impl Logged {
    fn text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Wait (up to [`WAIT`]) until a line satisfies `pred`; return it.
    async fn line(&self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            if let Some(line) = self.text().lines().find(|l| pred(l)) {
                return line.to_owned();
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no {what} line in the log:\n{}",
                self.text()
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

/// Write the password file and the configuration in `dir`, start `gatehouse --config
/// <file> <args>` with `env`, and wait until both ports accept TCP.
async fn start(dir: &TempDir, args: &[&str], env: &[(&str, &str)]) -> Logged {
    let passwd = dir.path().join("passwd");
    let p = passwd.to_str().expect("UTF-8 path");
    let out = run_gatehouse(&["passwd", "-c", "-b", p, "alice", PASSWORD]).await;
    assert!(out.status.success(), "gatehouse passwd: {out:?}");
    // bob may log in but no rule lets him connect.
    let out = run_gatehouse(&["passwd", "-b", p, "bob", PASSWORD]).await;
    assert!(out.status.success(), "gatehouse passwd: {out:?}");
    let (anon, secure) = (free_port(), free_port());
    let config = dir.write(
        "gatehouse.yaml",
        &format!(
            r#"
listeners:
  - name: logs
    bindAddress: 127.0.0.1
    ports:
      - port: {anon}
      - port: {secure}
        authenticationRef: users
        authorizationRef: policy
authentications:
  - name: users
    authenticationMethods:
      - method: Password
        passwordSettings:
          passwordFile: {p}
authorizations:
  - name: policy
    authorizationPolicies:
      rules:
        - principals:
            usernames: [alice]
          brokerResources:
            - method: Connect
            - method: Publish
              topics: ["allowed/#"]
diagnostics:
  metrics:
    prometheusPort: 0
"#
        ),
    );
    let broker = BrokerProcess::start_with(&config, &[anon, secure], args, env).await;
    let log = broker.log.clone();
    Logged {
        _broker: broker,
        log,
        config,
        anon,
        secure,
    }
}

fn addr(port: u16) -> std::net::SocketAddr {
    std::net::SocketAddr::from(([127, 0, 0, 1], port))
}

/// A v5 CONNECT (clean start, keep alive 60) with a user name and password.
fn login_connect(client_id: &str, username: &str, password: &str) -> Vec<u8> {
    let mut body = Vec::new();
    mqtt_str(&mut body, b"MQTT");
    body.push(5);
    body.push(0x80 | 0x40 | 0x02);
    body.extend(60u16.to_be_bytes());
    body.push(0); // no properties
    mqtt_str(&mut body, client_id.as_bytes());
    mqtt_str(&mut body, username.as_bytes());
    mqtt_str(&mut body, password.as_bytes());
    frame(0x10, &body)
}

/// A v5 QoS 0 PUBLISH.
fn publish_q0(topic: &str) -> Vec<u8> {
    let mut body = Vec::new();
    mqtt_str(&mut body, topic.as_bytes());
    body.push(0); // no properties
    body.extend_from_slice(b"payload");
    frame(0x30, &body)
}

fn assert_has(line: &str, parts: &[&str]) {
    for part in parts {
        assert!(line.contains(part), "`{part}` missing from:\n{line}");
    }
}

/// Start-up, connect (anonymous 3.1.1, authenticated v5, refused), disconnect and denial
/// lines, in the text format at the default level; no password in the output.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_level_logs_startup_connects_disconnects_and_denials() {
    let dir = TempDir::new("logs-text");
    let b = start(&dir, &[], &[]).await;

    // Start-up: version and configuration file, then each port.
    let version = run_gatehouse(&["--version"]).await;
    let version = String::from_utf8_lossy(&version.stdout);
    let version = version.split_whitespace().last().expect("a version");
    let config = b.config.display().to_string();
    b.line("start-up", |l| {
        l.contains(&format!(
            "gatehouse {version} starting with configuration {config}"
        ))
    })
    .await;
    let anon_port = b
        .line("anonymous port", |l| {
            l.contains(&format!("listening on 127.0.0.1:{} ", b.anon))
        })
        .await;
    assert_has(
        &anon_port,
        &[
            "Mqtt",
            r#"tls="off""#,
            r#"authentication="none (anonymous)""#,
            r#"authorization="none (all allowed)""#,
        ],
    );
    let secure_port = b
        .line("secure port", |l| {
            l.contains(&format!("listening on 127.0.0.1:{} ", b.secure))
        })
        .await;
    assert_has(
        &secure_port,
        &[r#"authentication="users""#, r#"authorization="policy""#],
    );

    // An anonymous mosquitto_pub (3.1.1): connect and disconnect at info.
    let anon_id = unique("anon");
    let out = try_publish(
        addr(b.anon),
        &[
            "-V", "mqttv311", "-i", &anon_id, "-k", "30", "-t", "t/a", "-m", "hi",
        ],
    )
    .await;
    assert!(out.status.success(), "{out:?}");
    let quoted = format!("client_id=\"{anon_id}\"");
    let connect = b
        .line("anonymous connect", |l| {
            l.contains("client connected") && l.contains(&quoted)
        })
        .await;
    assert_has(
        &connect,
        &[
            " INFO ",
            "peer=127.0.0.1:",
            &format!("port={}", b.anon),
            r#"protocol="3.1.1""#,
            "clean_start=true",
            "keep_alive=30",
            r#"auth="anonymous""#,
            r#"result="accepted""#,
        ],
    );
    let disconnect = b
        .line("anonymous disconnect", |l| {
            l.contains("client disconnected") && l.contains(&quoted)
        })
        .await;
    assert_has(
        &disconnect,
        &[
            " INFO ",
            "peer=127.0.0.1:",
            r#"reason_code="0x00""#,
            r#"reason="normal disconnection""#,
        ],
    );

    // An authenticated v5 client publishing where it may not: connect line with the user
    // name and method, a denial line with principal, action and topic.
    let alice_id = unique("alice");
    let out = try_publish(
        addr(b.secure),
        &[
            "-V", "mqttv5", "-i", &alice_id, "-u", "alice", "-P", PASSWORD, "-q", "1", "-t",
            "denied/x", "-m", "hi",
        ],
    )
    .await;
    assert!(out.status.success(), "{out:?}");
    let quoted = format!("client_id=\"{alice_id}\"");
    let connect = b
        .line("authenticated connect", |l| {
            l.contains("client connected") && l.contains(&quoted)
        })
        .await;
    assert_has(
        &connect,
        &[
            &format!("port={}", b.secure),
            r#"protocol="5""#,
            r#"username="alice""#,
            r#"auth="Password""#,
            r#"principal="alice""#,
            r#"result="accepted""#,
        ],
    );
    let denial = b
        .line("denial", |l| {
            l.contains("denied publish") && l.contains(&quoted)
        })
        .await;
    assert_has(
        &denial,
        &[
            " INFO ",
            "authz",
            r#"username="alice""#,
            r#"action="publish""#,
            r#"topic="denied/x""#,
            "peer=127.0.0.1:",
        ],
    );
    b.line("authenticated disconnect", |l| {
        l.contains("client disconnected") && l.contains(&quoted)
    })
    .await;

    // A wrong password: a refused connect line with the reason code.
    let wrong_id = unique("wrong");
    let out = try_publish(
        addr(b.secure),
        &[
            "-V",
            "mqttv5",
            "-i",
            &wrong_id,
            "-u",
            "alice",
            "-P",
            WRONG,
            "-t",
            "allowed/x",
            "-m",
            "x",
        ],
    )
    .await;
    assert!(!out.status.success(), "{out:?}");
    let refused = b
        .line("refused connect", |l| {
            l.contains("connection refused") && l.contains(&format!("client_id=\"{wrong_id}\""))
        })
        .await;
    assert_has(
        &refused,
        &[
            " INFO ",
            r#"username="alice""#,
            r#"result="refused""#,
            "0x86",
        ],
    );

    // A CONNECT the policy denies: a denial line and a refused connect line.
    let bob_id = unique("bob");
    let out = try_publish(
        addr(b.secure),
        &[
            "-V",
            "mqttv5",
            "-i",
            &bob_id,
            "-u",
            "bob",
            "-P",
            PASSWORD,
            "-t",
            "allowed/x",
            "-m",
            "x",
        ],
    )
    .await;
    assert!(!out.status.success(), "{out:?}");
    let quoted = format!("client_id=\"{bob_id}\"");
    let denial = b
        .line("connect denial", |l| {
            l.contains("denied connect") && l.contains(&quoted)
        })
        .await;
    assert_has(
        &denial,
        &[" INFO ", r#"username="bob""#, r#"action="connect""#],
    );
    let refused = b
        .line("refused connect", |l| {
            l.contains("connection refused") && l.contains(&quoted)
        })
        .await;
    assert_has(&refused, &[r#"username="bob""#, r#"result="refused""#]);

    let text = b.text();
    assert!(
        !text.contains(PASSWORD) && !text.contains(WRONG),
        "a password in the log:\n{text}"
    );
}

/// `--log-format json`: every line one JSON object with the fields at the top level; the
/// denials of a client hammering a denied topic are cut to a few lines a second, and the
/// others counted (`suppressed`, `denials_suppressed`) so none goes unaccounted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_format_and_rate_limited_denials() {
    const HAMMER: usize = 60;
    let dir = TempDir::new("logs-json");
    let b = start(&dir, &["--log-format", "json"], &[]).await;

    let id = unique("hammer");
    let mut c = RawClient::connect(addr(b.secure)).await;
    c.send(&login_connect(&id, "alice", PASSWORD)).await;
    let raw = c.recv_raw(WAIT).await.expect("a CONNACK");
    assert_eq!(connack_code(&raw), 0, "alice logs in");
    let burst: Vec<u8> = (0..HAMMER)
        .flat_map(|_| publish_q0("denied/hammer"))
        .collect();
    c.send(&burst).await;
    c.disconnect().await;
    let quoted = format!("\"client_id\":\"{id}\"");
    b.line("disconnect", |l| {
        l.contains("client disconnected") && l.contains(&quoted)
    })
    .await;

    let text = b.text();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l)
                .unwrap_or_else(|e| panic!("not JSON ({e}): {l}\nlog:\n{text}"));
            assert!(v.is_object(), "not an object: {l}");
            v
        })
        .collect();
    let mine = |message: &str| -> Vec<&serde_json::Value> {
        lines
            .iter()
            .filter(|v| {
                v["client_id"] == id.as_str()
                    && v["message"]
                        .as_str()
                        .is_some_and(|m| m.starts_with(message))
            })
            .collect()
    };
    let connect = mine("client connected");
    assert_eq!(connect.len(), 1, "{text}");
    let connect = connect[0];
    assert_eq!(connect["level"], "INFO");
    assert!(
        connect["peer"]
            .as_str()
            .is_some_and(|p| p.starts_with("127.0.0.1:")),
        "{connect}"
    );
    assert_eq!(connect["port"], b.secure);
    assert_eq!(connect["protocol"], "5");
    assert_eq!(connect["clean_start"], true);
    assert_eq!(connect["keep_alive"], 60);
    assert_eq!(connect["username"], "alice");
    assert_eq!(connect["auth"], "Password");
    assert_eq!(connect["result"], "accepted");

    let denials = mine("denied publish");
    assert!(!denials.is_empty(), "no denial line:\n{text}");
    // 60 denials sent at once: one second's budget, two if a second ended meanwhile
    // (three on a very slow machine).
    assert!(
        denials.len() <= 3 * DENIALS_PER_SECOND,
        "{} denial lines for {HAMMER} denials:\n{text}",
        denials.len()
    );
    for d in &denials {
        assert_eq!(d["action"], "publish", "{d}");
        assert_eq!(d["topic"], "denied/hammer", "{d}");
        assert_eq!(d["username"], "alice", "{d}");
    }
    let disconnect = mine("client disconnected");
    assert_eq!(disconnect.len(), 1, "{text}");
    let disconnect = disconnect[0];
    assert_eq!(disconnect["reason_code"], "0x00");
    assert_eq!(disconnect["reason"], "normal disconnection");
    // Every denial is on a line or counted on a later one.
    let counted: u64 = denials
        .iter()
        .map(|d| d["suppressed"].as_u64().unwrap_or(0))
        .sum::<u64>()
        + disconnect["denials_suppressed"].as_u64().unwrap_or(0);
    assert_eq!(
        denials.len() as u64 + counted,
        HAMMER as u64,
        "denials logged {} + counted {counted}:\n{text}",
        denials.len()
    );
    assert!(!text.contains(PASSWORD), "the password in the log:\n{text}");
}

/// A client id with a line break is written escaped: it cannot start a forged line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_strings_cannot_forge_lines() {
    let dir = TempDir::new("logs-forge");
    let b = start(&dir, &[], &[]).await;
    let evil = "evil\n2026-01-01T00:00:00Z  INFO conn: forged line";
    let mut c = RawClient::connect(addr(b.anon)).await;
    c.send(&login_connect(evil, "eve\nINFO forged user", "pw"))
        .await;
    let raw = c.recv_raw(WAIT).await.expect("a CONNACK");
    assert_eq!(connack_code(&raw), 0);
    c.disconnect().await;
    b.line("disconnect", |l| {
        l.contains("client disconnected") && l.contains("evil\\n")
    })
    .await;
    let text = b.text();
    assert!(
        !text
            .lines()
            .any(|l| l.contains("forged") && !l.contains("evil\\n")),
        "a forged line:\n{text}"
    );
    assert!(
        text.contains(r#"username="eve\nINFO forged user""#),
        "{text}"
    );
    assert!(!text.contains("\"pw\""), "the password in the log:\n{text}");
}

/// `--log-level` wins over `RUST_LOG`; an invalid one is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_level_flag_wins_over_rust_log() {
    let dir = TempDir::new("logs-level");
    let b = start(&dir, &["--log-level", "warn"], &[("RUST_LOG", "debug")]).await;
    let id = unique("quiet");
    let out = try_publish(addr(b.anon), &["-i", &id, "-t", "t/q", "-m", "hi"]).await;
    assert!(out.status.success(), "{out:?}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let text = b.text();
    assert!(
        !text.contains(&id) && !text.contains("listening on") && !text.contains("DEBUG"),
        "info or debug lines with --log-level warn:\n{text}"
    );

    let out = run_gatehouse(&[
        "--config",
        b.config.to_str().expect("UTF-8"),
        "--log-level",
        "info,conn=loud",
    ])
    .await;
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("invalid --log-level"),
        "{out:?}"
    );
}
