#!/usr/bin/env bash
# CPU profile (guide §5.2): ./scripts/profile_cpu.sh 30  # Profile for 30 seconds
set -euo pipefail
here="$PWD" # a relative --out-dir is the operator's, from where they ran this
cd "$(dirname "$0")/.."
# shellcheck source=scripts/_hft.sh
source scripts/_hft.sh

usage() {
  cat >&2 <<'EOF'
usage: ./scripts/profile_cpu.sh SECONDS [--pid PID] [--out-dir DIR] [--rate N] [--subprocesses]
                                [--url URL] [--pid-file FILE] [--config FILE]

Profiles the running daemon's trading process for SECONDS with py-spy (installed into .venv by
./scripts/setup.sh), sampling N times a second (default 100) without pausing the process
(--nonblocking: the hot path keeps its timing); idle time is not sampled, so the profile is
where the CPU went. Writes /tmp/hft_cpu_<pid>_<time>.txt (collapsed
stacks, the input of flamegraph.pl and speedscope) and prints its path; read it with
./scripts/analyze_cpu_profile.sh. Needs ptrace rights on the daemon: root, or the daemon's user
with kernel.yama.ptrace_scope=0 (in a container: the SYS_PTRACE capability).
  --pid PID        profile this process (default: the status API's pid, else the pid file's)
  --subprocesses   also profile the API process
Exit status: 0 written, 2 py-spy missing or refused, or the daemon is not running.
EOF
}
if [[ $# -lt 1 || "$1" == -* ]]; then
  [[ "${1:-}" == "-h" || "${1:-}" == "--help" ]] && { usage; exit 0; }
  usage
  exit 2
fi
args=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    -h | --help) usage; exit 0 ;;
    --out-dir) [[ $# -ge 2 ]] || { usage; exit 2; }; d="$2"; [[ "$d" == /* ]] || d="$here/$d"; args+=("$1" "$d"); shift 2 ;;
    *) args+=("$1"); shift ;;
  esac
done
exec "$HFT" profile cpu "${args[@]}"
