#!/usr/bin/env bash
# End-to-end latency (guide §5.1): ./scripts/measure_e2e_latency.sh
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/_hft.sh
source scripts/_hft.sh

usage() {
  cat >&2 <<'EOF'
usage: ./scripts/measure_e2e_latency.sh [--url URL]

Signal-to-order time of the running daemon (guide §5.1 step 4): the tick-to-order latency
histogram the daemon keeps for every order it sends (market data received -> order handed to the
venue connection), as P50/P99/P999 against the guide's P99 < 1 ms, and the venue's ack time
(network plus venue) beside it. It reads what the daemon measured on real orders; it does not
send any order itself.
  --url URL   the daemon's API (default $HFT_URL or http://127.0.0.1:8080)
Exit status: 0 within 1 ms, 1 P99 over 1 ms, 2 no order yet or the daemon does not answer.
EOF
}
case "${1:-}" in -h | --help) usage; exit 0 ;; esac
exec "$HFT" ops e2e-latency "$@"
