//! What a run needs besides the load: the fixtures made once (certificates, tokens, the
//! example server's users file) and, per run, the broker's configuration and the
//! authentication server (the example as a child process, or the in-process stub).

use super::*;

// ---------------------------------------------------------------------------------------
// Fixtures made once: certificates, tokens, the example server's users file
// ---------------------------------------------------------------------------------------

pub(super) struct Fixtures {
    pub(super) dir: PathBuf,
    pub(super) pki: Pki,
    pub(super) server_crt: PathBuf,
    pub(super) server_key: PathBuf,
    pub(super) jwks_file: PathBuf,
    pub(super) accounts_file: PathBuf,
    pub(super) users_file: PathBuf,
    /// One token per loop.
    pub(super) tokens: Vec<String>,
    /// TLS client without a certificate, and with one; resumption disabled.
    pub(super) tls_plain: TlsConnector,
    pub(super) tls_cert: TlsConnector,
}

impl Fixtures {
    pub(super) fn new(dir: &Path, args: &Args, custom_server: Option<&Path>) -> Fixtures {
        let pki = Pki::new(dir, EC);
        let (server_crt, server_key) = pki.write_server(&pki.server(EC), "server");
        let (client_crt, client_key) =
            pki.client("bench-device", EC, Duration::from_secs(24 * 3600), "client");

        let (signer, jwk) = jwt::rsa_signer("bench-key");
        let jwks_file = write(dir, "jwks.json", &jwt::jwks(&[jwk]));
        let accounts_file = write(dir, "service-accounts.yaml", jwt::SERVICE_ACCOUNTS_YAML);
        let tokens = mint_tokens(&signer, args.concurrency);

        let users_file = dir.join("users.yaml");
        if let Some(bin) = custom_server {
            add_user(bin, &users_file);
        }

        let root = pki.root_file();
        let tls_plain = tls_connector(&root, None, args.x25519_only);
        let tls_cert = tls_connector(&root, Some((&client_crt, &client_key)), args.x25519_only);
        Fixtures {
            dir: dir.to_owned(),
            pki,
            server_crt,
            server_key,
            jwks_file,
            accounts_file,
            users_file,
            tokens,
            tls_plain,
            tls_cert,
        }
    }
}

pub(super) fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    path
}

pub(super) fn p(path: &Path) -> String {
    path.to_str().expect("temporary paths are UTF-8").to_owned()
}

/// Distinct tokens (their `exp` differs by a second), valid for a day.
pub(super) fn mint_tokens(signer: &Signer, n: usize) -> Vec<String> {
    (0..n as u64)
        .map(|i| {
            signer.token(
                jwt::SENSOR,
                jwt::AUDIENCE,
                jwt::ISSUER,
                jwt::now() + 86_400 + i,
            )
        })
        .collect()
}

/// `custom-auth-server add-user --password-stdin` (default argon2 parameters).
pub(super) fn add_user(bin: &Path, users: &Path) {
    use std::io::Write as _;
    let mut child = Command::new(bin)
        .args(["add-user", "--password-stdin", "--name", USER, "--users"])
        .arg(users)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("run {} add-user: {e}", bin.display()));
    child
        .stdin
        .take()
        .expect("piped stdin")
        .write_all(format!("{PASSWORD}\n").as_bytes())
        .expect("write the password to add-user");
    let status = child.wait().expect("wait for add-user");
    assert!(
        status.success(),
        "custom-auth-server add-user failed: {status}"
    );
}

pub(super) fn tls_connector(
    root: &Path,
    identity: Option<(&Path, &Path)>,
    x25519_only: bool,
) -> TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(root).expect("read the root CA") {
        roots
            .add(cert.expect("root CA PEM"))
            .expect("add the root CA");
    }
    let mut provider = rustls::crypto::aws_lc_rs::default_provider();
    if x25519_only {
        provider.kx_groups = vec![rustls::crypto::aws_lc_rs::kx_group::X25519];
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(provider))
        .with_safe_default_protocol_versions()
        .expect("TLS 1.2 and 1.3 with aws-lc-rs")
        .with_root_certificates(roots);
    let mut config = match identity {
        None => builder.with_no_client_auth(),
        Some((crt, key)) => {
            let chain = CertificateDer::pem_file_iter(crt)
                .expect("read the client chain")
                .collect::<Result<Vec<_>, _>>()
                .expect("client chain PEM");
            let key = PrivateKeyDer::from_pem_file(key).expect("client key PEM");
            builder
                .with_client_auth_cert(chain, key)
                .expect("client identity")
        }
    };
    // Every connection a full handshake, as from a fleet of distinct devices.
    config.resumption = rustls::client::Resumption::disabled();
    TlsConnector::from(Arc::new(config))
}

// ---------------------------------------------------------------------------------------
// Child processes and the stub
// ---------------------------------------------------------------------------------------

/// The authentication server of a scenario.
pub(super) enum AuthServer {
    None,
    Stub(ScriptedServer),
    Example { proc: Proc, port: u16 },
}

impl AuthServer {
    pub(super) fn cpu(&self) -> Option<Duration> {
        match self {
            AuthServer::None => None,
            AuthServer::Stub(_) => Some(threads_cpu(STUB_THREADS)),
            AuthServer::Example { proc, .. } => Some(proc.cpu()),
        }
    }

    pub(super) fn endpoint(&self) -> Option<String> {
        match self {
            AuthServer::None => None,
            AuthServer::Stub(stub) => Some(stub.endpoint("/authn")),
            AuthServer::Example { port, .. } => Some(format!("https://localhost:{port}/")),
        }
    }
}

/// The broker's configuration for `scenario` on `port`.
pub(super) fn broker_yaml(
    fx: &Fixtures,
    scenario: Scenario,
    port: u16,
    endpoint: Option<&str>,
    args: &Args,
    data: &Path,
) -> String {
    let method = match scenario {
        Scenario::None | Scenario::NoneTls => None,
        Scenario::X509 => Some(
            "      - method: X509
        x509Settings:
          trustedClientCaCert: client-ca
"
            .to_owned(),
        ),
        Scenario::Sat => Some(format!(
            "      - method: ServiceAccountToken
        serviceAccountTokenSettings:
          audiences: [{aud}]
          jwks: {{ file: {jwks}, issuer: {iss} }}
          serviceAccounts: {{ file: {accounts} }}
",
            aud = jwt::AUDIENCE,
            iss = jwt::ISSUER,
            jwks = p(&fx.jwks_file),
            accounts = p(&fx.accounts_file),
        )),
        Scenario::CustomStub | Scenario::CustomExample => Some(format!(
            "      - method: Custom
        customSettings:
          endpoint: \"{}\"
          caCertConfigMap: auth-ca
",
            endpoint.expect("a custom scenario has an endpoint")
        )),
    };
    let mut yaml = format!(
        "dataDir: {data}
listeners:
  - name: bench
    bindAddress: 127.0.0.1
    ports:
      - port: {port}
",
        data = p(data)
    );
    if scenario.tls() {
        yaml.push_str("        tls: { mode: Manual, manual: { secretRef: server-cert } }\n");
    }
    if let Some(method) = method {
        yaml.push_str("        authenticationRef: bench\n");
        let _ = write!(
            yaml,
            "authentications:\n  - name: bench\n    authenticationMethods:\n{method}"
        );
    }
    let _ = write!(
        yaml,
        "secrets:
  server-cert: {{ certFile: {crt}, keyFile: {key} }}
configMaps:
  client-ca: {{ files: [{root}] }}
  auth-ca: {{ files: [{root}] }}
diagnostics:
  logs: {{ level: \"{level}\" }}
  metrics: {{ prometheusPort: 0 }}
",
        crt = p(&fx.server_crt),
        key = p(&fx.server_key),
        root = p(&fx.pki.root_file()),
        level = args.broker_log_level,
    );
    yaml
}
