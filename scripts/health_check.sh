#!/usr/bin/env bash
# Quick health check (guide §1.2): ./scripts/health_check.sh [hft doctor options]
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/_hft.sh
source scripts/_hft.sh

usage() {
  cat >&2 <<'EOF'
usage: ./scripts/health_check.sh [--url URL] [--log-dir DIR] [--config FILE] [--pid-file FILE] [--json]

The guide's quick health check (§1.2 "Essential commands") as one command: `hft doctor --only baseline`.
Checks that the daemon's status API answers, trading is enabled, every exchange is connected, the
process in the pid file runs, host memory and disk are below the guide's limits, and counts the
recent lines of errors.log. Each check prints PASS/WARN/FAIL with the guide's next step.
For the full runbook, run `hft doctor` (every section).
Exit status: 0 healthy (warnings allowed), 1 a check failed, 2 bad arguments.
EOF
}
case "${1:-}" in -h | --help) usage; exit 0 ;; esac
exec "$HFT" doctor --only baseline "$@"
