//! The DynamoDB-backed state of devlake-autopilot, behind small traits so domain logic can run
//! against an in-memory store in unit tests.
//!
//! # Table layout (one table, defined once in `template.yaml`: `pk` S / `sk` S, TTL on `expiresAt`)
//!
//! | item | pk | sk | TTL |
//! | --- | --- | --- | --- |
//! | failure event | `FAILURE#<YYYY-MM-DD of finishedAt, UTC>` | `<finishedAt RFC3339>#<pipelineId>` | yes |
//! | per-project state, counters and recent failures | `PROJECT` | `<project name>` | no |
//! | monitor cursor | `MONITOR` | `CURSOR` | no |
//! | last run of a job | `RUN` | `automation` / `monitor` | no |
//! | connections' health | `CONNECTION` | `HEALTH` | no |
//! | blueprint → project map | `BLUEPRINT` | `<blueprint id, 20 digits>` | no |
//! | auto-rerun tracking | `RERUN` | `<pipelineId>` | no |
//! | latest DevLake notification received | `EVENTS` | `RECEIVED` | no |
//! | published snapshot of the metrics page: head and chunks | `SNAPSHOT` | `HEAD`, `CHUNK#<version>#<index>` | chunks only |
//!
//! Failure events are bucketed by day (an operator reads a day with one Query) and are the
//! idempotency record of the monitor. The metrics function does not read them: each PROJECT item
//! also carries `recentFailures`, the keys of the project's failures of the last
//! `FAILURE_WINDOW_DAYS` (at most [`RECENT_FAILURES_MAX`]), written in the same transaction as
//! the failure events and expired by the monitor (at each commit of the project, and for every
//! project on its first run of each UTC day). One read of the `pk = PROJECT` partition thus gives the
//! metrics page both the project states and the failures in its window: cost grows with projects
//! and failures of the window (plus at most a day), never with history.
//!
//! Scrapes do not read that partition either once a snapshot is published: each committer
//! copies it, compressed, into the `SNAPSHOT` partition after its commits (`crate::snapshot`,
//! [`SnapshotStore`]), and a scrape reads the snapshot's head with the run records in one call
//! (plus the snapshot itself, once per change).
//!
//! The module's files are one concept each: `project` (failure events, project state), `cursor`
//! (where the monitor left off), `run_log` (run records, connection health, the run lease),
//! `metrics_source` (the page's input), `monitor_store` (the monitor's port), `error`, the
//! published snapshot (`published`), the events function's port (`events`), and the two
//! implementations: the DynamoDB adapter (`dynamo*`) and the in-memory store (`memory`).

use serde::{Deserialize, Serialize};

mod cursor;
mod dynamo;
mod dynamo_published;
mod dynamo_read;
mod error;
mod events;
mod memory;
mod metrics_source;
mod monitor_store;
mod project;
mod published;
mod run_log;

pub use cursor::{
    CachedBlueprint, MissingBlueprint, MonitorCursor, OpenFailure, ScheduleWatch, StuckCancel,
};
pub use dynamo::{keys, project_item, CapacityUsed, DynamoStore, MAX_EVENTS_PER_COMMIT};
pub use error::{BoxError, StoreError};
pub use events::{EventStore, EventsReceived, StartedPipeline, PUSHED_FAILURES_MAX};
pub use memory::MemoryStore;
pub use metrics_source::{MetricsSnapshot, MetricsSource};
pub use monitor_store::{
    failure_expires_at, CommitOutcome, MonitorStore, PendingRerun, ProjectCommit, RerunClaim,
    RerunSettlement, StoredProject,
};
pub use project::{FailureEvent, ProjectState, RECENT_FAILURES_MAX};
pub use published::{
    LiveRecords, PublishedRead, PublishedState, PublishedVersion, ScrapeRead, SnapshotHead,
    SnapshotPut, SnapshotStore, SNAPSHOT_CHUNK_BYTES, SNAPSHOT_CHUNK_TTL, SNAPSHOT_REFRESH_AFTER,
};
pub use run_log::{ConnectionHealth, ConnectionHealthRecord, LeaseHolder, RunLog, RunRecord};

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

#[cfg(test)]
mod tests;
