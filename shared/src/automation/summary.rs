//! The JSON answer of a run (docs/operations.md, "Automation summary"): the bookkeeping the
//! steps fill in ([`Report`]) and the typed [`Summary`] it ends as.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

use crate::cloudwatch::Datum;
use crate::devlake::{CallCounts, DevLakeError};
use crate::job::{JobSummary, RunStatus, Source};

mod step_counts;
use crate::store::ConnectionHealth;
pub use step_counts::StepCounts;

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

impl ItemError {
    /// A failed item at `at`, logged as it is recorded.
    pub fn new(step: &str, at: &At<'_>, message: String, retryable: bool) -> Self {
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
        ItemError {
            step: step.to_string(),
            plugin: at.plugin.map(str::to_string),
            connection_id: at.connection_id,
            scope_id: at.scope_id.map(str::to_string),
            project: at.project.map(str::to_string),
            message,
            retryable,
        }
    }
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

/// What an invocation does: a run of the schedule (or its manual form), or an action.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    #[default]
    Run,
    Rerun,
    Adopt,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Run => "run",
            Action::Rerun => "rerun",
            Action::Adopt => "adopt",
        }
    }
}

/// Everything a run learned, turned into the [`Summary`] at the end.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub action: Action,
    pub dry_run: bool,
    pub source: Source,
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
        let error = ItemError::new(step, at, message, retryable);
        self.counts(at.plugin).errors += 1;
        self.errors.push(error);
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

    /// The summary: totals, per-step counts and the lists, as the run answers them (its DevLake
    /// calls and duration are stamped by the lifecycle).
    pub fn into_summary(self) -> Summary {
        let t = self.totals();
        let status = if self.is_ok() {
            RunStatus::Ok
        } else {
            RunStatus::Partial
        };
        Summary {
            status,
            action: self.action,
            dry_run: self.dry_run,
            source: self.source,
            now: self.now,
            time_after: self.time_after,
            trigger_mode: self.trigger_mode,
            steps: self.steps,
            step_counts: StepCounts::of(&t),
            counts: t,
            plugins: self.plugins,
            conflicts: self.conflicts,
            errors: self.errors,
            skipped_triggers: self.skipped_triggers,
            connections_down: self.connections.iter().filter(|c| !c.up).cloned().collect(),
            devlake_calls: CallCounts::default(),
            phase_ms: self.phase_ms,
            duration_ms: 0,
            planned: self.dry_run.then_some(self.planned),
            remaining: (!self.remaining.is_empty()).then_some(self.remaining),
            managed_projects: self.managed_projects,
            extra: self.extra,
            connections: self.connections,
            connections_untested: self.connections_untested,
            connections_complete: self.connections_complete,
        }
    }
}

/// What an automation invocation answers, kept (lists cut) in its run record.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    /// `ok`, or `partial` when an item failed or the deadline left work for the next run.
    pub status: RunStatus,
    pub action: Action,
    pub dry_run: bool,
    pub source: Source,
    /// The run's `now` (RFC 3339, seconds).
    pub now: String,
    /// The `timeAfter` the run sets (`null` when it sets none).
    pub time_after: Option<String>,
    pub trigger_mode: String,
    pub steps: Vec<&'static str>,
    /// Totals over every plugin (in a dry run: what would change).
    pub counts: Counts,
    pub step_counts: StepCounts,
    pub plugins: BTreeMap<String, Counts>,
    pub conflicts: Vec<Conflict>,
    pub errors: Vec<ItemError>,
    pub skipped_triggers: Vec<SkippedTrigger>,
    /// The connections this run's tests found down, with DevLake's message.
    pub connections_down: Vec<ConnectionHealth>,
    /// HTTP requests sent to DevLake, retries included.
    pub devlake_calls: CallCounts,
    /// Wall time per phase (`connections`, `projects`, `trigger`), in milliseconds.
    pub phase_ms: BTreeMap<&'static str, u64>,
    pub duration_ms: u64,
    /// Every change a dry run would make (dry runs only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub planned: Option<Vec<Planned>>,
    /// Work the deadline left for the next run (only when there is some).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remaining: Option<Remaining>,
    /// Managed projects in DevLake after the run, when the run listed projects.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub managed_projects: Option<u64>,
    /// The fields of one feature (`adoptable`, `adopted`, `notAdopted`, `orphanScopes`,
    /// `orphanScopeCounts`), at the top level.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, Value>,
    /// Every verdict of this run's connection tests, in test order (for `ConnectionUp` and the
    /// stored connection health; the JSON lists only the ones down).
    #[serde(skip)]
    pub connections: Vec<ConnectionHealth>,
    /// Connections discovered but given no verdict.
    #[serde(skip)]
    pub connections_untested: u64,
    /// Every connection was listed unfiltered and got a verdict: the verdicts replace the
    /// stored connection health.
    #[serde(skip)]
    pub connections_complete: bool,
}

impl Summary {
    /// Adds an error not tied to a plugin (a run cut short at a step every later one needs).
    pub fn push_error(&mut self, error: ItemError) {
        self.counts.errors += 1;
        self.errors.push(error);
        self.status = RunStatus::Partial;
    }
}

impl JobSummary for Summary {
    const LISTS: &'static [&'static [&'static str]] = SUMMARY_LISTS;

    fn status(&self) -> RunStatus {
        self.status
    }

    fn item_errors(&self) -> u64 {
        self.counts.errors
    }

    fn set_figures(&mut self, calls: CallCounts, duration_ms: u64) {
        self.devlake_calls = calls;
        self.duration_ms = duration_ms;
    }

    /// No per-project dimensions (each combination costs money); `ConnectionUp` per tested
    /// connection (dimensions `Plugin`, `ConnectionId`: few, and stable, unlike names). The
    /// series other than `Triggered` follow the daily runs, not someone's manual `rerun` or
    /// `adopt`.
    fn datums(&self) -> Vec<Datum> {
        let t = &self.counts;
        let mut datums = vec![Datum::count("Triggered", t.triggered as f64)];
        if self.action == Action::Run {
            datums.extend([
                Datum::count("ProjectsCreated", t.projects_created as f64),
                Datum::count("ScopesAdded", t.scopes_added as f64),
                Datum::count("BlueprintsUpdated", t.blueprints_updated as f64),
            ]);
            datums.extend(self.connections.iter().map(|c| {
                Datum::flag("ConnectionUp", c.up)
                    .with_dimension("Plugin", &c.plugin)
                    .with_dimension("ConnectionId", &c.connection_id.to_string())
            }));
        }
        datums
    }

    fn log_finished(&self, recorded: &Value) {
        let t = &self.counts;
        tracing::info!(
            action = self.action.as_str(),
            status = ?self.status,
            dry_run = self.dry_run,
            scopes_added = t.scopes_added,
            scope_configs_created = t.scope_configs_created,
            projects_created = t.projects_created,
            projects_reconciled = t.projects_reconciled,
            projects_conflicting = t.projects_conflicting,
            blueprints_updated = t.blueprints_updated,
            triggered = t.triggered,
            skipped = t.skipped,
            errors = t.errors,
            devlake_reads = self.devlake_calls.reads,
            devlake_writes = self.devlake_calls.writes,
            duration_ms = self.duration_ms,
            summary = %recorded,
            "automation run finished"
        );
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

    fn json(r: &Report) -> Value {
        serde_json::to_value(r.clone().into_summary()).unwrap()
    }

    #[test]
    fn status_is_partial_with_errors_or_leftovers() {
        let mut r = Report::default();
        r.counts(Some("github")).projects_created = 2;
        r.counts(Some("jira")).projects_created = 1;
        let v = json(&r);
        assert_eq!(v["status"], "ok");
        assert_eq!(v["action"], "run");
        assert_eq!(v["counts"]["projectsCreated"], 3);
        assert_eq!(v["stepCounts"]["projects"]["created"], 3);
        assert_eq!(v["plugins"]["jira"]["projectsCreated"], 1);
        assert!(v.get("remaining").is_none());
        assert!(v.get("planned").is_none());
        assert!(v.get("managedProjects").is_none());
        assert_eq!(v["timeAfter"], Value::Null, "present, null");

        r.error_message("sync", &At::connection("github", 1), "boom".into(), true);
        let v = json(&r);
        assert_eq!(v["status"], "partial");
        assert_eq!(v["errors"][0]["plugin"], "github");
        assert_eq!(v["errors"][0]["connectionId"], 1);
        assert_eq!(v["counts"]["errors"], 1);

        let mut r = Report::default();
        r.remaining.triggers = 3;
        let v = json(&r);
        assert_eq!(v["status"], "partial");
        assert_eq!(v["remaining"]["triggers"], 3);

        let mut dry = Report {
            dry_run: true,
            ..Report::default()
        };
        dry.extra.insert("adoptable".into(), 4.into());
        let v = json(&dry);
        assert_eq!(v["planned"], serde_json::json!([]));
        assert_eq!(v["adoptable"], 4);
    }

    #[test]
    fn an_error_pushed_on_the_summary_makes_it_partial() {
        let mut s = Report::default().into_summary();
        s.push_error(ItemError::new(
            "run",
            &At::default(),
            "cut off".into(),
            true,
        ));
        assert_eq!(s.status, RunStatus::Partial);
        assert_eq!((s.counts.errors, s.item_errors()), (1, 1));
    }
}
