#!/usr/bin/env bash
# Start the daemon (guide §6.1 "Restart system"): ./scripts/startup.sh
set -euo pipefail
here="$PWD" # a relative --config is the operator's, from where they ran this
cd "$(dirname "$0")/.."
# shellcheck source=scripts/_hft.sh
source scripts/_hft.sh

usage() {
  cat >&2 <<'EOF'
usage: ./scripts/startup.sh [--config FILE] [--live] [--timeout S] [--output FILE] [DAEMON OPTIONS]

Starts the daemon in the background, `hft paper config/production.json` (with --live:
`hft live`, real orders, keys from the environment), its console output in --output (default
/tmp/hft_system_startup.log), then waits up to S seconds (default 60) until its status API
(GET /api/v1/status) answers, and prints the status. If the daemon is already answering at
$HFT_URL (default http://127.0.0.1:8080) it says so and starts nothing.
Under systemd (config/systemd/hft_system.service) use `sudo systemctl start hft_system` instead.
DAEMON OPTIONS go to hft paper|live --api as they are: --port N, --host H, --log-dir DIR, --pid-file FILE.
Exit status: 0 the daemon answers, 1 it exited or did not answer in time (its last output shown),
2 bad arguments.
EOF
}
config="config/production.json"
mode="paper"
timeout=60
output="/tmp/hft_system_startup.log"
extra=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    -h | --help) usage; exit 0 ;;
    --config) [[ $# -ge 2 ]] || { usage; exit 2; }; config="$2"; [[ "$config" == /* ]] || config="$here/$config"; shift 2 ;;
    --config=*) config="${1#*=}"; [[ "$config" == /* ]] || config="$here/$config"; shift ;;
    --live) mode="live"; shift ;;
    --timeout) [[ $# -ge 2 ]] || { usage; exit 2; }; timeout="$2"; shift 2 ;;
    --output) [[ $# -ge 2 ]] || { usage; exit 2; }; output="$2"; shift 2 ;;
    *) extra+=("$1"); shift ;;
  esac
done
[[ "$timeout" =~ ^[0-9]+$ ]] || { echo "error: --timeout: must be whole seconds, got '$timeout'" >&2; exit 2; }
[[ -f "$config" ]] || { echo "error: Failed to load configuration from $config: file not found (§2.1: git checkout config/production.json)" >&2; exit 1; }

url="${HFT_URL:-http://127.0.0.1:8080}"
if curl -sf --max-time 2 "$url/api/v1/status" >/dev/null 2>&1; then
  echo "the daemon is already running at $url"
  exit 0
fi

nohup "$HFT" "$mode" "$config" --api ${extra[@]+"${extra[@]}"} >"$output" 2>&1 </dev/null &
pid=$!
disown "$pid" 2>/dev/null || true
echo "started hft $mode $config (pid $pid), output in $output; waiting for its status API ..."

deadline=$((SECONDS + timeout))
listen=""
while ((SECONDS < deadline)); do
  if ! kill -0 "$pid" 2>/dev/null; then
    echo "error: the daemon exited during start-up; its last output:" >&2
    tail -20 "$output" >&2
    echo "see §2.1 (System fails to start): tail -100 <log_dir>/system.log; ./scripts/health_check.sh" >&2
    exit 1
  fi
  if [[ -z "$listen" ]]; then
    # the daemon prints the address it bound (it may differ from $HFT_URL: --port 0, another host)
    listen="$(grep -o 'API listening on http://[^ ]*' "$output" 2>/dev/null | head -1 | sed 's/^API listening on //' || true)"
  fi
  if [[ -n "$listen" ]] && status="$(curl -sf --max-time 2 "$listen/api/v1/status" 2>/dev/null)"; then
    echo "the daemon answers at $listen"
    echo "$status"
    exit 0
  fi
  sleep 0.5
done
echo "error: the daemon (pid $pid) did not answer within ${timeout}s; its last output:" >&2
tail -20 "$output" >&2
exit 1
