# Herald container image: a cached Rust build stage plus a small Debian runtime.
#
#   docker build -t herald .
#   docker run --rm herald --help
#   docker run --rm -p 8080:8080 -e DATABASE_URL=... -e REDIS_URL=... -e HERALD_API_TOKEN=... herald
#
# ---------------------------------------------------------------------------
# Builder stage
# ---------------------------------------------------------------------------
# The crate declares rust-version = "1.94" (edition 2024). rust:1-bookworm
# follows the latest stable 1.x release, so it satisfies that; pin it (for
# example rust:1.94-bookworm) if you need reproducible builds. The builder must
# stay on bookworm so the binary's glibc matches the runtime image below.
FROM rust:1-bookworm AS builder

WORKDIR /build

# sqlx's query macros must never try to reach a database during the image
# build. If checked macros (query!, query_as!) are introduced, commit the
# .sqlx/ directory (cargo sqlx prepare) and COPY it in before the final build.
ENV SQLX_OFFLINE=true \
    CARGO_TERM_COLOR=never

# 1) Dependencies only: build the locked dependency graph against placeholder
#    sources, so this layer is reused until Cargo.toml or Cargo.lock changes.
#    (Explicit [[test]]/[[bench]]/[[example]] targets added to
#    Cargo.toml would need their files copied or stubbed here as well.)
# .cargo/config.toml sets how mimalloc is compiled (src/allocator.rs), build.rs how the binary is
# linked (its relocations packed): both before the first build.
COPY Cargo.toml Cargo.lock build.rs ./
COPY .cargo ./.cargo
# Every [[bench]] of Cargo.toml must exist for cargo to read the manifest: a stub each, kept for
# the real build below, which builds only the herald binary (src/config/deploy.rs checks the list).
RUN mkdir src benches \
 && echo 'fn main() {}' > src/main.rs \
 && for bench in tick resend ui source email embedded dkim render; do \
      echo 'fn main() {}' > "benches/$bench.rs"; \
    done \
 && touch src/lib.rs \
 && cargo build --release --locked --bin herald \
 && rm -rf src

# 2) The real sources. COPY keeps the files' original modification times,
#    which can be older than the placeholder build above, so touch them to make
#    sure cargo rebuilds the herald crate itself instead of keeping the stub.
COPY src ./src
COPY migrations ./migrations
COPY templates ./templates
# config/default.toml is compiled in (include_str!).
COPY config ./config
RUN find src -name '*.rs' -exec touch {} + \
 && cargo build --release --locked --bin herald \
 && strip target/release/herald \
 && ./target/release/herald --help > /dev/null

# ---------------------------------------------------------------------------
# Runtime stage
# ---------------------------------------------------------------------------
FROM debian:bookworm-slim AS runtime

# ca-certificates: lettre verifies SMTP TLS certificates with the system roots.
# Unpinned on purpose: the bookworm archive only serves its current version.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/*

RUN groupadd --gid 10001 herald \
 && useradd --uid 10001 --gid herald --home-dir /app \
        --no-create-home --shell /usr/sbin/nologin herald

WORKDIR /app

# Without SMTP_URL, emails are written to /app/outbox: it must be the herald user's.
RUN mkdir -p /app/outbox && chown herald:herald /app/outbox

COPY --from=builder /build/target/release/herald /usr/local/bin/herald
COPY --from=builder /build/templates /app/templates

# config/default.toml is compiled into the binary. The image's own settings (listen on every
# interface, the sender) are in config/docker.toml, read through HERALD_CONFIG;
# docker-compose.yml mounts the same file at the same path. Environment variables win over it.
COPY config/docker.toml /etc/herald/herald.toml
ENV HERALD_CONFIG=/etc/herald/herald.toml

# uid/gid 10001 (created above); use --user 10001:10001 where a numeric id is required.
# hadolint ignore=DL3066
USER herald

EXPOSE 8080

# SIGTERM asks herald for a graceful shutdown; docker-compose.yml allows it
# 30s (stop_grace_period) before SIGKILL.
STOPSIGNAL SIGTERM

# `herald healthcheck` GETs http://127.0.0.1:8080/healthz and exits 0 or 1,
# so the image needs no curl/wget.
HEALTHCHECK --interval=10s --timeout=5s --start-period=20s --retries=3 \
    CMD ["herald", "healthcheck"]

ENTRYPOINT ["herald"]
CMD ["run"]
