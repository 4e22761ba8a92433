//! Scopes in the simulated DevLake: the per-connection scope tables, their listing, bulk
//! upsert, patch and delete rules.

use super::*;

impl State {
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
        let t = crate::sim::time::go_time(&self.now());
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

    pub(super) fn normalize_scope_config_id(&self, row: &mut Map<String, Value>) {
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
        row.insert(
            "updatedAt".into(),
            json!(crate::sim::time::go_time(&self.now())),
        );
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
}
