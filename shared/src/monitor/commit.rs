//! Writing one project's finished pipelines: the one path by which failures are recorded,
//! whether the monitor found them by polling or the events function was told by DevLake.
//!
//! Each failure event is written only if absent, in the same transaction as the project's
//! counter and state, guarded by the project's revision ([`MonitorStore::commit_project`]). A
//! failure found already stored (by the other path, an overlapping run, or a repeated
//! notification) is skipped on the next attempt, with the state as the winner left it: it is
//! one record and counted once, whoever comes first and however often it comes.

use std::collections::HashSet;

use chrono::{DateTime, Utc};

use crate::devlake::models::Pipeline;
use crate::store::{
    CommitOutcome, FailureEvent, MonitorStore, ProjectCommit, ProjectState, StoreError,
    StoredProject, MAX_EVENTS_PER_COMMIT,
};

use super::config::MonitorSettings;
use super::flags::Flags;
use super::project::fold;

/// Re-reads of one project before its commit is given up (only under heavy overlap).
const COMMIT_ATTEMPTS: usize = 8;

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
    // A transaction takes at most MAX_EVENTS_PER_COMMIT events: split the facts so no chunk
    // holds more failures than that (a first run can find many for one project).
    let mut chunks: Vec<&[&Pipeline]> = Vec::new();
    let mut start = 0;
    let mut failures = 0;
    for (i, p) in facts.iter().enumerate() {
        if counted(&p.status) {
            if failures == MAX_EVENTS_PER_COMMIT {
                chunks.push(&facts[start..i]);
                start = i;
                failures = 0;
            }
            failures += 1;
        }
    }
    chunks.push(&facts[start..]);

    for chunk in chunks {
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
