#!/usr/bin/env bash
# Test alert (guide 11.1): ./scripts/test_alert.sh ALERT_NAME [--severity S] [--minutes N] [--resolve]
# Posts an alert named ALERT_NAME to Alertmanager's v2 API ($ALERTMANAGER_URL, default
# http://localhost:9093), then checks that Alertmanager lists it. The receivers its route names
# (config/prometheus/alertmanager.yml: PagerDuty, Slack, email) are then notified as for a real
# alert: that is the point of the test. --resolve ends the test alert at once.
set -euo pipefail

usage() {
  cat <<EOF
usage: $0 ALERT_NAME [--severity critical|warning|info] [--minutes N] [--resolve]

Sends a test alert named ALERT_NAME (e.g. high_latency) to Alertmanager at \$ALERTMANAGER_URL
(default http://localhost:9093) and verifies that Alertmanager lists it.
  --severity S  the alert's severity label; default: the severity of the rule of that name in
                config/prometheus/alerts/*.yml (or /etc/prometheus/alerts/*.yml), else warning
  --minutes N   how long the test alert stays active (default 5)
  --resolve     send it already ended, which resolves an earlier test alert of that name
Exit status: 0 when Alertmanager lists the alert, 1 when it does not, 2 on bad arguments.
EOF
}

name=""
severity=""
minutes=5
resolve=0
while [[ $# -gt 0 ]]; do
  case "$1" in
    -h | --help) usage; exit 0 ;;
    --severity) severity="${2:?--severity needs a value}"; shift 2 ;;
    --severity=*) severity="${1#*=}"; shift ;;
    --minutes) minutes="${2:?--minutes needs a value}"; shift 2 ;;
    --minutes=*) minutes="${1#*=}"; shift ;;
    --resolve) resolve=1; shift ;;
    -*) echo "error: unknown option: $1" >&2; usage >&2; exit 2 ;;
    *)
      if [[ -n "$name" ]]; then echo "error: one alert name only (got '$name' and '$1')" >&2; exit 2; fi
      name="$1"; shift ;;
  esac
done
if [[ -z "$name" ]]; then usage >&2; exit 2; fi
if [[ ! "$name" =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]]; then
  echo "error: ALERT_NAME: not an alert name: '$name' (letters, digits and _)" >&2; exit 2
fi
if [[ ! "$minutes" =~ ^[0-9]+$ ]] || (( minutes < 1 )); then
  echo "error: --minutes: expected a whole number of minutes >= 1, got '$minutes'" >&2; exit 2
fi

url="${ALERTMANAGER_URL:-http://localhost:9093}"
url="${url%/}"
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

if [[ -z "$severity" ]]; then
  # the severity label under "- alert: NAME" in the installed (or shipped) rules
  for rules in /etc/prometheus/alerts/*.yml "$repo"/config/prometheus/alerts/*.yml; do
    [[ -f "$rules" ]] || continue
    severity="$(awk -v n="$name" '
      $1 == "-" && $2 == "alert:" { on = ($3 == n) }
      on && $1 == "severity:" { gsub(/["'\'']/, "", $2); print $2; exit }' "$rules")"
    [[ -n "$severity" ]] && break
  done
  severity="${severity:-warning}"
fi

now="$(date -u +%Y-%m-%dT%H:%M:%S.000Z)"
if (( resolve )); then
  ends="$now"
else
  ends="$(date -u -d "+${minutes} minutes" +%Y-%m-%dT%H:%M:%S.000Z)"
fi
host="$(hostname)"
body="[{\"labels\": {\"alertname\": \"$name\", \"severity\": \"$severity\", \"instance\": \"$host\", \"job\": \"hft_system\", \"test\": \"true\"},
  \"annotations\": {\"summary\": \"Test alert $name from scripts/test_alert.sh on $host\", \"description\": \"A test of the alert routing (guide 11.1), not a real fault.\"},
  \"startsAt\": \"$now\", \"endsAt\": \"$ends\", \"generatorURL\": \"http://$host/scripts/test_alert.sh\"}]"

code="$(curl -sS -o /dev/null -w '%{http_code}' -X POST -H 'Content-Type: application/json' \
  --data-binary "$body" "$url/api/v2/alerts" 2>/tmp/test_alert.$$.err)" || {
  echo "error: cannot reach Alertmanager at $url: $(cat /tmp/test_alert.$$.err)" >&2
  rm -f /tmp/test_alert.$$.err
  exit 1
}
rm -f /tmp/test_alert.$$.err
if [[ "$code" != "200" ]]; then
  echo "error: Alertmanager at $url refused the alert: HTTP $code" >&2
  exit 1
fi
echo "sent test alert $name (severity=$severity) to $url"

if (( resolve )); then
  echo "resolved: $name ends at $ends"
  exit 0
fi

# Alertmanager lists an alert a moment after accepting it; ask a few times.
filter="$(printf 'alertname="%s"' "$name" | sed 's/"/%22/g; s/=/%3D/g')"
for _ in 1 2 3 4 5 6 7 8 9 10; do
  listed="$(curl -sS "$url/api/v2/alerts?filter=$filter&filter=test%3D%22true%22" || true)"
  if [[ "$listed" == *"\"alertname\":\"$name\""* ]]; then
    state="$(grep -o '"state":"[a-z]*"' <<<"$listed" | head -1 | cut -d'"' -f4)"
    echo "OK: Alertmanager lists $name (state: ${state:-unknown}); check PagerDuty, Slack and email for it"
    exit 0
  fi
  sleep 0.5
done
echo "FAILED: Alertmanager at $url accepted $name but does not list it" >&2
exit 1
