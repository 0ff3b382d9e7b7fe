//! The authentication chain (behaviour.md §3): the methods of a port's
//! BrokerAuthentication, tried in order. For each, the client's credentials are first
//! *relevant* or not; the first method they are relevant to decides (accept or reject);
//! credentials relevant to none are rejected.
//!
//! Methods: [`x509`] (client certificates from the TLS handshake), [`sat`] (Kubernetes
//! service account tokens, offline or by TokenReview) and [`custom`] (an HTTPS
//! authentication server); beyond AIO, [`password`] (a password file).

pub mod counters;
pub mod custom;
pub mod device_registry;
pub mod dn;
pub mod files;
pub mod password;
pub mod sat;
mod verifier;
pub mod x509;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::SystemTime;

use gatehouse_config::{AuthenticationMethod, Config};
use gatehouse_protocol::ReasonCode;
use parking_lot::RwLock;
use rustls::pki_types::CertificateDer;
use rustls::server::danger::ClientCertVerifier;

use counters::{AuthCounters, MethodCounters};
use verifier::SwappableVerifier;

/// Who a client is, once authenticated.
#[derive(Clone, PartialEq, Eq)]
pub struct Principal {
    /// For X.509 the certificate CN; the CONNECT user name is not trusted then.
    pub username: Option<String>,
    pub client_id: String,
    pub attributes: BTreeMap<String, String>,
    /// When the credentials stop being valid; the connection is closed then.
    pub expiry: Option<SystemTime>,
    /// Which method accepted the client (for logs).
    pub method: &'static str,
    /// X.509 with a device registry: the connection ends when the device is disabled or
    /// removed (checked on every registry change and every recheck interval).
    pub registry: Option<device_registry::RegistryCheck>,
}

impl fmt::Debug for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Principal")
            .field("username", &self.username)
            .field("client_id", &self.client_id)
            .field("attributes", &self.attributes)
            .field("expiry", &self.expiry)
            .field("method", &self.method)
            .field("registry", &self.registry)
            .finish()
    }
}

impl Principal {
    /// Whether the credentials' validity has already ended. A method that accepts such
    /// credentials (a custom server answering a pass with an expiry in the past, a token
    /// or certificate expiring between the check and now) must not let the client in:
    /// the serve loop would only notice after the packets pipelined behind CONNECT.
    pub fn is_expired(&self) -> bool {
        self.expiry.is_some_and(|at| at <= SystemTime::now())
    }

    /// Who holds a session: the method and the verified user name. A session resumed by
    /// another identity would inherit what was granted to the first one, so
    /// [`crate::registry::Broker::attach`] starts a new session instead.
    pub fn identity(&self) -> Identity {
        Identity {
            method: self.method,
            username: self.username.clone(),
        }
    }
}

/// The identity a session belongs to (see [`Principal::identity`]); attributes are not
/// part of it: they are re-checked, through the policy, whenever a session is resumed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub method: &'static str,
    pub username: Option<String>,
}

/// An accepted principal whose credentials are already expired is refused.
fn refuse_expired(outcome: Outcome) -> Outcome {
    match outcome {
        Outcome::Accepted(p) if p.is_expired() => Outcome::Rejected(
            ReasonCode::NOT_AUTHORIZED,
            format!("{} credentials were already expired", p.method),
        ),
        other => other,
    }
}

/// What a client presented. `Debug` leaves the secrets out.
pub struct Credentials<'a> {
    pub client_id: &'a str,
    pub username: Option<&'a str>,
    pub password: Option<&'a [u8]>,
    /// MQTT v5 Authentication Method and Data.
    pub method: Option<&'a str>,
    pub data: Option<&'a [u8]>,
    /// The client's certificate chain from the TLS handshake, leaf first (verified by
    /// the handshake against the trusted client CAs).
    pub peer_certs: &'a [CertificateDer<'static>],
}

impl fmt::Debug for Credentials<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("client_id", &self.client_id)
            .field("username", &self.username)
            .field("password", &self.password.map(|_| "<redacted>"))
            .field("method", &self.method)
            .field("data", &self.data.map(|_| "<redacted>"))
            .field("peer_certs", &self.peer_certs.len())
            .finish()
    }
}

/// The chain's decision.
#[derive(Debug)]
pub enum Outcome {
    Accepted(Principal),
    /// CONNACK with this reason (3.1.1: its return code); the string is for the log.
    Rejected(ReasonCode, String),
}

/// A method's answer for one client.
pub(crate) enum Verdict {
    NotRelevant,
    Decided(Outcome),
}

/// The answer to an MQTT v5 re-authentication (AUTH 0x19), behaviour.md §3.
#[derive(Debug)]
pub enum Reauth {
    /// AUTH 0x00; the principal (new expiry, attributes) replaces the old one.
    Success(Principal),
    /// Transient failure (e.g. the custom server is unreachable): AUTH 0x18, the client
    /// may retry; the old credentials stay until they expire.
    Continue(String),
    /// DISCONNECT with this reason (0x87, or 0x8C for a method the chain lacks).
    Failed(ReasonCode, String),
}

enum Method {
    X509(x509::X509Method),
    Sat(sat::SatMethod),
    Custom(custom::CustomMethod),
    Password(password::PasswordMethod),
}

/// Method kinds as the configuration names them; a kind's index is its counter slot.
const KINDS: [&str; 4] = ["X509", "ServiceAccountToken", "Custom", password::METHOD];

impl Method {
    fn kind(&self) -> usize {
        match self {
            Method::X509(_) => 0,
            Method::Sat(_) => 1,
            Method::Custom(_) => 2,
            Method::Password(_) => 3,
        }
    }
}

/// One BrokerAuthentication, ready to use. A reload swaps its methods and its TLS client
/// verifier in place ([`Chain::replace`]); connections already authenticated keep their
/// principal, new CONNECTs and re-authentications see the new methods.
pub struct Chain {
    pub name: String,
    methods: RwLock<Arc<Vec<Method>>>,
    client_verifier: Arc<SwappableVerifier>,
    /// Outcomes per method kind (X509, ServiceAccountToken, Custom, none), for `/metrics`;
    /// by kind rather than position so they survive a reload that reorders the chain.
    counters: AuthCounters,
}

impl fmt::Debug for Chain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Chain").field("name", &self.name).finish()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("{path}: method {method} is not supported yet (it arrives with the rest of the authentication chain); refusing to start rather than run without it")]
    NotSupportedYet { path: String, method: String },
    #[error("{path}: {source}")]
    X509 {
        path: String,
        source: x509::X509SetupError,
    },
    #[error("{path}: {source}")]
    Sat {
        path: String,
        source: sat::SatSetupError,
    },
    #[error("{path}: {source}")]
    Custom {
        path: String,
        source: custom::CustomSetupError,
    },
    #[error("{path}.passwordSettings.passwordFile: {source}")]
    Password {
        path: String,
        source: password::PasswordSetupError,
    },
}

impl Chain {
    /// Run the chain.
    pub async fn authenticate(&self, creds: &Credentials<'_>) -> Outcome {
        let methods = self.methods.read().clone();
        for method in methods.iter() {
            let verdict = match method {
                Method::X509(m) => m.authenticate(creds),
                Method::Sat(m) => m.authenticate(creds).await,
                Method::Custom(m) => m.authenticate(creds).await,
                Method::Password(m) => m.authenticate(creds).await,
            };
            if let Verdict::Decided(outcome) = verdict {
                let outcome = refuse_expired(outcome);
                self.counters.decided(method.kind(), &outcome);
                return outcome;
            }
        }
        self.counters.none_relevant();
        Outcome::Rejected(
            ReasonCode::NOT_AUTHORIZED,
            format!(
                "no method of authentication {} applies to the credentials presented",
                self.name
            ),
        )
    }

    /// Re-authentication with AUTH 0x19 (MQTT v5 §4.12.1): the method must be the one
    /// the client connected with; the first method of the chain that handles it
    /// decides. X.509 clients cannot re-authenticate.
    pub async fn reauthenticate(
        &self,
        client_id: &str,
        username: Option<&str>,
        method: &str,
        data: &[u8],
    ) -> Reauth {
        let methods = self.methods.read().clone();
        for m in methods.iter() {
            let answer = match m {
                Method::X509(_) | Method::Password(_) => None,
                Method::Sat(m) => m.reauthenticate(client_id, method, data).await,
                Method::Custom(m) => m.reauthenticate(client_id, username, method, data).await,
            };
            if let Some(answer) = answer {
                let answer = match answer {
                    Reauth::Success(p) if p.is_expired() => Reauth::Failed(
                        ReasonCode::NOT_AUTHORIZED,
                        "the credentials were already expired".into(),
                    ),
                    other => other,
                };
                self.counters.reauthenticated(Some(m.kind()), &answer);
                return answer;
            }
        }
        let answer = Reauth::Failed(
            ReasonCode::BAD_AUTHENTICATION_METHOD,
            format!(
                "no method of authentication {} re-authenticates with `{method}`",
                self.name
            ),
        );
        self.counters.reauthenticated(None, &answer);
        answer
    }

    /// Each method kind of the chain (as named in the configuration) with its counters, in
    /// chain order, then `none` (credentials no method was relevant to).
    pub fn method_counters(&self) -> Vec<(&'static str, &MethodCounters)> {
        let mut kinds: Vec<usize> = Vec::new();
        for m in self.methods.read().iter() {
            if !kinds.contains(&m.kind()) {
                kinds.push(m.kind());
            }
        }
        kinds.push(KINDS.len());
        kinds
            .into_iter()
            .map(|k| {
                (
                    KINDS.get(k).copied().unwrap_or("none"),
                    self.counters.method(k),
                )
            })
            .collect()
    }

    /// The users that the chain's `Password` methods' files dropped or gave a new password
    /// since last asked (see `Reloader::revoke_password_users`).
    pub fn take_revoked_password_users(&self) -> Vec<String> {
        self.methods
            .read()
            .iter()
            .flat_map(|m| match m {
                Method::Password(p) => p.file().take_revoked(),
                _ => Vec::new(),
            })
            .collect()
    }

    /// The password files of the chain's `Password` methods (for `/metrics`).
    pub fn password_files(&self) -> Vec<Arc<password::PasswordFile>> {
        self.methods
            .read()
            .iter()
            .filter_map(|m| match m {
                Method::Password(p) => Some(p.file().clone()),
                _ => None,
            })
            .collect()
    }

    /// Whether some method of the chain accepts CONNECTs with this MQTT v5
    /// Authentication Method (enhanced authentication).
    pub fn accepts_enhanced(&self, method: &str) -> bool {
        self.methods.read().iter().any(|m| match m {
            Method::X509(_) | Method::Password(_) => false,
            Method::Sat(m) => m.handles(method),
            Method::Custom(_) => true,
        })
    }

    /// The TLS client certificate verifier for ports using this chain. While the chain
    /// has X.509, client certificates are requested (but optional, so other methods still
    /// work on the same port); without it they are not. Swapped by [`Chain::replace`].
    pub fn client_verifier(&self) -> Option<Arc<dyn ClientCertVerifier>> {
        Some(self.client_verifier.clone())
    }

    /// Take over the methods and the client CA trust of `fresh` (a reload).
    pub fn replace(&self, fresh: Chain) {
        let Chain {
            methods,
            client_verifier,
            ..
        } = fresh;
        *self.methods.write() = methods.into_inner();
        self.client_verifier.set(client_verifier.get());
    }
}

/// The chain of authentication resource `name` (validation guarantees it exists).
pub fn build(config: &Config, name: &str) -> Result<Chain, AuthError> {
    let Some((ai, auth)) = config
        .authentications
        .iter()
        .enumerate()
        .find(|(_, a)| a.name == name)
    else {
        return Ok(Chain {
            name: name.to_owned(),
            methods: RwLock::new(Arc::new(Vec::new())),
            client_verifier: Arc::new(SwappableVerifier::new(None)),
            counters: AuthCounters::new(KINDS.len()),
        });
    };
    let mut methods = Vec::new();
    let mut x509_roots = Vec::new();
    for (mi, method) in auth.authentication_methods.iter().enumerate() {
        let path = config
            .paths
            .authentication(ai)
            .at(format!("authenticationMethods[{mi}]"));
        match method {
            AuthenticationMethod::X509(settings) => {
                let m = x509::X509Method::new(config, settings)
                    .map_err(|source| AuthError::X509 { path, source })?;
                x509_roots.extend(m.trusted().iter().cloned());
                methods.push(Method::X509(m));
            }
            AuthenticationMethod::ServiceAccountToken(settings) => {
                let m = sat::SatMethod::new(config, settings).map_err(|source| match source {
                    sat::SatSetupError::NotSupportedYet => AuthError::NotSupportedYet {
                        path: format!("{path}.method"),
                        method: method.kind().to_string(),
                    },
                    source => AuthError::Sat { path, source },
                })?;
                methods.push(Method::Sat(m));
            }
            AuthenticationMethod::Custom(settings) => {
                let m =
                    custom::CustomMethod::new(config, settings).map_err(|source| match source {
                        custom::CustomSetupError::NotSupportedYet => AuthError::NotSupportedYet {
                            path: format!("{path}.method"),
                            method: method.kind().to_string(),
                        },
                        source => AuthError::Custom { path, source },
                    })?;
                methods.push(Method::Custom(m));
            }
            AuthenticationMethod::Password(settings) => {
                let m = password::PasswordMethod::new(settings)
                    .map_err(|source| AuthError::Password { path, source })?;
                methods.push(Method::Password(m));
            }
        }
    }
    let client_verifier = if x509_roots.is_empty() {
        None
    } else {
        Some(
            x509::client_verifier(x509_roots).map_err(|source| AuthError::X509 {
                path: config.paths.authentication(ai).spec,
                source,
            })?,
        )
    };
    Ok(Chain {
        name: auth.name.clone(),
        methods: RwLock::new(Arc::new(methods)),
        client_verifier: Arc::new(SwappableVerifier::new(client_verifier)),
        counters: AuthCounters::new(KINDS.len()),
    })
}
