//! SAT authentication through the Kubernetes TokenReview API. No API server can run
//! here, so the test starts a faithful stand-in: HTTPS with a certificate made in the
//! test, the broker's bearer token required, and the real `authentication.k8s.io/v1`
//! TokenReview and `v1` ServiceAccount JSON. The broker finds it through a kubeconfig,
//! as it would find a real cluster.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use gatehouse_config::PrivateKeyAlgorithm;
use gatehouse_protocol::Packet;
use gatehouse_tests::broker::{TempDir, TestBroker};
use gatehouse_tests::jwt::sat_connect;
use gatehouse_tests::raw::{connack_code, frame, Props, RawClient, WAIT};
use gatehouse_tests::tls::Pki;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

const BROKER_TOKEN: &str = "broker-sa-token";

/// The stand-in API server: answers TokenReviews for three known tokens and the
/// `sensor` service account; counts requests.
struct ApiServer {
    port: u16,
    reviews: Arc<AtomicUsize>,
    /// Set to make the server drop every connection and request (an outage).
    down: Arc<AtomicBool>,
}

fn review_status(token: &str) -> Value {
    match token {
        "token-sensor" => json!({
            "authenticated": true,
            "user": { "username": "system:serviceaccount:default:sensor", "uid": "1", "groups": ["system:serviceaccounts"] },
            "audiences": ["aio-internal"]
        }),
        "token-other-audience" => json!({
            "authenticated": true,
            "user": { "username": "system:serviceaccount:default:sensor" },
            "audiences": ["somebody-else"]
        }),
        _ => json!({ "authenticated": false, "error": "invalid bearer token" }),
    }
}

async fn answer(request: &str, body: &str) -> (u16, Value) {
    let mut lines = request.lines();
    let first = lines.next().unwrap_or_default().to_owned();
    let auth_ok = lines.any(|l| {
        l.to_ascii_lowercase().starts_with("authorization:")
            && l.ends_with(&format!("Bearer {BROKER_TOKEN}"))
    });
    if !auth_ok {
        return (
            401,
            json!({ "kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Unauthorized", "code": 401 }),
        );
    }
    if first.starts_with("POST /apis/authentication.k8s.io/v1/tokenreviews ") {
        let review: Value = serde_json::from_str(body).unwrap_or(Value::Null);
        assert_eq!(review["apiVersion"], "authentication.k8s.io/v1");
        assert_eq!(review["kind"], "TokenReview");
        assert_eq!(review["spec"]["audiences"], json!(["aio-internal"]));
        let token = review["spec"]["token"].as_str().unwrap_or_default();
        let mut out = review.clone();
        out["status"] = review_status(token);
        return (201, out);
    }
    if first.starts_with("GET /api/v1/namespaces/default/serviceaccounts/sensor ") {
        return (
            200,
            json!({
                "apiVersion": "v1", "kind": "ServiceAccount",
                "metadata": { "name": "sensor", "namespace": "default",
                    "annotations": { "aio-broker-auth/group": "sensors", "kubectl.kubernetes.io/last-applied-configuration": "{}" } }
            }),
        );
    }
    (
        404,
        json!({ "kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404 }),
    )
}

impl ApiServer {
    async fn start(pki: &Pki) -> ApiServer {
        let issued = pki.server(PrivateKeyAlgorithm::Ec256);
        let (crt, key) = pki.write_server(&issued, "api-server");
        let loaded = gatehouse_certs::load_chain_and_key(&crt, &key).expect("API server cert");
        let config = rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(
                loaded.chain().to_vec(),
                loaded.key().expect("key").der().clone_key(),
            )
            .expect("server config");
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let reviews = Arc::new(AtomicUsize::new(0));
        let down = Arc::new(AtomicBool::new(false));
        let counter = reviews.clone();
        let is_down = down.clone();
        tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                if is_down.load(Ordering::SeqCst) {
                    continue; // dropped: the connection is reset
                }
                let acceptor = acceptor.clone();
                let counter = counter.clone();
                let is_down = is_down.clone();
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    loop {
                        // One HTTP/1.1 request: headers, then Content-Length bytes.
                        let mut buf = Vec::new();
                        let head_end = loop {
                            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                                break i + 4;
                            }
                            let mut chunk = [0u8; 4096];
                            match tls.read(&mut chunk).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                            }
                        };
                        let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
                        let length = head
                            .lines()
                            .find_map(|l| {
                                let (k, v) = l.split_once(':')?;
                                k.eq_ignore_ascii_case("content-length")
                                    .then(|| v.trim().parse::<usize>().ok())?
                            })
                            .unwrap_or(0);
                        while buf.len() < head_end + length {
                            let mut chunk = [0u8; 4096];
                            match tls.read(&mut chunk).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                            }
                        }
                        if is_down.load(Ordering::SeqCst) {
                            return;
                        }
                        let body =
                            String::from_utf8_lossy(&buf[head_end..head_end + length]).into_owned();
                        if head.starts_with("POST") {
                            counter.fetch_add(1, Ordering::SeqCst);
                        }
                        let (code, value) = answer(&head, &body).await;
                        let text = value.to_string();
                        let response = format!(
                            "HTTP/1.1 {code} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{text}",
                            text.len()
                        );
                        if tls.write_all(response.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        ApiServer {
            port,
            reviews,
            down,
        }
    }
}

async fn connack(b: &TestBroker, packet: &[u8]) -> (RawClient, u8) {
    let mut c = RawClient::connect(b.mqtt_addr()).await;
    c.send(packet).await;
    let raw = c.recv_raw(WAIT).await.expect("CONNACK");
    (c, connack_code(&raw))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_review_backend_accepts_rejects_and_reports_outages() {
    let dir = TempDir::new("sat-tokenreview");
    let pki = Pki::new(dir.path(), PrivateKeyAlgorithm::Ec256);
    let api = ApiServer::start(&pki).await;
    let kubeconfig = dir.write(
        "kubeconfig",
        &format!(
            "apiVersion: v1
kind: Config
clusters:
  - name: test
    cluster:
      server: https://localhost:{port}
      certificate-authority: {ca}
users:
  - name: broker
    user:
      token: {BROKER_TOKEN}
contexts:
  - name: test
    context: {{ cluster: test, user: broker }}
current-context: test
",
            port = api.port,
            ca = pki.root_file().display()
        ),
    );
    let b = TestBroker::start(&format!(
        "
listeners:
  - name: sat
    bindAddress: 127.0.0.1
    ports:
      - port: 0
        authenticationRef: sat
authentications:
  - name: sat
    authenticationMethods:
      - method: ServiceAccountToken
        serviceAccountTokenSettings:
          audiences: [aio-internal]
          tokenReview: {{ kubeconfig: {} }}
",
        kubeconfig.display()
    ))
    .await;

    let (mut ok, code) = connack(&b, &sat_connect("tr-ok", "token-sensor")).await;
    assert_eq!(code, 0x00, "a token the API server authenticates");
    let (_, code) = connack(&b, &sat_connect("tr-bad", "token-unknown")).await;
    assert_eq!(code, 0x87, "a token the API server does not authenticate");
    let (_, code) = connack(&b, &sat_connect("tr-aud", "token-other-audience")).await;
    assert_eq!(code, 0x87, "authenticated, but for another audience");
    assert_eq!(
        api.reviews.load(Ordering::SeqCst),
        3,
        "one TokenReview per CONNECT"
    );

    // The API server goes away: re-authentication is answered AUTH 0x18 (try later) and
    // the client stays connected; a new CONNECT is refused.
    api.down.store(true, Ordering::SeqCst);
    let mut body = vec![0x19];
    Props::new()
        .str(0x15, "K8S-SAT")
        .bin(0x16, b"token-sensor")
        .encode(&mut body);
    ok.send(&frame(0xF0, &body)).await;
    match ok.expect_packet().await {
        Packet::Auth(a) => assert_eq!(a.reason_code.0, 0x18, "AUTH reason during the outage"),
        other => panic!("expected AUTH, got {other:?}"),
    }
    ok.ping().await;
    let (_, code) = connack(&b, &sat_connect("tr-down", "token-sensor")).await;
    assert_eq!(code, 0x87, "CONNECT while the API server is down");
}
