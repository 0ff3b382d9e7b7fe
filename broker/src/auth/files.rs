//! Files the authentication methods read: the certificates of a config map (X.509's
//! trusted client CAs, Custom's server CAs) and file stamps to notice a rotated secret.

use std::path::{Path, PathBuf};

use gatehouse_certs::{read_certificates, LoadError};
use gatehouse_config::{Config, ConfigMapSource};
use rustls::pki_types::CertificateDer;

/// Why a config map gave no certificates. The caller names the config map and its role.
#[derive(Debug, thiserror::Error)]
pub enum ConfigMapError {
    #[error(transparent)]
    Load(LoadError),
    #[error("no certificate in {}", .0.display())]
    Empty(PathBuf),
    #[error("cannot read folder {}: {source}", .path.display())]
    Folder {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Every certificate of config map `name` (explicit files, or `*.pem` / `*.crt` in its
/// folder); at least one.
pub(super) fn read_config_map(
    config: &Config,
    name: &str,
) -> Result<Vec<CertificateDer<'static>>, ConfigMapError> {
    let files = match config.config_map(name) {
        ConfigMapSource::Files(files) => files,
        ConfigMapSource::Dir(dir) => {
            pem_files(&dir).map_err(|source| ConfigMapError::Folder { path: dir, source })?
        }
    };
    let mut certs = Vec::new();
    for file in &files {
        certs.extend(read_certificates(file).map_err(ConfigMapError::Load)?);
    }
    if certs.is_empty() {
        return Err(ConfigMapError::Empty(
            files.first().cloned().unwrap_or_default(),
        ));
    }
    Ok(certs)
}

/// The files config map `name` is read from, as [`read_config_map`] would find them now
/// (for a folder: the folder itself, then its `*.pem` / `*.crt` files).
pub(crate) fn config_map_paths(config: &Config, name: &str) -> Vec<PathBuf> {
    match config.config_map(name) {
        ConfigMapSource::Files(files) => files,
        ConfigMapSource::Dir(dir) => {
            let mut paths = pem_files(&dir).unwrap_or_default();
            paths.insert(0, dir);
            paths
        }
    }
}

#[allow(
    clippy::disallowed_methods,
    reason = "runs when an authentication chain is built (start-up, reload), never per connection"
)]
pub(crate) fn pem_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "pem" || x == "crt"))
        .collect();
    files.sort();
    Ok(files)
}

pub(super) use crate::file_stamp::{stamp, Stamp};
