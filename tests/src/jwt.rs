//! Kubernetes service account tokens for the SAT tests (and the authentication
//! benchmark): RS256 JWTs signed in the test with a fresh RSA key, whose public half is
//! published as a JWKS entry for the broker's offline backend.

use std::time::{SystemTime, UNIX_EPOCH};

use gatehouse_certs::Key;
use gatehouse_config::PrivateKeyAlgorithm;
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::json;

/// The issuer the broker is configured with (`jwks.issuer`).
pub const ISSUER: &str = "https://kubernetes.default.svc";
/// The audience the broker accepts (`serviceAccountTokenSettings.audiences`).
pub const AUDIENCE: &str = "aio-internal";
/// The subject of [`Signer::good`] tokens.
pub const SENSOR: &str = "system:serviceaccount:default:sensor";
/// A service-accounts file (`serviceAccounts.file`) with the `sensor` account of
/// [`SENSOR`], annotated `aio-broker-auth/group: sensors`.
pub const SERVICE_ACCOUNTS_YAML: &str = "apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: sensor\n  namespace: default\n  annotations:\n    aio-broker-auth/group: sensors\n    other/annotation: ignored\n";

/// A signing key (RS256 or ES256) and its key id.
pub struct Signer {
    key: EncodingKey,
    kid: String,
    algorithm: Algorithm,
}

/// Base64url without padding (JWK `n` and `e`).
pub fn b64url(bytes: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..=chunk.len() {
            out.push(T[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

/// A fresh RSA 2048 key; returns the signer and its public JWK (`kid`, RS256).
pub fn rsa_signer(kid: &str) -> (Signer, serde_json::Value) {
    let key = Key::generate(PrivateKeyAlgorithm::Rsa2048).expect("RSA key");
    let spki = key.public_key_der();
    let (_, spki) =
        <x509_parser::x509::SubjectPublicKeyInfo as x509_parser::prelude::FromDer<_>>::from_der(
            &spki,
        )
        .expect("SPKI");
    let Ok(x509_parser::public_key::PublicKey::RSA(rsa)) = spki.parsed() else {
        panic!("not an RSA key")
    };
    let strip = |b: &[u8]| {
        b.iter()
            .skip_while(|x| **x == 0)
            .copied()
            .collect::<Vec<u8>>()
    };
    let jwk = json!({
        "kty": "RSA", "kid": kid, "alg": "RS256", "use": "sig",
        "n": b64url(&strip(rsa.modulus)), "e": b64url(&strip(rsa.exponent)),
    });
    let signer = Signer {
        key: EncodingKey::from_rsa_pem(key.to_pem().as_bytes()).expect("encoding key"),
        kid: kid.into(),
        algorithm: Algorithm::RS256,
    };
    (signer, jwk)
}

/// A fresh P-256 key; returns the signer and its public JWK (`kid`, ES256).
pub fn ec_signer(kid: &str) -> (Signer, serde_json::Value) {
    let key = Key::generate(PrivateKeyAlgorithm::Ec256).expect("EC key");
    let spki = key.public_key_der();
    let (_, spki) =
        <x509_parser::x509::SubjectPublicKeyInfo as x509_parser::prelude::FromDer<_>>::from_der(
            &spki,
        )
        .expect("SPKI");
    // The uncompressed point: 0x04 || X (32 bytes) || Y (32 bytes).
    let point = &spki.subject_public_key.data;
    assert_eq!(
        (point.len(), point[0]),
        (65, 0x04),
        "uncompressed P-256 point"
    );
    let jwk = json!({
        "kty": "EC", "crv": "P-256", "kid": kid, "alg": "ES256", "use": "sig",
        "x": b64url(&point[1..33]), "y": b64url(&point[33..65]),
    });
    let signer = Signer {
        key: EncodingKey::from_ec_pem(key.to_pem().as_bytes()).expect("encoding key"),
        kid: kid.into(),
        algorithm: Algorithm::ES256,
    };
    (signer, jwk)
}

/// A JWKS document holding `keys`.
pub fn jwks(keys: &[serde_json::Value]) -> String {
    json!({ "keys": keys }).to_string()
}

/// Seconds since the Unix epoch.
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

impl Signer {
    /// A token for `sub` with audience `aud`, issuer `iss`, expiring at `exp` (Unix
    /// seconds); `nbf` and `iat` 10 s ago.
    pub fn token(&self, sub: &str, aud: &str, iss: &str, exp: u64) -> String {
        let mut header = Header::new(self.algorithm);
        header.kid = Some(self.kid.clone());
        let claims = json!({ "iss": iss, "aud": [aud], "sub": sub, "exp": exp, "nbf": now() - 10, "iat": now() - 10 });
        encode(&header, &claims, &self.key).expect("sign")
    }

    /// A valid token for [`SENSOR`] ([`AUDIENCE`], [`ISSUER`]), valid `lifetime` seconds.
    pub fn good(&self, lifetime: u64) -> String {
        self.token(SENSOR, AUDIENCE, ISSUER, now() + lifetime)
    }
}

/// A v5 CONNECT carrying `token` as `K8S-SAT` authentication data.
pub fn sat_connect(client_id: &str, token: &str) -> Vec<u8> {
    let token = token.to_owned();
    crate::raw::ConnectBuilder::new(client_id)
        .props(move |p| p.str(0x15, "K8S-SAT").bin(0x16, token.as_bytes()))
        .build()
}
