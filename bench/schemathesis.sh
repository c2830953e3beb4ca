#!/usr/bin/env bash
# Schemathesis against the running daemon, driven by the daemon's own OpenAPI document
# (/api/openapi.json): a database of its own seeded with demo users, every email discarded (the
# null provider), then `st run` with the API token, and its summary printed.
#
#   bash bench/schemathesis.sh            # MAX_EXAMPLES=50 by default
#
# Needs PostgreSQL and Redis on 127.0.0.1 (or DATABASE_URL / REDIS_URL's servers) and Python 3:
# Schemathesis is installed into a venv under target/ on the first run (`pip install
# schemathesis`). Writes target/schemathesis/ (the document, the daemon's log, the reports).
set -euo pipefail
cd "$(dirname "$0")/.."
target=${CARGO_TARGET_DIR:-target}
out="$target/schemathesis"
mkdir -p "$out"
venv="$target/schemathesis-venv"
if [ ! -x "$venv/bin/st" ]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet schemathesis
fi
cargo build --quiet --bin herald
herald="$target/debug/herald"

port=${PORT:-18089}
token=schemathesis-token-0123456789
db=herald_schemathesis
pg=${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}
export DATABASE_URL="${pg%/*}/$db"
export REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379/0}
export HERALD_API_TOKEN=$token
export HERALD_HTTP_ADDR=127.0.0.1:$port
export HERALD__QUEUE__NAME=herald:schemathesis
export HERALD__SCHEDULES__ENABLED=false
export HERALD__MAIL__PROVIDERS='["null"]'
psql "$pg" -qc "DROP DATABASE IF EXISTS $db" >/dev/null
"$herald" seed --users 50 >/dev/null
"$herald" run >"$out/daemon.log" 2>&1 &
daemon=$!
trap 'kill $daemon 2>/dev/null; wait $daemon 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do
    curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && break
    sleep 0.2
done
curl -sf -H "Authorization: Bearer $token" "http://127.0.0.1:$port/api/openapi.json" >"$out/openapi.json"

# Every check but the one that wants a request without a token refused on every operation (the
# open routes, /healthz, /readyz, /unsubscribe and the webhook, are open on purpose), and every
# phase but "coverage", whose requests without or with a wrong token would have this address
# answered 429 for a minute after 10 of them (the limit on failed tokens), and the rest untested.
set +e
"$venv/bin/st" run "$out/openapi.json" \
    --url "http://127.0.0.1:$port" \
    -H "Authorization: Bearer $token" \
    --max-examples "${MAX_EXAMPLES:-50}" \
    --exclude-checks ignored_auth \
    --phases examples,fuzzing,stateful \
    --request-timeout 10 \
    --report junit --report-dir "$out" \
    2>&1 | tee "$out/summary.txt"
status=${PIPESTATUS[0]}
set -e
echo "schemathesis exit status: $status (summary in $out/summary.txt)"
exit "$status"
