//! Offline validation of service account tokens: the JWT's signature against the
//! cluster's service-account issuer keys (a JWKS file), and its `iss`, `aud`, `exp` and
//! `nbf` claims.

use std::path::{Path, PathBuf};

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

#[derive(Debug, thiserror::Error)]
pub enum JwksError {
    #[error("JWKS file {}: {source}", .path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("JWKS file {}: not a JSON Web Key Set: {source}", .path.display())]
    Parse {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("JWKS file {}: no RS256/ES256 key in it", .path.display())]
    NoKeys { path: PathBuf },
    #[error("jwks: without `file`, keys are fetched by OIDC discovery, which is not supported yet; give `jwks.file`")]
    DiscoveryNotSupportedYet,
}

/// The claims Gatehouse reads from a service account token.
#[derive(Debug, Deserialize)]
pub(crate) struct Claims {
    pub sub: String,
    pub exp: u64,
}

pub(crate) struct Offline {
    keys: Vec<(Option<String>, Algorithm, DecodingKey)>,
    issuer: String,
}

impl Offline {
    #[allow(
        clippy::disallowed_methods,
        reason = "runs when an authentication chain is built (start-up, reload), never per connection"
    )]
    pub(crate) fn load(file: &Path, issuer: &str) -> Result<Offline, JwksError> {
        let text = std::fs::read(file).map_err(|source| JwksError::Read {
            path: file.to_owned(),
            source,
        })?;
        let set: JwkSet = serde_json::from_slice(&text).map_err(|source| JwksError::Parse {
            path: file.to_owned(),
            source,
        })?;
        let mut keys = Vec::new();
        for jwk in &set.keys {
            let algorithm = match &jwk.algorithm {
                jsonwebtoken::jwk::AlgorithmParameters::RSA(_) => Algorithm::RS256,
                jsonwebtoken::jwk::AlgorithmParameters::EllipticCurve(p)
                    if p.curve == jsonwebtoken::jwk::EllipticCurve::P256 =>
                {
                    Algorithm::ES256
                }
                _ => continue,
            };
            if let Ok(key) = DecodingKey::from_jwk(jwk) {
                keys.push((jwk.common.key_id.clone(), algorithm, key));
            }
        }
        if keys.is_empty() {
            return Err(JwksError::NoKeys {
                path: file.to_owned(),
            });
        }
        Ok(Offline {
            keys,
            issuer: issuer.to_owned(),
        })
    }

    /// The token's claims when its signature, issuer, audience (one of `audiences`) and
    /// validity period all check out; otherwise why not (for the log, never the token).
    pub(crate) fn verify(&self, token: &str, audiences: &[String]) -> Result<Claims, String> {
        let header = jsonwebtoken::decode_header(token).map_err(|e| format!("not a JWT: {e}"))?;
        if !matches!(header.alg, Algorithm::RS256 | Algorithm::ES256) {
            return Err(format!("signature algorithm {:?} not accepted", header.alg));
        }
        let candidates = self.keys.iter().filter(|(kid, alg, _)| {
            *alg == header.alg && (header.kid.is_none() || kid.as_deref() == header.kid.as_deref())
        });
        let mut validation = Validation::new(header.alg);
        validation.set_audience(audiences);
        validation.set_issuer(&[&self.issuer]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.validate_nbf = true;
        // The token's exp is the credential expiry: no grace period on top.
        validation.leeway = 0;
        let mut last = String::from("no key of the JWKS matches the token's key id");
        for (_, _, key) in candidates {
            match jsonwebtoken::decode::<Claims>(token, key, &validation) {
                Ok(data) => return Ok(data.claims),
                Err(e) => last = e.to_string(),
            }
        }
        Err(last)
    }
}
