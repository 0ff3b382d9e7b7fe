#!/usr/bin/env bash
# Authorization cost end to end: the same `mqttv5 bench` load against three Gatehouse
# configurations side by side, all over TLS with X.509 client certificates:
#
#   none      TLS + X.509 authentication, no authorizationRef (everything allowed)
#   cached    the same port with a 100-rule policy, `cache: Enabled` (the default)
#   uncached  the same policy with `cache: Disabled`
#
# Authorization needs authentication on the port (behaviour.md §4), so even `none`
# authenticates: the three differ only in the policy. The policy is the one of
# gatehouse_benches::authz_policy (benches/src/authz_policy.rs; written here by python, same
# rules): 99 rules for other principals and topics, some with {principal.*} tokens and
# 9 of them applying to the load's user with topics it does not use, then the rule that
# allows the load (username = the client certificate's CN) last, so an uncached check walks
# every rule.
#
# Every measurement starts a fresh broker on a free loopback port, runs one `mqttv5 bench`
# and stops it; each repetition runs the three configurations, the first one rotating
# (rep 1: none cached uncached, rep 2: cached uncached none, ...), so all see the same
# background noise. Per scenario the script reports medians over the repetitions, the
# throughput loss of each policy configuration against `none` (ratio of the medians, and
# the median of the per-repetition losses) and the broker's CPU per published message
# (each PUBLISH is one authorization check).
#
# Scenarios (SCENARIOS, space separated; both by default):
#   qos0   QoS 0 throughput, 1 publisher -> 1 subscriber (delivered msg/s)
#   qos1   QoS 1 throughput, 1 -> 1 (delivered msg/s)
#
# Before the runs, a sanity check against `cached`: a QoS 0 load to a topic the policy
# does not allow (denied/x, subscriber on bench/#) must deliver nothing, so the policy is
# known to be enforced.
#
# PKI: once per run `gatehouse ca issue` (a throw-away quickstart CA in the run's temporary
# directory) makes a server certificate (CN/SAN localhost, 127.0.0.1) and a client
# certificate (CN bench-client, clientAuth), both EC P-256; the port trusts the root for
# client certificates (trustedClientCaCert). mqttv5 connects to mqtts://localhost:PORT with
# --ca-cert ROOT --cert CLIENT --key CLIENT_KEY.
#
# Environment:
#   RUNS=5          repetitions per scenario (each runs the three configurations)
#   DURATION=10     seconds measured per run (mqttv5 --duration)
#   WARMUP=2        warm-up seconds for QoS 0 (QoS 1 uses 0, as in compare.sh)
#   SCENARIOS=...   subset of the scenarios above
#   CONFIGS=...     subset of none cached uncached (the loss needs none)
#   JSON_OUT=FILE   also write every run and the summary as JSON
#   OUT_DIR=DIR     keep each run's raw mqttv5 JSON and broker logs there
#   BUILD=0         skip `cargo build --release -p gatehouse`
#   GATEHOUSE=PATH MQTTV5=PATH  binaries
#
# Needs: cargo (unless BUILD=0), mqttv5 (`cargo install mqttv5-cli`), python3. The Markdown
# table goes to stdout, progress to stderr.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"

RUNS="${RUNS:-5}"
DURATION="${DURATION:-10}"
WARMUP="${WARMUP:-2}"
SCENARIOS="${SCENARIOS:-qos0 qos1}"
CONFIGS="${CONFIGS:-none cached uncached}"
BUILD="${BUILD:-1}"
GATEHOUSE="${GATEHOUSE:-$root/target/release/gatehouse}"
MQTTV5="${MQTTV5:-$(command -v mqttv5 || echo "$HOME/.cargo/bin/mqttv5")}"
LOAD_USER=bench-client

script=authz_compare.sh
work_prefix=gatehouse-authz
# shellcheck source=benches/lib.sh
. "$here/lib.sh"

command -v python3 >/dev/null || die "python3 is required"
[ -x "$MQTTV5" ] || die "mqttv5 not found (cargo install mqttv5-cli, or set MQTTV5=)"

if [ "$BUILD" != 0 ]; then
    log "building gatehouse (release)..."
    (cd "$root" && cargo build --release -q -p gatehouse) >&2
fi
[ -x "$GATEHOUSE" ] || die "gatehouse binary not found at $GATEHOUSE"
gatehouse_rev="$(git -C "$root" describe --always --dirty 2>/dev/null || echo unknown)"

# PKI: server and client certificates from one throw-away root.
pki="$work/pki"
mkdir -p "$pki"
cat >"$pki/issuer.yaml" <<EOF
dataDir: $pki/data
listeners:
  - name: pki
    bindAddress: 127.0.0.1
    ports: [{port: 0}]
EOF
issue() {
    if ! "$GATEHOUSE" ca issue --config "$pki/issuer.yaml" --algorithm Ec256 "$@" >"$pki/issue.log" 2>&1; then
        cat "$pki/issue.log" >&2
        die "gatehouse ca issue failed"
    fi
}
issue --cn localhost --san localhost,127.0.0.1 --out "$pki/server"
issue --client --cn "$LOAD_USER" --out "$pki/client"
ca="$pki/server/ca.crt"
log "PKI: server certificate CN localhost, client certificate CN $LOAD_USER (EC P-256, one root)"

# The 100-rule policy: the same rules as benches/src/authz_policy.rs.
python3 - "$LOAD_USER" >"$work/rules.yaml" <<'PY'
import sys
user = sys.argv[1]
out = []
for i in range(80):
    out.append(f'''        - principals: {{ usernames: [device-{i}], clientIds: [device-{i}] }}
          brokerResources:
            - {{ method: Connect, clientIds: ["device-{i}*"] }}
            - {{ method: Publish, topics: ["devices/{{principal.clientId}}/telemetry", "site/{i}/#"] }}
            - {{ method: Subscribe, topics: ["devices/{{principal.clientId}}/commands/#"] }}
''')
for i in range(80, 90):
    out.append(f'''        - principals: {{ attributes: [ {{ building: b{i} }}, {{ role: r{i} }} ] }}
          brokerResources:
            - {{ method: Connect }}
            - {{ method: Publish, topics: ["buildings/{{principal.attributes.building}}/#"] }}
            - {{ method: Subscribe, topics: ["buildings/{{principal.attributes.building}}/+/status"] }}
''')
for i in range(90, 99):
    out.append(f'''        - principals: {{ usernames: ["{user}"] }}
          brokerResources:
            - {{ method: Publish, topics: ["other/{i}/{{principal.clientId}}/#", "users/{{principal.username}}/{i}"] }}
            - {{ method: Subscribe, topics: ["other/{i}/#"] }}
''')
out.append(f'''        - principals: {{ usernames: ["{user}"] }}
          brokerResources:
            - {{ method: Connect }}
            - {{ method: Publish, topics: ["bench/#"] }}
            - {{ method: Subscribe, topics: ["bench/#"] }}
''')
print("".join(out), end="")
PY
rule_count="$(grep -c '^        - principals:' "$work/rules.yaml")"
[ "$rule_count" = 100 ] || die "expected 100 rules, wrote $rule_count"

# start_broker CONFIG: a fresh broker on a free port; sets broker_pid and port.
start_broker() {
    local config="$1" attempt authz_ref="" authz_section=""
    case "$config" in
    none) ;;
    cached | uncached)
        authz_ref="        authorizationRef: bench-policy"
        local mode=Enabled
        [ "$config" = uncached ] && mode=Disabled
        authz_section="authorizations:
  - name: bench-policy
    authorizationPolicies:
      cache: $mode
      rules:
$(cat "$work/rules.yaml")"
        ;;
    *) die "unknown configuration $config" ;;
    esac
    for attempt in 1 2 3; do
        port="$(free_port)"
        cat >"$work/gatehouse.yaml" <<EOF
dataDir: $work/gatehouse-data
listeners:
  - name: bench
    bindAddress: 127.0.0.1
    ports:
      - port: $port
        authenticationRef: x509
$authz_ref
        tls: { mode: Manual, manual: { secretRef: server-cert } }
secrets:
  server-cert: { certFile: $pki/server/tls.crt, keyFile: $pki/server/tls.key }
configMaps:
  client-ca: { files: [ $ca ] }
authentications:
  - name: x509
    authenticationMethods:
      - method: X509
        x509Settings: { trustedClientCaCert: client-ca }
$authz_section
diagnostics:
  metrics: {prometheusPort: 0}
EOF
        "$GATEHOUSE" --config "$work/gatehouse.yaml" >"$work/broker.log" 2>&1 &
        broker_pid=$!
        local i
        for i in $(seq 100); do
            kill -0 "$broker_pid" 2>/dev/null || break
            if port_open "$port"; then return 0; fi
            sleep 0.05
        done
        log "  gatehouse ($config) did not come up on port $port (attempt $attempt):"
        tail -5 "$work/broker.log" >&2 || true
        stop_broker
    done
    die "could not start gatehouse ($config)"
}

bench_args() {
    case "$1" in
    qos0) echo "--mode throughput -q 0 --publishers 1 --subscribers 1 --duration $DURATION --warmup $WARMUP" ;;
    qos1) echo "--mode throughput -q 1 --publishers 1 --subscribers 1 --duration $DURATION --warmup 0" ;;
    *) die "unknown scenario $1" ;;
    esac
}

target() {
    echo "--url mqtts://localhost:$port --ca-cert $ca --cert $pki/client/tls.crt --key $pki/client/tls.key"
}

# The policy is enforced: nothing published to denied/x reaches a bench/# subscriber.
sanity() {
    start_broker cached
    # shellcheck disable=SC2046
    "$MQTTV5" bench $(target) --mode throughput -q 0 --duration 1 --warmup 0 \
        -t denied/x -f 'bench/#' >"$work/sanity.json" 2>"$work/sanity.err" || true
    stop_broker
    python3 - "$work/sanity.json" <<'PY' || die "sanity check failed (see above)"
import json, sys
try:
    r = json.load(open(sys.argv[1]))["results"]
except Exception as e:
    sys.exit(f"no result from mqttv5: {e}")
print(f"sanity: published {r.get('published')} to denied/x, received {r.get('received')}", file=sys.stderr)
if not r.get("published") or r.get("received"):
    sys.exit("the policy did not deny the publishes to denied/x")
PY
}

# run_one SCENARIO CONFIG REP ORDER
run_one() {
    local scen="$1" config="$2" rep="$3" order="$4" out="$work/run.json"
    start_broker "$config"
    local cpu0 t0 t1 timer=()
    cpu0="$(broker_cpu)"
    t0="$(date +%s.%N)"
    rm -f "$work/loadgen.time"
    if [ -x /usr/bin/time ]; then timer=(/usr/bin/time -f '%U %S' -o "$work/loadgen.time"); fi
    # shellcheck disable=SC2046
    if ! "${timer[@]}" "$MQTTV5" bench $(target) $(bench_args "$scen") >"$out" 2>"$work/bench.err"; then
        log "  mqttv5 bench failed on $config ($scen):"; tail -5 "$work/bench.err" >&2
        echo "{\"mode\":\"$scen\",\"results\":{\"failed\":true}}" >"$out"
    fi
    t1="$(date +%s.%N)"
    local cpu1 loadgen_cpu=""
    cpu1="$(broker_cpu)"
    if [ -s "$work/loadgen.time" ]; then
        loadgen_cpu="$(awk '{printf "%.3f", $1 + $2}' "$work/loadgen.time" 2>/dev/null || true)"
    fi
    stop_broker
    if [ -n "${OUT_DIR:-}" ]; then
        cp "$out" "$OUT_DIR/$scen-$config-$rep.json"
        cp "$work/broker.log" "$OUT_DIR/$scen-$config-$rep.broker.log"
        cp "$work/bench.err" "$OUT_DIR/$scen-$config-$rep.stderr" 2>/dev/null || true
    fi
    python3 - "$out" "$scen" "$config" "$rep" "$order" "$cpu0" "$cpu1" "$t0" "$t1" "${loadgen_cpu:-}" "$(cut -d' ' -f1 /proc/loadavg)" >>"$results" <<'PY'
import json, sys
path, scen, config, rep, order, cpu0, cpu1, t0, t1, lg, load = sys.argv[1:]
try:
    res = json.load(open(path)).get("results", {})
except Exception as e:
    res = {"failed": True, "error": str(e)}
for k in ("samples", "offered_samples"):
    res.pop(k, None)
print(json.dumps({"scenario": scen, "config": config, "rep": int(rep), "order": int(order),
                  "broker_cpu_s": round(float(cpu1) - float(cpu0), 3),
                  "wall_s": round(float(t1) - float(t0), 3),
                  "loadgen_cpu_s": float(lg) if lg else None, "loadavg_1m": float(load), **res}))
PY
    local line
    line="$(tail -1 "$results")"
    log "  $(python3 -c '
import json, sys
r = json.loads(sys.argv[1])
keys = ["throughput_steady", "offered_rate", "published", "received", "broker_cpu_s", "loadgen_cpu_s", "loadavg_1m"]
print(r["scenario"], r["config"], "rep", r["rep"], " ".join(f"{k}={r[k]}" for k in keys if k in r))
' "$line")"
}

log "gatehouse: $GATEHOUSE ($gatehouse_rev)"
log "mqttv5:    $MQTTV5 ($("$MQTTV5" --version 2>&1 | head -1))"
log "runs=$RUNS duration=${DURATION}s warmup=${WARMUP}s scenarios: $SCENARIOS configurations: $CONFIGS"
log "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
sanity
read -r -a configs <<<"$CONFIGS"
for scen in $SCENARIOS; do
    for rep in $(seq "$RUNS"); do
        n=${#configs[@]}
        for i in $(seq 0 $((n - 1))); do
            config="${configs[$(((rep - 1 + i) % n))]}"
            run_one "$scen" "$config" "$rep" "$((i + 1))"
        done
    done
done
log "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"

python3 - "$results" "$RUNS" "$DURATION" "$WARMUP" "$(nproc)" "${JSON_OUT:-}" \
    "$("$MQTTV5" --version 2>&1 | head -1)" "$gatehouse_rev" <<'PY'
import json, statistics, sys, datetime
path, runs, duration, warmup, cores, json_out, mqttv5_ver, rev = sys.argv[1:]
rows = [json.loads(l) for l in open(path) if l.strip()]

def by(scen, config):
    return [r for r in rows if r["scenario"] == scen and r["config"] == config and r.get("failed") is not True]

def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None

def fmt(x, nd=0):
    return "n/a" if x is None else f"{x:,.{nd}f}"

def pct(x):
    return "n/a" if x is None else f"{x:+.1f} %"

def cpu_per_publish(r):
    return r["broker_cpu_s"] * 1e6 / r["published"] if r.get("published") else None

def paired_loss(scen, config, key="throughput_steady"):
    base = {r["rep"]: r.get(key) for r in by(scen, "none")}
    other = {r["rep"]: r.get(key) for r in by(scen, config)}
    return med([(1 - other[k] / base[k]) * 100 for k in other if k in base and base[k] and other[k]])

LABELS = {"qos0": "QoS 0 throughput, 1 pub → 1 sub", "qos1": "QoS 1 throughput, 1 pub → 1 sub"}
CONF = {"none": "no policy", "cached": "100 rules, cache Enabled", "uncached": "100 rules, cache Disabled"}
present_configs = [c for c in ("none", "cached", "uncached") if any(r["config"] == c for r in rows)]
lines = ["| scenario | configuration | delivered msg/s (median) | throughput loss vs no policy | paired loss | delivered ratio | broker CPU µs per publish | extra CPU µs per publish vs no policy | target | met |",
         "|---|---|---:|---:|---:|---:|---:|---:|---|---|"]
summary = {}
for scen in ("qos0", "qos1"):
    if not any(r["scenario"] == scen for r in rows):
        continue
    base = med([r.get("throughput_steady") for r in by(scen, "none")])
    base_cpu = med([cpu_per_publish(r) for r in by(scen, "none")])
    summary[scen] = {}
    for i, config in enumerate(present_configs):
        thr = med([r.get("throughput_steady") for r in by(scen, config)])
        ratio = med([r.get("delivered_ratio") for r in by(scen, config)])
        cpu = med([cpu_per_publish(r) for r in by(scen, config)])
        loss = (1 - thr / base) * 100 if thr and base and config != "none" else None
        ploss = paired_loss(scen, config) if config != "none" else None
        extra = cpu - base_cpu if cpu is not None and base_cpu is not None and config != "none" else None
        target, met = "", ""
        if config == "cached":
            target = "≤ 5 % loss"
            met = "yes" if loss is not None and loss <= 5 else "NO"
        label = LABELS[scen] if i == 0 else ""
        lines.append(f"| {label} | {CONF[config]} | {fmt(thr)} | {'' if config == 'none' else pct(loss)} | "
                     f"{'' if config == 'none' else pct(ploss)} | {fmt(ratio, 3)} | {fmt(cpu, 2)} | "
                     f"{'' if config == 'none' else fmt(extra, 2)} | {target} | {met} |")
        summary[scen][config] = {"delivered_per_s": thr, "loss_pct": loss, "paired_loss_pct": ploss,
                                 "delivered_ratio": ratio, "cpu_us_per_publish": cpu,
                                 "extra_cpu_us_per_publish": extra,
                                 "runs": [r.get("throughput_steady") for r in by(scen, config)]}
    lines.append(f"| | per-run delivered msg/s | " + "; ".join(
        f"{c}: {' '.join(fmt(x) for x in summary[scen][c]['runs'])}" for c in present_configs) + " | | | | | | | |")

loads = [r["loadavg_1m"] for r in rows]
now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
print(f"## Authorization cost, TLS + X.509 ({now})")
print()
print(f"- machine: {cores} cores shared by the broker, the load generator (mqttv5) and whatever else runs; "
      f"1-minute load average {min(loads):.2f}–{max(loads):.2f} at the end of the runs; medians of {runs} repetitions, "
      "configurations rotating within each repetition.")
print(f"- load: {mqttv5_ver}, {duration}s measured per run, warm-up {warmup}s (QoS 1: 0s); Gatehouse: {rev}")
print("- loss = 1 − delivered(policy) / delivered(no policy), from the medians; paired loss = median of the per-repetition losses. "
      "Broker CPU per publish = broker CPU time / published messages (one authorization check each, plus its delivery).")
print()
print("\n".join(lines))
if json_out:
    with open(json_out, "w") as f:
        json.dump({"date": now, "cores": int(cores), "runs": int(runs), "duration_s": int(duration),
                   "warmup_s": int(warmup), "gatehouse": rev, "mqttv5": mqttv5_ver,
                   "summary": summary, "runs_raw": rows}, f, indent=2)
PY
