//! Pipelines: listing with DevLake's filters (mixed key casing), reading one, rerunning its
//! failed tasks and cancelling it.

use futures::stream::BoxStream;
use reqwest::Method;

use super::client::{DevLakeClient, Result};
use super::http::Accept;
use super::models::*;

impl DevLakeClient {
    pub async fn pipelines_page(
        &self,
        query: &PipelineQuery,
        page: u32,
        page_size: u32,
    ) -> Result<PipelinesPage> {
        self.get_json("/pipelines", &pipeline_query(query, page, page_size))
            .await
    }

    /// Newest first (`id DESC`); stop consuming early to avoid fetching further pages.
    pub fn pipelines<'a>(&'a self, query: &'a PipelineQuery) -> BoxStream<'a, Result<Pipeline>> {
        self.paged(self.inner.page_size, move |page, size| async move {
            let p = self.pipelines_page(query, page, size).await?;
            Ok((p.count, p.pipelines))
        })
    }

    pub async fn pipeline(&self, id: u64) -> Result<Pipeline> {
        self.get_json(&format!("/pipelines/{id}"), &[]).await
    }

    pub async fn rerun_pipeline(&self, id: u64) -> Result<Vec<Task>> {
        let path = format!("/pipelines/{id}/rerun");
        let answer = self
            .execute(
                Method::POST,
                &path,
                &[],
                Some(b"{}".to_vec()),
                Accept::Success,
            )
            .await?;
        let tasks: Option<Vec<Task>> = self.decode(&Method::POST, &path, &answer)?;
        Ok(tasks.unwrap_or_default())
    }

    /// `DELETE /pipelines/{id}` (DevLake's `CancelPipeline`): a queued pipeline is cancelled at
    /// once, a running one has its tasks' contexts cancelled and ends `TASK_CANCELLED` when they
    /// stop. A 200 does not prove the pipeline stopped (a task lost in a restart is skipped):
    /// look at the pipeline afterwards. Idempotent, so retried like a GET.
    pub async fn cancel_pipeline(&self, id: u64) -> Result<()> {
        self.execute(
            Method::DELETE,
            &format!("/pipelines/{id}"),
            &[],
            None,
            Accept::Success,
        )
        .await?;
        Ok(())
    }
}

/// Query of `GET /pipelines`: `blueprint_id` is snake_case, `pageSize` camelCase.
pub fn pipeline_query(
    query: &PipelineQuery,
    page: u32,
    page_size: u32,
) -> Vec<(&'static str, String)> {
    let mut q = Vec::new();
    if let Some(status) = &query.status {
        q.push(("status", status.clone()));
    }
    if query.pending {
        q.push(("pending", "1".to_string()));
    }
    if let Some(id) = query.blueprint_id {
        q.push(("blueprint_id", id.to_string()));
    }
    if let Some(label) = &query.label {
        q.push(("label", label.clone()));
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
    fn pipeline_query_uses_devlakes_mixed_key_casing() {
        let q = PipelineQuery {
            status: Some("TASK_FAILED".into()),
            pending: true,
            blueprint_id: Some(7),
            label: Some("managed by/x".into()),
        };
        let rendered = path_with_query("/pipelines", &pipeline_query(&q, 3, 500));
        assert_eq!(
            rendered,
            "/pipelines?status=TASK_FAILED&pending=1&blueprint_id=7&label=managed%20by%2Fx&page=3&pageSize=500"
        );
        let empty = path_with_query(
            "/pipelines",
            &pipeline_query(&PipelineQuery::default(), 0, 0),
        );
        assert_eq!(empty, "/pipelines?page=1&pageSize=1");
    }
}
