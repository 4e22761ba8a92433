//! DevLake REST API payloads, with DevLake's exact JSON field names (docs/devlake-api.md).
//!
//! Everything the tool only passes through (scope rows, scope-config bodies, plans) stays a
//! `serde_json::Value` so plugin-specific fields round-trip unchanged. Unknown fields are ignored
//! everywhere; list fields DevLake may send as `null` deserialize as empty.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};

/// The plugins this tool manages, in the order runs and reports use.
pub const SUPPORTED_PLUGINS: [&str; 9] = [
    "github",
    "gitlab",
    "bitbucket",
    "bitbucket_server",
    "azuredevops_go",
    "jenkins",
    "circleci",
    "bamboo",
    "jira",
];

/// The JSON field that holds a scope's id in each plugin's scope object (docs/devlake-api.md).
pub fn scope_id_field(plugin: &str) -> Option<&'static str> {
    Some(match plugin {
        "github" => "githubId",
        "gitlab" => "gitlabId",
        "bitbucket" => "bitbucketId",
        // `<PROJECT KEY>/repos/<slug>`; the remote listing's entry id is the numeric repository id.
        "bitbucket_server" => "bitbucketId",
        "azuredevops_go" => "id",
        "jenkins" => "fullName",
        "circleci" => "id",
        "bamboo" => "planKey",
        "jira" => "boardId",
        _ => return None,
    })
}

fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// One entry of `GET /plugins`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
pub struct PluginInfo {
    pub plugin: String,
}

/// A plugin connection (`GET /plugins/{p}/connections`). Only what the tool needs; secrets are
/// never read.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Connection {
    pub id: u64,
    pub name: String,
    #[serde(default)]
    pub endpoint: Option<String>,
}

/// `GET /version`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
pub struct Version {
    pub version: String,
}

/// A child of `GET .../remote-scopes`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RemoteScopeChild {
    /// `"group"` or `"scope"`.
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub parent_id: Option<String>,
    pub id: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub full_name: String,
    /// For scopes: the scope object, ready to PUT back. `null` for groups.
    #[serde(default)]
    pub data: Option<Value>,
}

impl RemoteScopeChild {
    pub fn is_group(&self) -> bool {
        self.kind == "group"
    }
    pub fn is_scope(&self) -> bool {
        self.kind == "scope"
    }
}

/// One page of `GET .../remote-scopes`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RemoteScopesPage {
    #[serde(default, deserialize_with = "null_as_default")]
    pub children: Vec<RemoteScopeChild>,
    /// `""` on the last page (never null in DevLake; tolerated anyway).
    #[serde(default, deserialize_with = "null_as_default")]
    pub next_page_token: String,
}

/// A scope row as DevLake stores it: common fields plus the plugin's own, kept verbatim.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(transparent)]
pub struct Scope(pub Value);

impl Scope {
    fn field(&self, name: &str) -> Option<&Value> {
        self.0.as_object().and_then(|o| o.get(name))
    }

    /// The plugin's `ScopeId()` string: the id field rendered as a string (numbers in decimal).
    pub fn scope_id(&self, plugin: &str) -> Option<String> {
        let v = self.field(scope_id_field(plugin)?)?;
        match v {
            Value::String(s) if !s.is_empty() => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        }
    }

    /// `scopeConfigId`, absent (omitempty) when the scope has none.
    pub fn scope_config_id(&self) -> Option<u64> {
        self.field("scopeConfigId")
            .and_then(Value::as_u64)
            .filter(|id| *id != 0)
    }

    pub fn name(&self) -> Option<&str> {
        self.field("name").and_then(Value::as_str)
    }

    /// The scope's full name where the plugin has one (`fullName`, GitLab's `pathWithNamespace`).
    pub fn full_name(&self) -> Option<&str> {
        self.field("fullName")
            .or_else(|| self.field("pathWithNamespace"))
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
    }
}

/// An item of `GET .../scopes` (`{"scope":{...},"scopeConfig":{...}?,"blueprints":[...]?}`).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ScopeListItem {
    pub scope: Scope,
    #[serde(default)]
    pub scope_config: Option<ScopeConfig>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub blueprints: Vec<Blueprint>,
}

/// One page of `GET .../scopes`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
pub struct ScopesPage {
    pub count: i64,
    #[serde(default, deserialize_with = "null_as_default")]
    pub scopes: Vec<ScopeListItem>,
}

/// A scope config. Plugin-specific fields are kept in `rest`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ScopeConfig {
    #[serde(default)]
    pub id: u64,
    pub name: String,
    #[serde(default)]
    pub connection_id: u64,
    #[serde(default, deserialize_with = "null_as_default")]
    pub entities: Vec<String>,
    #[serde(flatten)]
    pub rest: Map<String, Value>,
}

/// A project metric setting. `pluginOption` is a JSON object in v1.x and a string in v0.20/0.21.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ProjectMetric {
    pub plugin_name: String,
    #[serde(default)]
    pub plugin_option: Value,
    #[serde(default)]
    pub enable: bool,
}

/// A project as `GET /projects` and `GET /projects/{name}` return it.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Project {
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub metrics: Vec<ProjectMetric>,
    #[serde(default)]
    pub blueprint: Option<Blueprint>,
    /// Only in list responses; absent when the project never ran.
    #[serde(default)]
    pub last_pipeline: Option<Pipeline>,
}

/// Body of `POST /projects` (and of a partial `PATCH /projects/{name}`).
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ProjectInput {
    pub name: String,
    pub description: String,
    pub enable: bool,
    pub metrics: Vec<ProjectMetric>,
}

/// One page of `GET /projects`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
pub struct ProjectsPage {
    pub count: i64,
    #[serde(default, deserialize_with = "null_as_default")]
    pub projects: Vec<Project>,
}

/// `connections[].scopes[]` of a blueprint. `scopeId` is always a string.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[serde(rename_all = "camelCase")]
pub struct BlueprintScope {
    pub scope_id: String,
}

/// `connections[]` of a blueprint.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct BlueprintConnection {
    pub plugin_name: String,
    pub connection_id: u64,
    #[serde(default, deserialize_with = "null_as_default")]
    pub scopes: Vec<BlueprintScope>,
}

/// A blueprint. `plan` and friends are not needed by the tool and dropped.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Blueprint {
    pub id: u64,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub project_name: String,
    #[serde(default)]
    pub mode: String,
    #[serde(default)]
    pub enable: bool,
    #[serde(default)]
    pub cron_config: String,
    #[serde(default)]
    pub is_manual: bool,
    #[serde(default, deserialize_with = "null_as_default")]
    pub labels: Vec<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub connections: Vec<BlueprintConnection>,
    #[serde(default)]
    pub time_after: Option<DateTime<Utc>>,
    #[serde(default)]
    pub skip_on_fail: bool,
    #[serde(default)]
    pub priority: i64,
}

/// Body of `PATCH /blueprints/{id}`: only the keys present change; `connections` and `labels`
/// replace the stored lists wholesale, so always send them complete.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct BlueprintPatch {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connections: Option<Vec<BlueprintConnection>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub labels: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cron_config: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub is_manual: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enable: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub time_after: Option<DateTime<Utc>>,
}

impl BlueprintPatch {
    pub fn is_empty(&self) -> bool {
        *self == BlueprintPatch::default()
    }
}

/// Query of `GET /blueprints`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BlueprintQuery {
    pub enable: Option<bool>,
    pub is_manual: Option<bool>,
    pub label: Option<String>,
    /// `ALL`, `MANUAL`, `DAILY`, `WEEKLY`, `MONTHLY`, `CUSTOM`.
    pub kind: Option<String>,
}

/// One page of `GET /blueprints`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
pub struct BlueprintsPage {
    pub count: i64,
    #[serde(default, deserialize_with = "null_as_default")]
    pub blueprints: Vec<Blueprint>,
}

/// Body of `POST /blueprints/{id}/trigger`.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TriggerRequest {
    pub skip_collectors: bool,
    pub full_sync: bool,
}

/// Pipeline and task statuses (docs/devlake-api.md, Pipelines).
pub mod status {
    pub const CREATED: &str = "TASK_CREATED";
    pub const RERUN: &str = "TASK_RERUN";
    pub const RESUME: &str = "TASK_RESUME";
    pub const RUNNING: &str = "TASK_RUNNING";
    pub const COMPLETED: &str = "TASK_COMPLETED";
    pub const FAILED: &str = "TASK_FAILED";
    pub const CANCELLED: &str = "TASK_CANCELLED";
    pub const PARTIAL: &str = "TASK_PARTIAL";

    /// Statuses of a pipeline that has ended.
    pub fn is_finished(status: &str) -> bool {
        matches!(status, COMPLETED | FAILED | CANCELLED | PARTIAL)
    }
}

/// A pipeline.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Pipeline {
    pub id: u64,
    #[serde(default)]
    pub name: String,
    /// `0` for ad-hoc pipelines.
    #[serde(default)]
    pub blueprint_id: u64,
    pub status: String,
    #[serde(default)]
    pub created_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub began_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub finished_at: Option<DateTime<Utc>>,
    /// Stamped by every save of the row: the end of a run, a re-run request, a cancellation, a
    /// restart marking it `TASK_RESUME`/`TASK_FAILED`. The only time of an end DevLake records
    /// without a `finishedAt`.
    #[serde(default)]
    pub updated_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub message: String,
    #[serde(default)]
    pub error_name: String,
    #[serde(default)]
    pub spent_seconds: Option<i64>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub labels: Vec<String>,
    #[serde(default)]
    pub full_sync: bool,
}

/// Query of `GET /pipelines` (and `GET /blueprints/{id}/pipelines`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PipelineQuery {
    pub status: Option<String>,
    /// `pending=1`: unfinished pipelines in `TASK_CREATED`, `TASK_RERUN`, `TASK_RUNNING`.
    pub pending: bool,
    pub blueprint_id: Option<u64>,
    pub label: Option<String>,
}

/// One page of `GET /pipelines`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
pub struct PipelinesPage {
    pub count: i64,
    #[serde(default, deserialize_with = "null_as_default")]
    pub pipelines: Vec<Pipeline>,
}

/// A task, as `POST /pipelines/{id}/rerun` returns them (a bare array).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Task {
    pub id: u64,
    #[serde(default)]
    pub pipeline_id: u64,
    #[serde(default)]
    pub plugin: String,
    #[serde(default)]
    pub status: String,
}

/// The error envelope DevLake answers failed calls with (`message` may be multi-line).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Default)]
pub struct ErrorEnvelope {
    #[serde(default)]
    pub success: bool,
    #[serde(default)]
    pub message: String,
    #[serde(default)]
    pub causes: Option<Vec<String>>,
}
