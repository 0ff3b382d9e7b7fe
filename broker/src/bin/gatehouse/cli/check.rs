//! `gatehouse check`: the configuration, and everything it refers to, as start-up sees it.
//!
//! Validation problems, then the broker's own preflight ([`gatehouse::preflight`]) in
//! [`Mode::Check`], which also builds every authentication method, chain and policy as
//! start-up does, without opening a port or writing a file. When validation finds problems
//! the files of what could be read are still checked (nothing is built then, and the
//! preflight's warnings wait until the configuration is valid). Every problem is printed at
//! once, one per line, as `error: <path>: <message>` / `warning: <path>: <message>` on
//! stderr.
//!
//! Exit code: 0 when the broker would start (warnings included), 1 otherwise.

use std::path::Path;
use std::process::ExitCode;

use gatehouse::preflight::{self, Mode};
use gatehouse_config::Config;

/// `gatehouse check --config FILE`.
pub fn run_file(path: &Path) -> ExitCode {
    match gatehouse_config::check_file(path) {
        // Nothing to go on: unreadable, not YAML, or a native document of the wrong shape.
        Err(e) => {
            eprintln!("gatehouse: invalid configuration {}:\n{e}", path.display());
            ExitCode::FAILURE
        }
        Ok(checked) => report(
            &checked.config,
            &checked.problems,
            &checked.warnings,
            Some(path),
        ),
    }
}

/// Runs the preflight; `warnings` are the ones loading found, `path` the file checked
/// (`None`: the embedded defaults).
pub fn run(config: &Config, warnings: &[String], path: Option<&Path>) -> ExitCode {
    report(config, &[], warnings, path)
}

fn report(
    config: &Config,
    problems: &[gatehouse_config::Problem],
    warnings: &[String],
    path: Option<&Path>,
) -> ExitCode {
    let mode = if problems.is_empty() {
        Mode::Check
    } else {
        Mode::Start
    };
    // Building a method may start a watcher task or an HTTP client: give them a runtime,
    // which ends (with them) when the check does.
    let report = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime.block_on(async { preflight::run(config, mode) }),
        Err(e) => {
            eprintln!("gatehouse check: cannot start a runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let preflight_warnings = if problems.is_empty() {
        &report.warnings[..]
    } else {
        &[]
    };
    for w in warnings {
        eprintln!("warning: {w}");
    }
    for w in preflight_warnings {
        eprintln!("warning: {w}");
    }
    for p in problems {
        eprintln!("error: {p}");
    }
    for e in &report.errors {
        eprintln!("error: {e}");
    }
    let total_warnings = warnings.len() + preflight_warnings.len();
    let total_errors = problems.len() + report.errors.len();
    let what = match path {
        Some(path) => path.display().to_string(),
        None => "no --config given".to_owned(),
    };
    if total_errors == 0 {
        let valid = if path.is_some() {
            "configuration is valid"
        } else {
            "the embedded defaults are valid"
        };
        match total_warnings {
            0 => println!("{what}: {valid}"),
            n => println!("{what}: {valid}, with {n} warning(s)"),
        }
        ExitCode::SUCCESS
    } else {
        eprintln!(
            "{what}: the broker would not start: {total_errors} error(s), {total_warnings} \
             warning(s)"
        );
        ExitCode::FAILURE
    }
}
