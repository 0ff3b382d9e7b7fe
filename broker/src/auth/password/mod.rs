//! `Password` authentication (issue 16; a Gatehouse extension, not in AIO): user names
//! and salted, slow password hashes from a file in Mosquitto's `password_file` format,
//! written by `gatehouse passwd` (argon2id) or `mosquitto_passwd` (`$7$` PBKDF2-SHA512,
//! `$6$` SHA-512 read only). See [`file`] for the format and [`hash`] for the hashes.
//!
//! # In the chain
//!
//! Relevant to a CONNECT that has a user name and a password and no MQTT v5
//! Authentication Method (enhanced authentication belongs to SAT and Custom); other
//! CONNECTs go to the next method. Once relevant it decides: a wrong password or a user
//! not in the file is refused with 0x86 Bad User Name or Password (3.1.1: return code 4).
//! The principal's user name is the file's user name; its attributes come from
//! `passwordSettings.userAttributes`. It cannot re-authenticate (AUTH) and has no expiry.
//!
//! # Nothing slow or blocking on the async workers
//!
//! - The file is read when the chain is built (start-up, configuration reload) and by a
//!   background task that `stat`s it every second; a parsed table is swapped in whole
//!   (an `Arc` behind a lock held for a pointer copy). A CONNECT never touches the file
//!   system.
//! - A verification (argon2: ~20 ms and 19 MiB by default) runs on the blocking pool,
//!   at most one per CPU at a time (a process-wide semaphore), so a flood of CONNECTs
//!   queues there instead of taking every blocking thread or the memory of hundreds of
//!   argon2 instances.
//! - An unknown user is verified against a dummy hash with the cost of the file's most
//!   common entry kind, so it takes as long to refuse as a wrong password.
//!
//! # A bad file
//!
//! At start-up (and on a configuration reload) a missing or invalid file stops the chain
//! from building, every bad line listed, as Mosquitto refuses to start. Once running, a
//! changed file that is invalid or missing keeps the last good table and logs each bad
//! line (good lines of a bad file are *not* taken: half an edit must not apply).
//!
//! A reload that removes a user or changes their hash records the user name; the
//! configuration reloader (`Reloader::revoke_password_users`, which holds the broker)
//! takes those names every second and disconnects the clients authenticated as them
//! with 0x87, as Mosquitto re-checks its clients on reload.

pub mod file;
pub mod hash;

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Weak};
use std::time::Duration;

use gatehouse_config::PasswordSettings;
use gatehouse_protocol::ReasonCode;
use parking_lot::{Mutex, RwLock};
use tokio::sync::Semaphore;

use super::files::{stamp, Stamp};
use super::{Credentials, Outcome, Principal, Verdict};
use hash::PasswordHash;

/// How often the background task looks at the file.
const POLL: Duration = Duration::from_secs(1);

/// A password file larger than this is refused (a million users are ~150 MB of `$7$`
/// lines; this guards the broker's memory against a file that is not a password file).
const MAX_FILE_BYTES: u64 = 64 << 20;

/// The name of the method in principals, logs and metrics.
pub const METHOD: &str = "Password";

/// Password verifications running at once, process-wide: one per CPU.
static VERIFICATIONS: LazyLock<Arc<Semaphore>> = LazyLock::new(|| {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    Arc::new(Semaphore::new(cpus))
});

#[derive(Debug, thiserror::Error)]
pub enum PasswordSetupError {
    #[error("password file {}: {source}", .path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("password file {}: {size} bytes, more than the {MAX_FILE_BYTES} a password file may have", .path.display())]
    TooLarge { path: PathBuf, size: u64 },
    #[error("password file {}: {} bad line(s):\n    {}", .path.display(), .errors.len(), .errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n    "))]
    Invalid {
        path: PathBuf,
        errors: Vec<file::LineError>,
    },
}

/// The users of one file version, ready for CONNECTs.
struct Table {
    users: HashMap<String, Arc<PasswordHash>>,
    /// What an unknown user is verified against (see [`hash::dummy`]).
    dummy: Arc<PasswordHash>,
}

impl Table {
    fn new(entries: Vec<(String, PasswordHash)>) -> Table {
        // The most common cost among the entries (ties: the first seen), else argon2id's
        // default (what `gatehouse passwd` writes).
        let mut counts: Vec<(hash::CostKey, usize)> = Vec::new();
        for (_, h) in &entries {
            let key = h.cost_key();
            match counts.iter_mut().find(|(k, _)| *k == key) {
                Some((_, n)) => *n += 1,
                None => counts.push((key, 1)),
            }
        }
        let common = counts
            .iter()
            .rev()
            .max_by_key(|(_, n)| *n)
            .map_or_else(hash::default_cost, |(k, _)| *k);
        Table {
            users: entries
                .into_iter()
                .map(|(user, h)| (user, Arc::new(h)))
                .collect(),
            dummy: Arc::new(hash::dummy(common)),
        }
    }
}

/// Read and parse the file (blocking).
#[allow(
    clippy::disallowed_methods,
    reason = "called on a blocking thread (the refresh task's spawn_blocking), at start-up and by reload's blocking check, never on a connection's path"
)]
fn read(path: &Path) -> Result<Table, PasswordSetupError> {
    let io = |source| PasswordSetupError::Read {
        path: path.to_owned(),
        source,
    };
    let size = std::fs::metadata(path).map_err(io)?.len();
    if size > MAX_FILE_BYTES {
        return Err(PasswordSetupError::TooLarge {
            path: path.to_owned(),
            size,
        });
    }
    let text = std::fs::read_to_string(path).map_err(io)?;
    file::parse(&text)
        .map(Table::new)
        .map_err(|errors| PasswordSetupError::Invalid {
            path: path.to_owned(),
            errors,
        })
}

/// Read and check a password file as the broker would at start-up, without watching it
/// (for a preflight such as `gatehouse check`): the number of users, or every problem.
pub fn check_file(path: &Path) -> Result<usize, PasswordSetupError> {
    read(path).map(|table| table.users.len())
}

/// One password file, kept current by a background task.
pub struct PasswordFile {
    path: PathBuf,
    table: RwLock<Arc<Table>>,
    stamp: Mutex<Option<Stamp>>,
    /// Changes of the file taken, and not taken (invalid or missing), for `/metrics`.
    reloads: AtomicU64,
    reload_failures: AtomicU64,
    /// Users removed or given a new password by reloads, until taken by the reloader,
    /// which disconnects their clients.
    revoked: Mutex<Vec<String>>,
}

impl fmt::Debug for PasswordFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PasswordFile")
            .field("path", &self.path)
            .field("users", &self.table.read().users.len())
            .finish()
    }
}

impl PasswordFile {
    /// Read the file (it must exist and be valid now) and, inside a Tokio runtime, start
    /// watching it; the task ends with the returned `Arc`.
    pub fn open(path: &Path) -> Result<Arc<PasswordFile>, PasswordSetupError> {
        let stamp = stamp(path);
        let table = read(path)?;
        tracing::info!(
            target: "auth",
            "password file {}: {} user(s)",
            path.display(),
            table.users.len()
        );
        let file = Arc::new(PasswordFile {
            path: path.to_owned(),
            table: RwLock::new(Arc::new(table)),
            stamp: Mutex::new(stamp),
            reloads: AtomicU64::new(0),
            reload_failures: AtomicU64::new(0),
            revoked: Mutex::new(Vec::new()),
        });
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(poll(Arc::downgrade(&file)));
        }
        Ok(file)
    }

    /// The users removed or given a new password since last asked.
    /// The file (for `/metrics`).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Users in the table in force (for `/metrics`).
    pub fn users(&self) -> usize {
        self.table.read().users.len()
    }

    /// Changes of the file taken, and not taken (for `/metrics`).
    pub fn reload_counts(&self) -> (u64, u64) {
        (
            self.reloads.load(Ordering::Relaxed),
            self.reload_failures.load(Ordering::Relaxed),
        )
    }

    pub fn take_revoked(&self) -> Vec<String> {
        std::mem::take(&mut *self.revoked.lock())
    }

    fn table(&self) -> Arc<Table> {
        self.table.read().clone()
    }

    /// Re-read the file if its stamp moved (blocking); true when a new table was taken.
    fn refresh(&self) -> bool {
        let now = stamp(&self.path);
        {
            let mut last = self.stamp.lock();
            if *last == now {
                return false;
            }
            // Remembered even when the file is bad: say so once, not every second.
            *last = now;
        }
        match read(&self.path) {
            Ok(table) => {
                tracing::info!(
                    target: "auth",
                    "password file {} reloaded: {} user(s)",
                    self.path.display(),
                    table.users.len()
                );
                let old = std::mem::replace(&mut *self.table.write(), Arc::new(table));
                let new = self.table();
                let gone = old.users.iter().filter(|(user, hash)| {
                    new.users
                        .get(*user)
                        .is_none_or(|now| now.as_ref() != hash.as_ref())
                });
                self.revoked
                    .lock()
                    .extend(gone.map(|(user, _)| user.clone()));
                self.reloads.fetch_add(1, Ordering::Relaxed);
                true
            }
            Err(e) => {
                self.reload_failures.fetch_add(1, Ordering::Relaxed);
                tracing::error!(
                    target: "auth",
                    "{e}\n  keeping the previous version ({} user(s))",
                    self.table.read().users.len()
                );
                false
            }
        }
    }
}

async fn poll(file: Weak<PasswordFile>) {
    let mut tick = tokio::time::interval(POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(strong) = file.upgrade() else {
            return;
        };
        // stat + read + parse: file I/O, off the async workers.
        if tokio::task::spawn_blocking(move || strong.refresh())
            .await
            .is_err()
        {
            return;
        }
    }
}

/// The method, as built from `passwordSettings`.
pub struct PasswordMethod {
    file: Arc<PasswordFile>,
    attributes: BTreeMap<String, BTreeMap<String, String>>,
}

impl PasswordMethod {
    /// The file this method reads (for `/metrics`).
    pub fn file(&self) -> &Arc<PasswordFile> {
        &self.file
    }

    pub fn new(settings: &PasswordSettings) -> Result<PasswordMethod, PasswordSetupError> {
        let file = PasswordFile::open(&settings.password_file)?;
        let table = file.table();
        for user in settings.user_attributes.keys() {
            if !table.users.contains_key(user) {
                tracing::warn!(
                    target: "auth",
                    "passwordSettings.userAttributes names `{user}`, who is not in {} (yet)",
                    settings.password_file.display()
                );
            }
        }
        Ok(PasswordMethod {
            file,
            attributes: settings.user_attributes.clone(),
        })
    }

    /// See the module documentation for when it is relevant and what it decides.
    pub(crate) async fn authenticate(&self, creds: &Credentials<'_>) -> Verdict {
        if creds.method.is_some() {
            return Verdict::NotRelevant;
        }
        let (Some(user), Some(password)) = (creds.username, creds.password) else {
            return Verdict::NotRelevant;
        };
        let table = self.file.table();
        let entry = table.users.get(user).cloned();
        let known = entry.is_some();
        let hash = entry.unwrap_or_else(|| table.dummy.clone());
        drop(table);
        let matched = verify(hash, password.to_vec()).await;
        Verdict::Decided(if matched && known {
            Outcome::Accepted(Principal {
                username: Some(user.to_owned()),
                client_id: creds.client_id.to_owned(),
                attributes: self.attributes.get(user).cloned().unwrap_or_default(),
                expiry: None,
                method: METHOD,
                registry: None,
            })
        } else {
            Outcome::Rejected(
                ReasonCode::BAD_USER_NAME_OR_PASSWORD,
                if known {
                    // Escaped: the name comes from the client and goes to the log.
                    format!(
                        "password: wrong password for user `{}`",
                        user.escape_debug()
                    )
                } else {
                    format!(
                        "password: user `{}` is not in {}",
                        user.escape_debug(),
                        self.file.path.display()
                    )
                },
            )
        })
    }
}

/// Verify on the blocking pool, at most [`VERIFICATIONS`] at once. The permit moves into
/// the blocking task, so a CONNECT abandoned while it waits does not free a slot that is
/// still computing.
async fn verify(hash: Arc<PasswordHash>, password: Vec<u8>) -> bool {
    let Ok(permit) = VERIFICATIONS.clone().acquire_owned().await else {
        return false;
    };
    tokio::task::spawn_blocking(move || {
        let _permit = permit;
        hash.verify(&password)
    })
    .await
    .unwrap_or(false)
}

#[cfg(test)]
#[allow(clippy::disallowed_methods, reason = "test set-up")]
mod tests {
    use super::*;

    const ALICE: &str = "alice:$7$101$ZrElB8C9R9U2zImA$zuEXAXhkV8TJd1UAFBY+orP9vaDHw/s//gII3wbXOnfCjx25UJRThFimD3MR1jocCjLBjDmbKZrQUYtozBNYCQ==\n";

    fn creds<'a>(user: Option<&'a str>, password: Option<&'a [u8]>) -> Credentials<'a> {
        Credentials {
            client_id: "c1",
            username: user,
            password,
            method: None,
            data: None,
            peer_certs: &[],
        }
    }

    fn write(path: &Path, text: &str) {
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, path).unwrap();
    }

    #[tokio::test]
    async fn decides_for_user_and_password_only_and_refuses_with_0x86() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("passwd");
        write(&path, ALICE);
        let settings = PasswordSettings {
            password_file: path.clone(),
            user_attributes: [(
                "alice".to_owned(),
                [("floor".to_owned(), "1".to_owned())].into(),
            )]
            .into(),
        };
        let m = PasswordMethod::new(&settings).unwrap();
        let Verdict::Decided(Outcome::Accepted(p)) =
            m.authenticate(&creds(Some("alice"), Some(b"secret"))).await
        else {
            panic!("alice with her password is accepted");
        };
        assert_eq!(p.username.as_deref(), Some("alice"));
        assert_eq!(p.method, "Password");
        assert_eq!(p.attributes.get("floor").map(String::as_str), Some("1"));
        for (user, password) in [("alice", &b"wrong"[..]), ("mallory", b"secret")] {
            match m.authenticate(&creds(Some(user), Some(password))).await {
                Verdict::Decided(Outcome::Rejected(code, _)) => {
                    assert_eq!(code, ReasonCode::BAD_USER_NAME_OR_PASSWORD)
                }
                _ => panic!("{user} is refused"),
            }
        }
        for c in [creds(None, None), creds(Some("alice"), None)] {
            assert!(matches!(m.authenticate(&c).await, Verdict::NotRelevant));
        }
        let mut enhanced = creds(Some("alice"), Some(b"secret"));
        enhanced.method = Some("K8S-SAT");
        assert!(matches!(
            m.authenticate(&enhanced).await,
            Verdict::NotRelevant
        ));
    }

    #[test]
    fn a_bad_file_is_refused_at_open_and_kept_out_on_refresh() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("passwd");
        assert!(matches!(
            PasswordFile::open(&path),
            Err(PasswordSetupError::Read { .. })
        ));
        write(&path, &format!("{ALICE}bob\n"));
        let e = PasswordFile::open(&path).unwrap_err().to_string();
        assert!(e.contains("1 bad line(s)") && e.contains("line 2"), "{e}");
        assert!(check_file(&path).is_err());
        write(&path, ALICE);
        assert_eq!(check_file(&path).unwrap(), 1);
        let file = PasswordFile::open(&path).unwrap();
        assert!(!file.refresh(), "unchanged");
        // Bad: the good line 1 is not taken alone; the last good table stays.
        write(&path, &ALICE.replace("alice", "carol").replace("101", "x"));
        assert!(!file.refresh());
        assert!(file.table().users.contains_key("alice"));
        std::fs::remove_file(&path).unwrap();
        assert!(!file.refresh());
        assert!(file.table().users.contains_key("alice"));
        write(&path, &ALICE.replace("alice", "carol"));
        assert!(file.refresh());
        let t = file.table();
        assert!(t.users.contains_key("carol") && !t.users.contains_key("alice"));
        assert_eq!(file.take_revoked(), ["alice"]);
        assert!(file.take_revoked().is_empty());
        // The dummy has the cost of the entries ($7$ with 101 iterations).
        assert_eq!(t.dummy.cost_key(), hash::CostKey::Pbkdf2(101, 64));
    }
}
