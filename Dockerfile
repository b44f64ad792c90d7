# syntax=docker/dockerfile:1
# eventmatchd container image (README "Deploy"):
#
#   docker build -t eventmatchd:0.1.0 .
#
# Stage 1 builds the release binary with the `ssl` feature (TLS and SASL PLAIN/SCRAM for
# production Kafka); stage 2 is a slim Debian with only the binary and its runtime libraries,
# running as an unprivileged user. Configuration comes from environment variables
# (EVENTMATCHD__SECTION__KEY) or a file mounted at /etc/eventmatchd/eventmatchd.toml and
# passed with `--config`.

# The toolchain matches Cargo.toml's rust-version (the highest any locked dependency needs).
ARG RUST_VERSION=1.89
ARG DEBIAN_RELEASE=bookworm

FROM rust:${RUST_VERSION}-${DEBIAN_RELEASE} AS build
# librdkafka is built from source by rdkafka-sys (configure + make); it needs cmake-free
# build tools that the rust image has, plus the OpenSSL headers for the `ssl` feature.
RUN apt-get update \
 && apt-get install -y --no-install-recommends libssl-dev pkg-config \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# Every target Cargo.toml names must exist for the manifest to load.
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY config ./config
COPY benches ./benches
COPY examples ./examples
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --features ssl --bin eventmatchd \
 && install -D -m 0755 target/release/eventmatchd /out/eventmatchd

FROM debian:${DEBIAN_RELEASE}-slim AS runtime
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates libssl3 zlib1g \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 eventmatchd \
 && useradd --system --uid 10001 --gid eventmatchd --no-create-home --shell /usr/sbin/nologin eventmatchd \
 && mkdir -p /etc/eventmatchd
COPY --from=build /out/eventmatchd /usr/local/bin/eventmatchd
COPY config/default.toml /etc/eventmatchd/default.toml
# In a container the metrics and health endpoints must be reachable from outside it.
ENV EVENTMATCHD__HTTP__LISTEN=0.0.0.0:9464 \
    EVENTMATCHD__LOG__FORMAT=json
USER 10001:10001
EXPOSE 9464
# The binary is PID 1 and handles SIGTERM itself (drain, commit, leave the group): exec form,
# no shell in between.
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s --retries=3 \
    CMD ["/usr/local/bin/eventmatchd", "probe", "healthz"]
ENTRYPOINT ["/usr/local/bin/eventmatchd"]
CMD ["run"]
