//! The storage boundary: [`Store`], the one trait between what the broker keeps (sessions,
//! their messages, retained messages, state store keys) and where it is kept.
//!
//! Its users think in tables of opaque records: the session journal
//! ([`crate::session::journal`]: tables `sessions`, `messages`, `retained`) and the state
//! store's persistence ([`crate::statestore::persist`]: table `statestore`) encode their
//! own records and call only [`Store::scan`] (once, at start) and [`Store::apply`] (one
//! batch per commit, from a blocking thread). The embedded store is [`Database`] (one redb
//! file). A clustered store (issue 15: NATS JetStream KV) implements the same trait with
//! one KV bucket per [`Table`] (a [`Change::DeleteRange`] is a purge of the keys under a
//! prefix: every range the journal deletes is one session's message prefix), and the
//! broker above this line does not change.
//!
//! What a batch promises, whatever the store: once `apply` returns `Ok`, every change in
//! it survives a crash of this process, and a later `scan` sees them. redb makes the batch
//! atomic as well; a store that cannot (KV buckets commit per key) must still apply the
//! changes of one key in order, which is all the journal relies on (each batch holds at
//! most one change per key, range deletes first).

use std::path::Path;

use redb::{ReadableTable, TableDefinition};

use super::{Database, PersistError};

/// How a table's keys are typed. redb records the key type of each table and refuses to
/// open it as another, so a table keeps the type it was created with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keys {
    /// UTF-8 text (client ids, topics).
    Text,
    /// Raw bytes.
    Bytes,
}

/// A named table of records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Table {
    pub name: &'static str,
    pub keys: Keys,
}

/// One change of a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change<'a> {
    Put {
        table: Table,
        key: &'a [u8],
        value: &'a [u8],
    },
    Delete {
        table: Table,
        key: &'a [u8],
    },
    /// Every key from `from` (included) to `to` (excluded).
    DeleteRange {
        table: Table,
        from: &'a [u8],
        to: &'a [u8],
    },
}

/// The records of a table: (key, value), in key order.
pub type Rows = Vec<(Vec<u8>, Vec<u8>)>;

/// Where the broker's durable data lives. Every method blocks: call them from a blocking
/// thread (`tokio::task::spawn_blocking`) or at start, never on a connection's path.
pub trait Store: Send + Sync + 'static {
    /// Where the data is (a file, a cluster), for error messages.
    fn location(&self) -> &Path;

    /// Every record of `table` in key order; none when the table was never written.
    fn scan(&self, table: Table) -> Result<Rows, PersistError>;

    /// Apply `changes` in order as one durable batch; returns the bytes the store now uses
    /// (what `persistence.maxSize` is compared with).
    fn apply(&self, changes: &[Change<'_>]) -> Result<u64, PersistError>;
}

type TextTable<'t> = redb::Table<'t, &'static str, &'static [u8]>;
type BytesTable<'t> = redb::Table<'t, &'static [u8], &'static [u8]>;

impl Table {
    fn text(self) -> TableDefinition<'static, &'static str, &'static [u8]> {
        TableDefinition::new(self.name)
    }

    fn bytes(self) -> TableDefinition<'static, &'static [u8], &'static [u8]> {
        TableDefinition::new(self.name)
    }
}

/// A text key as stored; a key that is not UTF-8 (never written by the broker) maps to the
/// empty key rather than failing the batch.
fn text_key(key: &[u8]) -> &str {
    std::str::from_utf8(key).unwrap_or_default()
}

impl Store for Database {
    fn location(&self) -> &Path {
        self.file()
    }

    fn scan(&self, table: Table) -> Result<Rows, PersistError> {
        self.read(|tx| {
            let mut rows = Vec::new();
            match table.keys {
                Keys::Text => match tx.open_table(table.text()) {
                    Ok(t) => {
                        for row in t.iter()? {
                            let (k, v) = row?;
                            rows.push((k.value().as_bytes().to_vec(), v.value().to_vec()));
                        }
                    }
                    Err(redb::TableError::TableDoesNotExist(_)) => {}
                    Err(e) => return Err(e.into()),
                },
                Keys::Bytes => match tx.open_table(table.bytes()) {
                    Ok(t) => {
                        for row in t.iter()? {
                            let (k, v) = row?;
                            rows.push((k.value().to_vec(), v.value().to_vec()));
                        }
                    }
                    Err(redb::TableError::TableDoesNotExist(_)) => {}
                    Err(e) => return Err(e.into()),
                },
            }
            Ok(rows)
        })
    }

    fn apply(&self, changes: &[Change<'_>]) -> Result<u64, PersistError> {
        self.write(|tx| {
            {
                // Each table is opened once per batch (a checkpoint can hold 100k changes).
                let mut text: Vec<(&str, TextTable<'_>)> = Vec::new();
                let mut bytes: Vec<(&str, BytesTable<'_>)> = Vec::new();
                for change in changes {
                    let (Change::Put { table, .. }
                    | Change::Delete { table, .. }
                    | Change::DeleteRange { table, .. }) = *change;
                    match table.keys {
                        Keys::Text => {
                            let i = match text.iter().position(|(n, _)| *n == table.name) {
                                Some(i) => i,
                                None => {
                                    text.push((table.name, tx.open_table(table.text())?));
                                    text.len() - 1
                                }
                            };
                            let t = &mut text[i].1;
                            match *change {
                                Change::Put { key, value, .. } => {
                                    t.insert(text_key(key), value)?;
                                }
                                Change::Delete { key, .. } => {
                                    t.remove(text_key(key))?;
                                }
                                Change::DeleteRange { from, to, .. } => {
                                    let range = text_key(from)..text_key(to);
                                    t.retain_in::<&str, _>(range, |_, _| false)?;
                                }
                            }
                        }
                        Keys::Bytes => {
                            let i = match bytes.iter().position(|(n, _)| *n == table.name) {
                                Some(i) => i,
                                None => {
                                    bytes.push((table.name, tx.open_table(table.bytes())?));
                                    bytes.len() - 1
                                }
                            };
                            let t = &mut bytes[i].1;
                            match *change {
                                Change::Put { key, value, .. } => {
                                    t.insert(key, value)?;
                                }
                                Change::Delete { key, .. } => {
                                    t.remove(key)?;
                                }
                                Change::DeleteRange { from, to, .. } => {
                                    t.retain_in::<&[u8], _>(from..to, |_, _| false)?;
                                }
                            }
                        }
                    }
                }
            }
            Database::used_bytes(tx)
        })
    }
}
