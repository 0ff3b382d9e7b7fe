use std::collections::BTreeMap;
use std::time::SystemTime;

use rustls::pki_types::CertificateDer;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::api::Pass;
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
