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

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use gatehouse_certs::LoadError;
use gatehouse_config::{Config, CustomSettings};
use gatehouse_protocol::ReasonCode;
use reqwest::header::HeaderMap;
use reqwest::{StatusCode, Url};
use rustls::pki_types::CertificateDer;
use rustls::RootCertStore;
use serde::{Deserialize, Serialize};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::files::{self, ConfigMapError};
use super::{Credentials, Outcome, Principal, Reauth, Verdict};
mod client;

use client::{endpoint_url, http_client, request_headers, system_roots, ClientIdentity};

/// The API version this broker speaks (the only one there is).
const API_VERSION: &str = "0.5.0";
/// Versions we can speak, for a 422 answer's `supportedVersions`.
const KNOWN_VERSIONS: &[&str] = &[API_VERSION];
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

// ---------------------------------------------------------------------------------------
// Requests and answers (custom-auth.md)
// ---------------------------------------------------------------------------------------

/// The request body. No `Debug`: it holds the password.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ApiRequest<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    username: Option<&'a str>,
    /// Base64 (standard, padded) of the CONNECT password bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    password: Option<String>,
    /// PEM chain from the TLS handshake, leaf first.
    #[serde(skip_serializing_if = "Option::is_none")]
    certs: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    enhanced_authentication: Option<EnhancedAuthentication<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    client_id: Option<&'a str>,
}

#[derive(Serialize)]
struct EnhancedAuthentication<'a> {
    method: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<String>,
}

impl<'a> ApiRequest<'a> {
    fn connect(creds: &Credentials<'a>) -> Self {
        ApiRequest {
            kind: "connect",
            username: creds.username,
            password: creds.password.map(|p| BASE64.encode(p)),
            certs: (!creds.peer_certs.is_empty()).then(|| pem_chain(creds.peer_certs)),
            enhanced_authentication: creds.method.map(|method| EnhancedAuthentication {
                method,
                data: creds.data.map(|d| BASE64.encode(d)),
            }),
            client_id: (!creds.client_id.is_empty()).then_some(creds.client_id),
        }
    }

    fn auth(client_id: &'a str, username: Option<&'a str>, method: &'a str, data: &[u8]) -> Self {
        ApiRequest {
            kind: "auth",
            username,
            password: None,
            certs: None,
            enhanced_authentication: Some(EnhancedAuthentication {
                method,
                data: Some(BASE64.encode(data)),
            }),
            client_id: (!client_id.is_empty()).then_some(client_id),
        }
    }
}

fn pem_chain(chain: &[CertificateDer<'static>]) -> String {
    chain.iter().map(gatehouse_certs::encode_cert).collect()
}

/// What a call came to.
#[derive(Debug)]
enum Answer {
    Pass(Pass),
    /// CONNACK reason (a valid failure code) and the server's message for the log.
    Fail(ReasonCode, String),
    /// Communication failure: why, for the log.
    Unavailable(String),
}

#[derive(Debug, PartialEq, Eq)]
struct Pass {
    attributes: BTreeMap<String, String>,
    expiry: Option<SystemTime>,
}

#[derive(Deserialize)]
struct PassBody {
    #[serde(default)]
    expiry: Option<String>,
    #[serde(default)]
    attributes: Option<BTreeMap<String, String>>,
}

#[derive(Deserialize)]
struct FailBody {
    #[serde(default)]
    reason: Option<serde_json::Value>,
    #[serde(default)]
    message: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct VersionsBody {
    #[serde(default)]
    supported_versions: Vec<String>,
}

/// A 200 or 403 answer (any other status is a communication failure).
fn interpret(status: StatusCode, body: &[u8]) -> Answer {
    match status {
        StatusCode::OK => pass(body),
        StatusCode::FORBIDDEN => {
            let parsed: Option<FailBody> = serde_json::from_slice(body).ok();
            let (reason, message) = match parsed {
                Some(f) => (f.reason, f.message),
                None => (None, None),
            };
            let reason = reason
                .as_ref()
                .and_then(serde_json::Value::as_u64)
                .and_then(|r| u8::try_from(r).ok())
                .map(ReasonCode)
                .filter(|r| is_connack_failure(*r))
                .unwrap_or(ReasonCode::NOT_AUTHORIZED);
            Answer::Fail(reason, message.unwrap_or_else(|| "(no message)".into()))
        }
        other => Answer::Unavailable(format!("unexpected HTTP status {other}")),
    }
}

/// A 200 answer's body: `{}` (or nothing at all) is a pass without attributes or expiry.
fn pass(body: &[u8]) -> Answer {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Answer::Pass(Pass {
            attributes: BTreeMap::new(),
            expiry: None,
        });
    }
    // An object only (serde would also take a JSON array for a struct).
    let parsed = serde_json::from_slice::<serde_json::Value>(body).and_then(|v| match v {
        serde_json::Value::Object(_) => serde_json::from_value::<PassBody>(v),
        _ => Err(serde::de::Error::custom("not a JSON object")),
    });
    let parsed = match parsed {
        Ok(p) => p,
        Err(e) => {
            return Answer::Unavailable(format!(
                "HTTP 200 with a body that is not `{{expiry?, attributes?}}`: {e}"
            ))
        }
    };
    let expiry = match parsed.expiry.as_deref().map(parse_expiry).transpose() {
        Ok(e) => e,
        Err(why) => return Answer::Unavailable(why),
    };
    Answer::Pass(Pass {
        attributes: parsed.attributes.unwrap_or_default(),
        expiry,
    })
}

fn parse_expiry(text: &str) -> Result<SystemTime, String> {
    OffsetDateTime::parse(text, &Rfc3339)
        .map(SystemTime::from)
        .map_err(|e| format!("HTTP 200 with an `expiry` that is not an RFC 3339 time ({e})"))
}

/// A 422 answer: the version to retry with, if the server lists one we know.
fn retry_version(body: &[u8]) -> Option<&'static str> {
    let parsed: VersionsBody = serde_json::from_slice(body).ok()?;
    KNOWN_VERSIONS
        .iter()
        .copied()
        .find(|v| parsed.supported_versions.iter().any(|s| s == v))
}

/// Whether `rc` may be sent as a failing CONNACK reason (MQTT 5 §3.2.2.2).
fn is_connack_failure(rc: ReasonCode) -> bool {
    matches!(
        rc.0,
        0x80..=0x8A | 0x8C | 0x90 | 0x95 | 0x97 | 0x99..=0x9D | 0x9F
    )
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

// ---------------------------------------------------------------------------------------
// Set-up
// ---------------------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;

    fn creds<'a>(
        username: Option<&'a str>,
        password: Option<&'a [u8]>,
        method: Option<&'a str>,
        data: Option<&'a [u8]>,
        peer_certs: &'a [CertificateDer<'static>],
    ) -> Credentials<'a> {
        Credentials {
            client_id: "dev-1",
            username,
            password,
            method,
            data,
            peer_certs,
        }
    }

    fn json(body: &ApiRequest<'_>) -> serde_json::Value {
        serde_json::to_value(body).expect("encode")
    }

    #[test]
    fn connect_request_is_camel_case_and_omits_absent_fields() {
        let c = creds(Some("client1"), Some(b"password1"), None, None, &[]);
        assert_eq!(
            json(&ApiRequest::connect(&c)),
            serde_json::json!({
                "type": "connect",
                "username": "client1",
                "password": "cGFzc3dvcmQx",
                "clientId": "dev-1",
            })
        );
        let c = Credentials {
            client_id: "",
            ..creds(None, None, None, None, &[])
        };
        assert_eq!(
            json(&ApiRequest::connect(&c)),
            serde_json::json!({ "type": "connect" })
        );
    }

    #[test]
    fn connect_request_carries_enhanced_authentication_and_the_pem_chain() {
        let der = CertificateDer::from(vec![0x30, 0x03, 0x02, 0x01, 0x01]);
        let chain = [der.clone(), der];
        let c = creds(
            None,
            Some(&[0xff, 0x00]),
            Some("K8S-SAT"),
            Some(b"tok"),
            &chain,
        );
        let v = json(&ApiRequest::connect(&c));
        assert_eq!(v["password"], "/wA=");
        assert_eq!(
            v["enhancedAuthentication"],
            serde_json::json!({ "method": "K8S-SAT", "data": "dG9r" })
        );
        let pem = v["certs"].as_str().expect("certs");
        assert_eq!(pem.matches("-----BEGIN CERTIFICATE-----").count(), 2);
    }

    #[test]
    fn auth_request_has_the_method_data_and_client_id() {
        assert_eq!(
            json(&ApiRequest::auth("dev-1", None, "custom", b"again")),
            serde_json::json!({
                "type": "auth",
                "enhancedAuthentication": { "method": "custom", "data": "YWdhaW4=" },
                "clientId": "dev-1",
            })
        );
        // The user the connection is authenticated as, so the server decides for it.
        assert_eq!(
            json(&ApiRequest::auth(
                "dev-1",
                Some("alice"),
                "custom",
                b"again"
            ))["username"],
            "alice"
        );
    }

    #[test]
    fn the_api_version_is_appended_to_the_endpoint_query() {
        let url = |e: &str| endpoint_url(e, "0.5.0").expect("url").0.to_string();
        assert_eq!(
            url("https://auth.example:8443"),
            "https://auth.example:8443/?api-version=0.5.0"
        );
        assert_eq!(
            url("https://auth.example/v1/authn"),
            "https://auth.example/v1/authn?api-version=0.5.0"
        );
        assert_eq!(
            url("https://auth.example/authn?tenant=a&api-version=0.1#x"),
            "https://auth.example/authn?tenant=a&api-version=0.5.0"
        );
        let (_, shown) =
            endpoint_url("https://u:secret@auth.example:9000/p?key=s", "0.5.0").expect("url");
        assert_eq!(shown, "https://auth.example:9000/p");
        assert!(endpoint_url("http://auth.example", "0.5.0").is_err());
    }

    #[test]
    fn a_200_answer_gives_attributes_and_expiry() {
        let a = interpret(
            StatusCode::OK,
            br#"{ "expiry": "2030-05-08T20:04:16+02:00", "attributes": { "floor": "floor1" }, "extra": 1 }"#,
        );
        let Answer::Pass(p) = a else {
            panic!("expected a pass, got {a:?}")
        };
        assert_eq!(
            p.attributes.get("floor").map(String::as_str),
            Some("floor1")
        );
        let expected = OffsetDateTime::parse("2030-05-08T18:04:16Z", &Rfc3339).expect("time");
        assert_eq!(p.expiry, Some(SystemTime::from(expected)));
        for body in [&b"{}"[..], b"", b"{\"expiry\": null}"] {
            assert!(
                matches!(
                    interpret(StatusCode::OK, body),
                    Answer::Pass(Pass { expiry: None, .. })
                ),
                "{body:?}"
            );
        }
        for body in [
            &br#"{"expiry": "tomorrow"}"#[..],
            br#"{"attributes": {"a": 1}}"#,
            b"[]",
        ] {
            assert!(
                matches!(interpret(StatusCode::OK, body), Answer::Unavailable(_)),
                "{body:?}"
            );
        }
    }

    #[test]
    fn a_403_answer_gives_a_valid_connack_failure_reason() {
        let reason = |body: &[u8]| match interpret(StatusCode::FORBIDDEN, body) {
            Answer::Fail(rc, _) => rc.0,
            other => panic!("expected a failure, got {other:?}"),
        };
        assert_eq!(reason(br#"{"reason": 134, "message": "bad"}"#), 0x86);
        assert_eq!(reason(br#"{"reason": 138}"#), 0x8A);
        assert_eq!(reason(br#"{"reason": 0}"#), 0x87);
        assert_eq!(
            reason(br#"{"reason": 139}"#),
            0x87,
            "0x8B is not a CONNACK code"
        );
        assert_eq!(reason(br#"{"reason": 300}"#), 0x87);
        assert_eq!(reason(br#"{"reason": "x"}"#), 0x87);
        assert_eq!(reason(b"not json"), 0x87);
        match interpret(
            StatusCode::FORBIDDEN,
            br#"{"reason": 135, "message": "unknown device"}"#,
        ) {
            Answer::Fail(_, m) => assert_eq!(m, "unknown device"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn other_statuses_are_communication_failures() {
        for status in [
            StatusCode::INTERNAL_SERVER_ERROR,
            StatusCode::BAD_REQUEST,
            StatusCode::UNAUTHORIZED,
            StatusCode::FOUND,
            StatusCode::NO_CONTENT,
        ] {
            assert!(matches!(interpret(status, b"{}"), Answer::Unavailable(_)));
        }
    }

    #[test]
    fn a_422_is_retried_only_with_a_version_we_know() {
        assert_eq!(
            retry_version(br#"{"supportedVersions": ["0.4.0", "0.5.0"]}"#),
            Some("0.5.0")
        );
        assert_eq!(retry_version(br#"{"supportedVersions": ["0.6.0"]}"#), None);
        assert_eq!(retry_version(b"nope"), None);
    }

    #[test]
    fn refused_reauthentication_disconnects_with_0x87_or_0x8c() {
        assert_eq!(reauth_failure(ReasonCode(0x86)), ReasonCode::NOT_AUTHORIZED);
        assert_eq!(reauth_failure(ReasonCode(0x8A)), ReasonCode::NOT_AUTHORIZED);
        assert_eq!(
            reauth_failure(ReasonCode::BAD_AUTHENTICATION_METHOD),
            ReasonCode::BAD_AUTHENTICATION_METHOD
        );
    }

    #[test]
    fn configured_headers_are_sensitive_and_may_replace_the_content_type() {
        let mut configured = BTreeMap::new();
        configured.insert("x-api-key".to_string(), "s3cret".to_string());
        let h = request_headers(&configured).expect("headers");
        assert_eq!(h["content-type"], "application/json");
        assert!(h["x-api-key"].is_sensitive());
        assert!(!format!("{h:?}").contains("s3cret"));
        configured.insert(
            "Content-Type".to_string(),
            "application/json; charset=utf-8".into(),
        );
        let h = request_headers(&configured).expect("headers");
        assert_eq!(h.get_all("content-type").iter().count(), 1);
        configured.insert("bad".to_string(), "line\nbreak".into());
        let e = request_headers(&configured).expect_err("bad value");
        assert!(!e.to_string().contains("line"), "{e}");
    }
}
