#!/usr/bin/env bash
# Create .venv and install the system with its test tools. Idempotent; safe to re-run.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=$(./scripts/pick_python.sh)
if ! "$PY" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)'; then
  echo "error: Python 3.11+ is required (found $("$PY" --version 2>&1)); set PYTHON=/path/to/python3.11" >&2
  exit 2
fi
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
  echo "created .venv with $("$PY" -c 'import sys; print(sys.executable, sys.version.split()[0])')"
elif [ -z "${PYTHON:-}" ] && [ "$(.venv/bin/python -c 'import sys; print(sys._base_executable)')" != "$PY" ]; then
  # an existing venv is kept; the hot path runs faster on the interpreter picked above
  echo "note: .venv uses $(.venv/bin/python -c 'import sys; print(sys._base_executable)'), not $PY" \
    "(scripts/pick_python.sh); remove .venv and re-run to rebuild it" >&2
fi
log=$(mktemp)
# pip's output goes to a log shown only on failure (setuptools warns on every editable install)
# every version from requirements.lock (build requirements too, through PIP_CONSTRAINT): a fresh
# clone next month installs what passed today
pip_pin=$(grep -E '^pip==' requirements.lock)
if ! { .venv/bin/python -m pip install --quiet "$pip_pin" \
  && PIP_CONSTRAINT="$PWD/requirements.lock" .venv/bin/python -m pip install --quiet -c requirements.lock -e '.[dev]'; } \
  >"$log" 2>&1; then
  cat "$log" >&2
  echo "error: installing the project into .venv failed (pip output above)" >&2
  rm -f "$log"
  exit 1
fi
rm -f "$log"
echo "installed: $(.venv/bin/hft --help >/dev/null && echo 'hft CLI ready in .venv/bin/hft')"
# the compiled code (replay kernels, the compiled path, the Binance feed), once, here rather than
# inside the first backtest, session or test run (tens of seconds cold)
.venv/bin/python -m engine.runners.warm_cache
