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

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use reqwest::StatusCode;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use super::kubeconfig::{self, ClientIdentity};
use wire::{
    ApiStatus, ServiceAccount, TokenReviewRequest, TokenReviewResponse, TokenReviewSpec,
    TokenReviewStatus,
};

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
    #[allow(clippy::disallowed_methods, reason = "inside spawn_blocking")]
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
    /// An explicit endpoint (tests only: the configuration has no such setting yet).
    #[cfg(test)]
    #[error("tokenReview: {0}")]
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
    #[allow(
        clippy::disallowed_methods,
        reason = "runs when an authentication chain is built (start-up, reload), never per connection"
    )]
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
    /// Tests only: the configuration has no explicit-endpoint setting yet.
    #[cfg(test)]
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

mod wire;

#[cfg(test)]
mod mock_api;
#[cfg(test)]
mod tests;
