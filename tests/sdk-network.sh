#!/usr/bin/env bash
# Run the official AIO Rust SDK's network tests (state store, lease, leased lock) against a
# debug Gatehouse on 127.0.0.1:1883, RUNS times (default 1), and report how many runs passed.
#
#   tests/sdk-network.sh            # one run
#   RUNS=10 tests/sdk-network.sh    # the issue 18 criterion: 10 out of 10
#
# The SDK's tests connect to localhost:1883 anonymously (hard-coded), so that port must be
# free. The SDK crate (azure_iot_operations_services 1.5.0-beta1, a dev-dependency of
# gatehouse-tests, so already in the cargo registry) is copied to a scratch directory and built
# there with its own target dir: SCRATCH (default: a new temporary directory, removed at the
# end unless KEEP=1; logs of failed runs are kept in a SCRATCH you name) and SDK_TARGET (default: $SCRATCH/target; reuse one to skip the ~5 min
# first build). Needs network access for the SDK's own dev-dependencies (env_logger,
# test-case) and libssl-dev/pkg-config (see .ci/run). Not part of .ci/run: the first build takes
# minutes and needs the network; after it a run takes about 30 s (the lease tests sleep).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
RUNS=${RUNS:-1}
SDK_VERSION=1.5.0-beta1

sdk_src=$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/azure_iot_operations_services-"$SDK_VERSION" 2>/dev/null | head -n1 || true)
if [ -z "$sdk_src" ]; then
  echo "azure_iot_operations_services $SDK_VERSION is not in the cargo registry; run 'cargo fetch' first" >&2
  exit 2
fi
if (exec 3<>/dev/tcp/127.0.0.1/1883) 2>/dev/null; then
  echo "something already listens on 127.0.0.1:1883; stop it first" >&2
  exit 2
fi

own_scratch=0
if [ -z "${SCRATCH:-}" ]; then SCRATCH=$(mktemp -d); own_scratch=1; fi
SDK_TARGET=${SDK_TARGET:-$SCRATCH/target}
mkdir -p "$SCRATCH"
broker_pid=""
cleanup() {
  if [ -n "$broker_pid" ]; then kill "$broker_pid" 2>/dev/null || true; wait "$broker_pid" 2>/dev/null || true; fi
  if [ "${KEEP:-0}" != 1 ]; then
    if [ "$own_scratch" = 1 ]; then rm -rf "$SCRATCH"; else rm -rf "$SCRATCH/sdk" "$SCRATCH/data"; fi
  fi
}
trap cleanup EXIT

# The SDK crate, outside any workspace.
rm -rf "$SCRATCH/sdk"
cp -r "$sdk_src" "$SCRATCH/sdk"
chmod -R u+w "$SCRATCH/sdk"
printf '\n[workspace]\n' >> "$SCRATCH/sdk/Cargo.toml"
# The test files are behind the crate's features.
tests=(--features state_store,leased_lock
       --test state_store_client_test --test lease_client_tests --test lock_client_tests)
(cd "$SCRATCH/sdk" && CARGO_TARGET_DIR=$SDK_TARGET cargo test --no-run -q "${tests[@]}")

# The broker: one anonymous MQTT port on 127.0.0.1:1883 (and [::1]:1883, for `localhost`).
cargo build -q -p gatehouse
bin=${CARGO_TARGET_DIR:-$ROOT/target}/debug/gatehouse
cat > "$SCRATCH/gatehouse.yaml" <<EOF
dataDir: $SCRATCH/data
listeners:
  - name: sdk
    bindAddress: 127.0.0.1
    ports: [ { port: 1883 } ]
EOF
"$bin" --config "$SCRATCH/gatehouse.yaml" > "$SCRATCH/broker.log" 2>&1 &
broker_pid=$!
for _ in $(seq 50); do
  (exec 3<>/dev/tcp/127.0.0.1/1883) 2>/dev/null && break
  sleep 0.1
done

passed=0
for run in $(seq "$RUNS"); do
  if (cd "$SCRATCH/sdk" && ENABLE_NETWORK_TESTS=1 CARGO_TARGET_DIR=$SDK_TARGET \
        cargo test --no-fail-fast "${tests[@]}" > "$SCRATCH/run-$run.log" 2>&1) &&
      ! grep -q "^running 0 tests" "$SCRATCH/run-$run.log"; then
    passed=$((passed + 1))
    echo "run $run: passed ($(grep -c '^test .* ok$' "$SCRATCH/run-$run.log") tests)"
  else
    echo "run $run: FAILED (see $SCRATCH/run-$run.log):"
    grep -E "^test .* FAILED|^    [a-z_]+$|panicked" "$SCRATCH/run-$run.log" | head -20 || true
  fi
done
echo "$passed of $RUNS runs passed"
[ "$passed" -eq "$RUNS" ]
