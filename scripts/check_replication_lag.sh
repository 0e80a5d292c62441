#!/usr/bin/env bash
# Replication lag (guide §7.3): ./scripts/check_replication_lag.sh [--standby-host HOST] [--config FILE]
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/_hft.sh
source scripts/_hft.sh

usage() {
  cat >&2 <<'EOF'
usage: ./scripts/check_replication_lag.sh [--standby-host HOST] [--standby-port PORT] [--max-lag-bytes N] [--config FILE]

Replication lag between the primary and its standbys (guide §7.3): on the primary (the config's
database section, or HFT_DB_HOST/HFT_DB_PORT/HFT_DB_NAME/HFT_DB_USER) its current WAL position
(pg_current_wal_lsn()) and, for every standby in pg_stat_replication, its state and lag in bytes
and seconds. With --standby-host, that server's pg_last_wal_receive_lsn()/pg_last_wal_replay_lsn()
against the primary's position. Read-only.
  --standby-host HOST  also ask this standby (the guide's standby-host)
  --standby-port PORT  its port (default: the primary's)
  --max-lag-bytes N    lag above this is unhealthy (default 16 MiB)
  --config FILE        run config whose "database" section names the server (default config/production.json)
Exit status: 0 no standby, or every standby streaming within the limit; 1 lag above it or a standby
not streaming; 2 bad arguments or the database unreachable.
EOF
}
case "${1:-}" in -h | --help) usage; exit 0 ;; esac
exec "$HFT" db replication-lag --backend postgresql "$@"
