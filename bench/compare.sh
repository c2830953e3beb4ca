#!/usr/bin/env bash
# Herald beside BullMQ on this machine, against the same counting SMTP sink, and a table of both.
#
#   bash bench/compare.sh                          # full size: 20,000 users, 3 repetitions
#   USERS=2000 FIRE_USERS=5000 LOAD_EMAILS=1000 LAT_N=1000 bash bench/compare.sh   # a quick run
#
# What it does:
#   0. starts Redis and PostgreSQL on 127.0.0.1 when they do not answer;
#   1. builds Herald and benches/email.rs in release;
#   2. builds the peers' Rust SMTP sink (smtp-sink-rs) and installs BullMQ with the peers' setup.sh;
#   3. runs Herald's phases (benches/email.rs: email, null, latency, fire100k, plan_under_load)
#      with SINK_CMD set to that sink;
#   3b. runs the same email phase on one SQLite file (benches/embedded.rs: no PostgreSQL, no
#      Redis; EMBEDDED=0 skips it), the same USERS, against the same sink;
#   4. runs BullMQ's email phase (the peers' run_bullmq.sh) with as many emails as Herald's email
#      phase sent, against the same sink;
#      on a free port (SMTP_PORT), with nodemailer's default of 5 SMTP connections, then again
#      with Herald's default of 16 (SMTP_POOL=16), so one row compares the same connection count;
#   5. prints a table: each figure's median [min–max] over the repetitions, and Herald ÷ BullMQ
#      where BullMQ has the same figure.
#
# Variables (defaults in brackets):
#   PEERS_DIR      the peers' benchmark scripts (run_bullmq.sh, setup.sh, smtp-sink-rs/)
#                  [../shared/peers from the repository's root]. Missing: Herald runs alone, with
#                  its in-repo sink, and the BullMQ half is skipped.
#   PEERS_INSTALL  where the peers' setup.sh installs Node modules; the peers' own scripts call this
#                  folder PEERS_DIR, so it is handed to them under that name [/tmp/peers]
#   OUT_DIR        logs and raw output [/tmp/herald-compare/<UTC time>]
#   REPS [3], PHASES [all five], USERS [20000], LAT_N [10000], LAT_RATE [1000],
#   FIRE_USERS [100000], LOAD_EMAILS [20000], CONC, POOL: handed to benches/email.rs (see its
#   header). EMAIL_CONC [50]: BullMQ's worker concurrency.
#   CARGO_BUILD_JOBS: cargo's parallelism, as usual.
#   REPORT_ONLY    a finished run's OUT_DIR: print its table again (after a change to this table's
#                  rows), measuring nothing.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PEERS_DIR=${PEERS_DIR:-$ROOT/../shared/peers}
PEERS_INSTALL=${PEERS_INSTALL:-/tmp/peers}
OUT_DIR=${REPORT_ONLY:-${OUT_DIR:-/tmp/herald-compare/$(date -u +%Y%m%dT%H%M%SZ)}}
export REPS=${REPS:-3}
mkdir -p "$OUT_DIR"

say() { echo "== $*" >&2; }

# free_port: a TCP port nothing listens on now, from the kernel (bind to port 0), so a sink never
# collides with another program (a fixed 2525 did). Without python3, the first of 20000-29999
# that refuses a connection.
free_port() {
  if command -v python3 >/dev/null; then
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
    return
  fi
  local p
  for p in $(seq 20000 29999); do
    (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null || { echo "$p"; return; }
  done
  echo "no free port in 20000-29999" >&2
  return 1
}

# Herald's mail.pool_size by default (config/default.toml), and nodemailer's maxConnections.
HERALD_POOL=${POOL:-16}
NODEMAILER_POOL=5
loud() {
  echo >&2
  echo "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!" >&2
  echo "!! $*" >&2
  echo "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!" >&2
  echo >&2
}

if [ -z "${REPORT_ONLY:-}" ]; then
# --- 0. Services, started as .ci/run starts them when they do not answer ----------------------
if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
  say "starting Redis on 127.0.0.1:6379 (no persistence)"
  mkdir -p /var/lib/redis
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no --dir /var/lib/redis
fi
if ! pg_isready -h 127.0.0.1 -p 5432 -q; then
  say "starting PostgreSQL on 127.0.0.1:5432"
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql)" main start
fi
for _ in $(seq 1 30); do
  redis-cli -h 127.0.0.1 ping >/dev/null 2>&1 && pg_isready -h 127.0.0.1 -p 5432 -q && break
  sleep 1
done

# --- 1. Herald ----------------------------------------------------------------------------------
say "building Herald and benches/email.rs (release)"
(cd "$ROOT" && cargo bench --locked --no-run --bench email)

# --- 2. The sink and BullMQ ---------------------------------------------------------------------
SINK=""
BULLMQ=1
if [ ! -f "$PEERS_DIR/run_bullmq.sh" ]; then
  loud "no peers' scripts at PEERS_DIR=$PEERS_DIR: BullMQ is SKIPPED, Herald runs alone with its in-repo sink. Set PEERS_DIR to the folder holding run_bullmq.sh."
  BULLMQ=0
else
  PEERS_DIR=$(cd "$PEERS_DIR" && pwd)
  if [ -f "$PEERS_DIR/smtp-sink-rs/Cargo.toml" ]; then
    say "building the peers' Rust SMTP sink"
    # The peers' folder may be read-only: the build goes to a folder of its own.
    CARGO_TARGET_DIR="$PEERS_INSTALL/smtp-sink-target" \
      cargo build --release --locked --manifest-path "$PEERS_DIR/smtp-sink-rs/Cargo.toml"
    SINK="$PEERS_INSTALL/smtp-sink-target/release/smtp-sink"
  else
    loud "no smtp-sink-rs in $PEERS_DIR: both sides use the peers' default sink (Python), which tops out near 1,500 messages/s"
  fi
  command -v node >/dev/null && command -v npm >/dev/null || {
    echo "Node.js and npm are needed for BullMQ: apt-get install -y nodejs npm" >&2
    exit 1
  }
  say "installing BullMQ with the peers' setup.sh (into $PEERS_INSTALL)"
  PEERS_DIR="$PEERS_INSTALL" bash "$PEERS_DIR/setup.sh" >"$OUT_DIR/setup.log" 2>&1 || {
    echo "the peers' setup.sh failed; see $OUT_DIR/setup.log" >&2
    tail -20 "$OUT_DIR/setup.log" >&2
    exit 1
  }
  grep -E '^(bullmq|ioredis|nodemailer|node) ' "$OUT_DIR/setup.log" | sed 's/^/# /' >&2 || true
fi

# --- 3. Herald's phases -------------------------------------------------------------------------
say "Herald: benches/email.rs, REPS=$REPS${SINK:+, SINK_CMD=$SINK}"
(cd "$ROOT" && SINK_CMD="$SINK" cargo bench --locked --bench email) | tee "$OUT_DIR/herald.txt"

if [ "${EMBEDDED:-1}" = 1 ]; then
  say "Herald embedded: benches/embedded.rs, USERS=${USERS:-20000} REPS=$REPS${SINK:+, SINK_CMD=$SINK}"
  (cd "$ROOT" && SINK_CMD="$SINK" cargo bench --locked --bench embedded) | tee -a "$OUT_DIR/herald.txt"
fi

# The email phase's count of emails, for BullMQ's run of the same size.
EMAIL_N=$(awk '/^peer=herald phase=email /{for (i = 1; i <= NF; i++) if ($i ~ /^n=/) print substr($i, 3)}' \
  "$OUT_DIR/herald.txt" | tail -1)
EMAIL_N=${EMAIL_N:-10000}

# --- 4. BullMQ's email phase --------------------------------------------------------------------
if [ "$BULLMQ" = 1 ]; then
  port=$(free_port)
  say "BullMQ: run_bullmq.sh PHASES=email EMAIL_N=$EMAIL_N REPS=$REPS SMTP_PORT=$port (nodemailer's $NODEMAILER_POOL connections)${SINK:+, SINK_CMD=$SINK}"
  PEERS_DIR="$PEERS_INSTALL" SINK_CMD="$SINK" PHASES=email EMAIL_N="$EMAIL_N" SMTP_PORT="$port" \
    bash "$PEERS_DIR/run_bullmq.sh" | tee "$OUT_DIR/bullmq.txt"
  port=$(free_port)
  say "BullMQ again with Herald's $HERALD_POOL SMTP connections: SMTP_POOL=$HERALD_POOL SMTP_PORT=$port"
  PEERS_DIR="$PEERS_INSTALL" SINK_CMD="$SINK" PHASES=email EMAIL_N="$EMAIL_N" SMTP_PORT="$port" \
    SMTP_POOL="$HERALD_POOL" bash "$PEERS_DIR/run_bullmq.sh" | tee "$OUT_DIR/bullmq-pool.txt"
else
  : >"$OUT_DIR/bullmq.txt"
  : >"$OUT_DIR/bullmq-pool.txt"
fi

fi # REPORT_ONLY
EMAIL_N=$(awk '/^peer=herald phase=email /{for (i = 1; i <= NF; i++) if ($i ~ /^n=/) print substr($i, 3)}' \
  "$OUT_DIR/herald.txt" | tail -1)
SINK=$(grep -o 'sink=[^ ]*' "$OUT_DIR/herald.txt" | head -1 | cut -d= -f2)
[ "$SINK" = in-repo ] && SINK=""
# When Herald's phases began, and how many repetitions they made, as the run printed them.
WHEN=$(grep -m1 -o '20[0-9][0-9]-[0-9-]*T[0-9][0-9]:[0-9][0-9]' "$OUT_DIR/herald.txt" || date -u +%Y-%m-%dT%H:%M)
REPS=$(grep -m1 -o ' reps=[0-9]*' "$OUT_DIR/herald.txt" | cut -d= -f2 || echo "$REPS")

# --- 5. The table -------------------------------------------------------------------------------
# values FILE PEER PHASE KEY: KEY's value on each per-repetition line ("# rep=…") of that phase.
values() {
  awk -v peer=" peer=$2 " -v phase=" phase=$3 " -v key="$4=" '
    /^# rep=/ && index($0, peer) && index($0, phase) {
      for (i = 1; i <= NF; i++) if (index($i, key) == 1) print substr($i, length(key) + 1)
    }' "$1"
}
# stat3: "median min max" of the numbers on stdin (the median of an even count is the mean of the
# middle two, as the peers compute it); "-" when there are none.
stat3() {
  sort -g | awk '{ a[NR] = $1 } END {
    if (NR == 0) { print "-"; exit }
    m = NR % 2 ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2
    print m, a[1], a[NR] }'
}
# shown "median min max" DIGITS -> "median [min-max]" (ASCII, so printf pads the columns right)
shown() {
  [ "$1" = "-" ] && { echo "-"; return; }
  awk -v s="$1" -v d="$2" 'BEGIN { split(s, v, " "); printf "%.*f [%.*f-%.*f]", d, v[1], d, v[2], d, v[3] }'
}
# row LABEL PHASE KEY DIGITS [BULLMQ_FILE [BULLMQ_PHASE]]: Herald's figure, BullMQ's when it has
# one (from bullmq.txt, or the file given; of the same phase, or the phase given), and their ratio.
row() {
  local h b ratio="-"
  h=$(values "$OUT_DIR/herald.txt" herald "$2" "$3" | stat3)
  b=$(values "${5:-$OUT_DIR/bullmq.txt}" bullmq "${6:-$2}" "$3" | stat3)
  if [ "$h" != "-" ] && [ "$b" != "-" ]; then
    ratio=$(awk -v h="${h%% *}" -v b="${b%% *}" 'BEGIN { if (b + 0 == 0) print "-"; else printf "%.2f", h / b }')
  fi
  [ "$h" = "-" ] && [ "$b" = "-" ] && return
  printf '%-44s %-26s %-26s %s\n' "$1" "$(shown "$h" "$4")" "$(shown "$b" "$4")" "$ratio"
}

# size PHASE KEY: KEY on the summary line of Herald's PHASE ("?" when the phase did not run).
size() {
  awk -v phase="phase=$1" -v key="$2=" '
    /^peer=herald / && index($0, " " phase " ") {
      for (i = 1; i <= NF; i++) if (index($i, key) == 1) v = substr($i, length(key) + 1)
    } END { print v == "" ? "?" : v }' "$OUT_DIR/herald.txt"
}

sink_label=${SINK:+$(basename "$SINK")}
echo
echo "Herald beside BullMQ: median [min-max] of REPS=$REPS, ${WHEN}Z, sink ${sink_label:-in-repo (Herald only)}"
printf '%-44s %-26s %-26s %s\n' "figure" "Herald" "BullMQ" "Herald / BullMQ"
row "email: emails/s (n=$EMAIL_N) (5)" email emails_per_s 0
row "email: emails/s, both $HERALD_POOL SMTP conns (5)" email emails_per_s 0 "$OUT_DIR/bullmq-pool.txt"
row "email: the same, after planning (4)" email send_emails_per_s 0
row "email: peak RSS MB" email peak_rss_mb 1
row "email: Redis commands per email (1)" email redis_cmds_per_email 2
row "email: PostgreSQL commits per email (2)" email pg_commits_per_email 2
row "embedded, one file: emails/s (6)" embedded emails_per_s 0 "$OUT_DIR/bullmq.txt" email
row "embedded: the same, after planning (4)" embedded send_emails_per_s 0
row "embedded: peak RSS MB" embedded peak_rss_mb 1 "$OUT_DIR/bullmq.txt" email
row "null provider: rows marked sent per s (3)" null emails_per_s 0
row "null provider: the same, after planning (4)" null send_emails_per_s 0
row "null provider: peak RSS MB" null peak_rss_mb 1
row "latency, due -> at the sink: p50 ms" latency p50_ms 1
row "latency, due -> at the sink: p99 ms" latency p99_ms 1
row "fire100k: trigger -> last email, s" fire100k secs 2
row "fire100k: emails/s" fire100k emails_per_s 0
row "fire100k: peak RSS MB" fire100k peak_rss_mb 1
row "plan_under_load: weekly_report plan, s" plan_under_load seconds 2
row "plan_under_load: emails sent while planning" plan_under_load emails_during_plan 0
cat <<EOF

Sizes: email and null: $(size email users) users, $(size email n) emails. latency: $(size latency n) emails at $(size latency rate)/s.
fire100k: $(size fire100k users) users, $(size fire100k n) emails. plan_under_load: weekly_report for
$(size plan_under_load users) users ($(size plan_under_load planned) planned) while $(size plan_under_load load_emails) emails are sent.

Herald: from POST …/overdue_summary/trigger (planning included, daemon already running) to the
last message counted at the sink. BullMQ: from the worker's launch (Node's boot included, queue
filled beforehand) to the last sendMail answered. Both send one message per email over SMTP to
the same sink; Herald renders its templates and records each email in PostgreSQL, BullMQ sends a
fixed text.
(1) Redis's total_commands_processed over the run: other clients of the same server count too.
(2) xact_commit of Herald's database from the daemon's start to its exit.
(3) Nothing is sent: rows marked sent by the null provider, up to the last one's sent_at.
(4) From the trigger's answer (planning committed) to the last email: the delivery path alone
    (dispatch, claim, render, send, record, ack), without the planning of the fire.
(5) SMTP connections: the first row with each side's default, Herald $HERALD_POOL (mail.pool_size)
    and BullMQ's nodemailer $NODEMAILER_POOL (maxConnections); the second with BullMQ at Herald's
    $HERALD_POOL (SMTP_POOL), the same count on both sides.
(6) Herald with no PostgreSQL and no Redis: state and queue in one SQLite file (benches/embedded.rs),
    $(size embedded users) users, $(size embedded n) emails, beside BullMQ's first row.
Raw output: $OUT_DIR/herald.txt, $OUT_DIR/bullmq.txt, $OUT_DIR/bullmq-pool.txt
EOF
