//! `gatehouse check` as a full preflight (issue 16, items 1 and 5), through the binary.
//!
//! A "seed world" is the AIO manifests of the seeds (a listener with an X.509 + SAT +
//! Custom chain on a Manual TLS port, a policy, a Broker) with every file they refer to,
//! laid out as the broker resolves secrets and config maps (`<dataDir>/secrets/NAME/`,
//! `<dataDir>/configmaps/NAME/`). Removing one file at a time must fail `check` naming
//! it, and start-up must fail with the very same line; with everything in place, `check`
//! passes and the broker starts.

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::Duration;

use gatehouse_config::PrivateKeyAlgorithm;
use gatehouse_tests::broker::{gatehouse_bin, BrokerProcess, TempDir};
use gatehouse_tests::jwt;
use gatehouse_tests::tls::Pki;

/// A port free now, outside Linux's ephemeral range (32768-60999): `free_port()`'s ports
/// come from that range, where a broker of another test run on this machine binding port 0,
/// or any outgoing connection, may take them again before our broker binds them.
fn free_port() -> u16 {
    use std::hash::{BuildHasher, RandomState};
    let state = RandomState::new();
    for attempt in 0u32..1000 {
        let port = 20000 + (state.hash_one((std::process::id(), attempt)) % 12000) as u16;
        if std::net::TcpListener::bind(("0.0.0.0", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port in 20000..32000");
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Runs the binary with `args`, outside Kubernetes (whatever the test's environment).
async fn gatehouse(args: &[&str]) -> Output {
    let mut cmd = tokio::process::Command::new(gatehouse_bin());
    cmd.args(args)
        .stdin(Stdio::null())
        .env_remove("RUST_LOG")
        .env_remove("KUBERNETES_SERVICE_HOST")
        .env_remove("KUBERNETES_SERVICE_PORT")
        .kill_on_drop(true);
    match tokio::time::timeout(Duration::from_secs(20), cmd.output()).await {
        Ok(out) => out.expect("run gatehouse"),
        Err(_) => panic!("gatehouse {args:?} did not exit within 20 s"),
    }
}

async fn check(config: &Path) -> Output {
    gatehouse(&["check", "--config", config.to_str().expect("UTF-8 path")]).await
}

/// The `error: ` lines of a check, without the prefix.
fn errors(out: &Output) -> Vec<String> {
    text(&out.stderr)
        .lines()
        .filter_map(|l| l.strip_prefix("error: "))
        .map(str::to_owned)
        .collect()
}

const AUTHN: &str = "document 2 (BrokerAuthentication chain).spec.authenticationMethods";

/// The seed manifests and every file they refer to.
struct SeedWorld {
    dir: TempDir,
    config: PathBuf,
    mqtt: u16,
    tls: u16,
    metrics: u16,
}

impl SeedWorld {
    fn new(name: &str) -> SeedWorld {
        let dir = TempDir::new(name);
        let root = dir.path();
        let data = root.join("data");
        let pki = Pki::new(root, PrivateKeyAlgorithm::Ec256);
        let write_secret = |name: &str, crt: &Path, key: &Path| {
            let folder = data.join("secrets").join(name);
            std::fs::create_dir_all(&folder).expect("secret folder");
            std::fs::copy(crt, folder.join("tls.crt")).expect("tls.crt");
            std::fs::copy(key, folder.join("tls.key")).expect("tls.key");
        };
        let (crt, key) = pki.write_server(&pki.server(PrivateKeyAlgorithm::Ec256), "server");
        write_secret("server-cert-secret", &crt, &key);
        let (crt, key) = pki.client(
            "gatehouse",
            PrivateKeyAlgorithm::Ec256,
            Duration::from_secs(86400),
            "auth-client",
        );
        write_secret("auth-client", &crt, &key);
        for map in ["client-ca", "auth-ca"] {
            let folder = data.join("configmaps").join(map);
            std::fs::create_dir_all(&folder).expect("config map folder");
            std::fs::copy(pki.root_file(), folder.join("ca.crt")).expect("ca.crt");
        }
        let (_, key) = jwt::ec_signer("seed");
        dir.write("sa-keys.json", &jwt::jwks(&[key]));
        dir.write(
            "service-accounts.yaml",
            "apiVersion: v1\nkind: ServiceAccount\nmetadata: { name: sensor, namespace: default }\n",
        );
        let (mqtt, tls, metrics) = (free_port(), free_port(), free_port());
        let config = dir.write(
            "aio.yaml",
            &format!(
                "apiVersion: mqttbroker.iotoperations.azure.com/v1
kind: BrokerListener
metadata: {{ name: default }}
spec:
  ports:
    - port: {mqtt}
    - port: {tls}
      authenticationRef: chain
      authorizationRef: policy
      tls: {{ mode: Manual, manual: {{ secretRef: server-cert-secret }} }}
---
apiVersion: mqttbroker.iotoperations.azure.com/v1
kind: BrokerAuthentication
metadata: {{ name: chain }}
spec:
  authenticationMethods:
    - method: X509
      x509Settings: {{ trustedClientCaCert: client-ca }}
    - method: ServiceAccountToken
      serviceAccountTokenSettings:
        audiences: [aio-internal]
        jwks: {{ issuer: https://kubernetes.default.svc, file: sa-keys.json }}
        serviceAccounts: {{ file: service-accounts.yaml }}
    - method: Custom
      customSettings:
        endpoint: https://127.0.0.1:1/auth
        caCertConfigMap: auth-ca
        auth: {{ x509: {{ secretRef: auth-client }} }}
---
apiVersion: mqttbroker.iotoperations.azure.com/v1
kind: BrokerAuthorization
metadata: {{ name: policy }}
spec:
  authorizationPolicies:
    rules:
      - principals: {{ usernames: [sensor] }}
        brokerResources: [ {{ method: Connect }} ]
---
apiVersion: mqttbroker.iotoperations.azure.com/v1
kind: Broker
metadata: {{ name: default }}
spec:
  diagnostics: {{ metrics: {{ prometheusPort: {metrics} }} }}
"
            ),
        );
        SeedWorld {
            dir,
            config,
            mqtt,
            tls,
            metrics,
        }
    }

    fn remove(&self, relative: &str) {
        let path = self.dir.path().join(relative);
        if path.is_dir() {
            std::fs::remove_dir_all(&path).expect("remove folder");
        } else {
            std::fs::remove_file(&path).expect("remove file");
        }
    }
}

/// What goes missing, and the YAML path `check` and start-up must name.
const MISSING: [(&str, &str); 5] = [
    (
        "data/configmaps/client-ca",
        "[0].x509Settings.trustedClientCaCert: trusted client CA config map `client-ca`",
    ),
    (
        "sa-keys.json",
        "[1].serviceAccountTokenSettings.jwks.file: the JWKS file",
    ),
    (
        "service-accounts.yaml",
        "[1].serviceAccountTokenSettings.serviceAccounts.file: the service accounts file",
    ),
    (
        "data/configmaps/auth-ca",
        "[2].customSettings.caCertConfigMap: custom server CA config map `auth-ca`",
    ),
    (
        "data/secrets/auth-client",
        "[2].customSettings.auth.x509.secretRef: secret `auth-client`",
    ),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_passes_and_the_broker_starts() {
    let world = SeedWorld::new("preflight-ok");
    let out = check(&world.config).await;
    assert!(out.status.success(), "check failed:\n{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("configuration is valid"));
    let mut broker = BrokerProcess::start(&world.config, world.mqtt).await;
    broker.signal("TERM");
    broker.exit_within(Duration::from_secs(10)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_missing_file_fails_check_and_start_up_with_the_same_line() {
    for (missing, expected) in MISSING {
        let world = SeedWorld::new("preflight-missing");
        world.remove(missing);
        let out = check(&world.config).await;
        assert_eq!(
            out.status.code(),
            Some(1),
            "{missing}: {}",
            text(&out.stderr)
        );
        let found = errors(&out);
        assert_eq!(found.len(), 1, "{missing}: {found:#?}");
        assert!(
            found[0].starts_with(&format!("{AUTHN}{expected}")),
            "{missing}: {}",
            found[0]
        );
        assert!(found[0].contains("does not exist"), "{}", found[0]);

        let run = gatehouse(&["--config", world.config.to_str().expect("UTF-8")]).await;
        assert!(!run.status.success(), "{missing}: the broker started");
        let log = text(&run.stderr);
        assert!(
            log.lines().any(|l| l.trim() == found[0]),
            "{missing}: start-up does not say `{}`:\n{log}",
            found[0]
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_missing_file_is_named_in_one_check() {
    let world = SeedWorld::new("preflight-all");
    for (missing, _) in MISSING {
        world.remove(missing);
    }
    // And the Manual TLS secret: a warning, the port waits for it.
    world.remove("data/secrets/server-cert-secret");
    let out = check(&world.config).await;
    assert_eq!(out.status.code(), Some(1));
    let found = errors(&out);
    assert_eq!(found.len(), MISSING.len(), "{found:#?}");
    for ((_, expected), line) in MISSING.iter().zip(&found) {
        assert!(line.starts_with(&format!("{AUTHN}{expected}")), "{line}");
    }
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains(
            "warning: document 1 (BrokerListener default).spec.ports[1].tls.manual.secretRef: \
             secret `server-cert-secret` is not there yet"
        ),
        "{stderr}"
    );
    assert!(stderr.contains("5 error(s), 1 warning(s)"), "{stderr}");
}

/// AIO's default authentication: SAT with neither `jwks` nor a kubeconfig means in-cluster
/// TokenReview, which cannot work outside a pod.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sat_without_a_backend_here_fails_check() {
    let world = SeedWorld::new("preflight-sat");
    let yaml = std::fs::read_to_string(&world.config).expect("read");
    let yaml = yaml.replace(
        "        jwks: { issuer: https://kubernetes.default.svc, file: sa-keys.json }\n",
        "",
    );
    std::fs::write(&world.config, yaml).expect("write");
    let out = check(&world.config).await;
    assert_eq!(out.status.code(), Some(1));
    let found = errors(&out);
    assert_eq!(found.len(), 1, "{found:#?}");
    assert!(
        found[0].starts_with(&format!(
            "{AUTHN}[1].serviceAccountTokenSettings: no backend for service account tokens here"
        )),
        "{}",
        found[0]
    );
    assert!(found[0].contains("kubeconfig") && found[0].contains("jwks"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_problems_are_both_reported() {
    let dir = TempDir::new("preflight-two");
    let path = dir.write(
        "gatehouse.yaml",
        "
listeners:
  - name: main
    ports:
      - port: 18841
        authenticationRef: devices
        tls: { mode: Automatic }
authentications:
  - name: devices
    authenticationMethods:
      - method: X509
        x509Settings: { trustedClientCaCert: device-ca }
      - method: Custom
        customSettings:
          endpoint: https://auth.example.com
          auth: { x509: { secretRef: auth-clinet } }
",
    );
    let out = check(&path).await;
    assert_eq!(out.status.code(), Some(1));
    let found = errors(&out);
    assert_eq!(found.len(), 2, "{found:#?}");
    assert!(found[0].starts_with(
        "authentications[0].authenticationMethods[0].x509Settings.trustedClientCaCert: trusted \
         client CA config map `device-ca`: the folder"
    ));
    assert!(found[1].starts_with(
        "authentications[0].authenticationMethods[1].customSettings.auth.x509.secretRef: secret \
         `auth-clinet`"
    ));
}

/// The second entry of `authenticationMethods` is reported at its own line (it used to
/// get the first entry's).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_second_authentication_method_has_its_own_line() {
    let dir = TempDir::new("preflight-line");
    let path = dir.write(
        "gatehouse.yaml",
        "listeners:
  - name: default
    ports:
      - port: 18841
        authenticationRef: a
authentications:
  - name: a
    authenticationMethods:
      - method: X509
        x509Settings:
          trustedClientCaCert: ca
      - method: ServiceAccountToken
        x509Settings:
          trustedClientCaCert: ca
",
    );
    let out = check(&path).await;
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("authentications[0].authenticationMethods[1]: method ServiceAccountToken")
            && stderr.contains("(line 12,"),
        "{stderr}"
    );
}

/// A document that does not deserialize no longer hides the other documents' problems.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_type_error_and_a_problem_elsewhere_are_reported_together() {
    let dir = TempDir::new("preflight-types");
    let path = dir.write(
        "aio.yaml",
        "apiVersion: mqttbroker.iotoperations.azure.com/v1
kind: BrokerListener
metadata: { name: default }
spec:
  ports:
    - port: 18841
      authenticationRef: chain
    - port: 18842
      authorizationRef: missing-policy
      authenticationRef: chain
---
apiVersion: mqttbroker.iotoperations.azure.com/v1
kind: BrokerAuthentication
metadata: { name: chain }
spec:
  authenticationMethods:
    - method: X509
      x509Settings: { trustedClientCaCert: ca, unknownField: 1 }
",
    );
    let out = check(&path).await;
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("unknownField"), "{stderr}");
    assert!(
        stderr.contains(
            "document 1 (BrokerListener default).spec.ports[1].authorizationRef: no \
             authorization named `missing-policy`"
        ),
        "{stderr}"
    );
    // The unreadable authentication is not reported as missing as well.
    assert!(
        !stderr.contains("no authentication named `chain`"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unused_policy_and_a_missing_manual_secret_are_warnings() {
    let dir = TempDir::new("preflight-warn");
    let path = dir.write(
        "gatehouse.yaml",
        "
listeners:
  - name: main
    ports:
      - port: 18843
        tls: { mode: Manual, manual: { secretRef: not-yet } }
authorizations:
  - name: spare
    authorizationPolicies:
      rules:
        - principals: { usernames: [a] }
          brokerResources: [ { method: Connect } ]
",
    );
    let out = check(&path).await;
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains(
            "warning: listeners[0].ports[0].tls.manual.secretRef: secret `not-yet` is not there \
             yet"
        ) && stderr.contains("the port waits for it"),
        "{stderr}"
    );
    assert!(
        stderr.contains(
            "warning: authorizations[0].name: authorization `spare` is not used: no port's \
             authorizationRef names it"
        ),
        "{stderr}"
    );
    assert!(
        text(&out.stdout).contains("configuration is valid, with 2 warning(s)"),
        "{}",
        text(&out.stdout)
    );
}

// --- Item 5: the Broker manifest, and a second instance ---------------------------------

/// A Broker manifest sets the metrics port, the log level and (by annotation) the data
/// folder; the persistence file goes there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_broker_manifest_sets_metrics_port_log_level_and_data_folder() {
    let dir = TempDir::new("preflight-broker");
    let (mqtt, metrics) = (free_port(), free_port());
    let path = dir.write(
        "aio.yaml",
        &format!(
            "apiVersion: mqttbroker.iotoperations.azure.com/v1
kind: Broker
metadata:
  name: default
  annotations: {{ gatehouse/data-dir: ./state }}
spec:
  diagnostics:
    logs: {{ level: warn }}
    metrics: {{ prometheusPort: {metrics} }}
  advanced:
    clients: {{ maxPacketSizeBytes: 4096 }}
  persistence: {{ maxSize: 64Mi, retain: {{ mode: All }} }}
---
apiVersion: mqttbroker.iotoperations.azure.com/v1
kind: BrokerListener
metadata: {{ name: default }}
spec:
  ports: [ {{ port: {mqtt} }} ]
"
        ),
    );
    let check = check(&path).await;
    assert!(check.status.success(), "{}", text(&check.stderr));
    assert!(
        !text(&check.stderr).contains("skipped"),
        "{}",
        text(&check.stderr)
    );
    let mut broker = BrokerProcess::start(&path, mqtt).await;
    let healthz = tokio::net::TcpStream::connect(("127.0.0.1", metrics)).await;
    assert!(healthz.is_ok(), "no metrics server on {metrics}");
    assert!(dir.path().join("state/gatehouse.redb").exists());
    broker.signal("TERM");
    broker.exit_within(Duration::from_secs(10)).await;
    // At `warn`, the info lines of start-up and shutdown are not written.
    let log = broker.log_text();
    assert!(!log.contains("listening on"), "{log}");
}

/// A second instance of the same configuration fails naming the setting to change: the
/// MQTT port first, then (with its own MQTT port) the metrics port.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_instance_is_told_which_setting_to_change() {
    let world = SeedWorld::new("preflight-second");
    let mut first = BrokerProcess::start(&world.config, world.mqtt).await;
    let second = gatehouse(&["--config", world.config.to_str().expect("UTF-8")]).await;
    assert!(!second.status.success());
    let stderr = text(&second.stderr);
    assert!(
        stderr.contains(&format!(
            "document 1 (BrokerListener default).spec.ports[0].port: cannot listen on \
             0.0.0.0:{}",
            world.mqtt
        )) && stderr.contains("another process already listens there")
            && stderr.contains(
                "set document 1 (BrokerListener default).spec.ports[0].port to a free port"
            ),
        "{stderr}"
    );

    // Its own listener ports, the same metrics port.
    let yaml = std::fs::read_to_string(&world.config).expect("read");
    let other = world.dir.write(
        "second.yaml",
        &yaml
            .replace(&format!("port: {}\n", world.mqtt), "port: 0\n")
            .replace(&format!("port: {}\n", world.tls), "port: 0\n"),
    );
    let second = gatehouse(&["--config", other.to_str().expect("UTF-8")]).await;
    assert!(!second.status.success());
    let stderr = text(&second.stderr);
    assert!(
        stderr.contains(&format!(
            "document 4 (Broker default).spec.diagnostics.metrics.prometheusPort: cannot listen \
             on 0.0.0.0:{}",
            world.metrics
        )) && stderr.contains("another process already listens there"),
        "{stderr}"
    );
    first.signal("TERM");
    first.exit_within(Duration::from_secs(10)).await;
}

/// A validation problem does not hide a missing file: `check` goes on with what it could
/// read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_validation_problem_and_a_missing_file_are_reported_together() {
    let dir = TempDir::new("preflight-both");
    let path = dir.write(
        "gatehouse.yaml",
        "
listeners:
  - name: Main
    ports:
      - port: 18844
        authenticationRef: devices
        tls: { mode: Manual, manual: { secretRef: server } }
authentications:
  - name: devices
    authenticationMethods:
      - method: X509
        x509Settings: { trustedClientCaCert: device-ca }
",
    );
    let out = check(&path).await;
    assert_eq!(out.status.code(), Some(1));
    let found = errors(&out);
    assert_eq!(found.len(), 2, "{found:#?}");
    assert!(found[0].starts_with("listeners[0].name: `Main` is not a valid listener name"));
    assert!(found[1].starts_with(
        "authentications[0].authenticationMethods[0].x509Settings.trustedClientCaCert: trusted \
         client CA config map `device-ca`"
    ));
}

/// A `Password` method's file (issue 16): missing, it is named at its YAML path; with bad
/// lines, every bad line is named by number, never by its hash.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_or_bad_password_file_fails_check() {
    let dir = TempDir::new("preflight-password");
    let path = dir.write(
        "gatehouse.yaml",
        "
listeners:
  - name: main
    ports:
      - port: 18843
        authenticationRef: users
authentications:
  - name: users
    authenticationMethods:
      - method: Password
        passwordSettings: { passwordFile: passwords }
",
    );
    let out = check(&path).await;
    assert_eq!(out.status.code(), Some(1));
    let found = errors(&out);
    assert_eq!(found.len(), 1, "{found:#?}");
    assert!(
        found[0].starts_with(
            "authentications[0].authenticationMethods[0].passwordSettings.passwordFile: the \
             password file"
        ) && found[0].contains("does not exist"),
        "{}",
        found[0]
    );

    dir.write("passwords", "alice:$7$notanumber$c2FsdA==$aGFzaA==\nbob\n");
    let out = check(&path).await;
    assert_eq!(out.status.code(), Some(1));
    let found = errors(&out);
    assert_eq!(found.len(), 1, "{found:#?}");
    assert!(
        found[0].contains("passwordSettings.passwordFile") && found[0].contains("2 bad line"),
        "{}",
        found[0]
    );
    let all = text(&out.stderr);
    assert!(all.contains("line 1") && all.contains("line 2"), "{all}");
    assert!(!all.contains("aGFzaA"), "the hash is never shown: {all}");
}
