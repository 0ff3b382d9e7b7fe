//! The JSON the client sends and reads: authentication.k8s.io/v1 TokenReview, core/v1
//! ServiceAccount, and the `Status` body of a failed request. Fields the client does not
//! use are left out (serde skips unknown fields).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct TokenReviewRequest<'a> {
    pub(super) api_version: &'static str,
    pub(super) kind: &'static str,
    pub(super) spec: TokenReviewSpec<'a>,
}

#[derive(Serialize)]
pub(super) struct TokenReviewSpec<'a> {
    pub(super) token: &'a str,
    pub(super) audiences: &'a [String],
}

#[derive(Deserialize)]
pub(super) struct TokenReviewResponse {
    #[serde(default)]
    pub(super) status: Option<TokenReviewStatus>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct TokenReviewStatus {
    pub(super) authenticated: Option<bool>,
    pub(super) user: Option<UserInfo>,
    pub(super) audiences: Option<Vec<String>>,
    pub(super) error: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct UserInfo {
    pub(super) username: Option<String>,
}

#[derive(Deserialize)]
pub(super) struct ServiceAccount {
    #[serde(default)]
    pub(super) metadata: Option<ObjectMeta>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct ObjectMeta {
    pub(super) annotations: Option<BTreeMap<String, String>>,
}

/// The body of a failed API request (`kind: Status`).
#[derive(Deserialize)]
pub(super) struct ApiStatus {
    #[serde(default)]
    pub(super) message: Option<String>,
}
