# Sourced by the operator scripts: sets HFT to the project's `hft` (repo .venv first, then PATH).
_scripts="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
_repo="$(dirname "$_scripts")"
if [[ -x "$_repo/.venv/bin/hft" ]]; then
  HFT="$_repo/.venv/bin/hft"
elif command -v hft >/dev/null 2>&1; then
  HFT="$(command -v hft)"
else
  echo "error: hft not found: run $_repo/scripts/setup.sh (or pip install -e .)" >&2
  exit 2
fi

# FILE... [--top N] arguments of the heap scripts into HFT_ARGS. Relative FILEs are the
# operator's, so they are resolved against $1, the directory the script was started from (it
# changes to the repository before sourcing this). Fails (status 2) on no file or a bare --top.
hft_file_args() {
  local here="$1"
  shift
  HFT_ARGS=()
  while [[ $# -gt 0 ]]; do
    case "$1" in
      --top) [[ $# -ge 2 ]] || return 2; HFT_ARGS+=("$1" "$2"); shift 2 ;;
      -* | /*) HFT_ARGS+=("$1"); shift ;;
      *) HFT_ARGS+=("$here/$1"); shift ;;
    esac
  done
  [[ ${#HFT_ARGS[@]} -gt 0 ]] || return 2
}
