#!/usr/bin/env bash
# Test the API key (guide §2.2): ./scripts/test_api_key.sh EXCHANGE
set -euo pipefail
# shellcheck source=scripts/_hft.sh
source "$(dirname "$0")/_hft.sh"

usage() {
  cat >&2 <<'USAGE'
usage: ./scripts/test_api_key.sh EXCHANGE [--config FILE]

One signed read on EXCHANGE (binance, kraken, coinbase) with the key from the environment. Prints
"API key valid on EXCHANGE ..." or "API key INVALID on EXCHANGE: <reason>" in the guide's words
(Invalid API key, Invalid signature, Invalid passphrase, Invalid nonce...) and exits 1.
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
exec "$HFT" venue test-key "$@"
