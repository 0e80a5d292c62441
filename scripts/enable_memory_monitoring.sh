#!/usr/bin/env bash
# Memory monitoring (guide §6.1): ./scripts/enable_memory_monitoring.sh --threshold=80 --action=alert
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/_hft.sh
source scripts/_hft.sh

usage() {
  cat >&2 <<'EOF'
usage: ./scripts/enable_memory_monitoring.sh --threshold=PCT --action=alert|heap-dump|log
           [--interval=S] [--foreground] [--once] [--stop] [--url URL] [--pid-file FILE] [--config FILE]

Starts a watcher, in the background, of the daemon's resident memory as a percentage of its limit
(daemon.memory_management.memory_limit_mb, else its cgroup's MemoryMax, else the host's memory),
checked every S seconds (default 10). When usage crosses PCT (the guide: 80) the action runs
once, and again only after usage has gone back under:
  alert      a WARNING line in LOG_DIR/memory_monitor.log, and an alert posted to Alertmanager
             when $ALERTMANAGER_URL is set (alertname hft_memory_high)
  heap-dump  the same, and SIGUSR1 to the daemon: it writes a heap summary (./scripts/analyze_heap.sh)
  log        the WARNING line only
The daemon itself sheds load above daemon.memory_management.high_pressure_threshold (guide §6.1
memory_management); this watcher is the operator's alarm on top of it. Its pid is kept in
LOG_DIR/memory_monitor.pid; --stop ends it. LOG_DIR is $HFT_LOG_DIR or /var/log/hft_system.
  --foreground   run in this terminal      --once   measure once, act never; exit 1 when above PCT
Exit status: 0 started (or below PCT with --once), 1 above PCT with --once, 2 bad arguments or no daemon.
EOF
}
threshold=""
action=""
fg=0
once=0
stop=0
rest=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    -h | --help) usage; exit 0 ;;
    --threshold=*) threshold="${1#*=}"; shift ;;
    --action=*) action="${1#*=}"; shift ;;
    --interval=*) rest+=(--interval "${1#*=}"); shift ;;
    --threshold) [[ $# -ge 2 ]] || { usage; exit 2; }; threshold="$2"; shift 2 ;;
    --action) [[ $# -ge 2 ]] || { usage; exit 2; }; action="$2"; shift 2 ;;
    --foreground) fg=1; shift ;;
    --once) once=1; shift ;;
    --stop) stop=1; shift ;;
    *) rest+=("$1"); shift ;;
  esac
done
log_dir="${HFT_LOG_DIR:-/var/log/hft_system}"
pidfile="$log_dir/memory_monitor.pid"
if [[ $stop -eq 1 ]]; then
  if [[ -f "$pidfile" ]] && kill "$(cat "$pidfile")" 2>/dev/null; then
    rm -f "$pidfile"
    echo "memory monitoring stopped"
  else
    echo "memory monitoring is not running"
  fi
  exit 0
fi
if [[ -z "$threshold" || -z "$action" ]]; then
  echo "error: --threshold and --action are required" >&2
  usage
  exit 2
fi
cmd=("$HFT" ops memory-monitor --threshold "$threshold" --action "$action" ${rest[@]+"${rest[@]}"})
if [[ $once -eq 1 ]]; then
  exec "${cmd[@]}" --once
fi
mkdir -p "$log_dir"
cmd+=(--log-file "$log_dir/memory_monitor.log")
if [[ $fg -eq 1 ]]; then
  exec "${cmd[@]}"
fi
# one check in the foreground first, so a bad argument or a daemon that is not running is told now
rc=0
"${cmd[@]}" --once >/dev/null || rc=$?
if [[ $rc -eq 2 ]]; then
  "${cmd[@]}" --once
  exit 2
fi
if [[ -f "$pidfile" ]] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
  kill "$(cat "$pidfile")"
fi
nohup "${cmd[@]}" >>"$log_dir/memory_monitor.log" 2>&1 &
echo $! >"$pidfile"
echo "memory monitoring enabled: threshold ${threshold}%, action $action, pid $! (log $log_dir/memory_monitor.log)"
