//! Phase 5 of a run, *re-run* (`AUTO_RERUN_MAX` > 0): each project's newest failure, when this
//! run recorded it (or took it over from the events function) and nothing of its blueprint is
//! pending, is re-run; then the claims earlier
//! runs released or abandoned are taken up. Which failures qualify is a pure decision
//! ([`rerun_candidates`]); a dry run reports them, a real run claims, requests and settles each
//! (see [`Writer::request_reruns`]).

use std::collections::{BTreeMap, HashSet};

use chrono::{DateTime, Utc};

use crate::deadline::Deadline;
use crate::devlake::models::Pipeline;
use crate::job::Stop;
use crate::store::{FailureEvent, RerunClaim, RerunSettlement};

use super::run::{deadline_issue, Monitor};
use super::summary::RunIssue;
use super::writer::Writer;

/// Pending re-run claims taken up per run (each costs a `GET /pipelines/{id}`): bounds a run's
/// calls while DevLake refuses many re-runs; the rest wait for the next runs.
pub const PENDING_RERUNS_PER_RUN: usize = 20;

/// How long a re-run claim stays in progress before another run may take it up: the longest
/// a Lambda invocation lives, so the run that holds it has ended by then.
pub const RERUN_CLAIM_LEASE: chrono::Duration = chrono::Duration::minutes(15);

/// A failure to re-run: the project, its newest failed pipeline and the failure's key.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Candidate<'p> {
    pub project: &'p String,
    pub pipeline: &'p Pipeline,
    pub key: String,
}

/// Each project's newest fact, when it is a failure this run recorded (`new_events`, or one the
/// events function recorded before this run met it: `adopted`), its cause can heal by retrying
/// (not `auth`, `not_found` or `cancelled`), and neither it nor anything else of its blueprint is
/// unfinished: only then would a re-run not pile up behind a pipeline DevLake already has queued
/// or running.
pub(super) fn rerun_candidates<'p>(
    by_project: &'p BTreeMap<String, Vec<&'p Pipeline>>,
    new_events: &[FailureEvent],
    adopted: &[String],
    unfinished: &BTreeMap<u64, Pipeline>,
) -> Vec<Candidate<'p>> {
    let new_keys: HashSet<String> = new_events
        .iter()
        .map(FailureEvent::key)
        .chain(adopted.iter().cloned())
        .collect();
    let busy_blueprints: HashSet<u64> = unfinished.values().map(|p| p.blueprint_id).collect();
    let mut candidates = Vec::new();
    for (name, facts) in by_project {
        let Some(latest) = facts.iter().max_by_key(|p| (p.finished_at, p.id)) else {
            continue;
        };
        let Some(finished) = latest.finished_at else {
            continue;
        };
        let event = super::project::failure_event(name, latest, finished);
        let key = event.key();
        if !new_keys.contains(&key)
            || busy_blueprints.contains(&latest.blueprint_id)
            || unfinished.contains_key(&latest.id)
        {
            continue;
        }
        if !event.cause.heals_by_retry() {
            tracing::info!(project = %name, pipeline_id = latest.id, cause = %event.cause, "not re-run: retrying cannot fix this cause");
            continue;
        }
        candidates.push(Candidate {
            project: name,
            pipeline: latest,
            key,
        });
    }
    candidates
}

impl Monitor<'_> {
    /// Re-runs each project's newest failure when it was recorded by this run (or by the events
    /// function before this run met it: `adopted`), its cause can heal by retrying (not `auth`,
    /// `not_found` or `cancelled`), nothing of its blueprint is pending, and `AUTO_RERUN_MAX`
    /// allows it; then takes up the claims earlier
    /// runs released (their request failed) or left in progress past their lease (they
    /// stopped before sending it). The claim in the table comes first and is settled after
    /// DevLake answers, so a failure is re-run at least once and, unless a run stops between
    /// DevLake's acceptance and the settlement, at most once. Returns the pipelines re-run
    /// (a dry run: that would be).
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn auto_rerun(
        &self,
        writer: Writer,
        by_project: &BTreeMap<String, Vec<&Pipeline>>,
        new_events: &[FailureEvent],
        adopted: &[String],
        unfinished: &BTreeMap<u64, Pipeline>,
        now: DateTime<Utc>,
        deadline: Deadline,
        errors: &mut Vec<RunIssue>,
    ) -> Result<Vec<u64>, Stop> {
        if self.settings.auto_rerun_max == 0 {
            return Ok(Vec::new());
        }
        let candidates = rerun_candidates(by_project, new_events, adopted, unfinished);
        writer
            .request_reruns(self, candidates, unfinished, now, deadline, errors)
            .await
    }

    /// A real run's re-runs: each candidate claimed, requested and settled in turn (until the
    /// deadline), then up to [`PENDING_RERUNS_PER_RUN`] claims earlier runs left pending.
    pub(super) async fn request_reruns(
        &self,
        candidates: Vec<Candidate<'_>>,
        unfinished: &BTreeMap<u64, Pipeline>,
        now: DateTime<Utc>,
        deadline: Deadline,
        errors: &mut Vec<RunIssue>,
    ) -> Result<Vec<u64>, Stop> {
        let busy_blueprints: HashSet<u64> = unfinished.values().map(|p| p.blueprint_id).collect();
        let mut rerun = Vec::new();
        let mut tried = HashSet::new();
        for Candidate {
            project,
            pipeline: latest,
            key,
        } in candidates
        {
            if deadline.passed() {
                errors.push(deadline_issue(format!(
                    "re-run of pipeline {} and later ones not requested",
                    latest.id
                )));
                return Ok(rerun);
            }
            tried.insert(latest.id);
            if self
                .rerun_once(Some(project), latest, &key, now, errors)
                .await?
            {
                rerun.push(latest.id);
            }
        }
        let pending = match self.store.pending_reruns(now).await {
            Ok(pending) => pending,
            Err(e) if e.is_retryable() => return Err(e.into()),
            Err(e) => {
                errors.push(RunIssue {
                    project: None,
                    pipeline_id: None,
                    blueprint_id: None,
                    message: format!("pending re-runs not read: {e}"),
                });
                return Ok(rerun);
            }
        };
        let pending = pending
            .into_iter()
            .filter(|c| !tried.contains(&c.pipeline_id) && !unfinished.contains_key(&c.pipeline_id))
            .take(PENDING_RERUNS_PER_RUN);
        for claim in pending {
            if deadline.passed() {
                errors.push(deadline_issue(format!(
                    "pending re-run of pipeline {} and later ones not requested",
                    claim.pipeline_id
                )));
                break;
            }
            let pipeline = match self.devlake.pipeline(claim.pipeline_id).await {
                Ok(p) => p,
                Err(e) => {
                    errors.push(RunIssue {
                        project: None,
                        pipeline_id: Some(claim.pipeline_id),
                        blueprint_id: None,
                        message: format!("pending re-run not checked: {e}"),
                    });
                    continue;
                }
            };
            if busy_blueprints.contains(&pipeline.blueprint_id) {
                continue;
            }
            let Some(finished) = pipeline.finished_at else {
                // Running: DevLake took an earlier request; it settles when it finishes.
                continue;
            };
            // No cause filter here: a claim was granted on purpose, by the auto-rerun (for a
            // cause a retry can heal) or by `STUCK_ACTION=cancel-and-rerun` (for a cancel).
            let key = super::project::failure_event("", &pipeline, finished).key();
            if key != claim.failure_key {
                // The pipeline ran again since (an earlier request was taken, or someone
                // re-ran it): this failure needs nothing more.
                if let Err(e) = self
                    .store
                    .settle_rerun(claim.pipeline_id, &claim.failure_key, RerunSettlement::Done)
                    .await
                {
                    tracing::warn!(pipeline_id = claim.pipeline_id, error = %e, "stale re-run claim not settled");
                }
                continue;
            }
            if self.rerun_once(None, &pipeline, &key, now, errors).await? {
                rerun.push(pipeline.id);
            }
        }
        Ok(rerun)
    }

    /// Claims, requests and settles one re-run of `pipeline`'s failure `key`. `Ok(true)`:
    /// DevLake accepted it.
    pub(super) async fn rerun_once(
        &self,
        project: Option<&String>,
        pipeline: &Pipeline,
        key: &str,
        now: DateTime<Utc>,
        errors: &mut Vec<RunIssue>,
    ) -> Result<bool, Stop> {
        let max = self.settings.auto_rerun_max;
        let issue = |message: String| RunIssue {
            project: project.cloned(),
            pipeline_id: Some(pipeline.id),
            blueprint_id: Some(pipeline.blueprint_id),
            message,
        };
        let id = pipeline.id;
        match self
            .store
            .claim_rerun(id, key, max, now, RERUN_CLAIM_LEASE)
            .await
        {
            Ok(RerunClaim::Granted { attempt }) => match self.devlake.rerun_pipeline(id).await {
                Ok(_) => {
                    tracing::info!(project = ?project, pipeline_id = id, attempt, max, "pipeline re-run");
                    if let Err(e) = self
                        .store
                        .settle_rerun(id, key, RerunSettlement::Done)
                        .await
                    {
                        // Left in progress: retried after the lease only if the pipeline
                        // still shows this failure then, which it no longer does once
                        // DevLake starts it.
                        tracing::warn!(pipeline_id = id, error = %e, "re-run claim not settled");
                    }
                    Ok(true)
                }
                Err(e) => {
                    tracing::warn!(project = ?project, pipeline_id = id, error = %e, "re-run refused; a later run asks again");
                    errors.push(issue(format!("re-run failed: {e}")));
                    if let Err(e) = self
                        .store
                        .settle_rerun(id, key, RerunSettlement::Released)
                        .await
                    {
                        // Taken up again once the lease ends.
                        tracing::warn!(pipeline_id = id, error = %e, "re-run claim not released");
                    }
                    Ok(false)
                }
            },
            Ok(RerunClaim::AlreadyDone | RerunClaim::InProgress) => Ok(false),
            Ok(RerunClaim::Exhausted) => {
                tracing::info!(project = ?project, pipeline_id = id, max, "AUTO_RERUN_MAX reached; not re-running");
                Ok(false)
            }
            Err(e) if e.is_retryable() => Err(e.into()),
            Err(e) => {
                errors.push(issue(format!("re-run not claimed: {e}")));
                Ok(false)
            }
        }
    }
}

#[cfg(test)]
mod tests;
