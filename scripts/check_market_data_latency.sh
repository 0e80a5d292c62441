#!/usr/bin/env bash
# Market data staleness (guide §3.2): ./scripts/check_market_data_latency.sh
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/_hft.sh
source scripts/_hft.sh

usage() {
  cat >&2 <<'EOF'
usage: ./scripts/check_market_data_latency.sh [--url URL] [--config FILE]

Data age of every book the daemon keeps (GET /api/v1/status: .exchanges[].books[].age_ms): stale
when older than the venue's stale_data_timeout_s (guide §3.2: 5 seconds), invalid when the book
is not in sync; then the market-data handling latency (P50/P99/P999 from /api/v1/metrics; the
guide's target is < 100 us) and the market-data queue depth.
  --url URL        the daemon's API (default $HFT_URL or http://127.0.0.1:8080)
  --pid-file FILE  the daemon's pid file (default: the config's daemon.pid_file, else /var/run/hft_system.pid)
  --config FILE    the daemon's config (default config/production.json)
Exit status: 0 fresh, 1 a book is stale, invalid or has no data, 2 the daemon does not answer.
EOF
}
case "${1:-}" in -h | --help) usage; exit 0 ;; esac
exec "$HFT" ops md-latency "$@"
