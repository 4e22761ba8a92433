//! Plugin and connection routes of the simulated DevLake: `GET /plugins` and
//! `/plugins/{plugin}/connections[/{id}]` (the counterpart of the client's `plugins.rs`).

use super::*;

pub(super) async fn list_plugins(AxState(h): AxState<SimHandle>) -> R {
    let plugins = h.with_state(|s| s.plugins.clone());
    let list: Vec<Value> = plugins
        .iter()
        .map(|p| {
            if p == "dora" {
                json!({"plugin": p, "metric": {
                    "requiredDataEntities": [
                        {"model": "cicd_tasks", "requiredFields": {"column": "type", "execptedValue": "Deployment"}},
                        {"model": "project_pr_metrics", "requiredFields": {}}
                    ],
                    "runAfter": ["org"],
                    "isProjectMetric": true
                }})
            } else {
                json!({"plugin": p, "metric": {"requiredDataEntities": null, "runAfter": null, "isProjectMetric": false}})
            }
        })
        .collect();
    json_response(200, &list)
}

pub(super) async fn list_connections(
    AxState(h): AxState<SimHandle>,
    Path(plugin): Path<String>,
) -> ApiResult<R> {
    plugin_guard!(h, plugin);
    Ok(json_response(200, &h.connections(&plugin)))
}

pub(super) async fn create_connection(
    AxState(h): AxState<SimHandle>,
    Path(plugin): Path<String>,
    body: Bytes,
) -> ApiResult<R> {
    plugin_guard!(h, plugin);
    let mut body = parse_body(&body)?;
    if let Some(m) = body.as_object_mut() {
        m.remove("id");
    }
    h.with_state(|s| {
        let id = s.add_connection(&plugin, body)?;
        Ok(json_response(
            201,
            &Value::Object(s.connection(&plugin, id)?.body.clone()),
        ))
    })
}

pub(super) async fn get_connection(
    AxState(h): AxState<SimHandle>,
    Path((plugin, cid)): Path<(String, String)>,
) -> ApiResult<R> {
    plugin_guard!(h, plugin);
    let cid = parse_id(&cid, "connectionId")?;
    h.with_state(|s| {
        Ok(json_response(
            200,
            &Value::Object(s.connection(&plugin, cid)?.body.clone()),
        ))
    })
}
