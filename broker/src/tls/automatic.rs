//! Automatic TLS: server certificates issued by the built-in issuers, renewed
//! `renewBefore` ahead of expiry.
//!
//! One task owns renewal for the whole broker: it sleeps until the earliest renewal time
//! (a port certificate, a `certificates:` entry or the quickstart root), then runs the
//! same idempotent steps as start-up (`bootstrap`, then `ensure` per port), which renew
//! what is due and keep the rest, and swaps renewed certificates into the ports' slots.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use gatehouse_certs::{bootstrap, read_secret, CertSpec, Outcome, QuickstartOptions};
use gatehouse_config::{CertManagerCertificateSpec, Config, SecretFiles};
use tokio::task::JoinSet;

use super::{CertSlot, TlsError};

/// Never sleep longer than this between checks: wall-clock jumps (suspend, NTP) are
/// noticed within it.
const MAX_SLEEP: Duration = Duration::from_secs(3600);
/// After a failed renewal, try again this soon (or sooner if the certificate is short).
const RETRY: Duration = Duration::from_secs(30);

pub(super) struct AutoPort {
    path: String,
    issuer: String,
    spec: CertSpec,
    files: SecretFiles,
    slot: Arc<CertSlot>,
}

impl AutoPort {
    pub(super) fn new(
        config: &Config,
        path: String,
        service_name: &str,
        spec: &CertManagerCertificateSpec,
        slot: Arc<CertSlot>,
    ) -> AutoPort {
        AutoPort {
            path,
            issuer: spec.issuer_ref.name.clone(),
            spec: CertSpec::for_port(spec, service_name),
            files: config.secret(&spec.secret_name),
            slot,
        }
    }
}

/// Issue (or keep) every certificate now, then renew in the background.
pub(super) fn start(
    config: &Config,
    ports: Vec<AutoPort>,
    tasks: &mut JoinSet<()>,
) -> Result<(), TlsError> {
    let next = renew(config, &ports, SystemTime::now())?;
    let config = Arc::new(config.clone());
    let ports = Arc::new(ports);
    tasks.spawn(async move {
        let mut next = next;
        loop {
            let wait = next
                .duration_since(SystemTime::now())
                .unwrap_or(Duration::ZERO)
                .min(MAX_SLEEP);
            tokio::time::sleep(wait).await;
            let now = SystemTime::now();
            if now < next {
                continue;
            }
            // Key generation (RSA 8192 takes seconds) must not stall a runtime worker.
            let (config, task_ports) = (config.clone(), ports.clone());
            let result = tokio::task::spawn_blocking(move || renew(&config, &task_ports, now)).await;
            next = match result {
                Ok(Ok(next)) => next,
                Err(e) => {
                    tracing::error!(target: "tls", "certificate renewal task failed: {e}; retrying");
                    now + RETRY
                }
                Ok(Err(e)) => {
                    tracing::error!(target: "tls", "certificate renewal failed: {e}; retrying");
                    now + RETRY.min(shortest_lifetime(&ports).unwrap_or(RETRY) / 4)
                }
            };
        }
    });
    Ok(())
}

/// One pass: issuers, then every port. Returns when the next renewal is due.
fn renew(config: &Config, ports: &[AutoPort], now: SystemTime) -> Result<SystemTime, TlsError> {
    let boot = bootstrap(config, &QuickstartOptions::default(), now)?;
    let mut next = boot.next_renewal().unwrap_or(now + MAX_SLEEP);
    for port in ports {
        let ensured = boot
            .issuers
            .ensure(&port.issuer, &port.spec, &port.files, now)
            .map_err(|source| TlsError::Issue {
                path: port.path.clone(),
                source,
            })?;
        if matches!(ensured.outcome, Outcome::Issued(_)) || port.slot.is_empty() {
            let loaded = read_secret(&port.files).map_err(|source| TlsError::Issued {
                path: port.path.clone(),
                source,
            })?;
            tracing::info!(
                target: "tls",
                "{}: serving certificate from issuer {} (serial {}, valid until {})",
                port.path,
                port.issuer,
                loaded.info.serial,
                rfc3339(loaded.info.not_after)
            );
            port.slot.set(loaded.certified_key);
        }
        next = next.min(ensured.renewal_time);
    }
    Ok(next)
}

fn shortest_lifetime(ports: &[AutoPort]) -> Option<Duration> {
    ports.iter().map(|p| p.spec.request.duration).min()
}

fn rfc3339(t: SystemTime) -> String {
    time::OffsetDateTime::from(t)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| format!("{t:?}"))
}
