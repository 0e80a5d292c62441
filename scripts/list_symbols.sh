#!/usr/bin/env bash
# Symbols of an exchange (guide §4.3): ./scripts/list_symbols.sh EXCHANGE [--all]
set -euo pipefail
# shellcheck source=scripts/_hft.sh
source "$(dirname "$0")/_hft.sh"

usage() {
  cat >&2 <<'USAGE'
usage: ./scripts/list_symbols.sh EXCHANGE [--all] [--config FILE]

The symbols EXCHANGE (binance, kraken, coinbase) trades now, one per line in the dashed canonical
form whatever the exchange spells (BTCUSDT, XBT/USD -> BTC-USDT, BTC-USD), so that
  ./scripts/list_symbols.sh binance | grep BTC-USDT
tells whether a symbol exists.
  --all            every listed symbol, with the exchange's status as a second column
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
exec "$HFT" venue symbols "$@"
