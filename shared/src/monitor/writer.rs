//! Where a run's changes go. A real run writes them to the table and asks DevLake for re-runs;
//! a dry run (`"dryRun": true`) reads DevLake and the table exactly as a real one, works out
//! every change it would make, and writes nothing. The phases write through [`Writer`], so the
//! difference between the two is in this file; the one exception is `STUCK_ACTION`
//! (`remedy.rs`), whose cancels and re-runs are sent only when the writer is real.

use std::collections::{BTreeMap, HashSet};

use chrono::{DateTime, Utc};
use futures::StreamExt;

use crate::deadline::Deadline;
use crate::devlake::models::Pipeline;
use crate::job::Stop;
use crate::store::{FailureEvent, MonitorCursor, StoreError};

use super::commit::{commit_facts, CommitContext, CommitResult, Committed, ProjectJob, Recorder};
use super::expiry::{self, Expiry};
use super::project::{failure_event, fold};
use super::rerun::Candidate;
use super::resolve::Sweep;
use super::run::Monitor;
use super::summary::RunIssue;

/// Projects written at once.
const COMMIT_CONCURRENCY: usize = 8;

/// A real run, or a dry one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Writer {
    Real,
    Dry,
}

impl Writer {
    pub fn of(dry_run: bool) -> Self {
        if dry_run {
            Writer::Dry
        } else {
            Writer::Real
        }
    }

    /// For what the run reports (the summary, log lines), never for what it does.
    pub fn is_dry(self) -> bool {
        self == Writer::Dry
    }

    /// Phase 3: the blueprint → project names this run learned, cached for the next runs.
    pub async fn cache_blueprint_names(
        self,
        m: &Monitor<'_>,
        fetched: &[(u64, String)],
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        match self {
            Writer::Real if !fetched.is_empty() => {
                m.store.save_blueprint_projects(fetched, now).await
            }
            Writer::Real | Writer::Dry => Ok(()),
        }
    }

    /// Phase 4: each project's events and state, committed (several projects at once), or
    /// folded against the failures the table already holds (which a real commit would find
    /// recorded). Results come back in no particular order.
    pub async fn commit_projects<'p>(
        self,
        m: &Monitor<'_>,
        jobs: Vec<ProjectJob<'p>>,
        now: DateTime<Utc>,
    ) -> Result<Vec<(&'p String, &'p [&'p Pipeline], CommitResult)>, StoreError> {
        match self {
            Writer::Real => {
                let cx = CommitContext {
                    store: m.store,
                    settings: m.settings,
                    recorder: Recorder::Monitor,
                    now,
                };
                Ok(
                    futures::stream::iter(jobs.into_iter().map(|job| async move {
                        let result = commit_facts(
                            cx,
                            job.name,
                            job.facts,
                            Some(job.flags),
                            job.stored,
                            &|_| {},
                        )
                        .await;
                        (job.name, job.facts, result)
                    }))
                    .buffer_unordered(COMMIT_CONCURRENCY)
                    .collect()
                    .await,
                )
            }
            Writer::Dry => {
                let counted = |s: &str| m.settings.counts_as_failure(s);
                let failures = |job: &ProjectJob<'p>| -> Vec<FailureEvent> {
                    job.facts
                        .iter()
                        .filter(|p| counted(&p.status))
                        .filter_map(|p| p.finished_at.map(|f| failure_event(job.name, p, f)))
                        .collect()
                };
                let candidates: Vec<FailureEvent> = jobs.iter().flat_map(failures).collect();
                let recorded_before: HashSet<String> = if candidates.is_empty() {
                    HashSet::new()
                } else {
                    m.store.recorded_failures(&candidates).await?
                };
                Ok(jobs
                    .into_iter()
                    .map(|job| {
                        let folded = fold(
                            &job.stored.state,
                            job.name,
                            job.facts,
                            &recorded_before,
                            job.flags,
                            counted,
                            true,
                        );
                        let known = failures(&job)
                            .iter()
                            .filter(|e| recorded_before.contains(&e.key()))
                            .count() as u64;
                        let committed = Committed {
                            written: folded.events,
                            duplicates: known,
                            adopted: folded.adopted,
                            state: folded.state,
                        };
                        (job.name, job.facts, Ok(committed))
                    })
                    .collect())
            }
        }
    }

    /// Phase 5: the re-runs, requested (claimed, sent, settled; then the claims earlier runs left
    /// pending), or only listed.
    pub async fn request_reruns(
        self,
        m: &Monitor<'_>,
        candidates: Vec<Candidate<'_>>,
        unfinished: &BTreeMap<u64, Pipeline>,
        now: DateTime<Utc>,
        deadline: Deadline,
        errors: &mut Vec<RunIssue>,
    ) -> Result<Vec<u64>, Stop> {
        match self {
            Writer::Real => {
                m.request_reruns(candidates, unfinished, now, deadline, errors)
                    .await
            }
            Writer::Dry => Ok(candidates.iter().map(|c| c.pipeline.id).collect()),
        }
    }

    /// Phase 6, on the day's first run: the projects DevLake no longer has leave the table
    /// (their names are returned); a dry run removes none.
    pub async fn remove_gone_projects(
        self,
        m: &Monitor<'_>,
        sweep: &Sweep,
        now: DateTime<Utc>,
        deadline: Deadline,
    ) -> Result<Vec<String>, super::MonitorError> {
        match self {
            Writer::Real => m.remove_gone_projects(sweep, now, deadline).await,
            Writer::Dry => Ok(Vec::new()),
        }
    }

    /// Phase 6: the cursor, saved unless an overlapping run saved first (then its cursor,
    /// equally complete, is kept). `false`: not saved (a dry run never saves).
    pub async fn save_cursor(
        self,
        m: &Monitor<'_>,
        cursor: &MonitorCursor,
        expected_revision: Option<u64>,
    ) -> Result<bool, StoreError> {
        match self {
            Writer::Real => {
                let saved = m.store.save_cursor(cursor, expected_revision).await?;
                if !saved {
                    // Both cursors are complete as of their own run; keeping the other is safe.
                    tracing::info!("a concurrent run saved the cursor first; keeping its cursor");
                }
                Ok(saved)
            }
            Writer::Dry => Ok(false),
        }
    }

    /// Phase 7, on the day's first run: the recent-failure lists pruned of failures older than
    /// the failure window; `None` for a dry run, which expires nothing.
    pub async fn expire(
        self,
        m: &Monitor<'_>,
        now: DateTime<Utc>,
        deadline: Deadline,
    ) -> Option<Result<Expiry, StoreError>> {
        match self {
            Writer::Real => Some(
                expiry::expire_recent_failures(
                    m.store,
                    now,
                    m.settings.failure_window,
                    m.settings.retention,
                    deadline,
                )
                .await,
            ),
            Writer::Dry => None,
        }
    }
}
