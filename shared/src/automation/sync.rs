//! Sync: which remote scopes DevLake does not have yet, and the rows that add them.

use std::collections::HashSet;

use serde_json::{Map, Value};

use crate::devlake::models::{scope_id_field, RemoteScopeChild, Scope, ScopeListItem};

use super::filter::ScopeFilter;

/// A scope the tool manages (it passed the filters and DevLake has it, or will in a dry run).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManagedScope {
    pub plugin: String,
    pub connection_id: u64,
    pub connection_name: String,
    pub scope_id: String,
    pub name: String,
    /// `{fullName}`: the remote child's `fullName`; for a scope not seen remotely, the stored
    /// `fullName`/`pathWithNamespace`, else its name.
    pub full_name: String,
    /// Whether the names can be trusted for naming a *new* project: they come from this run's
    /// remote listing, or the listing completed (so the scope is simply not listed remotely).
    /// After a failed listing a new project waits for the next run rather than risk a name that
    /// differs from the one a complete listing would give.
    pub names_reliable: bool,
    /// The scope already references some scope config.
    pub has_scope_config: bool,
}

/// The `scopeId` string of a remote child: from its data (the id the PUT will store), else the
/// child's own `id`.
pub fn remote_scope_id(plugin: &str, child: &RemoteScopeChild) -> String {
    child
        .data
        .as_ref()
        .and_then(|d| Scope(d.clone()).scope_id(plugin))
        .unwrap_or_else(|| child.id.clone())
}

/// The name globs and project names use for a remote child. Bitbucket Server lists a
/// repository under its display name alone, which repeats across Bitbucket projects; its scope's
/// full name in DevLake (`BitbucketServerRepo.ScopeFullName`) is the scope id
/// `<PROJECT KEY>/repos/<slug>`, so that is used.
pub fn remote_full_name<'a>(plugin: &str, child: &'a RemoteScopeChild) -> &'a str {
    if plugin == "bitbucket_server" {
        if let Some(id) = child
            .data
            .as_ref()
            .and_then(|d| d.get("bitbucketId"))
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
        {
            return id;
        }
    }
    if child.full_name.is_empty() {
        &child.name
    } else {
        &child.full_name
    }
}

/// The full name of a stored scope that was not seen remotely.
pub fn stored_full_name(plugin: &str, scope: &Scope) -> String {
    if plugin == "bitbucket_server" {
        if let Some(id) = scope.scope_id(plugin) {
            return id;
        }
    }
    scope
        .full_name()
        .or_else(|| scope.name())
        .unwrap_or_default()
        .to_string()
}

/// The `PUT .../scopes` row for a remote child: its `data` object as DevLake returned it, plus
/// `connectionId`, the id field if the data lacks it, the tool's `scopeConfigId` and, for GitHub,
/// the camelCase `htmlUrl`/`cloneUrl` that keep DevLake from calling GitHub to fill them.
pub fn scope_row(
    plugin: &str,
    connection_id: u64,
    child: &RemoteScopeChild,
    scope_config_id: Option<u64>,
) -> Result<Value, String> {
    let mut row: Map<String, Value> = match &child.data {
        Some(Value::Object(o)) => o.clone(),
        Some(other) => {
            return Err(format!(
                "remote scope {:?} carries data that is not an object: {other}",
                child.id
            ))
        }
        None => return Err(format!("remote scope {:?} carries no data", child.id)),
    };
    row.insert("connectionId".into(), Value::from(connection_id));
    let id_field = scope_id_field(plugin).ok_or_else(|| format!("unsupported plugin {plugin}"))?;
    let id_missing = match row.get(id_field) {
        None | Some(Value::Null) => true,
        Some(Value::String(s)) => s.is_empty(),
        Some(Value::Number(n)) => n.as_u64() == Some(0),
        _ => false,
    };
    if id_missing {
        let numeric = matches!(plugin, "github" | "gitlab" | "jira");
        let value = if numeric {
            Value::from(child.id.parse::<u64>().map_err(|_| {
                format!(
                    "remote scope id {:?} is not the number {plugin} expects",
                    child.id
                )
            })?)
        } else {
            Value::String(child.id.clone())
        };
        row.insert(id_field.into(), value);
    }
    if let Some(id) = scope_config_id {
        let has = row
            .get("scopeConfigId")
            .and_then(Value::as_u64)
            .is_some_and(|v| v != 0);
        if !has {
            row.insert("scopeConfigId".into(), Value::from(id));
        }
    }
    if plugin == "github" {
        fill_github_urls(&mut row);
    }
    Ok(Value::Object(row))
}

/// DevLake v1.0.3+ calls GitHub for every row without non-empty camelCase `htmlUrl` *or*
/// `cloneUrl`; remote-scopes data has the Go-cased `HTMLUrl`.
fn fill_github_urls(row: &mut Map<String, Value>) {
    let non_empty = |v: Option<&Value>| {
        v.and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    };
    let html = non_empty(row.get("htmlUrl"))
        .or_else(|| non_empty(row.get("HTMLUrl")))
        .or_else(|| non_empty(row.get("htmlURL")));
    if let Some(html) = &html {
        row.insert("htmlUrl".into(), Value::String(html.clone()));
    }
    if non_empty(row.get("cloneUrl")).is_none() {
        if let Some(html) = &html {
            row.insert("cloneUrl".into(), Value::String(format!("{html}.git")));
        }
    }
}

/// Remote children to add: scopes that pass the filter and DevLake does not have, once each.
pub fn missing_scopes<'a>(
    plugin: &str,
    connection_id: u64,
    filter: &ScopeFilter,
    remote: &'a [RemoteScopeChild],
    existing: &HashSet<String>,
) -> Vec<&'a RemoteScopeChild> {
    let mut seen = HashSet::new();
    remote
        .iter()
        .filter(|c| c.is_scope())
        .filter(|c| filter.matches(plugin, connection_id, remote_full_name(plugin, c)))
        .filter(|c| {
            let id = remote_scope_id(plugin, c);
            !existing.contains(&id) && seen.insert(id)
        })
        .collect()
}

/// Scope ids of a scope listing.
pub fn existing_ids(plugin: &str, items: &[ScopeListItem]) -> HashSet<String> {
    items
        .iter()
        .filter_map(|i| i.scope.scope_id(plugin))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn child(id: &str, full: &str, data: Value) -> RemoteScopeChild {
        RemoteScopeChild {
            kind: "scope".into(),
            parent_id: None,
            id: id.into(),
            name: full.rsplit('/').next().unwrap().into(),
            full_name: full.into(),
            data: Some(data),
        }
    }

    #[test]
    fn github_row_keeps_data_and_adds_camel_case_urls() {
        let c = child(
            "123456",
            "my-org/svc-a",
            json!({"connectionId": 0, "githubId": 123456, "name": "svc-a", "fullName": "my-org/svc-a",
                   "HTMLUrl": "https://github.com/my-org/svc-a", "cloneUrl": "https://github.com/my-org/svc-a.git",
                   "ownerId": 42, "createdDate": "2021-03-01T10:00:00Z"}),
        );
        let row = scope_row("github", 7, &c, Some(3)).unwrap();
        assert_eq!(row["connectionId"], 7);
        assert_eq!(row["githubId"], 123456);
        assert_eq!(row["HTMLUrl"], "https://github.com/my-org/svc-a");
        assert_eq!(row["htmlUrl"], "https://github.com/my-org/svc-a");
        assert_eq!(row["cloneUrl"], "https://github.com/my-org/svc-a.git");
        assert_eq!(row["ownerId"], 42);
        assert_eq!(row["scopeConfigId"], 3);

        let bare = child(
            "5",
            "o/r",
            json!({"githubId": 5, "HTMLUrl": "https://github.com/o/r"}),
        );
        let row = scope_row("github", 1, &bare, None).unwrap();
        assert_eq!(row["cloneUrl"], "https://github.com/o/r.git");
        assert!(row.get("scopeConfigId").is_none());
    }

    #[test]
    fn azure_pascal_case_and_slash_ids_survive() {
        let az = child(
            "repo-guid",
            "org/proj/repo",
            json!({"id": "repo-guid", "type": "TfsGit", "name": "repo", "OrganizationId": "org", "ProjectId": "proj", "IsPrivate": true}),
        );
        let row = scope_row("azuredevops_go", 2, &az, Some(1)).unwrap();
        assert_eq!(row["OrganizationId"], "org");
        assert_eq!(row["IsPrivate"], true);
        assert!(row.get("organizationId").is_none());
        let jenkins = child("folder/job", "folder/job", json!({"name": "job"}));
        let row = scope_row("jenkins", 1, &jenkins, None).unwrap();
        assert_eq!(row["fullName"], "folder/job");
        assert_eq!(remote_scope_id("jenkins", &jenkins), "folder/job");
        let jira = child("12", "Board", json!({"name": "Board"}));
        assert_eq!(scope_row("jira", 1, &jira, None).unwrap()["boardId"], 12);
    }

    #[test]
    fn rows_without_usable_data_are_refused() {
        let mut c = child("1", "a/b", json!(null));
        c.data = None;
        assert!(scope_row("github", 1, &c, None)
            .unwrap_err()
            .contains("no data"));
        let c = child("x", "a/b", json!({}));
        assert!(scope_row("github", 1, &c, None)
            .unwrap_err()
            .contains("not the number"));
    }

    #[test]
    fn only_new_filtered_scopes_are_missing() {
        let remote = vec![
            child("1", "acme/api", json!({"githubId": 1})),
            child("2", "acme/web", json!({"githubId": 2})),
            child("3", "acme/archive-old", json!({"githubId": 3})),
            child("2", "acme/web", json!({"githubId": 2})),
            RemoteScopeChild {
                kind: "group".into(),
                parent_id: None,
                id: "acme".into(),
                name: "acme".into(),
                full_name: "acme".into(),
                data: None,
            },
        ];
        let filter = ScopeFilter::new(&[], &["github/*/acme/archive-*".to_string()]).unwrap();
        let existing: HashSet<String> = ["1".to_string()].into();
        let missing = missing_scopes("github", 1, &filter, &remote, &existing);
        assert_eq!(
            missing.iter().map(|c| c.id.as_str()).collect::<Vec<_>>(),
            vec!["2"]
        );
    }
}
