//! Storage: where what survives a restart is kept, knowing nothing about what it is.
//!
//! The boundary is one trait, [`Store`]: tables of opaque records, scanned at start and
//! changed in durable batches. The embedded implementation is [`Database`], one redb file
//! `<dataDir>/gatehouse.redb` shared by every kind of persisted data (the `persistence:`
//! section of the configuration); a clustered one (NATS JetStream KV, issue 15) would
//! implement the same trait. redb was chosen because it is pure Rust with no required
//! dependencies, ACID (a crash leaves the last committed transaction), and has a stable,
//! documented file format.
//!
//! Each user declares its own tables ([`Table`] constants next to its encoding): the
//! session journal ([`crate::session::journal`]: `sessions`, `messages`, `retained`) and
//! the state store ([`crate::statestore::persist`]: `statestore`).
//!
//! # Layout
//! - [`store`]: [`Store`], [`Table`], [`Change`]: the boundary.
//! - [`db`]: [`Database`]: opening the file, its format version, transactions.
//! - [`wal`]: an append-only log of batches, for changes that must be durable before the
//!   next checkpoint (the session journal's).
//! - [`error`]: [`PersistError`], every variant naming the file.

pub mod db;
pub mod error;
pub mod store;
pub mod wal;

pub use db::{Database, FILE_NAME, FORMAT_VERSION};
pub use error::PersistError;
pub use store::{Change, Keys, Rows, Store, Table};
