//! Password hashes: argon2id with a random salt, stored as PHC strings
//! (`$argon2id$v=19$m=19456,t=2,p=1$<salt>$<hash>`).
//!
//! New hashes use the argon2 crate's defaults (argon2id, 19 MiB, 2 passes, 1 lane: the
//! OWASP recommendation). Verification reads the algorithm and parameters from the stored
//! string, so hashes made with other argon2 parameters keep working.

use std::sync::LazyLock;

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{self, SaltString};
use argon2::{Argon2, PasswordHash, PasswordHasher, PasswordVerifier};

/// Hashing failed (in practice only for parameters argon2 refuses).
#[derive(Debug, thiserror::Error)]
#[error("could not hash the password: {0}")]
pub struct HashError(password_hash::Error);

/// Hashes `password` with the default parameters and a fresh random salt.
pub fn hash(password: &[u8]) -> Result<String, HashError> {
    hash_with(&Argon2::default(), password)
}

/// Hashes `password` with `argon2`'s parameters (tests use cheap ones).
pub fn hash_with(argon2: &Argon2<'_>, password: &[u8]) -> Result<String, HashError> {
    let salt = SaltString::generate(&mut OsRng);
    argon2
        .hash_password(password, &salt)
        .map(|hash| hash.to_string())
        .map_err(HashError)
}

/// Whether `text` is a PHC string of an argon2 hash; the reason when it is not.
pub fn check(text: &str) -> Result<(), String> {
    let hash = PasswordHash::new(text).map_err(|e| format!("not a PHC string: {e}"))?;
    match hash.algorithm.as_str() {
        "argon2id" | "argon2i" | "argon2d" => {}
        other => return Err(format!("algorithm `{other}` is not argon2")),
    }
    if hash.hash.is_none() {
        return Err("the PHC string has no hash".into());
    }
    Ok(())
}

/// Whether `password` matches the PHC string `stored` (false as well for an unreadable one).
pub fn verify(stored: &str, password: &[u8]) -> bool {
    PasswordHash::new(stored)
        .is_ok_and(|hash| Argon2::default().verify_password(password, &hash).is_ok())
}

/// Spends the time of one verification and throws the result away, so that an unknown user
/// name takes as long to refuse as a wrong password (no user enumeration by timing).
pub fn burn(password: &[u8]) {
    // The hash of a random password nobody knows, made with the default parameters.
    static DUMMY: LazyLock<Option<String>> = LazyLock::new(|| {
        let unknown = SaltString::generate(&mut OsRng);
        hash(unknown.as_str().as_bytes()).ok()
    });
    if let Some(dummy) = DUMMY.as_deref() {
        verify(dummy, password);
    }
}

#[cfg(test)]
pub(crate) fn cheap() -> Argon2<'static> {
    use argon2::{Algorithm, Params, Version};
    Argon2::new(
        Algorithm::Argon2id,
        Version::V0x13,
        Params::new(8, 1, 1, None).expect("valid parameters"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verifies_the_right_password_only() {
        let stored = hash_with(&cheap(), b"s3cret").unwrap();
        assert!(
            stored.starts_with("$argon2id$v=19$m=8,t=1,p=1$"),
            "{stored}"
        );
        assert!(check(&stored).is_ok());
        assert!(verify(&stored, b"s3cret"));
        assert!(!verify(&stored, b"s3cret "));
        assert!(!verify(&stored, b""));
    }

    #[test]
    fn salts_differ_between_hashes_of_one_password() {
        let argon2 = cheap();
        assert_ne!(
            hash_with(&argon2, b"same").unwrap(),
            hash_with(&argon2, b"same").unwrap()
        );
    }

    #[test]
    fn check_rejects_non_argon2_and_malformed_strings() {
        assert!(check("plaintext").is_err());
        assert!(check("$pbkdf2-sha512$i=1000$c2FsdA$aGFzaA").is_err());
        assert!(check("$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHQ").is_err());
        assert!(!verify("plaintext", b"plaintext"));
    }
}
