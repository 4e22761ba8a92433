//! Scope-config routes of the simulated DevLake: list, create, get and patch.

use super::*;

pub(super) async fn list_scope_configs(
    AxState(h): AxState<SimHandle>,
    Path((plugin, cid)): Path<(String, String)>,
) -> ApiResult<R> {
    plugin_guard!(h, plugin);
    let cid = parse_id(&cid, "connectionId")?;
    h.with_state(|s| Ok(json_response(200, &s.list_scope_configs(&plugin, cid)?)))
}

pub(super) async fn create_scope_config(
    AxState(h): AxState<SimHandle>,
    Path((plugin, cid)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult<R> {
    plugin_guard!(h, plugin);
    let cid = parse_id(&cid, "connectionId")?;
    let mut body = parse_body(&body)?;
    if let Some(m) = body.as_object_mut() {
        m.remove("id");
    }
    h.with_state(|s| {
        Ok(json_response(
            201,
            &s.create_scope_config(&plugin, cid, body)?,
        ))
    })
}

pub(super) async fn get_scope_config(
    AxState(h): AxState<SimHandle>,
    Path((plugin, cid, scid)): Path<(String, String, String)>,
) -> ApiResult<R> {
    plugin_guard!(h, plugin);
    let cid = parse_id(&cid, "connectionId")?;
    let scid = parse_id(&scid, "scopeConfigId")?;
    h.with_state(|s| Ok(json_response(200, s.scope_config(&plugin, cid, scid)?)))
}

pub(super) async fn patch_scope_config(
    AxState(h): AxState<SimHandle>,
    Path((plugin, cid, scid)): Path<(String, String, String)>,
    body: Bytes,
) -> ApiResult<R> {
    plugin_guard!(h, plugin);
    let cid = parse_id(&cid, "connectionId")?;
    let scid = parse_id(&scid, "scopeConfigId")?;
    let body = parse_body(&body)?;
    h.with_state(|s| {
        Ok(json_response(
            200,
            &s.patch_scope_config(&plugin, cid, scid, body)?,
        ))
    })
}
