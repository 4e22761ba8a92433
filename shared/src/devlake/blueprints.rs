//! Blueprints: listing with DevLake's filters, reading, patching and triggering one (a trigger
//! refused because a pipeline is pending is an outcome, not an error).

use futures::stream::BoxStream;
use reqwest::Method;

use super::client::{DevLakeClient, Result, TriggerOutcome};
use super::error::DevLakeError;
use super::models::*;

impl DevLakeClient {
    pub async fn blueprints_page(
        &self,
        query: &BlueprintQuery,
        page: u32,
        page_size: u32,
    ) -> Result<BlueprintsPage> {
        self.get_json("/blueprints", &blueprint_query(query, page, page_size))
            .await
    }

    pub fn blueprints<'a>(&'a self, query: &'a BlueprintQuery) -> BoxStream<'a, Result<Blueprint>> {
        self.paged(self.inner.page_size, move |page, size| async move {
            let p = self.blueprints_page(query, page, size).await?;
            Ok((p.count, p.blueprints))
        })
    }

    pub async fn blueprint(&self, id: u64) -> Result<Blueprint> {
        self.get_json(&format!("/blueprints/{id}"), &[]).await
    }

    pub async fn patch_blueprint(&self, id: u64, patch: &BlueprintPatch) -> Result<Blueprint> {
        self.send_json(Method::PATCH, &format!("/blueprints/{id}"), patch)
            .await
    }

    /// Never retried (a trigger is not idempotent); 400 pending → `AlreadyRunning`.
    pub async fn trigger_blueprint(
        &self,
        id: u64,
        request: TriggerRequest,
    ) -> Result<TriggerOutcome> {
        match self
            .send_json(Method::POST, &format!("/blueprints/{id}/trigger"), &request)
            .await
        {
            Ok(pipeline) => Ok(TriggerOutcome::Started(pipeline)),
            Err(DevLakeError::Status {
                status: 400,
                message,
                ..
            }) if message.contains("pending pipelines") => Ok(TriggerOutcome::AlreadyRunning),
            Err(e) => Err(e),
        }
    }
}

/// Query of `GET /blueprints` (camelCase keys; `type` only matters without `isManual`).
pub fn blueprint_query(
    query: &BlueprintQuery,
    page: u32,
    page_size: u32,
) -> Vec<(&'static str, String)> {
    let mut q = Vec::new();
    if let Some(enable) = query.enable {
        q.push(("enable", enable.to_string()));
    }
    if let Some(manual) = query.is_manual {
        q.push(("isManual", manual.to_string()));
    }
    if let Some(label) = &query.label {
        q.push(("label", label.clone()));
    }
    if let Some(kind) = &query.kind {
        q.push(("type", kind.clone()));
    }
    q.push(("page", page.max(1).to_string()));
    q.push(("pageSize", page_size.max(1).to_string()));
    q
}

#[cfg(test)]
mod tests {
    use super::super::http::path_with_query;
    use super::*;

    #[test]
    fn blueprint_query_keys() {
        let q = BlueprintQuery {
            enable: Some(true),
            is_manual: Some(false),
            label: Some("l".into()),
            kind: Some("DAILY".into()),
        };
        assert_eq!(
            path_with_query("/blueprints", &blueprint_query(&q, 1, 50)),
            "/blueprints?enable=true&isManual=false&label=l&type=DAILY&page=1&pageSize=50"
        );
    }
}
