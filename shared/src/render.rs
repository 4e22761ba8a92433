//! Prometheus exposition of a [`MetricsSnapshot`] (design.md §6).
//!
//! The page is built as `prometheus` crate `MetricFamily` values in a fixed family order, with the
//! series of each family sorted by label values, so the same store state always gives the same
//! bytes. Format 0.0.4 is written by the crate's `TextEncoder` (which escapes label values and
//! never writes sample timestamps because none are set); OpenMetrics 1.0 is written by
//! [`encode_openmetrics`] from the same families, because the crate has no OpenMetrics encoder.
//!
//! | family | type | labels | notes |
//! | --- | --- | --- | --- |
//! | `devlake_blueprint_failure_total` | counter | `project_name`, `time_failed` | compatibility series: failures in the window; two failures of one project in the same local second are one series with value 2 |
//! | `devlake_project_pipeline_failures_total` | counter | `project_name` | every project |
//! | `devlake_project_consecutive_failures` | gauge | `project_name` | added: failures since the last success, for "failing N times in a row" alerts |
//! | `devlake_project_last_failure_timestamp_seconds`, `devlake_project_last_success_timestamp_seconds` | gauge | `project_name` | only for projects that have one |
//! | `devlake_project_last_pipeline_status` | gauge | `project_name`, `status` | one series (value 1) per project that finished a pipeline |
//! | `devlake_project_last_pipeline_duration_seconds` | gauge | `project_name` | when known |
//! | `devlake_project_pipeline_stuck` | gauge | `project_name` | 0/1, every project |
//! | `devlake_{monitor,automation}_last_run_{timestamp_seconds,success}` | gauge | | once the job has recorded a run |
//! | `devlake_up` | gauge | | 0 when the latest monitor run did not reach DevLake or none is recorded |
//! | `devlake_metrics_render_duration_seconds` | gauge | | last on the page: store read and rendering up to that line |
//!
//! Families without a sample are left out entirely (no HELP/TYPE lines): the crate's encoder
//! refuses empty families, and Prometheus treats a missing family and an empty one alike.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use prometheus::proto::{Counter, Gauge, LabelPair, Metric, MetricFamily, MetricType};
use prometheus::TextEncoder;
use thiserror::Error;

use crate::store::{MetricsSnapshot, ProjectState, RunRecord};
use crate::time_rules::format_local;

/// Content type of the Prometheus text format 0.0.4.
pub const PROMETHEUS_TEXT_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";
/// Content type of OpenMetrics 1.0.
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The compatibility series of the original system; its label names and value format are kept.
pub const BLUEPRINT_FAILURE_TOTAL: &str = "devlake_blueprint_failure_total";
pub const RENDER_DURATION: &str = "devlake_metrics_render_duration_seconds";

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

/// Encoding failed. Only possible for a family without samples or name, which this module never
/// builds; kept as an error (not a panic) so a bug answers 500 rather than aborting the function.
#[derive(Debug, Error)]
#[error("rendering the metrics page failed: {0}")]
pub struct RenderError(#[from] prometheus::Error);

/// Every family of the page except [`RENDER_DURATION`] (which can only be known once these are
/// built), in page order.
pub fn metric_families(snapshot: &MetricsSnapshot, timezone: Tz) -> Vec<MetricFamily> {
    // One entry per project name: DynamoDB keys guarantee it, an in-memory source might not, and
    // a repeated series would make the whole page invalid.
    let projects: BTreeMap<&str, &ProjectState> = snapshot
        .projects
        .iter()
        .map(|p| (p.project_name.as_str(), p))
        .collect();

    let mut families = Vec::with_capacity(14);
    families.push(failure_compat_family(snapshot, timezone));
    families.push(per_project(
        &projects,
        "devlake_project_pipeline_failures_total",
        "Failures ever recorded for the project's pipelines (monotonic).",
        MetricType::COUNTER,
        |p| Some(p.failures_total as f64),
    ));
    families.push(per_project(
        &projects,
        "devlake_project_consecutive_failures",
        "Failed pipelines of the project since its last successful one (0 after a success).",
        MetricType::GAUGE,
        |p| Some(p.consecutive_failures as f64),
    ));
    families.push(per_project(
        &projects,
        "devlake_project_last_failure_timestamp_seconds",
        "When the project's latest failed pipeline finished (Unix seconds).",
        MetricType::GAUGE,
        |p| p.last_failure_at.map(unix_seconds),
    ));
    families.push(per_project(
        &projects,
        "devlake_project_last_success_timestamp_seconds",
        "When the project's latest successful pipeline finished (Unix seconds).",
        MetricType::GAUGE,
        |p| p.last_success_at.map(unix_seconds),
    ));
    families.push(last_status_family(&projects));
    families.push(per_project(
        &projects,
        "devlake_project_last_pipeline_duration_seconds",
        "Duration of the project's latest finished pipeline.",
        MetricType::GAUGE,
        |p| p.last_duration_seconds.filter(|d| d.is_finite()),
    ));
    families.push(per_project(
        &projects,
        "devlake_project_pipeline_stuck",
        "1 while a pipeline of the project has run longer than STUCK_AFTER_HOURS.",
        MetricType::GAUGE,
        |p| Some(bool_value(p.stuck)),
    ));
    let (monitor_time, monitor_ok) = run_families(snapshot.monitor.as_ref(), "monitor");
    let (automation_time, automation_ok) = run_families(snapshot.automation.as_ref(), "automation");
    families.extend([monitor_time, monitor_ok, automation_time, automation_ok]);
    let up = snapshot
        .monitor
        .as_ref()
        .and_then(|m| m.devlake_up)
        .unwrap_or(false);
    families.push(family(
        "devlake_up",
        "1 if the latest monitor run reached DevLake (0 if it did not, or no run is recorded).",
        MetricType::GAUGE,
        vec![sample(Vec::new(), MetricType::GAUGE, bool_value(up))],
    ));

    families.retain(|f| !f.get_metric().is_empty());
    families
}

/// The self-timing family, appended after everything else.
pub fn render_duration_family(elapsed: Duration) -> MetricFamily {
    family(
        RENDER_DURATION,
        "Time this scrape spent reading the store and rendering the page before this line.",
        MetricType::GAUGE,
        vec![sample(Vec::new(), MetricType::GAUGE, elapsed.as_secs_f64())],
    )
}

/// Appends `families` to `out` in `format`. Call [`finish`] once after the last family.
pub fn encode(
    families: &[MetricFamily],
    format: ExpositionFormat,
    out: &mut String,
) -> Result<(), RenderError> {
    match format {
        ExpositionFormat::PrometheusText => {
            TextEncoder::new().encode_utf8(families, out)?;
        }
        ExpositionFormat::OpenMetrics => encode_openmetrics(families, out),
    }
    Ok(())
}

/// Ends the page (`# EOF` for OpenMetrics; nothing for 0.0.4).
pub fn finish(format: ExpositionFormat, out: &mut String) {
    if format == ExpositionFormat::OpenMetrics {
        out.push_str("# EOF\n");
    }
}

/// The whole page for a snapshot, with a given render duration: what the golden files hold.
pub fn render_page(
    snapshot: &MetricsSnapshot,
    timezone: Tz,
    format: ExpositionFormat,
    render_duration: Duration,
) -> Result<String, RenderError> {
    let mut out = String::new();
    encode(&metric_families(snapshot, timezone), format, &mut out)?;
    encode(&[render_duration_family(render_duration)], format, &mut out)?;
    finish(format, &mut out);
    Ok(out)
}

/// One series per (project, `time_failed`) with the number of failures at that second: two
/// failures of one project in the same local second would otherwise be a duplicate series.
fn failure_compat_family(snapshot: &MetricsSnapshot, timezone: Tz) -> MetricFamily {
    let mut counts: BTreeMap<(&str, String), u64> = BTreeMap::new();
    for failure in &snapshot.failures {
        let key = (
            failure.project_name.as_str(),
            format_local(failure.finished_at, timezone),
        );
        *counts.entry(key).or_default() += 1;
    }
    let metrics = counts
        .into_iter()
        .map(|((project, time_failed), count)| {
            sample(
                vec![
                    label("project_name", project),
                    label("time_failed", &time_failed),
                ],
                MetricType::COUNTER,
                count as f64,
            )
        })
        .collect();
    family(
        BLUEPRINT_FAILURE_TOTAL,
        "Failed DevLake pipelines in the last FAILURE_WINDOW_DAYS: one series per project and \
         failure time (local TIMEZONE), kept for dashboards of the original system.",
        MetricType::COUNTER,
        metrics,
    )
}

fn last_status_family(projects: &BTreeMap<&str, &ProjectState>) -> MetricFamily {
    let metrics = projects
        .values()
        .filter_map(|p| {
            let status = p.last_status.as_deref()?;
            Some(sample(
                vec![
                    label("project_name", &p.project_name),
                    label("status", status),
                ],
                MetricType::GAUGE,
                1.0,
            ))
        })
        .collect();
    family(
        "devlake_project_last_pipeline_status",
        "1 for the status of the project's latest finished pipeline.",
        MetricType::GAUGE,
        metrics,
    )
}

fn run_families(run: Option<&RunRecord>, job: &str) -> (MetricFamily, MetricFamily) {
    let time = family(
        &format!("devlake_{job}_last_run_timestamp_seconds"),
        &format!("When the latest {job} run finished (Unix seconds)."),
        MetricType::GAUGE,
        run.map(|r| sample(Vec::new(), MetricType::GAUGE, unix_seconds(r.finished_at)))
            .into_iter()
            .collect(),
    );
    let ok = family(
        &format!("devlake_{job}_last_run_success"),
        &format!("1 if the latest {job} run succeeded, 0 if it failed."),
        MetricType::GAUGE,
        run.map(|r| sample(Vec::new(), MetricType::GAUGE, bool_value(r.success)))
            .into_iter()
            .collect(),
    );
    (time, ok)
}

fn per_project(
    projects: &BTreeMap<&str, &ProjectState>,
    name: &str,
    help: &str,
    kind: MetricType,
    value: impl Fn(&ProjectState) -> Option<f64>,
) -> MetricFamily {
    let metrics = projects
        .values()
        .filter_map(|p| {
            value(p).map(|v| sample(vec![label("project_name", &p.project_name)], kind, v))
        })
        .collect();
    family(name, help, kind, metrics)
}

fn family(name: &str, help: &str, kind: MetricType, metrics: Vec<Metric>) -> MetricFamily {
    let mut f = MetricFamily::default();
    f.set_name(name.to_string());
    f.set_help(help.to_string());
    f.set_field_type(kind);
    f.set_metric(metrics);
    f
}

fn sample(labels: Vec<LabelPair>, kind: MetricType, value: f64) -> Metric {
    let mut m = Metric::from_label(labels);
    match kind {
        MetricType::COUNTER => {
            let mut c = Counter::default();
            c.set_value(value);
            m.set_counter(c);
        }
        _ => {
            let mut g = Gauge::default();
            g.set_value(value);
            m.set_gauge(g);
        }
    }
    m
}

fn label(name: &str, value: &str) -> LabelPair {
    let mut l = LabelPair::default();
    l.set_name(name.to_string());
    l.set_value(value.to_string());
    l
}

fn unix_seconds(t: DateTime<Utc>) -> f64 {
    t.timestamp_millis() as f64 / 1000.0
}

fn bool_value(b: bool) -> f64 {
    if b {
        1.0
    } else {
        0.0
    }
}

/// OpenMetrics 1.0 text for counter and gauge families: a counter family is named without its
/// `_total` suffix and its samples carry it; `# EOF` is added by [`finish`].
fn encode_openmetrics(families: &[MetricFamily], out: &mut String) {
    for f in families {
        let kind = f.get_field_type();
        let sample_name = f.name();
        let family_name = match kind {
            MetricType::COUNTER => sample_name.strip_suffix("_total").unwrap_or(sample_name),
            _ => sample_name,
        };
        let type_name = match kind {
            MetricType::COUNTER => "counter",
            MetricType::GAUGE => "gauge",
            MetricType::HISTOGRAM => "histogram",
            MetricType::SUMMARY => "summary",
            MetricType::UNTYPED => "unknown",
        };
        let _ = writeln!(out, "# TYPE {family_name} {type_name}");
        if !f.help().is_empty() {
            out.push_str("# HELP ");
            out.push_str(family_name);
            out.push(' ');
            push_escaped(out, f.help());
            out.push('\n');
        }
        for m in f.get_metric() {
            let value = match kind {
                MetricType::COUNTER => m.get_counter().get_value(),
                _ => m.get_gauge().get_value(),
            };
            out.push_str(family_name);
            if kind == MetricType::COUNTER {
                out.push_str("_total");
            }
            let labels = m.get_label();
            if !labels.is_empty() {
                out.push('{');
                for (i, l) in labels.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(l.name());
                    out.push_str("=\"");
                    push_escaped(out, l.value());
                    out.push('"');
                }
                out.push('}');
            }
            out.push(' ');
            push_openmetrics_number(out, value);
            out.push('\n');
        }
    }
}

/// OpenMetrics escaping of label values and HELP text: backslash, double quote, line feed.
fn push_escaped(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            other => out.push(other),
        }
    }
}

fn push_openmetrics_number(out: &mut String, value: f64) {
    if value.is_nan() {
        out.push_str("NaN");
    } else if value.is_infinite() {
        out.push_str(if value > 0.0 { "+Inf" } else { "-Inf" });
    } else {
        let _ = write!(out, "{value}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::FailureEvent;

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
        )
        .unwrap();
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
        )
        .unwrap();
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
        )
        .unwrap();
        assert!(page.contains("# TYPE devlake_project_pipeline_failures counter\n"));
        assert!(
            page.contains("devlake_project_pipeline_failures_total{project_name=\"p\\\"q\"} 3\n")
        );
        assert!(page.ends_with("\n# EOF\n"));
    }
}
