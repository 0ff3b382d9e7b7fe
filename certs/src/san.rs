//! Subject alternative names of an Automatic port's server certificate.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use gatehouse_config::San;

/// DNS names and IP addresses for a certificate.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sans {
    pub dns: Vec<String>,
    pub ip: Vec<IpAddr>,
}

/// The configured `san` first (so the first configured DNS name becomes the CN), then the
/// defaults AIO's quickstart relies on: `localhost`, this machine's host name, the
/// listener's service name, `127.0.0.1` and `::1`. Duplicates are dropped (DNS names
/// compared case-insensitively).
///
/// The defaults are always added, not only without a configured `san`, so that local
/// clients and the service name keep working when an external name is added.
pub fn server_sans(service_name: &str, configured: &San) -> Sans {
    let mut dns = configured.dns.clone();
    dns.push("localhost".into());
    dns.extend(hostname());
    dns.push(service_name.to_owned());
    let mut ip = configured.ip.clone();
    ip.push(IpAddr::V4(Ipv4Addr::LOCALHOST));
    ip.push(IpAddr::V6(Ipv6Addr::LOCALHOST));

    let mut sans = Sans::default();
    for name in dns {
        let name = name.to_ascii_lowercase();
        if !name.is_empty() && !sans.dns.contains(&name) {
            sans.dns.push(name);
        }
    }
    for addr in ip {
        if !sans.ip.contains(&addr) {
            sans.ip.push(addr);
        }
    }
    sans
}

/// This machine's host name, as the kernel reports it (no crate or libc call needed on
/// Linux), when it is usable as a DNS name.
pub fn hostname() -> Option<String> {
    ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .filter_map(|path| std::fs::read_to_string(path).ok())
        .map(|name| name.trim().to_ascii_lowercase())
        .find(|name| is_dns_name(name))
}

fn is_dns_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configured_names_come_first_and_duplicates_go() {
        let configured = San {
            dns: vec!["mqtt.example.com".into(), "LOCALHOST".into()],
            ip: vec![
                "192.168.1.10".parse().unwrap(),
                "127.0.0.1".parse().unwrap(),
            ],
        };
        let sans = server_sans("gatehouse", &configured);
        assert_eq!(sans.dns[0], "mqtt.example.com");
        assert_eq!(sans.dns[1], "localhost");
        assert!(sans.dns.contains(&"gatehouse".to_string()));
        assert_eq!(
            sans.dns.iter().filter(|d| *d == "localhost").count(),
            1,
            "{sans:?}"
        );
        assert_eq!(
            sans.ip,
            vec![
                "192.168.1.10".parse::<IpAddr>().unwrap(),
                "127.0.0.1".parse().unwrap(),
                "::1".parse().unwrap()
            ]
        );
    }

    #[test]
    fn defaults_without_configuration() {
        let sans = server_sans("default", &San::default());
        assert_eq!(sans.dns.first().map(String::as_str), Some("localhost"));
        assert_eq!(sans.dns.last().map(String::as_str), Some("default"));
        if let Some(host) = hostname() {
            assert!(sans.dns.contains(&host));
        }
        assert_eq!(sans.ip.len(), 2);
    }

    #[test]
    fn host_names_are_checked() {
        assert!(is_dns_name("node-1.cluster.local"));
        assert!(!is_dns_name("bad_name"));
        assert!(!is_dns_name("-x"));
        assert!(!is_dns_name(""));
    }
}
