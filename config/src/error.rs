//! Configuration errors.
//!
//! Three kinds, because they are fixed differently: the file cannot be read ([`ConfigError::Io`]),
//! the text is not YAML ([`ConfigError::Yaml`], with line and column), or the YAML does not
//! describe a valid configuration ([`ConfigError::Invalid`]: every problem found, each with
//! the YAML path of the offending value, what was found and what is allowed).

use std::fmt;
use std::path::PathBuf;

/// One configuration problem at one place in the YAML.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Where: `listeners[1].ports[0].tls.mode`; in manifest form prefixed by the document,
    /// `document 2 (BrokerListener default).spec.ports[0].port`.
    pub path: String,
    /// What was found and what is allowed.
    pub message: String,
}

impl Problem {
    pub(crate) fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Problem {
            path: path.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The text is not well-formed YAML.
    #[error("{origin}{}: invalid YAML: {message}", position(*.line, *.column))]
    Yaml {
        /// The file name (or what the caller called the text).
        origin: String,
        /// 1-based line of the error, when the parser knows it.
        line: Option<usize>,
        /// 1-based column of the error, when the parser knows it.
        column: Option<usize>,
        message: String,
    },
    /// The YAML does not describe a valid configuration. Display prints every problem on its
    /// own line as `<path>: <message>`.
    #[error("{}", Lines(.0))]
    Invalid(Vec<Problem>),
}

impl ConfigError {
    /// The problems of an [`ConfigError::Invalid`] error; empty for the other kinds.
    pub fn problems(&self) -> &[Problem] {
        match self {
            ConfigError::Invalid(problems) => problems,
            _ => &[],
        }
    }
}

fn position(line: Option<usize>, column: Option<usize>) -> String {
    match (line, column) {
        (Some(line), Some(column)) => format!(":{line}:{column}"),
        (Some(line), None) => format!(":{line}"),
        _ => String::new(),
    }
}

struct Lines<'a>(&'a [Problem]);

impl fmt::Display for Lines<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, problem) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{problem}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_prints_one_problem_per_line() {
        let err = ConfigError::Invalid(vec![
            Problem::new("listeners[0].name", "bad"),
            Problem::new("listeners[1].ports", "empty"),
        ]);
        assert_eq!(
            err.to_string(),
            "listeners[0].name: bad\nlisteners[1].ports: empty"
        );
        assert_eq!(err.problems().len(), 2);
    }

    #[test]
    fn yaml_error_shows_line_and_column() {
        let err = ConfigError::Yaml {
            origin: "gatehouse.yaml".into(),
            line: Some(3),
            column: Some(7),
            message: "did not find expected key".into(),
        };
        assert_eq!(
            err.to_string(),
            "gatehouse.yaml:3:7: invalid YAML: did not find expected key"
        );
    }
}
