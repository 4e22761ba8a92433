//! Plugins and connections in the simulated DevLake: which plugins are loaded and the
//! connections created under them (the simulator's counterpart of the client's `plugins.rs`;
//! `sim/plugins.rs` is the per-plugin catalogue, hence the different name).

use super::*;

impl State {
    pub(crate) fn plugin_loaded(&self, plugin: &str) -> bool {
        self.plugins.iter().any(|p| p == plugin)
    }

    pub(super) fn ensure_plugin(&mut self, plugin: &str) {
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
        let t = crate::sim::time::go_time(&self.now());
        body.insert("id".into(), json!(id));
        body.entry("createdAt").or_insert(json!(t));
        body.entry("updatedAt").or_insert(json!(t));
        let raw_token = body
            .get("token")
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
            .map(str::to_string);
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
                secret: raw_token,
                test: ConnectionTestMode::default(),
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
}

fn connection_not_found(plugin: &str) -> ApiError {
    ApiError::not_found(format!(
        "*models.{} not found",
        plugins::connection_model(plugin)
    ))
}
