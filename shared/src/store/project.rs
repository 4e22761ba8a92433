//! What the store keeps of failures and projects: one failure event per failed pipeline run (the
//! monitor's idempotency record) and each project's state with its counters and the keys of its
//! recent failures (what the metrics page shows).

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};

use crate::failure_cause::FailureCause;

use super::{StartedPipeline, StoreError};

/// One failed (or partially failed) pipeline run. Identified by DevLake data only, so the same
/// failure seen twice maps to the same item, and a re-run that fails again is a new one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FailureEvent {
    pub project_name: String,
    pub blueprint_id: u64,
    pub pipeline_id: u64,
    /// `TASK_FAILED` or `TASK_PARTIAL` (or whatever statuses the monitor counts).
    pub status: String,
    pub finished_at: DateTime<Utc>,
    pub began_at: Option<DateTime<Utc>>,
    /// Truncated DevLake `message`.
    pub message: String,
    /// Truncated DevLake `errorName`.
    pub error_name: String,
    /// Why it failed, from `status`, `errorName` and `message` before truncation
    /// ([`crate::failure_cause::classify`]). Events stored before causes existed read as
    /// `unknown`.
    #[serde(default)]
    pub cause: FailureCause,
}

impl FailureEvent {
    /// The idempotency key: pipeline id plus its `finishedAt`.
    pub fn key(&self) -> String {
        format!(
            "{}#{}",
            self.finished_at
                .to_rfc3339_opts(SecondsFormat::Millis, true),
            self.pipeline_id
        )
    }

    pub fn duration_seconds(&self) -> Option<f64> {
        self.began_at
            .map(|b| (self.finished_at - b).num_milliseconds() as f64 / 1000.0)
    }
}

/// At most this many recent failures are kept per project, newest first. An entry is a ~30-byte
/// string (~32 bytes stored), so the list stays under ~64 KB of the 400 KB item limit; past
/// the cap, the compatibility series of that project shows its newest failures only.
pub const RECENT_FAILURES_MAX: usize = 2_000;

/// What the metrics page shows per project; kept current by the monitor.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProjectState {
    pub project_name: String,
    pub blueprint_id: u64,
    /// Status of the latest finished pipeline.
    pub last_status: Option<String>,
    pub last_finished_at: Option<DateTime<Utc>>,
    pub last_success_at: Option<DateTime<Utc>>,
    pub last_failure_at: Option<DateTime<Utc>>,
    /// The cause of the failure at `last_failure_at`. Absent in states written before causes
    /// existed, until the project's next failure: the metrics page then shows no reason rather
    /// than guess one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_failure_reason: Option<FailureCause>,
    pub last_duration_seconds: Option<f64>,
    /// Monotonic: failures ever recorded for the project. Defaults to 0 when absent because the
    /// DynamoDB adapter stores it apart from the rest of the state.
    #[serde(default)]
    pub failures_total: u64,
    /// Failures since the last success.
    pub consecutive_failures: u64,
    /// A pipeline of this project has run longer than `STUCK_AFTER_HOURS`.
    pub stuck: bool,
    /// Keys ([`FailureEvent::key`], `<finishedAt RFC3339 millis>#<pipelineId>`) of the
    /// project's failures of the monitor's `FAILURE_WINDOW_DAYS`, oldest first, at most
    /// [`RECENT_FAILURES_MAX`]. The metrics page reads its failure window from here instead of
    /// the failure items, at the key's millisecond precision (DevLake stamps whole seconds).
    /// Absent in items written before it existed. Stored as one space-separated string
    /// attribute, not a list: a list of 20,000 strings across the PROJECT partition costs
    /// DynamoDB and the SDK one typed value each to encode and parse on every scrape.
    #[serde(default, with = "space_separated")]
    pub recent_failures: Vec<String>,
    /// The newest pipeline (by id) DevLake's notifications showed started: when it was created
    /// and when it began, for `devlake_project_last_pipeline_queue_seconds`. Written by the
    /// events function only; absent (and not stored) until it has seen one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_started: Option<StartedPipeline>,
    /// Keys of failures the events function recorded that no monitor run has processed yet,
    /// oldest first, at most [`PUSHED_FAILURES_MAX`](super::PUSHED_FAILURES_MAX). The monitor
    /// takes each over when it meets the failure (already recorded, so not counted again) and
    /// treats it as its own for auto-rerun, which would otherwise skip every failure that arrived
    /// by push first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pushed_failures: Vec<String>,
    /// The project's managed blueprint missed its latest scheduled run: the run was due more
    /// than the monitor's grace period ago and left no pipeline (`monitor::schedule`). Left out
    /// of the stored item while false, like the next flag, so items without it read the same.
    #[serde(default, skip_serializing_if = "is_false")]
    pub schedule_missed: bool,
    /// A cancel the monitor sent to the project's stuck pipeline (`STUCK_ACTION`) did not stop
    /// it by the next run.
    #[serde(default, skip_serializing_if = "is_false")]
    pub stuck_cancel_failed: bool,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// `Vec<String>` of space-free keys as one space-separated string (empty list: empty string).
mod space_separated {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(keys: &[String], serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&keys.join(" "))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Vec<String>, D::Error> {
        let joined = String::deserialize(deserializer)?;
        Ok(joined.split_ascii_whitespace().map(str::to_owned).collect())
    }
}

impl ProjectState {
    /// Adds `events` to `recent_failures` and drops failures that finished before
    /// `now - window`. The monitor calls this with its run's `now` and `FAILURE_WINDOW_DAYS`;
    /// the stores also merge a commit's events themselves ([`Self::add_recent_failures`]), so
    /// the list never misses a committed event whoever builds the state.
    pub fn remember_failures(
        &mut self,
        events: &[FailureEvent],
        now: DateTime<Utc>,
        window: chrono::Duration,
    ) {
        self.add_recent_failures(events);
        self.expire_recent_failures(now - window);
    }

    /// Drops the recent failures that finished before `before`; returns how many went. No
    /// scrape from `before + window` on needs them.
    pub fn expire_recent_failures(&mut self, before: DateTime<Utc>) -> usize {
        let oldest = before.to_rfc3339_opts(SecondsFormat::Millis, true);
        // Sorted oldest first: the expired ones are a prefix.
        let expired = self.recent_failures.partition_point(|k| *k < oldest);
        self.recent_failures.drain(..expired);
        expired
    }

    /// Adds `events` to `recent_failures`, dropping duplicates and the oldest past
    /// `RECENT_FAILURES_MAX`. The keys sort chronologically (fixed-width UTC timestamps), so
    /// sorting them orders by `finishedAt`. Idempotent.
    pub fn add_recent_failures(&mut self, events: &[FailureEvent]) {
        let list = &mut self.recent_failures;
        list.extend(events.iter().map(FailureEvent::key));
        list.sort_unstable();
        list.dedup();
        if list.len() > RECENT_FAILURES_MAX {
            list.drain(..list.len() - RECENT_FAILURES_MAX);
        }
    }

    /// The recent failures that finished at or after `since`, as the metrics page needs them
    /// (project name, `finishedAt`, pipeline id; other fields at their defaults). An entry that
    /// does not parse is an error: the list is written only by [`Self::remember_failures`].
    pub fn recent_failures_since(
        &self,
        since: DateTime<Utc>,
    ) -> Result<Vec<FailureEvent>, StoreError> {
        let from = since.to_rfc3339_opts(SecondsFormat::Millis, true);
        let start = self.recent_failures.partition_point(|k| *k < from);
        self.recent_failures[start..]
            .iter()
            .map(|key| self.parse_recent(key))
            .filter(|f| f.as_ref().map_or(true, |f| f.finished_at >= since))
            .collect()
    }

    /// [`Self::recent_failures_since`] that skips (and logs) entries that do not parse instead
    /// of failing: the metrics page shows the rest. Returns the failures and how many entries
    /// were skipped.
    pub fn recent_failures_since_lenient(&self, since: DateTime<Utc>) -> (Vec<FailureEvent>, u64) {
        let from = since.to_rfc3339_opts(SecondsFormat::Millis, true);
        let start = self.recent_failures.partition_point(|k| *k < from);
        let mut skipped = 0;
        let mut out = Vec::new();
        for key in &self.recent_failures[start..] {
            match self.parse_recent(key) {
                Ok(f) if f.finished_at >= since => out.push(f),
                Ok(_) => {}
                Err(error) => {
                    tracing::warn!(%error, "skipping a recent failure that does not decode");
                    skipped += 1;
                }
            }
        }
        (out, skipped)
    }

    /// Every entry of `recent_failures`, in list order, parsed as in
    /// [`Self::recent_failures_since`], or the entry itself when it does not parse.
    pub fn parse_recent_failures(&self) -> Vec<Result<FailureEvent, &str>> {
        self.recent_failures
            .iter()
            .map(|key| self.parse_recent(key).map_err(|_| key.as_str()))
            .collect()
    }

    fn parse_recent(&self, key: &str) -> Result<FailureEvent, StoreError> {
        let malformed = || StoreError::Failed {
            source: None,
            operation: format!("decode recentFailures of PROJECT/{}", self.project_name),
            message: format!("malformed entry {key:?}"),
        };
        let (at, id) = key.split_once('#').ok_or_else(malformed)?;
        Ok(FailureEvent {
            project_name: self.project_name.clone(),
            blueprint_id: 0,
            pipeline_id: id.parse().map_err(|_| malformed())?,
            status: String::new(),
            finished_at: at.parse().map_err(|_| malformed())?,
            began_at: None,
            message: String::new(),
            error_name: String::new(),
            cause: FailureCause::Unknown,
        })
    }
}
