#!/usr/bin/env bash
# Screenshots of every kind's email (its first sample, English, as the golden files hold it) at
# 1,024 and 375 px wide, by headless Chromium, into docs/screenshots/<kind>-<width>.png.
#
#   bash bench/screenshots.sh
#
# Needs Debian's chromium (`apt-get install -y chromium`). Run `cargo test --test golden` first
# if the templates changed: the pictures are of tests/golden/, as stored.
set -euo pipefail
cd "$(dirname "$0")/.."
out=docs/screenshots
mkdir -p "$out"
for kind_dir in tests/golden/*/; do
    kind=$(basename "$kind_dir")
    sample=$(ls "$kind_dir" | grep -v '\.' | head -1)
    html="$PWD/$kind_dir$sample/body.html"
    for width in 1024 375; do
        chromium --headless --no-sandbox --disable-gpu --hide-scrollbars \
            --force-device-scale-factor=1 --window-size="$width,900" \
            --screenshot="$out/$kind-$width.png" "file://$html" >/dev/null 2>&1
        echo "$out/$kind-$width.png ($kind/$sample)"
    done
done
