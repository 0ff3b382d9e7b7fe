//! Secrets and config maps: AIO names that Gatehouse resolves to files.
//!
//! A secret `NAME` is `<dataDir>/secrets/NAME/` (`tls.crt`, `tls.key`, optional `ca.crt`),
//! a config map `NAME` is `<dataDir>/configmaps/NAME/` (every `*.pem` / `*.crt` in it),
//! exactly as Kubernetes would mount them, unless `secrets:` / `configMaps:` give explicit
//! files. Names are validated as RFC 1123 labels, so they can never leave those folders.

use std::path::PathBuf;

use serde::Deserialize;

use super::Config;

/// Explicit files of a secret (`secrets: { NAME: {...} }`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SecretFiles {
    /// PEM chain, leaf first.
    pub cert_file: PathBuf,
    /// PEM private key (PKCS#8, SEC1 or PKCS#1).
    pub key_file: PathBuf,
    /// Optional CA certificate(s).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
}

/// Explicit files of a config map (`configMaps: { NAME: { files: [...] } }`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ConfigMapFiles {
    /// PEM files; for CA bundles every certificate in every file is trusted.
    pub files: Vec<PathBuf>,
}

/// Where a config map's files are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigMapSource {
    /// Listed explicitly in `configMaps:`.
    Files(Vec<PathBuf>),
    /// `<dataDir>/configmaps/NAME/`: every `*.pem` and `*.crt` file in it.
    Dir(PathBuf),
}

impl Config {
    /// The files of secret `name`: the explicit `secrets:` entry, or
    /// `<dataDir>/secrets/<name>/{tls.crt,tls.key,ca.crt}` (which may not exist yet;
    /// `ca.crt` is optional there).
    pub fn secret(&self, name: &str) -> SecretFiles {
        if let Some(files) = self.secrets.get(name) {
            return files.clone();
        }
        let dir = self.data_dir.join("secrets").join(name);
        SecretFiles {
            cert_file: dir.join("tls.crt"),
            key_file: dir.join("tls.key"),
            ca_file: Some(dir.join("ca.crt")),
        }
    }

    /// Where config map `name` is: the explicit `configMaps:` entry, or
    /// `<dataDir>/configmaps/<name>/`.
    pub fn config_map(&self, name: &str) -> ConfigMapSource {
        match self.config_maps.get(name) {
            Some(files) => ConfigMapSource::Files(files.files.clone()),
            None => ConfigMapSource::Dir(self.data_dir.join("configmaps").join(name)),
        }
    }
}
