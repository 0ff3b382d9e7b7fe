//! Offline service-account annotations: a YAML file of Kubernetes `ServiceAccount`
//! objects (one per document, or a `kind: List` with `items`, as `kubectl get sa -o yaml`
//! prints), so attributes can come from the same annotations as in a cluster. Only
//! annotations starting with `aio-broker-auth/` become attributes (prefix removed).
//! The file is re-read when it changes.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use parking_lot::Mutex;
use serde::Deserialize;

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

pub(crate) struct ServiceAccounts {
    path: PathBuf,
    state: Mutex<(Option<SystemTime>, Table)>,
}

impl ServiceAccounts {
    pub(crate) fn load(path: &Path) -> Result<Self, AccountsError> {
        let (stamp, table) = read(path)?;
        Ok(ServiceAccounts {
            path: path.to_owned(),
            state: Mutex::new((stamp, table)),
        })
    }

    /// The attributes of `namespace/name` (empty when unknown).
    #[allow(
        clippy::disallowed_methods,
        reason = "known blocking on an async worker (issue 17 item 3: the file-watch service removes it); on the CONNECT path"
    )]
    pub(crate) fn attributes(&self, namespace: &str, name: &str) -> BTreeMap<String, String> {
        let mut state = self.state.lock();
        let now = std::fs::metadata(&self.path)
            .and_then(|m| m.modified())
            .ok();
        if now != state.0 {
            match read(&self.path) {
                Ok(fresh) => *state = fresh,
                Err(e) => {
                    tracing::warn!(target: "auth", "{e}; keeping the previous service accounts")
                }
            }
        }
        state
            .1
            .get(&(namespace.to_owned(), name.to_owned()))
            .cloned()
            .unwrap_or_default()
    }
}

#[allow(
    clippy::disallowed_methods,
    reason = "called at start-up and from `attributes` (known blocking on an async worker (issue 17 item 3: the file-watch service removes it))"
)]
fn read(path: &Path) -> Result<(Option<SystemTime>, Table), AccountsError> {
    let text = std::fs::read_to_string(path).map_err(|source| AccountsError::Read {
        path: path.to_owned(),
        source,
    })?;
    let stamp = std::fs::metadata(path).and_then(|m| m.modified()).ok();
    let mut table = Table::new();
    for doc in serde_norway::Deserializer::from_str(&text) {
        let object = Object::deserialize(doc).map_err(|e| AccountsError::Parse {
            path: path.to_owned(),
            detail: e.to_string(),
        })?;
        collect(object, &mut table);
    }
    Ok((stamp, table))
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
