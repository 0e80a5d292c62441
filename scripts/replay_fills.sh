#!/usr/bin/env bash
# Replay fills from the local journal into the database (guide §4.4):
#   ./scripts/replay_fills.sh --from="2025-11-25 10:00:00" --to="2025-11-25 11:00:00" [--config FILE] [--orders]
set -euo pipefail
here="$(pwd)"
cd "$(dirname "$0")/.."
# shellcheck source=scripts/_hft.sh
source scripts/_hft.sh

usage() {
  cat >&2 <<'USAGE'
usage: ./scripts/replay_fills.sh --from=T --to=T [--config FILE] [--orders] [--journal DIR]

After a failed database write (guide §4.4): every fill the trading process saw is in its local
journal (database.journal_dir) before the database is asked for it. This writes the fills whose
time lies in [from, to) into the database again; rows the database already has are skipped, so it
is safe to run any number of times, also while the daemon runs. Prints how many fills were read,
how many were new and how many were already present.
  --from T, --to T  UTC: ISO-8601 (2025-11-25T10:00:00Z), "2025-11-25 10:00:00", or integer ns
  --config FILE     the run config whose database section to use (default config/production.json)
  --orders          replay the order events of the window too
  --journal DIR     read this journal directory instead of the config's
Exit status: 0 done, 1 done but the journal has damaged records (named on stderr), 2 error.
USAGE
}
case "${1:-}" in -h | --help) usage; exit 0 ;; esac
[[ $# -gt 0 ]] || { usage; exit 2; }
# paths the operator gave are relative to where the script was started
args=()
prev=""
for a in "$@"; do
  case "$prev:$a" in
    --config:/* | --journal:/*) ;;
    --config:* | --journal:*) a="$here/$a" ;;
  esac
  case "$a" in
    --config=/* | --journal=/*) ;;
    --config=* | --journal=*) a="${a%%=*}=$here/${a#*=}" ;;
  esac
  args+=("$a")
  prev="$a"
done
py="$(dirname "$HFT")/python"
[[ -x "$py" ]] || py="python3"
exec "$py" -m engine.store.replay "${args[@]}"
