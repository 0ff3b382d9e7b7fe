#!/usr/bin/env bash
# User-space instructions per delivered message, counted by callgrind: repeatable on a busy
# machine (CPU time is not), so a change to the per-message path can be judged A/B.
#
#   benches/callgrind.sh BINARY [fanout|fanin]
#
# fanout: 1,000 QoS 0 subscribers of one topic, 20 publishes/s (200,000 deliveries counted)
# fanin:  1,000 QoS 1 publishers, 2,000 messages/s in all, one subscriber (20,000 counted)
#
# The broker runs under `valgrind --tool=callgrind --instr-atstart=no`; counting is switched
# on 25 s into the load (connections made, warm-up done) and the profile dumped 10 s later.
# The profile stays in $OUT (callgrind_annotate it). Needs valgrind and target/release/loadgen.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
bin="${1:?usage: benches/callgrind.sh BINARY [fanout|fanin]}"
scen="${2:-fanout}"
loadgen="${LOADGEN:-${CARGO_TARGET_DIR:-$root/target}/release/loadgen}"
port="${PORT:-18840}"
out="${OUT:-$(mktemp -d /tmp/callgrind.XXXXXX)}"
case "$scen" in
fanout) load=(--qos 0 --subscribers 1000 --topics shared --rate 20); per=$((10 * 20 * 1000)) ;;
fanin) load=(--qos 1 --publishers 1000 --subscribers 1 --rate 2000); per=$((10 * 2000)) ;;
*) echo "unknown scenario $scen" >&2; exit 2 ;;
esac
ulimit -n 20000 2>/dev/null || true
cat >"$out/broker.yaml" <<YAML
dataDir: $out/data
listeners:
  - name: bench
    bindAddress: 127.0.0.1
    ports: [{port: $port}]
broker: {maxConnections: 60000, maxSessions: 60000, maxPendingConnections: 60000, maxPendingConnectionsPerAddress: 60000, connectTimeout: 60s}
diagnostics: {logs: {level: warn}, metrics: {prometheusPort: 0}}
YAML
valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$out/callgrind.out" \
    "$bin" --config "$out/broker.yaml" >"$out/broker.log" 2>&1 &
broker=$!
trap 'kill -INT $broker 2>/dev/null || true' EXIT
for _ in $(seq 200); do (echo >/dev/tcp/127.0.0.1/"$port") 2>/dev/null && break; sleep 0.2; done
"$loadgen" pubsub --port "$port" "${load[@]}" --duration 40 --warmup 10 >"$out/loadgen.json" 2>"$out/loadgen.err" &
gen=$!
sleep 25
callgrind_control -i on "$broker" >/dev/null
sleep 10
callgrind_control -d "$broker" >/dev/null
callgrind_control -i off "$broker" >/dev/null
wait "$gen"
kill -INT "$broker"; wait "$broker" 2>/dev/null || true
trap - EXIT
profile="$(ls -S "$out"/callgrind.out* | head -1)"
total="$(awk '/^(summary|totals):/ {print $2; exit}' "$profile")"
echo "$scen: $total instructions in 10 s, $((total / per)) per delivered message (profile: $profile)"
