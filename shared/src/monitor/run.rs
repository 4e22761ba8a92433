//! One monitor run, phase by phase (the numbered phases of the module doc): observe, plan,
//! resolve projects, commit, re-run, save the cursor, expire. This file holds the entry points,
//! the sequence of phases and the summary they add up to; each phase lives in its own module.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::cloudwatch::MetricsSink;
use crate::deadline::Deadline;
use crate::devlake::DevLakeClient;
use crate::job::{Invocation, JobSpec, Lifecycle, Ran, ScheduledJob, Stop};
use crate::store::{FailureEvent, Job, MonitorCursor, MonitorStore, RunLog};

use super::config::MonitorSettings;
use super::error::MonitorError;
use super::expiry::{self, Expiry};
use super::observe::listing_cut_short;
use super::payload::{self, Request};
use super::plan::{self, Basis, Plan};
use super::remedy::Remedied;
use super::resolve::{decide_flags, group_by_project, touched_projects, Decided, Seen, Sweep};
use super::schedule;
use super::summary::{CursorBrief, FailureBrief, RunIssue, RunStatus, Summary, LISTED_FAILURES};
use super::writer::Writer;

/// The ports a run talks through, and its settings.
#[derive(Clone, Copy)]
pub struct Monitor<'a> {
    pub settings: &'a MonitorSettings,
    pub devlake: &'a DevLakeClient,
    pub store: &'a dyn MonitorStore,
    pub sink: &'a dyn MetricsSink,
}

/// How the monitor plugs into the job lifecycle: its run record is `RUN`/`monitor`, and its
/// runs send `DevLakeUp` (the `DevLakeDownAlarm` watches it).
pub const JOB: JobSpec = JobSpec {
    job: Job::Monitor,
    devlake_up_datum: true,
};

/// Time the metrics snapshot's publish needs before the deadline: a strongly consistent read of
/// every project item, its encoding and a few writes (about a second at 10,000 projects).
const PUBLISH_BUDGET: std::time::Duration = std::time::Duration::from_secs(5);

/// Work left for the next run because the Lambda deadline was near.
pub(super) fn deadline_issue(what: String) -> RunIssue {
    RunIssue {
        project: None,
        pipeline_id: None,
        blueprint_id: None,
        message: format!("the Lambda deadline came first: {what}"),
    }
}

impl Monitor<'_> {
    /// One invocation: parse the payload (refusing it before any read or write), then run.
    /// `clock` is the caller's clock reading, the run's `now` unless the payload carries the
    /// scheduled time.
    pub async fn handle(
        &self,
        payload: &Value,
        clock: DateTime<Utc>,
        deadline: Deadline,
    ) -> Result<Summary, MonitorError> {
        let request = payload::parse(payload, clock)?;
        let now = request.scheduled_time.unwrap_or(clock);
        self.run_started(now, clock, request, deadline).await
    }

    /// One run at `now`, started at `now` (no scheduled time apart from the clock). Records its
    /// own outcome and emits its metrics (not in a dry run).
    pub async fn run(
        &self,
        now: DateTime<Utc>,
        request: Request,
        deadline: Deadline,
    ) -> Result<Summary, MonitorError> {
        self.run_started(now, now, request, deadline).await
    }

    /// One run at `now` (the scheduled time, for the look-back and stuck rules), started at
    /// `started_at` by the caller's clock, through the job lifecycle ([`crate::job`]): it records
    /// its own outcome and emits its metrics (not in a dry run). The run record's `finishedAt` is
    /// `started_at` plus the run's own duration: `devlake_monitor_last_run_timestamp_seconds`
    /// says when the last run finished, not when it was scheduled (a late or replayed delivery
    /// would look older), and no clock is read here.
    async fn run_started(
        &self,
        now: DateTime<Utc>,
        started_at: DateTime<Utc>,
        request: Request,
        deadline: Deadline,
    ) -> Result<Summary, MonitorError> {
        let lifecycle = Lifecycle {
            spec: JOB,
            devlake: self.devlake,
            run_log: Some(self.store as &dyn RunLog),
            sink: Some(self.sink),
        };
        let inv = Invocation {
            started_at,
            deadline,
            dry_run: request.dry_run,
            recorded: true,
        };
        let job = MonitorRun {
            monitor: *self,
            now,
            request,
            deadline,
        };
        Ok(lifecycle.run(&job, &inv, None).await?)
    }

    /// Publishes the metrics snapshot ([`crate::snapshot`]). A failure is a run issue (the run
    /// is `partial`, so `devlake_monitor_last_run_success` says the page may be stale) and the
    /// next run publishes again.
    async fn publish(&self, now: DateTime<Utc>, deadline: Deadline) -> Result<(), RunIssue> {
        if !deadline.allows(PUBLISH_BUDGET) {
            tracing::warn!(
                "no time left to publish the metrics snapshot; the next run publishes it"
            );
            return Err(deadline_issue(
                "the metrics snapshot was not published; the next run publishes it".into(),
            ));
        }
        match crate::snapshot::publish_after_commit(self.store, now).await {
            Ok(_) => Ok(()),
            Err(e) => {
                tracing::error!(error = %e, retryable = e.is_retryable(), "publishing the metrics snapshot failed; the next run publishes it");
                Err(RunIssue {
                    project: None,
                    pipeline_id: None,
                    blueprint_id: None,
                    message: format!("publishing the metrics snapshot: {e}"),
                })
            }
        }
    }

    /// The phases of one run, in order. Each phase's reads and writes are its own; what one
    /// hands the next is named here. A stop (DevLake unusable, the table failing) unwinds from
    /// any phase before the cursor is saved, and the next run redoes the same work.
    async fn execute(
        &self,
        now: DateTime<Utc>,
        request: Request,
        deadline: Deadline,
    ) -> Result<Summary, Stop> {
        let settings = self.settings;
        let writer = Writer::of(request.dry_run);
        let mut errors: Vec<RunIssue> = Vec::new();

        // 1. Observe: the listings since the cursor (or over the look-back), then the look-ups
        //    of what they did not show.
        let loaded = self.store.load_cursor().await?;
        let basis = basis(
            loaded.as_ref(),
            request.rescan,
            now - settings.initial_lookback,
        );
        let obs = self.observe(basis, loaded.as_ref(), deadline).await?;
        if !obs.listed_complete {
            errors.push(listing_cut_short(basis, &obs));
        }
        let needed = plan::lookups_needed(basis, &obs);
        let lookups = self.look_up(&needed.ids, deadline, &mut errors).await?;

        // 2. Plan: which finished states are new, what stays watched, what is stuck, and the
        //    next cursor; and when each blueprint last showed a pipeline.
        let mut plan = plan::build(
            basis,
            loaded.as_ref(),
            &obs,
            &lookups,
            now,
            settings.stuck_after,
        );
        let activity = schedule::activity(
            obs.listed
                .iter()
                .chain(&obs.pending)
                .chain(&obs.recent)
                .chain(&lookups.found),
            now,
        );
        let listed_complete = obs.listed_complete;
        drop(obs);
        if matches!(basis, Basis::Cursor(_)) {
            plan.cursor.recheck_after = needed.recheck_after;
        }

        // 3. Resolve projects: name the project of each fact and stuck pipeline, group the
        //    facts by project, and decide each project's flags.
        let resolved = self
            .resolve_projects(
                &mut plan,
                loaded.as_ref(),
                request.rescan,
                writer,
                now,
                deadline,
                &mut errors,
            )
            .await?;
        let grouped = group_by_project(&plan.facts, &resolved.names);
        let unknown: HashSet<u64> = lookups.unknown.iter().copied().collect();
        let Decided {
            before: flags_before,
            now: flags_now,
            schedules,
            mut verified,
        } = decide_flags(
            settings,
            loaded.as_ref(),
            &plan,
            &resolved.names,
            &resolved.sweep,
            Seen {
                activity: &activity,
                listed_complete,
                unknown: &unknown,
            },
            now,
        );
        let touched = touched_projects(&grouped.by_project, &flags_before, &flags_now);
        let mut watch: BTreeSet<u64> = plan.cursor.watch.iter().copied().collect();
        watch.extend(grouped.unresolved.iter().copied());

        // 4. Commit: each touched project's new failures, flags and state, in one transaction.
        let mut open_failures = std::mem::take(&mut plan.cursor.open_failures);
        let committed = self
            .commit_projects(
                writer,
                &grouped.by_project,
                &touched,
                &flags_before,
                &flags_now,
                &mut open_failures,
                &mut watch,
                now,
                &mut errors,
            )
            .await?;

        // 5. Re-run: each project's newest failure recorded now, if AUTO_RERUN_MAX allows; then
        //    STUCK_ACTION: re-run the cancels that took, cancel what is stuck.
        let rerun_ids = self
            .auto_rerun(
                writer,
                &grouped.by_project,
                &committed.new_events,
                &committed.adopted,
                &plan.unfinished,
                now,
                deadline,
                &mut errors,
            )
            .await?;
        watch.extend(rerun_ids.iter().copied());
        let remedied = self
            .remedy_stuck(
                &plan.stuck,
                &resolved.names,
                &plan.facts,
                &plan.unfinished,
                &mut verified,
                writer,
                now,
                deadline,
                &mut errors,
            )
            .await?;
        watch.extend(remedied.reruns.iter().copied());

        // 6. Save the cursor, last of what the run's progress depends on; on the day's first
        //    run, after the projects DevLake no longer has have left the table.
        let daily = expiry::due(loaded.as_ref().and_then(|c| c.updated_at), now);
        let mut flags = committed.flags;
        if daily {
            if let Some(removed) = self
                .drop_gone_projects(writer, &resolved.sweep, now, deadline, &mut errors)
                .await
            {
                open_failures.retain(|o| !removed.contains(&o.project));
                verified.pending.retain(|c| !removed.contains(&c.project));
                for name in &removed {
                    flags.remove(name);
                }
            }
        }
        open_failures.sort_by_key(|o| o.pipeline_id);
        plan.cursor.open_failures = open_failures;
        plan.cursor.watch = watch.into_iter().collect();
        flags.store_in(&mut plan.cursor);
        plan.cursor.schedules = schedules;
        plan.cursor.stuck_cancels = verified.pending;
        let saved = writer
            .save_cursor(self, &plan.cursor, loaded.as_ref().map(|c| c.revision))
            .await?;

        // 7. Expire, on the day's first run: housekeeping after the cursor is safe, it can
        //    never hold the run's progress back.
        let expiry = match daily {
            true => self.expire(writer, now, deadline, &mut errors).await,
            false => None,
        };

        Ok(self.summary(
            now,
            request,
            &plan,
            Outcome {
                skipped: grouped.skipped,
                new_events: committed.new_events,
                already_recorded: committed.already_recorded,
                rerun_ids,
                remedied,
                saved,
                expiry,
            },
            errors,
        ))
    }

    /// The day's removal of projects DevLake no longer has: the names removed, whose open
    /// failures, cancels and flags then leave the cursor. A failure is an item error (`None`);
    /// tomorrow's first run tries again.
    async fn drop_gone_projects(
        &self,
        writer: Writer,
        sweep: &Sweep,
        now: DateTime<Utc>,
        deadline: Deadline,
        errors: &mut Vec<RunIssue>,
    ) -> Option<Vec<String>> {
        match writer
            .remove_gone_projects(self, sweep, now, deadline)
            .await
        {
            Ok(removed) => Some(removed),
            Err(e) => {
                tracing::warn!(error = %e, "removing deleted projects failed; tomorrow's first run tries again");
                errors.push(RunIssue {
                    project: None,
                    pipeline_id: None,
                    blueprint_id: None,
                    message: format!("removing deleted projects: {e}"),
                });
                None
            }
        }
    }

    /// The day's expiry of the recent-failure lists. A failure is an item error; tomorrow's
    /// first run tries again.
    async fn expire(
        &self,
        writer: Writer,
        now: DateTime<Utc>,
        deadline: Deadline,
        errors: &mut Vec<RunIssue>,
    ) -> Option<Expiry> {
        match writer.expire(self, now, deadline).await? {
            Ok(done) => {
                tracing::info!(
                    projects_read = done.projects_read,
                    projects_rewritten = done.projects_rewritten,
                    failures_expired = done.failures_expired,
                    projects_left = done.projects_left,
                    "daily expiry of the recent-failures lists"
                );
                Some(done)
            }
            Err(e) => {
                tracing::error!(error = %e, "daily expiry of the recent-failures lists failed; tomorrow's first run tries again");
                errors.push(RunIssue {
                    project: None,
                    pipeline_id: None,
                    blueprint_id: None,
                    message: format!("expiring the recent-failures lists: {e}"),
                });
                None
            }
        }
    }

    /// What the phases add up to (the lifecycle stamps the calls and the duration).
    fn summary(
        &self,
        now: DateTime<Utc>,
        request: Request,
        plan: &Plan,
        done: Outcome,
        errors: Vec<RunIssue>,
    ) -> Summary {
        let new_failures_by_project = if self.settings.project_dimension {
            failures_by_project(&done.new_events)
        } else {
            BTreeMap::new()
        };
        Summary {
            status: if errors.is_empty() {
                RunStatus::Ok
            } else {
                RunStatus::Partial
            },
            dry_run: request.dry_run,
            rescan: request.rescan,
            now,
            new_failures: done.new_events.len() as u64,
            already_recorded: done.already_recorded,
            pipelines_inspected: plan.inspected as u64,
            stuck: plan.stuck.len() as u64,
            reruns: done.rerun_ids.len() as u64,
            devlake_calls: 0,
            skipped_without_project: done.skipped,
            cursor: CursorBrief {
                max_pipeline_id: plan.cursor.max_pipeline_id,
                watching: plan.cursor.watch.len(),
                saved: done.saved,
            },
            failures: done
                .new_events
                .iter()
                .take(LISTED_FAILURES)
                .map(FailureBrief::from)
                .collect(),
            rerun_pipeline_ids: done.rerun_ids,
            schedule_missed: plan.cursor.schedule_missed.iter().cloned().collect(),
            cancelled_pipeline_ids: done.remedied.cancelled,
            cancels_not_taken: plan.cursor.stuck_cancel_failed.values().copied().collect(),
            stuck_rerun_pipeline_ids: done.remedied.reruns,
            expiry: done.expiry,
            conflicts: Vec::new(),
            errors,
            duration_ms: 0,
            new_failures_by_project,
        }
    }
}

/// What phases 3 to 7 did, for the summary.
struct Outcome {
    /// Finished pipelines without a project.
    skipped: u64,
    new_events: Vec<FailureEvent>,
    already_recorded: u64,
    rerun_ids: Vec<u64>,
    remedied: Remedied,
    saved: bool,
    expiry: Option<Expiry>,
}

/// Where a run starts from: the stored cursor, or (first run, rescan, or a look-back an earlier
/// run did not finish) the look-back window from `window_start`.
fn basis(loaded: Option<&MonitorCursor>, rescan: bool, window_start: DateTime<Utc>) -> Basis<'_> {
    match (loaded, rescan) {
        (Some(cursor), false) => match cursor.lookback_from {
            // An earlier look-back did not finish its listing: finish it.
            Some(window_start) => Basis::Lookback { window_start },
            None => Basis::Cursor(cursor),
        },
        _ => Basis::Lookback { window_start },
    }
}

/// New failures per project (the `NewFailures` datum by `ProjectName`).
fn failures_by_project(events: &[FailureEvent]) -> BTreeMap<String, u64> {
    let mut per_project: BTreeMap<String, u64> = BTreeMap::new();
    for e in events {
        *per_project.entry(e.project_name.clone()).or_default() += 1;
    }
    per_project
}

/// One monitor invocation as the lifecycle runs it.
struct MonitorRun<'a> {
    monitor: Monitor<'a>,
    now: DateTime<Utc>,
    request: Request,
    deadline: Deadline,
}

impl ScheduledJob for MonitorRun<'_> {
    type Summary = Summary;

    /// The phases, then the metrics snapshot's publish. Every run that writes publishes, even
    /// one that committed nothing or stopped: a commit whose own publish never happened (a run
    /// or a push that died in between) reaches the page here.
    async fn body(&self, devlake: &DevLakeClient) -> Ran<Summary> {
        let bounded = Monitor {
            devlake,
            ..self.monitor
        };
        let mut ran: Ran<Summary> = bounded
            .execute(self.now, self.request, self.deadline)
            .await
            .into();
        if !self.request.dry_run {
            if let (Err(issue), Ran::Finished(summary)) = (
                self.monitor.publish(self.now, self.deadline).await,
                &mut ran,
            ) {
                summary.errors.push(issue);
                summary.status = RunStatus::Partial;
            }
        }
        ran
    }

    /// DevLake did not answer before the deadline: nothing after that point was written (the
    /// cursor is saved last and every write before it is idempotent), so the next run starts
    /// from consistent state; this one reports what stopped it, having counted nothing.
    fn cut_short(&self, _partial: Option<Summary>, stop: &Stop) -> Summary {
        Summary::cut_short(
            self.now,
            self.request.dry_run,
            self.request.rescan,
            deadline_issue(format!("monitor run stopped: {stop}")),
        )
    }
}

#[cfg(test)]
mod tests;
