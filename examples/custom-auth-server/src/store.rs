//! The users file as the server sees it: loaded at start, reloaded when it changes.
//!
//! Every request first `stat`s the file (modification time, length, inode) and reloads it
//! when any of them changed, so a user added with `add-user` (or an edit by hand) counts
//! from the next request on, with no restart and no background task. A stat is far cheaper
//! than the argon2 verification that follows it.
//!
//! A file that fails to load (bad syntax, an invalid entry) or disappears keeps the last good
//! users: an edit in progress never locks everyone out, and the error is logged once per
//! change. At start, though, the file must load, so a wrong path or a broken file stops the
//! server instead of running it with nobody able to connect.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

use tracing::{error, info, warn};

use crate::users::{Users, UsersError};

/// What tells one version of the file from another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    modified: Option<SystemTime>,
    len: u64,
    /// A rename over the file (how `add-user` writes) always changes it.
    inode: u64,
}

impl Stamp {
    /// The file's stamp; `None` when it cannot be read (e.g. it is gone).
    #[allow(
        clippy::disallowed_methods,
        reason = "called at start-up and from UserStore::current, which runs in spawn_blocking"
    )]
    fn of(path: &Path) -> Option<Stamp> {
        let metadata = std::fs::metadata(path).ok()?;
        #[cfg(unix)]
        let inode = std::os::unix::fs::MetadataExt::ino(&metadata);
        #[cfg(not(unix))]
        let inode = 0;
        Some(Stamp {
            modified: metadata.modified().ok(),
            len: metadata.len(),
            inode,
        })
    }
}

/// The users file at a path and its last good contents.
#[derive(Debug)]
pub struct UserStore {
    path: PathBuf,
    /// Held while a reload runs, so concurrent requests reload a change only once.
    loaded: Mutex<Loaded>,
}

#[derive(Debug)]
struct Loaded {
    /// The version of the file last looked at (loaded or not).
    stamp: Option<Stamp>,
    /// The last users that loaded.
    users: Arc<Users>,
}

impl UserStore {
    /// Loads the file at `path`; fails if it cannot be loaded now.
    pub fn open(path: &Path) -> Result<UserStore, UsersError> {
        let stamp = Stamp::of(path);
        let users = Users::load(path)?;
        info!(target: "users", path = %path.display(), users = users.len(), "users file loaded");
        Ok(UserStore {
            path: path.to_owned(),
            loaded: Mutex::new(Loaded {
                stamp,
                users: Arc::new(users),
            }),
        })
    }

    /// The current users, reloading the file first if it changed. Blocking (file I/O).
    pub fn current(&self) -> Arc<Users> {
        let stamp = Stamp::of(&self.path);
        let mut loaded = self.loaded.lock().unwrap_or_else(PoisonError::into_inner);
        if stamp != loaded.stamp {
            // Stamp first, then read: a change during the read shows up as another change.
            loaded.stamp = stamp;
            if stamp.is_none() {
                warn!(target: "users", path = %self.path.display(),
                    "users file is gone; keeping the {} users last loaded", loaded.users.len());
            } else {
                match Users::load(&self.path) {
                    Ok(users) => {
                        info!(target: "users", path = %self.path.display(), users = users.len(),
                            "users file reloaded");
                        loaded.users = Arc::new(users);
                    }
                    Err(e) => error!(target: "users",
                        "{e}\nkeeping the {} users last loaded", loaded.users.len()),
                }
            }
        }
        Arc::clone(&loaded.users)
    }
}

#[cfg(test)]
#[allow(
    clippy::disallowed_methods,
    reason = "tests write their fixtures synchronously"
)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::password;
    use crate::users::{UserEntry, UsersFile};

    fn file_with(names: &[&str]) -> UsersFile {
        let hash = password::hash_with(&password::cheap(), b"pw").unwrap();
        UsersFile {
            users: names
                .iter()
                .map(|name| {
                    let entry = UserEntry {
                        password_hash: hash.clone(),
                        attributes: BTreeMap::new(),
                        credential_lifetime: None,
                    };
                    (name.to_string(), entry)
                })
                .collect(),
        }
    }

    #[test]
    fn picks_up_changes_and_keeps_the_last_good_users_on_a_bad_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("users.yaml");
        file_with(&["a"]).write(&path).unwrap();
        let store = UserStore::open(&path).unwrap();
        assert!(store.current().get("a").is_some());

        file_with(&["a", "b"]).write(&path).unwrap();
        assert!(store.current().get("b").is_some());

        std::fs::write(&path, "users: [not, a, map]\n").unwrap();
        assert_eq!(store.current().len(), 2);

        std::fs::remove_file(&path).unwrap();
        assert_eq!(store.current().len(), 2);

        file_with(&["c"]).write(&path).unwrap();
        let users = store.current();
        assert!(users.get("c").is_some() && users.get("a").is_none());
    }

    #[test]
    fn refuses_to_open_a_missing_or_broken_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("users.yaml");
        assert!(matches!(
            UserStore::open(&path),
            Err(UsersError::Read { .. })
        ));
        std::fs::write(&path, "users:\n  a: {passwordHash: plain}\n").unwrap();
        assert!(matches!(
            UserStore::open(&path),
            Err(UsersError::Invalid { .. })
        ));
    }
}
