//! Per-plugin knowledge taken from DevLake's plugin models (scope id fields, field spellings).
//! Written from DevLake's source, deliberately not from the client's models.

use serde_json::{Map, Value};

/// Data-source plugins the simulator serves under `/plugins/{p}/...`.
pub const DATA_SOURCE_PLUGINS: [&str; 9] = [
    "github",
    "gitlab",
    "bitbucket",
    "bitbucket_server",
    "azuredevops_go",
    "jenkins",
    "circleci",
    "bamboo",
    "jira",
];

/// Plugins listed by `GET /plugins` besides the data sources (metric and helper plugins).
pub const SUPPORT_PLUGINS: [&str; 5] = ["dora", "org", "gitextractor", "refdiff", "webhook"];

pub(crate) fn is_data_source(plugin: &str) -> bool {
    DATA_SOURCE_PLUGINS.contains(&plugin)
}

/// The JSON field holding the scope's primary key.
pub(crate) fn id_field(plugin: &str) -> &'static str {
    match plugin {
        "github" => "githubId",
        "gitlab" => "gitlabId",
        // Bitbucket Server's `BitbucketServerRepo.BitbucketId` is `<PROJECT KEY>/repos/<slug>`
        // (`ConvertApiScope` in plugins/bitbucket_server/models/repo.go).
        "bitbucket" | "bitbucket_server" => "bitbucketId",
        "jenkins" => "fullName",
        "bamboo" => "planKey",
        "jira" => "boardId",
        _ => "id", // azuredevops_go, circleci
    }
}

/// Whether the id field is an integer in the scope JSON (the `scopeId` string is its decimal form).
pub(crate) fn id_is_int(plugin: &str) -> bool {
    matches!(plugin, "github" | "gitlab" | "jira")
}

/// Jenkins, Bitbucket and Bitbucket Server register `scopes/*scopeId` (bitbucket_server's
/// `GetApiResources` in impl/impl.go), so their ids may contain a raw `/`.
pub(crate) fn wildcard_scope_route(plugin: &str) -> bool {
    matches!(plugin, "jenkins" | "bitbucket" | "bitbucket_server")
}

/// Bitbucket Server's remote listing gives a repository the numeric repository id as its entry
/// `id` (`listBitbucketServerRepos`: `Id: fmt.Sprintf("%v", r.Id)`) while the scope id is
/// `data.bitbucketId`; every other plugin's entry id is the scope id.
pub(crate) fn remote_id_differs(plugin: &str) -> bool {
    plugin == "bitbucket_server"
}

/// Connection model name used in DevLake's "not found" messages.
pub(crate) fn connection_model(plugin: &str) -> &'static str {
    match plugin {
        "github" => "GithubConnection",
        "gitlab" => "GitlabConnection",
        "bitbucket" => "BitbucketConnection",
        "bitbucket_server" => "BitbucketServerConnection",
        "azuredevops_go" => "AzuredevopsConnection",
        "jenkins" => "JenkinsConnection",
        "circleci" => "CircleciConnection",
        "bamboo" => "BambooConnection",
        "jira" => "JiraConnection",
        _ => "Connection",
    }
}

pub(crate) fn scope_model(plugin: &str) -> &'static str {
    match plugin {
        "github" => "GithubRepo",
        "gitlab" => "GitlabProject",
        "bitbucket" => "BitbucketRepo",
        "bitbucket_server" => "BitbucketServerRepo",
        "azuredevops_go" => "AzuredevopsRepo",
        "jenkins" => "JenkinsJob",
        "circleci" => "CircleciProject",
        "bamboo" => "BambooPlan",
        "jira" => "JiraBoard",
        _ => "Scope",
    }
}

const COMMON_SCOPE_FIELDS: [&str; 8] = [
    "connectionId",
    "scopeConfigId",
    "createdAt",
    "updatedAt",
    "_raw_data_params",
    "_raw_data_table",
    "_raw_data_id",
    "_raw_data_remark",
];

/// Exact JSON spellings of each plugin's scope fields. Incoming keys are matched to these
/// case-insensitively (DevLake decodes with mapstructure), so `htmlUrl` lands in `HTMLUrl`.
fn scope_fields(plugin: &str) -> &'static [&'static str] {
    match plugin {
        "github" => &[
            "githubId",
            "name",
            "fullName",
            "HTMLUrl",
            "description",
            "ownerId",
            "language",
            "parentId",
            "parentHtmlUrl",
            "cloneUrl",
            "createdDate",
            "updatedDate",
        ],
        "gitlab" => &[
            "gitlabId",
            "name",
            "description",
            "defaultBranch",
            "pathWithNamespace",
            "webUrl",
            "creatorId",
            "visibility",
            "openIssuesCount",
            "starCount",
            "forkedFromProjectId",
            "forkedFromProjectWebUrl",
            "httpUrlToRepo",
            "createdDate",
            "updatedDate",
            "archived",
        ],
        "bitbucket" => &[
            "bitbucketId",
            "name",
            "HTMLUrl",
            "description",
            "owner",
            "cloneUrl",
            "createdDate",
            "updatedDate",
        ],
        // `BitbucketServerRepo` (plugins/bitbucket_server/models/repo.go).
        "bitbucket_server" => &[
            "bitbucketId",
            "name",
            "HTMLUrl",
            "description",
            "cloneUrl",
            "createdDate",
            "updatedDate",
        ],
        "azuredevops_go" => &[
            "id",
            "type",
            "name",
            "url",
            "remoteUrl",
            "OrganizationId",
            "ProjectId",
            "ExternalId",
            "IsFork",
            "IsPrivate",
        ],
        "jenkins" => &[
            "fullName",
            "name",
            "path",
            "class",
            "color",
            "base",
            "url",
            "description",
            "primaryView",
        ],
        "circleci" => &["id", "slug", "name", "organizationId"],
        "bamboo" => &[
            "planKey",
            "name",
            "projectKey",
            "projectName",
            "description",
            "shortName",
            "shortKey",
            "type",
            "enabled",
            "href",
            "rel",
        ],
        "jira" => &["boardId", "projectId", "name", "self", "type", "jql"],
        _ => &[],
    }
}

/// Rename keys to their canonical spelling (mapstructure is case-insensitive).
pub(crate) fn canonicalize_scope(plugin: &str, row: Map<String, Value>) -> Map<String, Value> {
    let mut out = Map::with_capacity(row.len());
    for (k, v) in row {
        let canonical = COMMON_SCOPE_FIELDS
            .iter()
            .chain(scope_fields(plugin))
            .find(|c| c.eq_ignore_ascii_case(&k))
            .map(|c| c.to_string())
            .unwrap_or(k);
        out.insert(canonical, v);
    }
    out
}

/// The scope's `scopeId` string, or None when the id field is missing or zero/empty
/// (DevLake's `validate:"required"`).
pub(crate) fn scope_id_of(plugin: &str, row: &Map<String, Value>) -> Option<String> {
    match row.get(id_field(plugin))? {
        Value::Number(n) => match n.as_u64() {
            Some(0) | None => None,
            Some(v) => Some(v.to_string()),
        },
        Value::String(s) if s.is_empty() => None,
        Value::String(s) if id_is_int(plugin) => match s.parse::<u64>() {
            Ok(0) | Err(_) => None,
            Ok(v) => Some(v.to_string()),
        },
        Value::String(s) => Some(s.clone()),
        _ => None,
    }
}

/// Store int ids as JSON numbers even when sent as strings (weakly typed decoding).
pub(crate) fn normalize_id(plugin: &str, row: &mut Map<String, Value>, scope_id: &str) {
    let field = id_field(plugin);
    if id_is_int(plugin) {
        if let Ok(v) = scope_id.parse::<u64>() {
            row.insert(field.to_string(), Value::from(v));
        }
    } else {
        row.insert(field.to_string(), Value::from(scope_id));
    }
}

/// `name` and `fullName` shown for a scope in remote-scope listings.
pub(crate) fn scope_names(
    plugin: &str,
    data: &Map<String, Value>,
    scope_id: &str,
) -> (String, String) {
    let s = |k: &str| data.get(k).and_then(Value::as_str).map(str::to_string);
    let name = s("name").unwrap_or_else(|| scope_id.to_string());
    let full = match plugin {
        "gitlab" => s("pathWithNamespace"),
        "github" | "jenkins" => s("fullName"),
        "bitbucket" => Some(scope_id.to_string()),
        // `listBitbucketServerRepos` lists a repository with `FullName: r.Name`.
        "bitbucket_server" => s("name"),
        "circleci" => s("slug"),
        _ => None,
    }
    .unwrap_or_else(|| name.clone());
    (name, full)
}

/// `_raw_data_params` DevLake stores on PUT: the JSON of the plugin's scope params.
pub(crate) fn raw_data_params(
    plugin: &str,
    connection_id: u64,
    row: &Map<String, Value>,
    scope_id: &str,
) -> String {
    let params = match plugin {
        "github" => serde_json::json!({
            "ConnectionId": connection_id,
            "Name": row.get("fullName").and_then(Value::as_str).unwrap_or(""),
        }),
        "gitlab" => {
            serde_json::json!({"ConnectionId": connection_id, "ProjectId": row.get("gitlabId")})
        }
        // `BitbucketServerRepo.ScopeParams` → `BitbucketServerApiParams{ConnectionId, FullName}`.
        "bitbucket" | "bitbucket_server" => {
            serde_json::json!({"ConnectionId": connection_id, "FullName": scope_id})
        }
        "jenkins" => serde_json::json!({"ConnectionId": connection_id, "FullName": scope_id}),
        "jira" => serde_json::json!({"ConnectionId": connection_id, "BoardId": row.get("boardId")}),
        "bamboo" => serde_json::json!({"ConnectionId": connection_id, "PlanKey": scope_id}),
        "circleci" => {
            serde_json::json!({"ConnectionId": connection_id, "ProjectSlug": row.get("slug")})
        }
        _ => serde_json::json!({"ConnectionId": connection_id, "RepoId": scope_id}),
    };
    params.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn canonicalizes_case_insensitively() {
        let row = json!({"htmlUrl": "u", "githubid": 7, "Other": 1});
        let out = canonicalize_scope("github", row.as_object().unwrap().clone());
        assert_eq!(out.get("HTMLUrl"), Some(&json!("u")));
        assert_eq!(out.get("githubId"), Some(&json!(7)));
        assert_eq!(out.get("Other"), Some(&json!(1)));
    }

    #[test]
    fn scope_ids() {
        let gh = json!({"githubId": 12});
        assert_eq!(
            scope_id_of("github", gh.as_object().unwrap()),
            Some("12".into())
        );
        let gh0 = json!({"githubId": 0});
        assert_eq!(scope_id_of("github", gh0.as_object().unwrap()), None);
        let bb = json!({"bitbucketId": "ws/slug"});
        assert_eq!(
            scope_id_of("bitbucket", bb.as_object().unwrap()),
            Some("ws/slug".into())
        );
        let jira = json!({"boardId": "5"});
        assert_eq!(
            scope_id_of("jira", jira.as_object().unwrap()),
            Some("5".into())
        );
    }
}
