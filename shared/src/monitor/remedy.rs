//! `STUCK_ACTION`: cancelling pipelines stuck longer than `STUCK_AFTER_HOURS`, checking that the
//! cancel took, and re-running them.
//!
//! DevLake's `DELETE /pipelines/{id}` (`CancelPipeline`) cancels a queued pipeline in the
//! database at once; for a running one it cancels the context of each running task
//! (`cancelRunningTasks`) and marks the pending ones cancelled, and the runner then ends the
//! pipeline `TASK_CANCELLED` with a new `finishedAt`. A task whose context is no longer tracked
//! (lost in a restart) is skipped and the call still answers 200: the pipeline then runs on as
//! `TASK_RUNNING` for ever. So a 200 proves nothing; the next run looks: a pipeline still
//! running (`TASK_RUNNING`/`TASK_RESUME`) that has not ended since the request did not stop,
//! and its project gets `devlake_project_stuck_cancel_failed`. The request is repeated every run
//! while the pipeline stays stuck; the flag clears once it stops (or the project is deleted).
//!
//! With `cancel-and-rerun`, a pipeline whose cancel took and that ended `TASK_CANCELLED` is
//! re-run through the same claim as the failure auto-rerun (`RERUN` item keyed by the pipeline
//! and its end, within `AUTO_RERUN_MAX`, settled after DevLake answers; a refused request is
//! taken up again by a later run): at least once, never twice for one end. It is not re-run
//! while another pipeline of its blueprint is queued or running (that one collects the same
//! data, and DevLake's cron would have been refused for it).
//!
//! Only pipelines of a project are acted on (an ad-hoc pipeline has no project to flag), and a
//! dry run only reports which it would cancel.

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::{DateTime, Duration, Utc};

use crate::deadline::Deadline;
use crate::devlake::models::{status, Pipeline};
use crate::store::StuckCancel;

use super::config::StuckAction;
use super::run::Stopped;
use super::summary::RunIssue;
use super::Monitor;

/// A run sooner than this after a cancel does not judge it yet: the runner ends a cancelled
/// pipeline once its tasks notice, seconds later. The monitor's 5-minute cadence always waits
/// longer; only back-to-back manual runs come sooner.
pub const CANCEL_SETTLE: Duration = Duration::minutes(1);

/// The previous run's cancels, looked at with what this run saw.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Verified {
    /// Cancels to look at again next run: not taken, or not judged this time.
    pub pending: Vec<StuckCancel>,
    /// Projects whose stuck pipeline did not stop after a cancel, with that pipeline.
    pub failed: BTreeMap<String, u64>,
    /// Cancels that took: the pipeline ended since, or is gone.
    pub took: Vec<StuckCancel>,
}

/// Whether `p`, seen unfinished, still runs the attempt a cancel requested at `requested_at`
/// was meant to stop: a pipeline that ended since (and was re-run by someone) keeps that end
/// as its `finishedAt`.
fn still_running(p: &Pipeline, requested_at: DateTime<Utc>) -> bool {
    matches!(p.status.as_str(), status::RUNNING | status::RESUME)
        && p.finished_at.is_none_or(|f| f < requested_at)
}

/// Judges the previous run's cancels. `unfinished`: pipelines this run saw unfinished;
/// `unknown`: watched pipelines this run could not look up (their cancel waits).
pub(crate) fn verify(
    previous: &[StuckCancel],
    failed_before: &BTreeMap<String, u64>,
    unfinished: &BTreeMap<u64, Pipeline>,
    unknown: &HashSet<u64>,
    now: DateTime<Utc>,
) -> Verified {
    let mut out = Verified::default();
    for c in previous {
        let keep_flag = failed_before.get(&c.project) == Some(&c.pipeline_id);
        if unknown.contains(&c.pipeline_id) || now - c.requested_at < CANCEL_SETTLE {
            if keep_flag {
                out.failed.insert(c.project.clone(), c.pipeline_id);
            }
            out.pending.push(c.clone());
            continue;
        }
        match unfinished.get(&c.pipeline_id) {
            Some(p) if still_running(p, c.requested_at) => {
                out.failed.insert(c.project.clone(), c.pipeline_id);
                out.pending.push(c.clone());
            }
            _ => out.took.push(c.clone()),
        }
    }
    out
}

/// What the remedy did this run.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Remedied {
    /// `DELETE /pipelines/{id}` DevLake answered with success (a dry run: would be sent).
    pub cancelled: Vec<u64>,
    /// Cancelled pipelines re-run.
    pub reruns: Vec<u64>,
}

impl Monitor<'_> {
    /// Re-runs the cancels that took (`cancel-and-rerun`), then cancels every stuck pipeline of a
    /// project, again for those whose cancel did not take. Cancels sent join `verified.pending`
    /// (whether DevLake answered or not: the next run looks at the pipeline either way).
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn remedy_stuck(
        &self,
        stuck: &[Pipeline],
        names: &HashMap<u64, String>,
        facts: &[Pipeline],
        unfinished: &BTreeMap<u64, Pipeline>,
        verified: &mut Verified,
        dry_run: bool,
        now: DateTime<Utc>,
        deadline: Deadline,
        errors: &mut Vec<RunIssue>,
    ) -> Result<Remedied, Stopped> {
        let mut done = Remedied::default();
        let action = self.settings.stuck_action;
        if !action.cancels() {
            return Ok(done);
        }
        if action == StuckAction::CancelAndRerun && !dry_run {
            let busy: HashSet<u64> = unfinished.values().map(|p| p.blueprint_id).collect();
            for c in &verified.took {
                let Some(p) = facts
                    .iter()
                    .filter(|p| p.id == c.pipeline_id && p.status == status::CANCELLED)
                    .max_by_key(|p| p.finished_at)
                else {
                    continue;
                };
                let Some(end) = p.finished_at else {
                    continue;
                };
                if busy.contains(&p.blueprint_id) {
                    tracing::info!(project = %c.project, pipeline_id = p.id, "cancelled pipeline not re-run: another pipeline of its blueprint is queued or running");
                    continue;
                }
                if deadline.passed() {
                    errors.push(super::run::deadline_issue(format!(
                        "re-run of cancelled pipeline {} and later ones not requested",
                        p.id
                    )));
                    break;
                }
                let key = super::project::failure_event(&c.project, p, end).key();
                if self
                    .rerun_once(Some(&c.project), p, &key, now, errors)
                    .await?
                {
                    done.reruns.push(p.id);
                }
            }
        }
        for p in stuck {
            let Some(project) = names.get(&p.blueprint_id).filter(|n| !n.is_empty()) else {
                continue;
            };
            if dry_run {
                done.cancelled.push(p.id);
                continue;
            }
            if deadline.passed() {
                errors.push(super::run::deadline_issue(format!(
                    "cancel of stuck pipeline {} and later ones not requested",
                    p.id
                )));
                break;
            }
            match self.devlake.cancel_pipeline(p.id).await {
                Ok(()) => {
                    tracing::warn!(project = %project, pipeline_id = p.id, began_at = ?p.began_at, action = action.as_str(), "stuck pipeline cancelled");
                    done.cancelled.push(p.id);
                }
                Err(e) if e.is_fatal() => return Err(e.into()),
                Err(e) => {
                    tracing::warn!(project = %project, pipeline_id = p.id, error = %e, "cancel of a stuck pipeline refused; the next run looks at it again");
                    errors.push(RunIssue {
                        project: Some(project.clone()),
                        pipeline_id: Some(p.id),
                        blueprint_id: Some(p.blueprint_id),
                        message: format!("cancel of stuck pipeline failed: {e}"),
                    });
                }
            }
            if !verified.pending.iter().any(|c| c.pipeline_id == p.id) {
                verified.pending.push(StuckCancel {
                    pipeline_id: p.id,
                    project: project.clone(),
                    requested_at: now,
                });
            }
        }
        verified.pending.sort_by_key(|c| c.pipeline_id);
        Ok(done)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(m: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 28, 10, m, 0).unwrap()
    }

    fn pipeline(id: u64, st: &str, finished: Option<DateTime<Utc>>) -> Pipeline {
        serde_json::from_value(serde_json::json!({
            "id": id, "blueprintId": 7, "status": st, "finishedAt": finished,
        }))
        .unwrap()
    }

    fn cancel(id: u64, project: &str) -> StuckCancel {
        StuckCancel {
            pipeline_id: id,
            project: project.into(),
            requested_at: at(0),
        }
    }

    #[test]
    fn a_cancel_took_when_the_pipeline_no_longer_runs_the_same_attempt() {
        let previous = vec![
            cancel(1, "a"),
            cancel(2, "b"),
            cancel(3, "c"),
            cancel(4, "d"),
            cancel(5, "e"),
        ];
        let unfinished = BTreeMap::from([
            // Still running its first attempt: not taken.
            (1, pipeline(1, status::RUNNING, None)),
            // A stuck re-run keeps its previous end, from before the request: not taken.
            (
                2,
                pipeline(2, status::RESUME, Some(at(0) - Duration::hours(30))),
            ),
            // Ended at the cancel and re-run by someone since: took.
            (3, pipeline(3, status::RUNNING, Some(at(1)))),
            // Queued again: took.
            (4, pipeline(4, status::RERUN, Some(at(1)))),
        ]);
        let v = verify(
            &previous,
            &BTreeMap::new(),
            &unfinished,
            &HashSet::new(),
            at(5),
        );
        assert_eq!(
            v.failed,
            BTreeMap::from([("a".to_string(), 1), ("b".to_string(), 2)])
        );
        assert_eq!(
            v.pending.iter().map(|c| c.pipeline_id).collect::<Vec<_>>(),
            vec![1, 2]
        );
        // 5 finished (not among the unfinished): took.
        assert_eq!(
            v.took.iter().map(|c| c.pipeline_id).collect::<Vec<_>>(),
            vec![3, 4, 5]
        );
    }

    #[test]
    fn unknown_or_too_recent_cancels_wait_with_their_flag() {
        let previous = vec![cancel(1, "a"), cancel(2, "b")];
        let failed_before = BTreeMap::from([("a".to_string(), 1)]);
        let unfinished = BTreeMap::from([(2, pipeline(2, status::RUNNING, None))]);
        let v = verify(
            &previous,
            &failed_before,
            &unfinished,
            &HashSet::from([1]),
            at(0) + Duration::seconds(30),
        );
        assert_eq!(v.failed, failed_before);
        assert_eq!(v.pending, previous);
        assert!(v.took.is_empty());
    }
}
