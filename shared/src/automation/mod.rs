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

use crate::cloudwatch::{Datum, MetricsSink};
use crate::devlake::models::{Project, Version, SUPPORTED_PLUGINS};
use crate::devlake::{DevLakeClient, DevLakeError};
use crate::store::{ConnectionHealth, ConnectionHealthRecord, Job, LeaseHolder, RunLog, RunRecord};
use crate::time_rules::days_before;

pub use crate::deadline::Deadline;
pub use config::{AutomationConfig, CronSetting, TriggerMode};
pub use payload::{PayloadError, Request, Step};

use blueprints::{is_managed, selected};
use payload::{RerunRequest, RunRequest};
use summary::{At, Report};

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
        source: crate::store::StoreError,
    },
}

impl AutomationError {
    /// Whether invoking again later can help (DevLake unreachable or overloaded); a bad payload,
    /// a refused key or a pending migration needs someone first.
    pub fn is_retryable(&self) -> bool {
        match self {
            AutomationError::Payload(_) | AutomationError::Config(_) => false,
            AutomationError::DevLake { source } => source.is_retryable(),
            AutomationError::RunInProgress { .. } => true,
            AutomationError::Lease { source } => source.is_retryable(),
        }
    }
}

/// A DevLake error after which no further call can succeed; unwinds the run.
#[derive(Debug)]
pub(crate) struct Fatal(pub DevLakeError);

impl Fatal {
    /// Hands back an error that only fails its item; unwinds the run with one that ends it
    /// (428, 401/403).
    pub(crate) fn pass(e: DevLakeError) -> Result<DevLakeError, Fatal> {
        if e.is_fatal() {
            Err(Fatal(e))
        } else {
            Ok(e)
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

/// Handles one invocation: parses the payload (refusing a bad one before any call), runs, records
/// the run and emits metrics, and answers the summary JSON (docs/operations.md).
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
        Request::Run(r) => (
            config.dry_run || r.dry_run.unwrap_or(false),
            r.now.unwrap_or(started_at),
            "run",
        ),
        Request::Rerun(r) => (
            config.dry_run || r.dry_run.unwrap_or(false),
            r.now.unwrap_or(started_at),
            "rerun",
        ),
        Request::Adopt(r) => (
            config.dry_run || r.dry_run.unwrap_or(false),
            r.now.unwrap_or(started_at),
            "adopt",
        ),
    };
    // A run that writes holds the job's run lease from here to its end, so an overlapping
    // manual run or a duplicate scheduler delivery cannot act at the same time. Without a table
    // (no `TABLE_NAME`) there is no lease.
    let lease = match ports.run_log.filter(|_| !dry_run) {
        Some(log) => {
            let holder = run_id(started_at);
            // Until the Lambda timeout (the deadline plus its margin), and a minute more.
            let until = started_at
                + chrono::Duration::from_std(
                    deadline.left().unwrap_or(DEFAULT_LEASE) + config.deadline_margin,
                )
                .unwrap_or(chrono::Duration::minutes(15))
                + chrono::Duration::minutes(1);
            match log
                .acquire_lease(Job::Automation, &holder, started_at, until)
                .await
            {
                Ok(Ok(())) => {
                    tracing::info!(run_id = %holder, lease_until = %until, "run lease taken");
                    Some((log, holder))
                }
                Ok(Err(held)) => {
                    tracing::warn!(holder = %held.holder, until = %held.until, "another automation run holds the run lease; refusing");
                    return Err(AutomationError::RunInProgress { held });
                }
                Err(source) => return Err(AutomationError::Lease { source }),
            }
        }
        None => None,
    };
    let clock = tokio::time::Instant::now();
    let calls_before = ports.devlake.calls();
    // The run's DevLake calls start no retry wait that would end past the deadline.
    let devlake = ports.devlake.with_deadline(deadline);
    let ctx = Ctx {
        config,
        devlake: &devlake,
        dry_run,
        deadline,
        version: OnceCell::new(),
        orphans: Default::default(),
    };
    let mut report = Report {
        action,
        dry_run,
        now: now.to_rfc3339_opts(SecondsFormat::Secs, true),
        trigger_mode: config.trigger_mode.as_str().to_string(),
        ..Default::default()
    };
    tracing::info!(action, dry_run, now = %report.now, "automation run starting");

    let outcome = match &request {
        Request::Run(r) => {
            report.source = r.source.as_str().to_string();
            run(&ctx, r, now, &mut report).await
        }
        Request::Rerun(r) => {
            report.source = "manual".to_string();
            run_rerun(&ctx, r, &mut report).await
        }
        Request::Adopt(r) => {
            report.source = "manual".to_string();
            adopt::run(&ctx, r, now, &mut report).await
        }
    };
    // A request every step needs (the start-up checks) cut off by the deadline: the run ends
    // as partial, like any other work the deadline leaves for the next run.
    let outcome = match outcome {
        Err(Fatal(e)) if e.is_deadline() => {
            report.error("run", &At::default(), &e);
            Ok(())
        }
        other => other,
    };

    let duration_ms = clock.elapsed().as_millis() as u64;
    let after = ports.devlake.calls();
    let calls = crate::devlake::CallCounts {
        reads: after.reads.saturating_sub(calls_before.reads),
        writes: after.writes.saturating_sub(calls_before.writes),
    };
    // The answer is complete up to Lambda's response limit; the closing log line and the run
    // record carry a copy whose lists keep their first entries (with the totals under
    // `truncated`), so neither outgrows its limit at any number of projects.
    let summary = crate::limits::bounded(
        &report.to_json(calls, duration_ms),
        summary::SUMMARY_LISTS,
        None,
        crate::limits::RESPONSE_SUMMARY_MAX_BYTES,
    );
    let recorded = crate::limits::bounded(
        &summary,
        summary::SUMMARY_LISTS,
        Some(crate::limits::RECORD_LIST_LIMIT),
        crate::limits::RECORD_SUMMARY_MAX_BYTES,
    );
    let success = outcome.is_ok() && report.is_ok();
    let totals = report.totals();
    tracing::info!(
        action,
        status = if outcome.is_err() { "failed" } else { summary["status"].as_str().unwrap_or("") },
        dry_run,
        scopes_added = totals.scopes_added,
        scope_configs_created = totals.scope_configs_created,
        projects_created = totals.projects_created,
        projects_reconciled = totals.projects_reconciled,
        projects_conflicting = totals.projects_conflicting,
        blueprints_updated = totals.blueprints_updated,
        triggered = totals.triggered,
        skipped = totals.skipped,
        errors = totals.errors,
        devlake_reads = calls.reads,
        devlake_writes = calls.writes,
        duration_ms,
        summary = %recorded,
        "automation run finished"
    );

    if !dry_run {
        emit_metrics(
            ports.metrics,
            action,
            &totals,
            &report.connections,
            duration_ms,
            success,
            outcome.is_err(),
        )
        .await;
        if let (Some(log), "run") = (ports.run_log, action) {
            let record = RunRecord {
                job: Job::Automation,
                // When the run finished (`devlake_automation_last_run_timestamp_seconds`): the
                // invocation's clock reading plus the run's own duration, never the scheduled
                // `now`, which a late or replayed delivery would date back.
                finished_at: started_at + chrono::Duration::milliseconds(duration_ms as i64),
                success,
                // Whether DevLake answered at all (a transport failure is the only "no").
                devlake_up: Some(!matches!(&outcome, Err(Fatal(e)) if e.status().is_none())),
                duration_ms,
                summary: match &outcome {
                    Ok(()) => recorded,
                    Err(Fatal(e)) => serde_json::json!({
                        "status": "failed",
                        "error": e.to_string(),
                        "partial": recorded,
                    }),
                },
            };
            if let Err(e) = log.record_run(&record).await {
                tracing::warn!(error = %e, "could not write the automation run record");
            }
            record_connection_health(log, &report, record.finished_at).await;
        }
    }

    if let Some((log, holder)) = lease {
        let ended = started_at + chrono::Duration::milliseconds(duration_ms as i64);
        if let Err(e) = log.release_lease(Job::Automation, &holder, ended).await {
            // It lapses by itself at its `until`.
            tracing::warn!(error = %e, "could not release the run lease");
        }
    }

    match outcome {
        Ok(()) => Ok(summary),
        Err(Fatal(source)) => Err(AutomationError::DevLake { source }),
    }
}

/// How long a lease lasts when the run has no deadline (a local run without one).
const DEFAULT_LEASE: std::time::Duration = std::time::Duration::from_secs(15 * 60);

/// A run's id for its lease: the start time and 64 random bits.
fn run_id(started_at: DateTime<Utc>) -> String {
    use std::hash::{BuildHasher, Hasher};
    let random = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    format!("{}-{random:016x}", started_at.timestamp_millis())
}

/// Replaces the stored connection health with this run's verdicts, when the run tested every
/// connection (see [`health`]); otherwise says why the stored one stays. A failure is logged; it
/// never fails the run.
async fn record_connection_health(log: &dyn RunLog, report: &Report, tested_at: DateTime<Utc>) {
    if !report.connections_complete {
        tracing::info!(
            tested = report.connections.len(),
            untested = report.connections_untested,
            "not every connection was tested (a filtered run, an error or the deadline); the stored connection health stays"
        );
        return;
    }
    let mut connections = report.connections.clone();
    connections.sort_by(|a, b| (&a.plugin, a.connection_id).cmp(&(&b.plugin, b.connection_id)));
    let record = ConnectionHealthRecord {
        tested_at,
        connections,
    };
    if let Err(e) = log.record_connection_health(&record).await {
        tracing::warn!(error = %e, "could not write the connection health; the metrics page keeps the previous one");
    }
}

/// Run-level CloudWatch series (no per-project dimensions: each combination costs money; the
/// sink adds `Function=automation`), and `ConnectionUp` per tested connection (dimensions
/// `Plugin`, `ConnectionId`: few, and stable, unlike names). `RunSuccess`, `RunDurationMs` and
/// `Errors` are the series the monitor sends too. A failure is logged; it never fails the run.
async fn emit_metrics(
    sink: Option<&dyn MetricsSink>,
    action: &str,
    totals: &summary::Counts,
    connections: &[ConnectionHealth],
    duration_ms: u64,
    success: bool,
    stopped: bool,
) {
    let Some(sink) = sink else { return };
    let mut datums = vec![
        Datum::count("Triggered", totals.triggered as f64),
        Datum::errors(totals.errors + u64::from(stopped)),
    ];
    // A `rerun` is someone's manual request, answered in full to them; the run-level health
    // series follow the daily runs.
    if action == "run" {
        datums.extend([
            Datum::count("ProjectsCreated", totals.projects_created as f64),
            Datum::count("ScopesAdded", totals.scopes_added as f64),
            Datum::count("BlueprintsUpdated", totals.blueprints_updated as f64),
            Datum::run_duration_ms(duration_ms),
            Datum::run_success(success),
        ]);
        datums.extend(connections.iter().map(|c| {
            Datum::flag("ConnectionUp", c.up)
                .with_dimension("Plugin", &c.plugin)
                .with_dimension("ConnectionId", &c.connection_id.to_string())
        }));
    }
    if let Err(e) = sink.emit(&datums).await {
        tracing::warn!(error = %e, "could not emit CloudWatch metrics; the run itself is unaffected");
    }
}

async fn run(
    ctx: &Ctx<'_>,
    req: &RunRequest,
    now: DateTime<Utc>,
    report: &mut Report,
) -> Result<(), Fatal> {
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
    let loaded = ctx.devlake.plugins().await.map_err(Fatal)?;
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
                let e = Fatal::pass(e)?;
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
                let e = Fatal::pass(e)?;
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

async fn run_rerun(ctx: &Ctx<'_>, req: &RerunRequest, report: &mut Report) -> Result<(), Fatal> {
    report.steps = vec!["trigger"];
    rerun::run(ctx, req, report).await
}
