//! Projects and blueprint updates: creates the missing projects, fixes drifted managed
//! blueprints and rolls `timeAfter`, a few at a time, each change logged once.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};

use chrono::{DateTime, Utc};
use futures::{stream, StreamExt};
use serde_json::json;

use crate::devlake::models::{
    Blueprint, BlueprintConnection, BlueprintPatch, Project, ProjectInput, ProjectMetric,
};
use crate::devlake::{DevLakeClient, DevLakeError};

use super::blueprints::{
    initial, is_managed, patch_for, project_description, rolled, wiring, Backfill, Desired,
};
use super::payload::{RunRequest, Step};
use super::projects::{plan, Decision};
use super::summary::{At, Conflict, Report};
use super::sync::ManagedScope;
use super::trigger::Candidate;
use super::{Ctx, Fatal};

/// One write job of this step.
enum Job<'a> {
    Create {
        scope: &'a ManagedScope,
        name: String,
        wiring: BlueprintConnection,
        /// The new project's first `timeAfter` and backfill mark (timeAfter step only).
        start: Option<(DateTime<Utc>, Option<Backfill<'static>>)>,
    },
    Update {
        project: &'a Project,
        blueprint: &'a Blueprint,
        patch: BlueprintPatch,
        /// The complete metrics list to send when DORA is missing or off.
        metrics: Option<Vec<ProjectMetric>>,
        /// The scope the project belongs to (projects step), for reports.
        scope: Option<&'a ManagedScope>,
    },
}

enum Outcome {
    /// The project exists with its blueprint wired (`blueprint` as DevLake answered).
    Created(Blueprint),
    /// Dry run: the project would be created.
    WouldCreate,
    /// The project was created but wiring its blueprint failed: the next run adopts it.
    CreatedUnwired(DevLakeError),
    /// The project was created but DevLake answered without its blueprint (not an HTTP error;
    /// the next run finds the blueprint through the project list and adopts it).
    CreatedWithoutBlueprint,
    /// The update was sent (or, in a dry run, would be).
    Updated,
    Failed(DevLakeError),
    /// The deadline came (or a fatal error elsewhere): left for the next run.
    NotStarted,
}

/// What the trigger step needs to know from this one.
#[derive(Debug, Default)]
pub(crate) struct Applied {
    /// Projects created in this run, in creation order.
    pub created: Vec<Candidate>,
    /// Existing blueprints whose connections this run set (they can run now).
    pub wired: HashSet<u64>,
}

/// Runs the projects and timeAfter steps. `time_after` is the policy's value for this run;
/// `backfill_start` the first `timeAfter` of new projects when `INITIAL_BACKFILL_DAYS` is on.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn apply(
    ctx: &Ctx<'_>,
    req: &RunRequest,
    scopes: &[ManagedScope],
    projects: &[Project],
    selected: &[&Project],
    time_after: Option<DateTime<Utc>>,
    backfill_start: Option<DateTime<Utc>>,
    report: &mut Report,
) -> Result<Applied, Fatal> {
    let cfg = ctx.config;
    let label = cfg.label.as_str();
    let mut jobs: Vec<Job<'_>> = Vec::new();
    let mut handled: HashSet<u64> = HashSet::new();
    let orphan_mark = super::orphans::orphan_mark(label);

    if req.runs(Step::Projects) {
        let mut updates = Vec::new();
        for d in plan(scopes, projects, &cfg.name_template, label) {
            match d {
                Decision::Create { scope, name } => jobs.push(Job::Create {
                    wiring: wiring(&scope.plugin, scope.connection_id, &scope.scope_id),
                    scope,
                    name,
                    start: time_after.map(|t| initial(t, backfill_start, label, 0)),
                }),
                Decision::Existing { scope, project } => {
                    let Some(bp) = project.blueprint.as_ref() else {
                        report.error_message(
                            "projects",
                            &scope_at(scope).project(&project.name),
                            "the project has no blueprint; DevLake creates one with every project, so it was removed by hand".into(),
                            false,
                        );
                        continue;
                    };
                    handled.insert(bp.id);
                    let w = wiring(&scope.plugin, scope.connection_id, &scope.scope_id);
                    let (time_after, backfill) = rolled(project, bp, label, time_after);
                    let cron = cfg.cron.for_project(&project.name);
                    let patch = patch_for(
                        bp,
                        &Desired {
                            wiring: Some(&w),
                            label: Some(label),
                            cron: Some(&cron),
                            time_after,
                            backfill,
                            enable: enable_for(ctx, bp, &orphan_mark),
                        },
                    );
                    let metrics = dora_fix(project);
                    if patch.is_empty() && metrics.is_none() {
                        report.counts(Some(&scope.plugin)).projects_unchanged += 1;
                    } else {
                        updates.push(Job::Update {
                            project,
                            blueprint: bp,
                            patch,
                            metrics,
                            scope: Some(scope),
                        });
                    }
                }
                Decision::Conflict {
                    scope,
                    name,
                    reason,
                    message,
                } => {
                    tracing::info!(
                        plugin = %scope.plugin,
                        connection_id = scope.connection_id,
                        scope_id = %scope.scope_id,
                        project = %name,
                        reason,
                        "project name conflict; nothing sent"
                    );
                    report.counts(Some(&scope.plugin)).projects_conflicting += 1;
                    report.conflicts.push(Conflict {
                        project: name,
                        plugin: scope.plugin.clone(),
                        connection_id: scope.connection_id,
                        scope_id: scope.scope_id.clone(),
                        full_name: scope.full_name.clone(),
                        reason: reason.to_string(),
                        message,
                    });
                }
                Decision::Deferred { scope, name } => {
                    tracing::info!(
                        plugin = %scope.plugin,
                        connection_id = scope.connection_id,
                        scope_id = %scope.scope_id,
                        project = %name,
                        "new project deferred: remote scope listing was incomplete"
                    );
                    report.remaining.projects.push(name);
                }
            }
        }
        jobs.extend(updates);
    }

    // Every other selected managed blueprint: label and timeAfter only. Unmanaged ones never.
    for p in selected {
        let Some(bp) = p.blueprint.as_ref() else {
            continue;
        };
        if handled.contains(&bp.id) || !is_managed(p, label) {
            continue;
        }
        let (time_after, backfill) = rolled(p, bp, label, time_after);
        let patch = patch_for(
            bp,
            &Desired {
                wiring: None,
                label: req.runs(Step::Projects).then_some(label),
                cron: None,
                time_after,
                backfill,
                enable: enable_for(ctx, bp, &orphan_mark),
            },
        );
        if !patch.is_empty() {
            jobs.push(Job::Update {
                project: p,
                blueprint: bp,
                patch,
                metrics: None,
                scope: None,
            });
        }
    }

    let abort = AtomicBool::new(false);
    // Futures are built up front (they do nothing until polled) so the whole run stays `Send`.
    let pending: Vec<_> = jobs.iter().map(|job| execute(ctx, job, &abort)).collect();
    let outcomes: Vec<Outcome> = stream::iter(pending)
        .buffered(cfg.concurrency.max(1))
        .collect()
        .await;

    let mut applied = Applied::default();
    let mut fatal = None;
    for (job, outcome) in jobs.iter().zip(outcomes) {
        if let Some(e) = record(ctx, job, outcome, report, &mut applied) {
            fatal.get_or_insert(e);
        }
    }
    report.remaining.projects.dedup();
    match fatal {
        Some(e) => Err(Fatal(e)),
        None => Ok(applied),
    }
}

/// The labels a planned project's blueprint would get.
fn planned_labels(
    label: &str,
    start: Option<&(DateTime<Utc>, Option<Backfill<'static>>)>,
) -> Vec<String> {
    let mut labels = vec![label.to_string()];
    if let Some((_, Some(Backfill::Start(mark)))) = start {
        labels.push(mark.clone());
    }
    labels
}

/// `enable` for a managed blueprint whose only scope was found orphaned, or back.
fn enable_for<'m>(ctx: &Ctx<'_>, bp: &Blueprint, mark: &'m str) -> Option<(bool, &'m str)> {
    let seen = ctx.orphans.lock().unwrap_or_else(|e| e.into_inner());
    super::orphans::enable_change(&seen, ctx.config.orphan_policy, bp, &ctx.config.label)
        .map(|e| (e, mark))
}

fn scope_at(s: &ManagedScope) -> At<'_> {
    At::connection(&s.plugin, s.connection_id).scope(&s.scope_id)
}

/// The metrics to send if DORA is missing or disabled: the project's list with DORA on.
fn dora_fix(project: &Project) -> Option<Vec<ProjectMetric>> {
    if project
        .metrics
        .iter()
        .any(|m| m.plugin_name == "dora" && m.enable)
    {
        return None;
    }
    Some(project.metrics.clone())
}

/// Adds/enables DORA in `metrics` in the shape this DevLake version takes.
fn with_dora(mut metrics: Vec<ProjectMetric>, dora: &ProjectMetric) -> Vec<ProjectMetric> {
    match metrics.iter_mut().find(|m| m.plugin_name == "dora") {
        Some(m) => m.enable = true,
        None => metrics.push(dora.clone()),
    }
    metrics
}

async fn execute(ctx: &Ctx<'_>, job: &Job<'_>, abort: &AtomicBool) -> Outcome {
    if abort.load(Ordering::Relaxed) || ctx.deadline.passed() {
        return Outcome::NotStarted;
    }
    if ctx.dry_run {
        return match job {
            Job::Create { .. } => Outcome::WouldCreate,
            Job::Update { .. } => Outcome::Updated,
        };
    }
    let outcome = match job {
        Job::Create {
            scope,
            name,
            wiring,
            start,
        } => create(ctx, scope, name, wiring, start.as_ref()).await,
        Job::Update {
            project,
            blueprint,
            patch,
            metrics,
            ..
        } => update(ctx, project, blueprint, patch, metrics.as_ref()).await,
    };
    let error = match &outcome {
        Outcome::Failed(e) | Outcome::CreatedUnwired(e) => Some(e),
        _ => None,
    };
    if error.is_some_and(DevLakeError::is_fatal) {
        // No point starting more jobs: every one would get the same answer.
        abort.store(true, Ordering::Relaxed);
    }
    outcome
}

async fn create(
    ctx: &Ctx<'_>,
    scope: &ManagedScope,
    name: &str,
    wiring: &BlueprintConnection,
    start: Option<&(DateTime<Utc>, Option<Backfill<'static>>)>,
) -> Outcome {
    let cfg = ctx.config;
    let version = match ctx.version().await {
        Ok(v) => v,
        Err(e) => return Outcome::Failed(e),
    };
    let input = ProjectInput {
        name: name.to_string(),
        description: project_description(
            &cfg.label,
            &scope.plugin,
            scope.connection_id,
            &scope.scope_id,
        ),
        enable: true,
        metrics: DevLakeClient::project_input_metrics(&version),
    };
    // The client looks the name up after a timed-out or 5xx POST, so a create DevLake committed
    // is never sent twice.
    let project = match ctx.devlake.create_project(&input).await {
        Ok(p) => p,
        Err(e) => return Outcome::Failed(e),
    };
    let blueprint = match project.blueprint {
        Some(bp) => bp,
        None => match ctx.devlake.project(name).await {
            Ok(Some(Project {
                blueprint: Some(bp),
                ..
            })) => bp,
            Ok(_) => return Outcome::CreatedWithoutBlueprint,
            Err(e) => return Outcome::CreatedUnwired(e),
        },
    };
    tracing::info!(
        plugin = %scope.plugin,
        connection_id = scope.connection_id,
        scope_id = %scope.scope_id,
        project = %name,
        blueprint_id = blueprint.id,
        "project created"
    );
    let cron = cfg.cron.for_project(name);
    let patch = patch_for(
        &blueprint,
        &Desired {
            wiring: Some(wiring),
            label: Some(&cfg.label),
            cron: Some(&cron),
            time_after: start.map(|s| s.0),
            backfill: start.and_then(|s| s.1.clone()),
            enable: None,
        },
    );
    if patch.is_empty() {
        return Outcome::Created(blueprint);
    }
    match ctx.devlake.patch_blueprint(blueprint.id, &patch).await {
        Ok(bp) => {
            tracing::info!(
                plugin = %scope.plugin,
                connection_id = scope.connection_id,
                scope_id = %scope.scope_id,
                project = %name,
                blueprint_id = bp.id,
                cron = %cron.cron_config(),
                time_after = ?patch.time_after,
                "blueprint wired"
            );
            Outcome::Created(bp)
        }
        Err(e) => Outcome::CreatedUnwired(e),
    }
}

async fn update(
    ctx: &Ctx<'_>,
    project: &Project,
    blueprint: &Blueprint,
    patch: &BlueprintPatch,
    metrics: Option<&Vec<ProjectMetric>>,
) -> Outcome {
    if let Some(metrics) = metrics {
        let version = match ctx.version().await {
            Ok(v) => v,
            Err(e) => return Outcome::Failed(e),
        };
        let body = json!({"metrics": with_dora(metrics.clone(), &ProjectMetric::dora(&version))});
        if let Err(e) = ctx.devlake.patch_project(&project.name, &body).await {
            return Outcome::Failed(e);
        }
        tracing::info!(project = %project.name, "project metrics: dora enabled");
    }
    if !patch.is_empty() {
        if let Err(e) = ctx.devlake.patch_blueprint(blueprint.id, patch).await {
            return Outcome::Failed(e);
        }
        let plugin = blueprint
            .connections
            .first()
            .map(|c| c.plugin_name.as_str())
            .unwrap_or("");
        tracing::info!(
            plugin,
            project = %project.name,
            blueprint_id = blueprint.id,
            connections = patch.connections.is_some(),
            labels = patch.labels.is_some(),
            cron = ?patch.cron_config,
            time_after = ?patch.time_after,
            "blueprint updated"
        );
    }
    Outcome::Updated
}

/// Books one job's outcome; hands back a fatal error (after reporting it) so the run stops.
fn record(
    ctx: &Ctx<'_>,
    job: &Job<'_>,
    outcome: Outcome,
    report: &mut Report,
    applied: &mut Applied,
) -> Option<DevLakeError> {
    match job {
        Job::Create {
            scope,
            name,
            wiring,
            start,
        } => {
            let at = scope_at(scope).project(name);
            let plugin = Some(scope.plugin.as_str());
            match outcome {
                Outcome::WouldCreate => {
                    report.counts(plugin).projects_created += 1;
                    report.plan(
                        "projects",
                        "createProject",
                        &at,
                        None,
                        json!({
                            "name": name,
                            "metrics": [{"pluginName": "dora", "enable": true}],
                            "blueprint": {
                                "connections": [wiring],
                                "labels": planned_labels(&ctx.config.label, start.as_ref()),
                                "cronConfig": ctx.config.cron.for_project(name).cron_config(),
                                "timeAfter": start.as_ref().map(|s| s.0.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
                            }
                        }),
                    );
                    applied.created.push(Candidate {
                        project: name.clone(),
                        blueprint_id: 0,
                        plugin: Some(scope.plugin.clone()),
                        connections: vec![(scope.plugin.clone(), scope.connection_id)],
                        enabled: true,
                        wired: true,
                        reason: "new",
                    });
                }
                Outcome::Created(blueprint) => {
                    report.counts(plugin).projects_created += 1;
                    applied.created.push(Candidate {
                        project: name.clone(),
                        blueprint_id: blueprint.id,
                        plugin: Some(scope.plugin.clone()),
                        connections: vec![(scope.plugin.clone(), scope.connection_id)],
                        enabled: blueprint.enable,
                        wired: true,
                        reason: "new",
                    });
                }
                Outcome::CreatedUnwired(e) => {
                    report.counts(plugin).projects_created += 1;
                    report.error("projects", &at, &e);
                    return e.is_fatal().then_some(e);
                }
                Outcome::CreatedWithoutBlueprint => {
                    report.counts(plugin).projects_created += 1;
                    report.error_message(
                        "projects",
                        &at,
                        format!(
                            "DevLake created project {name:?} but returned no blueprint to wire"
                        ),
                        true,
                    );
                }
                Outcome::Failed(e) => {
                    report.error("projects", &at, &e);
                    return e.is_fatal().then_some(e);
                }
                Outcome::NotStarted => report.remaining.projects.push(name.clone()),
                Outcome::Updated => {}
            }
        }
        Job::Update {
            project,
            blueprint,
            patch,
            metrics,
            scope,
        } => {
            let plugin = scope.map(|s| s.plugin.as_str()).or_else(|| {
                blueprint
                    .connections
                    .first()
                    .map(|c| c.plugin_name.as_str())
            });
            let mut at = match scope {
                Some(s) => scope_at(s),
                None => At {
                    plugin,
                    ..Default::default()
                },
            };
            at = at.project(&project.name);
            match outcome {
                Outcome::Updated => {
                    if patch.connections.is_some() {
                        applied.wired.insert(blueprint.id);
                    }
                    let reconciled = patch.connections.is_some()
                        || patch.labels.is_some()
                        || patch.cron_config.is_some()
                        || metrics.is_some();
                    let c = report.counts(plugin);
                    if scope.is_some() {
                        if reconciled {
                            c.projects_reconciled += 1;
                        } else {
                            c.projects_unchanged += 1;
                        }
                    }
                    if !patch.is_empty() {
                        c.blueprints_updated += 1;
                    }
                    if patch.time_after.is_some() {
                        c.time_after_updated += 1;
                    }
                    if ctx.dry_run {
                        if metrics.is_some() {
                            report.plan(
                                "projects",
                                "updateProjectMetrics",
                                &at,
                                None,
                                json!({"enable": "dora"}),
                            );
                        }
                        if !patch.is_empty() {
                            let step = if reconciled { "projects" } else { "timeAfter" };
                            report.plan(
                                step,
                                "updateBlueprint",
                                &at,
                                Some(blueprint.id),
                                serde_json::to_value(patch).unwrap_or_default(),
                            );
                        }
                    }
                }
                Outcome::Failed(e) | Outcome::CreatedUnwired(e) => {
                    let step = if patch.connections.is_some() || metrics.is_some() {
                        "projects"
                    } else {
                        "timeAfter"
                    };
                    report.error(step, &at, &e);
                    return e.is_fatal().then_some(e);
                }
                Outcome::NotStarted => report.remaining.blueprint_updates += 1,
                Outcome::Created(_) | Outcome::WouldCreate | Outcome::CreatedWithoutBlueprint => {}
            }
        }
    }
    None
}
