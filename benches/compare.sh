#!/usr/bin/env bash
# Gatehouse vs Mosquitto, side by side, on the lean load generator (`loadgen`, issue 14).
#
# Every measurement starts a fresh broker on a free loopback port, pinned to one core
# (BROKER_CPU, default 1: `taskset -c 1`), runs one `loadgen` scenario pinned to another
# core (LOADGEN_CPU, default 0: `taskset -c 0`) with the broker's pid (so loadgen reads the
# broker's CPU time and RSS from /proc), and stops the broker. Each repetition runs both
# brokers, the first one alternating. Per scenario the script reports medians over the
# repetitions and the ratio of the medians; targets are issue 14's "How it is judged".
#
# Scenarios (SCENARIOS, space separated; all by default):
#   qos0        QoS 0, 1 publisher → 1 subscriber, as fast as possible: delivered msg/s and
#               delivered / accepted
#   qos1        QoS 1, 1 → 1, window WINDOW (256): delivered msg/s
#   fanout8     QoS 0, 1 → 8 subscribers on one topic, as fast as possible: delivered msg/s
#   fanout1000  QoS 0, 1 → 1,000 subscribers, FANOUT1000_RATE publishes/s: delivered msg/s
#               and broker CPU per publish
#   fanin       1,000 publishers, QoS 1, FANIN_RATE publishes/s in total (open loop) → 1
#               subscriber: broker CPU µs per message and p99 latency at equal load
#   shared      QoS 1, 1 publisher → $share/g/... with 8 subscribers: delivered msg/s
#   subs10k     10,000 subscribers on one topic, QoS 0, SUBS10K_RATE publishes/s: broker
#               CPU per publish (ms) and delivered ratio
#   retained    RETAINED_MESSAGES retained messages stored, then 10 subscribers subscribe
#               to all at once: time to the last retained message
#   idle        IDLE_CONNS connections CONNECTed and held: broker RSS per connection, RSS
#               after they all closed
#   idle_raw    IDLE_CONNS raw TCP sockets that never send CONNECT: RSS per socket
#   connect     connect storm, 32 concurrent connect/CONNECT/DISCONNECT loops: connections/s
#   tls_connect the same over TLS (full handshakes: no resumption)
#   tls_qos0    TLS, QoS 0 1 → 1, as fast as possible
#   tls_qos1    TLS, QoS 1 1 → 1, window WINDOW
#   mqttv5      `mqttv5 bench` QoS 0 and QoS 1 1 → 1 as a second opinion (skipped when
#               `mqttv5` is not installed: `cargo install mqttv5-cli`)
#
# Brokers: target/release/gatehouse with a generated configuration (one listener; logs at
# warn; connection, session and pre-CONNECT limits raised to 60,000 so the large scenarios
# fit, and for idle_raw a connect timeout of 300 s so raw sockets stay open while they are
# counted), and Debian `mosquitto` with a generated mosquitto.conf (listener on the free
# port, allow_anonymous true, max_queued_messages 1000000, max_inflight_messages WINDOW so
# both brokers accept the same QoS 1 window, set_tcp_nodelay true, log_type error+warning).
# TLS: a throw-away CA and server certificate (EC P-256, SANs localhost and 127.0.0.1)
# made with `gatehouse ca issue`; both brokers serve them; loadgen trusts the CA.
#
# Open files: the script raises its soft limit to the hard one (both brokers and loadgen
# inherit it). 50,000 connections need a hard limit above 50,000; IDLE_CONNS defaults to
# min(50000, hard limit − 1000), and the table says when the limit capped it.
#
# Environment:
#   RUNS=5 DURATION=5 WARMUP=1    repetitions, measured seconds, warm-up seconds
#   SCENARIOS=...                 subset of the scenarios above
#   WINDOW=256                    QoS 1 in-flight window (and Mosquitto max_inflight_messages)
#   FANIN_RATE=20000  FANOUT1000_RATE=100  SUBS10K_RATE=5  RETAINED_MESSAGES=10000
#                                 (fixed rates low enough that both brokers keep up, so
#                                 CPU per message and latency compare at equal load)
#   IDLE_CONNS=N                  connections of idle / idle_raw
#   BROKER_CPU=1 LOADGEN_CPU=0    cores (taskset); PIN=0 runs unpinned
#   JSON_OUT=FILE                 every run and the summary as JSON
#   OUT_DIR=DIR                   keep each run's loadgen JSON and broker log
#   BUILD=0                       skip `cargo build --release -p gatehouse -p gatehouse-benches`
#   MOSQUITTO_CONF_EXTRA=...      extra mosquitto.conf lines for every Mosquitto run
#   GATEHOUSE=PATH MOSQUITTO=PATH LOADGEN=PATH MQTTV5=PATH
#
# Needs: cargo (unless BUILD=0), mosquitto 2.x, python3, taskset (util-linux). The
# Markdown table goes to stdout, progress to stderr.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"

RUNS="${RUNS:-5}"
DURATION="${DURATION:-5}"
WARMUP="${WARMUP:-1}"
ALL_SCENARIOS="qos0 qos1 fanout8 fanout1000 fanin shared subs10k retained idle idle_raw connect tls_connect tls_qos0 tls_qos1 mqttv5"
SCENARIOS="${SCENARIOS:-$ALL_SCENARIOS}"
WINDOW="${WINDOW:-256}"
FANIN_RATE="${FANIN_RATE:-20000}"
FANOUT1000_RATE="${FANOUT1000_RATE:-100}"
SUBS10K_RATE="${SUBS10K_RATE:-5}"
RETAINED_MESSAGES="${RETAINED_MESSAGES:-10000}"
BROKER_CPU="${BROKER_CPU:-1}"
LOADGEN_CPU="${LOADGEN_CPU:-0}"
PIN="${PIN:-1}"
BUILD="${BUILD:-1}"
MOSQUITTO_CONF_EXTRA="${MOSQUITTO_CONF_EXTRA:-}"
target_dir="${CARGO_TARGET_DIR:-$root/target}"
GATEHOUSE="${GATEHOUSE:-$target_dir/release/gatehouse}"
LOADGEN="${LOADGEN:-$target_dir/release/loadgen}"
MOSQUITTO="${MOSQUITTO:-$(command -v mosquitto || echo /usr/sbin/mosquitto)}"
MQTTV5="${MQTTV5:-$(command -v mqttv5 || echo "$HOME/.cargo/bin/mqttv5")}"

script=compare.sh
work_prefix=gatehouse-compare
# shellcheck source=benches/lib.sh
. "$here/lib.sh"

command -v python3 >/dev/null || die "python3 is required"
[ -x "$MOSQUITTO" ] || die "mosquitto not found (apt-get install mosquitto, or set MOSQUITTO=)"

# Open files: as many as the hard limit allows (a hard limit cannot be raised unprivileged).
nofile_hard="$(ulimit -Hn)"
[ "$nofile_hard" = unlimited ] && nofile_hard=1048576
ulimit -n "$nofile_hard" 2>/dev/null || true
nofile="$(ulimit -n)"
if [ -z "${IDLE_CONNS:-}" ]; then
    IDLE_CONNS=50000
    if [ "$nofile" -lt $((IDLE_CONNS + 1000)) ]; then IDLE_CONNS=$((nofile - 1000)); fi
fi

pin_broker=() pin_loadgen=() pin_note="unpinned"
if [ "$PIN" != 0 ] && command -v taskset >/dev/null && [ "$(nproc)" -ge 2 ]; then
    pin_broker=(taskset -c "$BROKER_CPU")
    pin_loadgen=(taskset -c "$LOADGEN_CPU")
    pin_note="broker pinned with \`taskset -c $BROKER_CPU\`, loadgen with \`taskset -c $LOADGEN_CPU\`"
else
    log "warning: running unpinned (PIN=0, no taskset, or fewer than 2 cores)"
fi

if [ "$BUILD" != 0 ]; then
    log "building gatehouse and loadgen (release)..."
    (cd "$root" && cargo build --release -q -p gatehouse -p gatehouse-benches --bin gatehouse --bin loadgen) >&2
fi
[ -x "$GATEHOUSE" ] || die "gatehouse binary not found at $GATEHOUSE"
[ -x "$LOADGEN" ] || die "loadgen binary not found at $LOADGEN"
gatehouse_rev="$(git -C "$root" describe --always --dirty 2>/dev/null || echo unknown)"

# TLS material, made once per run when a tls_* scenario is selected.
tls_ca="" tls_crt="" tls_key="" mosq_crt="" mosq_key="" tls_info=""
setup_tls() {
    local pki="$work/pki"
    mkdir -p "$pki"
    # `gatehouse ca issue` needs a valid configuration; only its dataDir matters.
    cat >"$pki/issuer.yaml" <<EOF
dataDir: $pki/data
listeners:
  - name: pki
    bindAddress: 127.0.0.1
    ports: [{port: 0}]
EOF
    if ! "$GATEHOUSE" ca issue --config "$pki/issuer.yaml" --cn localhost --san localhost,127.0.0.1 \
        --algorithm Ec256 --out "$pki/server" >"$pki/issue.log" 2>&1; then
        cat "$pki/issue.log" >&2
        die "gatehouse ca issue failed"
    fi
    tls_ca="$pki/server/ca.crt" tls_crt="$pki/server/tls.crt" tls_key="$pki/server/tls.key"
    tls_info="server certificate for localhost/127.0.0.1, EC P-256, issued by \`gatehouse ca issue\` from a root CA made for this run"
    # Mosquitto started as root drops privileges before it reads certificate and key:
    # a readable copy in a directory it can reach.
    local mdir="$work/mosquitto-tls"
    mkdir -p "$mdir"
    chmod 755 "$mdir"
    mosq_crt="$mdir/tls.crt" mosq_key="$mdir/tls.key"
    cp "$tls_crt" "$mosq_crt"
    cp "$tls_key" "$mosq_key"
    chmod 644 "$mosq_crt"
    chmod 600 "$mosq_key"
    if [ "$(id -u)" = 0 ]; then
        chmod 711 "$work"
        chown mosquitto "$mosq_key" 2>/dev/null || chmod 644 "$mosq_key"
    fi
}

# start_broker NAME SCENARIO: a fresh pinned broker on a free port; sets broker_pid, port.
start_broker() {
    local name="$1" scen="$2" attempt tls="" ctimeout=10s
    case "$scen" in tls_*) tls=1 ;; esac
    [ "$scen" = idle_raw ] && ctimeout=300s
    for attempt in 1 2 3; do
        port="$(free_port)"
        case "$name" in
        gatehouse)
            {
                printf 'dataDir: %s\n' "$work/gatehouse-data"
                printf 'listeners:\n  - name: bench\n    bindAddress: 127.0.0.1\n    ports:\n      - port: %s\n' "$port"
                if [ -n "$tls" ]; then
                    printf '        tls: { mode: Manual, manual: { secretRef: server-cert } }\n'
                    printf 'secrets:\n  server-cert: { certFile: %s, keyFile: %s }\n' "$tls_crt" "$tls_key"
                fi
                printf 'broker:\n  maxConnections: 60000\n  maxSessions: 60000\n  maxPendingConnections: 60000\n'
                printf '  maxPendingConnectionsPerAddress: 60000\n  connectTimeout: %s\n' "$ctimeout"
                printf 'diagnostics:\n  logs: {level: warn}\n  metrics: {prometheusPort: 0}\n'
            } >"$work/gatehouse.yaml"
            rm -rf "$work/gatehouse-data"
            "${pin_broker[@]}" "$GATEHOUSE" --config "$work/gatehouse.yaml" >"$work/broker.log" 2>&1 &
            ;;
        mosquitto)
            {
                printf 'listener %s 127.0.0.1\nallow_anonymous true\n' "$port"
                printf 'max_queued_messages 1000000\nmax_inflight_messages %s\n' "$WINDOW"
                printf 'set_tcp_nodelay true\nlog_type error\nlog_type warning\n'
                if [ -n "$tls" ]; then printf 'certfile %s\nkeyfile %s\n' "$mosq_crt" "$mosq_key"; fi
                if [ -n "$MOSQUITTO_CONF_EXTRA" ]; then printf '%s\n' "$MOSQUITTO_CONF_EXTRA"; fi
            } >"$work/mosquitto.conf"
            "${pin_broker[@]}" "$MOSQUITTO" -c "$work/mosquitto.conf" >"$work/broker.log" 2>&1 &
            ;;
        esac
        broker_pid=$!
        local i
        for i in $(seq 100); do
            kill -0 "$broker_pid" 2>/dev/null || break
            if port_open "$port"; then return 0; fi
            sleep 0.05
        done
        log "  $name did not come up on port $port (attempt $attempt):"
        tail -5 "$work/broker.log" >&2 || true
        stop_broker
    done
    die "could not start $name"
}

# The loadgen arguments of a scenario (after the common ones).
loadgen_args() {
    local t=(--duration "$DURATION" --warmup "$WARMUP")
    case "$1" in
    qos0 | tls_qos0) echo pubsub --qos 0 "${t[@]}" ;;
    qos1 | tls_qos1) echo pubsub --qos 1 --window "$WINDOW" "${t[@]}" ;;
    fanout8) echo pubsub --qos 0 --subscribers 8 --topics shared "${t[@]}" ;;
    fanout1000) echo pubsub --qos 0 --subscribers 1000 --topics shared --rate "$FANOUT1000_RATE" "${t[@]}" ;;
    fanin) echo pubsub --qos 1 --publishers 1000 --subscribers 1 --rate "$FANIN_RATE" "${t[@]}" ;;
    shared) echo pubsub --qos 1 --window "$WINDOW" --subscribers 8 --topics shared --share-group g "${t[@]}" ;;
    subs10k) echo pubsub --qos 0 --subscribers 10000 --topics shared --rate "$SUBS10K_RATE" "${t[@]}" ;;
    retained) echo retained --messages "$RETAINED_MESSAGES" --subscribers 10 ;;
    idle) echo idle --connections "$IDLE_CONNS" ;;
    idle_raw) echo idle --connections "$IDLE_CONNS" --no-connect ;;
    connect | tls_connect) echo connect --concurrency 32 "${t[@]}" ;;
    *) die "unknown scenario $1" ;;
    esac
}

# run_one SCENARIO BROKER REP ORDER
run_one() {
    local scen="$1" name="$2" rep="$3" order="$4" out="$work/run.json" tlsargs=()
    start_broker "$name" "$scen"
    case "$scen" in tls_*) tlsargs=(--tls --ca-file "$tls_ca" --server-name localhost) ;; esac
    # shellcheck disable=SC2046
    if ! "${pin_loadgen[@]}" "$LOADGEN" --host 127.0.0.1 --port "$port" --broker-pid "$broker_pid" \
        --label "$scen" "${tlsargs[@]}" $(loadgen_args "$scen") >"$out" 2>"$work/loadgen.err"; then
        log "  loadgen failed on $name ($scen):"
        tail -3 "$work/loadgen.err" >&2
        tail -1 "$out" | grep -q '^{' || echo '{"failed":true}' >"$out"
    fi
    if ! kill -0 "$broker_pid" 2>/dev/null; then
        log "  $name exited during $scen:"
        tail -5 "$work/broker.log" >&2 || true
    fi
    stop_broker
    if [ -n "${OUT_DIR:-}" ]; then
        cp "$out" "$OUT_DIR/$scen-$name-$rep.json"
        cp "$work/broker.log" "$OUT_DIR/$scen-$name-$rep.broker.log"
        cp "$work/loadgen.err" "$OUT_DIR/$scen-$name-$rep.loadgen.txt"
    fi
    python3 - "$out" "$scen" "$name" "$rep" "$order" >>"$results" <<'PY'
import json, sys
path, scen, name, rep, order = sys.argv[1:]
try:
    res = json.loads(open(path).read().strip().splitlines()[-1])
except Exception as e:
    res = {"failed": True, "error": str(e)}
print(json.dumps({"scen": scen, "broker": name, "rep": int(rep), "order": int(order), **res}))
PY
    log "  $(python3 -c '
import json, sys
r = json.loads(sys.argv[1])
keys = ["accepted_rate", "delivered_rate", "delivered_ratio", "connections_per_s", "held",
        "broker_rss_bytes_per_conn", "broker_cpu_us_per_msg", "broker_cpu_us_per_publish",
        "broker_cpu_us_per_conn", "broker_user_cpu_us_per_msg", "loadgen_cpu_us_per_msg", "loadgen_cpu_util", "errors", "failed", "error"]
def f(v):
    return f"{v:.3g}" if isinstance(v, float) else str(v)
lat = r.get("latency_us") or r.get("connect_us") or r.get("to_last_us") or {}
print(r["scen"], r["broker"], "rep", r["rep"], " ".join(f"{k}={f(r[k])}" for k in keys if r.get(k) is not None),
      "p99_us=" + f(lat.get("p99")))
' "$(tail -1 "$results")")"
}

# `mqttv5 bench` as a second opinion (QoS 0 and QoS 1, 1 → 1), if installed.
run_mqttv5() {
    local name="$1" rep="$2" q
    for q in 0 1; do
        start_broker "$name" mqttv5
        local cpu0 cpu1 out="$work/mqttv5.json"
        cpu0="$(broker_cpu)"
        if ! "${pin_loadgen[@]}" "$MQTTV5" bench --host 127.0.0.1 -p "$port" --mode throughput -q "$q" \
            --publishers 1 --subscribers 1 --duration "$DURATION" --warmup "$([ "$q" = 0 ] && echo "$WARMUP" || echo 0)" \
            >"$out" 2>"$work/mqttv5.err"; then
            echo '{"results":{"failed":true}}' >"$out"
        fi
        cpu1="$(broker_cpu)"
        stop_broker
        python3 - "$out" "$name" "$rep" "$q" "$cpu0" "$cpu1" >>"$results" <<'PY'
import json, sys
path, name, rep, q, c0, c1 = sys.argv[1:]
try:
    res = json.load(open(path)).get("results", {})
except Exception as e:
    res = {"failed": True, "error": str(e)}
res = {k: v for k, v in res.items() if k not in ("samples", "offered_samples")}
print(json.dumps({"scen": f"mqttv5_qos{q}", "broker": name, "rep": int(rep), "broker_cpu_s": float(c1) - float(c0), **res}))
PY
    done
}

log "gatehouse: $GATEHOUSE ($gatehouse_rev)"
log "mosquitto: $MOSQUITTO ($("$MOSQUITTO" -h 2>&1 | head -1))"
log "loadgen:   $LOADGEN; $pin_note"
log "runs=$RUNS duration=${DURATION}s warmup=${WARMUP}s open files=$nofile idle connections=$IDLE_CONNS"
log "scenarios: $SCENARIOS"
log "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
load_before="$(cut -d' ' -f1-3 /proc/loadavg)"
case " $SCENARIOS " in *" tls_"*) setup_tls ;; esac
mqttv5_ok=0
if [ -x "$MQTTV5" ]; then mqttv5_ok=1; fi
for scen in $SCENARIOS; do
    if [ "$scen" = mqttv5 ] && [ "$mqttv5_ok" = 0 ]; then
        log "mqttv5 not installed ($MQTTV5): second opinion skipped (cargo install mqttv5-cli)"
        continue
    fi
    for rep in $(seq "$RUNS"); do
        if [ $((rep % 2)) = 1 ]; then order="gatehouse mosquitto"; else order="mosquitto gatehouse"; fi
        i=0
        for name in $order; do
            i=$((i + 1))
            if [ "$scen" = mqttv5 ]; then run_mqttv5 "$name" "$rep"; else run_one "$scen" "$name" "$rep" "$i"; fi
        done
    done
done
load_after="$(cut -d' ' -f1-3 /proc/loadavg)"

python3 - "$results" "$RUNS" "$DURATION" "$WARMUP" "$(nproc)" "${JSON_OUT:-}" \
    "$("$MOSQUITTO" -h 2>&1 | head -1)" "$gatehouse_rev" "$pin_note" "$IDLE_CONNS" "$nofile" \
    "$FANIN_RATE" "$FANOUT1000_RATE" "$SUBS10K_RATE" "$RETAINED_MESSAGES" "$WINDOW" "$tls_info" \
    "$load_before" "$load_after" "$MOSQUITTO_CONF_EXTRA" "$mqttv5_ok" <<'PY'
import json, statistics, sys, datetime
(path, runs, duration, warmup, cores, json_out, mosq_ver, rev, pin_note, idle_conns, nofile,
 fanin_rate, fanout_rate, subs_rate, retained_n, window, tls_info, load_before, load_after,
 mosq_extra, mqttv5_ok) = sys.argv[1:]
rows = [json.loads(l) for l in open(path) if l.strip()]
present = {r["scen"] for r in rows}

def by(scen, broker):
    return [r for r in rows if r["scen"] == scen and r["broker"] == broker and not r.get("failed")]

def get(r, key):
    for k in key.split("."):
        if not isinstance(r, dict):
            return None
        r = r.get(k)
    return r

def med(scen, broker, key):
    xs = [get(r, key) for r in by(scen, broker)]
    xs = [x for x in xs if isinstance(x, (int, float))]
    return statistics.median(xs) if xs else None

def fmt(x, nd=0):
    if x is None:
        return "n/a"
    return f"{x:,.{nd}f}"

lines = ["| scenario | Gatehouse | Mosquitto | ratio GH/MQ | target | met |", "|---|---:|---:|---:|---|---|"]
cpu_lines = ["| scenario | loadgen CPU µs/msg (GH run / MQ run) | loadgen core use (GH / MQ) | Gatehouse CPU µs/msg | Mosquitto CPU µs/msg | broker core use (GH / MQ) |",
             "|---|---:|---:|---:|---:|---:|"]
summary = {}

def row(scen, label, key, nd=0, target=None, better="higher", unit_scale=1.0, gh_only_target=None):
    """One table row; `target`: ("ratio", x) ratio GH/MQ ≥ x (or ≤ x when lower is better),
    ("abs", x) Gatehouse's own value ≤ x (lower) or ≥ x (higher)."""
    g, m = med(scen, "gatehouse", key), med(scen, "mosquitto", key)
    if g is not None: g *= unit_scale
    if m is not None: m *= unit_scale
    ratio = g / m if g is not None and m else None
    met, tgt = None, ""
    if target:
        kind, x = target
        if kind == "ratio":
            tgt = (f"≥ {x}× Mosquitto" if better == "higher" else f"≤ {x}× Mosquitto")
            if ratio is not None:
                met = ratio >= x if better == "higher" else ratio <= x
        else:
            tgt = (f"≥ {x:,}" if better == "higher" else f"≤ {x:,}")
            if g is not None:
                met = g >= x if better == "higher" else g <= x
    if gh_only_target:
        tgt = gh_only_target
    lines.append(f"| {label} | {fmt(g, nd)} | {fmt(m, nd)} | {fmt(ratio, 2)} | {tgt} | {'' if met is None else ('yes' if met else 'NO')} |")
    summary.setdefault(scen, {})[key] = {"gatehouse": g, "mosquitto": m, "ratio": ratio, "target": tgt, "met": met}
    return met

def cpu_row(scen, label):
    if scen not in present:
        return
    pct = lambda x: fmt(x * 100 if x is not None else None, 0) + " %"
    lg, lm = med(scen, "gatehouse", "loadgen_cpu_us_per_msg"), med(scen, "mosquitto", "loadgen_cpu_us_per_msg")
    ug, um = med(scen, "gatehouse", "loadgen_cpu_util"), med(scen, "mosquitto", "loadgen_cpu_util")
    g = med(scen, "gatehouse", "broker_cpu_us_per_msg")
    m = med(scen, "mosquitto", "broker_cpu_us_per_msg")
    bg, bm = med(scen, "gatehouse", "broker_cpu_util"), med(scen, "mosquitto", "broker_cpu_util")
    cpu_lines.append(f"| {label} | {fmt(lg, 3)} / {fmt(lm, 3)} | {pct(ug)} / {pct(um)} | {fmt(g, 3)} | {fmt(m, 3)} | {pct(bg)} / {pct(bm)} |")

if "qos0" in present:
    row("qos0", "QoS 0, 1 → 1: delivered msg/s", "delivered_rate", target=("ratio", 3))
    row("qos0", "QoS 0, 1 → 1: delivered / accepted", "delivered_ratio", 3, target=("abs", 0.9))
    row("qos0", "QoS 0, 1 → 1: accepted msg/s", "accepted_rate")
if "qos1" in present:
    row("qos1", f"QoS 1, 1 → 1, window {window}: delivered msg/s", "delivered_rate", target=("ratio", 5))
    row("qos1", "QoS 1, 1 → 1: p99 latency µs (saturated)", "latency_us.p99", better="lower")
if "fanout8" in present:
    row("fanout8", "QoS 0, 1 → 8: delivered msg/s", "delivered_rate", target=("ratio", 5))
    row("fanout8", "QoS 0, 1 → 8: delivered / (accepted × 8)", "delivered_ratio", 3)
if "fanout1000" in present:
    row("fanout1000", f"QoS 0, 1 → 1,000 at {int(fanout_rate):,} pub/s: delivered msg/s", "delivered_rate")
    row("fanout1000", "QoS 0, 1 → 1,000: broker CPU µs per publish", "broker_cpu_us_per_publish", 1, better="lower")
    row("fanout1000", "QoS 0, 1 → 1,000: p99 latency µs", "latency_us.p99", better="lower")
if "fanin" in present:
    row("fanin", f"fan-in 1,000 pubs → 1, QoS 1, {int(fanin_rate):,} msg/s: broker CPU µs/msg", "broker_cpu_us_per_msg", 2, target=("ratio", 0.5), better="lower")
    row("fanin", "fan-in: p99 latency µs (from scheduled send)", "latency_from_schedule_us.p99", target=("ratio", 1.0), better="lower")
    row("fanin", "fan-in: broker user-space CPU µs/msg (the broker's own code)", "broker_user_cpu_us_per_msg", 2, better="lower")
    row("fanin", "fan-in: delivered msg/s", "delivered_rate")
if "shared" in present:
    row("shared", "QoS 1, $share/g, 1 → 8 in one group: delivered msg/s", "delivered_rate")
    row("shared", "$share: delivered / accepted", "delivered_ratio", 3)
if "subs10k" in present:
    row("subs10k", f"10,000 subscribers on one topic, {int(subs_rate)} pub/s: broker CPU ms per publish", "broker_cpu_us_per_publish", 2, target=("abs", 5.0), better="lower", unit_scale=1e-3)
    row("subs10k", "10,000 subscribers: broker user-space CPU ms per publish (the rest is the kernel's 10,000 TCP sends)", "broker_user_cpu_us_per_publish", 2, better="lower", unit_scale=1e-3)
    row("subs10k", "10,000 subscribers: delivered / expected", "delivered_ratio", 3)
    row("subs10k", "10,000 subscribers: p99 latency µs", "latency_us.p99", better="lower")
if "retained" in present:
    row("retained", f"retained storm: {int(retained_n):,} retained → 10 subscribers, ms to last (p50)", "to_last_us.p50", 1, better="lower", unit_scale=1e-3)
    row("retained", "retained storm: broker CPU µs per delivered retained message", "broker_cpu_us_per_msg", 2, better="lower")
capped = int(idle_conns) < 50000
if "idle" in present:
    row("idle", f"{int(idle_conns):,} idle MQTT connections: broker RSS bytes per connection", "broker_rss_bytes_per_conn", target=("abs", 2048), better="lower")
    g = med("idle", "gatehouse", "held")
    note = f"50,000 held (ran {int(idle_conns):,}: open-files limit here {int(nofile):,})" if capped else "50,000 held"
    met = None if capped else (g is not None and g >= 50000)
    lines.append(f"| idle: connections held | {fmt(g)} | {fmt(med('idle', 'mosquitto', 'held'))} | | {note} | {'' if met is None else ('yes' if met else 'NO')} |")
    row("idle", "idle: RSS after all closed / before", "broker_rss_after_close_vs_before", 2, target=("abs", 1.1), better="lower")
if "idle_raw" in present:
    row("idle_raw", f"{int(idle_conns):,} sockets before CONNECT: broker RSS bytes per socket", "broker_rss_bytes_per_conn", target=("abs", 1024), better="lower")
if "connect" in present:
    row("connect", "connect storm, 32 loops: connections/s", "connections_per_s")
    row("connect", "connect storm: broker CPU µs per connection", "broker_cpu_us_per_conn", 1, better="lower")
if "tls_connect" in present:
    row("tls_connect", "TLS connect storm (full handshakes), 32 loops: connections/s", "connections_per_s")
    row("tls_connect", "TLS connect storm: broker CPU µs per connection", "broker_cpu_us_per_conn", 1, better="lower")
if "tls_qos0" in present:
    row("tls_qos0", "TLS QoS 0, 1 → 1: delivered msg/s", "delivered_rate")
    row("tls_qos0", "TLS QoS 0: delivered / accepted", "delivered_ratio", 3)
if "tls_qos1" in present:
    row("tls_qos1", f"TLS QoS 1, 1 → 1, window {window}: delivered msg/s", "delivered_rate")
for q in ("0", "1"):
    s = f"mqttv5_qos{q}"
    if s in present:
        row(s, f"second opinion, `mqttv5 bench` QoS {q} 1 → 1: delivered msg/s", "throughput_steady")

for scen, label in [("qos0", "QoS 0 1 → 1"), ("qos1", "QoS 1 1 → 1"), ("fanout8", "QoS 0 1 → 8"),
                    ("fanout1000", "QoS 0 1 → 1,000"), ("fanin", "fan-in 1,000 → 1"), ("shared", "$share 1 → 8"),
                    ("subs10k", "1 → 10,000"), ("tls_qos0", "TLS QoS 0"), ("tls_qos1", "TLS QoS 1")]:
    cpu_row(scen, label)

now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
print(f"## Gatehouse vs Mosquitto on loadgen ({now})")
print()
print(f"- Gatehouse {rev} (release); {mosq_ver}; loadgen from the same tree; {cores} cores, {pin_note}.")
print(f"- medians of {runs} repetitions, {duration} s measured after {warmup} s warm-up, a fresh broker per "
      "measurement, brokers alternating first; MQTT 5, 64-byte payloads; load average "
      f"{load_before} before, {load_after} after.")
print(f"- Mosquitto configuration: listener, allow_anonymous true, max_queued_messages 1000000, "
      f"max_inflight_messages {window}, set_tcp_nodelay true, log_type error/warning"
      + (f", plus `{'; '.join(mosq_extra.splitlines())}`" if mosq_extra else "")
      + "; Gatehouse: one listener, logs at warn, connection/session/pending limits 60,000.")
if tls_info:
    print(f"- TLS: both brokers serve the same {tls_info}; loadgen does full handshakes (no resumption).")
if mqttv5_ok == "0":
    print("- `mqttv5 bench` (second opinion) not installed: skipped.")
print()
print("\n".join(lines))
print()
print("Load generator CPU against the broker's (per message = per publish accepted + per delivery):")
print()
print("\n".join(cpu_lines))
if json_out:
    with open(json_out, "w") as f:
        json.dump({"date": now, "gatehouse": rev, "mosquitto": mosq_ver, "runs": int(runs),
                   "duration_s": float(duration), "pinning": pin_note, "summary": summary, "runs_raw": rows}, f, indent=1)
PY
