#!/usr/bin/env bash
# Latency report (guide 5.1): ./scripts/latency_report.sh [RUN_DIR] [--out DIR]
# Without RUN_DIR, reports on the latest run under $HFT_RUNS_ROOT (default ./runs).
set -euo pipefail
# shellcheck source=scripts/_hft.sh
source "$(dirname "${BASH_SOURCE[0]}")/_hft.sh"

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
