//! Seed data for the simulator.
//!
//! # Fixture file format (JSON, camelCase; every key optional)
//!
//! ```json
//! {
//!   "version": "v1.0.3@sim0000",          // GET /version
//!   "remotePageSize": 20,                  // children per remote-scopes page (default 100)
//!   "plugins": ["dora", "github", ...],   // GET /plugins (default: dora, org, gitextractor,
//!                                          //   refdiff, webhook + the nine data sources)
//!   "autoCompleteMs": 500,                 // finish triggered pipelines by themselves…
//!   "autoCompleteStatus": "TASK_COMPLETED",//   …with this status
//!   "connections": [{
//!     "plugin": "github",
//!     "connection": {"id": 1, "name": "github-acme", "endpoint": "https://api.github.com/", ...},
//!     "test": "up",                        // or "unauthorized" / "unreachable": how the tool
//!                                          //   answers DevLake's connection test
//!     "remote": [                          // the tool's side: what remote-scopes lists
//!       {"type": "group", "id": "acme", "name": "acme", "fullName": "acme", "children": [
//!          {"type": "scope", "data": { <scope object shaped per plugin, docs/devlake-api.md> }},
//!          {"type": "group", "id": "...", "name": "...", "children": [...]}   // nested groups
//!       ]},
//!       {"type": "scope", "data": {...}}    // top-level scope (e.g. Jira boards)
//!     ],
//!     "scopeConfigs": [{"id": 1, "name": "dora-default", "entities": ["CICD"], ...}],
//!     "scopes": [ { <scope object already saved in DevLake, as PUT .../scopes takes it> } ]
//!   }],
//!   "projects": [{
//!     "name": "legacy-app", "description": "", "createdAt": "2025-01-01T00:00:00Z",
//!     "metrics": [{"pluginName": "dora", "pluginOption": {}, "enable": true}],
//!     "blueprint": { <PATCH /blueprints body: connections, cronConfig, enable, timeAfter, …> },
//!     "pipelines": [{"status": "TASK_FAILED", "createdAt": "…", "beganAt": "…",
//!                    "finishedAt": "…", "message": "…", "labels": []}]   // oldest first
//!   }],
//!   "pipelines": [ <ad-hoc pipelines, same shape; "blueprintId" optional> ]
//! }
//! ```
//!
//! A scope's id, name and fullName in remote listings are derived from `data` (GitHub
//! `githubId`, GitLab `gitlabId`, Bitbucket `bitbucketId` "workspace/slug", Azure DevOps `id`,
//! Jenkins `fullName` "folder/job", CircleCI `id`, Bamboo `planKey`, Jira `boardId`).

use std::path::Path;

use chrono::{DateTime, Duration, TimeZone, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use super::plugins::{self, DATA_SOURCE_PLUGINS, SUPPORT_PLUGINS};
use super::state::{ApiError, ApiResult, ConnectionTestMode, PipelineSeed, State};

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Fixture {
    pub version: Option<String>,
    pub remote_page_size: Option<usize>,
    pub plugins: Option<Vec<String>>,
    pub auto_complete_ms: Option<u64>,
    pub auto_complete_status: Option<String>,
    pub connections: Vec<FixtureConnection>,
    pub projects: Vec<FixtureProject>,
    pub pipelines: Vec<PipelineSeed>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct FixtureConnection {
    pub plugin: String,
    pub connection: Value,
    /// How the source tool answers DevLake's test of this connection (default `up`).
    pub test: ConnectionTestMode,
    pub remote: Vec<RemoteNode>,
    pub scope_configs: Vec<Value>,
    pub scopes: Vec<Value>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum RemoteNode {
    #[serde(rename_all = "camelCase")]
    Group {
        id: String,
        name: String,
        #[serde(default)]
        full_name: Option<String>,
        #[serde(default)]
        children: Vec<RemoteNode>,
    },
    Scope {
        data: Value,
    },
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct FixtureProject {
    pub name: String,
    pub description: String,
    pub created_at: Option<DateTime<Utc>>,
    pub metrics: Option<Value>,
    pub blueprint: Option<Map<String, Value>>,
    pub pipelines: Vec<PipelineSeed>,
}

/// Scenario generator for benchmarks and large tests.
#[derive(Debug, Clone)]
pub struct GeneratedSpec {
    /// (plugin, number of connections) — e.g. `[("github", 4)]`.
    pub connections: Vec<(String, usize)>,
    /// Remote scopes per connection (spread over `groups_per_connection` groups).
    pub repos_per_connection: usize,
    pub groups_per_connection: usize,
    /// How many of each connection's repos are already saved as scopes.
    pub scoped_per_connection: usize,
    /// Projects, each with its blueprint; blueprint i uses saved scope i when there is one.
    pub blueprints: usize,
    /// Historical (finished) pipelines spread round-robin over the blueprints.
    pub pipelines: usize,
    /// Share of historical pipelines that ended `TASK_FAILED` (deterministic spread).
    pub failed_ratio: f64,
    pub remote_page_size: usize,
    /// Time of the newest historical pipeline; older ones are one minute apart.
    pub now: DateTime<Utc>,
}

impl Default for GeneratedSpec {
    fn default() -> Self {
        GeneratedSpec {
            connections: vec![("github".into(), 1)],
            repos_per_connection: 10,
            groups_per_connection: 1,
            scoped_per_connection: 0,
            blueprints: 0,
            pipelines: 0,
            failed_ratio: 0.1,
            remote_page_size: 100,
            now: Utc.with_ymd_and_hms(2026, 5, 4, 12, 0, 0).unwrap(),
        }
    }
}

impl GeneratedSpec {
    /// 2,000 repos over 4 GitHub connections, none saved yet (automation benchmark).
    pub fn automation_bench() -> Self {
        GeneratedSpec {
            connections: vec![("github".into(), 4)],
            repos_per_connection: 500,
            groups_per_connection: 5,
            ..Self::default()
        }
    }

    /// 10,000 blueprints with 100,000 historical pipelines (monitor/metrics benchmark).
    pub fn monitor_bench() -> Self {
        GeneratedSpec {
            connections: vec![("github".into(), 1)],
            repos_per_connection: 0,
            blueprints: 10_000,
            pipelines: 100_000,
            failed_ratio: 0.05,
            ..Self::default()
        }
    }
}

impl Fixture {
    /// The local demo's world, `tests/fixtures/demo.json`: the sample plus a Bitbucket Server
    /// connection (Bitbucket projects `PAY` and `OPS`).
    pub fn demo() -> Fixture {
        serde_json::from_str(include_str!("../../fixtures/demo.json"))
            .expect("tests/fixtures/demo.json is valid")
    }

    /// The realistic seed in `tests/fixtures/sample.json` (embedded at compile time).
    pub fn sample() -> Fixture {
        serde_json::from_str(include_str!("../../fixtures/sample.json"))
            .expect("tests/fixtures/sample.json is valid")
    }

    /// Nothing but the default plugin list.
    pub fn empty() -> Fixture {
        Fixture::default()
    }

    pub fn from_file(path: impl AsRef<Path>) -> Result<Fixture, std::io::Error> {
        let text = std::fs::read_to_string(path.as_ref())?;
        serde_json::from_str(&text)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
    }

    pub fn from_json(text: &str) -> Result<Fixture, serde_json::Error> {
        serde_json::from_str(text)
    }

    /// A large synthetic scenario (see [`GeneratedSpec`]).
    pub fn generated(spec: GeneratedSpec) -> Fixture {
        let mut f = Fixture {
            remote_page_size: Some(spec.remote_page_size),
            ..Fixture::default()
        };
        let mut scoped: Vec<(String, u64, Value)> = Vec::new();
        for (plugin, count) in &spec.connections {
            for c in 0..*count {
                let cid = c as u64 + 1;
                let groups = spec.groups_per_connection.max(1);
                let mut remote: Vec<RemoteNode> = (0..groups)
                    .map(|g| RemoteNode::Group {
                        id: format!("org{cid}-{g}"),
                        name: format!("org{cid}-{g}"),
                        full_name: None,
                        children: Vec::new(),
                    })
                    .collect();
                let mut scopes = Vec::new();
                for r in 0..spec.repos_per_connection {
                    let g = r % groups;
                    let group = format!("org{cid}-{g}");
                    let n = cid * 1_000_000 + r as u64 + 1;
                    let data = scope_data(plugin, &group, &format!("repo-{r:05}"), n);
                    if r < spec.scoped_per_connection {
                        scopes.push(data.clone());
                        scoped.push((plugin.clone(), cid, data.clone()));
                    }
                    if let RemoteNode::Group { children, .. } = &mut remote[g] {
                        children.push(RemoteNode::Scope { data });
                    }
                }
                f.connections.push(FixtureConnection {
                    plugin: plugin.clone(),
                    connection: json!({"id": cid, "name": format!("{plugin}-{cid}"), "endpoint": default_endpoint(plugin), "rateLimitPerHour": 0}),
                    test: ConnectionTestMode::Up,
                    remote,
                    scope_configs: Vec::new(),
                    scopes,
                });
            }
        }
        // Generated projects are the only ones, so blueprint i gets id i + 1; seeding the
        // history globally keeps pipeline ids increasing with time, as in DevLake.
        if spec.blueprints > 0 {
            let ids: Vec<u64> = (1..=spec.blueprints as u64).collect();
            let fail_every = if spec.failed_ratio > 0.0 {
                (1.0 / spec.failed_ratio).round().max(1.0) as usize
            } else {
                0
            };
            f.pipelines = history_seeds(&ids, spec.pipelines, fail_every, spec.now);
        }
        for i in 0..spec.blueprints {
            let name = format!("gen-project-{i:05}");
            let blueprint = scoped.get(i).map(|(plugin, cid, data)| {
                let sid = plugins::scope_id_of(plugin, data.as_object().expect("object")).expect("id");
                let mut m = Map::new();
                m.insert(
                    "connections".into(),
                    json!([{"pluginName": plugin, "connectionId": cid, "scopes": [{"scopeId": sid}]}]),
                );
                m
            });
            f.projects.push(FixtureProject {
                name,
                description: String::new(),
                created_at: Some(spec.now - Duration::days(400) + Duration::seconds(i as i64)),
                metrics: Some(json!([{"pluginName": "dora", "pluginOption": {}, "enable": true}])),
                blueprint,
                pipelines: Vec::new(),
            });
        }
        f
    }
}

/// `n` finished pipelines one minute apart ending at `end`, round-robin over `blueprint_ids`,
/// every `fail_every`-th `TASK_FAILED`.
pub(crate) fn history_seeds(
    blueprint_ids: &[u64],
    n: usize,
    fail_every: usize,
    end: DateTime<Utc>,
) -> Vec<PipelineSeed> {
    let ids = if blueprint_ids.is_empty() {
        &[0][..]
    } else {
        blueprint_ids
    };
    (0..n)
        .map(|i| {
            let created = end - Duration::minutes((n - i) as i64);
            let failed = fail_every > 0 && i % fail_every == fail_every - 1;
            PipelineSeed {
                blueprint_id: ids[i % ids.len()],
                status: if failed { "TASK_FAILED" } else { "TASK_COMPLETED" }.into(),
                created_at: Some(created),
                began_at: Some(created + Duration::seconds(2)),
                finished_at: Some(created + Duration::seconds(40)),
                message: if failed {
                    "subtask collectApiPullRequests ended unexpectedly".into()
                } else {
                    String::new()
                },
                error_name: if failed {
                    "subtask collectApiPullRequests ended unexpectedly\n\tcaused by: Retry exceeded 3 times calling repos/acme/x/pulls. The last error was: Http DoAsync error calling [method:GET path:repos/acme/x/pulls]. Response: 502 Bad Gateway (502)".into()
                } else {
                    String::new()
                },
                ..PipelineSeed::default()
            }
        })
        .collect()
}

fn default_endpoint(plugin: &str) -> &'static str {
    match plugin {
        "github" => "https://api.github.com/",
        "gitlab" => "https://gitlab.com/api/v4/",
        "bitbucket" => "https://api.bitbucket.org/2.0/",
        "bitbucket_server" => "https://bitbucket.example.com/",
        "azuredevops_go" => "https://dev.azure.com/",
        "jenkins" => "https://jenkins.example.com/",
        "circleci" => "https://circleci.com/api/",
        "bamboo" => "https://bamboo.example.com/",
        "jira" => "https://example.atlassian.net/rest/",
        _ => "",
    }
}

/// A plugin-shaped scope object (docs/devlake-api.md) for generated scenarios.
pub fn scope_data(plugin: &str, group: &str, name: &str, n: u64) -> Value {
    let zero = "0001-01-01T00:00:00Z";
    let common = json!({"connectionId": 0, "createdAt": zero, "updatedAt": zero,
        "_raw_data_params": "", "_raw_data_table": "", "_raw_data_id": 0, "_raw_data_remark": ""});
    let specific = match plugin {
        "github" => json!({"githubId": n, "name": name, "fullName": format!("{group}/{name}"),
            "HTMLUrl": format!("https://github.com/{group}/{name}"), "description": "", "ownerId": 1000,
            "language": "Rust", "parentId": 0, "parentHtmlUrl": "",
            "cloneUrl": format!("https://github.com/{group}/{name}.git"),
            "createdDate": "2021-03-01T10:00:00Z", "updatedDate": "2026-04-01T10:00:00Z"}),
        "gitlab" => {
            json!({"gitlabId": n, "name": name, "pathWithNamespace": format!("{group}/{name}"),
            "webUrl": format!("https://gitlab.com/{group}/{name}"),
            "httpUrlToRepo": format!("https://gitlab.com/{group}/{name}.git"),
            "defaultBranch": "main", "visibility": "private", "archived": false,
            "createdDate": "2021-03-01T10:00:00Z", "updatedDate": "2026-04-01T10:00:00Z"})
        }
        "bitbucket" => json!({"bitbucketId": format!("{group}/{name}"), "name": name,
            "HTMLUrl": format!("https://bitbucket.org/{group}/{name}"), "owner": group,
            "cloneUrl": format!("https://bitbucket.org/{group}/{name}.git"),
            "createdDate": "2021-03-01T10:00:00Z", "updatedDate": "2026-04-01T10:00:00Z"}),
        // What `BitbucketServerApiRepo.ConvertApiScope` gives, plus the numeric repository id as
        // `id` (the sim moves it to the listing entry's id).
        "bitbucket_server" => {
            json!({"id": n, "bitbucketId": format!("{}/repos/{name}", group.to_uppercase()),
            "name": name, "description": "",
            "HTMLUrl": format!("https://bitbucket.example.com/projects/{}/repos/{name}/browse", group.to_uppercase()),
            "cloneUrl": format!("https://bitbucket.example.com/scm/{}/{name}.git", group.to_lowercase())})
        }
        "azuredevops_go" => {
            json!({"id": format!("00000000-0000-0000-0000-{n:012}"), "type": "TfsGit",
            "name": name, "url": format!("https://dev.azure.com/{group}/_apis/git/repositories/{name}"),
            "remoteUrl": format!("https://{group}@dev.azure.com/{group}/{name}/_git/{name}"),
            "OrganizationId": group, "ProjectId": format!("{group}-project"), "ExternalId": "",
            "IsFork": false, "IsPrivate": true})
        }
        "jenkins" => {
            json!({"fullName": format!("{group}/{name}"), "name": name, "path": format!("job/{group}/"),
            "class": "org.jenkinsci.plugins.workflow.job.WorkflowJob", "color": "blue",
            "base": "", "url": format!("https://jenkins.example.com/job/{group}/job/{name}/"),
            "description": "", "primaryView": ""})
        }
        "circleci" => json!({"id": format!("{n:08x}-c1rc-4c1e-9000-000000000000"),
            "slug": format!("gh/{group}/{name}"), "name": name, "organizationId": format!("org-{group}")}),
        "bamboo" => json!({"planKey": format!("{}-{}", group.to_uppercase(), n), "name": name,
            "projectKey": group.to_uppercase(), "projectName": group, "shortName": name,
            "shortKey": format!("P{n}"), "enabled": true, "type": "chain",
            "href": format!("https://bamboo.example.com/rest/api/latest/plan/{}-{}", group.to_uppercase(), n)}),
        "jira" => json!({"boardId": n, "projectId": n * 10, "name": name,
            "self": format!("https://example.atlassian.net/rest/agile/1.0/board/{n}"), "type": "scrum", "jql": ""}),
        _ => json!({"id": n.to_string(), "name": name}),
    };
    let mut out = common.as_object().cloned().unwrap_or_default();
    out.extend(specific.as_object().cloned().unwrap_or_default());
    Value::Object(out)
}

fn add_remote(
    state: &mut State,
    plugin: &str,
    cid: u64,
    parent: Option<&str>,
    nodes: Vec<RemoteNode>,
) -> ApiResult<()> {
    for node in nodes {
        match node {
            RemoteNode::Group {
                id,
                name,
                full_name,
                children,
            } => {
                state.add_remote_group(plugin, cid, parent, &id, &name, full_name.as_deref())?;
                add_remote(state, plugin, cid, Some(&id), children)?;
            }
            RemoteNode::Scope { data } => {
                state.add_remote_scope(plugin, cid, parent, data)?;
            }
        }
    }
    Ok(())
}

/// Loads a fixture into empty state. Errors name the offending fixture entry.
pub(crate) fn load(state: &mut State, f: Fixture) -> ApiResult<()> {
    let ctx =
        |what: String| move |e: ApiError| ApiError::bad(format!("fixture {what}: {}", e.message));
    state.plugins = match f.plugins {
        Some(p) => p,
        None => SUPPORT_PLUGINS
            .iter()
            .chain(DATA_SOURCE_PLUGINS.iter())
            .map(|s| s.to_string())
            .collect(),
    };
    for c in f.connections {
        if !plugins::is_data_source(&c.plugin) {
            return Err(ApiError::bad(format!(
                "fixture: unknown plugin {}",
                c.plugin
            )));
        }
        let what = format!("connection {} {}", c.plugin, c.connection);
        let cid = state
            .add_connection(&c.plugin, c.connection)
            .map_err(ctx(what.clone()))?;
        state
            .set_connection_test(&c.plugin, cid, c.test)
            .map_err(ctx(what.clone()))?;
        add_remote(state, &c.plugin, cid, None, c.remote).map_err(ctx(what.clone()))?;
        for sc in c.scope_configs {
            state
                .create_scope_config(&c.plugin, cid, sc)
                .map_err(ctx(what.clone()))?;
        }
        for (i, s) in c.scopes.into_iter().enumerate() {
            state
                .put_scope(&c.plugin, cid, i, s)
                .map_err(ctx(what.clone()))?;
        }
    }
    // Fixture PUTs are not client traffic.
    state.github_api_fill_calls = 0;
    let mut plan_cache = std::collections::HashMap::new();
    let mut history: Vec<PipelineSeed> = Vec::new();
    for p in f.projects {
        let what = format!("project {}", p.name);
        let at = p.created_at.unwrap_or_else(|| state.now());
        let mut body = json!({"name": p.name, "description": p.description});
        if let Some(m) = p.metrics {
            body["metrics"] = m;
        }
        state.create_project(body, at).map_err(ctx(what.clone()))?;
        let bp_id = super::state::wire_blueprint(state, &p.name, p.blueprint.unwrap_or_default())
            .map_err(ctx(what.clone()))?;
        if let Some(bp) = state.blueprints.get_mut(&bp_id) {
            bp.created_at = at;
            bp.updated_at = at;
        }
        history.extend(p.pipelines.into_iter().map(|mut seed| {
            seed.blueprint_id = bp_id;
            seed
        }));
    }
    // DevLake ids grow with creation time: seed everything in time order (stable for ties).
    history.extend(f.pipelines);
    history.sort_by_key(|s| s.created_at);
    for seed in history {
        state
            .seed_pipeline(seed, &mut plan_cache)
            .map_err(ctx("pipelines".into()))?;
    }
    Ok(())
}
