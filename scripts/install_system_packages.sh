#!/usr/bin/env bash
# Install the Debian packages the tests and the operator's tools use, when missing:
# prometheus (promtool), prometheus-alertmanager (amtool), chromium, jq, and PostgreSQL
# (postgresql, postgresql-contrib: initdb/pg_ctl for the store's tests, psql for the guide's SQL).
# Usage: ./scripts/install_system_packages.sh [--check]   (--check: only say what is missing)
set -euo pipefail
case "${1:-}" in
  -h|--help) sed -n 2,5p "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
esac
declare -A want=([promtool]=prometheus [amtool]=prometheus-alertmanager [chromium]=chromium [jq]=jq)
missing=()
for tool in "${!want[@]}"; do
  command -v "$tool" >/dev/null 2>&1 || missing+=("${want[$tool]}")
done
# Debian keeps the server's binaries off PATH, under /usr/lib/postgresql/<version>/bin
if ! compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null; then
  missing+=(postgresql postgresql-contrib)
fi
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
if [ "${1:-}" = "--check" ]; then
  echo "missing Debian packages: ${missing[*]}"
  exit 1
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "note: not a Debian system; install ${missing[*]} by hand (tests that need them skip)" >&2
  exit 0
fi
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
# a clean machine may have no package lists yet
$sudo apt-get install -y -q --no-install-recommends "${missing[@]}" >/tmp/hft_apt.log 2>&1 \
  || { $sudo apt-get update -q >>/tmp/hft_apt.log 2>&1 && $sudo apt-get install -y -q --no-install-recommends "${missing[@]}" >>/tmp/hft_apt.log 2>&1; } \
  || { cat /tmp/hft_apt.log >&2; echo "error: installing ${missing[*]} failed (apt output above)" >&2; exit 1; }
echo "installed Debian packages: ${missing[*]}"
