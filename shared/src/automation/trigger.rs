//! Trigger: start collection at a pace DevLake can take — one at a time, a gap between two
//! triggers, a cap per run — skipping blueprints that already have a pending pipeline.

use std::collections::HashSet;

use futures::TryStreamExt;
use serde_json::json;

use crate::devlake::models::{status, PipelineQuery, Project, TriggerRequest};
use crate::devlake::TriggerOutcome;

use super::config::TriggerMode;
use super::summary::{At, Report, SkippedTrigger};
use super::{Ctx, Fatal};

/// A blueprint the trigger step may start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub project: String,
    pub blueprint_id: u64,
    pub plugin: Option<String>,
    /// Every connection the blueprint is wired to, `(plugin, connection id)`: a project with
    /// one of them down is not triggered ([`super::health::hold_back`]).
    pub connections: Vec<(String, u64)>,
    pub enabled: bool,
    /// The blueprint has connections (DevLake answers 400 "no task to run" otherwise).
    pub wired: bool,
    /// `new`, `neverRan`, `lastFailed`, `all`, `rerun`.
    pub reason: &'static str,
}

impl Candidate {
    pub fn of(project: &Project, reason: &'static str) -> Option<Candidate> {
        let bp = project.blueprint.as_ref()?;
        Some(Candidate {
            project: project.name.clone(),
            blueprint_id: bp.id,
            plugin: bp.connections.first().map(|c| c.plugin_name.clone()),
            connections: bp
                .connections
                .iter()
                .map(|c| (c.plugin_name.clone(), c.connection_id))
                .collect(),
            enabled: bp.enable,
            wired: bp
                .connections
                .iter()
                .any(|c| !c.scopes.is_empty() || c.plugin_name == "jenkins"),
            reason,
        })
    }
}

/// The last pipeline ended failed (or partially failed).
pub fn last_failed(project: &Project) -> bool {
    project
        .last_pipeline
        .as_ref()
        .is_some_and(|p| p.status == status::FAILED || p.status == status::PARTIAL)
}

/// Whom to trigger, in order: projects created in this run first, then the selected managed
/// projects by mode. Each project at most once (by name: in a dry run new projects have no
/// blueprint id yet).
pub fn candidates(
    mode: TriggerMode,
    created: &[Candidate],
    managed: &[&Project],
) -> Vec<Candidate> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for c in created {
        if seen.insert(c.project.clone()) {
            out.push(c.clone());
        }
    }
    for p in managed {
        let reason = match mode {
            TriggerMode::All => "all",
            TriggerMode::NewAndFailed if p.last_pipeline.is_none() => "neverRan",
            TriggerMode::NewAndFailed if last_failed(p) => "lastFailed",
            TriggerMode::NewAndFailed => continue,
        };
        if let Some(c) = Candidate::of(p, reason) {
            if seen.insert(c.project.clone()) {
                out.push(c);
            }
        }
    }
    out
}

/// Triggers `candidates` one at a time. `cap` = most triggers sent (None: no cap).
pub(crate) async fn run(
    ctx: &Ctx<'_>,
    candidates: Vec<Candidate>,
    request: TriggerRequest,
    cap: Option<usize>,
    report: &mut Report,
) -> Result<(), Fatal> {
    if candidates.is_empty() {
        return Ok(());
    }
    let pending = match pending_blueprints(ctx).await {
        Ok(p) => p,
        Err(e) if e.is_fatal() => return Err(Fatal(e)),
        Err(e) => {
            // Without the pending list a trigger could pile onto a running pipeline; the
            // 400 would be harmless, but the next run has the full picture.
            report.error("trigger", &At::default(), &e);
            return Ok(());
        }
    };
    let mut sent = 0usize;
    let total = candidates.len();
    for (i, c) in candidates.into_iter().enumerate() {
        let at = At {
            plugin: c.plugin.as_deref(),
            project: Some(&c.project),
            ..Default::default()
        };
        let skip = if pending.contains(&c.blueprint_id) {
            Some("alreadyRunning")
        } else if !c.enabled {
            Some("disabled")
        } else if !c.wired {
            Some("notWired")
        } else if cap.is_some_and(|cap| sent >= cap) {
            Some("maxPerRun")
        } else {
            None
        };
        if let Some(reason) = skip {
            skipped(report, &c, reason);
            continue;
        }
        let gap = if sent > 0 {
            ctx.config.trigger_gap
        } else {
            Default::default()
        };
        if !ctx.deadline.allows(gap) {
            report.remaining.triggers += (total - i) as u64;
            tracing::warn!(
                left = total - i,
                "deadline close: triggers left for the next run"
            );
            break;
        }
        if ctx.dry_run {
            report.plan(
                "trigger",
                "trigger",
                &at,
                (c.blueprint_id != 0).then_some(c.blueprint_id),
                json!({"reason": c.reason, "fullSync": request.full_sync}),
            );
            report.counts(c.plugin.as_deref()).triggered += 1;
            sent += 1;
            continue;
        }
        if !gap.is_zero() {
            tokio::time::sleep(gap).await;
        }
        sent += 1;
        match ctx.devlake.trigger_blueprint(c.blueprint_id, request).await {
            Ok(TriggerOutcome::Started(pipeline)) => {
                tracing::info!(
                    plugin = c.plugin.as_deref().unwrap_or(""),
                    project = %c.project,
                    blueprint_id = c.blueprint_id,
                    pipeline_id = pipeline.id,
                    reason = c.reason,
                    full_sync = request.full_sync,
                    "triggered blueprint"
                );
                report.counts(c.plugin.as_deref()).triggered += 1;
            }
            Ok(TriggerOutcome::AlreadyRunning) => skipped(report, &c, "alreadyRunning"),
            Err(e) if e.is_fatal() => return Err(Fatal(e)),
            Err(e) => report.error("trigger", &at, &e),
        }
    }
    Ok(())
}

pub(crate) fn skipped(report: &mut Report, c: &Candidate, reason: &str) {
    tracing::info!(
        plugin = c.plugin.as_deref().unwrap_or(""),
        project = %c.project,
        blueprint_id = c.blueprint_id,
        reason,
        "trigger skipped"
    );
    report.counts(c.plugin.as_deref()).skipped += 1;
    report.skipped_triggers.push(SkippedTrigger {
        project: c.project.clone(),
        blueprint_id: c.blueprint_id,
        reason: reason.to_string(),
    });
}

async fn pending_blueprints(ctx: &Ctx<'_>) -> Result<HashSet<u64>, crate::devlake::DevLakeError> {
    let query = PipelineQuery {
        pending: true,
        ..Default::default()
    };
    ctx.devlake
        .pipelines(&query)
        .map_ok(|p| p.blueprint_id)
        .try_collect()
        .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn project(name: &str, id: u64, last: Option<&str>) -> Project {
        serde_json::from_value(json!({
            "name": name,
            "blueprint": {"id": id, "enable": true, "labels": ["devlake-autopilot"],
                          "connections": [{"pluginName": "github", "connectionId": 1, "scopes": [{"scopeId": id.to_string()}]}]},
            "lastPipeline": last.map(|s| json!({"id": 1, "status": s}))
        }))
        .unwrap()
    }

    #[test]
    fn new_and_failed_picks_created_never_ran_and_failed() {
        let ok = project("ok", 1, Some("TASK_COMPLETED"));
        let failed = project("failed", 2, Some("TASK_FAILED"));
        let partial = project("partial", 3, Some("TASK_PARTIAL"));
        let never = project("never", 4, None);
        let created = Candidate::of(&project("new", 5, None), "new").unwrap();
        let managed = vec![&ok, &failed, &partial, &never];
        let c = candidates(
            TriggerMode::NewAndFailed,
            std::slice::from_ref(&created),
            &managed,
        );
        let got: Vec<(&str, &str)> = c.iter().map(|c| (c.project.as_str(), c.reason)).collect();
        assert_eq!(
            got,
            vec![
                ("new", "new"),
                ("failed", "lastFailed"),
                ("partial", "lastFailed"),
                ("never", "neverRan")
            ]
        );
        let all = candidates(TriggerMode::All, &[], &managed);
        assert_eq!(all.len(), 4);
        assert!(all.iter().all(|c| c.reason == "all"));
        // A created project also listed as managed is triggered once.
        let again = candidates(
            TriggerMode::All,
            &[Candidate::of(&ok, "new").unwrap()],
            &managed,
        );
        assert_eq!(again.len(), 4);
    }
}
