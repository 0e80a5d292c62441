#!/usr/bin/env bash
# Strategy post-mortem (guide 9.2): ./scripts/strategy_post_mortem.sh my_strategy [--run DIR] [--out DIR]
# Without --run, reports on the latest run under $HFT_RUNS_ROOT (default ./runs) that contains the strategy.
set -euo pipefail
# shellcheck source=scripts/_hft.sh
source "$(dirname "${BASH_SOURCE[0]}")/_hft.sh"

usage() { echo "usage: $0 STRATEGY_ID [--run RUN_DIR] [--out DIR]" >&2; }
if [[ $# -lt 1 || "$1" == -* ]]; then
  [[ "${1:-}" == "-h" || "${1:-}" == "--help" ]] && { usage; exit 0; }
  usage
  exit 2
fi
strategy="$1"
shift
run=""
extra=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --run) [[ $# -ge 2 ]] || { usage; exit 2; }; run="$2"; shift 2 ;;
    --run=*) run="${1#--run=}"; shift ;;
    -h|--help) usage; exit 0 ;;
    *) extra+=("$1"); shift ;;
  esac
done
if [[ -z "$run" ]]; then
  runs_root="${HFT_RUNS_ROOT:-runs}"
  run="$("$HFT" report latest-run --strategy "$strategy" --runs-root "$runs_root")"
fi
exec "$HFT" report post-mortem "$run" --strategy "$strategy" ${extra[@]+"${extra[@]}"}
