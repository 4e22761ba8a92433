//! In-process control of a running simulator.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use super::faults::{
    FaultRule, FaultState, Faults, MigrationMode, RequestCounts, RequestLog, RequestRecord,
};
use super::fixture::{self, Fixture};
use super::notify::{NotificationRow, NotificationSettings};
use super::state::{
    ApiError, ConnectionTestMode, CronFire, PipelineEnd, PipelineFilter, PipelineSeed, State,
};
use super::{lock, AutoComplete, Inner, SimOptions, DEFAULT_VERSION};

/// Error from a control operation (unknown pipeline, invalid fixture, …).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimError {
    pub status: u16,
    pub message: String,
}

impl SimError {
    pub(crate) fn new(message: impl Into<String>) -> Self {
        SimError {
            status: 400,
            message: message.into(),
        }
    }
}

impl fmt::Display for SimError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.message, self.status)
    }
}

impl std::error::Error for SimError {}

impl From<ApiError> for SimError {
    fn from(e: ApiError) -> Self {
        SimError {
            status: e.status,
            message: e.message,
        }
    }
}

/// Cheap-to-clone handle on the simulator's state, faults and request log.
/// JSON returned here is exactly what the HTTP API would return for the same object.
#[derive(Clone)]
pub struct SimHandle {
    pub(crate) inner: Arc<Inner>,
}

impl fmt::Debug for SimHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimHandle").finish_non_exhaustive()
    }
}

impl SimHandle {
    pub(crate) fn build(fixture: Fixture, opts: &SimOptions) -> Result<SimHandle, SimError> {
        let version = opts
            .version
            .clone()
            .or_else(|| fixture.version.clone())
            .unwrap_or_else(|| DEFAULT_VERSION.to_string());
        let page = opts
            .remote_page_size
            .or(fixture.remote_page_size)
            .unwrap_or(100);
        let mut state = State::new(version, page);
        let auto = opts.auto_complete.clone().or_else(|| {
            fixture.auto_complete_ms.map(|ms| AutoComplete {
                after: Duration::from_millis(ms),
                status: fixture
                    .auto_complete_status
                    .clone()
                    .unwrap_or_else(|| "TASK_COMPLETED".into()),
            })
        });
        fixture::load(&mut state, fixture).map_err(SimError::from)?;
        let faults = Faults {
            latency_ms: opts.latency.as_millis() as u64,
            migration: if opts.migration_pending {
                MigrationMode::Pending
            } else {
                MigrationMode::None
            },
            ..Faults::default()
        };
        let capacity = match opts.request_log_capacity {
            0 => 100_000,
            n => n,
        };
        Ok(SimHandle {
            inner: Arc::new(Inner {
                state: Mutex::new(state),
                faults: Mutex::new(FaultState::new(faults, opts.seed.wrapping_add(0x9E37_79B9))),
                log: Mutex::new(RequestLog::new(capacity)),
                api_key: Mutex::new(opts.api_key.clone()),
                auto_complete: Mutex::new(auto),
            }),
        })
    }

    pub(crate) fn record(&self, method: &str, path: &str, status: u16) {
        lock(&self.inner.log).push(RequestRecord {
            method: method.to_string(),
            path: path.to_string(),
            status,
        });
    }

    pub(crate) fn with_state<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        f(&mut lock(&self.inner.state))
    }

    // ------------------------------------------------------------------ request log

    /// Every logged DevLake request, oldest first (bounded by `request_log_capacity`).
    pub fn requests(&self) -> Vec<RequestRecord> {
        lock(&self.inner.log).records.iter().cloned().collect()
    }

    /// Totals: all requests, reads (GET) and writes (non-GET), since the last reset.
    pub fn counts(&self) -> RequestCounts {
        lock(&self.inner.log).counts
    }

    /// Number of logged requests with this method (any if empty) whose path (as sent, with
    /// query) starts with `path_prefix`.
    pub fn count_matching(&self, method: &str, path_prefix: &str) -> usize {
        lock(&self.inner.log)
            .records
            .iter()
            .filter(|r| {
                (method.is_empty() || r.method.eq_ignore_ascii_case(method))
                    && r.path.starts_with(path_prefix)
            })
            .count()
    }

    pub fn reset_log(&self) {
        lock(&self.inner.log).reset();
    }

    /// How many GitHub scope PUT rows lacked `htmlUrl`/`cloneUrl` (each would make real
    /// DevLake call the GitHub API).
    pub fn github_api_fill_calls(&self) -> u64 {
        self.with_state(|s| s.github_api_fill_calls)
    }

    /// Changes the key `/rest/*` requires (`None`: open), as rotating the key in DevLake does.
    pub fn set_api_key(&self, key: Option<String>) {
        *lock(&self.inner.api_key) = key;
    }

    // ------------------------------------------------------------------ faults

    pub fn set_faults(&self, faults: Faults) {
        lock(&self.inner.faults).faults = faults;
    }

    pub fn faults(&self) -> Faults {
        lock(&self.inner.faults).faults.clone()
    }

    pub fn clear_faults(&self) {
        self.set_faults(Faults::default());
    }

    /// Appends a deterministic fault rule (see [`FaultRule::status`], [`FaultRule::reset`],
    /// [`FaultRule::commit_then_delay`]).
    pub fn add_fault_rule(&self, rule: FaultRule) {
        lock(&self.inner.faults).faults.rules.push(rule);
    }

    pub fn set_latency(&self, latency: Duration) {
        lock(&self.inner.faults).faults.latency_ms = latency.as_millis() as u64;
    }

    pub fn set_list_latency(&self, latency: Duration) {
        lock(&self.inner.faults).faults.list_latency_ms = latency.as_millis() as u64;
    }

    pub fn set_error_rate(&self, rate: f64, status: u16) {
        let mut f = lock(&self.inner.faults);
        f.faults.error_rate = rate;
        f.faults.error_status = Some(status);
    }

    pub fn set_migration(&self, mode: MigrationMode) {
        lock(&self.inner.faults).faults.migration = mode;
    }

    pub fn set_auto_complete(&self, auto: Option<AutoComplete>) {
        *lock(&self.inner.auto_complete) = auto;
    }

    // ------------------------------------------------------------------ connections & scopes

    /// Adds a connection (`body` as DevLake returns it: `name`, `endpoint`, …; `id` optional).
    /// Returns its id.
    pub fn add_connection(&self, plugin: &str, body: Value) -> Result<u64, SimError> {
        Ok(self.with_state(|s| s.add_connection(plugin, body))?)
    }

    /// Adds a group to a connection's remote-scope tree (`parent` None = top level).
    pub fn add_remote_group(
        &self,
        plugin: &str,
        connection_id: u64,
        parent: Option<&str>,
        id: &str,
        name: &str,
    ) -> Result<(), SimError> {
        Ok(self.with_state(|s| s.add_remote_group(plugin, connection_id, parent, id, name, None))?)
    }

    /// Adds a scope (plugin-shaped `data`, e.g. a GitHub repo) under `group` (None = top
    /// level; the group is created if missing). Returns the scopeId.
    pub fn add_remote_scope(
        &self,
        plugin: &str,
        connection_id: u64,
        group: Option<&str>,
        data: Value,
    ) -> Result<String, SimError> {
        self.add_remote_scopes(plugin, connection_id, group, vec![data])
            .map(|mut v| v.remove(0))
    }

    pub fn add_remote_scopes(
        &self,
        plugin: &str,
        connection_id: u64,
        group: Option<&str>,
        data: Vec<Value>,
    ) -> Result<Vec<String>, SimError> {
        self.with_state(|s| {
            if let Some(g) = group {
                let exists = s
                    .connection(plugin, connection_id)?
                    .remote
                    .values()
                    .flatten()
                    .any(|e| e.is_group && e.id == g);
                if !exists {
                    s.add_remote_group(plugin, connection_id, None, g, g, None)?;
                }
            }
            data.into_iter()
                .map(|d| s.add_remote_scope(plugin, connection_id, group, d))
                .collect::<Result<Vec<_>, _>>()
        })
        .map_err(SimError::from)
    }

    /// Removes a scope from the remote listing only (see `State::remove_remote_scope`).
    pub fn remove_remote_scope(
        &self,
        plugin: &str,
        connection_id: u64,
        scope_id: &str,
    ) -> Result<bool, SimError> {
        Ok(self.with_state(|s| s.remove_remote_scope(plugin, connection_id, scope_id))?)
    }

    /// Saves scopes as `PUT .../scopes` would. Returns the saved rows.
    pub fn put_scopes(
        &self,
        plugin: &str,
        connection_id: u64,
        rows: Vec<Value>,
    ) -> Result<Vec<Value>, SimError> {
        self.with_state(|s| {
            rows.into_iter()
                .enumerate()
                .map(|(i, r)| s.put_scope(plugin, connection_id, i, r).map(Value::Object))
                .collect::<Result<Vec<_>, _>>()
        })
        .map_err(SimError::from)
    }

    /// Connections of a plugin, as `GET /plugins/{p}/connections`.
    pub fn connections(&self, plugin: &str) -> Vec<Value> {
        self.with_state(|s| {
            s.connections
                .iter()
                .filter(|((p, _), _)| p == plugin)
                .map(|(_, c)| Value::Object(c.body.clone()))
                .collect()
        })
    }

    /// Saved scopes of a connection (bare scope objects, DB order).
    pub fn scopes(&self, plugin: &str, connection_id: u64) -> Vec<Value> {
        self.with_state(|s| {
            s.connection(plugin, connection_id)
                .map(|c| {
                    c.scopes
                        .iter()
                        .map(|(_, r)| Value::Object(r.clone()))
                        .collect()
                })
                .unwrap_or_default()
        })
    }

    pub fn scope(&self, plugin: &str, connection_id: u64, scope_id: &str) -> Option<Value> {
        self.with_state(|s| {
            s.scope(plugin, connection_id, scope_id)
                .ok()
                .map(|r| Value::Object(r.clone()))
        })
    }

    /// Scope configs of a connection (id DESC, as the list endpoint).
    pub fn scope_configs(&self, plugin: &str, connection_id: u64) -> Vec<Value> {
        self.with_state(|s| {
            s.list_scope_configs(plugin, connection_id)
                .map(|v| v.into_iter().map(|m| Value::Object(m.clone())).collect())
                .unwrap_or_default()
        })
    }

    // ------------------------------------------------------------------ projects & blueprints

    /// Creates a project with its default blueprint, like `POST /projects {"name":…}` with the
    /// DORA metric. Returns the blueprint id.
    pub fn create_project(&self, name: &str) -> Result<u64, SimError> {
        self.with_state(|s| {
            s.create_project(
                json!({"name": name, "metrics": [{"pluginName": "dora", "pluginOption": {}, "enable": true}]}),
                s.now(),
            )?;
            Ok(s.blueprint_of_project(name).map(|b| b.id).unwrap_or(0))
        })
        .map_err(|e: ApiError| e.into())
    }

    /// `DELETE /projects/{name}`: also deletes its blueprint; refused (500) while one of the
    /// blueprint's newest pipelines is unfinished.
    pub fn delete_project(&self, name: &str) -> Result<(), SimError> {
        Ok(self.with_state(|s| s.delete_project(name))?)
    }

    /// `PATCH /projects/{old} {"name": new}`: the blueprint keeps its id, `projectName` follows.
    pub fn rename_project(&self, old: &str, new: &str) -> Result<(), SimError> {
        self.with_state(|s| s.patch_project(old, json!({ "name": new })))?;
        Ok(())
    }

    /// Applies a `PATCH /blueprints/{id}` body with the same validation. Returns the blueprint.
    pub fn patch_blueprint(&self, id: u64, patch: Value) -> Result<Value, SimError> {
        self.with_state(|s| {
            s.patch_blueprint(id, patch)
                .map(|b| serde_json::to_value(b).unwrap_or(Value::Null))
        })
        .map_err(SimError::from)
    }

    /// All projects as `GET /projects/{name}` returns them (no `lastPipeline`), newest first.
    pub fn projects(&self) -> Vec<Value> {
        self.with_state(|s| {
            s.list_projects(None)
                .into_iter()
                .map(|p| s.project_json(p, false))
                .collect()
        })
    }

    pub fn project(&self, name: &str) -> Option<Value> {
        self.with_state(|s| s.project(name).ok().map(|p| s.project_json(p, false)))
    }

    /// All blueprints, id DESC.
    pub fn blueprints(&self) -> Vec<Value> {
        self.with_state(|s| {
            s.blueprints
                .values()
                .rev()
                .map(|b| serde_json::to_value(b).unwrap_or(Value::Null))
                .collect()
        })
    }

    pub fn blueprint(&self, id: u64) -> Option<Value> {
        self.with_state(|s| {
            s.blueprints
                .get(&id)
                .map(|b| serde_json::to_value(b).unwrap_or(Value::Null))
        })
    }

    pub fn blueprint_of_project(&self, project: &str) -> Option<Value> {
        self.with_state(|s| {
            s.blueprint_of_project(project)
                .map(|b| serde_json::to_value(b).unwrap_or(Value::Null))
        })
    }

    // ------------------------------------------------------------------ pipelines

    /// Triggers a blueprint like `POST /blueprints/{id}/trigger`. Returns the pipeline id.
    pub fn trigger(&self, blueprint_id: u64) -> Result<u64, SimError> {
        let id = self.with_state(|s| s.trigger(blueprint_id, false, false))?;
        self.schedule_auto_complete(id);
        Ok(id)
    }

    pub fn pipeline(&self, id: u64) -> Option<Value> {
        self.with_state(|s| {
            s.pipelines
                .get(&id)
                .map(|p| serde_json::to_value(p).unwrap_or(Value::Null))
        })
    }

    /// Pipelines of a blueprint (0 = ad-hoc), id DESC.
    pub fn pipelines_of_blueprint(&self, blueprint_id: u64) -> Vec<Value> {
        self.with_state(|s| {
            let f = PipelineFilter {
                blueprint_id: Some(blueprint_id),
                ..PipelineFilter::default()
            };
            let (_, page) = s.list_pipelines(&f, 1, usize::MAX);
            page.into_iter()
                .map(|p| serde_json::to_value(p).unwrap_or(Value::Null))
                .collect()
        })
    }

    pub fn pipeline_count(&self) -> usize {
        self.with_state(|s| s.pipelines.len())
    }

    /// Ids of pending pipelines (`finishedAt` null and CREATED/RERUN/RUNNING), ascending.
    pub fn pending_pipelines(&self) -> Vec<u64> {
        self.with_state(|s| s.pending_ids())
    }

    /// Marks a pipeline `TASK_RUNNING` (sets `beganAt`).
    pub fn start_pipeline(&self, id: u64) -> Result<(), SimError> {
        Ok(self.with_state(|s| s.start(id))?)
    }

    /// Finishes a pipeline with `TASK_COMPLETED`, `TASK_FAILED`, `TASK_PARTIAL` or
    /// `TASK_CANCELLED`; sets `finishedAt` (and `beganAt` if unset), `message`, `errorName`.
    pub fn finish_pipeline(&self, id: u64, status: &str, message: &str) -> Result<(), SimError> {
        Ok(self.with_state(|s| s.finish(id, status, message, None))?)
    }

    /// [`Self::finish_pipeline`] with a chosen `errorName`: the chain of messages DevLake stores
    /// for a failed pipeline (`runPipeline` in `services/pipeline_runner.go` saves
    /// `err.Messages().Format()`, the layers joined by `\ncaused by: `).
    pub fn finish_pipeline_with_error(
        &self,
        id: u64,
        status: &str,
        message: &str,
        error_name: &str,
    ) -> Result<(), SimError> {
        Ok(self.with_state(|s| s.finish(id, status, message, Some(error_name)))?)
    }

    /// How the source tool behind a connection answers DevLake's connection test
    /// (`POST /plugins/{plugin}/connections/{id}/test`).
    pub fn set_connection_test(
        &self,
        plugin: &str,
        connection_id: u64,
        mode: ConnectionTestMode,
    ) -> Result<(), SimError> {
        Ok(self.with_state(|s| s.set_connection_test(plugin, connection_id, mode))?)
    }

    /// Finishes every pipeline the runner still has to end (queued, re-run, resumed, running)
    /// with `status`; returns their ids.
    pub fn finish_all_pending(&self, status: &str, message: &str) -> Result<Vec<u64>, SimError> {
        self.finish_all_pending_with(status, message, None)
    }

    /// [`Self::finish_all_pending`] with a chosen `errorName` (`None`: derived from `message`).
    pub fn finish_all_pending_with(
        &self,
        status: &str,
        message: &str,
        error_name: Option<&str>,
    ) -> Result<Vec<u64>, SimError> {
        self.with_state(|s| {
            let ids = s.unfinished_ids();
            for id in &ids {
                s.finish(*id, status, message, error_name)?;
            }
            Ok(ids)
        })
        .map_err(|e: ApiError| e.into())
    }

    /// `POST /pipelines/{id}/rerun`: same id, `TASK_RERUN`, old `beganAt`/`finishedAt` kept.
    pub fn rerun_pipeline(&self, id: u64) -> Result<(), SimError> {
        self.with_state(|s| s.rerun(id))?;
        self.schedule_auto_complete(id);
        Ok(())
    }

    /// `DELETE /pipelines/{id}` (cancel).
    pub fn cancel_pipeline(&self, id: u64) -> Result<(), SimError> {
        Ok(self.with_state(|s| s.cancel(id))?)
    }

    /// Restarts DevLake: every `TASK_RUNNING` pipeline becomes `TASK_RESUME`
    /// (`resume_pipelines`, DevLake's default) or `TASK_FAILED`, `finishedAt` untouched.
    /// Returns the ids changed.
    pub fn restart(&self, resume_pipelines: bool) -> Vec<u64> {
        self.with_state(|s| s.restart(resume_pipelines))
    }

    /// Every pipeline end so far (runner ends, cancellations, restarts without resume), oldest
    /// first. Seeded rows are not ends.
    pub fn ends(&self) -> Vec<PipelineEnd> {
        self.with_state(|s| s.ends.clone())
    }

    /// Ids of pipelines the runner still has to end (any status but the finished ones).
    pub fn unfinished_pipelines(&self) -> Vec<u64> {
        self.with_state(|s| s.unfinished_ids())
    }

    // ------------------------------------------------------------------ clock

    /// DevLake's clock: the controlled time if set, else the wall clock.
    pub fn now(&self) -> DateTime<Utc> {
        self.with_state(|s| s.now())
    }

    /// Stops DevLake's clock at `at` (`None`: back to the wall clock). Every timestamp the
    /// simulator writes from then on (`createdAt`, `beganAt`, `finishedAt`, `updatedAt`) is it.
    /// With DevLake's cron running ([`Self::run_cron`]), moving the clock forward first fires
    /// every blueprint schedule due in between.
    pub fn set_clock(&self, at: Option<DateTime<Utc>>) {
        self.with_state(|s| match at {
            Some(to) => s.move_clock(to),
            None => s.clock = None,
        });
    }

    /// Moves the controlled clock forward (starting from the wall clock if none was set), firing
    /// the blueprint schedules due on the way when the cron runs.
    pub fn advance_clock(&self, by: chrono::Duration) -> DateTime<Utc> {
        self.with_state(|s| {
            let at = s.now() + by;
            s.move_clock(at);
            at
        })
    }

    /// Turns DevLake's cron of blueprints on or off (off by default: a test's clock moves then
    /// create no pipeline by themselves). While on, each clock move runs every enabled,
    /// non-manual blueprint's `cronConfig` activation in between, as DevLake's `BlueprintJob`.
    pub fn run_cron(&self, on: bool) {
        self.with_state(|s| s.cron.running = on);
    }

    /// Makes every activation of the blueprint's schedule fail before creating a pipeline, as a
    /// `CreateDbPipeline` lock timeout does under load (`false`: back to normal).
    pub fn lose_cron_fires(&self, blueprint_id: u64, lost: bool) {
        self.with_state(|s| {
            if lost {
                s.cron.lost.insert(blueprint_id);
            } else {
                s.cron.lost.remove(&blueprint_id);
            }
        });
    }

    /// Makes `DELETE /pipelines/{id}` of this running pipeline answer 200 and stop nothing, as
    /// DevLake does when the running task ignores its cancelled context or is no longer tracked
    /// (`false`: cancellable again).
    pub fn ignore_cancel(&self, pipeline_id: u64, ignored: bool) {
        self.with_state(|s| {
            if ignored {
                s.uncancellable.insert(pipeline_id);
            } else {
                s.uncancellable.remove(&pipeline_id);
            }
        });
    }

    /// Every activation of a blueprint schedule so far, oldest first, with its outcome.
    pub fn cron_fires(&self) -> Vec<CronFire> {
        self.with_state(|s| s.cron.fires.clone())
    }

    /// Inserts one pipeline row directly. Returns its id.
    pub fn create_pipeline(&self, seed: PipelineSeed) -> Result<u64, SimError> {
        self.insert_pipelines(vec![seed]).map(|v| v[0])
    }

    /// Inserts many pipeline rows directly (fast: 100k in well under a second).
    /// Ids are assigned in order, so later seeds are "newer".
    pub fn insert_pipelines(
        &self,
        seeds: impl IntoIterator<Item = PipelineSeed>,
    ) -> Result<Vec<u64>, SimError> {
        self.with_state(|s| {
            let mut cache = HashMap::new();
            seeds
                .into_iter()
                .map(|seed| s.seed_pipeline(seed, &mut cache))
                .collect::<Result<Vec<_>, _>>()
        })
        .map_err(SimError::from)
    }

    /// Convenience: `n` historical pipelines spread over `blueprint_ids` (round robin), one
    /// every minute ending at `end`, every `fail_every`-th one `TASK_FAILED` (0 = none).
    pub fn seed_history(
        &self,
        blueprint_ids: &[u64],
        n: usize,
        fail_every: usize,
        end: DateTime<Utc>,
    ) -> Result<Vec<u64>, SimError> {
        let seeds = fixture::history_seeds(blueprint_ids, n, fail_every, end);
        self.insert_pipelines(seeds)
    }

    // ------------------------------------------------------------------ notifications

    /// Sets DevLake's `NOTIFICATION_ENDPOINT` and `NOTIFICATION_SECRET` (`None`: unset, no more
    /// notifications). Needs a Tokio runtime: a background task posts them.
    pub fn set_notifications(&self, settings: Option<NotificationSettings>) {
        super::notify::configure(&self.inner, settings);
    }

    /// Every `_devlake_notifications` row so far, oldest first.
    pub fn notifications(&self) -> Vec<NotificationRow> {
        self.with_state(|s| s.notifications.clone())
    }

    /// Waits until at least `count` notifications exist and every one has been answered (or
    /// failed); returns them all. An error names what was still missing after `timeout`.
    pub async fn wait_for_notifications(
        &self,
        count: usize,
        timeout: Duration,
    ) -> Result<Vec<NotificationRow>, SimError> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let rows = self.notifications();
            if rows.len() >= count && rows.iter().all(|r| r.settled) {
                return Ok(rows);
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(SimError::new(format!(
                    "{} of {count} notifications sent and answered after {timeout:?}",
                    rows.iter().filter(|r| r.settled).count()
                )));
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    pub(crate) fn schedule_auto_complete(&self, pipeline_id: u64) {
        let Some(auto) = lock(&self.inner.auto_complete).clone() else {
            return;
        };
        let h = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(auto.after / 2).await;
            let _ = h.start_pipeline(pipeline_id);
            tokio::time::sleep(auto.after - auto.after / 2).await;
            let msg = if auto.status == "TASK_COMPLETED" {
                ""
            } else {
                "simulated failure"
            };
            let _ = h.finish_pipeline(pipeline_id, &auto.status, msg);
        });
    }
}
