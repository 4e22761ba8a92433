//! The DevLake REST routes (docs/devlake-api.md), served at `/` (and `/rest/` via the front
//! layer in `mod.rs`).

use std::collections::HashMap;

use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State as AxState};
use axum::http::{header, Response, StatusCode, Uri};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::Router;
use base64::Engine as _;
use serde::Serialize;
use serde_json::{json, Value};

use super::faults::MigrationMode;
use super::plugins;
use super::state::{ApiError, ApiResult, BlueprintFilter, Pipeline, PipelineFilter};
use super::{lock, SimHandle};

type R = Response<Body>;
type Q = Query<HashMap<String, String>>;

impl IntoResponse for ApiError {
    fn into_response(self) -> axum::response::Response {
        let msg = format!("{} ({})", self.message, self.status);
        json_response(
            self.status,
            &json!({"code": 0, "success": false, "message": msg, "causes": [msg], "data": self.data}),
        )
    }
}

pub(crate) fn json_response<T: Serialize + ?Sized>(status: u16, v: &T) -> R {
    let body = serde_json::to_vec(v).unwrap_or_else(|_| b"null".to_vec());
    bytes_response(status, body)
}

fn bytes_response(status: u16, body: Vec<u8>) -> R {
    Response::builder()
        .status(StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .header(header::CONTENT_TYPE, "application/json; charset=utf-8")
        .body(Body::from(body))
        .expect("valid response")
}

/// A redirect as a reverse proxy sends it (nginx: a short HTML body).
pub(crate) fn redirect_response(status: u16, location: &str) -> R {
    Response::builder()
        .status(StatusCode::from_u16(status).unwrap_or(StatusCode::MOVED_PERMANENTLY))
        .header(header::LOCATION, location)
        .header(header::CONTENT_TYPE, "text/html")
        .body(Body::from("<html><body>moved</body></html>"))
        .expect("valid response")
}

/// A 200 JSON object of exactly `bytes` bytes (at least the 10 of `{"pad":""}`).
pub(crate) fn padded_response(bytes: u64) -> R {
    let pad = (bytes as usize).saturating_sub(10);
    let mut body = Vec::with_capacity(pad + 10);
    body.extend_from_slice(br#"{"pad":""#);
    body.resize(body.len() + pad, b'x');
    body.extend_from_slice(br#""}"#);
    bytes_response(200, body)
}

/// DevLake's error envelope; `message` gets the ` (<status>)` suffix like DevLake's errors.
pub(crate) fn error_response(status: u16, message: &str, data: Value) -> R {
    json_response(
        status,
        &json!({"code": 0, "success": false, "message": format!("{message} ({status})"), "causes": null, "data": data}),
    )
}

fn success(message: &str) -> R {
    json_response(
        200,
        &json!({"code": 0, "success": true, "message": message, "causes": null, "data": null}),
    )
}

/// gin's default answer for unknown routes: plain text, not JSON.
pub(crate) fn plain_not_found() -> R {
    Response::builder()
        .status(StatusCode::NOT_FOUND)
        .header(header::CONTENT_TYPE, "text/plain")
        .body(Body::from("404 page not found"))
        .expect("valid response")
}

pub(crate) fn router(h: SimHandle) -> Router {
    let scope_routes = get(get_scope).patch(patch_scope).delete(delete_scope);
    Router::new()
        .route("/ping", get(|| async { Response::new(Body::empty()) }))
        .route("/ready", get(ready))
        .route("/health", get(health))
        .route("/version", get(version))
        .route("/proceed-db-migration", get(proceed_db_migration))
        .route("/plugins", get(list_plugins))
        .route(
            "/plugins/{plugin}/connections",
            get(list_connections).post(create_connection),
        )
        .route("/plugins/{plugin}/connections/{cid}", get(get_connection))
        .route(
            "/plugins/{plugin}/connections/{cid}/remote-scopes",
            get(remote_scopes),
        )
        .route(
            "/plugins/{plugin}/connections/{cid}/search-remote-scopes",
            get(search_remote_scopes),
        )
        .route(
            "/plugins/{plugin}/connections/{cid}/scopes",
            get(list_scopes).put(put_scopes),
        )
        .route(
            "/plugins/{plugin}/connections/{cid}/scopes/{*scope_id}",
            scope_routes,
        )
        .route(
            "/plugins/{plugin}/connections/{cid}/scope-configs",
            get(list_scope_configs).post(create_scope_config),
        )
        .route(
            "/plugins/{plugin}/connections/{cid}/scope-configs/{scid}",
            get(get_scope_config).patch(patch_scope_config),
        )
        .route("/projects", get(list_projects).post(create_project))
        .route(
            "/projects/{name}",
            get(get_project).patch(patch_project).delete(delete_project),
        )
        .route("/projects/{name}/check", get(check_project))
        .route("/blueprints", get(list_blueprints).post(create_blueprint))
        .route(
            "/blueprints/{id}",
            get(get_blueprint)
                .patch(patch_blueprint)
                .delete(delete_blueprint),
        )
        .route("/blueprints/{id}/trigger", post(trigger_blueprint))
        .route("/blueprints/{id}/pipelines", get(blueprint_pipelines))
        .route("/pipelines", get(list_pipelines).post(create_pipeline))
        .route("/pipelines/{id}", get(get_pipeline).delete(cancel_pipeline))
        .route("/pipelines/{id}/rerun", post(rerun_pipeline))
        .route("/pipelines/{id}/tasks", get(pipeline_tasks))
        .fallback(|| async { plain_not_found() })
        .method_not_allowed_fallback(|| async { plain_not_found() })
        .with_state(h)
}

// ---------------------------------------------------------------------- helpers

fn parse_body(body: &Bytes) -> ApiResult<Value> {
    serde_json::from_slice(body).map_err(|_| ApiError::bad("bad request body format"))
}

fn parse_id(s: &str, what: &str) -> ApiResult<u64> {
    s.parse()
        .map_err(|_| ApiError::bad(format!("bad {what} format supplied")))
}

fn q_usize(q: &HashMap<String, String>, key: &str) -> ApiResult<Option<usize>> {
    match q.get(key).map(String::as_str) {
        None | Some("") => Ok(None),
        Some(v) => v
            .parse::<i64>()
            .map(|n| Some(n.max(0) as usize))
            .map_err(|_| ApiError::bad(format!("invalid {key}: {v}"))),
    }
}

fn q_bool(q: &HashMap<String, String>, key: &str) -> ApiResult<Option<bool>> {
    match q.get(key).map(String::as_str) {
        None | Some("") => Ok(None),
        Some("1") | Some("true") | Some("True") | Some("TRUE") => Ok(Some(true)),
        Some("0") | Some("false") | Some("False") | Some("FALSE") => Ok(Some(false)),
        Some(v) => Err(ApiError::bad(format!("invalid {key}: {v}"))),
    }
}

/// (page, pageSize) with DevLake's defaults: page < 1 → 1, pageSize < 1 → default.
fn paging(
    q: &HashMap<String, String>,
    default_size: usize,
    max: Option<usize>,
) -> ApiResult<(usize, usize)> {
    let page = q_usize(q, "page")?.filter(|p| *p >= 1).unwrap_or(1);
    let mut size = q_usize(q, "pageSize")?
        .filter(|s| *s >= 1)
        .unwrap_or(default_size);
    if let Some(m) = max {
        size = size.min(m);
    }
    Ok((page, size))
}

/// Plugin routes exist only for loaded data-source plugins (otherwise gin's plain 404).
fn check_plugin(h: &SimHandle, plugin: &str) -> Option<R> {
    let ok = plugins::is_data_source(plugin) && h.with_state(|s| s.plugin_loaded(plugin));
    (!ok).then(plain_not_found)
}

macro_rules! plugin_guard {
    ($h:expr, $plugin:expr) => {
        if let Some(r) = check_plugin(&$h, &$plugin) {
            return Ok(r);
        }
    };
}

// ---------------------------------------------------------------------- health / meta

async fn ready(AxState(h): AxState<SimHandle>) -> R {
    match lock(&h.inner.faults).faults.migration {
        MigrationMode::None => success("ready"),
        MigrationMode::Pending => error_response(
            503,
            "service is not ready: waiting for migration confirmation",
            Value::Null,
        ),
        MigrationMode::Running => {
            error_response(503, "service is not ready: migrating", Value::Null)
        }
    }
}

async fn health(AxState(h): AxState<SimHandle>) -> R {
    match lock(&h.inner.faults).faults.migration {
        MigrationMode::None => success("good"),
        _ => success("maybe"),
    }
}

async fn version(AxState(h): AxState<SimHandle>) -> R {
    let v = h.with_state(|s| s.version.clone());
    json_response(200, &json!({"version": v}))
}

async fn proceed_db_migration(AxState(h): AxState<SimHandle>) -> R {
    let mut f = lock(&h.inner.faults);
    match f.faults.migration {
        // DevLake panics here; gin's recovery answers a bare 500.
        MigrationMode::Running => Response::builder()
            .status(StatusCode::INTERNAL_SERVER_ERROR)
            .body(Body::empty())
            .expect("valid response"),
        _ => {
            f.faults.migration = MigrationMode::None;
            success("success")
        }
    }
}

async fn list_plugins(AxState(h): AxState<SimHandle>) -> R {
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

// ---------------------------------------------------------------------- connections

async fn list_connections(
    AxState(h): AxState<SimHandle>,
    Path(plugin): Path<String>,
) -> ApiResult<R> {
    plugin_guard!(h, plugin);
    Ok(json_response(200, &h.connections(&plugin)))
}

async fn create_connection(
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

async fn get_connection(
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

// ---------------------------------------------------------------------- remote scopes

fn decode_page_token(token: &str) -> ApiResult<(usize, Option<usize>)> {
    let bad = || ApiError::bad("invalid page token");
    let raw = base64::engine::general_purpose::STANDARD
        .decode(token)
        .map_err(|_| bad())?;
    let v: Value = serde_json::from_slice(&raw).map_err(|_| bad())?;
    let page = v.get("page").and_then(Value::as_u64).ok_or_else(bad)? as usize;
    let per = v
        .get("per_page")
        .and_then(Value::as_u64)
        .map(|n| n as usize);
    Ok((page.max(1), per.filter(|p| *p > 0)))
}

async fn remote_scopes(
    AxState(h): AxState<SimHandle>,
    Path((plugin, cid)): Path<(String, String)>,
    Query(q): Q,
) -> ApiResult<R> {
    plugin_guard!(h, plugin);
    let cid = parse_id(&cid, "connectionId")?;
    let group = q.get("groupId").cloned().unwrap_or_default();
    h.with_state(|s| {
        let (page, per_page) = match q.get("pageToken").filter(|t| !t.is_empty()) {
            Some(t) => {
                let (page, per) = decode_page_token(t)?;
                (page, per.unwrap_or(s.remote_page_size))
            }
            None => (1, s.remote_page_size),
        };
        let (children, more) = s.remote_page(&plugin, cid, &group, page, per_page)?;
        let next = if more {
            let mut token = json!({"page": page + 1, "per_page": per_page});
            if plugin == "gitlab" {
                let next_is_group = s
                    .connection(&plugin, cid)?
                    .remote
                    .get(&group)
                    .and_then(|l| l.get(page * per_page))
                    .is_some_and(|e| e.is_group);
                token["step"] = json!(if next_is_group { "group" } else { "project" });
            }
            base64::engine::general_purpose::STANDARD.encode(token.to_string())
        } else {
            String::new()
        };
        Ok(json_response(
            200,
            &json!({"children": children, "nextPageToken": next}),
        ))
    })
}

async fn search_remote_scopes(
    AxState(h): AxState<SimHandle>,
    Path((plugin, cid)): Path<(String, String)>,
    Query(q): Q,
) -> ApiResult<R> {
    plugin_guard!(h, plugin);
    if matches!(plugin.as_str(), "jenkins" | "circleci") {
        return Ok(plain_not_found());
    }
    let cid = parse_id(&cid, "connectionId")?;
    let search = q
        .get("search")
        .filter(|s| !s.is_empty())
        .ok_or_else(|| ApiError::bad("search is required"))?;
    let (page, size) = paging(&q, 50, None)?;
    h.with_state(|s| {
        let all = s.remote_search(&plugin, cid, search)?;
        let children: Vec<Value> = all.into_iter().skip((page - 1) * size).take(size).collect();
        Ok(json_response(
            200,
            &json!({"children": children, "page": page, "pageSize": size}),
        ))
    })
}

// ---------------------------------------------------------------------- scopes

async fn list_scopes(
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

async fn put_scopes(
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
fn scope_target(plugin: &str, uri: &Uri, decoded: &str) -> Option<(String, bool)> {
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

async fn get_scope(
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

async fn patch_scope(
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

async fn delete_scope(
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

// ---------------------------------------------------------------------- scope configs

async fn list_scope_configs(
    AxState(h): AxState<SimHandle>,
    Path((plugin, cid)): Path<(String, String)>,
) -> ApiResult<R> {
    plugin_guard!(h, plugin);
    let cid = parse_id(&cid, "connectionId")?;
    h.with_state(|s| Ok(json_response(200, &s.list_scope_configs(&plugin, cid)?)))
}

async fn create_scope_config(
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

async fn get_scope_config(
    AxState(h): AxState<SimHandle>,
    Path((plugin, cid, scid)): Path<(String, String, String)>,
) -> ApiResult<R> {
    plugin_guard!(h, plugin);
    let cid = parse_id(&cid, "connectionId")?;
    let scid = parse_id(&scid, "scopeConfigId")?;
    h.with_state(|s| Ok(json_response(200, s.scope_config(&plugin, cid, scid)?)))
}

async fn patch_scope_config(
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

// ---------------------------------------------------------------------- projects

async fn list_projects(AxState(h): AxState<SimHandle>, Query(q): Q) -> ApiResult<R> {
    let (page, size) = paging(&q, 50, None)?;
    let keyword = q.get("keyword").cloned();
    h.with_state(|s| {
        let all = s.list_projects(keyword.as_deref());
        let items: Vec<Value> = all
            .iter()
            .skip((page - 1) * size)
            .take(size)
            .map(|p| s.project_json(p, true))
            .collect();
        Ok(json_response(
            200,
            &json!({"count": all.len(), "projects": items}),
        ))
    })
}

async fn create_project(AxState(h): AxState<SimHandle>, body: Bytes) -> ApiResult<R> {
    let body = parse_body(&body)?;
    h.with_state(|s| {
        let name = s.create_project(body, s.now())?;
        Ok(json_response(
            201,
            &s.project_json(s.project(&name)?, false),
        ))
    })
}

async fn get_project(AxState(h): AxState<SimHandle>, Path(name): Path<String>) -> ApiResult<R> {
    h.with_state(|s| {
        Ok(json_response(
            200,
            &s.project_json(s.project(&name)?, false),
        ))
    })
}

async fn check_project(AxState(h): AxState<SimHandle>, Path(name): Path<String>) -> ApiResult<R> {
    let exist = h.with_state(|s| s.projects.contains_key(&name));
    Ok(json_response(200, &json!({"exist": exist})))
}

async fn patch_project(
    AxState(h): AxState<SimHandle>,
    Path(name): Path<String>,
    body: Bytes,
) -> ApiResult<R> {
    let body = parse_body(&body)?;
    h.with_state(|s| {
        let name = s.patch_project(&name, body)?;
        // DevLake answers PATCH /projects/{name} with 201 (sic).
        Ok(json_response(
            201,
            &s.project_json(s.project(&name)?, false),
        ))
    })
}

async fn delete_project(AxState(h): AxState<SimHandle>, Path(name): Path<String>) -> ApiResult<R> {
    h.with_state(|s| s.delete_project(&name))?;
    Ok(success("success"))
}

// ---------------------------------------------------------------------- blueprints

async fn list_blueprints(AxState(h): AxState<SimHandle>, Query(q): Q) -> ApiResult<R> {
    let (page, size) = paging(&q, 50, None)?;
    let filter = BlueprintFilter {
        enable: q_bool(&q, "enable")?,
        is_manual: q_bool(&q, "isManual")?,
        label: q.get("label").filter(|l| !l.is_empty()).cloned(),
        kind: q.get("type").cloned(),
    };
    h.with_state(|s| {
        let all = s.list_blueprints(&filter)?;
        let page: Vec<_> = all.iter().skip((page - 1) * size).take(size).collect();
        Ok(json_response(
            200,
            &json!({"count": all.len(), "blueprints": page}),
        ))
    })
}

async fn get_blueprint(AxState(h): AxState<SimHandle>, Path(id): Path<String>) -> ApiResult<R> {
    let id = parse_id(&id, "blueprintID")?;
    h.with_state(|s| Ok(json_response(200, s.blueprint(id)?)))
}

async fn patch_blueprint(
    AxState(h): AxState<SimHandle>,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult<R> {
    let id = parse_id(&id, "blueprintID")?;
    let body = parse_body(&body)?;
    h.with_state(|s| Ok(json_response(200, s.patch_blueprint(id, body)?)))
}

async fn create_blueprint(AxState(h): AxState<SimHandle>, body: Bytes) -> ApiResult<R> {
    let body = parse_body(&body)?;
    h.with_state(|s| {
        let id = s.create_blueprint(body)?;
        Ok(json_response(201, s.blueprint(id)?))
    })
}

async fn delete_blueprint(AxState(h): AxState<SimHandle>, Path(id): Path<String>) -> ApiResult<R> {
    let id = parse_id(&id, "blueprintID")?;
    h.with_state(|s| s.delete_blueprint(id))?;
    Ok(success("success"))
}

async fn trigger_blueprint(
    AxState(h): AxState<SimHandle>,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult<R> {
    let id = parse_id(&id, "blueprintID")?;
    let opts = if body.iter().all(u8::is_ascii_whitespace) {
        json!({})
    } else {
        parse_body(&body)?
    };
    let flag = |k: &str| opts.get(k).and_then(Value::as_bool).unwrap_or(false);
    let (skip, full) = (flag("skipCollectors"), flag("fullSync"));
    let (pid, resp) = h.with_state(|s| -> ApiResult<_> {
        let pid = s.trigger(id, skip, full)?;
        Ok((pid, json_response(200, s.pipeline(pid)?)))
    })?;
    h.schedule_auto_complete(pid);
    Ok(resp)
}

async fn blueprint_pipelines(
    AxState(h): AxState<SimHandle>,
    Path(id): Path<String>,
    Query(q): Q,
) -> ApiResult<R> {
    let id = parse_id(&id, "blueprintID")?;
    pipelines_page(&h, &q, Some(id))
}

// ---------------------------------------------------------------------- pipelines

#[derive(Serialize)]
struct PipelinesPage<'a> {
    count: usize,
    pipelines: Vec<&'a Pipeline>,
}

fn pipelines_page(
    h: &SimHandle,
    q: &HashMap<String, String>,
    blueprint: Option<u64>,
) -> ApiResult<R> {
    let (page, size) = paging(q, 50, None)?;
    let blueprint_id = match blueprint {
        Some(b) => Some(b),
        None => q_usize(q, "blueprint_id")?
            .filter(|b| *b > 0)
            .map(|b| b as u64),
    };
    let filter = PipelineFilter {
        status: q.get("status").filter(|s| !s.is_empty()).cloned(),
        pending: q_usize(q, "pending")?.is_some_and(|p| p > 0),
        blueprint_id,
        label: q.get("label").filter(|l| !l.is_empty()).cloned(),
    };
    // Serialise under the lock straight from the rows: no clone of the table per request.
    let body = h.with_state(|s| {
        let (count, pipelines) = s.list_pipelines(&filter, page, size);
        serde_json::to_vec(&PipelinesPage { count, pipelines })
    });
    Ok(bytes_response(200, body.unwrap_or_default()))
}

async fn list_pipelines(AxState(h): AxState<SimHandle>, Query(q): Q) -> ApiResult<R> {
    pipelines_page(&h, &q, None)
}

async fn create_pipeline(AxState(h): AxState<SimHandle>, body: Bytes) -> ApiResult<R> {
    let body = parse_body(&body)?;
    let (pid, resp) = h.with_state(|s| -> ApiResult<_> {
        let pid = s.create_adhoc_pipeline(body)?;
        Ok((pid, json_response(201, s.pipeline(pid)?)))
    })?;
    h.schedule_auto_complete(pid);
    Ok(resp)
}

async fn get_pipeline(AxState(h): AxState<SimHandle>, Path(id): Path<String>) -> ApiResult<R> {
    let id = parse_id(&id, "pipelineId")?;
    h.with_state(|s| Ok(json_response(200, s.pipeline(id)?)))
}

async fn cancel_pipeline(AxState(h): AxState<SimHandle>, Path(id): Path<String>) -> ApiResult<R> {
    let id = parse_id(&id, "pipelineId")?;
    h.with_state(|s| s.cancel(id))?;
    Ok(success("success"))
}

async fn rerun_pipeline(AxState(h): AxState<SimHandle>, Path(id): Path<String>) -> ApiResult<R> {
    let id = parse_id(&id, "pipelineId")?;
    let tasks = h.with_state(|s| s.rerun(id))?;
    h.schedule_auto_complete(id);
    Ok(json_response(200, &tasks))
}

async fn pipeline_tasks(AxState(h): AxState<SimHandle>, Path(id): Path<String>) -> ApiResult<R> {
    let id = parse_id(&id, "pipelineId")?;
    h.with_state(|s| {
        let tasks = s.tasks(id)?;
        Ok(json_response(
            200,
            &json!({"tasks": tasks, "count": tasks.len()}),
        ))
    })
}
