//! Offline service-account annotations: a YAML file of Kubernetes `ServiceAccount`
//! objects (one per document, or a `kind: List` with `items`, as `kubectl get sa -o yaml`
//! prints), so attributes can come from the same annotations as in a cluster. Only
//! annotations starting with `aio-broker-auth/` become attributes (prefix removed).
//! The file is followed by the file-watch service ([`crate::file_watch`]) and re-read on a
//! blocking thread when it changes; a file that does not parse keeps the last good table.

use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use crate::file_watch::{self, Watched};

const ANNOTATION_PREFIX: &str = "aio-broker-auth/";

#[derive(Debug, thiserror::Error)]
pub enum AccountsError {
    #[error("service accounts file {}: {source}", .path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("service accounts file {}: {detail}", .path.display())]
    Parse { path: PathBuf, detail: String },
}

#[derive(Deserialize)]
struct Object {
    #[serde(default)]
    kind: Option<String>,
    #[serde(default)]
    metadata: Option<Metadata>,
    #[serde(default)]
    items: Vec<Object>,
}

#[derive(Deserialize)]
struct Metadata {
    name: String,
    #[serde(default)]
    namespace: Option<String>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
}

type Table = HashMap<(String, String), BTreeMap<String, String>>;

/// The service accounts file, followed by the file-watch service: a CONNECT reads the
/// last good table and never the file.
pub(crate) struct ServiceAccounts {
    table: Watched<Table>,
}

impl ServiceAccounts {
    /// Reads the file now (an error stops the chain from building) and follows it.
    pub(crate) fn load(path: &Path) -> Result<Self, AccountsError> {
        let file = path.to_owned();
        let table = file_watch::follow(
            "service accounts file",
            vec![path.to_owned()],
            file_watch::SWEEP,
            move || read(&file),
        )?;
        Ok(ServiceAccounts { table })
    }

    /// The attributes of `namespace/name` (empty when unknown).
    pub(crate) fn attributes(&self, namespace: &str, name: &str) -> BTreeMap<String, String> {
        self.table
            .current()
            .get(&(namespace.to_owned(), name.to_owned()))
            .cloned()
            .unwrap_or_default()
    }
}

#[allow(
    clippy::disallowed_methods,
    reason = "runs when the chain is built and on the file-watch service's blocking thread"
)]
fn read(path: &Path) -> Result<Table, AccountsError> {
    let text = std::fs::read_to_string(path).map_err(|source| AccountsError::Read {
        path: path.to_owned(),
        source,
    })?;
    let mut table = Table::new();
    for doc in serde_norway::Deserializer::from_str(&text) {
        let object = Object::deserialize(doc).map_err(|e| AccountsError::Parse {
            path: path.to_owned(),
            detail: e.to_string(),
        })?;
        collect(object, &mut table);
    }
    Ok(table)
}

fn collect(object: Object, table: &mut Table) {
    for item in object.items {
        collect(item, table);
    }
    let is_account = object.kind.as_deref().is_none_or(|k| k == "ServiceAccount");
    if let (true, Some(meta)) = (is_account, object.metadata) {
        let attributes = meta
            .annotations
            .into_iter()
            .filter_map(|(k, v)| Some((k.strip_prefix(ANNOTATION_PREFIX)?.to_owned(), v)))
            .collect();
        let namespace = meta.namespace.unwrap_or_else(|| "default".into());
        table.insert((namespace, meta.name), attributes);
    }
}
