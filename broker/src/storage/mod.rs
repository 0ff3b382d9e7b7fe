//! What survives a restart: one embedded database file, `<dataDir>/gatehouse.redb`, shared
//! by every kind of persisted data (the `persistence:` section of the configuration).
//!
//! redb was chosen because it is pure Rust with no required dependencies, ACID (a crash
//! leaves the last committed transaction), and has a stable, documented file format.
//!
//! This module knows nothing about what is stored: each user declares its own tables
//! (`redb::TableDefinition` constants next to its encoding) and runs its transactions
//! through [`Database::read`] / [`Database::write`]. Users so far:
//! [`crate::statestore::persist`] (table `statestore`).
//!
//! # Layout
//! - [`db`]: [`Database`]: opening the file, its format version, transactions.
//! - [`error`]: [`PersistError`], every variant naming the file.

pub mod db;
pub mod error;
pub mod journal;
pub mod records;
pub mod wal;

pub use db::{Database, FILE_NAME, FORMAT_VERSION};
pub use error::PersistError;
