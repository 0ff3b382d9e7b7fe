//! Private keys: generation for every algorithm AIO names, and keys read from files.
//!
//! A [`Key`] keeps the key both as rcgen's signing key (to sign certificates) and as the
//! DER it came in (to write it back in the same PEM form, PKCS#8, SEC1 or PKCS#1, when a
//! `rotationPolicy: Never` certificate reuses it).

use std::fmt;

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rsa::KeySize;
use gatehouse_config::PrivateKeyAlgorithm;
use rcgen::{KeyPair, PublicKeyData, SignatureAlgorithm};
use rustls_pki_types::PrivateKeyDer;
use x509_parser::prelude::FromDer;
use x509_parser::x509::SubjectPublicKeyInfo;

use crate::pem;

/// The key algorithm families AIO requires a whole chain to share.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyFamily {
    Ec,
    Rsa,
    Ed25519,
}

impl fmt::Display for KeyFamily {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            KeyFamily::Ec => "EC",
            KeyFamily::Rsa => "RSA",
            KeyFamily::Ed25519 => "Ed25519",
        })
    }
}

/// The family an algorithm of the configuration belongs to.
pub fn family_of(algorithm: PrivateKeyAlgorithm) -> KeyFamily {
    use PrivateKeyAlgorithm::*;
    match algorithm {
        Ec256 | Ec384 | Ec521 => KeyFamily::Ec,
        Ed25519 => KeyFamily::Ed25519,
        Rsa2048 | Rsa4096 | Rsa8192 => KeyFamily::Rsa,
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("generating a {algorithm} key failed: {reason}")]
    Generate {
        algorithm: PrivateKeyAlgorithm,
        reason: String,
    },
    /// The DER parsed as a private key container but no supported algorithm accepts it.
    #[error("unsupported or malformed private key: {0}")]
    Unsupported(rcgen::Error),
}

/// A private key able to sign certificates.
pub struct Key {
    pair: KeyPair,
    der: PrivateKeyDer<'static>,
}

impl Key {
    /// A fresh random key.
    ///
    /// RSA keys come from aws-lc-rs directly: rcgen's own RSA generation stops at 4096 bits
    /// and AIO allows 8192.
    pub fn generate(algorithm: PrivateKeyAlgorithm) -> Result<Key, KeyError> {
        use PrivateKeyAlgorithm::*;
        let generate_err = |reason: String| KeyError::Generate { algorithm, reason };
        let pair = match algorithm {
            Ec256 => KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256),
            Ec384 => KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384),
            Ec521 => KeyPair::generate_for(&rcgen::PKCS_ECDSA_P521_SHA512),
            Ed25519 => KeyPair::generate_for(&rcgen::PKCS_ED25519),
            Rsa2048 | Rsa4096 | Rsa8192 => {
                let size = match algorithm {
                    Rsa2048 => KeySize::Rsa2048,
                    Rsa4096 => KeySize::Rsa4096,
                    _ => KeySize::Rsa8192,
                };
                let rsa = aws_lc_rs::rsa::KeyPair::generate(size)
                    .map_err(|e| generate_err(e.to_string()))?;
                let pkcs8 = rsa.as_der().map_err(|e| generate_err(e.to_string()))?;
                KeyPair::from_pkcs8_der_and_sign_algo(
                    &pkcs8.as_ref().to_vec().into(),
                    &rcgen::PKCS_RSA_SHA256,
                )
            }
        }
        .map_err(|e| generate_err(e.to_string()))?;
        let der = PrivateKeyDer::Pkcs8(pair.serialize_der().into());
        Ok(Key { pair, der })
    }

    /// A key read from a file (PKCS#8, SEC1 or PKCS#1).
    pub fn from_der(der: PrivateKeyDer<'static>) -> Result<Key, KeyError> {
        let pair = KeyPair::try_from(&der).map_err(KeyError::Unsupported)?;
        Ok(Key { pair, der })
    }

    pub fn family(&self) -> KeyFamily {
        let alg = self.pair.algorithm();
        if alg == &rcgen::PKCS_ED25519 {
            KeyFamily::Ed25519
        } else if is_rsa(alg) {
            KeyFamily::Rsa
        } else {
            KeyFamily::Ec
        }
    }

    /// The configuration's name for this key, to tell whether a kept key still fits a
    /// certificate spec (`None`: a size AIO doesn't name, e.g. RSA 3072).
    pub fn algorithm(&self) -> Option<PrivateKeyAlgorithm> {
        let spki = self.pair.subject_public_key_info();
        let (_, spki) = SubjectPublicKeyInfo::from_der(&spki).ok()?;
        crate::x509::algorithm_of(&spki)
    }

    /// The DER `SubjectPublicKeyInfo`, as a certificate for this key carries it.
    pub fn public_key_der(&self) -> Vec<u8> {
        self.pair.subject_public_key_info()
    }

    /// PEM in the form the key was read in (`PRIVATE KEY`, `EC PRIVATE KEY` or
    /// `RSA PRIVATE KEY`); generated keys are PKCS#8.
    pub fn to_pem(&self) -> String {
        pem::encode_key(&self.der)
    }

    pub fn der(&self) -> &PrivateKeyDer<'static> {
        &self.der
    }

    pub(crate) fn signing_key(&self) -> &KeyPair {
        &self.pair
    }
}

impl fmt::Debug for Key {
    /// Never prints key material.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Key")
            .field("family", &self.family())
            .field("algorithm", &self.algorithm())
            .finish_non_exhaustive()
    }
}

fn is_rsa(alg: &SignatureAlgorithm) -> bool {
    [
        &rcgen::PKCS_RSA_SHA256,
        &rcgen::PKCS_RSA_SHA384,
        &rcgen::PKCS_RSA_SHA512,
    ]
    .contains(&alg)
}

#[cfg(test)]
mod tests {
    use super::*;
    use PrivateKeyAlgorithm::*;

    fn generates(algorithm: PrivateKeyAlgorithm) {
        let key = Key::generate(algorithm).unwrap();
        assert_eq!(key.algorithm(), Some(algorithm));
        assert_eq!(key.family(), family_of(algorithm));
        // What we write can be read back as the same key.
        let der = PrivateKeyDer::from_pem_slice(key.to_pem().as_bytes()).unwrap();
        let again = Key::from_der(der).unwrap();
        assert_eq!(again.public_key_der(), key.public_key_der());
    }

    use rustls_pki_types::pem::PemObject;

    #[test]
    fn generates_every_ec_and_ed_algorithm() {
        for algorithm in [Ec256, Ec384, Ec521, Ed25519] {
            generates(algorithm);
        }
    }

    #[test]
    fn generates_rsa_2048() {
        generates(Rsa2048);
    }

    #[test]
    #[ignore = "RSA 8192 generation takes many seconds; run with --ignored"]
    fn generates_rsa_8192() {
        generates(Rsa8192);
    }

    #[test]
    fn debug_hides_the_key() {
        let key = Key::generate(Ec256).unwrap();
        let shown = format!("{key:?}");
        assert!(shown.contains("Ec"), "{shown}");
        assert!(!shown.contains("serialized"), "{shown}");
    }
}
