//! One monitor run: observe DevLake, plan, write per project, re-run, move the cursor, report.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::time::Instant;

use chrono::{DateTime, Utc};
use futures::{StreamExt, TryStreamExt};
use serde_json::Value;

use crate::cloudwatch::{Datum, MetricsSink};
use crate::deadline::Deadline;
use crate::devlake::models::{status, Blueprint, Pipeline, PipelineQuery};
use crate::devlake::{DevLakeClient, DevLakeError};
use crate::store::{
    FailureEvent, Job, MissingBlueprint, MonitorCursor, MonitorStore, OpenFailure, ProjectState,
    RerunClaim, RerunSettlement, RunRecord, StoreError, StoredProject,
};

use super::commit::{commit_facts, CommitContext, Committed, Recorder};
use super::config::MonitorSettings;
use super::error::MonitorError;
use super::expiry;
use super::flags::{FlagSets, Flags};
use super::payload::{self, Request};
use super::plan::{self, Basis, Lookups, Observations};
use super::project::fold;
use super::remedy;
use super::schedule::{self, Scheduled};
use super::summary::{CursorBrief, FailureBrief, RunIssue, RunStatus, Summary, LISTED_FAILURES};

/// Rows per page of each counted status's listing: the first page is the re-run safety net
/// (a re-run that ended again since the last run is most likely a recent pipeline).
pub const RECENT_FAILURES_PAGE: u32 = 100;
/// Pages of each counted status read at most to reach the oldest open failure; older open
/// failures are looked up a few per run instead.
pub const RECHECK_PAGES: u32 = 5;
/// Above this many unknown blueprints, one paged `GET /blueprints` is cheaper than one
/// `GET /blueprints/{id}` each (first run, rescan).
pub const BLUEPRINT_LIST_THRESHOLD: usize = 20;
/// Rows of `GET /blueprints` each run reads (the sweep for renames and deletions).
pub const SWEEP_PAGE: u32 = 2000;
/// A cached blueprint → project name older than this is asked again.
const BLUEPRINT_CACHE_TTL: chrono::Duration = chrono::Duration::days(1);
/// How long a blueprint answers 404 before its pipelines are dropped as "no project".
const MISSING_GRACE: chrono::Duration = chrono::Duration::hours(1);

/// What this run's blueprint sweep saw.
#[derive(Debug, Default)]
struct Sweep {
    /// Blueprint id → project name (`project_of`).
    names: HashMap<u64, String>,
    /// The page held every blueprint: one missing from it does not exist.
    complete: bool,
    next_page: u32,
    /// Its managed, enabled, scheduled blueprints (missed-run checks).
    scheduled: Vec<Scheduled>,
}

/// Projects written at once.
const COMMIT_CONCURRENCY: usize = 8;
/// Time the metrics snapshot's publish needs before the deadline: a strongly consistent read of
/// every project item, its encoding and a few writes (about a second at 10,000 projects).
const PUBLISH_BUDGET: std::time::Duration = std::time::Duration::from_secs(5);
/// Concurrent `GET /pipelines/{id}` and `GET /blueprints/{id}` (the client caps it further).
const LOOKUP_CONCURRENCY: usize = 8;

/// The ports a run talks through, and its settings.
#[derive(Clone, Copy)]
pub struct Monitor<'a> {
    pub settings: &'a MonitorSettings,
    pub devlake: &'a DevLakeClient,
    pub store: &'a dyn MonitorStore,
    pub sink: &'a dyn MetricsSink,
}

/// A run that stopped: the error, and whether DevLake had answered before it.
pub(super) struct Stopped {
    error: MonitorError,
    devlake_up: Option<bool>,
}

impl From<StoreError> for Stopped {
    fn from(e: StoreError) -> Self {
        Stopped {
            error: e.into(),
            devlake_up: Some(true),
        }
    }
}

impl From<DevLakeError> for Stopped {
    fn from(e: DevLakeError) -> Self {
        Stopped {
            error: e.into(),
            devlake_up: Some(false),
        }
    }
}

/// Work left for the next run because the Lambda deadline was near.
pub(super) fn deadline_issue(what: String) -> RunIssue {
    RunIssue {
        project: None,
        pipeline_id: None,
        blueprint_id: None,
        message: format!("the Lambda deadline came first: {what}"),
    }
}

/// The name a blueprint's pipelines are recorded under: its project's; a legacy blueprint
/// without a project goes by its own name. Empty = not recorded.
fn project_of(b: &Blueprint) -> String {
    if !b.project_name.trim().is_empty() {
        b.project_name.clone()
    } else {
        b.name.clone()
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
    /// `started_at` by the caller's clock. The run record's `finishedAt` is `started_at` plus the
    /// run's own duration: `devlake_monitor_last_run_timestamp_seconds` says when the last run
    /// finished, not when it was scheduled (a late or replayed delivery would look older), and
    /// no clock is read here.
    async fn run_started(
        &self,
        now: DateTime<Utc>,
        started_at: DateTime<Utc>,
        request: Request,
        deadline: Deadline,
    ) -> Result<Summary, MonitorError> {
        let started = Instant::now();
        let calls_before = self.devlake.calls().total();
        // The run's DevLake calls start no retry wait that would end past the deadline.
        let devlake = self.devlake.with_deadline(deadline);
        let bounded = Monitor {
            devlake: &devlake,
            ..*self
        };
        let mut outcome = match bounded.execute(now, request, deadline).await {
            // DevLake did not answer before the deadline: nothing after that point was
            // written (the cursor is saved last and every write before it is idempotent), so
            // the next run starts from consistent state; this one reports what stopped it.
            Err(stopped)
                if matches!(
                    stopped.error,
                    MonitorError::DevLake(DevLakeError::Deadline { .. })
                ) =>
            {
                Ok((
                    Summary::cut_short(
                        now,
                        request.dry_run,
                        request.rescan,
                        deadline_issue(stopped.error.to_string()),
                    ),
                    BTreeMap::new(),
                ))
            }
            other => other,
        };
        // Whatever the run committed reaches the metrics page through the published snapshot.
        // Every run publishes, even one that committed nothing or stopped: a commit whose own
        // publish never happened (a run or a push path that died in between) is published here.
        if !request.dry_run {
            if let (Err(issue), Ok((summary, _))) =
                (self.publish(now, deadline).await, &mut outcome)
            {
                summary.errors.push(issue);
                summary.status = RunStatus::Partial;
            }
        }
        let duration_ms = started.elapsed().as_millis() as u64;
        let finished_at = started_at + chrono::Duration::milliseconds(duration_ms as i64);
        let devlake_calls = self.devlake.calls().total().saturating_sub(calls_before);
        match outcome {
            Ok((mut summary, per_project)) => {
                summary.duration_ms = duration_ms;
                summary.devlake_calls = devlake_calls;
                // The log line and the run record carry a copy whose lists keep their first
                // entries (totals under `truncated`), within both their size limits.
                let recorded = summary.recorded();
                tracing::info!(
                    status = ?summary.status,
                    dry_run = summary.dry_run,
                    new_failures = summary.new_failures,
                    already_recorded = summary.already_recorded,
                    pipelines_inspected = summary.pipelines_inspected,
                    stuck = summary.stuck,
                    reruns = summary.reruns,
                    devlake_calls,
                    errors = summary.errors.len(),
                    duration_ms,
                    summary = %recorded,
                    "monitor run finished"
                );
                if !request.dry_run {
                    let success = summary.status == RunStatus::Ok;
                    let value = recorded;
                    self.record(finished_at, success, Some(true), duration_ms, value)
                        .await;
                    self.emit(self.datums(
                        Some(&summary),
                        &per_project,
                        success,
                        Some(true),
                        duration_ms,
                    ))
                    .await;
                }
                Ok(summary)
            }
            Err(stopped) => {
                tracing::error!(
                    error = %stopped.error,
                    retryable = stopped.error.is_retryable(),
                    devlake_calls,
                    duration_ms,
                    "monitor run failed; cursor not advanced"
                );
                if !request.dry_run {
                    let value = serde_json::json!({
                        "status": "failed",
                        "error": stopped.error.to_string(),
                        "devlakeCalls": devlake_calls,
                        "durationMs": duration_ms,
                    });
                    self.record(finished_at, false, stopped.devlake_up, duration_ms, value)
                        .await;
                    self.emit(self.datums(
                        None,
                        &BTreeMap::new(),
                        false,
                        stopped.devlake_up,
                        duration_ms,
                    ))
                    .await;
                }
                Err(stopped.error)
            }
        }
    }

    /// Publishes the metrics snapshot (`crate::snapshot`); a failure is a run issue (the run is
    /// `partial`, so `devlake_monitor_last_run_success` says the page may be stale) and the next
    /// run publishes again.
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

    async fn record(
        &self,
        finished_at: DateTime<Utc>,
        success: bool,
        devlake_up: Option<bool>,
        duration_ms: u64,
        summary: Value,
    ) {
        let run = RunRecord {
            job: Job::Monitor,
            finished_at,
            success,
            devlake_up,
            duration_ms,
            summary,
        };
        if let Err(e) = self.store.record_run(&run).await {
            tracing::warn!(error = %e, "could not record the monitor run");
        }
    }

    /// The run's CloudWatch datums. `RunSuccess`, `RunDurationMs` and `Errors` are the series
    /// the automation sends too (the sink adds `Function=monitor`); a failed run sends those and
    /// `DevLakeUp` only.
    fn datums(
        &self,
        summary: Option<&Summary>,
        per_project: &BTreeMap<String, u64>,
        success: bool,
        devlake_up: Option<bool>,
        duration_ms: u64,
    ) -> Vec<Datum> {
        let mut datums = vec![
            Datum::run_success(success),
            Datum::run_duration_ms(duration_ms),
            // A stopped run counts as one error, as in the automation.
            Datum::errors(summary.map_or(1, |s| s.errors.len() as u64)),
        ];
        if let Some(up) = devlake_up {
            datums.push(Datum::flag("DevLakeUp", up));
        }
        if let Some(s) = summary {
            datums.push(Datum::count("NewFailures", s.new_failures as f64));
            datums.push(Datum::count(
                "PipelinesInspected",
                s.pipelines_inspected as f64,
            ));
            datums.push(Datum::count("StuckPipelines", s.stuck as f64));
            datums.push(Datum::count("Reruns", s.reruns as f64));
            if self.settings.project_dimension {
                for (project, n) in per_project {
                    datums.push(
                        Datum::count("NewFailures", *n as f64)
                            .with_dimension("ProjectName", project),
                    );
                }
            }
        }
        datums
    }

    async fn emit(&self, datums: Vec<Datum>) {
        if let Err(e) = self.sink.emit(&datums).await {
            tracing::warn!(error = %e, "could not emit CloudWatch metrics; the run is not affected");
        }
    }

    async fn execute(
        &self,
        now: DateTime<Utc>,
        request: Request,
        deadline: Deadline,
    ) -> Result<(Summary, BTreeMap<String, u64>), Stopped> {
        let settings = self.settings;
        let dry_run = request.dry_run;
        let mut errors: Vec<RunIssue> = Vec::new();

        let loaded = self.store.load_cursor().await.map_err(|e| Stopped {
            error: e.into(),
            devlake_up: None,
        })?;
        let basis = match (&loaded, request.rescan) {
            (Some(cursor), false) => match cursor.lookback_from {
                // An earlier look-back did not finish its listing: finish it.
                Some(window_start) => Basis::Lookback { window_start },
                None => Basis::Cursor(cursor),
            },
            _ => Basis::Lookback {
                window_start: now - settings.initial_lookback,
            },
        };

        let obs = self.observe(basis, loaded.as_ref(), deadline).await?;
        if !obs.listed_complete {
            errors.push(RunIssue {
                project: None,
                pipeline_id: obs.listed.iter().map(|p| p.id).min(),
                blueprint_id: None,
                message: match basis {
                    Basis::Cursor(_) => {
                        "the Lambda deadline came first: the pipeline listing \
                                         did not reach the cursor; the next run starts again \
                                         from the same cursor"
                    }
                    Basis::Lookback { .. } => {
                        "the Lambda deadline came first: the pipeline \
                                               listing did not reach the look-back floor; the \
                                               next run looks back again from the same start"
                    }
                }
                .to_string(),
            });
        }
        let needed = plan::lookups_needed(basis, &obs);
        let lookups = self.look_up(&needed.ids, deadline, &mut errors).await?;
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

        // Project names of every blueprint involved.
        let blueprint_ids: BTreeSet<u64> = plan
            .facts
            .iter()
            .chain(plan.stuck.iter())
            .map(|p| p.blueprint_id)
            .filter(|id| *id != 0)
            .collect();
        let sweep = self
            .sweep(loaded.as_ref().map_or(1, |c| c.sweep_page), &mut errors)
            .await?;
        plan.cursor.sweep_page = sweep.next_page;
        let mut missing = std::mem::take(&mut plan.cursor.missing_blueprints);
        let names = self
            .project_names(
                &blueprint_ids,
                request.rescan,
                &sweep,
                &mut missing,
                dry_run,
                now,
                deadline,
                &mut errors,
            )
            .await?;
        plan.cursor.missing_blueprints = missing;

        let mut watch: BTreeSet<u64> = plan.cursor.watch.iter().copied().collect();
        let mut by_project: BTreeMap<String, Vec<&Pipeline>> = BTreeMap::new();
        let mut skipped = 0u64;
        for fact in &plan.facts {
            match names.get(&fact.blueprint_id).map(String::as_str) {
                _ if fact.blueprint_id == 0 => skipped += 1,
                Some("") => skipped += 1,
                Some(name) => by_project.entry(name.to_string()).or_default().push(fact),
                // Blueprint not resolved this time: look at the pipeline again next run.
                None => {
                    watch.insert(fact.id);
                }
            }
        }
        if skipped > 0 {
            tracing::debug!(skipped, "finished pipelines without a project not recorded");
        }

        // Stuck flags: set for projects with a pipeline running too long, cleared when none is.
        let flags_before = FlagSets::from_cursor(loaded.as_ref());
        let mut stuck_now: BTreeMap<String, u64> = BTreeMap::new();
        let stuck_before = &flags_before.stuck;
        for p in &plan.stuck {
            match names.get(&p.blueprint_id) {
                Some(name) if !name.is_empty() => {
                    let entry = stuck_now.entry(name.clone()).or_insert(p.id);
                    *entry = (*entry).min(p.id);
                    tracing::warn!(project = %name, pipeline_id = p.id, began_at = ?p.began_at, "pipeline stuck");
                }
                Some(_) => {}
                // Name not resolved this time: a flag it raised before stays up.
                None => stuck_now.extend(
                    stuck_before
                        .iter()
                        .filter(|(_, id)| **id == p.id)
                        .map(|(name, id)| (name.clone(), *id)),
                ),
            }
        }
        // Missed scheduled runs of the managed blueprints, and whether last run's cancels of
        // stuck pipelines took.
        let tracked = schedule::track(
            loaded.as_ref().map_or(&[][..], |c| &c.schedules),
            &flags_before.schedule_missed,
            &schedule::Page {
                names: &sweep.names,
                scheduled: &sweep.scheduled,
                complete: sweep.complete,
            },
            &activity,
            listed_complete,
            now,
        );
        for m in &tracked.found {
            tracing::warn!(project = %m.project, blueprint_id = m.blueprint_id, due = %m.due, "scheduled run missed: no pipeline of the blueprint since it was due");
        }
        let mut verified = if settings.stuck_action.cancels() {
            remedy::verify(
                loaded.as_ref().map_or(&[][..], |c| &c.stuck_cancels),
                &flags_before.cancel_failed,
                &plan.unfinished,
                &lookups.unknown.iter().copied().collect(),
                now,
            )
        } else {
            remedy::Verified::default()
        };
        for (project, id) in &verified.failed {
            tracing::error!(project = %project, pipeline_id = id, "the cancel of a stuck pipeline did not take: it is still running");
        }
        let flags_now = FlagSets {
            stuck: stuck_now,
            schedule_missed: tracked.missed.clone(),
            cancel_failed: verified.failed.clone(),
        };
        let mut touched: BTreeSet<String> = by_project.keys().cloned().collect();
        touched.extend(flags_before.changed(&flags_now));

        let touched_list: Vec<String> = touched.iter().cloned().collect();
        let mut states = if touched_list.is_empty() {
            HashMap::new()
        } else {
            self.store.project_states(&touched_list).await?
        };
        let counted = |s: &str| settings.counts_as_failure(s);

        // In a dry run, ask which failures are stored already instead of trying to write them.
        let recorded_before: HashSet<String> = if dry_run {
            let candidates: Vec<FailureEvent> = by_project
                .iter()
                .flat_map(|(name, facts)| {
                    facts
                        .iter()
                        .filter(|p| counted(&p.status))
                        .filter_map(move |p| {
                            p.finished_at
                                .map(|f| super::project::failure_event(name, p, f))
                        })
                })
                .collect();
            if candidates.is_empty() {
                HashSet::new()
            } else {
                self.store.recorded_failures(&candidates).await?
            }
        } else {
            HashSet::new()
        };

        let mut new_events: Vec<FailureEvent> = Vec::new();
        // Failures the events function recorded before this run met them: already counted, but
        // this run's to re-run as if it had recorded them itself.
        let mut adopted: Vec<String> = Vec::new();
        let mut already = 0u64;
        let mut final_flags = flags_now.clone();
        let no_facts: Vec<&Pipeline> = Vec::new();
        let jobs: Vec<(&String, &[&Pipeline], Flags, StoredProject)> = touched
            .iter()
            .map(|name| {
                let facts = by_project.get(name).unwrap_or(&no_facts).as_slice();
                (
                    name,
                    facts,
                    flags_now.of(name),
                    states.remove(name).unwrap_or_default(),
                )
            })
            .collect();
        // Projects are independent: commit several at once (each one's commits stay in order).
        let cx = CommitContext {
            store: self.store,
            settings,
            recorder: Recorder::Monitor,
            now,
        };
        let mut results: Vec<(&String, &[&Pipeline], Result<Committed, StoreError>)> = if dry_run {
            jobs.into_iter()
                .map(|(name, facts, flags, stored)| {
                    let folded = fold(
                        &stored.state,
                        name,
                        facts,
                        &recorded_before,
                        flags,
                        counted,
                        true,
                    );
                    let known = facts
                        .iter()
                        .filter(|p| counted(&p.status))
                        .filter_map(|p| {
                            p.finished_at
                                .map(|f| super::project::failure_event(name, p, f).key())
                        })
                        .filter(|k| recorded_before.contains(k))
                        .count() as u64;
                    let committed = Committed {
                        written: folded.events,
                        duplicates: known,
                        adopted: folded.adopted,
                        state: folded.state,
                    };
                    (name, facts, Ok(committed))
                })
                .collect()
        } else {
            futures::stream::iter(
                jobs.into_iter()
                    .map(|(name, facts, flags, stored)| async move {
                        (
                            name,
                            facts,
                            commit_facts(cx, name, facts, Some(flags), stored, &|_| {}).await,
                        )
                    }),
            )
            .buffer_unordered(COMMIT_CONCURRENCY)
            .collect()
            .await
        };
        results.sort_by(|a, b| a.0.cmp(b.0));
        let mut open_failures = std::mem::take(&mut plan.cursor.open_failures);
        for (name, facts, result) in results {
            match result {
                Ok(committed) => {
                    already += committed.duplicates;
                    new_events.extend(committed.written);
                    adopted.extend(committed.adopted);
                    track_open_failure(&mut open_failures, name, facts, &committed.state, counted);
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
                    final_flags.restore(name, &flags_before);
                }
            }
        }
        for event in &new_events {
            tracing::info!(
                project = %event.project_name,
                pipeline_id = event.pipeline_id,
                blueprint_id = event.blueprint_id,
                status = %event.status,
                finished_at = %event.finished_at,
                cause = %event.cause,
                dry_run,
                "failure recorded"
            );
        }

        let rerun_ids = self
            .auto_rerun(
                &by_project,
                &new_events,
                &adopted,
                &plan.unfinished,
                dry_run,
                now,
                deadline,
                &mut errors,
            )
            .await?;
        watch.extend(rerun_ids.iter().copied());

        // STUCK_ACTION: re-run the cancels that took, cancel what is stuck.
        let remedied = self
            .remedy_stuck(
                &plan.stuck,
                &names,
                &plan.facts,
                &plan.unfinished,
                &mut verified,
                dry_run,
                now,
                deadline,
                &mut errors,
            )
            .await?;
        watch.extend(remedied.reruns.iter().copied());

        // Once a day (the first run of each UTC day): projects DevLake no longer has leave the
        // table, and with them their alerts.
        let previous_run = loaded.as_ref().and_then(|c| c.updated_at);
        if !dry_run && expiry::due(previous_run, now) {
            match self.remove_gone_projects(&sweep, now, deadline).await {
                Ok(removed) => {
                    open_failures.retain(|o| !removed.contains(&o.project));
                    verified.pending.retain(|c| !removed.contains(&c.project));
                    for name in &removed {
                        final_flags.remove(name);
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "removing deleted projects failed; tomorrow's first run tries again");
                    errors.push(RunIssue {
                        project: None,
                        pipeline_id: None,
                        blueprint_id: None,
                        message: format!("removing deleted projects: {e}"),
                    });
                }
            }
        }
        open_failures.sort_by_key(|o| o.pipeline_id);
        plan.cursor.open_failures = open_failures;
        plan.cursor.watch = watch.into_iter().collect();
        final_flags.store_in(&mut plan.cursor);
        plan.cursor.schedules = tracked.watches;
        plan.cursor.stuck_cancels = verified.pending;
        let saved = if dry_run {
            false
        } else {
            let saved = self
                .store
                .save_cursor(&plan.cursor, loaded.as_ref().map(|c| c.revision))
                .await?;
            if !saved {
                // Both cursors are complete as of their own run; keeping the other is safe.
                tracing::info!("a concurrent run saved the cursor first; keeping its cursor");
            }
            saved
        };

        // Housekeeping after the cursor is safe: it can never hold the run's progress back.
        let expiry = if dry_run || !expiry::due(previous_run, now) {
            None
        } else {
            match expiry::expire_recent_failures(
                self.store,
                now,
                settings.failure_window,
                settings.retention,
                deadline,
            )
            .await
            {
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
        };

        let mut per_project: BTreeMap<String, u64> = BTreeMap::new();
        for e in &new_events {
            *per_project.entry(e.project_name.clone()).or_default() += 1;
        }
        let summary = Summary {
            status: if errors.is_empty() {
                RunStatus::Ok
            } else {
                RunStatus::Partial
            },
            dry_run,
            rescan: request.rescan,
            now,
            new_failures: new_events.len() as u64,
            already_recorded: already,
            pipelines_inspected: plan.inspected as u64,
            stuck: plan.stuck.len() as u64,
            reruns: rerun_ids.len() as u64,
            devlake_calls: 0,
            skipped_without_project: skipped,
            cursor: CursorBrief {
                max_pipeline_id: plan.cursor.max_pipeline_id,
                watching: plan.cursor.watch.len(),
                saved,
            },
            failures: new_events
                .iter()
                .take(LISTED_FAILURES)
                .map(FailureBrief::from)
                .collect(),
            rerun_pipeline_ids: rerun_ids,
            schedule_missed: plan.cursor.schedule_missed.iter().cloned().collect(),
            cancelled_pipeline_ids: remedied.cancelled,
            cancels_not_taken: plan.cursor.stuck_cancel_failed.values().copied().collect(),
            stuck_rerun_pipeline_ids: remedied.reruns,
            expiry,
            conflicts: Vec::new(),
            errors,
            duration_ms: 0,
        };
        Ok((summary, per_project))
    }

    /// The listings of a run, fetched concurrently: the unfiltered list down to the cursor, the
    /// unfinished pipelines (pending, re-run, running), and each counted status down to the
    /// oldest open failure.
    async fn observe(
        &self,
        basis: Basis<'_>,
        loaded: Option<&MonitorCursor>,
        deadline: Deadline,
    ) -> Result<Observations, DevLakeError> {
        let listed = self.list_new(basis, deadline);
        let unfinished = futures::future::try_join_all(
            [
                PipelineQuery {
                    pending: true,
                    ..Default::default()
                },
                PipelineQuery {
                    status: Some(status::RERUN.to_string()),
                    ..Default::default()
                },
                PipelineQuery {
                    status: Some(status::RUNNING.to_string()),
                    ..Default::default()
                },
            ]
            .into_iter()
            .map(|query| async move {
                self.devlake.pipelines(&query).try_collect::<Vec<_>>().await
            }),
        );
        let oldest_open = loaded
            .and_then(|c| c.open_failures.iter().map(|o| o.pipeline_id).min())
            .unwrap_or(u64::MAX);
        let recent = futures::future::try_join_all(
            self.settings
                .failure_statuses
                .iter()
                .map(|status| self.list_status_down_to(status, oldest_open, deadline)),
        );
        let ((listed, listed_complete), unfinished, recent) =
            futures::try_join!(listed, unfinished, recent)?;
        let recent_covers_from = recent.iter().map(|(_, from)| *from).max().unwrap_or(0);
        Ok(Observations {
            listed,
            listed_complete,
            pending: unfinished.into_iter().flatten().collect(),
            recent: recent.into_iter().flat_map(|(rows, _)| rows).collect(),
            recent_covers_from,
        })
    }

    /// `GET /pipelines?status=S` newest first: the first page always (a re-run that ended again
    /// since the last run is likely a recent one), then on until a page reaches `down_to` (the
    /// oldest open failure) or [`RECHECK_PAGES`] pages were read. Returns the rows and the
    /// lowest id from which the listing is complete (0: all of it).
    async fn list_status_down_to(
        &self,
        status: &str,
        down_to: u64,
        deadline: Deadline,
    ) -> Result<(Vec<Pipeline>, u64), DevLakeError> {
        let query = PipelineQuery {
            status: Some(status.to_string()),
            ..Default::default()
        };
        let size = RECENT_FAILURES_PAGE;
        let mut rows: Vec<Pipeline> = Vec::new();
        let mut page = 1u32;
        let mut covered_from = 0;
        loop {
            let answer = match self.devlake.pipelines_page(&query, page, size).await {
                Ok(answer) => answer,
                // Cut off at the deadline after the first page: what was read stands.
                Err(DevLakeError::Deadline { .. }) if page > 1 => return Ok((rows, covered_from)),
                Err(e) => return Err(e),
            };
            let n = answer.pipelines.len();
            let lowest = answer.pipelines.iter().map(|p| p.id).min();
            rows.extend(answer.pipelines);
            let ended = n < size as usize || rows.len() as i64 >= answer.count;
            if ended {
                return Ok((rows, 0));
            }
            let lowest = lowest.unwrap_or(0);
            if lowest <= down_to || page >= RECHECK_PAGES || deadline.passed() {
                return Ok((rows, lowest));
            }
            covered_from = lowest;
            page += 1;
        }
    }

    /// `GET /pipelines` newest first until a page reaches the cursor (or, looking back, a page
    /// holds pipelines created before the window minus `STUCK_AFTER_HOURS`: anything older that
    /// finished inside the window ran longer than "stuck" and is watched through the pending
    /// list). The whole last page is kept: its older rows are free evidence for watched ids.
    async fn list_new(
        &self,
        basis: Basis<'_>,
        deadline: Deadline,
    ) -> Result<(Vec<Pipeline>, bool), DevLakeError> {
        let size = self.devlake.page_size();
        let floor = match basis {
            Basis::Lookback { window_start } => Some(window_start - self.settings.stuck_after),
            Basis::Cursor(_) => None,
        };
        let mut rows: Vec<Pipeline> = Vec::new();
        let mut page = 1u32;
        loop {
            if page > 1 && deadline.passed() {
                return Ok((rows, false));
            }
            let answer = match self
                .devlake
                .pipelines_page(&PipelineQuery::default(), page, size)
                .await
            {
                Ok(answer) => answer,
                // Cut off at the deadline after the first page: a listing cut short.
                Err(DevLakeError::Deadline { .. }) if page > 1 => return Ok((rows, false)),
                Err(e) => return Err(e),
            };
            let n = answer.pipelines.len();
            let reached = answer.pipelines.iter().any(|p| match (basis, floor) {
                (Basis::Cursor(c), _) => p.id <= c.max_pipeline_id,
                (_, Some(floor)) => p.created_at.is_some_and(|t| t < floor),
                _ => false,
            });
            rows.extend(answer.pipelines);
            if reached || n < size as usize || rows.len() as i64 >= answer.count {
                return Ok((rows, true));
            }
            page += 1;
        }
    }

    /// `GET /pipelines/{id}` for watched pipelines no listing showed.
    async fn look_up(
        &self,
        ids: &[u64],
        deadline: Deadline,
        errors: &mut Vec<RunIssue>,
    ) -> Result<Lookups, Stopped> {
        let mut lookups = Lookups::default();
        if ids.is_empty() {
            return Ok(lookups);
        }
        let results = fetch_each(ids, deadline, |id| self.devlake.pipeline(id)).await;
        let mut postponed = 0usize;
        for (id, result) in results {
            match result {
                Some(Ok(p)) => lookups.found.push(p),
                Some(Err(e)) if e.is_not_found() => {
                    tracing::info!(pipeline_id = id, "watched pipeline no longer exists");
                    lookups.gone.push(id);
                }
                Some(Err(e)) if e.is_fatal() => return Err(e.into()),
                Some(Err(e)) => {
                    tracing::warn!(pipeline_id = id, error = %e, "watched pipeline not looked up; kept for the next run");
                    errors.push(RunIssue {
                        project: None,
                        pipeline_id: Some(id),
                        blueprint_id: None,
                        message: e.to_string(),
                    });
                    lookups.unknown.push(id);
                }
                None => {
                    postponed += 1;
                    lookups.unknown.push(id);
                }
            }
        }
        if postponed > 0 {
            errors.push(deadline_issue(format!(
                "{postponed} watched pipeline(s) not looked up; kept for the next run"
            )));
        }
        Ok(lookups)
    }

    /// One page of `GET /blueprints` ([`SWEEP_PAGE`] rows), rotating over the pages from run to
    /// run: the current project name of every blueprint on it, so a renamed project is recorded
    /// under its new name as soon as the sweep passes its blueprint (every run while there are
    /// at most [`SWEEP_PAGE`] blueprints). An error only skips the sweep for this run.
    async fn sweep(&self, page: u32, errors: &mut Vec<RunIssue>) -> Result<Sweep, Stopped> {
        let page = page.max(1);
        match self
            .devlake
            .blueprints_page(&Default::default(), page, SWEEP_PAGE)
            .await
        {
            Ok(answer) => {
                let n = answer.blueprints.len() as i64;
                let last =
                    n < SWEEP_PAGE as i64 || i64::from(page) * SWEEP_PAGE as i64 >= answer.count;
                let label = &self.settings.managed_label;
                Ok(Sweep {
                    names: answer
                        .blueprints
                        .iter()
                        .map(|b| (b.id, project_of(b)))
                        .collect(),
                    complete: page == 1 && n >= answer.count,
                    next_page: if last { 1 } else { page + 1 },
                    scheduled: answer
                        .blueprints
                        .iter()
                        .filter_map(|b| Scheduled::of(b, &project_of(b), label))
                        .collect(),
                })
            }
            Err(e) if e.is_fatal() => Err(e.into()),
            Err(e) => {
                tracing::warn!(error = %e, "blueprint sweep skipped this run");
                errors.push(RunIssue {
                    project: None,
                    pipeline_id: None,
                    blueprint_id: None,
                    message: format!("blueprint sweep: {e}"),
                });
                Ok(Sweep {
                    next_page: page,
                    ..Sweep::default()
                })
            }
        }
    }

    /// Blueprint → project names: this run's sweep first, then the table (entries resolved in
    /// the last [`BLUEPRINT_CACHE_TTL`]), then DevLake. A 404 is not taken for "deleted" at
    /// once: the blueprint's pipelines wait (watched) until it is found again, or has answered
    /// 404 for [`MISSING_GRACE`], or a complete sweep lacks it. `refresh` (rescan) ignores the
    /// table.
    #[allow(clippy::too_many_arguments)]
    async fn project_names(
        &self,
        ids: &BTreeSet<u64>,
        refresh: bool,
        sweep: &Sweep,
        missing: &mut Vec<MissingBlueprint>,
        dry_run: bool,
        now: DateTime<Utc>,
        deadline: Deadline,
        errors: &mut Vec<RunIssue>,
    ) -> Result<HashMap<u64, String>, Stopped> {
        if ids.is_empty() {
            return Ok(HashMap::new());
        }
        let wanted: Vec<u64> = ids.iter().copied().collect();
        let cached = if refresh {
            HashMap::new()
        } else {
            self.store.blueprint_projects(&wanted).await?
        };
        let mut names: HashMap<u64, String> = HashMap::new();
        let mut fetched: Vec<(u64, String)> = Vec::new();
        for id in &wanted {
            let entry = cached.get(id);
            match sweep.names.get(id) {
                Some(name) => {
                    // Renamed (or never cached, or due): store what the sweep saw.
                    if entry.is_none_or(|c| {
                        c.project_name != *name || c.resolved_at < now - BLUEPRINT_CACHE_TTL / 2
                    }) {
                        fetched.push((*id, name.clone()));
                    }
                    names.insert(*id, name.clone());
                }
                None if sweep.complete => {
                    // Every blueprint is on the page: this one is gone.
                    fetched.push((*id, String::new()));
                    names.insert(*id, String::new());
                }
                None => {
                    if let Some(c) = entry.filter(|c| c.resolved_at >= now - BLUEPRINT_CACHE_TTL) {
                        names.insert(*id, c.project_name.clone());
                    }
                }
            }
        }
        let mut unknown: Vec<u64> = wanted
            .into_iter()
            .filter(|id| !names.contains_key(id))
            .collect();
        if !unknown.is_empty() && unknown.len() > BLUEPRINT_LIST_THRESHOLD {
            let all: Vec<Blueprint> = self
                .devlake
                .blueprints(&Default::default())
                .try_collect()
                .await?;
            tracing::info!(
                blueprints = all.len(),
                unknown = unknown.len(),
                "listed every blueprint to map pipelines to projects"
            );
            let wanted: HashSet<u64> = unknown.iter().copied().collect();
            // Cache every blueprint: the next unknown one is then likely known already.
            fetched.extend(all.iter().map(|b| (b.id, project_of(b))));
            for b in all.iter().filter(|b| wanted.contains(&b.id)) {
                names.insert(b.id, project_of(b));
            }
            unknown.retain(|id| !names.contains_key(id));
        }
        let results = fetch_each(&unknown, deadline, |id| self.devlake.blueprint(id)).await;
        let mut postponed = 0usize;
        for (id, result) in results {
            match result {
                Some(Ok(b)) => {
                    missing.retain(|m| m.blueprint_id != id);
                    fetched.push((id, project_of(&b)));
                    names.insert(id, project_of(&b));
                }
                Some(Err(e)) if e.is_not_found() => {
                    let since = match missing.iter().find(|m| m.blueprint_id == id) {
                        Some(m) => m.since,
                        None => {
                            missing.push(MissingBlueprint {
                                blueprint_id: id,
                                since: now,
                            });
                            now
                        }
                    };
                    if now - since >= MISSING_GRACE {
                        // Deleted: its pipelines have no project any more (recorded as skipped).
                        missing.retain(|m| m.blueprint_id != id);
                        fetched.push((id, String::new()));
                        names.insert(id, String::new());
                    } else {
                        tracing::info!(blueprint_id = id, since = %since, "blueprint not found; its pipelines wait for the next run");
                    }
                }
                Some(Err(e)) if e.is_fatal() => return Err(e.into()),
                Some(Err(e)) => {
                    tracing::warn!(blueprint_id = id, error = %e, "blueprint not resolved; its pipelines are looked at again next run");
                    errors.push(RunIssue {
                        project: None,
                        pipeline_id: None,
                        blueprint_id: Some(id),
                        message: e.to_string(),
                    });
                }
                None => postponed += 1,
            }
        }
        if postponed > 0 {
            errors.push(deadline_issue(format!(
                "{postponed} blueprint(s) not resolved; their pipelines are looked at again next run"
            )));
        }
        if !dry_run && !fetched.is_empty() {
            self.store.save_blueprint_projects(&fetched, now).await?;
        }
        Ok(names)
    }

    /// Deletes the items of projects DevLake no longer has (deleted, or renamed away): their
    /// alerts clear and the metrics page stops showing them. Only on a complete listing of the
    /// blueprints (every project has one; a deleted project's blueprint is deleted with it),
    /// which also refreshes the whole blueprint → project cache. Returns the names removed.
    async fn remove_gone_projects(
        &self,
        sweep: &Sweep,
        now: DateTime<Utc>,
        deadline: Deadline,
    ) -> Result<Vec<String>, MonitorError> {
        let live: HashSet<String> = if sweep.complete {
            sweep.names.values().cloned().collect()
        } else {
            if deadline.passed() {
                return Ok(Vec::new());
            }
            let all: Vec<(u64, String)> = self
                .devlake
                .blueprints(&Default::default())
                .map_ok(|b| (b.id, project_of(&b)))
                .try_collect()
                .await?;
            self.store.save_blueprint_projects(&all, now).await?;
            all.into_iter().map(|(_, name)| name).collect()
        };
        let mut removed = Vec::new();
        for stored in self.store.all_projects().await? {
            let name = &stored.state.project_name;
            if name.is_empty() || live.contains(name) {
                continue;
            }
            if self.store.delete_project(name, stored.revision).await? {
                tracing::info!(project = %name, "project no longer in DevLake; its item is removed");
                removed.push(name.clone());
            }
        }
        Ok(removed)
    }

    /// Re-runs each project's newest failure when it was recorded by this run (or by the events
    /// function before this run met it: `adopted`), its cause can heal by retrying (not `auth`,
    /// `not_found` or `cancelled`), nothing of its blueprint is pending, and `AUTO_RERUN_MAX`
    /// allows it; then takes up the claims earlier
    /// runs released (their request failed) or left in progress past their lease (they
    /// stopped before sending it). The claim in the table comes first and is settled after
    /// DevLake answers, so a failure is re-run at least once and, unless a run stops between
    /// DevLake's acceptance and the settlement, at most once.
    #[allow(clippy::too_many_arguments)]
    async fn auto_rerun(
        &self,
        by_project: &BTreeMap<String, Vec<&Pipeline>>,
        new_events: &[FailureEvent],
        adopted: &[String],
        unfinished: &BTreeMap<u64, Pipeline>,
        dry_run: bool,
        now: DateTime<Utc>,
        deadline: Deadline,
        errors: &mut Vec<RunIssue>,
    ) -> Result<Vec<u64>, Stopped> {
        let max = self.settings.auto_rerun_max;
        if max == 0 {
            return Ok(Vec::new());
        }
        let new_keys: HashSet<String> = new_events
            .iter()
            .map(FailureEvent::key)
            .chain(adopted.iter().cloned())
            .collect();
        let busy_blueprints: HashSet<u64> = unfinished.values().map(|p| p.blueprint_id).collect();
        let mut rerun = Vec::new();
        let mut tried = HashSet::new();
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
            if dry_run {
                rerun.push(latest.id);
                continue;
            }
            if deadline.passed() {
                errors.push(deadline_issue(format!(
                    "re-run of pipeline {} and later ones not requested",
                    latest.id
                )));
                return Ok(rerun);
            }
            tried.insert(latest.id);
            if self
                .rerun_once(Some(name), latest, &key, now, errors)
                .await?
            {
                rerun.push(latest.id);
            }
        }
        if dry_run {
            return Ok(rerun);
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
    ) -> Result<bool, Stopped> {
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

/// Pending re-run claims taken up per run (each costs a `GET /pipelines/{id}`): bounds a run's
/// calls while DevLake refuses many re-runs; the rest wait for the next runs.
pub const PENDING_RERUNS_PER_RUN: usize = 20;

/// How long a re-run claim stays in progress before another run may take it up: the longest
/// a Lambda invocation lives, so the run that holds it has ended by then.
pub const RERUN_CLAIM_LEASE: chrono::Duration = chrono::Duration::minutes(15);

/// Keeps `open` holding the project's latest failure while its latest finished pipeline is
/// one: when this run's facts moved the project's latest, its entry is replaced (or dropped on
/// a success).
fn track_open_failure(
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

/// `fetch` for each id, `LOOKUP_CONCURRENCY` at a time. Ids whose turn comes after the deadline
/// get `None` (looked at again next run).
async fn fetch_each<T, F, Fut>(
    ids: &[u64],
    deadline: Deadline,
    fetch: F,
) -> Vec<(u64, Option<Result<T, DevLakeError>>)>
where
    F: Fn(u64) -> Fut,
    Fut: std::future::Future<Output = Result<T, DevLakeError>>,
{
    futures::stream::iter(ids.iter().copied())
        .map(|id| {
            let call = (!deadline.passed()).then(|| fetch(id));
            async move {
                match call {
                    Some(call) => (id, Some(call.await)),
                    None => (id, None),
                }
            }
        })
        .buffer_unordered(LOOKUP_CONCURRENCY)
        .collect()
        .await
}

#[cfg(test)]
mod tests {
    //! Failure paths with the in-memory store and sink. DevLake is a closed local port, so
    //! every call fails fast with a transport error; the happy paths run against the simulator
    //! in `tests/tests/monitor.rs`.

    use super::*;
    use crate::cloudwatch::MemorySink;
    use crate::devlake::ClientConfig;
    use crate::store::{MemoryStore, MonitorCursor};
    use serde_json::json;

    fn unreachable_devlake() -> DevLakeClient {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        DevLakeClient::new(ClientConfig {
            endpoint: format!("http://127.0.0.1:{port}"),
            max_retries: 0,
            ..ClientConfig::default()
        })
        .unwrap()
    }

    fn flags(sink: &MemorySink, name: &str) -> Vec<f64> {
        sink.named(name).iter().map(|d| d.value).collect()
    }

    #[tokio::test]
    async fn a_refused_payload_touches_nothing() {
        let (store, sink, devlake) = (MemoryStore::new(), MemorySink::new(), unreachable_devlake());
        let settings = MonitorSettings::default();
        let monitor = Monitor {
            settings: &settings,
            devlake: &devlake,
            store: &store,
            sink: &sink,
        };
        let err = monitor
            .handle(&json!({"dryRun": 1}), Utc::now(), Deadline::none())
            .await
            .unwrap_err();
        assert_eq!(err.error_type(), "InvalidPayload");
        assert!(err.to_string().contains("`dryRun`"));
        assert_eq!(devlake.calls().total(), 0);
        assert_eq!(sink.calls(), 0);
        assert!(store.run(Job::Monitor).is_none() && store.cursor().is_none());
    }

    #[tokio::test]
    async fn devlake_down_is_a_function_error_recorded_with_devlake_up_zero() {
        let (store, sink, devlake) = (MemoryStore::new(), MemorySink::new(), unreachable_devlake());
        let cursor = MonitorCursor {
            max_pipeline_id: 9,
            revision: 4,
            ..Default::default()
        };
        store.save_cursor(&cursor, None).await.unwrap();
        let settings = MonitorSettings::default();
        let monitor = Monitor {
            settings: &settings,
            devlake: &devlake,
            store: &store,
            sink: &sink,
        };
        // Delivered late: the scheduled time is ten minutes before the invocation's clock.
        let clock = Utc::now();
        let scheduled = clock - chrono::Duration::minutes(10);
        let err = monitor
            .handle(
                &json!({ "scheduledTime": scheduled.to_rfc3339() }),
                clock,
                Deadline::none(),
            )
            .await
            .unwrap_err();
        assert_eq!(err.error_type(), "DevLakeUnreachable");
        assert!(err.is_retryable());
        assert!(err.to_string().contains("could not reach DevLake"), "{err}");
        let run = store.run(Job::Monitor).expect("run recorded");
        assert!(!run.success);
        assert_eq!(run.devlake_up, Some(false));
        // When it finished by the invocation's clock, not when it was scheduled.
        assert_eq!(
            run.finished_at,
            clock + chrono::Duration::milliseconds(run.duration_ms as i64)
        );
        assert_eq!(store.cursor().unwrap().max_pipeline_id, 9, "cursor kept");
        assert_eq!(store.cursor().unwrap().revision, 1);
        assert_eq!(flags(&sink, "RunSuccess"), vec![0.0]);
        assert_eq!(flags(&sink, "DevLakeUp"), vec![0.0]);
        assert_eq!(
            flags(&sink, "Errors"),
            vec![1.0],
            "a stopped run is one error"
        );
        assert_eq!(flags(&sink, "RunDurationMs"), vec![run.duration_ms as f64]);
        assert!(sink.named("NewFailures").is_empty());
        // Domain code adds no dimension; the runtime's sink adds `Function`.
        assert!(sink.datums().iter().all(|d| d.dimensions.is_empty()));
        let diagnostic: lambda_runtime::Diagnostic = err.into();
        assert_eq!(diagnostic.error_type, "DevLakeUnreachable");
        assert!(diagnostic
            .error_message
            .starts_with("monitor run stopped: could not reach DevLake"));
        assert!(!diagnostic.error_message.contains('\n'));

        // A dry run reports the same error but records and emits nothing.
        let before = sink.calls();
        let err = monitor
            .handle(&json!({"dryRun": true}), Utc::now(), Deadline::none())
            .await
            .unwrap_err();
        assert_eq!(err.error_type(), "DevLakeUnreachable");
        assert_eq!(sink.calls(), before);
    }

    #[tokio::test]
    async fn an_unavailable_store_stops_the_run_before_devlake_is_asked() {
        let (store, devlake) = (MemoryStore::new(), unreachable_devlake());
        store.set_unavailable(true);
        // Metrics failing as well changes nothing about the outcome.
        let sink = MemorySink::failing();
        let settings = MonitorSettings::default();
        let monitor = Monitor {
            settings: &settings,
            devlake: &devlake,
            store: &store,
            sink: &sink,
        };
        let err = monitor
            .handle(&json!({}), Utc::now(), Deadline::none())
            .await
            .unwrap_err();
        assert_eq!(err.error_type(), "DynamoDbUnavailable");
        assert!(err.is_retryable());
        assert_eq!(devlake.calls().total(), 0);
        assert_eq!(
            sink.calls(),
            1,
            "the failure is still reported to CloudWatch"
        );
        let diagnostic: lambda_runtime::Diagnostic = err.into();
        assert_eq!(diagnostic.error_type, "DynamoDbUnavailable");
        assert!(diagnostic.error_message.contains("DynamoDB unavailable"));
    }
}
