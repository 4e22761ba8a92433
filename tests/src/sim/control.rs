//! `/_sim/...` — the simulator's control API over HTTP (JSON), for the standalone binary and
//! shell scripts. Never logged, faulted or authenticated.
//!
//! | method | path | body → answer |
//! | --- | --- | --- |
//! | GET | `/_sim/requests` | → `{"requests":[{"method","path","status"}],"dropped":N}` |
//! | GET | `/_sim/counts` | → `{"total","reads","writes","githubApiFillCalls"}` |
//! | POST | `/_sim/reset-log` | → `{}` |
//! | GET, POST, DELETE | `/_sim/faults` | [`Faults`] JSON (POST replaces, DELETE clears) |
//! | POST | `/_sim/faults/rules` | one [`FaultRule`](super::FaultRule) (appended) |
//! | POST | `/_sim/migration` | `{"mode":"none"\|"pending"\|"running"}` |
//! | POST | `/_sim/pipelines/{id}/start` | → pipeline JSON |
//! | POST | `/_sim/pipelines/{id}/finish` | `{"status":"TASK_FAILED","message":"…","errorName":"…"?}` → pipeline JSON |
//! | POST | `/_sim/pipelines/run-all` | `{"status":…,"message":…,"errorName":…?}` → `{"finished":[ids]}` (every pipeline not yet ended: queued, re-run, resumed, running) |
//! | POST | `/_sim/restart` | `{"resumePipelines":bool}` (default true) → `{"changed":[ids]}`: DevLake restarted, running pipelines become `TASK_RESUME` or `TASK_FAILED` |
//! | POST | `/_sim/clock` | `{"now":RFC 3339\|null,"advanceSeconds":N}` → `{"now"}`: stop (or release) DevLake's clock, then move it |
//! | GET, POST | `/_sim/cron` | POST `{"running":bool?,"lose":[blueprint ids],"keep":[blueprint ids]}`: run DevLake's cron of blueprints as the clock moves, lose (or stop losing) their fires; → `{"fires":[{"blueprintId","at","pipelineId","refused"}]}` |
//! | POST | `/_sim/pipelines/{id}/ignore-cancel` | `{"ignored":bool}` (default true) → `{}`: `DELETE /pipelines/{id}` answers 200 and stops nothing |
//! | POST | `/_sim/pipelines` | a [`PipelineSeed`](super::PipelineSeed) or an array of them → `{"ids":[…]}` |
//! | POST | `/_sim/connections` | `{"plugin","connection":{…}}` → `{"id"}` |
//! | POST | `/_sim/connections/{plugin}/{id}/test` | `{"mode":"up"\|"unauthorized"\|"unreachable"}` → `{}`: how the source tool answers DevLake's connection test |
//! | POST | `/_sim/remote-groups` | `{"plugin","connectionId","parentId"?,"id","name"}` → `{}` |
//! | POST | `/_sim/remote-scopes` | `{"plugin","connectionId","groupId"?,"data":{…}}` or `"scopes":[…]` → `{"scopeIds":[…]}` |
//! | POST | `/_sim/projects` | `{"name"}` → `{"blueprintId"}` |
//! | GET | `/_sim/state` | → counts of connections, scopes, projects, blueprints, pipelines |
//! | POST | `/_sim/auto-complete` | `{"afterMs":N,"status":…}` or `{}` to turn off |
//! | PUT | `/_sim/notifications` | `{"endpoint","secret"}` (DevLake's `NOTIFICATION_ENDPOINT`/`_SECRET`), or `{}` to turn off → `{}` |
//! | GET | `/_sim/notifications` | → `{"notifications":[{"id","pipelineId","url","nonce","data","responseCode","response","error","settled"}]}` |

use axum::body::{Body, Bytes};
use axum::extract::{Path, State as AxState};
use axum::http::Response;
use axum::routing::{get, post};
use axum::Router;
use serde::Deserialize;
use serde_json::{json, Value};

use super::faults::{FaultRule, Faults, MigrationMode};
use super::handle::SimError;
use super::routes::{json_response, plain_not_found};
use super::state::{ConnectionTestMode, PipelineSeed};
use super::{lock, AutoComplete, NotificationSettings, SimHandle};

type R = Response<Body>;

fn err(e: SimError) -> R {
    json_response(e.status, &json!({"error": e.message}))
}

fn parse<T: for<'de> Deserialize<'de>>(body: &Bytes) -> Result<T, Box<R>> {
    let text = if body.iter().all(u8::is_ascii_whitespace) {
        &b"{}"[..]
    } else {
        &body[..]
    };
    serde_json::from_slice(text).map_err(|e| {
        Box::new(json_response(
            400,
            &json!({"error": format!("bad body: {e}")}),
        ))
    })
}

macro_rules! try_r {
    ($e:expr) => {
        match $e {
            Ok(v) => v,
            Err(r) => return *r,
        }
    };
}

pub(crate) fn router(h: SimHandle) -> Router {
    Router::new()
        .route("/_sim/requests", get(requests))
        .route("/_sim/counts", get(counts))
        .route("/_sim/reset-log", post(reset_log))
        .route(
            "/_sim/faults",
            get(get_faults).post(set_faults).delete(clear_faults),
        )
        .route("/_sim/faults/rules", post(add_rule))
        .route("/_sim/migration", post(migration))
        .route("/_sim/pipelines", post(seed_pipelines))
        .route("/_sim/pipelines/run-all", post(run_all))
        .route("/_sim/pipelines/{id}/start", post(start_pipeline))
        .route("/_sim/pipelines/{id}/finish", post(finish_pipeline))
        .route("/_sim/connections", post(add_connection))
        .route(
            "/_sim/connections/{plugin}/{id}/test",
            post(set_connection_test),
        )
        .route("/_sim/remote-groups", post(add_remote_group))
        .route("/_sim/remote-scopes", post(add_remote_scopes))
        .route("/_sim/projects", post(add_project))
        .route("/_sim/state", get(state_summary))
        .route("/_sim/restart", post(restart))
        .route("/_sim/clock", post(set_clock))
        .route("/_sim/cron", get(cron_fires).post(set_cron))
        .route("/_sim/pipelines/{id}/ignore-cancel", post(ignore_cancel))
        .route("/_sim/auto-complete", post(auto_complete))
        .route(
            "/_sim/notifications",
            get(list_notifications).put(set_notifications),
        )
        .fallback(|| async { plain_not_found() })
        .with_state(h)
}

async fn requests(AxState(h): AxState<SimHandle>) -> R {
    let log = lock(&h.inner.log);
    json_response(
        200,
        &json!({"requests": log.records, "dropped": log.dropped}),
    )
}

async fn counts(AxState(h): AxState<SimHandle>) -> R {
    let c = h.counts();
    json_response(
        200,
        &json!({"total": c.total, "reads": c.reads, "writes": c.writes, "githubApiFillCalls": h.github_api_fill_calls()}),
    )
}

async fn reset_log(AxState(h): AxState<SimHandle>) -> R {
    h.reset_log();
    json_response(200, &json!({}))
}

async fn get_faults(AxState(h): AxState<SimHandle>) -> R {
    json_response(200, &h.faults())
}

async fn set_faults(AxState(h): AxState<SimHandle>, body: Bytes) -> R {
    let f: Faults = try_r!(parse(&body));
    h.set_faults(f);
    json_response(200, &h.faults())
}

async fn clear_faults(AxState(h): AxState<SimHandle>) -> R {
    h.clear_faults();
    json_response(200, &h.faults())
}

async fn add_rule(AxState(h): AxState<SimHandle>, body: Bytes) -> R {
    let rule: FaultRule = try_r!(parse(&body));
    h.add_fault_rule(rule);
    json_response(200, &h.faults())
}

#[derive(Deserialize)]
struct MigrationBody {
    mode: MigrationMode,
}

async fn migration(AxState(h): AxState<SimHandle>, body: Bytes) -> R {
    let b: MigrationBody = try_r!(parse(&body));
    h.set_migration(b.mode);
    json_response(200, &h.faults())
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Seeds {
    Many(Vec<PipelineSeed>),
    One(Box<PipelineSeed>),
}

async fn seed_pipelines(AxState(h): AxState<SimHandle>, body: Bytes) -> R {
    let seeds = match try_r!(parse::<Seeds>(&body)) {
        Seeds::Many(v) => v,
        Seeds::One(s) => vec![*s],
    };
    match h.insert_pipelines(seeds) {
        Ok(ids) => json_response(200, &json!({"ids": ids})),
        Err(e) => err(e),
    }
}

#[derive(Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct FinishBody {
    status: String,
    message: String,
    /// The `errorName` chain to store; absent: derived from `message`.
    error_name: Option<String>,
}

impl Default for FinishBody {
    fn default() -> Self {
        FinishBody {
            status: "TASK_COMPLETED".into(),
            message: String::new(),
            error_name: None,
        }
    }
}

fn pipeline_id(id: &str) -> Result<u64, Box<R>> {
    id.parse()
        .map_err(|_| Box::new(json_response(400, &json!({"error": "bad pipeline id"}))))
}

async fn start_pipeline(AxState(h): AxState<SimHandle>, Path(id): Path<String>) -> R {
    let id = try_r!(pipeline_id(&id));
    match h.start_pipeline(id) {
        Ok(()) => json_response(200, &h.pipeline(id)),
        Err(e) => err(e),
    }
}

async fn finish_pipeline(AxState(h): AxState<SimHandle>, Path(id): Path<String>, body: Bytes) -> R {
    let id = try_r!(pipeline_id(&id));
    let b: FinishBody = try_r!(parse(&body));
    let finished = match &b.error_name {
        Some(chain) => h.finish_pipeline_with_error(id, &b.status, &b.message, chain),
        None => h.finish_pipeline(id, &b.status, &b.message),
    };
    match finished {
        Ok(()) => json_response(200, &h.pipeline(id)),
        Err(e) => err(e),
    }
}

#[derive(Deserialize)]
struct ConnectionTestBody {
    mode: ConnectionTestMode,
}

async fn set_connection_test(
    AxState(h): AxState<SimHandle>,
    Path((plugin, id)): Path<(String, String)>,
    body: Bytes,
) -> R {
    let Ok(id) = id.parse::<u64>() else {
        return json_response(400, &json!({"error": "bad connection id"}));
    };
    let b: ConnectionTestBody = try_r!(parse(&body));
    match h.set_connection_test(&plugin, id, b.mode) {
        Ok(()) => json_response(200, &json!({})),
        Err(e) => err(e),
    }
}

async fn run_all(AxState(h): AxState<SimHandle>, body: Bytes) -> R {
    let b: FinishBody = try_r!(parse(&body));
    match h.finish_all_pending_with(&b.status, &b.message, b.error_name.as_deref()) {
        Ok(ids) => json_response(200, &json!({"finished": ids})),
        Err(e) => err(e),
    }
}

/// `POST /_sim/restart {"resumePipelines": bool}` (default true, DevLake's `RESUME_PIPELINES`).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct RestartBody {
    resume_pipelines: bool,
}

impl Default for RestartBody {
    fn default() -> Self {
        RestartBody {
            resume_pipelines: true,
        }
    }
}

async fn restart(AxState(h): AxState<SimHandle>, body: Bytes) -> R {
    let b: RestartBody = try_r!(parse(&body));
    let changed = h.restart(b.resume_pipelines);
    json_response(200, &json!({ "changed": changed }))
}

/// `POST /_sim/clock {"now": RFC 3339 | null, "advanceSeconds": n}`: stop DevLake's clock at
/// `now` (null: back to the wall clock), then move it forward.
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct ClockBody {
    now: Option<chrono::DateTime<chrono::Utc>>,
    advance_seconds: i64,
}

async fn set_clock(AxState(h): AxState<SimHandle>, body: Bytes) -> R {
    let b: ClockBody = try_r!(parse(&body));
    h.set_clock(b.now);
    if b.advance_seconds != 0 {
        h.advance_clock(chrono::Duration::seconds(b.advance_seconds));
    }
    json_response(200, &json!({ "now": h.now() }))
}

/// `POST /_sim/cron {"running": bool, "lose": [ids], "keep": [ids]}`.
#[derive(Deserialize, Default)]
#[serde(default)]
struct CronBody {
    running: Option<bool>,
    lose: Vec<u64>,
    keep: Vec<u64>,
}

async fn set_cron(AxState(h): AxState<SimHandle>, body: Bytes) -> R {
    let b: CronBody = try_r!(parse(&body));
    if let Some(on) = b.running {
        h.run_cron(on);
    }
    for id in b.lose {
        h.lose_cron_fires(id, true);
    }
    for id in b.keep {
        h.lose_cron_fires(id, false);
    }
    cron_fires(AxState(h)).await
}

async fn cron_fires(AxState(h): AxState<SimHandle>) -> R {
    json_response(200, &json!({ "fires": h.cron_fires() }))
}

#[derive(Deserialize)]
#[serde(default)]
struct IgnoreCancelBody {
    ignored: bool,
}

impl Default for IgnoreCancelBody {
    fn default() -> Self {
        IgnoreCancelBody { ignored: true }
    }
}

async fn ignore_cancel(AxState(h): AxState<SimHandle>, Path(id): Path<String>, body: Bytes) -> R {
    let id = try_r!(pipeline_id(&id));
    let b: IgnoreCancelBody = try_r!(parse(&body));
    h.ignore_cancel(id, b.ignored);
    json_response(200, &json!({}))
}

#[derive(Deserialize)]
struct ConnectionBody {
    plugin: String,
    connection: Value,
}

async fn add_connection(AxState(h): AxState<SimHandle>, body: Bytes) -> R {
    let b: ConnectionBody = try_r!(parse(&body));
    match h.add_connection(&b.plugin, b.connection) {
        Ok(id) => json_response(200, &json!({"id": id})),
        Err(e) => err(e),
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct GroupBody {
    plugin: String,
    connection_id: u64,
    #[serde(default)]
    parent_id: Option<String>,
    id: String,
    #[serde(default)]
    name: Option<String>,
}

async fn add_remote_group(AxState(h): AxState<SimHandle>, body: Bytes) -> R {
    let b: GroupBody = try_r!(parse(&body));
    let name = b.name.clone().unwrap_or_else(|| b.id.clone());
    match h.add_remote_group(
        &b.plugin,
        b.connection_id,
        b.parent_id.as_deref(),
        &b.id,
        &name,
    ) {
        Ok(()) => json_response(200, &json!({})),
        Err(e) => err(e),
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RemoteScopesBody {
    plugin: String,
    connection_id: u64,
    #[serde(default)]
    group_id: Option<String>,
    #[serde(default)]
    data: Option<Value>,
    #[serde(default)]
    scopes: Vec<Value>,
}

async fn add_remote_scopes(AxState(h): AxState<SimHandle>, body: Bytes) -> R {
    let b: RemoteScopesBody = try_r!(parse(&body));
    let mut data = b.scopes;
    data.extend(b.data);
    match h.add_remote_scopes(&b.plugin, b.connection_id, b.group_id.as_deref(), data) {
        Ok(ids) => json_response(200, &json!({"scopeIds": ids})),
        Err(e) => err(e),
    }
}

#[derive(Deserialize)]
struct ProjectBody {
    name: String,
}

async fn add_project(AxState(h): AxState<SimHandle>, body: Bytes) -> R {
    let b: ProjectBody = try_r!(parse(&body));
    match h.create_project(&b.name) {
        Ok(id) => json_response(200, &json!({"blueprintId": id})),
        Err(e) => err(e),
    }
}

async fn state_summary(AxState(h): AxState<SimHandle>) -> R {
    let v = h.with_state(|s| {
        json!({
            "connections": s.connections.len(),
            "scopes": s.connections.values().map(|c| c.scopes.len()).sum::<usize>(),
            "scopeConfigs": s.scope_configs.len(),
            "projects": s.projects.len(),
            "blueprints": s.blueprints.len(),
            "pipelines": s.pipelines.len(),
            "pendingPipelines": s.pending_ids(),
        })
    });
    json_response(200, &v)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AutoBody {
    #[serde(default)]
    after_ms: Option<u64>,
    #[serde(default)]
    status: Option<String>,
}

async fn auto_complete(AxState(h): AxState<SimHandle>, body: Bytes) -> R {
    let b: AutoBody = try_r!(parse(&body));
    let auto = b.after_ms.map(|ms| AutoComplete {
        after: std::time::Duration::from_millis(ms),
        status: b.status.unwrap_or_else(|| "TASK_COMPLETED".into()),
    });
    h.set_auto_complete(auto);
    json_response(200, &json!({}))
}

#[derive(Deserialize)]
struct NotificationsBody {
    #[serde(default)]
    endpoint: Option<String>,
    #[serde(default)]
    secret: Option<String>,
}

async fn set_notifications(AxState(h): AxState<SimHandle>, body: Bytes) -> R {
    let b: NotificationsBody = try_r!(parse(&body));
    h.set_notifications(b.endpoint.map(|endpoint| NotificationSettings {
        endpoint,
        secret: b.secret.unwrap_or_default(),
    }));
    json_response(200, &json!({}))
}

async fn list_notifications(AxState(h): AxState<SimHandle>) -> R {
    json_response(200, &json!({"notifications": h.notifications()}))
}
