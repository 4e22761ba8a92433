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

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use chrono::{DateTime, NaiveDate, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::failure_cause::FailureCause;

mod dynamo;
mod dynamo_published;
mod dynamo_read;
mod events;
mod memory;
mod published;
pub use dynamo::{keys, project_item, CapacityUsed, DynamoStore, MAX_EVENTS_PER_COMMIT};
pub use events::{EventStore, EventsReceived, StartedPipeline, PUSHED_FAILURES_MAX};
pub use memory::MemoryStore;
pub use published::{
    LiveRecords, PublishedRead, PublishedState, PublishedVersion, ScrapeRead, SnapshotHead,
    SnapshotPut, SnapshotStore, SNAPSHOT_CHUNK_BYTES, SNAPSHOT_CHUNK_TTL, SNAPSHOT_REFRESH_AFTER,
};

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
    /// oldest first, at most [`PUSHED_FAILURES_MAX`]. The monitor takes each over when it meets
    /// the failure (already recorded, so not counted again) and treats it as its own for
    /// auto-rerun, which would otherwise skip every failure that arrived by push first.
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

/// Everything the metrics function renders. A scrape of a published snapshot builds it from
/// [`PublishedState`] (the projects) and [`PublishedRead`] (the run records).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MetricsSnapshot {
    pub projects: Vec<ProjectState>,
    /// Failures that finished at or after the requested instant.
    pub failures: Vec<FailureEvent>,
    pub automation: Option<RunRecord>,
    pub monitor: Option<RunRecord>,
    /// The latest DevLake notification the events function accepted; `None` until one was
    /// (push not configured), and then the page shows no events series at all.
    pub events: Option<EventsReceived>,
    /// The connections' health from the automation's latest complete test; empty before one.
    pub connections: Vec<ConnectionHealth>,
    /// Stored items (or recent-failure entries) this read skipped because they did not decode;
    /// each is logged. One bad item never blanks the page.
    pub decode_errors: u64,
}

impl MetricsSnapshot {
    /// The snapshot of `projects` and the live records, with the failures of the projects'
    /// recent lists that finished at or after `since` (entries that do not parse are skipped,
    /// logged and added to `decode_errors`).
    pub fn from_parts(
        projects: Vec<ProjectState>,
        since: DateTime<Utc>,
        live: LiveRecords,
    ) -> Self {
        let mut failures = Vec::new();
        let mut decode_errors = live.decode_errors;
        for project in &projects {
            let (recent, skipped) = project.recent_failures_since_lenient(since);
            failures.extend(recent);
            decode_errors += skipped;
        }
        MetricsSnapshot {
            projects,
            failures,
            automation: live.automation,
            monitor: live.monitor,
            events: live.events,
            connections: live.connections,
            decode_errors,
        }
    }
}

/// A store operation failed.
#[derive(Debug, Error)]
pub enum StoreError {
    /// DynamoDB throttled, timed out or was unreachable: trying again later can help.
    #[error("DynamoDB unavailable during {operation}: {message}")]
    Unavailable {
        operation: String,
        message: String,
        /// The SDK error, when the failure came from a DynamoDB call.
        #[source]
        source: Option<BoxError>,
    },
    /// Anything else (bad table name, permissions, malformed item).
    #[error("DynamoDB {operation} failed: {message}")]
    Failed {
        operation: String,
        message: String,
        #[source]
        source: Option<BoxError>,
    },
}

/// The cause kept inside a [`StoreError`].
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl StoreError {
    pub fn is_retryable(&self) -> bool {
        matches!(self, StoreError::Unavailable { .. })
    }
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

/// The read side used by the metrics function.
#[async_trait::async_trait]
pub trait MetricsSource: Send + Sync {
    /// The whole page's input read from the state's own items (projects and run records), with
    /// the failures that finished at or after `failures_since`: the direct read, used before any
    /// snapshot is published and when one cannot be decoded.
    async fn snapshot(&self, failures_since: DateTime<Utc>) -> Result<MetricsSnapshot, StoreError>;

    /// What one scrape reads: the run records and the published snapshot's version, plus the
    /// snapshot itself unless it is `known` (the version the caller already holds); without a
    /// published snapshot, the direct read. A source that never publishes (test doubles) keeps
    /// this default, the direct read.
    async fn scrape(
        &self,
        failures_since: DateTime<Utc>,
        _known: Option<u64>,
    ) -> Result<ScrapeRead, StoreError> {
        Ok(ScrapeRead::Direct(self.snapshot(failures_since).await?))
    }
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
    /// The latest recorded failure of every project whose latest finished pipeline failed,
    /// ascending by pipeline id. Re-checked every run: a re-run of it (from the Config UI, the
    /// API, a task re-run or the auto-rerun) is seen whatever the pipeline's age.
    pub open_failures: Vec<OpenFailure>,
    /// Re-runs seen running, ascending by pipeline id: DevLake keeps the first run's `beganAt`,
    /// so the running time of the current attempt counts from here.
    pub attempts: Vec<Attempt>,
    /// Open failures beyond the failure listings' depth are looked up a few per run, in id
    /// order from after this one.
    pub recheck_after: u64,
    /// The page of `GET /blueprints` the next run reads (1-based; the sweep wraps around).
    pub sweep_page: u32,
    /// Blueprints that answered 404, with the first such answer: their pipelines wait (watched)
    /// until the blueprint is found again or has been missing for an hour.
    pub missing_blueprints: Vec<MissingBlueprint>,
    /// Managed blueprints whose schedule is checked for missed runs, ascending by blueprint id;
    /// one short string in the item (see [`ScheduleWatch`]).
    #[serde(with = "schedule_watches", skip_serializing_if = "Vec::is_empty")]
    pub schedules: Vec<ScheduleWatch>,
    /// Projects flagged for a missed scheduled run.
    #[serde(skip_serializing_if = "BTreeSet::is_empty")]
    pub schedule_missed: BTreeSet<String>,
    /// Cancels sent to stuck pipelines (`STUCK_ACTION`), ascending by pipeline id: the next
    /// run checks that each pipeline stopped.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub stuck_cancels: Vec<StuckCancel>,
    /// Projects whose stuck pipeline a cancel did not stop, with that pipeline.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub stuck_cancel_failed: BTreeMap<String, u64>,
    /// Set when a first run or a rescan was cut short before its listing reached the look-back
    /// floor: the ids it did not list are not accounted for, so the next run looks back again
    /// from this window start instead of trusting `max_pipeline_id` and `watermark`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lookback_from: Option<DateTime<Utc>>,
    /// The run time (`now`) of the run that wrote it.
    pub updated_at: Option<DateTime<Utc>>,
    /// Bumped on every save; saves are conditional on it.
    pub revision: u64,
}

/// What the monitor remembers of one managed blueprint's schedule: which `cronConfig` it
/// watches (24 bits of its [`stable_hash`](crate::cron::stable_hash): a change of schedule
/// restarts the watch) and the latest sign of a pipeline of the blueprint — created, ended, or
/// seen unfinished by a run — to the minute. A scheduled run due at or before `last_activity`
/// is accounted for (scheduled runs fall on whole minutes, so the minute is exact enough).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScheduleWatch {
    pub blueprint_id: u64,
    pub cron_hash: u32,
    pub last_activity: DateTime<Utc>,
}

/// `Vec<ScheduleWatch>` as one string: per entry, ascending by blueprint id,
/// `<id minus the previous entry's id>:<hash, 6 hex digits>:<Unix minutes>`, space separated —
/// about 19 bytes an entry, so ten thousand managed blueprints take ~190 KB of the cursor item's
/// 400 KB.
mod schedule_watches {
    use super::ScheduleWatch;
    use chrono::DateTime;
    use serde::{de::Error, Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(
        watches: &[ScheduleWatch],
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        let mut sorted = watches.to_vec();
        sorted.sort_by_key(|w| w.blueprint_id);
        let mut previous = 0;
        let text: Vec<String> = sorted
            .iter()
            .map(|w| {
                let delta = w.blueprint_id - previous;
                previous = w.blueprint_id;
                format!(
                    "{delta}:{:06x}:{}",
                    w.cron_hash & 0xff_ffff,
                    w.last_activity.timestamp().div_euclid(60)
                )
            })
            .collect();
        serializer.serialize_str(&text.join(" "))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Vec<ScheduleWatch>, D::Error> {
        let joined = String::deserialize(deserializer)?;
        let mut id = 0u64;
        joined
            .split_ascii_whitespace()
            .map(|entry| {
                let bad = || D::Error::custom(format!("malformed schedule entry {entry:?}"));
                let mut parts = entry.split(':');
                let (Some(delta), Some(hash), Some(minutes), None) =
                    (parts.next(), parts.next(), parts.next(), parts.next())
                else {
                    return Err(bad());
                };
                id = delta
                    .parse::<u64>()
                    .ok()
                    .and_then(|d| id.checked_add(d))
                    .ok_or_else(bad)?;
                Ok(ScheduleWatch {
                    blueprint_id: id,
                    cron_hash: u32::from_str_radix(hash, 16).map_err(|_| bad())?,
                    last_activity: minutes
                        .parse::<i64>()
                        .ok()
                        .and_then(|m| DateTime::from_timestamp(m.checked_mul(60)?, 0))
                        .ok_or_else(bad)?,
                })
            })
            .collect()
    }
}

/// A cancel sent to a stuck pipeline, checked by the next run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StuckCancel {
    pub pipeline_id: u64,
    pub project: String,
    /// The run time of the first request: a pipeline that ended at or after it since stopped.
    pub requested_at: DateTime<Utc>,
}

/// A project's latest recorded failure, while it is the project's latest finished pipeline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OpenFailure {
    pub pipeline_id: u64,
    /// When that failure ended (its key's time): a different end means it ran again.
    pub ended_at: DateTime<Utc>,
    pub project: String,
}

/// When the monitor first saw the current attempt of a re-run pipeline running.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Attempt {
    pub pipeline_id: u64,
    /// The previous run's `finishedAt`, which DevLake keeps until the attempt ends: a different
    /// one means another attempt.
    pub previous_finished_at: Option<DateTime<Utc>>,
    pub seen_running_at: DateTime<Utc>,
}

/// A cached blueprint → project name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedBlueprint {
    /// Empty: the blueprint has no project (deleted).
    pub project_name: String,
    pub resolved_at: DateTime<Utc>,
}

/// A blueprint that answered 404 and since when.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MissingBlueprint {
    pub blueprint_id: u64,
    pub since: DateTime<Utc>,
}

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

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn schedule_watches_are_one_compact_string_to_the_minute() {
        let at = |m: u32, s: u32| Utc.with_ymd_and_hms(2026, 11, 28, 3, m, s).unwrap();
        let cursor = MonitorCursor {
            schedules: vec![
                ScheduleWatch {
                    blueprint_id: 1200,
                    cron_hash: 0xab_cdef,
                    last_activity: at(30, 0),
                },
                ScheduleWatch {
                    blueprint_id: 7,
                    cron_hash: 1,
                    last_activity: at(29, 59),
                },
            ],
            ..MonitorCursor::default()
        };
        let json = serde_json::to_value(&cursor).unwrap();
        let minutes = at(30, 0).timestamp() / 60;
        assert_eq!(
            json["schedules"],
            format!("7:000001:{} 1193:abcdef:{minutes}", minutes - 1)
        );
        let back: MonitorCursor = serde_json::from_value(json).unwrap();
        assert_eq!(
            back.schedules,
            vec![
                ScheduleWatch {
                    blueprint_id: 7,
                    cron_hash: 1,
                    last_activity: at(29, 0),
                },
                cursor.schedules[0],
            ]
        );
        // Absent when empty; malformed entries are errors.
        assert!(serde_json::to_value(MonitorCursor::default()).unwrap()["schedules"].is_null());
        for bad in ["7", "7:zz:1", "x:1:1", "7:1:1:1", "7:1:99999999999999999"] {
            let r: Result<MonitorCursor, _> =
                serde_json::from_value(serde_json::json!({ "schedules": bad }));
            assert!(r.is_err(), "{bad}");
        }
    }

    fn failure(pipeline_id: u64, finished_at: DateTime<Utc>) -> FailureEvent {
        FailureEvent {
            project_name: "p".into(),
            blueprint_id: 1,
            pipeline_id,
            status: "TASK_FAILED".into(),
            finished_at,
            began_at: None,
            message: "m".into(),
            error_name: "e".into(),
            cause: FailureCause::Unknown,
        }
    }

    #[test]
    fn recent_failures_are_merged_pruned_and_capped() {
        let now = Utc.with_ymd_and_hms(2026, 11, 28, 12, 0, 0).unwrap();
        let day = chrono::Duration::days(1);
        let mut state = ProjectState {
            project_name: "p".into(),
            ..Default::default()
        };
        let window = day * 7;
        let old = failure(1, now - window - chrono::Duration::milliseconds(1));
        let a = failure(2, now - day * 3);
        let b = failure(3, now - day);
        state.remember_failures(&[b.clone(), old, a.clone()], now, window);
        state.remember_failures(std::slice::from_ref(&b), now, window);
        assert_eq!(state.recent_failures, vec![a.key(), b.key()]);
        // A failure exactly at the window's start is still inside it.
        let edge = failure(4, now - window);
        state.remember_failures(std::slice::from_ref(&edge), now, window);
        assert_eq!(state.recent_failures, vec![edge.key(), a.key(), b.key()]);
        // A day later the edge failure has aged out; `a` (3 days back) stays.
        assert_eq!(state.expire_recent_failures(now + day - window), 1);
        assert_eq!(state.recent_failures, vec![a.key(), b.key()]);
        assert_eq!(state.expire_recent_failures(now + day - window), 0);

        let since = state.recent_failures_since(now - day * 2).unwrap();
        assert_eq!(since.len(), 1);
        assert_eq!(
            (
                since[0].pipeline_id,
                since[0].finished_at,
                since[0].project_name.as_str()
            ),
            (3, b.finished_at, "p")
        );

        let many: Vec<FailureEvent> = (0..RECENT_FAILURES_MAX as u64 + 10)
            .map(|i| failure(100 + i, now - chrono::Duration::seconds(30 * i as i64)))
            .collect();
        state.remember_failures(&many, now, window);
        assert_eq!(state.recent_failures.len(), RECENT_FAILURES_MAX);
        assert_eq!(state.recent_failures.last(), Some(&many[0].key()));
        assert!(!state.recent_failures.contains(&b.key()));
    }

    #[test]
    fn events_and_states_written_before_causes_read_without_one() {
        let event: FailureEvent = serde_json::from_value(serde_json::json!({
            "projectName": "p", "blueprintId": 1, "pipelineId": 2, "status": "TASK_FAILED",
            "finishedAt": "2026-11-28T10:00:00Z", "beganAt": null, "message": "m",
            "errorName": "e",
        }))
        .unwrap();
        assert_eq!(event.cause, FailureCause::Unknown);
        let state: ProjectState = serde_json::from_value(serde_json::json!({
            "projectName": "p", "blueprintId": 1, "lastFailureAt": "2026-11-28T10:00:00Z",
            "consecutiveFailures": 1, "stuck": false,
        }))
        .unwrap();
        assert_eq!(state.last_failure_reason, None);
        // And a state without a reason is written as before, byte for byte.
        assert!(!serde_json::to_string(&state)
            .unwrap()
            .contains("lastFailureReason"));
    }

    #[test]
    fn a_malformed_entry_is_an_error() {
        let state = ProjectState {
            project_name: "p".into(),
            recent_failures: vec!["2026-11-28T10:00:00.000Z#x".into()],
            ..Default::default()
        };
        assert!(state
            .recent_failures_since(DateTime::<Utc>::MIN_UTC)
            .is_err());
        // The metrics page's read skips it and keeps the good ones.
        let state = ProjectState {
            recent_failures: vec![
                "2026-11-28T10:00:00.000Z#x".into(),
                "2026-11-28T11:00:00.000Z#7".into(),
                "not-a-key".into(),
            ],
            ..state
        };
        let (ok, skipped) = state.recent_failures_since_lenient(DateTime::<Utc>::MIN_UTC);
        assert_eq!(skipped, 2);
        assert_eq!(ok.len(), 1);
        assert_eq!(ok[0].pipeline_id, 7);
    }
}
