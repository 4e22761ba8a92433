//! The simulator's catalog under test control: connections and their remote scopes, projects and
//! their blueprints, set up and read back without going through the HTTP API.

use serde_json::{json, Value};

use super::{SimError, SimHandle};
use crate::sim::state::ApiError;

impl SimHandle {
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
}
