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
//!
//! The pieces: `format` picks the exposition a scrape gets, `families` says what each family
//! holds and which section of the page it belongs in, and `writer` spells a family and its
//! samples (headers per format, escaping, values, the `time_failed` label).

use std::time::Duration;

use chrono_tz::Tz;

use crate::store::{FailureEvent, MetricsSnapshot};

mod families;
mod format;
mod writer;

pub use format::{ExpositionFormat, OPENMETRICS_CONTENT_TYPE, PROMETHEUS_TEXT_CONTENT_TYPE};

use families::{
    compat_family, write_failure_compat, write_failure_compat_samples, write_live_families,
    write_project_families,
};
use writer::Page;

/// The compatibility series of the original system; its label names and value format are kept.
pub const BLUEPRINT_FAILURE_TOTAL: &str = "devlake_blueprint_failure_total";
pub const RENDER_DURATION: &str = "devlake_metrics_render_duration_seconds";
pub const DECODE_ERRORS: &str = "devlake_metrics_decode_errors";

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

#[cfg(test)]
mod tests;
