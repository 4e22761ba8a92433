//! One connection's discover → sync → scope-config work. Returns the scopes the tool manages on
//! it, for the projects step.

use std::collections::{HashMap, HashSet};

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
use super::Ctx;
use crate::job::Stop;

/// The scope config of a connection as far as this run knows it.
enum ConfigState {
    Known(u64),
    /// Dry run: it would be created.
    Planned,
    Unknown,
}

/// The connection being worked on.
struct Conn<'a> {
    plugin: &'a str,
    conn: &'a Connection,
}

impl Conn<'_> {
    fn at(&self) -> At<'_> {
        At::connection(self.plugin, self.conn.id)
    }

    fn managed(&self, scope_id: String, name: String, full_name: String) -> ManagedScope {
        ManagedScope {
            plugin: self.plugin.to_string(),
            connection_id: self.conn.id,
            connection_name: self.conn.name.clone(),
            scope_id,
            name,
            full_name,
            names_reliable: true,
            has_scope_config: false,
        }
    }
}

pub(crate) async fn process(
    ctx: &Ctx<'_>,
    req: &RunRequest,
    plugin: &str,
    conn: &Connection,
    report: &mut Report,
) -> Result<Vec<ManagedScope>, Stop> {
    let c = Conn { plugin, conn };
    let items: Vec<ScopeListItem> = match ctx.devlake.scopes(plugin, conn.id).try_collect().await {
        Ok(items) => items,
        Err(e) => {
            // Without DevLake's own list nothing here can be decided safely.
            let e = Stop::pass(e)?;
            report.error("sync", &c.at(), &e);
            return Ok(Vec::new());
        }
    };

    let config = if req.runs(Step::ScopeConfigs) {
        ensure_scope_config(ctx, plugin, conn.id, &items, report).await?
    } else {
        ConfigState::Unknown
    };

    let (remote, walk_complete) = if req.runs(Step::Sync) {
        walk_remote(ctx, &c, report).await?
    } else {
        (Vec::new(), true)
    };

    let mut managed = existing_scopes(ctx, &c, &items, &remote, walk_complete);
    // Only a complete walk can tell that a scope is gone; a broken one says nothing.
    if req.runs(Step::Sync) && walk_complete {
        let listed: HashSet<String> = remote
            .iter()
            .filter(|r| r.is_scope())
            .map(|r| remote_scope_id(plugin, r))
            .collect();
        let mut seen = ctx.orphans.lock().unwrap_or_else(|e| e.into_inner());
        seen.walked.insert((plugin.to_string(), conn.id));
        for s in managed.iter().filter(|s| !listed.contains(&s.scope_id)) {
            tracing::info!(
                plugin,
                connection_id = conn.id,
                scope_id = %s.scope_id,
                full_name = %s.full_name,
                "orphaned scope: the remote no longer lists it"
            );
            seen.orphans.push(s.clone());
        }
    }
    if req.runs(Step::ScopeConfigs) {
        assign_scope_config(ctx, &c, &config, &mut managed, report).await?;
    }
    if req.runs(Step::Sync) {
        managed.extend(add_missing(ctx, &c, &config, &items, &remote, report).await?);
    }
    report.remaining.connections.dedup();
    Ok(managed)
}

/// Every remote scope of the connection: all groups, all pages. `false` when the walk broke off
/// (the error is reported; what was listed so far is still used).
async fn walk_remote(
    ctx: &Ctx<'_>,
    c: &Conn<'_>,
    report: &mut Report,
) -> Result<(Vec<RemoteScopeChild>, bool), Stop> {
    let mut remote = Vec::new();
    let mut complete = true;
    let mut stream = ctx.devlake.remote_scopes(c.plugin, c.conn.id);
    loop {
        match stream.try_next().await {
            Ok(Some(child)) => remote.push(child),
            Ok(None) => break,
            Err(e) => {
                let e = Stop::pass(e)?;
                report.error("sync", &c.at(), &e);
                complete = false;
                break;
            }
        }
    }
    let filter = &ctx.config.scope_filter;
    report.counts(Some(c.plugin)).remote_scopes += remote
        .iter()
        .filter(|r| {
            r.is_scope() && filter.matches(c.plugin, c.conn.id, remote_full_name(c.plugin, r))
        })
        .count() as u64;
    Ok((remote, complete))
}

/// The scopes DevLake already has that the filters let the tool manage, named from the remote
/// listing where it has them.
fn existing_scopes(
    ctx: &Ctx<'_>,
    c: &Conn<'_>,
    items: &[ScopeListItem],
    remote: &[RemoteScopeChild],
    walk_complete: bool,
) -> Vec<ManagedScope> {
    let by_id: HashMap<String, &RemoteScopeChild> = remote
        .iter()
        .filter(|r| r.is_scope())
        .map(|r| (remote_scope_id(c.plugin, r), r))
        .collect();
    let mut out = Vec::new();
    for item in items {
        let Some(id) = item.scope.scope_id(c.plugin) else {
            continue;
        };
        let (name, full_name, seen) = match by_id.get(&id) {
            Some(child) => (
                child.name.clone(),
                remote_full_name(c.plugin, child).to_string(),
                true,
            ),
            None => (
                item.scope.name().unwrap_or_default().to_string(),
                stored_full_name(c.plugin, &item.scope),
                false,
            ),
        };
        if !ctx
            .config
            .scope_filter
            .matches(c.plugin, c.conn.id, &full_name)
        {
            continue;
        }
        let mut s = c.managed(id, name, full_name);
        s.names_reliable = seen || walk_complete;
        s.has_scope_config = item.scope.scope_config_id().is_some();
        out.push(s);
    }
    out
}

/// Managed scopes without any scope config get the tool's; a scope with another keeps it.
async fn assign_scope_config(
    ctx: &Ctx<'_>,
    c: &Conn<'_>,
    config: &ConfigState,
    scopes: &mut [ManagedScope],
    report: &mut Report,
) -> Result<(), Stop> {
    let (plugin, cid) = (c.plugin, c.conn.id);
    for s in scopes.iter_mut().filter(|s| !s.has_scope_config) {
        let at = c.at().scope(&s.scope_id);
        let config_id = match config {
            ConfigState::Unknown => return Ok(()),
            ConfigState::Planned => {
                let name = scope_config_name(&ctx.config.scope_config_name, cid);
                report.plan(
                    "scopeConfigs",
                    "assignScopeConfig",
                    &at,
                    None,
                    json!({"scopeConfig": name}),
                );
                report.counts(Some(plugin)).scope_configs_assigned += 1;
                continue;
            }
            ConfigState::Known(id) => *id,
        };
        if ctx.dry_run {
            report.plan(
                "scopeConfigs",
                "assignScopeConfig",
                &at,
                None,
                json!({"scopeConfigId": config_id}),
            );
            report.counts(Some(plugin)).scope_configs_assigned += 1;
            continue;
        }
        if ctx.deadline.passed() {
            report.remaining.connections.push(format!("{plugin}/{cid}"));
            return Ok(());
        }
        let patch = json!({"scopeConfigId": config_id});
        match ctx
            .devlake
            .patch_scope(plugin, cid, &s.scope_id, &patch)
            .await
        {
            Ok(_) => {
                tracing::info!(
                    plugin,
                    connection_id = cid,
                    scope_id = %s.scope_id,
                    scope_config_id = config_id,
                    "scope config assigned"
                );
                report.counts(Some(plugin)).scope_configs_assigned += 1;
                s.has_scope_config = true;
            }
            Err(e) => {
                let e = Stop::pass(e)?;
                report.error("scopeConfigs", &at, &e);
            }
        }
    }
    Ok(())
}

/// Adds the remote scopes DevLake does not have yet, in batched PUTs that carry the tool's scope
/// config. Returns the scopes added (in a dry run: the ones that would be).
async fn add_missing(
    ctx: &Ctx<'_>,
    c: &Conn<'_>,
    config: &ConfigState,
    items: &[ScopeListItem],
    remote: &[RemoteScopeChild],
    report: &mut Report,
) -> Result<Vec<ManagedScope>, Stop> {
    let (plugin, cid) = (c.plugin, c.conn.id);
    let config_id = match config {
        ConfigState::Known(id) => Some(*id),
        _ => None,
    };
    let existing = existing_ids(plugin, items);
    let missing = missing_scopes(plugin, cid, &ctx.config.scope_filter, remote, &existing);
    let mut rows = Vec::with_capacity(missing.len());
    for child in &missing {
        let id = remote_scope_id(plugin, child);
        match scope_row(plugin, cid, child, config_id) {
            Ok(row) => rows.push((id, *child, row)),
            Err(message) => report.error_message("sync", &c.at().scope(&id), message, false),
        }
    }

    let mut added = Vec::new();
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
        if ctx.dry_run {
            for (id, child, row) in batch {
                let detail = json!({"fullName": remote_full_name(plugin, child), "row": row});
                report.plan("sync", "addScope", &c.at().scope(id), None, detail);
            }
        } else {
            let body: Vec<_> = batch.iter().map(|(_, _, row)| row.clone()).collect();
            if let Err(e) = ctx.devlake.put_scopes(plugin, cid, &body).await {
                let e = Stop::pass(e)?;
                for (id, _, _) in batch {
                    report.error("sync", &c.at().scope(id), &e);
                }
                continue;
            }
            for (id, child, _) in batch {
                tracing::info!(
                    plugin,
                    connection_id = cid,
                    scope_id = %id,
                    full_name = remote_full_name(plugin, child),
                    scope_config_id = config_id.unwrap_or(0),
                    "scope added"
                );
            }
        }
        report.counts(Some(plugin)).scopes_added += batch.len() as u64;
        for (id, child, _) in batch {
            let mut s = c.managed(
                id.clone(),
                child.name.clone(),
                remote_full_name(plugin, child).to_string(),
            );
            s.has_scope_config = !matches!(config, ConfigState::Unknown);
            added.push(s);
        }
    }
    Ok(added)
}

/// Finds the tool's scope config of the connection, creating it once if it does not exist.
async fn ensure_scope_config(
    ctx: &Ctx<'_>,
    plugin: &str,
    cid: u64,
    items: &[ScopeListItem],
    report: &mut Report,
) -> Result<ConfigState, Stop> {
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
            let e = Stop::pass(e)?;
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
            let e = Stop::pass(e)?;
            report.error("scopeConfigs", &at, &e);
            Ok(ConfigState::Unknown)
        }
    }
}
