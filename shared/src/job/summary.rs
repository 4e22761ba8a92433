//! What a job's typed summary gives the lifecycle, and the report of a run that stopped.

use serde::Serialize;
use serde_json::Value;

use crate::cloudwatch::Datum;
use crate::devlake::CallCounts;

/// How a run that answered ended.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RunStatus {
    #[default]
    Ok,
    /// Finished, but some items failed or were left for the next run; each is in `errors` (or,
    /// for the automation, `remaining`).
    Partial,
}

/// A job's summary as the lifecycle handles it: the JSON the invocation answers with (complete
/// up to Lambda's response limit), the copy kept in the run record and the closing log line
/// (lists cut to their first entries), the run-level figures and the job's own datums.
pub trait JobSummary: Serialize {
    /// The summary's lists that grow with the size of DevLake, cut in the size-limited copies
    /// (see [`crate::limits::bounded`]).
    const LISTS: &'static [&'static [&'static str]];

    fn status(&self) -> RunStatus;

    /// Items that failed without stopping the run (the `Errors` datum).
    fn item_errors(&self) -> u64;

    /// Stamps what the lifecycle measured around the run: its DevLake calls and duration.
    fn set_figures(&mut self, calls: CallCounts, duration_ms: u64);

    /// The job's own CloudWatch datums, sent with the run-level ones (`RunSuccess`,
    /// `RunDurationMs`, `Errors`, and the monitor's `DevLakeUp`).
    fn datums(&self) -> Vec<Datum>;

    /// The closing log line `<job> run finished`, with the job's counts and `recorded` (the
    /// copy the run record keeps).
    fn log_finished(&self, recorded: &Value);

    /// The copy for the run record and the closing log line: each list keeps its first
    /// [`crate::limits::RECORD_LIST_LIMIT`] entries, with the totals under `truncated`.
    fn recorded(&self) -> Value {
        crate::limits::bounded(
            &serde_json::to_value(self).unwrap_or(Value::Null),
            Self::LISTS,
            Some(crate::limits::RECORD_LIST_LIMIT),
            crate::limits::RECORD_SUMMARY_MAX_BYTES,
        )
    }

    /// The invocation's answer: complete unless it would outgrow Lambda's response limit.
    fn response(&self) -> Value {
        crate::limits::bounded(
            &serde_json::to_value(self).unwrap_or(Value::Null),
            Self::LISTS,
            None,
            crate::limits::RESPONSE_SUMMARY_MAX_BYTES,
        )
    }
}

/// What the run record keeps of a run that stopped (the invocation itself ends as a function
/// error): the same shape for both jobs.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FailureReport {
    /// Always `failed`.
    pub status: &'static str,
    /// The Lambda `errorType` the invocation ended with.
    pub error_type: &'static str,
    /// What stopped the run, on one line.
    pub error: String,
    pub devlake_calls: CallCounts,
    pub duration_ms: u64,
    /// The summary of what the run had done before it stopped (the recorded copy), when the
    /// job keeps one (the automation does; the monitor saves nothing of a stopped run).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub partial: Option<Value>,
}
