//! The Kubernetes manifest form: a multi-document stream of AIO and cert-manager objects.
//!
//! `metadata.name` becomes the resource name and `spec` holds the same fields as the native
//! form. Of an AIO `Broker`, what applies to one process is read (see `broker`:
//! persistence, log level, metrics port, the AIO client limits, and the data folder from an
//! annotation); its fields that describe a Kubernetes deployment are skipped with a
//! warning. Kinds Gatehouse does not use are skipped with a warning, so
//! an AIO user can point Gatehouse at the manifests they already have. Paths in messages
//! start with the document, `document 2 (BrokerListener default).spec.ports[0].port`,
//! counted from 1.

use serde::de::IgnoredAny;
use serde::Deserialize;
use serde_norway::{Deserializer, Value};

use crate::error::Problem;
use crate::model::*;
use crate::raw::{
    self, AuthenticationDoc, AuthorizationDoc, CertificateDoc, IssuerDoc, ListenerDoc,
};
use crate::validate::{Loc, Origins};
use crate::yaml;

mod broker;

/// AIO's API group; `v1` and the older `v1beta1` have the same fields for these kinds.
const AIO_GROUP: &str = "mqttbroker.iotoperations.azure.com";
const AIO_VERSIONS: [&str; 2] = ["v1", "v1beta1"];
const CERT_MANAGER_API: &str = "cert-manager.io/v1";

/// A Kubernetes object with a typed `spec`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Manifest<S> {
    #[serde(rename = "apiVersion")]
    _api_version: String,
    #[serde(rename = "kind")]
    _kind: String,
    metadata: Metadata,
    spec: S,
    /// Present in `kubectl get -o yaml` output; ignored.
    #[serde(default, rename = "status")]
    _status: Option<IgnoredAny>,
}

/// Only the name matters; namespace, labels, annotations etc. are ignored.
#[derive(Deserialize)]
struct Metadata {
    name: String,
    /// Read on a Broker only ([`crate::paths::DATA_DIR_ANNOTATION`]).
    #[serde(default)]
    annotations: std::collections::BTreeMap<String, String>,
}

/// Whether the documents are Kubernetes objects (any of them has `apiVersion` or `kind`).
pub(crate) fn is_manifest_stream(documents: &[Value]) -> bool {
    documents
        .iter()
        .any(|doc| doc.get("apiVersion").is_some() || doc.get("kind").is_some())
}

/// What reading a manifest stream produced.
pub(crate) struct Built {
    pub config: Config,
    pub origins: Origins,
    /// Documents that failed to deserialize; when any, the configuration is incomplete.
    pub type_errors: Vec<Problem>,
    /// Problems found while building (validation adds the rest).
    pub problems: Vec<Problem>,
    pub warnings: Vec<Problem>,
    /// The label of the Broker document read, if any (Gatehouse is one broker).
    pub(crate) broker: Option<String>,
}

/// Which resource a document is.
enum Kind {
    Broker,
    Listener,
    Authentication,
    Authorization,
    Issuer(IssuerKind),
    Certificate,
}

impl Kind {
    /// The manifest kind (both issuer kinds are `Issuer`: they share one namespace).
    fn name(&self) -> &'static str {
        match self {
            Kind::Broker => "Broker",
            Kind::Listener => "BrokerListener",
            Kind::Authentication => "BrokerAuthentication",
            Kind::Authorization => "BrokerAuthorization",
            Kind::Issuer(_) => "Issuer",
            Kind::Certificate => "Certificate",
        }
    }
}

fn classify(api: &str, kind: &str) -> Result<Option<Kind>, String> {
    let (group, version) = api.rsplit_once('/').unwrap_or(("", api));
    if group == AIO_GROUP {
        let resource = match kind {
            "Broker" => Kind::Broker,
            "BrokerListener" => Kind::Listener,
            "BrokerAuthentication" => Kind::Authentication,
            "BrokerAuthorization" => Kind::Authorization,
            _ => return Ok(None),
        };
        if !AIO_VERSIONS.contains(&version) {
            return Err(format!(
                "apiVersion `{api}` is not supported for {kind}; use {AIO_GROUP}/v1 (or v1beta1)"
            ));
        }
        return Ok(Some(resource));
    }
    if group == "cert-manager.io" {
        let resource = match kind {
            "Issuer" => Kind::Issuer(IssuerKind::Issuer),
            "ClusterIssuer" => Kind::Issuer(IssuerKind::ClusterIssuer),
            "Certificate" => Kind::Certificate,
            _ => return Ok(None),
        };
        if api != CERT_MANAGER_API {
            return Err(format!(
                "apiVersion `{api}` is not supported for {kind}; use {CERT_MANAGER_API}"
            ));
        }
        return Ok(Some(resource));
    }
    Ok(None)
}

/// Reads every document; `documents` are the same documents already parsed as values.
pub(crate) fn build(text: &str, documents: &[Value]) -> Built {
    let mut built = Built {
        config: Config {
            data_dir: raw::default_data_dir(),
            listeners: Vec::new(),
            broker: BrokerLimits::default(),
            diagnostics: Diagnostics::default(),
            authentications: Vec::new(),
            authorizations: Vec::new(),
            issuers: Vec::new(),
            certificates: Vec::new(),
            secrets: Default::default(),
            config_maps: Default::default(),
            persistence: None,
            cluster: None,
            paths: Default::default(),
        },
        origins: Origins {
            manifest: true,
            ..Origins::default()
        },
        type_errors: Vec::new(),
        problems: Vec::new(),
        warnings: Vec::new(),
        broker: None,
    };
    for ((index, value), document) in documents
        .iter()
        .enumerate()
        .zip(Deserializer::from_str(text))
    {
        if value.is_null() {
            continue; // an empty document, e.g. after a trailing `---`
        }
        let text_of = |key: &str| value.get(key).and_then(Value::as_str);
        let name = value
            .get("metadata")
            .and_then(|m| m.get("name"))
            .and_then(Value::as_str);
        let label = match (text_of("kind"), name) {
            (Some(kind), Some(name)) => format!("document {} ({kind} {name})", index + 1),
            (Some(kind), None) => format!("document {} ({kind})", index + 1),
            _ => format!("document {}", index + 1),
        };
        let (Some(api), Some(kind)) = (text_of("apiVersion"), text_of("kind")) else {
            built.problems.push(Problem::new(
                label,
                "not a Kubernetes object: every document of a manifest stream needs \
                 `apiVersion` and `kind` (the native form is one document without them)",
            ));
            continue;
        };
        match classify(api, kind) {
            Err(message) => built
                .problems
                .push(Problem::new(format!("{label}.apiVersion"), message)),
            Ok(None) => built.warnings.push(Problem::new(
                label,
                format!("skipped: {api} {kind} is not used by Gatehouse"),
            )),
            Ok(Some(resource)) => add(&mut built, resource, document, label, name),
        }
    }
    built
}

/// Deserializes one document of a known kind and adds its resource.
fn add(
    built: &mut Built,
    kind: Kind,
    document: Deserializer<'_>,
    label: String,
    name: Option<&str>,
) {
    let kind_name = kind.name();
    let loc = Loc {
        spec: format!("{label}.spec"),
        name: format!("{label}.metadata.name"),
    };
    let result = match kind {
        Kind::Broker => typed::<broker::BrokerSpec>(document, &label, built, |m, b| {
            broker::add(m.spec, &m.metadata, &label, &loc, b)
        }),
        Kind::Listener => typed::<ListenerDoc>(document, &label, built, |m, b| {
            let listener = m.spec.build(m.metadata.name, &loc, &mut b.problems);
            b.config.listeners.push(listener);
            b.origins.listeners.push(loc.clone());
        }),
        Kind::Authentication => typed::<AuthenticationDoc>(document, &label, built, |m, b| {
            b.config.authentications.push(m.spec.build(m.metadata.name));
            b.origins.authentications.push(loc.clone());
        }),
        Kind::Authorization => typed::<AuthorizationDoc>(document, &label, built, |m, b| {
            b.config.authorizations.push(m.spec.build(m.metadata.name));
            b.origins.authorizations.push(loc.clone());
        }),
        Kind::Issuer(issuer_kind) => typed::<IssuerDoc>(document, &label, built, |m, b| {
            if m.spec.kind.is_some() {
                b.problems.push(Problem::new(
                    loc.at("kind"),
                    "the issuer kind is the manifest's `kind`; remove it from spec",
                ));
            }
            let issuer = m
                .spec
                .build(m.metadata.name, issuer_kind, &loc, &mut b.problems);
            b.config.issuers.push(issuer);
            b.origins.issuers.push(loc.clone());
        }),
        Kind::Certificate => typed::<CertificateDoc>(document, &label, built, |m, b| {
            b.config.certificates.push(m.spec.build(m.metadata.name));
            b.origins.certificates.push(loc.clone());
        }),
    };
    match (result, name) {
        (None, Some(name)) => built.origins.unreadable.push((kind_name, name.to_owned())),
        (None, None) => {}
        (Some(name_given), _) => {
            if name_given {
                built.problems.push(Problem::new(
                    loc.at("name"),
                    "the name comes from metadata.name; remove it from spec",
                ));
            }
        }
    }
}

/// A spec type that may carry a (native-form only) `name`.
trait Named {
    fn has_name(&self) -> bool;
}

macro_rules! named {
    ($($doc:ty),+) => { $( impl Named for $doc { fn has_name(&self) -> bool { self.name.is_some() } } )+ };
}
impl Named for broker::BrokerSpec {
    fn has_name(&self) -> bool {
        false
    }
}

named!(
    ListenerDoc,
    AuthenticationDoc,
    AuthorizationDoc,
    IssuerDoc,
    CertificateDoc
);

/// Deserializes a `Manifest<S>` and hands it to `add`; returns whether `spec.name` was set,
/// or `None` after recording a type error.
fn typed<'de, S: Deserialize<'de> + Named>(
    document: Deserializer<'de>,
    label: &str,
    built: &mut Built,
    add: impl FnOnce(Manifest<S>, &mut Built),
) -> Option<bool> {
    match yaml::typed::<Manifest<S>>(document, label) {
        Ok(manifest) => {
            let name_given = manifest.spec.has_name();
            add(manifest, built);
            Some(name_given)
        }
        Err(problem) => {
            built.type_errors.push(problem);
            None
        }
    }
}
