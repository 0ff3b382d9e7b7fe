//! Files, secrets and config maps: exist, parse, belong together.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use gatehouse_certs::{load_chain_and_key, read_certificates, LoadError};
use gatehouse_config::{Config, ConfigMapSource};

use super::{Preflight, Sink};
use crate::auth::files::pem_files;

/// A file read at start-up (JWKS, kubeconfig, service accounts, device registry): it
/// exists and is a file. What is in it is checked by building the method that reads it.
pub(super) fn file(path: &Path, what: &str, at: &str, sink: &mut Sink<'_>) {
    match std::fs::metadata(path) {
        Ok(meta) if meta.is_dir() => sink.error(
            at,
            format!("the {what} file {} is a folder", path.display()),
        ),
        Ok(_) => {}
        Err(e) if e.kind() == ErrorKind::NotFound => sink.error(
            at,
            format!("the {what} file {} does not exist", path.display()),
        ),
        Err(e) => sink.error(
            at,
            format!("the {what} file {} cannot be read: {e}", path.display()),
        ),
    }
}

/// Config map `name`, read as a CA bundle: every file exists and holds only valid PEM
/// certificates, and there is at least one. Returns whether it is usable.
pub(super) fn config_map(
    config: &Config,
    name: &str,
    role: &str,
    at: &str,
    sink: &mut Sink<'_>,
) -> bool {
    let before = sink.errors;
    let (files, origin) = match config.config_map(name) {
        ConfigMapSource::Files(files) => (files, format!("configMaps.{name}.files")),
        ConfigMapSource::Dir(dir) => match pem_files(&dir) {
            Ok(files) if files.is_empty() => {
                sink.error(
                    at,
                    format!(
                        "{role} config map `{name}`: no *.pem or *.crt file in {}; put the CA \
                         certificate(s) there",
                        dir.display()
                    ),
                );
                return false;
            }
            Ok(files) => (files, dir.display().to_string()),
            Err(e) => {
                let why = if e.kind() == ErrorKind::NotFound {
                    "does not exist".to_owned()
                } else {
                    format!("cannot be read: {e}")
                };
                sink.error(
                    at,
                    format!(
                        "{role} config map `{name}`: the folder {} {why}; create it with the CA \
                         certificate(s) as *.pem or *.crt files{}",
                        dir.display(),
                        if config.paths.manifest {
                            ""
                        } else {
                            " (or list files under configMaps)"
                        }
                    ),
                );
                return false;
            }
        },
    };
    let mut count = 0;
    for file in &files {
        match read_certificates(file) {
            Ok(certs) => count += certs.len(),
            Err(LoadError::NotFound { path }) => sink.error(
                at,
                format!(
                    "{role} config map `{name}`: {} does not exist ({origin})",
                    path.display()
                ),
            ),
            Err(e) => sink.error(at, format!("{role} config map `{name}`: {e}")),
        }
    }
    if sink.errors == before && count == 0 {
        sink.error(
            at,
            format!("{role} config map `{name}`: no certificate in {origin}"),
        );
    }
    sink.errors == before
}

/// A secret as a certificate chain and its key.
pub(super) enum Secret {
    Ready,
    /// A file is missing (named).
    Missing(PathBuf),
    /// The files are there but cannot be used (unparsable, key does not match, ...).
    Invalid(String),
}

pub(super) fn secret(config: &Config, name: &str) -> Secret {
    let files = config.secret(name);
    match load_chain_and_key(&files.cert_file, &files.key_file) {
        Ok(_) => Secret::Ready,
        Err(LoadError::NotFound { path }) => Secret::Missing(path),
        Err(e) => Secret::Invalid(e.to_string()),
    }
}

/// `; did you mean `x`?` when a known secret name is close to `name` (a typo in a
/// `secretRef`), else the known names, else nothing.
pub(super) fn suggest_secret(config: &Config, name: &str) -> String {
    let mut known: Vec<String> = config.secrets.keys().cloned().collect();
    known.extend(config.certificates.iter().map(|c| c.secret_name.clone()));
    for port in config.listeners.iter().flat_map(|l| &l.ports) {
        if let Some(gatehouse_config::Tls::Automatic(spec)) = &port.tls {
            known.push(spec.secret_name.clone());
        }
    }
    if let Ok(entries) = std::fs::read_dir(config.data_dir.join("secrets")) {
        known.extend(
            entries
                .filter_map(|e| e.ok())
                .filter(|e| e.path().is_dir())
                .filter_map(|e| e.file_name().to_str().map(str::to_owned)),
        );
    }
    known.sort();
    known.dedup();
    known.retain(|k| k != name);
    match known.iter().min_by_key(|k| distance(k, name)) {
        Some(close) if distance(close, name) <= 2.max(name.len() / 4) => {
            format!("; did you mean `{close}`?")
        }
        _ if known.is_empty() => String::new(),
        _ => format!("; known secrets: {}", known.join(", ")),
    }
}

/// Levenshtein distance (names are short).
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut previous = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitute = previous + usize::from(ca != *cb);
            previous = row[j + 1];
            row[j + 1] = substitute.min(row[j] + 1).min(previous + 1);
        }
    }
    row[b.len()]
}

/// The data folder: a folder, or a path where one can be created.
pub(super) fn data_dir(config: &Config, why: &str, report: &mut Preflight) {
    let dir = &config.data_dir;
    let at = config.paths.data_dir();
    match std::fs::metadata(dir) {
        Ok(meta) if !meta.is_dir() => {
            report.error(at, format!("{} is not a folder ({why})", dir.display()))
        }
        Ok(meta) if meta.permissions().readonly() => report.error(
            at,
            format!("the folder {} is read-only ({why})", dir.display()),
        ),
        Ok(_) => {}
        Err(_) => {
            // Created at start-up: the nearest existing ancestor must be a folder.
            let ancestor = dir.ancestors().skip(1).find(|a| a.exists());
            if let Some(ancestor) = ancestor.filter(|a| !a.as_os_str().is_empty()) {
                if !ancestor.is_dir() {
                    report.error(
                        at,
                        format!(
                            "{} cannot be created: {} is not a folder ({why})",
                            dir.display(),
                            ancestor.display()
                        ),
                    );
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::distance;

    #[test]
    fn edit_distance() {
        assert_eq!(distance("server-cert", "server-cert"), 0);
        assert_eq!(distance("server-cret", "server-cert"), 2);
        assert_eq!(distance("sever-cert", "server-cert"), 1);
        assert_eq!(distance("", "abc"), 3);
    }
}
