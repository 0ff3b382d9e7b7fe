#!/usr/bin/env bash
# Gatehouse vs Mosquitto, side by side, same load (`mqttv5 bench`), one run.
#
# Every measurement starts a fresh broker on a free loopback port, runs one
# `mqttv5 bench` against it and stops it; each repetition runs both brokers, the
# first one alternating (odd repetitions Gatehouse first, even ones Mosquitto
# first) so both see the same background noise. Per scenario the script reports the
# median over the repetitions, the ratio of the medians Gatehouse/Mosquitto and the
# median of the per-repetition ratios.
#
# Scenarios (SCENARIOS, space separated; all by default):
#   qos0        QoS 0 throughput, 1 publisher -> 1 subscriber (delivered msg/s)
#   qos1        QoS 1 throughput, 1 -> 1 (delivered msg/s; published == received check)
#   qos0_4x4    QoS 0 throughput, 4 publishers x 4 subscribers, 4 topics (delivered msg/s)
#   qos0_publish_only  QoS 0, 1 publisher and no subscriber: how fast one mqttv5
#               publisher connection goes against each broker (accepted msg/s) and what
#               each side spends per message (diagnostic, no target; see README.md)
#   qos0_4x4_paced  the same at a fixed offered rate (RATE publishes/s in all, x4
#               deliveries) both brokers sustain: delivered ratio and broker CPU per
#               message at equal load (informational, no target)
#   latency     QoS 0 latency at 1000 msg/s, 1 -> 1 (p50/p99 us; lower is better)
#   connections connection rate, 10 concurrent connect/disconnect loops (connections/s)
#   qos1_check  strict loss check: a sequenced QoS 1 stream (python3, MQTT 3.1.1)
#               checked message by message while `mqttv5 bench -q 1` loads the broker
#   tls_connections  connection rate over TLS, 10 concurrent connect/disconnect loops
#               (every connection a full handshake: mqttv5 builds a new TLS client per
#               connection, so nothing is resumed)
#   tls_qos0    QoS 0 throughput over TLS, 1 -> 1
#   tls_qos1    QoS 1 throughput over TLS, 1 -> 1 (informational, no target)
#
# TLS: once per run the script issues a root CA and a server certificate (EC P-256, SANs
# localhost and 127.0.0.1) with `gatehouse ca issue` (a throw-away quickstart CA in the
# run's temporary directory); both brokers serve that certificate and key (Gatehouse: a
# Manual TLS port; Mosquitto: certfile/keyfile on its listener) and mqttv5 connects to
# mqtts://localhost:PORT with --ca-cert ROOT.
#
# Environment:
#   RUNS=5          repetitions per scenario (each runs both brokers)
#   DURATION=10     seconds measured per run (mqttv5 --duration)
#   WARMUP=2        warm-up seconds (QoS 0 throughput and latency; QoS 1 uses 0 so the
#                   tool's published/received counters cover the whole stream)
#   SCENARIOS=...   subset of the scenarios above
#   RATE=40000      aggregate publish rate of qos0_4x4_paced (msg/s)
#   CHECK_MESSAGES=50000  messages of the strict QoS 1 check
#   JSON_OUT=FILE   also write every run and the summary as JSON
#   OUT_DIR=DIR     keep each run's raw mqttv5 JSON and broker logs there
#   MQTTV5_WORKERS=N  run mqttv5 with N tokio worker threads (TOKIO_WORKER_THREADS;
#                   default: its own default, one per core)
#   BUILD=0         skip `cargo build --release -p gatehouse`
#   MOSQUITTO_CONF_EXTRA=...  extra mosquitto.conf lines for every Mosquitto run, e.g.
#                   "set_tcp_nodelay true" (Mosquitto's default leaves Nagle on, which
#                   stalls each TLS 1.3 connect by a delayed ACK; see README.md)
#   GATEHOUSE=PATH MOSQUITTO=PATH MQTTV5=PATH  binaries
#
# Needs: cargo (unless BUILD=0), mosquitto 2.x, mqttv5 (`cargo install mqttv5-cli`),
# python3. The Markdown table goes to stdout, progress to stderr.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"

RUNS="${RUNS:-5}"
DURATION="${DURATION:-10}"
WARMUP="${WARMUP:-2}"
SCENARIOS="${SCENARIOS:-qos0 qos1 qos0_4x4 qos0_4x4_paced qos0_publish_only latency connections qos1_check tls_connections tls_qos0 tls_qos1}"
RATE="${RATE:-40000}"
CHECK_MESSAGES="${CHECK_MESSAGES:-50000}"
BUILD="${BUILD:-1}"
MQTTV5_WORKERS="${MQTTV5_WORKERS:-}"
# The load generator's environment (its tokio runtime reads TOKIO_WORKER_THREADS).
loadgen_env=(env)
[ -n "$MQTTV5_WORKERS" ] && loadgen_env+=("TOKIO_WORKER_THREADS=$MQTTV5_WORKERS")
MOSQUITTO_CONF_EXTRA="${MOSQUITTO_CONF_EXTRA:-}"
GATEHOUSE="${GATEHOUSE:-$root/target/release/gatehouse}"
MOSQUITTO="${MOSQUITTO:-$(command -v mosquitto || echo /usr/sbin/mosquitto)}"
MQTTV5="${MQTTV5:-$(command -v mqttv5 || echo "$HOME/.cargo/bin/mqttv5")}"

script=compare.sh
work_prefix=gatehouse-compare
# shellcheck source=benches/lib.sh
. "$here/lib.sh"

command -v python3 >/dev/null || die "python3 is required"
[ -x "$MOSQUITTO" ] || die "mosquitto not found (set MOSQUITTO=)"
[ -x "$MQTTV5" ] || die "mqttv5 not found (cargo install mqttv5-cli, or set MQTTV5=)"

if [ "$BUILD" != 0 ]; then
    log "building gatehouse (release)..."
    (cd "$root" && cargo build --release -q -p gatehouse) >&2
fi
[ -x "$GATEHOUSE" ] || die "gatehouse binary not found at $GATEHOUSE"
# What was built (the working tree may change while this runs).
gatehouse_rev="$(git -C "$root" describe --always --dirty 2>/dev/null || echo unknown)"

# TLS material, made once per run when a tls_* scenario is selected (setup_tls).
tls_ca="" tls_crt="" tls_key="" mosq_crt="" mosq_key="" tls_info=""
setup_tls() {
    local pki="$work/pki"
    mkdir -p "$pki"
    # `gatehouse ca issue` needs a valid configuration; only its dataDir matters (the
    # quickstart root CA is created there). Nothing listens.
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
    tls_info="server certificate $(sed -n 's/^ *subject: *//p' "$pki/issue.log"), $(sed -n 's/^ *SANs: *//p' "$pki/issue.log"), Ec256 (EC P-256) key, issued by \`gatehouse ca issue\` from a root CA made for this run"
    log "TLS: $tls_info"
    # Mosquitto started as root drops privileges (to `mosquitto`) before it reads the
    # certificate and key: give it its own copy it can read, in a directory it can reach.
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
        # Without a `mosquitto` user Mosquitto falls back to `nobody`; a throw-away key.
        chown mosquitto "$mosq_key" 2>/dev/null || chmod 644 "$mosq_key"
    fi
}

# start_broker NAME [tls]: a fresh broker on a free port (a TLS port with the run's
# certificate when the second argument is `tls`); sets broker_pid and port.
start_broker() {
    local name="$1" tls="${2:-}" attempt
    for attempt in 1 2 3; do
        port="$(free_port)"
        case "$name" in
        gatehouse)
            if [ "$tls" = tls ]; then
                cat >"$work/gatehouse.yaml" <<EOF
dataDir: $work/gatehouse-data
listeners:
  - name: bench
    bindAddress: 127.0.0.1
    ports:
      - port: $port
        tls: { mode: Manual, manual: { secretRef: server-cert } }
secrets:
  server-cert: { certFile: $tls_crt, keyFile: $tls_key }
diagnostics:
  metrics: {prometheusPort: 0}
EOF
            else
                cat >"$work/gatehouse.yaml" <<EOF
listeners:
  - name: bench
    bindAddress: 127.0.0.1
    ports: [{port: $port}]
diagnostics:
  metrics: {prometheusPort: 0}
EOF
            fi
            "$GATEHOUSE" --config "$work/gatehouse.yaml" >"$work/broker.log" 2>&1 &
            ;;
        mosquitto)
            {
                printf 'listener %s 127.0.0.1\nallow_anonymous true\n' "$port"
                if [ "$tls" = tls ]; then
                    printf 'certfile %s\nkeyfile %s\n' "$mosq_crt" "$mosq_key"
                fi
                if [ -n "$MOSQUITTO_CONF_EXTRA" ]; then printf '%s\n' "$MOSQUITTO_CONF_EXTRA"; fi
            } >"$work/mosquitto.conf"
            "$MOSQUITTO" -c "$work/mosquitto.conf" >"$work/broker.log" 2>&1 &
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

bench_args() {
    case "$1" in
    qos0 | tls_qos0) echo "--mode throughput -q 0 --publishers 1 --subscribers 1 --duration $DURATION --warmup $WARMUP" ;;
    qos1 | tls_qos1) echo "--mode throughput -q 1 --publishers 1 --subscribers 1 --duration $DURATION --warmup 0" ;;
    qos0_4x4) echo "--mode throughput -q 0 --publishers 4 --subscribers 4 --topics 4 --duration $DURATION --warmup $WARMUP" ;;
    qos0_publish_only) echo "--mode throughput -q 0 --publishers 1 --subscribers 0 --duration $DURATION --warmup $WARMUP" ;;
    qos0_4x4_paced) echo "--mode throughput -q 0 --publishers 4 --subscribers 4 --topics 4 --rate $RATE --duration $DURATION --warmup $WARMUP" ;;
    latency) echo "--mode latency -q 0 --rate 1000 --duration $DURATION --warmup $WARMUP" ;;
    connections | tls_connections) echo "--mode connections --concurrency 10 --duration $DURATION" ;;
    *) die "unknown scenario $1" ;;
    esac
}

# The strict QoS 1 check: MQTT 3.1.1 over raw sockets, so it depends on nothing but
# python3. One subscriber (QoS 1, acknowledges every PUBLISH) and one publisher with 32
# PUBLISHes in flight; every sequence number must arrive (duplicates are allowed by QoS 1
# and counted).
cat >"$work/qos1_check.py" <<'PY'
import json, socket, struct, sys, threading, time

port, count, topic = int(sys.argv[1]), int(sys.argv[2]), "check/qos1"
WINDOW = 32

def enc_str(s):
    b = s.encode()
    return struct.pack("!H", len(b)) + b

def packet(first, body):
    n, rl = len(body), bytearray()
    while True:
        d, n = n % 128, n // 128
        rl.append(d | (0x80 if n else 0))
        if not n:
            break
    return bytes([first]) + bytes(rl) + body

class Reader:
    def __init__(self, sock):
        self.sock, self.buf = sock, bytearray()
    def _fill(self):
        chunk = self.sock.recv(1 << 16)
        if not chunk:
            raise EOFError("connection closed by broker")
        self.buf += chunk
    def next(self):
        while True:
            if len(self.buf) >= 2:
                mult, length, i = 1, 0, 1
                while i < len(self.buf) and i <= 4:
                    b = self.buf[i]
                    length += (b & 0x7F) * mult
                    mult *= 128
                    i += 1
                    if not b & 0x80:
                        if len(self.buf) >= i + length:
                            first, body = self.buf[0], bytes(self.buf[i:i + length])
                            del self.buf[:i + length]
                            return first, body
                        break
            self._fill()

def connect(client_id):
    s = socket.create_connection(("127.0.0.1", port))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    body = enc_str("MQTT") + bytes([4, 0x02]) + struct.pack("!H", 60) + enc_str(client_id)
    s.sendall(packet(0x10, body))
    r = Reader(s)
    first, body = r.next()
    if first >> 4 != 2 or body[1] != 0:
        raise SystemExit(f"CONNACK refused: {body!r}")
    return s, r

received, dups = set(), 0
sub_done = threading.Event()

def subscriber(s, r):
    global dups
    try:
        while len(received) < count:
            first, body = r.next()
            if first >> 4 != 3:
                continue
            qos = (first >> 1) & 3
            tl = struct.unpack("!H", body[:2])[0]
            pos = 2 + tl
            if qos:
                pid = body[pos:pos + 2]
                pos += 2
                s.sendall(b"\x40\x02" + pid)
            seq = int(body[pos:pos + 12])
            if seq in received:
                dups += 1
            received.add(seq)
    except (EOFError, OSError):
        pass
    sub_done.set()

ss, sr = connect("qos1-check-sub")
ss.sendall(packet(0x82, struct.pack("!H", 1) + enc_str(topic) + b"\x01"))
first, body = sr.next()
if first >> 4 != 9 or body[2] != 1:
    raise SystemExit(f"SUBACK: {body!r}")
threading.Thread(target=subscriber, args=(ss, sr), daemon=True).start()

ps, pr = connect("qos1-check-pub")
window = threading.Semaphore(WINDOW)
acked = 0
def pub_acks():
    global acked
    try:
        while acked < count:
            first, _ = pr.next()
            if first >> 4 == 4:
                acked += 1
                window.release()
    except (EOFError, OSError):
        pass
threading.Thread(target=pub_acks, daemon=True).start()

start = time.monotonic()
sent = 0
for seq in range(count):
    if not window.acquire(timeout=30):
        break  # the broker stopped acknowledging
    sent += 1
    pid = seq % 65535 + 1
    body = enc_str(topic) + struct.pack("!H", pid) + b"%012d" % seq + b"x" * 52
    ps.sendall(packet(0x32, body))
deadline = time.monotonic() + 30
while acked < count and time.monotonic() < deadline:
    time.sleep(0.01)
sub_done.wait(timeout=max(0.0, deadline - time.monotonic()) + 5)
elapsed = time.monotonic() - start
missing = count - len(received)
print(json.dumps({"mode": "qos1_check", "results": {
    "sent": sent, "acked": acked, "received_distinct": len(received),
    "duplicates": dups, "missing": missing, "elapsed_secs": elapsed}}))
PY

# run_one SCENARIO BROKER REP ORDER
run_one() {
    local scen="$1" name="$2" rep="$3" order="$4" out="$work/run.json" loadgen_pid="" target
    case "$scen" in
    tls_*)
        start_broker "$name" tls
        target=(--url "mqtts://localhost:$port" --ca-cert "$tls_ca")
        ;;
    *)
        start_broker "$name"
        target=(--host 127.0.0.1 -p "$port")
        ;;
    esac
    local cpu0 t0 t1
    cpu0="$(broker_cpu)"
    t0="$(date +%s.%N)"
    if [ "$scen" = qos1_check ]; then
        # Load the broker with the QoS 1 bench while the checker runs.
        "${loadgen_env[@]}" "$MQTTV5" bench --host 127.0.0.1 -p "$port" --mode throughput -q 1 \
            --duration $((DURATION + 30)) --warmup 0 >/dev/null 2>"$work/loadgen.err" &
        loadgen_pid=$!
        sleep 1
        if ! python3 "$work/qos1_check.py" "$port" "$CHECK_MESSAGES" >"$out" 2>"$work/bench.err"; then
            log "  qos1_check failed on $name:"; tail -5 "$work/bench.err" >&2
            echo '{"mode":"qos1_check","results":{"failed":true}}' >"$out"
        fi
        kill "$loadgen_pid" 2>/dev/null || true
        wait "$loadgen_pid" 2>/dev/null || true
    else
        local timer=()
        rm -f "$work/loadgen.time"
        if [ -x /usr/bin/time ]; then timer=(/usr/bin/time -f '%U %S' -o "$work/loadgen.time"); fi
        # shellcheck disable=SC2046
        if ! "${timer[@]}" "${loadgen_env[@]}" "$MQTTV5" bench "${target[@]}" $(bench_args "$scen") \
            >"$out" 2>"$work/bench.err"; then
            log "  mqttv5 bench failed on $name ($scen):"; tail -5 "$work/bench.err" >&2
            echo "{\"mode\":\"$scen\",\"results\":{\"failed\":true}}" >"$out"
        fi
    fi
    t1="$(date +%s.%N)"
    local cpu1 loadgen_cpu=""
    cpu1="$(broker_cpu)"
    if [ "$scen" != qos1_check ] && [ -s "$work/loadgen.time" ]; then
        loadgen_cpu="$(awk '{printf "%.3f", $1 + $2}' "$work/loadgen.time" 2>/dev/null || true)"
    fi
    stop_broker
    if [ -n "${OUT_DIR:-}" ]; then
        cp "$out" "$OUT_DIR/$scen-$name-$rep.json"
        cp "$work/broker.log" "$OUT_DIR/$scen-$name-$rep.broker.log"
        cp "$work/bench.err" "$OUT_DIR/$scen-$name-$rep.stderr" 2>/dev/null || true
    fi
    python3 - "$out" "$scen" "$name" "$rep" "$order" "$cpu0" "$cpu1" "$t0" "$t1" "${loadgen_cpu:-}" >>"$results" <<'PY'
import json, sys
path, scen, name, rep, order, cpu0, cpu1, t0, t1, lg = sys.argv[1:]
try:
    res = json.load(open(path)).get("results", {})
except Exception as e:
    res = {"failed": True, "error": str(e)}
for k in ("samples", "offered_samples"):
    res.pop(k, None)
print(json.dumps({"scenario": scen, "broker": name, "rep": int(rep), "order": int(order),
                  "broker_cpu_s": round(float(cpu1) - float(cpu0), 3),
                  "wall_s": round(float(t1) - float(t0), 3),
                  "loadgen_cpu_s": float(lg) if lg else None, **res}))
PY
    local line
    line="$(tail -1 "$results")"
    log "  $(python3 -c '
import json, sys
r = json.loads(sys.argv[1])
keys = ["throughput_steady", "offered_rate", "published", "received", "p50_us", "p99_us",
        "connections_per_sec", "successful", "failed", "p50_connect_us", "sent", "acked", "received_distinct", "missing",
        "duplicates", "broker_cpu_s", "loadgen_cpu_s"]
print(r["scenario"], r["broker"], "rep", r["rep"], " ".join(f"{k}={r[k]}" for k in keys if k in r))
' "$line")"
}

log "gatehouse: $GATEHOUSE"
log "mosquitto: $MOSQUITTO ($("$MOSQUITTO" -h 2>&1 | head -1))"
log "mqttv5:    $MQTTV5 ($("$MQTTV5" --version 2>&1 | head -1))"
log "runs=$RUNS duration=${DURATION}s warmup=${WARMUP}s scenarios: $SCENARIOS"
if [ -n "$MOSQUITTO_CONF_EXTRA" ]; then log "mosquitto.conf extra: $MOSQUITTO_CONF_EXTRA"; fi
case " $SCENARIOS " in *" tls_"*) setup_tls ;; esac
for scen in $SCENARIOS; do
    reps="$RUNS"
    # The strict check is a pass/fail, not a timing: once per broker is enough.
    [ "$scen" = qos1_check ] && reps=1
    for rep in $(seq "$reps"); do
        if [ $((rep % 2)) = 1 ]; then order="gatehouse mosquitto"; else order="mosquitto gatehouse"; fi
        i=0
        for name in $order; do
            i=$((i + 1))
            run_one "$scen" "$name" "$rep" "$i"
        done
    done
done

python3 - "$results" "$RUNS" "$DURATION" "$WARMUP" "$(nproc)" "${JSON_OUT:-}" \
    "$("$MOSQUITTO" -h 2>&1 | head -1)" "$("$MQTTV5" --version 2>&1 | head -1)" "$gatehouse_rev" "$RATE" \
    "$tls_info" "$MOSQUITTO_CONF_EXTRA" "$MQTTV5_WORKERS" <<'PY'
import json, statistics, sys, datetime, subprocess
path, runs, duration, warmup, cores, json_out, mosq_ver, mqttv5_ver, rev, rate, tls_info, mosq_extra, lg_workers = sys.argv[1:]
rows = [json.loads(l) for l in open(path) if l.strip()]

def by(scen, broker):
    # A failed run is `failed: true`; in connection mode `failed` also counts failed
    # connects (an integer), which does not disqualify the run.
    return [r for r in rows if r["scenario"] == scen and r["broker"] == broker and r.get("failed") is not True]

def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None

def paired_ratio(scen, key):
    g = {r["rep"]: r.get(key) for r in by(scen, "gatehouse")}
    m = {r["rep"]: r.get(key) for r in by(scen, "mosquitto")}
    return med([g[k] / m[k] for k in g if k in m and g[k] and m[k]])

def fmt(x, nd=0):
    if x is None:
        return "n/a"
    return f"{x:,.{nd}f}"

def cpu_per_msg(scen, broker):
    # Broker CPU microseconds per message handled (one publish in + its deliveries out).
    xs = []
    for r in by(scen, broker):
        n = (r.get("published") or 0) + (r.get("received") or 0)
        if n:
            xs.append(r["broker_cpu_s"] * 1e6 / n)
    return med(xs)

THR = [("qos0", "QoS 0 throughput, 1 pub → 1 sub", 1.5),
       ("qos1", "QoS 1 throughput, 1 pub → 1 sub", 1.5),
       ("qos0_4x4", "QoS 0 throughput, 4 pub × 4 sub", 1.5),
       ("qos0_4x4_paced", f"QoS 0, 4 pub × 4 sub, paced at {int(rate):,} pub/s", None),
       ("tls_qos0", "TLS QoS 0 throughput, 1 pub → 1 sub", 1.5),
       ("tls_qos1", "TLS QoS 1 throughput, 1 pub → 1 sub", None)]
summary, lines = {}, []
lines.append("| scenario | metric | Gatehouse (median) | Mosquitto (median) | ratio GH/MQ | paired ratio | target | met |")
lines.append("|---|---|---:|---:|---:|---:|---|---|")
present = {r["scenario"] for r in rows}
for scen, label, target in THR:
    if scen not in present:
        continue
    g = med([r.get("throughput_steady") for r in by(scen, "gatehouse")])
    m = med([r.get("throughput_steady") for r in by(scen, "mosquitto")])
    ratio = g / m if g and m else None
    pr = paired_ratio(scen, "throughput_steady")
    if target is None:
        met = None
        lines.append(f"| {label} | delivered msg/s | {fmt(g)} | {fmt(m)} | {fmt(ratio, 2)} | {fmt(pr, 2)} | (informational) | |")
    else:
        met = ratio is not None and ratio >= target
        lines.append(f"| {label} | delivered msg/s | {fmt(g)} | {fmt(m)} | {fmt(ratio, 2)} | {fmt(pr, 2)} | ≥ {target}× | {'yes' if met else 'NO'} |")
    gr = med([r.get("delivered_ratio") for r in by(scen, "gatehouse")])
    mr = med([r.get("delivered_ratio") for r in by(scen, "mosquitto")])
    lines.append(f"| | delivered ratio (received / published × subscribers) | {fmt(gr, 3)} | {fmt(mr, 3)} | | | | |")
    go = med([r.get("offered_rate") for r in by(scen, "gatehouse")])
    mo = med([r.get("offered_rate") for r in by(scen, "mosquitto")])
    lines.append(f"| | published msg/s (accepted) | {fmt(go)} | {fmt(mo)} | {fmt(go / mo if go and mo else None, 2)} | | | |")
    gc, mc = cpu_per_msg(scen, "gatehouse"), cpu_per_msg(scen, "mosquitto")
    lines.append(f"| | broker CPU µs per message (in + out) | {fmt(gc, 2)} | {fmt(mc, 2)} | {fmt(gc / mc if gc and mc else None, 2)} | | lower is better | |")
    summary[scen] = {"gatehouse": g, "mosquitto": m, "ratio": ratio, "paired_ratio": pr,
                     "target": target, "met": met, "published_rate": {"gatehouse": go, "mosquitto": mo},
                     "cpu_us_per_msg": {"gatehouse": gc, "mosquitto": mc}}
    if scen in ("qos1", "tls_qos1"):
        for b in ("gatehouse", "mosquitto"):
            diffs = [r["published"] - r["received"] for r in by(scen, b)]
            summary[scen][f"{b}_published_minus_received"] = diffs
        gd = summary[scen]["gatehouse_published_minus_received"]
        md = summary[scen]["mosquitto_published_minus_received"]
        lines.append(f"| | published − received per run | {' '.join(map(str, gd))} | {' '.join(map(str, md))} | | | 0 (see README) | |")
if "qos0_publish_only" in present:
    scen = "qos0_publish_only"
    def per_pub(broker, key):
        xs = [r[key] * 1e6 / r["published"] for r in by(scen, broker)
              if r.get(key) is not None and r.get("published")]
        return med(xs)
    go = med([r.get("offered_rate") for r in by(scen, "gatehouse")])
    mo = med([r.get("offered_rate") for r in by(scen, "mosquitto")])
    ratio = go / mo if go and mo else None
    lines.append(f"| QoS 0, 1 pub → no subscriber (diagnostic) | published msg/s (accepted) | {fmt(go)} | {fmt(mo)} | {fmt(ratio, 2)} | {fmt(paired_ratio(scen, 'offered_rate'), 2)} | (informational) | |")
    gc, mc = per_pub("gatehouse", "broker_cpu_s"), per_pub("mosquitto", "broker_cpu_s")
    lines.append(f"| | broker CPU µs per publish | {fmt(gc, 2)} | {fmt(mc, 2)} | {fmt(gc / mc if gc and mc else None, 2)} | | lower is better | |")
    gl, ml = per_pub("gatehouse", "loadgen_cpu_s"), per_pub("mosquitto", "loadgen_cpu_s")
    lines.append(f"| | load generator (mqttv5) CPU µs per publish | {fmt(gl, 2)} | {fmt(ml, 2)} | {fmt(gl / ml if gl and ml else None, 2)} | | | |")
    summary[scen] = {"published_rate": {"gatehouse": go, "mosquitto": mo}, "ratio": ratio,
                     "broker_cpu_us_per_publish": {"gatehouse": gc, "mosquitto": mc},
                     "loadgen_cpu_us_per_publish": {"gatehouse": gl, "mosquitto": ml}}
if "latency" in present:
    gp50 = med([r.get("p50_us") for r in by("latency", "gatehouse")])
    mp50 = med([r.get("p50_us") for r in by("latency", "mosquitto")])
    gp99 = med([r.get("p99_us") for r in by("latency", "gatehouse")])
    mp99 = med([r.get("p99_us") for r in by("latency", "mosquitto")])
    r50 = gp50 / mp50 if gp50 and mp50 else None
    r99 = gp99 / mp99 if gp99 and mp99 else None
    met = r99 is not None and r99 <= 1.0
    lines.append(f"| Latency, QoS 0, 1000 msg/s | p50 µs | {fmt(gp50)} | {fmt(mp50)} | {fmt(r50, 2)} | {fmt(paired_ratio('latency', 'p50_us'), 2)} | | |")
    lines.append(f"| | p99 µs | {fmt(gp99)} | {fmt(mp99)} | {fmt(r99, 2)} | {fmt(paired_ratio('latency', 'p99_us'), 2)} | ≤ 1.0× | {'yes' if met else 'NO'} |")
    summary["latency"] = {"p50_us": {"gatehouse": gp50, "mosquitto": mp50, "ratio": r50},
                          "p99_us": {"gatehouse": gp99, "mosquitto": mp99, "ratio": r99},
                          "target": "p99 ratio <= 1.0", "met": met}
CONN = [("connections", "Connection rate, 10 concurrent", 1.0),
        ("tls_connections", "TLS connection rate, 10 concurrent (full handshakes)", 3.0)]
def per_conn(scen, broker, key):
    # CPU microseconds per successful connection (broker or load generator).
    xs = [r[key] * 1e6 / r["successful"] for r in by(scen, broker)
          if r.get(key) is not None and r.get("successful")]
    return med(xs)
for scen, label, target in CONN:
    if scen not in present:
        continue
    g = med([r.get("connections_per_sec") for r in by(scen, "gatehouse")])
    m = med([r.get("connections_per_sec") for r in by(scen, "mosquitto")])
    ratio = g / m if g and m else None
    met = ratio is not None and ratio >= target
    lines.append(f"| {label} | connections/s | {fmt(g)} | {fmt(m)} | {fmt(ratio, 2)} | {fmt(paired_ratio(scen, 'connections_per_sec'), 2)} | ≥ {target}× | {'yes' if met else 'NO'} |")
    gp, mp = (med([r.get(k) for r in by(scen, b)]) for b, k in (("gatehouse", "p50_connect_us"), ("mosquitto", "p50_connect_us")))
    what = "TCP + TLS handshake + CONNECT/CONNACK" if scen.startswith("tls_") else "TCP + CONNECT/CONNACK"
    lines.append(f"| | connect time p50 µs (client side: {what}) | {fmt(gp)} | {fmt(mp)} | {fmt(gp / mp if gp and mp else None, 2)} | | | |")
    gc, mc = per_conn(scen, "gatehouse", "broker_cpu_s"), per_conn(scen, "mosquitto", "broker_cpu_s")
    lines.append(f"| | broker CPU µs per connection | {fmt(gc, 1)} | {fmt(mc, 1)} | {fmt(gc / mc if gc and mc else None, 2)} | | lower is better | |")
    gl, ml = per_conn(scen, "gatehouse", "loadgen_cpu_s"), per_conn(scen, "mosquitto", "loadgen_cpu_s")
    lines.append(f"| | load generator (mqttv5) CPU µs per connection | {fmt(gl, 1)} | {fmt(ml, 1)} | | | | |")
    gf = sum(r.get("failed", 0) or 0 for r in by(scen, "gatehouse"))
    mf = sum(r.get("failed", 0) or 0 for r in by(scen, "mosquitto"))
    lines.append(f"| | failed connects (all runs) | {gf} | {mf} | | | 0 | |")
    summary[scen] = {"gatehouse": g, "mosquitto": m, "ratio": ratio, "target": target, "met": met,
                     "paired_ratio": paired_ratio(scen, "connections_per_sec"),
                     "p50_connect_us": {"gatehouse": gp, "mosquitto": mp},
                     "cpu_us_per_connection": {"gatehouse": gc, "mosquitto": mc},
                     "loadgen_cpu_us_per_connection": {"gatehouse": gl, "mosquitto": ml},
                     "failed": {"gatehouse": gf, "mosquitto": mf}}
if "qos1_check" in present:
    cells, summary["qos1_check"] = {}, {}
    for b in ("gatehouse", "mosquitto"):
        rs = [r for r in rows if r["scenario"] == "qos1_check" and r["broker"] == b]
        if not rs or rs[0].get("failed"):
            cells[b] = "failed"
            summary["qos1_check"][b] = None
            continue
        r = rs[0]
        cells[b] = f"{r['received_distinct']:,}/{r['sent']:,} received, {r['missing']} missing, {r['duplicates']} dup"
        summary["qos1_check"][b] = {k: r[k] for k in ("sent", "acked", "received_distinct", "missing", "duplicates")}
    ok = all(summary["qos1_check"].get(b) and summary["qos1_check"][b]["missing"] == 0
             and summary["qos1_check"][b]["acked"] == summary["qos1_check"][b]["sent"] for b in ("gatehouse",))
    lines.append(f"| QoS 1 loss check under QoS 1 load | sequenced stream | {cells['gatehouse']} | {cells['mosquitto']} | | | no loss | {'yes' if ok else 'NO'} |")
    summary["qos1_check"]["met"] = ok

now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
print(f"## Gatehouse vs Mosquitto ({now})")
print()
print(f"- machine: {cores} cores shared by the broker under test and the load generator (mqttv5), "
      "plus whatever else runs on the host; figures are medians of {runs} repetitions, brokers alternating "
      "within each repetition so both see the same background load.".replace("{runs}", runs))
print(f"- load: {mqttv5_ver}, {duration}s measured per run, warm-up {warmup}s (QoS 1: 0s); "
      f"Mosquitto: {mosq_ver}; Gatehouse: {rev}"
      + (f"; mqttv5 with TOKIO_WORKER_THREADS={lg_workers}" if lg_workers else ""))
if any(sc.startswith("tls_") for sc in present):
    print(f"- TLS: both brokers serve the same {tls_info}; "
          "mqttv5 connects to mqtts://localhost:PORT with --ca-cert ROOT (a new TLS client per "
          "connection: full handshakes, no resumption).")
if mosq_extra:
    print(f"- Mosquitto configuration beyond listener/allow_anonymous (and certfile/keyfile for TLS): "
          f"`{'; '.join(mosq_extra.splitlines())}`")
print("- ratio GH/MQ = ratio of the medians; paired ratio = median of the per-repetition ratios.")
print()
print("\n".join(lines))
if json_out:
    with open(json_out, "w") as f:
        json.dump({"date": now, "cores": int(cores), "runs": int(runs), "duration_s": int(duration),
                   "warmup_s": int(warmup), "gatehouse": rev, "mosquitto": mosq_ver, "mqttv5": mqttv5_ver,
                   "tls": tls_info or None, "mosquitto_conf_extra": mosq_extra or None,
                   "summary": summary, "runs_raw": rows}, f, indent=2)
PY
