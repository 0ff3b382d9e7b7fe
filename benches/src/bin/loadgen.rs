//! `loadgen`: the lean MQTT load generator (issue 14). Many connections on one thread,
//! pre-encoded PUBLISHes, pipelined writes; a human summary on stderr and one JSON line
//! on stdout. See benches/README.md, "The load generator".
//!
//! ```sh
//! loadgen pubsub --qos 1 --publishers 1 --subscribers 1 --duration 10 --broker-pid PID
//! loadgen pubsub --publishers 1000 --subscribers 1 --rate 50000      # fan-in, open loop
//! loadgen pubsub --subscribers 8 --share-group g                     # shared subscription
//! loadgen retained --messages 10000 --subscribers 10
//! loadgen idle --connections 19000 [--no-connect]
//! loadgen connect --concurrency 32 [--tls --ca-file ca.crt]
//! ```

#![allow(
    clippy::unwrap_used,
    clippy::disallowed_methods,
    reason = "a measuring tool, not the broker: a setup failure aborts the run; /proc and result files are read and written synchronously"
)]

use std::io::Write;
use std::rc::Rc;

use clap::{Parser, Subcommand};
use gatehouse_benches::loadgen::{idle, pubsub, retained, storm, sys, Common};
use serde_json::Value;

#[derive(Parser, Debug)]
#[command(about = "Lean MQTT load generator: many connections on one thread, pre-encoded packets")]
struct Cli {
    #[command(flatten)]
    common: Common,
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Subcommand, Debug)]
enum Scenario {
    /// N publishers → M subscribers (fan-out, fan-in, shared subscriptions, 1 → 1).
    Pubsub(pubsub::PubSubArgs),
    /// Store K retained messages, then measure subscribe → last retained message.
    Retained(retained::RetainedArgs),
    /// Hold N idle connections and report the broker's RSS per connection.
    Idle(idle::IdleArgs),
    /// Connect/disconnect loops: connections per second.
    Connect(storm::StormArgs),
}

fn main() {
    let mut cli = Cli::parse();
    cli.common.resolved_run_id = cli.common.run_id.clone().unwrap_or_else(|| {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() % 1_000_000)
            .unwrap_or(0);
        format!("{}x{t}", std::process::id())
    });
    let conns = match &cli.scenario {
        Scenario::Pubsub(a) => a.publishers + a.subscribers,
        Scenario::Retained(a) => a.subscribers + 1,
        Scenario::Idle(a) => a.connections,
        Scenario::Connect(a) => a.concurrency,
    };
    let (soft, _) = sys::raise_nofile(conns as u64 + 1024);
    if (conns as u64) + 64 > soft {
        eprintln!("loadgen: warning: {conns} connections but the open-files limit is {soft}");
    }
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("loadgen: cannot start the runtime: {e}");
            std::process::exit(2);
        }
    };
    let local = tokio::task::LocalSet::new();
    let common = cli.common.clone();
    let result = local.block_on(&rt, async {
        let target = Rc::new(common.target(conns)?);
        match &cli.scenario {
            Scenario::Pubsub(a) => pubsub::run(&common, target, a).await,
            Scenario::Retained(a) => retained::run(&common, target, a).await,
            Scenario::Idle(a) => idle::run(&common, target, a).await,
            Scenario::Connect(a) => storm::run(&common, target, a).await,
        }
    });
    let mut v = match result {
        Ok(v) => v,
        Err(e) => {
            eprintln!("loadgen: {e}");
            println!(
                "{}",
                serde_json::json!({"failed": true, "error": e.to_string(), "label": common.label})
            );
            std::process::exit(1);
        }
    };
    if let Value::Object(m) = &mut v {
        m.insert("label".into(), serde_json::json!(common.label));
        m.insert("mqtt".into(), serde_json::json!(common.version));
        m.insert("tls".into(), serde_json::json!(common.tls));
        m.insert("broker_pid".into(), serde_json::json!(common.broker_pid));
    }
    eprint!("{}", summary(&v));
    let line = v.to_string();
    println!("{line}");
    if let Some(path) = &common.json {
        if let Err(e) = std::fs::File::create(path).and_then(|mut f| writeln!(f, "{line}")) {
            eprintln!("loadgen: cannot write {}: {e}", path.display());
        }
    }
    // Drop the runtime without waiting for tasks still parked on sockets.
    rt.shutdown_background();
}

/// The human-readable summary: every scalar of the JSON, nested objects flattened.
fn summary(v: &Value) -> String {
    fn walk(prefix: &str, v: &Value, out: &mut String) {
        match v {
            Value::Object(m) => {
                for (k, x) in m {
                    let key = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    walk(&key, x, out);
                }
            }
            Value::Null => {}
            Value::Number(n) => {
                let s = match n.as_f64() {
                    Some(f) if n.is_f64() && f.abs() >= 100.0 => format!("{f:.0}"),
                    Some(f) if n.is_f64() => format!("{f:.3}"),
                    _ => n.to_string(),
                };
                out.push_str(&format!("  {prefix:<36} {s}\n"));
            }
            other => out.push_str(&format!("  {prefix:<36} {other}\n")),
        }
    }
    let mut out = String::from("loadgen result:\n");
    walk("", v, &mut out);
    out
}
