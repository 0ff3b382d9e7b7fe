#!/usr/bin/env bash
# A 3-node Gatehouse cluster on NATS JetStream against one Gatehouse node and Mosquitto, on
# the same load from the lean load generator (`loadgen`, issue 15 "benches/").
#
# Three setups per measurement, each started fresh and stopped after it:
#   cluster    3 nats-server processes (JetStream, routed, `sync_interval: always`) and 3
#              Gatehouse nodes with `cluster:`; the publishers connect to node 1, the
#              subscribers to nodes 2 and 3 (alternately), so every message crosses NATS
#   single     one Gatehouse node, no cluster (everything on its one port)
#   mosquitto  Debian's mosquitto (everything on its one port)
# Every process of the broker side (all nodes and NATS servers, or the one broker) is
# pinned to one core (BROKER_CPU, default 1) and loadgen to another (LOADGEN_CPU, default
# 0), so "broker CPU" is the whole broker side's: for the cluster, loadgen sums the CPU of
# the 3 nodes and the 3 NATS servers (`--also-pids`). One core for six processes is what
# this 2-core machine allows; it measures the cluster's cost per message, not its capacity.
#
# Scenarios (SCENARIOS, space separated; all by default):
#   qos0      QoS 0, 1 publisher → 2 subscribers (one per subscriber node), as fast as
#             possible: delivered msg/s and delivered / (accepted × 2)
#   qos1      QoS 1, 1 → 2, window WINDOW: delivered msg/s
#   latency   QoS 1, 1 → 2 at LATENCY_RATE publishes/s (open loop, below every setup's
#             capacity): p50/p99 latency and broker-side CPU µs per message
#   fanin     100 publishers, QoS 1, FANIN_RATE publishes/s in all → 2 subscribers: broker
#             CPU µs per message and p99 latency
#   shared    QoS 1, 1 → $share/g with 8 subscribers (4 per subscriber node): delivered msg/s
#   offline   qos1 while a persistent session (v5, expiry 1 h, filter `#`, made on node 2 with
#             mosquitto_sub and left offline) wants every message: cluster, each one is
#             written to the gatehouse-queued stream and its PUBACK waits for JetStream;
#             one broker / Mosquitto, its queue fills and then drops (their bounds)
#   connect   connect storm (32 loops, all on node 1): connections/s, broker CPU µs per
#             connection (cluster: each CONNECT claims its session in JetStream)
#   takeover  session takeovers: 16 loops, each CONNECTing one client id to nodes 1 and 2
#             in turn without DISCONNECT (cluster: every CONNECT takes the session over
#             from the other node; one broker: from its own previous connection)
#
# Environment:
#   RUNS=3 DURATION=5 WARMUP=1  WINDOW=256  LATENCY_RATE=5000  FANIN_RATE=5000
#   SCENARIOS=...  SETUPS="cluster single mosquitto"
#   BROKER_CPU=1 LOADGEN_CPU=0   PIN=0 runs unpinned
#   BUILD=0                      skip `cargo build --release` of gatehouse and loadgen
#   OUT_DIR=DIR                  keep every run's JSON and logs;  JSON_OUT=FILE  the summary
#   GATEHOUSE=PATH LOADGEN=PATH MOSQUITTO=PATH NATS_SERVER=PATH
# Needs nats-server ≥ 2.11 (.ci/install-nats-server), mosquitto, python3, taskset.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"

RUNS="${RUNS:-3}"
DURATION="${DURATION:-5}"
WARMUP="${WARMUP:-1}"
WINDOW="${WINDOW:-256}"
LATENCY_RATE="${LATENCY_RATE:-5000}"
FANIN_RATE="${FANIN_RATE:-5000}"
SCENARIOS="${SCENARIOS:-qos0 qos1 offline latency fanin shared connect takeover}"
SETUPS="${SETUPS:-cluster single mosquitto}"
BROKER_CPU="${BROKER_CPU:-1}"
LOADGEN_CPU="${LOADGEN_CPU:-0}"
PIN="${PIN:-1}"
BUILD="${BUILD:-1}"
target_dir="${CARGO_TARGET_DIR:-$root/target}"
GATEHOUSE="${GATEHOUSE:-$target_dir/release/gatehouse}"
LOADGEN="${LOADGEN:-$target_dir/release/loadgen}"
MOSQUITTO="${MOSQUITTO:-$(command -v mosquitto || echo /usr/sbin/mosquitto)}"
NATS_SERVER="${NATS_SERVER:-$(command -v nats-server || echo /usr/local/bin/nats-server)}"

script=cluster.sh
work_prefix=gatehouse-cluster-bench
# shellcheck source=benches/lib.sh
. "$here/lib.sh"

# Every process of the current setup; stopped between measurements and on exit.
procs=()
stop_all() {
    local p
    for p in "${procs[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${procs[@]}"; do wait "$p" 2>/dev/null || true; done
    procs=()
}
trap 'stop_all; cleanup' EXIT

command -v python3 >/dev/null || die "python3 is required"
[ -x "$MOSQUITTO" ] || die "mosquitto not found (apt-get install mosquitto, or set MOSQUITTO=)"
[ -x "$NATS_SERVER" ] || die "nats-server not found (.ci/install-nats-server, or set NATS_SERVER=)"

pin_broker=() pin_loadgen=() pin_note="unpinned"
if [ "$PIN" != 0 ] && command -v taskset >/dev/null && [ "$(nproc)" -ge 2 ]; then
    pin_broker=(taskset -c "$BROKER_CPU")
    pin_loadgen=(taskset -c "$LOADGEN_CPU")
    pin_note="every broker-side process pinned with \`taskset -c $BROKER_CPU\`, loadgen with \`taskset -c $LOADGEN_CPU\`"
fi
if [ "$BUILD" != 0 ]; then
    log "building gatehouse and loadgen (release)..."
    (cd "$root" && cargo build --release -q -p gatehouse -p gatehouse-benches --bin gatehouse --bin loadgen) >&2
fi
[ -x "$GATEHOUSE" ] || die "gatehouse binary not found at $GATEHOUSE"
[ -x "$LOADGEN" ] || die "loadgen binary not found at $LOADGEN"
rev="$(git -C "$root" describe --always --dirty 2>/dev/null || echo unknown)"
nats_ver="$("$NATS_SERVER" --version 2>&1 | head -1)"

wait_port() {
    local i
    for i in $(seq 200); do
        if port_open "$1"; then return 0; fi
        sleep 0.05
    done
    return 1
}

gatehouse_yaml() { # FILE DATA PORT [CLUSTER-BLOCK]
    {
        printf 'dataDir: %s\n' "$2"
        printf 'listeners:\n  - name: bench\n    bindAddress: 127.0.0.1\n    ports:\n      - port: %s\n' "$3"
        printf 'broker:\n  maxConnections: 60000\n  maxSessions: 60000\n  maxPendingConnections: 60000\n'
        printf '  maxPendingConnectionsPerAddress: 60000\n'
        printf 'diagnostics:\n  logs: {level: %s}\n  metrics: {prometheusPort: 0}\n' "${LOG_LEVEL:-warn}"
        if [ -n "${4:-}" ]; then printf '%s\n' "$4"; fi
    } >"$1"
}

# start_setup NAME: sets pub_port, sub_ports (comma list), main_pid, also_pids (comma list).
start_setup() {
    local name="$1" d="$work/$1" i
    rm -rf "$d" && mkdir -p "$d"
    also_pids=""
    case "$name" in
    single)
        pub_port="$(free_port)"
        gatehouse_yaml "$d/gh.yaml" "$d/data" "$pub_port"
        "${pin_broker[@]}" "$GATEHOUSE" --config "$d/gh.yaml" >"$d/gh.log" 2>&1 &
        main_pid=$! procs+=("$main_pid")
        wait_port "$pub_port" || { tail -5 "$d/gh.log" >&2; die "gatehouse did not start"; }
        sub_ports="$pub_port"
        ;;
    mosquitto)
        pub_port="$(free_port)"
        printf 'listener %s 127.0.0.1\nallow_anonymous true\nmax_queued_messages 1000000\nmax_inflight_messages %s\nset_tcp_nodelay true\nlog_type error\nlog_type warning\n' \
            "$pub_port" "$WINDOW" >"$d/mosquitto.conf"
        "${pin_broker[@]}" "$MOSQUITTO" -c "$d/mosquitto.conf" >"$d/mosquitto.log" 2>&1 &
        main_pid=$! procs+=("$main_pid")
        wait_port "$pub_port" || { tail -5 "$d/mosquitto.log" >&2; die "mosquitto did not start"; }
        sub_ports="$pub_port"
        ;;
    cluster)
        local np=() cp=() hp=() routes="" servers="" pids=() ports=()
        for i in 1 2 3; do np+=("$(free_port)"); cp+=("$(free_port)"); hp+=("$(free_port)"); done
        for i in 0 1 2; do
            routes+="${routes:+, }nats-route://127.0.0.1:${cp[$i]}"
            servers+="${servers:+, }nats://127.0.0.1:${np[$i]}"
        done
        for i in 0 1 2; do
            cat >"$d/nats-$i.conf" <<EOF
server_name: nats-$i
listen: 127.0.0.1:${np[$i]}
http: 127.0.0.1:${hp[$i]}
jetstream { store_dir: "$d/js-$i", sync_interval: always }
cluster { name: bench, listen: 127.0.0.1:${cp[$i]}, routes: [$routes] }
EOF
            "${pin_broker[@]}" "$NATS_SERVER" -c "$d/nats-$i.conf" >"$d/nats-$i.log" 2>&1 &
            pids+=($!) procs+=($!)
        done
        for i in 0 1 2; do wait_port "${np[$i]}" || { tail -5 "$d/nats-$i.log" >&2; die "nats-server did not start"; }; done
        # JetStream is ready once every server names the same meta leader.
        python3 - "${hp[@]}" <<'PY' || die "JetStream elected no meta leader in 60 s"
import json, sys, time, urllib.request
deadline = time.time() + 60
while time.time() < deadline:
    try:
        leaders = {json.load(urllib.request.urlopen(f"http://127.0.0.1:{p}/jsz", timeout=2))
                   .get("meta_cluster", {}).get("leader") for p in sys.argv[1:]}
        if len(leaders) == 1 and None not in leaders:
            sys.exit(0)
    except Exception:
        pass
    time.sleep(0.1)
sys.exit(1)
PY
        for i in 0 1 2; do
            ports+=("$(free_port)")
            gatehouse_yaml "$d/gh-$i.yaml" "$d/data-$i" "${ports[$i]}" \
                "cluster:
  nodeName: node-$i
  nats: { servers: [$servers], replicas: 3 }"
            "${pin_broker[@]}" "$GATEHOUSE" --config "$d/gh-$i.yaml" >"$d/gh-$i.log" 2>&1 &
            pids+=($!) procs+=($!)
        done
        # A node opens its port once its buckets are ready (JetStream elected its leaders).
        for i in 0 1 2; do
            local j
            for j in $(seq 600); do
                port_open "${ports[$i]}" && break
                kill -0 "${pids[$((i + 3))]}" 2>/dev/null || { tail -5 "$d/gh-$i.log" >&2; die "node $i exited"; }
                sleep 0.05
            done
            port_open "${ports[$i]}" || { tail -5 "$d/gh-$i.log" >&2; die "node $i did not open its port"; }
        done
        main_pid="${pids[3]}"
        also_pids="${pids[0]},${pids[1]},${pids[2]},${pids[4]},${pids[5]}"
        pub_port="${ports[0]}"
        sub_ports="${ports[1]},${ports[2]}"
        ;;
    esac
}

loadgen_args() {
    local t=(--duration "$DURATION" --warmup "$WARMUP")
    case "$1" in
    qos0) echo pubsub --qos 0 --subscribers 2 --topics shared "${t[@]}" ;;
    qos1 | offline) echo pubsub --qos 1 --window "$WINDOW" --subscribers 2 --topics shared "${t[@]}" ;;
    latency) echo pubsub --qos 1 --subscribers 2 --topics shared --rate "$LATENCY_RATE" "${t[@]}" ;;
    fanin) echo pubsub --qos 1 --publishers 100 --subscribers 2 --topics shared --rate "$FANIN_RATE" "${t[@]}" ;;
    shared) echo pubsub --qos 1 --window "$WINDOW" --subscribers 8 --topics shared --share-group g "${t[@]}" ;;
    connect) echo connect --concurrency 32 "${t[@]}" ;;
    takeover) echo connect --concurrency 16 "${t[@]}" ;;
    *) die "unknown scenario $1" ;;
    esac
}

run_one() { # SCENARIO SETUP REP
    local scen="$1" name="$2" rep="$3" out="$work/run.json" extra=() sub=()
    start_setup "$name"
    if [ -n "$also_pids" ]; then extra+=(--also-pids "$also_pids"); fi
    if [ "$scen" = offline ]; then
        # A persistent session on the first subscriber node, offline from here on.
        mosquitto_sub -h 127.0.0.1 -p "${sub_ports%%,*}" -V mqttv5 -i gh-bench-offline -c \
            -x 3600 -q 1 -t '#' -E || die "could not make the offline session"
    fi
    case "$scen" in
    connect) ;;
    # Nodes 1 and 2 of the cluster; the one broker's own port twice otherwise.
    takeover) sub=(--takeover-ports "$pub_port,${sub_ports%%,*}") ;;
    *) sub=(--sub-ports "$sub_ports") ;;
    esac
    # shellcheck disable=SC2046
    if ! "${pin_loadgen[@]}" "$LOADGEN" --host 127.0.0.1 --port "$pub_port" --broker-pid "$main_pid" \
        --label "$scen" "${extra[@]}" $(loadgen_args "$scen") "${sub[@]}" >"$out" 2>"$work/loadgen.err"; then
        log "  loadgen failed on $name ($scen):"
        tail -3 "$work/loadgen.err" >&2
        tail -1 "$out" | grep -q '^{' || echo '{"failed":true}' >"$out"
    fi
    stop_all
    if [ -n "${OUT_DIR:-}" ]; then
        mkdir -p "$OUT_DIR/$scen-$name-$rep"
        cp "$out" "$OUT_DIR/$scen-$name-$rep/loadgen.json"
        cp "$work/loadgen.err" "$work/$name"/*.log "$OUT_DIR/$scen-$name-$rep/" 2>/dev/null || true
    fi
    python3 - "$out" "$scen" "$name" "$rep" >>"$results" <<'PY'
import json, sys
path, scen, name, rep = sys.argv[1:]
try:
    res = json.loads(open(path).read().strip().splitlines()[-1])
except Exception as e:
    res = {"failed": True, "error": str(e)}
print(json.dumps({"scen": scen, "setup": name, "rep": int(rep), **res}))
PY
    log "  $scen $name rep $rep: $(python3 -c '
import json, sys
r = json.loads(sys.argv[1])
keys = ["delivered_rate", "delivered_ratio", "connections_per_s", "takeovers_per_s", "broker_cpu_us_per_msg", "broker_cpu_us_per_conn", "broker_cpu_us_per_takeover", "errors", "failed"]
lat = r.get("latency_us") or r.get("connect_us") or {}
print(" ".join(f"{k}={r[k]:.4g}" if isinstance(r[k], float) else f"{k}={r[k]}" for k in keys if r.get(k) is not None), "p99_us=" + str(lat.get("p99")))
' "$(tail -1 "$results")")"
}

log "gatehouse: $GATEHOUSE ($rev); $nats_ver; mosquitto: $("$MOSQUITTO" -h 2>&1 | head -1)"
log "$pin_note; runs=$RUNS duration=${DURATION}s; scenarios: $SCENARIOS; setups: $SETUPS"
load_before="$(cut -d' ' -f1-3 /proc/loadavg)"
for scen in $SCENARIOS; do
    for rep in $(seq "$RUNS"); do
        # Rotate which setup goes first.
        set -- $SETUPS
        for _ in $(seq $(((rep - 1) % $#))); do set -- "${@:2}" "$1"; done
        for name in "$@"; do run_one "$scen" "$name" "$rep"; done
    done
done
load_after="$(cut -d' ' -f1-3 /proc/loadavg)"

python3 - "$results" "$RUNS" "$DURATION" "$WARMUP" "$rev" "$nats_ver" "$("$MOSQUITTO" -h 2>&1 | head -1)" \
    "$pin_note" "$load_before" "$load_after" "$WINDOW" "$LATENCY_RATE" "$FANIN_RATE" "${JSON_OUT:-}" <<'PY'
import json, statistics, sys, datetime
(path, runs, duration, warmup, rev, nats_ver, mosq_ver, pin_note, lb, la, window, lat_rate,
 fanin_rate, json_out) = sys.argv[1:]
rows = [json.loads(l) for l in open(path) if l.strip()]
present = {r["scen"] for r in rows}

def get(r, key):
    for k in key.split("."):
        r = r.get(k) if isinstance(r, dict) else None
    return r

def med(scen, setup, key):
    xs = [get(r, key) for r in rows if r["scen"] == scen and r["setup"] == setup and not r.get("failed")]
    xs = [x for x in xs if isinstance(x, (int, float))]
    return statistics.median(xs) if xs else None

def fmt(x, nd=0):
    return "n/a" if x is None else f"{x:,.{nd}f}"

def ratio(a, b):
    return fmt(a / b, 2) if a is not None and b else "n/a"

lines = ["| scenario | cluster (3 nodes) | one Gatehouse | Mosquitto | cluster / one Gatehouse | cluster / Mosquitto |",
         "|---|---:|---:|---:|---:|---:|"]
summary = {}
def row(scen, label, key, nd=0):
    if scen not in present:
        return
    c, s, m = (med(scen, x, key) for x in ("cluster", "single", "mosquitto"))
    lines.append(f"| {label} | {fmt(c, nd)} | {fmt(s, nd)} | {fmt(m, nd)} | {ratio(c, s)} | {ratio(c, m)} |")
    summary.setdefault(scen, {})[key] = {"cluster": c, "single": s, "mosquitto": m}

row("qos0", "QoS 0, 1 → 2 (subscribers on nodes 2 and 3): delivered msg/s", "delivered_rate")
row("qos0", "QoS 0: delivered / (accepted × 2)", "delivered_ratio", 3)
row("qos0", "QoS 0: broker-side CPU µs per message", "broker_cpu_us_per_msg", 2)
row("qos1", f"QoS 1, 1 → 2, window {window}: delivered msg/s", "delivered_rate")
row("qos1", "QoS 1: delivered / (accepted × 2)", "delivered_ratio", 3)
row("offline", f"QoS 1, 1 → 2, window {window}, with an offline persistent session wanting every message: delivered msg/s", "delivered_rate")
row("offline", "offline run: broker-side CPU µs per message", "broker_cpu_us_per_msg", 2)
row("latency", f"QoS 1, 1 → 2 at {int(float(lat_rate)):,} pub/s: p50 latency µs", "latency_us.p50")
row("latency", "latency run: p99 latency µs", "latency_us.p99")
row("latency", "latency run: broker-side CPU µs per message", "broker_cpu_us_per_msg", 2)
row("fanin", f"fan-in 100 publishers → 2, QoS 1, {int(float(fanin_rate)):,} msg/s: broker-side CPU µs/msg", "broker_cpu_us_per_msg", 2)
row("fanin", "fan-in: p99 latency µs (from scheduled send)", "latency_from_schedule_us.p99")
row("fanin", "fan-in: delivered / (accepted × 2)", "delivered_ratio", 3)
row("shared", "QoS 1, $share/g with 8 members (4 per node): delivered msg/s", "delivered_rate")
row("shared", "$share: delivered / accepted", "delivered_ratio", 3)
row("connect", "connect storm, 32 loops, node 1: connections/s", "connections_per_s")
row("connect", "connect storm: broker-side CPU µs per connection", "broker_cpu_us_per_conn", 1)
row("takeover", "session takeovers, 16 client ids CONNECTing to nodes 1 and 2 in turn: takeovers/s", "takeovers_per_s")
row("takeover", "session takeover: p99 µs to CONNACK", "connect_us.p99")
row("takeover", "session takeover: broker-side CPU µs per takeover", "broker_cpu_us_per_takeover", 1)

now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
print(f"## Cluster vs one node vs Mosquitto on loadgen ({now})")
print()
print(f"- Gatehouse {rev} (release); {nats_ver}; {mosq_ver}; {pin_note}.")
print(f"- medians of {runs} repetitions, {duration} s measured after {warmup} s warm-up, every setup started "
      f"fresh per measurement; MQTT 5, 64-byte payloads; load average {lb} before, {la} after.")
print("- cluster: 3 NATS servers (JetStream, `sync_interval: always`, replicas 3) and 3 Gatehouse nodes; "
      "publishers on node 1, subscribers on nodes 2 and 3; broker-side CPU is the sum of all six processes.")
print()
print("\n".join(lines))
if json_out:
    with open(json_out, "w") as f:
        json.dump({"date": now, "gatehouse": rev, "summary": summary, "runs_raw": rows}, f, indent=1)
PY
