//! The Kubernetes TokenReview backend of SAT (behaviour.md §3 "SAT", aio-api.md §5.2): a
//! small hand-written client of the API server on `reqwest`.
//!
//! - `POST /apis/authentication.k8s.io/v1/tokenreviews` with the token and the configured
//!   audiences. Accepted only when `status.authenticated` is true, `status.error` is
//!   empty, `status.audiences` is non-empty and shares an audience with the configured
//!   ones (an empty list means "the API server's own audience", which is not ours), and
//!   `status.user.username` is `system:serviceaccount:<namespace>:<name>`.
//! - Attributes: `GET /api/v1/namespaces/<ns>/serviceaccounts/<name>`, the
//!   `aio-broker-auth/*` annotations with the prefix removed.
//!
//! Where the API server is: a kubeconfig ([`super::kubeconfig`]) or, by default, the pod's
//! own service account (`KUBERNETES_SERVICE_HOST`/`_PORT`, the token and CA files under
//! `/var/run/secrets/kubernetes.io/serviceaccount/`). The broker's bearer token is re-read
//! from its file on every request, so kubelet's rotation of the projected token (and a
//! rotated kubeconfig `tokenFile`) is picked up. TLS is rustls with the aws-lc-rs provider
//! and the cluster CA as the only root; the API server is reached directly (no HTTP
//! proxy); every request has a 10 s deadline.
//!
//! Errors are split by who is at fault: [`ReviewError::Rejected`] when the API server
//! answered that the token (or its service account) is not acceptable, and
//! [`ReviewError::Unavailable`] when no answer could be had (network, TLS, timeout, 5xx,
//! or the API server refusing the broker's own credentials/permissions).
//!
//! Tokens never appear in logs or errors: `Debug` of everything holding one redacts it.

// Until the SatMethod's TokenReview backend calls it, only the tests do.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use reqwest::StatusCode;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde::{Deserialize, Serialize};

use super::kubeconfig::{self, ClientIdentity};

/// The pod's service account token (projected, rotated by the kubelet).
pub(crate) const IN_CLUSTER_TOKEN_FILE: &str =
    "/var/run/secrets/kubernetes.io/serviceaccount/token";
/// The cluster CA as mounted into every pod.
pub(crate) const IN_CLUSTER_CA_FILE: &str = "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt";

/// Annotations of a service account that become attributes (prefix removed).
pub(crate) const ANNOTATION_PREFIX: &str = "aio-broker-auth/";

const SERVICE_ACCOUNT_USER_PREFIX: &str = "system:serviceaccount:";
const TIMEOUT: Duration = Duration::from_secs(10);
const TOKEN_REVIEWS_PATH: &str = "/apis/authentication.k8s.io/v1/tokenreviews";

/// The broker's own credential towards the API server. `Debug` redacts the value.
pub(crate) enum BearerToken {
    Value(String),
    /// Read (and trimmed) before every request.
    File(PathBuf),
}

impl fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BearerToken::Value(_) => f.write_str("Value(<redacted>)"),
            BearerToken::File(path) => f.debug_tuple("File").field(path).finish(),
        }
    }
}

impl BearerToken {
    async fn current(&self) -> Result<String, ReviewError> {
        match self {
            BearerToken::Value(token) => Ok(token.clone()),
            BearerToken::File(path) => {
                let owned = path.clone();
                let text = tokio::task::spawn_blocking(move || std::fs::read_to_string(owned))
                    .await
                    .map_err(std::io::Error::other)
                    .and_then(|read| read)
                    .map_err(|e| {
                        ReviewError::Unavailable(format!(
                            "cannot read the broker's API token {}: {e}",
                            path.display()
                        ))
                    })?;
                let token = text.trim();
                if token.is_empty() {
                    return Err(ReviewError::Unavailable(format!(
                        "the broker's API token file {} is empty",
                        path.display()
                    )));
                }
                Ok(token.to_owned())
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TokenReviewSetupError {
    #[error("tokenReview.kubeconfig {}: {reason}", .path.display())]
    Kubeconfig { path: PathBuf, reason: String },
    #[error("tokenReview (in-cluster): {0}")]
    InCluster(String),
    #[error("tokenReview: {0}")]
    #[cfg_attr(not(test), allow(dead_code))]
    Endpoint(String),
}

/// A token the API server vouched for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Reviewed {
    /// `system:serviceaccount:<namespace>:<name>`.
    pub username: String,
    pub namespace: String,
    pub name: String,
    /// The audiences the token is valid for that are also configured (non-empty).
    pub audiences: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ReviewError {
    /// The API server answered: the credentials are not acceptable.
    #[error("{0}")]
    Rejected(String),
    /// No answer could be had (network, TLS, timeout, 5xx, the broker's own access): the
    /// token may be fine, try again later.
    #[error("{0}")]
    Unavailable(String),
}

/// A client of one API server. Cheap to share (`reqwest` pools connections).
pub(crate) struct TokenReviewClient {
    http: reqwest::Client,
    /// `https://host:port[/path]`, no trailing slash.
    base: String,
    bearer: Option<BearerToken>,
}

impl fmt::Debug for TokenReviewClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenReviewClient")
            .field("server", &self.base)
            .field("bearer", &self.bearer)
            .finish()
    }
}

// --- wire types (authentication.k8s.io/v1 TokenReview, core/v1 ServiceAccount, Status) ---

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct TokenReviewRequest<'a> {
    api_version: &'static str,
    kind: &'static str,
    spec: TokenReviewSpec<'a>,
}

#[derive(Serialize)]
struct TokenReviewSpec<'a> {
    token: &'a str,
    audiences: &'a [String],
}

#[derive(Deserialize)]
struct TokenReviewResponse {
    #[serde(default)]
    status: Option<TokenReviewStatus>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct TokenReviewStatus {
    authenticated: Option<bool>,
    user: Option<UserInfo>,
    audiences: Option<Vec<String>>,
    error: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
#[allow(dead_code)] // uid and groups: read for completeness of the type, not used
struct UserInfo {
    username: Option<String>,
    uid: Option<String>,
    groups: Option<Vec<String>>,
}

#[derive(Deserialize)]
struct ServiceAccount {
    #[serde(default)]
    metadata: Option<ObjectMeta>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct ObjectMeta {
    annotations: Option<BTreeMap<String, String>>,
}

/// The body of a failed API request (`kind: Status`).
#[derive(Deserialize)]
struct ApiStatus {
    #[serde(default)]
    message: Option<String>,
}

impl TokenReviewClient {
    /// From `tokenReview`: its kubeconfig, or (absent) the pod's own service account.
    pub(crate) fn new(
        settings: &gatehouse_config::TokenReview,
    ) -> Result<Self, TokenReviewSetupError> {
        match &settings.kubeconfig {
            Some(path) => Self::from_kubeconfig(path),
            None => Self::in_cluster(
                std::env::var("KUBERNETES_SERVICE_HOST").ok().as_deref(),
                std::env::var("KUBERNETES_SERVICE_PORT").ok().as_deref(),
                Path::new(IN_CLUSTER_TOKEN_FILE),
                Path::new(IN_CLUSTER_CA_FILE),
            ),
        }
    }

    /// The current context of the kubeconfig at `path`.
    pub(crate) fn from_kubeconfig(path: &Path) -> Result<Self, TokenReviewSetupError> {
        let at = |reason: String| TokenReviewSetupError::Kubeconfig {
            path: path.to_owned(),
            reason,
        };
        let endpoint = kubeconfig::load(path).map_err(|e| at(e.to_string()))?;
        Self::build(
            &endpoint.server,
            &endpoint.ca_pem,
            endpoint.bearer,
            endpoint.identity.as_ref(),
            TIMEOUT,
        )
        .map_err(|e| at(e.to_string()))
    }

    /// In-cluster access from the service environment variables (`host`, `port`: the
    /// values of `KUBERNETES_SERVICE_HOST` / `KUBERNETES_SERVICE_PORT`) and the mounted
    /// token and CA files.
    pub(crate) fn in_cluster(
        host: Option<&str>,
        port: Option<&str>,
        token_file: &Path,
        ca_file: &Path,
    ) -> Result<Self, TokenReviewSetupError> {
        let err = TokenReviewSetupError::InCluster;
        let (host, port) =
            match (
                host.filter(|h| !h.is_empty()),
                port.filter(|p| !p.is_empty()),
            ) {
                (Some(host), Some(port)) => (host, port),
                _ => return Err(err(
                    "KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT are not set (not running \
                     in a Kubernetes pod?); set tokenReview.kubeconfig or use jwks"
                        .into(),
                )),
            };
        let port: u16 = port
            .parse()
            .map_err(|_| err(format!("KUBERNETES_SERVICE_PORT `{port}` is not a port")))?;
        let server = if host.contains(':') {
            format!("https://[{host}]:{port}")
        } else {
            format!("https://{host}:{port}")
        };
        let token = std::fs::read_to_string(token_file).map_err(|e| {
            err(format!(
                "service account token {}: {e}",
                token_file.display()
            ))
        })?;
        if token.trim().is_empty() {
            return Err(err(format!(
                "service account token {} is empty",
                token_file.display()
            )));
        }
        let ca_pem = std::fs::read(ca_file)
            .map_err(|e| err(format!("cluster CA {}: {e}", ca_file.display())))?;
        Self::build(
            &server,
            &ca_pem,
            Some(BearerToken::File(token_file.to_owned())),
            None,
            TIMEOUT,
        )
        .map_err(|e| err(e.to_string()))
    }

    /// An explicit API server: `base_url` (`https://...`), its CA certificates (PEM, the
    /// only trusted roots) and the broker's bearer token.
    #[cfg_attr(not(test), allow(dead_code))] // kept for an explicit-endpoint setting
    pub(crate) fn with_endpoint(
        base_url: &str,
        ca_pem: &[u8],
        bearer_token: BearerToken,
    ) -> Result<Self, TokenReviewSetupError> {
        Self::build(base_url, ca_pem, Some(bearer_token), None, TIMEOUT)
            .map_err(|e| TokenReviewSetupError::Endpoint(e.to_string()))
    }

    fn build(
        server: &str,
        ca_pem: &[u8],
        bearer: Option<BearerToken>,
        identity: Option<&ClientIdentity>,
        timeout: Duration,
    ) -> Result<Self, EndpointError> {
        let url = reqwest::Url::parse(server)
            .map_err(|e| EndpointError(format!("server `{server}` is not a URL: {e}")))?;
        if url.scheme() != "https" {
            return Err(EndpointError(format!(
                "server `{server}` must be https:// (tokens are sent to it)"
            )));
        }
        if url.host_str().is_none() || url.query().is_some() || url.fragment().is_some() {
            return Err(EndpointError(format!(
                "server `{server}` must be https://host[:port][/path]"
            )));
        }
        let base = url.as_str().trim_end_matches('/').to_owned();

        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(ca_pem) {
            let cert = cert.map_err(|e| EndpointError(format!("cluster CA: not PEM: {e}")))?;
            roots
                .add(cert)
                .map_err(|e| EndpointError(format!("cluster CA: {e}")))?;
        }
        if roots.is_empty() {
            return Err(EndpointError("cluster CA: no certificate".into()));
        }
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| EndpointError(format!("TLS: {e}")))?
            .with_root_certificates(roots);
        let mut tls = match identity {
            None => builder.with_no_client_auth(),
            Some(identity) => {
                let chain = CertificateDer::pem_slice_iter(&identity.cert_pem)
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| EndpointError(format!("client certificate: not PEM: {e}")))?;
                if chain.is_empty() {
                    return Err(EndpointError("client certificate: no certificate".into()));
                }
                let key = PrivateKeyDer::from_pem_slice(&identity.key_pem)
                    .map_err(|e| EndpointError(format!("client key: {e}")))?;
                builder
                    .with_client_auth_cert(chain, key)
                    .map_err(|e| EndpointError(format!("client certificate: {e}")))?
            }
        };
        tls.alpn_protocols = vec![b"http/1.1".to_vec()];

        let http = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .https_only(true)
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(timeout)
            .connect_timeout(timeout)
            .user_agent(concat!("gatehouse/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| EndpointError(format!("HTTP client: {}", chain(&e))))?;
        Ok(TokenReviewClient { http, base, bearer })
    }

    /// The API server (for logs).
    pub(crate) fn server(&self) -> &str {
        &self.base
    }

    fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        bearer: Option<&str>,
    ) -> reqwest::RequestBuilder {
        let request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .header(reqwest::header::ACCEPT, "application/json");
        match bearer {
            // `bearer_auth` marks the header sensitive.
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    async fn bearer(&self) -> Result<Option<String>, ReviewError> {
        match &self.bearer {
            Some(b) => b.current().await.map(Some),
            None => Ok(None),
        }
    }

    /// Review `token`: `Ok` only if the API server authenticated it as a service account
    /// for one of `audiences`.
    pub(crate) async fn review(
        &self,
        token: &str,
        audiences: &[String],
    ) -> Result<Reviewed, ReviewError> {
        if token.is_empty() {
            return Err(ReviewError::Rejected("empty token".into()));
        }
        let bearer = self.bearer().await?;
        let body = TokenReviewRequest {
            api_version: "authentication.k8s.io/v1",
            kind: "TokenReview",
            spec: TokenReviewSpec { token, audiences },
        };
        let response = self
            .request(reqwest::Method::POST, TOKEN_REVIEWS_PATH, bearer.as_deref())
            .json(&body)
            .send()
            .await
            .map_err(|e| self.unreachable(&e))?;
        let status = response.status();
        if !status.is_success() {
            let message = api_message(response).await;
            return Err(ReviewError::Unavailable(match status {
                StatusCode::UNAUTHORIZED => format!(
                    "the API server {} does not accept the broker's own credentials \
                     (HTTP {status}: {message})",
                    self.base
                ),
                StatusCode::FORBIDDEN => format!(
                    "the API server {} does not let the broker create tokenreviews \
                     (HTTP {status}: {message}); grant its account the ClusterRole \
                     system:auth-delegator",
                    self.base
                ),
                _ => format!("TokenReview at {}: HTTP {status}: {message}", self.base),
            }));
        }
        let review: TokenReviewResponse = response.json().await.map_err(|e| {
            ReviewError::Unavailable(format!(
                "TokenReview at {}: unreadable answer: {}",
                self.base,
                chain(&e)
            ))
        })?;
        judge(review.status.unwrap_or_default(), audiences)
    }

    /// The `aio-broker-auth/*` annotations of service account `namespace`/`name`, prefix
    /// removed. A service account that does not exist is [`ReviewError::Rejected`].
    pub(crate) async fn attributes(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<BTreeMap<String, String>, ReviewError> {
        if !is_object_name(namespace) || !is_object_name(name) {
            return Err(ReviewError::Rejected(format!(
                "`{namespace}`/`{name}` is not a service account name"
            )));
        }
        let bearer = self.bearer().await?;
        let path = format!("/api/v1/namespaces/{namespace}/serviceaccounts/{name}");
        let response = self
            .request(reqwest::Method::GET, &path, bearer.as_deref())
            .send()
            .await
            .map_err(|e| self.unreachable(&e))?;
        let status = response.status();
        if !status.is_success() {
            let message = api_message(response).await;
            return Err(match status {
                StatusCode::NOT_FOUND => ReviewError::Rejected(format!(
                    "service account {namespace}/{name} does not exist"
                )),
                StatusCode::UNAUTHORIZED => ReviewError::Unavailable(format!(
                    "the API server {} does not accept the broker's own credentials \
                     (HTTP {status}: {message})",
                    self.base
                )),
                StatusCode::FORBIDDEN => ReviewError::Unavailable(format!(
                    "the API server {} does not let the broker read service account \
                     {namespace}/{name} (HTTP {status}: {message}); grant its account `get` \
                     on serviceaccounts",
                    self.base
                )),
                _ => ReviewError::Unavailable(format!(
                    "service account {namespace}/{name} at {}: HTTP {status}: {message}",
                    self.base
                )),
            });
        }
        let account: ServiceAccount = response.json().await.map_err(|e| {
            ReviewError::Unavailable(format!(
                "service account {namespace}/{name} at {}: unreadable answer: {}",
                self.base,
                chain(&e)
            ))
        })?;
        Ok(annotation_attributes(
            account
                .metadata
                .unwrap_or_default()
                .annotations
                .unwrap_or_default(),
        ))
    }

    fn unreachable(&self, e: &reqwest::Error) -> ReviewError {
        let what = if e.is_timeout() {
            "timed out"
        } else if e.is_connect() {
            "cannot connect"
        } else {
            "request failed"
        };
        ReviewError::Unavailable(format!("API server {}: {what}: {}", self.base, chain(e)))
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct EndpointError(String);

/// The decision on a TokenReview status (see the module doc).
fn judge(status: TokenReviewStatus, audiences: &[String]) -> Result<Reviewed, ReviewError> {
    let error = status.error.unwrap_or_default();
    if status.authenticated != Some(true) {
        return Err(ReviewError::Rejected(if error.is_empty() {
            "the API server did not authenticate the token".into()
        } else {
            format!("the API server did not authenticate the token: {error}")
        }));
    }
    if !error.is_empty() {
        return Err(ReviewError::Rejected(format!(
            "the API server reported an error for the token: {error}"
        )));
    }
    let valid_for = status.audiences.unwrap_or_default();
    let shared: Vec<String> = valid_for
        .iter()
        .filter(|a| audiences.contains(a))
        .cloned()
        .collect();
    if shared.is_empty() {
        return Err(ReviewError::Rejected(format!(
            "the token is valid for audiences {valid_for:?}, none of the accepted {audiences:?}"
        )));
    }
    let username = status.user.unwrap_or_default().username.unwrap_or_default();
    let (namespace, name) = parse_service_account(&username).ok_or_else(|| {
        ReviewError::Rejected(format!(
            "the token's user `{username}` is not a service account \
             (system:serviceaccount:<namespace>:<name>)"
        ))
    })?;
    Ok(Reviewed {
        namespace: namespace.to_owned(),
        name: name.to_owned(),
        username,
        audiences: shared,
    })
}

/// `system:serviceaccount:<namespace>:<name>` → (namespace, name).
pub(crate) fn parse_service_account(username: &str) -> Option<(&str, &str)> {
    let rest = username.strip_prefix(SERVICE_ACCOUNT_USER_PREFIX)?;
    let (namespace, name) = rest.split_once(':')?;
    (is_object_name(namespace) && is_object_name(name)).then_some((namespace, name))
}

/// A Kubernetes namespace or service account name (RFC 1123 subdomain characters), so it
/// is safe as a URL path segment.
fn is_object_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && !s.starts_with(['-', '.'])
}

fn annotation_attributes(annotations: BTreeMap<String, String>) -> BTreeMap<String, String> {
    annotations
        .into_iter()
        .filter_map(|(key, value)| {
            let name = key.strip_prefix(ANNOTATION_PREFIX)?;
            (!name.is_empty()).then(|| (name.to_owned(), value))
        })
        .collect()
}

/// The `message` of a failed request's `Status` body, else the start of the body.
async fn api_message(response: reqwest::Response) -> String {
    let Ok(body) = response.bytes().await else {
        return "(no body)".into();
    };
    let text = match serde_json::from_slice::<ApiStatus>(&body) {
        Ok(ApiStatus {
            message: Some(message),
        }) => message,
        _ => String::from_utf8_lossy(&body).into_owned(),
    };
    let text: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(300)
        .collect();
    if text.trim().is_empty() {
        "(no message)".into()
    } else {
        text
    }
}

/// An error with its causes: `reqwest`'s own text says little ("error sending request").
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    //! Against a stand-in API server: real HTTPS (tokio-rustls, certificates from
    //! gatehouse-certs), speaking the Kubernetes JSON of TokenReview, ServiceAccount and
    //! Status, and recording what the client sent.

    use std::net::SocketAddr;
    use std::sync::Mutex;
    use std::time::SystemTime;

    use gatehouse_certs::{issue_self_signed, Authority, CertRequest, Issued, Key, Usage};
    use gatehouse_config::PrivateKeyAlgorithm;
    use serde_json::{json, Value};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;

    const BROKER_TOKEN: &str = "broker-own-token";
    const NAMESPACE: &str = "azure-iot-operations";

    fn audiences(list: &[&str]) -> Vec<String> {
        list.iter().map(|a| a.to_string()).collect()
    }

    // --- certificates ---

    struct Pki {
        root: Authority,
    }

    fn request(usage: Usage, cn: &str) -> CertRequest {
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

    fn key() -> Key {
        Key::generate(PrivateKeyAlgorithm::Ec256).unwrap()
    }

    impl Pki {
        fn new(name: &str) -> Pki {
            let root =
                issue_self_signed(&request(Usage::Ca, name), key(), SystemTime::now()).unwrap();
            Pki {
                root: Authority::from_issued(root).unwrap(),
            }
        }

        fn ca_pem(&self) -> String {
            gatehouse_certs::encode_cert(self.root.certificate())
        }

        fn issue(&self, usage: Usage, cn: &str) -> Issued {
            self.root
                .issue(&request(usage, cn), key(), SystemTime::now())
                .unwrap()
        }

        fn roots(&self) -> rustls::RootCertStore {
            let mut roots = rustls::RootCertStore::empty();
            roots.add(self.root.certificate().clone()).unwrap();
            roots
        }

        /// The API server's TLS; with `client_ca`, client certificates from this PKI are
        /// verified (and optional).
        fn server_tls(&self, client_ca: bool) -> Arc<rustls::ServerConfig> {
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
    struct Request {
        method: String,
        path: String,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
        client_cert: bool,
    }

    impl Request {
        fn header(&self, name: &str) -> Option<&str> {
            self.headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
        }

        fn json(&self) -> Value {
            serde_json::from_slice(&self.body).unwrap()
        }
    }

    type Handler = Arc<dyn Fn(&Request) -> (u16, Value) + Send + Sync>;

    struct ApiServer {
        url: String,
        requests: Arc<Mutex<Vec<Request>>>,
        task: tokio::task::JoinHandle<()>,
    }

    impl Drop for ApiServer {
        fn drop(&mut self) {
            self.task.abort();
        }
    }

    impl ApiServer {
        async fn start(tls: Arc<rustls::ServerConfig>, handler: Handler) -> ApiServer {
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
                        let Ok(mut tls) = acceptor.accept(tcp).await else {
                            return;
                        };
                        let client_cert = tls.get_ref().1.peer_certificates().is_some();
                        let Some(mut request) = read_request(&mut tls).await else {
                            return;
                        };
                        request.client_cert = client_cert;
                        let (status, body) = handler(&request);
                        recorded.lock().unwrap().push(request);
                        let body = body.to_string();
                        let head = format!(
                            "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\n\
                             content-length: {}\r\nconnection: close\r\n\r\n",
                            body.len()
                        );
                        let _ = tls.write_all(head.as_bytes()).await;
                        let _ = tls.write_all(body.as_bytes()).await;
                        let _ = tls.shutdown().await;
                    });
                }
            });
            ApiServer {
                url: format!("https://127.0.0.1:{}", addr.port()),
                requests,
                task,
            }
        }

        fn requests(&self) -> Vec<Request> {
            self.requests.lock().unwrap().clone()
        }
    }

    /// One HTTP/1.1 request (headers, then a `content-length` body).
    async fn read_request<S: tokio::io::AsyncRead + Unpin>(stream: &mut S) -> Option<Request> {
        let mut buf = Vec::new();
        let head_end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i;
            }
            let mut chunk = [0u8; 4096];
            let n = stream.read(&mut chunk).await.ok()?;
            if n == 0 {
                return None;
            }
            buf.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8(buf[..head_end].to_vec()).ok()?;
        let mut lines = head.split("\r\n");
        let mut first = lines.next()?.split(' ');
        let (method, path) = (first.next()?.to_owned(), first.next()?.to_owned());
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
            .collect();
        let length: usize = headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
            .map(|(_, v)| v.parse().unwrap())
            .unwrap_or(0);
        let mut body = buf[head_end + 4..].to_vec();
        while body.len() < length {
            let mut chunk = [0u8; 4096];
            let n = stream.read(&mut chunk).await.ok()?;
            if n == 0 {
                return None;
            }
            body.extend_from_slice(&chunk[..n]);
        }
        Some(Request {
            method,
            path,
            headers,
            body,
            client_cert: false,
        })
    }

    fn status(code: u16, reason: &str, message: &str) -> (u16, Value) {
        (
            code,
            json!({
                "kind": "Status", "apiVersion": "v1", "metadata": {},
                "status": "Failure", "message": message, "reason": reason, "code": code
            }),
        )
    }

    /// A service account token the stand-in knows: who it is and its `aud`.
    fn known_token(token: &str) -> Option<(&'static str, &'static [&'static str])> {
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
    fn kubernetes(request: &Request) -> (u16, Value) {
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

    fn token_review(request: &Request) -> (u16, Value) {
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

    async fn kube_server(pki: &Pki) -> ApiServer {
        ApiServer::start(pki.server_tls(false), Arc::new(kubernetes)).await
    }

    fn client(server: &ApiServer, pki: &Pki) -> TokenReviewClient {
        TokenReviewClient::with_endpoint(
            &server.url,
            pki.ca_pem().as_bytes(),
            BearerToken::Value(BROKER_TOKEN.into()),
        )
        .unwrap()
    }

    fn rejected(result: Result<impl fmt::Debug, ReviewError>) -> String {
        match result {
            Err(ReviewError::Rejected(m)) => m,
            other => panic!("expected Rejected, got {other:?}"),
        }
    }

    fn unavailable(result: Result<impl fmt::Debug, ReviewError>) -> String {
        match result {
            Err(ReviewError::Unavailable(m)) => m,
            other => panic!("expected Unavailable, got {other:?}"),
        }
    }

    // --- TokenReview ---

    #[tokio::test(flavor = "multi_thread")]
    async fn accepts_a_service_account_token_for_a_configured_audience() {
        let pki = Pki::new("Cluster CA");
        let server = kube_server(&pki).await;
        let client = client(&server, &pki);
        let reviewed = client
            .review("sat-good", &audiences(&["aio-internal", "my-audience"]))
            .await
            .unwrap();
        assert_eq!(
            reviewed,
            Reviewed {
                username: "system:serviceaccount:azure-iot-operations:mqtt-client".into(),
                namespace: NAMESPACE.into(),
                name: "mqtt-client".into(),
                audiences: audiences(&["aio-internal"]),
            }
        );

        let requests = server.requests();
        assert_eq!(requests.len(), 1);
        let request = &requests[0];
        assert_eq!(request.method, "POST");
        assert_eq!(request.path, "/apis/authentication.k8s.io/v1/tokenreviews");
        assert_eq!(
            request.header("authorization"),
            Some(format!("Bearer {BROKER_TOKEN}").as_str())
        );
        assert_eq!(request.header("content-type"), Some("application/json"));
        assert_eq!(
            request.json(),
            json!({
                "apiVersion": "authentication.k8s.io/v1",
                "kind": "TokenReview",
                "spec": {"token": "sat-good", "audiences": ["aio-internal", "my-audience"]}
            })
        );
        assert!(!request.client_cert);
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_token_the_api_server_does_not_authenticate_is_rejected() {
        let pki = Pki::new("Cluster CA");
        let server = kube_server(&pki).await;
        let client = client(&server, &pki);
        let m = rejected(
            client
                .review("forged.jwt.token", &audiences(&["aio-internal"]))
                .await,
        );
        assert!(
            m.contains("did not authenticate") && m.contains("go-jose"),
            "{m}"
        );
        assert!(!m.contains("forged.jwt.token"), "the token leaked: {m}");
        // Kubernetes' own audience check: none of the requested audiences.
        let m = rejected(
            client
                .review("sat-good", &audiences(&["my-audience"]))
                .await,
        );
        assert!(m.contains("invalid for the target audiences"), "{m}");
        rejected(client.review("", &audiences(&["aio-internal"])).await);
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn authenticated_for_other_audiences_is_rejected() {
        let pki = Pki::new("Cluster CA");
        let server = kube_server(&pki).await;
        let client = client(&server, &pki);
        let m = rejected(
            client
                .review("sat-lying", &audiences(&["aio-internal"]))
                .await,
        );
        assert!(m.contains("somebody-else"), "{m}");
        // No status.audiences = the API server's own audience: not ours.
        rejected(
            client
                .review("sat-no-audiences", &audiences(&["aio-internal"]))
                .await,
        );
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn users_that_are_not_service_accounts_are_rejected() {
        let pki = Pki::new("Cluster CA");
        let server = kube_server(&pki).await;
        let client = client(&server, &pki);
        for token in ["sat-node", "sat-half"] {
            let m = rejected(client.review(token, &audiences(&["aio-internal"])).await);
            assert!(m.contains("is not a service account"), "{m}");
        }
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn server_errors_are_unavailable() {
        let pki = Pki::new("Cluster CA");
        let server = kube_server(&pki).await;
        let client = client(&server, &pki);
        let m = unavailable(client.review("crash", &audiences(&["aio-internal"])).await);
        assert!(m.contains("500") && m.contains("etcdserver"), "{m}");

        // The broker's own credentials refused: not the client's fault.
        let wrong = TokenReviewClient::with_endpoint(
            &server.url,
            pki.ca_pem().as_bytes(),
            BearerToken::Value("not-the-broker".into()),
        )
        .unwrap();
        let m = unavailable(
            wrong
                .review("sat-good", &audiences(&["aio-internal"]))
                .await,
        );
        assert!(
            m.contains("401") && m.contains("broker's own credentials"),
            "{m}"
        );
        assert!(
            !m.contains("not-the-broker"),
            "the broker's token leaked: {m}"
        );
        unavailable(wrong.attributes(NAMESPACE, "mqtt-client").await);

        // Accepted, but without the RBAC it needs.
        let unprivileged = TokenReviewClient::with_endpoint(
            &server.url,
            pki.ca_pem().as_bytes(),
            BearerToken::Value("unprivileged".into()),
        )
        .unwrap();
        let m = unavailable(
            unprivileged
                .review("sat-good", &audiences(&["aio-internal"]))
                .await,
        );
        assert!(
            m.contains("403") && m.contains("system:auth-delegator"),
            "{m}"
        );
        assert!(m.contains("cannot create resource"), "{m}");
        let m = unavailable(unprivileged.attributes(NAMESPACE, "mqtt-client").await);
        assert!(
            m.contains("403") && m.contains("`get` on serviceaccounts"),
            "{m}"
        );
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn connection_refused_is_unavailable() {
        let pki = Pki::new("Cluster CA");
        let port = {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            listener.local_addr().unwrap().port()
        };
        let client = TokenReviewClient::with_endpoint(
            &format!("https://127.0.0.1:{port}"),
            pki.ca_pem().as_bytes(),
            BearerToken::Value(BROKER_TOKEN.into()),
        )
        .unwrap();
        let m = unavailable(
            client
                .review("sat-good", &audiences(&["aio-internal"]))
                .await,
        );
        assert!(m.contains("cannot connect"), "{m}");
        unavailable(client.attributes(NAMESPACE, "mqtt-client").await);
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn an_api_server_signed_by_another_ca_is_unavailable() {
        let pki = Pki::new("Cluster CA");
        let server = kube_server(&pki).await;
        let stranger = Pki::new("Some Other CA");
        let client = TokenReviewClient::with_endpoint(
            &server.url,
            stranger.ca_pem().as_bytes(),
            BearerToken::Value(BROKER_TOKEN.into()),
        )
        .unwrap();
        let m = unavailable(
            client
                .review("sat-good", &audiences(&["aio-internal"]))
                .await,
        );
        assert!(m.to_lowercase().contains("certificate"), "{m}");
        // Nothing reached the server past the handshake: the token was not sent.
        assert!(server.requests().is_empty());
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_silent_api_server_times_out_as_unavailable() {
        let pki = Pki::new("Cluster CA");
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        // Accepts and then says nothing (not even the TLS handshake).
        let hold = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((tcp, _)) = listener.accept().await {
                held.push(tcp);
            }
        });
        let client = TokenReviewClient::build(
            &format!("https://127.0.0.1:{port}"),
            pki.ca_pem().as_bytes(),
            Some(BearerToken::Value(BROKER_TOKEN.into())),
            None,
            Duration::from_millis(300),
        )
        .unwrap();
        let m = unavailable(
            client
                .review("sat-good", &audiences(&["aio-internal"]))
                .await,
        );
        assert!(m.contains("timed out") || m.contains("timeout"), "{m}");
        hold.abort();
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn the_bearer_token_file_is_reread_on_every_request() {
        let pki = Pki::new("Cluster CA");
        let server = kube_server(&pki).await;
        let dir = tempfile::tempdir().unwrap();
        let token_file = dir.path().join("token");
        std::fs::write(&token_file, format!("{BROKER_TOKEN}\n")).unwrap();
        let client = TokenReviewClient::with_endpoint(
            &server.url,
            pki.ca_pem().as_bytes(),
            BearerToken::File(token_file.clone()),
        )
        .unwrap();
        client
            .review("sat-good", &audiences(&["aio-internal"]))
            .await
            .unwrap();
        std::fs::write(&token_file, "rotated-token").unwrap();
        unavailable(
            client
                .review("sat-good", &audiences(&["aio-internal"]))
                .await,
        );
        let seen: Vec<String> = server
            .requests()
            .iter()
            .map(|r| r.header("authorization").unwrap().to_owned())
            .collect();
        assert_eq!(
            seen,
            [
                format!("Bearer {BROKER_TOKEN}"),
                "Bearer rotated-token".into()
            ]
        );
        std::fs::remove_file(&token_file).unwrap();
        let m = unavailable(
            client
                .review("sat-good", &audiences(&["aio-internal"]))
                .await,
        );
        assert!(m.contains("cannot read the broker's API token"), "{m}");
    }

    // --- attributes ---

    #[tokio::test(flavor = "multi_thread")]
    async fn attributes_are_the_prefixed_annotations_without_the_prefix() {
        let pki = Pki::new("Cluster CA");
        let server = kube_server(&pki).await;
        let client = client(&server, &pki);
        let attributes = client.attributes(NAMESPACE, "mqtt-client").await.unwrap();
        assert_eq!(
            attributes,
            BTreeMap::from([
                ("building".to_owned(), "17".to_owned()),
                ("group".to_owned(), "authz-sat".to_owned()),
            ])
        );
        let request = &server.requests()[0];
        assert_eq!(request.method, "GET");
        assert_eq!(
            request.path,
            "/api/v1/namespaces/azure-iot-operations/serviceaccounts/mqtt-client"
        );
        assert_eq!(
            request.header("authorization"),
            Some(format!("Bearer {BROKER_TOKEN}").as_str())
        );

        assert!(client
            .attributes(NAMESPACE, "plain")
            .await
            .unwrap()
            .is_empty());
        let m = rejected(client.attributes(NAMESPACE, "deleted").await);
        assert!(m.contains("does not exist"), "{m}");
        // Not a name: never put in a URL.
        rejected(client.attributes("../..", "x").await);
        assert_eq!(server.requests().len(), 3);
    }

    // --- construction ---

    fn b64(bytes: &[u8]) -> String {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(bytes)
    }

    fn kubeconfig(server: &str, cluster: &str, user: &str) -> String {
        format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: broker\n\
             clusters:\n- name: test\n  cluster:\n    server: {server}\n{cluster}\n\
             contexts:\n- name: broker\n  context:\n    cluster: test\n    user: gatehouse\n\
             users:\n- name: gatehouse\n  user:\n{user}\n"
        )
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn kubeconfig_with_ca_data_and_token_file() {
        let pki = Pki::new("Cluster CA");
        let server = kube_server(&pki).await;
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("secrets")).unwrap();
        std::fs::write(dir.path().join("secrets/token"), BROKER_TOKEN).unwrap();
        let path = dir.path().join("kubeconfig.yaml");
        std::fs::write(
            &path,
            kubeconfig(
                &server.url,
                &format!(
                    "    certificate-authority-data: {}",
                    b64(pki.ca_pem().as_bytes())
                ),
                "    tokenFile: secrets/token",
            ),
        )
        .unwrap();
        let client = TokenReviewClient::new(&gatehouse_config::TokenReview {
            kubeconfig: Some(path),
        })
        .unwrap();
        assert_eq!(client.server(), server.url);
        let reviewed = client
            .review("sat-good", &audiences(&["aio-internal"]))
            .await
            .unwrap();
        assert_eq!(reviewed.name, "mqtt-client");
        assert_eq!(
            client.attributes(NAMESPACE, "mqtt-client").await.unwrap()["group"],
            "authz-sat"
        );
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn kubeconfig_client_certificate_is_presented() {
        let pki = Pki::new("Cluster CA");
        // This API server takes only client certificates (the kind/k3s admin kubeconfig).
        let server = ApiServer::start(
            pki.server_tls(true),
            Arc::new(|request: &Request| {
                if !request.client_cert {
                    return status(401, "Unauthorized", "Unauthorized");
                }
                let mut request = request.clone();
                request
                    .headers
                    .push(("authorization".into(), format!("Bearer {BROKER_TOKEN}")));
                kubernetes(&request)
            }),
        )
        .await;
        let broker = pki.issue(Usage::Client, "gatehouse");
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ca.crt"), pki.ca_pem()).unwrap();
        std::fs::write(dir.path().join("client.key"), broker.key_pem()).unwrap();
        let path = dir.path().join("config");
        std::fs::write(
            &path,
            kubeconfig(
                &server.url,
                "    certificate-authority: ca.crt",
                &format!(
                    "    client-certificate-data: {}\n    client-key: client.key",
                    b64(broker.chain_pem().as_bytes())
                ),
            ),
        )
        .unwrap();
        let client = TokenReviewClient::from_kubeconfig(&path).unwrap();
        client
            .review("sat-good", &audiences(&["aio-internal"]))
            .await
            .unwrap();
        let request = &server.requests()[0];
        assert!(request.client_cert);
        assert_eq!(request.header("authorization"), None);
    }

    #[test]
    fn kubeconfig_refusals_name_the_file() {
        let pki = Pki::new("Cluster CA");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kubeconfig");
        let ca = format!(
            "    certificate-authority-data: {}",
            b64(pki.ca_pem().as_bytes())
        );
        let setup = |cluster: &str, server: &str| {
            std::fs::write(&path, kubeconfig(server, cluster, "    token: t")).unwrap();
            TokenReviewClient::from_kubeconfig(&path)
                .unwrap_err()
                .to_string()
        };
        let e = setup(
            &format!("{ca}\n    insecure-skip-tls-verify: true"),
            "https://127.0.0.1:6443",
        );
        assert!(e.contains("insecure-skip-tls-verify is refused"), "{e}");
        assert!(e.contains(&path.display().to_string()), "{e}");
        let e = setup(&ca, "http://127.0.0.1:8080");
        assert!(e.contains("must be https://"), "{e}");
        let e = setup(
            "    certificate-authority-data: bm90IGEgY2VydA==",
            "https://a",
        );
        assert!(e.contains("cluster CA: no certificate"), "{e}");
        let e = TokenReviewClient::from_kubeconfig(&dir.path().join("missing"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("cannot read the file"), "{e}");
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn in_cluster_from_the_service_environment_and_mounted_files() {
        let pki = Pki::new("Cluster CA");
        let server = kube_server(&pki).await;
        let port = server.url.rsplit(':').next().unwrap().to_owned();
        let dir = tempfile::tempdir().unwrap();
        let token_file = dir.path().join("token");
        let ca_file = dir.path().join("ca.crt");
        std::fs::write(&token_file, BROKER_TOKEN).unwrap();
        std::fs::write(&ca_file, pki.ca_pem()).unwrap();

        let client =
            TokenReviewClient::in_cluster(Some("127.0.0.1"), Some(&port), &token_file, &ca_file)
                .unwrap();
        assert_eq!(client.server(), server.url);
        client
            .review("sat-good", &audiences(&["aio-internal"]))
            .await
            .unwrap();
        // The projected token is rotated by the kubelet: re-read.
        std::fs::write(&token_file, "rotated").unwrap();
        unavailable(
            client
                .review("sat-good", &audiences(&["aio-internal"]))
                .await,
        );

        let ipv6 =
            TokenReviewClient::in_cluster(Some("fd00::1"), Some("443"), &token_file, &ca_file)
                .unwrap();
        assert_eq!(ipv6.server(), "https://[fd00::1]");

        let e = TokenReviewClient::in_cluster(None, Some("443"), &token_file, &ca_file)
            .unwrap_err()
            .to_string();
        assert!(e.contains("KUBERNETES_SERVICE_HOST"), "{e}");
        let e =
            TokenReviewClient::in_cluster(Some("10.0.0.1"), Some("https"), &token_file, &ca_file)
                .unwrap_err()
                .to_string();
        assert!(e.contains("not a port"), "{e}");
        let e = TokenReviewClient::in_cluster(
            Some("10.0.0.1"),
            Some("443"),
            &dir.path().join("no-token"),
            &ca_file,
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("service account token") && e.contains("no-token"),
            "{e}"
        );
        let e = TokenReviewClient::in_cluster(
            Some("10.0.0.1"),
            Some("443"),
            &token_file,
            &dir.path().join("no-ca.crt"),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("cluster CA") && e.contains("no-ca.crt"), "{e}");
    }

    #[test]
    fn debug_redacts_the_broker_token() {
        let pki = Pki::new("Cluster CA");
        let client = TokenReviewClient::with_endpoint(
            "https://127.0.0.1:6443/",
            pki.ca_pem().as_bytes(),
            BearerToken::Value("s3cr3t-value".into()),
        )
        .unwrap();
        let debug = format!("{client:?}");
        assert!(!debug.contains("s3cr3t-value"), "{debug}");
        assert!(debug.contains("https://127.0.0.1:6443"), "{debug}");
        assert_eq!(client.server(), "https://127.0.0.1:6443");
    }

    #[test]
    fn service_account_usernames() {
        assert_eq!(
            parse_service_account("system:serviceaccount:azure-iot-operations:mqtt-client"),
            Some(("azure-iot-operations", "mqtt-client"))
        );
        for bad in [
            "system:serviceaccount:ns",
            "system:serviceaccount::name",
            "system:serviceaccount:ns:",
            "system:serviceaccount:ns:a:b",
            "system:serviceaccount:ns:../x",
            "system:serviceaccount:NS:name",
            "system:node:worker-1",
            "mqtt-client",
        ] {
            assert_eq!(parse_service_account(bad), None, "{bad}");
        }
    }
}
