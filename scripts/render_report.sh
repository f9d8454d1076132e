#!/usr/bin/env bash
# Render an aslproc HTML report to a PNG with headless Chromium (what a browser shows).
#
# Usage: scripts/render_report.sh REPORT.html OUT.png [WIDTH] [HEIGHT]
#
# Needs Chromium; on Debian/Ubuntu:  apt-get update && apt-get install -y chromium
# The page is self-contained (figures embedded), so no network is used; the flags below
# also stop Chromium's own background traffic. A throw-away profile is used and removed.
set -euo pipefail

if [ $# -lt 2 ]; then
    echo "usage: $0 REPORT.html OUT.png [WIDTH=1200] [HEIGHT=4000]" >&2
    exit 2
fi
report=$(realpath "$1")
out=$(realpath -m "$2")
width=${3:-1200}
height=${4:-4000}
browser=$(command -v chromium || command -v chromium-browser || command -v google-chrome || true)
if [ -z "$browser" ]; then
    echo "$0: Chromium not found (apt-get update && apt-get install -y chromium)" >&2
    exit 1
fi
profile=$(mktemp -d)
trap 'rm -rf "$profile"' EXIT
"$browser" --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
    --disable-background-networking --disable-component-update --disable-sync \
    --hide-scrollbars --user-data-dir="$profile" --screenshot="$out" \
    --window-size="${width},${height}" "file://${report}" 2>/dev/null
test -s "$out"
echo "$out"
