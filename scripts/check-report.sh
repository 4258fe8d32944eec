#!/usr/bin/env bash
# Renders a report.html of `dynamoe report` in headless Chromium, checks the status the page
# records (console errors and warnings, uncaught exceptions, charts drawn) and takes a
# screenshot of it.
#
#   scripts/check-report.sh runs/dynamoe/report.html [runs/dynamoe/report.png]
#
# Exit code 0 when the page says "ok errors=0 warnings=0", 1 otherwise (the page's first
# problem is printed), 2 for bad arguments or no chromium. tests/test_report.cpp does the same
# for a tiny sweep's report under `make test`.
set -euo pipefail

if [ $# -lt 1 ] || [ $# -gt 2 ]; then
  echo "usage: scripts/check-report.sh REPORT.html [SCREENSHOT.png]" >&2
  exit 2
fi
page=$(realpath -e -- "$1" 2>/dev/null) || { echo "check-report: '$1' does not exist" >&2; exit 2; }
shot=${2:-${page%.html}.png}
command -v chromium >/dev/null 2>&1 || { echo "check-report: chromium is not installed (scripts/install-deps.sh installs it)" >&2; exit 2; }

profile=$(mktemp -d)
trap 'rm -rf "$profile"' EXIT
flags=(--headless --no-sandbox --disable-gpu --hide-scrollbars "--user-data-dir=$profile" --virtual-time-budget=30000)

dom=$(chromium "${flags[@]}" --dump-dom "file://$page" 2>/dev/null)
status=$(printf '%s' "$dom" | sed -n 's/.*id="report-status">\([^<]*\)<.*/\1/p' | head -1)
# (grep finds nothing in a page without charts or gallery: a count of 0, not a failure)
charts=$(printf '%s' "$dom" | { grep -o 'class="marks"' || true; } | wc -l)
thumbs=$(printf '%s' "$dom" | { grep -o 'figure class="thumb"' || true; } | wc -l)

chromium "${flags[@]}" --window-size=1280,4000 "--screenshot=$shot" "file://$page" >/dev/null 2>&1
[ -s "$shot" ] || { echo "check-report: chromium wrote no screenshot to $shot" >&2; exit 1; }

echo "check-report: $page: status '${status:-none}', $charts charts drawn, $thumbs gallery images; screenshot $shot ($(stat -c %s "$shot") bytes)"
if [ "$status" != "ok errors=0 warnings=0" ]; then
  if [ -z "$status" ]; then
    echo "check-report: FAILED: the page recorded no status (its script did not finish: not a dynamoe report, or it stopped early)" >&2
  else
    echo "check-report: FAILED: the page reports '$status'" >&2
  fi
  exit 1
fi
