//! Kubernetes service account tokens, MQTT v5 authentication method `K8S-SAT`
//! (behaviour.md §3 "SAT"): the token is the CONNECT's (or AUTH's) Authentication Data.
//!
//! Backends: offline ([`jwks`]: signature and claims checked against the issuer's keys,
//! attributes from a service-accounts file) or the Kubernetes TokenReview API.

pub(crate) mod accounts;
pub(crate) mod jwks;
pub(crate) mod kubeconfig;
pub(crate) mod token_review;

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use gatehouse_config::{Config, ServiceAccountTokenSettings};
use gatehouse_protocol::ReasonCode;

use super::{Credentials, Outcome, Principal, Reauth, Verdict};

/// The MQTT v5 Authentication Method of SAT clients.
pub const METHOD: &str = "K8S-SAT";

const PREFIX: &str = "system:serviceaccount:";

#[derive(Debug, thiserror::Error)]
pub enum SatSetupError {
    #[error("not supported yet")]
    NotSupportedYet,
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Jwks(#[from] jwks::JwksError),
    #[error(transparent)]
    Accounts(#[from] accounts::AccountsError),
    #[error(transparent)]
    TokenReview(#[from] token_review::TokenReviewSetupError),
}

enum Backend {
    Offline(jwks::Offline),
    Review(token_review::TokenReviewClient),
}

pub(crate) struct SatMethod {
    audiences: Vec<String>,
    backend: Backend,
    accounts: Option<accounts::ServiceAccounts>,
}

/// Why a token was not accepted.
enum Failure {
    /// The token is not valid: reject.
    Invalid(String),
    /// The validating service could not be asked: transient.
    Unavailable(String),
}

impl SatMethod {
    pub(crate) fn new(
        _config: &Config,
        settings: &ServiceAccountTokenSettings,
    ) -> Result<Self, SatSetupError> {
        let backend = match &settings.jwks {
            Some(jwks) => match &jwks.file {
                Some(file) => Backend::Offline(jwks::Offline::load(file, &jwks.issuer)?),
                None => return Err(jwks::JwksError::DiscoveryNotSupportedYet.into()),
            },
            None => {
                let api = token_review::TokenReviewClient::new(
                    &settings.token_review.clone().unwrap_or_default(),
                )?;
                tracing::info!(target: "auth", "service account tokens are checked by TokenReview at {}", api.server());
                Backend::Review(api)
            }
        };
        let accounts = settings
            .service_accounts
            .as_ref()
            .map(|f| accounts::ServiceAccounts::load(&f.file))
            .transpose()?;
        Ok(SatMethod {
            audiences: settings.audiences.clone(),
            backend,
            accounts,
        })
    }

    pub(crate) fn handles(&self, method: &str) -> bool {
        method == METHOD
    }

    /// Relevant when the CONNECT's Authentication Method is `K8S-SAT`.
    pub(crate) async fn authenticate(&self, creds: &Credentials<'_>) -> Verdict {
        if creds.method != Some(METHOD) {
            return Verdict::NotRelevant;
        }
        let token = creds.data.unwrap_or_default();
        Verdict::Decided(match self.principal(token, creds.client_id).await {
            Ok(p) => Outcome::Accepted(p),
            Err(Failure::Invalid(why) | Failure::Unavailable(why)) => Outcome::Rejected(
                ReasonCode::NOT_AUTHORIZED,
                format!("service account token: {why}"),
            ),
        })
    }

    pub(crate) async fn reauthenticate(
        &self,
        client_id: &str,
        method: &str,
        data: &[u8],
    ) -> Option<Reauth> {
        if method != METHOD {
            return None;
        }
        Some(match self.principal(data, client_id).await {
            Ok(p) => Reauth::Success(p),
            Err(Failure::Invalid(why)) => Reauth::Failed(
                ReasonCode::NOT_AUTHORIZED,
                format!("service account token: {why}"),
            ),
            Err(Failure::Unavailable(why)) => Reauth::Continue(why),
        })
    }

    async fn principal(&self, token: &[u8], client_id: &str) -> Result<Principal, Failure> {
        let token = std::str::from_utf8(token)
            .map_err(|_| Failure::Invalid("authentication data is not a UTF-8 token".into()))?;
        let (username, expiry) = match &self.backend {
            Backend::Offline(keys) => {
                let claims = keys
                    .verify(token, &self.audiences)
                    .map_err(Failure::Invalid)?;
                let expiry = SystemTime::UNIX_EPOCH + Duration::from_secs(claims.exp);
                (claims.sub, Some(expiry))
            }
            Backend::Review(api) => {
                let reviewed = api
                    .review(token, &self.audiences)
                    .await
                    .map_err(review_failure)?;
                // TokenReview says nothing about expiry: the token's own `exp` (read
                // without checking the signature, which the API server just did).
                let expiry = jsonwebtoken::dangerous::insecure_decode::<jwks::Claims>(token)
                    .ok()
                    .map(|d| SystemTime::UNIX_EPOCH + Duration::from_secs(d.claims.exp));
                (reviewed.username, expiry)
            }
        };
        let Some((namespace, name)) = username
            .strip_prefix(PREFIX)
            .and_then(|rest| rest.split_once(':'))
        else {
            return Err(Failure::Invalid(format!(
                "subject `{username}` is not a service account"
            )));
        };
        let attributes: BTreeMap<String, String> = match (&self.accounts, &self.backend) {
            // An explicit file wins (also with TokenReview, e.g. without RBAC on
            // serviceaccounts); otherwise the API when there is one.
            (Some(accounts), _) => accounts.attributes(namespace, name),
            (None, Backend::Review(api)) => api
                .attributes(namespace, name)
                .await
                .map_err(review_failure)?,
            (None, Backend::Offline(_)) => BTreeMap::new(),
        };
        Ok(Principal {
            username: Some(username.clone()),
            client_id: client_id.to_owned(),
            attributes,
            expiry,
            method: "ServiceAccountToken",
            registry: None,
        })
    }
}

fn review_failure(e: token_review::ReviewError) -> Failure {
    match e {
        token_review::ReviewError::Rejected(why) => Failure::Invalid(why),
        token_review::ReviewError::Unavailable(why) => Failure::Unavailable(why),
    }
}
