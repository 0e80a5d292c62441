#!/usr/bin/env bash
# Blocking calls (guide §5.1): ./scripts/check_blocking_calls.sh
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/_hft.sh
source scripts/_hft.sh

usage() {
  cat >&2 <<'EOF'
usage: ./scripts/check_blocking_calls.sh [--url URL] [--seconds S] [--log-dir DIR]

The daemon is one asyncio event loop: a blocking call anywhere on it delays every tick behind it.
What this measures: how late the loop wakes (hft_event_loop_lag_seconds, which the daemon samples
itself), read every 0.5 s for --seconds (default 5), flagged above 5 ms (its timers have 1 ms
resolution: about 1 ms of lag is normal); and asyncio's own
"Executing <Handle ...> took N seconds" slow-callback warnings in system.log/errors.log, which
asyncio writes only when the daemon runs with PYTHONASYNCIODEBUG=1. It cannot name the blocking
call: ./scripts/profile_cpu.sh 30 shows where the time goes.
  --url URL       the daemon's API (default $HFT_URL or http://127.0.0.1:8080)
  --log-dir DIR   the component logs (default /var/log/hft_system)
Exit status: 0 none seen, 1 loop lag over 5 ms or slow callbacks logged, 2 the daemon does not answer.
EOF
}
case "${1:-}" in -h | --help) usage; exit 0 ;; esac
exec "$HFT" ops blocking "$@"
