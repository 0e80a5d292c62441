#!/usr/bin/env bash
# Latency report (guide 5.1): ./scripts/latency_report.sh [RUN_DIR] [--out DIR]
# Without RUN_DIR, reports on the latest run under $HFT_RUNS_ROOT (default ./runs).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(dirname "$here")"
if [[ -x "$repo/.venv/bin/hft" ]]; then
  HFT="$repo/.venv/bin/hft"
elif command -v hft >/dev/null 2>&1; then
  HFT="$(command -v hft)"
else
  echo "error: hft not found: install the project (pip install -e .) or create $repo/.venv" >&2
  exit 2
fi

if [[ "${1:-}" == "-h" || "${1:-}" == "--help" ]]; then
  echo "usage: $0 [RUN_DIR] [--out DIR]" >&2
  exit 0
fi
if [[ $# -ge 1 && "$1" != -* ]]; then
  run="$1"
  shift
else
  run="$("$HFT" report latest-run --runs-root "${HFT_RUNS_ROOT:-runs}")"
fi
exec "$HFT" report latency "$run" "$@"
