//! `gatehouse explain`: would this client be allowed to do this, and which rule says so?
//!
//! The verdict is always the broker's own: the policy is compiled with
//! [`Policy::compile`](gatehouse::authz::Policy::compile) and asked with
//! [`Policy::decide`](gatehouse::authz::Policy::decide), exactly as a port does. The
//! explanation around it (which principal, topic filter, client id glob or key matched,
//! what each `{principal.*}` template became, and for a denial the rules that came close)
//! comes from [`Policy::trace`](gatehouse::authz::Policy::trace), which runs the same
//! checks and keeps their results.
//!
//! One module per concern: `args` (the command line and the request), `model` (the
//! answer, as `--json` prints it), `walk` (port, policy, verdict), `rules` (what each
//! rule's trace says, with YAML paths), `render` (the human form). YAML paths come from
//! the configuration ([`gatehouse_config::Paths`]), as in every other message.
//!
//! Exit code: 0 allowed, 1 denied, 2 usage or configuration error.

mod args;
mod model;
mod render;
mod rules;
#[cfg(test)]
mod tests;
mod walk;

use std::path::Path;
use std::process::ExitCode;

use gatehouse_config::Config;

pub use args::ExplainArgs;

const ALLOWED: u8 = 0;
const DENIED: u8 = 1;
const USAGE: u8 = 2;

/// Runs `gatehouse explain`; `config_path` is where `config` came from (named when it has
/// no authorization), `None` for the embedded defaults.
pub fn run(args: &ExplainArgs, config: &Config, config_path: Option<&Path>) -> ExitCode {
    match walk::explain(args, config, config_path) {
        Ok(report) => {
            if args.json {
                match serde_json::to_string_pretty(&report) {
                    Ok(text) => println!("{text}"),
                    Err(e) => return usage(format!("cannot write JSON: {e}")),
                }
            } else {
                print!("{}", render::human(&report));
            }
            ExitCode::from(if report.allowed { ALLOWED } else { DENIED })
        }
        Err(message) => usage(message),
    }
}

fn usage(message: impl std::fmt::Display) -> ExitCode {
    eprintln!("gatehouse explain: {message}");
    ExitCode::from(USAGE)
}
