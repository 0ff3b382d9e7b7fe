//! Kubernetes service account tokens, MQTT v5 authentication method `K8S-SAT`
//! (behaviour.md §3 "SAT").
//!
//! Not implemented yet: building the method reports "not supported yet".

pub(crate) mod kubeconfig;
pub(crate) mod token_review;

use gatehouse_config::{Config, ServiceAccountTokenSettings};

use super::{Credentials, Reauth, Verdict};

/// The MQTT v5 Authentication Method of SAT clients.
pub const METHOD: &str = "K8S-SAT";

#[derive(Debug, thiserror::Error)]
pub enum SatSetupError {
    #[error("not supported yet")]
    NotSupportedYet,
    #[error("{0}")]
    Invalid(String),
}

pub(crate) struct SatMethod {}

impl SatMethod {
    pub(crate) fn new(
        _config: &Config,
        _settings: &ServiceAccountTokenSettings,
    ) -> Result<Self, SatSetupError> {
        Err(SatSetupError::NotSupportedYet)
    }

    pub(crate) fn handles(&self, method: &str) -> bool {
        method == METHOD
    }

    /// Relevant when the CONNECT's Authentication Method is `K8S-SAT`.
    pub(crate) async fn authenticate(&self, _creds: &Credentials<'_>) -> Verdict {
        Verdict::NotRelevant
    }

    pub(crate) async fn reauthenticate(
        &self,
        _client_id: &str,
        _method: &str,
        _data: &[u8],
    ) -> Option<Reauth> {
        None
    }
}
