#!/usr/bin/env bash
# Scores every golden email (each sample of each kind, in every locale, DKIM-signed, as SMTP
# sends it) with SpamAssassin's local rules, and fails when one scores 1.0 or more.
#
#   bash bench/deliverability.sh
#
# Installs SpamAssassin from Debian's packages when it is missing (run as root, or install
# `spamassassin` first). Local rules only (-L): no network tests, no DNS blocklists, so the score
# is about the message itself, not the sending IP. The messages come from the golden test, which
# writes them when HERALD_EML_DIR is set.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v spamassassin >/dev/null; then
    echo "installing spamassassin from Debian's packages" >&2
    apt-get install -y -qq spamassassin >/dev/null || {
        apt-get update -qq && apt-get install -y -qq spamassassin >/dev/null
    }
fi

dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
HERALD_EML_DIR="$dir" cargo test --quiet --locked --test golden \
    every_golden_email_is_a_well_formed_message >/dev/null

limit=1.0
worst=0
bad=0
printf '%-55s %6s  %s\n' email score rules
for eml in "$dir"/*.eml; do
    report=$(spamassassin -L -t <"$eml" 2>/dev/null)
    status=$(printf '%s\n' "$report" | sed -n '/^X-Spam-Status:/,/^[^[:space:]]/p' | head -n -1 | tr -d '\n\t')
    [ -n "$status" ] || status=$(printf '%s\n' "$report" | grep -m1 '^X-Spam-Status:')
    score=$(printf '%s' "$status" | sed -n 's/.*score=\([-0-9.]*\).*/\1/p')
    rules=$(printf '%s' "$status" | sed -n 's/.*tests=\([^ ]*\).*/\1/p')
    printf '%-55s %6s  %s\n' "$(basename "$eml" .eml)" "$score" "$rules"
    if awk -v s="$score" -v l="$limit" 'BEGIN { exit !(s >= l) }'; then
        bad=$((bad + 1))
    fi
    if awk -v s="$score" -v w="$worst" 'BEGIN { exit !(s > w) }'; then
        worst=$score
    fi
done
count=$(ls "$dir"/*.eml | wc -l)
echo "emails=$count worst_score=$worst at_or_above_${limit}=$bad spamassassin=$(spamassassin --version | head -1 | awk '{print $3}')"
[ "$bad" -eq 0 ]
