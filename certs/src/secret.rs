//! Secrets as folders: writing an issued certificate where a Kubernetes secret would be
//! mounted (`tls.crt`, `tls.key`, `ca.crt`), and reading it back.

use std::io;
use std::path::PathBuf;

use gatehouse_config::SecretFiles;

use crate::fs::{write_atomic, Access};
use crate::issue::Issued;
use crate::load::{self, LoadError, LoadedCert};

#[derive(Debug, thiserror::Error)]
#[error("writing {}: {source}", path.display())]
pub struct SecretWriteError {
    pub path: PathBuf,
    #[source]
    pub source: io::Error,
}

/// Writes `issued` to the secret's files, each atomically: `ca.crt` (when the secret has
/// one), then `tls.key` (mode 0600), then `tls.crt` last.
///
/// Two files cannot change in one step, so a reader may briefly see the new key with the
/// old chain and get a key-mismatch error; writing the chain last makes its change the
/// signal that the secret is complete, and a reader that reloads on that change sees a
/// consistent pair.
pub fn write_secret(files: &SecretFiles, issued: &Issued) -> Result<(), SecretWriteError> {
    let write = |path: &PathBuf, text: String, access| {
        write_atomic(path, text.as_bytes(), access).map_err(|source| SecretWriteError {
            path: path.clone(),
            source,
        })
    };
    if let Some(ca_file) = &files.ca_file {
        write(ca_file, issued.ca_pem(), Access::Public)?;
    }
    write(&files.key_file, issued.key_pem(), Access::Private)?;
    write(&files.cert_file, issued.chain_pem(), Access::Public)
}

/// Reads a secret's chain and key, as a Manual TLS port or a renewal check needs them.
pub fn read_secret(files: &SecretFiles) -> Result<LoadedCert, LoadError> {
    load::load_chain_and_key(&files.cert_file, &files.key_file)
}
