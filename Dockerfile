# syntax=docker/dockerfile:1
# Build: docker build -t gatehouse .
# Run:   docker run -d --name gatehouse -p 1883:1883 -p 8080:8080 -p 9600:9600 \
#          -v gatehouse-data:/var/lib/gatehouse gatehouse
# Own configuration: mount a FOLDER over /etc/gatehouse, not a single file (an editor's
# save replaces the file; a single-file bind mount keeps showing the old one, so the broker
# never sees the change). See docs/operations.md, "Container".
#          -v "$PWD/gatehouse-config:/etc/gatehouse:ro"
# with gatehouse-config/gatehouse.yaml saying `dataDir: /var/lib/gatehouse` (relative paths,
# the default ./data included, are relative to the configuration file's folder).

# --- Build stage --------------------------------------------------------------------------
# rust:*-bookworm is based on buildpack-deps: gcc and make are there, which jemalloc (the
# broker's allocator) and aws-lc (TLS crypto) need to build their C code.
FROM rust:1-bookworm AS build
WORKDIR /src

# 1. Dependencies only, in their own layer: the workspace manifests, the lock file and
#    .cargo/config.toml (its `--cfg tokio_unstable` rustflags must be the same here as in
#    the real build, or cargo rebuilds every dependency), with stub sources. This layer is
#    rebuilt only when a Cargo.toml, Cargo.lock or .cargo/config.toml changes, so editing
#    the broker's code recompiles the workspace crates and nothing else.
#    Every workspace member's manifest is needed (cargo resolves the whole workspace), and
#    every target a manifest names explicitly must exist (the auth server's [[bin]], the
#    benches' [[bench]] entries; the broker names none: its stub src/main.rs stands for
#    the `gatehouse` binary, which cargo finds in src/bin/gatehouse/ in the real build). cargo-chef would derive this list itself,
#    but it is one more tool fetched and compiled at build time; the workspace is small
#    enough to list (a member added to Cargo.toml needs a line here, and the build fails
#    loudly if it is forgotten).
COPY Cargo.toml Cargo.lock ./
COPY .cargo/config.toml .cargo/config.toml
COPY broker/Cargo.toml broker/
COPY certs/Cargo.toml certs/
COPY config/Cargo.toml config/
COPY protocol/Cargo.toml protocol/
COPY tests/Cargo.toml tests/
COPY benches/Cargo.toml benches/
COPY examples/custom-auth-server/Cargo.toml examples/custom-auth-server/
RUN set -eu; \
    for member in broker certs config protocol tests benches examples/custom-auth-server; do \
        mkdir -p "$member/src"; \
        echo '// stub for the dependency layer' > "$member/src/lib.rs"; \
        echo 'fn main() {}' > "$member/src/main.rs"; \
    done; \
    mkdir -p benches/benches; \
    for bench in $(sed -n '/^\[\[bench\]\]/{n;s/^name = "\(.*\)"/\1/p}' benches/Cargo.toml); do \
        echo 'fn main() {}' > "benches/benches/$bench.rs"; \
    done; \
    cargo build --release --locked -p gatehouse; \
    rm -rf broker certs config protocol tests benches examples; \
    find target/release -maxdepth 2 \( -name 'gatehouse*' -o -name 'libgatehouse*' \) \
        -prune -exec rm -rf {} +
# (The stubs and their builds of the workspace crates are removed above: the next COPY
# brings the real members back, and cargo, finding no fingerprint for them, compiles them.)

# 2. The real sources (.dockerignore keeps target/, .git and local data out of the
#    context). Only the workspace crates compile here.
COPY . .
RUN cargo build --release --locked -p gatehouse \
    && strip target/release/gatehouse

# --- Runtime stage ------------------------------------------------------------------------
FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /var/lib/gatehouse gatehouse \
    && mkdir -p /etc/gatehouse /var/lib/gatehouse \
    && chown gatehouse:gatehouse /var/lib/gatehouse
COPY --from=build /src/target/release/gatehouse /usr/local/bin/gatehouse
COPY config/examples/container.yaml /etc/gatehouse/gatehouse.yaml
# The health check needs an HTTP client and the slim image has none; gatehouse has no
# health subcommand. BusyBox's static musl build is one ~1 MB file with no libraries
# (curl would bring a dozen shared libraries); only its `wget` applet is used.
COPY --from=busybox:1.36-musl /bin/busybox /usr/local/bin/busybox
# Not root: the broker needs no privilege (its ports are above 1024), and the only folder
# it writes is the data volume, owned by this user.
USER gatehouse:gatehouse
WORKDIR /var/lib/gatehouse
VOLUME ["/var/lib/gatehouse"]
# 1883 MQTT, 8080 MQTT over WebSockets, 9600 metrics and health.
EXPOSE 1883 8080 9600
# /healthz answers 200 while the process serves (see docs/operations.md). It is on the
# metrics port, diagnostics.metrics.prometheusPort (9600 here): a configuration that moves
# it needs `docker run --health-cmd` with the new port.
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["/usr/local/bin/busybox", "wget", "-q", "-T", "3", "-O", "/dev/null", "http://127.0.0.1:9600/healthz"]
ENTRYPOINT ["/usr/local/bin/gatehouse"]
CMD ["--config", "/etc/gatehouse/gatehouse.yaml"]
