# syntax=docker/dockerfile:1
# Build: docker build -t gatehouse .
# Run:   docker run -p 1883:1883 -p 8080:8080 -v gatehouse-data:/var/lib/gatehouse gatehouse
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p gatehouse && strip target/release/gatehouse

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /var/lib/gatehouse gatehouse \
    && mkdir -p /etc/gatehouse /var/lib/gatehouse \
    && chown gatehouse:gatehouse /var/lib/gatehouse
COPY --from=build /src/target/release/gatehouse /usr/local/bin/gatehouse
COPY config/examples/container.yaml /etc/gatehouse/gatehouse.yaml
USER gatehouse
WORKDIR /var/lib/gatehouse
VOLUME ["/var/lib/gatehouse"]
# 1883 MQTT, 8080 MQTT over WebSockets, 9600 metrics and health.
EXPOSE 1883 8080 9600
ENTRYPOINT ["/usr/local/bin/gatehouse"]
CMD ["--config", "/etc/gatehouse/gatehouse.yaml"]
