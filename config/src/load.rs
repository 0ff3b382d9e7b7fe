//! Loading: read the text, detect the form, build the model, validate, resolve paths.

use std::path::{Component, Path, PathBuf};

use serde_norway::Value;

use crate::error::{ConfigError, Problem};
use crate::manifest;
use crate::model::{AuthenticationMethod, Config};
use crate::raw::NativeDoc;
use crate::validate::{self, Origins};
use crate::yaml;

/// A valid configuration and the warnings found while loading it (`<path>: <message>`),
/// which the broker logs at start-up.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub config: Config,
    pub warnings: Vec<String>,
}

/// Loads and validates a configuration file (either form).
///
/// Relative paths in it (`dataDir`, secret and config map files, kubeconfig, JWKS, service
/// account and device registry files) are relative to the file's folder, as in kubeconfig
/// files, so the broker behaves the same whatever its working directory; `~/` is the home
/// folder.
pub fn load_file(path: &Path) -> Result<Loaded, ConfigError> {
    check_file(path)?.into_loaded()
}

/// Loads and validates configuration text (either form). `origin` names it in syntax errors
/// (usually the file name). Relative paths are kept as written (relative to the working
/// directory); `~/` is the home folder.
pub fn load_str(yaml: &str, origin: &str) -> Result<Loaded, ConfigError> {
    let mut checked = read(yaml, origin)?;
    resolve_paths(&mut checked.config, &|p| p.to_owned());
    checked.into_loaded()
}

/// A configuration as far as it could be read, with every problem validation found: what
/// `gatehouse check` needs to go on and check the files of what was read (issue 16: every
/// problem at once). Not for running: with problems, the configuration is incomplete or
/// inconsistent.
#[derive(Debug, Clone)]
pub struct Checked {
    pub config: Config,
    /// Validation problems; none = valid.
    pub problems: Vec<Problem>,
    pub warnings: Vec<String>,
}

impl Checked {
    /// [`Loaded`] when there is no problem, else [`ConfigError::Invalid`].
    pub fn into_loaded(self) -> Result<Loaded, ConfigError> {
        if !self.problems.is_empty() {
            return Err(ConfigError::Invalid(self.problems));
        }
        Ok(Loaded {
            config: self.config,
            warnings: self.warnings,
        })
    }
}

/// [`load_file`] that returns the configuration also when validation finds problems. Fails
/// only when nothing can be checked: the file cannot be read, the YAML is not well-formed,
/// or (native form) the document does not deserialize.
pub fn check_file(path: &Path) -> Result<Checked, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
        path: path.to_owned(),
        source,
    })?;
    let mut checked = read(&text, &path.display().to_string())?;
    let base = path.parent().unwrap_or(Path::new(""));
    resolve_paths(&mut checked.config, &|p| relative_to(base, p));
    Ok(checked)
}

/// Reads and validates (paths not resolved).
fn read(yaml: &str, origin: &str) -> Result<Checked, ConfigError> {
    let documents = yaml::documents(yaml, origin)?;
    let (mut config, origins, built_problems, mut warnings) =
        if manifest::is_manifest_stream(&documents) {
            // A document that does not deserialize is reported with the rest: validation
            // still checks the others (references to the unreadable ones are not reported
            // as missing, see `Paths::unreadable`).
            let built = manifest::build(yaml, &documents);
            let mut problems = built.type_errors;
            problems.extend(built.problems);
            (built.config, built.origins, problems, built.warnings)
        } else {
            let (config, origins, problems) = native(yaml, &documents)?;
            (config, origins, problems, Vec::new())
        };
    config.paths = origins;

    let report = validate::validate(&config, &config.paths);
    warnings.extend(report.warnings);
    let mut problems = built_problems;
    problems.extend(report.problems);
    Ok(Checked {
        config,
        problems,
        warnings: warnings.iter().map(ToString::to_string).collect(),
    })
}

/// The native form: one mapping (or nothing at all, which then fails validation for want
/// of a listener).
fn native(text: &str, documents: &[Value]) -> Result<(Config, Origins, Vec<Problem>), ConfigError> {
    let invalid =
        |path: &str, message: String| ConfigError::Invalid(vec![Problem::new(path, message)]);
    if documents.len() > 1 {
        return Err(invalid(
            "document 2",
            format!(
                "the native form is one YAML document, found {}; in a manifest stream every \
                 document needs `apiVersion` and `kind`",
                documents.len()
            ),
        ));
    }
    let doc: NativeDoc = match documents.first() {
        None | Some(Value::Null) => {
            serde_norway::from_str("{}").map_err(|err| invalid(".", err.to_string()))?
        }
        Some(Value::Mapping(_)) => {
            let document = serde_norway::Deserializer::from_str(text)
                .next()
                .ok_or_else(|| invalid(".", "the document disappeared on second reading".into()))?;
            yaml::typed(document, "").map_err(|problem| ConfigError::Invalid(vec![problem]))?
        }
        Some(_) => {
            return Err(invalid(
                ".",
                "the configuration must be a mapping (dataDir, listeners, authentications, ...) \
                 or a stream of Kubernetes manifests"
                    .into(),
            ))
        }
    };
    Ok(doc.build())
}

/// `~/x` → `$HOME/x`, then `fix` for the rest.
fn resolve_paths(config: &mut Config, fix: &dyn Fn(&Path) -> PathBuf) {
    let resolve = |path: &mut PathBuf| {
        let expanded = expand_home(path);
        *path = if expanded.is_absolute() {
            expanded
        } else {
            fix(&expanded)
        };
    };
    resolve(&mut config.data_dir);
    if let Some(nats) = config.cluster.as_mut().map(|c| &mut c.nats) {
        nats.credentials_file.iter_mut().for_each(resolve);
        if let Some(tls) = &mut nats.tls {
            for path in [&mut tls.ca_file, &mut tls.cert_file, &mut tls.key_file] {
                path.iter_mut().for_each(resolve);
            }
        }
    }
    for files in config.secrets.values_mut() {
        resolve(&mut files.cert_file);
        resolve(&mut files.key_file);
        if let Some(ca) = &mut files.ca_file {
            resolve(ca);
        }
    }
    for files in config.config_maps.values_mut() {
        files.files.iter_mut().for_each(resolve);
    }
    for authentication in &mut config.authentications {
        for method in &mut authentication.authentication_methods {
            match method {
                AuthenticationMethod::ServiceAccountToken(sat) => {
                    if let Some(path) = sat
                        .token_review
                        .as_mut()
                        .and_then(|t| t.kubeconfig.as_mut())
                    {
                        resolve(path);
                    }
                    if let Some(path) = sat.jwks.as_mut().and_then(|j| j.file.as_mut()) {
                        resolve(path);
                    }
                    if let Some(accounts) = &mut sat.service_accounts {
                        resolve(&mut accounts.file);
                    }
                }
                AuthenticationMethod::X509(x509) => {
                    if let Some(registry) = &mut x509.device_registry {
                        resolve(&mut registry.file);
                    }
                }
                AuthenticationMethod::Custom(_) => {}
                AuthenticationMethod::Password(password) => resolve(&mut password.password_file),
            }
        }
    }
}

fn expand_home(path: &Path) -> PathBuf {
    match (path.strip_prefix("~"), std::env::var_os("HOME")) {
        (Ok(rest), Some(home)) => PathBuf::from(home).join(rest),
        _ => path.to_owned(),
    }
}

/// `base/path` without `.` components (`./data` in `/etc/gatehouse` → `/etc/gatehouse/data`).
fn relative_to(base: &Path, path: &Path) -> PathBuf {
    let mut out = base.to_path_buf();
    out.extend(path.components().filter(|c| *c != Component::CurDir));
    if out.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths_join_the_config_folder() {
        let base = Path::new("/etc/gatehouse");
        assert_eq!(
            relative_to(base, Path::new("./data")),
            PathBuf::from("/etc/gatehouse/data")
        );
        assert_eq!(
            relative_to(base, Path::new("certs/a.pem")),
            PathBuf::from("/etc/gatehouse/certs/a.pem")
        );
        assert_eq!(
            relative_to(Path::new(""), Path::new("./data")),
            PathBuf::from("data")
        );
        assert_eq!(
            relative_to(Path::new(""), Path::new(".")),
            PathBuf::from(".")
        );
    }

    #[test]
    fn tilde_is_the_home_folder() {
        if let Some(home) = std::env::var_os("HOME") {
            assert_eq!(
                expand_home(Path::new("~/.kube/config")),
                PathBuf::from(home).join(".kube/config")
            );
        }
        assert_eq!(expand_home(Path::new("~user/x")), PathBuf::from("~user/x"));
    }
}
