#!/usr/bin/env bash
# Reconcile positions with an exchange (guide §4.4): ./scripts/reconcile_positions.sh binance
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/_hft.sh
source scripts/_hft.sh

usage() {
  cat >&2 <<'EOF2'
usage: ./scripts/reconcile_positions.sh EXCHANGE [--url URL] [--timeout S]

Asks the running daemon to reconcile with EXCHANGE (guide §4.4 "Fill Event Not Received"):
1. query the exchange for its open orders, our trades since the last stored fill and balances;
2. compare with the database and the daemon's memory, and update them: a fill the daemon missed
   is booked (once), an order that closed at the exchange is closed here, an order the daemon
   does not know is cancelled or adopted per the config's live.unknown_orders;
3. write a reconciliation report (reconciliation-<UTC stamp>.json in the run directory) and
   print it. A position the exchange and the database disagree on (drift) halts the strategies
   trading it, and says why.
The call is signed (POST /api/v1/positions/reconcile?exchange=EXCHANGE, as `hft ctl` does) with
HFT_API_KEY / HFT_API_SECRET, the daemon's key pair. In paper mode the exchange is the simulated
venue inside the daemon: only memory and the database are compared.
  --url URL     the daemon's API (default $HFT_URL or http://127.0.0.1:8080)
  --timeout S   seconds to wait for the answer (default 90)
Exit status: 0 reconciled without drift, 1 drift found (strategies halted) or the daemon refused,
2 bad arguments or the daemon cannot be reached.
EOF2
}
exchange=""
url="${HFT_URL:-http://127.0.0.1:8080}"
timeout=90
while [[ $# -gt 0 ]]; do
  case "$1" in
    -h | --help) usage; exit 0 ;;
    --url) [[ $# -ge 2 ]] || { usage; exit 2; }; url="$2"; shift 2 ;;
    --url=*) url="${1#*=}"; shift ;;
    --timeout) [[ $# -ge 2 ]] || { usage; exit 2; }; timeout="$2"; shift 2 ;;
    --timeout=*) timeout="${1#*=}"; shift ;;
    -*) echo "error: unknown option $1" >&2; usage; exit 2 ;;
    *) [[ -z "$exchange" ]] || { echo "error: one EXCHANGE only, got '$exchange' and '$1'" >&2; exit 2; }; exchange="$1"; shift ;;
  esac
done
[[ -n "$exchange" ]] || { echo "error: EXCHANGE is required (e.g. binance)" >&2; usage; exit 2; }
[[ "$exchange" =~ ^[a-z0-9_]{1,64}$ ]] || { echo "error: EXCHANGE: lower-case venue name expected (binance), got '$exchange'" >&2; exit 2; }
[[ "$timeout" =~ ^[0-9]+$ ]] || { echo "error: --timeout: must be whole seconds, got '$timeout'" >&2; exit 2; }

set +e
report=$("$HFT" ctl POST "positions/reconcile?exchange=$exchange" --url "$url" --timeout "$timeout")
status=$?
set -e
if [[ $status -ne 0 ]]; then
  exit "$status" # hft ctl said why on stderr
fi
summary=$(sed -n 's/^  "summary": "\(.*\)",\{0,1\}$/\1/p' <<<"$report")
echo "$report"
echo "${summary:-reconciled $exchange}"
if grep -q '"position_drift": [1-9]' <<<"$report"; then
  echo "position drift on $exchange: the strategies trading it are halted (see \"drift\" and \"halted\" above)" >&2
  exit 1
fi
