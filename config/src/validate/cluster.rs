//! `cluster:`: the NATS seed URLs, the replica count, TLS files in pairs, the node name.

use super::Report;
use crate::model::*;

pub(super) fn check_cluster(cluster: &Cluster, base: &str, report: &mut Report) {
    let nats = &cluster.nats;
    if nats.servers.is_empty() {
        report.error(
            format!("{base}.nats.servers"),
            "at least one NATS server URL is needed, e.g. [nats://127.0.0.1:4222]",
        );
    }
    for (i, url) in nats.servers.iter().enumerate() {
        if let Err(why) = check_url(url) {
            report.error(format!("{base}.nats.servers[{i}]"), why);
        }
    }
    if !(1..=5).contains(&nats.replicas) {
        report.error(
            format!("{base}.nats.replicas"),
            format!(
                "{} is not a JetStream replica count: 1 to 5 (3 survives the loss of one NATS server)",
                nats.replicas
            ),
        );
    } else if nats.replicas > 1 && nats.servers.len() == 1 {
        report.warn(
            format!("{base}.nats.replicas"),
            format!(
                "{} replicas need as many NATS servers in the cluster; only one is listed (fine if it is a seed of a larger cluster)",
                nats.replicas
            ),
        );
    }
    // Failure handling: a grace longer than this serves stale sessions for minutes.
    if nats.disconnect_grace > std::time::Duration::from_secs(600) {
        report.error(
            format!("{base}.nats.disconnectGrace"),
            format!(
                "{:?} is too long: at most 10m (a node cut off from NATS serves stale sessions meanwhile); default 5s",
                nats.disconnect_grace
            ),
        );
    }
    if cluster.queue_max_bytes < 1 << 20 {
        report.error(
            format!("{base}.queueMaxBytes"),
            format!(
                "{} bytes is too small for the messages of offline sessions: at least 1MiB; default 1GiB",
                cluster.queue_max_bytes
            ),
        );
    }
    if let Some(tls) = &nats.tls {
        if tls.cert_file.is_some() != tls.key_file.is_some() {
            report.error(
                format!("{base}.nats.tls"),
                "certFile and keyFile go together (a client certificate and its key)",
            );
        }
    }
    if let Some(name) = &cluster.node_name {
        if name.is_empty()
            || name.len() > 64
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            report.error(
                format!("{base}.nodeName"),
                format!(
                    "`{name}` is not a node name: 1 to 64 letters, digits, `-` or `_` (default: the host name)"
                ),
            );
        }
    }
}

/// `nats://host[:port]` or `tls://host[:port]`, without credentials or a path.
fn check_url(url: &str) -> Result<(), String> {
    let Some((scheme, rest)) = url.split_once("://") else {
        return Err(format!(
            "`{url}` is not a NATS URL: write nats://host:port (or tls://host:port)"
        ));
    };
    if !matches!(scheme, "nats" | "tls") {
        return Err(format!(
            "`{url}`: the scheme must be nats:// or tls://, not {scheme}://"
        ));
    }
    if rest.contains('@') {
        return Err(format!(
            "`{url}`: no credentials in the URL (they would show in logs); use cluster.nats.credentialsFile"
        ));
    }
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.contains('/') || rest.contains('?') {
        return Err(format!("`{url}`: a NATS URL has no path or query"));
    }
    let (host, port) = match rest.rsplit_once(':') {
        // `[::1]:4222`, `host:4222`; a bare IPv6 literal in brackets has no port.
        Some((h, p)) if !p.contains(']') => (h, Some(p)),
        _ => (rest, None),
    };
    if host.is_empty() || host.contains(char::is_whitespace) {
        return Err(format!("`{url}`: the host is missing"));
    }
    if let Some(p) = port {
        match p.parse::<u16>() {
            Ok(n) if n > 0 => {}
            _ => return Err(format!("`{url}`: `{p}` is not a port (1 to 65535)")),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::check_url;

    #[test]
    fn urls() {
        for good in [
            "nats://127.0.0.1:4222",
            "nats://nats-0.nats:4222",
            "tls://nats.example.com",
            "nats://[::1]:4222",
            "nats://host:4222/",
        ] {
            assert_eq!(check_url(good), Ok(()), "{good}");
        }
        for bad in [
            "127.0.0.1:4222",
            "http://host:4222",
            "nats://user:pw@host:4222",
            "nats://:4222",
            "nats://host:0",
            "nats://host:99999",
            "nats://host:4222/x",
        ] {
            assert!(check_url(bad).is_err(), "{bad}");
        }
    }
}
