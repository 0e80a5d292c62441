#!/usr/bin/env bash
# One command from a fresh clone: install, then backtest the shipped market maker on the shipped
# real Binance USD-M BTCUSDT sample. No server needed.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
exec .venv/bin/hft backtest config/backtests/market_maker_sample.json "$@"
