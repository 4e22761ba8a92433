//! The typed DevLake client. SKELETON: signatures are the contract other modules code against;
//! bodies are being implemented.
#![allow(unused_variables, dead_code)]

use std::time::Duration;

use futures::stream::BoxStream;
use serde_json::Value;

use super::error::DevLakeError;
use super::models::*;

type Result<T> = std::result::Result<T, DevLakeError>;

/// How to reach DevLake and how hard to push it.
#[derive(Clone)]
pub struct ClientConfig {
    /// Base URL, e.g. `http://devlake:8080` or `https://devlake.example.com/api/rest`.
    pub endpoint: String,
    /// Sent as `Authorization: Bearer`. Never printed (Debug is redacted).
    pub api_key: Option<String>,
    pub connect_timeout: Duration,
    /// Per attempt.
    pub request_timeout: Duration,
    /// Attempts after the first, for idempotent requests only.
    pub max_retries: u32,
    /// First backoff step; doubles per attempt, full jitter.
    pub retry_base_delay: Duration,
    /// Upper bound of one backoff sleep.
    pub retry_max_delay: Duration,
    /// Requests in flight at once.
    pub max_concurrency: usize,
    /// Client-side rate limit; `None` = unlimited.
    pub max_requests_per_second: Option<u32>,
    /// Rows asked for per page on list endpoints (DevLake's default of 50 is small).
    pub page_size: u32,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            endpoint: String::new(),
            api_key: None,
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(30),
            max_retries: 3,
            retry_base_delay: Duration::from_millis(200),
            retry_max_delay: Duration::from_secs(5),
            max_concurrency: 4,
            max_requests_per_second: None,
            page_size: 500,
        }
    }
}

impl std::fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientConfig")
            .field("endpoint", &self.endpoint)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .finish_non_exhaustive()
    }
}

/// Calls made by a client so far (for run summaries and benchmarks).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CallCounts {
    /// GET requests (every attempt counts).
    pub reads: u64,
    /// POST/PUT/PATCH/DELETE requests (every attempt counts).
    pub writes: u64,
}

/// Result of triggering a blueprint.
#[derive(Debug, Clone, PartialEq)]
pub enum TriggerOutcome {
    Started(Pipeline),
    /// 400 "there are pending pipelines of current blueprint already".
    AlreadyRunning,
}

/// Cheap to clone; clones share the connection pool, limits and counters.
#[derive(Clone, Debug)]
pub struct DevLakeClient {}

impl DevLakeClient {
    pub fn new(config: ClientConfig) -> Result<Self> {
        todo!()
    }
    pub fn calls(&self) -> CallCounts {
        todo!()
    }
    pub async fn ping(&self) -> Result<()> {
        todo!()
    }
    pub async fn version(&self) -> Result<Version> {
        todo!()
    }
    pub async fn plugins(&self) -> Result<Vec<PluginInfo>> {
        todo!()
    }
    pub async fn connections(&self, plugin: &str) -> Result<Vec<Connection>> {
        todo!()
    }
    pub async fn connection(&self, plugin: &str, connection_id: u64) -> Result<Connection> {
        todo!()
    }
    /// One page of remote scopes; `group_id` None = top level, `page_token` None = first page.
    pub async fn remote_scopes_page(
        &self,
        plugin: &str,
        connection_id: u64,
        group_id: Option<&str>,
        page_token: Option<&str>,
    ) -> Result<RemoteScopesPage> {
        todo!()
    }
    /// Every `scope` child under every group, recursively, following `nextPageToken` to `""`.
    pub fn remote_scopes<'a>(
        &'a self,
        plugin: &'a str,
        connection_id: u64,
    ) -> BoxStream<'a, Result<RemoteScopeChild>> {
        todo!()
    }
    pub async fn scopes_page(
        &self,
        plugin: &str,
        connection_id: u64,
        page: u32,
        page_size: u32,
    ) -> Result<ScopesPage> {
        todo!()
    }
    /// Every scope of a connection, paged.
    pub fn scopes<'a>(
        &'a self,
        plugin: &'a str,
        connection_id: u64,
    ) -> BoxStream<'a, Result<ScopeListItem>> {
        todo!()
    }
    /// `None` on 404.
    pub async fn scope(
        &self,
        plugin: &str,
        connection_id: u64,
        scope_id: &str,
    ) -> Result<Option<ScopeListItem>> {
        todo!()
    }
    /// Bulk upsert (idempotent by primary key, so retried).
    pub async fn put_scopes(
        &self,
        plugin: &str,
        connection_id: u64,
        rows: &[Value],
    ) -> Result<Vec<Scope>> {
        todo!()
    }
    pub async fn patch_scope(
        &self,
        plugin: &str,
        connection_id: u64,
        scope_id: &str,
        patch: &Value,
    ) -> Result<Scope> {
        todo!()
    }
    pub async fn scope_configs(&self, plugin: &str, connection_id: u64) -> Result<Vec<ScopeConfig>> {
        todo!()
    }
    /// Creates a scope config; if the POST times out or fails with 5xx, looks it up by name
    /// before deciding it failed (never blindly re-POSTs).
    pub async fn create_scope_config(
        &self,
        plugin: &str,
        connection_id: u64,
        config: &ScopeConfig,
    ) -> Result<ScopeConfig> {
        todo!()
    }
    pub async fn patch_scope_config(
        &self,
        plugin: &str,
        connection_id: u64,
        scope_config_id: u64,
        patch: &Value,
    ) -> Result<ScopeConfig> {
        todo!()
    }
    pub async fn projects_page(&self, page: u32, page_size: u32) -> Result<ProjectsPage> {
        todo!()
    }
    pub fn projects(&self) -> BoxStream<'_, Result<Project>> {
        todo!()
    }
    /// `None` on 404. The name is percent-encoded in the path.
    pub async fn project(&self, name: &str) -> Result<Option<Project>> {
        todo!()
    }
    /// Creates a project; if the POST times out or fails with 5xx, looks the name up before
    /// deciding it failed (never blindly re-POSTs). A 400 "already exists" is returned as
    /// `DevLakeError::Status { status: 400, .. }`.
    pub async fn create_project(&self, input: &ProjectInput) -> Result<Project> {
        todo!()
    }
    pub async fn patch_project(&self, name: &str, patch: &Value) -> Result<Project> {
        todo!()
    }
    pub async fn blueprints_page(
        &self,
        query: &BlueprintQuery,
        page: u32,
        page_size: u32,
    ) -> Result<BlueprintsPage> {
        todo!()
    }
    pub fn blueprints<'a>(&'a self, query: &'a BlueprintQuery) -> BoxStream<'a, Result<Blueprint>> {
        todo!()
    }
    pub async fn blueprint(&self, id: u64) -> Result<Blueprint> {
        todo!()
    }
    pub async fn patch_blueprint(&self, id: u64, patch: &BlueprintPatch) -> Result<Blueprint> {
        todo!()
    }
    /// Never retried (a trigger is not idempotent); 400 pending → `AlreadyRunning`.
    pub async fn trigger_blueprint(&self, id: u64, request: TriggerRequest) -> Result<TriggerOutcome> {
        todo!()
    }
    pub async fn pipelines_page(
        &self,
        query: &PipelineQuery,
        page: u32,
        page_size: u32,
    ) -> Result<PipelinesPage> {
        todo!()
    }
    /// Newest first (`id DESC`); stop consuming early to avoid fetching further pages.
    pub fn pipelines<'a>(&'a self, query: &'a PipelineQuery) -> BoxStream<'a, Result<Pipeline>> {
        todo!()
    }
    pub async fn pipeline(&self, id: u64) -> Result<Pipeline> {
        todo!()
    }
    pub async fn rerun_pipeline(&self, id: u64) -> Result<Vec<Task>> {
        todo!()
    }
}
