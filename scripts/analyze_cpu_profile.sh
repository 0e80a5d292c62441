#!/usr/bin/env bash
# CPU profile analysis (guide §5.2): ./scripts/analyze_cpu_profile.sh [PROFILE]
set -euo pipefail
here="$PWD" # a relative PROFILE is the operator's, from where they ran this
cd "$(dirname "$0")/.."
# shellcheck source=scripts/_hft.sh
source scripts/_hft.sh

usage() {
  cat >&2 <<'EOF'
usage: ./scripts/analyze_cpu_profile.sh [PROFILE] [--dir DIR] [--top N]

"Check for hot functions" (guide §5.2): reads a profile written by ./scripts/profile_cpu.sh (by
default the latest /tmp/hft_cpu_*.txt, or the latest in --dir) and prints the functions with the
most samples: by own time (the function itself was on CPU) and by total time (it or what it
called), as a share of all samples (py-spy samples only running code: idle time is not in it).
Exit status: 0, 2 no profile found or not a profile.
EOF
}
args=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    -h | --help) usage; exit 0 ;;
    --top) [[ $# -ge 2 ]] || { usage; exit 2; }; args+=("$1" "$2"); shift 2 ;;
    --dir) [[ $# -ge 2 ]] || { usage; exit 2; }; d="$2"; [[ "$d" == /* ]] || d="$here/$d"; args+=("$1" "$d"); shift 2 ;;
    -*) args+=("$1"); shift ;;
    /*) args+=("$1"); shift ;;
    *) args+=("$here/$1"); shift ;;
  esac
done
exec "$HFT" profile analyze ${args[@]+"${args[@]}"}
