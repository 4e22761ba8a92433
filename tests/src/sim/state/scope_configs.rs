//! Scope configs in the simulated DevLake: creating, listing and patching the per-connection
//! transformation rules.

use super::*;

impl State {
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
        let t = crate::sim::time::go_time(&self.now());
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
        sc.insert(
            "updatedAt".into(),
            json!(crate::sim::time::go_time(&self.now())),
        );
        self.scope_configs
            .insert((plugin.to_string(), id), sc.clone());
        Ok(sc)
    }
}
