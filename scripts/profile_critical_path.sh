#!/usr/bin/env bash
# Critical path profile (guide §5.1): ./scripts/profile_critical_path.sh [--cpu SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/_hft.sh
source scripts/_hft.sh

usage() {
  cat >&2 <<'EOF'
usage: ./scripts/profile_critical_path.sh [--url URL] [--cpu SECONDS]

The hot path stage by stage (guide §5.1 step 4): market-data handling, risk check and order
submit latencies (P50/P99/P999 from the daemon's histograms), each stage's share of the
tick-to-order P99, the slowest stage against its budget. With --cpu SECONDS, also a py-spy CPU
profile of the trading process for that long, summarised (./scripts/profile_cpu.sh +
./scripts/analyze_cpu_profile.sh).
  --url URL   the daemon's API (default $HFT_URL or http://127.0.0.1:8080)
Exit status: 0, or 1 when the tick-to-order P99 is over 1 ms; 2 the daemon does not answer.
EOF
}
case "${1:-}" in -h | --help) usage; exit 0 ;; esac
args=()
cpu=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --cpu) [[ $# -ge 2 ]] || { usage; exit 2; }; cpu="$2"; shift 2 ;;
    --cpu=*) cpu="${1#--cpu=}"; shift ;;
    -h | --help) usage; exit 0 ;;
    *) args+=("$1"); shift ;;
  esac
done
rc=0
"$HFT" ops critical-path ${args[@]+"${args[@]}"} || rc=$?
if [[ -n "$cpu" && $rc -ne 2 ]]; then
  profile="$("$HFT" profile cpu "$cpu" ${args[@]+"${args[@]}"})"
  "$HFT" profile analyze "$profile"
fi
exit "$rc"
