//! The Kubernetes manifest form.

use gatehouse_config::*;

use crate::{assert_problem, load, problems};

const NATIVE: &str = "
listeners:
  - name: default
    serviceName: aio-broker
    ports:
      - port: 18883
        authenticationRef: default
        authorizationRef: policy
        tls:
          mode: Automatic
          certManagerCertificateSpec:
            issuerRef: { name: my-issuer, kind: Issuer }
            san: { dns: [mqtt.example.com] }
      - port: 8080
        protocol: WebSockets
        path: /mqtt
issuers:
  - { name: selfsigned, kind: ClusterIssuer, selfSigned: {} }
  - { name: my-issuer, ca: { secretName: test-ca } }
certificates:
  - { name: ca-cert, isCA: true, commonName: test-ca, secretName: test-ca, issuerRef: { name: selfsigned, kind: ClusterIssuer } }
authentications:
  - name: default
    authenticationMethods:
      - method: ServiceAccountToken
        serviceAccountTokenSettings: { audiences: [aio-internal] }
      - method: X509
authorizations:
  - name: policy
    authorizationPolicies:
      rules:
        - principals: { attributes: [ { organization: contoso } ] }
          brokerResources: [ { method: Connect }, { method: Publish, topics: ['a/#'] } ]
";

const MANIFESTS: &str = "
apiVersion: cert-manager.io/v1
kind: ClusterIssuer
metadata: { name: selfsigned }
spec: { selfSigned: {} }
---
apiVersion: cert-manager.io/v1
kind: Issuer
metadata: { name: my-issuer, namespace: azure-iot-operations, labels: { a: b } }
spec: { ca: { secretName: test-ca } }
---
apiVersion: cert-manager.io/v1
kind: Certificate
metadata: { name: ca-cert }
spec:
  isCA: true
  commonName: test-ca
  secretName: test-ca
  issuerRef: { name: selfsigned, kind: ClusterIssuer, group: cert-manager.io }
  privateKey: { algorithm: ECDSA, size: 256, rotationPolicy: Always }
---
apiVersion: mqttbroker.iotoperations.azure.com/v1
kind: BrokerListener
metadata: { name: default, namespace: azure-iot-operations }
spec:
  brokerRef: default
  serviceName: aio-broker
  ports:
    - port: 18883
      authenticationRef: default
      authorizationRef: policy
      tls:
        mode: Automatic
        certManagerCertificateSpec:
          issuerRef: { name: my-issuer, kind: Issuer }
          san: { dns: [mqtt.example.com] }
    - port: 8080
      protocol: WebSockets
      path: /mqtt
status: { provisioningState: Succeeded }
---
apiVersion: mqttbroker.iotoperations.azure.com/v1beta1
kind: BrokerAuthentication
metadata: { name: default }
spec:
  authenticationMethods:
    - method: ServiceAccountToken
      serviceAccountTokenSettings: { audiences: [aio-internal] }
    - method: X509
---
apiVersion: mqttbroker.iotoperations.azure.com/v1
kind: BrokerAuthorization
metadata: { name: policy }
spec:
  authorizationPolicies:
    rules:
      - principals: { attributes: [ { organization: contoso } ] }
        brokerResources: [ { method: Connect }, { method: Publish, topics: ['a/#'] } ]
---
";

#[test]
fn manifests_and_native_form_give_the_same_config() {
    let native = load(NATIVE);
    let manifests = load(MANIFESTS);
    assert_eq!(manifests.config, native.config);
    assert!(manifests.warnings.is_empty(), "{:?}", manifests.warnings);
}

#[test]
fn other_kinds_are_skipped_with_a_warning() {
    let yaml = format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{ name: web }}\nspec: {{ replicas: 1 }}\n---\n\
         apiVersion: connectivity.iotoperations.azure.com/v1\nkind: DataflowProfile\nmetadata: {{ name: default }}\nspec: {{}}\n---\n{MANIFESTS}"
    );
    let loaded = load(&yaml);
    assert_eq!(
        loaded.warnings,
        [
            "document 1 (Deployment web): skipped: apps/v1 Deployment is not used by Gatehouse",
            "document 2 (DataflowProfile default): skipped: connectivity.iotoperations.azure.com/v1 DataflowProfile is not used by Gatehouse",
        ]
    );
    assert_eq!(loaded.config.listeners.len(), 1);
}

#[test]
fn type_errors_name_the_document() {
    let yaml = MANIFESTS.replace("port: 18883", "port: high");
    assert_problem(
        &yaml,
        "document 4 (BrokerListener default).spec.ports[0].port",
        "expected u16",
    );
    let yaml = MANIFESTS.replace("brokerRef: default", "brokerRef: default\n  portz: []");
    assert_problem(
        &yaml,
        "document 4 (BrokerListener default).spec.portz",
        "unknown field `portz`",
    );
}

#[test]
fn type_errors_of_several_documents_are_all_reported() {
    let yaml = MANIFESTS
        .replace("port: 18883", "port: high")
        .replace("method: X509", "method: Kerberos");
    let paths: Vec<String> = problems(&yaml).into_iter().map(|p| p.path).collect();
    assert_eq!(
        paths,
        [
            "document 4 (BrokerListener default).spec.ports[0].port",
            "document 5 (BrokerAuthentication default).spec.authenticationMethods[1].method",
        ]
    );
}

#[test]
fn validation_paths_name_the_document() {
    let yaml = format!(
        "{MANIFESTS}apiVersion: mqttbroker.iotoperations.azure.com/v1\nkind: BrokerListener\n\
         metadata: {{ name: Second }}\nspec:\n  serviceType: LoadBalancer\n  ports: [ {{ port: 8080, authenticationRef: nope }} ]\n"
    );
    let paths: Vec<String> = problems(&yaml).into_iter().map(|p| p.path).collect();
    assert_eq!(
        paths,
        [
            "document 7 (BrokerListener Second).metadata.name",
            "document 7 (BrokerListener Second).spec.ports[0].port",
            "document 7 (BrokerListener Second).spec.ports[0].authenticationRef",
        ]
    );
}

#[test]
fn no_listener_in_manifests_is_an_error() {
    let yaml = "apiVersion: cert-manager.io/v1\nkind: Issuer\nmetadata: { name: selfsigned }\nspec: { selfSigned: {} }\n";
    assert_problem(yaml, "manifests", "add a BrokerListener");
}

#[test]
fn the_name_comes_from_metadata() {
    let yaml = MANIFESTS.replace("brokerRef: default", "name: other");
    assert_problem(
        &yaml,
        "document 4 (BrokerListener default).spec.name",
        "the name comes from metadata.name",
    );
    let yaml = MANIFESTS.replace("metadata: { name: policy }", "metadata: { namespace: x }");
    assert_problem(
        &yaml,
        "document 6 (BrokerAuthorization).metadata",
        "missing field `name`",
    );
}

#[test]
fn unsupported_api_versions_and_non_objects_are_errors() {
    let yaml = MANIFESTS.replace(
        "iotoperations.azure.com/v1beta1",
        "iotoperations.azure.com/v1alpha1",
    );
    assert_problem(
        &yaml,
        "document 5 (BrokerAuthentication default).apiVersion",
        "not supported for BrokerAuthentication",
    );
    let yaml = format!("{MANIFESTS}listeners: []\n");
    assert_problem(&yaml, "document 7", "not a Kubernetes object");
}

#[test]
fn issuer_kind_comes_from_the_manifest() {
    let config = load(MANIFESTS).config;
    assert_eq!(config.issuers[0].kind, IssuerKind::ClusterIssuer);
    assert_eq!(config.issuers[1].kind, IssuerKind::Issuer);
}
