//! Adoption: makes projects someone else created (by hand, or a system that put no marks on them)
//! managed, when their blueprint holds exactly one scope of a connection this tool manages.
//!
//! An adopted project gets the marks a created one carries — the managed label on its blueprint
//! (plus the backfill label when `INITIAL_BACKFILL_DAYS` is on) — and `timeAfter` as this run's
//! policy (or backfill) gives it, in ONE `PATCH`. Its wiring, cron, name and everything else
//! stay as they are; later daily runs manage it like a project the tool created.

use std::collections::HashSet;

use chrono::{DateTime, SecondsFormat, Utc};
use futures::TryStreamExt;
use serde_json::{json, Value};

use crate::devlake::models::{Project, SUPPORTED_PLUGINS};
use crate::time_rules::days_before;

use super::blueprints::{initial, is_managed, patch_for, references, Desired};
use super::payload::AdoptRequest;
use super::summary::{At, Report};
use super::Ctx;
use crate::job::Stop;

/// The one scope an adoptable project's blueprint holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Adoptable {
    pub plugin: String,
    pub connection_id: u64,
    pub scope_id: String,
}

/// Why a project cannot be adopted; it is left untouched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// `alreadyManaged`, `noBlueprint`, `noScope`, `severalScopes`, `unknownConnection`,
    /// `scopeHasManagedProject`, `notFound`.
    pub reason: &'static str,
    pub message: String,
}

fn refuse(reason: &'static str, message: impl Into<String>) -> Refusal {
    Refusal {
        reason,
        message: message.into(),
    }
}

/// Whether `project` can be adopted. `discovered` holds the `(plugin, connection id)` of every
/// connection this tool manages; `projects` is the whole list (a scope that already has a managed
/// project is not given a second one).
pub fn assess(
    project: &Project,
    projects: &[Project],
    label: &str,
    discovered: &HashSet<(String, u64)>,
) -> Result<Adoptable, Refusal> {
    if is_managed(project, label) {
        return Err(refuse("alreadyManaged", "the project is already managed"));
    }
    let Some(bp) = project.blueprint.as_ref() else {
        return Err(refuse("noBlueprint", "the project has no blueprint"));
    };
    let mut scopes: Vec<(&str, u64, &str)> = bp
        .connections
        .iter()
        .flat_map(|c| {
            c.scopes
                .iter()
                .map(move |s| (c.plugin_name.as_str(), c.connection_id, s.scope_id.as_str()))
        })
        .collect();
    scopes.sort_unstable();
    scopes.dedup();
    let (plugin, connection_id, scope_id) = match scopes.as_slice() {
        [] => return Err(refuse("noScope", "the blueprint holds no scope")),
        [one] => *one,
        more => {
            return Err(refuse(
                "severalScopes",
                format!(
                    "the blueprint holds {} scopes; a managed project has exactly one",
                    more.len()
                ),
            ))
        }
    };
    if !discovered.contains(&(plugin.to_string(), connection_id)) {
        return Err(refuse(
            "unknownConnection",
            format!("connection {plugin}/{connection_id} is not one this tool manages (PLUGINS, or it does not exist)"),
        ));
    }
    if let Some(other) = projects.iter().find(|p| {
        p.name != project.name
            && is_managed(p, label)
            && p.blueprint
                .as_ref()
                .is_some_and(|b| references(b, plugin, connection_id, scope_id))
    }) {
        return Err(refuse(
            "scopeHasManagedProject",
            format!(
                "scope {plugin}/{connection_id}/{scope_id} already has the managed project {:?}",
                other.name
            ),
        ));
    }
    Ok(Adoptable {
        plugin: plugin.to_string(),
        connection_id,
        scope_id: scope_id.to_string(),
    })
}

/// How many unmanaged projects could be adopted (the `adoptable` field of a daily run).
pub fn count_adoptable(
    projects: &[Project],
    label: &str,
    discovered: &HashSet<(String, u64)>,
) -> u64 {
    projects
        .iter()
        .filter(|p| assess(p, projects, label, discovered).is_ok())
        .count() as u64
}

/// Runs an adopt request.
pub(crate) async fn run(
    ctx: &Ctx<'_>,
    req: &AdoptRequest,
    now: DateTime<Utc>,
    report: &mut Report,
) -> Result<(), Stop> {
    let cfg = ctx.config;
    let label = cfg.label.as_str();
    report.steps = vec!["adopt"];
    let policy = cfg.time_after_policy.time_after(now, cfg.timezone);
    let backfill_start = (cfg.initial_backfill_days > 0)
        .then(|| days_before(now, cfg.initial_backfill_days, cfg.timezone));
    report.time_after = Some(policy.to_rfc3339_opts(SecondsFormat::Secs, true));

    // The first call decides whether DevLake can be used at all; nothing is written before.
    let loaded = ctx.devlake.plugins().await.map_err(Stop::DevLake)?;
    let mut discovered = HashSet::new();
    for plugin in SUPPORTED_PLUGINS
        .iter()
        .filter(|p| cfg.plugins.iter().any(|c| c == *p))
        .filter(|p| loaded.iter().any(|l| l.plugin == **p))
    {
        match ctx.devlake.connections(plugin).await {
            Ok(list) => discovered.extend(list.into_iter().map(|c| (plugin.to_string(), c.id))),
            Err(e) => {
                // Projects of this plugin are then refused as unknown: nothing is adopted on a
                // guess.
                let e = Stop::pass(e)?;
                report.error("adopt", &At::plugin(plugin), &e);
            }
        }
    }
    let projects: Vec<Project> = match ctx.devlake.projects().try_collect().await {
        Ok(p) => p,
        Err(e) => {
            let e = Stop::pass(e)?;
            report.error("adopt", &At::default(), &e);
            return Ok(());
        }
    };

    let mut adopted: Vec<Value> = Vec::new();
    let mut refused: Vec<Value> = Vec::new();
    let candidates: Vec<(String, Option<&Project>)> = match &req.projects {
        Some(names) => names
            .iter()
            .map(|n| (n.clone(), projects.iter().find(|p| &p.name == n)))
            .collect(),
        None => projects
            .iter()
            .filter(|p| !is_managed(p, label))
            .map(|p| (p.name.clone(), Some(p)))
            .collect(),
    };
    for (name, project) in candidates {
        let Some(project) = project else {
            refused.push(json!({"project": name, "reason": "notFound", "message": "no project has this name"}));
            continue;
        };
        let scope = match assess(project, &projects, label, &discovered) {
            Ok(s) => s,
            Err(r) => {
                tracing::info!(project = %name, reason = r.reason, "not adopted");
                refused.push(json!({"project": name, "reason": r.reason, "message": r.message}));
                continue;
            }
        };
        let Some(bp) = project.blueprint.as_ref() else {
            continue;
        };
        if ctx.deadline.passed() {
            report.remaining.projects.push(name.clone());
            continue;
        }
        let last = project.last_pipeline.as_ref().map_or(0, |p| p.id);
        let (time_after, backfill) = initial(policy, backfill_start, label, last);
        let patch = patch_for(
            bp,
            &Desired {
                label: Some(label),
                time_after: Some(time_after),
                backfill,
                ..Default::default()
            },
        );
        let at = At::connection(&scope.plugin, scope.connection_id)
            .scope(&scope.scope_id)
            .project(&name);
        if ctx.dry_run {
            report.plan(
                "adopt",
                "adoptProject",
                &at,
                Some(bp.id),
                serde_json::to_value(&patch).unwrap_or_default(),
            );
        } else if let Err(e) = ctx.devlake.patch_blueprint(bp.id, &patch).await {
            let e = Stop::pass(e)?;
            report.error("adopt", &at, &e);
            continue;
        } else {
            tracing::info!(
                project = %name,
                plugin = %scope.plugin,
                connection_id = scope.connection_id,
                scope_id = %scope.scope_id,
                blueprint_id = bp.id,
                time_after = %time_after,
                "project adopted"
            );
        }
        report.counts(Some(&scope.plugin)).blueprints_updated += 1;
        adopted.push(json!({
            "project": name,
            "plugin": scope.plugin,
            "connectionId": scope.connection_id,
            "scopeId": scope.scope_id,
            "blueprintId": bp.id,
            "timeAfter": time_after.to_rfc3339_opts(SecondsFormat::Secs, true),
        }));
    }
    report.extra.insert("adopted".into(), Value::Array(adopted));
    report
        .extra
        .insert("notAdopted".into(), Value::Array(refused));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn project(name: &str, labels: &[&str], connections: Value) -> Project {
        serde_json::from_value(json!({
            "name": name,
            "blueprint": {"id": 1, "labels": labels, "connections": connections}
        }))
        .unwrap()
    }

    #[test]
    fn only_single_scope_blueprints_of_managed_connections_are_adoptable() {
        let discovered: HashSet<(String, u64)> = [("github".to_string(), 1)].into();
        let one =
            json!([{"pluginName": "github", "connectionId": 1, "scopes": [{"scopeId": "5"}]}]);
        let p = project("legacy", &["team"], one.clone());
        let all = vec![p.clone()];
        assert_eq!(
            assess(&p, &all, "devlake-autopilot", &discovered).unwrap(),
            Adoptable {
                plugin: "github".into(),
                connection_id: 1,
                scope_id: "5".into()
            }
        );
        let reason = |p: &Project, all: &[Project]| {
            assess(p, all, "devlake-autopilot", &discovered)
                .unwrap_err()
                .reason
        };
        let managed = project("m", &["devlake-autopilot"], one.clone());
        assert_eq!(reason(&managed, &[]), "alreadyManaged");
        // The same scope already has a managed project: no second one.
        assert_eq!(reason(&p, &[p.clone(), managed]), "scopeHasManagedProject");
        let two = project(
            "two",
            &[],
            json!([{"pluginName": "github", "connectionId": 1, "scopes": [{"scopeId": "5"}, {"scopeId": "6"}]}]),
        );
        assert_eq!(reason(&two, &[]), "severalScopes");
        let none = project("none", &[], json!([]));
        assert_eq!(reason(&none, &[]), "noScope");
        let other = project(
            "other",
            &[],
            json!([{"pluginName": "github", "connectionId": 9, "scopes": [{"scopeId": "5"}]}]),
        );
        assert_eq!(reason(&other, &[]), "unknownConnection");
        let bare: Project = serde_json::from_value(json!({"name": "bare"})).unwrap();
        assert_eq!(reason(&bare, &[]), "noBlueprint");
    }
}
