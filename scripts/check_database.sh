#!/usr/bin/env bash
# Database checks (guide §2.3, §7.1, §7.2): ./scripts/check_database.sh [--kill-idle-minutes N] [--config FILE]
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/_hft.sh
source scripts/_hft.sh

usage() {
  cat >&2 <<'EOF'
usage: ./scripts/check_database.sh [--kill-idle-minutes N] [--json] [--config FILE]

The guide's database checks against the configured store (guide §2.3 "Database connection
issues", §7.1 "Slow queries", §7.2 "Connection pool"): reachable and SELECT 1; connections against
max_connections and this system's pool; queries active for more than 10 s (long-running) and
100 ms (slow); disk of the data directory when the server runs on this host; the largest tables
and their dead rows (bloat); pending migrations. With the embedded DuckDB store: the file is
there and readable. Read-only unless a flag says otherwise; each problem comes with the guide's
next step.
  --kill-idle-minutes N  terminate this database's connections idle for more than N minutes
                         (the guide's fix for an exhausted pool; needs the right to: -U postgres)
  --json                 one JSON object per check
  --config FILE          run config whose "database" section names the store (default config/production.json)
Exit status: 0 healthy, 1 a check warned or failed, 2 bad arguments.
EOF
}
case "${1:-}" in -h | --help) usage; exit 0 ;; esac
exec "$HFT" db check "$@"
