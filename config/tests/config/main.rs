//! Integration tests of gatehouse-config: one binary, one module per concern.

#![allow(
    clippy::unwrap_used,
    clippy::disallowed_methods,
    reason = "test code: a panic is a failed test, and fixtures are written synchronously"
)]

mod authz;
mod cluster;
mod examples;
mod manifest;
mod parsing;
mod persistence;
mod validation;

use gatehouse_config::{load_str, ConfigError, Loaded, Problem};

/// Loads `yaml`, which must be valid.
pub fn load(yaml: &str) -> Loaded {
    match load_str(yaml, "test.yaml") {
        Ok(loaded) => loaded,
        Err(err) => panic!("expected a valid config, got:\n{err}"),
    }
}

/// Loads `yaml`, which must be invalid, and returns its problems.
pub fn problems(yaml: &str) -> Vec<Problem> {
    match load_str(yaml, "test.yaml") {
        Ok(loaded) => panic!(
            "expected problems, got a valid config: {:#?}",
            loaded.config
        ),
        Err(ConfigError::Invalid(problems)) => problems,
        Err(other) => panic!("expected ConfigError::Invalid, got: {other}"),
    }
}

/// Asserts that loading `yaml` reports a problem at exactly `path` whose message contains
/// `needle`.
#[track_caller]
pub fn assert_problem(yaml: &str, path: &str, needle: &str) {
    let problems = problems(yaml);
    assert!(
        problems
            .iter()
            .any(|p| p.path == path && p.message.contains(needle)),
        "no problem at `{path}` containing `{needle}`; got:\n{}",
        ConfigError::Invalid(problems.clone())
    );
}

/// Asserts that loading `yaml` succeeds with a warning at `path` containing `needle`.
#[track_caller]
pub fn assert_warning(yaml: &str, path: &str, needle: &str) {
    let loaded = load(yaml);
    let prefix = format!("{path}: ");
    assert!(
        loaded
            .warnings
            .iter()
            .any(|w| w.starts_with(&prefix) && w.contains(needle)),
        "no warning at `{path}` containing `{needle}`; got: {:?}",
        loaded.warnings
    );
}
