//! The simulator's in-memory DevLake database and DevLake's business rules (docs/devlake-api.md).
//!
//! Everything here is synchronous and runs under one mutex; HTTP handlers and the in-process
//! [`SimHandle`](super::SimHandle) both go through these methods so they enforce the same rules.
//!
//! This file holds the records, the [`State`] struct with its clock and id counters; the rules
//! of each DevLake resource live in the submodule named after the client file that calls them
//! (`connections` pairs with the client's `plugins`).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use chrono::{DateTime, Months, TimeZone, Utc};
use serde::{Serialize, Serializer};
use serde_json::{json, Map, Value};

use super::plugins;
use super::time::{parse_time, ser};

mod blueprints;
mod connection_test;
mod connections;
mod pipelines;
mod projects;
mod remote_scopes;
mod schedules;
mod scope_configs;
mod scopes;

pub(crate) use blueprints::{apply_blueprint_patch, six_months_before_midnight, wire_blueprint};
pub use connection_test::ConnectionTestMode;
pub(crate) use pipelines::count_tasks;
pub use schedules::CronFire;

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
    /// The token as created, before DevLake masks it in `body`: its test answers echo it
    /// sanitised, as DevLake does.
    pub secret: Option<String>,
    /// How the source tool behind it answers DevLake's connection test.
    pub test: ConnectionTestMode,
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
    /// DevLake's cron of blueprints (see `schedules`).
    pub(crate) cron: schedules::CronState,
    /// Running pipelines a cancel does not stop (see `cancel`).
    pub(crate) uncancellable: BTreeSet<u64>,
    /// `NOTIFICATION_ENDPOINT` and `NOTIFICATION_SECRET` while set (see `sim::notify`).
    pub(crate) notifier: Option<super::notify::Notifier>,
    /// `_devlake_notifications`, oldest first (id = index + 1).
    pub notifications: Vec<super::notify::NotificationRow>,
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
            cron: Default::default(),
            uncancellable: BTreeSet::new(),
            notifier: None,
            notifications: Vec::new(),
            default_plan: Shared(Arc::new(json!([[{
                "plugin": "github",
                "subtasks": null,
                "options": {}
            }]]))),
        }
    }
}
