#!/usr/bin/env bash
# Trading rules of a symbol (guide §4.3): ./scripts/get_exchange_filters.sh EXCHANGE SYMBOL
set -euo pipefail
# shellcheck source=scripts/_hft.sh
source "$(dirname "$0")/_hft.sh"

usage() {
  cat >&2 <<'USAGE'
usage: ./scripts/get_exchange_filters.sh EXCHANGE SYMBOL [--config FILE]

The trading rules of SYMBOL (dashed, e.g. BTC-USDT) on EXCHANGE (binance, kraken, coinbase), as
JSON: {"venue", "symbol", "venue_symbol", "status", "filters": {...}, "raw": {...}}. "filters" is
keyed by filter type with Binance's names for every exchange: PRICE_FILTER (tickSize, minPrice,
maxPrice), LOT_SIZE (stepSize, minQty, maxQty), NOTIONAL (minNotional, maxNotional), each key
present where the exchange has that rule (Kraken and Coinbase: mapping in venues/<venue>/tools.py);
"raw" is the exchange's own rules, unchanged. E.g.
  ./scripts/get_exchange_filters.sh binance BTC-USDT | jq .filters.LOT_SIZE
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
exec "$HFT" venue filters "$@"
