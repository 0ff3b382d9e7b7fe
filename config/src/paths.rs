//! Where each resource of a [`Config`](crate::Config) is in the YAML, so that every message
//! about it (validation, `gatehouse check`, start-up, `gatehouse explain`) names the same
//! place: `listeners[1].ports[0]` in the native form, `document 2 (BrokerListener
//! default).spec.ports[0]` in the manifest form.
//!
//! Built while loading ([`load_file`](crate::load_file) / [`load_str`](crate::load_str))
//! and carried in [`Config::paths`](crate::Config::paths); a `Config` built in code has the
//! native paths ([`Paths::default`]).

/// Where one resource is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Loc {
    /// Prefix of the resource's fields: `listeners[1]` or `document 2 (...).spec`.
    pub spec: String,
    /// Path of its name: `listeners[1].name` or `document 2 (...).metadata.name`.
    pub name: String,
}

impl Loc {
    pub(crate) fn native(list: &str, index: usize) -> Loc {
        Loc {
            spec: format!("{list}[{index}]"),
            name: format!("{list}[{index}].name"),
        }
    }

    /// `<spec>.<suffix>`.
    pub fn at(&self, suffix: impl AsRef<str>) -> String {
        format!("{}.{}", self.spec, suffix.as_ref())
    }

    /// The manifest document, `document 3 (BrokerAuthorization policy)`; `None` in the
    /// native form.
    pub fn document(&self) -> Option<&str> {
        self.spec
            .strip_suffix(".spec")
            .filter(|d| d.starts_with("document "))
    }
}

/// Where every resource of a configuration is; the default is the native form.
///
/// Equality ignores it (every two `Paths` are equal): it says where things were written,
/// not how the broker behaves, so the same configuration in the native and the manifest
/// form compares equal, and a reload that only moves a document changes nothing.
#[derive(Debug, Clone, Default)]
pub struct Paths {
    /// Read from a manifest stream.
    pub manifest: bool,
    pub listeners: Vec<Loc>,
    pub authentications: Vec<Loc>,
    pub authorizations: Vec<Loc>,
    pub issuers: Vec<Loc>,
    pub certificates: Vec<Loc>,
    /// Path of the persistence settings when not `persistence` (a Broker manifest's
    /// `document N (Broker name).spec.persistence`).
    pub persistence: Option<String>,
    /// The Broker document's spec, `document 1 (Broker default).spec`, when the manifest
    /// stream has one: where `diagnostics` and `advanced` are.
    pub broker: Option<String>,
    /// Manifest form: resources whose document could not be read (kind, name). References
    /// to them are not reported as missing, since the document's own error says more.
    pub(crate) unreadable: Vec<(&'static str, String)>,
}

impl PartialEq for Paths {
    fn eq(&self, _: &Paths) -> bool {
        true
    }
}

impl Eq for Paths {}

impl Paths {
    fn pick(locs: &[Loc], list: &str, index: usize) -> Loc {
        locs.get(index)
            .cloned()
            .unwrap_or_else(|| Loc::native(list, index))
    }

    /// Listener `i` (in [`Config::listeners`](crate::Config::listeners) order).
    pub fn listener(&self, i: usize) -> Loc {
        Self::pick(&self.listeners, "listeners", i)
    }

    /// Port `port` of listener `listener`: `listeners[0].ports[1]`.
    pub fn port(&self, listener: usize, port: usize) -> String {
        self.listener(listener).at(format!("ports[{port}]"))
    }

    pub fn authentication(&self, i: usize) -> Loc {
        Self::pick(&self.authentications, "authentications", i)
    }

    pub fn authorization(&self, i: usize) -> Loc {
        Self::pick(&self.authorizations, "authorizations", i)
    }

    pub fn issuer(&self, i: usize) -> Loc {
        Self::pick(&self.issuers, "issuers", i)
    }

    pub fn certificate(&self, i: usize) -> Loc {
        Self::pick(&self.certificates, "certificates", i)
    }

    /// The persistence settings: `persistence` or the Broker's `spec.persistence`.
    pub fn persistence(&self) -> String {
        self.persistence
            .clone()
            .unwrap_or_else(|| "persistence".into())
    }

    /// A `diagnostics` field, `suffix` like `metrics.prometheusPort`: `diagnostics.<suffix>`
    /// or, in a manifest stream, the Broker's `spec.diagnostics.<suffix>` (which is where it
    /// is set, or would be).
    pub fn diagnostics(&self, suffix: &str) -> String {
        match (&self.broker, self.manifest) {
            (Some(spec), _) => format!("{spec}.diagnostics.{suffix}"),
            (None, true) => format!("Broker spec.diagnostics.{suffix}"),
            (None, false) => format!("diagnostics.{suffix}"),
        }
    }

    /// A broker limit, `field` as in `broker:` (`maxPacketSizeBytes`,
    /// `subscriberQueueLimit.length`): `broker.<field>`, or the Broker's
    /// `spec.advanced.clients.<field>` in a manifest stream (the AIO limits are set there;
    /// the others keep their defaults in that form).
    pub fn limit(&self, field: &str) -> String {
        match &self.broker {
            Some(spec) if self.manifest => format!("{spec}.advanced.clients.{field}"),
            _ => format!("broker.{field}"),
        }
    }

    /// The data folder: `dataDir`, or in a manifest stream the Broker's annotation.
    pub fn data_dir(&self) -> String {
        match (&self.broker, self.manifest) {
            (Some(spec), _) => {
                let document = spec.strip_suffix(".spec").unwrap_or(spec);
                format!("{document}.metadata.annotations.{DATA_DIR_ANNOTATION}")
            }
            (None, true) => format!("Broker metadata.annotations.{DATA_DIR_ANNOTATION}"),
            (None, false) => "dataDir".into(),
        }
    }

    /// Whether the document of resource `name` of `kind` (`BrokerAuthentication`, ...)
    /// could not be read.
    pub(crate) fn is_unreadable(&self, kind: &str, name: &str) -> bool {
        self.unreadable.iter().any(|(k, n)| *k == kind && n == name)
    }
}

/// The annotation of an AIO `Broker` manifest that sets the data folder (the native form's
/// `dataDir`): a Broker has no such field, and an annotation keeps the manifest valid for
/// AIO.
pub const DATA_DIR_ANNOTATION: &str = "gatehouse/data-dir";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn native_paths_by_default() {
        let paths = Paths::default();
        assert_eq!(paths.port(1, 2), "listeners[1].ports[2]");
        assert_eq!(paths.authentication(0).name, "authentications[0].name");
        assert_eq!(paths.authorization(0).document(), None);
        assert_eq!(
            paths.diagnostics("metrics.prometheusPort"),
            "diagnostics.metrics.prometheusPort"
        );
        assert_eq!(paths.persistence(), "persistence");
        assert_eq!(paths.data_dir(), "dataDir");
        assert_eq!(
            paths.limit("maxPacketSizeBytes"),
            "broker.maxPacketSizeBytes"
        );
    }

    #[test]
    fn broker_manifest_paths() {
        let paths = Paths {
            manifest: true,
            broker: Some("document 1 (Broker default).spec".into()),
            ..Paths::default()
        };
        assert_eq!(
            paths.diagnostics("metrics.prometheusPort"),
            "document 1 (Broker default).spec.diagnostics.metrics.prometheusPort"
        );
        assert_eq!(
            paths.limit("maxPacketSizeBytes"),
            "document 1 (Broker default).spec.advanced.clients.maxPacketSizeBytes"
        );
        assert_eq!(
            paths.data_dir(),
            "document 1 (Broker default).metadata.annotations.gatehouse/data-dir"
        );
    }

    #[test]
    fn manifest_document_label() {
        let loc = Loc {
            spec: "document 3 (BrokerAuthorization p)".to_owned() + ".spec",
            name: "document 3 (BrokerAuthorization p).metadata.name".into(),
        };
        assert_eq!(loc.document(), Some("document 3 (BrokerAuthorization p)"));
    }
}
