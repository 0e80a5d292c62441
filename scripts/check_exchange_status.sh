#!/usr/bin/env bash
# Exchange status (guide §8.4): ./scripts/check_exchange_status.sh [--url URL] [--config FILE]
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/_hft.sh
source scripts/_hft.sh

usage() {
  cat >&2 <<'EOF'
usage: ./scripts/check_exchange_status.sh [--url URL] [--config FILE]

For every exchange (guide §8.4 "Check exchange status"): the running daemon's connection (from
GET /api/v1/status) and the venue's own answer: its system-status endpoint where it has one
(Binance /sapi/v1/system/status: normal or maintenance) and its ping (Binance /api/v3/ping), at
the rest_url of its exchange config (config/exchanges/<venue>.json, or $<VENUE>_REST_URL).
  --url URL        the daemon's API (default $HFT_URL or http://127.0.0.1:8080)
  --pid-file FILE  the daemon's pid file (default: the config's daemon.pid_file, else /var/run/hft_system.pid)
  --config FILE    the daemon's config (default config/production.json)
Exit status: 0 all connected and up, 1 an exchange is disconnected, down or in maintenance, 2 bad arguments.
EOF
}
case "${1:-}" in -h | --help) usage; exit 0 ;; esac
exec "$HFT" ops exchange-status "$@"
