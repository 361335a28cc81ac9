#!/usr/bin/env bash
# scripts/observability-smoke.sh: the runbook's monitoring end to end, from
# a fedrisk node to a webhook.
#
# Starts `fedrisk demo` (guest and host on 127.0.0.1 over mTLS) and waits
# until every demo stage has finished (the demo drains one subject's privacy
# budget, so the host's privacy_budget_remaining minimum drops to 0). Then,
# each on a free 127.0.0.1 port:
#   - a local webhook receiver (deploy/monitoring/webhooksink) standing in
#     for the pager/SMS gateway and the chat webhook;
#   - a real Alertmanager (Debian's prometheus-alertmanager) with
#     deploy/monitoring/alertmanager.yml and alertmanager.tmpl as committed,
#     only the two receiver URLs pointed at the local receiver;
#   - a real Prometheus (Debian's prometheus) that scrapes the demo's
#     serving, consent and PSI /metrics over TLS with the demo's CA and client
#     certificate, loads every deploy/monitoring/*_rules.yml and sends alerts
#     to that Alertmanager.
# It waits until Prometheus reports PrivacyBudgetLow firing and the receiver
# gets it (critical: the pager route), lets SMOKE_SETTLE seconds pass, and
# checks that every alert condition delivered (alert name and labels but job
# and instance) was delivered exactly once, that Prometheus fires and
# Alertmanager holds exactly one PrivacyBudgetLow per condition, and that
# no rule failed to evaluate.
#
# Exit 0 when all of that holds; 1 with the alerts, targets, deliveries and
# logs when it does not, or when something is missing. Every process it
# starts is stopped on exit.
#
# Environment:
#   FEDRISK              fedrisk binary to use (default: built from ./cmd/fedrisk)
#   SMOKE_DEMO_TIMEOUT   seconds to wait for the demo's DEMO_READY=1 (default 600)
#   SMOKE_ALERT_TIMEOUT  seconds to wait for the alert once Prometheus runs (default 180)
#   SMOKE_DELIVERY_TIMEOUT seconds to wait for its delivery once it fires (default 60)
#   SMOKE_SETTLE         seconds to keep receiving after the first delivery (default 20:
#                        more than the critical route's 10 s group_wait)
#   SMOKE_DEMO_ARGS      extra arguments for `fedrisk demo` (e.g. "--customers 2000")
#   SMOKE_KEEP=1         keep the work directory (logs, demo data) for inspection
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
export PATH="/usr/local/go/bin:$PATH"

DEMO_TIMEOUT=${SMOKE_DEMO_TIMEOUT:-600}
ALERT_TIMEOUT=${SMOKE_ALERT_TIMEOUT:-180}
DELIVERY_TIMEOUT=${SMOKE_DELIVERY_TIMEOUT:-60}
SETTLE=${SMOKE_SETTLE:-20}
MON="$ROOT/deploy/monitoring"

log() { printf '== observability-smoke: %s\n' "$*"; }
die() { printf 'observability-smoke: FAILED: %s\n' "$*" >&2; exit 1; }

for tool in prometheus promtool amtool curl setsid; do
  command -v "$tool" >/dev/null 2>&1 ||
    die "$tool not found (prometheus and promtool come with the Debian package prometheus, amtool with prometheus-alertmanager: apt-get install --no-install-recommends prometheus prometheus-alertmanager)"
done
# Debian names the Alertmanager binary prometheus-alertmanager.
ALERTMANAGER=$(command -v prometheus-alertmanager || command -v alertmanager || true)
[ -n "$ALERTMANAGER" ] || die "Alertmanager not found (apt-get install --no-install-recommends prometheus-alertmanager)"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/fedrisk-obs-smoke.XXXXXX")
demo_pid="" prom_pid="" am_pid="" sink_pid=""

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
  stop "$am_pid"
  stop "$sink_pid"
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

# --- webhook receiver and Alertmanager ----------------------------------------
log "building the webhook receiver"
(cd deploy && go build -o "$WORK/webhooksink" ./monitoring/webhooksink)
DELIVERIES="$WORK/deliveries.log"
: >"$DELIVERIES"
"$WORK/webhooksink" -addr-file "$WORK/sink.addr" -log "$DELIVERIES" >"$WORK/webhooksink.log" 2>&1 </dev/null &
sink_pid=$!
for _ in $(seq 1 100); do [ -s "$WORK/sink.addr" ] && break; sleep 0.1; done
[ -s "$WORK/sink.addr" ] || die "the webhook receiver did not start: $(cat "$WORK/webhooksink.log")"
SINK="http://$(cat "$WORK/sink.addr")"

# alertmanager.yml and its template as committed; only the receivers' URLs
# change: the pager gateway's and the chat webhook's (read from a file).
AM_DIR="$WORK/alertmanager"
mkdir -p "$AM_DIR"
cp "$MON/alertmanager.tmpl" "$AM_DIR/"
printf '%s/chat\n' "$SINK" >"$AM_DIR/chat-webhook-url"
sed -e "s|http://pager-gateway:9095/alertmanager|$SINK/pager|" \
  -e "s|/etc/alertmanager/secrets/chat-webhook-url|$AM_DIR/chat-webhook-url|" \
  "$MON/alertmanager.yml" >"$AM_DIR/alertmanager.yml"
grep -q "$SINK/pager" "$AM_DIR/alertmanager.yml" && grep -q "$AM_DIR/chat-webhook-url" "$AM_DIR/alertmanager.yml" ||
  die "alertmanager.yml no longer has the pager URL or the chat URL file this script replaces"
amtool check-config "$AM_DIR/alertmanager.yml" >"$WORK/amtool.log" 2>&1 ||
  { cat "$WORK/amtool.log" >&2; die "the smoke test's alertmanager.yml does not check"; }

AM_PORT=$(free_range 1)
AM="http://127.0.0.1:$AM_PORT"
log "starting Alertmanager on $AM (log: $WORK/alertmanager.log)"
"$ALERTMANAGER" --config.file="$AM_DIR/alertmanager.yml" --storage.path="$AM_DIR/data" \
  --web.listen-address="127.0.0.1:$AM_PORT" --cluster.listen-address= --log.level=warn \
  >"$WORK/alertmanager.log" 2>&1 </dev/null &
am_pid=$!
for _ in $(seq 1 100); do curl -fsS "$AM/-/ready" >/dev/null 2>&1 && break; sleep 0.1; done
curl -fsS "$AM/-/ready" >/dev/null 2>&1 || die "Alertmanager did not become ready: $(tail -n 20 "$WORK/alertmanager.log")"

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
  printf 'rule_files:\n'
  for f in "$MON"/*_rules.yml; do
    printf "  - '%s'\n" "$f"
  done
  printf "alerting:\n  alertmanagers:\n    - static_configs:\n        - targets: ['127.0.0.1:%s']\n" "$AM_PORT"
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
  echo "--- alertmanager alerts:" >&2
  curl -sS "$AM/api/v2/alerts" >&2 || true
  echo >&2
  echo "--- deliveries to the webhook receiver:" >&2
  cat "$DELIVERIES" >&2 || true
  echo "--- alertmanager log (tail):" >&2
  tail -n 20 "$WORK/alertmanager.log" >&2 || true
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
    break
  fi
  if [ "$SECONDS" -ge "$deadline" ]; then
    report
    die "PrivacyBudgetLow did not fire within ${ALERT_TIMEOUT}s"
  fi
  sleep 2
done

# --- delivery: exactly once per alert ------------------------------------------
started=$SECONDS
deadline=$((SECONDS + DELIVERY_TIMEOUT))
until grep -q '^pager firing PrivacyBudgetLow ' "$DELIVERIES"; do
  kill -0 "$am_pid" 2>/dev/null || { report; die "alertmanager exited"; }
  kill -0 "$sink_pid" 2>/dev/null || { report; die "the webhook receiver exited"; }
  if [ "$SECONDS" -ge "$deadline" ]; then
    report
    die "PrivacyBudgetLow fired but did not reach the webhook receiver through Alertmanager within ${DELIVERY_TIMEOUT}s"
  fi
  sleep 1
done
log "PrivacyBudgetLow delivered to the pager webhook after $((SECONDS - started))s; receiving ${SETTLE}s more"
sleep "$SETTLE"

failed=0
# Every firing alert delivered to the pager, keyed by alert name and
# condition (its labels but job and instance), must have come once.
dups=$(awk '$1 == "pager" && $2 == "firing" { print $3, $4 }' "$DELIVERIES" | sort | uniq -c | awk '$1 != 1')
if [ -n "$dups" ]; then
  printf 'observability-smoke: delivered more than once (count, alert, condition):\n%s\n' "$dups" >&2
  failed=1
fi
conditions=$(awk '$1 == "pager" && $2 == "firing" && $3 == "PrivacyBudgetLow" { print $4 }' "$DELIVERIES" | sort -u | wc -l)
firing=$(curl -sS --get --data-urlencode "query=$query" "$PROM/api/v1/query" | grep -o '"alertname":"PrivacyBudgetLow"' | wc -l)
held=$(curl -sS --get --data-urlencode 'filter=alertname="PrivacyBudgetLow"' "$AM/api/v2/alerts" | grep -o '"fingerprint"' | wc -l)
if [ "$firing" -ne "$conditions" ]; then
  echo "observability-smoke: Prometheus fires $firing PrivacyBudgetLow alerts for $conditions condition(s): one condition fires more than once (the same series exported on several listeners?)" >&2
  failed=1
fi
if [ "$held" -ne "$conditions" ]; then
  echo "observability-smoke: Alertmanager holds $held PrivacyBudgetLow alerts for $conditions condition(s)" >&2
  failed=1
fi
bad_rules=$(curl -sS "$PROM/api/v1/rules" | grep -o '"name":"[^"]*","query[^}]*"health":"err"' || true)
if [ -n "$bad_rules" ]; then
  printf 'observability-smoke: rules failing to evaluate:\n%s\n' "$bad_rules" >&2
  failed=1
fi
if [ "$failed" = 1 ]; then
  report
  die "an alert was not delivered exactly once"
fi
log "every alert delivered exactly once ($(grep -c '' "$DELIVERIES") deliveries):"
sed 's/^/   /' "$DELIVERIES"
