//! `gatehouse check`: the configuration, and everything it refers to, as start-up sees it.
//!
//! Validation has already run (the caller loaded the file); this runs the broker's own
//! preflight ([`gatehouse::preflight`]) in [`Mode::Check`], which also builds every
//! authentication method, chain and policy as start-up does, without opening a port or
//! writing a file. Every problem is printed at once, one per line, as `error: <path>:
//! <message>` / `warning: <path>: <message>` on stderr.
//!
//! Exit code: 0 when the broker would start (warnings included), 1 otherwise.

use std::path::Path;
use std::process::ExitCode;

use gatehouse::preflight::{self, Mode};
use gatehouse_config::Config;

/// Runs the preflight; `warnings` are the ones loading found, `path` the file checked
/// (`None`: the embedded defaults).
pub fn run(config: &Config, warnings: &[String], path: Option<&Path>) -> ExitCode {
    // Building a method may start a watcher task or an HTTP client: give them a runtime,
    // which ends (with them) when the check does.
    let report = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime.block_on(async { preflight::run(config, Mode::Check) }),
        Err(e) => {
            eprintln!("gatehouse check: cannot start a runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    for w in warnings {
        eprintln!("warning: {w}");
    }
    for w in &report.warnings {
        eprintln!("warning: {w}");
    }
    for e in &report.errors {
        eprintln!("error: {e}");
    }
    let total_warnings = warnings.len() + report.warnings.len();
    let what = match path {
        Some(path) => path.display().to_string(),
        None => "no --config given".to_owned(),
    };
    if report.errors.is_empty() {
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
            "{what}: the broker would not start: {} error(s), {total_warnings} warning(s)",
            report.errors.len()
        );
        ExitCode::FAILURE
    }
}
