#!/usr/bin/env bash
# Archive old market data (guide §6.2): ./scripts/archive_market_data.sh --older-than-days=90 [--out DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/_hft.sh
source scripts/_hft.sh

usage() {
  cat >&2 <<'EOF'
usage: ./scripts/archive_market_data.sh [--older-than-days=N] [--out DIR] [--dry-run] [--config FILE]

Frees database disk (guide §6.2): every whole UTC day of market_data_ticks and order_book_snapshots
that ended more than N days ago is exported to DIR/<table>/<table>_pYYYYMMDD.parquet, the file's row
count is checked against the database, and only then is the day dropped (its partition on
PostgreSQL, its chunk on TimescaleDB, its rows in DuckDB). Nothing is dropped that was not
written first.
  --older-than-days=N  default 90 (the guide's retention)
  --out DIR            archive directory (default: <runs_root>/archive); relative to where you run this
  --dry-run            list the days and their rows, change nothing
  --config FILE        run config whose "database" section names the store (default config/production.json)
Exit status: 0 done (or nothing to archive), 2 bad arguments, unreachable database or a failed export.
EOF
}
case "${1:-}" in -h | --help) usage; exit 0 ;; esac
here="$OLDPWD"  # relative --out paths are the operator's, from where the script was started
args=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --out)
      [[ $# -ge 2 ]] || { usage; exit 2; }
      if [[ "$2" == /* ]]; then args+=(--out "$2"); else args+=(--out "$here/$2"); fi
      shift 2 ;;
    --out=*)
      v="${1#--out=}"
      if [[ "$v" == /* ]]; then args+=(--out "$v"); else args+=(--out "$here/$v"); fi
      shift ;;
    *) args+=("$1"); shift ;;
  esac
done
exec "$HFT" db archive "${args[@]}"
