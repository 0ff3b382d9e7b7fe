//! The custom authentication API 0.5.0 on the wire (`shared/spec/custom-auth.md`): request
//! and response bodies, and the checks on a request's method, query and content type.
//!
//! Nothing here does I/O; [`http`](crate::http) reads the request and writes the [`Reply`].

use std::collections::BTreeMap;
use std::fmt;

use hyper::{Method, StatusCode};
use serde::{Deserialize, Serialize};

/// The one version of the API this server speaks.
pub const API_VERSION: &str = "0.5.0";

/// What a 422 lists.
pub const SUPPORTED_VERSIONS: &[&str] = &[API_VERSION];

/// Largest request body read. A request is a few short strings plus, at most, the client's
/// PEM certificate chain (a few KiB per certificate).
pub const MAX_BODY: usize = 64 * 1024;

/// MQTT v5 CONNACK reason codes a 403 carries (the broker sends them to the client).
pub mod reason {
    /// 0x86: what a client with a wrong user name or password gets.
    pub const BAD_USERNAME_OR_PASSWORD: u8 = 0x86;
    /// 0x87: what a client gets that this server cannot judge at all (no credentials).
    pub const NOT_AUTHORIZED: u8 = 0x87;
    /// 0x8C: the client asked for MQTT v5 enhanced authentication, which this server lacks.
    pub const BAD_AUTHENTICATION_METHOD: u8 = 0x8C;
}

/// A request body: `{"type": "connect" | "auth", ...}`. Unknown fields are ignored, so a
/// broker may send extensions (Gatehouse sends `clientId`).
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Request {
    /// A client's CONNECT reached the broker's Custom method.
    Connect(ConnectRequest),
    /// An MQTT v5 AUTH packet asking to re-authenticate (reason 0x19).
    Auth(AuthRequest),
}

impl Request {
    /// The MQTT client id, when the broker sends it (a Gatehouse extension).
    pub fn client_id(&self) -> Option<&str> {
        match self {
            Request::Connect(c) => c.client_id.as_deref(),
            Request::Auth(a) => a.client_id.as_deref(),
        }
    }
}

/// The credentials of a CONNECT. Every field is optional on the wire.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConnectRequest {
    /// The CONNECT User Name.
    pub username: Option<String>,
    /// The CONNECT Password, base64 (standard alphabet, padded).
    pub password: Option<Secret>,
    /// The client's TLS certificate chain (PEM, leaf first); this server does not use it.
    pub certs: Option<String>,
    /// The CONNECT's MQTT v5 Authentication Method and Data.
    pub enhanced_authentication: Option<EnhancedAuthentication>,
    /// The MQTT client id (Gatehouse extension), for the log.
    pub client_id: Option<String>,
}

/// A re-authentication.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuthRequest {
    /// The AUTH packet's method and data (the template server requires it; we do not need it).
    pub enhanced_authentication: Option<EnhancedAuthentication>,
    /// The MQTT client id (Gatehouse extension), for the log.
    pub client_id: Option<String>,
}

/// MQTT v5 Authentication Method (plain text) and Authentication Data (base64).
#[derive(Debug, Deserialize)]
pub struct EnhancedAuthentication {
    pub method: String,
    pub data: Option<Secret>,
}

/// A credential as received: it can be read, but `Debug` never shows it.
#[derive(Clone, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(text: impl Into<String>) -> Secret {
        Secret(text.into())
    }

    /// The text as sent (still base64).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// 200 body. `attributes` is always present (the OpenAPI asks for an empty map rather than
/// none); `expiry` is absent when the credential never expires.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PassBody {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expiry: Option<String>,
    pub attributes: BTreeMap<String, String>,
}

/// 403 body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FailBody {
    pub reason: u8,
    pub message: String,
}

/// 422 body.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct VersionsBody {
    supported_versions: &'static [&'static str],
}

/// Every answer this server gives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// 200: the client is authenticated.
    Pass(PassBody),
    /// 403: the client is refused with an MQTT reason code.
    Fail(FailBody),
    /// 422: the request's `api-version` is not one we speak.
    UnsupportedVersion,
    /// 400: the request is malformed (the broker treats it as a communication failure).
    BadRequest(String),
    /// 405: not a POST.
    MethodNotAllowed,
    /// 500: the server failed (a bug); the broker treats it as a communication failure.
    Internal,
}

impl Reply {
    pub fn status(&self) -> StatusCode {
        match self {
            Reply::Pass(_) => StatusCode::OK,
            Reply::Fail(_) => StatusCode::FORBIDDEN,
            Reply::UnsupportedVersion => StatusCode::UNPROCESSABLE_ENTITY,
            Reply::BadRequest(_) => StatusCode::BAD_REQUEST,
            Reply::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Reply::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Content type and body: JSON for the API's answers, plain text for errors (as the
    /// OpenAPI describes them).
    pub fn body(&self) -> (&'static str, Vec<u8>) {
        let json = |value: Result<Vec<u8>, serde_json::Error>| {
            // Serializing these plain structs cannot fail; should it, say so in plain text.
            match value {
                Ok(body) => ("application/json", body),
                Err(_) => ("text/plain", b"could not encode the answer".to_vec()),
            }
        };
        match self {
            Reply::Pass(body) => json(serde_json::to_vec(body)),
            Reply::Fail(body) => json(serde_json::to_vec(body)),
            Reply::UnsupportedVersion => json(serde_json::to_vec(&VersionsBody {
                supported_versions: SUPPORTED_VERSIONS,
            })),
            Reply::BadRequest(message) => ("text/plain", message.clone().into_bytes()),
            Reply::MethodNotAllowed => ("text/plain", b"only POST is supported".to_vec()),
            Reply::Internal => ("text/plain", b"internal error".to_vec()),
        }
    }
}

/// Checks what comes before the body: `POST`, `?api-version=0.5.0`, a JSON content type.
/// Any path is accepted, so the broker's endpoint URL may carry one.
pub fn check_head(
    method: &Method,
    query: Option<&str>,
    content_type: Option<&[u8]>,
) -> Result<(), Reply> {
    if method != Method::POST {
        return Err(Reply::MethodNotAllowed);
    }
    match api_version(query) {
        None => {
            return Err(Reply::BadRequest(
                "missing api-version query parameter".into(),
            ))
        }
        Some(version) if !SUPPORTED_VERSIONS.contains(&version) => {
            return Err(Reply::UnsupportedVersion)
        }
        Some(_) => {}
    }
    let is_json = content_type
        .and_then(|value| std::str::from_utf8(value).ok())
        .and_then(|value| value.split(';').next())
        .is_some_and(|media| media.trim().eq_ignore_ascii_case("application/json"));
    if !is_json {
        return Err(Reply::BadRequest(
            "content type must be application/json".into(),
        ));
    }
    Ok(())
}

/// The value of `api-version` in a query string (the first one, as written).
fn api_version(query: Option<&str>) -> Option<&str> {
    query?
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(key, _)| *key == "api-version")
        .map(|(_, value)| value)
}

/// Parses a request body. The 400 message gives the kind and place of the error but not
/// serde's text, which may quote values from the body (and so a credential).
pub fn parse_body(body: &[u8]) -> Result<Request, Reply> {
    serde_json::from_slice(body).map_err(|e| {
        let kind = match e.classify() {
            serde_json::error::Category::Io => "read",
            serde_json::error::Category::Syntax => "JSON syntax",
            serde_json::error::Category::Data => "field or type",
            serde_json::error::Category::Eof => "unexpected end",
        };
        Reply::BadRequest(format!(
            "request body is not a valid API {API_VERSION} request ({kind} error at line {}, column {})",
            e.line(),
            e.column()
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const JSON: Option<&[u8]> = Some(b"application/json");

    #[test]
    fn accepts_post_with_the_supported_version_and_json() {
        assert_eq!(
            check_head(&Method::POST, Some("api-version=0.5.0"), JSON),
            Ok(())
        );
        assert_eq!(
            check_head(
                &Method::POST,
                Some("x=1&api-version=0.5.0"),
                Some(b"Application/JSON; charset=utf-8")
            ),
            Ok(())
        );
    }

    #[test]
    fn rejects_other_methods_with_405() {
        assert_eq!(
            check_head(&Method::GET, Some("api-version=0.5.0"), JSON),
            Err(Reply::MethodNotAllowed)
        );
    }

    #[test]
    fn answers_an_unknown_version_with_422_listing_the_supported_ones() {
        let reply = check_head(&Method::POST, Some("api-version=0.4.0"), JSON).unwrap_err();
        assert_eq!(reply, Reply::UnsupportedVersion);
        assert_eq!(reply.status(), StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(
            reply.body(),
            (
                "application/json",
                br#"{"supportedVersions":["0.5.0"]}"#.to_vec()
            )
        );
    }

    #[test]
    fn rejects_a_missing_version_or_a_non_json_body_with_400() {
        for (query, content_type) in [
            (None, JSON),
            (Some("apiversion=0.5.0"), JSON),
            (Some("api-version=0.5.0"), None),
            (Some("api-version=0.5.0"), Some(&b"text/plain"[..])),
        ] {
            let reply = check_head(&Method::POST, query, content_type).unwrap_err();
            assert_eq!(
                reply.status(),
                StatusCode::BAD_REQUEST,
                "{query:?} {content_type:?}"
            );
        }
    }

    #[test]
    fn parses_connect_and_auth_requests_ignoring_unknown_fields() {
        let request = parse_body(
            br#"{"type":"connect","username":"client1","password":"cGFzc3dvcmQx",
                 "clientId":"dev-1","somethingNew":true}"#,
        )
        .unwrap();
        let Request::Connect(connect) = &request else {
            panic!("{request:?}")
        };
        assert_eq!(connect.username.as_deref(), Some("client1"));
        assert_eq!(connect.password.as_ref().unwrap().expose(), "cGFzc3dvcmQx");
        assert_eq!(request.client_id(), Some("dev-1"));

        let request =
            parse_body(br#"{"type":"auth","enhancedAuthentication":{"method":"M","data":"ZA=="}}"#)
                .unwrap();
        assert!(matches!(request, Request::Auth(_)));
    }

    #[test]
    fn a_bad_body_is_400_without_quoting_it() {
        for body in [
            &br#"{"type":"connect","username":"u","password":"hunter2""#[..],
            br#"{"type":"hello","password":"hunter2"}"#,
            br#"{"type":"connect","password":["hunter2"]}"#,
        ] {
            let reply = parse_body(body).unwrap_err();
            let Reply::BadRequest(message) = &reply else {
                panic!("{reply:?}")
            };
            assert!(!message.contains("hunter2"), "{message}");
        }
    }

    #[test]
    fn debug_never_shows_a_secret() {
        let request = parse_body(br#"{"type":"connect","password":"aHVudGVyMg=="}"#).unwrap();
        assert!(!format!("{request:?}").contains("aHVudGVyMg=="));
    }

    #[test]
    fn pass_bodies_always_carry_attributes_and_omit_a_missing_expiry() {
        let reply = Reply::Pass(PassBody {
            expiry: None,
            attributes: BTreeMap::new(),
        });
        assert_eq!(reply.body().1, br#"{"attributes":{}}"#);
        let reply = Reply::Fail(FailBody {
            reason: reason::BAD_USERNAME_OR_PASSWORD,
            message: "bad username or password".into(),
        });
        assert_eq!(
            reply.body().1,
            br#"{"reason":134,"message":"bad username or password"}"#
        );
    }
}
