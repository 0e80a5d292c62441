#!/usr/bin/env bash
# Heap dump analysis (guide §5.3): ./scripts/analyze_heap.sh /tmp/hft_heap_*.dump
set -euo pipefail
here="$PWD" # relative FILE arguments are the operator's, from where they ran this
cd "$(dirname "$0")/.."
# shellcheck source=scripts/_hft.sh
source scripts/_hft.sh

usage() {
  cat >&2 <<'EOF'
usage: ./scripts/analyze_heap.sh FILE... [--top N]

Reads the heap summaries the daemon writes on SIGUSR1 (kill -USR1 $(cat /var/run/hft_system.pid);
files /tmp/hft_heap_*.dump, tracemalloc allocation sites) and prints, for each, the largest
allocation sites (file:line, size, count). Several files (the guide's glob) are read in order.
  --top N   rows per dump (default 20)
Exit status: 0, 2 a file is missing or not a heap dump.
EOF
}
case "${1:-}" in -h | --help) usage; exit 0 ;; esac
hft_file_args "$here" "$@" || { usage; exit 2; }
exec "$HFT" heap analyze "${HFT_ARGS[@]}"
