//! Authentication methods: their files, and a backend that can work on this machine.

use gatehouse_config::{
    AdditionalValidation, AuthenticationMethod, Config, CustomSettings,
    ServiceAccountTokenSettings, X509Settings,
};

use super::files::{self, Secret};
use super::{Mode, Sink};

/// Authentication `index`: each method's files, then (in [`Mode::Check`]) each method and
/// the whole chain built as start-up builds them.
pub(super) fn check(config: &Config, index: usize, mode: Mode, sink: &mut Sink<'_>) {
    let Some(authentication) = config.authentications.get(index) else {
        return;
    };
    let loc = config.paths.authentication(index);
    let before = sink.errors;
    for (k, method) in authentication.authentication_methods.iter().enumerate() {
        let base = loc.at(format!("authenticationMethods[{k}]"));
        let method_before = sink.errors;
        // Built only when its files are fine: building stops at the first problem, which
        // the file checks have already named.
        let build = mode == Mode::Check;
        match method {
            AuthenticationMethod::X509(settings) => {
                x509(config, settings, &format!("{base}.x509Settings"), sink);
                if build && sink.errors == method_before {
                    if let Err(e) = crate::auth::x509::X509Method::new(config, settings) {
                        sink.error(format!("{base}.x509Settings"), e.to_string());
                    }
                }
            }
            AuthenticationMethod::ServiceAccountToken(settings) => {
                let at = format!("{base}.serviceAccountTokenSettings");
                sat(settings, &at, sink);
                if build && sink.errors == method_before {
                    if let Err(e) = crate::auth::sat::SatMethod::new(config, settings) {
                        sink.error(at, e.to_string());
                    }
                }
            }
            AuthenticationMethod::Custom(settings) => {
                let at = format!("{base}.customSettings");
                custom(config, settings, &at, sink);
                if build && sink.errors == method_before {
                    if let Err(e) = crate::auth::custom::CustomMethod::new(config, settings) {
                        sink.error(at, e.to_string());
                    }
                }
            }
            AuthenticationMethod::Password(settings) => {
                let at = format!("{base}.passwordSettings.passwordFile");
                files::file(&settings.password_file, "password", &at, sink);
                // Every bad line at once (numbers, never the hashes).
                if sink.errors == method_before {
                    if let Err(e) = crate::auth::password::check_file(&settings.password_file) {
                        sink.error(at, e.to_string());
                    }
                }
            }
        }
    }
    if mode == Mode::Check && sink.errors == before {
        // What only the whole chain finds (the X.509 client verifier of its CAs); its
        // error names its own path.
        if let Err(e) = crate::auth::build(config, &authentication.name) {
            sink.error("", e.to_string());
        }
    }
}

fn x509(config: &Config, settings: &X509Settings, at: &str, sink: &mut Sink<'_>) {
    files::config_map(
        config,
        &settings.trusted_client_ca_cert,
        "trusted client CA",
        &format!("{at}.trustedClientCaCert"),
        sink,
    );
    if settings.additional_validation == AdditionalValidation::AzureDeviceRegistry {
        if let Some(registry) = &settings.device_registry {
            files::file(
                &registry.file,
                "device registry",
                &format!("{at}.deviceRegistry.file"),
                sink,
            );
        }
    }
}

/// A backend that can work here: offline keys (`jwks.file`), a kubeconfig, or in-cluster
/// TokenReview, which needs a Kubernetes pod.
fn sat(settings: &ServiceAccountTokenSettings, at: &str, sink: &mut Sink<'_>) {
    let kubeconfig = settings
        .token_review
        .as_ref()
        .and_then(|t| t.kubeconfig.as_ref());
    match (&settings.jwks, kubeconfig) {
        (Some(jwks), _) => {
            if let Some(file) = &jwks.file {
                files::file(file, "JWKS", &format!("{at}.jwks.file"), sink);
            }
        }
        (None, Some(kubeconfig)) => files::file(
            kubeconfig,
            "kubeconfig",
            &format!("{at}.tokenReview.kubeconfig"),
            sink,
        ),
        (None, None) => {
            let missing: Vec<&str> = ["KUBERNETES_SERVICE_HOST", "KUBERNETES_SERVICE_PORT"]
                .into_iter()
                .filter(|v| std::env::var_os(v).is_none())
                .collect();
            if !missing.is_empty() {
                sink.error(
                    at,
                    format!(
                        "no backend for service account tokens here: without `jwks` or \
                         `tokenReview.kubeconfig`, tokens are checked by the in-cluster \
                         TokenReview API, which needs a Kubernetes pod ({} not set); outside \
                         Kubernetes set `tokenReview: {{ kubeconfig: <file> }}` (the cluster \
                         that issues the tokens) or `jwks: {{ issuer: ..., file: <keys.json> }}` \
                         (offline)",
                        missing.join(" and ")
                    ),
                );
            }
        }
    }
    if let Some(accounts) = &settings.service_accounts {
        files::file(
            &accounts.file,
            "service accounts",
            &format!("{at}.serviceAccounts.file"),
            sink,
        );
    }
}

fn custom(config: &Config, settings: &CustomSettings, at: &str, sink: &mut Sink<'_>) {
    // Validation has already refused anything but https://; the rest must parse.
    let url = settings
        .endpoint
        .starts_with("https://")
        .then(|| reqwest::Url::parse(&settings.endpoint));
    if let Some(Err(e)) = url {
        sink.error(
            format!("{at}.endpoint"),
            format!("`{}` is not a URL: {e}", settings.endpoint),
        );
    }
    if let Some(name) = &settings.ca_cert_config_map {
        files::config_map(
            config,
            name,
            "custom server CA",
            &format!("{at}.caCertConfigMap"),
            sink,
        );
    }
    if let Some(auth) = &settings.auth {
        let name = &auth.x509.secret_ref;
        let path = format!("{at}.auth.x509.secretRef");
        match files::secret(config, name) {
            Secret::Ready => {}
            Secret::Missing(file) => sink.error(
                path,
                format!(
                    "secret `{name}` (the broker's client certificate for the custom server): \
                     {} does not exist; it needs tls.crt and tls.key{}",
                    file.display(),
                    files::suggest_secret(config, name)
                ),
            ),
            Secret::Invalid(e) => sink.error(
                path,
                format!(
                    "secret `{name}` (the broker's client certificate for the custom server): {e}"
                ),
            ),
        }
    }
}
