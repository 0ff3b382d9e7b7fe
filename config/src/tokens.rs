//! `{principal.*}` tokens: the one definition of their syntax, shared by validation and the
//! broker's policy compiler.
//!
//! Authorization rules may name the client they apply to (behaviour.md §4): in topics,
//! client ids, usernames and `Pattern` state store keys, these tokens are replaced by the
//! connecting client's values:
//!
//! | token | value |
//! | --- | --- |
//! | `{principal.username}` | the MQTT username |
//! | `{principal.clientId}` | the client id |
//! | `{principal.attributes.<name>}` | the client's attribute `<name>` (X.509, SAT, custom auth) |
//!
//! Syntax, exactly:
//! - Braces are reserved for tokens: every `{` starts a token and must be closed by the next
//!   `}`; a `}` outside a token is an error. There is no escape (a rule that needs a literal
//!   brace in a state store key uses `keyType: String`).
//! - Token names are case-sensitive and written without spaces (`{principal.clientid}` is an
//!   error, reported with the right spelling).
//! - An attribute name is any non-empty text without braces (`.`, `-`, `/` allowed).
//!
//! [`parse`] only splits a string; the rules of each place (a token fills a whole topic
//! level, the text around tokens is a glob) are the caller's.
//!
//! ```
//! use gatehouse_config::tokens::{parse, Part, TokenError};
//!
//! assert_eq!(
//!     parse("clients/{principal.clientId}/#").unwrap(),
//!     [Part::Text("clients/"), Part::ClientId, Part::Text("/#")]
//! );
//! assert_eq!(
//!     parse("{principal.attributes.building}*").unwrap(),
//!     [Part::Attribute("building"), Part::Text("*")]
//! );
//! assert_eq!(parse("{principal.username}").unwrap(), [Part::Username]);
//! assert_eq!(parse("plain/topic").unwrap(), [Part::Text("plain/topic")]);
//! assert_eq!(parse("").unwrap(), []);
//!
//! assert_eq!(parse("a/{principal.clientId"), Err(TokenError::Unclosed { at: 2 }));
//! assert_eq!(parse("a}"), Err(TokenError::Unopened { at: 1 }));
//! let err = parse("{principal.clientid}").unwrap_err();
//! assert_eq!(err.to_string(),
//!     "unknown token `{principal.clientid}` (did you mean `{principal.clientId}`?); \
//!      the tokens are {principal.username}, {principal.clientId} and {principal.attributes.<name>}");
//! ```

use std::fmt;

/// The tokens, as error messages list them.
pub const KNOWN_TOKENS: &str =
    "{principal.username}, {principal.clientId} and {principal.attributes.<name>}";

/// One piece of a token-bearing string.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Part<'a> {
    /// Literal text (never empty, never contains a brace).
    Text(&'a str),
    /// `{principal.username}`.
    Username,
    /// `{principal.clientId}`.
    ClientId,
    /// `{principal.attributes.<name>}`, with the name (non-empty, no braces).
    Attribute(&'a str),
}

impl Part<'_> {
    /// Whether this is a token (not [`Part::Text`]).
    pub fn is_token(&self) -> bool {
        !matches!(self, Part::Text(_))
    }
}

/// Writes the part as it is spelled in the configuration, so that the `Display` of the parts
/// of `s`, concatenated, is `s` again.
impl fmt::Display for Part<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Part::Text(text) => f.write_str(text),
            Part::Username => f.write_str("{principal.username}"),
            Part::ClientId => f.write_str("{principal.clientId}"),
            Part::Attribute(name) => write!(f, "{{principal.attributes.{name}}}"),
        }
    }
}

/// Why a string is not valid token syntax. Offsets are byte offsets into the parsed string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenError {
    /// The `{` at `at` is not closed before the end or before the next `{` (tokens do not
    /// nest).
    Unclosed { at: usize },
    /// The `}` at `at` does not close a `{`.
    Unopened { at: usize },
    /// `{...}` at `at` is not one of the tokens; `token` is the whole text, braces included.
    Unknown { at: usize, token: String },
    /// `{principal.attributes.}` at `at`: the attribute name is missing.
    EmptyAttribute { at: usize },
}

impl TokenError {
    /// Byte offset of the offending brace.
    pub fn at(&self) -> usize {
        match self {
            TokenError::Unclosed { at }
            | TokenError::Unopened { at }
            | TokenError::Unknown { at, .. }
            | TokenError::EmptyAttribute { at } => *at,
        }
    }

    /// For [`TokenError::Unknown`]: the token presumably meant, when the text is one with
    /// other letter case or stray spaces (`{Principal.ClientID}`, `{ principal.username }`).
    pub fn suggestion(&self) -> Option<String> {
        let TokenError::Unknown { token, .. } = self else {
            return None;
        };
        let inner = token.trim_start_matches('{').trim_end_matches('}').trim();
        let lower = inner.to_ascii_lowercase();
        let suggestion = match lower.as_str() {
            "principal.username" => "{principal.username}".to_owned(),
            "principal.clientid" => "{principal.clientId}".to_owned(),
            _ => {
                let name = lower
                    .strip_prefix("principal.attributes.")
                    .map(|_| inner["principal.attributes.".len()..].trim())
                    .filter(|name| !name.is_empty())?;
                format!("{{principal.attributes.{name}}}")
            }
        };
        (suggestion != *token).then_some(suggestion)
    }

    /// Whether the braces do not even look like a token (`{a,b}`), as opposed to a misspelt
    /// `{principal.*}` one.
    pub fn is_not_a_token(&self) -> bool {
        match self {
            TokenError::Unknown { token, .. } => !token[1..]
                .trim_start()
                .to_ascii_lowercase()
                .starts_with("principal"),
            _ => false,
        }
    }
}

impl fmt::Display for TokenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TokenError::Unclosed { .. } => write!(
                f,
                "unclosed `{{`: braces are reserved for the tokens {KNOWN_TOKENS}, \
                 each closed by `}}`"
            ),
            TokenError::Unopened { .. } => write!(
                f,
                "unbalanced `}}`: braces are reserved for the tokens {KNOWN_TOKENS}"
            ),
            TokenError::Unknown { token, .. } if self.is_not_a_token() => write!(
                f,
                "`{token}` is not a token: braces are reserved for the tokens {KNOWN_TOKENS}"
            ),
            TokenError::Unknown { token, .. } => {
                write!(f, "unknown token `{token}`")?;
                if let Some(suggestion) = self.suggestion() {
                    write!(f, " (did you mean `{suggestion}`?)")?;
                }
                write!(f, "; the tokens are {KNOWN_TOKENS}")
            }
            TokenError::EmptyAttribute { .. } => write!(
                f,
                "`{{principal.attributes.}}` names no attribute: write \
                 `{{principal.attributes.<name>}}`"
            ),
        }
    }
}

impl std::error::Error for TokenError {}

/// Splits `s` into literal text and tokens; see the [module docs](self) for the syntax.
///
/// Adjacent text is returned as one [`Part::Text`]; an empty string gives no parts.
pub fn parse(s: &str) -> Result<Vec<Part<'_>>, TokenError> {
    let mut parts = Vec::new();
    let mut pos = 0;
    while let Some(offset) = s[pos..].find(['{', '}']) {
        let open = pos + offset;
        if s.as_bytes()[open] == b'}' {
            return Err(TokenError::Unopened { at: open });
        }
        if open > pos {
            parts.push(Part::Text(&s[pos..open]));
        }
        let close = match s[open + 1..].find(['{', '}']) {
            Some(len) if s.as_bytes()[open + 1 + len] == b'}' => open + 1 + len,
            _ => return Err(TokenError::Unclosed { at: open }),
        };
        parts.push(token(&s[open + 1..close], open, &s[open..=close])?);
        pos = close + 1;
    }
    if pos < s.len() {
        parts.push(Part::Text(&s[pos..]));
    }
    Ok(parts)
}

/// Where a token sits in a glob (resource `clientIds`, `Pattern` keys) so that its value
/// would not be read literally: inside a `[...]` class, or right after an escaping `\`.
///
/// The broker escapes a substituted value so that it only ever matches itself, but only
/// where the glob reads characters one by one: inside a class the value's characters are
/// members of the set (`!x` negates it, `a-z` is a range), and after `\` the escape takes
/// the value's first character (a value `*` rendered as `\[*]` would be `[`, a wildcard,
/// `]`). Either way the value could match text that does not contain it, so such a glob is
/// refused, by validation and by the broker's compiler alike.
///
/// The scan follows [`crate::glob`]'s syntax: outside a class `\` escapes the next
/// character; `[` opens a class, optionally negated by `!` (`^` is an ordinary member), in
/// which a first `]` is a member and `\` is literal; the next `]` closes it.
///
/// ```
/// use gatehouse_config::tokens::{glob_token_misplaced, parse};
///
/// let misplaced = |s| glob_token_misplaced(&parse(s).unwrap());
/// assert_eq!(misplaced("{principal.clientId}*"), None);
/// assert_eq!(misplaced("a[0-9]{principal.clientId}\\\\{principal.username}"), None);
/// assert!(misplaced("[{principal.clientId}]").is_some());
/// assert!(misplaced("a[!x{principal.clientId}]").is_some());
/// assert!(misplaced("a\\{principal.clientId}").is_some());
/// ```
pub fn glob_token_misplaced(parts: &[Part<'_>]) -> Option<String> {
    enum State {
        Outside,
        Escaped,
        /// Just after `[`: `!` negates, `]` is a member.
        ClassStart,
        /// After `[!`: `]` is a member.
        ClassFirst,
        InClass,
    }
    let mut state = State::Outside;
    for part in parts {
        match part {
            Part::Text(text) => {
                for c in text.chars() {
                    state = match (state, c) {
                        (State::Outside, '\\') => State::Escaped,
                        (State::Outside, '[') => State::ClassStart,
                        (State::Outside | State::Escaped, _) => State::Outside,
                        (State::ClassStart, '!') => State::ClassFirst,
                        (State::ClassStart | State::ClassFirst, _) => State::InClass,
                        (State::InClass, ']') => State::Outside,
                        (State::InClass, _) => State::InClass,
                    };
                }
            }
            token => match state {
                State::Outside => {}
                State::Escaped => {
                    return Some(format!(
                        "{token} follows a `\\`, which would escape the first character of \
                         its value; write `\\\\` for a literal backslash before it"
                    ))
                }
                _ => {
                    return Some(format!(
                        "{token} is inside a `[...]` character class, where its value would \
                         be read as a set of characters (`!`, ranges), not literally"
                    ))
                }
            },
        }
    }
    None
}

/// The token whose text between the braces is `inner`.
fn token<'a>(inner: &'a str, at: usize, whole: &str) -> Result<Part<'a>, TokenError> {
    match inner {
        "principal.username" => Ok(Part::Username),
        "principal.clientId" => Ok(Part::ClientId),
        _ => match inner.strip_prefix("principal.attributes.") {
            Some("") => Err(TokenError::EmptyAttribute { at }),
            Some(name) => Ok(Part::Attribute(name)),
            None => Err(TokenError::Unknown {
                at,
                token: whole.to_owned(),
            }),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_and_every_token() {
        assert_eq!(
            parse("s/{principal.attributes.building}/{principal.clientId}/{principal.username}")
                .unwrap(),
            [
                Part::Text("s/"),
                Part::Attribute("building"),
                Part::Text("/"),
                Part::ClientId,
                Part::Text("/"),
                Part::Username,
            ]
        );
        assert_eq!(
            parse("{principal.clientId}{principal.username}").unwrap(),
            [Part::ClientId, Part::Username]
        );
        assert_eq!(
            parse("a-{principal.clientId}-b").unwrap(),
            [Part::Text("a-"), Part::ClientId, Part::Text("-b")]
        );
        assert_eq!(
            parse("no tokens: *?[0-9]").unwrap(),
            [Part::Text("no tokens: *?[0-9]")]
        );
        assert_eq!(parse("").unwrap(), []);
    }

    #[test]
    fn attribute_names_are_any_text_without_braces() {
        for name in ["a", "a.b", "aio-broker-auth/group", "with space", "Ünï"] {
            let text = format!("{{principal.attributes.{name}}}");
            assert_eq!(parse(&text).unwrap(), [Part::Attribute(name)], "{text}");
        }
    }

    #[test]
    fn display_gives_the_text_back() {
        for text in [
            "clients/{principal.clientId}/#",
            "{principal.attributes.building}*",
            "u/{principal.username}",
            "plain",
        ] {
            let again: String = parse(text).unwrap().iter().map(Part::to_string).collect();
            assert_eq!(again, text);
        }
        assert!(Part::ClientId.is_token());
        assert!(!Part::Text("x").is_token());
    }

    #[test]
    fn unbalanced_braces() {
        assert_eq!(parse("{"), Err(TokenError::Unclosed { at: 0 }));
        assert_eq!(
            parse("a/{principal.clientId"),
            Err(TokenError::Unclosed { at: 2 })
        );
        // Tokens do not nest: the first `{` is not closed before the second.
        assert_eq!(
            parse("{principal.{principal.clientId}}"),
            Err(TokenError::Unclosed { at: 0 })
        );
        assert_eq!(parse("}"), Err(TokenError::Unopened { at: 0 }));
        assert_eq!(parse("ab}c"), Err(TokenError::Unopened { at: 2 }));
        assert_eq!(
            parse("{principal.clientId}}"),
            Err(TokenError::Unopened { at: 20 })
        );
    }

    #[test]
    fn unknown_tokens() {
        for (text, at, token) in [
            ("{principal.email}", 0, "{principal.email}"),
            ("x/{principal.attributes}", 2, "{principal.attributes}"),
            ("{}", 0, "{}"),
            ("keys/{a,b}", 5, "{a,b}"),
            ("{principal.clientId }", 0, "{principal.clientId }"),
        ] {
            assert_eq!(
                parse(text),
                Err(TokenError::Unknown {
                    at,
                    token: token.into()
                }),
                "{text}"
            );
        }
        assert_eq!(
            parse("a/{principal.attributes.}"),
            Err(TokenError::EmptyAttribute { at: 2 })
        );
    }

    #[test]
    fn misspelt_tokens_get_a_suggestion() {
        for (text, suggestion) in [
            ("{principal.clientid}", Some("{principal.clientId}")),
            ("{Principal.ClientID}", Some("{principal.clientId}")),
            ("{ principal.username }", Some("{principal.username}")),
            ("{PRINCIPAL.USERNAME}", Some("{principal.username}")),
            (
                "{Principal.Attributes.Building}",
                Some("{principal.attributes.Building}"),
            ),
            ("{principal.email}", None),
            ("{a,b}", None),
        ] {
            let err = parse(text).unwrap_err();
            assert_eq!(err.suggestion().as_deref(), suggestion, "{text}");
        }
    }

    #[test]
    fn messages() {
        let message = |text: &str| parse(text).unwrap_err().to_string();
        assert_eq!(
            message("{principal.clientid}"),
            "unknown token `{principal.clientid}` (did you mean `{principal.clientId}`?); \
             the tokens are {principal.username}, {principal.clientId} and {principal.attributes.<name>}"
        );
        assert_eq!(
            message("{a,b}"),
            "`{a,b}` is not a token: braces are reserved for the tokens {principal.username}, \
             {principal.clientId} and {principal.attributes.<name>}"
        );
        assert!(message("a{").starts_with("unclosed `{`"));
        assert!(message("a}").starts_with("unbalanced `}`"));
        assert!(message("{principal.attributes.}").contains("names no attribute"));
        assert!(parse("{a,b}").unwrap_err().is_not_a_token());
        assert!(!parse("{principal.x}").unwrap_err().is_not_a_token());
        assert_eq!(parse("ab{").unwrap_err().at(), 2);
    }
}
