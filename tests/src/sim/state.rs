//! The simulator's in-memory DevLake database and DevLake's business rules (docs/devlake-api.md).
//!
//! Everything here is synchronous and runs under one mutex; HTTP handlers and the in-process
//! [`SimHandle`](super::SimHandle) both go through these methods so they enforce the same rules.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use chrono::{DateTime, Months, TimeZone, Utc};
use serde::{Serialize, Serializer};
use serde_json::{json, Map, Value};

use super::plugins;
use super::time::{parse_time, ser};

/// An error as DevLake reports it: HTTP status plus the envelope's `message`.
#[derive(Debug, Clone)]
pub(crate) struct ApiError {
    pub status: u16,
    pub message: String,
    pub data: Value,
}

impl ApiError {
    pub(crate) fn new(status: u16, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
            data: Value::Null,
        }
    }
    pub(crate) fn bad(message: impl Into<String>) -> Self {
        Self::new(400, message)
    }
    pub(crate) fn not_found(message: impl Into<String>) -> Self {
        Self::new(404, message)
    }
}

pub(crate) type ApiResult<T> = Result<T, ApiError>;

pub(crate) const PENDING: [&str; 3] = ["TASK_CREATED", "TASK_RERUN", "TASK_RUNNING"];
pub(crate) const FINISHED: [&str; 4] = [
    "TASK_COMPLETED",
    "TASK_FAILED",
    "TASK_PARTIAL",
    "TASK_CANCELLED",
];

/// A JSON value shared between many rows (e.g. the plan of 100k seeded pipelines).
#[derive(Clone, Debug)]
pub(crate) struct Shared(pub Arc<Value>);

impl Serialize for Shared {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

/// Scopes of one connection in DB (insertion) order, addressable by `scopeId`.
#[derive(Default, Debug)]
pub(crate) struct ScopeTable {
    rows: Vec<Map<String, Value>>,
    ids: Vec<String>,
    index: HashMap<String, usize>,
}

impl ScopeTable {
    pub(crate) fn get(&self, id: &str) -> Option<&Map<String, Value>> {
        self.index.get(id).map(|&i| &self.rows[i])
    }
    pub(crate) fn upsert(&mut self, id: String, row: Map<String, Value>) {
        match self.index.get(&id) {
            Some(&i) => self.rows[i] = row,
            None => {
                self.index.insert(id.clone(), self.rows.len());
                self.ids.push(id);
                self.rows.push(row);
            }
        }
    }
    pub(crate) fn remove(&mut self, id: &str) -> Option<Map<String, Value>> {
        let i = self.index.remove(id)?;
        let row = self.rows.remove(i);
        self.ids.remove(i);
        for (j, sid) in self.ids.iter().enumerate().skip(i) {
            self.index.insert(sid.clone(), j);
        }
        Some(row)
    }
    pub(crate) fn len(&self) -> usize {
        self.rows.len()
    }
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&String, &Map<String, Value>)> {
        self.ids.iter().zip(self.rows.iter())
    }
}

/// One entry of a remote-scope listing.
#[derive(Debug, Clone)]
pub(crate) struct RemoteEntry {
    pub is_group: bool,
    pub parent_id: Option<String>,
    pub id: String,
    pub name: String,
    pub full_name: String,
    pub data: Option<Value>,
}

impl RemoteEntry {
    pub(crate) fn to_json(&self) -> Value {
        json!({
            "type": if self.is_group { "group" } else { "scope" },
            "parentId": self.parent_id,
            "id": self.id,
            "name": self.name,
            "fullName": self.full_name,
            "data": self.data.clone().unwrap_or(Value::Null),
        })
    }
}

#[derive(Debug)]
pub(crate) struct Connection {
    pub body: Map<String, Value>,
    pub scopes: ScopeTable,
    /// children per parent group id ("" = top level); groups are listed before scopes.
    pub remote: HashMap<String, Vec<RemoteEntry>>,
}

#[derive(Debug, Clone)]
pub(crate) struct Project {
    pub name: String,
    pub description: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub metrics: Value,
    pub seq: u64,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub(crate) struct BlueprintScope {
    pub scope_id: String,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub(crate) struct BlueprintConnection {
    pub plugin_name: String,
    pub connection_id: u64,
    pub scopes: Vec<BlueprintScope>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Blueprint {
    pub id: u64,
    #[serde(serialize_with = "ser::time")]
    pub created_at: DateTime<Utc>,
    #[serde(serialize_with = "ser::time")]
    pub updated_at: DateTime<Utc>,
    pub name: String,
    pub project_name: String,
    pub mode: String,
    pub plan: Shared,
    pub enable: bool,
    pub cron_config: String,
    pub is_manual: bool,
    pub before_plan: Value,
    pub after_plan: Value,
    pub labels: Vec<String>,
    pub connections: Vec<BlueprintConnection>,
    pub priority: i64,
    pub skip_on_fail: bool,
    #[serde(serialize_with = "ser::opt_time")]
    pub time_after: Option<DateTime<Utc>>,
    pub skip_collectors: bool,
    pub full_sync: bool,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Pipeline {
    pub id: u64,
    #[serde(serialize_with = "ser::time")]
    pub created_at: DateTime<Utc>,
    #[serde(serialize_with = "ser::time")]
    pub updated_at: DateTime<Utc>,
    pub name: Arc<str>,
    pub blueprint_id: u64,
    pub plan: Shared,
    pub total_tasks: i64,
    pub finished_tasks: i64,
    #[serde(serialize_with = "ser::opt_time")]
    pub began_at: Option<DateTime<Utc>>,
    #[serde(serialize_with = "ser::opt_time")]
    pub finished_at: Option<DateTime<Utc>>,
    pub status: &'static str,
    pub message: String,
    pub error_name: String,
    pub spent_seconds: i64,
    pub stage: i64,
    pub labels: Vec<String>,
    pub priority: i64,
    pub skip_on_fail: bool,
    #[serde(serialize_with = "ser::opt_time")]
    pub time_after: Option<DateTime<Utc>>,
    pub skip_collectors: bool,
    pub full_sync: bool,
}

impl Pipeline {
    pub(crate) fn is_pending(&self) -> bool {
        self.finished_at.is_none() && PENDING.contains(&self.status)
    }
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Task {
    pub id: u64,
    #[serde(serialize_with = "ser::time")]
    pub created_at: DateTime<Utc>,
    #[serde(serialize_with = "ser::time")]
    pub updated_at: DateTime<Utc>,
    pub plugin: String,
    pub subtasks: Value,
    pub options: Value,
    pub status: &'static str,
    pub message: String,
    pub error_name: String,
    pub progress: f64,
    pub progress_detail: Value,
    pub failed_sub_task: String,
    pub pipeline_id: u64,
    pub pipeline_row: i64,
    pub pipeline_col: i64,
    #[serde(serialize_with = "ser::opt_time")]
    pub began_at: Option<DateTime<Utc>>,
    #[serde(serialize_with = "ser::opt_time")]
    pub finished_at: Option<DateTime<Utc>>,
    pub spent_seconds: i64,
}

/// Canonical status constant for a user-supplied status string.
pub(crate) fn status_const(s: &str) -> Option<&'static str> {
    [
        "TASK_CREATED",
        "TASK_RERUN",
        "TASK_RESUME",
        "TASK_RUNNING",
        "TASK_COMPLETED",
        "TASK_FAILED",
        "TASK_CANCELLED",
        "TASK_PARTIAL",
    ]
    .into_iter()
    .find(|c| c.eq_ignore_ascii_case(s))
}

/// Filters of `GET /pipelines` (docs/devlake-api.md, Pipelines).
#[derive(Debug, Default, Clone)]
pub(crate) struct PipelineFilter {
    pub status: Option<String>,
    pub pending: bool,
    pub blueprint_id: Option<u64>,
    pub label: Option<String>,
}

#[derive(Debug, Default, Clone)]
pub(crate) struct BlueprintFilter {
    pub enable: Option<bool>,
    pub is_manual: Option<bool>,
    pub label: Option<String>,
    pub kind: Option<String>,
}

/// A row to insert directly into the pipelines table (tests, benchmarks, fixtures).
#[derive(Debug, Clone, serde::Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct PipelineSeed {
    /// 0 = ad-hoc pipeline.
    pub blueprint_id: u64,
    /// Defaults to the blueprint's name, or "pipeline" for ad-hoc ones.
    pub name: Option<String>,
    pub status: String,
    pub created_at: Option<DateTime<Utc>>,
    pub began_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub message: String,
    pub error_name: String,
    pub labels: Vec<String>,
}

impl Default for PipelineSeed {
    fn default() -> Self {
        PipelineSeed {
            blueprint_id: 0,
            name: None,
            status: "TASK_COMPLETED".into(),
            created_at: None,
            began_at: None,
            finished_at: None,
            message: String::new(),
            error_name: String::new(),
            labels: Vec::new(),
        }
    }
}

#[derive(Debug)]
pub(crate) struct State {
    pub version: String,
    pub plugins: Vec<String>,
    pub remote_page_size: usize,
    pub connections: BTreeMap<(String, u64), Connection>,
    pub next_connection_id: HashMap<String, u64>,
    /// (plugin, id) → scope config object.
    pub scope_configs: BTreeMap<(String, u64), Map<String, Value>>,
    pub next_scope_config_id: HashMap<String, u64>,
    pub projects: BTreeMap<String, Project>,
    pub next_project_seq: u64,
    pub blueprints: BTreeMap<u64, Blueprint>,
    /// projectName → blueprint id (DevLake finds a project's blueprint by project name).
    pub blueprint_by_project: HashMap<String, u64>,
    pub next_blueprint_id: u64,
    pub pipelines: BTreeMap<u64, Pipeline>,
    pub pipelines_by_blueprint: HashMap<u64, BTreeSet<u64>>,
    pub next_pipeline_id: u64,
    /// Latest attempt of each task, materialised lazily from the plan.
    pub tasks: HashMap<u64, Vec<Task>>,
    pub next_task_id: u64,
    pub github_api_fill_calls: u64,
    default_plan: Shared,
    /// `None`: the wall clock. `Some(t)`: time stands at `t` until moved (tests that compress
    /// days of DevLake activity into seconds).
    pub clock: Option<DateTime<Utc>>,
    /// Every time a pipeline reached a finished status, in order: the simulator's own record
    /// of what a monitor should have seen.
    pub ends: Vec<PipelineEnd>,
}

/// A pipeline reaching a finished status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PipelineEnd {
    pub pipeline_id: u64,
    pub blueprint_id: u64,
    pub status: String,
    /// When DevLake saved that status (`updatedAt` of that save; `finishedAt` too when stamped).
    pub at: DateTime<Utc>,
}

fn zero_time() -> &'static str {
    "0001-01-01T00:00:00Z"
}

impl State {
    /// DevLake's `time.Now()`: the controlled clock if set, else the wall clock.
    pub(crate) fn now(&self) -> DateTime<Utc> {
        self.clock.unwrap_or_else(Utc::now)
    }

    pub(crate) fn new(version: String, remote_page_size: usize) -> State {
        State {
            version,
            plugins: Vec::new(),
            remote_page_size: remote_page_size.max(1),
            connections: BTreeMap::new(),
            next_connection_id: HashMap::new(),
            scope_configs: BTreeMap::new(),
            next_scope_config_id: HashMap::new(),
            projects: BTreeMap::new(),
            next_project_seq: 1,
            blueprints: BTreeMap::new(),
            blueprint_by_project: HashMap::new(),
            next_blueprint_id: 1,
            pipelines: BTreeMap::new(),
            pipelines_by_blueprint: HashMap::new(),
            next_pipeline_id: 1,
            tasks: HashMap::new(),
            next_task_id: 1,
            github_api_fill_calls: 0,
            clock: None,
            ends: Vec::new(),
            default_plan: Shared(Arc::new(json!([[{
                "plugin": "github",
                "subtasks": null,
                "options": {}
            }]]))),
        }
    }

    // ---------------------------------------------------------------- plugins & connections

    pub(crate) fn plugin_loaded(&self, plugin: &str) -> bool {
        self.plugins.iter().any(|p| p == plugin)
    }

    fn ensure_plugin(&mut self, plugin: &str) {
        if !self.plugin_loaded(plugin) {
            self.plugins.push(plugin.to_string());
        }
    }

    pub(crate) fn add_connection(&mut self, plugin: &str, body: Value) -> ApiResult<u64> {
        let mut body = match body {
            Value::Object(m) => m,
            _ => return Err(ApiError::bad("bad request body format")),
        };
        let name = body
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        if name.is_empty() {
            return Err(ApiError::bad("data verification failed: Name is required"));
        }
        if self.connections.iter().any(|((p, _), c)| {
            p == plugin && c.body.get("name").and_then(Value::as_str) == Some(&name)
        }) {
            return Err(ApiError::new(
                500,
                "The name of the current scope config is duplicated. Please modify it before saving.",
            ));
        }
        let next = self
            .next_connection_id
            .entry(plugin.to_string())
            .or_insert(1);
        let id = match body.get("id").and_then(Value::as_u64) {
            Some(id) if id > 0 => id,
            _ => *next,
        };
        *next = (*next).max(id + 1);
        let t = super::time::go_time(&self.now());
        body.insert("id".into(), json!(id));
        body.entry("createdAt").or_insert(json!(t));
        body.entry("updatedAt").or_insert(json!(t));
        for secret in ["token", "password", "secretKey", "refreshToken"] {
            if let Some(Value::String(s)) = body.get_mut(secret) {
                if !s.is_empty() {
                    *s = "********".into();
                }
            }
        }
        if plugin == "github" {
            body.entry("enableGraphql").or_insert(json!(true));
        }
        self.ensure_plugin(plugin);
        self.connections.insert(
            (plugin.to_string(), id),
            Connection {
                body,
                scopes: ScopeTable::default(),
                remote: HashMap::new(),
            },
        );
        Ok(id)
    }

    pub(crate) fn connection(&self, plugin: &str, id: u64) -> ApiResult<&Connection> {
        self.connections
            .get(&(plugin.to_string(), id))
            .ok_or_else(|| connection_not_found(plugin))
    }

    pub(crate) fn connection_mut(&mut self, plugin: &str, id: u64) -> ApiResult<&mut Connection> {
        self.connections
            .get_mut(&(plugin.to_string(), id))
            .ok_or_else(|| connection_not_found(plugin))
    }

    // ---------------------------------------------------------------- remote scopes

    pub(crate) fn add_remote_group(
        &mut self,
        plugin: &str,
        connection_id: u64,
        parent: Option<&str>,
        id: &str,
        name: &str,
        full_name: Option<&str>,
    ) -> ApiResult<()> {
        let conn = self.connection_mut(plugin, connection_id)?;
        let list = conn
            .remote
            .entry(parent.unwrap_or("").to_string())
            .or_default();
        if list.iter().any(|e| e.is_group && e.id == id) {
            return Ok(());
        }
        let entry = RemoteEntry {
            is_group: true,
            parent_id: parent.map(str::to_string),
            id: id.to_string(),
            name: name.to_string(),
            full_name: full_name.unwrap_or(name).to_string(),
            data: None,
        };
        let at = list.iter().position(|e| !e.is_group).unwrap_or(list.len());
        list.insert(at, entry);
        Ok(())
    }

    /// Adds (or replaces) a scope in the remote listing; returns its scopeId.
    pub(crate) fn add_remote_scope(
        &mut self,
        plugin: &str,
        connection_id: u64,
        parent: Option<&str>,
        data: Value,
    ) -> ApiResult<String> {
        let Value::Object(mut data) = data else {
            return Err(ApiError::bad("remote scope data must be an object"));
        };
        // A Bitbucket Server repository's numeric id is not part of its scope data: fixtures
        // may give it as `id`, which becomes the listing entry's id (else one is numbered).
        let remote_id = plugins::remote_id_differs(plugin)
            .then(|| data.remove("id"))
            .flatten()
            .and_then(|v| v.as_u64().or_else(|| v.as_str()?.parse().ok()));
        let mut data = plugins::canonicalize_scope(plugin, data);
        let scope_id = plugins::scope_id_of(plugin, &data).ok_or_else(|| {
            ApiError::bad(format!(
                "remote scope lacks its id field `{}`",
                plugins::id_field(plugin)
            ))
        })?;
        plugins::normalize_id(plugin, &mut data, &scope_id);
        // Remote data comes fresh from the tool: not yet saved, so zero connection and times.
        data.entry("connectionId").or_insert(json!(0));
        data.entry("createdAt").or_insert(json!(zero_time()));
        data.entry("updatedAt").or_insert(json!(zero_time()));
        data.entry("_raw_data_params").or_insert(json!(""));
        data.entry("_raw_data_table").or_insert(json!(""));
        data.entry("_raw_data_id").or_insert(json!(0));
        data.entry("_raw_data_remark").or_insert(json!(""));
        let (name, full_name) = plugins::scope_names(plugin, &data, &scope_id);
        let conn = self.connection_mut(plugin, connection_id)?;
        let same = |e: &RemoteEntry| {
            !e.is_group
                && e.data
                    .as_ref()
                    .and_then(|d| d.as_object())
                    .is_some_and(|d| {
                        plugins::scope_id_of(plugin, d).as_deref() == Some(scope_id.as_str())
                    })
        };
        let id = if plugins::remote_id_differs(plugin) {
            let entries = || conn.remote.values().flatten().filter(|e| !e.is_group);
            match (remote_id, entries().find(|e| same(e))) {
                (Some(n), _) => n.to_string(),
                (None, Some(old)) => old.id.clone(),
                // Numbered after the largest numeric id so far, as Bitbucket's sequence does.
                (None, None) => (entries()
                    .filter_map(|e| e.id.parse::<u64>().ok())
                    .max()
                    .unwrap_or(0)
                    + 1)
                .to_string(),
            }
        } else {
            scope_id.clone()
        };
        let list = conn
            .remote
            .entry(parent.unwrap_or("").to_string())
            .or_default();
        let entry = RemoteEntry {
            is_group: false,
            parent_id: parent.map(str::to_string),
            id,
            name,
            full_name,
            data: Some(Value::Object(data)),
        };
        match list.iter().position(same) {
            Some(i) => list[i] = entry,
            None => list.push(entry),
        }
        Ok(scope_id)
    }

    /// Takes a scope out of the remote listing (the repository was deleted in the tool); the
    /// saved scope, if any, stays, as it does in DevLake. Returns whether it was listed.
    pub(crate) fn remove_remote_scope(
        &mut self,
        plugin: &str,
        connection_id: u64,
        scope_id: &str,
    ) -> ApiResult<bool> {
        let conn = self.connection_mut(plugin, connection_id)?;
        let mut found = false;
        for list in conn.remote.values_mut() {
            list.retain(|e| {
                let same = !e.is_group
                    && e.data
                        .as_ref()
                        .and_then(|d| d.as_object())
                        .is_some_and(|d| {
                            plugins::scope_id_of(plugin, d).as_deref() == Some(scope_id)
                        });
                found |= same;
                !same
            });
        }
        Ok(found)
    }

    /// One page of remote children; page numbers are 1-based.
    pub(crate) fn remote_page(
        &self,
        plugin: &str,
        connection_id: u64,
        group: &str,
        page: usize,
        per_page: usize,
    ) -> ApiResult<(Vec<Value>, bool)> {
        let conn = self.connection(plugin, connection_id)?;
        let Some(list) = conn.remote.get(group) else {
            return Ok((Vec::new(), false));
        };
        let start = (page.max(1) - 1) * per_page;
        let children: Vec<Value> = list
            .iter()
            .skip(start)
            .take(per_page)
            .map(RemoteEntry::to_json)
            .collect();
        let more = start + per_page < list.len();
        Ok((children, more))
    }

    pub(crate) fn remote_search(
        &self,
        plugin: &str,
        connection_id: u64,
        needle: &str,
    ) -> ApiResult<Vec<Value>> {
        let conn = self.connection(plugin, connection_id)?;
        let needle = needle.to_lowercase();
        let mut out = Vec::new();
        for list in conn.remote.values() {
            for e in list.iter().filter(|e| !e.is_group) {
                if e.full_name.to_lowercase().contains(&needle) {
                    let mut j = e.to_json();
                    j["parentId"] = Value::Null;
                    out.push(j);
                }
            }
        }
        out.sort_by(|a, b| a["fullName"].as_str().cmp(&b["fullName"].as_str()));
        Ok(out)
    }

    // ---------------------------------------------------------------- scopes

    /// `PUT .../scopes` semantics for a single row. `index` is the row's position in the body.
    pub(crate) fn put_scope(
        &mut self,
        plugin: &str,
        connection_id: u64,
        index: usize,
        row: Value,
    ) -> ApiResult<Map<String, Value>> {
        let fail = || ApiError::bad(format!("failed to save item {index}"));
        let Value::Object(raw) = row else {
            return Err(fail());
        };
        if plugin == "github" {
            // DevLake checks exactly these camelCase keys, so a row carrying only `HTMLUrl`
            // (as remote-scopes returns it) still triggers a call to GitHub.
            let has = |k: &str| {
                raw.get(k)
                    .and_then(Value::as_str)
                    .is_some_and(|s| !s.is_empty())
            };
            let full = raw
                .get("fullName")
                .and_then(Value::as_str)
                .map(str::to_string);
            if let Some(full) = full.filter(|_| !(has("htmlUrl") && has("cloneUrl"))) {
                self.github_api_fill_calls += 1;
                tracing::info!(full_name = %full, "sim: github scope PUT without htmlUrl/cloneUrl; would call GitHub API");
            }
        }
        let mut row = plugins::canonicalize_scope(plugin, raw);
        if plugin == "github" {
            if let Some(full) = row
                .get("fullName")
                .and_then(Value::as_str)
                .map(str::to_string)
            {
                let empty = |v: Option<&Value>| v.and_then(Value::as_str).is_none_or(str::is_empty);
                if empty(row.get("HTMLUrl")) {
                    row.insert(
                        "HTMLUrl".into(),
                        json!(format!("https://github.com/{full}")),
                    );
                }
                if empty(row.get("cloneUrl")) {
                    row.insert(
                        "cloneUrl".into(),
                        json!(format!("https://github.com/{full}.git")),
                    );
                }
            }
        }
        let scope_id = plugins::scope_id_of(plugin, &row).ok_or_else(fail)?;
        plugins::normalize_id(plugin, &mut row, &scope_id);
        row.insert("connectionId".into(), json!(connection_id));
        self.normalize_scope_config_id(&mut row);
        let t = super::time::go_time(&self.now());
        let conn = self.connection_mut(plugin, connection_id)?;
        let created = conn
            .scopes
            .get(&scope_id)
            .and_then(|old| old.get("createdAt").cloned())
            .unwrap_or(json!(t));
        row.insert("createdAt".into(), created);
        row.insert("updatedAt".into(), json!(t));
        row.insert(
            "_raw_data_table".into(),
            json!(format!("_raw_{plugin}_scopes")),
        );
        let params = plugins::raw_data_params(plugin, connection_id, &row, &scope_id);
        row.insert("_raw_data_params".into(), json!(params));
        row.entry("_raw_data_id").or_insert(json!(0));
        row.entry("_raw_data_remark").or_insert(json!(""));
        conn.scopes.upsert(scope_id, row.clone());
        Ok(row)
    }

    fn normalize_scope_config_id(&self, row: &mut Map<String, Value>) {
        // `scopeConfigId` is omitempty: absent when 0.
        let id = match row.get("scopeConfigId") {
            Some(Value::Number(n)) => n.as_u64().unwrap_or(0),
            Some(Value::String(s)) => s.parse().unwrap_or(0),
            _ => 0,
        };
        if id == 0 {
            row.remove("scopeConfigId");
        } else {
            row.insert("scopeConfigId".into(), json!(id));
        }
    }

    pub(crate) fn patch_scope(
        &mut self,
        plugin: &str,
        connection_id: u64,
        scope_id: &str,
        patch: Value,
    ) -> ApiResult<Map<String, Value>> {
        let Value::Object(patch) = patch else {
            return Err(ApiError::bad("bad request body format"));
        };
        let patch = plugins::canonicalize_scope(plugin, patch);
        let mut row = self.scope(plugin, connection_id, scope_id)?.clone();
        let id_field = plugins::id_field(plugin);
        for (k, v) in patch {
            if k == "connectionId" || k == id_field || k == "createdAt" {
                continue;
            }
            row.insert(k, v);
        }
        self.normalize_scope_config_id(&mut row);
        row.insert("updatedAt".into(), json!(super::time::go_time(&self.now())));
        let conn = self.connection_mut(plugin, connection_id)?;
        conn.scopes.upsert(scope_id.to_string(), row.clone());
        Ok(row)
    }

    pub(crate) fn scope(
        &self,
        plugin: &str,
        connection_id: u64,
        scope_id: &str,
    ) -> ApiResult<&Map<String, Value>> {
        self.connection(plugin, connection_id)?
            .scopes
            .get(scope_id)
            .ok_or_else(|| {
                ApiError::not_found(format!(
                    "*models.{} not found",
                    plugins::scope_model(plugin)
                ))
            })
    }

    /// `{"scope":…, "scopeConfig":…?, "blueprints":[…]?}` (ScopeDetail).
    pub(crate) fn scope_detail(
        &self,
        plugin: &str,
        connection_id: u64,
        scope_id: &str,
        row: &Map<String, Value>,
        with_blueprints: bool,
    ) -> Value {
        let mut item = Map::new();
        item.insert("scope".into(), Value::Object(row.clone()));
        if let Some(sc_id) = row.get("scopeConfigId").and_then(Value::as_u64) {
            if let Some(sc) = self.scope_configs.get(&(plugin.to_string(), sc_id)) {
                item.insert("scopeConfig".into(), Value::Object(sc.clone()));
            }
        }
        if with_blueprints {
            let bps: Vec<Value> = self
                .blueprints
                .values()
                .filter(|bp| {
                    bp.connections.iter().any(|c| {
                        c.plugin_name == plugin
                            && c.connection_id == connection_id
                            && c.scopes.iter().any(|s| s.scope_id == scope_id)
                    })
                })
                .map(|bp| {
                    let mut v = serde_json::to_value(bp).unwrap_or(Value::Null);
                    v["plan"] = Value::Null;
                    v
                })
                .collect();
            if !bps.is_empty() {
                item.insert("blueprints".into(), Value::Array(bps));
            }
        }
        Value::Object(item)
    }

    pub(crate) fn delete_scope(
        &mut self,
        plugin: &str,
        connection_id: u64,
        scope_id: &str,
        data_only: bool,
    ) -> ApiResult<Map<String, Value>> {
        let row = self.scope(plugin, connection_id, scope_id)?.clone();
        if data_only {
            return Ok(row);
        }
        let using: Vec<&Blueprint> = self
            .blueprints
            .values()
            .filter(|bp| {
                bp.connections.iter().any(|c| {
                    c.plugin_name == plugin
                        && c.connection_id == connection_id
                        && c.scopes.iter().any(|s| s.scope_id == scope_id)
                })
            })
            .collect();
        if !using.is_empty() {
            let mut e = ApiError::new(
                409,
                "Cannot delete the scope because it is referenced by blueprints",
            );
            e.data = json!({
                "blueprints": using.iter().map(|b| b.name.clone()).collect::<Vec<_>>(),
                "projects": using.iter().map(|b| b.project_name.clone()).filter(|p| !p.is_empty()).collect::<Vec<_>>(),
            });
            return Err(e);
        }
        if self.pipelines.values().any(|p| p.status == "TASK_RUNNING") {
            return Err(ApiError::new(409, "at least one pipeline is running"));
        }
        self.connection_mut(plugin, connection_id)?
            .scopes
            .remove(scope_id);
        Ok(row)
    }

    // ---------------------------------------------------------------- scope configs

    pub(crate) fn create_scope_config(
        &mut self,
        plugin: &str,
        connection_id: u64,
        body: Value,
    ) -> ApiResult<Map<String, Value>> {
        self.connection(plugin, connection_id)?;
        let Value::Object(mut body) = body else {
            return Err(ApiError::bad("bad request body format"));
        };
        let name = body
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        if name.is_empty() {
            return Err(ApiError::bad("data verification failed: Name is required"));
        }
        // The name has a unique index on the plugin's table, i.e. across its connections.
        if self.scope_configs.iter().any(|((p, _), sc)| {
            p == plugin && sc.get("name").and_then(Value::as_str) == Some(&name)
        }) {
            return Err(ApiError::new(
                500,
                "The name of the current scope config is duplicated. Please modify it before saving.",
            ));
        }
        let next = self
            .next_scope_config_id
            .entry(plugin.to_string())
            .or_insert(1);
        let id = match body.get("id").and_then(Value::as_u64) {
            Some(id) if id > 0 && !self.scope_configs.contains_key(&(plugin.to_string(), id)) => id,
            _ => *next,
        };
        let next = self
            .next_scope_config_id
            .entry(plugin.to_string())
            .or_insert(1);
        *next = (*next).max(id + 1);
        let t = super::time::go_time(&self.now());
        body.insert("id".into(), json!(id));
        body.insert("connectionId".into(), json!(connection_id));
        body.insert("createdAt".into(), json!(t));
        body.insert("updatedAt".into(), json!(t));
        body.entry("entities").or_insert(json!([]));
        self.scope_configs
            .insert((plugin.to_string(), id), body.clone());
        Ok(body)
    }

    pub(crate) fn scope_config(
        &self,
        plugin: &str,
        connection_id: u64,
        id: u64,
    ) -> ApiResult<&Map<String, Value>> {
        self.connection(plugin, connection_id)?;
        self.scope_configs
            .get(&(plugin.to_string(), id))
            .filter(|sc| sc.get("connectionId").and_then(Value::as_u64) == Some(connection_id))
            .ok_or_else(|| ApiError::not_found("record not found"))
    }

    pub(crate) fn list_scope_configs(
        &self,
        plugin: &str,
        connection_id: u64,
    ) -> ApiResult<Vec<&Map<String, Value>>> {
        self.connection(plugin, connection_id)?;
        Ok(self
            .scope_configs
            .range((plugin.to_string(), 0)..=(plugin.to_string(), u64::MAX))
            .rev()
            .map(|(_, sc)| sc)
            .filter(|sc| sc.get("connectionId").and_then(Value::as_u64) == Some(connection_id))
            .collect())
    }

    pub(crate) fn patch_scope_config(
        &mut self,
        plugin: &str,
        connection_id: u64,
        id: u64,
        patch: Value,
    ) -> ApiResult<Map<String, Value>> {
        let mut sc = self.scope_config(plugin, connection_id, id)?.clone();
        let Value::Object(patch) = patch else {
            return Err(ApiError::bad("bad request body format"));
        };
        for (k, v) in patch {
            if matches!(k.as_str(), "id" | "createdAt") {
                continue;
            }
            if k == "name" {
                let new = v.as_str().unwrap_or("");
                if self.scope_configs.iter().any(|((p, oid), o)| {
                    p == plugin && *oid != id && o.get("name").and_then(Value::as_str) == Some(new)
                }) {
                    return Err(ApiError::new(
                        500,
                        "The name of the current scope config is duplicated. Please modify it before saving.",
                    ));
                }
            }
            sc.insert(k, v);
        }
        sc.insert("connectionId".into(), json!(connection_id));
        sc.insert("updatedAt".into(), json!(super::time::go_time(&self.now())));
        self.scope_configs
            .insert((plugin.to_string(), id), sc.clone());
        Ok(sc)
    }

    // ---------------------------------------------------------------- projects

    pub(crate) fn blueprint_of_project(&self, project: &str) -> Option<&Blueprint> {
        self.blueprint_by_project
            .get(project)
            .and_then(|id| self.blueprints.get(id))
    }

    /// Keeps the project → blueprint index in step with a blueprint's `projectName`.
    fn reindex_blueprint(&mut self, id: u64, old_project: &str, new_project: &str) {
        if old_project == new_project {
            return;
        }
        if self.blueprint_by_project.get(old_project) == Some(&id) {
            self.blueprint_by_project.remove(old_project);
        }
        if !new_project.is_empty() {
            self.blueprint_by_project
                .entry(new_project.to_string())
                .or_insert(id);
        }
    }

    pub(crate) fn project_json(&self, p: &Project, with_last_pipeline: bool) -> Value {
        let bp = self.blueprint_of_project(&p.name);
        let mut v = json!({
            "name": p.name,
            "description": p.description,
            "createdAt": super::time::go_time(&p.created_at),
            "updatedAt": super::time::go_time(&p.updated_at),
            "_raw_data_params": "",
            "_raw_data_table": "",
            "_raw_data_id": 0,
            "_raw_data_remark": "",
            "metrics": p.metrics,
            "blueprint": bp.map(|b| serde_json::to_value(b).unwrap_or(Value::Null)),
        });
        if with_last_pipeline {
            if let Some(last) = bp.and_then(|b| self.last_pipeline_of(b.id)) {
                v["lastPipeline"] = serde_json::to_value(last).unwrap_or(Value::Null);
            }
        }
        v
    }

    pub(crate) fn last_pipeline_of(&self, blueprint_id: u64) -> Option<&Pipeline> {
        let id = self.pipelines_by_blueprint.get(&blueprint_id)?.last()?;
        self.pipelines.get(id)
    }

    pub(crate) fn project(&self, name: &str) -> ApiResult<&Project> {
        self.projects
            .get(name)
            .ok_or_else(|| ApiError::not_found(format!("could not find project [{name}] in DB")))
    }

    /// `POST /projects` — creates the project and its default blueprint.
    pub(crate) fn create_project(&mut self, body: Value, at: DateTime<Utc>) -> ApiResult<String> {
        let Value::Object(body) = body else {
            return Err(ApiError::bad("bad request body format"));
        };
        let name = match body.get("name") {
            Some(Value::String(s)) if !s.is_empty() => s.clone(),
            None | Some(Value::Null) | Some(Value::String(_)) => {
                return Err(ApiError::bad(
                    "data verification failed: Key: 'ApiInputProject.Name' Error:Field validation for 'Name' failed on the 'required' tag",
                ))
            }
            Some(_) => return Err(ApiError::bad("bad request body format")),
        };
        if name.chars().count() > 100 {
            return Err(ApiError::bad("Project name is too long."));
        }
        if self.projects.contains_key(&name) {
            return Err(ApiError::bad(format!(
                "A project with name [{name}] already exists"
            )));
        }
        let description = body
            .get("description")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let metrics = match body.get("metrics") {
            Some(Value::Array(a)) if !a.is_empty() => Value::Array(a.clone()),
            _ => Value::Null,
        };
        let seq = self.next_project_seq;
        self.next_project_seq += 1;
        self.projects.insert(
            name.clone(),
            Project {
                name: name.clone(),
                description,
                created_at: at,
                updated_at: at,
                metrics,
                seq,
            },
        );
        let id = self.next_blueprint_id;
        self.next_blueprint_id += 1;
        let bp = match body.get("blueprint") {
            // Inserted as-is: no validation, projectName not filled, connections not persisted
            // (apache/devlake#7650).
            Some(Value::Object(given)) => {
                let mut bp = self.blank_blueprint(id, at, String::new());
                let mut given = given.clone();
                given.retain(|k, _| {
                    !k.eq_ignore_ascii_case("connections") && !k.eq_ignore_ascii_case("id")
                });
                apply_blueprint_patch(&mut bp, &given, true)?;
                bp
            }
            _ => {
                let mut bp = self.blank_blueprint(id, at, name.clone());
                bp.name = format!("{name}-Blueprint");
                bp.time_after = Some(six_months_before_midnight(at));
                bp
            }
        };
        let project = bp.project_name.clone();
        self.blueprints.insert(id, bp);
        self.reindex_blueprint(id, "", &project);
        Ok(name)
    }

    fn blank_blueprint(&self, id: u64, at: DateTime<Utc>, project: String) -> Blueprint {
        Blueprint {
            id,
            created_at: at,
            updated_at: at,
            name: String::new(),
            project_name: project,
            mode: "NORMAL".into(),
            plan: Shared(Arc::new(json!([]))),
            enable: true,
            cron_config: "0 0 * * *".into(),
            is_manual: false,
            before_plan: Value::Null,
            after_plan: Value::Null,
            labels: Vec::new(),
            connections: Vec::new(),
            priority: 0,
            skip_on_fail: false,
            time_after: None,
            skip_collectors: false,
            full_sync: false,
        }
    }

    pub(crate) fn patch_project(&mut self, name: &str, body: Value) -> ApiResult<String> {
        let Value::Object(body) = body else {
            return Err(ApiError::bad("bad request body format"));
        };
        let mut p = self.project(name)?.clone();
        let new_name = match body.get("name").and_then(Value::as_str) {
            Some(n) if !n.is_empty() && n != name => {
                if n.chars().count() > 100 {
                    return Err(ApiError::bad("Project name is too long."));
                }
                if self.projects.contains_key(n) {
                    return Err(ApiError::bad(format!(
                        "A project with name [{n}] already exists"
                    )));
                }
                Some(n.to_string())
            }
            _ => None,
        };
        if let Some(d) = body.get("description").and_then(Value::as_str) {
            p.description = d.to_string();
        }
        if let Some(Value::Array(m)) = body.get("metrics") {
            if !m.is_empty() {
                p.metrics = Value::Array(m.clone());
            }
        }
        p.updated_at = self.now();
        if let Some(n) = new_name {
            // DevLake's `PatchProject` moves `project_name` of the blueprint (and the metric
            // settings, mappings…) to the new name in one column update each, which stamps
            // `updatedAt`; the blueprint's own `name` ("<old>-Blueprint") is left as it was.
            let t = self.now();
            self.projects.remove(name);
            if let Some(id) = self.blueprint_by_project.remove(name) {
                self.blueprint_by_project.insert(n.clone(), id);
            }
            for bp in self
                .blueprints
                .values_mut()
                .filter(|b| b.project_name == name)
            {
                bp.project_name = n.clone();
                bp.updated_at = t;
            }
            p.name = n;
        }
        let out = p.name.clone();
        self.projects.insert(out.clone(), p);
        Ok(out)
    }

    pub(crate) fn delete_project(&mut self, name: &str) -> ApiResult<()> {
        self.project(name)?;
        if let Some(bp) = self.blueprint_of_project(name) {
            let bp_id = bp.id;
            if self.has_unfinished_first_page(bp_id) {
                return Err(ApiError::new(500, "There are unfinished pipelines in the current project. It cannot be deleted at this time."));
            }
            self.blueprints.remove(&bp_id);
            self.blueprint_by_project.remove(name);
        }
        self.projects.remove(name);
        Ok(())
    }

    pub(crate) fn list_projects(&self, keyword: Option<&str>) -> Vec<&Project> {
        let kw = keyword.map(str::to_lowercase).filter(|k| !k.is_empty());
        let mut v: Vec<&Project> = self
            .projects
            .values()
            .filter(|p| {
                kw.as_ref()
                    .is_none_or(|k| p.name.to_lowercase().contains(k))
            })
            .collect();
        v.sort_by_key(|p| std::cmp::Reverse((p.created_at, p.seq)));
        v
    }

    // ---------------------------------------------------------------- blueprints

    pub(crate) fn blueprint(&self, id: u64) -> ApiResult<&Blueprint> {
        self.blueprints
            .get(&id)
            .ok_or_else(|| ApiError::not_found("blueprint not found"))
    }

    /// `PATCH /blueprints/{id}`: keys present change (case-insensitive), arrays replaced
    /// wholesale, then the whole blueprint is re-validated and its plan regenerated.
    pub(crate) fn patch_blueprint(&mut self, id: u64, patch: Value) -> ApiResult<&Blueprint> {
        let Value::Object(patch) = patch else {
            return Err(ApiError::bad("bad request body format"));
        };
        let mut bp = self.blueprint(id)?.clone();
        apply_blueprint_patch(&mut bp, &patch, false)?;
        self.validate_and_plan(&mut bp)?;
        bp.updated_at = self.now();
        let old_project = self.blueprints[&id].project_name.clone();
        let new_project = bp.project_name.clone();
        self.blueprints.insert(id, bp);
        self.reindex_blueprint(id, &old_project, &new_project);
        Ok(&self.blueprints[&id])
    }

    /// `POST /blueprints` — validated like PATCH, plan generated for NORMAL mode.
    pub(crate) fn create_blueprint(&mut self, body: Value) -> ApiResult<u64> {
        let Value::Object(body) = body else {
            return Err(ApiError::bad("bad request body format"));
        };
        let id = self.next_blueprint_id;
        let mut bp = self.blank_blueprint(id, self.now(), String::new());
        bp.mode = String::new();
        apply_blueprint_patch(&mut bp, &body, true)?;
        if bp.mode.is_empty() {
            return Err(ApiError::bad("mode is required"));
        }
        self.validate_and_plan(&mut bp)?;
        self.next_blueprint_id += 1;
        let project = bp.project_name.clone();
        self.blueprints.insert(id, bp);
        self.reindex_blueprint(id, "", &project);
        Ok(id)
    }

    /// `DELETE /blueprints/{id}` — refused while a pipeline of it is unfinished.
    pub(crate) fn delete_blueprint(&mut self, id: u64) -> ApiResult<()> {
        let project = self.blueprint(id)?.project_name.clone();
        if self.has_pending(id) {
            return Err(ApiError::new(500, "There are unfinished pipelines in the current project. It cannot be deleted at this time."));
        }
        self.blueprints.remove(&id);
        self.reindex_blueprint(id, &project, "");
        Ok(())
    }

    /// `POST /pipelines` — an ad-hoc pipeline (blueprintId 0) from a caller-supplied plan.
    pub(crate) fn create_adhoc_pipeline(&mut self, body: Value) -> ApiResult<u64> {
        let bad = || ApiError::bad("bad request body format");
        let name = body
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let plan = body.get("plan").cloned().unwrap_or(Value::Null);
        let labels = match body.get("labels") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(a)) => a
                .iter()
                .map(|l| l.as_str().map(str::to_string).ok_or_else(bad))
                .collect::<ApiResult<_>>()?,
            Some(_) => return Err(bad()),
        };
        let total = count_tasks(&plan);
        if total == 0 {
            return Err(ApiError::bad("no task to run"));
        }
        let t = self.now();
        let p = Pipeline {
            id: self.next_pipeline_id,
            created_at: t,
            updated_at: t,
            name: Arc::from(name.as_str()),
            blueprint_id: 0,
            plan: Shared(Arc::new(plan)),
            total_tasks: total,
            finished_tasks: 0,
            began_at: None,
            finished_at: None,
            status: "TASK_CREATED",
            message: String::new(),
            error_name: String::new(),
            spent_seconds: 0,
            stage: 0,
            labels,
            priority: body.get("priority").and_then(Value::as_i64).unwrap_or(0),
            skip_on_fail: false,
            time_after: None,
            skip_collectors: false,
            full_sync: false,
        };
        Ok(self.insert_pipeline(p))
    }

    fn validate_and_plan(&self, bp: &mut Blueprint) -> ApiResult<()> {
        let invalid = |m: String| ApiError::bad(m);
        if bp.name.is_empty() {
            return Err(invalid("name is required".into()));
        }
        if !bp.project_name.is_empty() {
            if !self.projects.contains_key(&bp.project_name) {
                return Err(invalid(format!(
                    "could not find project [{}] in DB",
                    bp.project_name
                )));
            }
            if self
                .blueprint_by_project
                .get(&bp.project_name)
                .is_some_and(|&other| other != bp.id)
            {
                return Err(invalid(format!(
                    "Each project can only be associated with one blueprint, project [{}] already has one",
                    bp.project_name
                )));
            }
        }
        if bp.cron_config.eq_ignore_ascii_case("manual") {
            bp.is_manual = true;
        }
        if !bp.is_manual {
            super::cron::validate(&bp.cron_config)
                .map_err(|e| invalid(format!("invalid cronConfig: {e}")))?;
        }
        for c in &bp.connections {
            let conn = self
                .connections
                .get(&(c.plugin_name.clone(), c.connection_id))
                .ok_or_else(|| {
                    invalid(format!(
                        "connection {} of plugin {} not found",
                        c.connection_id, c.plugin_name
                    ))
                })?;
            if c.scopes.is_empty() && !matches!(c.plugin_name.as_str(), "jenkins" | "webhook") {
                return Err(invalid(format!(
                    "no scope is selected for the connection {} of plugin {}",
                    c.connection_id, c.plugin_name
                )));
            }
            for s in &c.scopes {
                if conn.scopes.get(&s.scope_id).is_none() {
                    return Err(invalid(format!(
                        "failed to find scope {} of connection {} of plugin {}: record not found",
                        s.scope_id, c.connection_id, c.plugin_name
                    )));
                }
            }
        }
        match bp.mode.as_str() {
            "NORMAL" => bp.plan = Shared(Arc::new(self.make_plan(bp))),
            "ADVANCED" => {
                if !bp.plan.0.as_array().is_some_and(|a| {
                    a.iter()
                        .any(|s| s.as_array().is_some_and(|s| !s.is_empty()))
                }) {
                    return Err(invalid("invalid plan".into()));
                }
            }
            m => return Err(invalid(format!("invalid mode: {m}"))),
        }
        Ok(())
    }

    /// A small NORMAL-mode plan: one collection task per scope, then dora if the project has it.
    fn make_plan(&self, bp: &Blueprint) -> Value {
        let mut collect = Vec::new();
        for c in &bp.connections {
            for s in &c.scopes {
                let mut options = Map::new();
                options.insert("connectionId".into(), json!(c.connection_id));
                let field = plugins::id_field(&c.plugin_name);
                let id_val = if plugins::id_is_int(&c.plugin_name) {
                    s.scope_id
                        .parse::<u64>()
                        .map(Value::from)
                        .unwrap_or(json!(s.scope_id))
                } else {
                    json!(s.scope_id)
                };
                options.insert(field.into(), id_val);
                collect
                    .push(json!({"plugin": c.plugin_name, "subtasks": null, "options": options}));
            }
        }
        if collect.is_empty() {
            return json!([]);
        }
        let mut stages = Vec::new();
        if !bp.project_name.is_empty() {
            stages.push(json!([{"plugin": "org", "subtasks": ["setProjectMapping"], "options": {"projectName": bp.project_name}}]));
        }
        stages.push(Value::Array(collect));
        let dora = self.projects.get(&bp.project_name).is_some_and(|p| {
            p.metrics.as_array().is_some_and(|m| {
                m.iter().any(|x| {
                    x.get("pluginName").and_then(Value::as_str) == Some("dora")
                        && x.get("enable").and_then(Value::as_bool) != Some(false)
                })
            })
        });
        if dora {
            stages.push(json!([{"plugin": "dora", "subtasks": null, "options": {"projectName": bp.project_name}}]));
        }
        Value::Array(stages)
    }

    pub(crate) fn list_blueprints(&self, f: &BlueprintFilter) -> ApiResult<Vec<&Blueprint>> {
        let kind = match (&f.is_manual, f.kind.as_deref().map(str::to_uppercase)) {
            (None, Some(k)) if k != "ALL" && !k.is_empty() => {
                if !matches!(
                    k.as_str(),
                    "MANUAL" | "DAILY" | "WEEKLY" | "MONTHLY" | "CUSTOM"
                ) {
                    return Err(ApiError::bad(format!("invalid type: {k}")));
                }
                Some(k)
            }
            _ => None,
        };
        Ok(self
            .blueprints
            .values()
            .rev()
            .filter(|b| f.enable.is_none_or(|e| b.enable == e))
            .filter(|b| f.is_manual.is_none_or(|m| b.is_manual == m))
            .filter(|b| f.label.as_ref().is_none_or(|l| b.labels.contains(l)))
            .filter(|b| match kind.as_deref() {
                None => true,
                Some("MANUAL") => b.is_manual,
                Some("DAILY") => !b.is_manual && b.cron_config == "0 0 * * *",
                Some("WEEKLY") => !b.is_manual && b.cron_config == "0 0 * * 1",
                Some("MONTHLY") => !b.is_manual && b.cron_config == "0 0 1 * *",
                Some(_) => {
                    !b.is_manual
                        && !["0 0 * * *", "0 0 * * 1", "0 0 1 * *"]
                            .contains(&b.cron_config.as_str())
                }
            })
            .collect())
    }

    /// DevLake's `thereAreUnfinishedPipelinesUnderBlueprint` (guards project deletion): any of the
    /// blueprint's first page of pipelines (50, newest first) not in a finished status, whatever
    /// its `finishedAt` (a re-run or resumed pipeline counts).
    pub(crate) fn has_unfinished_first_page(&self, blueprint_id: u64) -> bool {
        self.pipelines_by_blueprint
            .get(&blueprint_id)
            .is_some_and(|ids| {
                ids.iter()
                    .rev()
                    .take(50)
                    .any(|id| !FINISHED.contains(&self.pipelines[id].status))
            })
    }

    pub(crate) fn has_pending(&self, blueprint_id: u64) -> bool {
        self.pipelines_by_blueprint
            .get(&blueprint_id)
            .is_some_and(|ids| ids.iter().rev().any(|id| self.pipelines[id].is_pending()))
    }

    /// `POST /blueprints/{id}/trigger`.
    pub(crate) fn trigger(
        &mut self,
        id: u64,
        skip_collectors: bool,
        full_sync: bool,
    ) -> ApiResult<u64> {
        let bp = self.blueprint(id)?;
        if !bp.enable {
            return Err(ApiError::bad("blueprint is not enabled"));
        }
        if self.has_pending(id) {
            return Err(ApiError::bad(
                "there are pending pipelines of current blueprint already",
            ));
        }
        let total = count_tasks(&bp.plan.0);
        if total == 0 {
            return Err(ApiError::bad("no task to run"));
        }
        let t = self.now();
        let p = Pipeline {
            id: self.next_pipeline_id,
            created_at: t,
            updated_at: t,
            name: Arc::from(bp.name.as_str()),
            blueprint_id: id,
            plan: bp.plan.clone(),
            total_tasks: total,
            finished_tasks: 0,
            began_at: None,
            finished_at: None,
            status: "TASK_CREATED",
            message: String::new(),
            error_name: String::new(),
            spent_seconds: 0,
            stage: 0,
            labels: bp.labels.clone(),
            priority: bp.priority,
            skip_on_fail: bp.skip_on_fail,
            time_after: bp.time_after,
            skip_collectors,
            full_sync,
        };
        Ok(self.insert_pipeline(p))
    }

    // ---------------------------------------------------------------- pipelines

    fn insert_pipeline(&mut self, mut p: Pipeline) -> u64 {
        let id = self.next_pipeline_id.max(p.id);
        p.id = id;
        self.next_pipeline_id = id + 1;
        if p.blueprint_id != 0 {
            self.pipelines_by_blueprint
                .entry(p.blueprint_id)
                .or_default()
                .insert(id);
        }
        self.pipelines.insert(id, p);
        id
    }

    /// Seeds a pipeline row directly (no validation beyond known statuses).
    pub(crate) fn seed_pipeline(
        &mut self,
        seed: PipelineSeed,
        plan_cache: &mut HashMap<u64, (Arc<str>, Shared, i64)>,
    ) -> ApiResult<u64> {
        let status = status_const(&seed.status)
            .ok_or_else(|| ApiError::bad(format!("unknown status {}", seed.status)))?;
        let (name, plan, total) = if seed.blueprint_id == 0 {
            (Arc::from("pipeline"), self.default_plan.clone(), 1)
        } else {
            match plan_cache.get(&seed.blueprint_id) {
                Some(c) => c.clone(),
                None => {
                    let bp = self.blueprint(seed.blueprint_id)?;
                    let (plan, total) = match count_tasks(&bp.plan.0) {
                        0 => (self.default_plan.clone(), 1),
                        n => (bp.plan.clone(), n),
                    };
                    let entry = (Arc::<str>::from(bp.name.as_str()), plan, total);
                    plan_cache.insert(seed.blueprint_id, entry.clone());
                    entry
                }
            }
        };
        let created = seed.created_at.unwrap_or_else(|| self.now());
        let finished = FINISHED.contains(&status);
        let began = seed.began_at.or(match status {
            "TASK_CREATED" => None,
            _ => Some(created + chrono::Duration::seconds(1)),
        });
        let finished_at = seed
            .finished_at
            .or_else(|| finished.then(|| began.unwrap_or(created) + chrono::Duration::seconds(60)));
        let bp = self.blueprints.get(&seed.blueprint_id);
        let p = Pipeline {
            id: self.next_pipeline_id,
            created_at: created,
            updated_at: finished_at.or(began).unwrap_or(created),
            name: seed.name.map(Arc::from).unwrap_or(name),
            blueprint_id: seed.blueprint_id,
            plan,
            total_tasks: total,
            finished_tasks: if finished { total } else { 0 },
            began_at: began,
            finished_at,
            status,
            message: seed.message,
            error_name: seed.error_name,
            spent_seconds: match (began, finished_at) {
                (Some(b), Some(f)) => (f - b).num_seconds(),
                _ => 0,
            },
            stage: if began.is_some() { 1 } else { 0 },
            labels: if seed.labels.is_empty() {
                bp.map(|b| b.labels.clone()).unwrap_or_default()
            } else {
                seed.labels
            },
            priority: bp.map(|b| b.priority).unwrap_or(0),
            skip_on_fail: bp.is_some_and(|b| b.skip_on_fail),
            time_after: bp.and_then(|b| b.time_after),
            skip_collectors: false,
            full_sync: false,
        };
        Ok(self.insert_pipeline(p))
    }

    pub(crate) fn pipeline(&self, id: u64) -> ApiResult<&Pipeline> {
        self.pipelines
            .get(&id)
            .ok_or_else(|| ApiError::not_found("pipeline not found"))
    }

    /// Matching pipelines newest first: (count, the requested page).
    pub(crate) fn list_pipelines(
        &self,
        f: &PipelineFilter,
        page: usize,
        page_size: usize,
    ) -> (usize, Vec<&Pipeline>) {
        let matches = |p: &&Pipeline| {
            f.status.as_ref().is_none_or(|s| p.status == s.as_str())
                && (!f.pending || p.is_pending())
                && f.label.as_ref().is_none_or(|l| p.labels.contains(l))
        };
        let skip = (page.max(1) - 1) * page_size;
        let candidates: Box<dyn Iterator<Item = &Pipeline>> = match f.blueprint_id {
            Some(bp) => Box::new(
                self.pipelines_by_blueprint
                    .get(&bp)
                    .into_iter()
                    .flat_map(|ids| ids.iter().rev())
                    .map(|id| &self.pipelines[id]),
            ),
            None if f.status.is_none() && !f.pending && f.label.is_none() => {
                // Unfiltered: the count is known, so only walk to the requested page.
                let page = self
                    .pipelines
                    .values()
                    .rev()
                    .skip(skip)
                    .take(page_size)
                    .collect();
                return (self.pipelines.len(), page);
            }
            None => Box::new(self.pipelines.values().rev()),
        };
        let mut count = 0usize;
        let mut out = Vec::with_capacity(page_size.min(1000));
        for p in candidates.filter(matches) {
            if count >= skip && out.len() < page_size {
                out.push(p);
            }
            count += 1;
        }
        (count, out)
    }

    fn ensure_tasks(&mut self, id: u64) {
        if self.tasks.contains_key(&id) {
            return;
        }
        let Some(p) = self.pipelines.get(&id) else {
            return;
        };
        let mut tasks = Vec::new();
        if let Some(stages) = p.plan.0.as_array() {
            for (row, stage) in stages.iter().enumerate() {
                for (col, t) in stage.as_array().into_iter().flatten().enumerate() {
                    tasks.push(Task {
                        id: self.next_task_id + tasks.len() as u64,
                        created_at: p.created_at,
                        updated_at: p.updated_at,
                        plugin: t
                            .get("plugin")
                            .and_then(Value::as_str)
                            .unwrap_or("")
                            .to_string(),
                        subtasks: t.get("subtasks").cloned().unwrap_or(Value::Null),
                        options: t.get("options").cloned().unwrap_or(json!({})),
                        status: "TASK_CREATED",
                        message: String::new(),
                        error_name: String::new(),
                        progress: 0.0,
                        progress_detail: Value::Null,
                        failed_sub_task: String::new(),
                        pipeline_id: id,
                        pipeline_row: row as i64 + 1,
                        pipeline_col: col as i64 + 1,
                        began_at: None,
                        finished_at: None,
                        spent_seconds: 0,
                    });
                }
            }
        }
        self.next_task_id += tasks.len() as u64;
        let status = p.status;
        let (began, finished, msg) = (p.began_at, p.finished_at, p.message.clone());
        apply_task_outcome(&mut tasks, status, began, finished, &msg);
        self.tasks.insert(id, tasks);
    }

    pub(crate) fn tasks(&mut self, id: u64) -> ApiResult<&Vec<Task>> {
        self.pipeline(id)?;
        self.ensure_tasks(id);
        Ok(&self.tasks[&id])
    }

    /// `POST /pipelines/{id}/rerun`, as DevLake's `RerunPipeline`: refused while the pipeline
    /// runs or waits (`TASK_RUNNING`, `TASK_CREATED`, `TASK_RERUN`; `TASK_RESUME` is not checked),
    /// new task rows for every task whose latest attempt did not complete, and one column update
    /// of the pipeline: `status = TASK_RERUN`. `beganAt` and `finishedAt` keep the previous
    /// run's values (so the pipeline is not "pending", whose query wants `finished_at IS NULL`);
    /// the update goes through gorm's `Update`, which stamps `updatedAt`.
    pub(crate) fn rerun(&mut self, id: u64) -> ApiResult<Vec<Task>> {
        let p = self.pipeline(id)?;
        match p.status {
            "TASK_RUNNING" => return Err(ApiError::bad("pipeline is running")),
            "TASK_CREATED" | "TASK_RERUN" => {
                return Err(ApiError::bad("pipeline is waiting to run"))
            }
            _ => {}
        }
        self.ensure_tasks(id);
        let t = self.now();
        let mut next_task_id = self.next_task_id;
        let tasks = self.tasks.get_mut(&id).expect("ensured");
        let mut new_tasks = Vec::new();
        for task in tasks.iter_mut().filter(|t| t.status != "TASK_COMPLETED") {
            task.id = next_task_id;
            next_task_id += 1;
            task.status = "TASK_CREATED";
            task.created_at = t;
            task.updated_at = t;
            task.message.clear();
            task.error_name.clear();
            task.failed_sub_task.clear();
            task.began_at = None;
            task.finished_at = None;
            task.spent_seconds = 0;
            task.progress = 0.0;
            new_tasks.push(task.clone());
        }
        self.next_task_id = next_task_id;
        if new_tasks.is_empty() {
            return Err(ApiError::bad("no tasks to be re-ran"));
        }
        let p = self.pipelines.get_mut(&id).expect("checked");
        p.status = "TASK_RERUN";
        p.updated_at = t;
        Ok(new_tasks)
    }

    /// `DELETE /pipelines/{id}`, as DevLake's `CancelPipeline`. A queued pipeline
    /// (`TASK_CREATED`/`TASK_RERUN`) is saved as `TASK_CANCELLED` at once, no timestamp touched
    /// but `updatedAt` (gorm `Save`): never started, it has no `beganAt`/`finishedAt`; a queued
    /// re-run keeps its previous run's. A running pipeline has its tasks cancelled and
    /// `runPipeline` then ends it as `TASK_CANCELLED` with a new `finishedAt`; the simulator
    /// collapses that into this call. A `TASK_RESUME` pipeline only has its pending tasks
    /// cancelled (`cancelPendingTasksInDB`): its row is not changed here. Finished: no-op.
    pub(crate) fn cancel(&mut self, id: u64) -> ApiResult<()> {
        let t = self.now();
        let p = self
            .pipelines
            .get_mut(&id)
            .ok_or_else(|| ApiError::bad("pipeline not found"))?;
        match p.status {
            "TASK_CREATED" | "TASK_RERUN" => {
                p.status = "TASK_CANCELLED";
                p.updated_at = t;
                let end = PipelineEnd {
                    pipeline_id: id,
                    blueprint_id: p.blueprint_id,
                    status: p.status.to_string(),
                    at: t,
                };
                self.ends.push(end);
                if let Some(tasks) = self.tasks.get_mut(&id) {
                    for task in tasks.iter_mut() {
                        task.status = "TASK_CANCELLED";
                    }
                }
                Ok(())
            }
            "TASK_RUNNING" => self.finish(id, "TASK_CANCELLED", ""),
            "TASK_RESUME" => {
                if let Some(tasks) = self.tasks.get_mut(&id) {
                    for task in tasks.iter_mut().filter(|t| t.status == "TASK_RESUME") {
                        task.status = "TASK_CANCELLED";
                    }
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// The runner picking a queued pipeline, as DevLake's `dequeuePipeline`: only
    /// `TASK_CREATED`, `TASK_RERUN` and `TASK_RESUME` are dequeued; `status = TASK_RUNNING`,
    /// `message` cleared, `beganAt` set only when it is null (a re-run or a resumed pipeline
    /// keeps its first start); `finishedAt` is not touched (a re-run runs with the old one).
    pub(crate) fn start(&mut self, id: u64) -> ApiResult<()> {
        let t = self.now();
        let p = self
            .pipelines
            .get_mut(&id)
            .ok_or_else(|| ApiError::not_found("pipeline not found"))?;
        match p.status {
            "TASK_CREATED" | "TASK_RERUN" | "TASK_RESUME" => {}
            "TASK_RUNNING" => return Ok(()),
            _ => return Err(ApiError::bad("pipeline already finished")),
        }
        p.status = "TASK_RUNNING";
        p.message.clear();
        p.began_at.get_or_insert(t);
        p.updated_at = t;
        p.stage = p.stage.max(1);
        let began = p.began_at;
        if let Some(tasks) = self.tasks.get_mut(&id) {
            apply_task_outcome(tasks, "TASK_RUNNING", began, None, "");
        }
        Ok(())
    }

    /// A restart of DevLake, as `pipelineServiceInit` → `markInterruptedPipelineAs`: every
    /// `TASK_RUNNING` pipeline (and task) becomes `TASK_RESUME` (`RESUME_PIPELINES=true`, the
    /// default) or `TASK_FAILED` (`false`) in one column update (gorm `Updates`, which stamps
    /// `updatedAt`). `finishedAt` is left as it was: null on a first run, the previous run's on
    /// a re-run. Returns the ids changed.
    pub(crate) fn restart(&mut self, resume_pipelines: bool) -> Vec<u64> {
        let status = if resume_pipelines {
            "TASK_RESUME"
        } else {
            "TASK_FAILED"
        };
        let t = self.now();
        let mut changed = Vec::new();
        for p in self
            .pipelines
            .values_mut()
            .filter(|p| p.status == "TASK_RUNNING")
        {
            p.status = status;
            p.updated_at = t;
            changed.push(p.id);
            if !resume_pipelines {
                self.ends.push(PipelineEnd {
                    pipeline_id: p.id,
                    blueprint_id: p.blueprint_id,
                    status: status.to_string(),
                    at: t,
                });
            }
        }
        for id in &changed {
            if let Some(tasks) = self.tasks.get_mut(id) {
                for task in tasks.iter_mut().filter(|t| t.status == "TASK_RUNNING") {
                    task.status = status;
                }
            }
        }
        changed
    }

    /// Finishes a pipeline with a final status (what DevLake's runner would do).
    pub(crate) fn finish(&mut self, id: u64, status: &str, message: &str) -> ApiResult<()> {
        let status = status_const(status)
            .filter(|s| FINISHED.contains(s))
            .ok_or_else(|| ApiError::bad(format!("not a finished status: {status}")))?;
        let t = self.now();
        let p = self
            .pipelines
            .get_mut(&id)
            .ok_or_else(|| ApiError::not_found("pipeline not found"))?;
        let began = *p.began_at.get_or_insert(t);
        p.status = status;
        p.finished_at = Some(t);
        p.updated_at = t;
        p.spent_seconds = (t - began).num_seconds();
        p.finished_tasks = p.total_tasks;
        p.stage = p
            .plan
            .0
            .as_array()
            .map(|a| a.len() as i64)
            .unwrap_or(1)
            .max(1);
        if status == "TASK_COMPLETED" {
            p.message.clear();
            p.error_name.clear();
        } else {
            p.message = message.to_string();
            p.error_name = if message.is_empty() {
                String::new()
            } else {
                format!("{message}\n\tcaused by: subtask failed")
            };
        }
        let msg = p.message.clone();
        let blueprint_id = p.blueprint_id;
        if let Some(tasks) = self.tasks.get_mut(&id) {
            apply_task_outcome(tasks, status, Some(began), Some(t), &msg);
        }
        self.ends.push(PipelineEnd {
            pipeline_id: id,
            blueprint_id,
            status: status.to_string(),
            at: t,
        });
        Ok(())
    }

    /// Ids of pipelines in a status the runner still has to end (queued, re-run, resumed or
    /// running), whatever their `finishedAt`.
    pub(crate) fn unfinished_ids(&self) -> Vec<u64> {
        self.pipelines
            .values()
            .filter(|p| !FINISHED.contains(&p.status))
            .map(|p| p.id)
            .collect()
    }

    pub(crate) fn pending_ids(&self) -> Vec<u64> {
        self.pipelines
            .values()
            .filter(|p| p.is_pending())
            .map(|p| p.id)
            .collect()
    }
}

fn connection_not_found(plugin: &str) -> ApiError {
    ApiError::not_found(format!(
        "*models.{} not found",
        plugins::connection_model(plugin)
    ))
}

pub(crate) fn count_tasks(plan: &Value) -> i64 {
    plan.as_array()
        .map(|stages| {
            stages
                .iter()
                .map(|s| s.as_array().map_or(0, |t| t.len() as i64))
                .sum()
        })
        .unwrap_or(0)
}

/// Midnight six months before `at` (the default `timeAfter` of a new project's blueprint).
pub(crate) fn six_months_before_midnight(at: DateTime<Utc>) -> DateTime<Utc> {
    let d = at
        .date_naive()
        .checked_sub_months(Months::new(6))
        .unwrap_or(at.date_naive());
    Utc.from_utc_datetime(&d.and_hms_opt(0, 0, 0).expect("midnight"))
}

fn apply_task_outcome(
    tasks: &mut [Task],
    status: &'static str,
    began: Option<DateTime<Utc>>,
    finished: Option<DateTime<Utc>>,
    message: &str,
) {
    let n = tasks.len();
    for (i, t) in tasks.iter_mut().enumerate() {
        let last = i + 1 == n;
        let s = match status {
            "TASK_COMPLETED" => "TASK_COMPLETED",
            "TASK_FAILED" if last => "TASK_FAILED",
            "TASK_FAILED" => "TASK_COMPLETED",
            "TASK_PARTIAL" if last && n > 1 => "TASK_FAILED",
            "TASK_PARTIAL" => "TASK_COMPLETED",
            "TASK_CANCELLED" => "TASK_CANCELLED",
            "TASK_RUNNING" if i == 0 => "TASK_RUNNING",
            _ => "TASK_CREATED",
        };
        // Don't touch tasks that already completed in an earlier attempt.
        if t.status == "TASK_COMPLETED" && s != "TASK_COMPLETED" && status != "TASK_CANCELLED" {
            continue;
        }
        t.status = s;
        if s == "TASK_FAILED" {
            t.message = message.to_string();
            t.error_name = message.to_string();
            t.failed_sub_task = "collectApiData".into();
        }
        if s != "TASK_CREATED" {
            t.began_at = began;
        }
        if matches!(s, "TASK_COMPLETED" | "TASK_FAILED" | "TASK_CANCELLED") {
            t.finished_at = finished;
            t.progress = 1.0;
            if let (Some(b), Some(f)) = (began, finished) {
                t.spent_seconds = (f - b).num_seconds();
            }
        }
    }
}

/// Applies a blueprint PATCH body (mapstructure: case-insensitive keys, weak typing).
pub(crate) fn apply_blueprint_patch(
    bp: &mut Blueprint,
    patch: &Map<String, Value>,
    allow_mode: bool,
) -> ApiResult<()> {
    let bad = |k: &str| ApiError::bad(format!("bad request body format: field {k}"));
    let as_bool = |k: &str, v: &Value| match v {
        Value::Bool(b) => Ok(*b),
        Value::Number(n) => Ok(n.as_i64() != Some(0)),
        Value::String(s) => s.parse::<bool>().map_err(|_| bad(k)),
        _ => Err(bad(k)),
    };
    let as_str = |k: &str, v: &Value| match v {
        Value::String(s) => Ok(s.clone()),
        Value::Null => Ok(String::new()),
        _ => Err(bad(k)),
    };
    for (key, v) in patch {
        match key.to_lowercase().as_str() {
            "name" => bp.name = as_str(key, v)?,
            "projectname" => bp.project_name = as_str(key, v)?,
            "mode" => {
                let m = as_str(key, v)?;
                if allow_mode {
                    bp.mode = m;
                } else if m != bp.mode {
                    return Err(ApiError::bad("mode is not updatable"));
                }
            }
            "plan" => bp.plan = Shared(Arc::new(v.clone())),
            "enable" => bp.enable = as_bool(key, v)?,
            "cronconfig" => bp.cron_config = as_str(key, v)?,
            "ismanual" => bp.is_manual = as_bool(key, v)?,
            "beforeplan" => bp.before_plan = v.clone(),
            "afterplan" => bp.after_plan = v.clone(),
            "labels" => {
                bp.labels = match v {
                    Value::Null => Vec::new(),
                    Value::Array(a) => a
                        .iter()
                        .map(|l| l.as_str().map(str::to_string).ok_or_else(|| bad(key)))
                        .collect::<ApiResult<_>>()?,
                    _ => return Err(bad(key)),
                }
            }
            "connections" => bp.connections = parse_connections(v)?,
            "priority" => bp.priority = v.as_i64().ok_or_else(|| bad(key))?,
            "skiponfail" => bp.skip_on_fail = as_bool(key, v)?,
            "skipcollectors" => bp.skip_collectors = as_bool(key, v)?,
            "fullsync" => bp.full_sync = as_bool(key, v)?,
            "timeafter" => {
                bp.time_after = match v {
                    Value::Null => None,
                    Value::String(s) if s.is_empty() => None,
                    Value::String(s) => {
                        let t = parse_time(s).ok_or_else(|| bad(key))?;
                        // A zero time becomes null.
                        (t.timestamp()
                            > Utc.with_ymd_and_hms(1, 1, 1, 0, 0, 0).unwrap().timestamp())
                        .then_some(t)
                    }
                    _ => return Err(bad(key)),
                }
            }
            _ => {}
        }
    }
    Ok(())
}

fn get_ci<'a>(m: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    m.iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(key))
        .map(|(_, v)| v)
}

fn parse_connections(v: &Value) -> ApiResult<Vec<BlueprintConnection>> {
    let bad = || ApiError::bad("bad request body format: connections");
    let arr = match v {
        Value::Null => return Ok(Vec::new()),
        Value::Array(a) => a,
        _ => return Err(bad()),
    };
    arr.iter()
        .map(|c| {
            let c = c.as_object().ok_or_else(bad)?;
            let plugin = get_ci(c, "pluginName")
                .and_then(Value::as_str)
                .ok_or_else(bad)?
                .to_string();
            let connection_id = match get_ci(c, "connectionId") {
                Some(Value::Number(n)) => n.as_u64().ok_or_else(bad)?,
                Some(Value::String(s)) => s.parse().map_err(|_| bad())?,
                _ => return Err(bad()),
            };
            let scopes = match get_ci(c, "scopes") {
                None | Some(Value::Null) => Vec::new(),
                Some(Value::Array(a)) => a
                    .iter()
                    .map(|s| {
                        let s = s.as_object().ok_or_else(bad)?;
                        let id = match get_ci(s, "scopeId") {
                            Some(Value::String(s)) => s.clone(),
                            Some(Value::Number(n)) => n.to_string(),
                            _ => return Err(bad()),
                        };
                        Ok(BlueprintScope { scope_id: id })
                    })
                    .collect::<ApiResult<_>>()?,
                _ => return Err(bad()),
            };
            Ok(BlueprintConnection {
                plugin_name: plugin,
                connection_id,
                scopes,
            })
        })
        .collect()
}

/// Helper used by fixtures: create a project and wire its blueprint in one step.
pub(crate) fn wire_blueprint(
    state: &mut State,
    project: &str,
    patch: Map<String, Value>,
) -> ApiResult<u64> {
    let id = state
        .blueprint_of_project(project)
        .map(|b| b.id)
        .ok_or_else(|| ApiError::not_found("blueprint not found"))?;
    if !patch.is_empty() {
        state.patch_blueprint(id, Value::Object(patch))?;
    }
    Ok(id)
}
