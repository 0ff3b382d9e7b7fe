//! Which keys persist: `persistence.stateStore` compiled once.
//!
//! - `None`: no key. AIO's dynamic settings exist only inside the `Custom` settings, so the
//!   user property asks for nothing here.
//! - `All`: every key.
//! - `Custom`: keys matching `stateStoreResources` (`Pattern` globs, as authorization
//!   matches them; `String` exact; `Binary` base64-decoded exact), plus keys whose latest
//!   SET carried the dynamic user property, when `dynamic.mode` is `Enabled`.
//!
//! "Latest SET decides" (statestore.md §6.4): the flag is the one of the SET that wrote the
//! current value, kept in [`Entry::persist`](super::super::store::Entry::persist).

use std::collections::HashSet;

use base64::Engine as _;
use gatehouse_config::glob::Glob;
use gatehouse_config::{DynamicMode, KeyType, Persistence, PersistenceMode};

use crate::storage::PersistError;

/// The compiled state store persistence policy.
#[derive(Debug, Clone)]
pub struct PersistPolicy {
    mode: Mode,
    /// `dynamicSettings`: the user property that asks for persistence.
    property: (String, String),
}

#[derive(Debug, Clone)]
enum Mode {
    Nothing,
    Everything,
    Custom {
        /// Every `Pattern` key, matched in one pass.
        patterns: Vec<Glob>,
        /// `String` keys and decoded `Binary` keys.
        exact: HashSet<Vec<u8>>,
        /// `dynamic.mode: Enabled`.
        dynamic: bool,
    },
}

impl PersistPolicy {
    /// Compiles the policy. A validated configuration always compiles; otherwise the error
    /// names the YAML path of the bad key.
    pub fn new(config: &Persistence) -> Result<PersistPolicy, PersistError> {
        let property = (
            config.dynamic_settings.user_property_key.clone(),
            config.dynamic_settings.user_property_value.clone(),
        );
        let mode = match config.state_store.mode {
            PersistenceMode::None => Mode::Nothing,
            PersistenceMode::All => Mode::Everything,
            PersistenceMode::Custom => {
                let Some(settings) = config.state_store.custom() else {
                    return Err(PersistError::Settings {
                        path: "persistence.stateStore.stateStoreSettings".into(),
                        reason: "required with mode Custom".into(),
                    });
                };
                let mut patterns = Vec::new();
                let mut exact = HashSet::new();
                for (r, resource) in settings.state_store_resources.iter().enumerate() {
                    for (k, key) in resource.keys.iter().enumerate() {
                        let fail = |reason: String| PersistError::Settings {
                            path: format!(
                                "persistence.stateStore.stateStoreSettings.\
                                 stateStoreResources[{r}].keys[{k}]"
                            ),
                            reason,
                        };
                        match resource.key_type {
                            KeyType::Pattern => {
                                patterns.push(Glob::new(key).map_err(|e| fail(e.to_string()))?);
                            }
                            KeyType::String => {
                                exact.insert(key.as_bytes().to_vec());
                            }
                            KeyType::Binary => {
                                let bytes = base64::engine::general_purpose::STANDARD
                                    .decode(key)
                                    .map_err(|e| fail(format!("invalid base64: {e}")))?;
                                exact.insert(bytes);
                            }
                        }
                    }
                }
                Mode::Custom {
                    patterns,
                    exact,
                    dynamic: settings.dynamic.mode == DynamicMode::Enabled,
                }
            }
        };
        Ok(PersistPolicy { mode, property })
    }

    /// Whether a key whose latest SET had `dynamic_flag` (see [`Self::dynamic_flag`])
    /// persists. Non-UTF-8 keys match only `Binary` keys (and `All`, and the flag).
    pub fn wants(&self, key: &[u8], dynamic_flag: bool) -> bool {
        match &self.mode {
            Mode::Nothing => false,
            Mode::Everything => true,
            Mode::Custom {
                patterns,
                exact,
                dynamic,
            } => {
                (*dynamic && dynamic_flag)
                    || exact.contains(key)
                    || std::str::from_utf8(key)
                        .is_ok_and(|k| patterns.iter().any(|g| g.is_match(k)))
            }
        }
    }

    /// The flag to store with a SET ([`super::super::store::Context::persist`]): the SET
    /// carried the configured user property with the configured value (both compared
    /// exactly) and dynamic persistence is enabled. Always false with mode None or All.
    pub fn dynamic_flag(&self, user_properties: &[(String, String)]) -> bool {
        matches!(self.mode, Mode::Custom { dynamic: true, .. })
            && user_properties
                .iter()
                .any(|(k, v)| *k == self.property.0 && *v == self.property.1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(yaml: &str) -> PersistPolicy {
        let config: Persistence = serde_norway::from_str(yaml).unwrap();
        PersistPolicy::new(&config).unwrap()
    }

    fn custom(resources: &str, dynamic: &str) -> PersistPolicy {
        policy(&format!(
            "maxSize: 1Gi\nstateStore:\n  mode: Custom\n  stateStoreSettings:\n    \
             stateStoreResources: {resources}\n    dynamic: {{ mode: {dynamic} }}\n"
        ))
    }

    fn props(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    const ASKS: &[(&str, &str)] = &[("other", "x"), ("aio-persistence", "true")];

    #[test]
    fn mode_none_persists_nothing_even_when_asked() {
        for p in [
            policy("maxSize: 1Gi"),
            policy("maxSize: 1Gi\nstateStore: { mode: None }"),
        ] {
            assert!(!p.wants(b"k", false));
            assert!(!p.wants(b"k", true));
            assert!(!p.dynamic_flag(&props(ASKS)));
        }
    }

    #[test]
    fn mode_all_persists_every_key() {
        let p = policy("maxSize: 1Gi\nstateStore: { mode: All }");
        assert!(p.wants(b"k", false));
        assert!(p.wants(b"\xff\x00", false));
        assert!(p.wants(b"k", true));
        assert!(!p.dynamic_flag(&props(ASKS)), "nothing to ask for");
    }

    #[test]
    fn custom_matches_patterns_strings_and_binary_keys() {
        let p = custom(
            "[ { keyType: Pattern, keys: ['config/*', 'lock-[0-9]', 'x?z'] }, \
               { keyType: String, keys: ['exact*'] }, \
               { keyType: Binary, keys: ['AP8='] } ]",
            "Disabled",
        );
        for key in [
            &b"config/a"[..],
            b"config/a/b",
            b"lock-7",
            b"xyz",
            b"exact*",
            b"\x00\xff",
        ] {
            assert!(p.wants(key, false), "{}", key.escape_ascii());
        }
        for key in [
            &b"config"[..],
            b"lock-x",
            b"lock-77",
            b"exactly",
            b"exact",
            b"\x00",
            b"\x00\xff\x00",
            b"config/\xff",
        ] {
            assert!(!p.wants(key, false), "{}", key.escape_ascii());
        }
    }

    #[test]
    fn custom_honours_the_dynamic_flag_only_when_enabled() {
        let on = custom("[ { keyType: String, keys: [listed] } ]", "Enabled");
        assert!(on.dynamic_flag(&props(ASKS)));
        assert!(on.wants(b"other", true));
        assert!(!on.wants(b"other", false));
        assert!(on.wants(b"listed", false));

        let off = custom("[ { keyType: String, keys: [listed] } ]", "Disabled");
        assert!(!off.dynamic_flag(&props(ASKS)));
        assert!(!off.wants(b"other", true));
        assert!(off.wants(b"listed", false));
    }

    #[test]
    fn dynamic_only_custom_persists_what_clients_ask_for() {
        let p = policy("maxSize: 1Gi\nstateStore: { mode: Custom, stateStoreSettings: {} }");
        assert!(p.dynamic_flag(&props(ASKS)));
        assert!(p.wants(b"k", true));
        assert!(!p.wants(b"k", false));
    }

    #[test]
    fn the_user_property_is_compared_exactly_and_is_configurable() {
        let p = custom("[]", "Enabled");
        assert!(!p.dynamic_flag(&props(&[])));
        assert!(!p.dynamic_flag(&props(&[("aio-persistence", "True")])));
        assert!(!p.dynamic_flag(&props(&[("AIO-persistence", "true")])));
        assert!(!p.dynamic_flag(&props(&[("aio-persistence", "false")])));

        let p = policy(
            "maxSize: 1Gi\ndynamicSettings: { userPropertyKey: keep, userPropertyValue: yes }\n\
             stateStore: { mode: Custom, stateStoreSettings: {} }",
        );
        assert!(p.dynamic_flag(&props(&[("keep", "yes")])));
        assert!(!p.dynamic_flag(&props(&[("aio-persistence", "true")])));
    }

    #[test]
    fn custom_without_settings_is_an_error_not_a_panic() {
        let config: Persistence =
            serde_norway::from_str("maxSize: 1Gi\nstateStore: { mode: Custom }").unwrap();
        assert!(matches!(
            PersistPolicy::new(&config),
            Err(PersistError::Settings { .. })
        ));
        let config: Persistence = serde_norway::from_str(
            "maxSize: 1Gi\nstateStore: { mode: Custom, stateStoreSettings: { \
             stateStoreResources: [ { keyType: Binary, keys: ['!'] } ] } }",
        )
        .unwrap();
        let err = PersistPolicy::new(&config).unwrap_err();
        assert!(
            err.to_string().contains("stateStoreResources[0].keys[0]"),
            "{err}"
        );
    }
}
