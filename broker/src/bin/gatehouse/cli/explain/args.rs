//! The command line of `gatehouse explain`, and the request it describes.

use std::path::PathBuf;

use base64::Engine as _;
use clap::{Args, ValueEnum};
use gatehouse::authz::Action;

#[derive(Args)]
#[command(after_help = "\
Which policy: --policy NAME; or --port, which also applies the port's rules (no \
authorizationRef: everything allowed; no authenticationRef: the policy is not applied, \
AIO rule); or, without either, the configuration's only authorization.

Examples:
  gatehouse explain --config gatehouse.yaml --client-id temperature-sensor \\
      --attr organization=contoso publish /sensor/contoso
  gatehouse explain -c gatehouse.yaml --port authz:8883 --client-id dev-1 \\
      --username monitor subscribe '/sensor/#' --json
  gatehouse explain -c gatehouse.yaml --client-id dev-1 get --binary-key AAEC

Exit code: 0 allowed, 1 denied, 2 usage or configuration error.")]
pub struct ExplainArgs {
    /// What the client does. State store: get and keynotify read, set, del and vdel write.
    #[arg(value_enum, value_name = "ACTION")]
    pub(super) action: Verb,
    /// The topic (publish), topic filter (subscribe; `$share/GROUP/FILTER` is checked on
    /// FILTER) or state store key (UTF-8 text; see --binary-key). None for connect.
    #[arg(value_name = "TARGET")]
    pub(super) target: Option<String>,
    /// The client id of the MQTT CONNECT.
    #[arg(long, value_name = "ID")]
    pub(super) client_id: String,
    /// The user name authentication gives the client (X.509: the certificate's CN).
    #[arg(long, value_name = "NAME")]
    pub(super) username: Option<String>,
    /// An attribute authentication gives the client; repeatable.
    #[arg(long = "attr", value_name = "KEY=VALUE", value_parser = parse_attr)]
    pub(super) attrs: Vec<(String, String)>,
    /// X.509: the certificate chain the client presents in the TLS handshake (PEM, leaf
    /// first, as sent, extra certificates included). The user name and attributes are then
    /// derived exactly as the broker derives them: the chain is verified against the
    /// authentication's trusted client CAs and attributes come from the verified path only.
    /// Replaces --username and --attr.
    #[arg(long, value_name = "PEM", conflicts_with_all = ["username", "attrs"])]
    pub(super) client_cert: Option<PathBuf>,
    /// With --client-cert: the authentication (BrokerAuthentication) whose X.509 method reads
    /// the chain. Default: the --port's authenticationRef, or the configuration's only
    /// authentication with an X.509 method.
    #[arg(long, value_name = "NAME", requires = "client_cert")]
    pub(super) authentication: Option<String>,
    /// A binary state store key, in base64 (instead of TARGET).
    #[arg(long, value_name = "BASE64", conflicts_with = "target")]
    pub(super) binary_key: Option<String>,
    /// The authorization (BrokerAuthorization) to ask, by name.
    #[arg(long, value_name = "NAME", conflicts_with = "port")]
    pub(super) policy: Option<String>,
    /// The port the client connects to, `LISTENER:PORT` or `PORT`: its authorizationRef
    /// picks the policy, with the AIO rules for ports without one or without an
    /// authenticationRef.
    #[arg(long, value_name = "[LISTENER:]PORT")]
    pub(super) port: Option<String>,
    /// Print the answer as one JSON object.
    #[arg(long)]
    pub(super) json: bool,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(super) enum Verb {
    /// CONNECT (no TARGET).
    Connect,
    /// PUBLISH to the topic TARGET (also what a will needs).
    Publish,
    /// SUBSCRIBE to the filter TARGET.
    Subscribe,
    /// State store get of key TARGET (read).
    Get,
    /// State store keynotify of key TARGET (read).
    Keynotify,
    /// State store set of key TARGET (write).
    Set,
    /// State store del of key TARGET (write).
    Del,
    /// State store vdel of key TARGET (write).
    Vdel,
}

impl Verb {
    pub(super) fn name(self) -> &'static str {
        match self {
            Verb::Connect => "connect",
            Verb::Publish => "publish",
            Verb::Subscribe => "subscribe",
            Verb::Get => "get",
            Verb::Keynotify => "keynotify",
            Verb::Set => "set",
            Verb::Del => "del",
            Verb::Vdel => "vdel",
        }
    }

    /// `Some(write)` for state store operations.
    pub(super) fn state_store(self) -> Option<bool> {
        match self {
            Verb::Get | Verb::Keynotify => Some(false),
            Verb::Set | Verb::Del | Verb::Vdel => Some(true),
            Verb::Connect | Verb::Publish | Verb::Subscribe => None,
        }
    }
}

/// `KEY=VALUE`; the value may be empty or contain `=`.
pub(super) fn parse_attr(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some(("", _)) => Err("expected KEY=VALUE, the attribute name is empty".into()),
        Some((key, value)) => Ok((key.to_owned(), value.to_owned())),
        None => Err("expected KEY=VALUE (no `=` found)".into()),
    }
}

/// The request, owned.
pub(super) enum Request {
    Connect,
    Publish(String),
    Subscribe(String),
    StateStore { write: bool, key: Vec<u8> },
}

impl Request {
    pub(super) fn action(&self) -> Action<'_> {
        match self {
            Request::Connect => Action::Connect,
            Request::Publish(t) => Action::Publish(t),
            Request::Subscribe(f) => Action::Subscribe(f),
            Request::StateStore { write, key } => Action::StateStore { write: *write, key },
        }
    }
}

pub(super) fn request(args: &ExplainArgs) -> Result<Request, String> {
    let verb = args.action.name();
    if let Some(write) = args.action.state_store() {
        let key = match (&args.target, &args.binary_key) {
            (Some(text), None) => text.as_bytes().to_vec(),
            (None, Some(b64)) => base64::engine::general_purpose::STANDARD
                .decode(b64.trim())
                .map_err(|e| format!("--binary-key `{b64}` is not base64: {e}"))?,
            (None, None) => return Err(format!("`{verb}` needs a KEY (or --binary-key BASE64)")),
            (Some(_), Some(_)) => return Err("give either KEY or --binary-key, not both".into()),
        };
        return Ok(Request::StateStore { write, key });
    }
    if args.binary_key.is_some() {
        return Err(format!(
            "--binary-key is for state store keys (get, keynotify, set, del, vdel), not `{verb}`"
        ));
    }
    match (args.action, &args.target) {
        (Verb::Connect, None) => Ok(Request::Connect),
        (Verb::Connect, Some(t)) => Err(format!("`connect` takes no TARGET (got `{t}`)")),
        (Verb::Publish, Some(t)) => Ok(Request::Publish(t.clone())),
        (Verb::Subscribe, Some(f)) => Ok(Request::Subscribe(f.clone())),
        (_, None) => Err(format!(
            "`{verb}` needs a TARGET: the {}",
            if args.action == Verb::Publish {
                "topic"
            } else {
                "topic filter"
            }
        )),
        _ => unreachable!("state store verbs are handled above"),
    }
}
