# shellcheck shell=bash
# Shared by the side-by-side benchmark scripts (compare.sh, authz_compare.sh): logging,
# the per-run work folder and its cleanup, free ports, and the broker process under test.
# Source it after setting `script` (the name used in error messages) and `work_prefix`.

: "${script:?set script before sourcing lib.sh}" "${work_prefix:?set work_prefix before sourcing lib.sh}"

log() { printf '%s\n' "$*" >&2; }
die() { log "$script: $*"; exit 1; }

# The run's scratch folder; the broker under test is stopped and the folder removed on exit.
work="$(mktemp -d "${TMPDIR:-/tmp}/$work_prefix.XXXXXX")"
broker_pid=""
cleanup() {
    if [ -n "$broker_pid" ] && kill -0 "$broker_pid" 2>/dev/null; then
        kill "$broker_pid" 2>/dev/null || true
        wait "$broker_pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
if [ -n "${OUT_DIR:-}" ]; then mkdir -p "$OUT_DIR"; fi
results="$work/results.jsonl"
: >"$results"
clk_tck="$(getconf CLK_TCK)"

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# CPU seconds (user + system) the broker process has used so far.
broker_cpu() {
    awk -v t="$clk_tck" '{ sub(/.*\) /, ""); printf "%.3f", ($12 + $13) / t }' "/proc/$broker_pid/stat"
}

stop_broker() {
    if [ -n "$broker_pid" ]; then
        kill "$broker_pid" 2>/dev/null || true
        wait "$broker_pid" 2>/dev/null || true
        broker_pid=""
    fi
}
