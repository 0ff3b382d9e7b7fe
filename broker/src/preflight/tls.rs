//! TLS: Manual ports' secrets, the issuers' CA secrets, where issued certificates go.

use std::collections::BTreeSet;

use gatehouse_certs::{Authority, AuthorityError, LoadError};
use gatehouse_config::{Config, IssuerSpec, Tls};

use super::files::{self, Secret};
use super::Preflight;

pub(super) fn check(config: &Config, report: &mut Preflight) {
    let mut automatic = false;
    for (li, listener) in config.listeners.iter().enumerate() {
        for (pi, port) in listener.ports.iter().enumerate() {
            match &port.tls {
                None => {}
                Some(Tls::Automatic(_)) => automatic = true,
                Some(Tls::Manual(manual)) => {
                    let name = &manual.secret_ref;
                    let at = format!("{}.tls.manual.secretRef", config.paths.port(li, pi));
                    match files::secret(config, name) {
                        Secret::Ready => {}
                        // As AIO: the port is there but refuses handshakes until the
                        // secret appears; a typo in the name looks exactly like this.
                        Secret::Missing(file) => report.warn(
                            at,
                            format!(
                                "secret `{name}` is not there yet ({} does not exist): the port \
                                 waits for it and refuses TLS handshakes until tls.crt and \
                                 tls.key appear{}",
                                file.display(),
                                files::suggest_secret(config, name)
                            ),
                        ),
                        Secret::Invalid(e) => report.error(
                            at,
                            format!("secret `{name}` (the port's server certificate): {e}"),
                        ),
                    }
                }
            }
        }
    }
    // Issuers are made ready when anything is issued (see `tls::automatic`): the
    // quickstart CA and issued certificates are written to the data folder, and every `ca`
    // issuer reads its secret.
    if !automatic && config.certificates.is_empty() {
        return;
    }
    files::data_dir(
        config,
        "issued certificates and the quickstart CA are kept there",
        report,
    );
    let written: BTreeSet<&str> = config
        .certificates
        .iter()
        .map(|c| c.secret_name.as_str())
        .collect();
    for (i, issuer) in config.issuers.iter().enumerate() {
        let IssuerSpec::Ca(ca) = &issuer.spec else {
            continue;
        };
        let name = &ca.secret_name;
        if written.contains(name.as_str()) {
            continue; // a `certificates:` entry writes it first
        }
        let at = config.paths.issuer(i).at("ca.secretName");
        match Authority::from_files(&config.secret(name)) {
            Ok(_) => {}
            Err(AuthorityError::Load(LoadError::NotFound { path })) => report.error(
                at,
                format!(
                    "secret `{name}` (the CA of issuer `{}`): {} does not exist; create it \
                     (tls.crt and tls.key of the CA), or add a certificate with secretName \
                     `{name}`{}",
                    issuer.name,
                    path.display(),
                    files::suggest_secret(config, name)
                ),
            ),
            Err(e) => report.error(
                at,
                format!("secret `{name}` (the CA of issuer `{}`): {e}", issuer.name),
            ),
        }
    }
}
