//! SAT authentication through the Kubernetes TokenReview API. No API server can run
//! here, so the test starts a faithful stand-in: HTTPS with a certificate made in the
//! test, the broker's bearer token required, and the real `authentication.k8s.io/v1`
//! TokenReview and `v1` ServiceAccount JSON. The broker finds it through a kubeconfig,
//! as it would find a real cluster.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use gatehouse_config::PrivateKeyAlgorithm;
use gatehouse_protocol::Packet;
use gatehouse_tests::broker::{TempDir, TestBroker};
use gatehouse_tests::jwt::sat_connect;
use gatehouse_tests::raw::{connack_code, frame, Props, RawClient, WAIT};
use gatehouse_tests::tls::Pki;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

const BROKER_TOKEN: &str = "broker-sa-token";

/// The stand-in API server is down (or the request broke): no answer, the connection closes.
#[derive(Debug)]
struct Outage;

impl std::fmt::Display for Outage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("outage")
    }
}

impl std::error::Error for Outage {}

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

/// The API server's answer to `method path`, authorized by `authorization`.
fn answer(method: &str, path: &str, authorization: Option<&str>, body: &[u8]) -> (u16, Value) {
    if authorization != Some(format!("Bearer {BROKER_TOKEN}").as_str()) {
        return (
            401,
            json!({ "kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Unauthorized", "code": 401 }),
        );
    }
    if (method, path) == ("POST", "/apis/authentication.k8s.io/v1/tokenreviews") {
        let review: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
        assert_eq!(review["apiVersion"], "authentication.k8s.io/v1");
        assert_eq!(review["kind"], "TokenReview");
        assert_eq!(review["spec"]["audiences"], json!(["aio-internal"]));
        let token = review["spec"]["token"].as_str().unwrap_or_default();
        let mut out = review.clone();
        out["status"] = review_status(token);
        return (201, out);
    }
    if (method, path) == ("GET", "/api/v1/namespaces/default/serviceaccounts/sensor") {
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
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let service = service_fn(move |request: hyper::Request<Incoming>| {
                        let (counter, is_down) = (counter.clone(), is_down.clone());
                        async move {
                            let (parts, body) = request.into_parts();
                            let body = match body.collect().await {
                                Ok(body) => body.to_bytes(),
                                Err(_) => return Err(Outage),
                            };
                            if is_down.load(Ordering::SeqCst) {
                                // An error closes the connection without an answer.
                                return Err(Outage);
                            }
                            if parts.method == hyper::Method::POST {
                                counter.fetch_add(1, Ordering::SeqCst);
                            }
                            let authorization = parts
                                .headers
                                .get(hyper::header::AUTHORIZATION)
                                .and_then(|v| v.to_str().ok());
                            let (code, value) = answer(
                                parts.method.as_str(),
                                parts.uri.path(),
                                authorization,
                                &body,
                            );
                            hyper::Response::builder()
                                .status(code)
                                .header("content-type", "application/json")
                                .body(Full::new(Bytes::from(value.to_string())))
                                .map_err(|_| Outage)
                        }
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(tls), service)
                        .await;
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
