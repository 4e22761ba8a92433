//! Scope routes of the simulated DevLake: list, bulk PUT, get, patch and delete, including the
//! wildcard scope-id routes of Jenkins and Bitbucket.

use super::*;

pub(super) async fn list_scopes(
    AxState(h): AxState<SimHandle>,
    Path((plugin, cid)): Path<(String, String)>,
    Query(q): Q,
) -> ApiResult<R> {
    plugin_guard!(h, plugin);
    let cid = parse_id(&cid, "connectionId")?;
    let (page, size) = paging(&q, 100, Some(1000))?;
    let with_bps = q_bool(&q, "blueprints")?.unwrap_or(false);
    let term = q
        .get("searchTerm")
        .filter(|t| !t.is_empty())
        .map(|t| t.to_lowercase());
    let search_field = match plugin.as_str() {
        "github" | "jenkins" => Some("fullName"),
        "azuredevops_go" => None,
        _ => Some("name"),
    };
    h.with_state(|s| {
        let conn = s.connection(&plugin, cid)?;
        let matching: Vec<(&String, &serde_json::Map<String, Value>)> = conn
            .scopes
            .iter()
            .filter(|(_, row)| match (&term, search_field) {
                (Some(t), Some(f)) => row
                    .get(f)
                    .and_then(Value::as_str)
                    .is_some_and(|v| v.to_lowercase().contains(t)),
                _ => true,
            })
            .collect();
        let items: Vec<Value> = matching
            .iter()
            .skip((page - 1) * size)
            .take(size)
            .map(|(id, row)| s.scope_detail(&plugin, cid, id, row, with_bps))
            .collect();
        Ok(json_response(
            200,
            &json!({"count": matching.len(), "scopes": items}),
        ))
    })
}

pub(super) async fn put_scopes(
    AxState(h): AxState<SimHandle>,
    Path((plugin, cid)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult<R> {
    plugin_guard!(h, plugin);
    let cid = parse_id(&cid, "connectionId")?;
    let body = parse_body(&body)?;
    let rows = match body.get("data") {
        Some(Value::Array(rows)) => rows.clone(),
        _ => return Err(ApiError::bad("bad request body format")),
    };
    h.with_state(|s| {
        s.connection(&plugin, cid)?;
        let mut saved = Vec::with_capacity(rows.len());
        for (i, row) in rows.into_iter().enumerate() {
            saved.push(Value::Object(s.put_scope(&plugin, cid, i, row)?));
        }
        Ok(json_response(200, &saved))
    })
}

/// Resolves the `{*scope_id}` capture. Only Jenkins and Bitbucket register a wildcard route, so
/// a raw `/` in another plugin's scope id is an unknown route; `%2F` is decoded by axum.
pub(super) fn scope_target(plugin: &str, uri: &Uri, decoded: &str) -> Option<(String, bool)> {
    let raw = uri
        .path()
        .split_once("/scopes/")
        .map(|(_, r)| r)
        .unwrap_or("");
    if let Some(base) = decoded.strip_suffix("/latest-sync-state") {
        if plugins::wildcard_scope_route(plugin)
            || !raw.trim_end_matches("/latest-sync-state").contains('/')
        {
            return Some((base.to_string(), true));
        }
    }
    if raw.contains('/') && !plugins::wildcard_scope_route(plugin) {
        return None;
    }
    Some((decoded.to_string(), false))
}

pub(super) async fn get_scope(
    AxState(h): AxState<SimHandle>,
    Path((plugin, cid, scope_id)): Path<(String, String, String)>,
    uri: Uri,
    Query(q): Q,
) -> ApiResult<R> {
    plugin_guard!(h, plugin);
    let cid = parse_id(&cid, "connectionId")?;
    let Some((scope_id, sync_state)) = scope_target(&plugin, &uri, &scope_id) else {
        return Ok(plain_not_found());
    };
    let with_bps = q_bool(&q, "blueprints")?.unwrap_or(false);
    h.with_state(|s| {
        let row = s.scope(&plugin, cid, &scope_id)?;
        if sync_state {
            return Ok(json_response(200, &json!([])));
        }
        Ok(json_response(
            200,
            &s.scope_detail(&plugin, cid, &scope_id, row, with_bps),
        ))
    })
}

pub(super) async fn patch_scope(
    AxState(h): AxState<SimHandle>,
    Path((plugin, cid, scope_id)): Path<(String, String, String)>,
    uri: Uri,
    body: Bytes,
) -> ApiResult<R> {
    plugin_guard!(h, plugin);
    let cid = parse_id(&cid, "connectionId")?;
    let Some((scope_id, false)) = scope_target(&plugin, &uri, &scope_id) else {
        return Ok(plain_not_found());
    };
    let body = parse_body(&body)?;
    h.with_state(|s| {
        Ok(json_response(
            200,
            &s.patch_scope(&plugin, cid, &scope_id, body)?,
        ))
    })
}

pub(super) async fn delete_scope(
    AxState(h): AxState<SimHandle>,
    Path((plugin, cid, scope_id)): Path<(String, String, String)>,
    uri: Uri,
    Query(q): Q,
) -> ApiResult<R> {
    plugin_guard!(h, plugin);
    let cid = parse_id(&cid, "connectionId")?;
    let Some((scope_id, false)) = scope_target(&plugin, &uri, &scope_id) else {
        return Ok(plain_not_found());
    };
    let data_only = q_bool(&q, "delete_data_only")?.unwrap_or(false);
    h.with_state(|s| {
        Ok(json_response(
            200,
            &s.delete_scope(&plugin, cid, &scope_id, data_only)?,
        ))
    })
}
