//! Compiling a BrokerAuthorization resource into a [`Policy`]: templates parsed, globs
//! built once where they hold no token, state store keys decoded. Every problem is
//! collected with its YAML path; [`Policy::decide`] (in the parent) only reads the result.

use base64::Engine as _;
use gatehouse_config::glob::Glob;
use gatehouse_config::{Authorization, BrokerResourceMethod, CacheMode, KeyType, StateStoreMethod};

use super::{GlobTemplate, KeyMatch, KeyRule, Policy, Resource, Rule};
use crate::authz::template::{glob_value, key_glob_value, Template};

impl Policy {
    /// Compile a (validated) authorization resource. Any problem is an error: the broker
    /// refuses to start rather than run with fewer rules than written.
    /// `path` is where the resource is in the YAML, for messages.
    pub fn compile(auth: &Authorization, path: &str) -> Result<Policy, Vec<String>> {
        let mut problems = Vec::new();
        let mut rules = Vec::new();
        let base = format!("{path}.authorizationPolicies");
        for (ri, rule) in auth.authorization_policies.rules.iter().enumerate() {
            let at = |suffix: &str| format!("{base}.rules[{ri}].{suffix}");
            let mut template = |text: &str, path: String| match Template::parse(text) {
                Ok(t) => Some(t),
                Err(e) => {
                    problems.push(format!("{path}: {e}"));
                    None
                }
            };
            let client_ids = rule
                .principals
                .client_ids
                .iter()
                .enumerate()
                .filter_map(|(i, c)| template(c, at(&format!("principals.clientIds[{i}]"))))
                .collect();
            let usernames = rule
                .principals
                .usernames
                .iter()
                .enumerate()
                .filter_map(|(i, u)| template(u, at(&format!("principals.usernames[{i}]"))))
                .collect();
            let mut compiled = Rule {
                client_ids,
                usernames,
                attributes: rule.principals.attributes.clone(),
                connect: Vec::new(),
                publish: Vec::new(),
                subscribe: Vec::new(),
                state_store: Vec::new(),
            };
            for (bi, res) in rule.broker_resources.iter().enumerate() {
                let mut filters = Vec::new();
                for (ti, t) in res.topics.iter().enumerate() {
                    let path = at(&format!("brokerResources[{bi}].topics[{ti}]"));
                    match topic_template(t) {
                        Ok(t) => filters.push(t),
                        Err(e) => problems.push(format!("{path}: {e}")),
                    }
                }
                let mut client_ids = Vec::new();
                for (ci, c) in res.client_ids.iter().enumerate() {
                    match GlobTemplate::new(c, glob_value) {
                        Ok(g) => client_ids.push(g),
                        Err(e) => problems.push(format!(
                            "{}: {e}",
                            at(&format!("brokerResources[{bi}].clientIds[{ci}]"))
                        )),
                    }
                }
                let resource = Resource {
                    filters,
                    client_ids,
                };
                match res.method {
                    BrokerResourceMethod::Connect => compiled.connect.push(resource),
                    BrokerResourceMethod::Publish => compiled.publish.push(resource),
                    BrokerResourceMethod::Subscribe => compiled.subscribe.push(resource),
                }
            }
            for (si, res) in rule.state_store_resources.iter().enumerate() {
                let mut keys = Vec::new();
                for (ki, k) in res.keys.iter().enumerate() {
                    let path = at(&format!("stateStoreResources[{si}].keys[{ki}]"));
                    let key = match res.key_type {
                        KeyType::Pattern => {
                            GlobTemplate::new(k, key_glob_value).map(KeyMatch::Pattern)
                        }
                        KeyType::String => Ok(KeyMatch::String(k.clone())),
                        KeyType::Binary => base64::engine::general_purpose::STANDARD
                            .decode(k)
                            .map(KeyMatch::Binary)
                            .map_err(|e| format!("not base64: {e}")),
                    };
                    match key {
                        Ok(key) => keys.push(key),
                        Err(e) => problems.push(format!("{path}: {e}")),
                    }
                }
                compiled.state_store.push(KeyRule {
                    read: matches!(
                        res.method,
                        StateStoreMethod::Read | StateStoreMethod::ReadWrite
                    ),
                    write: matches!(
                        res.method,
                        StateStoreMethod::Write | StateStoreMethod::ReadWrite
                    ),
                    keys,
                });
            }
            rules.push(compiled);
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        Ok(Policy {
            name: auth.name.clone(),
            cache: auth.authorization_policies.cache == CacheMode::Enabled,
            rules,
        })
    }
}

impl GlobTemplate {
    pub(super) fn new(text: &str, escape: fn(&str) -> Option<String>) -> Result<Self, String> {
        let template = Template::parse(text)?;
        let fixed = match template.literal() {
            Some(literal) => Some(glob(&literal)?),
            None => {
                // A token inside a `[...]` class or after `\` would not be read literally
                // (validation refuses it too; this keeps the compiler safe on its own).
                let parts = gatehouse_config::tokens::parse(text).map_err(|e| e.to_string())?;
                if let Some(why) = gatehouse_config::tokens::glob_token_misplaced(&parts) {
                    return Err(format!("`{text}`: {why}"));
                }
                // Check the shape now, with a placeholder for every token.
                let probe: String = template
                    .parts()
                    .iter()
                    .map(|p| match p {
                        crate::authz::template::Part::Text(t) => t.as_str(),
                        crate::authz::template::Part::Token(_) => "x",
                    })
                    .collect();
                glob(&probe)?;
                None
            }
        };
        Ok(GlobTemplate {
            template,
            fixed,
            escape,
        })
    }
}

pub(super) fn glob(pattern: &str) -> Result<Glob, String> {
    Glob::new(pattern).map_err(|e| format!("invalid glob `{pattern}`: {e}"))
}

/// A rule topic: a valid MQTT filter whose tokens fill whole levels.
pub(super) fn topic_template(text: &str) -> Result<Template, String> {
    use crate::authz::template::Part;
    let template = Template::parse(text)?;
    // Levels come from the parts, not from splitting the text (as in validation): an
    // attribute name may hold `/` (`{principal.attributes.aio-broker-auth/group}`).
    let whole_level = || "a token must be the whole topic level".to_owned();
    let mut probe = String::new();
    let (mut text_in_level, mut token_in_level) = (false, false);
    for part in template.parts() {
        match part {
            Part::Text(t) => {
                for (i, piece) in t.split('/').enumerate() {
                    if i > 0 {
                        probe.push('/');
                        (text_in_level, token_in_level) = (false, false);
                    }
                    if !piece.is_empty() {
                        if token_in_level {
                            return Err(format!("{}, not part of `{text}`", whole_level()));
                        }
                        text_in_level = true;
                        probe.push_str(piece);
                    }
                }
            }
            Part::Token(_) => {
                if text_in_level || token_in_level {
                    return Err(format!("{}, not part of `{text}`", whole_level()));
                }
                token_in_level = true;
                probe.push('x');
            }
        }
    }
    gatehouse_protocol::topic::validate_topic_filter(&probe)
        .map_err(|e| format!("invalid topic filter `{text}`: {e}"))?;
    Ok(template)
}
