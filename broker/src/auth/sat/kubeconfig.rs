//! The little of a kubeconfig file the TokenReview client needs: the current context's
//! cluster (`server`, its CA) and user (a bearer token, inline or in a file, and/or a
//! client certificate).
//!
//! As kubectl reads them: paths are relative to the kubeconfig's folder, `-data` fields
//! are base64 and win over their path counterparts, `tokenFile` wins over `token` (and is
//! re-read on every request, so a rotated token is picked up). Anything that would make
//! the connection less safe or that we cannot honour (`insecure-skip-tls-verify`,
//! `proxy-url`, `tls-server-name`, exec plugins, auth providers, basic auth) is refused
//! with an error naming it, rather than silently ignored.

use std::fmt;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde::Deserialize;

use super::token_review::BearerToken;

/// Where and how to reach the API server, as the kubeconfig says.
pub(crate) struct Endpoint {
    /// `cluster.server`, e.g. `https://127.0.0.1:6443`.
    pub server: String,
    /// The cluster CA certificates (PEM), the only roots trusted for the server.
    pub ca_pem: Vec<u8>,
    pub bearer: Option<BearerToken>,
    pub identity: Option<ClientIdentity>,
}

impl fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Endpoint")
            .field("server", &self.server)
            .field("ca_pem", &format_args!("{} bytes", self.ca_pem.len()))
            .field("bearer", &self.bearer)
            .field("identity", &self.identity)
            .finish()
    }
}

/// A client certificate chain and its key (PEM). `Debug` leaves the key out.
pub(crate) struct ClientIdentity {
    pub cert_pem: Vec<u8>,
    pub key_pem: Vec<u8>,
}

impl fmt::Debug for ClientIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientIdentity")
            .field("cert_pem", &format_args!("{} bytes", self.cert_pem.len()))
            .field("key_pem", &"<redacted>")
            .finish()
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct KubeconfigError(String);

// Only the fields we use or refuse; everything else in a kubeconfig is ignored.

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
struct Kubeconfig {
    #[serde(default)]
    current_context: Option<String>,
    #[serde(default)]
    clusters: Option<Vec<NamedCluster>>,
    #[serde(default)]
    contexts: Option<Vec<NamedContext>>,
    #[serde(default)]
    users: Option<Vec<NamedUser>>,
}

#[derive(Deserialize)]
struct NamedCluster {
    name: String,
    #[serde(default)]
    cluster: Option<Cluster>,
}

#[derive(Deserialize)]
struct NamedContext {
    name: String,
    #[serde(default)]
    context: Option<Context>,
}

#[derive(Deserialize)]
struct NamedUser {
    name: String,
    #[serde(default)]
    user: Option<User>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "kebab-case", default)]
struct Cluster {
    server: Option<String>,
    certificate_authority: Option<PathBuf>,
    certificate_authority_data: Option<String>,
    insecure_skip_tls_verify: Option<bool>,
    tls_server_name: Option<String>,
    proxy_url: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Context {
    cluster: Option<String>,
    user: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "kebab-case", default)]
struct User {
    token: Option<String>,
    #[serde(rename = "tokenFile")]
    token_file: Option<PathBuf>,
    client_certificate: Option<PathBuf>,
    client_certificate_data: Option<String>,
    client_key: Option<PathBuf>,
    client_key_data: Option<String>,
    exec: Option<serde_norway::Value>,
    auth_provider: Option<serde_norway::Value>,
    username: Option<String>,
    password: Option<String>,
}

/// Read the kubeconfig at `path` and resolve its current context.
#[allow(
    clippy::disallowed_methods,
    reason = "runs when an authentication chain is built (start-up, reload), never per connection"
)]
pub(crate) fn load(path: &Path) -> Result<Endpoint, KubeconfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| KubeconfigError(format!("cannot read the file: {e}")))?;
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    parse(&text, dir)
}

/// Resolve the current context of the kubeconfig `text`; relative paths are taken
/// relative to `dir` (the kubeconfig's folder).
#[allow(
    clippy::disallowed_methods,
    reason = "runs when an authentication chain is built (start-up, reload), never per connection"
)]
pub(crate) fn parse(text: &str, dir: &Path) -> Result<Endpoint, KubeconfigError> {
    let err = |m: String| KubeconfigError(m);
    let config: Kubeconfig =
        serde_norway::from_str(text).map_err(|e| err(format!("not a kubeconfig: {e}")))?;
    let contexts = config.contexts.unwrap_or_default();

    let context_name = match config.current_context.as_deref() {
        Some(name) if !name.is_empty() => name.to_owned(),
        _ if contexts.len() == 1 => contexts[0].name.clone(),
        _ => {
            return Err(err(
                "no current-context (and not exactly one context to default to)".into(),
            ))
        }
    };
    let context = contexts
        .into_iter()
        .find(|c| c.name == context_name)
        .ok_or_else(|| {
            err(format!(
                "current-context `{context_name}` is not in contexts"
            ))
        })?
        .context
        .unwrap_or_default();

    let cluster_name = context
        .cluster
        .filter(|c| !c.is_empty())
        .ok_or_else(|| err(format!("context `{context_name}` names no cluster")))?;
    let cluster = config
        .clusters
        .unwrap_or_default()
        .into_iter()
        .find(|c| c.name == cluster_name)
        .ok_or_else(|| err(format!("cluster `{cluster_name}` is not in clusters")))?
        .cluster
        .unwrap_or_default();
    let at_cluster = |m: &str| err(format!("cluster `{cluster_name}`: {m}"));

    if cluster.insecure_skip_tls_verify == Some(true) {
        return Err(at_cluster(
            "insecure-skip-tls-verify is refused: service account tokens would be sent to an \
             unverified server; give the cluster's certificate-authority instead",
        ));
    }
    if cluster.tls_server_name.is_some() {
        return Err(at_cluster("tls-server-name is not supported"));
    }
    if cluster.proxy_url.is_some() {
        return Err(at_cluster(
            "proxy-url is not supported (the API server is reached directly)",
        ));
    }
    let server = cluster
        .server
        .filter(|s| !s.is_empty())
        .ok_or_else(|| at_cluster("no server"))?;
    let ca_pem = match (
        &cluster.certificate_authority_data,
        &cluster.certificate_authority,
    ) {
        (Some(data), _) => {
            decode(data).map_err(|e| at_cluster(&format!("certificate-authority-data: {e}")))?
        }
        (None, Some(path)) => {
            let path = resolve(dir, path);
            std::fs::read(&path).map_err(|e| {
                at_cluster(&format!("certificate-authority {}: {e}", path.display()))
            })?
        }
        (None, None) => {
            return Err(at_cluster(
                "no certificate-authority or certificate-authority-data: the API server's CA \
                 is needed to verify it (the system roots are not used)",
            ))
        }
    };

    let user_name = context.user.filter(|u| !u.is_empty());
    let user = match &user_name {
        Some(name) => config
            .users
            .unwrap_or_default()
            .into_iter()
            .find(|u| &u.name == name)
            .ok_or_else(|| err(format!("user `{name}` is not in users")))?
            .user
            .unwrap_or_default(),
        None => User::default(),
    };
    let user_label = user_name.as_deref().unwrap_or("(none)");
    let at_user = |m: &str| err(format!("user `{user_label}`: {m}"));

    let bearer = match (&user.token_file, &user.token) {
        (Some(path), _) => {
            let path = resolve(dir, path);
            // Read now so a wrong path stops start-up; re-read on every request later.
            let token = std::fs::read_to_string(&path)
                .map_err(|e| at_user(&format!("tokenFile {}: {e}", path.display())))?;
            if token.trim().is_empty() {
                return Err(at_user(&format!("tokenFile {} is empty", path.display())));
            }
            Some(BearerToken::File(path))
        }
        (None, Some(token)) if !token.trim().is_empty() => {
            Some(BearerToken::Value(token.trim().to_owned()))
        }
        _ => None,
    };

    let cert = read_pem_field(
        dir,
        &user.client_certificate_data,
        &user.client_certificate,
        "client-certificate",
    )
    .map_err(|m| at_user(&m))?;
    let key = read_pem_field(dir, &user.client_key_data, &user.client_key, "client-key")
        .map_err(|m| at_user(&m))?;
    let identity = match (cert, key) {
        (Some(cert_pem), Some(key_pem)) => Some(ClientIdentity { cert_pem, key_pem }),
        (None, None) => None,
        (Some(_), None) => return Err(at_user("client-certificate without client-key")),
        (None, Some(_)) => return Err(at_user("client-key without client-certificate")),
    };

    if bearer.is_none() && identity.is_none() {
        let why = if user.exec.is_some() {
            "exec credential plugins are not supported"
        } else if user.auth_provider.is_some() {
            "auth-provider is not supported"
        } else if user.username.is_some() || user.password.is_some() {
            "basic authentication (username/password) is not supported"
        } else {
            "no credentials"
        };
        return Err(at_user(&format!(
            "{why}; give a token, tokenFile or client certificate"
        )));
    }

    Ok(Endpoint {
        server,
        ca_pem,
        bearer,
        identity,
    })
}

fn resolve(dir: &Path, path: &Path) -> PathBuf {
    if path.is_absolute() {
        path.to_owned()
    } else {
        dir.join(path)
    }
}

/// Kubernetes' `[]byte` in YAML/JSON: standard base64 (line breaks tolerated).
fn decode(data: &str) -> Result<Vec<u8>, String> {
    let compact: String = data.chars().filter(|c| !c.is_whitespace()).collect();
    base64::engine::general_purpose::STANDARD
        .decode(compact)
        .map_err(|e| format!("not base64: {e}"))
}

#[allow(
    clippy::disallowed_methods,
    reason = "runs when an authentication chain is built (start-up, reload), never per connection"
)]
fn read_pem_field(
    dir: &Path,
    data: &Option<String>,
    path: &Option<PathBuf>,
    field: &str,
) -> Result<Option<Vec<u8>>, String> {
    match (data, path) {
        (Some(data), _) => decode(data)
            .map(Some)
            .map_err(|e| format!("{field}-data: {e}")),
        (None, Some(path)) => {
            let path = resolve(dir, path);
            std::fs::read(&path)
                .map(Some)
                .map_err(|e| format!("{field} {}: {e}", path.display()))
        }
        (None, None) => Ok(None),
    }
}

#[cfg(test)]
#[allow(
    clippy::disallowed_methods,
    reason = "tests write their fixtures synchronously"
)]
mod tests {
    use super::*;

    const CA: &str = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";

    fn b64(bytes: &[u8]) -> String {
        base64::engine::general_purpose::STANDARD.encode(bytes)
    }

    fn config(cluster: &str, user: &str) -> String {
        format!(
            "apiVersion: v1
kind: Config
current-context: work
preferences: {{}}
clusters:
- name: other
  cluster:
    server: https://other.example:6443
    insecure-skip-tls-verify: true
- name: main
  cluster:
{cluster}
contexts:
- name: play
  context: {{cluster: other, user: nobody}}
- name: work
  context:
    cluster: main
    user: broker
    namespace: azure-iot-operations
users:
- name: nobody
  user: {{}}
- name: broker
  user:
{user}
"
        )
    }

    #[test]
    fn current_context_with_ca_data_and_relative_token_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("token"), "abc.def.ghi\n").unwrap();
        let text = config(
            &format!(
                "    server: https://10.0.0.1:6443\n    certificate-authority-data: {}",
                b64(CA.as_bytes())
            ),
            "    tokenFile: token\n    token: ignored-inline",
        );
        let endpoint = parse(&text, dir.path()).unwrap();
        assert_eq!(endpoint.server, "https://10.0.0.1:6443");
        assert_eq!(endpoint.ca_pem, CA.as_bytes());
        match &endpoint.bearer {
            Some(BearerToken::File(path)) => assert_eq!(path, &dir.path().join("token")),
            other => panic!("expected the token file, got {other:?}"),
        }
        assert!(endpoint.identity.is_none());
    }

    #[test]
    fn relative_ca_file_inline_token_and_client_certificate() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("pki")).unwrap();
        std::fs::write(dir.path().join("pki/ca.crt"), CA).unwrap();
        std::fs::write(dir.path().join("pki/client.key"), "KEY").unwrap();
        let text = config(
            "    server: https://api.example\n    certificate-authority: pki/ca.crt",
            &format!(
                "    token: \" inline-token \"\n    client-certificate-data: {}\n    client-key: pki/client.key",
                b64(b"CERT")
            ),
        );
        let endpoint = parse(&text, dir.path()).unwrap();
        assert_eq!(endpoint.ca_pem, CA.as_bytes());
        match &endpoint.bearer {
            Some(BearerToken::Value(token)) => assert_eq!(token, "inline-token"),
            other => panic!("expected the inline token, got {other:?}"),
        }
        let identity = endpoint.identity.as_ref().unwrap();
        assert_eq!(identity.cert_pem, b"CERT");
        assert_eq!(identity.key_pem, b"KEY");
        let debug = format!("{endpoint:?}");
        assert!(!debug.contains("inline-token"), "{debug}");
        assert!(!debug.contains("KEY\""), "{debug}");
    }

    #[test]
    fn load_resolves_paths_against_the_kubeconfig_folder() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ca.crt"), CA).unwrap();
        let path = dir.path().join("kubeconfig");
        std::fs::write(
            &path,
            config(
                "    server: https://api.example\n    certificate-authority: ca.crt",
                "    token: t",
            ),
        )
        .unwrap();
        assert_eq!(load(&path).unwrap().ca_pem, CA.as_bytes());
    }

    fn error(cluster: &str, user: &str) -> String {
        let dir = tempfile::tempdir().unwrap();
        parse(&config(cluster, user), dir.path())
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn refusals_name_the_field() {
        let ca = format!(
            "    server: https://api.example\n    certificate-authority-data: {}",
            b64(CA.as_bytes())
        );
        let e = error(
            &format!("{ca}\n    insecure-skip-tls-verify: true"),
            "    token: t",
        );
        assert!(e.contains("insecure-skip-tls-verify is refused"), "{e}");
        let e = error("    server: https://api.example", "    token: t");
        assert!(e.contains("no certificate-authority"), "{e}");
        let e = error(
            &ca,
            "    exec:\n      apiVersion: client.authentication.k8s.io/v1\n      command: aws",
        );
        assert!(
            e.contains("exec credential plugins are not supported"),
            "{e}"
        );
        let e = error(&ca, "    tokenFile: missing-token");
        assert!(
            e.contains("tokenFile") && e.contains("missing-token"),
            "{e}"
        );
        let e = error(&ca, "    client-certificate-data: Q0VSVA==");
        assert!(e.contains("client-certificate without client-key"), "{e}");
        let e = error(
            "    server: https://api.example\n    certificate-authority-data: '***'",
            "    token: t",
        );
        assert!(e.contains("certificate-authority-data: not base64"), "{e}");
        let e = error(
            &format!("{ca}\n    proxy-url: http://proxy:3128"),
            "    token: t",
        );
        assert!(e.contains("proxy-url is not supported"), "{e}");
    }

    #[test]
    fn context_resolution() {
        let dir = tempfile::tempdir().unwrap();
        let e = parse("clusters: []\ncontexts: []\n", dir.path())
            .unwrap_err()
            .to_string();
        assert!(e.contains("no current-context"), "{e}");
        let e = parse("current-context: gone\ncontexts: []\n", dir.path())
            .unwrap_err()
            .to_string();
        assert!(e.contains("`gone` is not in contexts"), "{e}");
        // A single context is used without current-context.
        let one = format!(
            "clusters:\n- name: c\n  cluster:\n    server: https://a\n    certificate-authority-data: {}\ncontexts:\n- name: only\n  context: {{cluster: c, user: u}}\nusers:\n- name: u\n  user: {{token: t}}\n",
            b64(CA.as_bytes())
        );
        assert_eq!(parse(&one, dir.path()).unwrap().server, "https://a");
        let e = parse("{not yaml: [", dir.path()).unwrap_err().to_string();
        assert!(e.contains("not a kubeconfig"), "{e}");
    }
}
