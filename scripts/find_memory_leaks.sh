#!/usr/bin/env bash
# Leak finder (guide §5.3): ./scripts/find_memory_leaks.sh /tmp/hft_heap_*.dump
set -euo pipefail
here="$PWD" # relative FILE arguments are the operator's, from where they ran this
cd "$(dirname "$0")/.."
# shellcheck source=scripts/_hft.sh
source scripts/_hft.sh

usage() {
  cat >&2 <<'EOF'
usage: ./scripts/find_memory_leaks.sh FILE FILE... [--top N]

Compares successive heap dumps (written by the daemon on SIGUSR1, taken minutes apart) and prints
the allocation sites that grew, by growth in bytes, first dump to last, and whether they grew in
every step (steady growth is what a leak looks like).
  --top N   rows (default 20)
Exit status: 0 nothing grows steadily, 1 a site grew in every step, 2 fewer than two dumps or a bad file.
EOF
}
case "${1:-}" in -h | --help) usage; exit 0 ;; esac
hft_file_args "$here" "$@" || { usage; exit 2; }
exec "$HFT" heap leaks "${HFT_ARGS[@]}"
