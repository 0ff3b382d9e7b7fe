//! KEYNOTIFY registrations (statestore.md §4.1): who watches which key, bounded per client.

use std::sync::Arc;

use bytes::Bytes;

use super::Store;

impl Store {
    /// Whether registering `key` for `client` would take it past
    /// [`Quotas::key_notify_per_client`]; a key it watches already never is.
    pub(super) fn registration_refused(&self, client: &str, key: &[u8]) -> bool {
        let Some(max) = self.quotas.key_notify_per_client else {
            return false;
        };
        match self.watched.get(client) {
            Some(keys) => !keys.contains(key) && keys.len() >= max,
            None => max == 0,
        }
    }

    /// KEYNOTIFY: `client` watches `key` (idempotent, §4.1). Returns whether it is new.
    pub fn register(&mut self, client: &str, key: Bytes) -> bool {
        let client: Arc<str> = match self.watched.get_key_value(client) {
            Some((c, _)) => c.clone(),
            None => client.into(),
        };
        let added = self
            .watchers
            .entry(key.clone())
            .or_default()
            .insert(client.clone());
        self.watched.entry(client).or_default().insert(key);
        added
    }

    /// KEYNOTIFY STOP: returns whether there was a registration to remove.
    pub fn unregister(&mut self, client: &str, key: &[u8]) -> bool {
        let Some(keys) = self.watched.get_mut(client) else {
            return false;
        };
        if !keys.remove(key) {
            return false;
        }
        if keys.is_empty() {
            self.watched.remove(client);
        }
        if let Some(clients) = self.watchers.get_mut(key) {
            clients.remove(client);
            if clients.is_empty() {
                self.watchers.remove(key);
            }
        }
        true
    }

    /// A disconnect drops all of the client's registrations (§4.1, §8 vector 14).
    pub fn drop_client(&mut self, client: &str) {
        let Some(keys) = self.watched.remove(client) else {
            return;
        };
        for key in keys {
            if let Some(clients) = self.watchers.get_mut(&key) {
                clients.remove(client);
                if clients.is_empty() {
                    self.watchers.remove(&key);
                }
            }
        }
    }

    /// Drop the registrations of `client` whose key `keep` no longer lets through (the
    /// client's principal or the policy changed: security.md invariant 3). Returns the
    /// dropped keys.
    pub fn retain_registrations(
        &mut self,
        client: &str,
        keep: impl Fn(&[u8]) -> bool,
    ) -> Vec<Bytes> {
        let dropped: Vec<Bytes> = match self.watched.get(client) {
            Some(keys) => keys.iter().filter(|k| !keep(k)).cloned().collect(),
            None => return Vec::new(),
        };
        for key in &dropped {
            self.unregister(client, key);
        }
        dropped
    }

    /// The keys `client` watches (any order).
    pub fn registrations(&self, client: &str) -> impl Iterator<Item = &Bytes> {
        self.watched.get(client).into_iter().flatten()
    }

    /// The clients watching `key`, in client id order.
    pub fn watchers(&self, key: &[u8]) -> impl Iterator<Item = &str> {
        self.watchers
            .get(key)
            .into_iter()
            .flat_map(|clients| clients.iter().map(|c| &**c))
    }
}
