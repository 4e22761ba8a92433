//! The JSON a monitor run answers with (docs/operations.md) and stores in its run record.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;

use super::expiry::Expiry;
use crate::failure_cause::FailureCause;
use crate::store::FailureEvent;

/// How many recorded failures a summary lists (the counts are always complete).
pub const LISTED_FAILURES: usize = 100;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RunStatus {
    Ok,
    /// Finished, but some items failed; each is in `errors`.
    Partial,
}

/// Something that went wrong for one project or pipeline without stopping the run.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RunIssue {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pipeline_id: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub blueprint_id: Option<u64>,
    pub message: String,
}

/// One failure recorded by the run (or, in a dry run, that would be).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FailureBrief {
    pub project_name: String,
    pub blueprint_id: u64,
    pub pipeline_id: u64,
    pub status: String,
    pub finished_at: DateTime<Utc>,
    /// `auth`, `rate_limit`, `not_found`, `timeout`, `network`, `devlake_internal`,
    /// `cancelled` or `unknown` (docs/failure-causes.md).
    pub cause: FailureCause,
}

impl From<&FailureEvent> for FailureBrief {
    fn from(e: &FailureEvent) -> Self {
        FailureBrief {
            project_name: e.project_name.clone(),
            blueprint_id: e.blueprint_id,
            pipeline_id: e.pipeline_id,
            status: e.status.clone(),
            finished_at: e.finished_at,
            cause: e.cause,
        }
    }
}

/// Where the cursor stands after the run (what a dry run would save).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CursorBrief {
    pub max_pipeline_id: u64,
    pub watching: usize,
    pub saved: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    pub status: RunStatus,
    pub dry_run: bool,
    pub rescan: bool,
    /// The run's `now` (the scheduled time when the scheduler sent one).
    pub now: DateTime<Utc>,
    /// Failure events written by this run (a dry run: that it would write).
    pub new_failures: u64,
    /// Failures found already stored (a duplicate delivery or an overlapping run got there
    /// first); not counted again.
    pub already_recorded: u64,
    pub pipelines_inspected: u64,
    /// Pipelines running longer than `STUCK_AFTER_HOURS`.
    pub stuck: u64,
    /// `POST /pipelines/{id}/rerun` sent (a dry run: that would be asked for).
    pub reruns: u64,
    /// HTTP requests sent to DevLake, retries included.
    pub devlake_calls: u64,
    /// Finished pipelines without a project (ad-hoc, or of a deleted blueprint): not recorded.
    pub skipped_without_project: u64,
    pub cursor: CursorBrief,
    /// The first [`LISTED_FAILURES`] new failures.
    pub failures: Vec<FailureBrief>,
    pub rerun_pipeline_ids: Vec<u64>,
    /// Projects whose managed blueprint missed its latest scheduled run (flagged after this run).
    pub schedule_missed: Vec<String>,
    /// `STUCK_ACTION`: stuck pipelines cancelled (`DELETE /pipelines/{id}` answered; a dry run:
    /// that would be sent).
    pub cancelled_pipeline_ids: Vec<u64>,
    /// Stuck pipelines still running after an earlier run cancelled them.
    pub cancels_not_taken: Vec<u64>,
    /// `cancel-and-rerun`: cancelled pipelines re-run.
    pub stuck_rerun_pipeline_ids: Vec<u64>,
    /// The day's expiry of the recent-failures lists, on the first run of each UTC day.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expiry: Option<Expiry>,
    /// Always empty for the monitor (it creates nothing that could clash); kept for the shared
    /// summary shape.
    pub conflicts: Vec<Value>,
    pub errors: Vec<RunIssue>,
    pub duration_ms: u64,
}

impl Summary {
    /// A run stopped by its deadline before it could account for anything: nothing counted,
    /// the cursor not saved, `issue` saying why.
    pub(crate) fn cut_short(
        now: DateTime<Utc>,
        dry_run: bool,
        rescan: bool,
        issue: RunIssue,
    ) -> Self {
        Summary {
            status: RunStatus::Partial,
            dry_run,
            rescan,
            now,
            new_failures: 0,
            already_recorded: 0,
            pipelines_inspected: 0,
            stuck: 0,
            reruns: 0,
            devlake_calls: 0,
            skipped_without_project: 0,
            cursor: CursorBrief {
                max_pipeline_id: 0,
                watching: 0,
                saved: false,
            },
            failures: Vec::new(),
            rerun_pipeline_ids: Vec::new(),
            schedule_missed: Vec::new(),
            cancelled_pipeline_ids: Vec::new(),
            cancels_not_taken: Vec::new(),
            stuck_rerun_pipeline_ids: Vec::new(),
            expiry: None,
            conflicts: Vec::new(),
            errors: vec![issue],
            duration_ms: 0,
        }
    }
}

/// The summary's lists that grow with the number of projects, cut in the copies that have a
/// size limit (see [`crate::limits::bounded`]).
pub const SUMMARY_LISTS: &[&[&str]] = &[
    &["errors"],
    &["rerunPipelineIds"],
    &["failures"],
    &["scheduleMissed"],
    &["cancelledPipelineIds"],
    &["cancelsNotTaken"],
    &["stuckRerunPipelineIds"],
];

impl Summary {
    /// The copy for the run record and the closing log line: each list keeps its first
    /// [`crate::limits::RECORD_LIST_LIMIT`] entries, with the totals under `truncated`.
    pub fn recorded(&self) -> Value {
        crate::limits::bounded(
            &serde_json::to_value(self).unwrap_or(Value::Null),
            SUMMARY_LISTS,
            Some(crate::limits::RECORD_LIST_LIMIT),
            crate::limits::RECORD_SUMMARY_MAX_BYTES,
        )
    }

    /// The invocation's answer: complete unless it would outgrow Lambda's response limit.
    pub fn response(&self) -> Value {
        crate::limits::bounded(
            &serde_json::to_value(self).unwrap_or(Value::Null),
            SUMMARY_LISTS,
            None,
            crate::limits::RESPONSE_SUMMARY_MAX_BYTES,
        )
    }
}

#[cfg(test)]
mod bounded_tests {
    use super::*;

    #[test]
    fn long_lists_are_cut_with_their_totals_in_the_recorded_copy() {
        let issue = |i: u64| RunIssue {
            project: Some(format!("github/acme/svc-{i}")),
            pipeline_id: Some(i),
            blueprint_id: Some(i),
            message: "re-run failed: DevLake answered 500".into(),
        };
        let mut s = Summary::cut_short(Utc::now(), false, false, issue(0));
        s.errors = (0..5000).map(issue).collect();
        s.rerun_pipeline_ids = (0..3000).collect();
        let recorded = s.recorded();
        assert_eq!(recorded["errors"].as_array().unwrap().len(), 100);
        assert_eq!(recorded["rerunPipelineIds"].as_array().unwrap().len(), 100);
        assert_eq!(
            recorded["truncated"]["errors"],
            serde_json::json!({"total": 5000, "shown": 100})
        );
        assert_eq!(
            recorded["truncated"]["rerunPipelineIds"],
            serde_json::json!({"total": 3000, "shown": 100})
        );
        assert!(crate::limits::json_len(&recorded) <= crate::limits::RECORD_SUMMARY_MAX_BYTES);
        // The answer keeps everything (it fits Lambda's response limit).
        let response = s.response();
        assert_eq!(response["errors"].as_array().unwrap().len(), 5000);
        assert!(response.get("truncated").is_none());
    }
}
