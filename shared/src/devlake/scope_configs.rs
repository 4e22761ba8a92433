//! Scope configs (transformation rules) of a connection: listing, creating and patching them.

use reqwest::Method;
use serde_json::Value;

use super::client::{DevLakeClient, Result};
use super::http::may_have_committed;
use super::models::*;

impl DevLakeClient {
    pub async fn scope_configs(
        &self,
        plugin: &str,
        connection_id: u64,
    ) -> Result<Vec<ScopeConfig>> {
        let path = format!(
            "{}/scope-configs",
            Self::connection_path(plugin, connection_id)
        );
        let list: Option<Vec<ScopeConfig>> = self.get_json(&path, &[]).await?;
        Ok(list.unwrap_or_default())
    }

    /// Creates a scope config; if the POST times out or fails with 5xx, looks it up by name
    /// before deciding it failed (never blindly re-POSTs).
    pub async fn create_scope_config(
        &self,
        plugin: &str,
        connection_id: u64,
        config: &ScopeConfig,
    ) -> Result<ScopeConfig> {
        let path = format!(
            "{}/scope-configs",
            Self::connection_path(plugin, connection_id)
        );
        let error = match self.send_json(Method::POST, &path, config).await {
            Ok(created) => return Ok(created),
            Err(e) if may_have_committed(&e) => e,
            Err(e) => return Err(e),
        };
        match self.scope_configs(plugin, connection_id).await {
            Ok(list) => match list.into_iter().find(|c| c.name == config.name) {
                Some(found) => {
                    tracing::info!(
                        plugin,
                        connection_id,
                        scope_config = %config.name,
                        error = %error,
                        "scope-config create failed but DevLake had committed it"
                    );
                    Ok(found)
                }
                None => Err(error),
            },
            Err(lookup) => {
                tracing::warn!(plugin, connection_id, error = %lookup, "lookup after failed scope-config create failed");
                Err(error)
            }
        }
    }

    pub async fn patch_scope_config(
        &self,
        plugin: &str,
        connection_id: u64,
        scope_config_id: u64,
        patch: &Value,
    ) -> Result<ScopeConfig> {
        let path = format!(
            "{}/scope-configs/{scope_config_id}",
            Self::connection_path(plugin, connection_id)
        );
        self.send_json(Method::PATCH, &path, patch).await
    }
}
