//! `--client-ca`: only a client (the broker) with a certificate from that CA gets an answer.

use hyper::StatusCode;

use crate::common::{added, authority, client_cert, connect, write, Pki, Server};

#[tokio::test]
async fn a_client_certificate_from_the_client_ca_is_required() {
    let pki = Pki::new();
    let users = pki.path("users.yaml");
    added(&users, "client1", "password1", &[]);
    let broker_ca = authority("Broker Client CA");
    let client_ca = write(
        pki.dir.path(),
        "client-ca.crt",
        gatehouse_certs::encode_cert(broker_ca.root()),
    );
    let server = Server::start(&pki, &users, Some(&client_ca));

    // With a certificate from the client CA: answered.
    let broker = client_cert(&broker_ca, "gatehouse-broker");
    let (status, _) = pki
        .client(Some(&broker))
        .post(server.addr, &connect("client1", "password1"))
        .await;
    assert_eq!(status, StatusCode::OK);

    // Without a certificate, or with one from another CA: refused during the handshake
    // (with TLS 1.3 the client notices on its first read, so try a request).
    let stranger = client_cert(&authority("Some Other CA"), "gatehouse-broker");
    for identity in [None, Some(&stranger)] {
        let refused = match pki.client(identity).connect(server.addr).await {
            Err(_) => true,
            Ok(mut connection) => connection
                .post(&connect("client1", "password1"))
                .await
                .is_err(),
        };
        assert!(
            refused,
            "answered a client with {:?}",
            identity.map(|_| "a stranger's certificate")
        );
    }
    server.wait_for_log("TLS handshake failed").await;
}
