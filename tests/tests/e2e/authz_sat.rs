//! The seed's SAT authorization example: the service account `mqtt-client` is annotated
//! `aio-broker-auth/group=authz-sat`; a rule on that attribute lets it connect, publish to
//! `odd-numbered-orders` and subscribe to `orders`. Tokens are minted in the test (RS256,
//! JWKS file); raw MQTT v5 clients carry them as `K8S-SAT` authentication data.

use gatehouse_tests::broker::{TempDir, TestBroker};
use gatehouse_tests::jwt::{jwks, now, rsa_signer, sat_connect, AUDIENCE, ISSUER};
use gatehouse_tests::raw::{
    connack_code, frame_body, publish_bytes, subscribe_bytes, Props, RawClient, WAIT,
};

const ACCOUNTS: &str = "
apiVersion: v1
kind: ServiceAccount
metadata:
  name: mqtt-client
  namespace: default
  annotations:
    aio-broker-auth/group: authz-sat
---
apiVersion: v1
kind: ServiceAccount
metadata:
  name: other-client
  namespace: default
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_authz_sat_group_may_publish_odd_orders_and_subscribe_to_orders() {
    let dir = TempDir::new("authz-sat");
    let (signer, jwk) = rsa_signer("k1");
    let keys = dir.write("jwks.json", &jwks(&[jwk]));
    let accounts = dir.write("accounts.yaml", ACCOUNTS);
    let b = TestBroker::start(&format!(
        "
listeners:
  - name: sat
    bindAddress: 127.0.0.1
    ports: [ {{ port: 0, authenticationRef: sat, authorizationRef: sat-policy }} ]
authentications:
  - name: sat
    authenticationMethods:
      - method: ServiceAccountToken
        serviceAccountTokenSettings:
          audiences: [{AUDIENCE}]
          jwks: {{ file: {keys}, issuer: {ISSUER} }}
          serviceAccounts: {{ file: {accounts} }}
authorizations:
  - name: sat-policy
    authorizationPolicies:
      rules:
        - principals:
            attributes: [ {{ group: authz-sat }} ]
          brokerResources:
            - method: Connect
            - method: Publish
              topics: [odd-numbered-orders]
            - method: Subscribe
              topics: [orders]
",
        keys = keys.display(),
        accounts = accounts.display()
    ))
    .await;
    let token = |account: &str| {
        signer.token(
            &format!("system:serviceaccount:default:{account}"),
            AUDIENCE,
            ISSUER,
            now() + 3600,
        )
    };

    // Annotated: connects, publishes where allowed, subscribes where allowed.
    let mut c = RawClient::connect(b.mqtt_addr()).await;
    c.send(&sat_connect("orders-app", &token("mqtt-client")))
        .await;
    let raw = c.recv_raw(WAIT).await.expect("CONNACK");
    assert_eq!(connack_code(&raw), 0x00);
    c.send(&subscribe_bytes(1, "orders", 1)).await;
    let suback = c.recv_raw(WAIT).await.expect("SUBACK");
    assert_eq!(*frame_body(&suback).last().expect("code"), 0x01, "orders");
    c.send(&subscribe_bytes(2, "odd-numbered-orders", 1)).await;
    let suback = c.recv_raw(WAIT).await.expect("SUBACK");
    assert_eq!(
        *frame_body(&suback).last().expect("code"),
        0x87,
        "not allowed to subscribe there"
    );
    for (id, topic, expect) in [(3, "odd-numbered-orders", 0x00), (4, "orders", 0x87)] {
        c.send(&publish_bytes(
            0x02,
            topic.as_bytes(),
            Some(id),
            Some(&Props::new()),
            b"1",
        ))
        .await;
        let ack = c.recv_raw(WAIT).await.expect("PUBACK");
        // A successful PUBACK may omit the reason code (MQTT 5 §3.4.2.1).
        let code = frame_body(&ack).get(2).copied().unwrap_or(0);
        assert_eq!((ack[0], code), (0x40, expect), "publish {topic}");
    }

    // Not annotated: the token is valid, but no rule lets it connect.
    let mut other = RawClient::connect(b.mqtt_addr()).await;
    other
        .send(&sat_connect("other", &token("other-client")))
        .await;
    let raw = other.recv_raw(WAIT).await.expect("CONNACK");
    assert_eq!(connack_code(&raw), 0x87);
}
