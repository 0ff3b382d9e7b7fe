//! Custom authentication (behaviour.md §3 "Custom", custom-auth.md) against real HTTPS
//! servers started by the test: the shipped example server (`custom-auth-server`, user
//! names and passwords) and a small scripted HTTP/1.1 server over tokio-rustls
//! (`gatehouse_tests::https_stub`) that records every request and answers what the test
//! tells it to. Clients are mosquitto_pub / mosquitto_sub and raw packets (for exact
//! CONNACK codes).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime};

use gatehouse::auth::{Credentials, Outcome, Reauth};
use gatehouse_config::PrivateKeyAlgorithm;
use gatehouse_protocol::ReasonCode;
use gatehouse_tests::broker::{free_port, unique, workspace_bin, TempDir, TestBroker};
use gatehouse_tests::https_stub::{ScriptedServer, Seen};
use gatehouse_tests::mosquitto::{try_publish, Sub};
use gatehouse_tests::raw::{connack_code, frame, mqtt_str, RawClient};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use gatehouse_tests::tls::Pki;
use gatehouse_tests::wait;

const EC: PrivateKeyAlgorithm = PrivateKeyAlgorithm::Ec256;
const WAIT: Duration = Duration::from_secs(10);

fn p(path: &Path) -> String {
    path.to_str().expect("UTF-8 path").to_owned()
}

// ---------------------------------------------------------------------------------------
// The example server
// ---------------------------------------------------------------------------------------

/// The `custom-auth-server` binary, built once per test process like `gatehouse_bin`.
fn example_server_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| workspace_bin("gatehouse-custom-auth-server", "custom-auth-server"))
}

/// `custom-auth-server add-user --password-stdin`.
async fn add_user(users: &Path, name: &str, password: &str, extra: &[&str]) {
    let mut child = tokio::process::Command::new(example_server_bin())
        .args(["add-user", "--password-stdin", "--users"])
        .arg(users)
        .args(["--name", name])
        .args(extra)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("run custom-auth-server add-user");
    let mut stdin = child.stdin.take().expect("stdin");
    stdin
        .write_all(format!("{password}\n").as_bytes())
        .await
        .expect("write the password");
    drop(stdin);
    let out = tokio::time::timeout(WAIT, child.wait_with_output())
        .await
        .expect("add-user finishes")
        .expect("add-user output");
    assert!(
        out.status.success(),
        "add-user failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `custom-auth-server serve` on a free port, killed on drop.
struct ExampleServer {
    _child: tokio::process::Child,
    addr: SocketAddr,
}

impl ExampleServer {
    async fn start(users: &Path, cert: &Path, key: &Path) -> ExampleServer {
        let mut child = tokio::process::Command::new(example_server_bin())
            .args(["serve", "--listen", "127.0.0.1:0", "--users"])
            .arg(users)
            .arg("--cert")
            .arg(cert)
            .arg("--key")
            .arg(key)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("run custom-auth-server serve");
        let mut line = String::new();
        let stdout = child.stdout.take().expect("stdout");
        tokio::time::timeout(WAIT, BufReader::new(stdout).read_line(&mut line))
            .await
            .expect("the server prints its address")
            .expect("read stdout");
        let addr = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("custom-auth-server did not start: {line:?}"))
            .parse()
            .expect("an address");
        ExampleServer {
            _child: child,
            addr,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_server_authenticates_mosquitto_clients_by_user_name_and_password() {
    let dir = TempDir::new("custom-example");
    let pki = Pki::new(dir.path(), EC);
    let (crt, key) = pki.write_server(&pki.server(EC), "auth-server");
    let users = dir.path().join("users.yaml");
    add_user(
        &users,
        "client1",
        "password1",
        &["--attribute", "floor=floor1"],
    )
    .await;
    let server = ExampleServer::start(&users, &crt, &key).await;
    let b = TestBroker::start(&broker_yaml(
        &dir,
        &pki,
        &[custom(
            &format!("https://localhost:{}/authn", server.addr.port()),
            "",
        )],
        "",
    ))
    .await;

    let topic = unique("custom/example");
    let mut sub = Sub::subscribed(
        b.mqtt_addr(),
        &[
            "-u",
            "client1",
            "-P",
            "password1",
            "-V",
            "mqttv5",
            "-t",
            &topic,
        ],
    )
    .await;
    for version in ["mqttv5", "mqttv311"] {
        let out = try_publish(
            b.mqtt_addr(),
            &[
                "-u",
                "client1",
                "-P",
                "password1",
                "-V",
                version,
                "-t",
                &topic,
                "-m",
                version,
                "-q",
                "1",
            ],
        )
        .await;
        assert!(
            out.status.success(),
            "{version}: publish with the right password: {}{}",
            out.stdout,
            out.stderr
        );
        assert_eq!(sub.next_message().await.payload, version);
    }

    for (version, who, password) in [
        ("mqttv5", "client1", "wrong"),
        ("mqttv311", "client1", "wrong"),
        ("mqttv5", "nobody", "password1"),
    ] {
        let out = try_publish(
            b.mqtt_addr(),
            &[
                "-u", who, "-P", password, "-V", version, "-t", &topic, "-m", "no",
            ],
        )
        .await;
        assert!(
            !out.status.success(),
            "{version}: {who}/{password} was accepted"
        );
        assert!(
            out.stderr
                .to_lowercase()
                .contains("bad user name or password"),
            "{version}: expected a bad user name or password refusal, got: {}",
            out.stderr
        );
    }
    // The exact codes: v5 0x86, 3.1.1 return code 4.
    assert_eq!(login(&b, 5, "raw-v5", "client1", b"wrong").await, 0x86);
    assert_eq!(login(&b, 4, "raw-v311", "client1", b"wrong").await, 4);
    assert_eq!(login(&b, 5, "raw-ok", "client1", b"password1").await, 0);
}

// ---------------------------------------------------------------------------------------
// A server that never answers (the scripted HTTPS server is gatehouse_tests::https_stub)
// ---------------------------------------------------------------------------------------

/// Accepts TCP connections and never answers (for timeouts).
async fn silent_server() -> (u16, JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((tcp, _)) = listener.accept().await {
            held.push(tcp);
        }
    });
    (port, task)
}

// ---------------------------------------------------------------------------------------
// Configuration and clients
// ---------------------------------------------------------------------------------------

/// One `Custom` method entry (indented for [`broker_yaml`]); `extra` holds further
/// `customSettings` lines, each starting with 10 spaces. Trusts the CA config map
/// `auth-ca` and sends header `x-api-key: s3cret`.
fn custom(endpoint: &str, extra: &str) -> String {
    format!(
        "      - method: Custom
        customSettings:
          endpoint: \"{endpoint}\"
          caCertConfigMap: auth-ca
          headers: {{ x-api-key: s3cret }}
{extra}"
    )
}

/// A plain MQTT port whose chain `users` is `methods`; config map `auth-ca` = the root
/// of `pki`; `more` is appended (e.g. `secrets:`, more config maps).
fn broker_yaml(dir: &TempDir, pki: &Pki, methods: &[String], more: &str) -> String {
    format!(
        "
dataDir: {data}
listeners:
  - name: custom
    bindAddress: 127.0.0.1
    ports:
      - port: 0
        authenticationRef: users
authentications:
  - name: users
    authenticationMethods:
{methods}
configMaps:
  auth-ca: {{ files: [{root}] }}
{more}
",
        data = p(&dir.path().join("data")),
        methods = methods.join(""),
        root = p(&pki.root_file()),
    )
}

/// A CONNECT with user name and password, v5 (`level` 5) or 3.1.1 (4).
fn login_connect(level: u8, client_id: &str, username: &str, password: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    mqtt_str(&mut body, b"MQTT");
    body.push(level);
    body.push(0x80 | 0x40 | 0x02);
    body.extend(60u16.to_be_bytes());
    if level == 5 {
        body.push(0); // no properties
    }
    mqtt_str(&mut body, client_id.as_bytes());
    mqtt_str(&mut body, username.as_bytes());
    mqtt_str(&mut body, password);
    frame(0x10, &body)
}

/// Connect with a login and return the CONNACK code (the client is dropped).
async fn login(b: &TestBroker, level: u8, client_id: &str, username: &str, password: &[u8]) -> u8 {
    let mut c = RawClient::connect(b.mqtt_addr()).await;
    c.send(&login_connect(level, client_id, username, password))
        .await;
    let raw = c.recv_raw(WAIT).await.expect("a CONNACK");
    connack_code(&raw)
}

fn rfc3339(t: SystemTime) -> String {
    time::OffsetDateTime::from(t)
        .format(&time::format_description::well_known::Rfc3339)
        .expect("format")
}

/// The test's answers, by CONNECT user name.
fn by_username(seen: &Seen) -> (u16, String) {
    match seen.body["username"].as_str().unwrap_or_default() {
        "ok" => (
            200,
            r#"{"expiry": "2099-01-01T00:00:00Z", "attributes": {"floor": "floor1"}}"#.into(),
        ),
        "empty" => (200, "{}".into()),
        "banned" => (403, r#"{"reason": 138, "message": "banned device"}"#.into()),
        "odd-reason" => (
            403,
            r#"{"reason": 139, "message": "shutting down?"}"#.into(),
        ),
        "bad-password" => (403, r#"{"reason": 134}"#.into()),
        "broken" => (500, "oops".into()),
        _ => (403, r#"{"reason": 135, "message": "unknown"}"#.into()),
    }
}

// ---------------------------------------------------------------------------------------
// Tests with the scripted server
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pass_and_fail_answers_decide_with_the_servers_reason() {
    let dir = TempDir::new("custom-decide");
    let pki = Pki::new(dir.path(), EC);
    let server = ScriptedServer::start(&pki, None, by_username).await;
    let b = TestBroker::start(&broker_yaml(
        &dir,
        &pki,
        &[custom(&server.endpoint("/v1/authn?tenant=t1"), "")],
        "",
    ))
    .await;

    assert_eq!(login(&b, 5, "dev-ok", "ok", b"password1").await, 0x00);
    assert_eq!(login(&b, 5, "dev-empty", "empty", b"x").await, 0x00);
    assert_eq!(login(&b, 5, "dev-banned", "banned", b"x").await, 0x8A);
    assert_eq!(login(&b, 4, "dev-banned3", "banned", b"x").await, 5);
    assert_eq!(
        login(&b, 5, "dev-odd", "odd-reason", b"x").await,
        0x87,
        "0x8B is not a CONNACK reason: 0x87 instead"
    );
    assert_eq!(login(&b, 5, "dev-pw", "bad-password", b"x").await, 0x86);
    assert_eq!(login(&b, 4, "dev-pw3", "bad-password", b"x").await, 4);
    assert_eq!(
        login(&b, 5, "dev-broken", "broken", b"x").await,
        0x87,
        "a 500 is a communication failure: no method is relevant"
    );

    let seen = server.seen();
    let first = &seen[0];
    assert_eq!(first.target, "/v1/authn?tenant=t1&api-version=0.5.0");
    assert_eq!(first.header("x-api-key"), Some("s3cret"));
    assert_eq!(first.header("content-type"), Some("application/json"));
    assert_eq!(
        first.body,
        serde_json::json!({
            "type": "connect",
            "username": "ok",
            "password": "cGFzc3dvcmQx",
            "clientId": "dev-ok",
        })
    );
    assert_eq!(seen.len(), 8, "one request per CONNECT: {seen:#?}");

    // Through mosquitto too: a pass publishes, the server's reason reaches the client.
    let out = try_publish(
        b.mqtt_addr(),
        &["-u", "ok", "-P", "x", "-t", "t", "-m", "m"],
    )
    .await;
    assert!(out.status.success(), "{}{}", out.stdout, out.stderr);
    let out = try_publish(
        b.mqtt_addr(),
        &[
            "-u", "banned", "-P", "x", "-V", "mqttv5", "-t", "t", "-m", "m",
        ],
    )
    .await;
    assert!(!out.status.success());
    assert!(
        out.stderr.to_lowercase().contains("banned"),
        "expected a Banned refusal: {}",
        out.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn communication_failures_fall_through_to_the_next_method() {
    let dir = TempDir::new("custom-outage");
    let pki = Pki::new(dir.path(), EC);
    let other_dir = TempDir::new("custom-outage-other");
    let other = Pki::new(other_dir.path(), EC);
    let working = ScriptedServer::start(&pki, None, by_username).await;
    let failing = ScriptedServer::start(&pki, None, |_| (503, "busy".into())).await;
    let untrusted = ScriptedServer::start(&other, None, by_username).await;
    let (silent, _silent_task) = silent_server().await;
    let closed = free_port();

    let chain = [
        // Connection refused.
        custom(&format!("https://localhost:{closed}/"), ""),
        // Server certificate from a CA the method does not trust.
        custom(&untrusted.endpoint("/"), ""),
        // Accepts TCP, never answers: the timeout.
        custom(
            &format!("https://localhost:{silent}/"),
            "          timeout: 1s\n",
        ),
        // 503.
        custom(&failing.endpoint("/"), ""),
        custom(&working.endpoint("/"), ""),
    ];
    let b = TestBroker::start(&broker_yaml(&dir, &pki, &chain, "")).await;
    let started = Instant::now();
    assert_eq!(login(&b, 5, "dev-through", "ok", b"x").await, 0x00);
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "the silent server's 1 s timeout was not waited for ({:?})",
        started.elapsed()
    );
    assert_eq!(
        login(&b, 5, "dev-through-banned", "banned", b"x").await,
        0x8A,
        "the first reachable server decides"
    );
    assert!(untrusted.seen().is_empty(), "TLS to an untrusted server");
    assert_eq!(failing.seen().len(), 2);
    assert_eq!(working.seen().len(), 2);

    // A chain whose only server is down: nothing is relevant, 0x87 / 3.1.1 return code 5.
    let alone = TestBroker::start(&broker_yaml(
        &dir,
        &pki,
        &[custom(&format!("https://localhost:{closed}/"), "")],
        "",
    ))
    .await;
    assert_eq!(login(&alone, 5, "dev-alone", "ok", b"x").await, 0x87);
    assert_eq!(login(&alone, 4, "dev-alone3", "ok", b"x").await, 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_broker_presents_its_client_certificate_to_an_mtls_server() {
    let dir = TempDir::new("custom-mtls");
    let pki = Pki::new(dir.path(), EC);
    let server = ScriptedServer::start(&pki, Some(pki.root.certificate()), by_username).await;
    let (crt, key) = pki.client("gatehouse-broker", EC, Duration::from_secs(3600), "broker");
    let with_cert = custom(
        &server.endpoint("/"),
        "          auth: { x509: { secretRef: broker-client } }\n",
    );
    let b = TestBroker::start(&broker_yaml(
        &dir,
        &pki,
        &[with_cert],
        &format!(
            "secrets:\n  broker-client: {{ certFile: {}, keyFile: {} }}\n",
            p(&crt),
            p(&key)
        ),
    ))
    .await;
    assert_eq!(login(&b, 5, "dev-mtls", "ok", b"x").await, 0x00);
    assert_eq!(
        server.seen()[0].client_cn.as_deref(),
        Some("gatehouse-broker")
    );

    // Without the certificate the server refuses the handshake: not relevant, 0x87.
    let without = TestBroker::start(&broker_yaml(
        &dir,
        &pki,
        &[custom(&server.endpoint("/"), "")],
        "",
    ))
    .await;
    assert_eq!(login(&without, 5, "dev-no-mtls", "ok", b"x").await, 0x87);
    assert_eq!(server.seen().len(), 1);
}

/// Credential expiry from the server's `expiry`: the connection is closed then, without
/// a DISCONNECT packet.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_connection_closes_without_disconnect_when_the_expiry_passes() {
    let dir = TempDir::new("custom-expiry");
    let pki = Pki::new(dir.path(), EC);
    let server = ScriptedServer::start(&pki, None, |_| {
        let expiry = rfc3339(SystemTime::now() + Duration::from_secs(3));
        (200, format!(r#"{{"expiry": "{expiry}"}}"#))
    })
    .await;
    let b = TestBroker::start(&broker_yaml(
        &dir,
        &pki,
        &[custom(&server.endpoint("/"), "")],
        "",
    ))
    .await;
    let mut c = RawClient::connect(b.mqtt_addr()).await;
    c.send(&login_connect(5, "short-lived", "user", b"pw"))
        .await;
    let raw = c.recv_raw(WAIT).await.expect("CONNACK");
    assert_eq!(connack_code(&raw), 0);
    let started = Instant::now();
    c.expect_closed(WAIT).await;
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "closed too early ({:?}): the credentials were valid for seconds more",
        started.elapsed()
    );
}

/// The chain's re-authentication (AUTH 0x19) through a Custom method, called directly:
/// pass → new principal, fail → 0x87 / 0x8C, server down → continue.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reauthentication_asks_the_server_with_an_auth_request() {
    let dir = TempDir::new("custom-reauth");
    let pki = Pki::new(dir.path(), EC);
    let server = ScriptedServer::start(&pki, None, |seen| {
        let data = seen.body["enhancedAuthentication"]["data"]
            .as_str()
            .unwrap_or_default();
        match data {
            // "fresh"
            "ZnJlc2g=" => (
                200,
                r#"{"expiry": "2099-01-01T00:00:00+01:00", "attributes": {"k": "v"}}"#.into(),
            ),
            // "method"
            "bWV0aG9k" => (403, r#"{"reason": 140}"#.into()),
            _ => (403, r#"{"reason": 134, "message": "stale"}"#.into()),
        }
    })
    .await;
    let yaml = broker_yaml(&dir, &pki, &[custom(&server.endpoint("/"), "")], "");
    let config = gatehouse_config::load_str(&yaml, "custom-reauth.yaml")
        .expect("config")
        .config;
    let chain = gatehouse::auth::build(&config, "users").expect("chain");

    match chain.reauthenticate("dev-1", None, "token", b"fresh").await {
        Reauth::Success(p) => {
            assert_eq!(p.client_id, "dev-1");
            assert_eq!(p.attributes.get("k").map(String::as_str), Some("v"));
            assert_eq!(p.method, "Custom");
            let expiry: SystemTime = time::OffsetDateTime::parse(
                "2098-12-31T23:00:00Z",
                &time::format_description::well_known::Rfc3339,
            )
            .expect("time")
            .into();
            assert_eq!(p.expiry, Some(expiry));
        }
        other => panic!("expected success, got {other:?}"),
    }
    match chain.reauthenticate("dev-1", None, "token", b"stale").await {
        Reauth::Failed(rc, why) => {
            assert_eq!(
                rc,
                ReasonCode::NOT_AUTHORIZED,
                "0x86 is no DISCONNECT reason"
            );
            assert!(why.contains("stale"), "{why}");
        }
        other => panic!("expected failure, got {other:?}"),
    }
    match chain
        .reauthenticate("dev-1", None, "token", b"method")
        .await
    {
        Reauth::Failed(rc, _) => assert_eq!(rc, ReasonCode::BAD_AUTHENTICATION_METHOD),
        other => panic!("expected failure, got {other:?}"),
    }
    let seen = server.seen();
    assert_eq!(
        seen[0].body,
        serde_json::json!({
            "type": "auth",
            "enhancedAuthentication": { "method": "token", "data": "ZnJlc2g=" },
            "clientId": "dev-1",
        })
    );
    assert_eq!(seen[0].header("x-api-key"), Some("s3cret"));

    // CONNECT-time enhanced authentication is passed on too.
    let creds = Credentials {
        client_id: "dev-2",
        username: None,
        password: None,
        method: Some("token"),
        data: Some(b"fresh"),
        peer_certs: &[],
    };
    assert!(matches!(
        chain.authenticate(&creds).await,
        Outcome::Accepted(_)
    ));
    assert_eq!(
        server.seen()[3].body,
        serde_json::json!({
            "type": "connect",
            "enhancedAuthentication": { "method": "token", "data": "ZnJlc2g=" },
            "clientId": "dev-2",
        })
    );

    // The server gone: AUTH 0x18 Continue, the client may retry.
    let port = server.port;
    drop(server);
    wait::until_async(
        Duration::from_secs(5),
        "the server's port closed",
        || async move {
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_err()
        },
    )
    .await;
    match chain.reauthenticate("dev-1", None, "token", b"fresh").await {
        Reauth::Continue(_) => {}
        other => panic!("expected continue, got {other:?}"),
    }
}
