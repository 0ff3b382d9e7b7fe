//! The command line: `serve` and `add-user`.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::serve::ServeOptions;
use crate::users::parse_lifetime;

/// Example custom authentication server for Gatehouse (AIO custom auth API 0.5.0):
/// usernames and argon2 password hashes from a file.
#[derive(Debug, Parser)]
#[command(name = "custom-auth-server", version)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the API over HTTPS.
    Serve(ServeArgs),
    /// Add a user to the users file, or replace one (the password is read from stdin).
    AddUser(AddUserArgs),
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Users file (YAML, or JSON if it ends in .json); reloaded when it changes.
    #[arg(long, value_name = "FILE")]
    pub users: PathBuf,
    /// Server certificate chain, PEM, leaf first.
    #[arg(long, value_name = "FILE")]
    pub cert: PathBuf,
    /// Private key of the server certificate, PEM.
    #[arg(long, value_name = "FILE")]
    pub key: PathBuf,
    /// CA certificate(s), PEM: require a client certificate issued by one of them (mTLS).
    #[arg(long, value_name = "FILE")]
    pub client_ca: Option<PathBuf>,
    /// Address to listen on; port 0 picks a free port (printed on stdout).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8443")]
    pub listen: SocketAddr,
    /// Most connections open at once.
    #[arg(long, value_name = "N", default_value_t = 256,
        value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: u32,
}

impl From<ServeArgs> for ServeOptions {
    fn from(args: ServeArgs) -> ServeOptions {
        ServeOptions {
            listen: args.listen,
            users: args.users,
            cert: args.cert,
            key: args.key,
            client_ca: args.client_ca,
            max_connections: args.max_connections as usize,
        }
    }
}

#[derive(Debug, Args)]
pub struct AddUserArgs {
    /// Users file to update (created if missing).
    #[arg(long, value_name = "FILE")]
    pub users: PathBuf,
    /// The MQTT user name.
    #[arg(long)]
    pub name: String,
    /// An attribute returned on a pass, for authorization rules (repeatable).
    #[arg(long = "attribute", value_name = "KEY=VALUE", value_parser = parse_attribute)]
    pub attributes: Vec<(String, String)>,
    /// Credential lifetime (Go syntax: 1h, 90m, 1h30m): the pass's expiry is now + this.
    #[arg(long, value_name = "DURATION", value_parser = check_lifetime)]
    pub lifetime: Option<String>,
    /// Read the password from stdin without prompting, even from a terminal.
    #[arg(long)]
    pub password_stdin: bool,
}

fn parse_attribute(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_owned(), value.to_owned())),
        _ => Err("expected KEY=VALUE with a non-empty KEY".into()),
    }
}

fn check_lifetime(text: &str) -> Result<String, String> {
    parse_lifetime(text).map(|_| text.to_owned())
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn parses_add_user() {
        let cli = Cli::try_parse_from([
            "custom-auth-server",
            "add-user",
            "--users",
            "u.yaml",
            "--name",
            "client1",
            "--attribute",
            "floor=floor1",
            "--attribute",
            "formula=a=b",
            "--lifetime",
            "1h",
        ])
        .unwrap();
        let Command::AddUser(args) = cli.command else {
            panic!()
        };
        assert_eq!(
            args.attributes,
            [
                ("floor".to_owned(), "floor1".to_owned()),
                ("formula".to_owned(), "a=b".to_owned())
            ]
        );
        assert_eq!(args.lifetime.as_deref(), Some("1h"));
        for bad in [
            ["--attribute", "=x"],
            ["--lifetime", "soon"],
            ["--lifetime", "0"],
        ] {
            let mut line = vec![
                "custom-auth-server",
                "add-user",
                "--users",
                "u",
                "--name",
                "n",
            ];
            line.extend(bad);
            assert!(Cli::try_parse_from(line).is_err(), "{bad:?}");
        }
    }
}
