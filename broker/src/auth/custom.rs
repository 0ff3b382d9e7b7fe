//! Custom authentication over HTTPS (behaviour.md §3 "Custom", custom-auth.md).
//!
//! Not implemented yet: building the method reports "not supported yet".

use gatehouse_config::{Config, CustomSettings};

use super::{Credentials, Reauth, Verdict};

#[derive(Debug, thiserror::Error)]
pub enum CustomSetupError {
    #[error("not supported yet")]
    NotSupportedYet,
    #[error("{0}")]
    Invalid(String),
}

pub(crate) struct CustomMethod {}

impl CustomMethod {
    pub(crate) fn new(
        _config: &Config,
        _settings: &CustomSettings,
    ) -> Result<Self, CustomSetupError> {
        Err(CustomSetupError::NotSupportedYet)
    }

    /// Relevant to every client; a communication failure counts as not relevant.
    pub(crate) async fn authenticate(&self, _creds: &Credentials<'_>) -> Verdict {
        Verdict::NotRelevant
    }

    /// `None` when this method does not handle `method`.
    pub(crate) async fn reauthenticate(
        &self,
        _client_id: &str,
        _method: &str,
        _data: &[u8],
    ) -> Option<Reauth> {
        None
    }
}
