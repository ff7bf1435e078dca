# syntax=docker/dockerfile:1
# supportwatch: build in the full Rust image, run in a slim Debian image as a non-root user.
#   docker build -t supportwatch .
#   docker run --rm -p 9750:9750 -v "$PWD/checks:/etc/supportwatch:ro" supportwatch
# The same image with Debian's chromium and chromedriver, for `kind: browser` checks and
# `via: browser` forms (about half a gigabyte larger: chromium and its libraries):
#   docker build --target browser -t supportwatch:browser .

FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
# The cache mounts keep the registry and build artefacts between builds; the binary is copied out of
# target/ because a cache mount is not part of the image layer.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin supportwatch \
 && install -D -m 0755 target/release/supportwatch /out/supportwatch

FROM debian:bookworm-slim AS runtime
# ca-certificates: the system roots every https/tls check verifies against by default.
# curl: only for the HEALTHCHECK below (supportwatch has no health-check subcommand).
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system supportwatch \
 && useradd --system --gid supportwatch --home-dir /nonexistent --shell /usr/sbin/nologin supportwatch
COPY --from=build /out/supportwatch /usr/local/bin/supportwatch
# The config directory is empty on purpose: mount your checks there (checks/ in the repository
# holds the demo's checks and examples, not yours).
# Secrets come from the environment or mounted files (${ENV}, ${file:/run/secrets/...}), never from
# the image. The demo needs no config: `docker run --rm -p 9750:9750 supportwatch demo --listen 0.0.0.0:9750`.
# Alert state and run history (storage.path, default ./supportwatch.db) live in the working
# directory; keep it on a volume so a new container neither re-sends nor forgets an alert.
RUN mkdir -p /etc/supportwatch /var/lib/supportwatch \
 && chown supportwatch:supportwatch /var/lib/supportwatch
WORKDIR /var/lib/supportwatch
VOLUME /var/lib/supportwatch
USER supportwatch
EXPOSE 9750
# Assumes the default listen port below and plain HTTP; change both together (with
# server.tls_server_config set, use `curl -fsSk https://...`). /healthz needs no password even when
# server.basic_auth_users is set. POST /-/reload is off unless server.enable_lifecycle is set with
# basic auth; `docker kill --signal HUP` always reloads.
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
  CMD ["curl", "-fsS", "-o", "/dev/null", "http://127.0.0.1:9750/healthz"]
ENTRYPOINT ["supportwatch"]
CMD ["run", "--config", "/etc/supportwatch", "--listen", "0.0.0.0:9750"]

# supportwatch starts `chromedriver` from PATH itself (browser.chromedriver), and chromedriver finds
# /usr/bin/chromium; both come from the same Debian source package, so their major versions match
# as chromedriver requires. chromium runs with --no-sandbox and --disable-dev-shm-usage (see
# src/browser/mod.rs), so it needs neither user namespaces nor a large /dev/shm, but it writes
# scratch files under TMPDIR (/tmp): on a read-only root file system mount a writable /tmp.
# fonts-liberation: metric-compatible Latin and Cyrillic fonts, so pages lay out as customers see
# them (--no-install-recommends would leave chromium with none).
FROM runtime AS browser
USER root
RUN apt-get update \
 && apt-get install -y --no-install-recommends chromium chromium-driver fonts-liberation \
 && rm -rf /var/lib/apt/lists/*
USER supportwatch

# The default target (`docker build .` without --target) is the image without a browser.
FROM runtime
