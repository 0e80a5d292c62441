#!/usr/bin/env bash
# Create .bench/hftbacktest-venv with hftbacktest 2.4.4 (bench/hftbacktest-requirements.txt, every
# package pinned) for bench/fidelity_hftbacktest.py. hftbacktest is not a project dependency:
# nothing outside bench/fidelity_hbt_worker.py imports it, and .venv never gets it.
# Built with the same interpreter as .venv (so both engines run on the same Python). Idempotent:
# a venv that already holds exactly the pinned set is left alone.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=.bench/hftbacktest-venv
REQ=bench/hftbacktest-requirements.txt
if [ ! -x .venv/bin/python ]; then
  echo "error: .venv not found; run ./scripts/setup.sh first" >&2
  exit 2
fi
PY=$(.venv/bin/python -c 'import sys; print(sys._base_executable)')
if [ -x "$VENV/bin/python" ] && [ "$("$VENV/bin/python" -c 'import sys; print(sys._base_executable)')" != "$PY" ]; then
  echo "note: $VENV was built with another interpreter than .venv ($PY); rebuilding it" >&2
  rm -rf "$VENV"
fi
want=$(grep -v '^#' "$REQ" | grep -v '^$' | tr 'A-Z_' 'a-z-' | sort)
have() { "$VENV/bin/python" -m pip freeze --exclude-editable 2>/dev/null | grep -v '^pip==' | tr 'A-Z_' 'a-z-' | sort; }
if [ -x "$VENV/bin/python" ] && [ "$(have)" = "$want" ] && "$VENV/bin/python" -c 'import hftbacktest' 2>/dev/null; then
  echo "$VENV: hftbacktest $("$VENV/bin/python" -c 'import hftbacktest; print(hftbacktest.__version__)') ready"
  exit 0
fi
mkdir -p .bench
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
log=$(mktemp)
if ! { "$VENV/bin/python" -m pip install --quiet --upgrade pip \
       && "$VENV/bin/python" -m pip install --quiet -r "$REQ"; } >"$log" 2>&1; then
  cat "$log" >&2
  rm -f "$log"
  echo "error: installing $REQ into $VENV failed (pip output above)" >&2
  exit 1
fi
rm -f "$log"
"$VENV/bin/python" -c 'import hftbacktest; print("installed hftbacktest", hftbacktest.__version__, "in '"$VENV"'")'
