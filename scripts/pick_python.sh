#!/usr/bin/env bash
# Print the Python interpreter setup.sh builds .venv with: $PYTHON when set, else the first
# Python 3.11+ found whose executable does not load libpython as a shared library, else the first
# Python 3.11+ found.
#
# Why it matters: the live tick-to-order path is pure CPython for most of its length, and an
# interpreter built with --enable-shared calls its own C API through the PLT and cannot inline
# across it. Distribution builds (Debian's /usr/bin/python3.11: static executable, PGO + LTO)
# run the hot path about 13% faster than a plain pyenv build (see venues/binance/README.md).
set -euo pipefail

if [ -n "${PYTHON:-}" ]; then
  echo "$PYTHON"
  exit 0
fi

first=""
for cand in python3.11 /usr/bin/python3.11 /usr/local/bin/python3.11 python3 /usr/bin/python3 python3.12 python3.13; do
  command -v "$cand" >/dev/null 2>&1 || continue
  # the real executable (a pyenv shim is a script), if it is 3.11+ and can make a venv with pip
  exe=$("$cand" -c 'import sys, ensurepip, venv; print(sys.executable if sys.version_info >= (3, 11) else "")' 2>/dev/null) || continue
  [ -n "$exe" ] || continue
  [ -n "$first" ] || first=$exe
  # ldd's output is read whole: under pipefail, 'ldd | grep -q' fails with SIGPIPE when grep
  # stops reading early, which on a loaded machine turned a shared build into the pick
  if command -v ldd >/dev/null 2>&1; then
    libs=$(ldd "$exe" 2>/dev/null || true)
    case "$libs" in *libpython*) continue ;; esac
    echo "$exe"
    exit 0
  fi
done
if [ -z "$first" ]; then
  echo "error: no Python 3.11+ found; set PYTHON=/path/to/python3.11" >&2
  exit 2
fi
echo "$first"
