//! The DevLake client against the DevLake simulator over real HTTP, and secret resolution
//! against a Secrets Manager endpoint over real HTTP with the real aws-sdk-secretsmanager client.

mod secrets {
    use devlake_autopilot::secrets::{resolve_named_secret, resolve_secret, SecretError};
    use devlake_testkit::secrets_manager::LocalSecretsManager;
    use devlake_testkit::stack::local_sdk_config;

    const ARN: &str = "arn:aws:secretsmanager:us-east-1:123456789012:secret:devlake-key-AbCdEf";
    const BINARY_ARN: &str = "arn:aws:secretsmanager:us-east-1:123456789012:secret:binary-XyZ";
    const VALUE: &str = "dlk_live_4f9a-very-secret";

    /// The local Secrets Manager with a string secret and a binary-only one.
    async fn secrets_manager() -> LocalSecretsManager {
        let server = LocalSecretsManager::start().await;
        server.set_string(ARN, VALUE);
        server.set_binary(BINARY_ARN, "AAEC");
        server
    }

    #[tokio::test]
    async fn reads_the_secret_string_by_arn() {
        let server = secrets_manager().await;
        let sdk = server.sdk();
        let value = resolve_secret(None, Some(ARN.to_string()), &sdk)
            .await
            .unwrap();
        assert_eq!(value.as_deref(), Some(VALUE));
        drop(server);
    }

    #[tokio::test]
    async fn unknown_or_binary_secrets_fail_without_revealing_values() {
        let server = secrets_manager().await;
        let sdk = server.sdk();

        let missing = "arn:aws:secretsmanager:us-east-1:123456789012:secret:nope";
        let err = resolve_secret(None, Some(missing.to_string()), &sdk)
            .await
            .unwrap_err();
        assert!(matches!(err, SecretError::Fetch { .. }), "{err:?}");
        assert!(!err.is_retryable(), "a wrong ARN cannot succeed later");
        let text = err.to_string();
        assert!(text.contains(missing), "{text}");
        assert!(text.contains("ResourceNotFoundException"), "{text}");

        let err = resolve_secret(None, Some(BINARY_ARN.to_string()), &sdk)
            .await
            .unwrap_err();
        assert!(matches!(err, SecretError::NoString { .. }), "{err:?}");

        let err = resolve_named_secret(
            "METRICS_TOKEN",
            "METRICS_TOKEN_SECRET_ARN",
            Some(VALUE.to_string()),
            Some(ARN.to_string()),
            &sdk,
        )
        .await
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "both METRICS_TOKEN and METRICS_TOKEN_SECRET_ARN are set; set only one of them"
        );
        assert!(!format!("{err:?}").contains(VALUE));
        drop(server);
    }

    #[tokio::test]
    async fn unreachable_secrets_manager_is_retryable() {
        // Bind then drop: nothing listens on this port any more.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let sdk = local_sdk_config(&format!("http://127.0.0.1:{port}"))
            .to_builder()
            .retry_config(aws_config::retry::RetryConfig::disabled())
            .build();
        let err = resolve_secret(None, Some(ARN.to_string()), &sdk)
            .await
            .unwrap_err();
        assert!(err.is_retryable(), "{err}");
    }
}

mod devlake {
    use std::collections::{BTreeSet, HashSet};
    use std::time::{Duration, Instant};

    use chrono::{TimeZone, Utc};
    use devlake_autopilot::devlake::models::*;
    use devlake_autopilot::devlake::{ClientConfig, DevLakeClient, DevLakeError, TriggerOutcome};
    use devlake_testkit::sim::fixture::RemoteNode;
    use devlake_testkit::sim::{
        FaultAction, FaultRule, Fixture, MigrationMode, PipelineSeed, SimHandle, SimOptions,
        Simulator,
    };
    use futures::{StreamExt, TryStreamExt};
    use serde_json::{json, Value};

    use devlake_testkit::log_capture::Capture;

    const API_KEY: &str = "dlk-test-4b1d2f9e-keep-me-secret";

    fn config(endpoint: &str) -> ClientConfig {
        ClientConfig {
            endpoint: endpoint.to_string(),
            connect_timeout: Duration::from_secs(2),
            request_timeout: Duration::from_secs(5),
            max_retries: 3,
            retry_base_delay: Duration::from_millis(5),
            retry_max_delay: Duration::from_millis(40),
            ..ClientConfig::default()
        }
    }

    fn client_with(sim: &Simulator, tweak: impl FnOnce(&mut ClientConfig)) -> DevLakeClient {
        let mut c = config(&sim.url());
        tweak(&mut c);
        DevLakeClient::new(c).unwrap()
    }

    async fn sample() -> (Simulator, DevLakeClient) {
        let sim = Simulator::start(Fixture::sample()).await;
        let client = client_with(&sim, |_| {});
        (sim, client)
    }

    /// The client's own counters agree with what the server saw.
    fn assert_counts_match(client: &DevLakeClient, h: &SimHandle) {
        let seen = h.counts();
        let calls = client.calls();
        assert_eq!((calls.reads, calls.writes), (seen.reads, seen.writes));
    }

    /// The scope id as DevLake defines it, written independently of the models.
    fn doc_scope_id(plugin: &str, data: &Value) -> String {
        let field = match plugin {
            "github" => "githubId",
            "gitlab" => "gitlabId",
            "bitbucket" | "bitbucket_server" => "bitbucketId",
            "jenkins" => "fullName",
            "bamboo" => "planKey",
            "jira" => "boardId",
            _ => "id",
        };
        match &data[field] {
            Value::Number(n) => n.to_string(),
            Value::String(s) => s.clone(),
            other => panic!("{plugin} scope without {field}: {other}"),
        }
    }

    /// Every scope id under `nodes`, and the number of remote-scopes pages listing them takes.
    fn expected_walk(plugin: &str, nodes: &[RemoteNode], page: usize) -> (BTreeSet<String>, usize) {
        let mut ids = BTreeSet::new();
        let mut pages = nodes.len().div_ceil(page).max(1);
        for node in nodes {
            match node {
                RemoteNode::Scope { data } => {
                    ids.insert(doc_scope_id(plugin, data));
                }
                RemoteNode::Group { children, .. } => {
                    let (sub, p) = expected_walk(plugin, children, page);
                    ids.extend(sub);
                    pages += p;
                }
            }
        }
        (ids, pages)
    }

    #[tokio::test]
    async fn health_version_and_plugins() {
        let (sim, client) = sample().await;
        client.ping().await.unwrap();
        let version = client.version().await.unwrap();
        assert_eq!(version.version, "v1.0.3@sim0000");
        assert!(!version.plugin_option_is_string());
        let plugins: Vec<String> = client
            .plugins()
            .await
            .unwrap()
            .into_iter()
            .map(|p| p.plugin)
            .collect();
        for p in SUPPORTED_PLUGINS.iter().chain(&["dora"]) {
            assert!(
                plugins.iter().any(|x| x == p),
                "{p} missing from {plugins:?}"
            );
        }
        assert_counts_match(&client, &sim.handle());
    }

    #[tokio::test]
    async fn old_devlake_gets_plugin_option_as_a_string() {
        let sim = Simulator::start_with(
            Fixture::sample(),
            SimOptions {
                version: Some("v0.21.0@abc1234".into()),
                ..SimOptions::default()
            },
        )
        .await;
        let client = client_with(&sim, |_| {});
        let version = client.version().await.unwrap();
        assert!(version.plugin_option_is_string());
        let input = ProjectInput {
            name: "v021-project".into(),
            description: String::new(),
            enable: true,
            metrics: DevLakeClient::project_input_metrics(&version),
        };
        let project = client.create_project(&input).await.unwrap();
        assert_eq!(project.metrics[0].plugin_option, json!("{}"));
        let stored = sim.handle().project("v021-project").unwrap();
        assert_eq!(stored["metrics"][0]["pluginOption"], json!("{}"));
        assert_eq!(stored["metrics"][0]["pluginName"], json!("dora"));
    }

    /// The demo world: the sample plus a Bitbucket Server connection (every supported plugin).
    async fn demo() -> (Simulator, DevLakeClient) {
        let sim = Simulator::start(Fixture::demo()).await;
        let client = client_with(&sim, |_| {});
        (sim, client)
    }

    /// The scope id of a listed remote scope. Bitbucket Server lists a repository under its
    /// numeric repository id; the scope id is `data.bitbucketId`.
    fn listed_scope_id(plugin: &str, child: &RemoteScopeChild) -> String {
        if plugin == "bitbucket_server" {
            assert!(child.id.parse::<u64>().is_ok(), "{child:?}");
            return Scope(child.data.clone().expect("scope data"))
                .scope_id(plugin)
                .expect("bitbucketId");
        }
        child.id.clone()
    }

    #[tokio::test]
    async fn connections_of_every_plugin() {
        let (sim, client) = demo().await;
        let h = sim.handle();
        for plugin in SUPPORTED_PLUGINS {
            let list = client.connections(plugin).await.unwrap();
            let expected: BTreeSet<String> = h
                .connections(plugin)
                .iter()
                .map(|c| c["name"].as_str().unwrap().to_string())
                .collect();
            assert!(!list.is_empty(), "{plugin}");
            assert_eq!(
                list.iter().map(|c| c.name.clone()).collect::<BTreeSet<_>>(),
                expected,
                "{plugin}"
            );
            for conn in &list {
                assert_eq!(&client.connection(plugin, conn.id).await.unwrap(), conn);
            }
        }
        let missing = client.connection("github", 999).await.unwrap_err();
        assert!(missing.is_not_found(), "{missing}");
        // An unknown plugin is an unknown route: gin's plain-text 404, kept verbatim.
        let err = client.connections("nosuch").await.unwrap_err();
        match &err {
            DevLakeError::Status {
                status: 404,
                method,
                path,
                message,
            } => {
                assert_eq!(method, "GET");
                assert_eq!(path, "/plugins/nosuch/connections");
                assert_eq!(message, "404 page not found");
            }
            other => panic!("{other:?}"),
        }
        // …so `scope()` does not mistake it for "no such scope".
        assert!(client.scope("nosuch", 1, "x").await.is_err());
    }

    #[tokio::test]
    async fn remote_scopes_walk_every_plugin_and_group() {
        let fixture = Fixture::demo();
        let page = fixture.remote_page_size.unwrap_or(100);
        let sim = Simulator::start(fixture.clone()).await;
        let client = client_with(&sim, |_| {});
        let h = sim.handle();
        let mut plugins_seen = HashSet::new();
        for conn in &fixture.connections {
            let cid = conn.connection["id"].as_u64().unwrap();
            let (expected, pages) = expected_walk(&conn.plugin, &conn.remote, page);
            h.reset_log();
            let children: Vec<RemoteScopeChild> = client
                .remote_scopes(&conn.plugin, cid)
                .try_collect()
                .await
                .unwrap();
            let ids: Vec<String> = children
                .iter()
                .map(|c| listed_scope_id(&conn.plugin, c))
                .collect();
            assert_eq!(
                ids.len(),
                expected.len(),
                "{} {cid}: no duplicates",
                conn.plugin
            );
            assert_eq!(
                ids.iter().cloned().collect::<BTreeSet<_>>(),
                expected,
                "{}",
                conn.plugin
            );
            let prefix = format!("/plugins/{}/connections/{cid}/remote-scopes", conn.plugin);
            assert_eq!(
                h.count_matching("GET", &prefix),
                pages,
                "{} {cid}",
                conn.plugin
            );
            for child in &children {
                assert!(child.is_scope());
                assert!(!child.full_name.is_empty(), "{child:?}");
                let scope = Scope(child.data.clone().expect("scope data"));
                assert_eq!(
                    scope.scope_id(&conn.plugin),
                    Some(listed_scope_id(&conn.plugin, child))
                );
            }
            plugins_seen.insert(conn.plugin.clone());
        }
        assert_eq!(plugins_seen.len(), SUPPORTED_PLUGINS.len());
    }

    #[tokio::test]
    async fn remote_walk_follows_tokens_and_nested_groups() {
        let (sim, client) = sample().await;
        let h = sim.handle();
        let gitlab: Vec<RemoteScopeChild> = client
            .remote_scopes("gitlab", 1)
            .try_collect()
            .await
            .unwrap();
        assert!(gitlab
            .iter()
            .any(|c| c.full_name == "acme-group/backend/internal/ledger"));
        let github: Vec<RemoteScopeChild> = client
            .remote_scopes("github", 1)
            .try_collect()
            .await
            .unwrap();
        assert_eq!(github.len(), 53);
        let paths: Vec<String> = h.requests().into_iter().map(|r| r.path).collect();
        assert!(paths.iter().any(|p| p.contains("groupId=103")), "{paths:?}");
        assert!(
            paths.iter().any(|p| p.starts_with(
                "/plugins/github/connections/1/remote-scopes?groupId=acme&pageToken="
            )),
            "{paths:?}"
        );
        let jenkins: Vec<RemoteScopeChild> = client
            .remote_scopes("jenkins", 1)
            .try_collect()
            .await
            .unwrap();
        assert!(jenkins.iter().any(|c| c.id == "deploy/prod/release"));
        let paths: Vec<String> = h.requests().into_iter().map(|r| r.path).collect();
        assert!(
            paths.iter().any(|p| p.ends_with("groupId=deploy%2Fprod")),
            "{paths:?}"
        );
    }

    #[tokio::test]
    async fn remote_walk_is_lazy_and_depth_first() {
        let (sim, client) = sample().await;
        let h = sim.handle();
        let first: Vec<RemoteScopeChild> = client
            .remote_scopes("github", 1)
            .take(3)
            .try_collect()
            .await
            .unwrap();
        let names: Vec<&str> = first.iter().map(|c| c.full_name.as_str()).collect();
        assert_eq!(
            names,
            [
                "octo-bot/dotfiles",
                "octo-bot/bot-scripts",
                "acme/api-gateway"
            ]
        );
        // Top level, octo-bot, first page of acme — nothing more.
        assert_eq!(
            h.count_matching("GET", "/plugins/github/connections/1/remote-scopes"),
            3
        );
    }

    #[tokio::test]
    async fn remote_walk_survives_group_cycles() {
        let (sim, client) = sample().await;
        let h = sim.handle();
        h.add_remote_group("github", 1, Some("acme-labs"), "loop", "loop")
            .unwrap();
        h.add_remote_group("github", 1, Some("loop"), "acme-labs", "acme-labs")
            .unwrap();
        h.add_remote_group("github", 1, Some("loop"), "octo-bot", "octo-bot")
            .unwrap();
        let walk = client.remote_scopes("github", 1).try_collect::<Vec<_>>();
        let children = tokio::time::timeout(Duration::from_secs(20), walk)
            .await
            .expect("the walk terminates")
            .unwrap();
        assert_eq!(children.len(), 53);
        let unique: HashSet<&str> = children.iter().map(|c| c.id.as_str()).collect();
        assert_eq!(unique.len(), 53);
    }

    #[tokio::test]
    async fn scopes_of_every_plugin_round_trip() {
        let (sim, client) = demo().await;
        let h = sim.handle();
        for plugin in SUPPORTED_PLUGINS {
            let remote: Vec<RemoteScopeChild> =
                client.remote_scopes(plugin, 1).try_collect().await.unwrap();
            let rows: Vec<Value> = remote.iter().map(|c| c.data.clone().unwrap()).collect();
            let saved = client.put_scopes(plugin, 1, &rows).await.unwrap();
            assert_eq!(saved.len(), rows.len(), "{plugin}");
            for (scope, child) in saved.iter().zip(&remote) {
                assert_eq!(
                    scope.scope_id(plugin),
                    Some(listed_scope_id(plugin, child)),
                    "{plugin}"
                );
                assert_eq!(scope.0["connectionId"], json!(1));
            }
            let config = client
                .create_scope_config(
                    plugin,
                    1,
                    &ScopeConfig {
                        id: 0,
                        name: format!("{plugin}-autopilot"),
                        connection_id: 0,
                        entities: vec!["CICD".into()],
                        rest: Default::default(),
                    },
                )
                .await
                .unwrap();
            assert!(config.id > 0);
            for child in &remote {
                let id = listed_scope_id(plugin, child);
                let item = client
                    .scope(plugin, 1, &id)
                    .await
                    .unwrap()
                    .unwrap_or_else(|| panic!("{plugin} scope {id} not found"));
                assert_eq!(item.scope.scope_id(plugin).as_ref(), Some(&id));
                let patched = client
                    .patch_scope(plugin, 1, &id, &json!({"scopeConfigId": config.id}))
                    .await
                    .unwrap();
                assert_eq!(patched.scope_config_id(), Some(config.id), "{plugin} {id}");
                let stored = h.scope(plugin, 1, &id).unwrap();
                assert_eq!(stored["scopeConfigId"], json!(config.id));
            }
            let absent = match plugin {
                "github" | "gitlab" | "jira" => "987654321",
                _ => "no-such/scope",
            };
            assert_eq!(
                client.scope(plugin, 1, absent).await.unwrap(),
                None,
                "{plugin}"
            );
        }
        // Plugin-specific spellings survive the round trip (docs/devlake-api.md).
        let gh = h.scope("github", 1, "500001").unwrap();
        assert_eq!(gh["HTMLUrl"], json!("https://github.com/acme/api-gateway"));
        let ado = h
            .scope("azuredevops_go", 1, "6f1c2b9e-3a4d-4e8f-9b1a-000000000001")
            .unwrap();
        assert!(ado.get("OrganizationId").is_some(), "{ado}");
        let gl = client.scope("gitlab", 1, "9110").await.unwrap().unwrap();
        assert_eq!(
            gl.scope.full_name(),
            Some("acme-group/backend/internal/ledger")
        );
        // Wildcard-routed ids are sent with raw slashes, others as one encoded segment.
        let paths: Vec<String> = h.requests().into_iter().map(|r| r.path).collect();
        assert!(paths
            .contains(&"/plugins/jenkins/connections/1/scopes/deploy/prod/release".to_string()));
        assert!(paths
            .contains(&"/plugins/bitbucket/connections/1/scopes/acme-ws/payments-ios".to_string()));
        assert!(
            paths.contains(&"/plugins/circleci/connections/1/scopes/no-such%2Fscope".to_string())
        );
        assert!(
            paths.contains(&"/plugins/bitbucket/connections/1/scopes/no-such/scope".to_string())
        );
        assert_counts_match(&client, &h);
    }

    #[tokio::test]
    async fn scopes_list_pages_lazily() {
        let (sim, client) = sample().await;
        let h = sim.handle();
        let remote: Vec<RemoteScopeChild> = client
            .remote_scopes("github", 1)
            .try_collect()
            .await
            .unwrap();
        // A PUT row replaces the stored one (its scopeConfigId too), so keep saved ones out.
        let saved: HashSet<String> = h
            .scopes("github", 1)
            .iter()
            .map(|s| s["githubId"].to_string())
            .collect();
        let rows: Vec<Value> = remote
            .iter()
            .filter(|c| !saved.contains(&c.id))
            .map(|c| c.data.clone().unwrap())
            .collect();
        client.put_scopes("github", 1, &rows).await.unwrap();
        let total = h.scopes("github", 1).len();
        assert_eq!(total, 53);

        let paged = client_with(&sim, |c| c.page_size = 7);
        h.reset_log();
        let items: Vec<ScopeListItem> = paged.scopes("github", 1).try_collect().await.unwrap();
        assert_eq!(items.len(), total);
        let ids: HashSet<String> = items
            .iter()
            .filter_map(|i| i.scope.scope_id("github"))
            .collect();
        assert_eq!(ids.len(), total);
        assert_eq!(
            h.count_matching("GET", "/plugins/github/connections/1/scopes?"),
            total.div_ceil(7)
        );
        assert!(h.requests().iter().all(|r| r.path.contains("pageSize=7")));
        // Scope configs travel with list items.
        assert!(items.iter().any(|i| i
            .scope_config
            .as_ref()
            .is_some_and(|c| c.name == "github-dora")));

        h.reset_log();
        let first: Vec<ScopeListItem> = paged
            .scopes("github", 1)
            .take(8)
            .try_collect()
            .await
            .unwrap();
        assert_eq!(first.len(), 8);
        assert_eq!(
            h.count_matching("GET", "/plugins/github/connections/1/scopes?"),
            2
        );

        // DevLake caps scope pages at 1000: the client never asks for more.
        let big = client_with(&sim, |c| c.page_size = 5000);
        h.reset_log();
        let all: Vec<ScopeListItem> = big.scopes("github", 1).try_collect().await.unwrap();
        assert_eq!(all.len(), total);
        assert!(
            h.requests()[0].path.contains("pageSize=1000"),
            "{:?}",
            h.requests()
        );
    }

    #[tokio::test]
    async fn scope_configs_list_create_patch() {
        let (sim, client) = sample().await;
        let h = sim.handle();
        let list = client.scope_configs("github", 1).await.unwrap();
        assert!(list.iter().any(|c| c.name == "github-dora"));
        let mut rest = serde_json::Map::new();
        rest.insert("deploymentPattern".into(), json!("(deploy|push-image)"));
        rest.insert("productionPattern".into(), json!("prod(.*)"));
        let wanted = ScopeConfig {
            id: 0,
            name: "autopilot-dora".into(),
            connection_id: 0,
            entities: vec!["CODE".into(), "CICD".into()],
            rest,
        };
        let created = client
            .create_scope_config("github", 1, &wanted)
            .await
            .unwrap();
        assert!(created.id > 0);
        assert_eq!(created.connection_id, 1);
        assert_eq!(
            created.rest["deploymentPattern"],
            json!("(deploy|push-image)")
        );
        let patched = client
            .patch_scope_config("github", 1, created.id, &json!({"entities": ["CICD"]}))
            .await
            .unwrap();
        assert_eq!(patched.entities, ["CICD"]);
        assert_eq!(patched.name, "autopilot-dora");

        // Same name again: DevLake answers 500 "duplicated"; the lookup finds the one that exists.
        h.reset_log();
        let again = client
            .create_scope_config("github", 1, &wanted)
            .await
            .unwrap();
        assert_eq!(again.id, created.id);
        assert_eq!(
            h.count_matching("POST", "/plugins/github/connections/1/scope-configs"),
            1
        );

        // A name taken on another connection is not ours to return: the 500 stands.
        let taken = ScopeConfig {
            name: "github-dora".into(),
            ..wanted.clone()
        };
        let err = client
            .create_scope_config("github", 2, &taken)
            .await
            .unwrap_err();
        assert_eq!(err.status(), Some(500), "{err}");
        assert!(err.to_string().contains("duplicated"), "{err}");
        let names: Vec<String> = h
            .scope_configs("github", 2)
            .iter()
            .map(|c| c["name"].as_str().unwrap().to_string())
            .collect();
        assert!(!names.contains(&"github-dora".to_string()));
    }

    #[tokio::test]
    async fn projects_with_slashes_paging_and_duplicates() {
        let (sim, client) = sample().await;
        let h = sim.handle();
        let version = client.version().await.unwrap();
        let input = |name: &str| ProjectInput {
            name: name.to_string(),
            description: format!("{name} by autopilot"),
            enable: true,
            metrics: DevLakeClient::project_input_metrics(&version),
        };
        for name in ["github/acme/api", "a / b", "ünïcode?&#"] {
            let created = client.create_project(&input(name)).await.unwrap();
            assert_eq!(created.name, name);
            let bp = created.blueprint.expect("default blueprint");
            assert_eq!(bp.project_name, name);
            let fetched = client.project(name).await.unwrap().expect("found");
            assert_eq!(fetched.name, name);
            assert_eq!(fetched.metrics[0].plugin_name, "dora");
            assert_eq!(fetched.metrics[0].plugin_option, json!({}));
        }
        let paths: Vec<String> = h.requests().into_iter().map(|r| r.path).collect();
        assert!(
            paths.contains(&"/projects/github%2Facme%2Fapi".to_string()),
            "{paths:?}"
        );
        assert!(
            paths.contains(&"/projects/a%20%2F%20b".to_string()),
            "{paths:?}"
        );
        assert_eq!(client.project("github/acme/none").await.unwrap(), None);

        h.reset_log();
        let err = client
            .create_project(&input("github/acme/api"))
            .await
            .unwrap_err();
        assert_eq!(err.status(), Some(400));
        assert!(err.to_string().contains("already exists"), "{err}");
        assert_eq!(
            h.counts().total,
            1,
            "a 400 is neither retried nor looked up"
        );

        let patched = client
            .patch_project("github/acme/api", &json!({"description": "patched"}))
            .await
            .unwrap();
        assert_eq!(patched.description, "patched");

        for i in 0..20 {
            client
                .create_project(&input(&format!("bulk-{i:02}")))
                .await
                .unwrap();
        }
        let total = h.projects().len();
        assert_eq!(total, 3 + 3 + 20);
        let paged = client_with(&sim, |c| c.page_size = 6);
        h.reset_log();
        let all: Vec<Project> = paged.projects().try_collect().await.unwrap();
        assert_eq!(all.len(), total);
        let unique: HashSet<&str> = all.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(unique.len(), total);
        assert_eq!(h.count_matching("GET", "/projects?"), total.div_ceil(6));
        // The list carries lastPipeline for projects that ran.
        assert!(all
            .iter()
            .any(|p| p.name == "legacy-api" && p.last_pipeline.is_some()));
    }

    #[tokio::test]
    async fn blueprints_get_patch_and_filter() {
        let (sim, client) = sample().await;
        let h = sim.handle();
        let project = client.project("legacy-api").await.unwrap().unwrap();
        let bp_id = project.blueprint.unwrap().id;
        let bp = client.blueprint(bp_id).await.unwrap();
        assert_eq!(bp.project_name, "legacy-api");
        assert_eq!(
            bp.connections,
            [BlueprintConnection {
                plugin_name: "github".into(),
                connection_id: 1,
                scopes: vec![BlueprintScope {
                    scope_id: "500005".into()
                }],
            }]
        );
        let saturday = Utc.with_ymd_and_hms(2026, 11, 20, 17, 0, 0).unwrap();
        let patch = BlueprintPatch {
            labels: Some(vec!["autopilot".into()]),
            time_after: Some(saturday),
            ..BlueprintPatch::default()
        };
        let patched = client.patch_blueprint(bp_id, &patch).await.unwrap();
        assert_eq!(patched.labels, ["autopilot"]);
        assert_eq!(patched.time_after, Some(saturday));
        assert_eq!(
            h.blueprint(bp_id).unwrap()["timeAfter"],
            json!("2026-11-20T17:00:00Z")
        );
        assert_eq!(patched.connections, bp.connections, "untouched keys stay");

        let query = BlueprintQuery {
            label: Some("autopilot".into()),
            ..BlueprintQuery::default()
        };
        let found: Vec<Blueprint> = client.blueprints(&query).try_collect().await.unwrap();
        assert_eq!(found.iter().map(|b| b.id).collect::<Vec<_>>(), [bp_id]);
        let all: Vec<Blueprint> = client
            .blueprints(&BlueprintQuery::default())
            .try_collect()
            .await
            .unwrap();
        assert_eq!(all.len(), h.blueprints().len());
        let paths: Vec<String> = h.requests().into_iter().map(|r| r.path).collect();
        assert!(paths
            .iter()
            .any(|p| p.starts_with("/blueprints?label=autopilot&page=1&pageSize=")));

        h.reset_log();
        let bad = BlueprintPatch {
            connections: Some(vec![BlueprintConnection {
                plugin_name: "github".into(),
                connection_id: 1,
                scopes: vec![BlueprintScope {
                    scope_id: "424242".into(),
                }],
            }]),
            ..BlueprintPatch::default()
        };
        let err = client.patch_blueprint(bp_id, &bad).await.unwrap_err();
        assert_eq!(err.status(), Some(400), "{err}");
        assert_eq!(h.counts().total, 1, "a 400 PATCH is not retried");
        assert!(client.blueprint(999_999).await.unwrap_err().is_not_found());
    }

    #[tokio::test]
    async fn trigger_then_already_running() {
        let (sim, client) = sample().await;
        let h = sim.handle();
        let bp_id = client
            .project("legacy-api")
            .await
            .unwrap()
            .unwrap()
            .blueprint
            .unwrap()
            .id;
        h.finish_all_pending("TASK_COMPLETED", "").unwrap();
        let pipeline = match client
            .trigger_blueprint(bp_id, TriggerRequest::default())
            .await
            .unwrap()
        {
            TriggerOutcome::Started(p) => p,
            other => panic!("{other:?}"),
        };
        assert_eq!(pipeline.blueprint_id, bp_id);
        assert!(!status::is_finished(&pipeline.status));
        let second = client
            .trigger_blueprint(
                bp_id,
                TriggerRequest {
                    skip_collectors: false,
                    full_sync: true,
                },
            )
            .await
            .unwrap();
        assert_eq!(second, TriggerOutcome::AlreadyRunning);
        assert_eq!(
            h.count_matching("POST", &format!("/blueprints/{bp_id}/trigger")),
            2
        );

        let pending = PipelineQuery {
            pending: true,
            blueprint_id: Some(bp_id),
            ..PipelineQuery::default()
        };
        let ids: Vec<u64> = client
            .pipelines(&pending)
            .map_ok(|p| p.id)
            .try_collect()
            .await
            .unwrap();
        assert_eq!(ids, [pipeline.id]);
        let paths: Vec<String> = h.requests().into_iter().map(|r| r.path).collect();
        assert!(
            paths.iter().any(|p| p.starts_with(&format!(
                "/pipelines?pending=1&blueprint_id={bp_id}&page=1&pageSize="
            ))),
            "{paths:?}"
        );
    }

    #[tokio::test]
    async fn pipelines_filter_page_stop_early_and_rerun() {
        let (sim, client) = sample().await;
        let h = sim.handle();
        let end = Utc.with_ymd_and_hms(2026, 5, 1, 0, 0, 0).unwrap();
        let seeds = (0..95).map(|i| PipelineSeed {
            status: if i % 3 == 0 {
                "TASK_FAILED"
            } else {
                "TASK_COMPLETED"
            }
            .into(),
            created_at: Some(end - chrono::Duration::minutes(95 - i)),
            began_at: Some(end - chrono::Duration::minutes(95 - i)),
            finished_at: Some(end - chrono::Duration::minutes(94 - i)),
            labels: vec!["nightly run".into()],
            message: if i % 3 == 0 {
                "boom".into()
            } else {
                String::new()
            },
            ..PipelineSeed::default()
        });
        h.insert_pipelines(seeds).unwrap();
        let paged = client_with(&sim, |c| c.page_size = 10);
        let failed = PipelineQuery {
            status: Some(status::FAILED.into()),
            label: Some("nightly run".into()),
            ..PipelineQuery::default()
        };
        h.reset_log();
        let rows: Vec<Pipeline> = paged.pipelines(&failed).try_collect().await.unwrap();
        assert_eq!(rows.len(), 32);
        assert!(rows
            .iter()
            .all(|p| p.status == status::FAILED && p.message == "boom"));
        assert!(rows.windows(2).all(|w| w[0].id > w[1].id), "newest first");
        assert_eq!(h.count_matching("GET", "/pipelines?"), 4);
        assert!(h.requests()[0]
            .path
            .starts_with("/pipelines?status=TASK_FAILED&label=nightly%20run&page=1&pageSize=10"));

        // A consumer that stops early does not make the client fetch further pages.
        h.reset_log();
        let newest: Vec<Pipeline> = paged
            .pipelines(&PipelineQuery::default())
            .take(15)
            .try_collect()
            .await
            .unwrap();
        assert_eq!(newest.len(), 15);
        assert_eq!(h.count_matching("GET", "/pipelines?"), 2);

        let one = client.pipeline(rows[0].id).await.unwrap();
        assert_eq!(one, rows[0]);
        assert!(one.finished_at.is_some());
        let tasks = client.rerun_pipeline(one.id).await.unwrap();
        assert!(!tasks.is_empty());
        assert!(tasks.iter().all(|t| t.pipeline_id == one.id));
        assert_eq!(h.pipeline(one.id).unwrap()["status"], json!("TASK_RERUN"));
        h.reset_log();
        let err = client.rerun_pipeline(one.id).await.unwrap_err();
        assert_eq!(err.status(), Some(400));
        assert!(err.to_string().contains("waiting to run"), "{err}");
        assert_eq!(h.counts().total, 1);
        assert!(client.pipeline(9_999_999).await.unwrap_err().is_not_found());
    }

    #[tokio::test]
    async fn api_key_mode_good_missing_and_wrong_keys() {
        // Its log lines are checked: alone in a process, no other test can disable their callsites.
        if !devlake_testkit::log_capture::alone("devlake::api_key_mode_good_missing_and_wrong_keys")
        {
            return;
        }
        let sim = Simulator::start_with(Fixture::sample(), SimOptions::with_api_key(API_KEY)).await;
        let h = sim.handle();
        let capture = Capture::default();
        let _guard = tracing::subscriber::set_default(capture.clone());

        let good = DevLakeClient::new(ClientConfig {
            api_key: Some(API_KEY.into()),
            ..config(&format!("{}/rest/", sim.url()))
        })
        .unwrap();
        let page = good.projects_page(1, 50).await.unwrap();
        assert_eq!(page.count, 3);
        assert!(good.project("legacy-api").await.unwrap().is_some());
        let paths: Vec<String> = h.requests().into_iter().map(|r| r.path).collect();
        assert_eq!(
            paths,
            [
                "/rest/projects?page=1&pageSize=50",
                "/rest/projects/legacy-api"
            ]
        );
        assert!(!format!("{good:?}").contains(API_KEY));

        h.reset_log();
        let anonymous = DevLakeClient::new(config(&format!("{}/rest", sim.url()))).unwrap();
        let err = anonymous.projects_page(1, 50).await.unwrap_err();
        match &err {
            DevLakeError::Unauthorized {
                status,
                message,
                path,
                ..
            } => {
                assert_eq!(*status, 401);
                assert_eq!(message, "token is missing");
                assert_eq!(path, "/projects?page=1&pageSize=50");
            }
            other => panic!("{other:?}"),
        }
        assert!(err.is_fatal() && !err.is_retryable());
        assert_eq!(h.counts().total, 1, "401 is not retried");

        h.reset_log();
        let wrong_key = "dlk-wrong-9c8b7a-also-secret";
        let wrong = DevLakeClient::new(ClientConfig {
            api_key: Some(wrong_key.into()),
            ..config(&format!("{}/rest", sim.url()))
        })
        .unwrap();
        let err = wrong.project("legacy-api").await.unwrap_err();
        assert!(
            matches!(&err, DevLakeError::Unauthorized { status: 403, message, .. } if message == "api key is invalid"),
            "{err:?}"
        );
        assert_eq!(h.counts().total, 1, "403 is not retried");
        for text in [err.to_string(), format!("{err:?}"), format!("{wrong:?}")] {
            assert!(
                !text.contains(wrong_key) && !text.contains(API_KEY),
                "{text}"
            );
        }

        // Every request was logged with method, path, status, elapsed and attempt — never the key.
        let logs = capture.text();
        assert!(
            logs.contains("path=/rest/projects?page=1&pageSize=50")
                || logs.contains("path=/projects?page=1&pageSize=50"),
            "{logs}"
        );
        assert!(
            logs.contains("status=403")
                && logs.contains("attempt=1")
                && logs.contains("elapsed_ms="),
            "{logs}"
        );
        assert!(
            !logs.contains(API_KEY) && !logs.contains(wrong_key),
            "{logs}"
        );
    }

    #[tokio::test]
    async fn migration_pending_is_distinct_and_not_retried() {
        let sim = Simulator::start_with(
            Fixture::sample(),
            SimOptions {
                migration_pending: true,
                ..SimOptions::default()
            },
        )
        .await;
        let h = sim.handle();
        let client = client_with(&sim, |_| {});
        client.ping().await.unwrap();
        client.version().await.unwrap();
        h.reset_log();
        let err = client.projects_page(1, 10).await.unwrap_err();
        assert!(
            matches!(err, DevLakeError::MigrationPending { .. }),
            "{err:?}"
        );
        assert!(err.is_fatal() && !err.is_retryable());
        assert!(err.to_string().contains("proceed-db-migration"), "{err}");
        assert_eq!(h.counts().total, 1);
        h.set_migration(MigrationMode::Running);
        let err = client
            .blueprints_page(&BlueprintQuery::default(), 1, 10)
            .await
            .unwrap_err();
        assert_eq!(err.status(), Some(428));
        assert_eq!(h.counts().total, 2);
    }

    #[tokio::test]
    async fn flaky_reads_are_retried_within_the_budget() {
        let (sim, client) = sample().await;
        let h = sim.handle();
        h.add_fault_rule(FaultRule::status("GET", "/projects", 2, 503));
        assert_eq!(client.projects_page(1, 10).await.unwrap().count, 3);
        assert_eq!(h.count_matching("GET", "/projects"), 3);

        h.add_fault_rule(FaultRule::reset("GET", "/version", 2));
        client.version().await.unwrap();
        assert_eq!(h.count_matching("GET", "/version"), 3);

        h.add_fault_rule(FaultRule::status("GET", "/plugins", 1, 429));
        client.plugins().await.unwrap();
        assert_eq!(h.count_matching("GET", "/plugins"), 2);

        // Bulk scope PUT is an upsert by key, so it is retried too.
        h.add_fault_rule(FaultRule::status(
            "PUT",
            "/plugins/jira/connections/1/scopes",
            1,
            502,
        ));
        let boards: Vec<Value> = client
            .remote_scopes("jira", 1)
            .map_ok(|c| c.data.unwrap())
            .try_collect()
            .await
            .unwrap();
        assert_eq!(
            client.put_scopes("jira", 1, &boards).await.unwrap().len(),
            3
        );
        assert_eq!(
            h.count_matching("PUT", "/plugins/jira/connections/1/scopes"),
            2
        );
        assert_counts_match(&client, &h);

        // The budget is max_retries + 1 attempts, then the last error is returned.
        h.reset_log();
        h.add_fault_rule(FaultRule::status("GET", "/pipelines", 10, 502));
        let err = client
            .pipelines_page(&PipelineQuery::default(), 1, 10)
            .await
            .unwrap_err();
        assert_eq!(err.status(), Some(502));
        assert!(err.is_retryable());
        assert_eq!(h.count_matching("GET", "/pipelines"), 4);
    }

    #[tokio::test]
    async fn a_slow_attempt_times_out_and_is_retried() {
        let sim = Simulator::start(Fixture::sample()).await;
        let h = sim.handle();
        let client = client_with(&sim, |c| c.request_timeout = Duration::from_millis(300));
        h.add_fault_rule(FaultRule::new(
            "GET",
            "/version",
            1,
            FaultAction::DelayRequestMs(3000),
        ));
        let started = Instant::now();
        client.version().await.unwrap();
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{:?}",
            started.elapsed()
        );
        assert_eq!(client.calls().reads, 2);

        // Out of retries, the error says what happened and where.
        let impatient = client_with(&sim, |c| {
            c.request_timeout = Duration::from_millis(200);
            c.max_retries = 0;
        });
        h.add_fault_rule(FaultRule::new(
            "GET",
            "/version",
            1,
            FaultAction::DelayRequestMs(3000),
        ));
        let err = impatient.version().await.unwrap_err();
        assert!(matches!(err, DevLakeError::Transport { .. }), "{err:?}");
        assert!(err.is_retryable());
        let text = err.to_string();
        assert!(
            text.starts_with("could not reach DevLake on GET /version: timed out"),
            "{text}"
        );
    }

    #[tokio::test]
    async fn permanent_errors_and_posts_are_not_retried() {
        let (sim, client) = sample().await;
        let h = sim.handle();
        h.add_fault_rule(FaultRule::status("GET", "/projects", 5, 400));
        let err = client.projects_page(1, 10).await.unwrap_err();
        assert_eq!(err.status(), Some(400));
        assert!(!err.is_retryable());
        assert_eq!(h.count_matching("GET", "/projects"), 1);
        h.clear_faults();

        let bp_id = client
            .project("legacy-api")
            .await
            .unwrap()
            .unwrap()
            .blueprint
            .unwrap()
            .id;
        h.finish_all_pending("TASK_COMPLETED", "").unwrap();
        h.reset_log();
        h.add_fault_rule(FaultRule::status("POST", "/blueprints/", 1, 503));
        let err = client
            .trigger_blueprint(bp_id, TriggerRequest::default())
            .await
            .unwrap_err();
        assert_eq!(err.status(), Some(503));
        assert_eq!(h.counts().total, 1, "a trigger is never retried");

        // Reset before DevLake handled it: nothing was committed, the lookup says so, and the
        // original transport error is returned — after exactly one POST.
        h.reset_log();
        h.add_fault_rule(FaultRule::reset("POST", "/projects", 1));
        let input = ProjectInput {
            name: "github/acme/reset".into(),
            description: String::new(),
            enable: true,
            metrics: vec![],
        };
        let err = client.create_project(&input).await.unwrap_err();
        assert!(matches!(err, DevLakeError::Transport { .. }), "{err:?}");
        assert!(
            err.to_string()
                .starts_with("could not reach DevLake on POST /projects: "),
            "{err}"
        );
        assert_eq!(h.count_matching("POST", "/projects"), 1);
        assert_eq!(
            h.count_matching("GET", "/projects/github%2Facme%2Freset"),
            1
        );
        assert!(h.project("github/acme/reset").is_none());
    }

    /// The simulator logs a request only once its response is written, so the held-back POST
    /// the client gave up on never shows up in its log. A second POST would: DevLake refuses a
    /// duplicate at once (400 / 500). So: no answered POST there, and the client sent one write.
    fn assert_no_second_post(client: &DevLakeClient, h: &SimHandle, path: &str, writes: u64) {
        let answered: Vec<_> = h
            .requests()
            .into_iter()
            .filter(|r| r.method == "POST" && r.path == path)
            .collect();
        assert!(answered.is_empty(), "{answered:?}");
        assert_eq!(client.calls().writes, writes);
    }

    #[tokio::test]
    async fn a_create_that_timed_out_after_commit_is_not_duplicated() {
        let sim = Simulator::start(Fixture::sample()).await;
        let h = sim.handle();
        let client = client_with(&sim, |c| c.request_timeout = Duration::from_millis(400));
        h.add_fault_rule(FaultRule::commit_then_delay("POST", "/projects", 1, 1500));
        let input = ProjectInput {
            name: "github/acme/api".into(),
            description: String::new(),
            enable: true,
            metrics: vec![],
        };
        let project = client.create_project(&input).await.unwrap();
        assert_eq!(project.name, "github/acme/api");
        assert!(project.blueprint.is_some());
        assert_no_second_post(&client, &h, "/projects", 1);
        assert_eq!(
            h.count_matching("GET", "/projects/github%2Facme%2Fapi"),
            1,
            "looked up once"
        );
        let same: Vec<Value> = h
            .projects()
            .into_iter()
            .filter(|p| p["name"] == json!("github/acme/api"))
            .collect();
        assert_eq!(same.len(), 1);

        h.add_fault_rule(FaultRule::commit_then_delay(
            "POST",
            "/plugins/gitlab/connections/1/scope-configs",
            1,
            1500,
        ));
        let config = ScopeConfig {
            id: 0,
            name: "gitlab-autopilot".into(),
            connection_id: 0,
            entities: vec!["CODE".into()],
            rest: Default::default(),
        };
        let created = client
            .create_scope_config("gitlab", 1, &config)
            .await
            .unwrap();
        assert!(created.id > 0);
        assert_no_second_post(
            &client,
            &h,
            "/plugins/gitlab/connections/1/scope-configs",
            2,
        );
        let named = h
            .scope_configs("gitlab", 1)
            .into_iter()
            .filter(|c| c["name"] == json!("gitlab-autopilot"))
            .count();
        assert_eq!(named, 1);
    }

    #[tokio::test]
    async fn concurrency_cap_bounds_requests_in_flight() {
        let (sim, _) = sample().await;
        sim.handle().set_latency(Duration::from_millis(100));
        let client = client_with(&sim, |c| c.max_concurrency = 2);
        let started = Instant::now();
        let results = futures::future::join_all((0..8).map(|_| client.version())).await;
        assert!(results.iter().all(Result::is_ok));
        // 8 requests of >= 100 ms, two at a time: at least four rounds.
        assert!(
            started.elapsed() >= Duration::from_millis(400),
            "{:?}",
            started.elapsed()
        );
        assert_eq!(client.calls().reads, 8);
    }

    /// `test_connection` turns each answer of DevLake's connection test into a verdict: up,
    /// down with DevLake's message (GitHub's 200 `success: false` included), and an error only
    /// when no handler answered (the key refused, an unknown plugin route). Tests count as
    /// reads and are not retried (a 500 is the connection's answer).
    #[tokio::test]
    async fn connection_tests_give_devlakes_verdict_and_key_refusals_stay_errors() {
        use devlake_testkit::sim::ConnectionTestMode;
        let (sim, client) = sample().await;
        let h = sim.handle();
        let up = client.test_connection("gitlab", 1).await.unwrap();
        assert_eq!((up.up, up.status, up.message.as_str()), (true, 200, ""));

        h.set_connection_test("github", 1, ConnectionTestMode::Unauthorized)
            .unwrap();
        let github = client.test_connection("github", 1).await.unwrap();
        assert_eq!(
            (github.up, github.status, github.message.as_str()),
            (
                false,
                200,
                "StatusUnauthorized error when testing connection (400)"
            )
        );
        h.set_connection_test("jira", 1, ConnectionTestMode::Unauthorized)
            .unwrap();
        let jira = client.test_connection("jira", 1).await.unwrap();
        assert_eq!(
            (jira.up, jira.status, jira.message.as_str()),
            (false, 401, "Please check your credential (401)")
        );
        h.set_connection_test("jenkins", 1, ConnectionTestMode::Unreachable)
            .unwrap();
        h.reset_log();
        let jenkins = client.test_connection("jenkins", 1).await.unwrap();
        assert!(!jenkins.up && jenkins.status == 500, "{jenkins:?}");
        assert!(
            jenkins
                .message
                .starts_with("Failed to connect Wraps: (2) dial tcp jenkins.acme.example:443"),
            "{jenkins:?}"
        );
        assert_eq!(h.counts().total, 1, "a 500 verdict is not retried");
        // Four tests, all reads on both sides.
        assert_eq!(h.counts().writes, 0);
        assert_eq!((client.calls().reads, client.calls().writes), (4, 0));

        // No verdict: gin's plain 404 for a plugin that is not loaded, a connection gone.
        assert!(client.test_connection("nope", 1).await.is_err());
        assert!(client
            .test_connection("github", 99)
            .await
            .unwrap_err()
            .is_not_found());

        // The key middleware's refusal stays what it is: the key's problem, fatal, not "down".
        let keyed =
            Simulator::start_with(Fixture::sample(), SimOptions::with_api_key(API_KEY)).await;
        let wrong = DevLakeClient::new(ClientConfig {
            api_key: Some("dlk-wrong-1f2e3d".into()),
            ..config(&format!("{}/rest", keyed.url()))
        })
        .unwrap();
        let err = wrong.test_connection("github", 1).await.unwrap_err();
        assert!(
            matches!(&err, DevLakeError::Unauthorized { status: 403, message, .. } if message == "api key is invalid"),
            "{err:?}"
        );
        assert!(err.is_fatal());
    }
}
