//! The API as the broker uses it: pass, fail, version negotiation, keep-alive.

use std::time::Duration;

use hyper::{Method, StatusCode};
use serde_json::{json, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::common::{added, connect, Pki, Server};

/// A server with `client1` (attributes, 1 h lifetime) and `forever` (no lifetime).
fn setup() -> (Pki, Server) {
    let pki = Pki::new();
    let users = pki.path("users.yaml");
    added(
        &users,
        "client1",
        "password1",
        &[
            "--attribute",
            "floor=floor1",
            "--attribute",
            "site=site1",
            "--lifetime",
            "1h",
        ],
    );
    added(&users, "forever", "pw", &[]);
    let server = Server::start(&pki, &users, None);
    (pki, server)
}

#[tokio::test]
async fn passes_a_user_with_attributes_and_expiry() {
    let (pki, server) = setup();
    let before = OffsetDateTime::now_utc();
    let (status, body) = pki
        .client(None)
        .post(server.addr, &connect("client1", "password1"))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body["attributes"],
        json!({"floor": "floor1", "site": "site1"})
    );
    let expiry = OffsetDateTime::parse(body["expiry"].as_str().unwrap(), &Rfc3339).unwrap();
    let lifetime = expiry - before;
    assert!(
        lifetime > time::Duration::minutes(59) && lifetime <= time::Duration::minutes(61),
        "{expiry}"
    );

    let logs = server.wait_for_log("authenticated").await;
    assert!(logs.contains("user=\"client1\""), "{logs}");
    assert!(logs.contains("result=\"pass\""), "{logs}");
}

#[tokio::test]
async fn a_user_without_lifetime_gets_no_expiry() {
    let (pki, server) = setup();
    let (status, body) = pki
        .client(None)
        .post(server.addr, &connect("forever", "pw"))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, json!({"attributes": {}}));
}

#[tokio::test]
async fn a_wrong_password_or_unknown_user_is_403_reason_134() {
    let (pki, server) = setup();
    let client = pki.client(None);
    for request in [
        connect("client1", "password2"),
        connect("client1", ""),
        connect("nobody", "password1"),
    ] {
        let (status, body) = client.post(server.addr, &request).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{request}");
        assert_eq!(
            body,
            json!({"reason": 134, "message": "bad username or password"})
        );
    }
    let logs = server.wait_for_log("user=\"nobody\"").await;
    assert!(logs.contains("result=\"fail\""), "{logs}");
    for secret in ["password1", "password2", "cGFzc3dvcmQx", "cGFzc3dvcmQy"] {
        assert!(!logs.contains(secret), "the log shows {secret}:\n{logs}");
    }
}

#[tokio::test]
async fn missing_credentials_and_reauthentication_are_403_reason_135() {
    let (pki, server) = setup();
    let client = pki.client(None);
    for request in [
        json!({"type": "connect", "username": "client1"}),
        json!({"type": "connect", "password": "cGFzc3dvcmQx"}),
        json!({"type": "connect", "certs": "-----BEGIN CERTIFICATE-----\n"}),
        json!({"type": "auth", "enhancedAuthentication": {"method": "M", "data": "ZA=="}}),
    ] {
        let (status, body) = client.post(server.addr, &request).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{request}");
        assert_eq!(body["reason"], 135, "{request}");
        assert!(body["message"].is_string());
    }
}

#[tokio::test]
async fn enhanced_authentication_is_403_reason_140() {
    let (pki, server) = setup();
    let mut request = connect("client1", "password1");
    request["enhancedAuthentication"] = json!({"method": "K8S-SAT", "data": "dG9rZW4="});
    let (status, body) = pki.client(None).post(server.addr, &request).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(body["reason"], 0x8C);
}

#[tokio::test]
async fn an_unsupported_api_version_is_422_with_the_supported_versions() {
    let (pki, server) = setup();
    let mut connection = pki.client(None).connect(server.addr).await.unwrap();
    let body = connect("client1", "password1").to_string();
    for query in ["/?api-version=0.4.0", "/?api-version=1.0.0"] {
        let (status, answer) = connection
            .send(Method::POST, query, Some("application/json"), body.clone())
            .await
            .unwrap();
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(answer, json!({"supportedVersions": ["0.5.0"]}));
    }
}

#[tokio::test]
async fn malformed_requests_are_400_and_other_methods_405() {
    let (pki, server) = setup();
    let mut connection = pki.client(None).connect(server.addr).await.unwrap();
    let body = connect("client1", "password1").to_string();
    let json = Some("application/json");
    for (method, uri, content_type, body, expected) in [
        (
            Method::POST,
            "/",
            json,
            body.clone(),
            StatusCode::BAD_REQUEST,
        ),
        (
            Method::POST,
            "/?api-version=0.5.0",
            Some("text/plain"),
            body.clone(),
            StatusCode::BAD_REQUEST,
        ),
        (
            Method::POST,
            "/?api-version=0.5.0",
            json,
            "{".into(),
            StatusCode::BAD_REQUEST,
        ),
        (
            Method::POST,
            "/?api-version=0.5.0",
            json,
            r#"{"type":"hello"}"#.into(),
            StatusCode::BAD_REQUEST,
        ),
        (
            Method::POST,
            "/?api-version=0.5.0",
            json,
            "x".repeat(70_000),
            StatusCode::BAD_REQUEST,
        ),
        (
            Method::GET,
            "/?api-version=0.5.0",
            None,
            String::new(),
            StatusCode::METHOD_NOT_ALLOWED,
        ),
        // Any path: the broker keeps the path of its endpoint URL.
        (
            Method::POST,
            "/auth/mqtt?api-version=0.5.0",
            json,
            body.clone(),
            StatusCode::OK,
        ),
    ] {
        let (status, answer) = connection
            .send(method.clone(), uri, content_type, body)
            .await
            .unwrap();
        assert_eq!(
            status, expected,
            "{method} {uri} {content_type:?}: {answer}"
        );
        if status == StatusCode::BAD_REQUEST {
            // Plain text for the broker's log.
            assert!(matches!(answer, Value::String(_)), "{answer}");
        }
    }
}

#[tokio::test]
async fn keeps_the_connection_alive_between_requests() {
    let (pki, server) = setup();
    let mut connection = pki.client(None).connect(server.addr).await.unwrap();
    for _ in 0..3 {
        let (status, _) = connection
            .post(&connect("client1", "password1"))
            .await
            .unwrap();
        assert_eq!(status, StatusCode::OK);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
