//! Plugins and their connections: `GET /plugins`, `GET /plugins/{plugin}/connections[/{id}]`,
//! and the connection path every scope-level resource hangs under.

use super::client::{DevLakeClient, Result};
use super::http::encode_segment;
use super::models::*;

impl DevLakeClient {
    pub async fn plugins(&self) -> Result<Vec<PluginInfo>> {
        self.get_json("/plugins", &[]).await
    }

    pub async fn connections(&self, plugin: &str) -> Result<Vec<Connection>> {
        let path = format!("/plugins/{}/connections", encode_segment(plugin));
        let list: Option<Vec<Connection>> = self.get_json(&path, &[]).await?;
        Ok(list.unwrap_or_default())
    }

    pub async fn connection(&self, plugin: &str, connection_id: u64) -> Result<Connection> {
        let path = format!(
            "/plugins/{}/connections/{connection_id}",
            encode_segment(plugin)
        );
        self.get_json(&path, &[]).await
    }

    pub(super) fn connection_path(plugin: &str, connection_id: u64) -> String {
        format!(
            "/plugins/{}/connections/{connection_id}",
            encode_segment(plugin)
        )
    }
}
