//! The `Password` authentication method (issue 16 item 3, beyond AIO): password files
//! written by the real `mosquitto_passwd` (Debian's, `$7$` PBKDF2-SHA512 and `-H sha512`
//! `$6$`) and by `gatehouse passwd` (argon2id), used by `mosquitto_pub -u -P` and by
//! hand-made CONNECTs of both protocol levels; refusals with v5 0x86 / 3.1.1 return code 4
//! for a wrong password and an unknown user alike (and in about the same time); the file
//! reloaded on change without a restart, keeping the last good version when an edit is
//! bad; hostile hash costs refused at start-up and on reload; attributes and user names
//! reaching authorization; the method in a chain with Custom.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use gatehouse_protocol::ReasonCode;
use gatehouse_tests::broker::{run_gatehouse, unique, TempDir, TestBroker};
use gatehouse_tests::https_stub::ScriptedServer;
use gatehouse_tests::mosquitto::{try_publish, Sub};
use gatehouse_tests::raw::{connack_code, frame, mqtt_str, RawClient};
use gatehouse_tests::tls::Pki;
use gatehouse_tests::wait;

const WAIT: Duration = Duration::from_secs(10);
const SUCCESS: u8 = 0;
const BAD_LOGIN_V5: u8 = ReasonCode::BAD_USER_NAME_OR_PASSWORD.0;
const BAD_LOGIN_V311: u8 = 4;
const NOT_AUTHORIZED_V5: u8 = ReasonCode::NOT_AUTHORIZED.0;

fn p(path: &Path) -> String {
    path.to_str().expect("UTF-8 path").to_owned()
}

/// Run Debian's `mosquitto_passwd` (from the `mosquitto` package, installed by `.ci/run`).
fn mosquitto_passwd(args: &[&str]) {
    let out = Command::new("mosquitto_passwd")
        .args(args)
        .output()
        .expect("run mosquitto_passwd (install the mosquitto package)");
    assert!(
        out.status.success(),
        "mosquitto_passwd {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Run `gatehouse passwd <args>`, which must succeed.
async fn gatehouse_passwd(args: &[&str]) {
    let mut all = vec!["passwd"];
    all.extend(args);
    let out = run_gatehouse(&all).await;
    assert!(
        out.status.success(),
        "gatehouse {all:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// One MQTT port whose chain is `methods` (YAML, indented), optionally with a policy.
fn config(methods: &str, policy: Option<&str>) -> String {
    let authz = policy.map_or(String::new(), |_| {
        "        authorizationRef: policy\n".to_owned()
    });
    let policy = policy.map_or(String::new(), |rules| {
        format!(
            "authorizations:\n  - name: policy\n    authorizationPolicies:\n      rules:\n{rules}"
        )
    });
    format!(
        "
listeners:
  - name: passwords
    bindAddress: 127.0.0.1
    ports:
      - port: 0
        authenticationRef: users
{authz}authentications:
  - name: users
    authenticationMethods:
{methods}{policy}"
    )
}

/// The `Password` method entry for `file`, with `extra` lines under `passwordSettings`.
fn password_method(file: &Path, extra: &str) -> String {
    format!(
        "      - method: Password
        passwordSettings:
          passwordFile: {}
{extra}",
        p(file)
    )
}

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

/// A raw CONNECT at `level` (5 or 4) with a login; the CONNACK code.
async fn login(b: &TestBroker, level: u8, username: &str, password: &str) -> u8 {
    let mut c = RawClient::connect(b.mqtt_addr()).await;
    c.send(&login_connect(
        level,
        &unique("pw"),
        username,
        password.as_bytes(),
    ))
    .await;
    let raw = c.recv_raw(WAIT).await.expect("a CONNACK");
    connack_code(&raw)
}

/// Log in until the CONNACK code is `want` (the file is polled every second).
async fn login_until(b: &TestBroker, username: &str, password: &str, want: u8) {
    let deadline = Instant::now() + WAIT;
    loop {
        let got = login(b, 5, username, password).await;
        if got == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{username}: CONNACK {got:#04x}, expected {want:#04x} within {WAIT:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `mosquitto_pub -u user -P password` at `version` (mqttv5 or mqttv311), one message.
async fn pub_as(
    b: &TestBroker,
    version: &str,
    user: &str,
    password: &str,
    topic: &str,
) -> Result<(), String> {
    let out = try_publish(
        b.mqtt_addr(),
        &[
            "-V",
            version,
            "-i",
            &unique("pub"),
            "-u",
            user,
            "-P",
            password,
            "-q",
            "1",
            "-t",
            topic,
            "-m",
            "hello",
        ],
    )
    .await;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("{}{}", out.stdout, out.stderr))
    }
}

/// `/metrics`, checked to be valid Prometheus text; the value of the sample of `family`
/// whose line contains every one of `labels` (`name="value"`).
async fn metric(b: &TestBroker, family: &str, labels: &[&str]) -> f64 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(b.metrics_addr())
        .await
        .unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut raw = String::new();
    stream.read_to_string(&mut raw).await.unwrap();
    let body = raw.split_once("\r\n\r\n").expect("headers").1;
    openmetrics_parser::prometheus::parse_prometheus(body)
        .unwrap_or_else(|e| panic!("not valid Prometheus text ({e}):\n{body}"));
    body.lines()
        .find(|l| l.starts_with(&format!("{family}{{")) && labels.iter().all(|x| l.contains(x)))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or_else(|| panic!("no {family} {labels:?} in\n{body}"))
}

/// Wait until the broker has refused `n` changes of the password file in all (its sweep
/// saw them; `gatehouse_password_file_reloads_total{result="failure"}`).
async fn until_refused(b: &TestBroker, n: f64) {
    let what = format!("{n} refused password file changes on /metrics");
    wait::until_async(WAIT, &what, move || async move {
        metric(
            b,
            "gatehouse_password_file_reloads_total",
            &["result=\"failure\""],
        )
        .await
            >= n
    })
    .await;
}

/// Rename over `path` (a new inode, as editors and `gatehouse passwd` do).
fn replace(path: &Path, text: &str) {
    let tmp = path.with_extension("edit");
    std::fs::write(&tmp, text).expect("write");
    std::fs::rename(&tmp, path).expect("rename");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mosquitto_passwd_file_authenticates_mosquitto_pub_and_refuses_with_0x86_and_4() {
    let dir = TempDir::new("pw-mosquitto");
    let file = dir.path().join("passwd");
    let f = p(&file);
    mosquitto_passwd(&["-c", "-b", &f, "alice", "s3cret pass"]);
    // Mosquitto 1.6's format too.
    mosquitto_passwd(&["-H", "sha512", "-b", &f, "old-timer", "hunter2"]);
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(
        text.contains("alice:$7$") && text.contains("old-timer:$6$"),
        "{text}"
    );
    let b = TestBroker::start(&config(&password_method(&file, ""), None)).await;
    let topic = unique("pw/t");

    for version in ["mqttv5", "mqttv311"] {
        pub_as(&b, version, "alice", "s3cret pass", &topic)
            .await
            .unwrap_or_else(|e| panic!("alice over {version}: {e}"));
        pub_as(&b, version, "old-timer", "hunter2", &topic)
            .await
            .unwrap_or_else(|e| panic!("old-timer over {version}: {e}"));
        for (user, password) in [
            ("alice", "s3cret"),
            ("alice", ""),
            ("nobody", "s3cret pass"),
        ] {
            let refused = pub_as(&b, version, user, password, &topic)
                .await
                .expect_err("refused");
            assert!(
                refused.to_lowercase().contains("bad user name or password"),
                "{user} over {version}: {refused}"
            );
        }
    }
    // The exact codes, wrong password and unknown user alike.
    for (user, password) in [("alice", "wrong"), ("mallory", "s3cret pass")] {
        assert_eq!(login(&b, 5, user, password).await, BAD_LOGIN_V5, "{user}");
        assert_eq!(login(&b, 4, user, password).await, BAD_LOGIN_V311, "{user}");
    }
    assert_eq!(login(&b, 5, "alice", "s3cret pass").await, SUCCESS);
    assert_eq!(login(&b, 4, "alice", "s3cret pass").await, SUCCESS);
    // No credentials: the method does not apply; nothing else in the chain does either.
    let anonymous = try_publish(b.mqtt_addr(), &["-V", "mqttv5", "-t", &topic, "-m", "x"]).await;
    assert!(!anonymous.status.success());

    // mosquitto_passwd editing the file in place (a new user): taken without a restart.
    mosquitto_passwd(&["-b", &f, "bob", "builder"]);
    login_until(&b, "bob", "builder", SUCCESS).await;
    pub_as(&b, "mqttv311", "bob", "builder", &topic)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gatehouse_passwd_files_work_and_edits_apply_without_restart() {
    let dir = TempDir::new("pw-gatehouse");
    let file = dir.path().join("users");
    let f = p(&file);
    gatehouse_passwd(&["-c", "-b", &f, "alice", "first"]).await;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "a new password file is private");
    }
    assert!(std::fs::read_to_string(&file)
        .unwrap()
        .starts_with("alice:$argon2id$v=19$m=19456,t=2,p=1$"));
    let b = TestBroker::start(&config(&password_method(&file, ""), None)).await;
    let topic = unique("pw/g");
    pub_as(&b, "mqttv5", "alice", "first", &topic)
        .await
        .unwrap();
    assert_eq!(login(&b, 4, "alice", "First").await, BAD_LOGIN_V311);

    // Add a user (password on standard input), change one, delete one: each applies
    // within the poll interval, no restart.
    let mut child = tokio::process::Command::new(gatehouse_tests::broker::gatehouse_bin())
        .args(["passwd", "--password-stdin", &f, "dave"])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use tokio::io::AsyncWriteExt;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(b"d4ve pw\n").await.unwrap();
    }
    assert!(child.wait().await.unwrap().success());
    login_until(&b, "dave", "d4ve pw", SUCCESS).await;
    gatehouse_passwd(&["-b", &f, "alice", "second"]).await;
    login_until(&b, "alice", "first", BAD_LOGIN_V5).await;
    assert_eq!(login(&b, 5, "alice", "second").await, SUCCESS);
    gatehouse_passwd(&["-D", &f, "dave"]).await;
    login_until(&b, "dave", "d4ve pw", BAD_LOGIN_V5).await;

    // A bad edit (a line that is not `user:hash`, next to a new good entry): the last good
    // version stays, the good line of the bad file included.
    let good = std::fs::read_to_string(&file).unwrap();
    let dave_line = {
        gatehouse_passwd(&["-b", &f, "erin", "e"]).await;
        login_until(&b, "erin", "e", SUCCESS).await;
        let with_erin = std::fs::read_to_string(&file).unwrap();
        replace(&file, &good);
        login_until(&b, "erin", "e", BAD_LOGIN_V5).await;
        with_erin
            .lines()
            .find(|l| l.starts_with("erin:"))
            .unwrap()
            .to_owned()
    };
    let failures = |b| {
        metric(
            b,
            "gatehouse_password_file_reloads_total",
            &["result=\"failure\""],
        )
    };
    assert_eq!(failures(&b).await, 0.0);
    replace(&file, &format!("{good}{dave_line}\nthis is not an entry\n"));
    until_refused(&b, 1.0).await;
    assert_eq!(
        login(&b, 5, "erin", "e").await,
        BAD_LOGIN_V5,
        "half a bad file taken"
    );
    assert_eq!(
        login(&b, 5, "alice", "second").await,
        SUCCESS,
        "last good file kept"
    );
    // Seen on /metrics: one change not taken, the one user of the good version in force.
    assert_eq!(failures(&b).await, 1.0);
    assert_eq!(
        metric(
            &b,
            "gatehouse_password_file_users",
            &["authentication=\"users\""]
        )
        .await,
        1.0
    );
    assert!(
        metric(
            &b,
            "gatehouse_password_file_reloads_total",
            &["result=\"success\""]
        )
        .await
            >= 3.0
    );
    // Removed: the last good version stays too.
    std::fs::remove_file(&file).unwrap();
    until_refused(&b, 2.0).await;
    assert_eq!(login(&b, 5, "alice", "second").await, SUCCESS);

    // No timing oracle: an unknown user takes about as long to refuse as a wrong password
    // (argon2id at 19 MiB is tens of milliseconds; a plain lookup would be well under one).
    // The fastest of several tries is compared: it is the cost of the check itself, where a
    // median also carries what else the machine was doing (a median failed once, 46 against
    // 13.5 ms, on two cores busy with the rest of the suite).
    replace(&file, &good);
    let fastest = |v: Vec<Duration>| v.into_iter().min().unwrap_or_default();
    let mut wrong = Vec::new();
    let mut unknown = Vec::new();
    for _ in 0..9 {
        let t = Instant::now();
        assert_eq!(login(&b, 5, "alice", "nope").await, BAD_LOGIN_V5);
        wrong.push(t.elapsed());
        let t = Instant::now();
        assert_eq!(login(&b, 5, "zed", "nope").await, BAD_LOGIN_V5);
        unknown.push(t.elapsed());
    }
    let (wrong, unknown) = (fastest(wrong), fastest(unknown));
    assert!(
        unknown * 3 >= wrong && wrong * 3 >= unknown,
        "unknown user {unknown:?} vs wrong password {wrong:?}"
    );
}

/// A `$7$` entry asking for `iterations` (salt and hash of the right shapes).
fn pbkdf2_entry(user: &str, iterations: u64) -> String {
    format!("{user}:$7${iterations}$ZrElB8C9R9U2zImA$zuEXAXhkV8TJd1UAFBY+orP9vaDHw/s//gII3wbXOnfCjx25UJRThFimD3MR1jocCjLBjDmbKZrQUYtozBNYCQ==\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_hash_costs_are_refused_at_start_and_on_reload() {
    let dir = TempDir::new("pw-hostile");
    let file = dir.path().join("passwd");
    // 2^22 KiB = 4 GiB of argon2 memory, and 4 billion PBKDF2 rounds.
    let hostile = format!(
        "{}mallory:$argon2id$v=19$m=4194304,t=1,p=1$c2FsdHNhbHRzYWx0$c29tZWhhc2hzb21laGFzaHNvbWVoYXNoc29tZWhhc2g\n{}",
        pbkdf2_entry("alice", 101),
        pbkdf2_entry("trudy", 4_000_000_000)
    );
    replace(&file, &hostile);
    let e = TestBroker::try_start(&config(&password_method(&file, ""), None))
        .await
        .err()
        .expect("refused at start");
    assert!(
        e.contains("authenticationMethods[0].passwordSettings.passwordFile")
            && e.contains("line 2 (user `mallory`)")
            && e.contains("line 3 (user `trudy`)")
            && e.contains("limit"),
        "{e}"
    );
    assert!(!e.contains("ZrElB8C9R9U2zImA"), "a hash in the error: {e}");

    // Running with a good file; a hostile edit is not taken, and logins stay fast.
    replace(&file, &pbkdf2_entry("alice", 101));
    let b = TestBroker::start(&config(&password_method(&file, ""), None)).await;
    assert_eq!(login(&b, 5, "alice", "secret").await, SUCCESS);
    replace(&file, &hostile);
    until_refused(&b, 1.0).await;
    for user in ["mallory", "trudy"] {
        let t = Instant::now();
        assert_eq!(login(&b, 5, user, "x").await, BAD_LOGIN_V5, "{user}");
        assert!(
            t.elapsed() < Duration::from_secs(2),
            "{user}: {:?}",
            t.elapsed()
        );
    }
    assert_eq!(login(&b, 5, "alice", "secret").await, SUCCESS);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_users_are_authorized_by_their_attributes_and_user_names() {
    let dir = TempDir::new("pw-authz");
    let file = dir.path().join("passwd");
    let f = p(&file);
    gatehouse_passwd(&["-c", "-b", &f, "alice", "a"]).await;
    gatehouse_passwd(&["-b", &f, "bob", "b"]).await;
    gatehouse_passwd(&["-b", &f, "carol", "c"]).await;
    let rules = r#"        - principals:
            attributes: [ { floor: "1" } ]
          brokerResources:
            - method: Connect
            - method: Publish
              topics: ["floor/{principal.attributes.floor}/#"]
        - principals:
            usernames: [bob]
          brokerResources:
            - method: Connect
            - method: Subscribe
              topics: ["floor/#"]
"#;
    let b = TestBroker::start(&config(
        &password_method(
            &file,
            "          userAttributes:\n            alice: { floor: \"1\" }\n",
        ),
        Some(rules),
    ))
    .await;
    // carol is in the file but has neither the attribute nor the name: not even Connect.
    assert_eq!(login(&b, 5, "carol", "c").await, NOT_AUTHORIZED_V5);
    let base = unique("floor");
    let mut sub = Sub::subscribed(
        b.mqtt_addr(),
        &["-V", "mqttv5", "-u", "bob", "-P", "b", "-t", "floor/#"],
    )
    .await;
    pub_as(&b, "mqttv5", "alice", "a", &format!("floor/2/{base}"))
        .await
        .ok();
    pub_as(&b, "mqttv5", "alice", "a", &format!("floor/1/{base}"))
        .await
        .unwrap();
    let msg = sub.next_message().await;
    assert_eq!(
        msg.topic,
        format!("floor/1/{base}"),
        "floor 2 is denied, floor 1 arrives"
    );
    // bob may not publish (his rule has Subscribe only).
    pub_as(&b, "mqttv5", "bob", "b", &format!("floor/1/{base}-bob"))
        .await
        .ok();
    assert!(sub
        .message_within(Duration::from_millis(500))
        .await
        .is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_a_chain_password_decides_for_logins_and_passes_on_the_rest() {
    let dir = TempDir::new("pw-chain");
    let pki = Pki::new(dir.path(), gatehouse_config::PrivateKeyAlgorithm::Ec256);
    let server = ScriptedServer::start(&pki, None, |_| (200, "{}".into())).await;
    let file = dir.path().join("passwd");
    gatehouse_passwd(&["-c", "-b", &p(&file), "alice", "a"]).await;
    let methods = format!(
        "{}      - method: Custom
        customSettings:
          endpoint: \"{}\"
          caCertConfigMap: auth-ca
",
        password_method(&file, ""),
        server.endpoint("/auth")
    );
    let yaml = format!(
        "{}configMaps:\n  auth-ca: {{ files: [{}] }}\n",
        config(&methods, None),
        p(&pki.root_file())
    );
    let b = TestBroker::start(&yaml).await;
    // Logins: Password decides, both ways; the custom server is never asked.
    assert_eq!(login(&b, 5, "alice", "a").await, SUCCESS);
    assert_eq!(login(&b, 5, "alice", "b").await, BAD_LOGIN_V5);
    assert_eq!(login(&b, 4, "stranger", "b").await, BAD_LOGIN_V311);
    assert_eq!(server.requests(), 0);
    // No user name and password: not Password's; the custom server accepts.
    let topic = unique("chain");
    let out = try_publish(b.mqtt_addr(), &["-V", "mqttv5", "-t", &topic, "-m", "x"]).await;
    assert!(out.status.success(), "{}", out.stderr);
    assert_eq!(server.requests(), 1);
}

/// A raw client logged in at `level` (CONNACK 0 checked), kept connected.
async fn connected(b: &TestBroker, level: u8, username: &str, password: &str) -> RawClient {
    let mut c = RawClient::connect(b.mqtt_addr()).await;
    c.send(&login_connect(
        level,
        &unique("kept"),
        username,
        password.as_bytes(),
    ))
    .await;
    let raw = c.recv_raw(WAIT).await.expect("a CONNACK");
    assert_eq!(connack_code(&raw), SUCCESS, "{username}");
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removing_a_user_or_changing_a_password_disconnects_their_clients() {
    let dir = TempDir::new("pw-revoke");
    let file = dir.path().join("passwd");
    let f = p(&file);
    gatehouse_passwd(&["-c", "-b", &f, "alice", "a"]).await;
    gatehouse_passwd(&["-b", &f, "bob", "b"]).await;
    gatehouse_passwd(&["-b", &f, "carol", "c"]).await;
    let b = TestBroker::start(&config(&password_method(&file, ""), None)).await;
    let mut alice_v5 = connected(&b, 5, "alice", "a").await;
    let mut alice_v311 = connected(&b, 4, "alice", "a").await;
    let mut alice_sub = Sub::subscribed(
        b.mqtt_addr(),
        &["-V", "mqttv5", "-u", "alice", "-P", "a", "-t", "t/#"],
    )
    .await;
    let mut bob = connected(&b, 5, "bob", "b").await;
    let mut carol = connected(&b, 5, "carol", "c").await;

    // alice removed: every client of hers goes (v5: DISCONNECT 0x87); the others stay.
    gatehouse_passwd(&["-D", &f, "alice"]).await;
    alice_v5
        .expect_disconnect_within(NOT_AUTHORIZED_V5, WAIT)
        .await;
    alice_v311.expect_closed(WAIT).await;
    assert!(
        alice_sub.exit_within(WAIT).await.is_some(),
        "mosquitto_sub as alice still connected:\n{}",
        alice_sub.transcript()
    );
    // bob's password changed: his client goes too; carol, untouched, stays connected.
    gatehouse_passwd(&["-b", &f, "bob", "b2"]).await;
    bob.expect_disconnect_within(NOT_AUTHORIZED_V5, WAIT).await;
    carol.ping().await;
    assert_eq!(login(&b, 5, "bob", "b2").await, SUCCESS);
    assert_eq!(login(&b, 5, "alice", "a").await, BAD_LOGIN_V5);
}
