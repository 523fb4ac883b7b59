# Multi-stage build: compile with the Rust toolchain, run on a slim Debian with only the
# libsmbclient runtime, as an unprivileged user.
FROM rust:1-bookworm AS build
# Debian packages are not pinned to versions (DL3008): bookworm's security updates replace
# them, and a pinned version that is gone breaks the build. The base image tag pins the
# release.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends libsmbclient-dev pkg-config \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Cargo.toml Cargo.lock build.rs ./
COPY src src
COPY migrations migrations
COPY templates templates
COPY static static
COPY i18n i18n
# Cargo.toml names the benches ([[bench]]): cargo refuses a manifest whose targets are missing.
COPY benches benches
RUN cargo build --release --locked --bin passgate

FROM debian:bookworm-slim
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends libsmbclient ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /data --shell /usr/sbin/nologin passgate \
 && mkdir -p /data && chown passgate:passgate /data && chmod 0700 /data
COPY --from=build /src/target/release/passgate /usr/local/bin/passgate
USER 10001:10001
ENV PASSGATE_SERVER__DATA_DIR=/data \
    PASSGATE_SERVER__LISTEN=0.0.0.0:8080
VOLUME /data
EXPOSE 8080
# No curl in the image: the binary checks itself.
HEALTHCHECK --interval=30s --timeout=6s --start-period=10s --retries=3 \
  CMD ["/usr/local/bin/passgate", "healthcheck", "--url", "http://127.0.0.1:8080/healthz"]
ENTRYPOINT ["/usr/local/bin/passgate"]
CMD ["serve"]
