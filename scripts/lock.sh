#!/usr/bin/env bash
# Re-resolve the dependencies of pyproject.toml in a scratch venv and write requirements.lock,
# the constraints setup.sh (and so CI) installs from. Run after changing a dependency; then run
# the tests and commit both files.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=$(./scripts/pick_python.sh)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$PY" -m venv "$tmp/venv"
"$tmp/venv/bin/python" -m pip install --quiet --upgrade pip setuptools
"$tmp/venv/bin/python" -m pip install --quiet -e '.[dev]'
{
  echo "# Every package setup.sh installs, at the version that passed the tests (pip constraints)."
  echo "# Regenerate with ./scripts/lock.sh after changing pyproject.toml's dependencies; commit both."
  "$tmp/venv/bin/python" -m pip --version | awk '{print "pip==" $2}'
  "$tmp/venv/bin/python" -m pip list --format=freeze 2>/dev/null | grep -i '^setuptools=='
  "$tmp/venv/bin/python" -m pip freeze --exclude-editable
} > requirements.lock
echo "wrote requirements.lock ($(grep -c '==' requirements.lock) pins)"
