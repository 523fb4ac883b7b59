# Multi-stage build: compile with the Rust toolchain, then ship only what the binary needs, as
# an unprivileged user: the binary, the shared libraries ldd lists for it (libsmbclient and its
# own dependencies), the CA certificates, and a passwd entry. No shell, no package manager.
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

SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# The runtime tree, assembled here because the final stage has no tools. Paths are kept as ldd
# prints them: libsmbclient finds Samba's private libraries by its RUNPATH.
RUN mkdir -p /rootfs/usr/local/bin /rootfs/etc/ssl/certs /rootfs/data /rootfs/tmp \
 && cp target/release/passgate /rootfs/usr/local/bin/passgate \
 && ldd target/release/passgate | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }' \
    | xargs -r cp --parents --dereference -t /rootfs \
 && cp /etc/ssl/certs/ca-certificates.crt /rootfs/etc/ssl/certs/ \
 && printf 'root:x:0:0:root:/root:/usr/sbin/nologin\npassgate:x:10001:10001:passgate:/data:/usr/sbin/nologin\n' >/rootfs/etc/passwd \
 && printf 'root:x:0:\npassgate:x:10001:\n' >/rootfs/etc/group \
 && chown 10001:10001 /rootfs/data && chmod 0700 /rootfs/data && chmod 1777 /rootfs/tmp \
 && chroot /rootfs /usr/local/bin/passgate --version

FROM scratch
COPY --from=build /rootfs /
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
