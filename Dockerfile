# rwsplit container image.
#
#   docker build -t rwsplit .
#   docker run --rm -v "$PWD/proxy.yaml:/etc/rwsplit/proxy.yaml:ro" -p 6033:6033 -p 9104:9104 rwsplit
#   docker run --rm -v "$PWD/proxy.yaml:/etc/rwsplit/proxy.yaml:ro" rwsplit --check   # validate only
#
# The configuration is expected at /etc/rwsplit/proxy.yaml (mount it, or mount a directory on /etc/rwsplit).
# In a container every listener must bind 0.0.0.0 (listen, metrics.listen) or the port is unreachable from
# outside. The HEALTHCHECK below needs metrics.listen on port 9104 (or set HEALTHCHECK_PORT).

# ---- builder ---------------------------------------------------------------------------------------------
FROM rust:1-bookworm AS builder
WORKDIR /src
# Keep symbols (readable panics and profiles), drop the DWARF that `[profile.release] debug = 1` adds (73 MB ->
# 14 MB). Set before the dependency layer: a profile change would rebuild every dependency.
ENV CARGO_PROFILE_RELEASE_STRIP=debuginfo

# Dependency layer: build the workspace's dependencies against stub sources, so editing rwsplit's code does
# not re-download or re-compile the ~100 crates it depends on. Only manifest and Cargo.lock changes invalidate
# this layer. Cargo refuses a manifest whose declared targets ([[bin]], [[bench]], [[test]], [[example]]) have
# no file, so the awk step writes a stub for each one, e.g. the root package's benches, which the image never
# builds (the root package owns only tests/ and benches/). A new workspace member needs a COPY line here.
COPY Cargo.toml Cargo.lock ./
COPY crates/wire/Cargo.toml crates/wire/Cargo.toml
COPY crates/classify/Cargo.toml crates/classify/Cargo.toml
COPY crates/proxy/Cargo.toml crates/proxy/Cargo.toml
RUN set -eu; \
    mkdir -p src crates/wire/src crates/classify/src crates/proxy/src; \
    touch src/lib.rs crates/wire/src/lib.rs crates/classify/src/lib.rs crates/proxy/src/lib.rs; \
    for manifest in Cargo.toml crates/*/Cargo.toml; do \
        dir="${manifest%Cargo.toml}"; \
        awk -F'"' ' \
            function flush() { if (kind != "" && (name != "" || path != "")) print (path != "" ? path : kind "/" name ".rs"); kind = "" }; \
            /^\[/              { flush(); name = ""; path = "" }; \
            /^\[\[bin\]\]/     { kind = "src/bin" }; \
            /^\[\[bench\]\]/   { kind = "benches" }; \
            /^\[\[test\]\]/    { kind = "tests" }; \
            /^\[\[example\]\]/ { kind = "examples" }; \
            /^name *=/         { name = $2 }; \
            /^path *=/         { path = $2 }; \
            END                { flush() }' "$manifest" \
        | while read -r target; do mkdir -p "$(dirname "$dir$target")"; echo 'fn main() {}' > "$dir$target"; done; \
    done; \
    cargo fetch --locked; \
    cargo build --release --locked --package rwsplit --bin rwsplit

# The real sources. COPY keeps the files' original mtimes, which can be older than the stub build's outputs:
# touch them so cargo rebuilds the workspace crates instead of keeping the stubs.
COPY crates crates
RUN find crates -name '*.rs' -exec touch {} + \
    && cargo build --release --locked --package rwsplit --bin rwsplit \
    && ./target/release/rwsplit --version

# ---- runtime ---------------------------------------------------------------------------------------------
# debian:bookworm-slim rather than distroless: same glibc as the builder, and it has bash, which the
# HEALTHCHECK uses (see below). Nothing is installed: rwsplit needs only glibc (no TLS, so no CA bundle yet).
FROM debian:bookworm-slim

# A fixed numeric uid/gid so Kubernetes' runAsNonRoot can verify it without resolving names.
RUN groupadd --system --gid 10001 rwsplit \
    && useradd --system --uid 10001 --gid rwsplit --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin rwsplit \
    && mkdir -p /etc/rwsplit

COPY --from=builder /src/target/release/rwsplit /usr/local/bin/rwsplit

# rwsplit's default --config is ./proxy.yaml, so `docker run IMAGE --check` also finds the mounted file.
WORKDIR /etc/rwsplit
USER 10001:10001

ENV RUST_LOG=info \
    HEALTHCHECK_PORT=9104
# JSON logs for log shippers: set RWSPLIT_LOG_FORMAT=json at run time.

# 6033 clients (listen), 6032 admin (admin.listen, MySQL protocol), 9104 metrics/healthz/readyz.
EXPOSE 6033 6032 9104

# Liveness via bash's /dev/tcp: one HTTP/1.1 GET /healthz, healthy iff the status line says 200. The rest of
# the response is read to EOF, so the server never sees the probe reset the connection (no log noise).
# Chosen over installing curl/wget (adds packages, CVEs and ~1 MB+ for one probe) and over a separately built
# static probe binary (a second artifact to build and keep in sync). bash is already in the slim image; the
# probe runs only when Docker asks, and Docker's --timeout kills it if the server accepts but never answers.
# (Kubernetes ignores HEALTHCHECK; deploy/kubernetes uses httpGet probes on /healthz and /readyz instead.)
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
    CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/${HEALTHCHECK_PORT} && printf 'GET /healthz HTTP/1.1\\r\\nHost: localhost\\r\\nConnection: close\\r\\n\\r\\n' >&3 && read -r -t 2 _ code _ <&3 && while read -r -t 2 _; do :; done <&3; [ \"$code\" = 200 ]"]

# SIGTERM: stop accepting, give sessions shutdown_grace, exit. rwsplit is PID 1 here and handles SIGTERM and
# SIGINT itself (no init needed: it spawns no children). `docker kill -s HUP` reloads proxy.yaml.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/rwsplit"]
CMD ["--config", "/etc/rwsplit/proxy.yaml"]
