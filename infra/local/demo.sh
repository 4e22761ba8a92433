#!/usr/bin/env bash
# The local demo: the whole devlake-autopilot flow on this machine, no AWS account, no Docker.
#
#   bash infra/local/demo.sh          run the flow, print a summary, tear everything down
#   bash infra/local/demo.sh --keep   same, then keep everything running until Ctrl-C so you can
#                                     open the metrics URL and invoke the functions by hand
#
# It starts DynamoDB Local (table created from template.yaml), the CloudWatch recording double, the
# DevLake simulator seeded with tests/fixtures/demo.json (the sample world plus a Bitbucket Server
# connection), and the four functions under `cargo lambda watch`; adopts the hand-made project
# legacy-api, runs the automation, fails some of the pipelines it triggered, runs the monitor, has
# DevLake push one more failure to the events function (signed notifications, as DevLake sends
# them), and scrapes the metrics function URL with its bearer token. The functions reach DynamoDB Local and the
# CloudWatch double through the recording proxy (aws-recorder), and at the end every AWS call they
# made is checked against their execution roles in template.yaml.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD

KEEP=0
for arg in "$@"; do
  case "$arg" in
    --keep) KEEP=1 ;;
    -h | --help) sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
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
  for pid in "${PIDS[@]}"; do
    # cargo lambda watch starts each function in a session of its own: stop those first.
    for child in $(pgrep -P "$pid" 2>/dev/null); do kill -TERM -- "-$child" 2>/dev/null || true; done
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
  done
  sleep 0.5
  for pid in "${PIDS[@]}"; do kill -KILL -- "-$pid" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'echo; echo "demo: interrupted, tearing down"; exit 130' INT TERM
# What a failed run leaves to read: the last lines of every process's log, the functions' own
# (watch.log) last, so they end the output even where only its tail is kept. None of these logs
# carries the token or the notification secret.
show_logs() {
  local log lines
  for log in "$WORK"/*.log; do
    [[ -s $log ]] || continue
    lines=8
    [[ $log == */watch.log ]] && lines=30
    echo "---- last lines of $(basename "$log")" >&2
    # Without colours and the runtime's span prefix (request and trace ids), so a line fits.
    tail -n "$lines" "$log" | sed -e $'s/\x1b\\[[0-9;]*m//g' -e 's/Lambda runtime invoke{[^}]*}: //' | cut -c1-300 >&2
  done
}
trap 'status=$?; failed="demo: failed (exit $status) at line $LINENO: $BASH_COMMAND"; echo "$failed" >&2; show_logs; echo "$failed" >&2; exit $status' ERR

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
# Honours CARGO_TARGET_DIR and .cargo/config.toml, like cargo itself.
BIN="$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')/debug"

say "Starting DynamoDB Local, the CloudWatch double and the DevLake simulator"
DDB_PORT=$(free_port)
mkdir -p "$WORK/ddb"
# DynamoDB Local writes a metadata file into its working directory: run it from the temp dir.
setsid bash -c "cd '$WORK/ddb' && exec java -Djava.library.path='$DYNAMODB_LOCAL_DIR/DynamoDBLocal_lib' -jar '$DYNAMODB_LOCAL_DIR/DynamoDBLocal.jar' -inMemory -sharedDb -port $DDB_PORT" >"$WORK/dynamodb.log" 2>&1 &
PIDS+=($!)
start cloudwatch "$BIN"/cloudwatch-double --port 0
start devlake "$BIN"/devlake-sim --port 0 --fixture tests/fixtures/demo.json
wait_for_line "$WORK/cloudwatch.log" "listening on" 30
wait_for_line "$WORK/devlake.log" "listening on" 30
CW_URL=$(grep -o 'http://127.0.0.1:[0-9]*' "$WORK/cloudwatch.log" | head -n1)
DEVLAKE_URL=$(grep -o 'http://127.0.0.1:[0-9]*' "$WORK/devlake.log" | head -n1)
DDB_URL="http://127.0.0.1:$DDB_PORT"
TABLE=devlake-autopilot-demo
for i in $(seq 1 60); do
  "$BIN"/create-table --endpoint "$DDB_URL" --table "$TABLE" >"$WORK/create-table.log" 2>&1 && break
  [[ $i == 60 ]] && { cat "$WORK/create-table.log" >&2; exit 1; }
  sleep 0.5
done
# Every AWS call of the functions goes through the recorder, attributed to the function being
# invoked (named before each invocation), and is checked against its role at the end.
start recorder "$BIN"/aws-recorder serve --port 0 --dynamodb "$DDB_URL" --cloudwatch "$CW_URL"
wait_for_line "$WORK/recorder.log" "listening on" 30
REC_URL=$(grep -o 'http://127.0.0.1:[0-9]*' "$WORK/recorder.log" | head -n1)
echo "DynamoDB Local  $DDB_URL (table $TABLE)"
echo "CloudWatch      $CW_URL"
echo "DevLake         $DEVLAKE_URL"
echo "AWS recorder    $REC_URL"

TOKEN="demo-$(python3 -c 'import secrets; print(secrets.token_hex(12))')"
NOTIFICATION_SECRET="demo-$(python3 -c 'import secrets; print(secrets.token_hex(16))')"
cat >"$WORK/env" <<ENV
DEVLAKE_ENDPOINT=$DEVLAKE_URL
# The simulator serves plain HTTP on loopback; a real DevLake is reached over https://.
ALLOW_INSECURE_HTTP=true
TABLE_NAME=$TABLE
AWS_REGION=us-east-1
AWS_ACCESS_KEY_ID=local
AWS_SECRET_ACCESS_KEY=local
AWS_ENDPOINT_URL_DYNAMODB=$REC_URL
AWS_ENDPOINT_URL_CLOUDWATCH=$REC_URL
METRICS_TOKEN=$TOKEN
NOTIFICATION_SECRET=$NOTIFICATION_SECRET
TRIGGER_GAP_MS=50
TRIGGER_MAX_PER_RUN=500
RUST_LOG=info
ENV

say "Starting the functions under cargo lambda watch"
WATCH_PORT=$(free_port)
# A run checks one build: a file that changes under the repository mid-run must not restart a
# function while it answers. With --keep the functions reload on an edit, as `cargo lambda watch`
# does by default.
WATCH_RELOAD=(--ignore-changes)
[[ $KEEP == 1 ]] && WATCH_RELOAD=()
start watch cargo lambda watch "${WATCH_RELOAD[@]}" --invoke-address 127.0.0.1 --invoke-port "$WATCH_PORT" --env-file "$WORK/env"
for ((i = 0; ; i++)); do # ready once its invoke port accepts connections
  (exec 3<>"/dev/tcp/127.0.0.1/$WATCH_PORT") 2>/dev/null && break
  if ((i > 1200)); then echo "demo: cargo lambda watch did not start:" >&2; tail -n 20 "$WORK/watch.log" >&2; exit 1; fi
  sleep 0.5
done
attribute() { # function binary name: the recorder attributes the next calls to it
  curl -sf -X PUT --data "$1" "$REC_URL/_recorder/function" >/dev/null
}
invoke() { # function payload
  attribute "$1"
  if ! timeout 300 cargo lambda invoke "$1" --invoke-address 127.0.0.1 --invoke-port "$WATCH_PORT" --data-ascii "$2"; then
    echo "demo: invoking $1 failed; the last lines of cargo lambda watch:" >&2
    tail -n 30 "$WORK/watch.log" >&2
    exit 1
  fi
}
CHECKS=0
check() { # description, then a command that must succeed
  local what=$1; shift
  if "$@"; then CHECKS=$((CHECKS + 1)); else
    echo "demo: CHECK FAILED: $what" >&2
    show_logs
    echo "demo: CHECK FAILED: $what" >&2
    exit 1
  fi
}

NOW=$(date -u +%Y-%m-%dT%H:%M:%SZ)
say "Adoption: the hand-made project legacy-api becomes managed (dry run first)"
invoke devlake-automation "{\"action\": \"adopt\", \"all\": true, \"dryRun\": true, \"now\": \"$NOW\"}" >"$WORK/adopt-plan.json"
json 'print("would adopt:", [a["project"] for a in d["adopted"]], " not adoptable:", [(r["project"], r["reason"]) for r in d["notAdopted"]])' <"$WORK/adopt-plan.json"
invoke devlake-automation "{\"action\": \"adopt\", \"projects\": [\"legacy-api\"], \"now\": \"$NOW\"}" >"$WORK/adopt.json"
check "legacy-api is adopted" \
  json 'sys.exit(0 if [a["project"] for a in d["adopted"]] == ["legacy-api"] else 1)' <"$WORK/adopt.json"

say "The CircleCI token is revoked: DevLake's test of that connection now fails"
curl -sf -X POST -H 'content-type: application/json' --data '{"mode": "unauthorized"}' \
  "$DEVLAKE_URL/_sim/connections/circleci/1/test" >/dev/null
curl -s -X POST "$DEVLAKE_URL/plugins/circleci/connections/1/test" | json 'print("DevLake answers:", d["message"])'

say "Automation: discover, test connections, sync scopes, scope configs, projects, timeAfter, trigger"
invoke devlake-automation "{\"scheduledTime\": \"$NOW\"}" >"$WORK/automation.json"
python3 - "$WORK/automation.json" <<'PY2'
import json, sys
d = json.load(open(sys.argv[1]))
cols = ["discoveredConnections", "scopesAdded", "scopeConfigsCreated", "projectsCreated", "projectsConflicting", "triggered", "skipped", "errors"]
print(f"status {d['status']}, {d['durationMs']} ms, DevLake calls: {d['devlakeCalls']['reads']} reads, {d['devlakeCalls']['writes']} writes")
print(f"{'plugin':<16}" + "".join(f"{c[:14]:>15}" for c in cols))
for plugin, c in sorted(d.get("plugins", {}).items()):
    print(f"{plugin:<16}" + "".join(f"{c.get(k, 0):>15}" for k in cols))
print(f"{'total':<16}" + "".join(f"{d['counts'].get(k, 0):>15}" for k in cols))
for c in d.get("conflicts", [])[:5]:
    print("conflict:", json.dumps(c))
for e in d.get("errors", [])[:5]:
    print("error:", json.dumps(e))
for c in d.get("connectionsDown", []):
    print(f"connection down: {c['plugin']}/{c['connectionId']} {c['connectionName']}: {c['message']}")
held = [s["project"] for s in d.get("skippedTriggers", []) if s["reason"] == "connectionDown"]
print(f"not triggered (connection down): {held}")
PY2
check "the first automation run succeeds and creates projects" \
  json 'sys.exit(0 if d["status"] == "ok" and d["counts"]["projectsCreated"] > 0 else 1)' <"$WORK/automation.json"
check "the Bitbucket Server repositories get one project each" \
  json 'sys.exit(0 if d["plugins"]["bitbucket_server"]["projectsCreated"] == 3 else 1)' <"$WORK/automation.json"
check "the CircleCI connection is reported down with DevLake's message" \
  json 'sys.exit(0 if [(c["plugin"], c["message"]) for c in d["connectionsDown"]] == [("circleci", "unexpected status code: 401 (401)")] else 1)' <"$WORK/automation.json"
check "the CircleCI projects are created but none is triggered" \
  json 'c = d["plugins"]["circleci"]; sys.exit(0 if c["projectsCreated"] > 0 and c["triggered"] == 0 and c["projectsSkippedConnectionDown"] == c["projectsCreated"] else 1)' <"$WORK/automation.json"
curl -sf "$DEVLAKE_URL/pipelines?pending=1&pageSize=1000" >"$WORK/pending-first.json"
curl -sf "$DEVLAKE_URL/blueprints?pageSize=1000" >"$WORK/blueprints.json"
check "no pipeline of a CircleCI project is pending" python3 - "$WORK/pending-first.json" "$WORK/blueprints.json" <<'PY'
import json, sys
pending = {p["blueprintId"] for p in json.load(open(sys.argv[1]))["pipelines"]}
circleci = {b["id"] for b in json.load(open(sys.argv[2]))["blueprints"]
            if any(c["pluginName"] == "circleci" for c in b.get("connections") or [])}
sys.exit(0 if circleci and not (pending & circleci) else 1)
PY

say "Automation again with the same scheduled time (idempotent: no write calls)"
invoke devlake-automation "{\"scheduledTime\": \"$NOW\"}" >"$WORK/automation2.json"
python3 - "$WORK/automation2.json" <<'PY2'
import json, sys
d = json.load(open(sys.argv[1]))
c = d["devlakeCalls"]
print(f"status {d['status']}: {c['reads']} reads, {c['writes']} writes, {d['counts']['triggered']} triggered")
PY2
check "a second automation run with the same scheduled time makes no write calls" \
  json 'sys.exit(0 if d["devlakeCalls"]["writes"] == 0 else 1)' <"$WORK/automation2.json"

say "Making some of the triggered pipelines fail"
curl -sf "$DEVLAKE_URL/pipelines?pending=1&pageSize=1000" >"$WORK/pending.json"
python3 - "$DEVLAKE_URL" "$WORK/pending.json" "$WORK/failed-count" <<'PY'
import json, sys, urllib.request
base, path = sys.argv[1], sys.argv[2]
pipelines = json.load(open(path))["pipelines"]
failed = 0
# DevLake's own error chains (pipeline_runner.go, run_task.go, api_async_client.go): the
# monitor reads each failure's cause from them (docs/failure-causes.md).
layers = "Error running pipeline {id}.\ncaused by: Error running task {id}.\ncaused by: subtask collectApiPullRequests ended unexpectedly\ncaused by: "
causes = [
    "Retry exceeded 3 times calling repos/acme/api/pulls. The last error was: authentication failed, please check your AccessToken (401) (401)",
    "Retry exceeded 3 times calling repos/acme/api/pulls. The last error was: Http DoAsync error calling [method:GET path:repos/acme/api/pulls query:map[]]. Response: {\"message\":\"API rate limit exceeded\"} (403)",
    "Failed to connect\ncaused by: dial tcp 10.20.0.5:443: connect: connection refused",
]
for i, p in enumerate(sorted(pipelines, key=lambda p: p["id"])):
    status = "TASK_FAILED" if i % 3 == 0 else "TASK_COMPLETED"
    failed += status == "TASK_FAILED"
    finish = {"status": status, "message": ""}
    if status == "TASK_FAILED":
        finish = {"status": status, "message": f"Error running pipeline {p['id']}.",
                  "errorName": layers.format(id=p["id"]) + causes[(i // 3) % len(causes)]}
    body = json.dumps(finish).encode()
    req = urllib.request.Request(f"{base}/_sim/pipelines/{p['id']}/finish", data=body, method="POST",
                                 headers={"content-type": "application/json"})
    urllib.request.urlopen(req).read()
print(f"{len(pipelines)} pipelines finished, {failed} of them failed")
open(sys.argv[3], "w").write(str(failed))
PY
FAILED=$(cat "$WORK/failed-count")

say "Monitor: record failures once, update per-project state"
invoke devlake-monitor '{}' >"$WORK/monitor.json"
python3 - "$WORK/monitor.json" <<'PY2'
import json, sys
d = json.load(open(sys.argv[1]))
print(f"status {d['status']}: {d['newFailures']} new failures recorded, {d['pipelinesInspected']} pipelines inspected, "
      f"{d['stuck']} stuck, {d['devlakeCalls']} DevLake calls, {d['durationMs']} ms")
for f in d.get("failures", [])[:8]:
    print(f"  {f['status']:<13} pipeline {f['pipelineId']:>4}  {f['cause']:<10}  {f['projectName']}")
if d["newFailures"] > 8:
    print(f"  ... and {d['newFailures'] - 8} more")
PY2
check "the monitor records each failed pipeline once" \
  json "sys.exit(0 if d['newFailures'] == $FAILED else 1)" <"$WORK/monitor.json"
check "each failure carries the cause its errorName names" \
  json 'sys.exit(0 if {f["cause"] for f in d["failures"]} == {"auth", "rate_limit", "network"} else 1)' <"$WORK/monitor.json"
say "Monitor again (nothing new: no double counting)"
invoke devlake-monitor '{}' >"$WORK/monitor2.json"
json 'print("newFailures:", d["newFailures"], " alreadyRecorded:", d.get("alreadyRecorded"))' <"$WORK/monitor2.json"
check "a second monitor run records nothing new" json 'sys.exit(0 if d["newFailures"] == 0 else 1)' <"$WORK/monitor2.json"

say "Push: DevLake notifies the events function of a pipeline that fails"
# DevLake's .env: NOTIFICATION_ENDPOINT is the events function URL, NOTIFICATION_SECRET signs.
EVENTS_URL="http://127.0.0.1:$WATCH_PORT/lambda-url/devlake-events"
attribute devlake-events
curl -sf -X PUT -H 'content-type: application/json' \
  --data "{\"endpoint\": \"$EVENTS_URL\", \"secret\": \"$NOTIFICATION_SECRET\"}" \
  "$DEVLAKE_URL/_sim/notifications" >/dev/null
PUSH_BP=$(json 'print(sorted(d["pipelines"], key=lambda p: p["id"])[0]["blueprintId"])' <"$WORK/pending.json")
PUSH_PROJECT=$(curl -sf "$DEVLAKE_URL/blueprints/$PUSH_BP" | json 'print(d["projectName"])')
PUSH_ID=$(curl -sf -X POST -H 'content-type: application/json' --data '{}' \
  "$DEVLAKE_URL/blueprints/$PUSH_BP/trigger" | json 'print(d["id"])')
curl -sf -X POST "$DEVLAKE_URL/_sim/pipelines/$PUSH_ID/start" >/dev/null
curl -sf -X POST -H 'content-type: application/json' \
  --data '{"status": "TASK_FAILED", "message": "demo: failure pushed by DevLake"}' \
  "$DEVLAKE_URL/_sim/pipelines/$PUSH_ID/finish" >/dev/null
# created, started, failed: three notifications, each answered before the next is sent.
for ((i = 0; i < 600; i++)); do
  curl -sf "$DEVLAKE_URL/_sim/notifications" >"$WORK/notifications.json"
  json 'sys.exit(0 if len(d["notifications"]) >= 3 and all(n["settled"] for n in d["notifications"]) else 1)' \
    <"$WORK/notifications.json" && break
  sleep 0.5
done
python3 - "$WORK/notifications.json" <<'PY'
import json, sys
for n in json.load(open(sys.argv[1]))["notifications"]:
    status = json.loads(n["data"])["Status"]
    print(f"notification {n['id']}: {status:<13} -> HTTP {n['responseCode']}")
PY
check "the events function accepts DevLake's three signed notifications" \
  json 'sys.exit(0 if len(d["notifications"]) == 3 and all(n["responseCode"] == 200 for n in d["notifications"]) else 1)' \
  <"$WORK/notifications.json"
BAD_SIGN=$(curl -s -o /dev/null -w '%{http_code}' -X POST --data '{}' "$EVENTS_URL?nouce=1-AbCdEfGhIjKlMnOp&sign=00")
printf 'unsigned notification: HTTP %s\n' "$BAD_SIGN"
check "the events function refuses a notification DevLake did not sign" test "$BAD_SIGN" = 401
FAILED=$((FAILED + 1))
say "Monitor after the push (the pushed failure is already recorded: counted once)"
invoke devlake-monitor '{}' >"$WORK/monitor3.json"
json 'print("newFailures:", d["newFailures"], " alreadyRecorded:", d.get("alreadyRecorded"))' <"$WORK/monitor3.json"
check "the monitor finds the pushed failure recorded and counts nothing twice" \
  json 'sys.exit(0 if d["newFailures"] == 0 and d["alreadyRecorded"] == 1 else 1)' <"$WORK/monitor3.json"

say "Metrics function URL (Prometheus text, bearer token)"
METRICS_URL="http://127.0.0.1:$WATCH_PORT/lambda-url/devlake-metrics/metrics"
attribute devlake-metrics
NO_TOKEN=$(curl -s -o /dev/null -w '%{http_code}' "$METRICS_URL")
printf 'without token: HTTP %s\n' "$NO_TOKEN"
check "the metrics URL refuses a request without the bearer token" test "$NO_TOKEN" = 401
# Prometheus scrapes again at its next interval when a scrape fails; the demo tries three times,
# and shows each failed attempt (status, body, the functions' log) rather than hiding it.
for attempt in 1 2 3; do
  SCRAPED=$(curl -s -o "$WORK/metrics.prom" -w '%{http_code}' -H "Authorization: Bearer $TOKEN" "$METRICS_URL" || true)
  printf 'with token:    HTTP %s, %s lines\n' "$SCRAPED" "$(wc -l <"$WORK/metrics.prom" 2>/dev/null || echo 0)"
  [[ $SCRAPED == 200 ]] && break
  echo "demo: scrape $attempt of 3 answered HTTP $SCRAPED:" >&2
  head -c 500 "$WORK/metrics.prom" >&2 2>/dev/null || true
  show_logs
  sleep 2
done
check "the metrics URL answers 200 with the token" test "$SCRAPED" = 200
grep -E '^devlake_(up|monitor_last_run_success|automation_last_run_success) ' "$WORK/metrics.prom" || true
grep -E '^devlake_project_pipeline_failures_total' "$WORK/metrics.prom" | head -n 8 || true
grep -E '^devlake_blueprint_failure_total' "$WORK/metrics.prom" | head -n 4 || true
grep -E '^devlake_project_last_failure_reason' "$WORK/metrics.prom" | head -n 4 || true
grep -E '^devlake_connection_up' "$WORK/metrics.prom" || true
check "promtool accepts the metrics page" promtool check metrics <"$WORK/metrics.prom"
echo "promtool check metrics: OK"
check "the compatibility series counts every failure" test \
  "$(awk '/^devlake_blueprint_failure_total\{/ { n += $NF } END { print n + 0 }' "$WORK/metrics.prom")" = "$FAILED"
check "devlake_up is 1" grep -qx 'devlake_up 1' "$WORK/metrics.prom"
grep -E "^devlake_(events_last_received|project_last_pipeline_queue)" "$WORK/metrics.prom" || true
check "the pushed failure is on the page" grep -q "^devlake_project_last_pipeline_status{project_name=\"$PUSH_PROJECT\",status=\"TASK_FAILED\"} 1" "$WORK/metrics.prom"
check "push health is on the page" grep -q '^devlake_events_last_received_timestamp_seconds ' "$WORK/metrics.prom"
check "the pushed pipeline's queue time is on the page" grep -q "^devlake_project_last_pipeline_queue_seconds{project_name=\"$PUSH_PROJECT\"}" "$WORK/metrics.prom"
check "the down CircleCI connection is devlake_connection_up 0" \
  grep -qx 'devlake_connection_up{plugin="circleci",connection_id="1",connection_name="circleci-acme"} 0' "$WORK/metrics.prom"
check "the other connections are up" test \
  "$(grep -c '^devlake_connection_up{.*} 1$' "$WORK/metrics.prom")" = "$(($(grep -c '^devlake_connection_up{' "$WORK/metrics.prom") - 1))"
check "failing projects show their failure reason" grep -q '^devlake_project_last_failure_reason{.*reason="rate_limit"} 1$' "$WORK/metrics.prom"

say "CloudWatch datums recorded by the double"
curl -sf "$CW_URL/_recorded" | json '
from collections import Counter
c = Counter(x["metric_name"] for x in (d if isinstance(d, list) else d.get("datums", [])))
print("\n".join(f"{k}: {v}" for k, v in sorted(c.items())))'
check "both jobs reported RunSuccess to CloudWatch" \
  json 'sys.exit(0 if sum(x["metric_name"] == "RunSuccess" for x in d) >= 2 else 1)' < <(curl -sf "$CW_URL/_recorded")
check "the automation sent ConnectionUp 0 for the CircleCI connection" \
  json 'sys.exit(0 if any(x["metric_name"] == "ConnectionUp" and ["Plugin", "circleci"] in [list(p) for p in x["dimensions"]] and x["value"] == 0 for x in d) else 1)' < <(curl -sf "$CW_URL/_recorded")

say "IAM: every AWS call checked against the function's role in template.yaml"
check "every AWS call the functions made is allowed by their roles" \
  "$BIN"/aws-recorder check --url "$REC_URL" --table "$TABLE"
echo "demo: all $CHECKS checks passed"

if [[ $KEEP == 1 ]]; then
  say "Still running (Ctrl-C to stop)"
  cat <<INFO
Metrics:   curl -H 'Authorization: Bearer $TOKEN' $METRICS_URL
Push:      DevLake's notifications go to $EVENTS_URL (see $DEVLAKE_URL/_sim/notifications)
Invoke:    cargo lambda invoke devlake-automation --invoke-address 127.0.0.1 --invoke-port $WATCH_PORT --data-ascii '{"dryRun": true}'
           cargo lambda invoke devlake-monitor --invoke-address 127.0.0.1 --invoke-port $WATCH_PORT --data-ascii '{"rescan": true}'
DevLake:   $DEVLAKE_URL/projects   (simulator control: $DEVLAKE_URL/_sim/state)
Logs:      $WORK/*.log
INFO
  while true; do sleep 3600; done
fi
say "Done; tearing down"
