//! Orphaned scopes: scopes DevLake has saved that the remote tool no longer lists (a repository
//! deleted, archived away or moved out of the token's reach).
//!
//! Only a complete remote walk of a connection can tell: a walk broken by an error lists less
//! than there is and never marks anything. Orphans are reported in the summary (`orphanScopes`)
//! and counted per connection for `devlake_orphan_scopes`; nothing is ever deleted. With
//! `ORPHAN_POLICY=disable`, a managed blueprint whose only scope is orphaned is disabled
//! (`enable: false`) and carries `<label>-orphaned`, so that it — and only a blueprint this tool
//! disabled — is enabled again when the repository comes back.

use std::collections::{BTreeMap, HashSet};

use serde_json::{json, Value};

use crate::devlake::models::Blueprint;

use super::sync::ManagedScope;

/// What to do with managed blueprints of orphaned scopes (`ORPHAN_POLICY`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OrphanPolicy {
    /// Report only.
    #[default]
    Report,
    /// Report, and disable the blueprints whose only scope is orphaned.
    Disable,
}

impl OrphanPolicy {
    pub fn parse(raw: &str) -> Result<Self, String> {
        match raw.trim() {
            "report" => Ok(OrphanPolicy::Report),
            "disable" => Ok(OrphanPolicy::Disable),
            other => Err(format!("expected report or disable, got {other:?}")),
        }
    }
}

/// What this run's remote walks found.
#[derive(Debug, Default)]
pub(crate) struct Seen {
    /// Connections walked completely.
    pub walked: HashSet<(String, u64)>,
    pub orphans: Vec<ManagedScope>,
}

/// The label on a blueprint this tool disabled because its scope was orphaned.
pub fn orphan_mark(label: &str) -> String {
    format!("{label}-orphaned")
}

/// `Some(false)` to disable, `Some(true)` to enable again, `None` to leave `enable` alone.
pub(crate) fn enable_change(
    seen: &Seen,
    policy: OrphanPolicy,
    bp: &Blueprint,
    label: &str,
) -> Option<bool> {
    let [only] = bp.connections.as_slice() else {
        return None;
    };
    let mut ids: Vec<&str> = only.scopes.iter().map(|s| s.scope_id.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    let [scope_id] = ids.as_slice() else {
        return None;
    };
    if !seen
        .walked
        .contains(&(only.plugin_name.clone(), only.connection_id))
    {
        return None;
    }
    let orphaned = seen.orphans.iter().any(|s| {
        s.plugin == only.plugin_name
            && s.connection_id == only.connection_id
            && s.scope_id == *scope_id
    });
    let marked = bp.labels.iter().any(|l| *l == orphan_mark(label));
    match (orphaned, marked) {
        (true, _) if policy == OrphanPolicy::Disable && bp.enable => Some(false),
        (false, true) if !bp.enable => Some(true),
        _ => None,
    }
}

/// The summary's `orphanScopes` list and the per-connection counts (every completely walked
/// connection, zeros included, so a gauge falls back to 0 when a repository comes back).
pub(crate) fn summarize(seen: &Seen) -> (Value, Value) {
    let list: Vec<Value> = seen
        .orphans
        .iter()
        .map(|s| {
            json!({
                "plugin": s.plugin,
                "connectionId": s.connection_id,
                "scopeId": s.scope_id,
                "fullName": s.full_name,
            })
        })
        .collect();
    let mut counts: BTreeMap<(String, u64), u64> =
        seen.walked.iter().map(|k| (k.clone(), 0)).collect();
    for s in &seen.orphans {
        *counts
            .entry((s.plugin.clone(), s.connection_id))
            .or_default() += 1;
    }
    let counts: Vec<Value> = counts
        .into_iter()
        .map(|((plugin, cid), n)| json!({"plugin": plugin, "connectionId": cid, "count": n}))
        .collect();
    (Value::Array(list), Value::Array(counts))
}
