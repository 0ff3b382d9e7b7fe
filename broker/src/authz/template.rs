//! Strings with `{principal.*}` tokens, filled in for one client.
//!
//! The security rule (behaviour.md §4, security.md invariant 5): a substituted value must
//! never widen access. A missing or empty value makes the whole template match nothing; in
//! topic filters a value containing `+`, `#` or `/` does too (it would add levels or
//! wildcards); in globs the value is escaped, so it only ever matches itself; in state store
//! key patterns a value containing `/` matches nothing, as in topics ([`key_glob_value`]).
//! `String` keys are exact text: no token is substituted in them.

use std::collections::BTreeMap;

/// Who is asking, as far as templates care.
#[derive(Debug, Clone, Copy)]
pub struct Subject<'a> {
    pub client_id: &'a str,
    pub username: Option<&'a str>,
    pub attributes: &'a BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Token {
    Username,
    ClientId,
    Attribute(String),
}

impl Token {
    /// The value for `subject`, or `None` when it has none (or an empty one).
    fn value<'a>(&self, subject: &Subject<'a>) -> Option<&'a str> {
        let v = match self {
            Token::Username => subject.username?,
            Token::ClientId => subject.client_id,
            Token::Attribute(name) => subject.attributes.get(name)?.as_str(),
        };
        (!v.is_empty()).then_some(v)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Part {
    Text(String),
    Token(Token),
}

/// A string that may contain tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Template {
    parts: Vec<Part>,
}

impl Template {
    /// Parse `text` with the configuration's token syntax (`gatehouse_config::tokens`,
    /// which validation already applied); `Err` names what is wrong.
    pub(crate) fn parse(text: &str) -> Result<Template, String> {
        use gatehouse_config::tokens::{self, Part as P};
        let parts = tokens::parse(text)
            .map_err(|e| format!("`{text}`: {e}"))?
            .into_iter()
            .map(|p| match p {
                P::Text(t) => Part::Text(t.to_owned()),
                P::Username => Part::Token(Token::Username),
                P::ClientId => Part::Token(Token::ClientId),
                P::Attribute(name) => Part::Token(Token::Attribute(name.to_owned())),
            })
            .collect();
        Ok(Template { parts })
    }

    pub(crate) fn parts(&self) -> &[Part] {
        &self.parts
    }

    /// The literal text when there is no token.
    pub(crate) fn literal(&self) -> Option<String> {
        let mut out = String::new();
        for p in &self.parts {
            match p {
                Part::Text(t) => out.push_str(t),
                Part::Token(_) => return None,
            }
        }
        Some(out)
    }

    /// Fill in the tokens; `escape` transforms each value (or refuses it with `None`).
    /// `None` when any value is missing, empty or refused.
    pub(crate) fn render(
        &self,
        subject: &Subject<'_>,
        escape: impl Fn(&str) -> Option<String>,
    ) -> Option<String> {
        let mut out = String::new();
        for p in &self.parts {
            match p {
                Part::Text(t) => out.push_str(t),
                Part::Token(t) => out.push_str(&escape(t.value(subject)?)?),
            }
        }
        Some(out)
    }
}

/// For topic filter levels: a value may not add levels or wildcards.
pub(crate) fn topic_value(v: &str) -> Option<String> {
    (!v.contains(['+', '#', '/'])).then(|| v.to_owned())
}

/// For globs: the value matches only itself. Every metacharacter, the backslash included,
/// becomes a one-character class (`*` → `[*]`, `\` → `[\]`): a value ending in a bare `\`
/// would escape the pattern's next character (`{principal.attributes.x}*` with the value
/// `\` would match the client id `*` and no other). Inside a class the backslash is literal
/// ([`gatehouse_config::glob`]). `^` and `!` need nothing: outside a class they are literal.
pub(crate) fn glob_value(v: &str) -> Option<String> {
    let mut out = String::with_capacity(v.len() + 8);
    for c in v.chars() {
        if matches!(c, '?' | '*' | '[' | ']' | '{' | '}' | '\\') {
            out.push('[');
            out.push(c);
            out.push(']');
        } else {
            out.push(c);
        }
    }
    Some(out)
}

/// For exact strings.
pub(crate) fn plain_value(v: &str) -> Option<String> {
    Some(v.to_owned())
}

/// For state store key globs (`keyType: Pattern`): as strict as [`topic_value`]. A value
/// containing `/` is refused, so the template matches nothing; the glob metacharacters of
/// any other value are escaped by [`glob_value`] and match only themselves.
///
/// Why `/` is refused rather than kept: escaping cannot neutralise it. It is no glob
/// metacharacter, but it is the separator of the key namespaces policies carve out
/// (`users/{principal.username}/*`): the user name `victim/x` would render
/// `users/victim/x/*` and reach keys under `users/victim/`, which belong to the user
/// `victim`. Topic templates refuse such values for the same reason. The other
/// metacharacters keep being escaped instead of refused: an escaped `*` or `[` only ever
/// matches itself, so refusing it would only lock out principals whose names contain one.
///
/// Client id globs of `brokerResources` keep [`glob_value`]: a client id has no levels, so
/// a `/` in a value substituted there matches only a `/` in the client id.
pub(crate) fn key_glob_value(v: &str) -> Option<String> {
    if v.contains('/') {
        return None;
    }
    glob_value(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subject<'a>(attrs: &'a BTreeMap<String, String>) -> Subject<'a> {
        Subject {
            client_id: "dev-1",
            username: Some("alice"),
            attributes: attrs,
        }
    }

    #[test]
    fn parses_and_renders_every_token() {
        let attrs = BTreeMap::from([("building".to_string(), "b22".to_string())]);
        let t = Template::parse(
            "s/{principal.attributes.building}/{principal.clientId}/{principal.username}",
        )
        .expect("valid");
        assert_eq!(
            t.render(&subject(&attrs), topic_value).as_deref(),
            Some("s/b22/dev-1/alice")
        );
    }

    #[test]
    fn missing_empty_or_widening_values_match_nothing() {
        let attrs = BTreeMap::from([
            ("empty".to_string(), String::new()),
            ("wild".to_string(), "a/#".to_string()),
        ]);
        let s = subject(&attrs);
        for t in [
            "{principal.attributes.none}",
            "{principal.attributes.empty}",
            "{principal.attributes.wild}",
        ] {
            assert_eq!(
                Template::parse(t).expect(t).render(&s, topic_value),
                None,
                "{t}"
            );
        }
        let glob = Template::parse("{principal.attributes.star}*").expect("valid");
        let attrs = BTreeMap::from([("star".to_string(), "*".to_string())]);
        assert_eq!(
            glob.render(&subject(&attrs), glob_value).as_deref(),
            Some("[*]*")
        );
    }

    /// A backslash in a value is literal; it never escapes the pattern's own `*`.
    #[test]
    fn glob_values_escape_backslashes() {
        let glob = Template::parse("{principal.attributes.x}*").expect("valid");
        let attrs = BTreeMap::from([("x".to_string(), "a\\".to_string())]);
        let pattern = glob.render(&subject(&attrs), glob_value).expect("a value");
        assert_eq!(pattern, "a[\\]*");
        let m = gatehouse_config::glob::Glob::new(&pattern).expect("valid");
        assert!(m.is_match("a\\") && m.is_match("a\\dev-1"));
        assert!(!m.is_match("a*") && !m.is_match("a"));
    }

    /// A value with `/` cannot move a key template into another principal's namespace
    /// (issue 13 item 7); without `/`, the value is escaped as for any glob.
    #[test]
    fn key_values_refuse_separators() {
        let attrs = BTreeMap::new();
        let victim_x = Subject {
            client_id: "dev-1",
            username: Some("victim/x"),
            attributes: &attrs,
        };
        let glob = Template::parse("users/{principal.username}/*").expect("valid");
        assert_eq!(glob.render(&victim_x, key_glob_value), None);
        // Escaping still applies to the other metacharacters.
        let star = Subject {
            username: Some("a*b"),
            ..victim_x
        };
        assert_eq!(
            glob.render(&star, key_glob_value).as_deref(),
            Some("users/a[*]b/*")
        );
        // Client id globs are unchanged.
        assert_eq!(
            glob.render(&victim_x, glob_value).as_deref(),
            Some("users/victim/x/*")
        );
    }

    #[test]
    fn rejects_unknown_tokens_and_unbalanced_braces() {
        for bad in ["{principal.email}", "{x", "x}", "{principal.attributes.}"] {
            assert!(Template::parse(bad).is_err(), "{bad}");
        }
    }
}
