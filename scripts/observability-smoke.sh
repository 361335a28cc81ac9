#!/usr/bin/env bash
# scripts/observability-smoke.sh: the runbook's monitoring end to end.
#
# Starts `fedrisk demo` (guest and host on 127.0.0.1 over mTLS), waits until
# every demo stage has finished (the demo drains one subject's privacy budget,
# so the host's privacy_budget_remaining minimum drops to 0), then starts a
# real Prometheus (the Debian package's binary) on a free 127.0.0.1 port that
# scrapes the demo's serving, consent and PSI /metrics over TLS with the
# demo's CA and client certificate and loads deploy/monitoring/alert_rules.yml,
# and waits until Prometheus reports the PrivacyBudgetLow alert firing.
#
# Exit 0 when it fires; 1 with the last alerts, targets and logs when it does
# not within SMOKE_ALERT_TIMEOUT seconds, or when something is missing.
# Every process it starts is stopped on exit.
#
# Environment:
#   FEDRISK              fedrisk binary to use (default: built from ./cmd/fedrisk)
#   SMOKE_DEMO_TIMEOUT   seconds to wait for the demo's DEMO_READY=1 (default 600)
#   SMOKE_ALERT_TIMEOUT  seconds to wait for the alert once Prometheus runs (default 180)
#   SMOKE_DEMO_ARGS      extra arguments for `fedrisk demo` (e.g. "--customers 2000")
#   SMOKE_KEEP=1         keep the work directory (logs, demo data) for inspection
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
export PATH="/usr/local/go/bin:$PATH"

DEMO_TIMEOUT=${SMOKE_DEMO_TIMEOUT:-600}
ALERT_TIMEOUT=${SMOKE_ALERT_TIMEOUT:-180}
RULES="$ROOT/deploy/monitoring/alert_rules.yml"

log() { printf '== observability-smoke: %s\n' "$*"; }
die() { printf 'observability-smoke: FAILED: %s\n' "$*" >&2; exit 1; }

for tool in prometheus promtool curl setsid; do
  command -v "$tool" >/dev/null 2>&1 ||
    die "$tool not found (prometheus and promtool come with the Debian package prometheus: apt-get install --no-install-recommends prometheus)"
done

WORK=$(mktemp -d "${TMPDIR:-/tmp}/fedrisk-obs-smoke.XXXXXX")
demo_pid="" prom_pid=""

# stop PID [GROUP]: TERM, up to 10 s of grace, then KILL. With GROUP the
# whole process group the script started (setsid) is signalled.
stop() {
  local pid=$1 target=$1
  [ -n "$pid" ] || return 0
  [ "${2:-}" = group ] && target="-$pid"
  kill -TERM -- "$target" 2>/dev/null || return 0
  for _ in $(seq 1 100); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL -- "$target" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  stop "$prom_pid"
  stop "$demo_pid" group
  if [ "${SMOKE_KEEP:-0}" = 1 ]; then
    log "kept $WORK"
  else
    rm -rf "$WORK"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# port_free PORT: nothing listens on 127.0.0.1:PORT.
port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# free_range N: a base port with N free ports from it on.
free_range() {
  local n=$1 base i
  for _ in $(seq 1 50); do
    base=$((20000 + RANDOM % 20000))
    for ((i = 0; i < n; i++)); do port_free $((base + i)) || continue 2; done
    echo "$base"
    return 0
  done
  die "no $n free ports found on 127.0.0.1"
}

# --- fedrisk with the demo ---------------------------------------------------
FEDRISK=${FEDRISK:-}
if [ -z "$FEDRISK" ]; then
  log "building fedrisk"
  go build -o "$WORK/fedrisk" ./cmd/fedrisk
  FEDRISK="$WORK/fedrisk"
fi
if ! "$FEDRISK" demo --help 2>/dev/null | grep -q -- '--base-port'; then
  die "'$FEDRISK demo' does not exist yet (or has no --base-port flag): this smoke test needs the demo command of issue 7"
fi

DEMO_DIR="$WORK/demo"
ENV_FILE="$DEMO_DIR/demo-endpoints.env"
base=$(free_range 20)
log "starting fedrisk demo on 127.0.0.1 ports $base.. (log: $WORK/demo.log)"
# shellcheck disable=SC2086 # SMOKE_DEMO_ARGS is a list of words
setsid "$FEDRISK" demo --dir "$DEMO_DIR" --base-port "$base" ${SMOKE_DEMO_ARGS:-} >"$WORK/demo.log" 2>&1 </dev/null &
demo_pid=$!

deadline=$((SECONDS + DEMO_TIMEOUT))
until [ -f "$ENV_FILE" ] && grep -q '^DEMO_READY=1' "$ENV_FILE"; do
  if ! kill -0 "$demo_pid" 2>/dev/null; then
    tail -n 40 "$WORK/demo.log" >&2 || true
    die "fedrisk demo exited before writing DEMO_READY=1 to $ENV_FILE"
  fi
  if [ "$SECONDS" -ge "$deadline" ]; then
    tail -n 40 "$WORK/demo.log" >&2 || true
    die "fedrisk demo did not write DEMO_READY=1 within ${DEMO_TIMEOUT}s"
  fi
  sleep 1
done
log "demo ready after ${SECONDS}s"

# The endpoints file is the demo's own output, written as shell assignments.
set -a
# shellcheck disable=SC1090
. "$ENV_FILE"
set +a
for v in GUEST_SERVING_URL HOST_SERVING_URL GUEST_CONSENT_URL GUEST_PSI_URL CA_FILE CLIENT_CERT_FILE CLIENT_KEY_FILE; do
  [ -n "${!v:-}" ] || die "$ENV_FILE does not set $v"
done
for f in "$CA_FILE" "$CLIENT_CERT_FILE" "$CLIENT_KEY_FILE"; do
  [ -r "$f" ] || die "cannot read $f named in $ENV_FILE"
done

# --- Prometheus --------------------------------------------------------------
# job JOB URL...: a scrape job for the listeners behind URL... (guest first,
# then host), over the URLs' scheme with the demo's CA and client certificate.
job() {
  local name=$1 url scheme=""
  shift
  printf '  - job_name: %s\n    metrics_path: /metrics\n' "$name"
  printf '    static_configs:\n'
  for url in "$@"; do
    [ -n "$url" ] || continue
    scheme=${url%%://*}
    local hostport=${url#*://}
    hostport=${hostport%%/*}
    local party=guest
    [ "$url" = "${HOST_SERVING_URL:-}" ] || [ "$url" = "${HOST_CONSENT_URL:-}" ] || [ "$url" = "${HOST_PSI_URL:-}" ] && party=host
    printf "      - targets: ['%s']\n        labels: {party: %s}\n" "$hostport" "$party"
  done
  printf '    scheme: %s\n' "$scheme"
  printf "    tls_config:\n      ca_file: '%s'\n      cert_file: '%s'\n      key_file: '%s'\n" \
    "$CA_FILE" "$CLIENT_CERT_FILE" "$CLIENT_KEY_FILE"
}

{
  printf 'global:\n  scrape_interval: 2s\n  scrape_timeout: 2s\n  evaluation_interval: 2s\n'
  printf "rule_files:\n  - '%s'\n" "$RULES"
  printf 'scrape_configs:\n'
  job model-serving "$GUEST_SERVING_URL" "$HOST_SERVING_URL"
  job consent-service "$GUEST_CONSENT_URL" "${HOST_CONSENT_URL:-}"
  job psi-service "$GUEST_PSI_URL" "${HOST_PSI_URL:-}"
} >"$WORK/prometheus.yml"
promtool check config "$WORK/prometheus.yml" >"$WORK/promtool.log" 2>&1 ||
  { cat "$WORK/promtool.log" >&2; die "the generated prometheus.yml does not check"; }

PROM_PORT=$(free_range 1)
PROM="http://127.0.0.1:$PROM_PORT"
log "starting Prometheus on $PROM (log: $WORK/prometheus.log)"
prometheus --config.file="$WORK/prometheus.yml" --storage.tsdb.path="$WORK/tsdb" \
  --web.listen-address="127.0.0.1:$PROM_PORT" --log.level=warn \
  >"$WORK/prometheus.log" 2>&1 </dev/null &
prom_pid=$!

report() {
  echo "--- alerts:" >&2
  curl -sS "$PROM/api/v1/alerts" >&2 || true
  echo >&2
  echo "--- targets:" >&2
  curl -sS "$PROM/api/v1/targets?state=active" >&2 || true
  echo >&2
  echo "--- privacy_budget_remaining:" >&2
  curl -sS --get --data-urlencode 'query=privacy_budget_remaining' "$PROM/api/v1/query" >&2 || true
  echo >&2
  echo "--- rule health:" >&2
  curl -sS "$PROM/api/v1/rules?type=alert" | grep -o '"name":"[A-Za-z]*","query[^}]*"health":"[a-z]*"' >&2 || true
  echo "--- prometheus log (tail):" >&2
  tail -n 20 "$WORK/prometheus.log" >&2 || true
  echo "--- demo log (tail):" >&2
  tail -n 20 "$WORK/demo.log" >&2 || true
}

started=$SECONDS
deadline=$((SECONDS + ALERT_TIMEOUT))
query='ALERTS{alertname="PrivacyBudgetLow",alertstate="firing"}'
while :; do
  kill -0 "$prom_pid" 2>/dev/null || { report; die "prometheus exited"; }
  kill -0 "$demo_pid" 2>/dev/null || { report; die "fedrisk demo exited while being scraped"; }
  answer=$(curl -sS --get --data-urlencode "query=$query" "$PROM/api/v1/query" 2>/dev/null || true)
  if printf '%s' "$answer" | grep -q '"alertname":"PrivacyBudgetLow"'; then
    log "PrivacyBudgetLow is firing after $((SECONDS - started))s: $(printf '%s' "$answer" | grep -o '"metric":{[^}]*}' | head -n 3 | tr '\n' ' ')"
    exit 0
  fi
  if [ "$SECONDS" -ge "$deadline" ]; then
    report
    die "PrivacyBudgetLow did not fire within ${ALERT_TIMEOUT}s"
  fi
  sleep 2
done
