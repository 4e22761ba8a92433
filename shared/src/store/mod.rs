//! The DynamoDB-backed state of devlake-autopilot, behind small traits so domain logic can run
//! against an in-memory store in unit tests.
//!
//! # Table layout (one table, defined once in `template.yaml`: `pk` S / `sk` S, TTL on `expiresAt`)
//!
//! | item | pk | sk | TTL |
//! | --- | --- | --- | --- |
//! | failure event | `FAILURE#<YYYY-MM-DD of finishedAt, UTC>` | `<finishedAt RFC3339>#<pipelineId>` | yes |
//! | per-project state and counters | `PROJECT` | `<project name>` | no |
//! | monitor cursor | `MONITOR` | `CURSOR` | no |
//! | last run of a job | `RUN` | `automation` / `monitor` | no |
//! | blueprint → project map | `BLUEPRINT` | `<blueprint id, 20 digits>` | no |
//! | auto-rerun tracking | `RERUN` | `<pipelineId>` | no |
//!
//! Failure events are bucketed by day so the metrics function reads the failure window with one
//! Query per day, and the project states with one Query: cost grows with projects and with
//! failures inside the window, never with history.

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use thiserror::Error;

mod dynamo;
mod dynamo_read;
mod memory;
pub use dynamo::{keys, DynamoStore, MAX_EVENTS_PER_COMMIT};
pub use memory::MemoryStore;

/// A job whose runs are recorded for `devlake_*_last_run_*`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Job {
    Automation,
    Monitor,
}

impl Job {
    pub fn as_str(self) -> &'static str {
        match self {
            Job::Automation => "automation",
            Job::Monitor => "monitor",
        }
    }
}

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
    pub last_duration_seconds: Option<f64>,
    /// Monotonic: failures ever recorded for the project.
    pub failures_total: u64,
    /// Failures since the last success.
    pub consecutive_failures: u64,
    /// A pipeline of this project has run longer than `STUCK_AFTER_HOURS`.
    pub stuck: bool,
}

/// The outcome of one run of a job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunRecord {
    pub job: Job,
    /// When the run finished: the invocation's clock reading plus the run's own duration (never
    /// its scheduled time). Rendered as `devlake_{job}_last_run_timestamp_seconds`.
    pub finished_at: DateTime<Utc>,
    pub success: bool,
    /// Monitor only: whether DevLake answered.
    pub devlake_up: Option<bool>,
    pub duration_ms: u64,
    /// The run's JSON summary, for operators reading the table.
    pub summary: serde_json::Value,
}

/// Everything the metrics function renders.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MetricsSnapshot {
    pub projects: Vec<ProjectState>,
    /// Failures that finished at or after the requested instant.
    pub failures: Vec<FailureEvent>,
    pub automation: Option<RunRecord>,
    pub monitor: Option<RunRecord>,
}

/// A store operation failed.
#[derive(Debug, Error)]
pub enum StoreError {
    /// DynamoDB throttled, timed out or was unreachable: trying again later can help.
    #[error("DynamoDB unavailable during {operation}: {message}")]
    Unavailable { operation: String, message: String },
    /// Anything else (bad table name, permissions, malformed item).
    #[error("DynamoDB {operation} failed: {message}")]
    Failed { operation: String, message: String },
}

impl StoreError {
    pub fn is_retryable(&self) -> bool {
        matches!(self, StoreError::Unavailable { .. })
    }
}

/// Run records, written by the automation and the monitor.
#[async_trait::async_trait]
pub trait RunLog: Send + Sync {
    async fn record_run(&self, run: &RunRecord) -> Result<(), StoreError>;
}

/// The read side used by the metrics function.
#[async_trait::async_trait]
pub trait MetricsSource: Send + Sync {
    async fn snapshot(&self, failures_since: DateTime<Utc>) -> Result<MetricsSnapshot, StoreError>;
}

/// Where the monitor left off. See `monitor` for why this shape is both complete and cheap.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct MonitorCursor {
    /// Every pipeline with an id up to this one has been accounted for: either its finished state
    /// was processed, or it is in `watch`.
    pub max_pipeline_id: u64,
    /// The latest `finishedAt` processed so far (DevLake's clock). A finished pipeline at or
    /// below `max_pipeline_id`, not watched, with a `finishedAt` after this was re-run since.
    pub watermark: Option<DateTime<Utc>>,
    /// Pipelines at or below `max_pipeline_id` whose final state has not been processed yet
    /// (queued, running, resumed, re-run, or not mappable last time). Ascending, no duplicates.
    pub watch: Vec<u64>,
    /// Projects currently flagged stuck, with the pipeline that made them so.
    pub stuck: BTreeMap<String, u64>,
    /// The run time (`now`) of the run that wrote it.
    pub updated_at: Option<DateTime<Utc>>,
    /// Bumped on every save; saves are conditional on it.
    pub revision: u64,
}

/// A project's stored state and the revision it was read at (`None`: no item yet).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StoredProject {
    pub state: ProjectState,
    pub revision: Option<u64>,
}

/// One atomic write for one project: the new failure events (each written only if absent) and
/// the project's new state (written only if still at `expected_revision`). `state.failures_total`
/// already includes `events`; the store adds `events.len()` to the stored counter.
#[derive(Debug, Clone, Copy)]
pub struct ProjectCommit<'a> {
    pub state: &'a ProjectState,
    pub expected_revision: Option<u64>,
    pub events: &'a [FailureEvent],
    /// How long failure events live (their `expiresAt` is `finishedAt` + this).
    pub retention: chrono::Duration,
}

/// What became of a [`ProjectCommit`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommitOutcome {
    /// Everything written.
    Committed,
    /// Nothing written: these events (by [`FailureEvent::key`]) are stored already, by a
    /// concurrent or earlier run. Re-read the project and retry without them.
    AlreadyRecorded(Vec<String>),
    /// Nothing written: the project changed since it was read. Re-read and retry.
    Conflict,
}

/// Outcome of asking to re-run a failed pipeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RerunClaim {
    /// Granted; this is re-run number `attempt` of the pipeline.
    Granted { attempt: u32 },
    /// This failure was already re-run (by this or a concurrent run).
    AlreadyDone,
    /// The pipeline has used up `AUTO_RERUN_MAX`.
    Exhausted,
}

/// `expiresAt` of a failure event: `finishedAt` + retention, in epoch seconds.
pub fn failure_expires_at(event: &FailureEvent, retention: chrono::Duration) -> i64 {
    (event.finished_at + retention).timestamp()
}

/// What the monitor reads and writes.
#[async_trait::async_trait]
pub trait MonitorStore: RunLog {
    async fn load_cursor(&self) -> Result<Option<MonitorCursor>, StoreError>;

    /// Saves `cursor` with `revision` bumped, only if the stored revision is still
    /// `loaded_revision` (`None`: only if there is none). `Ok(false)`: a concurrent run saved
    /// first; nothing written.
    async fn save_cursor(
        &self,
        cursor: &MonitorCursor,
        loaded_revision: Option<u64>,
    ) -> Result<bool, StoreError>;

    /// Cached blueprint → project names for those of `ids` that are known.
    async fn blueprint_projects(&self, ids: &[u64]) -> Result<HashMap<u64, String>, StoreError>;

    async fn save_blueprint_projects(
        &self,
        entries: &[(u64, String)],
        now: DateTime<Utc>,
    ) -> Result<(), StoreError>;

    /// Stored states of those of `names` that exist.
    async fn project_states(
        &self,
        names: &[String],
    ) -> Result<HashMap<String, StoredProject>, StoreError>;

    /// Keys ([`FailureEvent::key`]) of those of `events` already stored. Used by dry runs, which
    /// must report what a real run would record without writing.
    async fn recorded_failures(
        &self,
        events: &[FailureEvent],
    ) -> Result<HashSet<String>, StoreError>;

    async fn commit_project(&self, commit: ProjectCommit<'_>) -> Result<CommitOutcome, StoreError>;

    /// Take one re-run of `pipeline_id` for the failure `failure_key`, if fewer than `max` were
    /// taken and none for this failure.
    async fn claim_rerun(
        &self,
        pipeline_id: u64,
        failure_key: &str,
        max: u32,
        now: DateTime<Utc>,
    ) -> Result<RerunClaim, StoreError>;
}
