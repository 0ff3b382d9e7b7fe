//! The device registry of X.509 `additionalValidation: AzureDeviceRegistry`
//! (behaviour.md §3 "X.509"): a client certificate's CN must name an *enabled* device,
//! at CONNECT and for as long as the client stays connected.
//!
//! # File format
//!
//! YAML, or JSON when the file name ends in `.json`:
//!
//! ```yaml
//! devices:
//!   - name: smart-fan      # the client certificate's CN
//!     enabled: true
//!   - name: thermostat     # known but disabled: refused, and disconnected if connected
//!     enabled: false
//! ```
//!
//! A top-level list of devices (without `devices:`) is accepted too. Both fields are
//! required, other fields are errors (a misspelt `enabled` must not pass unnoticed) and a
//! name may appear once. An empty file is invalid (write `devices: []` for none), so a
//! file caught half-written by a non-atomic editor does not read as "no devices".
//!
//! # Reloading
//!
//! A background task `stat`s the file every second (see [`files::stamp`](super::files))
//! on a blocking thread; when it changes the file is read again there and, if valid,
//! replaces the table and bumps a generation counter on a `watch` channel. Checking a
//! device (at CONNECT, on a recheck) only reads the table in memory, never the file. An invalid or missing file keeps the last
//! good table (and says why in the log). Each connection authenticated against the
//! registry holds a [`RegistryWatch`] that checks its device again on every change and
//! every `recheckInterval`; the connection ends when the device is disabled or removed.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Weak};
use std::time::Duration;

use parking_lot::Mutex;
use serde::de::value::{MapAccessDeserializer, SeqAccessDeserializer};
use serde::de::{Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use tokio::sync::watch;
use tokio::time::{Instant, Sleep};

use super::files::{stamp, Stamp};

/// How often the background task looks at the file.
const POLL: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("device registry {}: {source}", .path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("device registry {}: {detail}", .path.display())]
    Parse { path: PathBuf, detail: String },
}

/// One device of the file.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Device {
    name: String,
    enabled: bool,
}

/// The file: `devices: [...]` or a bare list.
struct Listing(Vec<Device>);

impl<'de> Deserialize<'de> for Listing {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Wrapped {
            devices: Vec<Device>,
        }
        struct ListingVisitor;
        impl<'de> Visitor<'de> for ListingVisitor {
            type Value = Listing;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("`devices: [ { name, enabled }, ... ]` or a list of devices")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Listing, A::Error> {
                Vec::<Device>::deserialize(SeqAccessDeserializer::new(seq)).map(Listing)
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Listing, A::Error> {
                Wrapped::deserialize(MapAccessDeserializer::new(map)).map(|w| Listing(w.devices))
            }
        }
        deserializer.deserialize_any(ListingVisitor)
    }
}

/// Device name → enabled.
type Table = HashMap<String, bool>;

/// Parse the registry file's text (`json`: JSON, else YAML).
fn parse(text: &str, json: bool) -> Result<Table, String> {
    if text.trim().is_empty() {
        return Err("the file is empty (write `devices: []` for no device)".into());
    }
    let Listing(devices) = if json {
        serde_json::from_str(text).map_err(|e| e.to_string())?
    } else {
        serde_norway::from_str(text).map_err(|e| e.to_string())?
    };
    let mut table = Table::with_capacity(devices.len());
    for device in devices {
        if table.insert(device.name.clone(), device.enabled).is_some() {
            return Err(format!("device `{}` is listed twice", device.name));
        }
    }
    Ok(table)
}

#[allow(
    clippy::disallowed_methods,
    reason = "at start-up and on the poll task's blocking thread (refresh)"
)]
fn read(path: &Path) -> Result<Table, RegistryError> {
    let text = std::fs::read_to_string(path).map_err(|source| RegistryError::Read {
        path: path.to_owned(),
        source,
    })?;
    let json = path
        .extension()
        .is_some_and(|x| x.eq_ignore_ascii_case("json"));
    parse(&text, json).map_err(|detail| RegistryError::Parse {
        path: path.to_owned(),
        detail,
    })
}

struct State {
    stamp: Option<Stamp>,
    devices: Table,
}

/// The devices of one registry file, kept current.
pub struct DeviceRegistry {
    path: PathBuf,
    recheck_interval: Duration,
    state: Mutex<State>,
    /// Bumped on every reload that changed the table.
    changes: watch::Sender<u64>,
}

impl fmt::Debug for DeviceRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeviceRegistry")
            .field("path", &self.path)
            .field("recheck_interval", &self.recheck_interval)
            .finish()
    }
}

impl DeviceRegistry {
    /// Read the file (it must exist and be valid now) and, inside a Tokio runtime, start
    /// watching it; the task ends with the registry.
    pub fn open(path: &Path, recheck_interval: Duration) -> Result<Arc<Self>, RegistryError> {
        let stamp = stamp(path);
        let devices = read(path)?;
        tracing::info!(
            target: "auth",
            "device registry {}: {}",
            path.display(),
            summary(&devices)
        );
        let registry = Arc::new(DeviceRegistry {
            path: path.to_owned(),
            recheck_interval,
            state: Mutex::new(State { stamp, devices }),
            changes: watch::Sender::new(0),
        });
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(poll(Arc::downgrade(&registry)));
            }
            // Only outside the server (tests): the file is re-read only by `refresh`.
            Err(_) => tracing::debug!(
                target: "auth",
                "device registry {}: no runtime to watch it from",
                path.display()
            ),
        }
        Ok(registry)
    }

    /// Re-read the file if it changed since last looked at; true when a new table was
    /// taken (and announced to the connections).
    fn refresh(&self) -> bool {
        let now = stamp(&self.path);
        let mut state = self.state.lock();
        if now == state.stamp {
            return false;
        }
        // Remember the stamp even when the file is bad: say so once, not every second.
        state.stamp = now;
        match read(&self.path) {
            Ok(devices) => {
                tracing::info!(
                    target: "auth",
                    "device registry {} reloaded: {}",
                    self.path.display(),
                    summary(&devices)
                );
                state.devices = devices;
                drop(state);
                self.changes.send_modify(|generation| *generation += 1);
                true
            }
            Err(e) => {
                tracing::warn!(
                    target: "auth",
                    "{e}; keeping the previous registry ({})",
                    summary(&state.devices)
                );
                false
            }
        }
    }

    /// `Ok` when `device` is an enabled device, else why not (for the log). Reads the
    /// table as last loaded, not the file: this runs on a connection's path.
    pub fn check(&self, device: &str) -> Result<(), String> {
        match self.state.lock().devices.get(device) {
            Some(true) => Ok(()),
            Some(false) => Err(format!(
                "device `{device}` is disabled in the device registry {}",
                self.path.display()
            )),
            None => Err(format!(
                "device `{device}` is not in the device registry {}",
                self.path.display()
            )),
        }
    }
}

fn summary(devices: &Table) -> String {
    let enabled = devices.values().filter(|e| **e).count();
    format!("{} devices, {enabled} enabled", devices.len())
}

async fn poll(registry: Weak<DeviceRegistry>) {
    let mut tick = tokio::time::interval(POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(registry) = registry.upgrade() else {
            return;
        };
        // stat, and on a change read and parse, off the async workers.
        if tokio::task::spawn_blocking(move || registry.refresh())
            .await
            .is_err()
        {
            return; // the runtime is shutting down
        }
    }
}

/// The registry check of one principal: its device (the certificate CN) and where to
/// look it up.
#[derive(Clone)]
pub struct RegistryCheck {
    registry: Arc<DeviceRegistry>,
    device: String,
}

impl RegistryCheck {
    pub fn new(registry: Arc<DeviceRegistry>, device: String) -> Self {
        RegistryCheck { registry, device }
    }

    /// `Ok` while the device is enabled, else why not.
    pub fn check(&self) -> Result<(), String> {
        self.registry.check(&self.device)
    }

    /// What a connection waits on to learn that its device was disabled or removed.
    pub fn watch(&self) -> RegistryWatch {
        RegistryWatch {
            check: self.clone(),
            changes: self.registry.changes.subscribe(),
            announced: true,
            recheck: Box::pin(tokio::time::sleep(self.registry.recheck_interval)),
        }
    }
}

impl PartialEq for RegistryCheck {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.registry, &other.registry) && self.device == other.device
    }
}

impl Eq for RegistryCheck {}

impl fmt::Debug for RegistryCheck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegistryCheck")
            .field("device", &self.device)
            .field("registry", &self.registry.path)
            .finish()
    }
}

/// Per connection: re-checks the device on every registry change and every recheck
/// interval.
pub struct RegistryWatch {
    check: RegistryCheck,
    changes: watch::Receiver<u64>,
    /// False once the channel is closed.
    announced: bool,
    recheck: Pin<Box<Sleep>>,
}

impl RegistryWatch {
    /// Resolves, with why, once the device is no longer enabled. Cancel-safe: the
    /// connection's `select!` drops and re-creates it freely.
    pub async fn revoked(&mut self) -> String {
        loop {
            tokio::select! {
                changed = self.changes.changed(), if self.announced => {
                    // Cannot fail (the check holds the registry and so its sender), but
                    // never spin on a closed channel: rely on the timer alone then.
                    self.announced = changed.is_ok();
                }
                () = &mut self.recheck => {
                    let next = Instant::now() + self.check.registry.recheck_interval;
                    self.recheck.as_mut().reset(next);
                }
            }
            match self.check.check() {
                Ok(()) => tracing::debug!(
                    target: "auth",
                    device = self.check.device,
                    "device still enabled in the registry"
                ),
                Err(why) => return why,
            }
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

    fn table(pairs: &[(&str, bool)]) -> Table {
        pairs.iter().map(|(n, e)| (n.to_string(), *e)).collect()
    }

    #[test]
    fn yaml_and_json_with_or_without_the_devices_key() {
        let expected = table(&[("smart-fan", true), ("thermostat", false)]);
        let yaml = "
devices:
  - name: smart-fan
    enabled: true
  - { name: thermostat, enabled: false }
";
        assert_eq!(parse(yaml, false).unwrap(), expected);
        let list = "- { name: smart-fan, enabled: true }\n- { name: thermostat, enabled: false }\n";
        assert_eq!(parse(list, false).unwrap(), expected);
        let json = r#"{"devices": [{"name": "smart-fan", "enabled": true},
            {"name": "thermostat", "enabled": false}]}"#;
        assert_eq!(parse(json, true).unwrap(), expected);
        // JSON is YAML too, so a registry written as JSON may keep a .yaml name.
        assert_eq!(parse(json, false).unwrap(), expected);
        let json_list =
            r#"[{"name": "smart-fan", "enabled": true}, {"name": "thermostat", "enabled": false}]"#;
        assert_eq!(parse(json_list, true).unwrap(), expected);
        assert_eq!(parse("devices: []", false).unwrap(), Table::new());
    }

    #[test]
    fn invalid_files_say_why() {
        for (text, json, needle) in [
            ("", false, "empty"),
            ("  \n", true, "empty"),
            (
                "devices:\n  - { name: fan, enable: true }\n",
                false,
                "unknown field `enable`",
            ),
            (
                "devices:\n  - { name: fan }\n",
                false,
                "missing field `enabled`",
            ),
            (
                "devices:\n  - { name: fan, enabled: yes please }\n",
                false,
                "invalid type",
            ),
            ("device: []\n", false, "unknown field `device`"),
            ("smart-fan\n", false, "a list of devices"),
            (
                r#"{"devices": [{"name": "fan", "enabled": true},]}"#,
                true,
                "line 1",
            ),
            (
                "- { name: fan, enabled: true }\n- { name: fan, enabled: false }\n",
                false,
                "`fan` is listed twice",
            ),
        ] {
            let err = parse(text, json).expect_err(text);
            assert!(err.contains(needle), "{text:?}: {err}");
        }
    }

    /// Writes `text` to `path` so that the stamp surely changes (new inode by rename).
    fn write(path: &Path, text: &str) {
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, path).unwrap();
    }

    #[test]
    fn a_reload_takes_a_valid_file_and_keeps_the_last_good_one_otherwise() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("devices.yaml");
        assert!(matches!(
            DeviceRegistry::open(&path, Duration::from_secs(600)),
            Err(RegistryError::Read { .. })
        ));
        write(&path, "devices: [ { name: smart-fan, enabled: true } ]\n");
        let registry = DeviceRegistry::open(&path, Duration::from_secs(600)).unwrap();
        let mut changes = registry.changes.subscribe();
        assert_eq!(registry.check("smart-fan"), Ok(()));
        let unknown = registry.check("lamp").unwrap_err();
        assert!(
            unknown.contains("`lamp` is not in the device registry"),
            "{unknown}"
        );
        assert!(!registry.refresh(), "nothing changed");

        write(&path, "devices: [ { name: smart-fan, enabled: false } ]\n");
        assert!(registry.refresh());
        assert!(changes.has_changed().unwrap());
        changes.mark_unchanged();
        let disabled = registry.check("smart-fan").unwrap_err();
        assert!(disabled.contains("`smart-fan` is disabled"), "{disabled}");

        // Invalid, empty or missing: the last good table stays, nobody is told.
        for bad in ["devices: [ { name: smart-fan } ]\n", ""] {
            write(&path, bad);
            assert!(!registry.refresh());
            assert!(registry
                .check("smart-fan")
                .unwrap_err()
                .contains("disabled"));
        }
        std::fs::remove_file(&path).unwrap();
        assert!(!registry.refresh());
        assert!(registry
            .check("smart-fan")
            .unwrap_err()
            .contains("disabled"));
        assert!(!changes.has_changed().unwrap());

        // Valid again (as JSON in a .json file would be too): taken at the next refresh.
        write(&path, "- { name: smart-fan, enabled: true }\n");
        assert!(registry.refresh());
        assert_eq!(registry.check("smart-fan"), Ok(()));
        assert!(changes.has_changed().unwrap());
    }

    /// Opened outside a runtime, so without the poller: the two triggers are seen apart.
    /// On a paused clock (the rechecks are tokio timers; the file is written at once).
    #[test]
    fn a_watch_resolves_at_the_recheck_or_at_a_change_once_the_device_is_not_enabled() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("devices.json");
        write(
            &path,
            r#"{"devices": [{"name": "smart-fan", "enabled": true}]}"#,
        );
        let often = DeviceRegistry::open(&path, Duration::from_millis(200)).unwrap();
        let rarely = DeviceRegistry::open(&path, Duration::from_secs(3600)).unwrap();
        // A paused clock: the rechecks and timeouts below take no real time.
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap();
        runtime.block_on(async {
            let check = RegistryCheck::new(often.clone(), "smart-fan".into());
            assert_eq!(check.check(), Ok(()));
            let mut watch = check.watch();
            // Enabled: the rechecks pass and the watch keeps waiting.
            let waited = tokio::time::timeout(Duration::from_millis(700), watch.revoked()).await;
            assert!(waited.is_err(), "revoked while enabled");

            // Disabled and nobody announces it (the table changed without a generation
            // bump): a recheck finds it.
            often.state.lock().devices.insert("smart-fan".into(), false);
            let why = tokio::time::timeout(Duration::from_secs(5), watch.revoked())
                .await
                .expect("the recheck sees the device disabled");
            assert!(why.contains("disabled"), "{why}");

            // An hour between rechecks: a reload wakes every watch at once.
            write(&path, r#"[{"name": "smart-fan", "enabled": true}]"#);
            let check = RegistryCheck::new(rarely.clone(), "smart-fan".into());
            assert_eq!(check.check(), Ok(()));
            let mut watch = check.watch();
            write(&path, r#"[{"name": "thermostat", "enabled": true}]"#);
            let waited = tokio::time::timeout(Duration::from_millis(300), watch.revoked()).await;
            assert!(waited.is_err(), "nothing announced the change yet");
            assert!(rarely.refresh());
            let why = tokio::time::timeout(Duration::from_secs(1), watch.revoked())
                .await
                .expect("the reload wakes the watch");
            assert!(why.contains("not in the device registry"), "{why}");
        });
    }
}
