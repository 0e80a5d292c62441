#!/usr/bin/env bash
# One order at the exchange (guide §4.2): ./scripts/query_exchange_order.sh EXCHANGE ORDER_ID
set -euo pipefail
# shellcheck source=scripts/_hft.sh
source "$(dirname "$0")/_hft.sh"

usage() {
  cat >&2 <<'USAGE'
usage: ./scripts/query_exchange_order.sh EXCHANGE ORDER_ID [--client-id] [--symbol SYMBOL] [--json] [--config FILE]

Asks EXCHANGE (binance, kraken, coinbase) directly for the order with the exchange's ORDER_ID and
prints its symbol, side, price, quantity, filled quantity and status. Exit status 1 with
"Order not found on EXCHANGE" when the exchange does not know it (§4.2: mark it rejected locally).
  --client-id      ORDER_ID is our client order id (clientOrderId, cl_ord_id, client_oid)
  --symbol SYMBOL  the order's symbol; Binance needs one (default: each symbol of the config)
  --json           the order as JSON, the exchange's own object under "raw"
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
exec "$HFT" venue order "$@"
