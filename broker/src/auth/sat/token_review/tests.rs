//! The TokenReview client against the stand-in API server of [`super::mock_api`].

#![allow(
    clippy::disallowed_methods,
    reason = "tests write their fixtures synchronously"
)]

use gatehouse_certs::Usage;
use serde_json::json;
use tokio::net::TcpListener;

use super::mock_api::*;
use super::*;

fn audiences(list: &[&str]) -> Vec<String> {
    list.iter().map(|a| a.to_string()).collect()
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
        TokenReviewClient::in_cluster(Some("fd00::1"), Some("443"), &token_file, &ca_file).unwrap();
    assert_eq!(ipv6.server(), "https://[fd00::1]");

    let e = TokenReviewClient::in_cluster(None, Some("443"), &token_file, &ca_file)
        .unwrap_err()
        .to_string();
    assert!(e.contains("KUBERNETES_SERVICE_HOST"), "{e}");
    let e = TokenReviewClient::in_cluster(Some("10.0.0.1"), Some("https"), &token_file, &ca_file)
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
