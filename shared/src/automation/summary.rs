//! The JSON answer of a run (docs/operations.md) and the bookkeeping that builds it.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

use crate::devlake::{CallCounts, DevLakeError};
use crate::store::ConnectionHealth;

/// Counts of one plugin, or of the whole run. In a dry run they count what *would* change.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Counts {
    pub discovered_connections: u64,
    /// Remote scopes that passed `SCOPE_INCLUDE`/`SCOPE_EXCLUDE`.
    pub remote_scopes: u64,
    pub scopes_added: u64,
    pub scope_configs_created: u64,
    /// Scopes that had no scope config and were given the tool's.
    pub scope_configs_assigned: u64,
    pub projects_created: u64,
    pub projects_reconciled: u64,
    pub projects_conflicting: u64,
    pub projects_unchanged: u64,
    /// PATCHes of existing managed blueprints (wiring, label, cron, `timeAfter`); wiring a
    /// project created in this run counts under `projects_created`.
    pub blueprints_updated: u64,
    /// Of those, the ones that moved `timeAfter`.
    pub time_after_updated: u64,
    pub triggered: u64,
    pub skipped: u64,
    pub errors: u64,
    /// Connections DevLake gave a test verdict for, and those it found down.
    pub connections_tested: u64,
    pub connections_down: u64,
    /// Projects not triggered because a connection of theirs is down (also in `skipped`).
    pub projects_skipped_connection_down: u64,
}

impl Counts {
    fn add(&mut self, other: &Counts) {
        self.discovered_connections += other.discovered_connections;
        self.remote_scopes += other.remote_scopes;
        self.scopes_added += other.scopes_added;
        self.scope_configs_created += other.scope_configs_created;
        self.scope_configs_assigned += other.scope_configs_assigned;
        self.projects_created += other.projects_created;
        self.projects_reconciled += other.projects_reconciled;
        self.projects_conflicting += other.projects_conflicting;
        self.projects_unchanged += other.projects_unchanged;
        self.blueprints_updated += other.blueprints_updated;
        self.time_after_updated += other.time_after_updated;
        self.triggered += other.triggered;
        self.skipped += other.skipped;
        self.errors += other.errors;
        self.connections_tested += other.connections_tested;
        self.connections_down += other.connections_down;
        self.projects_skipped_connection_down += other.projects_skipped_connection_down;
    }
}

/// A project name the tool will not use, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Conflict {
    pub project: String,
    pub plugin: String,
    pub connection_id: u64,
    pub scope_id: String,
    pub full_name: String,
    /// `heldByUnmanagedProject`, `heldByManagedProjectOfAnotherScope`, `duplicateName`,
    /// `nameTooLong`, `emptyName`.
    pub reason: String,
    pub message: String,
}

/// One failed item. The run goes on; its status becomes `partial`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ItemError {
    pub step: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plugin: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connection_id: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
    pub message: String,
    /// Whether the next run can be expected to get past it without anyone's help.
    pub retryable: bool,
}

/// One change a dry run would make (`planned` is only part of dry-run summaries).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Planned {
    pub step: String,
    /// `addScope`, `createScopeConfig`, `assignScopeConfig`, `createProject`,
    /// `updateBlueprint`, `updateProjectMetrics`, `trigger`.
    pub action: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plugin: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connection_id: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub blueprint_id: Option<u64>,
    /// The body that would be sent, or what it would change.
    #[serde(skip_serializing_if = "Value::is_null")]
    pub detail: Value,
}

/// A blueprint the trigger step did not start, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SkippedTrigger {
    pub project: String,
    pub blueprint_id: u64,
    /// `alreadyRunning`, `disabled`, `notWired`, `maxPerRun`, `connectionDown`.
    pub reason: String,
}

/// Work a run left for the next one because the Lambda deadline came close.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Remaining {
    /// `{plugin}/{connectionId}` not synchronised.
    pub connections: Vec<String>,
    /// Projects not created or reconciled.
    pub projects: Vec<String>,
    /// Blueprint updates not sent.
    pub blueprint_updates: u64,
    /// Triggers not sent.
    pub triggers: u64,
}

impl Remaining {
    pub fn is_empty(&self) -> bool {
        *self == Remaining::default()
    }
}

/// Everything a run learned, turned into the summary at the end.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub action: &'static str,
    pub dry_run: bool,
    pub source: String,
    pub now: String,
    pub time_after: Option<String>,
    pub trigger_mode: String,
    pub steps: Vec<&'static str>,
    pub plugins: BTreeMap<String, Counts>,
    /// Counts not tied to one plugin (rerun of named projects).
    pub other: Counts,
    pub conflicts: Vec<Conflict>,
    pub errors: Vec<ItemError>,
    pub planned: Vec<Planned>,
    pub skipped_triggers: Vec<SkippedTrigger>,
    pub remaining: Remaining,
    /// Wall time per phase (`connections`, `projects`, `trigger`), in milliseconds.
    pub phase_ms: BTreeMap<&'static str, u64>,
    /// Managed projects in DevLake after the run (all of them, whatever the payload selected);
    /// `None` when the run did not list projects.
    pub managed_projects: Option<u64>,
    /// The verdicts of this run's connection tests, in test order.
    pub connections: Vec<ConnectionHealth>,
    /// Connections discovered but given no verdict (DevLake errors, the deadline).
    pub connections_untested: u64,
    /// Every configured plugin's connections were listed unfiltered and each got a verdict:
    /// the run's verdicts replace the stored connection health.
    pub connections_complete: bool,
    /// Further top-level summary fields of one feature (`adoptable`, `adopted`, `notAdopted`,
    /// `orphanScopes`), added as they are.
    pub extra: serde_json::Map<String, Value>,
}

impl Report {
    /// Counters of `plugin` (or of no plugin for `None`).
    pub fn counts(&mut self, plugin: Option<&str>) -> &mut Counts {
        match plugin {
            Some(p) => self.plugins.entry(p.to_string()).or_default(),
            None => &mut self.other,
        }
    }

    pub fn totals(&self) -> Counts {
        let mut t = self.other.clone();
        for c in self.plugins.values() {
            t.add(c);
        }
        t
    }

    /// Records a failed item and logs it.
    pub fn error(&mut self, step: &str, at: &At<'_>, error: &DevLakeError) {
        // Cut off by the deadline: the next run does it.
        let retryable = error.is_retryable() || error.is_deadline();
        self.error_message(step, at, error.to_string(), retryable);
    }

    pub fn error_message(&mut self, step: &str, at: &At<'_>, message: String, retryable: bool) {
        tracing::warn!(
            step,
            plugin = at.plugin.unwrap_or(""),
            connection_id = at.connection_id.unwrap_or(0),
            scope_id = at.scope_id.unwrap_or(""),
            project = at.project.unwrap_or(""),
            retryable,
            error = %message,
            "automation item failed"
        );
        self.counts(at.plugin).errors += 1;
        self.errors.push(ItemError {
            step: step.to_string(),
            plugin: at.plugin.map(str::to_string),
            connection_id: at.connection_id,
            scope_id: at.scope_id.map(str::to_string),
            project: at.project.map(str::to_string),
            message,
            retryable,
        });
    }

    pub fn plan(
        &mut self,
        step: &str,
        action: &str,
        at: &At<'_>,
        blueprint_id: Option<u64>,
        detail: Value,
    ) {
        tracing::info!(
            step,
            action,
            plugin = at.plugin.unwrap_or(""),
            connection_id = at.connection_id.unwrap_or(0),
            scope_id = at.scope_id.unwrap_or(""),
            project = at.project.unwrap_or(""),
            dry_run = true,
            "would change"
        );
        self.planned.push(Planned {
            step: step.to_string(),
            action: action.to_string(),
            plugin: at.plugin.map(str::to_string),
            connection_id: at.connection_id,
            scope_id: at.scope_id.map(str::to_string),
            project: at.project.map(str::to_string),
            blueprint_id,
            detail,
        });
    }

    pub fn is_ok(&self) -> bool {
        self.errors.is_empty() && self.remaining.is_empty()
    }

    /// The summary JSON.
    pub fn to_json(&self, calls: CallCounts, duration_ms: u64) -> Value {
        let t = self.totals();
        let mut out = serde_json::json!({
            "status": if self.is_ok() { "ok" } else { "partial" },
            "action": self.action,
            "dryRun": self.dry_run,
            "source": self.source,
            "now": self.now,
            "timeAfter": self.time_after,
            "triggerMode": self.trigger_mode,
            "steps": self.steps,
            "counts": t,
            "stepCounts": {
                "discover": {
                    "connections": t.discovered_connections,
                    "connectionsTested": t.connections_tested,
                    "connectionsDown": t.connections_down,
                },
                "sync": {"remoteScopes": t.remote_scopes, "scopesAdded": t.scopes_added},
                "scopeConfigs": {"created": t.scope_configs_created, "assigned": t.scope_configs_assigned},
                "projects": {
                    "created": t.projects_created,
                    "reconciled": t.projects_reconciled,
                    "conflicting": t.projects_conflicting,
                    "unchanged": t.projects_unchanged,
                },
                "timeAfter": {"updated": t.time_after_updated},
                "trigger": {
                    "triggered": t.triggered,
                    "skipped": t.skipped,
                    "connectionDown": t.projects_skipped_connection_down,
                },
            },
            "plugins": self.plugins,
            "conflicts": self.conflicts,
            "errors": self.errors,
            "skippedTriggers": self.skipped_triggers,
            "connectionsDown": self.connections.iter().filter(|c| !c.up).collect::<Vec<_>>(),
            "devlakeCalls": calls,
            "phaseMs": self.phase_ms,
            "durationMs": duration_ms,
        });
        if self.dry_run {
            out["planned"] = serde_json::to_value(&self.planned).unwrap_or(Value::Null);
        }
        if !self.remaining.is_empty() {
            out["remaining"] = serde_json::to_value(&self.remaining).unwrap_or(Value::Null);
        }
        if let Some(n) = self.managed_projects {
            out["managedProjects"] = n.into();
        }
        for (k, v) in &self.extra {
            out[k.as_str()] = v.clone();
        }
        out
    }
}

/// The lists of a summary that grow with the number of scopes and projects; the copy in the
/// run record and in the closing log line keeps the first entries of each (see
/// [`crate::limits::bounded`]).
pub const SUMMARY_LISTS: &[&[&str]] = &[
    &["conflicts"],
    &["errors"],
    &["skippedTriggers"],
    &["connectionsDown"],
    &["planned"],
    &["remaining", "connections"],
    &["remaining", "projects"],
];

/// Where something happened, for errors, plans and log lines.
#[derive(Debug, Clone, Copy, Default)]
pub struct At<'a> {
    pub plugin: Option<&'a str>,
    pub connection_id: Option<u64>,
    pub scope_id: Option<&'a str>,
    pub project: Option<&'a str>,
}

impl<'a> At<'a> {
    pub fn plugin(plugin: &'a str) -> Self {
        At {
            plugin: Some(plugin),
            ..Default::default()
        }
    }
    pub fn connection(plugin: &'a str, connection_id: u64) -> Self {
        At {
            plugin: Some(plugin),
            connection_id: Some(connection_id),
            ..Default::default()
        }
    }
    pub fn scope(self, scope_id: &'a str) -> Self {
        At {
            scope_id: Some(scope_id),
            ..self
        }
    }
    pub fn project(self, project: &'a str) -> Self {
        At {
            project: Some(project),
            ..self
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_is_partial_with_errors_or_leftovers() {
        let mut r = Report {
            action: "run",
            ..Default::default()
        };
        r.counts(Some("github")).projects_created = 2;
        r.counts(Some("jira")).projects_created = 1;
        let v = r.to_json(CallCounts::default(), 5);
        assert_eq!(v["status"], "ok");
        assert_eq!(v["counts"]["projectsCreated"], 3);
        assert_eq!(v["plugins"]["jira"]["projectsCreated"], 1);
        assert!(v.get("remaining").is_none());
        assert!(v.get("planned").is_none());

        r.error_message("sync", &At::connection("github", 1), "boom".into(), true);
        let v = r.to_json(CallCounts::default(), 5);
        assert_eq!(v["status"], "partial");
        assert_eq!(v["errors"][0]["plugin"], "github");
        assert_eq!(v["errors"][0]["connectionId"], 1);
        assert_eq!(v["counts"]["errors"], 1);

        let mut r = Report::default();
        r.remaining.triggers = 3;
        let v = r.to_json(CallCounts::default(), 5);
        assert_eq!(v["status"], "partial");
        assert_eq!(v["remaining"]["triggers"], 3);
    }
}
