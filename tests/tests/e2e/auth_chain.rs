//! The order of the authentication chain (behaviour.md §3 "The chain") with real
//! credentials of every kind: client certificates in real TLS handshakes (X.509), RS256
//! service account tokens checked against a JWKS file (SAT, offline backend) and a
//! scripted HTTPS custom authentication server that counts its requests (Custom).
//!
//! For each method in order: credentials not relevant to it → the next method; relevant
//! and valid → accept; relevant and invalid → reject without asking later methods; relevant
//! to none → reject (0x87, 3.1.1 return code 5). A custom server that cannot be reached
//! counts as not relevant. A port without `authenticationRef` authenticates nobody.
//! (`authorizationRef` refusing to start is in cli.rs.)

use std::path::Path;
use std::time::Duration;

use gatehouse_config::PrivateKeyAlgorithm;
use gatehouse_protocol::ReasonCode;
use gatehouse_tests::broker::{free_port, TempDir, TestBroker};
use gatehouse_tests::https_stub::{ScriptedServer, Seen};
use gatehouse_tests::jwt::{jwks, rsa_signer, Signer, SERVICE_ACCOUNTS_YAML};
use gatehouse_tests::raw::{connack_code, frame, mqtt_str, split_frame, ConnectBuilder};
use gatehouse_tests::tls::{connect as tls_connect, connect_as, Pki};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

const EC: PrivateKeyAlgorithm = PrivateKeyAlgorithm::Ec256;
const HOUR: Duration = Duration::from_secs(3600);
const WAIT: Duration = Duration::from_secs(10);

const SUCCESS: u8 = ReasonCode::SUCCESS.0;
const BAD_USER_NAME_OR_PASSWORD: u8 = ReasonCode::BAD_USER_NAME_OR_PASSWORD.0;
const NOT_AUTHORIZED: u8 = ReasonCode::NOT_AUTHORIZED.0;

fn p(path: &Path) -> String {
    path.to_str().expect("UTF-8 path").to_owned()
}

// ---------------------------------------------------------------------------------------
// Credentials of every kind, and a broker with a chain of them
// ---------------------------------------------------------------------------------------

/// One PKI for the broker's TLS port, the trusted client CA and the custom server's
/// certificate; a JWKS key; a service-accounts file; a client certificate.
struct Env {
    dir: TempDir,
    pki: Pki,
    signer: Signer,
    jwks_file: std::path::PathBuf,
    accounts_file: std::path::PathBuf,
    server_crt: std::path::PathBuf,
    server_key: std::path::PathBuf,
    client_crt: std::path::PathBuf,
    client_key: std::path::PathBuf,
}

impl Env {
    fn new(name: &str) -> Env {
        let dir = TempDir::new(name);
        let pki = Pki::new(dir.path(), EC);
        let (signer, jwk) = rsa_signer("chain-key");
        let jwks_file = dir.write("jwks.json", &jwks(&[jwk]));
        let accounts_file = dir.write("service-accounts.yaml", SERVICE_ACCOUNTS_YAML);
        let (server_crt, server_key) = pki.write_server(&pki.server(EC), "server");
        let (client_crt, client_key) = pki.client("chain-device", EC, HOUR, "client");
        Env {
            dir,
            pki,
            signer,
            jwks_file,
            accounts_file,
            server_crt,
            server_key,
            client_crt,
            client_key,
        }
    }

    /// A custom server that answers 403 reason 0x86 to user name `refused` and 200 to
    /// everyone else (whatever the credentials), counting its requests.
    async fn custom_server(&self) -> ScriptedServer {
        ScriptedServer::start(&self.pki, None, lenient).await
    }

    /// One `authenticationMethods` entry, indented for [`Self::broker`].
    fn method(&self, m: &M) -> String {
        match m {
            M::X509 => "      - method: X509
        x509Settings:
          trustedClientCaCert: client-ca
"
            .to_owned(),
            M::Sat => format!(
                "      - method: ServiceAccountToken
        serviceAccountTokenSettings:
          audiences: [{aud}]
          jwks: {{ file: {jwks}, issuer: {iss} }}
          serviceAccounts: {{ file: {accounts} }}
",
                aud = gatehouse_tests::jwt::AUDIENCE,
                iss = gatehouse_tests::jwt::ISSUER,
                jwks = p(&self.jwks_file),
                accounts = p(&self.accounts_file),
            ),
            M::Custom(endpoint) => format!(
                "      - method: Custom
        customSettings:
          endpoint: \"{endpoint}\"
          caCertConfigMap: auth-ca
          timeout: 2s
"
            ),
        }
    }

    /// A broker with one port (TLS with a server certificate from the PKI when `tls`)
    /// whose chain is `methods`, in that order.
    async fn broker(&self, tls: bool, methods: &[M]) -> TestBroker {
        let tls_line = if tls {
            "        tls: { mode: Manual, manual: { secretRef: server-cert } }\n"
        } else {
            ""
        };
        let methods: String = methods.iter().map(|m| self.method(m)).collect();
        TestBroker::start(&format!(
            "
dataDir: {data}
listeners:
  - name: chain
    bindAddress: 127.0.0.1
    ports:
      - port: 0
{tls_line}        authenticationRef: chain
authentications:
  - name: chain
    authenticationMethods:
{methods}
secrets:
  server-cert: {{ certFile: {crt}, keyFile: {key} }}
configMaps:
  client-ca: {{ files: [{root}] }}
  auth-ca: {{ files: [{root}] }}
",
            data = p(&self.dir.path().join("data")),
            crt = p(&self.server_crt),
            key = p(&self.server_key),
            root = p(&self.pki.root_file()),
        ))
        .await
    }
}

/// A method of the chain under test.
enum M {
    X509,
    Sat,
    /// Endpoint URL.
    Custom(String),
}

fn lenient(seen: &Seen) -> (u16, String) {
    match seen.body["username"].as_str() {
        Some("refused") => (403, r#"{"reason": 134, "message": "refused"}"#.into()),
        _ => (200, "{}".into()),
    }
}

// ---------------------------------------------------------------------------------------
// Clients: CONNECT over TCP or TLS (with or without a client certificate), CONNACK code
// ---------------------------------------------------------------------------------------

/// How the client reaches the port.
enum Via {
    Tcp,
    /// TLS without a client certificate.
    Tls,
    /// TLS presenting the environment's client certificate.
    Cert,
}

/// The port number of the broker's (only) port.
fn port(b: &TestBroker) -> u16 {
    b.server
        .ports
        .iter()
        .find(|p| p.addr.is_ipv4())
        .expect("an IPv4 port")
        .addr
        .port()
}

/// Send `connect` and return the CONNACK's reason (v5) / return code (3.1.1).
async fn connack(env: &Env, b: &TestBroker, via: Via, connect: &[u8]) -> u8 {
    let port = port(b);
    let root = env.pki.root_file();
    match via {
        Via::Tcp => {
            let tcp = TcpStream::connect(("127.0.0.1", port))
                .await
                .expect("TCP connect");
            exchange(tcp, connect).await
        }
        Via::Tls => {
            exchange(
                tls_connect(&root, port, "localhost")
                    .await
                    .expect("TLS without a client certificate"),
                connect,
            )
            .await
        }
        Via::Cert => {
            exchange(
                connect_as(&root, port, "localhost", &env.client_crt, &env.client_key)
                    .await
                    .expect("TLS with a client certificate"),
                connect,
            )
            .await
        }
    }
}

async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(mut s: S, connect: &[u8]) -> u8 {
    s.write_all(connect).await.expect("write CONNECT");
    s.flush().await.expect("flush");
    let mut buf = bytes::BytesMut::new();
    let frame = loop {
        if let Some(f) = split_frame(&mut buf) {
            break f;
        }
        let n = tokio::time::timeout(WAIT, s.read_buf(&mut buf))
            .await
            .expect("a CONNACK in time")
            .expect("read");
        assert!(n > 0, "closed without a CONNACK");
    };
    connack_code(&frame)
}

/// v5 CONNECT with `K8S-SAT` and `token`.
fn sat(client_id: &str, token: &str) -> Vec<u8> {
    let token = token.to_owned();
    ConnectBuilder::new(client_id)
        .props(move |p| p.str(0x15, "K8S-SAT").bin(0x16, token.as_bytes()))
        .build()
}

/// v5 CONNECT without authentication method, user name or password.
fn anonymous(client_id: &str) -> Vec<u8> {
    ConnectBuilder::new(client_id).build()
}

/// CONNECT with user name and password, v5 (`level` 5) or 3.1.1 (4).
fn login(level: u8, client_id: &str, username: &str, password: &[u8]) -> Vec<u8> {
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

// ---------------------------------------------------------------------------------------
// (a) The first relevant method decides: valid → accept
// ---------------------------------------------------------------------------------------

/// Chain [X509, SAT]: a client with a certificate is X.509's, whatever it says about
/// SAT: a garbage `K8S-SAT` token (which SAT would refuse) does not matter. Without a
/// certificate the same garbage token goes to SAT, which refuses it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_relevant_method_accepts_valid_credentials() {
    let env = Env::new("chain-first");
    let b = env.broker(true, &[M::X509, M::Sat]).await;

    let garbage = sat("cert-and-garbage", "not-a-token");
    assert_eq!(connack(&env, &b, Via::Cert, &garbage).await, SUCCESS);
    assert_eq!(
        connack(&env, &b, Via::Tls, &garbage).await,
        NOT_AUTHORIZED,
        "without a certificate SAT is the first relevant method"
    );
    // And a valid token without a certificate: SAT accepts.
    let good = sat("token-only", &env.signer.good(3600));
    assert_eq!(connack(&env, &b, Via::Tls, &good).await, SUCCESS);
    // A certificate with a valid token: X.509 decides (accepts) first.
    assert_eq!(connack(&env, &b, Via::Cert, &good).await, SUCCESS);
}

// ---------------------------------------------------------------------------------------
// (b) Relevant but invalid → reject, later methods are not tried
// ---------------------------------------------------------------------------------------

/// Chain [SAT, Custom]: a bad `K8S-SAT` token is refused (0x87) by SAT although the
/// custom server after it would accept anything; the custom server is never asked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relevant_but_invalid_credentials_are_rejected_without_trying_later_methods() {
    let env = Env::new("chain-invalid");
    let custom = env.custom_server().await;
    let b = env
        .broker(false, &[M::Sat, M::Custom(custom.endpoint("/"))])
        .await;

    let expired = env.signer.token(
        gatehouse_tests::jwt::SENSOR,
        gatehouse_tests::jwt::AUDIENCE,
        gatehouse_tests::jwt::ISSUER,
        gatehouse_tests::jwt::now() - 60,
    );
    let (other_key, _) = rsa_signer("chain-key");
    for (what, token) in [
        ("garbage", "garbage".to_owned()),
        ("expired", expired),
        ("signed by an unknown key", other_key.good(3600)),
    ] {
        assert_eq!(
            connack(&env, &b, Via::Tcp, &sat("bad-token", &token)).await,
            NOT_AUTHORIZED,
            "{what} token"
        );
    }
    // A valid token is SAT's too.
    let good = sat("good-token", &env.signer.good(3600));
    assert_eq!(connack(&env, &b, Via::Tcp, &good).await, SUCCESS);
    assert_eq!(
        custom.requests(),
        0,
        "SAT decided every time, the custom server must not have been asked: {:#?}",
        custom.seen()
    );
}

// ---------------------------------------------------------------------------------------
// (c) Not relevant → the next method decides
// ---------------------------------------------------------------------------------------

/// Chain [X509, Custom] on a TLS port: without a client certificate X.509 is not
/// relevant and Custom decides, both ways (accept, and its own refusal 0x86); with a
/// certificate X.509 decides and the custom server is not asked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_certificate_the_next_method_decides() {
    let env = Env::new("chain-x509-custom");
    let custom = env.custom_server().await;
    let b = env
        .broker(true, &[M::X509, M::Custom(custom.endpoint("/"))])
        .await;

    assert_eq!(
        connack(&env, &b, Via::Tls, &login(5, "no-cert", "device", b"pw")).await,
        SUCCESS
    );
    assert_eq!(
        connack(&env, &b, Via::Tls, &login(5, "no-cert-2", "refused", b"pw")).await,
        BAD_USER_NAME_OR_PASSWORD,
        "the custom server's refusal decides"
    );
    assert_eq!(
        connack(&env, &b, Via::Tls, &login(4, "no-cert-3", "refused", b"pw")).await,
        4,
        "3.1.1: return code 4"
    );
    assert_eq!(
        connack(&env, &b, Via::Tls, &anonymous("no-cert-4")).await,
        SUCCESS,
        "Custom is relevant to every client, even one without credentials"
    );
    assert_eq!(custom.requests(), 4);
    let seen = custom.seen();
    assert_eq!(seen[0].body["username"], "device");
    assert_eq!(seen[0].body["clientId"], "no-cert");

    // With a certificate, X.509 decides: the user name the custom server would refuse
    // is never sent to it.
    assert_eq!(
        connack(&env, &b, Via::Cert, &login(5, "cert", "refused", b"pw")).await,
        SUCCESS
    );
    assert_eq!(
        custom.requests(),
        4,
        "the custom server was asked: {seen:#?}"
    );
}

/// Chain [SAT, Custom]: a CONNECT without an authentication method is not SAT's, so the
/// custom server decides (accept, refuse).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_an_authentication_method_the_next_method_decides() {
    let env = Env::new("chain-sat-custom");
    let custom = env.custom_server().await;
    let b = env
        .broker(false, &[M::Sat, M::Custom(custom.endpoint("/"))])
        .await;

    assert_eq!(
        connack(&env, &b, Via::Tcp, &login(5, "user", "device", b"pw")).await,
        SUCCESS
    );
    assert_eq!(
        connack(&env, &b, Via::Tcp, &login(5, "user-2", "refused", b"pw")).await,
        BAD_USER_NAME_OR_PASSWORD
    );
    assert_eq!(
        connack(&env, &b, Via::Tcp, &anonymous("user-3")).await,
        SUCCESS
    );
    assert_eq!(custom.requests(), 3);
    assert!(
        custom.seen()[0]
            .body
            .get("enhancedAuthentication")
            .is_none(),
        "{:#?}",
        custom.seen()[0]
    );
}

// ---------------------------------------------------------------------------------------
// (d) Nothing relevant → reject 0x87 / return code 5
// ---------------------------------------------------------------------------------------

/// Chain [X509, SAT] on a TLS port, a client with neither a certificate nor an
/// authentication method (with or without user name and password): 0x87, and 3.1.1
/// return code 5.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_relevant_to_no_method_are_not_authorized() {
    let env = Env::new("chain-none");
    let b = env.broker(true, &[M::X509, M::Sat]).await;

    for (what, connect, code) in [
        ("v5, no credentials", anonymous("nobody"), NOT_AUTHORIZED),
        (
            "v5, user name and password",
            login(5, "nobody-2", "someone", b"secret"),
            NOT_AUTHORIZED,
        ),
        (
            "3.1.1, no credentials",
            ConnectBuilder::v311("nobody-3").build(),
            5,
        ),
        (
            "3.1.1, user name and password",
            login(4, "nobody-4", "someone", b"secret"),
            5,
        ),
    ] {
        assert_eq!(connack(&env, &b, Via::Tls, &connect).await, code, "{what}");
    }
    // The certificate makes the difference.
    assert_eq!(
        connack(&env, &b, Via::Cert, &anonymous("somebody")).await,
        SUCCESS
    );
}

// ---------------------------------------------------------------------------------------
// (e) A custom server that cannot be reached is not relevant: the next method decides
// ---------------------------------------------------------------------------------------

/// Chain [Custom (connection refused), Custom (503), SAT]: a valid token is accepted by
/// SAT after both custom servers failed, a bad one refused by SAT (0x87), and a client
/// without a token is relevant to nothing (0x87).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_custom_server_outage_falls_through_to_the_next_method() {
    let env = Env::new("chain-outage");
    let closed = free_port();
    let failing = ScriptedServer::start(&env.pki, None, |_| (503, "busy".into())).await;
    let b = env
        .broker(
            false,
            &[
                M::Custom(format!("https://localhost:{closed}/")),
                M::Custom(failing.endpoint("/")),
                M::Sat,
            ],
        )
        .await;

    let good = sat("token-after-outage", &env.signer.good(3600));
    assert_eq!(connack(&env, &b, Via::Tcp, &good).await, SUCCESS);
    assert_eq!(
        connack(&env, &b, Via::Tcp, &sat("bad-after-outage", "garbage")).await,
        NOT_AUTHORIZED
    );
    assert_eq!(
        connack(
            &env,
            &b,
            Via::Tcp,
            &login(5, "login-after-outage", "device", b"pw")
        )
        .await,
        NOT_AUTHORIZED,
        "no method left that is relevant to a user name and password"
    );
    assert_eq!(
        connack(
            &env,
            &b,
            Via::Tcp,
            &login(4, "login-after-outage-3", "device", b"pw")
        )
        .await,
        5
    );
    assert_eq!(
        failing.requests(),
        4,
        "the 503 server is asked every time (it is reachable, just failing)"
    );
    // The custom server asked first saw the CONNECT's enhanced authentication.
    assert_eq!(
        failing.seen()[0].body["enhancedAuthentication"]["method"],
        "K8S-SAT"
    );
}

// ---------------------------------------------------------------------------------------
// (f) No authenticationRef: anonymous clients are accepted
// ---------------------------------------------------------------------------------------

/// A listener with an authenticated port and a port without `authenticationRef`: the
/// latter accepts anonymous clients (v5 and 3.1.1, with or without a user name), the
/// former refuses them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_port_without_authentication_accepts_anonymous_clients() {
    let env = Env::new("chain-open");
    let b = TestBroker::start(&format!(
        "
listeners:
  - name: mixed
    bindAddress: 127.0.0.1
    ports:
      - port: 0
        authenticationRef: chain
      - port: 0
authentications:
  - name: chain
    authenticationMethods:
{sat}",
        sat = env.method(&M::Sat)
    ))
    .await;
    // Ports are listed in configuration order (each also bound on ::1).
    let v4: Vec<_> = b
        .server
        .ports
        .iter()
        .filter(|p| p.addr.is_ipv4())
        .map(|p| p.addr)
        .collect();
    let (secured, open) = (v4[0], v4[1]);
    let cases = [
        ("v5, no credentials", anonymous("anon"), NOT_AUTHORIZED),
        (
            "v5, user name and password",
            login(5, "anon-2", "someone", b"secret"),
            NOT_AUTHORIZED,
        ),
        (
            "3.1.1, no credentials",
            ConnectBuilder::v311("anon-3").build(),
            5,
        ),
        (
            "3.1.1, user name and password",
            login(4, "anon-4", "someone", b"secret"),
            5,
        ),
    ];
    for (what, connect, refused) in cases {
        for (port, addr, expect) in [("open", open, SUCCESS), ("secured", secured, refused)] {
            let tcp = TcpStream::connect(addr).await.expect("TCP connect");
            assert_eq!(
                exchange(tcp, &connect).await,
                expect,
                "{what} on the {port} port"
            );
        }
    }
}
