//! Phase 4 of a run, *commit*: each project the run touches gets its new failure events and its
//! new state in one conditional transaction (per [`MAX_EVENTS_PER_COMMIT`] events), guarded by
//! the project's revision and retried on races; a dry run works out the same events and state
//! against what is already stored, writing nothing (see [`Writer`]). The cursor's open failures,
//! watch list and flags follow what was committed.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use chrono::{DateTime, Utc};

use crate::devlake::models::Pipeline;
use crate::job::Stop;
use crate::store::{
    CommitOutcome, FailureEvent, OpenFailure, ProjectCommit, ProjectState, StoreError,
    StoredProject, MAX_EVENTS_PER_COMMIT,
};

use super::flags::{FlagSets, Flags};
use super::project::fold;
use super::run::Monitor;
use super::summary::RunIssue;
use super::writer::Writer;

/// Re-reads of one project before its commit is given up for this run (only under heavy overlap).
const COMMIT_ATTEMPTS: usize = 8;
/// Events written for one project, failures found already recorded and the state it was left
/// in, or why not.
pub(super) type CommitResult = Result<(Vec<FailureEvent>, u64, ProjectState), StoreError>;

/// One project to write: its new facts, its flags after this run, and its state as stored.
pub(super) struct ProjectJob<'p> {
    pub name: &'p String,
    pub facts: &'p [&'p Pipeline],
    pub flags: Flags,
    pub stored: StoredProject,
}

/// What the commit phase did.
#[derive(Debug, Default)]
pub(super) struct Committed {
    /// Failure events written (a dry run: that would be), project by project.
    pub new_events: Vec<FailureEvent>,
    /// Failures found already stored (a duplicate delivery or an overlapping run was first).
    pub already_recorded: u64,
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
    ) -> Result<Committed, Stop> {
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
        let mut committed = Committed {
            flags: flags_now.clone(),
            ..Committed::default()
        };
        for (name, facts, result) in results {
            match result {
                Ok((events, duplicates, state)) => {
                    committed.already_recorded += duplicates;
                    committed.new_events.extend(events);
                    track_open_failure(open_failures, name, facts, &state, counted);
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
                    committed.flags.restore(name, flags_before);
                }
            }
        }
        for event in &committed.new_events {
            tracing::info!(
                project = %event.project_name,
                pipeline_id = event.pipeline_id,
                blueprint_id = event.blueprint_id,
                status = %event.status,
                finished_at = %event.finished_at,
                dry_run = writer.is_dry(),
                "failure recorded"
            );
        }
        Ok(committed)
    }

    /// Writes one project's new failures and state, atomically per transaction, retrying on
    /// races. Returns the events written and how many were found already stored.
    pub(crate) async fn commit(
        &self,
        name: &str,
        facts: &[&Pipeline],
        flags: Flags,
        mut stored: StoredProject,
        now: DateTime<Utc>,
    ) -> CommitResult {
        let counted = |s: &str| self.settings.counts_as_failure(s);
        let mut recorded: HashSet<String> = HashSet::new();
        let mut written = Vec::new();
        let mut duplicates = 0u64;
        for chunk in transaction_chunks(facts, MAX_EVENTS_PER_COMMIT, counted) {
            let mut attempts = 0;
            loop {
                let mut folded = fold(&stored.state, name, chunk, &recorded, flags, counted);
                if folded.events.is_empty() && folded.state == stored.state {
                    break;
                }
                // In the same conditional write as the events: the metrics page reads its
                // failure window from this list, so it must never miss a committed event.
                folded
                    .state
                    .remember_failures(&folded.events, now, self.settings.failure_window);
                let commit = ProjectCommit {
                    state: &folded.state,
                    expected_revision: stored.revision,
                    events: &folded.events,
                    retention: self.settings.retention,
                };
                match self.store.commit_project(commit).await? {
                    CommitOutcome::Committed => {
                        written.extend(folded.events);
                        stored = StoredProject {
                            state: folded.state,
                            revision: Some(stored.revision.map_or(1, |r| r + 1)),
                        };
                        break;
                    }
                    CommitOutcome::AlreadyRecorded(keys) => {
                        tracing::info!(project = %name, events = keys.len(), "failures already recorded by another run");
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
                stored = self
                    .store
                    .project_states(&[name.to_string()])
                    .await?
                    .remove(name)
                    .unwrap_or_default();
            }
        }
        Ok((written, duplicates, stored.state))
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
