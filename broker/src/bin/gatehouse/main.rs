//! The `gatehouse` command: run the broker, validate a configuration, manage
//! certificates (`gatehouse ca bundle`, `gatehouse ca issue`), or explain an authorization
//! decision (`gatehouse explain`).

#[allow(
    clippy::disallowed_methods,
    reason = "the subcommands other than `run` are synchronous programs: no runtime to block"
)]
mod cli;

/// jemalloc, not the system allocator: the memory of closed connections goes back to the
/// system (see the `jemalloc` feature in Cargo.toml for the measurements).
#[cfg(feature = "jemalloc")]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

// jemalloc's options (`background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:0`) are
// compiled into jemalloc, not set here: `.cargo/config.toml` passes them to its build as
// `JEMALLOC_SYS_WITH_MALLOC_CONF` (jemalloc's `--with-malloc-conf`), so no `unsafe`
// `#[export_name = "_rjem_malloc_conf"]` static is needed (the workspace forbids unsafe
// code). `_RJEM_MALLOC_CONF` in the environment still overrides them at run time. A
// background thread purges freed pages, so an idle broker returns the memory of
// connections that closed without waiting for its next allocations; pages unused for a
// second go back (default 10 s, and only on allocator activity).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use gatehouse::Server;
use gatehouse_config::{Config, LogFormat};

#[derive(Parser)]
#[command(
    name = "gatehouse",
    version,
    about = "MQTT 5 / 3.1.1 broker with TLS, authentication and authorization built in"
)]
struct Cli {
    /// Configuration file (YAML, native form or AIO manifests). Without one the broker
    /// listens on 127.0.0.1:1883 (MQTT) and 127.0.0.1:8080 (WebSockets, /mqtt).
    #[arg(long, short, global = true)]
    config: Option<PathBuf>,
    // --- logging flags (issue 16) ---
    /// Log level or filter, the syntax of RUST_LOG: `debug`, or `info,authz=debug`. Wins
    /// over RUST_LOG, which wins over the configuration's `diagnostics.logs.level`.
    #[arg(long, global = true, value_name = "LEVEL|FILTER")]
    log_level: Option<String>,
    /// `text` (default) or `json` (one JSON object per line). Wins over the
    /// configuration's `diagnostics.logs.format`.
    #[arg(long, global = true, value_name = "text|json", value_parser = parse_log_format)]
    log_format: Option<LogFormat>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the broker (the default).
    Run,
    /// Check the configuration and everything it refers to (files, secrets, config maps,
    /// authentication backends, policies) as start-up would, without opening ports; list
    /// every problem at once. Exit code 0 when the broker would start (warnings, such as a
    /// Manual TLS secret not there yet, included), 1 with errors.
    Check,
    /// Certificates: print the trust bundle, issue server or client certificates.
    Ca {
        #[command(subcommand)]
        command: cli::ca::CaCommand,
    },
    /// Would a client be allowed to connect, publish, subscribe or use a state store key,
    /// and which rule decides? Exit code 0 allowed, 1 denied, 2 usage or configuration
    /// error.
    Explain(cli::explain::ExplainArgs),
    /// Add, change or delete a user of a password file (the `Password` authentication
    /// method), like mosquitto_passwd: `gatehouse passwd [-c] [-D] [-b] [--password-stdin]
    /// FILE USER [PASSWORD]`; see `gatehouse passwd --help`.
    Passwd(cli::passwd::Forwarded),
}

fn main() -> ExitCode {
    // `passwd` takes mosquitto_passwd's options, whose `-c` (create) is the global
    // `--config` here: it has its own parser, and needs no configuration.
    let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if argv.get(1).is_some_and(|a| a == "passwd") {
        return cli::passwd::main(&argv[1..]);
    }
    let cli = Cli::parse();
    // `check` goes on past validation problems to check the files too (every problem at
    // once); it loads the file itself.
    if let (Some(Command::Check), Some(path)) = (&cli.command, &cli.config) {
        return cli::check::run_file(path);
    }
    let (config, warnings, local_default) = match &cli.config {
        Some(path) => match gatehouse_config::load_file(path) {
            Ok(loaded) => (loaded.config, loaded.warnings, false),
            Err(e) => {
                eprintln!("gatehouse: invalid configuration {}:\n{e}", path.display());
                if matches!(cli.command, Some(Command::Explain(_))) {
                    return ExitCode::from(2);
                }
                return ExitCode::FAILURE;
            }
        },
        None => (Config::local_default(), Vec::new(), true),
    };
    match cli.command.unwrap_or(Command::Run) {
        Command::Check => cli::check::run(&config, &warnings, cli.config.as_deref()),
        Command::Ca { command } => {
            for w in &warnings {
                eprintln!("warning: {w}");
            }
            cli::ca::run(command, &config)
        }
        Command::Explain(args) => {
            for w in &warnings {
                eprintln!("warning: {w}");
            }
            cli::explain::run(&args, &config, cli.config.as_deref())
        }
        Command::Passwd(_) => cli::passwd::misplaced(),
        Command::Run => {
            let logging = LogFlags {
                level: cli.log_level,
                format: cli.log_format,
            };
            run(config, cli.config.clone(), warnings, local_default, logging)
        }
    }
}

/// How long a shutdown waits for connections to flush and close before exiting anyway.
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

fn run(
    config: Config,
    path: Option<PathBuf>,
    warnings: Vec<String>,
    local_default: bool,
    logging: LogFlags,
) -> ExitCode {
    if let Err(e) = init_logging(&config, logging) {
        eprintln!("gatehouse: {e}");
        return ExitCode::from(2);
    }
    // Like `mosquitto -v`: what runs, from which file (each port follows as it is bound).
    tracing::info!(
        target: "gatehouse",
        version = env!("CARGO_PKG_VERSION"),
        config = path.as_deref().map(|p| p.display().to_string()),
        "gatehouse {} starting{}",
        env!("CARGO_PKG_VERSION"),
        match &path {
            Some(p) => format!(" with configuration {}", p.display()),
            None => " without a configuration file".to_owned(),
        }
    );
    for w in &warnings {
        tracing::warn!("{w}");
    }
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.enable_all();
    // Run woken tasks in the order they were woken: with the LIFO slot, the last of a
    // batch of sockets that became readable together runs first, so a PUBLISH that
    // reached the broker after another client's SUBSCRIBE took effect before it (Mosquitto,
    // one thread in epoll order, never reverses them). The option needs
    // `--cfg tokio_unstable` (set in `.cargo/config.toml`); without it the broker still
    // works, with that reordering.
    #[cfg(tokio_unstable)]
    builder.disable_lifo_slot();
    let runtime = match builder.build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("gatehouse: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let mut server = match Server::start(&config).await {
            Ok(s) => s,
            Err(e) => {
                tracing::error!("{e}");
                eprintln!("gatehouse: {e}");
                return ExitCode::FAILURE;
            }
        };
        if local_default {
            tracing::info!(
                "no configuration given: serving anonymous MQTT on 127.0.0.1:1883 and MQTT over \
                 WebSockets on 127.0.0.1:8080/mqtt; local connections only"
            );
        }
        if let Some(path) = path {
            tokio::spawn(watch_config(path, server.reloader()));
        }
        tokio::select! {
            _ = server.wait() => {}
            _ = shutdown_signal() => tracing::info!("shutting down"),
        }
        let done = server.shutdown(SHUTDOWN_GRACE).await;
        if done.drained {
            tracing::info!("stopped; {} client(s) disconnected", done.disconnected);
        } else {
            tracing::warn!(
                "stopped after {SHUTDOWN_GRACE:?} with connections still closing; {} client(s) disconnected",
                done.disconnected
            );
        }
        ExitCode::SUCCESS
    })
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

/// `--log-format`: `text` or `json`, in any letter case (as in the configuration).
fn parse_log_format(text: &str) -> Result<LogFormat, String> {
    match text.to_ascii_lowercase().as_str() {
        "text" => Ok(LogFormat::Text),
        "json" => Ok(LogFormat::Json),
        _ => Err("expected `text` or `json`".to_owned()),
    }
}

/// `--log-level` and `--log-format` as given on the command line.
struct LogFlags {
    level: Option<String>,
    format: Option<LogFormat>,
}

/// The filter comes from `--log-level`, else `RUST_LOG`, else `diagnostics.logs.level`
/// (a `Broker` manifest's `spec.diagnostics.logs.level` lands there too): the command line
/// wins, and `RUST_LOG` lets an operator turn on one target (`RUST_LOG=info,authz=debug`)
/// without editing the file. An invalid `--log-level` is an error (the operator asked for
/// it); an invalid `RUST_LOG` falls back to the configuration, as before. The format comes
/// from `--log-format`, else `diagnostics.logs.format`.
fn init_logging(config: &Config, flags: LogFlags) -> Result<(), String> {
    use tracing_subscriber::EnvFilter;
    let filter = match &flags.level {
        Some(level) => {
            EnvFilter::try_new(level).map_err(|e| format!("invalid --log-level {level:?}: {e}"))?
        }
        None => EnvFilter::try_from_default_env()
            .or_else(|_| EnvFilter::try_new(&config.diagnostics.logs.level))
            .unwrap_or_else(|_| EnvFilter::new("info")),
    };
    // Colours only on a terminal: a log file or journald gets plain text (and formatting
    // the escape codes cost a few per cent of the CPU of a short connection).
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    match flags.format.unwrap_or(config.diagnostics.logs.format) {
        // The event's fields at the top level next to `timestamp`, `level`, `target` and
        // `message`: `{"client_id":"x",...}` rather than nested under `fields`.
        LogFormat::Json => builder.json().flatten_event(true).init(),
        LogFormat::Text => builder.init(),
    }
    Ok(())
}

/// Reload on SIGHUP and when the configuration file changes (its stamp is polled every
/// second, like certificate files). An invalid file keeps the running configuration.
async fn watch_config(path: PathBuf, reloader: gatehouse::reload::Reloader) {
    #[cfg(unix)]
    let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
    // Every stat, read and rebuild below runs on a blocking thread, off the async workers.
    let stamp = |path: &PathBuf| {
        let path = path.clone();
        tokio::task::spawn_blocking(move || gatehouse::file_stamp::stamp(&path))
    };
    let Ok(mut last) = stamp(&path).await else {
        return;
    };
    loop {
        #[cfg(unix)]
        let signalled = async {
            match hangup.as_mut() {
                Some(h) => h.recv().await,
                None => std::future::pending().await,
            }
        };
        #[cfg(not(unix))]
        let signalled = std::future::pending::<Option<()>>();
        let why = tokio::select! {
            _ = signalled => "SIGHUP",
            _ = tokio::time::sleep(std::time::Duration::from_secs(1)) => {
                let Ok(now) = stamp(&path).await else {
                    return; // the runtime is shutting down
                };
                if now == last {
                    continue;
                }
                last = now;
                "the configuration file changed"
            }
        };
        let (file, applier) = (path.clone(), reloader.clone());
        let Ok(outcome) = tokio::task::spawn_blocking(move || {
            gatehouse_config::load_file(&file).map(|loaded| applier.apply(loaded.config))
        })
        .await
        else {
            return;
        };
        match outcome {
            Err(e) => tracing::error!(
                "reload ({why}): {} is invalid; keeping the running configuration:\n{e}",
                path.display()
            ),
            Ok(applied) => match applied {
                Err(problems) => tracing::error!(
                    "reload ({why}): keeping the running configuration:\n  {}",
                    problems.join("\n  ")
                ),
                Ok(done) => {
                    if done.limits {
                        tracing::info!(
                            "reload ({why}): new broker limits apply to new connections"
                        );
                    }
                    for what in &done.need_restart {
                        tracing::warn!("reload ({why}): {what}; this takes effect after a restart");
                    }
                    if done.policies.is_empty() && done.authentications.is_empty() {
                        tracing::info!("reload ({why}): no authentication or authorization change");
                    } else {
                        let changed: Vec<String> = done
                            .policies
                            .iter()
                            .map(|p| format!("authorization {p}"))
                            .chain(
                                done.authentications
                                    .iter()
                                    .map(|a| format!("authentication {a}")),
                            )
                            .collect();
                        tracing::info!(
                            "reload ({why}): now in force: {}; disconnected {} client(s) so they reconnect under them",
                            changed.join(", "),
                            done.disconnected
                        );
                    }
                }
            },
        }
    }
}
