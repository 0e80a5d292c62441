#!/usr/bin/env bash
# Lock contention (guide §5.2): ./scripts/check_lock_contention.sh
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/_hft.sh
source scripts/_hft.sh

usage() {
  cat >&2 <<'EOF'
usage: ./scripts/check_lock_contention.sh [--url URL] [--pid-file FILE] [--seconds S] [--log-dir DIR]

The trading loop takes no lock on the hot path (one asyncio loop, one thread), so "contention"
here means what competes with that thread. Measured over --seconds (default 5): each thread's CPU
and its voluntary/involuntary context switches per second (/proc/PID/task; guide §5.2: healthy
<= 10,000/s), the event-loop lag, and any "lock contention", "mutex" or "Lock acquisition
timeout" line in system.log/errors.log (the guide's §5.1 grep).
  --url URL        the daemon's API (default $HFT_URL or http://127.0.0.1:8080)
  --pid-file FILE  the daemon's pid file (default: the config's daemon.pid_file, else /var/run/hft_system.pid)
  --config FILE    the daemon's config (default config/production.json)
  --log-dir DIR    the component logs (default /var/log/hft_system)
Exit status: 0 none seen, 1 too many context switches or contention logged, 2 the daemon is not running.
EOF
}
case "${1:-}" in -h | --help) usage; exit 0 ;; esac
exec "$HFT" ops contention "$@"
