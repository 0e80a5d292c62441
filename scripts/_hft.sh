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
