//! Scopes a connection collects: listing (paged and streamed), reading one, adding them in
//! bulk (`PUT .../scopes`) and patching one.

use futures::stream::BoxStream;
use reqwest::Method;
use serde::Serialize;
use serde_json::Value;

use super::client::{DevLakeClient, Result};
use super::config::MAX_SCOPES_PAGE_SIZE;
use super::http::scope_id_path;
use super::models::*;

impl DevLakeClient {
    pub async fn scopes_page(
        &self,
        plugin: &str,
        connection_id: u64,
        page: u32,
        page_size: u32,
    ) -> Result<ScopesPage> {
        let path = format!("{}/scopes", Self::connection_path(plugin, connection_id));
        let query = [
            ("page", page.max(1).to_string()),
            (
                "pageSize",
                page_size.clamp(1, MAX_SCOPES_PAGE_SIZE).to_string(),
            ),
        ];
        self.get_json(&path, &query).await
    }

    /// Every scope of a connection, paged (at most 1000 rows per page, DevLake's cap).
    pub fn scopes<'a>(
        &'a self,
        plugin: &'a str,
        connection_id: u64,
    ) -> BoxStream<'a, Result<ScopeListItem>> {
        let size = self.inner.page_size.min(MAX_SCOPES_PAGE_SIZE);
        self.paged(size, move |page, size| async move {
            let p = self.scopes_page(plugin, connection_id, page, size).await?;
            Ok((p.count, p.scopes))
        })
    }

    /// `None` on 404.
    pub async fn scope(
        &self,
        plugin: &str,
        connection_id: u64,
        scope_id: &str,
    ) -> Result<Option<ScopeListItem>> {
        let path = format!(
            "{}/scopes/{}",
            Self::connection_path(plugin, connection_id),
            scope_id_path(plugin, scope_id)
        );
        self.get_optional(&path).await
    }

    /// Bulk upsert (idempotent by primary key, so retried).
    pub async fn put_scopes(
        &self,
        plugin: &str,
        connection_id: u64,
        rows: &[Value],
    ) -> Result<Vec<Scope>> {
        #[derive(Serialize)]
        struct Body<'b> {
            data: &'b [Value],
        }
        let path = format!("{}/scopes", Self::connection_path(plugin, connection_id));
        let saved: Option<Vec<Scope>> = self
            .send_json(Method::PUT, &path, &Body { data: rows })
            .await?;
        Ok(saved.unwrap_or_default())
    }

    pub async fn patch_scope(
        &self,
        plugin: &str,
        connection_id: u64,
        scope_id: &str,
        patch: &Value,
    ) -> Result<Scope> {
        let path = format!(
            "{}/scopes/{}",
            Self::connection_path(plugin, connection_id),
            scope_id_path(plugin, scope_id)
        );
        self.send_json(Method::PATCH, &path, patch).await
    }
}
