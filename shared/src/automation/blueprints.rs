//! The desired state of a managed blueprint, as the smallest `PATCH` that reaches it.
//!
//! Wiring (`connections`), label, cron and `timeAfter` go into ONE patch per blueprint, and a
//! blueprint already in the desired state gets no patch at all: a repeated run makes no writes.

use chrono::{DateTime, Utc};

use crate::devlake::models::{
    status, Blueprint, BlueprintConnection, BlueprintPatch, BlueprintScope, Project,
};

use super::config::CronSetting;
use super::payload::ConnectionRef;

/// The only connection a scope's project blueprint should have.
pub fn wiring(plugin: &str, connection_id: u64, scope_id: &str) -> BlueprintConnection {
    BlueprintConnection {
        plugin_name: plugin.to_string(),
        connection_id,
        scopes: vec![BlueprintScope {
            scope_id: scope_id.to_string(),
        }],
    }
}

/// Whether the blueprint's connections are exactly `want` (scope order and repeats ignored).
pub fn wired_exactly(bp: &Blueprint, want: &BlueprintConnection) -> bool {
    let [only] = bp.connections.as_slice() else {
        return false;
    };
    if only.plugin_name != want.plugin_name || only.connection_id != want.connection_id {
        return false;
    }
    let mut have: Vec<&str> = only.scopes.iter().map(|s| s.scope_id.as_str()).collect();
    have.sort_unstable();
    have.dedup();
    let mut wanted: Vec<&str> = want.scopes.iter().map(|s| s.scope_id.as_str()).collect();
    wanted.sort_unstable();
    wanted.dedup();
    have == wanted
}

/// Whether the blueprint references the scope at all.
pub fn references(bp: &Blueprint, plugin: &str, connection_id: u64, scope_id: &str) -> bool {
    bp.connections.iter().any(|c| {
        c.plugin_name == plugin
            && c.connection_id == connection_id
            && c.scopes.iter().any(|s| s.scope_id == scope_id)
    })
}

/// What a managed blueprint should look like. `None` fields are left as they are.
#[derive(Debug, Clone, Default)]
pub struct Desired<'a> {
    /// The scope's wiring (projects step, for a project claimed by a scope).
    pub wiring: Option<&'a BlueprintConnection>,
    /// The tool's label; always kept on a managed blueprint.
    pub label: Option<&'a str>,
    pub cron: Option<&'a CronSetting>,
    pub time_after: Option<DateTime<Utc>>,
    /// Puts on or takes off the backfill mark (`INITIAL_BACKFILL_DAYS`).
    pub backfill: Option<Backfill<'a>>,
    /// `enable` for an orphaned scope's blueprint (`ORPHAN_POLICY=disable`), with `orphan_mark`
    /// put on when disabling and taken off when enabling again.
    pub enable: Option<(bool, &'a str)>,
}

/// A change of a blueprint's backfill mark.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backfill<'a> {
    /// Put this mark on (see [`backfill_mark`]).
    Start(String),
    /// The backfill is over: take off every backfill mark of this managed label.
    End(&'a str),
}

/// The label a blueprint carries while its backfill has not yet been collected successfully:
/// `<label>-backfill-after-<pipeline id>`. The id is the blueprint's last pipeline when the
/// mark was put on (0 for a new project): only a pipeline DevLake numbers after it, i.e. one
/// that ran with the backfill window, ends the backfill. An adopted project's earlier successful
/// pipelines therefore do not count, and no clock is compared.
pub fn backfill_mark(label: &str, after_pipeline: u64) -> String {
    format!("{label}-backfill-after-{after_pipeline}")
}

/// The pipeline id of the blueprint's backfill mark, if it carries one.
pub fn backfill_after(bp: &Blueprint, label: &str) -> Option<u64> {
    let prefix = format!("{label}-backfill-after-");
    bp.labels
        .iter()
        .find_map(|l| l.strip_prefix(&prefix)?.parse().ok())
}

/// What a managed blueprint's `timeAfter` (and backfill mark) should become in a run whose
/// policy gives `policy`: the policy's value, except while a backfill is under way — the mark
/// is on and no pipeline after it has completed — when `timeAfter` is left where the backfill
/// put it, so the next daily run does not cut the backfill short. The first completed pipeline
/// after the mark hands the blueprint over to the policy and takes the mark off, in one patch.
pub fn rolled<'a>(
    project: &Project,
    bp: &Blueprint,
    label: &'a str,
    policy: Option<DateTime<Utc>>,
) -> (Option<DateTime<Utc>>, Option<Backfill<'a>>) {
    let Some(policy) = policy else {
        return (None, None);
    };
    match backfill_after(bp, label) {
        None => (Some(policy), None),
        Some(after) => {
            let collected = project
                .last_pipeline
                .as_ref()
                .is_some_and(|p| p.status == status::COMPLETED && p.id > after);
            if collected {
                (Some(policy), Some(Backfill::End(label)))
            } else {
                (None, None)
            }
        }
    }
}

/// The `timeAfter` (and backfill mark) a project the tool creates or adopts starts with: the
/// backfill start when it reaches further back than the policy's value, else the policy's.
/// `last_pipeline` is the blueprint's last pipeline id (0 for a new project).
pub fn initial(
    policy: DateTime<Utc>,
    backfill_start: Option<DateTime<Utc>>,
    label: &str,
    last_pipeline: u64,
) -> (DateTime<Utc>, Option<Backfill<'static>>) {
    match backfill_start {
        Some(start) if start < policy => (
            start,
            Some(Backfill::Start(backfill_mark(label, last_pipeline))),
        ),
        _ => (policy, None),
    }
}

/// The smallest patch from `bp` to `want`. Lists are sent complete because DevLake replaces
/// `connections` and `labels` wholesale.
pub fn patch_for(bp: &Blueprint, want: &Desired<'_>) -> BlueprintPatch {
    let mut patch = BlueprintPatch::default();
    if let Some(w) = want.wiring {
        if !wired_exactly(bp, w) {
            patch.connections = Some(vec![w.clone()]);
        }
    }
    let mut labels = bp.labels.clone();
    if let Some(label) = want.label {
        if !labels.iter().any(|l| l == label) {
            labels.push(label.to_string());
        }
    }
    match &want.backfill {
        Some(Backfill::Start(mark)) if !labels.contains(mark) => labels.push(mark.clone()),
        Some(Backfill::End(label)) => {
            let prefix = format!("{label}-backfill-after-");
            labels.retain(|l| !l.starts_with(&prefix));
        }
        _ => {}
    }
    if let Some((enable, mark)) = want.enable {
        if bp.enable != enable {
            patch.enable = Some(enable);
        }
        if enable {
            labels.retain(|l| l != mark);
        } else if !labels.iter().any(|l| l == mark) {
            labels.push(mark.to_string());
        }
    }
    if labels != bp.labels {
        patch.labels = Some(labels);
    }
    if let Some(cron) = want.cron {
        // Callers resolve a spread window per project; this is the fallback for one that did not.
        let cron = &cron.for_project(&bp.project_name);
        let ok = match cron {
            CronSetting::Manual => bp.is_manual,
            CronSetting::Schedule(s) => !bp.is_manual && bp.cron_config.trim() == s,
            CronSetting::Spread(_) => false,
        };
        if !ok {
            patch.cron_config = Some(cron.cron_config().to_string());
            patch.is_manual = Some(cron.is_manual());
        }
    }
    if let Some(t) = want.time_after {
        if bp.time_after != Some(t) {
            patch.time_after = Some(t);
        }
    }
    patch
}

/// Whether the project is managed: its blueprint carries the label, or the tool created it (its
/// description carries the marker; this covers a create whose blueprint PATCH never landed).
pub fn is_managed(project: &Project, label: &str) -> bool {
    project
        .blueprint
        .as_ref()
        .is_some_and(|bp| bp.labels.iter().any(|l| l == label))
        || project.description.contains(&description_marker(label))
}

pub fn description_marker(label: &str) -> String {
    format!("[managed by {label}]")
}

/// The description of a project the tool creates.
pub fn project_description(
    label: &str,
    plugin: &str,
    connection_id: u64,
    scope_id: &str,
) -> String {
    format!(
        "{} one project per scope: {plugin} connection {connection_id}, scope {scope_id}",
        description_marker(label)
    )
}

/// Whether a managed blueprint falls under this run's selection of plugins and connections.
/// A blueprint without connections belongs to no plugin and is only included in unfiltered runs.
pub fn selected(
    bp: &Blueprint,
    plugins: &[String],
    connections: Option<&[ConnectionRef]>,
    unfiltered: bool,
) -> bool {
    if bp.connections.is_empty() {
        return unfiltered;
    }
    bp.connections.iter().any(|c| {
        plugins.contains(&c.plugin_name)
            && connections.is_none_or(|list| {
                list.iter()
                    .any(|r| r.plugin == c.plugin_name && r.connection_id == c.connection_id)
            })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn bp() -> Blueprint {
        serde_json::from_value(serde_json::json!({
            "id": 7, "name": "p-Blueprint", "projectName": "p", "mode": "NORMAL", "enable": true,
            "cronConfig": "0 0 * * *", "isManual": false, "labels": ["team-a"],
            "connections": [{"pluginName": "github", "connectionId": 1, "scopes": [{"scopeId": "10"}]}],
            "timeAfter": "2026-11-20T17:00:00Z"
        }))
        .unwrap()
    }

    fn sat() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 20, 17, 0, 0).unwrap()
    }

    #[test]
    fn nothing_to_do_gives_an_empty_patch() {
        let mut b = bp();
        b.labels.push("devlake-autopilot".into());
        let w = wiring("github", 1, "10");
        let cron = CronSetting::Schedule("0 0 * * *".into());
        let p = patch_for(
            &b,
            &Desired {
                wiring: Some(&w),
                label: Some("devlake-autopilot"),
                cron: Some(&cron),
                time_after: Some(sat()),
                backfill: None,
                enable: None,
            },
        );
        assert!(p.is_empty(), "{p:?}");
    }

    #[test]
    fn drift_is_fixed_in_one_patch_with_complete_lists() {
        let mut b = bp();
        b.connections[0].scopes.push(BlueprintScope {
            scope_id: "11".into(),
        });
        b.time_after = None;
        let w = wiring("github", 1, "10");
        let cron = CronSetting::Manual;
        let p = patch_for(
            &b,
            &Desired {
                wiring: Some(&w),
                label: Some("devlake-autopilot"),
                cron: Some(&cron),
                time_after: Some(sat()),
                backfill: None,
                enable: None,
            },
        );
        let v = serde_json::to_value(&p).unwrap();
        assert_eq!(
            v,
            serde_json::json!({
                "connections": [{"pluginName": "github", "connectionId": 1, "scopes": [{"scopeId": "10"}]}],
                "labels": ["team-a", "devlake-autopilot"],
                "cronConfig": "manual",
                "isManual": true,
                "timeAfter": "2026-11-20T17:00:00Z"
            })
        );
    }

    #[test]
    fn time_after_only_when_different() {
        let b = bp();
        let only_time = |t| {
            patch_for(
                &b,
                &Desired {
                    time_after: Some(t),
                    ..Default::default()
                },
            )
        };
        assert!(only_time(sat()).is_empty());
        let later = Utc.with_ymd_and_hms(2026, 11, 27, 17, 0, 0).unwrap();
        assert_eq!(only_time(later).time_after, Some(later));
        assert!(only_time(later).connections.is_none());
    }

    #[test]
    fn exact_wiring_ignores_order_and_repeats() {
        let mut b = bp();
        b.connections[0].scopes = vec![
            BlueprintScope {
                scope_id: "10".into(),
            },
            BlueprintScope {
                scope_id: "10".into(),
            },
        ];
        assert!(wired_exactly(&b, &wiring("github", 1, "10")));
        assert!(!wired_exactly(&b, &wiring("github", 2, "10")));
        assert!(!wired_exactly(&b, &wiring("gitlab", 1, "10")));
        b.connections.clear();
        assert!(!wired_exactly(&b, &wiring("github", 1, "10")));
    }

    #[test]
    fn managed_by_label_or_marker() {
        let mut p: Project =
            serde_json::from_value(serde_json::json!({"name": "p", "blueprint": null})).unwrap();
        assert!(!is_managed(&p, "devlake-autopilot"));
        p.description = project_description("devlake-autopilot", "github", 1, "10");
        assert!(is_managed(&p, "devlake-autopilot"));
        assert!(!is_managed(&p, "other-tool"));
        let mut b = bp();
        b.labels = vec!["devlake-autopilot".into()];
        let p = Project {
            description: String::new(),
            blueprint: Some(b),
            ..p
        };
        assert!(is_managed(&p, "devlake-autopilot"));
    }

    #[test]
    fn selection_by_plugin_and_connection() {
        let b = bp();
        let gh = vec!["github".to_string()];
        assert!(selected(&b, &gh, None, true));
        assert!(!selected(&b, &["jira".to_string()], None, false));
        let c1 = [ConnectionRef {
            plugin: "github".into(),
            connection_id: 1,
        }];
        let c2 = [ConnectionRef {
            plugin: "github".into(),
            connection_id: 2,
        }];
        assert!(selected(&b, &gh, Some(&c1), false));
        assert!(!selected(&b, &gh, Some(&c2), false));
        let mut empty = bp();
        empty.connections.clear();
        assert!(selected(&empty, &gh, None, true));
        assert!(!selected(&empty, &gh, None, false));
    }

    #[test]
    fn backfill_holds_time_after_until_a_later_pipeline_completes() {
        let policy = sat();
        let start = Utc.with_ymd_and_hms(2026, 8, 30, 17, 0, 0).unwrap();
        let (t, mark) = initial(policy, Some(start), "devlake-autopilot", 0);
        assert_eq!(t, start);
        assert_eq!(
            mark,
            Some(Backfill::Start("devlake-autopilot-backfill-after-0".into()))
        );
        // A backfill shorter than the policy's window is no backfill.
        let late = Utc.with_ymd_and_hms(2026, 11, 25, 17, 0, 0).unwrap();
        assert_eq!(initial(policy, Some(late), "l", 0), (policy, None));

        let mut b = bp();
        b.labels = vec![
            "devlake-autopilot".into(),
            "devlake-autopilot-backfill-after-4".into(),
        ];
        b.time_after = Some(start);
        let mut p: Project = serde_json::from_value(serde_json::json!({"name": "p"})).unwrap();
        p.blueprint = Some(b.clone());
        // Never ran, or only the pipeline from before the mark: timeAfter stays.
        assert_eq!(
            rolled(&p, &b, "devlake-autopilot", Some(policy)),
            (None, None)
        );
        let pipeline = |id: u64, st: &str| {
            serde_json::from_value(serde_json::json!({"id": id, "status": st, "blueprintId": 7}))
                .unwrap()
        };
        p.last_pipeline = Some(pipeline(4, "TASK_COMPLETED"));
        assert_eq!(
            rolled(&p, &b, "devlake-autopilot", Some(policy)),
            (None, None)
        );
        p.last_pipeline = Some(pipeline(9, "TASK_FAILED"));
        assert_eq!(
            rolled(&p, &b, "devlake-autopilot", Some(policy)),
            (None, None)
        );
        p.last_pipeline = Some(pipeline(9, "TASK_COMPLETED"));
        let (t, end) = rolled(&p, &b, "devlake-autopilot", Some(policy));
        assert_eq!(t, Some(policy));
        let patch = patch_for(
            &b,
            &Desired {
                time_after: t,
                backfill: end,
                ..Default::default()
            },
        );
        assert_eq!(patch.labels, Some(vec!["devlake-autopilot".to_string()]));
        assert_eq!(patch.time_after, Some(policy));
    }
}
