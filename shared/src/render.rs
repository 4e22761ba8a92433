//! Prometheus exposition of a [`MetricsSnapshot`] (docs/metrics.md).
//!
//! The page is written straight into one `String`, family by family in a fixed order, with the
//! series of each family sorted by label values, so the same store state always gives the same
//! bytes. Both formats come from the same writer: Prometheus text 0.0.4 and OpenMetrics 1.0 differ
//! only in family headers (OpenMetrics names a counter family without `_total`, puts TYPE first),
//! escaping of HELP text, and the closing `# EOF`. No sample carries a timestamp.
//!
//! Why not the `prometheus` crate's `TextEncoder`: it encodes protobuf `MetricFamily` values, six
//! heap objects per series; for 2,000 projects and 20,000 failures in the window building and
//! encoding them took ~35 ms of a scrape, writing the text directly ~5 ms
//! (`target/perf/bench-metrics`). The golden files and `promtool check metrics` hold the output.
//!
//! | family | type | labels | notes |
//! | --- | --- | --- | --- |
//! | `devlake_blueprint_failure_total` | counter | `project_name`, `time_failed` | compatibility series: failures in the window; two failures of one project in the same local second are one series with value 2 |
//! | `devlake_project_pipeline_failures_total` | counter | `project_name` | every project |
//! | `devlake_project_consecutive_failures` | gauge | `project_name` | added: failures since the last success, for "failing N times in a row" alerts |
//! | `devlake_project_last_failure_timestamp_seconds`, `devlake_project_last_success_timestamp_seconds` | gauge | `project_name` | only for projects that have one |
//! | `devlake_project_last_failure_reason` | gauge | `project_name`, `reason` | one series (value 1) per project whose latest recorded failure carries a cause (states written before causes existed carry none until their next failure) |
//! | `devlake_project_last_pipeline_status` | gauge | `project_name`, `status` | one series (value 1) per project that finished a pipeline |
//! | `devlake_project_last_pipeline_duration_seconds` | gauge | `project_name` | when known |
//! | `devlake_project_pipeline_stuck` | gauge | `project_name` | 0/1, every project |
//! | `devlake_project_schedule_missed` | gauge | `project_name` | 0/1, every project: its managed blueprint's latest scheduled run left no pipeline |
//! | `devlake_project_stuck_cancel_failed` | gauge | `project_name` | 0/1, every project: a `STUCK_ACTION` cancel did not stop its stuck pipeline |
//! | `devlake_project_last_pipeline_queue_seconds` | gauge | `project_name` | started − created of the project's newest started pipeline; only for projects DevLake's notifications showed one start of |
//! | `devlake_{monitor,automation}_last_run_{timestamp_seconds,success}` | gauge | | once the job has recorded a run |
//! | `devlake_automation_managed_projects` | gauge | | managed projects counted by the latest automation run that listed them |
//! | `devlake_orphan_scopes` | gauge | `plugin`, `connection_id` | from the latest automation run record: saved scopes its complete remote walk of the connection no longer found (0 included) |
//! | `devlake_connection_up` | gauge | `plugin`, `connection_id`, `connection_name` | 0/1 from the automation's latest complete test of every connection |
//! | `devlake_up` | gauge | | 0 when the latest monitor run did not reach DevLake or none is recorded |
//! | `devlake_events_last_received_timestamp_seconds` | gauge | | when the events function last accepted a notification; absent until one was |
//! | `devlake_metrics_decode_errors` | gauge | | stored items this scrape skipped because they did not decode; only on the page when above 0 |
//! | `devlake_metrics_render_duration_seconds` | gauge | | last on the page: store read and rendering up to that line |
//!
//! Families without a sample are left out entirely (no HELP/TYPE lines): the crate's encoder
//! refuses empty families, and Prometheus treats a missing family and an empty one alike.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use chrono::{DateTime, Datelike, Timelike, Utc};
use chrono_tz::Tz;

use crate::store::{ConnectionHealth, FailureEvent, MetricsSnapshot, ProjectState, RunRecord};

/// Content type of the Prometheus text format 0.0.4.
pub const PROMETHEUS_TEXT_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";
/// Content type of OpenMetrics 1.0.
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The compatibility series of the original system; its label names and value format are kept.
pub const BLUEPRINT_FAILURE_TOTAL: &str = "devlake_blueprint_failure_total";
pub const RENDER_DURATION: &str = "devlake_metrics_render_duration_seconds";
pub const DECODE_ERRORS: &str = "devlake_metrics_decode_errors";

/// Which exposition format a scrape gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpositionFormat {
    /// Prometheus text format 0.0.4.
    PrometheusText,
    /// OpenMetrics text 1.0.0.
    OpenMetrics,
}

impl ExpositionFormat {
    pub fn content_type(self) -> &'static str {
        match self {
            ExpositionFormat::PrometheusText => PROMETHEUS_TEXT_CONTENT_TYPE,
            ExpositionFormat::OpenMetrics => OPENMETRICS_CONTENT_TYPE,
        }
    }

    /// Picks the format from an `Accept` header: OpenMetrics 1.0 when the client lists
    /// `application/openmetrics-text` (version 1.0.0 or unversioned) at a quality no lower than
    /// anything that would get the 0.0.4 text; otherwise (no header, garbage, only older
    /// OpenMetrics versions) the 0.0.4 text, which every Prometheus understands.
    pub fn negotiate(accept: Option<&str>) -> Self {
        let Some(accept) = accept else {
            return ExpositionFormat::PrometheusText;
        };
        let mut openmetrics_q: f32 = 0.0;
        let mut text_q: f32 = 0.0;
        for range in accept.split(',') {
            let mut parts = range.split(';').map(str::trim);
            let media = parts.next().unwrap_or_default().to_ascii_lowercase();
            let mut q = 1.0_f32;
            let mut version: Option<String> = None;
            for param in parts {
                let Some((key, value)) = param.split_once('=') else {
                    continue;
                };
                let value = value.trim().trim_matches('"');
                match key.trim().to_ascii_lowercase().as_str() {
                    "q" => q = value.parse().unwrap_or(0.0),
                    "version" => version = Some(value.to_string()),
                    _ => {}
                }
            }
            match media.as_str() {
                "application/openmetrics-text"
                    if version.as_deref().is_none_or(|v| v == "1.0.0") =>
                {
                    openmetrics_q = openmetrics_q.max(q);
                }
                "text/plain" | "text/*" | "*/*" => text_q = text_q.max(q),
                _ => {}
            }
        }
        if openmetrics_q > 0.0 && openmetrics_q >= text_q {
            ExpositionFormat::OpenMetrics
        } else {
            ExpositionFormat::PrometheusText
        }
    }
}

/// The whole page for a snapshot, with a given render duration: what the golden files hold.
pub fn render_page(
    snapshot: &MetricsSnapshot,
    timezone: Tz,
    format: ExpositionFormat,
    render_duration: Duration,
) -> String {
    render_page_timed(snapshot, timezone, format, || render_duration)
}

/// The whole page; `render_duration` is asked once every other family is written, so the
/// self-timing line covers the store read (if the caller's clock started before it) and all of
/// the rendering but its own line.
///
/// The page is three sections, always in this order: the compatibility series (from
/// `snapshot.failures`), the families that depend on `snapshot.projects` only, and the live
/// section (run records, the notification mark, decode errors, self-timing, `# EOF`). The metrics
/// function keeps the first two of a published state between scrapes and writes only the live one
/// per scrape (`snapshot::page`), so a family belongs in the section holding everything it reads.
pub fn render_page_timed(
    snapshot: &MetricsSnapshot,
    timezone: Tz,
    format: ExpositionFormat,
    render_duration: impl FnOnce() -> Duration,
) -> String {
    // About 110 bytes per compatibility series and 80 per project series.
    let capacity = 1_024 + snapshot.failures.len() * 112 + snapshot.projects.len() * 10 * 80;
    let mut page = Page {
        out: String::with_capacity(capacity),
        format,
    };
    write_failure_compat(&mut page, snapshot, timezone);
    write_project_families(&mut page, snapshot);
    write_live_families(&mut page, snapshot, render_duration);
    page.out
}

/// The HELP and TYPE lines of the compatibility family; on the page only above its first sample.
pub fn failure_compat_header(format: ExpositionFormat) -> String {
    let mut page = Page {
        out: String::new(),
        format,
    };
    compat_family(&mut page).write_header();
    page.out
}

/// The compatibility family's sample lines for `failures` (any order), without its HELP and TYPE
/// lines: the same in both formats, and for failures of distinct projects, the lines of the
/// projects in name order one after the other (how the metrics function renders it by parts).
pub fn failure_compat_samples(failures: &[FailureEvent], timezone: Tz) -> String {
    let mut page = Page {
        out: String::with_capacity(failures.len() * 112),
        format: ExpositionFormat::PrometheusText,
    };
    let mut family = compat_family(&mut page);
    family.started = true;
    write_failure_compat_samples(&mut family, failures, timezone);
    page.out
}

/// The section of the families that depend on `snapshot.projects` only.
pub fn project_section(snapshot: &MetricsSnapshot, format: ExpositionFormat) -> String {
    let mut page = Page {
        out: String::with_capacity(snapshot.projects.len() * 10 * 80),
        format,
    };
    write_project_families(&mut page, snapshot);
    page.out
}

/// The live section: what the page adds to the published state on every scrape.
pub fn live_section(
    snapshot: &MetricsSnapshot,
    format: ExpositionFormat,
    render_duration: impl FnOnce() -> Duration,
) -> String {
    let mut page = Page {
        out: String::with_capacity(1_024),
        format,
    };
    write_live_families(&mut page, snapshot, render_duration);
    page.out
}

/// The families of the project section, in page order.
fn write_project_families(page: &mut Page, snapshot: &MetricsSnapshot) {
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
fn write_live_families(
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
fn write_failure_compat(page: &mut Page, snapshot: &MetricsSnapshot, timezone: Tz) {
    let mut family = compat_family(page);
    write_failure_compat_samples(&mut family, &snapshot.failures, timezone);
}

fn compat_family(page: &mut Page) -> Family<'_, 'static> {
    page.family(
        BLUEPRINT_FAILURE_TOTAL,
        "Failed DevLake pipelines in the last FAILURE_WINDOW_DAYS: one series per project and \
         failure time (local TIMEZONE), kept for dashboards of the original system.",
        Kind::Counter,
    )
}

fn write_failure_compat_samples(
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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Counter,
    Gauge,
}

/// A sample value: counts are written as integers, everything else as the shortest decimal
/// that reads back as the same `f64` (what Prometheus' own Go client and the 0.0.4 parser agree
/// on; never an exponent for the magnitudes on this page).
#[derive(Debug, Clone, Copy)]
enum Value {
    Int(u64),
    Float(f64),
}

impl From<bool> for Value {
    fn from(b: bool) -> Self {
        Value::Int(u64::from(b))
    }
}

/// The page being written.
struct Page {
    out: String,
    format: ExpositionFormat,
}

impl Page {
    /// Starts a family; its HELP and TYPE lines are written with its first sample, so a family
    /// without samples leaves no trace (Prometheus treats a missing family and an empty one alike).
    fn family<'p, 'n>(&'p mut self, name: &'n str, help: &'n str, kind: Kind) -> Family<'p, 'n> {
        Family {
            page: self,
            name,
            help,
            kind,
            started: false,
        }
    }
}

struct Family<'p, 'n> {
    page: &'p mut Page,
    name: &'n str,
    help: &'n str,
    kind: Kind,
    started: bool,
}

impl Family<'_, '_> {
    /// Writes one series; label values must already be escaped ([`escape_label_value`]).
    fn sample(&mut self, labels: &[(&str, &str)], value: Value) {
        if !self.started {
            self.started = true;
            self.write_header();
        }
        let out = &mut self.page.out;
        out.push_str(self.name);
        if let [first, rest @ ..] = labels {
            out.push('{');
            for (i, (name, value)) in std::iter::once(first).chain(rest).enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(name);
                out.push_str("=\"");
                out.push_str(value);
                out.push('"');
            }
            out.push('}');
        }
        out.push(' ');
        // Writing to a String cannot fail.
        let _ = match value {
            Value::Int(v) => write!(out, "{v}"),
            Value::Float(v) if v.is_nan() => write!(out, "NaN"),
            Value::Float(v) if v.is_infinite() => {
                write!(out, "{}", if v > 0.0 { "+Inf" } else { "-Inf" })
            }
            Value::Float(v) => write!(out, "{v}"),
        };
        out.push('\n');
    }

    fn write_header(&mut self) {
        let out = &mut self.page.out;
        let type_name = match self.kind {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
        };
        match self.page.format {
            ExpositionFormat::PrometheusText => {
                out.push_str("# HELP ");
                out.push_str(self.name);
                out.push(' ');
                push_escaped(out, self.help, false);
                out.push_str("\n# TYPE ");
                out.push_str(self.name);
                out.push(' ');
                out.push_str(type_name);
                out.push('\n');
            }
            ExpositionFormat::OpenMetrics => {
                // A counter family is named without the `_total` its samples carry.
                let family = match self.kind {
                    Kind::Counter => self.name.strip_suffix("_total").unwrap_or(self.name),
                    Kind::Gauge => self.name,
                };
                out.push_str("# TYPE ");
                out.push_str(family);
                out.push(' ');
                out.push_str(type_name);
                out.push_str("\n# HELP ");
                out.push_str(family);
                out.push(' ');
                push_escaped(out, self.help, true);
                out.push('\n');
            }
        }
    }
}

/// A label value with backslash, double quote and line feed escaped (the same in both formats).
fn escape_label_value(value: &str) -> Cow<'_, str> {
    if !value.contains(['\\', '"', '\n']) {
        return Cow::Borrowed(value);
    }
    let mut escaped = String::with_capacity(value.len() + 8);
    push_escaped(&mut escaped, value, true);
    Cow::Owned(escaped)
}

/// Backslash and line feed are escaped everywhere; double quotes in label values, and in HELP
/// text only in OpenMetrics (0.0.4 HELP leaves them as they are).
fn push_escaped(out: &mut String, value: &str, quotes: bool) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '"' if quotes => out.push_str("\\\""),
            other => out.push(other),
        }
    }
}

/// `YYYY-MM-DD HH:MM:SS` in the page's time zone, the `time_failed` label of the original
/// system ([`crate::time_rules::format_local`]), as a fixed-size value: sorting and comparing
/// 20,000 of them allocates nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct LocalTime([u8; 19]);

impl LocalTime {
    fn new(t: DateTime<Utc>, timezone: Tz) -> Self {
        let local = t.with_timezone(&timezone);
        let mut text = [0u8; 19];
        let mut put = |at: usize, value: u32, width: usize| {
            let mut v = value;
            for i in (at..at + width).rev() {
                text[i] = b'0' + (v % 10) as u8;
                v /= 10;
            }
        };
        // Years outside 0..=9999 cannot come from DevLake timestamps; clamp rather than misalign.
        put(0, local.year().clamp(0, 9999) as u32, 4);
        put(5, local.month(), 2);
        put(8, local.day(), 2);
        put(11, local.hour(), 2);
        put(14, local.minute(), 2);
        put(17, local.second(), 2);
        for (at, sep) in [(4, b'-'), (7, b'-'), (10, b' '), (13, b':'), (16, b':')] {
            text[at] = sep;
        }
        LocalTime(text)
    }

    fn as_str(&self) -> &str {
        // Only ASCII digits and separators are ever written.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

fn unix_seconds(t: DateTime<Utc>) -> Value {
    Value::Float(t.timestamp_millis() as f64 / 1000.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn failure(project: &str, finished: &str, pipeline_id: u64) -> FailureEvent {
        FailureEvent {
            project_name: project.to_string(),
            blueprint_id: 1,
            pipeline_id,
            status: "TASK_FAILED".to_string(),
            finished_at: utc(finished),
            began_at: None,
            message: String::new(),
            error_name: String::new(),
            cause: crate::failure_cause::FailureCause::Unknown,
        }
    }

    #[test]
    fn local_time_label_matches_the_time_rules_format() {
        use crate::time_rules::format_local;
        // Around the New York fall-back hour (two local 01:30s), a leap day, and far zones.
        let cases = [
            "2026-11-01T05:30:00Z",
            "2026-11-01T06:30:00Z",
            "2028-02-29T23:59:59.999Z",
            "1999-12-31T17:00:00Z",
            "2026-11-28T17:00:05.100Z",
        ];
        for tz in [
            chrono_tz::America::New_York,
            chrono_tz::Asia::Ho_Chi_Minh,
            chrono_tz::Pacific::Chatham,
            chrono_tz::UTC,
        ] {
            for case in cases {
                let t = utc(case);
                assert_eq!(
                    LocalTime::new(t, tz).as_str(),
                    format_local(t, tz),
                    "{case} {tz}"
                );
            }
        }
    }

    #[test]
    fn negotiation_prefers_openmetrics_only_when_asked_for() {
        use ExpositionFormat::*;
        assert_eq!(ExpositionFormat::negotiate(None), PrometheusText);
        assert_eq!(
            ExpositionFormat::negotiate(Some("text/plain")),
            PrometheusText
        );
        assert_eq!(ExpositionFormat::negotiate(Some("*/*")), PrometheusText);
        // What Prometheus 2.x sends by default.
        let prom = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;\
                    version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        assert_eq!(ExpositionFormat::negotiate(Some(prom)), OpenMetrics);
        assert_eq!(
            ExpositionFormat::negotiate(Some("application/openmetrics-text")),
            OpenMetrics
        );
        // Only an OpenMetrics version we do not write: fall back, with the 0.0.4 content type.
        assert_eq!(
            ExpositionFormat::negotiate(Some("application/openmetrics-text; version=0.0.1")),
            PrometheusText
        );
        assert_eq!(
            ExpositionFormat::negotiate(Some(
                "text/plain;version=0.0.4;q=0.9, application/openmetrics-text;q=0.5"
            )),
            PrometheusText
        );
        assert_eq!(
            ExpositionFormat::negotiate(Some("application/openmetrics-text;q=0")),
            PrometheusText
        );
    }

    #[test]
    fn same_project_and_second_sums_into_one_series() {
        let snapshot = MetricsSnapshot {
            failures: vec![
                failure("a", "2026-11-20T17:00:05.100Z", 1),
                failure("a", "2026-11-20T17:00:05.900Z", 2),
                failure("b", "2026-11-20T17:00:05.100Z", 3),
            ],
            ..Default::default()
        };
        let page = render_page(
            &snapshot,
            chrono_tz::Asia::Ho_Chi_Minh,
            ExpositionFormat::PrometheusText,
            Duration::ZERO,
        );
        assert!(page.contains(
            "devlake_blueprint_failure_total{project_name=\"a\",time_failed=\"2026-11-21 00:00:05\"} 2\n"
        ));
        assert!(page.contains(
            "devlake_blueprint_failure_total{project_name=\"b\",time_failed=\"2026-11-21 00:00:05\"} 1\n"
        ));
    }

    #[test]
    fn devlake_up_is_zero_without_a_monitor_run() {
        let page = render_page(
            &MetricsSnapshot::default(),
            chrono_tz::UTC,
            ExpositionFormat::PrometheusText,
            Duration::from_millis(5),
        );
        assert!(page.contains("\ndevlake_up 0\n"), "{page}");
        assert!(page.ends_with("devlake_metrics_render_duration_seconds 0.005\n"));
        assert!(!page.contains("devlake_blueprint_failure_total"));
    }

    #[test]
    fn openmetrics_names_counters_by_family_and_ends_with_eof() {
        let snapshot = MetricsSnapshot {
            projects: vec![ProjectState {
                project_name: "p\"q".into(),
                failures_total: 3,
                ..Default::default()
            }],
            ..Default::default()
        };
        let page = render_page(
            &snapshot,
            chrono_tz::UTC,
            ExpositionFormat::OpenMetrics,
            Duration::ZERO,
        );
        assert!(page.contains("# TYPE devlake_project_pipeline_failures counter\n"));
        assert!(
            page.contains("devlake_project_pipeline_failures_total{project_name=\"p\\\"q\"} 3\n")
        );
        assert!(page.ends_with("\n# EOF\n"));
    }

    #[test]
    fn push_series_are_on_the_page_only_once_push_delivered_something() {
        let quiet = render_page(
            &MetricsSnapshot {
                projects: vec![ProjectState {
                    project_name: "p".into(),
                    ..Default::default()
                }],
                ..Default::default()
            },
            chrono_tz::UTC,
            ExpositionFormat::PrometheusText,
            Duration::ZERO,
        );
        assert!(!quiet.contains("queue_seconds") && !quiet.contains("devlake_events_"));
        let at = |s: &str| s.parse::<DateTime<Utc>>().unwrap();
        let page = render_page(
            &MetricsSnapshot {
                projects: vec![ProjectState {
                    project_name: "p".into(),
                    last_started: Some(crate::store::StartedPipeline {
                        pipeline_id: 4,
                        created_at: at("2026-11-28T10:00:00Z"),
                        began_at: at("2026-11-28T10:01:30.250Z"),
                    }),
                    ..Default::default()
                }],
                events: Some(crate::store::EventsReceived {
                    received_at: at("2026-11-28T10:01:31.500Z"),
                    pipeline_id: 4,
                    status: "TASK_RUNNING".into(),
                    project_name: "p".into(),
                }),
                ..Default::default()
            },
            chrono_tz::UTC,
            ExpositionFormat::PrometheusText,
            Duration::ZERO,
        );
        assert!(page.contains(
            "# TYPE devlake_project_last_pipeline_queue_seconds gauge\n\
             devlake_project_last_pipeline_queue_seconds{project_name=\"p\"} 90.25\n"
        ));
        assert!(page.contains(
            "# TYPE devlake_events_last_received_timestamp_seconds gauge\n\
             devlake_events_last_received_timestamp_seconds 1795860091.5\n"
        ));
    }

    #[test]
    fn a_failure_reason_and_connection_health_are_one_series_each() {
        use crate::failure_cause::FailureCause;
        let failed_at = utc("2026-11-28T10:00:00Z");
        let snapshot = MetricsSnapshot {
            projects: vec![
                ProjectState {
                    project_name: "with".into(),
                    last_failure_at: Some(failed_at),
                    last_failure_reason: Some(FailureCause::RateLimit),
                    ..Default::default()
                },
                // Written before causes existed: no reason rather than a guess.
                ProjectState {
                    project_name: "older".into(),
                    last_failure_at: Some(failed_at),
                    ..Default::default()
                },
            ],
            connections: vec![
                ConnectionHealth {
                    plugin: "jira".into(),
                    connection_id: 2,
                    connection_name: "jira \"cloud\"".into(),
                    up: true,
                    status: 200,
                    message: String::new(),
                },
                ConnectionHealth {
                    plugin: "github".into(),
                    connection_id: 10,
                    connection_name: "gh".into(),
                    up: false,
                    status: 400,
                    message: "StatusUnauthorized error when testing connection (400)".into(),
                },
                ConnectionHealth {
                    plugin: "github".into(),
                    connection_id: 9,
                    connection_name: "gh-old".into(),
                    up: true,
                    status: 200,
                    message: String::new(),
                },
            ],
            ..Default::default()
        };
        let page = render_page(
            &snapshot,
            chrono_tz::UTC,
            ExpositionFormat::PrometheusText,
            Duration::ZERO,
        );
        let lines: Vec<&str> = page
            .lines()
            .filter(|l| {
                l.starts_with("devlake_project_last_failure_reason")
                    || l.starts_with("devlake_connection_up")
            })
            .collect();
        assert_eq!(
            lines,
            [
                "devlake_project_last_failure_reason{project_name=\"with\",reason=\"rate_limit\"} 1",
                "devlake_connection_up{plugin=\"github\",connection_id=\"10\",connection_name=\"gh\"} 0",
                "devlake_connection_up{plugin=\"github\",connection_id=\"9\",connection_name=\"gh-old\"} 1",
                "devlake_connection_up{plugin=\"jira\",connection_id=\"2\",connection_name=\"jira \\\"cloud\\\"\"} 1",
            ]
        );
        // DevLake's message never reaches the page (it may be long and is for the run summary).
        assert!(!page.contains("StatusUnauthorized"));
    }

    #[test]
    fn decode_errors_are_on_the_page_only_when_there_are_some() {
        let clean = render_page(
            &MetricsSnapshot::default(),
            chrono_tz::UTC,
            ExpositionFormat::PrometheusText,
            Duration::ZERO,
        );
        assert!(!clean.contains(DECODE_ERRORS));
        let page = render_page(
            &MetricsSnapshot {
                decode_errors: 2,
                ..Default::default()
            },
            chrono_tz::UTC,
            ExpositionFormat::PrometheusText,
            Duration::ZERO,
        );
        assert!(page.contains(
            "# TYPE devlake_metrics_decode_errors gauge\ndevlake_metrics_decode_errors 2\n"
        ));
    }
}
