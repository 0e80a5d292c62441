#!/usr/bin/env bash
# WebSocket check (guide §3.1): ./scripts/check_websocket.sh binance
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/_hft.sh
source scripts/_hft.sh

usage() {
  cat >&2 <<'EOF'
usage: ./scripts/check_websocket.sh EXCHANGE [--url URL]

Prints "WebSocket connected" when the running daemon's market-data feed for EXCHANGE (e.g.
binance) is connected (GET /api/v1/status: .exchanges.EXCHANGE.status), followed by each book's
state and data age. Otherwise prints why not (guide §3.1: check network and API key, §2.2).
  --url URL   the daemon's API (default $HFT_URL or http://127.0.0.1:8080)
Exit status: 0 connected, 1 not connected or the daemon does not answer, 2 unknown exchange or bad arguments.
EOF
}
case "${1:-}" in -h | --help) usage; exit 0 ;; esac
if [[ $# -lt 1 || "$1" == -* ]]; then
  usage
  exit 2
fi
exchange="$1"
shift
exec "$HFT" ops websocket "$exchange" "$@"
