//! The human form of a [`Report`].

use std::fmt::Write as _;

use super::model::*;

/// A value as printed in the subject line: quoted when it has spaces or separators.
pub(super) fn show(value: &str) -> String {
    if value.is_empty() || value.contains(|c: char| c.is_whitespace() || ",={}\"".contains(c)) {
        format!("{value:?}")
    } else {
        value.to_owned()
    }
}

pub(super) fn show_set(set: &serde_json::Value) -> String {
    let pairs: Vec<String> = set
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{}={}", show(k), show(v.as_str().unwrap_or_default())))
                .collect()
        })
        .unwrap_or_default();
    format!("{{{}}}", pairs.join(", "))
}

pub(super) fn show_written(v: &serde_json::Value) -> String {
    match v.as_str() {
        Some(s) => s.to_owned(),
        None => show_set(v),
    }
}

/// `written -> substituted`, or just `written` when substitution changed nothing.
pub(super) fn show_entry(e: &EntryOut) -> String {
    match &e.substituted {
        Some(s) if *s == e.written => s.clone(),
        Some(s) => format!("{} -> {s}", e.written),
        None => format!("{} -> (no value for a token: matches nothing)", e.written),
    }
}

pub(super) fn relative<'a>(path: &'a str, base: &str) -> &'a str {
    path.strip_prefix(base)
        .and_then(|p| p.strip_prefix('.'))
        .unwrap_or(path)
}

pub(super) fn human(r: &Report) -> String {
    let mut out = String::new();
    let verdict = if r.allowed { "ALLOWED" } else { "DENIED" };
    let target = match (&r.target, &r.key_base64) {
        (Some(t), _) => format!(" {t}"),
        (None, Some(b64)) => format!(" (binary key, base64 {b64})"),
        (None, None) => String::new(),
    };
    let _ = write!(out, "{verdict}  {}{target}", r.action);
    let decided_by_rule = r.allowed && r.policy.as_ref().is_some_and(|p| p.applied);
    if !decided_by_rule {
        let short = match (&r.port, &r.policy) {
            (Some(_), None) => "the port has no authorizationRef".to_owned(),
            (Some(_), Some(p)) if !p.applied => "the port does not apply the policy".to_owned(),
            _ => r.reason.clone(),
        };
        let _ = write!(out, "  — {short}");
    }
    out.push('\n');

    if let Some(p) = &r.port {
        let _ = writeln!(
            out,
            "  port: {}:{} (YAML: {}) authenticationRef={} authorizationRef={}",
            p.listener,
            p.port,
            p.path,
            p.authentication_ref.as_deref().unwrap_or("-"),
            p.authorization_ref.as_deref().unwrap_or("-"),
        );
        if !p.policy_applied {
            let _ = writeln!(out, "  {}", r.reason);
        }
    }
    let attrs: Vec<String> = r
        .subject
        .attributes
        .iter()
        .map(|(k, v)| format!("{}={}", show(k), show(v)))
        .collect();
    let subject_line = format!(
        "  subject: clientId={} username={} attributes={{{}}}\n",
        show(&r.subject.client_id),
        r.subject.username.as_deref().map_or("-".into(), show),
        attrs.join(", ")
    );

    if let Some(c) = &r.certificate {
        certificate_lines(&mut out, c);
    }
    let Some(policy) = &r.policy else {
        out.push_str(&subject_line);
        notes(&mut out, r);
        return out;
    };
    if !policy.applied {
        let _ = writeln!(
            out,
            "  the policy alone would decide: {}",
            if policy.allowed {
                "ALLOWED".to_owned()
            } else {
                format!("DENIED — {}", policy.reason)
            }
        );
    }
    if let (Some(rule), Some(m)) = (r.rule, &r.matched) {
        let _ = writeln!(
            out,
            "  by {} rules[{rule}] (YAML: {})",
            policy.label,
            r.yaml_path.as_deref().unwrap_or_default()
        );
        let rule_path = r.rule_path.as_deref().unwrap_or_default();
        if let Some(p) = &m.principal {
            let _ = writeln!(
                out,
                "  principal: {} = {}",
                relative(&p.path, rule_path),
                show_written(&p.written)
            );
        }
        out.push_str(&subject_line);
        if let Some(e) = &m.entry {
            let what = match m.key_type {
                None => "filter",
                Some("Binary") => "binary key (base64)",
                Some("String") => "key",
                Some(_) => "key pattern",
            };
            let _ = writeln!(
                out,
                "  {what} after substitution: {}{}",
                e.substituted.as_deref().unwrap_or_default(),
                if e.substituted.as_deref() == Some(e.written.as_str()) {
                    String::new()
                } else {
                    format!("  (written: {})", e.written)
                }
            );
        }
        match &m.client_id_glob {
            Some(g) => {
                let _ = writeln!(
                    out,
                    "  client id glob after substitution: {}{}",
                    g.substituted.as_deref().unwrap_or_default(),
                    if g.substituted.as_deref() == Some(g.written.as_str()) {
                        String::new()
                    } else {
                        format!("  (written: {})", g.written)
                    }
                );
            }
            None if r.action == "connect" => {
                let _ = writeln!(
                    out,
                    "  the Connect resource has no clientIds: any client id"
                );
            }
            None => {}
        }
    } else {
        let _ = writeln!(
            out,
            "  policy: {}, {} rule{}",
            policy.label,
            policy.rules,
            if policy.rules == 1 { "" } else { "s" }
        );
        out.push_str(&subject_line);
    }
    if !r.near_misses.is_empty() {
        out.push_str("  nearest misses (principals matched, but no resource allowed it):\n");
        for m in &r.near_misses {
            let principal = m.principal.as_ref().map_or(String::new(), |p| {
                format!(
                    "{} = {} matched; ",
                    relative(&p.path, &m.rule_path),
                    show_written(&p.written)
                )
            });
            let _ = writeln!(
                out,
                "    rules[{}] (YAML: {}): {principal}{}",
                m.rule, m.rule_path, m.why
            );
            for res in &m.resources {
                let method = match res.key_type {
                    Some(kt) => format!("{} {kt}", res.method),
                    None => res.method.to_owned(),
                };
                let mut verdict = Vec::new();
                if !res.method_allows {
                    verdict.push(format!("method {} does not allow {}", res.method, r.action));
                }
                if !res.client_allowed {
                    verdict.push(format!(
                        "client id {} matches none of its clientIds",
                        show(&r.subject.client_id)
                    ));
                }
                let _ = writeln!(
                    out,
                    "      {} {method}{}",
                    relative(&res.path, &m.rule_path),
                    if verdict.is_empty() {
                        String::new()
                    } else {
                        format!(": {}", verdict.join("; "))
                    }
                );
                for g in &res.client_ids {
                    let _ = writeln!(
                        out,
                        "        {} {}: {}",
                        relative(&g.path, &res.path),
                        show_entry(g),
                        if g.matched {
                            "matches the client id"
                        } else {
                            "does not match the client id"
                        }
                    );
                }
                for e in &res.entries {
                    let verb = match r.action {
                        "publish" => ("matches", "does not match"),
                        "subscribe" => ("contains", "does not contain"),
                        _ => ("matches", "does not match"),
                    };
                    let target = match (&r.target, &r.key_base64) {
                        (Some(t), _) => t.clone(),
                        (None, Some(b)) => format!("base64 {b}"),
                        _ => String::new(),
                    };
                    let _ = writeln!(
                        out,
                        "        {} {}{}",
                        relative(&e.path, &res.path),
                        show_entry(e),
                        if e.substituted.is_none() {
                            String::new()
                        } else if e.matched {
                            format!(": {} {target}", verb.0)
                        } else {
                            format!(": {} {target}", verb.1)
                        }
                    );
                }
            }
        }
    }
    if !r.principals_not_matched.is_empty() {
        out.push_str("  principals did not match:\n");
        for m in &r.principals_not_matched {
            let tried: Vec<String> = m
                .tried
                .iter()
                .map(|t| {
                    let at = relative(&t.path, &m.rule_path);
                    let at = at.strip_prefix("principals.").unwrap_or(at);
                    match t.field {
                        "attributes" => {
                            let mut why = Vec::new();
                            if !t.missing.is_empty() {
                                why.push(format!("missing {}", t.missing.join(", ")));
                            }
                            if !t.different.is_empty() {
                                why.push(format!("other value for {}", t.different.join(", ")));
                            }
                            format!("{at} {}: {}", show_set(&t.written), why.join("; "))
                        }
                        field => {
                            let written = show_written(&t.written);
                            let value = match t.substituted.as_ref().and_then(|s| s.as_deref()) {
                                Some(s) if s == written => written.clone(),
                                Some(s) => format!("{written} (= {s})"),
                                None => format!("{written} (no value for a token)"),
                            };
                            let have = if field == "clientIds" {
                                format!("clientId={}", show(&r.subject.client_id))
                            } else {
                                format!(
                                    "username={}",
                                    r.subject.username.as_deref().map_or("-".into(), show)
                                )
                            };
                            format!("{at} {value} vs {have}")
                        }
                    }
                })
                .collect();
            let tried = if tried.is_empty() {
                "no principals: the rule matches no client".to_owned()
            } else {
                tried.join("; ")
            };
            let _ = writeln!(out, "    rules[{}]: {tried}", m.rule);
        }
    }
    if let Some(p) = &r.policy {
        if r.port.is_none() {
            let ports: Vec<String> = p
                .used_by
                .iter()
                .map(|u| {
                    format!(
                        "{}:{}{}",
                        u.listener,
                        u.port,
                        if u.applied {
                            ""
                        } else {
                            " (not applied: no authenticationRef)"
                        }
                    )
                })
                .collect();
            let _ = writeln!(
                out,
                "  used by ports: {}",
                if ports.is_empty() {
                    "none (no port names it in authorizationRef)".to_owned()
                } else {
                    ports.join(", ")
                }
            );
        }
    }
    notes(&mut out, r);
    out
}

/// How the X.509 method read `--client-cert`.
pub(super) fn certificate_lines(out: &mut String, c: &CertificateOut) {
    let _ = writeln!(
        out,
        "  client certificate: {} certificate(s), read by {} (YAML: {})",
        c.presented, c.authentication, c.method_path
    );
    if !c.verified {
        let _ = writeln!(
            out,
            "    does not verify: {}",
            c.error.as_deref().unwrap_or("-")
        );
        return;
    }
    for (i, cert) in c.path.iter().enumerate() {
        let matched = if c.matched_certificate == Some(i) {
            format!(
                "  <- attributes from {}",
                c.attributes_from.as_deref().unwrap_or("-")
            )
        } else {
            String::new()
        };
        let _ = writeln!(
            out,
            "    verified path {}: {}{matched}",
            cert.role, cert.subject
        );
    }
    if c.attributes_from.is_none() {
        let _ = writeln!(
            out,
            "    no certificate of the verified path matches an authorizationAttributes entry"
        );
    }
    let sent_off_path = c.presented.saturating_sub(c.path.len().saturating_sub(1));
    if sent_off_path > 0 {
        let _ = writeln!(
            out,
            "    {sent_off_path} certificate(s) sent but not chained through: ignored (the anchor comes from the trusted CAs)"
        );
    }
}

pub(super) fn notes(out: &mut String, r: &Report) {
    for n in &r.notes {
        let _ = writeln!(out, "  note: {n}");
    }
}
