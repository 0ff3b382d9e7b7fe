//! The quickstart root CA behind the default issuer
//! (`azure-iot-operations-aio-certificate-issuer`): created on first start, kept across
//! restarts, rotated before it expires.
//!
//! # On disk
//! `<dataDir>/ca/` (mode 0700) holds one `<serial>.crt` per root still valid, and
//! `<serial>.key` (mode 0600) for the current one only. The folder is the whole state, so
//! a crash at any point leaves something [`QuickstartCa::ensure`] understands: a new key
//! without its certificate is ignored, and of several roots with keys the one that
//! expires last is current.
//!
//! # Rotation
//! Once the current root is within `renew_before` of its expiry, a new root is made and
//! issues from then on. The old root stays in the trust bundle, and certificates it signed
//! are kept until their own renewal, so clients have until the old root expires to pick
//! up the new bundle. An expired root is deleted.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use gatehouse_config::{PrivateKeyAlgorithm, SecretFiles};
use rustls_pki_types::CertificateDer;

use crate::authority::{Authority, AuthorityError};
use crate::fs::{write_atomic, Access};
use crate::issue::{issue_self_signed, CertRequest, IssueError, Usage};
use crate::keys::{Key, KeyError};
use crate::load::{self, LoadError};
use crate::renewal;
use crate::x509::{self, CertInfo};

pub const QUICKSTART_ORGANIZATION: &str = "Gatehouse";
pub const QUICKSTART_COMMON_NAME: &str = "Gatehouse Quickstart Root CA - Not for Production";

const DAY: Duration = Duration::from_secs(24 * 3600);

/// Lifetime and rotation of quickstart roots; tests shorten them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuickstartOptions {
    /// Default 10 years: a development root that outlives most installations.
    pub validity: Duration,
    /// Default one year: the overlap during which old and new roots are both trusted.
    pub renew_before: Duration,
    /// Default `Ec256`: small, fast, and accepted by every MQTT client library.
    pub algorithm: PrivateKeyAlgorithm,
}

impl Default for QuickstartOptions {
    fn default() -> Self {
        QuickstartOptions {
            validity: DAY * 3650,
            renew_before: DAY * 365,
            algorithm: PrivateKeyAlgorithm::Ec256,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum QuickstartError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("quickstart CA: {0}")]
    Load(#[from] LoadError),
    #[error("quickstart CA: {0}")]
    Authority(#[from] AuthorityError),
    #[error("quickstart CA: {0}")]
    Key(#[from] KeyError),
    #[error("quickstart CA: {0}")]
    Issue(#[from] IssueError),
}

/// The current quickstart root with its key, and the older roots still trusted.
#[derive(Debug)]
pub struct QuickstartCa {
    current: Authority,
    /// Rotated-out roots, not expired yet (public part only).
    retired: Vec<CertificateDer<'static>>,
    renew_before: Duration,
}

struct Stored {
    cert_file: PathBuf,
    key_file: PathBuf,
    cert: CertificateDer<'static>,
    info: CertInfo,
}

impl QuickstartCa {
    /// `<dataDir>/ca`.
    pub fn dir(data_dir: &Path) -> PathBuf {
        data_dir.join("ca")
    }

    /// Loads the quickstart CA from `<dataDir>/ca`, creating it on first start and rotating
    /// it when due at `now`. Calling it again at [`renewal_time`](Self::renewal_time) is how
    /// rotation happens in a running broker.
    pub fn ensure(
        data_dir: &Path,
        options: &QuickstartOptions,
        now: SystemTime,
    ) -> Result<QuickstartCa, QuickstartError> {
        let dir = QuickstartCa::dir(data_dir);
        create_private_dir(&dir)?;
        let stored = read_stored(&dir)?;
        // Expired roots sign nothing anyone accepts; drop them.
        let (expired, mut valid): (Vec<_>, Vec<_>) =
            stored.into_iter().partition(|s| s.info.not_after <= now);
        for old in expired {
            tracing::info!(target: "tls", serial = %old.info.serial, "removing expired quickstart root CA");
            remove_if_present(&old.cert_file)?;
            remove_if_present(&old.key_file)?;
        }
        valid.sort_by_key(|s| s.info.not_after);
        let current_index = valid.iter().rposition(|s| s.key_file.exists());
        let (current, current_key) = match current_index {
            Some(i)
                if !renewal::is_due(
                    valid[i].info.not_before,
                    valid[i].info.not_after,
                    options.renew_before,
                    now,
                ) =>
            {
                let s = valid.remove(i);
                let files = SecretFiles {
                    cert_file: s.cert_file,
                    key_file: s.key_file,
                    ca_file: None,
                };
                (Authority::from_files(&files)?, files.key_file)
            }
            due => {
                if let Some(i) = due {
                    tracing::info!(
                        target: "tls",
                        serial = %valid[i].info.serial,
                        "quickstart root CA is due for rotation; creating a new one"
                    );
                } else {
                    tracing::info!(target: "tls", dir = %dir.display(), "creating the quickstart root CA");
                }
                create(&dir, options, now)?
            }
        };
        // Only the current root signs: older keys, and a key left without its certificate
        // by a crash, are not needed any more.
        remove_keys_except(&dir, &current_key)?;
        Ok(QuickstartCa {
            current,
            retired: valid.into_iter().rev().map(|s| s.cert).collect(),
            renew_before: options.renew_before,
        })
    }

    /// The root that issues.
    pub fn authority(&self) -> &Authority {
        &self.current
    }

    /// Older roots still valid, newest first.
    pub fn retired(&self) -> &[CertificateDer<'static>] {
        &self.retired
    }

    /// Every root clients should trust: the current one first.
    pub fn roots(&self) -> impl Iterator<Item = &CertificateDer<'static>> {
        std::iter::once(self.current.root()).chain(&self.retired)
    }

    /// When [`ensure`](Self::ensure) should run again to rotate.
    pub fn renewal_time(&self) -> SystemTime {
        let info = self.current.info();
        renewal::renewal_time(info.not_before, info.not_after, self.renew_before)
    }

    /// Signed by the current root or a retired one still valid, so a rotation does not
    /// force every certificate to be reissued at once.
    pub(crate) fn has_signed(&self, cert: &CertificateDer<'_>) -> bool {
        self.current.has_signed(cert)
            || self
                .retired
                .iter()
                .any(|root| x509::is_issued_by(cert, root))
    }
}

/// Every `*.crt` in the folder, with the path its key would have.
fn read_stored(dir: &Path) -> Result<Vec<Stored>, QuickstartError> {
    let mut stored = Vec::new();
    for entry in fs::read_dir(dir).map_err(io_err(dir))? {
        let path = entry.map_err(io_err(dir))?.path();
        if path.extension().is_some_and(|e| e == "crt") {
            let cert = load::read_certificates(&path)?.swap_remove(0);
            let info = CertInfo::from_der(&cert).map_err(|source| AuthorityError::Certificate {
                origin: path.clone(),
                source,
            })?;
            stored.push(Stored {
                key_file: path.with_extension("key"),
                cert_file: path,
                cert,
                info,
            });
        }
    }
    Ok(stored)
}

fn remove_keys_except(dir: &Path, keep: &Path) -> Result<(), QuickstartError> {
    for entry in fs::read_dir(dir).map_err(io_err(dir))? {
        let path = entry.map_err(io_err(dir))?.path();
        if path.extension().is_some_and(|e| e == "key") && path != keep {
            remove_if_present(&path)?;
        }
    }
    Ok(())
}

fn create(
    dir: &Path,
    options: &QuickstartOptions,
    now: SystemTime,
) -> Result<(Authority, PathBuf), QuickstartError> {
    let request = CertRequest {
        usage: Usage::Ca,
        common_name: Some(QUICKSTART_COMMON_NAME.into()),
        organization: Some(QUICKSTART_ORGANIZATION.into()),
        dns_names: Vec::new(),
        ip_addresses: Vec::new(),
        duration: options.validity,
    };
    let issued = issue_self_signed(&request, Key::generate(options.algorithm)?, now)?;
    let key_file = dir.join(format!("{}.key", issued.serial()));
    let cert_file = dir.join(format!("{}.crt", issued.serial()));
    // Key first: a certificate without its key would look like a retired root.
    write_atomic(&key_file, issued.key_pem().as_bytes(), Access::Private)
        .map_err(io_err(&key_file))?;
    write_atomic(&cert_file, issued.cert_pem().as_bytes(), Access::Public)
        .map_err(io_err(&cert_file))?;
    Ok((Authority::from_issued(issued)?, key_file))
}

fn create_private_dir(dir: &Path) -> Result<(), QuickstartError> {
    fs::create_dir_all(dir).map_err(io_err(dir))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(io_err(dir))?;
    }
    Ok(())
}

fn remove_if_present(path: &Path) -> Result<(), QuickstartError> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(io_err(path)(e)),
        _ => Ok(()),
    }
}

fn io_err(path: &Path) -> impl Fn(io::Error) -> QuickstartError + '_ {
    move |source| QuickstartError::Io {
        path: path.to_owned(),
        source,
    }
}
