//! Daily expiry of the projects' recent-failures lists.
//!
//! Each project item carries the keys of its failures of the last `FAILURE_WINDOW_DAYS`, and every
//! scrape of the metrics page reads every project item. A commit prunes its project's list, but a
//! project that stops failing is never committed to again: without this pass its old failures
//! would stay in the list, and the bytes (and DynamoDB pages) of every scrape would grow with
//! history. So on its first run of each UTC day the monitor reads every project (the same read
//! as one scrape) and rewrites those holding failures older than the window, conditional on the
//! revision it read. A project changed meanwhile is left alone: whoever
//! changed it committed, and commits prune.
//!
//! Between two passes a list can hold at most a day of failures past the window; the page never
//! shows them (the metrics function filters by its window).

use chrono::{DateTime, Utc};
use futures::StreamExt;
use serde::Serialize;

use crate::deadline::Deadline;
use crate::store::{CommitOutcome, MonitorStore, ProjectCommit, StoreError, StoredProject};

/// Rewrites in flight at once.
const CONCURRENCY: usize = 8;

/// What one pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Expiry {
    pub projects_read: u64,
    /// Projects whose list was rewritten without its expired failures.
    pub projects_rewritten: u64,
    /// Failure keys dropped from the lists (the failure items themselves stay until their TTL).
    pub failures_expired: u64,
    /// Projects left for the next pass: changed concurrently, or the deadline came first.
    pub projects_left: u64,
}

/// Whether a run at `now` makes the day's pass: the first run of each UTC day, judged by the
/// previous run's time (`None`: no previous run, so it is the first).
pub fn due(previous_run: Option<DateTime<Utc>>, now: DateTime<Utc>) -> bool {
    previous_run.is_none_or(|previous| previous.date_naive() != now.date_naive())
}

/// Drops from every project's list the failures that finished before `now - window`.
pub async fn expire_recent_failures<S>(
    store: &S,
    now: DateTime<Utc>,
    window: chrono::Duration,
    retention: chrono::Duration,
    deadline: Deadline,
) -> Result<Expiry, StoreError>
where
    S: MonitorStore + ?Sized,
{
    let before = now - window;
    let projects = store.all_projects().await?;
    let mut expiry = Expiry {
        projects_read: projects.len() as u64,
        ..Expiry::default()
    };
    let stale: Vec<(StoredProject, usize)> = projects
        .into_iter()
        .filter_map(|mut stored| {
            let expired = stored.state.expire_recent_failures(before);
            (expired > 0).then_some((stored, expired))
        })
        .collect();
    let outcomes: Vec<Result<Option<usize>, StoreError>> = futures::stream::iter(stale)
        .map(|(stored, expired)| async move {
            if deadline.passed() {
                return Ok(None);
            }
            let commit = ProjectCommit {
                state: &stored.state,
                expected_revision: stored.revision,
                events: &[],
                retention,
            };
            match store.commit_project(commit).await? {
                CommitOutcome::Committed => Ok(Some(expired)),
                CommitOutcome::Conflict | CommitOutcome::AlreadyRecorded(_) => {
                    tracing::debug!(project = %stored.state.project_name, "changed concurrently; its next commit prunes it");
                    Ok(None)
                }
            }
        })
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    for outcome in outcomes {
        match outcome? {
            Some(expired) => {
                expiry.projects_rewritten += 1;
                expiry.failures_expired += expired as u64;
            }
            None => expiry.projects_left += 1,
        }
    }
    Ok(expiry)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{FailureEvent, MemoryStore, ProjectState};
    use chrono::TimeZone;

    fn at(day: u32, hour: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, day, hour, 0, 0).unwrap()
    }

    fn failure(project: &str, id: u64, finished_at: DateTime<Utc>) -> FailureEvent {
        FailureEvent {
            project_name: project.into(),
            blueprint_id: 1,
            pipeline_id: id,
            status: "TASK_FAILED".into(),
            finished_at,
            began_at: None,
            message: String::new(),
            error_name: String::new(),
            cause: Default::default(),
        }
    }

    async fn commit(store: &MemoryStore, name: &str, events: &[FailureEvent]) {
        let mut state = ProjectState {
            project_name: name.into(),
            ..Default::default()
        };
        state.add_recent_failures(events);
        let outcome = store
            .commit_project(ProjectCommit {
                state: &state,
                expected_revision: None,
                events,
                retention: chrono::Duration::days(90),
            })
            .await
            .unwrap();
        assert_eq!(outcome, CommitOutcome::Committed);
    }

    #[test]
    fn the_first_run_of_a_utc_day_is_due() {
        assert!(due(None, at(28, 0)));
        assert!(due(Some(at(27, 23)), at(28, 0)));
        assert!(!due(Some(at(28, 0)), at(28, 23)));
    }

    #[tokio::test]
    async fn only_lists_with_expired_failures_are_rewritten() {
        let store = MemoryStore::default();
        let now = at(28, 12);
        let week = chrono::Duration::days(7);
        let old = failure("idle", 1, now - week - chrono::Duration::hours(1));
        let recent = failure("idle", 2, now - chrono::Duration::days(2));
        commit(&store, "idle", &[old.clone(), recent.clone()]).await;
        commit(&store, "fresh", &[failure("fresh", 3, now)]).await;
        commit(&store, "none", &[]).await;

        let pass = || {
            expire_recent_failures(
                &store,
                now,
                week,
                chrono::Duration::days(90),
                Deadline::none(),
            )
        };
        let expiry = pass().await.unwrap();
        assert_eq!(
            expiry,
            Expiry {
                projects_read: 3,
                projects_rewritten: 1,
                failures_expired: 1,
                projects_left: 0,
            }
        );
        let idle = &store.project_states(&["idle".into()]).await.unwrap()["idle"];
        assert_eq!(idle.state.recent_failures, vec![recent.key()]);
        assert_eq!(idle.revision, Some(2));
        // The counter is history, not window: untouched.
        assert_eq!(idle.state.failures_total, 2);
        let fresh = &store.project_states(&["fresh".into()]).await.unwrap()["fresh"];
        assert_eq!(fresh.revision, Some(1));

        // Nothing left to expire: a second pass writes nothing.
        let again = pass().await.unwrap();
        assert_eq!(again.projects_rewritten, 0);
    }

    #[tokio::test]
    async fn a_passed_deadline_leaves_the_rest_for_the_next_pass() {
        let store = MemoryStore::default();
        let now = at(28, 12);
        let week = chrono::Duration::days(7);
        commit(&store, "a", &[failure("a", 1, now - week * 2)]).await;
        let passed = Deadline::after(std::time::Duration::ZERO);
        let expiry = expire_recent_failures(&store, now, week, week, passed)
            .await
            .unwrap();
        assert_eq!((expiry.projects_rewritten, expiry.projects_left), (0, 1));
        let a = &store.project_states(&["a".into()]).await.unwrap()["a"];
        assert_eq!(a.state.recent_failures.len(), 1);
    }
}
