# Legato image: one binary, `legato`; the role is chosen with -target= (default all).
#   docker build -t legato:dev .
# Build stage: the workspace's minimum Rust (Cargo.toml rust-version). protoc comes from a
# crate (protoc-bin-vendored), so no system protobuf compiler is needed.
FROM rust:1.90-bookworm AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p legato --bin legato \
 && cp target/release/legato /usr/local/bin/legato

FROM debian:bookworm-slim
# ca-certificates: HTTPS to S3 and to STS (IRSA web identity).
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /var/legato --shell /usr/sbin/nologin legato \
 && mkdir -p /var/legato \
 && chown legato:legato /var/legato
COPY --from=build /usr/local/bin/legato /usr/local/bin/legato
USER 10001:10001
WORKDIR /var/legato
# HTTP API, gRPC, OTLP gRPC, OTLP HTTP, gossip (TCP+UDP).
EXPOSE 3200 9095 4317 4318 7946 7946/udp
ENTRYPOINT ["/usr/local/bin/legato"]
