//! Projects: listing (paged and streamed), reading one by name, creating and patching them.
//! A project name is one encoded path segment, whatever it contains.

use futures::stream::BoxStream;
use reqwest::Method;
use serde_json::Value;

use super::client::{DevLakeClient, Result};
use super::http::{encode_segment, may_have_committed};
use super::models::*;

impl DevLakeClient {
    pub async fn projects_page(&self, page: u32, page_size: u32) -> Result<ProjectsPage> {
        let query = [
            ("page", page.max(1).to_string()),
            ("pageSize", page_size.max(1).to_string()),
        ];
        self.get_json("/projects", &query).await
    }

    pub fn projects(&self) -> BoxStream<'_, Result<Project>> {
        self.paged(self.inner.page_size, move |page, size| async move {
            let p = self.projects_page(page, size).await?;
            Ok((p.count, p.projects))
        })
    }

    fn project_path(name: &str) -> String {
        format!("/projects/{}", encode_segment(name))
    }

    /// `None` on 404. The name is percent-encoded in the path.
    pub async fn project(&self, name: &str) -> Result<Option<Project>> {
        self.get_optional(&Self::project_path(name)).await
    }

    /// Creates a project; if the POST times out or fails with 5xx, looks the name up before
    /// deciding it failed (never blindly re-POSTs). A 400 "already exists" is returned as
    /// `DevLakeError::Status { status: 400, .. }`.
    pub async fn create_project(&self, input: &ProjectInput) -> Result<Project> {
        let error = match self.send_json(Method::POST, "/projects", input).await {
            Ok(created) => return Ok(created),
            Err(e) if may_have_committed(&e) => e,
            Err(e) => return Err(e),
        };
        match self.project(&input.name).await {
            Ok(Some(found)) => {
                tracing::info!(
                    project = %input.name,
                    error = %error,
                    "project create failed but DevLake had committed it"
                );
                Ok(found)
            }
            Ok(None) => Err(error),
            Err(lookup) => {
                tracing::warn!(project = %input.name, error = %lookup, "lookup after failed project create failed");
                Err(error)
            }
        }
    }

    pub async fn patch_project(&self, name: &str, patch: &Value) -> Result<Project> {
        self.send_json(Method::PATCH, &Self::project_path(name), patch)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn project_names_are_one_encoded_segment() {
        assert_eq!(encode_segment("github/acme/api"), "github%2Facme%2Fapi");
        assert_eq!(encode_segment("a / b"), "a%20%2F%20b");
        assert_eq!(encode_segment("A-z_0.9~"), "A-z_0.9~");
        assert_eq!(encode_segment("ü?#%&+"), "%C3%BC%3F%23%25%26%2B");
        assert_eq!(
            DevLakeClient::project_path("github/acme/api"),
            "/projects/github%2Facme%2Fapi"
        );
    }
}
