#!/usr/bin/env bash
# Balances at an exchange (guide §4.1, §4.3): ./scripts/check_balances.sh EXCHANGE
set -euo pipefail
# shellcheck source=scripts/_hft.sh
source "$(dirname "$0")/_hft.sh"

usage() {
  cat >&2 <<'USAGE'
usage: ./scripts/check_balances.sh EXCHANGE [--json] [--config FILE]

Every asset with a balance on EXCHANGE (binance, kraken, coinbase): free, locked (held by open
orders) and total, to confirm an "Insufficient balance".
  --json           as JSON: asset -> free, locked, total
Common options:
  --config FILE    the exchange config (default config/exchanges/EXCHANGE.json); its endpoints can
                   be overridden from the environment as the adapters do (BINANCE_REST_URL,
                   KRAKEN_REST_URL, COINBASE_REST_URL)
Keys come from the environment only (BINANCE_API_KEY/_SECRET, KRAKEN_API_KEY/_SECRET,
COINBASE_API_KEY/_SECRET/_PASSPHRASE) and are never printed.
Exit status: 0 done, 1 the exchange refused or failed (bad key, unknown order or symbol, no answer),
2 bad arguments, unknown exchange, bad config or missing keys.
USAGE
}
case "${1:-}" in -h | --help) usage; exit 0 ;; esac
exec "$HFT" venue balances "$@"
