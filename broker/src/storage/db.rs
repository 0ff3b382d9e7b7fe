//! The database file: opening it, checking its format, and running transactions.
//!
//! One redb file, `<dataDir>/gatehouse.redb`, holds every table. Its `meta` table records
//! the format version of the tables as a whole; a file from a newer Gatehouse is refused
//! (typed error) instead of being misread, and a file that is not a redb database, or is
//! damaged, is refused before redb touches it where possible. Tables are declared by the
//! modules that use them (`redb::TableDefinition` constants) and opened inside
//! [`Database::read`] / [`Database::write`].
//!
//! Transactions are blocking (each write commit is an fsync): call them from a blocking
//! thread (`tokio::task::spawn_blocking`), never from a connection task.

use std::fmt;
use std::fs::File;
use std::io::{self, Read};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use redb::{ReadTransaction, ReadableDatabase, TableDefinition, TableHandle, WriteTransaction};

use super::PersistError;

/// The file name inside the data folder.
pub const FILE_NAME: &str = "gatehouse.redb";

/// The format version this build writes and reads. Raise it when a table's layout changes
/// in a way older builds would misread, and migrate older versions in
/// `Database::check_format`.
///
/// - 1: the first layout.
/// - 2: the session journal stores a queued message's body once, in its `bodies` table,
///   and its delivery records reference it (`session::journal::records`). A version 1 file
///   is read as it is (the journal still reads inline delivery records and rewrites them
///   at its first load) and marked 2, so that an older build refuses it by version rather
///   than failing on the first delivery record it cannot decode.
pub const FORMAT_VERSION: u64 = 2;

/// `meta`: `format_version` → [`FORMAT_VERSION`] of the file.
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const FORMAT_KEY: &str = "format_version";

/// The first bytes of every redb file (redb's header magic number), checked before redb
/// reads the file so that a foreign file is refused by name, not by whatever redb makes of
/// it. A test checks it against a file redb writes.
const REDB_MAGIC: [u8; 9] = [b'r', b'e', b'd', b'b', 0x1A, 0x0A, 0xA9, 0x0D, 0x0A];

/// redb's page cache: enough for the working set of small tables, far below redb's 1 GiB
/// default (memory matters more than read speed here: data is read once, at start).
const CACHE_BYTES: usize = 32 << 20;

/// The open database; cheap to clone (all clones share one file handle).
#[derive(Clone)]
pub struct Database {
    inner: Arc<Inner>,
}

struct Inner {
    /// Always `Some` until dropped; taken in `drop` so that redb's own drop (which writes
    /// to the file) runs guarded.
    db: Option<redb::Database>,
    /// For every error message.
    file: PathBuf,
}

impl Inner {
    fn redb(&self) -> Result<&redb::Database, redb::Error> {
        self.db.as_ref().ok_or(redb::Error::DatabaseClosed)
    }
}

impl Drop for Inner {
    /// redb finishes its bookkeeping when the database is dropped, and panics there if the
    /// file turned out damaged; that must not take the broker down on shutdown.
    fn drop(&mut self) {
        let db = self.db.take();
        if guarded(move || {
            drop(db);
            Ok(())
        })
        .is_err()
        {
            tracing::error!(
                target: "persistence",
                file = %self.file.display(),
                "closing the database failed; it may need repair at the next start"
            );
        }
    }
}

impl fmt::Debug for Database {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Database")
            .field("file", &self.inner.file)
            .finish()
    }
}

impl Database {
    /// Opens (or creates) `<data_dir>/gatehouse.redb`, creating `data_dir` if needed, and
    /// checks the whole file: redb verifies page checksums only when it recovers from a
    /// crash, so without this check a damaged page would be read back as data. The check
    /// reads every page once (start-up cost grows with the file); a file it can repair
    /// (falling back to an earlier commit) is logged as a warning.
    ///
    /// Errors, each naming the file: the folder cannot be created, the file is held by
    /// another process, is not a redb database, is corrupt, or has a newer format version.
    /// Blocking.
    #[allow(
        clippy::disallowed_methods,
        reason = "opening the database is blocking by contract (documented): start-up"
    )]
    pub fn open(data_dir: &Path) -> Result<Database, PersistError> {
        std::fs::create_dir_all(data_dir).map_err(|source| PersistError::CreateDir {
            dir: data_dir.to_owned(),
            source,
        })?;
        let file = data_dir.join(FILE_NAME);
        check_magic(&file)?;
        let db = guarded(|| {
            redb::Builder::new()
                .set_cache_size(CACHE_BYTES)
                .create(&file)
                .map_err(redb::Error::from)
        })
        .map_err(|error| error.into_persist(&file))?;
        // From here on the handle is dropped guarded (see `Inner`'s drop), also when the
        // check below fails.
        let mut inner = Inner { db: Some(db), file };
        let checked = match inner.db.as_mut() {
            Some(db) => guarded(|| db.check_integrity().map_err(redb::Error::from)),
            None => Ok(true),
        };
        let clean = checked.map_err(|error| error.into_persist(&inner.file))?;
        if !clean {
            tracing::warn!(
                target: "persistence",
                file = %inner.file.display(),
                "the database was damaged and has been repaired: changes of its last \
                 transactions may be lost"
            );
        }
        let database = Database {
            inner: Arc::new(inner),
        };
        database.check_format()?;
        Ok(database)
    }

    /// The database file.
    pub fn file(&self) -> &Path {
        &self.inner.file
    }

    /// Runs `f` in a read transaction (a consistent snapshot). Blocking.
    pub fn read<R>(
        &self,
        f: impl FnOnce(&ReadTransaction) -> Result<R, redb::Error>,
    ) -> Result<R, PersistError> {
        self.run(|| {
            let tx = self.inner.redb()?.begin_read()?;
            f(&tx)
        })
    }

    /// Runs `f` in a write transaction and commits it (durably) if `f` succeeds; an error
    /// aborts it, leaving the file as it was. Blocking.
    pub fn write<R>(
        &self,
        f: impl FnOnce(&WriteTransaction) -> Result<R, redb::Error>,
    ) -> Result<R, PersistError> {
        self.run(|| {
            let tx = self.inner.redb()?.begin_write()?;
            let result = f(&tx)?;
            tx.commit()?;
            Ok(result)
        })
    }

    /// The bytes of the file's pages in use (data, indexes, metadata): what the file
    /// needs; freed pages are reused before it grows. Call inside [`Database::write`].
    pub fn used_bytes(tx: &WriteTransaction) -> Result<u64, redb::Error> {
        let stats = tx.stats()?;
        Ok(stats
            .allocated_pages()
            .saturating_mul(stats.page_size() as u64))
    }

    /// A transaction with library errors and panics turned into [`PersistError`]s.
    fn run<R>(&self, f: impl FnOnce() -> Result<R, redb::Error>) -> Result<R, PersistError> {
        guarded(f).map_err(|error| error.into_persist(&self.inner.file))
    }

    /// Writes the format version into a new file; refuses a newer one, and a non-empty file
    /// without one (a redb database of another program).
    fn check_format(&self) -> Result<(), PersistError> {
        let found = self.read(|tx| match tx.open_table(META) {
            Ok(meta) => Ok(meta.get(FORMAT_KEY)?.map(|v| v.value())),
            Err(redb::TableError::TableDoesNotExist(_)) => Ok(None),
            Err(error) => Err(error.into()),
        })?;
        match found {
            Some(found) if found > FORMAT_VERSION => Err(PersistError::NewerFormat {
                file: self.inner.file.clone(),
                found,
                supported: FORMAT_VERSION,
            }),
            Some(0) => Err(PersistError::Corrupt {
                file: self.inner.file.clone(),
                reason: "format version 0".into(),
            }),
            Some(found) if found < FORMAT_VERSION => {
                tracing::info!(
                    target: "persistence",
                    file = %self.inner.file.display(),
                    from = found,
                    to = FORMAT_VERSION,
                    "upgrading the database's format version"
                );
                self.set_version(FORMAT_VERSION)
            }
            Some(_) => Ok(()),
            None => {
                let foreign = self.read(|tx| {
                    Ok(tx
                        .list_tables()?
                        .map(|t| t.name().to_owned())
                        .collect::<Vec<_>>())
                })?;
                if !foreign.is_empty() {
                    return Err(PersistError::NotADatabase {
                        file: self.inner.file.clone(),
                        reason: format!("no format version, tables {}", foreign.join(", ")),
                    });
                }
                self.set_version(FORMAT_VERSION)
            }
        }
    }

    fn set_version(&self, version: u64) -> Result<(), PersistError> {
        self.write(|tx| {
            tx.open_table(META)?.insert(FORMAT_KEY, version)?;
            Ok(())
        })
    }

    /// Sets the format version, so that tests can make a file from the future (or the
    /// past).
    #[cfg(test)]
    pub(crate) fn set_format_version(&self, version: u64) -> Result<(), PersistError> {
        self.set_version(version)
    }
}

/// An existing, non-empty file must start with redb's magic number. (An empty file is a new
/// database, as redb treats it.)
#[allow(
    clippy::disallowed_methods,
    reason = "part of Database::open: start-up"
)]
fn check_magic(file: &Path) -> Result<(), PersistError> {
    let mut head = Vec::with_capacity(REDB_MAGIC.len());
    match File::open(file) {
        Ok(f) => f
            .take(REDB_MAGIC.len() as u64)
            .read_to_end(&mut head)
            .map_err(|source| PersistError::Io {
                file: file.to_owned(),
                source,
            })?,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(source) => {
            return Err(PersistError::Io {
                file: file.to_owned(),
                source,
            })
        }
    };
    if head.is_empty() || head == REDB_MAGIC {
        Ok(())
    } else {
        Err(PersistError::NotADatabase {
            file: file.to_owned(),
            reason: "it does not start with the redb header".into(),
        })
    }
}

enum Guarded {
    Failed(redb::Error),
    /// The library panicked (seen only on damaged files); the panic message.
    Panicked(String),
}

impl Guarded {
    fn into_persist(self, file: &Path) -> PersistError {
        match self {
            Guarded::Failed(error) => PersistError::from_redb(file.to_owned(), error),
            Guarded::Panicked(reason) => PersistError::Corrupt {
                file: file.to_owned(),
                reason,
            },
        }
    }
}

/// Runs `f`, turning a panic into [`Guarded::Panicked`], so that a damaged file gives an
/// error naming it rather than taking the broker down: redb checks page checksums, but
/// some damage (seen in tests: overwritten allocator state) makes it panic instead of
/// returning `Corrupted`. (This relies on `panic = "unwind"`, the default.)
fn guarded<R>(f: impl FnOnce() -> Result<R, redb::Error>) -> Result<R, Guarded> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(result) => result.map_err(Guarded::Failed),
        Err(payload) => {
            let message = payload
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            Err(Guarded::Panicked(format!(
                "the database library failed: {message}"
            )))
        }
    }
}

#[cfg(test)]
#[allow(
    clippy::disallowed_methods,
    reason = "tests write their fixtures synchronously"
)]
mod tests {
    use super::*;

    const T: TableDefinition<&str, &str> = TableDefinition::new("t");

    fn open(dir: &Path) -> Database {
        match Database::open(dir) {
            Ok(db) => db,
            Err(err) => panic!("{err}"),
        }
    }

    #[test]
    fn creates_the_folder_and_file_with_the_format_version() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("a/b");
        let db = open(&data);
        assert_eq!(db.file(), data.join(FILE_NAME));
        let version = db
            .read(|tx| Ok(tx.open_table(META)?.get(FORMAT_KEY)?.map(|v| v.value())))
            .unwrap();
        assert_eq!(version, Some(FORMAT_VERSION));
        let head = std::fs::read(db.file()).unwrap();
        assert_eq!(head[..REDB_MAGIC.len()], REDB_MAGIC, "redb's magic number");
    }

    #[test]
    fn tables_declared_by_their_users_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let db = open(dir.path());
        db.write(|tx| {
            tx.open_table(T)?.insert("k", "v")?;
            Ok(())
        })
        .unwrap();
        drop(db);
        let db = open(dir.path());
        let value = db
            .read(|tx| Ok(tx.open_table(T)?.get("k")?.map(|v| v.value().to_owned())))
            .unwrap();
        assert_eq!(value.as_deref(), Some("v"));
    }

    #[test]
    fn a_failed_write_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let db = open(dir.path());
        let result: Result<(), _> = db.write(|tx| {
            tx.open_table(T)?.insert("k", "v")?;
            Err(redb::Error::Corrupted("test".into()))
        });
        assert!(matches!(result, Err(PersistError::Corrupt { .. })));
        let tables = db
            .read(|tx| {
                Ok(tx
                    .list_tables()?
                    .map(|t| t.name().to_owned())
                    .collect::<Vec<_>>())
            })
            .unwrap();
        assert_eq!(tables, ["meta"]);
    }

    #[test]
    fn an_older_format_is_read_and_marked_current() {
        let dir = tempfile::tempdir().unwrap();
        open(dir.path()).set_format_version(1).unwrap();
        let db = open(dir.path());
        let version = db
            .read(|tx| Ok(tx.open_table(META)?.get(FORMAT_KEY)?.map(|v| v.value())))
            .unwrap();
        assert_eq!(version, Some(FORMAT_VERSION));
    }

    #[test]
    fn a_newer_format_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        open(dir.path())
            .set_format_version(FORMAT_VERSION + 1)
            .unwrap();
        let err = Database::open(dir.path()).unwrap_err();
        assert!(
            matches!(err, PersistError::NewerFormat { found, supported, .. }
                if found == FORMAT_VERSION + 1 && supported == FORMAT_VERSION),
            "{err:?}"
        );
        let message = err.to_string();
        assert!(message.contains(FILE_NAME), "{message}");
        assert!(
            message.contains("newer than this Gatehouse reads"),
            "{message}"
        );
    }

    #[test]
    fn a_foreign_file_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join(FILE_NAME);
        std::fs::write(&file, b"SQLite format 3\0 and then some").unwrap();
        let err = Database::open(dir.path()).unwrap_err();
        assert!(matches!(err, PersistError::NotADatabase { .. }), "{err:?}");
        assert!(
            err.to_string().contains(&file.display().to_string()),
            "{err}"
        );
        // The file is left as it was.
        assert_eq!(
            std::fs::read(&file).unwrap(),
            b"SQLite format 3\0 and then some"
        );
    }

    #[test]
    fn a_redb_file_of_another_program_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join(FILE_NAME);
        let other = redb::Database::create(&file).unwrap();
        let tx = other.begin_write().unwrap();
        tx.open_table(T).unwrap().insert("k", "v").unwrap();
        tx.commit().unwrap();
        drop(other);
        let err = Database::open(dir.path()).unwrap_err();
        assert!(
            matches!(&err, PersistError::NotADatabase { reason, .. } if reason.contains("tables t")),
            "{err:?}"
        );
    }

    #[test]
    fn garbage_after_the_header_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join(FILE_NAME);
        // A valid file, then every byte after the magic number overwritten: each variant
        // must give an error naming the file.
        drop(open(dir.path()));
        let good = std::fs::read(&file).unwrap();
        for (name, fill) in [("zeros", 0u8), ("ones", 0xFF), ("pattern", 0x5A)] {
            let mut bad = good.clone();
            for byte in &mut bad[REDB_MAGIC.len()..] {
                *byte = fill;
            }
            std::fs::write(&file, &bad).unwrap();
            match Database::open(dir.path()) {
                Err(err) => assert!(
                    err.to_string().contains(&file.display().to_string()),
                    "{name}: {err}"
                ),
                Ok(_) => panic!("{name}: a damaged file opened"),
            }
        }
        // A file cut short.
        std::fs::write(&file, &good[..REDB_MAGIC.len() + 3]).unwrap();
        assert!(Database::open(dir.path()).is_err());
    }

    #[test]
    fn a_second_open_of_the_same_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let _db = open(dir.path());
        let err = Database::open(dir.path()).unwrap_err();
        assert!(matches!(err, PersistError::InUse { .. }), "{err:?}");
    }

    #[test]
    fn an_uncreatable_folder_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let blocker = dir.path().join("file");
        std::fs::write(&blocker, b"x").unwrap();
        let err = Database::open(&blocker.join("data")).unwrap_err();
        assert!(matches!(err, PersistError::CreateDir { .. }), "{err:?}");
    }
}
