//! Authentication resources (AIO `BrokerAuthentication`): an ordered chain of methods.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::enums::ci_enum;

/// Default time limit of one call to a custom authentication server.
pub const DEFAULT_CUSTOM_AUTH_TIMEOUT: Duration = Duration::from_secs(10);

/// Default interval at which connected X.509 devices are checked against the device
/// registry again (AIO: every 10 minutes).
pub const DEFAULT_DEVICE_RECHECK_INTERVAL: Duration = Duration::from_secs(600);

/// A named authentication chain, linked to ports by `authenticationRef`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authentication {
    /// 3–63 characters of `[a-z0-9-]`, unique among authentications.
    pub name: String,
    /// Tried in order: the first method the credentials are relevant to decides.
    pub authentication_methods: Vec<AuthenticationMethod>,
}

impl Authentication {
    /// Whether the chain has an X.509 method (which needs TLS on the port).
    pub fn uses_x509(&self) -> bool {
        self.authentication_methods
            .iter()
            .any(|m| matches!(m, AuthenticationMethod::X509(_)))
    }

    /// The config maps the chain reads certificates from: X.509's trusted client CAs and
    /// the custom servers' CAs.
    pub fn config_maps(&self) -> impl Iterator<Item = &str> {
        self.authentication_methods.iter().filter_map(|m| match m {
            AuthenticationMethod::X509(x) => Some(x.trusted_client_ca_cert.as_str()),
            AuthenticationMethod::Custom(c) => c.ca_cert_config_map.as_deref(),
            AuthenticationMethod::ServiceAccountToken(_) | AuthenticationMethod::Password(_) => {
                None
            }
        })
    }
}

/// One method of a chain, with its settings. In YAML: `method` plus the one matching
/// settings object (`customSettings`, `serviceAccountTokenSettings`, `x509Settings` or,
/// beyond AIO, `passwordSettings`).
///
/// Deserialized through `RawMethod` (see `yaml::map_try_from`: errors keep their line).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthenticationMethod {
    Custom(CustomSettings),
    ServiceAccountToken(ServiceAccountTokenSettings),
    X509(X509Settings),
    /// Gatehouse extension (not in AIO): user names and password hashes from a file.
    Password(PasswordSettings),
}

impl AuthenticationMethod {
    /// The YAML `method` value.
    pub fn kind(&self) -> AuthenticationMethodKind {
        match self {
            AuthenticationMethod::Custom(_) => AuthenticationMethodKind::Custom,
            AuthenticationMethod::ServiceAccountToken(_) => {
                AuthenticationMethodKind::ServiceAccountToken
            }
            AuthenticationMethod::X509(_) => AuthenticationMethodKind::X509,
            AuthenticationMethod::Password(_) => AuthenticationMethodKind::Password,
        }
    }
}

ci_enum! {
    /// `authenticationMethods[].method`.
    pub enum AuthenticationMethodKind("authentication method") {
        Custom = "Custom",
        ServiceAccountToken = "ServiceAccountToken",
        X509 = "X509",
        Password = "Password",
    }
}

crate::yaml::map_try_from!(AuthenticationMethod, RawMethod, "an authentication method");

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawMethod {
    method: AuthenticationMethodKind,
    #[serde(default)]
    custom_settings: Option<CustomSettings>,
    #[serde(default)]
    service_account_token_settings: Option<ServiceAccountTokenSettings>,
    #[serde(default)]
    x509_settings: Option<X509Settings>,
    #[serde(default)]
    password_settings: Option<PasswordSettings>,
}

impl TryFrom<RawMethod> for AuthenticationMethod {
    type Error = String;

    /// AIO: "only one method is supported for each entry"; settings of another method are
    /// an error rather than silently ignored.
    fn try_from(raw: RawMethod) -> Result<Self, String> {
        use AuthenticationMethodKind as Kind;
        let present: Vec<&str> = [
            raw.custom_settings.as_ref().map(|_| "customSettings"),
            raw.service_account_token_settings
                .as_ref()
                .map(|_| "serviceAccountTokenSettings"),
            raw.x509_settings.as_ref().map(|_| "x509Settings"),
            raw.password_settings.as_ref().map(|_| "passwordSettings"),
        ]
        .into_iter()
        .flatten()
        .collect();
        let (own, method) = match raw.method {
            Kind::Custom => (
                "customSettings",
                raw.custom_settings.map(AuthenticationMethod::Custom),
            ),
            Kind::ServiceAccountToken => (
                "serviceAccountTokenSettings",
                raw.service_account_token_settings
                    .map(AuthenticationMethod::ServiceAccountToken),
            ),
            // Every X.509 setting has a default, so the settings object may be omitted.
            Kind::X509 => (
                "x509Settings",
                Some(AuthenticationMethod::X509(
                    raw.x509_settings.unwrap_or_default(),
                )),
            ),
            Kind::Password => (
                "passwordSettings",
                raw.password_settings.map(AuthenticationMethod::Password),
            ),
        };
        if let Some(other) = present.iter().find(|name| **name != own) {
            return Err(format!(
                "method {} takes `{own}`, not `{other}` (one method per entry)",
                raw.method
            ));
        }
        method.ok_or_else(|| format!("method {} needs `{own}`", raw.method))
    }
}

/// `customSettings`: an HTTPS server implementing the AIO custom authentication API 0.5.0.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CustomSettings {
    /// Must start with `https://`.
    pub endpoint: String,
    /// Config map with the CA(s) that verify the server; absent = system roots.
    #[serde(default)]
    pub ca_cert_config_map: Option<String>,
    /// Client certificate for mTLS.
    #[serde(default)]
    pub auth: Option<CustomAuth>,
    /// Added verbatim to every request; values may be credentials, so `Debug` hides them.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Gatehouse extension: time limit of one call; default 10s. A timeout counts as a
    /// communication failure (the chain moves on).
    #[serde(
        default = "default_custom_timeout",
        deserialize_with = "crate::duration::deserialize"
    )]
    pub timeout: Duration,
}

fn default_custom_timeout() -> Duration {
    DEFAULT_CUSTOM_AUTH_TIMEOUT
}

impl fmt::Debug for CustomSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let headers: BTreeMap<&str, &str> = self
            .headers
            .keys()
            .map(|k| (k.as_str(), "<redacted>"))
            .collect();
        f.debug_struct("CustomSettings")
            .field("endpoint", &self.endpoint)
            .field("ca_cert_config_map", &self.ca_cert_config_map)
            .field("auth", &self.auth)
            .field("headers", &headers)
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// `customSettings.auth`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CustomAuth {
    pub x509: CustomAuthX509,
}

/// `customSettings.auth.x509`: the broker's client certificate for the custom server.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CustomAuthX509 {
    /// Secret with `tls.crt` and `tls.key`.
    pub secret_ref: String,
    /// Shown in AIO's Kubernetes examples; accepted and unused (Gatehouse has no namespaces).
    #[serde(default)]
    pub namespace: Option<String>,
}

/// `serviceAccountTokenSettings`: Kubernetes service account tokens (`K8S-SAT`).
///
/// Validation backend (Gatehouse extensions): `jwks` for offline checking, otherwise the
/// TokenReview API (`tokenReview`, in-cluster by default). Not both.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServiceAccountTokenSettings {
    /// Accepted audiences; at least one. A token's `aud` must contain one of them.
    pub audiences: Vec<String>,
    #[serde(default)]
    pub token_review: Option<TokenReview>,
    #[serde(default)]
    pub jwks: Option<Jwks>,
    /// Offline source of service-account annotations (`aio-broker-auth/*` → attributes).
    #[serde(default)]
    pub service_accounts: Option<ServiceAccountsFile>,
}

/// `tokenReview`: validate tokens with the Kubernetes TokenReview API.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TokenReview {
    /// Absent = the in-cluster service account.
    #[serde(default)]
    pub kubeconfig: Option<PathBuf>,
}

/// `jwks`: validate tokens offline against the service-account issuer's keys.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Jwks {
    /// JWKS file; absent = fetched by OIDC discovery from `issuer` (then `https://`).
    #[serde(default)]
    pub file: Option<PathBuf>,
    /// Expected `iss` claim, e.g. `https://kubernetes.default.svc`.
    pub issuer: String,
}

/// `serviceAccounts`: a YAML file mapping service accounts to their annotations.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServiceAccountsFile {
    pub file: PathBuf,
}

/// `x509Settings`: client certificates verified in the TLS handshake.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct X509Settings {
    /// Config map of trusted client CAs (every certificate in it); default `client-ca`.
    /// Missing at start-up is an error (unlike a TLS secret, nothing waits for it).
    #[serde(default = "default_client_ca")]
    pub trusted_client_ca_cert: String,
    /// Default `None`.
    #[serde(default)]
    pub additional_validation: AdditionalValidation,
    /// Label → subject and attributes; the first certificate from the leaf up whose subject
    /// matches an entry gives the principal its attributes.
    #[serde(default)]
    pub authorization_attributes: BTreeMap<String, X509Attributes>,
    /// Gatehouse extension: the device list `additionalValidation: AzureDeviceRegistry`
    /// checks (required then).
    #[serde(default)]
    pub device_registry: Option<DeviceRegistry>,
}

fn default_client_ca() -> String {
    "client-ca".into()
}

impl Default for X509Settings {
    fn default() -> Self {
        X509Settings {
            trusted_client_ca_cert: default_client_ca(),
            additional_validation: AdditionalValidation::default(),
            authorization_attributes: BTreeMap::new(),
            device_registry: None,
        }
    }
}

/// One `authorizationAttributes` entry.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct X509Attributes {
    /// Distinguished name, e.g. `CN = Contoso Root CA Cert, OU = Engineering, C = US`.
    pub subject: String,
    pub attributes: BTreeMap<String, String>,
}

ci_enum! {
    /// `x509Settings.additionalValidation`.
    #[derive(Default)]
    pub enum AdditionalValidation("additional validation") {
        #[default]
        None = "None",
        /// The leaf CN must name an enabled device in the device registry file.
        AzureDeviceRegistry = "AzureDeviceRegistry",
    }
}

/// `x509Settings.deviceRegistry` (Gatehouse extension).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DeviceRegistry {
    /// YAML or JSON list of devices (name, enabled), reloaded when it changes.
    pub file: PathBuf,
    /// How often every connected device is checked again (besides on every change of
    /// the file); default 10m. A disabled or removed device is disconnected.
    #[serde(
        default = "default_device_recheck_interval",
        deserialize_with = "crate::duration::deserialize"
    )]
    pub recheck_interval: Duration,
}

fn default_device_recheck_interval() -> Duration {
    DEFAULT_DEVICE_RECHECK_INTERVAL
}

// --- Password authentication (issue 16; a Gatehouse extension, not in AIO) ---

/// `passwordSettings`: user names and salted password hashes from a file in the format of
/// Mosquitto's `password_file` (`user:hash` per line), written by `gatehouse passwd`
/// (argon2id) or `mosquitto_passwd` (`$7$` PBKDF2-SHA512). Relevant to a CONNECT with a
/// user name and a password and no MQTT v5 Authentication Method.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PasswordSettings {
    /// The password file; reloaded when it changes (the last good version stays while
    /// it is invalid).
    pub password_file: PathBuf,
    /// User name → attributes for authorization (like X.509's `authorizationAttributes`);
    /// users not listed have none.
    #[serde(default)]
    pub user_attributes: BTreeMap<String, BTreeMap<String, String>>,
}
