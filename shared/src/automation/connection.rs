//! One connection's discover → sync → scope-config work. Returns the scopes the tool manages on
//! it, for the projects step.

use std::collections::HashMap;

use futures::TryStreamExt;
use serde_json::json;

use crate::devlake::models::{Connection, RemoteScopeChild, ScopeListItem};

use super::payload::{RunRequest, Step};
use super::scope_configs::{default_scope_config, find_by_name, find_in_scopes, scope_config_name};
use super::summary::{At, Report};
use super::sync::{
    existing_ids, missing_scopes, remote_full_name, remote_scope_id, scope_row, stored_full_name,
    ManagedScope,
};
use super::{Ctx, Fatal};

/// The scope config of a connection as far as this run knows it.
enum ConfigState {
    Known(u64),
    /// Dry run: it would be created.
    Planned,
    Unknown,
}

pub(crate) async fn process(
    ctx: &Ctx<'_>,
    req: &RunRequest,
    plugin: &str,
    conn: &Connection,
    report: &mut Report,
) -> Result<Vec<ManagedScope>, Fatal> {
    let cid = conn.id;
    let at = At::connection(plugin, cid);
    let filter = &ctx.config.scope_filter;

    let items: Vec<ScopeListItem> = match ctx.devlake.scopes(plugin, cid).try_collect().await {
        Ok(items) => items,
        Err(e) => {
            let e = Fatal::pass(e)?;
            report.error("sync", &at, &e);
            return Ok(Vec::new());
        }
    };

    let config = if req.runs(Step::ScopeConfigs) {
        ensure_scope_config(ctx, plugin, cid, &items, report).await?
    } else {
        ConfigState::Unknown
    };
    let config_id = match config {
        ConfigState::Known(id) => Some(id),
        _ => None,
    };

    // Remote scopes: every group, every page.
    let mut remote: Vec<RemoteScopeChild> = Vec::new();
    let mut walk_complete = true;
    if req.runs(Step::Sync) {
        let mut stream = ctx.devlake.remote_scopes(plugin, cid);
        loop {
            match stream.try_next().await {
                Ok(Some(child)) => remote.push(child),
                Ok(None) => break,
                Err(e) => {
                    let e = Fatal::pass(e)?;
                    report.error("sync", &at, &e);
                    walk_complete = false;
                    break;
                }
            }
        }
        report.counts(Some(plugin)).remote_scopes += remote
            .iter()
            .filter(|c| c.is_scope() && filter.matches(plugin, cid, remote_full_name(c)))
            .count() as u64;
    }
    let by_id: HashMap<String, &RemoteScopeChild> = remote
        .iter()
        .filter(|c| c.is_scope())
        .map(|c| (remote_scope_id(plugin, c), c))
        .collect();

    let existing = existing_ids(plugin, &items);
    let missing = missing_scopes(plugin, cid, filter, &remote, &existing);
    let mut rows = Vec::with_capacity(missing.len());
    for child in &missing {
        let id = remote_scope_id(plugin, child);
        match scope_row(plugin, cid, child, config_id) {
            Ok(row) => rows.push((id, *child, row)),
            Err(message) => report.error_message("sync", &at.scope(&id), message, false),
        }
    }

    let mut managed = Vec::new();
    let has_config_for_new = !matches!(config, ConfigState::Unknown);
    for batch in rows.chunks(ctx.config.scope_batch_size.max(1)) {
        if ctx.deadline.passed() {
            report.remaining.connections.push(format!("{plugin}/{cid}"));
            tracing::warn!(
                plugin,
                connection_id = cid,
                "deadline close: scopes left for the next run"
            );
            break;
        }
        let added = if ctx.dry_run {
            for (id, child, row) in batch {
                report.plan(
                    "sync",
                    "addScope",
                    &at.scope(id),
                    None,
                    json!({"fullName": remote_full_name(child), "row": row}),
                );
            }
            true
        } else {
            let body: Vec<_> = batch.iter().map(|(_, _, row)| row.clone()).collect();
            match ctx.devlake.put_scopes(plugin, cid, &body).await {
                Ok(_) => {
                    for (id, child, _) in batch {
                        tracing::info!(
                            plugin,
                            connection_id = cid,
                            scope_id = %id,
                            full_name = remote_full_name(child),
                            scope_config_id = config_id.unwrap_or(0),
                            "scope added"
                        );
                    }
                    true
                }
                Err(e) => {
                    let e = Fatal::pass(e)?;
                    for (id, _, _) in batch {
                        report.error("sync", &at.scope(id), &e);
                    }
                    false
                }
            }
        };
        if added {
            report.counts(Some(plugin)).scopes_added += batch.len() as u64;
            for (id, child, _) in batch {
                managed.push(ManagedScope {
                    plugin: plugin.to_string(),
                    connection_id: cid,
                    connection_name: conn.name.clone(),
                    scope_id: id.clone(),
                    name: child.name.clone(),
                    full_name: remote_full_name(child).to_string(),
                    names_reliable: true,
                    has_scope_config: has_config_for_new,
                });
            }
        }
    }

    // Scopes DevLake already had.
    let mut existing_managed = Vec::new();
    for item in &items {
        let Some(id) = item.scope.scope_id(plugin) else {
            continue;
        };
        let (name, full_name, seen) = match by_id.get(&id) {
            Some(child) => (
                child.name.clone(),
                remote_full_name(child).to_string(),
                true,
            ),
            None => (
                item.scope.name().unwrap_or_default().to_string(),
                stored_full_name(&item.scope),
                false,
            ),
        };
        if !filter.matches(plugin, cid, &full_name) {
            continue;
        }
        existing_managed.push(ManagedScope {
            plugin: plugin.to_string(),
            connection_id: cid,
            connection_name: conn.name.clone(),
            scope_id: id,
            name,
            full_name,
            names_reliable: seen || walk_complete,
            has_scope_config: item.scope.scope_config_id().is_some(),
        });
    }

    // Managed scopes without any scope config get the tool's; others keep theirs.
    if req.runs(Step::ScopeConfigs) {
        for s in existing_managed.iter_mut().filter(|s| !s.has_scope_config) {
            let at = at.scope(&s.scope_id);
            match config {
                ConfigState::Unknown => break,
                ConfigState::Planned => {
                    report.plan("scopeConfigs", "assignScopeConfig", &at, None, json!({"scopeConfig": scope_config_name(&ctx.config.scope_config_name, cid)}));
                    report.counts(Some(plugin)).scope_configs_assigned += 1;
                }
                ConfigState::Known(config_id) if ctx.dry_run => {
                    report.plan(
                        "scopeConfigs",
                        "assignScopeConfig",
                        &at,
                        None,
                        json!({"scopeConfigId": config_id}),
                    );
                    report.counts(Some(plugin)).scope_configs_assigned += 1;
                }
                ConfigState::Known(config_id) => {
                    if ctx.deadline.passed() {
                        report.remaining.connections.push(format!("{plugin}/{cid}"));
                        break;
                    }
                    let patch = json!({"scopeConfigId": config_id});
                    match ctx
                        .devlake
                        .patch_scope(plugin, cid, &s.scope_id, &patch)
                        .await
                    {
                        Ok(_) => {
                            tracing::info!(plugin, connection_id = cid, scope_id = %s.scope_id, scope_config_id = config_id, "scope config assigned");
                            report.counts(Some(plugin)).scope_configs_assigned += 1;
                            s.has_scope_config = true;
                        }
                        Err(e) => {
                            let e = Fatal::pass(e)?;
                            report.error("scopeConfigs", &at, &e);
                        }
                    }
                }
            }
        }
    }

    existing_managed.extend(managed);
    report.remaining.connections.dedup();
    Ok(existing_managed)
}

/// Finds the tool's scope config of the connection, creating it once if it does not exist.
async fn ensure_scope_config(
    ctx: &Ctx<'_>,
    plugin: &str,
    cid: u64,
    items: &[ScopeListItem],
    report: &mut Report,
) -> Result<ConfigState, Fatal> {
    let name = &scope_config_name(&ctx.config.scope_config_name, cid);
    let at = At::connection(plugin, cid);
    if let Some(id) = find_in_scopes(items, name) {
        return Ok(ConfigState::Known(id));
    }
    match ctx.devlake.scope_configs(plugin, cid).await {
        Ok(list) => {
            if let Some(id) = find_by_name(&list, name) {
                return Ok(ConfigState::Known(id));
            }
        }
        Err(e) => {
            // Creating without knowing whether it exists could hit DevLake's duplicate-name 500.
            let e = Fatal::pass(e)?;
            report.error("scopeConfigs", &at, &e);
            return Ok(ConfigState::Unknown);
        }
    }
    let body = default_scope_config(plugin, cid, ctx.config);
    if ctx.dry_run {
        report.plan(
            "scopeConfigs",
            "createScopeConfig",
            &at,
            None,
            serde_json::to_value(&body).unwrap_or_default(),
        );
        report.counts(Some(plugin)).scope_configs_created += 1;
        return Ok(ConfigState::Planned);
    }
    match ctx.devlake.create_scope_config(plugin, cid, &body).await {
        Ok(created) => {
            tracing::info!(plugin, connection_id = cid, scope_config_id = created.id, scope_config = %created.name, "scope config created");
            report.counts(Some(plugin)).scope_configs_created += 1;
            Ok(ConfigState::Known(created.id))
        }
        Err(e) => {
            let e = Fatal::pass(e)?;
            report.error("scopeConfigs", &at, &e);
            Ok(ConfigState::Unknown)
        }
    }
}
