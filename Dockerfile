# syntax=docker/dockerfile:1
# The one `movies` binary every role runs. Multi-stage: the toolchain and sources stay in the
# build stage; the runtime image holds the binary, CA certificates and curl (for healthchecks),
# and runs as an unprivileged user.

FROM rust:1.95-bookworm AS build
WORKDIR /src
# The registry and target directories are build caches: source edits rebuild only what changed.
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin movies \
    && install -m 0755 target/release/movies /usr/local/bin/movies

FROM debian:bookworm-slim AS runtime
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl zlib1g \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --create-home --home-dir /var/lib/movies movies \
    && mkdir -p /index /keys && chown movies /index /keys
COPY --from=build /usr/local/bin/movies /usr/local/bin/movies
USER movies
WORKDIR /var/lib/movies
ENV MOVIES_DATA_DIR=/var/lib/movies \
    RUST_LOG=info
# The all-in-one server by default; compose.yaml runs each role with its subcommand.
ENV MOVIES_LISTEN=0.0.0.0:8080
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
    CMD curl -fsS http://127.0.0.1:8080/health || exit 1
ENTRYPOINT ["movies"]
