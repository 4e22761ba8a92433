#!/usr/bin/env python3
"""Checks devlake-autopilot.json the way an import into Grafana would fail, without Grafana:

* valid JSON with a Prometheus data source variable that every panel and query uses;
* unique panel ids, panels inside the 24-column grid and not overlapping;
* every PromQL query parses (promtool check rules over the queries as recording rules, with the
  Grafana variables replaced by values Prometheus accepts);
* every metric the queries name is one the metrics function serves (docs/metrics.md) or `up`.

Usage: check_dashboard.py DASHBOARD.json   (needs promtool on PATH)
"""

import json
import os
import re
import subprocess
import sys
import tempfile

SERVED = {
    "devlake_blueprint_failure_total",
    "devlake_project_pipeline_failures_total",
    "devlake_project_consecutive_failures",
    "devlake_project_last_failure_timestamp_seconds",
    "devlake_project_last_failure_reason",
    "devlake_project_last_success_timestamp_seconds",
    "devlake_project_last_pipeline_status",
    "devlake_monitor_last_run_timestamp_seconds",
    "devlake_monitor_last_run_success",
    "devlake_automation_last_run_timestamp_seconds",
    "devlake_automation_last_run_success",
    "devlake_automation_managed_projects",
    "devlake_project_last_pipeline_duration_seconds",
    "devlake_project_pipeline_stuck",
    "devlake_project_schedule_missed",
    "devlake_project_stuck_cancel_failed",
    "devlake_up",
    "devlake_connection_up",
    "devlake_project_last_pipeline_queue_seconds",
    "devlake_events_last_received_timestamp_seconds",
    "devlake_metrics_render_duration_seconds",
}
VARIABLES = {"$__rate_interval": "5m", "$__range": "7d", "$__interval": "1m", "$job": ".*", "$project": ".*"}


def fail(msg):
    print(f"dashboard check failed: {msg}", file=sys.stderr)
    sys.exit(1)


def main(path):
    with open(path, encoding="utf-8") as f:
        dash = json.load(f)

    variables = {v["name"]: v for v in dash.get("templating", {}).get("list", [])}
    ds = variables.get("datasource")
    if not ds or ds.get("type") != "datasource" or ds.get("query") != "prometheus":
        fail("no Prometheus data source variable named 'datasource'")
    wanted_ds = {"type": "prometheus", "uid": "${datasource}"}

    ids, cells, exprs = set(), {}, []
    for panel in dash["panels"]:
        pid, title = panel["id"], panel.get("title", "?")
        if pid in ids:
            fail(f"duplicate panel id {pid}")
        ids.add(pid)
        g = panel["gridPos"]
        if g["x"] < 0 or g["w"] <= 0 or g["x"] + g["w"] > 24 or g["h"] <= 0:
            fail(f"panel {title!r} is outside the 24-column grid: {g}")
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                if (x, y) in cells:
                    fail(f"panel {title!r} overlaps {cells[(x, y)]!r}")
                cells[(x, y)] = title
        if panel["type"] == "row":
            continue
        if panel.get("datasource") != wanted_ds:
            fail(f"panel {title!r} does not use the datasource variable")
        if not panel.get("targets"):
            fail(f"panel {title!r} has no query")
        for t in panel["targets"]:
            if t.get("datasource") != wanted_ds:
                fail(f"a query of {title!r} does not use the datasource variable")
            exprs.append((title, t["expr"]))
    for name in ("job", "project"):
        q = variables.get(name, {}).get("definition", "")
        if q:
            m = re.fullmatch(r"label_values\((.*),\s*\w+\)", q)
            if m:
                exprs.append((f"variable {name}", m.group(1)))

    for title, expr in exprs:
        for metric in set(re.findall(r"\b(devlake_[a-z_]+)\b", expr)):
            if metric not in SERVED:
                fail(f"{title!r} queries {metric}, which the metrics function does not serve")

    rules = {"groups": [{"name": "dashboard", "rules": []}]}
    for i, (title, expr) in enumerate(exprs):
        for var, value in VARIABLES.items():
            expr = expr.replace(var, value)
        if "$" in expr.replace("$labels", ""):
            fail(f"{title!r}: unknown variable in {expr!r}")
        rules["groups"][0]["rules"].append({"record": f"dashboard:query_{i}", "expr": expr})
    with tempfile.NamedTemporaryFile("w", suffix=".yml", delete=False) as f:
        json.dump(rules, f)  # JSON is YAML
        rules_path = f.name
    try:
        result = subprocess.run(["promtool", "check", "rules", rules_path], capture_output=True, text=True)
    finally:
        os.unlink(rules_path)
    if result.returncode != 0:
        fail(f"a query does not parse:\n{result.stdout}{result.stderr}")
    print(f"{path}: {len(dash['panels'])} panels, {len(exprs)} queries OK")


if __name__ == "__main__":
    main(sys.argv[1])
