//! The summary's `stepCounts`: the run's totals again, grouped by the step that produced them.

use serde::Serialize;

use super::Counts;

/// The totals again, grouped by the step that produced them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StepCounts {
    pub discover: DiscoverCounts,
    pub sync: SyncCounts,
    pub scope_configs: ScopeConfigCounts,
    pub projects: ProjectCounts,
    pub time_after: TimeAfterCounts,
    pub trigger: TriggerCounts,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DiscoverCounts {
    pub connections: u64,
    pub connections_tested: u64,
    pub connections_down: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SyncCounts {
    pub remote_scopes: u64,
    pub scopes_added: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ScopeConfigCounts {
    pub created: u64,
    pub assigned: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ProjectCounts {
    pub created: u64,
    pub reconciled: u64,
    pub conflicting: u64,
    pub unchanged: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TimeAfterCounts {
    pub updated: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TriggerCounts {
    pub triggered: u64,
    pub skipped: u64,
    /// Projects not triggered because a connection of theirs is down (also in `skipped`).
    pub connection_down: u64,
}

impl StepCounts {
    pub(super) fn of(t: &Counts) -> Self {
        StepCounts {
            discover: DiscoverCounts {
                connections: t.discovered_connections,
                connections_tested: t.connections_tested,
                connections_down: t.connections_down,
            },
            sync: SyncCounts {
                remote_scopes: t.remote_scopes,
                scopes_added: t.scopes_added,
            },
            scope_configs: ScopeConfigCounts {
                created: t.scope_configs_created,
                assigned: t.scope_configs_assigned,
            },
            projects: ProjectCounts {
                created: t.projects_created,
                reconciled: t.projects_reconciled,
                conflicting: t.projects_conflicting,
                unchanged: t.projects_unchanged,
            },
            time_after: TimeAfterCounts {
                updated: t.time_after_updated,
            },
            trigger: TriggerCounts {
                triggered: t.triggered,
                skipped: t.skipped,
                connection_down: t.projects_skipped_connection_down,
            },
        }
    }
}
