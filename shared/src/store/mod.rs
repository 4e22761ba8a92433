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

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use thiserror::Error;

mod dynamo;
pub use dynamo::{keys, DynamoStore};

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
            self.finished_at.to_rfc3339_opts(SecondsFormat::Millis, true),
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
