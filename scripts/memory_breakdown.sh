#!/usr/bin/env bash
# Memory breakdown (guide §5.3): ./scripts/memory_breakdown.sh
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/_hft.sh
source scripts/_hft.sh

usage() {
  cat >&2 <<'EOF'
usage: ./scripts/memory_breakdown.sh [--url URL] [--pid-file FILE]

Where the daemon's memory is (guide §5.3 "Check actual usage"): resident memory split into
anonymous (Python objects, heap), file-backed (code, mapped files) and shared; peak resident;
swap; virtual; against its cgroup limit (the unit's MemoryMax) and the host's memory; and what
the daemon holds: order books (orderbook_memory_mb) and orders (order_count).
  --url URL        the daemon's API (default $HFT_URL or http://127.0.0.1:8080)
  --pid-file FILE  the daemon's pid file (default: the config's daemon.pid_file, else /var/run/hft_system.pid)
  --config FILE    the daemon's config (default config/production.json)
Exit status: 0, 2 the daemon is not running.
EOF
}
case "${1:-}" in -h | --help) usage; exit 0 ;; esac
exec "$HFT" ops memory "$@"
