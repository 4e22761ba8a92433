//! An in-memory store with the same conditional semantics as the DynamoDB adapter, so scenarios
//! of domain logic (unit tests, most monitor and events integration tests, the soak test) run
//! without DynamoDB Local. `tests/tests/store_conformance.rs` runs one contract against both
//! stores; tests whose point is the adapter itself (requests on the wire, item and transaction
//! limits, TTL attributes, an unreachable or missing table) use DynamoDB Local.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use chrono::{DateTime, NaiveDate, Utc};

use super::*;

#[derive(Debug, Default)]
pub(super) struct Tables {
    cursor: Option<MonitorCursor>,
    /// Key → (event, expiresAt).
    failures: BTreeMap<String, (FailureEvent, i64)>,
    projects: BTreeMap<String, (ProjectState, u64)>,
    runs: HashMap<Job, RunRecord>,
    blueprints: BTreeMap<u64, String>,
    blueprints_at: BTreeMap<u64, DateTime<Utc>>,
    reruns: BTreeMap<u64, RerunEntry>,
    pub(super) events: Option<EventsReceived>,
    /// The last publish number taken, and the published generation with its encoded state.
    snapshot_taken: u64,
    snapshot: Option<(PublishedVersion, Vec<u8>)>,
    connections: Option<ConnectionHealthRecord>,
}

/// Mirrors the adapter's `RERUN` item.
#[derive(Debug, Clone)]
struct RerunEntry {
    /// Failures of the pipeline claimed so far.
    count: u32,
    /// Key of the last claimed failure.
    key: String,
    state: ClaimState,
    expires_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ClaimState {
    Pending,
    Done,
    Released,
}

impl RerunEntry {
    fn can_retake(&self, now: DateTime<Utc>) -> bool {
        self.state == ClaimState::Released
            || (self.state == ClaimState::Pending && self.expires_at < now)
    }
}

/// See the module documentation.
#[derive(Debug, Default)]
pub struct MemoryStore {
    tables: Mutex<Tables>,
    unavailable: AtomicBool,
    /// Operations asked so far, by the DynamoDB operation the adapter would send for each (at
    /// least one request each).
    calls: Mutex<BTreeMap<String, u64>>,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// While set, every operation fails with [`StoreError::Unavailable`].
    pub fn set_unavailable(&self, unavailable: bool) {
        self.unavailable.store(unavailable, Ordering::SeqCst);
    }

    pub fn cursor(&self) -> Option<MonitorCursor> {
        self.lock().cursor.clone()
    }

    /// Every stored failure event, ordered by key.
    pub fn failures(&self) -> Vec<FailureEvent> {
        self.lock()
            .failures
            .values()
            .map(|(e, _)| e.clone())
            .collect()
    }

    /// The `expiresAt` stored with the event of `key`.
    pub fn failure_expiry(&self, key: &str) -> Option<i64> {
        self.lock().failures.get(key).map(|(_, exp)| *exp)
    }

    pub fn project(&self, name: &str) -> Option<ProjectState> {
        self.lock().projects.get(name).map(|(s, _)| s.clone())
    }

    pub fn projects(&self) -> Vec<ProjectState> {
        self.lock()
            .projects
            .values()
            .map(|(s, _)| s.clone())
            .collect()
    }

    pub fn run(&self, job: Job) -> Option<RunRecord> {
        self.lock().runs.get(&job).cloned()
    }

    /// The stored connection health (`CONNECTION`/`HEALTH`).
    pub fn connection_health(&self) -> Option<ConnectionHealthRecord> {
        self.lock().connections.clone()
    }

    pub fn blueprints(&self) -> BTreeMap<u64, String> {
        self.lock().blueprints.clone()
    }

    /// Re-runs taken for `pipeline_id`.
    pub fn reruns(&self, pipeline_id: u64) -> u32 {
        self.lock()
            .reruns
            .get(&pipeline_id)
            .map(|e| e.count)
            .unwrap_or(0)
    }

    /// Operations asked of the store so far, failed ones included: a test can show a code path
    /// never touched the store.
    pub fn calls(&self) -> u64 {
        self.calls_by_operation().values().sum()
    }

    /// [`calls`](Self::calls) per DynamoDB operation the adapter would send (`Query`,
    /// `TransactWriteItems`, …): a test can say "this run committed nothing" the same way on
    /// both stores.
    pub fn calls_by_operation(&self) -> BTreeMap<String, u64> {
        self.calls.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Whether nothing was ever written: no cursor, failure, project, run record, blueprint,
    /// re-run claim, notification mark, snapshot or connection health (what an empty table is
    /// to the adapter).
    pub fn is_empty(&self) -> bool {
        let t = self.lock();
        t.cursor.is_none()
            && t.failures.is_empty()
            && t.projects.is_empty()
            && t.runs.is_empty()
            && t.blueprints.is_empty()
            && t.reruns.is_empty()
            && t.events.is_none()
            && t.snapshot_taken == 0
            && t.snapshot.is_none()
            && t.connections.is_none()
    }

    /// The latest notification mark the events function wrote.
    pub fn events_received(&self) -> Option<EventsReceived> {
        self.lock().events.clone()
    }

    pub(super) fn lock(&self) -> std::sync::MutexGuard<'_, Tables> {
        self.tables.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn check(&self, operation: &str) -> Result<(), StoreError> {
        *self
            .calls
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(operation.to_string())
            .or_default() += 1;
        if self.unavailable.load(Ordering::SeqCst) {
            Err(StoreError::Unavailable {
                source: None,
                operation: operation.to_string(),
                message: "memory store set unavailable".to_string(),
            })
        } else {
            Ok(())
        }
    }
}

#[async_trait::async_trait]
impl RunLog for MemoryStore {
    async fn record_run(&self, run: &RunRecord) -> Result<(), StoreError> {
        self.check("PutItem")?;
        self.lock().runs.insert(run.job, run.clone());
        Ok(())
    }

    async fn record_connection_health(
        &self,
        record: &ConnectionHealthRecord,
    ) -> Result<(), StoreError> {
        self.check("PutItem")?;
        self.lock().connections = Some(record.clone());
        Ok(())
    }
}

/// The same conditional rule as the DynamoDB adapter: a generation replaces only an older one.
#[async_trait::async_trait]
impl SnapshotStore for MemoryStore {
    async fn take_publish_number(&self) -> Result<u64, StoreError> {
        self.check("UpdateItem")?;
        let mut tables = self.lock();
        tables.snapshot_taken += 1;
        Ok(tables.snapshot_taken)
    }

    async fn snapshot_head(&self) -> Result<SnapshotHead, StoreError> {
        self.check("GetItem")?;
        let tables = self.lock();
        Ok(SnapshotHead {
            taken: tables.snapshot_taken,
            published: tables.snapshot.as_ref().map(|(v, _)| v.clone()),
        })
    }

    async fn snapshot_input(&self) -> Result<PublishedState, StoreError> {
        self.check("Query")?;
        Ok(PublishedState {
            projects: self.projects(),
            decode_errors: 0,
        })
    }

    async fn put_snapshot(&self, put: SnapshotPut<'_>) -> Result<bool, StoreError> {
        self.check("UpdateItem")?;
        let mut tables = self.lock();
        if tables
            .snapshot
            .as_ref()
            .is_some_and(|(v, _)| v.version >= put.version)
        {
            return Ok(false);
        }
        let version = PublishedVersion {
            version: put.version,
            digest: put.digest.to_string(),
            bytes: put.blob.len() as u64,
            published_at: Some(put.now),
        };
        tables.snapshot = Some((version, put.blob.to_vec()));
        Ok(true)
    }
}

impl MemoryStore {
    fn live_records(&self) -> LiveRecords {
        let tables = self.lock();
        LiveRecords {
            automation: tables.runs.get(&Job::Automation).cloned(),
            monitor: tables.runs.get(&Job::Monitor).cloned(),
            events: tables.events.clone(),
            connections: tables
                .connections
                .as_ref()
                .map(|c| c.connections.clone())
                .unwrap_or_default(),
            decode_errors: 0,
        }
    }
}

/// What the DynamoDB adapter's scrape reads, from memory: in-process tests and benchmarks serve
/// the metrics page from the same store the monitor and the events function write, published
/// snapshot included.
#[async_trait::async_trait]
impl MetricsSource for MemoryStore {
    async fn snapshot(&self, failures_since: DateTime<Utc>) -> Result<MetricsSnapshot, StoreError> {
        self.check("Query")?;
        Ok(MetricsSnapshot::from_parts(
            self.projects(),
            failures_since,
            self.live_records(),
        ))
    }

    async fn scrape(
        &self,
        failures_since: DateTime<Utc>,
        known: Option<u64>,
    ) -> Result<ScrapeRead, StoreError> {
        self.check("BatchGetItem")?;
        let published = self.lock().snapshot.clone();
        let Some((version, blob)) = published else {
            return Ok(ScrapeRead::Direct(self.snapshot(failures_since).await?));
        };
        Ok(ScrapeRead::Published(PublishedRead {
            version: version.version,
            blob: (known != Some(version.version)).then_some(blob),
            live: self.live_records(),
        }))
    }
}

#[async_trait::async_trait]
impl MonitorStore for MemoryStore {
    async fn load_cursor(&self) -> Result<Option<MonitorCursor>, StoreError> {
        self.check("GetItem")?;
        Ok(self.lock().cursor.clone())
    }

    async fn save_cursor(
        &self,
        cursor: &MonitorCursor,
        loaded_revision: Option<u64>,
    ) -> Result<bool, StoreError> {
        self.check("PutItem")?;
        let mut tables = self.lock();
        if tables.cursor.as_ref().map(|c| c.revision) != loaded_revision {
            return Ok(false);
        }
        let mut saved = cursor.clone();
        saved.revision = loaded_revision.map_or(1, |r| r + 1);
        tables.cursor = Some(saved);
        Ok(true)
    }

    async fn blueprint_projects(
        &self,
        ids: &[u64],
    ) -> Result<HashMap<u64, CachedBlueprint>, StoreError> {
        self.check("BatchGetItem")?;
        let tables = self.lock();
        Ok(ids
            .iter()
            .filter_map(|id| {
                tables.blueprints.get(id).map(|n| {
                    (
                        *id,
                        CachedBlueprint {
                            project_name: n.clone(),
                            resolved_at: tables.blueprints_at.get(id).copied().unwrap_or_default(),
                        },
                    )
                })
            })
            .collect())
    }

    async fn delete_project(
        &self,
        name: &str,
        expected_revision: Option<u64>,
    ) -> Result<bool, StoreError> {
        self.check("DeleteItem")?;
        let mut tables = self.lock();
        match tables.projects.get(name) {
            Some((_, rev)) if Some(*rev) == expected_revision => {
                tables.projects.remove(name);
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn save_blueprint_projects(
        &self,
        entries: &[(u64, String)],
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.check("BatchWriteItem")?;
        self.lock()
            .blueprints_at
            .extend(entries.iter().map(|(id, _)| (*id, now)));
        self.lock().blueprints.extend(entries.iter().cloned());
        Ok(())
    }

    async fn project_states(
        &self,
        names: &[String],
    ) -> Result<HashMap<String, StoredProject>, StoreError> {
        self.check("BatchGetItem")?;
        let tables = self.lock();
        Ok(names
            .iter()
            .filter_map(|n| {
                tables.projects.get(n).map(|(s, rev)| {
                    (
                        n.clone(),
                        StoredProject {
                            state: s.clone(),
                            revision: Some(*rev),
                        },
                    )
                })
            })
            .collect())
    }

    async fn all_projects(&self) -> Result<Vec<StoredProject>, StoreError> {
        self.check("Query")?;
        let tables = self.lock();
        // Keyed by name: already in name order.
        Ok(tables
            .projects
            .values()
            .map(|(state, revision)| StoredProject {
                state: state.clone(),
                revision: Some(*revision),
            })
            .collect())
    }

    async fn recorded_failures(
        &self,
        events: &[FailureEvent],
    ) -> Result<HashSet<String>, StoreError> {
        self.check("BatchGetItem")?;
        let tables = self.lock();
        Ok(events
            .iter()
            .map(FailureEvent::key)
            .filter(|k| tables.failures.contains_key(k))
            .collect())
    }

    async fn failures_on(&self, day: NaiveDate) -> Result<Vec<FailureEvent>, StoreError> {
        self.check("Query")?;
        // Keys start with the RFC 3339 `finishedAt`: sorted, they are oldest first.
        Ok(self
            .lock()
            .failures
            .values()
            .filter(|(e, _)| e.finished_at.date_naive() == day)
            .map(|(e, _)| e.clone())
            .collect())
    }

    async fn commit_project(&self, commit: ProjectCommit<'_>) -> Result<CommitOutcome, StoreError> {
        self.check("TransactWriteItems")?;
        let mut tables = self.lock();
        let dup: Vec<String> = commit
            .events
            .iter()
            .map(FailureEvent::key)
            .filter(|k| tables.failures.contains_key(k))
            .collect();
        if !dup.is_empty() {
            return Ok(CommitOutcome::AlreadyRecorded(dup));
        }
        let name = &commit.state.project_name;
        let current = tables.projects.get(name).map(|(_, rev)| *rev);
        if current != commit.expected_revision {
            return Ok(CommitOutcome::Conflict);
        }
        for event in commit.events {
            tables.failures.insert(
                event.key(),
                (event.clone(), failure_expires_at(event, commit.retention)),
            );
        }
        let previous_total = tables
            .projects
            .get(name)
            .map(|(s, _)| s.failures_total)
            .unwrap_or(0);
        let mut state = commit.state.clone();
        // Mirrors the adapter's `ADD failuresTotal :n` and its merge of the recent failures.
        state.failures_total = previous_total + commit.events.len() as u64;
        state.add_recent_failures(commit.events);
        tables
            .projects
            .insert(name.clone(), (state, current.map_or(1, |r| r + 1)));
        Ok(CommitOutcome::Committed)
    }

    async fn claim_rerun(
        &self,
        pipeline_id: u64,
        failure_key: &str,
        max: u32,
        now: DateTime<Utc>,
        lease: chrono::Duration,
    ) -> Result<RerunClaim, StoreError> {
        self.check("UpdateItem")?;
        if max == 0 {
            return Ok(RerunClaim::Exhausted);
        }
        let mut tables = self.lock();
        let entry = tables.reruns.get_mut(&pipeline_id);
        match entry {
            Some(e) if e.key == failure_key => {
                if e.can_retake(now) {
                    e.state = ClaimState::Pending;
                    e.expires_at = now + lease;
                    Ok(RerunClaim::Granted { attempt: e.count })
                } else if e.state == ClaimState::Done {
                    Ok(RerunClaim::AlreadyDone)
                } else {
                    Ok(RerunClaim::InProgress)
                }
            }
            Some(e) if e.count >= max => Ok(RerunClaim::Exhausted),
            other => {
                let attempt = other.map_or(0, |e| e.count) + 1;
                tables.reruns.insert(
                    pipeline_id,
                    RerunEntry {
                        count: attempt,
                        key: failure_key.to_string(),
                        state: ClaimState::Pending,
                        expires_at: now + lease,
                    },
                );
                Ok(RerunClaim::Granted { attempt })
            }
        }
    }

    async fn settle_rerun(
        &self,
        pipeline_id: u64,
        failure_key: &str,
        settlement: RerunSettlement,
    ) -> Result<bool, StoreError> {
        self.check("UpdateItem")?;
        let mut tables = self.lock();
        match tables.reruns.get_mut(&pipeline_id) {
            Some(e) if e.key == failure_key && e.state != ClaimState::Done => {
                e.state = match settlement {
                    RerunSettlement::Done => ClaimState::Done,
                    RerunSettlement::Released => ClaimState::Released,
                };
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn pending_reruns(&self, now: DateTime<Utc>) -> Result<Vec<PendingRerun>, StoreError> {
        self.check("Query")?;
        Ok(self
            .lock()
            .reruns
            .iter()
            .filter(|(_, e)| e.can_retake(now))
            .map(|(id, e)| PendingRerun {
                pipeline_id: *id,
                failure_key: e.key.clone(),
            })
            .collect())
    }
}

#[cfg(test)]
mod tests;
