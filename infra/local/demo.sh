#!/usr/bin/env bash
# The local demo: the whole devlake-autopilot flow on this machine, no AWS account, no Docker.
#
#   bash infra/local/demo.sh          run the flow, print a summary, tear everything down
#   bash infra/local/demo.sh --keep   same, then keep everything running until Ctrl-C so you can
#                                     open the metrics URL and invoke the functions by hand
#
# It starts DynamoDB Local (table created from template.yaml), the CloudWatch recording double, the
# DevLake simulator seeded with tests/fixtures/sample.json, and the three functions under
# `cargo lambda watch`; runs the automation, fails some of the pipelines it triggered, runs the
# monitor, and scrapes the metrics function URL with its bearer token.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD

KEEP=0
for arg in "$@"; do
  case "$arg" in
    --keep) KEEP=1 ;;
    -h | --help) sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "demo: unknown option $arg (try --help)" >&2; exit 2 ;;
  esac
done

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
bash infra/local/setup.sh
eval "$(bash infra/local/setup.sh --env)"

WORK=$(mktemp -d /tmp/devlake-autopilot-demo.XXXXXX)
PIDS=()
cleanup() {
  trap - EXIT INT TERM
  for pid in "${PIDS[@]}"; do kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true; done
  sleep 0.5
  for pid in "${PIDS[@]}"; do kill -KILL -- "-$pid" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'echo; echo "demo: interrupted, tearing down"; exit 130' INT TERM

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }
# Runs a command in its own process group (so teardown kills its children too), logging to $WORK.
start() {
  local name=$1; shift
  setsid "$@" >"$WORK/$name.log" 2>&1 &
  PIDS+=($!)
}
wait_for_line() { # file pattern seconds
  local i
  for ((i = 0; i < $3 * 10; i++)); do
    grep -q "$2" "$1" 2>/dev/null && return 0
    sleep 0.1
  done
  echo "demo: timed out waiting for '$2' in $1:" >&2; tail -n 20 "$1" >&2; exit 1
}
json() { python3 -c "import json,sys; d=json.load(sys.stdin); $1"; }

say "Building (dev profile)"
cargo build --workspace --bins --quiet

say "Starting DynamoDB Local, the CloudWatch double and the DevLake simulator"
DDB_PORT=$(free_port)
mkdir -p "$WORK/ddb"
# DynamoDB Local writes a metadata file into its working directory: run it from the temp dir.
setsid bash -c "cd '$WORK/ddb' && exec java -Djava.library.path='$DYNAMODB_LOCAL_DIR/DynamoDBLocal_lib' -jar '$DYNAMODB_LOCAL_DIR/DynamoDBLocal.jar' -inMemory -port $DDB_PORT" >"$WORK/dynamodb.log" 2>&1 &
PIDS+=($!)
start cloudwatch target/debug/cloudwatch-double --port 0
start devlake target/debug/devlake-sim --port 0 --fixture tests/fixtures/sample.json
wait_for_line "$WORK/cloudwatch.log" "listening on" 30
wait_for_line "$WORK/devlake.log" "listening on" 30
CW_URL=$(grep -o 'http://127.0.0.1:[0-9]*' "$WORK/cloudwatch.log" | head -n1)
DEVLAKE_URL=$(grep -o 'http://127.0.0.1:[0-9]*' "$WORK/devlake.log" | head -n1)
DDB_URL="http://127.0.0.1:$DDB_PORT"
TABLE=devlake-autopilot-demo
for i in $(seq 1 60); do
  target/debug/create-table --endpoint "$DDB_URL" --table "$TABLE" >"$WORK/create-table.log" 2>&1 && break
  [[ $i == 60 ]] && { cat "$WORK/create-table.log" >&2; exit 1; }
  sleep 0.5
done
echo "DynamoDB Local  $DDB_URL (table $TABLE)"
echo "CloudWatch      $CW_URL"
echo "DevLake         $DEVLAKE_URL"

TOKEN="demo-$(python3 -c 'import secrets; print(secrets.token_hex(12))')"
cat >"$WORK/env" <<ENV
DEVLAKE_ENDPOINT=$DEVLAKE_URL
TABLE_NAME=$TABLE
AWS_REGION=us-east-1
AWS_ACCESS_KEY_ID=local
AWS_SECRET_ACCESS_KEY=local
AWS_ENDPOINT_URL_DYNAMODB=$DDB_URL
AWS_ENDPOINT_URL_CLOUDWATCH=$CW_URL
METRICS_TOKEN=$TOKEN
TRIGGER_GAP_MS=50
RUST_LOG=info
ENV

say "Starting the functions under cargo lambda watch"
WATCH_PORT=$(free_port)
start watch cargo lambda watch --invoke-address 127.0.0.1 --invoke-port "$WATCH_PORT" --env-file "$WORK/env"
wait_for_line "$WORK/watch.log" "Lambda runtime\|listening\|lambda-url" 600 || true
invoke() { # function payload
  timeout 600 cargo lambda invoke "$1" --invoke-address 127.0.0.1 --invoke-port "$WATCH_PORT" --data-ascii "$2"
}

say "Automation: discover, sync scopes, scope configs, projects, timeAfter, trigger"
NOW=$(date -u +%Y-%m-%dT%H:%M:%SZ)
invoke devlake-automation "{\"scheduledTime\": \"$NOW\"}" >"$WORK/automation.json"
json 'print(json.dumps({k: v for k, v in d.items() if k not in ("planned",)}, indent=2)[:4000])' <"$WORK/automation.json"

say "Making some of the triggered pipelines fail"
curl -sf "$DEVLAKE_URL/pipelines?pending=1&pageSize=1000" >"$WORK/pending.json"
python3 - "$DEVLAKE_URL" "$WORK/pending.json" <<'PY'
import json, sys, urllib.request
base, path = sys.argv[1], sys.argv[2]
pipelines = json.load(open(path))["pipelines"]
failed = 0
for i, p in enumerate(sorted(pipelines, key=lambda p: p["id"])):
    status = "TASK_FAILED" if i % 3 == 0 else "TASK_COMPLETED"
    failed += status == "TASK_FAILED"
    body = json.dumps({"status": status, "message": "demo: simulated collector failure" if status == "TASK_FAILED" else ""}).encode()
    req = urllib.request.Request(f"{base}/_sim/pipelines/{p['id']}/finish", data=body, method="POST",
                                 headers={"content-type": "application/json"})
    urllib.request.urlopen(req).read()
print(f"{len(pipelines)} pipelines finished, {failed} of them failed")
PY

say "Monitor: record failures once, update per-project state"
invoke devlake-monitor '{}' >"$WORK/monitor.json"
json 'print(json.dumps(d, indent=2))' <"$WORK/monitor.json"
say "Monitor again (nothing new: no double counting)"
invoke devlake-monitor '{}' | json 'print("newFailures:", d.get("newFailures"))'

say "Metrics function URL (Prometheus text, bearer token)"
METRICS_URL="http://127.0.0.1:$WATCH_PORT/lambda-url/devlake-metrics/metrics"
printf 'without token: HTTP %s\n' "$(curl -s -o /dev/null -w '%{http_code}' "$METRICS_URL")"
curl -sf -H "Authorization: Bearer $TOKEN" "$METRICS_URL" >"$WORK/metrics.prom"
printf 'with token:    HTTP 200, %s lines\n' "$(wc -l <"$WORK/metrics.prom")"
grep -E '^devlake_(up|monitor_last_run_success|automation_last_run_success) ' "$WORK/metrics.prom" || true
grep -E '^devlake_project_pipeline_failures_total' "$WORK/metrics.prom" | head -n 8 || true
grep -E '^devlake_blueprint_failure_total' "$WORK/metrics.prom" | head -n 4 || true
promtool check metrics <"$WORK/metrics.prom" && echo "promtool check metrics: OK"

say "CloudWatch datums recorded by the double"
curl -sf "$CW_URL/_recorded" | json '
from collections import Counter
c = Counter(x.get("name") or x.get("metricName") for x in (d if isinstance(d, list) else d.get("datums", [])))
print("\n".join(f"{k}: {v}" for k, v in sorted(c.items())))'

if [[ $KEEP == 1 ]]; then
  say "Still running (Ctrl-C to stop)"
  cat <<INFO
Metrics:   curl -H 'Authorization: Bearer $TOKEN' $METRICS_URL
Invoke:    cargo lambda invoke devlake-automation --invoke-address 127.0.0.1 --invoke-port $WATCH_PORT --data-ascii '{"dryRun": true}'
           cargo lambda invoke devlake-monitor --invoke-address 127.0.0.1 --invoke-port $WATCH_PORT --data-ascii '{"rescan": true}'
DevLake:   $DEVLAKE_URL/projects   (simulator control: $DEVLAKE_URL/_sim/state)
Logs:      $WORK/*.log
INFO
  while true; do sleep 3600; done
fi
say "Done; tearing down"
