//! The page's families: what each one says, from which part of the snapshot, and in which
//! section of the page. A family belongs in the section holding everything it reads, so the
//! metrics function can keep the published sections between scrapes and rewrite only the live one.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::time::Duration;

use chrono_tz::Tz;

use super::writer::{escape_label_value, unix_seconds, Family, Kind, LocalTime, Page, Value};
use super::{ExpositionFormat, BLUEPRINT_FAILURE_TOTAL, DECODE_ERRORS, RENDER_DURATION};
use crate::store::{ConnectionHealth, FailureEvent, MetricsSnapshot, ProjectState, RunRecord};

/// The families of the project section, in page order.
pub(super) fn write_project_families(page: &mut Page, snapshot: &MetricsSnapshot) {
    // One entry per project name: DynamoDB keys guarantee it, an in-memory source might not, and
    // a repeated series would make the whole page invalid.
    let by_name: BTreeMap<&str, &ProjectState> = snapshot
        .projects
        .iter()
        .map(|p| (p.project_name.as_str(), p))
        .collect();
    // Escaped once, written up to ten times.
    let projects: Vec<(&ProjectState, Cow<'_, str>)> = by_name
        .into_values()
        .map(|p| (p, escape_label_value(&p.project_name)))
        .collect();

    write_per_project(
        page,
        &projects,
        "devlake_project_pipeline_failures_total",
        "Failures ever recorded for the project's pipelines (monotonic).",
        Kind::Counter,
        |p| Some(Value::Int(p.failures_total)),
    );
    write_per_project(
        page,
        &projects,
        "devlake_project_consecutive_failures",
        "Failed pipelines of the project since its last successful one (0 after a success).",
        Kind::Gauge,
        |p| Some(Value::Int(p.consecutive_failures)),
    );
    write_per_project(
        page,
        &projects,
        "devlake_project_last_failure_timestamp_seconds",
        "When the project's latest failed pipeline finished (Unix seconds).",
        Kind::Gauge,
        |p| p.last_failure_at.map(unix_seconds),
    );
    let mut reason = page.family(
        "devlake_project_last_failure_reason",
        "1 for the cause of the project's latest recorded failure (docs/failure-causes.md).",
        Kind::Gauge,
    );
    for (p, name) in &projects {
        if let Some(cause) = p
            .last_failure_reason
            .filter(|_| p.last_failure_at.is_some())
        {
            reason.sample(
                &[("project_name", name), ("reason", cause.as_str())],
                Value::Int(1),
            );
        }
    }
    write_per_project(
        page,
        &projects,
        "devlake_project_last_success_timestamp_seconds",
        "When the project's latest successful pipeline finished (Unix seconds).",
        Kind::Gauge,
        |p| p.last_success_at.map(unix_seconds),
    );
    let mut status = page.family(
        "devlake_project_last_pipeline_status",
        "1 for the status of the project's latest finished pipeline.",
        Kind::Gauge,
    );
    for (p, name) in &projects {
        if let Some(s) = p.last_status.as_deref() {
            status.sample(
                &[("project_name", name), ("status", &escape_label_value(s))],
                Value::Int(1),
            );
        }
    }
    write_per_project(
        page,
        &projects,
        "devlake_project_last_pipeline_duration_seconds",
        "Duration of the project's latest finished pipeline.",
        Kind::Gauge,
        |p| {
            p.last_duration_seconds
                .filter(|d| d.is_finite())
                .map(Value::Float)
        },
    );
    write_per_project(
        page,
        &projects,
        "devlake_project_pipeline_stuck",
        "1 while a pipeline of the project has run longer than STUCK_AFTER_HOURS.",
        Kind::Gauge,
        |p| Some(Value::from(p.stuck)),
    );
    write_per_project(
        page,
        &projects,
        "devlake_project_schedule_missed",
        "1 while the project's managed blueprint missed its latest scheduled run (due, no pipeline).",
        Kind::Gauge,
        |p| Some(Value::from(p.schedule_missed)),
    );
    write_per_project(
        page,
        &projects,
        "devlake_project_stuck_cancel_failed",
        "1 while a cancel sent to the project's stuck pipeline (STUCK_ACTION) has not stopped it.",
        Kind::Gauge,
        |p| Some(Value::from(p.stuck_cancel_failed)),
    );
    write_per_project(
        page,
        &projects,
        "devlake_project_last_pipeline_queue_seconds",
        "Seconds the project's newest started pipeline waited between its creation and its \
         start (from DevLake's notifications).",
        Kind::Gauge,
        |p| {
            p.last_started
                .as_ref()
                .map(|s| Value::Float(s.queue_seconds()))
        },
    );
}

/// The families of the live section, in page order: run records and the notification mark, then
/// the decode errors and the self-timing line, and the closing `# EOF` of OpenMetrics.
pub(super) fn write_live_families(
    page: &mut Page,
    snapshot: &MetricsSnapshot,
    render_duration: impl FnOnce() -> Duration,
) {
    write_run(page, snapshot.monitor.as_ref(), "monitor");
    write_run(page, snapshot.automation.as_ref(), "automation");
    if let Some(n) = snapshot.automation.as_ref().and_then(managed_projects) {
        page.family(
            "devlake_automation_managed_projects",
            "Projects the automation manages, as counted by its latest run.",
            Kind::Gauge,
        )
        .sample(&[], Value::Int(n));
    }
    write_orphans(page, snapshot.automation.as_ref());
    write_connections(page, &snapshot.connections);
    let up = snapshot
        .monitor
        .as_ref()
        .and_then(|m| m.devlake_up)
        .unwrap_or(false);
    page.family(
        "devlake_up",
        "1 if the latest monitor run reached DevLake (0 if it did not, or no run is recorded).",
        Kind::Gauge,
    )
    .sample(&[], Value::from(up));
    if let Some(events) = &snapshot.events {
        page.family(
            "devlake_events_last_received_timestamp_seconds",
            "When the events function last accepted a DevLake pipeline notification (Unix \
             seconds).",
            Kind::Gauge,
        )
        .sample(&[], unix_seconds(events.received_at));
    }
    // Only when something was skipped: a page without decode errors stays exactly what it was,
    // and `devlake_metrics_decode_errors > 0` alerts all the same.
    if snapshot.decode_errors > 0 {
        page.family(
            DECODE_ERRORS,
            "Stored items this scrape skipped because they did not decode (each is logged).",
            Kind::Gauge,
        )
        .sample(&[], Value::Int(snapshot.decode_errors));
    }
    page.family(
        RENDER_DURATION,
        "Time this scrape spent reading the store and rendering the page before this line.",
        Kind::Gauge,
    )
    .sample(&[], Value::Float(render_duration().as_secs_f64()));
    if page.format == ExpositionFormat::OpenMetrics {
        page.out.push_str("# EOF\n");
    }
}

/// One series per (project, `time_failed`) with the number of failures at that second: two
/// failures of one project in the same local second would otherwise be a duplicate series.
pub(super) fn write_failure_compat(page: &mut Page, snapshot: &MetricsSnapshot, timezone: Tz) {
    let mut family = compat_family(page);
    write_failure_compat_samples(&mut family, &snapshot.failures, timezone);
}

pub(super) fn compat_family(page: &mut Page) -> Family<'_, 'static> {
    page.family(
        BLUEPRINT_FAILURE_TOTAL,
        "Failed DevLake pipelines in the last FAILURE_WINDOW_DAYS: one series per project and \
         failure time (local TIMEZONE), kept for dashboards of the original system.",
        Kind::Counter,
    )
}

pub(super) fn write_failure_compat_samples(
    family: &mut Family<'_, '_>,
    failures: &[FailureEvent],
    timezone: Tz,
) {
    let mut failures: Vec<(&str, LocalTime)> = failures
        .iter()
        .map(|f| {
            (
                f.project_name.as_str(),
                LocalTime::new(f.finished_at, timezone),
            )
        })
        .collect();
    failures.sort_unstable();
    let mut escaped: (&str, Cow<'_, str>) = ("", Cow::Borrowed(""));
    for run in failures.chunk_by(|a, b| a == b) {
        let (project, time_failed) = run[0];
        if escaped.0 != project {
            escaped = (project, escape_label_value(project));
        }
        family.sample(
            &[
                ("project_name", &escaped.1),
                ("time_failed", time_failed.as_str()),
            ],
            Value::Int(run.len() as u64),
        );
    }
}

fn write_per_project(
    page: &mut Page,
    projects: &[(&ProjectState, Cow<'_, str>)],
    name: &str,
    help: &str,
    kind: Kind,
    value: impl Fn(&ProjectState) -> Option<Value>,
) {
    let mut family = page.family(name, help, kind);
    for (p, project_name) in projects {
        if let Some(v) = value(p) {
            family.sample(&[("project_name", project_name)], v);
        }
    }
}

fn write_run(page: &mut Page, run: Option<&RunRecord>, job: &str) {
    let Some(run) = run else { return };
    page.family(
        &format!("devlake_{job}_last_run_timestamp_seconds"),
        &format!("When the latest {job} run finished (Unix seconds)."),
        Kind::Gauge,
    )
    .sample(&[], unix_seconds(run.finished_at));
    page.family(
        &format!("devlake_{job}_last_run_success"),
        &format!("1 if the latest {job} run succeeded, 0 if it failed."),
        Kind::Gauge,
    )
    .sample(&[], Value::from(run.success));
}

/// `managedProjects` of the automation's run summary; a run that stopped keeps its summary
/// under `partial`.
fn managed_projects(run: &RunRecord) -> Option<u64> {
    let s = &run.summary;
    s.get("managedProjects")
        .or_else(|| s.get("partial").and_then(|p| p.get("managedProjects")))
        .and_then(serde_json::Value::as_u64)
}

/// `devlake_orphan_scopes` from the automation run record's `orphanScopeCounts` (every connection
/// that run walked completely, zeros included; absent when it walked none).
fn write_orphans(page: &mut Page, run: Option<&RunRecord>) {
    let Some(list) = run.and_then(|r| r.summary.get("orphanScopeCounts")?.as_array()) else {
        return;
    };
    let mut rows: Vec<(&str, u64, u64)> = list
        .iter()
        .filter_map(|c| {
            Some((
                c.get("plugin")?.as_str()?,
                c.get("connectionId")?.as_u64()?,
                c.get("count")?.as_u64()?,
            ))
        })
        .collect();
    rows.sort_unstable_by(|a, b| (a.0, a.1.to_string()).cmp(&(b.0, b.1.to_string())));
    let mut family = page.family(
        "devlake_orphan_scopes",
        "Saved scopes the latest complete remote walk of the connection no longer listed.",
        Kind::Gauge,
    );
    for (plugin, connection_id, count) in rows {
        family.sample(
            &[
                ("plugin", plugin),
                ("connection_id", &connection_id.to_string()),
            ],
            Value::Int(count),
        );
    }
}

/// `devlake_connection_up` from the automation's latest complete test of the connections, one
/// series per connection, sorted by label values like `devlake_orphan_scopes`.
fn write_connections(page: &mut Page, connections: &[ConnectionHealth]) {
    let mut rows: Vec<(&ConnectionHealth, String)> = connections
        .iter()
        .map(|c| (c, c.connection_id.to_string()))
        .collect();
    rows.sort_by(|a, b| (&a.0.plugin, &a.1).cmp(&(&b.0.plugin, &b.1)));
    // One series per connection: a repeated one would make the whole page invalid.
    rows.dedup_by(|a, b| a.0.plugin == b.0.plugin && a.1 == b.1);
    let mut family = page.family(
        "devlake_connection_up",
        "1 if DevLake's test of the connection succeeded in the latest automation run, else 0.",
        Kind::Gauge,
    );
    for (c, connection_id) in rows {
        family.sample(
            &[
                ("plugin", &escape_label_value(&c.plugin)),
                ("connection_id", &connection_id),
                ("connection_name", &escape_label_value(&c.connection_name)),
            ],
            Value::from(c.up),
        );
    }
}
