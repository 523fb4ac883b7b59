# Multi-stage build: compile with the Rust toolchain, run on a slim Debian with only the
# libsmbclient runtime, as an unprivileged user.
FROM rust:1-bookworm AS build
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
RUN cargo build --release --locked --bin passgate

FROM debian:bookworm-slim
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
ENTRYPOINT ["/usr/local/bin/passgate"]
CMD ["serve"]
