//! `custom-auth-server serve ...` / `custom-auth-server add-user ...`: see the crate docs.

use std::error::Error;
use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use gatehouse_custom_auth_server::add_user::{self, Change};
use gatehouse_custom_auth_server::cli::{Cli, Command};
use gatehouse_custom_auth_server::serve;
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Logs go to stderr; stdout carries only the bound address (serve) or the change made.
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .init();

    let result: Result<(), Box<dyn Error>> = match cli.command {
        Command::Serve(args) => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .map_err(Into::into)
            .and_then(|runtime| {
                runtime
                    .block_on(serve::run(args.into()))
                    .map_err(Into::into)
            }),
        Command::AddUser(args) => add_user::run(&args).map_err(Into::into).map(|change| {
            let done = match change {
                Change::Added => "added to",
                Change::Replaced => "replaced in",
            };
            println!("user {} {done} {}", args.name, args.users.display());
        }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            let mut source = e.source();
            while let Some(cause) = source {
                eprintln!("  caused by: {cause}");
                source = cause.source();
            }
            ExitCode::FAILURE
        }
    }
}
