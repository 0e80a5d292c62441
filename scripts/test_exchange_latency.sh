#!/usr/bin/env bash
# Exchange API latency (guide §5.1): ./scripts/test_exchange_latency.sh EXCHANGE
set -euo pipefail
# shellcheck source=scripts/_hft.sh
source "$(dirname "$0")/_hft.sh"

usage() {
  cat >&2 <<'USAGE'
usage: ./scripts/test_exchange_latency.sh EXCHANGE [--samples N] [--signed-samples M] [--interval S] [--config FILE]

Round-trip time percentiles (P50, P90, P99, max) on one keep-alive connection to EXCHANGE (binance,
kraken, coinbase): its cheapest public request (Binance /api/v3/ping, Kraken Time, Coinbase /time)
and, when a key is in the environment, a cheap signed read (Binance openOrders, Kraken Balance,
Coinbase /accounts). The first request, which opens the connection, is shown apart.
  --samples N         public probes (default 20)
  --signed-samples M  signed probes (default N, at most what the exchange's limits allow at once:
                      Binance 50, Coinbase 25, Kraken 5: its counter is shared with a daemon on the key)
  --interval S        seconds between public probes (default: Kraken 1, others 0)
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
exec "$HFT" venue latency "$@"
