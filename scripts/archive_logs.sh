#!/usr/bin/env bash
# Log archive (guide §6.2): ./scripts/archive_logs.sh --days=30
set -euo pipefail
here="$PWD" # relative directories are the operator's, from where they ran this
cd "$(dirname "$0")/.."
# shellcheck source=scripts/_hft.sh
source scripts/_hft.sh

usage() {
  cat >&2 <<'EOF'
usage: ./scripts/archive_logs.sh --days=N [--log-dir=DIR] [--archive-dir=DIR] [--dry-run]

"Archive and compress old logs" (guide §6.2): the rotated component logs (system.log.1, ...) and
the daily metrics_YYYYMMDD.log files older than N days go into one
ARCHIVE_DIR/hft_logs_<time>.tar.gz, which is read back before they are deleted. The live *.log
files are never touched. The daily metrics logs are included because the guide's own cleanup,
find -name "*.log.*", never matches them.
  --log-dir=DIR      default $HFT_LOG_DIR or /var/log/hft_system
  --archive-dir=DIR  default LOG_DIR/archive
  --dry-run          list what would be archived, change nothing
Exit status: 0 (also when there is nothing to archive), 2 bad arguments or no log directory.
EOF
}
args=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    -h | --help) usage; exit 0 ;;
    --days=* | --dry-run) args+=("$1"); shift ;;
    --log-dir=* | --archive-dir=*)
      key="${1%%=*}"
      val="${1#*=}"
      [[ "$val" == /* ]] || val="$here/$val"
      args+=("$key=$val")
      shift ;;
    --days | --log-dir | --archive-dir)
      [[ $# -ge 2 ]] || { usage; exit 2; }
      val="$2"
      [[ "$1" == --days || "$val" == /* ]] || val="$here/$val"
      args+=("$1=$val")
      shift 2 ;;
    *) echo "error: unknown argument: $1" >&2; usage; exit 2 ;;
  esac
done
if [[ -n "${HFT_LOG_DIR:-}" && "$HFT_LOG_DIR" != /* ]]; then
  export HFT_LOG_DIR="$here/$HFT_LOG_DIR"
fi
exec "$HFT" logs archive ${args[@]+"${args[@]}"}
