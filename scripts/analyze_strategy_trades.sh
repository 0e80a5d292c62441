#!/usr/bin/env bash
# Trade analysis over recent runs (guide 9.2): ./scripts/analyze_strategy_trades.sh my_strategy --days=7
# Aggregates every run of the strategy under $HFT_RUNS_ROOT (default ./runs) in the last N days.
# Extra options go to `hft report trades` (--now T, --out DIR, --runs-root DIR).
set -euo pipefail
# shellcheck source=scripts/_hft.sh
source "$(dirname "${BASH_SOURCE[0]}")/_hft.sh"

usage() { echo "usage: $0 STRATEGY_ID [--days=N] [--now T] [--out DIR] [--runs-root DIR]" >&2; }
if [[ $# -lt 1 || "$1" == -* ]]; then
  [[ "${1:-}" == "-h" || "${1:-}" == "--help" ]] && { usage; exit 0; }
  usage
  exit 2
fi
strategy="$1"
shift
root_args=()
case " $* " in
  *" --runs-root"*) ;;
  *) root_args=(--runs-root "${HFT_RUNS_ROOT:-runs}") ;;
esac
exec "$HFT" report trades "$strategy" ${root_args[@]+"${root_args[@]}"} "$@"
