//! The DevLake REST routes (docs/devlake-api.md), served at `/` (and `/rest/` via the front
//! layer in `mod.rs`).
//!
//! This file holds the router, the response builders and the request helpers every handler
//! shares; the handlers of each DevLake resource live in the submodule named after the client
//! file that calls them (`connections` pairs with the client's `plugins`).

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

use blueprints::*;
use connection_test::*;
use connections::*;
use pipelines::*;
use projects::*;
use remote_scopes::*;
use scope_configs::*;
use scopes::*;
use version::*;

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
            "/plugins/{plugin}/connections/{cid}/test",
            post(test_connection),
        )
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

// Declared after `plugin_guard!` so the handlers can use it (macros are scoped by text order).
mod blueprints;
mod connection_test;
mod connections;
mod pipelines;
mod projects;
mod remote_scopes;
mod scope_configs;
mod scopes;
mod version;
