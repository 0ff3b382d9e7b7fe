//! A stand-in Kubernetes API server for the TokenReview client's tests: real HTTPS
//! (tokio-rustls, certificates from gatehouse-certs, hyper's HTTP/1.1), speaking the
//! Kubernetes JSON of TokenReview, ServiceAccount and Status, and recording what the
//! client sent.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use gatehouse_certs::{issue_self_signed, Authority, CertRequest, Issued, Key, Usage};
use gatehouse_config::PrivateKeyAlgorithm;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::net::TcpListener;

use super::TOKEN_REVIEWS_PATH;

pub(super) const BROKER_TOKEN: &str = "broker-own-token";
pub(super) const NAMESPACE: &str = "azure-iot-operations";

// --- certificates ---

pub(super) struct Pki {
    pub(super) root: Authority,
}

pub(super) fn request(usage: Usage, cn: &str) -> CertRequest {
    CertRequest {
        usage,
        common_name: Some(cn.into()),
        organization: Some("Gatehouse tests".into()),
        dns_names: if usage == Usage::Server {
            vec!["localhost".into()]
        } else {
            Vec::new()
        },
        ip_addresses: if usage == Usage::Server {
            vec!["127.0.0.1".parse().unwrap()]
        } else {
            Vec::new()
        },
        duration: Duration::from_secs(86400),
    }
}

pub(super) fn key() -> Key {
    Key::generate(PrivateKeyAlgorithm::Ec256).unwrap()
}

impl Pki {
    pub(super) fn new(name: &str) -> Pki {
        let root = issue_self_signed(&request(Usage::Ca, name), key(), SystemTime::now()).unwrap();
        Pki {
            root: Authority::from_issued(root).unwrap(),
        }
    }

    pub(super) fn ca_pem(&self) -> String {
        gatehouse_certs::encode_cert(self.root.certificate())
    }

    pub(super) fn issue(&self, usage: Usage, cn: &str) -> Issued {
        self.root
            .issue(&request(usage, cn), key(), SystemTime::now())
            .unwrap()
    }

    pub(super) fn roots(&self) -> rustls::RootCertStore {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.root.certificate().clone()).unwrap();
        roots
    }

    /// The API server's TLS; with `client_ca`, client certificates from this PKI are
    /// verified (and optional).
    pub(super) fn server_tls(&self, client_ca: bool) -> Arc<rustls::ServerConfig> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .unwrap();
        let builder = if client_ca {
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(self.roots()),
                provider,
            )
            .allow_unauthenticated()
            .build()
            .unwrap();
            builder.with_client_cert_verifier(verifier)
        } else {
            builder.with_no_client_auth()
        };
        let server = self.issue(Usage::Server, "kube-apiserver");
        Arc::new(
            builder
                .with_single_cert(server.chain().to_vec(), server.key().der().clone_key())
                .unwrap(),
        )
    }
}

// --- the stand-in API server ---

#[derive(Debug, Clone)]
pub(super) struct Request {
    pub(super) method: String,
    pub(super) path: String,
    pub(super) headers: Vec<(String, String)>,
    pub(super) body: Vec<u8>,
    pub(super) client_cert: bool,
}

impl Request {
    pub(super) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub(super) fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

pub(super) type Handler = Arc<dyn Fn(&Request) -> (u16, Value) + Send + Sync>;

pub(super) struct ApiServer {
    pub(super) url: String,
    pub(super) requests: Arc<Mutex<Vec<Request>>>,
    pub(super) task: tokio::task::JoinHandle<()>,
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl ApiServer {
    pub(super) async fn start(tls: Arc<rustls::ServerConfig>, handler: Handler) -> ApiServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let acceptor = tokio_rustls::TlsAcceptor::from(tls);
        let recorded = requests.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let (acceptor, handler, recorded) =
                    (acceptor.clone(), handler.clone(), recorded.clone());
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let client_cert = tls.get_ref().1.peer_certificates().is_some();
                    let service = service_fn(move |incoming| {
                        let (handler, recorded) = (handler.clone(), recorded.clone());
                        async move {
                            let request = Request::read(incoming, client_cert).await;
                            let (status, body) = handler(&request);
                            recorded.lock().unwrap().push(request);
                            hyper::Response::builder()
                                .status(status)
                                .header("content-type", "application/json")
                                .header("connection", "close")
                                .body(Full::new(Bytes::from(body.to_string())))
                        }
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(tls), service)
                        .await;
                });
            }
        });
        ApiServer {
            url: format!("https://127.0.0.1:{}", addr.port()),
            requests,
            task,
        }
    }

    pub(super) fn requests(&self) -> Vec<Request> {
        self.requests.lock().unwrap().clone()
    }
}

impl Request {
    /// What hyper parsed, with the whole body.
    async fn read(incoming: hyper::Request<Incoming>, client_cert: bool) -> Request {
        let (parts, body) = incoming.into_parts();
        let body = body.collect().await.map(|b| b.to_bytes().to_vec());
        Request {
            method: parts.method.to_string(),
            path: parts
                .uri
                .path_and_query()
                .map_or_else(|| parts.uri.path().to_owned(), |p| p.to_string()),
            headers: parts
                .headers
                .iter()
                .map(|(n, v)| {
                    (
                        n.to_string(),
                        String::from_utf8_lossy(v.as_bytes()).into_owned(),
                    )
                })
                .collect(),
            body: body.unwrap_or_default(),
            client_cert,
        }
    }
}

pub(super) fn status(code: u16, reason: &str, message: &str) -> (u16, Value) {
    (
        code,
        json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {},
            "status": "Failure", "message": message, "reason": reason, "code": code
        }),
    )
}

/// A service account token the stand-in knows: who it is and its `aud`.
pub(super) fn known_token(token: &str) -> Option<(&'static str, &'static [&'static str])> {
    match token {
        "sat-good" => Some((
            "system:serviceaccount:azure-iot-operations:mqtt-client",
            &["aio-internal", "other-app"],
        )),
        "sat-node" => Some(("system:node:worker-1", &["aio-internal"])),
        "sat-half" => Some((
            "system:serviceaccount:azure-iot-operations",
            &["aio-internal"],
        )),
        _ => None,
    }
}

/// The API server as Kubernetes answers, plus a few misbehaviours keyed by token.
pub(super) fn kubernetes(request: &Request) -> (u16, Value) {
    match request.header("authorization") {
        Some(h) if h == format!("Bearer {BROKER_TOKEN}") => {}
        Some("Bearer unprivileged") => {
            let (resource, verb, group) = if request.method == "POST" {
                ("tokenreviews", "create", "authentication.k8s.io")
            } else {
                ("serviceaccounts", "get", "")
            };
            return status(
                403,
                "Forbidden",
                &format!(
                    "{resource} is forbidden: User \"system:serviceaccount:{NAMESPACE}:gatehouse\" \
                     cannot {verb} resource \"{resource}\" in API group \"{group}\""
                ),
            );
        }
        _ => return status(401, "Unauthorized", "Unauthorized"),
    }
    match (request.method.as_str(), request.path.as_str()) {
        ("POST", TOKEN_REVIEWS_PATH) => token_review(request),
        ("GET", "/api/v1/namespaces/azure-iot-operations/serviceaccounts/mqtt-client") => (
            200,
            json!({
                "kind": "ServiceAccount", "apiVersion": "v1",
                "metadata": {
                    "name": "mqtt-client", "namespace": NAMESPACE,
                    "uid": "4a3b0c2e-0000-4000-8000-000000000001",
                    "resourceVersion": "1234",
                    "creationTimestamp": "2024-08-01T10:00:00Z",
                    "annotations": {
                        "aio-broker-auth/group": "authz-sat",
                        "aio-broker-auth/building": "17",
                        "aio-mq-broker-auth/legacy": "ignored",
                        "example.com/aio-broker-auth/x": "ignored",
                        "kubectl.kubernetes.io/last-applied-configuration": "{\"apiVersion\":\"v1\"}"
                    }
                }
            }),
        ),
        ("GET", "/api/v1/namespaces/azure-iot-operations/serviceaccounts/plain") => (
            200,
            json!({
                "kind": "ServiceAccount", "apiVersion": "v1",
                "metadata": {"name": "plain", "namespace": NAMESPACE}
            }),
        ),
        ("GET", path) if path.starts_with("/api/v1/namespaces/") => {
            let name = path.rsplit('/').next().unwrap();
            status(
                404,
                "NotFound",
                &format!("serviceaccounts \"{name}\" not found"),
            )
        }
        _ => status(
            404,
            "NotFound",
            "the server could not find the requested resource",
        ),
    }
}

pub(super) fn token_review(request: &Request) -> (u16, Value) {
    let body = request.json();
    let token = body["spec"]["token"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let wanted: Vec<String> = body["spec"]["audiences"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    if body["apiVersion"] != "authentication.k8s.io/v1" || body["kind"] != "TokenReview" {
        return status(400, "BadRequest", "not a TokenReview");
    }
    let review = |status: Value| {
        (
            201,
            json!({
                "kind": "TokenReview", "apiVersion": "authentication.k8s.io/v1",
                "metadata": {"creationTimestamp": null},
                "spec": body["spec"].clone(),
                "status": status
            }),
        )
    };
    let user = |username: &str| {
        json!({
            "username": username,
            "uid": "4a3b0c2e-0000-4000-8000-000000000001",
            "groups": ["system:serviceaccounts", "system:serviceaccounts:azure-iot-operations", "system:authenticated"],
            "extra": {"authentication.kubernetes.io/pod-name": ["mqtt-client-0"]}
        })
    };
    match token.as_str() {
        "crash" => return status(500, "InternalError", "etcdserver: request timed out"),
        // Misbehaving API servers: authenticated, but not for our audiences.
        "sat-lying" => {
            return review(json!({
                "authenticated": true, "user": user("system:serviceaccount:ns:x"),
                "audiences": ["somebody-else"]
            }))
        }
        "sat-no-audiences" => {
            return review(json!({
                "authenticated": true, "user": user("system:serviceaccount:ns:x")
            }))
        }
        _ => {}
    }
    match known_token(&token) {
        Some((username, aud)) => {
            let shared: Vec<&str> = aud
                .iter()
                .copied()
                .filter(|a| wanted.iter().any(|w| w == a))
                .collect();
            if shared.is_empty() {
                review(json!({
                    "user": {},
                    "error": format!("[invalid bearer token, token audiences {aud:?} is invalid for the target audiences {wanted:?}]")
                }))
            } else {
                review(json!({
                    "authenticated": true, "user": user(username), "audiences": shared
                }))
            }
        }
        None => review(json!({
            "user": {},
            "error": "[invalid bearer token, square/go-jose: error in cryptographic primitive]"
        })),
    }
}
