//! The users file: who may connect, with which password, attributes and credential lifetime.
//!
//! ```yaml
//! users:
//!   client1:
//!     passwordHash: "$argon2id$v=19$m=19456,t=2,p=1$..."   # add-user writes it
//!     attributes: { floor: floor1, site: site1 }           # optional
//!     credentialLifetime: 1h                               # optional (Go syntax)
//! ```
//!
//! A file whose name ends in `.json` is JSON of the same shape; any other is YAML. The file
//! is read into [`UsersFile`] (the text as written, which `add-user` edits) and compiled
//! into [`Users`] (checked: every hash an argon2 PHC string, every lifetime a positive
//! duration), collecting every problem with its path before refusing the file.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::password;

/// Why a users file could not be read, used or written.
#[derive(Debug, thiserror::Error)]
pub enum UsersError {
    #[error("cannot read users file {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("users file {path}: {message}")]
    Syntax { path: PathBuf, message: String },
    #[error("users file {path}:\n  {}", problems.join("\n  "))]
    Invalid {
        path: PathBuf,
        problems: Vec<String>,
    },
    #[error("cannot write users file {path}: {source}")]
    Write { path: PathBuf, source: io::Error },
    #[error("cannot encode users file {path}: {message}")]
    Encode { path: PathBuf, message: String },
}

/// How the file is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Yaml,
    Json,
}

impl Format {
    /// JSON for `*.json`, YAML otherwise.
    pub fn of(path: &Path) -> Format {
        match path.extension().and_then(|e| e.to_str()) {
            Some(ext) if ext.eq_ignore_ascii_case("json") => Format::Json,
            _ => Format::Yaml,
        }
    }
}

/// The file as written.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct UsersFile {
    #[serde(default)]
    pub users: BTreeMap<String, UserEntry>,
}

/// One user as written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct UserEntry {
    /// Argon2 PHC string; never the password itself.
    pub password_hash: String,
    /// Returned to the broker on a pass, where authorization rules can match them.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub attributes: BTreeMap<String, String>,
    /// How long a credential is good for after CONNECT (the pass's `expiry`); none = forever.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential_lifetime: Option<String>,
}

/// One user, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// A valid argon2 PHC string.
    pub password_hash: String,
    pub attributes: BTreeMap<String, String>,
    /// Positive when present.
    pub lifetime: Option<Duration>,
}

/// Every user, checked, by name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Users {
    by_name: HashMap<String, User>,
}

impl Users {
    /// Reads and checks the file at `path`.
    pub fn load(path: &Path) -> Result<Users, UsersError> {
        UsersFile::read(path)?
            .compile()
            .map_err(|problems| UsersError::Invalid {
                path: path.to_owned(),
                problems,
            })
    }

    pub fn get(&self, name: &str) -> Option<&User> {
        self.by_name.get(name)
    }

    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }
}

impl UsersFile {
    /// Parses `text`; an empty (or only whitespace) text has no users.
    pub fn parse(text: &str, format: Format) -> Result<UsersFile, String> {
        if text.trim().is_empty() {
            return Ok(UsersFile::default());
        }
        match format {
            Format::Yaml => serde_norway::from_str(text).map_err(|e| e.to_string()),
            Format::Json => serde_json::from_str(text).map_err(|e| e.to_string()),
        }
    }

    /// Reads and parses the file at `path` (not checked: see [`compile`](Self::compile)).
    #[allow(
        clippy::disallowed_methods,
        reason = "at start-up, in spawn_blocking (UserStore::current) and in the add-user command"
    )]
    pub fn read(path: &Path) -> Result<UsersFile, UsersError> {
        let text = fs::read_to_string(path).map_err(|source| UsersError::Read {
            path: path.to_owned(),
            source,
        })?;
        UsersFile::parse(&text, Format::of(path)).map_err(|message| UsersError::Syntax {
            path: path.to_owned(),
            message,
        })
    }

    /// Checks every entry; all problems are reported, each with its path in the file.
    pub fn compile(&self) -> Result<Users, Vec<String>> {
        let mut problems = Vec::new();
        let mut by_name = HashMap::with_capacity(self.users.len());
        for (name, entry) in &self.users {
            let at = format!("users.{name}");
            let before = problems.len();
            if name.is_empty() {
                problems.push("users: a user name is empty".to_owned());
            }
            if let Err(reason) = password::check(&entry.password_hash) {
                problems.push(format!("{at}.passwordHash: {reason}"));
            }
            if entry.attributes.keys().any(String::is_empty) {
                problems.push(format!("{at}.attributes: an attribute name is empty"));
            }
            let lifetime = match entry.credential_lifetime.as_deref().map(parse_lifetime) {
                None => None,
                Some(Ok(lifetime)) => Some(lifetime),
                Some(Err(reason)) => {
                    problems.push(format!("{at}.credentialLifetime: {reason}"));
                    None
                }
            };
            if problems.len() == before {
                by_name.insert(
                    name.clone(),
                    User {
                        password_hash: entry.password_hash.clone(),
                        attributes: entry.attributes.clone(),
                        lifetime,
                    },
                );
            }
        }
        if problems.is_empty() {
            Ok(Users { by_name })
        } else {
            Err(problems)
        }
    }

    /// The text of the file in `format`.
    pub fn to_text(&self, format: Format) -> Result<String, String> {
        match format {
            Format::Yaml => serde_norway::to_string(self).map_err(|e| e.to_string()),
            Format::Json => serde_json::to_string_pretty(self)
                .map(|text| text + "\n")
                .map_err(|e| e.to_string()),
        }
    }

    /// Replaces the file at `path` atomically (a temporary file beside it, then a rename),
    /// so a server reading it sees the old or the new users, never half a file. A new file is
    /// readable by its owner only (it holds password hashes); an existing one keeps its mode.
    #[allow(
        clippy::disallowed_methods,
        reason = "the add-user command (synchronous)"
    )]
    pub fn write(&self, path: &Path) -> Result<(), UsersError> {
        let text = self
            .to_text(Format::of(path))
            .map_err(|message| UsersError::Encode {
                path: path.to_owned(),
                message,
            })?;
        let failed = |source| UsersError::Write {
            path: path.to_owned(),
            source,
        };
        let name = path.file_name().ok_or_else(|| {
            failed(io::Error::new(
                io::ErrorKind::InvalidInput,
                "the path has no file name",
            ))
        })?;
        let mut temporary_name = std::ffi::OsString::from(".");
        temporary_name.push(name);
        temporary_name.push(".tmp");
        let temporary = path.with_file_name(temporary_name);

        let result = (|| {
            let mut file = private_file(&temporary)?;
            if let Ok(existing) = fs::metadata(path) {
                file.set_permissions(existing.permissions())?;
            }
            file.write_all(text.as_bytes())?;
            file.sync_all()?;
            fs::rename(&temporary, path)
        })();
        if result.is_err() {
            let _ = fs::remove_file(&temporary);
        }
        result.map_err(failed)
    }
}

/// A credential lifetime: a positive Go-syntax duration (`1h`, `90m`, `1h30m`), the syntax
/// of every duration in Gatehouse's own configuration.
pub fn parse_lifetime(text: &str) -> Result<Duration, String> {
    match gatehouse_config::duration::parse(text) {
        Ok(Duration::ZERO) => Err("must be longer than zero".into()),
        Ok(lifetime) => Ok(lifetime),
        Err(e) => Err(e.to_string()),
    }
}

#[cfg(unix)]
#[allow(
    clippy::disallowed_methods,
    reason = "the add-user command (synchronous)"
)]
fn private_file(path: &Path) -> io::Result<fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
}

#[cfg(not(unix))]
#[allow(
    clippy::disallowed_methods,
    reason = "the add-user command (synchronous)"
)]
fn private_file(path: &Path) -> io::Result<fs::File> {
    fs::File::create(path)
}

#[cfg(test)]
#[allow(
    clippy::disallowed_methods,
    reason = "tests write their fixtures synchronously"
)]
mod tests {
    use super::*;

    fn phc() -> String {
        password::hash_with(&password::cheap(), b"pw").unwrap()
    }

    #[test]
    fn reads_yaml_and_json_of_the_same_shape() {
        let hash = phc();
        let yaml = format!(
            "users:\n  client1:\n    passwordHash: '{hash}'\n    attributes: {{ floor: floor1 }}\n    credentialLifetime: 1h30m\n"
        );
        let json = format!(
            r#"{{"users":{{"client1":{{"passwordHash":"{hash}","attributes":{{"floor":"floor1"}},"credentialLifetime":"1h30m"}}}}}}"#
        );
        let from_yaml = UsersFile::parse(&yaml, Format::Yaml).unwrap();
        assert_eq!(from_yaml, UsersFile::parse(&json, Format::Json).unwrap());
        let users = from_yaml.compile().unwrap();
        let user = users.get("client1").unwrap();
        assert_eq!(user.attributes["floor"], "floor1");
        assert_eq!(user.lifetime, Some(Duration::from_secs(5400)));
    }

    #[test]
    fn an_empty_file_has_no_users() {
        assert!(UsersFile::parse("", Format::Yaml)
            .unwrap()
            .compile()
            .unwrap()
            .is_empty());
        assert!(UsersFile::parse("users: {}\n", Format::Yaml)
            .unwrap()
            .compile()
            .unwrap()
            .is_empty());
    }

    #[test]
    fn rejects_unknown_fields() {
        let error =
            UsersFile::parse("users:\n  a:\n    password: plain\n", Format::Yaml).unwrap_err();
        assert!(error.contains("unknown field `password`"), "{error}");
    }

    #[test]
    fn collects_every_problem_with_its_path() {
        let text = format!(
            "users:\n  a:\n    passwordHash: plain\n  b:\n    passwordHash: '{}'\n    credentialLifetime: 0s\n  c:\n    passwordHash: '{}'\n    credentialLifetime: soon\n",
            phc(),
            phc()
        );
        let problems = UsersFile::parse(&text, Format::Yaml)
            .unwrap()
            .compile()
            .unwrap_err();
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(problems[0].starts_with("users.a.passwordHash: "));
        assert!(problems[1].starts_with("users.b.credentialLifetime: must be longer"));
        assert!(problems[2].starts_with("users.c.credentialLifetime: invalid duration"));
    }

    #[test]
    fn writes_atomically_and_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["users.yaml", "users.json"] {
            let path = dir.path().join(name);
            let mut file = UsersFile::default();
            file.users.insert(
                "client1".into(),
                UserEntry {
                    password_hash: phc(),
                    attributes: BTreeMap::from([("floor".into(), "floor1".into())]),
                    credential_lifetime: Some("1h".into()),
                },
            );
            file.write(&path).unwrap();
            assert_eq!(UsersFile::read(&path).unwrap(), file);
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                let mode = fs::metadata(&path).unwrap().permissions().mode();
                assert_eq!(mode & 0o777, 0o600);
            }
        }
        let left: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(left.len(), 2, "no temporary file is left behind");
    }
}
