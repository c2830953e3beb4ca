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
# Each email in an iframe of the exact width: a desktop Chromium window has a minimum width
# larger than a phone's, and a page's @media rules see the frame's width, not the window's.
frames=$(mktemp -d)
trap 'rm -rf "$frames"' EXIT
for kind_dir in tests/golden/*/; do
    kind=$(basename "$kind_dir")
    sample=$(ls "$kind_dir" | grep -v '\.' | head -1)
    html="$PWD/$kind_dir$sample/body.html"
    for width in 1024 375; do
        frame="$frames/$kind-$width.html"
        printf '<!doctype html><html><body style="margin:0"><iframe src="file://%s" style="border:0;width:%spx;height:900px"></iframe></body></html>' \
            "$html" "$width" >"$frame"
        chromium --headless --no-sandbox --disable-gpu --hide-scrollbars \
            --allow-file-access-from-files --force-device-scale-factor=1 \
            --window-size="$width,900" --screenshot="$out/$kind-$width.png" "file://$frame" \
            >/dev/null 2>&1
        echo "$out/$kind-$width.png ($kind/$sample)"
    done
done
