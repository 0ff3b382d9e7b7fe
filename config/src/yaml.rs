//! Reading YAML text: syntax errors with line and column, type errors with their YAML path.
//!
//! Each document is read twice: first as an untyped [`Value`] (to check the syntax and to
//! tell the two forms apart), then into its typed struct straight from the text, through
//! `serde_path_to_error`, so that a type error has both its path and its line.

use serde::Deserialize;
use serde_norway::{Deserializer, Value};

use crate::error::{ConfigError, Problem};

/// Every document of the stream as a [`Value`], or the first syntax error.
pub(crate) fn documents(text: &str, origin: &str) -> Result<Vec<Value>, ConfigError> {
    Deserializer::from_str(text)
        .map(|document| {
            Value::deserialize(document).map_err(|err| ConfigError::Yaml {
                origin: origin.to_owned(),
                line: err.location().map(|l| l.line()),
                column: err.location().map(|l| l.column()),
                message: err.to_string(),
            })
        })
        .collect()
}

/// Deserializes one document into `T`; a failure is a [`Problem`] at the failing path, with
/// the line and column in the message. `prefix` is put before the path (manifest documents).
pub(crate) fn typed<'de, T: Deserialize<'de>>(
    document: Deserializer<'de>,
    prefix: &str,
) -> Result<T, Problem> {
    serde_path_to_error::deserialize(document).map_err(|err| {
        let path = err.path().to_string();
        let inner = err.into_inner();
        let full_path = match (prefix.is_empty(), path.as_str()) {
            (true, _) => path.clone(),
            (false, ".") => prefix.to_owned(),
            (false, _) => format!("{prefix}.{path}"),
        };
        let mut message = bare_message(&inner, &path);
        if let Some(location) = inner.location() {
            message.push_str(&format!(
                " (line {}, column {})",
                location.line(),
                location.column()
            ));
        }
        Problem::new(full_path, message)
    })
}

/// The error's message without serde_norway's own `path: ` prefix and ` at line L column C`
/// suffix, which this crate prints in its own format.
fn bare_message(err: &serde_norway::Error, path: &str) -> String {
    let text = err.to_string();
    let mut message = text.as_str();
    if let Some(location) = err.location() {
        let suffix = format!(" at line {} column {}", location.line(), location.column());
        message = message.strip_suffix(&suffix).unwrap_or(message);
    }
    // serde_norway's path is the tracked path or a parent of it (for an unknown field it
    // stops at the mapping).
    if let Some((head, rest)) = message.split_once(": ") {
        if !head.is_empty() && path.starts_with(head) {
            message = rest;
        }
    }
    message.to_owned()
}

/// `impl Deserialize for $ty` through `$raw` and `TryFrom<$raw>`, like
/// `#[serde(try_from = "$raw")]`, but with the conversion's error raised inside the YAML
/// mapping, so that serde_norway gives it the mapping's own line. With `try_from`, the error
/// arises after the mapping is read and takes the position of the nearest enclosing
/// sequence: the second `authenticationMethods` entry was reported at the first one's line.
macro_rules! map_try_from {
    ($ty:ty, $raw:ty, $expecting:literal) => {
        impl<'de> serde::Deserialize<'de> for $ty {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                struct Visitor;
                impl<'de> serde::de::Visitor<'de> for Visitor {
                    type Value = $ty;
                    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        f.write_str($expecting)
                    }
                    fn visit_map<A: serde::de::MapAccess<'de>>(
                        self,
                        map: A,
                    ) -> Result<$ty, A::Error> {
                        let raw = <$raw as serde::Deserialize>::deserialize(
                            serde::de::value::MapAccessDeserializer::new(map),
                        )?;
                        <$ty>::try_from(raw).map_err(serde::de::Error::custom)
                    }
                }
                deserializer.deserialize_map(Visitor)
            }
        }
    };
}
pub(crate) use map_try_from;

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Outer {
        items: Vec<Inner>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Inner {
        port: u16,
    }

    fn first(text: &str) -> Deserializer<'_> {
        Deserializer::from_str(text).next().unwrap()
    }

    #[test]
    fn type_error_has_path_line_and_a_clean_message() {
        let text = "items:\n  - port: 1\n  - port: nope\n";
        let problem = typed::<Outer>(first(text), "").unwrap_err();
        assert_eq!(problem.path, "items[1].port");
        assert!(
            problem
                .message
                .starts_with("invalid type: string \"nope\", expected u16"),
            "{}",
            problem.message
        );
        assert!(
            problem.message.ends_with("(line 3, column 11)"),
            "{}",
            problem.message
        );
    }

    #[test]
    fn prefix_is_put_before_the_path() {
        let problem = typed::<Outer>(
            first("items: [ { port: 1, extra: 2 } ]"),
            "document 1 (X y)",
        )
        .unwrap_err();
        assert_eq!(problem.path, "document 1 (X y).items[0].extra");
        assert!(
            problem.message.starts_with("unknown field `extra`"),
            "{}",
            problem.message
        );
    }

    #[test]
    fn syntax_error_has_line_and_column() {
        let err = documents("a: 1\nb: [1, 2\nc: 3\n", "test.yaml").unwrap_err();
        match err {
            ConfigError::Yaml { line, column, .. } => {
                assert!(line.is_some() && column.is_some());
            }
            other => panic!("{other:?}"),
        }
    }
}
