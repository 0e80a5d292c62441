#!/usr/bin/env bash
# Memory leak check (guide §5.3): ./scripts/check_memory_leak.sh
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/_hft.sh
source scripts/_hft.sh

usage() {
  cat >&2 <<'EOF'
usage: ./scripts/check_memory_leak.sh [--samples N] [--interval S] [--url URL] [--pid-file FILE]

Samples the daemon's resident memory N times (default 6), S seconds apart (default 5), and
reports steady growth (every sample at or above the last, more than 1 MiB in all) with its rate.
A short window cannot tell a leak from a cache warming up: to confirm, take heap dumps minutes
apart (kill -USR1 $(cat /var/run/hft_system.pid)) and run ./scripts/find_memory_leaks.sh.
  --url URL        the daemon's API (default $HFT_URL or http://127.0.0.1:8080)
  --pid-file FILE  the daemon's pid file (default: the config's daemon.pid_file, else /var/run/hft_system.pid)
  --config FILE    the daemon's config (default config/production.json)
Exit status: 0 no steady growth, 1 growing, 2 the daemon is not running.
EOF
}
case "${1:-}" in -h | --help) usage; exit 0 ;; esac
exec "$HFT" ops memory-leak "$@"
