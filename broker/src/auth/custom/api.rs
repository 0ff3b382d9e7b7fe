//! The custom authentication API 0.5.0 (custom-auth.md) as data: the request body the
//! broker POSTs, and what a server's answer (status and body) comes to. No I/O here;
//! [`super::CustomMethod`] sends the requests and reads the answers.

use std::collections::BTreeMap;
use std::time::SystemTime;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use gatehouse_protocol::ReasonCode;
use reqwest::StatusCode;
use rustls::pki_types::CertificateDer;
use serde::{Deserialize, Serialize};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::auth::Credentials;

/// The API version this broker speaks (the only one there is).
pub(super) const API_VERSION: &str = "0.5.0";
/// Versions we can speak, for a 422 answer's `supportedVersions`.
const KNOWN_VERSIONS: &[&str] = &[API_VERSION];

/// The request body. No `Debug`: it holds the password.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct ApiRequest<'a> {
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
    pub(super) fn connect(creds: &Credentials<'a>) -> Self {
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

    pub(super) fn auth(
        client_id: &'a str,
        username: Option<&'a str>,
        method: &'a str,
        data: &[u8],
    ) -> Self {
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
pub(super) enum Answer {
    Pass(Pass),
    /// CONNACK reason (a valid failure code) and the server's message for the log.
    Fail(ReasonCode, String),
    /// Communication failure: why, for the log.
    Unavailable(String),
}

#[derive(Debug, PartialEq, Eq)]
pub(super) struct Pass {
    pub(super) attributes: BTreeMap<String, String>,
    pub(super) expiry: Option<SystemTime>,
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
pub(super) fn interpret(status: StatusCode, body: &[u8]) -> Answer {
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
pub(super) fn retry_version(body: &[u8]) -> Option<&'static str> {
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
