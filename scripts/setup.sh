#!/usr/bin/env bash
# Create .venv and install the system with its test tools. Idempotent; safe to re-run.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if ! "$PY" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)'; then
  echo "error: Python 3.11+ is required (found $("$PY" --version 2>&1)); set PYTHON=/path/to/python3.11" >&2
  exit 2
fi
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
log=$(mktemp)
# pip's output goes to a log shown only on failure (setuptools warns on every editable install)
if ! { .venv/bin/python -m pip install --quiet --upgrade pip && .venv/bin/python -m pip install --quiet -e '.[dev]'; } >"$log" 2>&1; then
  cat "$log" >&2
  echo "error: installing the project into .venv failed (pip output above)" >&2
  rm -f "$log"
  exit 1
fi
rm -f "$log"
echo "installed: $(.venv/bin/hft --help >/dev/null && echo 'hft CLI ready in .venv/bin/hft')"
