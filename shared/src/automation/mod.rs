//! The daily automation (docs/architecture.md): discover plugins and connections, test each
//! connection (holding back the projects of one that is down, `health`), add new
//! remote scopes, give each connection the tool's scope config, create one project per scope with
//! its blueprint wired, roll every managed blueprint's `timeAfter` by the `TIME_AFTER_POLICY` and
//! trigger collection at a pace DevLake can take.
//!
//! Everything here takes `now`, the deadline and its ports (DevLake client, run log, metrics sink)
//! as parameters; only the binary reads the environment and the clock. A run is idempotent: with
//! the same `now` and nothing new in the remote tools, a second run makes no write call at all,
//! and a run stopped by its deadline is simply continued by the next.
//!
//! Configuration: see [`config`] for every environment variable.

pub mod adopt;
pub mod blueprints;
pub mod config;
mod connection;
pub mod filter;
mod health;
pub mod naming;
pub mod orphans;
pub mod payload;
pub mod projects;
mod reconcile;
mod rerun;
pub mod runtime;
pub mod scope_configs;
pub mod spread;
pub mod summary;
pub mod sync;
pub mod trigger;

use std::collections::HashSet;

use chrono::{DateTime, SecondsFormat, Utc};
use futures::TryStreamExt;
use serde_json::Value;
use thiserror::Error;
use tokio::sync::OnceCell;

use crate::cloudwatch::MetricsSink;
use crate::devlake::models::{Project, Version, SUPPORTED_PLUGINS};
use crate::devlake::{DevLakeClient, DevLakeError};
use crate::job::{
    job_error, Cause, Invocation, JobSpec, JobSummary, LeaseRefused, Lifecycle, Ran, ScheduledJob,
    Source, Stop,
};
use crate::store::{ConnectionHealthRecord, Job, LeaseHolder, RunLog, StoreError};
use crate::time_rules::days_before;

pub use crate::deadline::Deadline;
pub use config::{AutomationConfig, CronSetting, TriggerMode};
pub use payload::{PayloadError, Request, Step};
pub use summary::{Action, Summary};

use blueprints::{is_managed, selected};
use payload::{RerunRequest, RunRequest};
use summary::{At, ItemError, Report};

/// How the automation plugs into the job lifecycle: its run record is `RUN`/`automation`; it
/// sends no `DevLakeUp` (the monitor's every-5-minutes series is the one alarmed on).
pub const JOB: JobSpec = JobSpec {
    job: Job::Automation,
    devlake_up_datum: false,
};

/// The ports a run talks through.
#[derive(Clone, Copy)]
pub struct Ports<'a> {
    pub devlake: &'a DevLakeClient,
    /// Where scheduled runs record their outcome (`TABLE_NAME`); `None` skips it.
    pub run_log: Option<&'a dyn RunLog>,
    /// Where run metrics go; `None` skips them.
    pub metrics: Option<&'a dyn MetricsSink>,
}

/// Why a run did not happen, or stopped. Nothing was changed when the payload was refused or
/// DevLake refused the first call.
#[derive(Debug, Error)]
pub enum AutomationError {
    #[error(transparent)]
    Payload(#[from] PayloadError),
    /// Settings that cannot work together, found once an invocation tells the function its
    /// timeout. Nothing was called.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// DevLake cannot be used at all: migration pending (428), credentials refused, unreachable.
    #[error("automation run stopped: {source}")]
    DevLake {
        #[source]
        source: DevLakeError,
    },
    /// The table failed during the run itself (the run lease has its own variant).
    #[error("automation run stopped: {source}")]
    Store {
        #[source]
        source: StoreError,
    },
    /// Another run holds the run lease (an overlapping manual run or a duplicate scheduler
    /// delivery). Nothing was called or written.
    #[error(
        "automation run refused: another run ({}) holds the run lease since {} until {}; nothing was done",
        held.holder,
        held.acquired_at.to_rfc3339_opts(SecondsFormat::Secs, true),
        held.until.to_rfc3339_opts(SecondsFormat::Secs, true)
    )]
    RunInProgress { held: LeaseHolder },
    /// The run lease could not be taken (DynamoDB failing): without it two runs could act at
    /// once, so nothing was called or written.
    #[error("automation run stopped: could not take the run lease: {source}")]
    Lease {
        #[source]
        source: StoreError,
    },
}

impl AutomationError {
    /// What ended the invocation, for the Lambda error scheme both jobs share.
    pub fn cause(&self) -> Cause<'_> {
        match self {
            AutomationError::Payload(_) => Cause::Payload,
            AutomationError::Config(_) => Cause::Config,
            AutomationError::DevLake { source } => Cause::DevLake(source),
            AutomationError::Store { source } | AutomationError::Lease { source } => {
                Cause::Store(source)
            }
            AutomationError::RunInProgress { .. } => Cause::RunInProgress,
        }
    }
}

job_error!(AutomationError);

impl From<Stop> for AutomationError {
    fn from(stop: Stop) -> Self {
        match stop {
            Stop::DevLake(source) => AutomationError::DevLake { source },
            Stop::Store(source) => AutomationError::Store { source },
        }
    }
}

impl From<LeaseRefused> for AutomationError {
    fn from(refused: LeaseRefused) -> Self {
        match refused {
            LeaseRefused::Held(held) => AutomationError::RunInProgress { held },
            LeaseRefused::Failed(source) => AutomationError::Lease { source },
        }
    }
}

/// What every step of one run shares.
pub(crate) struct Ctx<'a> {
    pub config: &'a AutomationConfig,
    pub devlake: &'a DevLakeClient,
    pub dry_run: bool,
    pub deadline: Deadline,
    version: OnceCell<Version>,
    /// What the remote walks of this run found out about orphaned scopes.
    pub(crate) orphans: std::sync::Mutex<orphans::Seen>,
}

impl Ctx<'_> {
    /// DevLake's version, asked once and only when a project body needs it (`pluginOption` is a
    /// string before v1.0).
    pub(crate) async fn version(&self) -> Result<Version, DevLakeError> {
        self.version
            .get_or_try_init(|| self.devlake.version())
            .await
            .cloned()
    }
}

/// Handles one invocation: parses the payload (refusing a bad one before any call), then runs
/// it through the job lifecycle ([`crate::job`]: run lease, run record, metrics) and answers the
/// summary JSON (docs/operations.md).
///
/// `started_at` is the wall clock at invocation; the run's `now` (for `timeAfter`) is the
/// payload's scheduled time when it has one.
pub async fn handle(
    config: &AutomationConfig,
    ports: Ports<'_>,
    payload: &Value,
    started_at: DateTime<Utc>,
    deadline: Deadline,
) -> Result<Value, AutomationError> {
    let request = payload::parse(payload, started_at)?;
    let (dry_run, now, action) = match &request {
        // `DRY_RUN=true` is a safety switch a payload cannot turn off.
        Request::Run(r) => (r.dry_run, r.now, Action::Run),
        Request::Rerun(r) => (r.dry_run, r.now, Action::Rerun),
        Request::Adopt(r) => (r.dry_run, r.now, Action::Adopt),
    };
    let dry_run = config.dry_run || dry_run.unwrap_or(false);
    let now = now.unwrap_or(started_at);
    let lifecycle = Lifecycle {
        spec: JOB,
        devlake: ports.devlake,
        run_log: ports.run_log,
        sink: ports.metrics,
    };
    let inv = Invocation {
        started_at,
        deadline,
        dry_run,
        // A `rerun` or `adopt` is someone's manual request, answered in full to them; the run
        // record and the run-level health series follow the runs of the schedule.
        recorded: action == Action::Run,
    };
    // A run that writes holds the job's run lease from here to its end, so an overlapping
    // manual run or a duplicate scheduler delivery cannot act at the same time. Without a table
    // (no `TABLE_NAME`) there is no lease.
    let lease = lifecycle.take_lease(&inv, config.deadline_margin).await?;
    let job = AutomationRun {
        config,
        request: &request,
        action,
        dry_run,
        now,
        deadline,
    };
    tracing::info!(action = action.as_str(), dry_run, now = %job.now_text(), "automation run starting");
    let summary = lifecycle.run(&job, &inv, lease).await?;
    Ok(summary.response())
}

/// One automation invocation as the lifecycle runs it.
struct AutomationRun<'a> {
    config: &'a AutomationConfig,
    request: &'a Request,
    action: Action,
    dry_run: bool,
    now: DateTime<Utc>,
    deadline: Deadline,
}

impl AutomationRun<'_> {
    fn now_text(&self) -> String {
        self.now.to_rfc3339_opts(SecondsFormat::Secs, true)
    }

    /// The report a run starts from.
    fn report(&self) -> Report {
        Report {
            action: self.action,
            dry_run: self.dry_run,
            source: match self.request {
                Request::Run(r) => r.source,
                Request::Rerun(_) | Request::Adopt(_) => Source::Manual,
            },
            now: self.now_text(),
            trigger_mode: self.config.trigger_mode.as_str().to_string(),
            ..Default::default()
        }
    }
}

impl ScheduledJob for AutomationRun<'_> {
    type Summary = Summary;

    async fn body(&self, devlake: &DevLakeClient) -> Ran<Summary> {
        let ctx = Ctx {
            config: self.config,
            devlake,
            dry_run: self.dry_run,
            deadline: self.deadline,
            version: OnceCell::new(),
            orphans: Default::default(),
        };
        let mut report = self.report();
        let outcome = match self.request {
            Request::Run(r) => run(&ctx, r, self.now, &mut report).await,
            Request::Rerun(r) => run_rerun(&ctx, r, &mut report).await,
            Request::Adopt(r) => adopt::run(&ctx, r, self.now, &mut report).await,
        };
        match outcome {
            Ok(()) => Ran::Finished(report.into_summary()),
            Err(stop) => Ran::Stopped {
                stop,
                partial: Some(report.into_summary()),
            },
        }
    }

    /// A request every step needs (the start-up checks) cut off by the deadline: the run ends as
    /// partial, like any other work the deadline leaves for the next run.
    fn cut_short(&self, partial: Option<Summary>, stop: &Stop) -> Summary {
        let mut summary = partial.unwrap_or_else(|| self.report().into_summary());
        summary.push_error(ItemError::new(
            "run",
            &At::default(),
            stop.to_string(),
            true,
        ));
        summary
    }

    /// Replaces the stored connection health with this run's verdicts, when the run tested every
    /// connection (see [`health`]); otherwise says why the stored one stays.
    async fn record_more(&self, summary: &Summary, log: &dyn RunLog, finished_at: DateTime<Utc>) {
        if !summary.connections_complete {
            tracing::info!(
                tested = summary.connections.len(),
                untested = summary.connections_untested,
                "not every connection was tested (a filtered run, an error or the deadline); the stored connection health stays"
            );
            return;
        }
        let mut connections = summary.connections.clone();
        connections.sort_by(|a, b| (&a.plugin, a.connection_id).cmp(&(&b.plugin, b.connection_id)));
        let record = ConnectionHealthRecord {
            tested_at: finished_at,
            connections,
        };
        if let Err(e) = log.record_connection_health(&record).await {
            tracing::warn!(error = %e, "could not write the connection health; the metrics page keeps the previous one");
        }
    }
}

async fn run(
    ctx: &Ctx<'_>,
    req: &RunRequest,
    now: DateTime<Utc>,
    report: &mut Report,
) -> Result<(), Stop> {
    let cfg = ctx.config;
    report.steps = Step::ALL
        .iter()
        .filter(|s| req.runs(**s))
        .map(|s| s.as_str())
        .collect();
    let time_after = req
        .runs(Step::TimeAfter)
        .then(|| cfg.time_after_policy.time_after(now, cfg.timezone));
    let backfill_start = time_after
        .filter(|_| cfg.initial_backfill_days > 0)
        .map(|_| days_before(now, cfg.initial_backfill_days, cfg.timezone));
    report.time_after = time_after.map(|t| t.to_rfc3339_opts(SecondsFormat::Secs, true));

    // The first call decides whether DevLake can be used at all (428, credentials, reachable);
    // nothing has been written yet when it fails.
    let loaded = ctx.devlake.plugins().await.map_err(Stop::DevLake)?;
    let plugins: Vec<String> = SUPPORTED_PLUGINS
        .iter()
        .filter(|p| cfg.plugins.iter().any(|c| c == *p))
        .filter(|p| loaded.iter().any(|l| l.plugin == **p))
        .filter(|p| {
            req.plugins
                .as_ref()
                .is_none_or(|list| list.iter().any(|r| r == *p))
        })
        .filter(|p| {
            req.connections
                .as_ref()
                .is_none_or(|list| list.iter().any(|c| c.plugin == **p))
        })
        .map(|p| p.to_string())
        .collect();
    for p in &cfg.plugins {
        if !loaded.iter().any(|l| l.plugin == *p) {
            tracing::info!(plugin = %p, "plugin not loaded in this DevLake; skipped");
        }
    }
    // What a manual request names explicitly must exist; say so when it does not.
    let requested = req
        .plugins
        .iter()
        .flatten()
        .chain(req.connections.iter().flatten().map(|c| &c.plugin));
    let mut refused = Vec::new();
    for p in requested {
        let problem = if !cfg.plugins.contains(p) {
            "is not managed here (PLUGINS does not include it)"
        } else if !loaded.iter().any(|l| l.plugin == *p) {
            "is not loaded in this DevLake"
        } else {
            continue;
        };
        if !refused.contains(p) {
            refused.push(p.clone());
            report.error_message(
                "discover",
                &At::plugin(p),
                format!("plugin {p} {problem}"),
                false,
            );
        }
    }

    let wants_projects =
        req.runs(Step::Projects) || req.runs(Step::TimeAfter) || req.runs(Step::Trigger);
    let projects: Option<Vec<Project>> = if wants_projects {
        match ctx.devlake.projects().try_collect().await {
            Ok(p) => Some(p),
            Err(e) => {
                let e = Stop::pass(e)?;
                report.error("projects", &At::default(), &e);
                None
            }
        }
    } else {
        None
    };

    let phase = tokio::time::Instant::now();
    let mut scopes = Vec::new();
    // Every managed connection seen, for the count of adoptable projects; only meaningful when
    // the run listed all of them.
    let mut discovered: HashSet<(String, u64)> = HashSet::new();
    let mut all_discovered = req.plugins.is_none() && req.connections.is_none();
    let per_connection = [Step::Sync, Step::ScopeConfigs, Step::Projects]
        .iter()
        .any(|s| req.runs(*s));
    for plugin in &plugins {
        report.counts(Some(plugin));
        if ctx.deadline.passed() {
            report.remaining.connections.push(format!("{plugin}/*"));
            all_discovered = false;
            continue;
        }
        let connections = match ctx.devlake.connections(plugin).await {
            Ok(c) => c,
            Err(e) => {
                let e = Stop::pass(e)?;
                report.error("discover", &At::plugin(plugin), &e);
                all_discovered = false;
                continue;
            }
        };
        discovered.extend(connections.iter().map(|c| (plugin.clone(), c.id)));
        let connections: Vec<_> = connections
            .into_iter()
            .filter(|c| {
                req.connections.as_ref().is_none_or(|list| {
                    list.iter()
                        .any(|r| r.plugin == *plugin && r.connection_id == c.id)
                })
            })
            .collect();
        for r in req
            .connections
            .iter()
            .flatten()
            .filter(|r| r.plugin == *plugin)
        {
            if !connections.iter().any(|c| c.id == r.connection_id) {
                report.error_message(
                    "discover",
                    &At::connection(plugin, r.connection_id),
                    format!("connection {r} does not exist in DevLake"),
                    false,
                );
            }
        }
        report.counts(Some(plugin)).discovered_connections += connections.len() as u64;
        for conn in &connections {
            tracing::info!(plugin = %plugin, connection_id = conn.id, connection = %conn.name, "connection discovered");
        }
        health::test_connections(ctx, plugin, &connections, report).await?;
        if !per_connection {
            continue;
        }
        for conn in &connections {
            if ctx.deadline.passed() {
                report
                    .remaining
                    .connections
                    .push(format!("{plugin}/{}", conn.id));
                continue;
            }
            scopes.extend(connection::process(ctx, req, plugin, conn, report).await?);
        }
    }

    report.connections_complete = all_discovered && report.connections_untested == 0;
    report
        .phase_ms
        .insert("connections", phase.elapsed().as_millis() as u64);
    {
        let seen = ctx.orphans.lock().unwrap_or_else(|e| e.into_inner());
        if !seen.walked.is_empty() {
            let (list, counts) = orphans::summarize(&seen);
            report.extra.insert("orphanScopes".into(), list);
            report.extra.insert("orphanScopeCounts".into(), counts);
        }
    }

    let Some(projects) = projects else {
        return Ok(());
    };
    if all_discovered {
        report.extra.insert(
            "adoptable".into(),
            adopt::count_adoptable(&projects, &cfg.label, &discovered).into(),
        );
    }
    let unfiltered = req.plugins.is_none() && req.connections.is_none();
    let selected: Vec<&Project> = projects
        .iter()
        .filter(|p| is_managed(p, &cfg.label))
        .filter(|p| {
            p.blueprint
                .as_ref()
                .is_some_and(|bp| selected(bp, &plugins, req.connections.as_deref(), unfiltered))
        })
        .collect();

    let phase = tokio::time::Instant::now();
    let applied = if req.runs(Step::Projects) || req.runs(Step::TimeAfter) {
        reconcile::apply(
            ctx,
            req,
            &scopes,
            &projects,
            &selected,
            time_after,
            backfill_start,
            report,
        )
        .await?
    } else {
        reconcile::Applied::default()
    };
    report
        .phase_ms
        .insert("projects", phase.elapsed().as_millis() as u64);
    // The listing is complete and unfiltered, so this counts every managed project, plus the
    // ones this run created (or would create, in a dry run). The metrics page shows it as
    // `devlake_automation_managed_projects`: the monitor's per-project series cover every
    // project it saw fail or succeed, managed or not.
    report.managed_projects = Some(
        projects
            .iter()
            .filter(|p| is_managed(p, &cfg.label))
            .count() as u64
            + report.totals().projects_created,
    );

    if req.runs(Step::Trigger) {
        let mut candidates = trigger::candidates(cfg.trigger_mode, &applied.created, &selected);
        {
            // A blueprint this run disabled (its scope is orphaned) is not triggered, and one it
            // enabled again may be.
            let seen = ctx.orphans.lock().unwrap_or_else(|e| e.into_inner());
            for c in &mut candidates {
                c.wired |= applied.wired.contains(&c.blueprint_id);
                let bp = selected
                    .iter()
                    .filter_map(|p| p.blueprint.as_ref())
                    .find(|b| b.id == c.blueprint_id);
                if let Some(enable) = bp
                    .and_then(|bp| orphans::enable_change(&seen, cfg.orphan_policy, bp, &cfg.label))
                {
                    c.enabled = enable;
                }
            }
        }
        let down = health::down(report);
        let candidates = health::hold_back(candidates, &down, report);
        let phase = tokio::time::Instant::now();
        trigger::run(
            ctx,
            candidates,
            Default::default(),
            Some(cfg.trigger_max_per_run),
            report,
        )
        .await?;
        report
            .phase_ms
            .insert("trigger", phase.elapsed().as_millis() as u64);
    }
    Ok(())
}

async fn run_rerun(ctx: &Ctx<'_>, req: &RerunRequest, report: &mut Report) -> Result<(), Stop> {
    report.steps = vec!["trigger"];
    rerun::run(ctx, req, report).await
}
