//! The record of each job's last run and of the connections' health, and the run lease that keeps
//! two runs of a job from acting at once: what both scheduled jobs write.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{Job, StoreError};

/// The outcome of one run of a job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunRecord {
    pub job: Job,
    /// When the run finished: the invocation's clock reading plus the run's own duration (never
    /// its scheduled time). Rendered as `devlake_{job}_last_run_timestamp_seconds`.
    pub finished_at: DateTime<Utc>,
    pub success: bool,
    /// Whether DevLake could be used by the run: `false` when DevLake stopped it (unreachable,
    /// 5xx, 401/403, 428), `None` when it stopped before asking DevLake. The metrics page shows
    /// the monitor's as `devlake_up`.
    pub devlake_up: Option<bool>,
    pub duration_ms: u64,
    /// The run's JSON summary, for operators reading the table.
    pub summary: serde_json::Value,
}

/// One connection as the automation's latest test of every connection found it
/// (`POST /plugins/{plugin}/connections/{id}/test`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConnectionHealth {
    pub plugin: String,
    pub connection_id: u64,
    pub connection_name: String,
    /// DevLake's test succeeded: a 2xx answer whose body does not say `success: false`.
    pub up: bool,
    /// The HTTP status of DevLake's answer.
    #[serde(default)]
    pub status: u16,
    /// DevLake's message when the connection is down: one line, without secrets.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
}

/// The `CONNECTION`/`HEALTH` item: every connection the automation's latest complete test
/// covered (a run that listed every configured plugin's connections unfiltered). It replaces
/// the previous one whole, so deleted connections leave the page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConnectionHealthRecord {
    /// When the run that tested them finished its tests.
    pub tested_at: DateTime<Utc>,
    /// Sorted by plugin, then connection id.
    pub connections: Vec<ConnectionHealth>,
}

/// The run lease another run holds, when a run could not take it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseHolder {
    /// The holding run's id (random per run, logged by that run when it starts).
    pub holder: String,
    pub acquired_at: DateTime<Utc>,
    /// When the lease lapses by itself if its run never releases it (killed at its timeout).
    pub until: DateTime<Utc>,
}

/// Run records, written by the automation and the monitor, and the run lease that keeps two
/// runs of a job from acting at once.
#[async_trait::async_trait]
pub trait RunLog: Send + Sync {
    async fn record_run(&self, run: &RunRecord) -> Result<(), StoreError>;

    /// Replaces the stored connection health (the `CONNECTION`/`HEALTH` item) with `record`.
    async fn record_connection_health(
        &self,
        record: &ConnectionHealthRecord,
    ) -> Result<(), StoreError>;

    /// Takes `job`'s run lease for `holder` until `until`, unless another holder's lease is
    /// still valid at `now`; then returns that holder. A store without leases always grants it.
    async fn acquire_lease(
        &self,
        _job: Job,
        _holder: &str,
        _now: DateTime<Utc>,
        _until: DateTime<Utc>,
    ) -> Result<Result<(), LeaseHolder>, StoreError> {
        Ok(Ok(()))
    }

    /// Gives `job`'s lease back at `now` if `holder` still holds it (a lease that lapsed and was
    /// taken by another run is left alone).
    async fn release_lease(
        &self,
        _job: Job,
        _holder: &str,
        _now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        Ok(())
    }
}
