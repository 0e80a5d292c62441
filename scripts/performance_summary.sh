#!/usr/bin/env bash
# Performance summary (guide §5.1): ./scripts/performance_summary.sh
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/_hft.sh
source scripts/_hft.sh

usage() {
  cat >&2 <<'EOF'
usage: ./scripts/performance_summary.sh [--url URL] [--pid-file FILE] [--interval S]

System metrics of the running daemon (guide §5.1 "Check system metrics"): latency per stage
(market data, risk check, order submit, tick to order, venue ack: P50/P99/P999 in us against the
guide's targets), the trading process's CPU sampled over --interval seconds (default 1; §5.2:
> 80% sustained is high), resident memory, threads, open file descriptors, event-loop lag, queue
depth, books' memory, orders by status and fills.
  --url URL        the daemon's API (default $HFT_URL or http://127.0.0.1:8080)
  --pid-file FILE  the daemon's pid file (default: the config's daemon.pid_file, else /var/run/hft_system.pid)
  --config FILE    the daemon's config (default config/production.json)
Exit status: 0, or 1 when the tick-to-order P99 is over 1 ms; 2 the daemon does not answer.
EOF
}
case "${1:-}" in -h | --help) usage; exit 0 ;; esac
exec "$HFT" ops perf "$@"
