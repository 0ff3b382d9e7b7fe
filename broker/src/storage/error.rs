//! Why the database could not be opened, read or written. Every variant names the file,
//! so a refusal to start says which file to look at.

use std::io;
use std::path::PathBuf;

/// A persistence failure.
#[derive(Debug, thiserror::Error)]
pub enum PersistError {
    /// The data folder does not exist and cannot be created.
    #[error("cannot create the data folder {}: {source}", dir.display())]
    CreateDir {
        dir: PathBuf,
        #[source]
        source: io::Error,
    },
    /// Reading or writing the file failed at the OS level.
    #[error("{}: {source}", file.display())]
    Io {
        file: PathBuf,
        #[source]
        source: io::Error,
    },
    /// Another process (usually another Gatehouse with the same `dataDir`) holds the file.
    #[error("{} is in use by another process (another Gatehouse with the same dataDir?)", file.display())]
    InUse { file: PathBuf },
    /// The file exists but was not written by Gatehouse.
    #[error(
        "{} is not a Gatehouse database ({reason}); move it away to start with an empty one",
        file.display()
    )]
    NotADatabase { file: PathBuf, reason: String },
    /// The file is damaged.
    #[error(
        "{} is corrupt ({reason}); restore it from a backup or move it away to start with an \
         empty one",
        file.display()
    )]
    Corrupt { file: PathBuf, reason: String },
    /// The file was written by a newer Gatehouse, whose format this one cannot read.
    #[error(
        "{} has format version {found}, newer than this Gatehouse reads (up to {supported}); \
         run a newer Gatehouse, or move the file away to start with an empty one",
        file.display()
    )]
    NewerFormat {
        file: PathBuf,
        found: u64,
        supported: u64,
    },
    /// Another failure of the database library.
    #[error("{}: {source}", file.display())]
    Storage {
        file: PathBuf,
        #[source]
        source: Box<redb::Error>,
    },
    /// A stored record cannot be decoded.
    #[error("{}: table {table}, key {key}: {reason}", file.display())]
    Record {
        file: PathBuf,
        table: &'static str,
        /// The key, escaped (binary keys are shown as `\xNN`) and shortened.
        key: String,
        reason: String,
    },
    /// The persistence settings cannot be compiled (validation prevents this).
    #[error("{path}: {reason}")]
    Settings { path: String, reason: String },
    /// The background writer could not make recorded changes durable.
    #[error("{}: changes not saved: {reason}", file.display())]
    Writer { file: PathBuf, reason: String },
}

impl PersistError {
    /// Classifies a database library error for `file`.
    pub(crate) fn from_redb(file: PathBuf, error: redb::Error) -> PersistError {
        match error {
            redb::Error::DatabaseAlreadyOpen => PersistError::InUse { file },
            redb::Error::Corrupted(reason) => PersistError::Corrupt { file, reason },
            redb::Error::Io(source) => PersistError::Io { file, source },
            redb::Error::UpgradeRequired(version) => PersistError::NotADatabase {
                file,
                reason: format!("an old redb file format ({version})"),
            },
            mismatch @ (redb::Error::TableTypeMismatch { .. }
            | redb::Error::TableIsMultimap(_)
            | redb::Error::TableIsNotMultimap(_)) => PersistError::NotADatabase {
                file,
                reason: mismatch.to_string(),
            },
            other => PersistError::Storage {
                file,
                source: Box::new(other),
            },
        }
    }
}

/// A key as it is shown in messages: escaped, at most 64 bytes of it.
pub(crate) fn show_key(key: &[u8]) -> String {
    const MAX: usize = 64;
    let shown = key[..key.len().min(MAX)].escape_ascii().to_string();
    if key.len() > MAX {
        format!("{shown}... ({} bytes)", key.len())
    } else {
        shown
    }
}
