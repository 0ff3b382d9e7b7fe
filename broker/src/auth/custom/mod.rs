//! Custom authentication over HTTPS (behaviour.md §3 "Custom", custom-auth.md): the
//! client's credentials are POSTed to an external server implementing the AIO custom
//! authentication API 0.5.0, which answers pass (200), fail (403) or version mismatch
//! (422).
//!
//! - Relevant to every client; a communication failure (refused, TLS error, timeout, any
//!   other status, an unreadable answer) counts as *not relevant*, so the chain moves on.
//! - One `reqwest` client per method: HTTP/1.1 with a keep-alive pool, TLS from a rustls
//!   config on aws-lc-rs (no second crypto provider) that trusts `caCertConfigMap` or the
//!   system roots, and presents `auth.x509.secretRef` (re-read when its files change).
//! - Header values, passwords and authentication data are never logged.
//!
//! Here: the method (calls, the 422 version retry, the verdict); `api.rs`: the request
//! body and what an answer comes to, as data; `client.rs`: the HTTPS client and its TLS.

use std::sync::Arc;
use std::time::Duration;

use gatehouse_certs::LoadError;
use gatehouse_config::{Config, CustomSettings};
use gatehouse_protocol::ReasonCode;
use reqwest::header::HeaderMap;
use reqwest::{StatusCode, Url};
use rustls::RootCertStore;

use super::files::{self, ConfigMapError};
use super::{Credentials, Outcome, Principal, Reauth, Verdict};
mod api;
mod client;

use api::{interpret, retry_version, Answer, ApiRequest, API_VERSION};

use client::{endpoint_url, http_client, request_headers, system_roots, ClientIdentity};

/// The most of an answer we read; past it the answer counts as a communication failure.
const MAX_ANSWER: usize = 1024 * 1024;
/// How long an idle pooled connection to the server is kept.
const POOL_IDLE: Duration = Duration::from_secs(90);

#[derive(Debug, thiserror::Error)]
pub enum CustomSetupError {
    /// Kept for the chain builder's match (mod.rs); no longer produced.
    #[error("not supported yet")]
    NotSupportedYet,
    #[error("{0}")]
    Invalid(String),
    #[error("endpoint `{endpoint}` is not a valid https:// URL: {reason}")]
    Endpoint { endpoint: String, reason: String },
    #[error("headers.{name}: {reason}")]
    Header { name: String, reason: String },
    #[error("caCertConfigMap `{name}`: {source}")]
    CaCertConfigMap {
        name: String,
        source: ConfigMapError,
    },
    #[error("caCertConfigMap `{name}`: {reason}")]
    BadCa { name: String, reason: String },
    #[error("no caCertConfigMap and no usable system root certificates ({reason}); give the custom server's CA as caCertConfigMap")]
    NoSystemRoots { reason: String },
    #[error("auth.x509.secretRef `{secret}`: {source}")]
    ClientCertificate { secret: String, source: LoadError },
    #[error("HTTPS client: {0}")]
    Client(String),
}

pub(crate) struct CustomMethod {
    client: reqwest::Client,
    /// The endpoint with `api-version=0.5.0` appended to its query.
    url: Url,
    /// The endpoint for logs: scheme, host, port and path (no user info, no query).
    shown: String,
    /// `Content-Type` and the configured headers (marked sensitive).
    headers: HeaderMap,
}

impl CustomMethod {
    pub(crate) fn new(
        config: &Config,
        settings: &CustomSettings,
    ) -> Result<Self, CustomSetupError> {
        let (url, shown) = endpoint_url(&settings.endpoint, API_VERSION)?;
        let headers = request_headers(&settings.headers)?;
        let roots = match &settings.ca_cert_config_map {
            Some(name) => {
                let certs = files::read_config_map(config, name).map_err(|source| {
                    CustomSetupError::CaCertConfigMap {
                        name: name.clone(),
                        source,
                    }
                })?;
                let mut roots = RootCertStore::empty();
                for cert in certs {
                    roots.add(cert).map_err(|e| CustomSetupError::BadCa {
                        name: name.clone(),
                        reason: e.to_string(),
                    })?;
                }
                roots
            }
            None => system_roots()?,
        };
        let identity = match &settings.auth {
            Some(auth) => {
                let secret = &auth.x509.secret_ref;
                let files = config.secret(secret);
                let identity =
                    ClientIdentity::load(files.cert_file, files.key_file).map_err(|source| {
                        CustomSetupError::ClientCertificate {
                            secret: secret.clone(),
                            source,
                        }
                    })?;
                Some(Arc::new(identity))
            }
            None => None,
        };
        let client = http_client(roots, identity, settings.timeout)?;
        Ok(CustomMethod {
            client,
            url,
            shown,
            headers,
        })
    }

    /// Relevant to every client; a communication failure counts as not relevant.
    pub(crate) async fn authenticate(&self, creds: &Credentials<'_>) -> Verdict {
        let body = ApiRequest::connect(creds);
        match self.call(&body).await {
            Answer::Pass(pass) => Verdict::Decided(Outcome::Accepted(Principal {
                username: creds.username.map(str::to_owned),
                client_id: creds.client_id.to_owned(),
                attributes: pass.attributes,
                expiry: pass.expiry,
                method: "Custom",
                registry: None,
            })),
            Answer::Fail(reason, message) => Verdict::Decided(Outcome::Rejected(
                reason,
                format!("the custom authentication server refused the client: {message}"),
            )),
            Answer::Unavailable(why) => {
                tracing::warn!(
                    target: "auth",
                    endpoint = %self.shown,
                    client_id = creds.client_id,
                    "custom authentication server not usable ({why}); trying the next method"
                );
                Verdict::NotRelevant
            }
        }
    }

    /// Re-authentication (AUTH 0x19): the custom server decides for any authentication
    /// method, so this is always `Some`. The request names the user the connection is
    /// authenticated as (`username`, a Gatehouse extension like `clientId`): the server's
    /// pass is for that user, whose name the connection keeps (the principal's `username`
    /// is `None`). Without it, a pass for another user's credentials would combine that
    /// user's attributes with this connection's user name.
    pub(crate) async fn reauthenticate(
        &self,
        client_id: &str,
        username: Option<&str>,
        method: &str,
        data: &[u8],
    ) -> Option<Reauth> {
        let body = ApiRequest::auth(client_id, username, method, data);
        Some(match self.call(&body).await {
            Answer::Pass(pass) => Reauth::Success(Principal {
                username: None,
                client_id: client_id.to_owned(),
                attributes: pass.attributes,
                expiry: pass.expiry,
                method: "Custom",
                registry: None,
            }),
            Answer::Fail(reason, message) => Reauth::Failed(
                reauth_failure(reason),
                format!(
                    "the custom authentication server refused the re-authentication: {message}"
                ),
            ),
            Answer::Unavailable(why) => {
                tracing::warn!(
                    target: "auth",
                    endpoint = %self.shown,
                    client_id,
                    "custom authentication server not usable for re-authentication ({why}); the client may retry"
                );
                Reauth::Continue(format!("custom authentication server not usable: {why}"))
            }
        })
    }

    /// POST `body`; on 422 naming a version we know, once more with that version.
    async fn call(&self, body: &ApiRequest<'_>) -> Answer {
        let json = match serde_json::to_vec(body) {
            Ok(json) => json,
            Err(e) => return Answer::Unavailable(format!("cannot encode the request: {e}")),
        };
        let (status, answer) = match self.post(&self.url, json.clone()).await {
            Ok(reply) => reply,
            Err(why) => return Answer::Unavailable(why),
        };
        if status != StatusCode::UNPROCESSABLE_ENTITY {
            return interpret(status, &answer);
        }
        let Some(version) = retry_version(&answer) else {
            return Answer::Unavailable(
                "HTTP 422: the server supports none of the API versions this broker knows".into(),
            );
        };
        let url = match endpoint_url(self.url.as_str(), version) {
            Ok((url, _)) => url,
            Err(e) => return Answer::Unavailable(e.to_string()),
        };
        match self.post(&url, json).await {
            Ok((status, _)) if status == StatusCode::UNPROCESSABLE_ENTITY => Answer::Unavailable(
                format!("HTTP 422 again after retrying with API version {version}"),
            ),
            Ok((status, answer)) => interpret(status, &answer),
            Err(why) => Answer::Unavailable(why),
        }
    }

    /// One request; the status and at most [`MAX_ANSWER`] bytes of body, or why not.
    async fn post(&self, url: &Url, json: Vec<u8>) -> Result<(StatusCode, Vec<u8>), String> {
        let mut response = self
            .client
            .post(url.clone())
            .headers(self.headers.clone())
            .body(json)
            .send()
            .await
            .map_err(describe)?;
        let status = response.status();
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(describe)? {
            if body.len() + chunk.len() > MAX_ANSWER {
                return Err(format!(
                    "HTTP {status} with an answer over {MAX_ANSWER} bytes"
                ));
            }
            body.extend_from_slice(&chunk);
        }
        Ok((status, body))
    }
}

/// A refused re-authentication ends with DISCONNECT 0x8C (the server said bad
/// authentication method) or 0x87 (anything else; 0x86 is not a DISCONNECT reason).
fn reauth_failure(rc: ReasonCode) -> ReasonCode {
    if rc == ReasonCode::BAD_AUTHENTICATION_METHOD {
        rc
    } else {
        ReasonCode::NOT_AUTHORIZED
    }
}

/// A reqwest error with its causes, without the URL (it may carry a query secret).
fn describe(e: reqwest::Error) -> String {
    use std::error::Error as _;
    let timeout = e.is_timeout();
    let e = e.without_url();
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    if timeout && !text.contains("timed out") {
        text.push_str(" (timed out)");
    }
    text
}

#[cfg(test)]
mod tests;
