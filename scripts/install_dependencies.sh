#!/usr/bin/env bash
# Dependencies (guide §2.1 cause 5, "error while loading shared libraries"): ./scripts/install_dependencies.sh
set -euo pipefail
cd "$(dirname "$0")/.."

usage() {
  cat >&2 <<'EOF'
usage: ./scripts/install_dependencies.sh [--check]

Reinstalls what the daemon needs (guide §2.1 cause 5): the Python packages into .venv
(./scripts/setup.sh, pinned by requirements.lock) and the Debian packages the system and its
operator tools use (./scripts/install_system_packages.sh: prometheus, prometheus-alertmanager,
chromium, jq). Then checks: every compiled library in .venv resolves its shared libraries
(ldd: no "not found"), the daemon's modules import, and these Debian packages are installed:
python3, python3-venv, curl, jq, lsof, procps, iproute2, prometheus, prometheus-alertmanager.
  --check   install nothing, only check
Exit status: 0 all present, 1 something is missing (listed), 2 bad arguments.
EOF
}
check=0
case "${1:-}" in
  -h | --help) usage; exit 0 ;;
  --check) check=1 ;;
  "") ;;
  *) echo "error: unknown argument: $1" >&2; usage; exit 2 ;;
esac

if [[ $check -eq 0 ]]; then
  ./scripts/setup.sh
  ./scripts/install_system_packages.sh
fi

missing=0
if command -v dpkg-query >/dev/null 2>&1; then
  for pkg in python3 python3-venv curl jq lsof procps iproute2 prometheus prometheus-alertmanager; do
    if dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
      echo "ok       Debian package $pkg"
    else
      echo "MISSING  Debian package $pkg (sudo apt-get install $pkg)"
      missing=1
    fi
  done
else
  echo "note: not a Debian system: check python3 (3.11+), curl, jq, lsof, procps, iproute2, prometheus by hand"
fi

if [[ ! -x .venv/bin/python ]]; then
  echo "MISSING  .venv (run ./scripts/setup.sh)"
  exit 1
fi
# the "binary" is Python: its compiled extensions are what can miss a shared library
# optional back-ends their packages fall back from: numba's TBB threading layer (libtbb)
optional='/numba/np/ufunc/tbbpool[^ ]* libtbb'
site="$(.venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["platlib"])')"
broken="$(find "$site" -name '*.so*' -type f -print0 2>/dev/null \
  | xargs -0 -r -n 50 ldd 2>/dev/null | awk '/^\//{f=$1} /not found/{print f" "$1}' | sort -u \
  | grep -v -E "$optional" || true)"
if [[ -n "$broken" ]]; then
  echo "MISSING  shared libraries of compiled modules in .venv:"
  echo "$broken" | sed 's/^/           /'
  missing=1
else
  echo "ok       every compiled module in .venv resolves its shared libraries"
fi
if .venv/bin/python -c 'import engine.cli, engine.daemon.doctor, numpy, numba, msgspec, sanic, prometheus_client, aiohttp, uvloop' 2>/tmp/hft_import_check.log; then
  echo "ok       the daemon's modules import"
else
  echo "MISSING  the daemon's modules do not import:"
  tail -3 /tmp/hft_import_check.log | sed 's/^/           /'
  missing=1
fi
exit "$missing"
