//! The monitor's port: the atomic per-project commit, cursor saves, the blueprint cache and the
//! re-run claims, with the value types they exchange.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, NaiveDate, Utc};

use super::{
    CachedBlueprint, FailureEvent, MonitorCursor, ProjectState, RunLog, SnapshotStore, StoreError,
};

/// A project's stored state and the revision it was read at (`None`: no item yet).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StoredProject {
    pub state: ProjectState,
    pub revision: Option<u64>,
}

/// One atomic write for one project: the new failure events (each written only if absent) and
/// the project's new state (written only if still at `expected_revision`). `state.failures_total`
/// already includes `events`; the store adds `events.len()` to the stored counter, and merges
/// `events` into the written `recent_failures` (see [`ProjectState::add_recent_failures`]).
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
    /// Granted until the lease ends; this is re-run number `attempt` of the pipeline. The
    /// caller settles it with [`MonitorStore::settle_rerun`] once the request is answered.
    Granted { attempt: u32 },
    /// This failure was already re-run (by this or a concurrent run).
    AlreadyDone,
    /// Another run holds an unexpired claim for this failure.
    InProgress,
    /// The pipeline has used up `AUTO_RERUN_MAX`.
    Exhausted,
}

/// How a granted re-run claim ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RerunSettlement {
    /// DevLake accepted the re-run (or the failure is no longer the pipeline's state): never
    /// claimed again for this failure.
    Done,
    /// The request failed: a later run may claim the same failure again (it keeps its slot
    /// in `AUTO_RERUN_MAX`).
    Released,
}

/// A re-run claim a later run should take up again: released after a failed request, or
/// still in progress after its lease ended (the run that held it stopped before settling).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingRerun {
    pub pipeline_id: u64,
    pub failure_key: String,
}

/// `expiresAt` of a failure event: `finishedAt` + retention, in epoch seconds.
pub fn failure_expires_at(event: &FailureEvent, retention: chrono::Duration) -> i64 {
    (event.finished_at + retention).timestamp()
}

/// What the monitor reads and writes; it publishes the metrics snapshot after its commits.
#[async_trait::async_trait]
pub trait MonitorStore: RunLog + SnapshotStore {
    async fn load_cursor(&self) -> Result<Option<MonitorCursor>, StoreError>;

    /// Saves `cursor` with `revision` bumped, only if the stored revision is still
    /// `loaded_revision` (`None`: only if there is none). `Ok(false)`: a concurrent run saved
    /// first; nothing written.
    async fn save_cursor(
        &self,
        cursor: &MonitorCursor,
        loaded_revision: Option<u64>,
    ) -> Result<bool, StoreError>;

    /// Cached blueprint → project names for those of `ids` that are known, with when each was
    /// resolved (callers decide how old is too old).
    async fn blueprint_projects(
        &self,
        ids: &[u64],
    ) -> Result<HashMap<u64, CachedBlueprint>, StoreError>;

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

    /// Every stored project, in name order (the `PROJECT` partition in DynamoDB, the same read as
    /// a scrape's): the monitor's daily expiry of recent failures walks them.
    async fn all_projects(&self) -> Result<Vec<StoredProject>, StoreError>;

    /// Deletes a project's item (its state, counters and recent failures), only if still at
    /// `expected_revision`: the project no longer exists in DevLake. `Ok(false)`: it changed
    /// meanwhile (or is gone already); nothing deleted. Its failure events stay until their TTL.
    async fn delete_project(
        &self,
        name: &str,
        expected_revision: Option<u64>,
    ) -> Result<bool, StoreError>;

    /// Keys ([`FailureEvent::key`]) of those of `events` already stored. Used by dry runs, which
    /// must report what a real run would record without writing.
    async fn recorded_failures(
        &self,
        events: &[FailureEvent],
    ) -> Result<HashSet<String>, StoreError>;

    /// The failure events that finished on the UTC day `day`, oldest first: what an operator
    /// reads with one Query of `FAILURE#<day>`. Events stored before causes existed come back
    /// with the cause `unknown`.
    async fn failures_on(&self, day: NaiveDate) -> Result<Vec<FailureEvent>, StoreError>;

    async fn commit_project(&self, commit: ProjectCommit<'_>) -> Result<CommitOutcome, StoreError>;

    /// Claims one re-run of `pipeline_id` for the failure `failure_key` until `now + lease`:
    /// granted if fewer than `max` failures of the pipeline were claimed and none for this
    /// one, or if this failure's claim was released or its lease ended (same slot).
    async fn claim_rerun(
        &self,
        pipeline_id: u64,
        failure_key: &str,
        max: u32,
        now: DateTime<Utc>,
        lease: chrono::Duration,
    ) -> Result<RerunClaim, StoreError>;

    /// Ends the claim for `failure_key`, unless it is settled as done already (or the
    /// pipeline's claim moved on to a later failure): `Ok(false)`, nothing changed.
    async fn settle_rerun(
        &self,
        pipeline_id: u64,
        failure_key: &str,
        settlement: RerunSettlement,
    ) -> Result<bool, StoreError>;

    /// Claims to take up again at `now`: released ones and in-progress ones whose lease ended.
    async fn pending_reruns(&self, now: DateTime<Utc>) -> Result<Vec<PendingRerun>, StoreError>;
}
