//! `gatehouse ca ...`: the trust bundle, and certificates issued by the configured issuers
//! (for tests and device onboarding).
//!
//! Both commands first make the issuers ready exactly as the broker does at start
//! ([`gatehouse_certs::bootstrap`]): the quickstart root CA is created in `<dataDir>/ca/` if
//! it does not exist yet, `certificates:` entries are issued or kept, and the trust bundle
//! `<dataDir>/trust/ca.crt` is (re)written. Input errors are reported on stderr with exit
//! code 1.

use std::fs;
use std::io::{self, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::{Args, Subcommand};
use gatehouse_certs::{
    bootstrap, write_secret, Bootstrap, CertRequest, Key, QuickstartOptions, Usage,
};
use gatehouse_config::{CaseInsensitive, Config, PrivateKeyAlgorithm, SecretFiles, DEFAULT_ISSUER};

#[derive(Subcommand)]
pub enum CaCommand {
    /// Print the trust bundle (<dataDir>/trust/ca.crt): the root certificate(s) clients need
    /// to trust the broker's certificates, e.g. for `mosquitto_pub --cafile`. Creates the
    /// quickstart root CA first if it does not exist yet.
    Bundle {
        /// Write the bundle to FILE instead of standard output.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// Issue a server (default) or client certificate from a configured issuer and write
    /// DIR/tls.crt (certificate, then intermediates), DIR/tls.key (mode 0600) and
    /// DIR/ca.crt (the root).
    Issue(IssueArgs),
}

#[derive(Args)]
pub struct IssueArgs {
    /// Subject common name.
    #[arg(long, value_name = "NAME")]
    cn: String,
    /// Issue a client certificate (extended key usage clientAuth) instead of a server
    /// certificate (serverAuth).
    #[arg(long)]
    client: bool,
    /// Subject alternative name: a DNS name or an IP address; repeatable or comma-separated.
    /// Without any, a server certificate gets the CN (when it is a DNS name), localhost,
    /// 127.0.0.1 and ::1, and a client certificate gets none.
    #[arg(long, value_name = "DNS|IP", value_delimiter = ',')]
    san: Vec<String>,
    /// The issuer: the built-in default or one of the configuration's `issuers`.
    #[arg(long, value_name = "NAME", default_value = DEFAULT_ISSUER)]
    issuer: String,
    /// Key algorithm: Ec256, Ec384, Ec521, Ed25519, Rsa2048, Rsa4096 or Rsa8192. The whole
    /// chain must share one family (EC, RSA or Ed25519).
    #[arg(long, value_name = "ALGORITHM", default_value = "Ec256")]
    algorithm: String,
    /// Lifetime, Go duration syntax (2160h, 720h30m, ...); never beyond the issuing CA's.
    #[arg(long, value_name = "DURATION", default_value = "2160h")]
    duration: String,
    /// Folder to write tls.crt, tls.key and ca.crt to (created if missing).
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// Replace tls.crt, tls.key or ca.crt already in DIR.
    #[arg(long)]
    force: bool,
}

/// Runs `gatehouse ca <command>`: 0 on success, 1 with a message on stderr otherwise.
pub fn run(command: CaCommand, config: &Config) -> ExitCode {
    let result = match command {
        CaCommand::Bundle { out } => bundle(config, out.as_deref()),
        CaCommand::Issue(args) => issue(config, &args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gatehouse: {e}");
            ExitCode::FAILURE
        }
    }
}

fn prepare_issuers(config: &Config) -> Result<Bootstrap, String> {
    bootstrap(config, &QuickstartOptions::default(), SystemTime::now()).map_err(|e| {
        format!(
            "preparing the issuers (data directory {}): {e}",
            config.data_dir.display()
        )
    })
}

fn bundle(config: &Config, out: Option<&Path>) -> Result<(), String> {
    let ready = prepare_issuers(config)?;
    let path = &ready.trust_bundle;
    let pem =
        fs::read(path).map_err(|e| format!("reading the trust bundle {}: {e}", path.display()))?;
    match out {
        None => {
            let mut stdout = io::stdout().lock();
            stdout
                .write_all(&pem)
                .and_then(|()| stdout.flush())
                .map_err(|e| format!("writing the trust bundle to standard output: {e}"))?;
        }
        Some(file) => {
            fs::write(file, &pem).map_err(|e| format!("writing {}: {e}", file.display()))?;
            eprintln!(
                "wrote the trust bundle {} to {}",
                path.display(),
                file.display()
            );
        }
    }
    Ok(())
}

fn issue(config: &Config, args: &IssueArgs) -> Result<(), String> {
    // Everything the command line decides is checked before anything is written.
    let algorithm = PrivateKeyAlgorithm::from_str_ci(&args.algorithm).ok_or_else(|| {
        format!(
            "unknown --algorithm `{}`; allowed: {} (any letter case)",
            args.algorithm,
            PrivateKeyAlgorithm::allowed()
        )
    })?;
    let duration = gatehouse_config::duration::parse(&args.duration)
        .map_err(|e| format!("--duration: {e}"))?;
    if duration.is_zero() {
        return Err("--duration must be longer than 0".into());
    }
    let cn = args.cn.trim();
    if cn.is_empty() {
        return Err("--cn must not be empty".into());
    }
    let usage = if args.client {
        Usage::Client
    } else {
        Usage::Server
    };
    let mut sans = parse_sans(&args.san)?;
    if sans.is_empty() && usage == Usage::Server {
        sans = default_server_sans(cn);
    }
    let (dns_names, ip_addresses) = split_sans(sans);
    if args.issuer != DEFAULT_ISSUER && config.issuer(&args.issuer).is_none() {
        let known: Vec<&str> = std::iter::once(DEFAULT_ISSUER)
            .chain(config.issuers.iter().map(|i| i.name.as_str()))
            .collect();
        return Err(format!(
            "unknown issuer `{}`; known issuers: {}",
            args.issuer,
            known.join(", ")
        ));
    }
    let files = SecretFiles {
        cert_file: args.out.join("tls.crt"),
        key_file: args.out.join("tls.key"),
        ca_file: Some(args.out.join("ca.crt")),
    };
    if args.out.exists() && !args.out.is_dir() {
        return Err(format!("{} exists and is not a folder", args.out.display()));
    }
    if !args.force {
        let existing = [&files.cert_file, &files.key_file]
            .into_iter()
            .chain(files.ca_file.as_ref())
            .find(|f| f.exists());
        if let Some(file) = existing {
            return Err(format!(
                "{} already exists; pass --force to replace it",
                file.display()
            ));
        }
    }

    let ready = prepare_issuers(config)?;
    let signer = ready
        .issuers
        .get(&args.issuer)
        .ok_or_else(|| format!("unknown issuer `{}`", args.issuer))?;
    let key = Key::generate(algorithm).map_err(|e| e.to_string())?;
    let request = CertRequest {
        usage,
        common_name: Some(cn.to_owned()),
        organization: None,
        dns_names,
        ip_addresses,
        duration,
    };
    let issued = signer
        .issue(&request, key, SystemTime::now())
        .map_err(|e| format!("issuer `{}`: {e}", args.issuer))?;
    write_secret(&files, &issued).map_err(|e| e.to_string())?;

    let info = issued.info();
    let kind = if args.client { "client" } else { "server" };
    let mut names: Vec<String> = info.dns_names.iter().map(|d| format!("DNS:{d}")).collect();
    names.extend(info.ip_addresses.iter().map(|ip| format!("IP:{ip}")));
    let mut out = String::new();
    out.push_str(&format!(
        "issued a {kind} certificate ({algorithm}) by issuer `{}`\n",
        args.issuer
    ));
    out.push_str(&format!("  subject: {}\n", info.subject));
    out.push_str(&format!("  issuer:  {}\n", info.issuer));
    if !names.is_empty() {
        out.push_str(&format!("  SANs:    {}\n", names.join(", ")));
    }
    out.push_str(&format!("  serial:  {}\n", info.serial));
    out.push_str(&format!("  expires: {}\n", rfc3339(info.not_after)));
    out.push_str(&format!(
        "wrote {} (certificate and chain)\n",
        files.cert_file.display()
    ));
    out.push_str(&format!(
        "wrote {} (private key, mode 0600)\n",
        files.key_file.display()
    ));
    if let Some(ca) = &files.ca_file {
        out.push_str(&format!("wrote {} (root CA)\n", ca.display()));
    }
    // The files are written: a closed stdout is not worth failing the command for.
    let _ = io::stdout().lock().write_all(out.as_bytes());
    Ok(())
}

/// One subject alternative name from the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
enum San {
    Dns(String),
    Ip(IpAddr),
}

/// `--san` values: IP addresses (IPv6 optionally in brackets) or DNS names, in order,
/// without duplicates (DNS names compared case-insensitively).
fn parse_sans(values: &[String]) -> Result<Vec<San>, String> {
    let mut sans = Vec::new();
    for value in values {
        let value = value.trim();
        let unbracketed = value
            .strip_prefix('[')
            .and_then(|v| v.strip_suffix(']'))
            .unwrap_or(value);
        let san = if let Ok(ip) = unbracketed.parse::<IpAddr>() {
            San::Ip(ip)
        } else if is_dns_name(value) {
            San::Dns(value.to_ascii_lowercase())
        } else {
            return Err(format!(
                "--san `{value}` is neither an IP address nor a DNS name (letters, digits, `-`, \
                 `_` and dots; `*.` allowed as the first label)"
            ));
        };
        if !sans.contains(&san) {
            sans.push(san);
        }
    }
    Ok(sans)
}

/// The CN when it is a DNS name, `localhost`, `127.0.0.1` and `::1`.
fn default_server_sans(cn: &str) -> Vec<San> {
    let mut sans = Vec::new();
    if is_dns_name(cn) {
        sans.push(San::Dns(cn.to_ascii_lowercase()));
    }
    let defaults = [
        San::Dns("localhost".into()),
        San::Ip(IpAddr::V4(Ipv4Addr::LOCALHOST)),
        San::Ip(IpAddr::V6(Ipv6Addr::LOCALHOST)),
    ];
    for san in defaults {
        if !sans.contains(&san) {
            sans.push(san);
        }
    }
    sans
}

fn split_sans(sans: Vec<San>) -> (Vec<String>, Vec<IpAddr>) {
    let mut dns = Vec::new();
    let mut ip = Vec::new();
    for san in sans {
        match san {
            San::Dns(name) => dns.push(name),
            San::Ip(addr) => ip.push(addr),
        }
    }
    (dns, ip)
}

/// A host name as certificates carry it: dot-separated labels of ASCII letters, digits,
/// `-` and `_` (not starting or ending with `-`), optionally `*.` first (a wildcard).
fn is_dns_name(name: &str) -> bool {
    let name = name.strip_prefix("*.").unwrap_or(name);
    let name = name.strip_suffix('.').unwrap_or(name);
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

/// `2026-01-31T12:00:00Z`.
fn rfc3339(t: SystemTime) -> String {
    let secs = t
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs();
    let days = i64::try_from(secs / 86_400).unwrap_or(i64::MAX / 2);
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 → (year, month, day) in the proleptic Gregorian calendar
/// (Howard Hinnant's `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sans_are_ips_or_dns_names() {
        let values: Vec<String> = [
            "localhost",
            "127.0.0.1",
            "[::1]",
            "*.Example.com",
            "LOCALHOST",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        assert_eq!(
            parse_sans(&values).unwrap(),
            vec![
                San::Dns("localhost".into()),
                San::Ip("127.0.0.1".parse().unwrap()),
                San::Ip("::1".parse().unwrap()),
                San::Dns("*.example.com".into()),
            ]
        );
        for bad in ["", "a b", "-x.com", "x..com", "ünïcode.com", "1.2.3.4:80"] {
            let err = parse_sans(&[bad.to_string()]).unwrap_err();
            assert!(
                err.contains("neither an IP address nor a DNS name"),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn server_defaults_include_the_cn_when_it_is_a_host_name() {
        assert_eq!(
            default_server_sans("broker.local"),
            vec![
                San::Dns("broker.local".into()),
                San::Dns("localhost".into()),
                San::Ip(IpAddr::V4(Ipv4Addr::LOCALHOST)),
                San::Ip(IpAddr::V6(Ipv6Addr::LOCALHOST)),
            ]
        );
        assert_eq!(default_server_sans("My Broker").len(), 3);
        assert_eq!(default_server_sans("localhost").len(), 3);
    }

    #[test]
    fn formats_utc_times() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        let t = UNIX_EPOCH + Duration::from_secs(1_709_210_096); // leap day 2024
        assert_eq!(rfc3339(t), "2024-02-29T12:34:56Z");
        let t = UNIX_EPOCH + Duration::from_secs(4_102_444_799);
        assert_eq!(rfc3339(t), "2099-12-31T23:59:59Z");
    }
}
