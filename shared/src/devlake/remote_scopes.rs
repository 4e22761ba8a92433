//! Remote scopes: what a connection could collect (`GET .../remote-scopes`), listed one page
//! at a time or walked as a stream through every group and page token.

use std::collections::HashSet;

use async_stream::try_stream;
use futures::stream::{BoxStream, StreamExt};

use super::client::{DevLakeClient, Result};
use super::models::*;

impl DevLakeClient {
    /// One page of remote scopes; `group_id` None = top level, `page_token` None = first page.
    pub async fn remote_scopes_page(
        &self,
        plugin: &str,
        connection_id: u64,
        group_id: Option<&str>,
        page_token: Option<&str>,
    ) -> Result<RemoteScopesPage> {
        let path = format!(
            "{}/remote-scopes",
            Self::connection_path(plugin, connection_id)
        );
        let mut query = Vec::new();
        if let Some(group) = group_id.filter(|g| !g.is_empty()) {
            query.push(("groupId", group.to_string()));
        }
        if let Some(token) = page_token.filter(|t| !t.is_empty()) {
            query.push(("pageToken", token.to_string()));
        }
        self.get_json(&path, &query).await
    }

    /// Every `scope` child under every group, recursively, following `nextPageToken` to `""`.
    ///
    /// Depth-first: a group's own pages are listed completely, then its subgroups in the order
    /// DevLake gave them. A group id seen twice is not walked again, a page token repeated
    /// within a group ends that group, and a scope id seen twice (a GitHub App lists the same
    /// repositories under every owner) is yielded once.
    pub fn remote_scopes<'a>(
        &'a self,
        plugin: &'a str,
        connection_id: u64,
    ) -> BoxStream<'a, Result<RemoteScopeChild>> {
        try_stream! {
            let mut stack: Vec<Option<String>> = vec![None];
            let mut groups_seen: HashSet<String> = HashSet::new();
            let mut scopes_seen: HashSet<String> = HashSet::new();
            while let Some(group) = stack.pop() {
                let mut token: Option<String> = None;
                let mut tokens_seen: HashSet<String> = HashSet::new();
                let mut subgroups = Vec::new();
                loop {
                    let page = self
                        .remote_scopes_page(plugin, connection_id, group.as_deref(), token.as_deref())
                        .await?;
                    for child in page.children {
                        if child.is_group() {
                            if child.id.is_empty() || !groups_seen.insert(child.id.clone()) {
                                tracing::warn!(
                                    plugin,
                                    connection_id,
                                    group_id = %child.id,
                                    "remote-scopes group listed twice; not walking it again"
                                );
                                continue;
                            }
                            subgroups.push(child.id);
                        } else if child.is_scope() && scopes_seen.insert(child.id.clone()) {
                            yield child;
                        }
                    }
                    if page.next_page_token.is_empty() {
                        break;
                    }
                    if !tokens_seen.insert(page.next_page_token.clone()) {
                        tracing::warn!(
                            plugin,
                            connection_id,
                            group_id = group.as_deref().unwrap_or(""),
                            "remote-scopes nextPageToken repeated; stopping this group"
                        );
                        break;
                    }
                    token = Some(page.next_page_token);
                }
                stack.extend(subgroups.into_iter().rev().map(Some));
            }
        }
        .boxed()
    }
}
