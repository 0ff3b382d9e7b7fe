//! The issuers of a configuration, and bootstrapping them in the right order.
//!
//! Order matters because `certificates:` can create the secret a `ca` issuer reads (the
//! cert-manager pattern: a `selfSigned` issuer signs a CA certificate into `test-ca`, and
//! issuer `my-issuer` is `ca: { secretName: test-ca }`), and that CA can in turn sign
//! further `certificates:`. [`bootstrap`] processes certificates as soon as their issuer is
//! ready and builds a `ca` issuer once no pending certificate still writes its secret.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::SystemTime;

use gatehouse_config::{Config, IssuerSpec, SecretFiles, DEFAULT_ISSUER};

use crate::authority::{Authority, AuthorityError};
use crate::bundle::{BundleWriteError, TrustBundle};
use crate::ensure::{ensure, CertSpec, EnsureError, Ensured};
use crate::load::LoadError;
use crate::quickstart::{QuickstartCa, QuickstartError, QuickstartOptions};
use crate::signer::Signer;

#[derive(Debug, thiserror::Error)]
pub enum IssuersError {
    #[error(transparent)]
    Quickstart(#[from] QuickstartError),
    #[error(
        "issuer `{issuer}`: secret `{secret}` not found ({}); create it, or add a \
         `certificates:` entry with secretName `{secret}`",
        path.display()
    )]
    MissingSecret {
        issuer: String,
        secret: String,
        path: PathBuf,
    },
    #[error("issuer `{issuer}` (secret `{secret}`): {source}")]
    Issuer {
        issuer: String,
        secret: String,
        #[source]
        source: AuthorityError,
    },
    #[error("certificate `{certificate}`: no issuer named `{issuer}`")]
    UnknownIssuer { certificate: String, issuer: String },
    #[error(
        "certificate `{certificate}` needs issuer `{issuer}`, whose secret `{secret}` is \
         written by certificate(s) {writers:?}, which wait for issuers in turn: nothing can \
         be issued first"
    )]
    Cycle {
        certificate: String,
        issuer: String,
        secret: String,
        writers: Vec<String>,
    },
    #[error("certificate `{certificate}`: {source}")]
    Certificate {
        certificate: String,
        #[source]
        source: EnsureError,
    },
    #[error(transparent)]
    Bundle(#[from] BundleWriteError),
}

/// Every issuer by name, the default one included.
#[derive(Debug)]
pub struct Issuers {
    signers: BTreeMap<String, Signer>,
}

impl Issuers {
    pub fn get(&self, name: &str) -> Option<&Signer> {
        self.signers.get(name)
    }

    pub fn quickstart(&self) -> Option<&QuickstartCa> {
        match self.signers.get(DEFAULT_ISSUER) {
            Some(Signer::Quickstart(ca)) => Some(ca),
            _ => None,
        }
    }

    /// Issues into (or keeps) `files` with the issuer named `issuer`.
    pub fn ensure(
        &self,
        issuer: &str,
        spec: &CertSpec,
        files: &SecretFiles,
        now: SystemTime,
    ) -> Result<Ensured, EnsureError> {
        match self.get(issuer) {
            Some(signer) => ensure(signer, spec, files, now),
            // Validation guarantees every issuerRef names an issuer.
            None => Err(EnsureError::UnknownIssuer(issuer.to_owned())),
        }
    }

    /// The roots of every issuer: the quickstart root(s) first, then `ca` issuers in name
    /// order. `selfSigned` issuers add nothing (see `bundle`).
    pub fn trust_bundle(&self) -> TrustBundle {
        let mut bundle = TrustBundle::default();
        let quickstart = self.signers.get(DEFAULT_ISSUER).into_iter();
        let others = self
            .signers
            .iter()
            .filter(|(name, _)| *name != DEFAULT_ISSUER)
            .map(|(_, s)| s);
        for signer in quickstart.chain(others) {
            for root in signer.roots() {
                bundle.add(root);
            }
        }
        bundle
    }
}

/// The result of [`bootstrap`].
#[derive(Debug)]
pub struct Bootstrap {
    pub issuers: Issuers,
    /// Every `certificates:` entry by name, in the order processed.
    pub certificates: Vec<(String, Ensured)>,
    /// Where the trust bundle was written.
    pub trust_bundle: PathBuf,
}

impl Bootstrap {
    /// The earliest moment something needs renewing: a `certificates:` entry or the
    /// quickstart root. Running [`bootstrap`] again then renews what is due and keeps the
    /// rest; ports' own certificates have their own [`Ensured::renewal_time`].
    pub fn next_renewal(&self) -> Option<SystemTime> {
        let certs = self.certificates.iter().map(|(_, e)| e.renewal_time);
        let root = self.issuers.quickstart().map(QuickstartCa::renewal_time);
        certs.chain(root).min()
    }
}

/// Makes every issuer of `config` ready at `now`: the quickstart CA (created or rotated as
/// needed), the `certificates:` entries (issued or kept), then the `ca` issuers from their
/// secrets; and writes the trust bundle. Idempotent: running it again only renews what is
/// due, which is how the broker renews `certificates:` and rotates the quickstart root.
pub fn bootstrap(
    config: &Config,
    options: &QuickstartOptions,
    now: SystemTime,
) -> Result<Bootstrap, IssuersError> {
    let mut signers = BTreeMap::new();
    signers.insert(
        DEFAULT_ISSUER.to_owned(),
        Signer::Quickstart(QuickstartCa::ensure(&config.data_dir, options, now)?),
    );
    for issuer in &config.issuers {
        if issuer.spec == IssuerSpec::SelfSigned {
            signers.insert(issuer.name.clone(), Signer::SelfSigned);
        }
    }

    let mut pending: Vec<_> = config.certificates.iter().collect();
    let mut certificates = Vec::new();
    while !pending.is_empty() {
        // Secrets still to be written in this pass: a `ca` issuer reading one must wait.
        let unwritten: BTreeSet<&str> = pending.iter().map(|c| c.secret_name.as_str()).collect();
        let before = pending.len();
        let mut waiting = Vec::new();
        for cert in pending {
            let issuer = cert.issuer_ref.name.as_str();
            if !signers.contains_key(issuer) {
                let Some(definition) = config.issuer(issuer) else {
                    return Err(IssuersError::UnknownIssuer {
                        certificate: cert.name.clone(),
                        issuer: issuer.to_owned(),
                    });
                };
                if let IssuerSpec::Ca(ca) = &definition.spec {
                    if unwritten.contains(ca.secret_name.as_str()) {
                        waiting.push(cert);
                        continue;
                    }
                    signers.insert(issuer.to_owned(), load_ca(config, issuer, &ca.secret_name)?);
                }
            }
            let ensured = ensure(
                &signers[issuer],
                &CertSpec::for_certificate(cert),
                &config.secret(&cert.secret_name),
                now,
            )
            .map_err(|source| IssuersError::Certificate {
                certificate: cert.name.clone(),
                source,
            })?;
            certificates.push((cert.name.clone(), ensured));
        }
        if !waiting.is_empty() && waiting.len() == before {
            return Err(cycle(config, &waiting));
        }
        pending = waiting;
    }

    for issuer in &config.issuers {
        if let IssuerSpec::Ca(ca) = &issuer.spec {
            if !signers.contains_key(&issuer.name) {
                let signer = load_ca(config, &issuer.name, &ca.secret_name)?;
                signers.insert(issuer.name.clone(), signer);
            }
        }
    }

    let issuers = Issuers { signers };
    let trust_bundle = TrustBundle::path(&config.data_dir);
    issuers.trust_bundle().write(&trust_bundle)?;
    Ok(Bootstrap {
        issuers,
        certificates,
        trust_bundle,
    })
}

fn load_ca(config: &Config, issuer: &str, secret: &str) -> Result<Signer, IssuersError> {
    match Authority::from_files(&config.secret(secret)) {
        Ok(authority) => Ok(Signer::Ca(authority)),
        Err(AuthorityError::Load(LoadError::NotFound { path })) => {
            Err(IssuersError::MissingSecret {
                issuer: issuer.to_owned(),
                secret: secret.to_owned(),
                path,
            })
        }
        Err(source) => Err(IssuersError::Issuer {
            issuer: issuer.to_owned(),
            secret: secret.to_owned(),
            source,
        }),
    }
}

/// Names the first waiting certificate, its issuer, the secret, and who would write it.
fn cycle(config: &Config, waiting: &[&gatehouse_config::Certificate]) -> IssuersError {
    let cert = waiting[0];
    let issuer = cert.issuer_ref.name.clone();
    let secret = match config.issuer(&issuer).map(|i| &i.spec) {
        Some(IssuerSpec::Ca(ca)) => ca.secret_name.clone(),
        _ => String::new(),
    };
    let writers = waiting
        .iter()
        .filter(|c| c.secret_name == secret)
        .map(|c| c.name.clone())
        .collect();
    IssuersError::Cycle {
        certificate: cert.name.clone(),
        issuer,
        secret,
        writers,
    }
}
