//! Phase 4 of a run, *commit*, and the one path by which failures are recorded, whether the
//! monitor found them by polling or the events function was told by DevLake
//! ([`commit_facts`]).
//!
//! Each failure event is written only if absent, in the same transaction as the project's
//! counter and state, guarded by the project's revision ([`MonitorStore::commit_project`]), per
//! [`MAX_EVENTS_PER_COMMIT`] events. A failure found already stored (by the other path, an
//! overlapping run, or a repeated notification) is skipped on the next attempt, with the state
//! as the winner left it: it is one record and counted once, whoever comes first and however
//! often it comes. A monitor run commits every project it touches this way (a dry run works out
//! the same events and state against what is already stored, writing nothing: see [`Writer`]);
//! the cursor's open failures, watch list and flags follow what was committed.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use chrono::{DateTime, Utc};

use crate::devlake::models::Pipeline;
use crate::job::Stop;
use crate::store::{
    CommitOutcome, FailureEvent, MonitorStore, OpenFailure, ProjectCommit, ProjectState,
    StoreError, StoredProject, MAX_EVENTS_PER_COMMIT,
};

use super::config::MonitorSettings;
use super::flags::{FlagSets, Flags};
use super::project::fold;
use super::run::Monitor;
use super::summary::RunIssue;
use super::writer::Writer;

/// Re-reads of one project before its commit is given up (only under heavy overlap).
const COMMIT_ATTEMPTS: usize = 8;
/// How one project's commit ended, or why it could not be written.
pub(super) type CommitResult = Result<Committed, StoreError>;

/// Who writes, which decides what happens to [`ProjectState::pushed_failures`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Recorder {
    /// The monitor takes over the failures the events function recorded before it.
    Monitor,
    /// The events function marks the failures it records for the monitor.
    Push,
}

/// How one project's commit ended.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Committed {
    /// Failure events written by this commit.
    pub written: Vec<FailureEvent>,
    /// Failures found already stored.
    pub duplicates: u64,
    /// Keys of failures the events function recorded that this (monitor) commit took over.
    pub adopted: Vec<String>,
    /// The project's state as written (or as found, when nothing needed writing).
    pub state: ProjectState,
}

/// What a commit needs besides the project's facts.
#[derive(Clone, Copy)]
pub(crate) struct CommitContext<'a> {
    pub store: &'a dyn MonitorStore,
    pub settings: &'a MonitorSettings,
    pub recorder: Recorder,
    pub now: DateTime<Utc>,
}

/// Writes `facts` (finished pipelines of `name`, sorted by end; `finished_at` holds the end)
/// into the project, starting from `stored`, retrying on races. `flags`: the project's flags as
/// of now (a monitor run decides them), or `None` to keep the stored ones. `touch` changes the state further on each
/// attempt (it must be idempotent); the state is only written when something changed.
pub(crate) async fn commit_facts(
    cx: CommitContext<'_>,
    name: &str,
    facts: &[&Pipeline],
    flags: Option<Flags>,
    mut stored: StoredProject,
    touch: &(dyn Fn(&mut ProjectState) + Sync),
) -> Result<Committed, StoreError> {
    let settings = cx.settings;
    let counted = |s: &str| settings.counts_as_failure(s);
    let mut recorded: HashSet<String> = HashSet::new();
    let mut written = Vec::new();
    let mut adopted = Vec::new();
    let mut duplicates = 0u64;
    for chunk in transaction_chunks(facts, MAX_EVENTS_PER_COMMIT, counted) {
        let mut attempts = 0;
        loop {
            let flags_now = flags.unwrap_or(Flags {
                stuck: stored.state.stuck,
                schedule_missed: stored.state.schedule_missed,
                stuck_cancel_failed: stored.state.stuck_cancel_failed,
            });
            let mut folded = fold(
                &stored.state,
                name,
                chunk,
                &recorded,
                flags_now,
                counted,
                cx.recorder == Recorder::Monitor,
            );
            if cx.recorder == Recorder::Push {
                folded.state.note_pushed_failures(&folded.events);
            }
            touch(&mut folded.state);
            if folded.events.is_empty() && folded.state == stored.state {
                break;
            }
            // In the same conditional write as the events: the metrics page reads its
            // failure window from this list, so it must never miss a committed event.
            folded
                .state
                .remember_failures(&folded.events, cx.now, settings.failure_window);
            let commit = ProjectCommit {
                state: &folded.state,
                expected_revision: stored.revision,
                events: &folded.events,
                retention: settings.retention,
            };
            match cx.store.commit_project(commit).await? {
                CommitOutcome::Committed => {
                    written.extend(folded.events);
                    adopted.extend(folded.adopted);
                    stored = StoredProject {
                        state: folded.state,
                        revision: Some(stored.revision.map_or(1, |r| r + 1)),
                    };
                    break;
                }
                CommitOutcome::AlreadyRecorded(keys) => {
                    tracing::info!(project = %name, events = keys.len(), "failures already recorded");
                    duplicates += keys.len() as u64;
                    recorded.extend(keys);
                }
                CommitOutcome::Conflict => {
                    tracing::debug!(project = %name, "project changed concurrently; re-reading");
                }
            }
            attempts += 1;
            if attempts >= COMMIT_ATTEMPTS {
                return Err(StoreError::Failed {
                    source: None,
                    operation: "TransactWriteItems".into(),
                    message: format!(
                        "project {name:?} kept changing concurrently ({attempts} attempts)"
                    ),
                });
            }
            stored = cx
                .store
                .project_states(&[name.to_string()])
                .await?
                .remove(name)
                .unwrap_or_default();
        }
    }
    Ok(Committed {
        written,
        duplicates,
        adopted,
        state: stored.state,
    })
}

/// One project to write: its new facts, its flags after this run, and its state as stored.
pub(super) struct ProjectJob<'p> {
    pub name: &'p String,
    pub facts: &'p [&'p Pipeline],
    pub flags: Flags,
    pub stored: StoredProject,
}

/// What the commit phase did.
#[derive(Debug, Default)]
pub(super) struct ProjectsCommitted {
    /// Failure events written (a dry run: that would be), project by project.
    pub new_events: Vec<FailureEvent>,
    /// Failures found already stored (a duplicate delivery or an overlapping run was first).
    pub already_recorded: u64,
    /// Failures the events function recorded before this run met them: already counted, but
    /// this run's to re-run as if it had recorded them itself.
    pub adopted: Vec<String>,
    /// The flags as the table now has them: this run's, except for a project that could not
    /// be written, which keeps its stored flags.
    pub flags: FlagSets,
}

impl Monitor<'_> {
    /// Writes every touched project (several at once; each project's transactions in order) and
    /// brings the cursor's open failures and watch list along: a project that cannot be written
    /// is an item error, and its facts stay watched for the next run. A retryable store error
    /// stops the run (the cursor is not saved).
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn commit_projects(
        &self,
        writer: Writer,
        by_project: &BTreeMap<String, Vec<&Pipeline>>,
        touched: &BTreeSet<String>,
        flags_before: &FlagSets,
        flags_now: &FlagSets,
        open_failures: &mut Vec<OpenFailure>,
        watch: &mut BTreeSet<u64>,
        now: DateTime<Utc>,
        errors: &mut Vec<RunIssue>,
    ) -> Result<ProjectsCommitted, Stop> {
        let touched_list: Vec<String> = touched.iter().cloned().collect();
        let mut states = if touched_list.is_empty() {
            HashMap::new()
        } else {
            self.store.project_states(&touched_list).await?
        };
        let no_facts: Vec<&Pipeline> = Vec::new();
        let jobs: Vec<ProjectJob<'_>> = touched
            .iter()
            .map(|name| ProjectJob {
                name,
                facts: by_project.get(name).unwrap_or(&no_facts).as_slice(),
                flags: flags_now.of(name),
                stored: states.remove(name).unwrap_or_default(),
            })
            .collect();
        let mut results = writer.commit_projects(self, jobs, now).await?;
        results.sort_by(|a, b| a.0.cmp(b.0));

        let counted = |s: &str| self.settings.counts_as_failure(s);
        let mut done = ProjectsCommitted {
            flags: flags_now.clone(),
            ..ProjectsCommitted::default()
        };
        for (name, facts, result) in results {
            match result {
                Ok(committed) => {
                    done.already_recorded += committed.duplicates;
                    done.new_events.extend(committed.written);
                    done.adopted.extend(committed.adopted);
                    track_open_failure(open_failures, name, facts, &committed.state, counted);
                }
                Err(e) if e.is_retryable() => return Err(e.into()),
                Err(e) => {
                    tracing::error!(project = %name, error = %e, "project not updated; its pipelines are looked at again next run");
                    errors.push(RunIssue {
                        project: Some(name.clone()),
                        pipeline_id: None,
                        blueprint_id: None,
                        message: e.to_string(),
                    });
                    watch.extend(facts.iter().map(|p| p.id));
                    // Keep the flags as the stored state has them.
                    done.flags.restore(name, flags_before);
                }
            }
        }
        for event in &done.new_events {
            tracing::info!(
                project = %event.project_name,
                pipeline_id = event.pipeline_id,
                blueprint_id = event.blueprint_id,
                status = %event.status,
                finished_at = %event.finished_at,
                cause = %event.cause,
                dry_run = writer.is_dry(),
                "failure recorded"
            );
        }
        Ok(done)
    }
}

/// `facts` cut so that no piece holds more than `max` counted failures (a transaction takes at
/// most [`MAX_EVENTS_PER_COMMIT`] events; a first run can find many for one project). Order is
/// kept; a piece ends just before the failure that would overflow it.
pub(super) fn transaction_chunks<'a, 'p>(
    facts: &'a [&'p Pipeline],
    max: usize,
    counted: impl Fn(&str) -> bool,
) -> Vec<&'a [&'p Pipeline]> {
    let mut chunks: Vec<&[&Pipeline]> = Vec::new();
    let mut start = 0;
    let mut failures = 0;
    for (i, p) in facts.iter().enumerate() {
        if counted(&p.status) {
            if failures == max {
                chunks.push(&facts[start..i]);
                start = i;
                failures = 0;
            }
            failures += 1;
        }
    }
    chunks.push(&facts[start..]);
    chunks
}

/// Keeps `open` holding the project's latest failure while its latest finished pipeline is
/// one: when this run's facts moved the project's latest, its entry is replaced (or dropped on
/// a success).
pub(super) fn track_open_failure(
    open: &mut Vec<OpenFailure>,
    project: &str,
    facts: &[&Pipeline],
    state: &ProjectState,
    counted: impl Fn(&str) -> bool,
) {
    let Some(latest) = facts
        .iter()
        .filter(|p| p.finished_at.is_some() && p.finished_at == state.last_finished_at)
        .max_by_key(|p| p.id)
    else {
        return;
    };
    open.retain(|o| o.project != project && o.pipeline_id != latest.id);
    if counted(&latest.status) {
        if let Some(ended_at) = latest.finished_at {
            open.push(OpenFailure {
                pipeline_id: latest.id,
                ended_at,
                project: project.to_string(),
            });
        }
    }
}

#[cfg(test)]
mod tests;
