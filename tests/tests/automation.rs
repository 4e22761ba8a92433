//! The daily automation against the DevLake simulator over real HTTP: a fresh DevLake
//! wired in one run, idempotent re-runs, new repositories, dry runs, conflicts, faults, 428,
//! timed-out creates, re-runs, trigger pacing, run records in DynamoDB Local and metrics in the
//! CloudWatch double.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use devlake_autopilot::automation::{
    self, AutomationConfig, AutomationError, Deadline, Ports, TriggerMode,
};
use devlake_autopilot::devlake::models::{RemoteScopeChild, SUPPORTED_PLUGINS};
use devlake_autopilot::devlake::{ClientConfig, DevLakeClient, DevLakeError};
use devlake_autopilot::store::{
    ConnectionHealthRecord, DynamoStore, Job, LeaseHolder, RunLog, RunRecord, StoreError,
};
use devlake_testkit::sim::{
    FaultRule, Fixture, GeneratedSpec, MigrationMode, SimHandle, SimOptions, Simulator,
};
use futures::TryStreamExt;
use serde_json::{json, Value};

/// Saturday 2026-11-28 18:00 in Asia/Ho_Chi_Minh (the default schedule).
const NOW: &str = "2026-11-28T11:00:00Z";
/// 00:00 ICT of the Saturday before (docs/architecture.md).
const PREVIOUS_SATURDAY: &str = "2026-11-20T17:00:00Z";
const LABEL: &str = "devlake-autopilot";

fn t(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

struct Harness {
    sim: Simulator,
    client: DevLakeClient,
    config: AutomationConfig,
}

impl Harness {
    async fn new(fixture: Fixture) -> Harness {
        Self::with(fixture, SimOptions::default()).await
    }

    async fn with(fixture: Fixture, opts: SimOptions) -> Harness {
        let sim = Simulator::start_with(fixture, opts).await;
        let client = client_for(&sim.url(), Duration::from_secs(5));
        Harness {
            sim,
            client,
            config: AutomationConfig {
                trigger_gap: Duration::ZERO,
                trigger_max_per_run: 1_000,
                ..AutomationConfig::default()
            },
        }
    }

    fn sim(&self) -> SimHandle {
        self.sim.handle()
    }

    async fn run(&self, payload: Value) -> Result<Value, AutomationError> {
        self.run_until(payload, Deadline::none()).await
    }

    /// A run invoked when the clock reads `clock` (payload times are bounded by it).
    async fn run_at(&self, payload: Value, clock: &str) -> Result<Value, AutomationError> {
        let ports = Ports {
            devlake: &self.client,
            run_log: None,
            metrics: None,
        };
        automation::handle(&self.config, ports, &payload, t(clock), Deadline::none()).await
    }

    async fn run_until(
        &self,
        payload: Value,
        deadline: Deadline,
    ) -> Result<Value, AutomationError> {
        let ports = Ports {
            devlake: &self.client,
            run_log: None,
            metrics: None,
        };
        automation::handle(&self.config, ports, &payload, t(NOW), deadline).await
    }

    /// Every remote scope of every connection, as DevLake's remote-scopes lists them.
    async fn remote(&self) -> Vec<(String, u64, RemoteScopeChild)> {
        let mut out = Vec::new();
        for plugin in SUPPORTED_PLUGINS {
            for conn in self.client.connections(plugin).await.unwrap() {
                let children: Vec<RemoteScopeChild> = self
                    .client
                    .remote_scopes(plugin, conn.id)
                    .try_collect()
                    .await
                    .unwrap();
                out.extend(
                    children
                        .into_iter()
                        .map(|c| (plugin.to_string(), conn.id, c)),
                );
            }
        }
        out
    }
}

fn client_for(url: &str, timeout: Duration) -> DevLakeClient {
    DevLakeClient::new(ClientConfig {
        endpoint: url.to_string(),
        request_timeout: timeout,
        retry_base_delay: Duration::from_millis(5),
        retry_max_delay: Duration::from_millis(20),
        ..ClientConfig::default()
    })
    .unwrap()
}

fn scheduled() -> Value {
    json!({ "scheduledTime": NOW })
}

fn writes(sim: &SimHandle) -> u64 {
    sim.counts().writes
}

/// A project's blueprint as DevLake serves it.
fn blueprint(sim: &SimHandle, project: &str) -> Value {
    sim.blueprint_of_project(project)
        .unwrap_or_else(|| panic!("project {project} has no blueprint"))
}

fn labels(bp: &Value) -> Vec<String> {
    bp["labels"]
        .as_array()
        .map(|a| a.iter().map(|l| l.as_str().unwrap().to_string()).collect())
        .unwrap_or_default()
}

/// Checks the project of one remote scope the way an operator would in the Config UI.
fn assert_wired(
    sim: &SimHandle,
    plugin: &str,
    cid: u64,
    child: &RemoteScopeChild,
    time_after: &str,
) {
    let name = format!("{plugin}/{}", child.full_name);
    let project = sim
        .project(&name)
        .unwrap_or_else(|| panic!("no project {name}"));
    let dora = project["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .any(|m| m["pluginName"] == "dora" && m["enable"] == true);
    assert!(dora, "{name}: dora metric missing: {project}");
    let bp = blueprint(sim, &name);
    assert_eq!(
        bp["connections"],
        json!([{"pluginName": plugin, "connectionId": cid, "scopes": [{"scopeId": child.id}]}]),
        "{name}: wiring"
    );
    assert!(
        labels(&bp).contains(&LABEL.to_string()),
        "{name}: label {bp}"
    );
    assert_eq!(bp["cronConfig"], "0 0 * * *", "{name}");
    assert_eq!(bp["isManual"], false, "{name}");
    assert_eq!(
        t(bp["timeAfter"].as_str().unwrap()),
        t(time_after),
        "{name}: timeAfter"
    );
}

#[tokio::test]
async fn fresh_devlake_is_wired_in_one_run_and_a_second_run_writes_nothing() {
    let h = Harness::new(Fixture::sample()).await;
    let sim = h.sim();
    let unmanaged_before: Vec<Value> = ["legacy-api", "legacy-web", "team-dashboards"]
        .iter()
        .map(|p| (sim.project(p).unwrap(), blueprint(&sim, p)))
        .map(|(p, b)| json!([p, b]))
        .collect();
    let remote = h.remote().await;
    assert!(remote.len() > 90, "sample fixture has ~100 remote scopes");
    sim.reset_log();

    let summary = h.run(scheduled()).await.unwrap();
    assert_eq!(summary["status"], "ok", "{summary:#}");
    assert_eq!(summary["source"], "scheduler");
    assert_eq!(summary["timeAfter"], PREVIOUS_SATURDAY);
    assert_eq!(summary["counts"]["errors"], 0);
    assert_eq!(summary["conflicts"], json!([]));

    // Every remote scope is now a DevLake scope with its own managed project.
    for (plugin, cid, child) in &remote {
        assert!(
            sim.scope(plugin, *cid, &child.id).is_some(),
            "scope {plugin}/{cid}/{} not added",
            child.id
        );
        assert_wired(&sim, plugin, *cid, child, PREVIOUS_SATURDAY);
    }
    let saved_before = 3; // github 500005, 500006 and jenkins deploy/api were already scopes
    assert_eq!(
        summary["counts"]["scopesAdded"].as_u64().unwrap(),
        remote.len() as u64 - saved_before
    );
    assert_eq!(
        summary["counts"]["projectsCreated"].as_u64().unwrap(),
        remote.len() as u64
    );
    // One managed project per scope; the three projects someone else made are not counted.
    assert_eq!(summary["managedProjects"], remote.len() as u64);
    // GitHub rows carried htmlUrl/cloneUrl: DevLake never had to call GitHub.
    assert_eq!(sim.github_api_fill_calls(), 0);

    // Scope configs: one per connection; scopes without one use it, others keep theirs.
    for plugin in SUPPORTED_PLUGINS {
        for conn in sim.connections(plugin) {
            let cid = conn["id"].as_u64().unwrap();
            let ours: Vec<Value> = sim
                .scope_configs(plugin, cid)
                .into_iter()
                .filter(|c| c["name"] == format!("{LABEL}-{cid}"))
                .collect();
            assert_eq!(ours.len(), 1, "{plugin}/{cid}: {ours:?}");
            let ours_id = ours[0]["id"].as_u64().unwrap();
            if plugin == "jira" {
                assert!(ours[0]
                    .get("deploymentPattern")
                    .is_none_or(|v| v == "" || v.is_null()));
            } else {
                assert_eq!(
                    ours[0]["deploymentPattern"], "(deploy|push-image)",
                    "{plugin}"
                );
                assert_eq!(ours[0]["productionPattern"], "prod(.*)", "{plugin}");
            }
            for scope in sim.scopes(plugin, cid) {
                let id = scope["scopeConfigId"].as_u64();
                if plugin == "github"
                    && cid == 1
                    && ["500005", "500006"].contains(&scope["githubId"].to_string().as_str())
                {
                    assert_ne!(id, Some(ours_id), "a scope with another config keeps it");
                    assert!(id.is_some());
                } else {
                    assert_eq!(id, Some(ours_id), "{plugin}/{cid}: {scope}");
                }
            }
        }
    }

    // Projects created in this run were triggered, one pipeline each.
    for (plugin, _, child) in &remote {
        let bp = blueprint(&sim, &format!("{plugin}/{}", child.full_name));
        let pipelines = sim.pipelines_of_blueprint(bp["id"].as_u64().unwrap());
        assert_eq!(pipelines.len(), 1, "{plugin} {}", child.full_name);
    }
    assert_eq!(
        summary["counts"]["triggered"].as_u64().unwrap(),
        remote.len() as u64
    );

    // Projects the tool does not manage were not touched.
    let unmanaged_after: Vec<Value> = ["legacy-api", "legacy-web", "team-dashboards"]
        .iter()
        .map(|p| (sim.project(p).unwrap(), blueprint(&sim, p)))
        .map(|(p, b)| json!([p, b]))
        .collect();
    assert_eq!(unmanaged_before, unmanaged_after);

    // Same `now`, nothing new: not a single write.
    sim.reset_log();
    let again = h.run(scheduled()).await.unwrap();
    assert_eq!(again["status"], "ok", "{again:#}");
    assert_eq!(
        writes(&sim),
        0,
        "{:?}",
        sim.requests()
            .iter()
            .filter(|r| r.method != "GET")
            .collect::<Vec<_>>()
    );
    assert_eq!(again["devlakeCalls"]["writes"], 0);
    assert_eq!(again["counts"]["projectsCreated"], 0);
    assert_eq!(
        again["counts"]["projectsUnchanged"].as_u64().unwrap(),
        remote.len() as u64
    );
    assert_eq!(again["managedProjects"], remote.len() as u64);
}

fn gh_repo(group: &str, name: &str, id: u64) -> Value {
    devlake_testkit::sim::fixture::scope_data("github", group, name, id)
}

/// One GitHub connection with `n` repositories and nothing else: small scenarios.
fn small(n: usize) -> Fixture {
    Fixture::generated(GeneratedSpec {
        connections: vec![("github".into(), 1)],
        repos_per_connection: n,
        groups_per_connection: 1,
        ..GeneratedSpec::default()
    })
}

fn managed_projects(sim: &SimHandle) -> Vec<String> {
    sim.projects()
        .into_iter()
        .filter(|p| {
            labels(&blueprint(sim, p["name"].as_str().unwrap())).contains(&LABEL.to_string())
        })
        .map(|p| p["name"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn a_new_remote_repository_yields_exactly_one_scope_and_one_project() {
    let h = Harness::new(Fixture::sample()).await;
    let sim = h.sim();
    h.run(scheduled()).await.unwrap();
    let scopes_before = sim.scopes("github", 1).len();
    let projects_before = sim.projects().len();

    let id = sim
        .add_remote_scope(
            "github",
            1,
            Some("acme"),
            gh_repo("acme", "brand-new", 500_999),
        )
        .unwrap();
    sim.reset_log();
    let summary = h.run(scheduled()).await.unwrap();
    assert_eq!(summary["status"], "ok", "{summary:#}");
    assert_eq!(summary["counts"]["scopesAdded"], 1);
    assert_eq!(summary["counts"]["projectsCreated"], 1);
    assert_eq!(summary["counts"]["triggered"], 1);
    assert_eq!(sim.scopes("github", 1).len(), scopes_before + 1);
    assert_eq!(sim.projects().len(), projects_before + 1);
    let child = RemoteScopeChild {
        kind: "scope".into(),
        parent_id: Some("acme".into()),
        id: id.clone(),
        name: "brand-new".into(),
        full_name: "acme/brand-new".into(),
        data: None,
    };
    assert_wired(&sim, "github", 1, &child, PREVIOUS_SATURDAY);
    // One PUT of one row, one project, one blueprint PATCH, one trigger (connection tests are
    // POSTs that change nothing).
    let w: Vec<String> = sim
        .requests()
        .into_iter()
        .filter(|r| r.method != "GET" && !r.path.ends_with("/test"))
        .map(|r| format!("{} {}", r.method, r.path.split('?').next().unwrap()))
        .collect();
    let bp = blueprint(&sim, "github/acme/brand-new")["id"]
        .as_u64()
        .unwrap();
    assert_eq!(
        w,
        vec![
            "PUT /plugins/github/connections/1/scopes".to_string(),
            "POST /projects".to_string(),
            format!("PATCH /blueprints/{bp}"),
            format!("POST /blueprints/{bp}/trigger"),
        ]
    );
    assert_eq!(
        sim.github_api_fill_calls(),
        0,
        "the row carried htmlUrl and cloneUrl"
    );
}

#[tokio::test]
async fn dry_run_writes_nothing_and_plans_every_change() {
    let h = Harness::new(Fixture::sample()).await;
    let sim = h.sim();
    let remote = h.remote().await;
    sim.reset_log();

    let plan = h.run(json!({"dryRun": true, "now": NOW})).await.unwrap();
    assert_eq!(writes(&sim), 0);
    assert_eq!(plan["dryRun"], true);
    assert_eq!(plan["status"], "ok", "{plan:#}");
    let planned = plan["planned"].as_array().unwrap();
    let count = |action: &str| planned.iter().filter(|p| p["action"] == action).count();
    assert_eq!(count("addScope"), remote.len() - 3);
    assert_eq!(count("createScopeConfig"), 9);
    assert_eq!(count("createProject"), remote.len());
    assert_eq!(count("trigger"), remote.len());
    // The one pre-saved scope without a config (jenkins deploy/api) would get the tool's.
    assert_eq!(count("assignScopeConfig"), 1);
    let create = planned
        .iter()
        .find(|p| {
            p["action"] == "createProject"
                && p["project"] == "gitlab/acme-group/backend/internal/ledger"
        })
        .expect("nested GitLab project planned");
    assert_eq!(
        create["detail"]["blueprint"]["timeAfter"],
        PREVIOUS_SATURDAY
    );
    assert_eq!(
        create["detail"]["blueprint"]["connections"],
        json!([{"pluginName": "gitlab", "connectionId": 1, "scopes": [{"scopeId": "9110"}]}])
    );

    // The real run does exactly what the plan said.
    let real = h.run(scheduled()).await.unwrap();
    assert!(real.get("planned").is_none());
    for key in [
        "scopesAdded",
        "scopeConfigsCreated",
        "scopeConfigsAssigned",
        "projectsCreated",
        "triggered",
    ] {
        assert_eq!(plan["counts"][key], real["counts"][key], "{key}");
    }
    // Once everything exists, a dry run with a new `now` plans only the timeAfter roll.
    sim.finish_all_pending("TASK_COMPLETED", "").unwrap();
    sim.reset_log();
    let next_week = h
        .run_at(
            json!({"dryRun": true, "now": "2026-12-05T11:00:00Z"}),
            "2026-12-05T11:00:00Z",
        )
        .await
        .unwrap();
    assert_eq!(writes(&sim), 0);
    let planned = next_week["planned"].as_array().unwrap();
    assert_eq!(planned.len(), remote.len(), "{planned:#?}");
    assert!(planned.iter().all(|p| p["action"] == "updateBlueprint"
        && p["detail"] == json!({"timeAfter": "2026-11-27T17:00:00Z"})));
}

#[tokio::test]
async fn conflicts_and_long_names_are_reported_and_unmanaged_projects_untouched() {
    let h = Harness::new(Fixture::sample()).await;
    let sim = h.sim();
    // Someone created a project under the name the tool would use.
    sim.create_project("github/acme/api-gateway").unwrap();
    let squatter_before = (
        sim.project("github/acme/api-gateway").unwrap(),
        blueprint(&sim, "github/acme/api-gateway"),
    );
    let long = "x".repeat(120);
    let long_id = sim
        .add_remote_scope(
            "github",
            2,
            Some("platform"),
            gh_repo("platform", &long, 10_999),
        )
        .unwrap();

    let summary = h.run(scheduled()).await.unwrap();
    assert_eq!(
        summary["status"], "ok",
        "conflicts are reported, not errors: {summary:#}"
    );
    let conflicts = summary["conflicts"].as_array().unwrap();
    assert_eq!(conflicts.len(), 2, "{conflicts:#?}");
    let held = conflicts
        .iter()
        .find(|c| c["project"] == "github/acme/api-gateway")
        .unwrap();
    assert_eq!(held["reason"], "heldByUnmanagedProject");
    assert_eq!(held["scopeId"], "500001");
    let too_long = conflicts
        .iter()
        .find(|c| c["reason"] == "nameTooLong")
        .unwrap();
    assert_eq!(too_long["scopeId"], long_id);
    assert!(too_long["message"].as_str().unwrap().contains("100"));
    assert_eq!(summary["counts"]["projectsConflicting"], 2);

    // The squatter is exactly as it was; the long name was never sent.
    assert_eq!(
        (
            sim.project("github/acme/api-gateway").unwrap(),
            blueprint(&sim, "github/acme/api-gateway")
        ),
        squatter_before
    );
    assert!(sim
        .projects()
        .iter()
        .all(|p| p["name"].as_str().unwrap().len() <= 100));
    assert!(!sim
        .requests()
        .iter()
        .any(|r| r.method == "POST" && r.path.contains(&long)));
    // The scope itself was still added.
    assert!(sim.scope("github", 2, &long_id).is_some());

    // Conflicts do not cause writes on the next run.
    sim.reset_log();
    let again = h.run(scheduled()).await.unwrap();
    assert_eq!(writes(&sim), 0);
    assert_eq!(again["conflicts"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn failures_mid_run_are_isolated_and_the_next_run_completes() {
    let h = Harness::new(Fixture::sample()).await;
    let sim = h.sim();
    let remote = h.remote().await;
    // GitLab's scope PUT keeps failing (more 503s than the client retries), two project creates
    // lose their connection before DevLake handles them, one blueprint PATCH fails 4 times.
    sim.add_fault_rule(FaultRule::status(
        "PUT",
        "/plugins/gitlab/connections/1/scopes",
        100,
        503,
    ));
    sim.add_fault_rule(FaultRule::reset("POST", "/projects", 2));
    // Blueprint 50 belongs to a project created in this run (ids 1-3 are the fixture's).
    sim.add_fault_rule(FaultRule::status("PATCH", "/blueprints/50", 4, 500));

    let first = h.run(scheduled()).await.unwrap();
    assert_eq!(first["status"], "partial", "{first:#}");
    let errors = first["errors"].as_array().unwrap();
    let gitlab: Vec<&Value> = errors.iter().filter(|e| e["plugin"] == "gitlab").collect();
    assert_eq!(
        gitlab.len(),
        14,
        "one error per GitLab scope that could not be added"
    );
    assert!(gitlab
        .iter()
        .all(|e| e["connectionId"] == 1 && e["scopeId"].is_string() && e["step"] == "sync"));
    let project_errors: Vec<&Value> = errors.iter().filter(|e| e["step"] == "projects").collect();
    assert_eq!(project_errors.len(), 3, "{project_errors:#?}");
    assert!(project_errors.iter().all(|e| e["project"].is_string()
        && e["plugin"].is_string()
        && e["connectionId"].is_u64()));
    // Everything else went through: e.g. every Jira board and Jenkins job is wired.
    for (plugin, cid, child) in remote
        .iter()
        .filter(|(p, _, _)| p == "jira" || p == "jenkins")
    {
        assert_wired(&sim, plugin, *cid, child, PREVIOUS_SATURDAY);
    }

    sim.clear_faults();
    let second = h.run(scheduled()).await.unwrap();
    assert_eq!(second["status"], "ok", "{second:#}");
    assert_eq!(second["counts"]["scopesAdded"], 14);
    for (plugin, cid, child) in &remote {
        assert_wired(&sim, plugin, *cid, child, PREVIOUS_SATURDAY);
        let bp = blueprint(&sim, &format!("{plugin}/{}", child.full_name));
        assert_eq!(
            sim.pipelines_of_blueprint(bp["id"].as_u64().unwrap()).len(),
            1,
            "{}",
            child.full_name
        );
    }
    assert_eq!(sim.projects().len(), remote.len() + 3, "no duplicates");

    sim.reset_log();
    h.run(scheduled()).await.unwrap();
    assert_eq!(writes(&sim), 0);
}

#[tokio::test]
async fn migration_pending_is_a_function_error_and_changes_nothing() {
    let h = Harness::with(
        Fixture::sample(),
        SimOptions {
            migration_pending: true,
            ..SimOptions::default()
        },
    )
    .await;
    let sim = h.sim();
    let err = h.run(scheduled()).await.unwrap_err();
    assert_eq!(err.error_type(), "DevLakeMigrationPending");
    assert!(matches!(
        &err,
        AutomationError::DevLake {
            source: DevLakeError::MigrationPending { .. }
        }
    ));
    assert!(err.to_string().contains("428"), "{err}");
    assert!(!err.is_retryable());
    assert_eq!(writes(&sim), 0);
    assert_eq!(
        sim.counts().total,
        1,
        "stopped at the first answer, no retries for minutes"
    );

    // A migration that starts in the middle of a run stops it too.
    sim.set_migration(MigrationMode::None);
    sim.add_fault_rule(FaultRule::status("POST", "/projects", 1, 428));
    let err = h.run(scheduled()).await.unwrap_err();
    assert_eq!(err.error_type(), "DevLakeMigrationPending");
    assert!(
        sim.projects().len() < 20,
        "the run stopped instead of carrying on"
    );
}

#[tokio::test]
async fn refused_credentials_and_unreachable_devlake_are_function_errors() {
    let key = "dlk-right-key-123";
    let h = Harness::with(Fixture::sample(), SimOptions::with_api_key(key)).await;
    let wrong = DevLakeClient::new(ClientConfig {
        endpoint: format!("{}/rest", h.sim.url()),
        api_key: Some("dlk-wrong-key-456".into()),
        ..ClientConfig::default()
    })
    .unwrap();
    let ports = Ports {
        devlake: &wrong,
        run_log: None,
        metrics: None,
    };
    let err = automation::handle(&h.config, ports, &scheduled(), t(NOW), Deadline::none())
        .await
        .unwrap_err();
    assert_eq!(err.error_type(), "DevLakeUnauthorized");
    assert!(!err.to_string().contains("dlk-wrong-key-456"));
    assert_eq!(writes(&h.sim()), 0);

    // The right key under /rest works.
    let right = DevLakeClient::new(ClientConfig {
        endpoint: format!("{}/rest", h.sim.url()),
        api_key: Some(key.into()),
        ..ClientConfig::default()
    })
    .unwrap();
    let ports = Ports {
        devlake: &right,
        run_log: None,
        metrics: None,
    };
    let ok = automation::handle(
        &h.config,
        ports,
        &json!({"steps": ["discover"]}),
        t(NOW),
        Deadline::none(),
    )
    .await
    .unwrap();
    assert_eq!(ok["counts"]["discoveredConnections"], 9);

    let port = devlake_testkit::stack::free_port().unwrap();
    let nowhere = client_for(
        &format!("http://127.0.0.1:{port}"),
        Duration::from_millis(500),
    );
    let ports = Ports {
        devlake: &nowhere,
        run_log: None,
        metrics: None,
    };
    let err = automation::handle(&h.config, ports, &scheduled(), t(NOW), Deadline::none())
        .await
        .unwrap_err();
    assert_eq!(err.error_type(), "DevLakeUnreachable");
    assert!(err.is_retryable());
}

#[tokio::test]
async fn a_bad_payload_is_refused_before_any_call() {
    let h = Harness::new(Fixture::sample()).await;
    for (payload, field) in [
        (json!({"dryRun": "yes"}), "dryRun"),
        (json!({"bogus": true}), "bogus"),
        (json!({"connections": ["github:1"]}), "connections[0]"),
        (json!({"action": "rerun"}), "projects"),
    ] {
        let err = h.run(payload).await.unwrap_err();
        assert_eq!(err.error_type(), "InvalidPayload");
        match &err {
            AutomationError::Payload(p) => assert_eq!(p.field, field),
            other => panic!("{other}"),
        }
        assert!(err.to_string().contains(&format!("\"{field}\"")), "{err}");
    }
    assert_eq!(h.sim().counts().total, 0);
}

/// A payload time far from the invocation's clock is refused through the real handler path
/// before anything is written: no DevLake call, no run record, no metric.
#[tokio::test]
async fn a_payload_time_out_of_bounds_is_refused_and_nothing_is_written() {
    use devlake_autopilot::store::MetricsSource;
    use devlake_testkit::cloudwatch_double::CloudWatchDouble;
    use devlake_testkit::dynamo_calls::DynamoCallCounter;
    use devlake_testkit::stack::{dynamodb_local, local_sdk_config};

    let h = Harness::new(Fixture::sample()).await;
    let ddb = dynamodb_local().await;
    let table = ddb.create_table("automation-times").await;
    let counter = DynamoCallCounter::default();
    let store = DynamoStore::new(counter.client(&local_sdk_config(ddb.endpoint())), &table);
    let cw = CloudWatchDouble::start().await;
    let sink = automation::runtime::metrics_sink(
        aws_sdk_cloudwatch::Client::new(&local_sdk_config(cw.url())),
        "DevLake/Autopilot",
    );
    let ports = Ports {
        devlake: &h.client,
        run_log: Some(&store),
        metrics: Some(&sink),
    };
    for (payload, field) in [
        // A year typo in the scheduler's time would roll every timeAfter a year ahead.
        (
            json!({"scheduledTime": "2027-11-28T11:00:00Z"}),
            "scheduledTime",
        ),
        (
            json!({"scheduledTime": "2026-11-28T11:16:00Z"}),
            "scheduledTime",
        ),
        // …or back: a replay three days late, and a manual `now` a week old.
        (
            json!({"scheduledTime": "2026-11-25T11:00:00Z"}),
            "scheduledTime",
        ),
        (
            json!({"now": "2026-11-21T11:00:00Z", "steps": ["timeAfter"]}),
            "now",
        ),
        (
            json!({"action": "rerun", "projects": ["github/acme/api"], "now": "2025-11-28T11:00:00Z"}),
            "now",
        ),
        (
            json!({"version": "0", "detail-type": "Scheduled Event", "source": "aws.events",
                   "time": "2026-12-28T11:00:00Z"}),
            "time",
        ),
    ] {
        let err = automation::handle(&h.config, ports, &payload, t(NOW), Deadline::none())
            .await
            .unwrap_err();
        assert_eq!(err.error_type(), "InvalidPayload", "{payload}");
        match &err {
            AutomationError::Payload(p) => assert_eq!(p.field, field, "{payload}"),
            other => panic!("{other}"),
        }
        assert!(err.to_string().contains(&format!("\"{field}\"")), "{err}");
    }
    assert_eq!(h.sim().counts().total, 0, "DevLake was called");
    assert_eq!(counter.total(), 0, "DynamoDB was called");
    assert_eq!(cw.requests(), 0, "CloudWatch was called");
    assert!(store.snapshot(t(NOW)).await.unwrap().automation.is_none());

    // The documented backfill: the same old `now` with `allowPastTime` runs (as a dry run here).
    let back = automation::handle(
        &h.config,
        ports,
        &json!({"now": "2026-11-21T11:00:00Z", "allowPastTime": true, "dryRun": true}),
        t(NOW),
        Deadline::none(),
    )
    .await
    .unwrap();
    assert_eq!(back["timeAfter"], "2026-11-13T17:00:00Z");
    assert_eq!(h.sim().counts().writes, 0);
}

/// The DynamoDB store with one hold: a run gives its lease back only once two lease requests
/// have been answered. So in a test of two runs at once, the run that takes the lease cannot
/// finish before the other has asked for it, however the two happen to be scheduled; if the
/// lease let both through, both are answered and both go on (and the test sees two runs act).
struct ReleaseAfterTwoAsked<'a> {
    store: &'a DynamoStore,
    asked: tokio::sync::watch::Sender<usize>,
}

#[async_trait::async_trait]
impl RunLog for ReleaseAfterTwoAsked<'_> {
    async fn record_run(&self, run: &RunRecord) -> Result<(), StoreError> {
        self.store.record_run(run).await
    }

    async fn record_connection_health(
        &self,
        record: &ConnectionHealthRecord,
    ) -> Result<(), StoreError> {
        self.store.record_connection_health(record).await
    }

    async fn acquire_lease(
        &self,
        job: Job,
        holder: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<Result<(), LeaseHolder>, StoreError> {
        let answer = self.store.acquire_lease(job, holder, now, until).await;
        self.asked.send_modify(|n| *n += 1);
        answer
    }

    async fn release_lease(
        &self,
        job: Job,
        holder: &str,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        // The sender lives in `self`: the wait ends only when two requests were answered.
        let _ = self.asked.subscribe().wait_for(|n| *n >= 2).await;
        self.store.release_lease(job, holder, now).await
    }
}

/// Two runs at once (an overlapping manual run, a duplicate scheduler delivery): the run lease
/// in DynamoDB lets exactly one act; the other is refused before any DevLake call.
#[tokio::test]
async fn two_concurrent_runs_never_both_act() {
    use aws_sdk_dynamodb::types::AttributeValue;
    use devlake_autopilot::store::{keys, MetricsSource};
    use devlake_testkit::stack::dynamodb_local;

    let h = Harness::new(Fixture::sample()).await;
    let sim = h.sim();
    let ddb = dynamodb_local().await;
    let table = ddb.create_table("automation-lease").await;
    let store = DynamoStore::new(ddb.client(), &table);
    // The runs overlap for certain: the one holding the lease keeps it until the other asked.
    let gated = ReleaseAfterTwoAsked {
        store: &store,
        asked: tokio::sync::watch::channel(0).0,
    };
    let ports = Ports {
        devlake: &h.client,
        run_log: Some(&gated),
        metrics: None,
    };
    let payload = scheduled();
    let (a, b) = tokio::join!(
        automation::handle(&h.config, ports, &payload, t(NOW), Deadline::none()),
        automation::handle(&h.config, ports, &payload, t(NOW), Deadline::none()),
    );
    let (done, refused) = match (a, b) {
        (Ok(done), Err(refused)) | (Err(refused), Ok(done)) => (done, refused),
        (a, b) => panic!("expected one run and one refusal, got {a:?} and {b:?}"),
    };
    assert_eq!(refused.error_type(), "RunInProgress");
    assert!(
        refused
            .to_string()
            .starts_with("automation run refused: another run ("),
        "{refused}"
    );
    assert!(refused.is_retryable());
    // Only the run that acted created anything: one project per remote scope, once each.
    let created = done["counts"]["projectsCreated"].as_u64().unwrap();
    assert!(created > 90);
    assert_eq!(sim.count_matching("POST", "/projects"), created as usize);
    assert_eq!(sim.projects().len() as u64, created + 3);
    let record = store.snapshot(t(NOW)).await.unwrap().automation.unwrap();
    assert_eq!(record.summary["counts"]["projectsCreated"], created);

    // The lease was released: the next run goes ahead (and, with nothing new, writes nothing).
    sim.finish_all_pending("TASK_COMPLETED", "").unwrap();
    sim.reset_log();
    automation::handle(&h.config, ports, &scheduled(), t(NOW), Deadline::none())
        .await
        .unwrap();
    assert_eq!(writes(&sim), 0);

    // A lease left by a run killed at its timeout lapses by itself.
    let lease = |until: DateTime<Utc>| {
        ddb.client()
            .put_item()
            .table_name(&table)
            .item(keys::PK, AttributeValue::S(keys::LEASE_PK.into()))
            .item(keys::SK, AttributeValue::S("automation".into()))
            .item("holder", AttributeValue::S("killed-run".into()))
            .item(
                "acquiredAt",
                AttributeValue::S("2026-11-28T10:40:00Z".into()),
            )
            .item(
                "leaseUntil",
                AttributeValue::N(until.timestamp_millis().to_string()),
            )
            .send()
    };
    lease(t(NOW) + chrono::Duration::minutes(5)).await.unwrap();
    sim.reset_log();
    let err = automation::handle(&h.config, ports, &scheduled(), t(NOW), Deadline::none())
        .await
        .unwrap_err();
    assert_eq!(err.error_type(), "RunInProgress");
    assert!(err.to_string().contains("(killed-run)"), "{err}");
    assert_eq!(sim.counts().total, 0, "a refused run calls nothing");
    lease(t(NOW) - chrono::Duration::seconds(1)).await.unwrap();
    automation::handle(&h.config, ports, &scheduled(), t(NOW), Deadline::none())
        .await
        .expect("a lapsed lease is taken over");
    // A dry run writes nothing and needs no lease.
    lease(t(NOW) + chrono::Duration::minutes(5)).await.unwrap();
    automation::handle(
        &h.config,
        ports,
        &json!({"dryRun": true}),
        t(NOW),
        Deadline::none(),
    )
    .await
    .expect("dry runs are not refused");
}

#[tokio::test]
async fn a_create_that_timed_out_after_devlake_committed_is_not_sent_again() {
    let mut h = Harness::new(small(4)).await;
    h.client = client_for(&h.sim.url(), Duration::from_millis(400));
    let sim = h.sim();
    sim.add_fault_rule(FaultRule::commit_then_delay("POST", "/projects", 1, 1_500));

    let summary = h.run(scheduled()).await.unwrap();
    assert_eq!(summary["status"], "ok", "{summary:#}");
    assert_eq!(summary["counts"]["projectsCreated"], 4);
    assert_eq!(sim.projects().len(), 4);
    // Every attempt the client made: 1 scope PUT, 1 scope-config POST, and per project exactly
    // one POST, one blueprint PATCH and one trigger. A repeated create would show here.
    assert_eq!(summary["devlakeCalls"]["writes"], 2 + 4 * 3);
    // The timed-out one was looked up by name and then wired like the others.
    assert!(sim.count_matching("GET", "/projects/github%2Forg1-0%2F") >= 1);
    for name in managed_projects(&sim) {
        let bp = blueprint(&sim, &name);
        assert_eq!(bp["connections"].as_array().unwrap().len(), 1, "{name}");
        assert_eq!(
            sim.pipelines_of_blueprint(bp["id"].as_u64().unwrap()).len(),
            1
        );
    }
    assert_eq!(managed_projects(&sim).len(), 4);
}

#[tokio::test]
async fn rerun_failed_and_named_projects() {
    let h = Harness::new(Fixture::sample()).await;
    let sim = h.sim();
    h.run(scheduled()).await.unwrap();
    let failing = ["github/acme/billing-service", "jira/OPS kanban"];
    for name in managed_projects(&sim) {
        let bp = blueprint(&sim, &name)["id"].as_u64().unwrap();
        let pid = sim.pipelines_of_blueprint(bp)[0]["id"].as_u64().unwrap();
        let status = if failing.contains(&name.as_str()) {
            "TASK_FAILED"
        } else {
            "TASK_COMPLETED"
        };
        sim.finish_pipeline(pid, status, "boom").unwrap();
    }
    // legacy-web's last pipeline is TASK_PARTIAL but it is not managed: never re-run.
    let legacy_before = sim
        .pipelines_of_blueprint(blueprint(&sim, "legacy-web")["id"].as_u64().unwrap())
        .len();

    sim.reset_log();
    let summary = h
        .run(json!({"action": "rerun", "failed": true}))
        .await
        .unwrap();
    assert_eq!(summary["status"], "ok", "{summary:#}");
    assert_eq!(summary["action"], "rerun");
    assert_eq!(summary["counts"]["triggered"], 2);
    assert_eq!(writes(&sim), 2);
    for name in failing {
        let bp = blueprint(&sim, name)["id"].as_u64().unwrap();
        let pipelines = sim.pipelines_of_blueprint(bp);
        assert_eq!(pipelines.len(), 2, "{name}");
        assert_eq!(pipelines[0]["fullSync"], false);
    }
    assert_eq!(
        sim.pipelines_of_blueprint(blueprint(&sim, "legacy-web")["id"].as_u64().unwrap())
            .len(),
        legacy_before
    );

    // Named projects, with a full sync; an unknown name is reported; a pending one is skipped.
    let summary = h
        .run(json!({"action": "rerun", "projects": ["github/acme/api-gateway", "jira/OPS kanban", "no-such-project"], "fullSync": true}))
        .await
        .unwrap();
    assert_eq!(summary["status"], "partial");
    assert_eq!(summary["counts"]["triggered"], 1);
    assert_eq!(
        summary["skippedTriggers"],
        json!([{"project": "jira/OPS kanban", "blueprintId": blueprint(&sim, "jira/OPS kanban")["id"], "reason": "alreadyRunning"}])
    );
    assert_eq!(summary["errors"][0]["project"], "no-such-project");
    let bp = blueprint(&sim, "github/acme/api-gateway")["id"]
        .as_u64()
        .unwrap();
    assert_eq!(sim.pipelines_of_blueprint(bp)[0]["fullSync"], true);
}

#[tokio::test]
async fn triggers_are_paced_capped_and_skip_pending_blueprints() {
    let mut h = Harness::new(small(5)).await;
    h.config.trigger_gap = Duration::from_millis(250);
    h.config.trigger_max_per_run = 3;
    let sim = h.sim();

    let started = std::time::Instant::now();
    let first = h.run(scheduled()).await.unwrap();
    let took = started.elapsed();
    assert_eq!(first["counts"]["triggered"], 3);
    assert_eq!(first["counts"]["skipped"], 2);
    assert!(first["skippedTriggers"]
        .as_array()
        .unwrap()
        .iter()
        .all(|s| s["reason"] == "maxPerRun"));
    assert!(
        took >= Duration::from_millis(500),
        "two gaps between three triggers: {took:?}"
    );
    assert_eq!(sim.pending_pipelines().len(), 3);

    // The next run picks up the two that were left; the three pending ones are not touched.
    let second = h.run(scheduled()).await.unwrap();
    assert_eq!(second["counts"]["triggered"], 2, "{second:#}");
    assert_eq!(sim.pending_pipelines().len(), 5);
    sim.reset_log();
    h.run(scheduled()).await.unwrap();
    assert_eq!(writes(&sim), 0);

    // `all`: every managed blueprint, except those with a pending pipeline (read first).
    h.config.trigger_mode = TriggerMode::All;
    h.config.trigger_gap = Duration::ZERO;
    h.config.trigger_max_per_run = 100;
    let pending = sim.pending_pipelines();
    sim.finish_pipeline(pending[0], "TASK_COMPLETED", "")
        .unwrap();
    sim.finish_pipeline(pending[1], "TASK_FAILED", "x").unwrap();
    sim.reset_log();
    let all = h.run(scheduled()).await.unwrap();
    assert_eq!(all["counts"]["triggered"], 2, "{all:#}");
    assert_eq!(all["counts"]["skipped"], 3);
    assert_eq!(sim.count_matching("GET", "/pipelines?pending=1"), 1);
    assert_eq!(
        sim.count_matching("POST", "/blueprints/"),
        2,
        "no trigger sent to a pending blueprint"
    );
}

#[tokio::test]
async fn a_trigger_refused_as_pending_counts_as_already_running() {
    let mut h = Harness::new(small(2)).await;
    h.config.trigger_mode = TriggerMode::All;
    let sim = h.sim();
    h.run(
        json!({"now": NOW, "steps": ["discover", "sync", "scopeConfigs", "projects", "timeAfter"]}),
    )
    .await
    .unwrap();
    let bps: Vec<u64> = managed_projects(&sim)
        .iter()
        .map(|p| blueprint(&sim, p)["id"].as_u64().unwrap())
        .collect();
    // DevLake answers the pending list, then (before the trigger lands) one blueprint's own
    // cron starts a pipeline: the trigger gets the 400 "pending pipelines" answer.
    sim.add_fault_rule(FaultRule::commit_then_delay("GET", "/pipelines", 1, 400));
    let run = tokio::spawn({
        let client = h.client.clone();
        let config = h.config.clone();
        async move {
            let ports = Ports {
                devlake: &client,
                run_log: None,
                metrics: None,
            };
            automation::handle(&config, ports, &scheduled(), t(NOW), Deadline::none()).await
        }
    });
    tokio::time::sleep(Duration::from_millis(150)).await;
    sim.trigger(bps[0]).unwrap();
    let summary = run.await.unwrap().unwrap();
    assert_eq!(summary["status"], "ok", "{summary:#}");
    assert_eq!(summary["counts"]["triggered"], 1);
    assert_eq!(summary["skippedTriggers"][0]["reason"], "alreadyRunning");
    assert_eq!(summary["skippedTriggers"][0]["blueprintId"], bps[0]);
}

#[tokio::test]
async fn time_after_rolls_weekly_on_managed_blueprints_only() {
    let h = Harness::new(Fixture::sample()).await;
    let sim = h.sim();
    h.run(scheduled()).await.unwrap();
    sim.finish_all_pending("TASK_COMPLETED", "").unwrap();
    let managed = managed_projects(&sim);
    let unmanaged: BTreeMap<&str, Value> = ["legacy-api", "legacy-web", "team-dashboards"]
        .into_iter()
        .map(|p| (p, blueprint(&sim, p)))
        .collect();

    // Sunday 2026-11-29 09:00 ICT: the previous Saturday is now the 28th.
    sim.reset_log();
    let sunday = h
        .run_at(
            json!({"scheduledTime": "2026-11-29T02:00:00Z"}),
            "2026-11-29T02:00:01Z",
        )
        .await
        .unwrap();
    assert_eq!(sunday["timeAfter"], "2026-11-27T17:00:00Z");
    assert_eq!(
        sunday["counts"]["timeAfterUpdated"].as_u64().unwrap(),
        managed.len() as u64
    );
    assert_eq!(
        writes(&sim),
        managed.len() as u64,
        "one PATCH per managed blueprint, nothing else"
    );
    for name in &managed {
        assert_eq!(
            t(blueprint(&sim, name)["timeAfter"].as_str().unwrap()),
            t("2026-11-27T17:00:00Z")
        );
    }
    for (name, before) in &unmanaged {
        assert_eq!(&blueprint(&sim, name), before, "{name} untouched");
    }
    // A retried delivery of the same schedule computes the same Saturday: no writes.
    sim.reset_log();
    h.run_at(
        json!({"scheduledTime": "2026-11-29T02:00:00Z"}),
        "2026-11-29T02:40:00Z",
    )
    .await
    .unwrap();
    assert_eq!(writes(&sim), 0);
}

#[tokio::test]
async fn drifted_managed_blueprints_are_reconciled_not_recreated() {
    let h = Harness::new(small(3)).await;
    let sim = h.sim();
    h.run(scheduled()).await.unwrap();
    let name = "github/org1-0/repo-00001";
    let bp = blueprint(&sim, name);
    let id = bp["id"].as_u64().unwrap();
    // Someone adds a second scope, drops the label's company and changes the schedule.
    sim.patch_blueprint(
        id,
        json!({
            "connections": [{"pluginName": "github", "connectionId": 1, "scopes": [{"scopeId": "1000002"}, {"scopeId": "1000001"}]}],
            "labels": [LABEL, "team-x"],
            "cronConfig": "0 5 * * *"
        }),
    )
    .unwrap();
    let projects_before = sim.projects().len();
    sim.reset_log();
    let summary = h.run(scheduled()).await.unwrap();
    assert_eq!(summary["counts"]["projectsReconciled"], 1, "{summary:#}");
    assert_eq!(summary["counts"]["projectsCreated"], 0);
    assert_eq!(sim.projects().len(), projects_before);
    let fixed = blueprint(&sim, name);
    assert_eq!(
        fixed["connections"],
        json!([{"pluginName": "github", "connectionId": 1, "scopes": [{"scopeId": "1000002"}]}])
    );
    assert_eq!(fixed["cronConfig"], "0 0 * * *");
    assert_eq!(
        labels(&fixed),
        vec![LABEL.to_string(), "team-x".to_string()],
        "other labels kept"
    );
    assert_eq!(writes(&sim), 1);
}

#[tokio::test]
async fn scope_filters_limit_what_is_managed() {
    let mut h = Harness::new(Fixture::sample()).await;
    h.config.scope_filter = devlake_autopilot::automation::filter::ScopeFilter::new(
        &[
            "github/*".to_string(),
            "gitlab/1/acme-group/backend/**".to_string(),
        ],
        &["github/1/acme-labs/*".to_string()],
    )
    .unwrap();
    let sim = h.sim();
    let summary = h.run(scheduled()).await.unwrap();
    assert_eq!(summary["status"], "ok", "{summary:#}");
    assert!(sim.project("github/acme/api-gateway").is_some());
    assert!(sim.project("github/acme-labs/llm-evals").is_none());
    assert!(
        sim.scope("github", 1, "600004").is_none(),
        "excluded repos are not added"
    );
    assert!(sim
        .project("gitlab/acme-group/backend/internal/ledger")
        .is_some());
    assert!(sim.project("gitlab/acme-group/frontend/web-app").is_none());
    assert!(sim.project("jira/PAY board").is_none());
    assert_eq!(summary["plugins"]["jira"]["scopesAdded"], 0);
}

#[tokio::test]
async fn manual_selection_of_plugins_connections_and_steps() {
    let h = Harness::new(Fixture::sample()).await;
    let sim = h.sim();
    let summary = h
        .run(json!({"connections": ["github/2"], "steps": ["discover", "sync"], "now": NOW}))
        .await
        .unwrap();
    assert_eq!(summary["counts"]["discoveredConnections"], 1);
    assert_eq!(summary["counts"]["scopesAdded"], 8);
    assert_eq!(sim.scopes("github", 2).len(), 8);
    assert!(sim.scopes("gitlab", 1).is_empty());
    assert_eq!(sim.projects().len(), 3, "projects step not requested");
    assert!(
        summary.get("managedProjects").is_none(),
        "no project listing, no count: {summary:#}"
    );
    // Without the scopeConfigs step no config is created and the new scopes have none.
    assert!(sim.scope_configs("github", 2).is_empty());

    let summary = h
        .run(json!({"plugins": ["jira"], "now": NOW}))
        .await
        .unwrap();
    assert_eq!(summary["counts"]["projectsCreated"], 3);
    assert_eq!(summary["managedProjects"], 3);
    assert_eq!(
        summary["plugins"]
            .as_object()
            .unwrap()
            .keys()
            .collect::<Vec<_>>(),
        vec!["jira"]
    );
    // A connection that does not exist is reported, not silently ignored.
    let summary = h
        .run(json!({"connections": ["github/7", "jira/1"], "steps": ["discover"], "now": NOW}))
        .await
        .unwrap();
    assert_eq!(summary["status"], "partial");
    assert_eq!(summary["errors"][0]["plugin"], "github");
    assert_eq!(summary["errors"][0]["connectionId"], 7);
    assert_eq!(summary["counts"]["discoveredConnections"], 1);
}

#[tokio::test]
async fn a_run_stopped_by_its_deadline_reports_what_is_left_and_the_next_run_finishes() {
    let h = Harness::with(
        Fixture::sample(),
        SimOptions {
            latency: Duration::from_millis(15),
            ..SimOptions::default()
        },
    )
    .await;
    let sim = h.sim();
    let remote = h.remote().await;
    let first = h
        .run_until(scheduled(), Deadline::after(Duration::from_millis(400)))
        .await
        .unwrap();
    assert_eq!(first["status"], "partial", "{first:#}");
    let remaining = &first["remaining"];
    let left = remaining["connections"].as_array().unwrap().len()
        + remaining["projects"].as_array().unwrap().len()
        + remaining["blueprintUpdates"].as_u64().unwrap() as usize
        + remaining["triggers"].as_u64().unwrap() as usize;
    assert!(left > 0, "{remaining:#}");
    // Requests in flight at the deadline are cut off there and reported, for the next run.
    for e in first["errors"].as_array().unwrap() {
        assert!(e["message"].as_str().unwrap().contains("deadline"), "{e:#}");
        assert_eq!(e["retryable"], true, "{e:#}");
    }

    let second = h.run(scheduled()).await.unwrap();
    assert_eq!(second["status"], "ok", "{second:#}");
    for (plugin, cid, child) in &remote {
        assert_wired(&sim, plugin, *cid, child, PREVIOUS_SATURDAY);
    }
}

#[tokio::test]
async fn a_devlake_slower_than_the_deadline_ends_the_run_on_time_as_partial() {
    let h = Harness::with(
        Fixture::sample(),
        SimOptions {
            latency: Duration::from_secs(25),
            ..SimOptions::default()
        },
    )
    .await;
    let started = std::time::Instant::now();
    let late = h
        .run_until(scheduled(), Deadline::after(Duration::from_secs(3)))
        .await
        .unwrap();
    let took = started.elapsed();
    assert!(took < Duration::from_secs(5), "took {took:?}");
    assert_eq!(late["status"], "partial", "{late:#}");
    let errors = late["errors"].as_array().unwrap();
    assert!(!errors.is_empty(), "{late:#}");
    assert!(errors
        .iter()
        .all(|e| e["message"].as_str().unwrap().contains("deadline")));

    // DevLake answers promptly again: the next run does the whole job.
    h.sim().clear_faults();
    let next = h.run(scheduled()).await.unwrap();
    assert_eq!(next["status"], "ok", "{next:#}");
}

#[tokio::test]
async fn old_devlake_gets_the_string_plugin_option() {
    let h = Harness::with(
        small(1),
        SimOptions {
            version: Some("v0.21.0@e3b9f1c".into()),
            ..SimOptions::default()
        },
    )
    .await;
    h.run(scheduled()).await.unwrap();
    let project = h.sim().project("github/org1-0/repo-00000").unwrap();
    assert_eq!(
        project["metrics"],
        json!([{"pluginName": "dora", "pluginOption": "{}", "enable": true}])
    );
}

#[tokio::test]
async fn run_record_in_dynamodb_and_metrics_in_cloudwatch() {
    use devlake_autopilot::store::MetricsSource;
    use devlake_testkit::cloudwatch_double::CloudWatchDouble;
    use devlake_testkit::stack::{dynamodb_local, local_sdk_config};

    let h = Harness::new(Fixture::sample()).await;
    let ddb = dynamodb_local().await;
    let table = ddb.create_table("automation-run").await;
    let store = DynamoStore::new(ddb.client(), &table);
    let cw = CloudWatchDouble::start().await;
    // The sink the function builds at start-up.
    let sink = automation::runtime::metrics_sink(
        aws_sdk_cloudwatch::Client::new(&local_sdk_config(cw.url())),
        "DevLake/Autopilot",
    );
    let ports = Ports {
        devlake: &h.client,
        run_log: Some(&store),
        metrics: Some(&sink),
    };
    let summary = automation::handle(&h.config, ports, &scheduled(), t(NOW), Deadline::none())
        .await
        .unwrap();
    let created = summary["counts"]["projectsCreated"].as_f64().unwrap();

    let snapshot = store
        .snapshot(t(NOW) - chrono::Duration::days(7))
        .await
        .unwrap();
    let run = snapshot.automation.expect("automation run record");
    assert!(run.success);
    // Every connection of the sample was tested, up, and the page's read finds them.
    assert_eq!(snapshot.connections.len(), 9, "{:?}", snapshot.connections);
    assert!(snapshot.connections.iter().all(|c| c.up && c.status == 200));
    // When the run finished: the invocation's clock (here t(NOW)) plus the run's own duration.
    let duration_ms = summary["durationMs"].as_i64().unwrap();
    assert_eq!(run.duration_ms as i64, duration_ms);
    assert_eq!(
        run.finished_at,
        t(NOW) + chrono::Duration::milliseconds(duration_ms)
    );
    assert_eq!(
        run.summary["counts"]["projectsCreated"],
        summary["counts"]["projectsCreated"]
    );

    let datums = cw.datums();
    let datum = |name: &str| {
        datums
            .iter()
            .find(|d| d.metric_name == name)
            .unwrap_or_else(|| panic!("{name} not sent: {datums:#?}"))
    };
    let value = |name: &str| datum(name).value.unwrap();
    // Every datum says which job sent it; the monitor's carry Function=monitor. Connection
    // health is one datum per connection, also by plugin and connection id.
    let function = vec![("Function".to_string(), "automation".to_string())];
    assert!(
        datums.iter().all(|d| d.namespace == "DevLake/Autopilot"
            && (d.dimensions == function || d.metric_name == "ConnectionUp")),
        "{datums:#?}"
    );
    let up: Vec<_> = datums
        .iter()
        .filter(|d| d.metric_name == "ConnectionUp")
        .collect();
    assert_eq!(up.len(), 9, "{up:#?}");
    assert!(up.iter().all(|d| d.value == Some(1.0)));
    assert!(up.iter().any(|d| d.dimensions
        == [
            ("Function".to_string(), "automation".to_string()),
            ("Plugin".to_string(), "jira".to_string()),
            ("ConnectionId".to_string(), "1".to_string()),
        ]));
    // The series the monitor sends too, with the same names and units.
    for (name, unit) in [
        ("RunSuccess", "None"),
        ("RunDurationMs", "Milliseconds"),
        ("Errors", "Count"),
    ] {
        assert_eq!(datum(name).unit.as_deref(), Some(unit), "{name}");
    }
    assert_eq!(value("RunDurationMs"), duration_ms as f64);
    assert_eq!(value("ProjectsCreated"), created);
    assert_eq!(
        value("ScopesAdded"),
        summary["counts"]["scopesAdded"].as_f64().unwrap()
    );
    assert_eq!(value("Triggered"), created);
    assert_eq!(value("Errors"), 0.0);
    assert_eq!(value("RunSuccess"), 1.0);
    assert!(value("RunDurationMs") >= 0.0);
    assert_eq!(cw.requests(), 1, "one batched PutMetricData");

    // CloudWatch failing does not fail the run; a 428 is recorded as a failed run.
    cw.clear();
    cw.fail_next(10, 500);
    h.sim().set_migration(MigrationMode::Pending);
    let err = automation::handle(&h.config, ports, &scheduled(), t(NOW), Deadline::none())
        .await
        .unwrap_err();
    assert_eq!(err.error_type(), "DevLakeMigrationPending");
    let run = store.snapshot(t(NOW)).await.unwrap().automation.unwrap();
    assert!(!run.success);
    assert_eq!(run.summary["status"], "failed");
    assert!(
        err.to_string().starts_with(
            "automation run stopped: DevLake is waiting for a database migration (428)"
        ),
        "{err}"
    );

    h.sim().set_migration(MigrationMode::None);
    let ok = automation::handle(&h.config, ports, &scheduled(), t(NOW), Deadline::none())
        .await
        .unwrap();
    assert_eq!(ok["status"], "ok", "metrics failing never fails the run");
    assert!(
        store
            .snapshot(t(NOW))
            .await
            .unwrap()
            .automation
            .unwrap()
            .success
    );
}

/// The real `devlake-automation` binary under `cargo lambda watch`, invoked once with the
/// EventBridge Scheduler payload: it reads its configuration from the environment, talks to the
/// simulator, writes its run record to DynamoDB Local and its metrics to the CloudWatch double.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lambda_binary_runs_a_scheduled_invocation() {
    use devlake_autopilot::store::MetricsSource;
    use devlake_testkit::cloudwatch_double::CloudWatchDouble;
    use devlake_testkit::lambda_watch::{InvokeError, LambdaWatch};
    use devlake_testkit::stack::dynamodb_local;

    let sim = Simulator::start(Fixture::sample()).await;
    let ddb = dynamodb_local().await;
    let table = ddb.create_table("automation-watch").await;
    let cw = CloudWatchDouble::start().await;
    let endpoint = sim.url();
    let watch = LambdaWatch::start(&[
        ("DEVLAKE_ENDPOINT", endpoint.as_str()),
        // The simulator serves plain HTTP.
        ("ALLOW_INSECURE_HTTP", "true"),
        ("TABLE_NAME", table.as_str()),
        ("AWS_ENDPOINT_URL_DYNAMODB", ddb.endpoint()),
        ("AWS_ENDPOINT_URL_CLOUDWATCH", cw.url()),
        ("AWS_REGION", "us-east-1"),
        ("AWS_ACCESS_KEY_ID", "local"),
        ("AWS_SECRET_ACCESS_KEY", "local"),
        ("CLOUDWATCH_NAMESPACE", "DevLake/AutopilotTest"),
        ("TRIGGER_GAP_MS", "0"),
        ("TRIGGER_MAX_PER_RUN", "1000"),
        ("DEADLINE_MARGIN_MS", "1000"),
    ])
    .await;

    let invoked = Utc::now();
    // The function bounds payload times by its own clock, so the schedule fires "now".
    let scheduled_time = invoked.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let summary = watch
        .invoke(
            "devlake-automation",
            &json!({ "scheduledTime": scheduled_time }),
        )
        .await
        .unwrap_or_else(|e| panic!("invoke failed: {e}\n{}", watch.log()));
    assert_eq!(
        summary["status"],
        "ok",
        "{:#}\n{}",
        summary["remaining"],
        watch.log()
    );
    assert_eq!(summary["source"], "scheduler");
    assert_eq!(summary["now"], scheduled_time);
    let saturday = devlake_autopilot::time_rules::previous_saturday(
        t(&scheduled_time),
        chrono_tz::Asia::Ho_Chi_Minh,
    );
    assert_eq!(
        summary["timeAfter"],
        saturday.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    );
    let created = summary["counts"]["projectsCreated"].as_u64().unwrap();
    assert!(created > 90);
    assert_eq!(sim.handle().projects().len() as u64, created + 3);

    let store = DynamoStore::new(ddb.client(), &table);
    let run = store
        .snapshot(invoked)
        .await
        .unwrap()
        .automation
        .expect("run record written by the function");
    assert!(run.success);
    assert!(
        run.finished_at >= invoked && run.finished_at <= Utc::now(),
        "finishedAt {} is when the run finished",
        run.finished_at
    );
    let datums = cw.datums();
    let projects_created = datums
        .iter()
        .find(|d| d.metric_name == "ProjectsCreated")
        .unwrap_or_else(|| panic!("{datums:#?}\n{}", watch.log()));
    assert_eq!(projects_created.namespace, "DevLake/AutopilotTest");
    assert_eq!(projects_created.value, Some(created as f64));
    // The function's sink marks every datum as the automation's.
    assert!(
        datums
            .iter()
            .all(|d| d.dimensions.first()
                == Some(&("Function".to_string(), "automation".to_string()))),
        "{datums:#?}"
    );

    // A bad payload is a function error naming the field, and nothing is called.
    sim.handle().reset_log();
    let err = watch
        .invoke("devlake-automation", &json!({"dryRun": "yes"}))
        .await
        .expect_err("invalid payload");
    match &err {
        InvokeError::Function { message } => {
            assert!(message.starts_with("InvalidPayload: "), "{message}");
            assert!(message.contains("dryRun"), "{message}");
        }
        other => panic!("expected a function error, got {other}"),
    }
    assert_eq!(sim.handle().counts().total, 0);
}

#[tokio::test]
async fn a_rolling_or_fixed_policy_sets_time_after_to_its_local_midnight() {
    let mut h = Harness::new(small(2)).await;
    let sim = h.sim();
    h.config.time_after_policy =
        devlake_autopilot::time_rules::TimeAfterPolicy::parse("rolling:3d").unwrap();
    let summary = h.run(scheduled()).await.unwrap();
    // Sat 2026-11-28 18:00 ICT, three days back: Wed 11-25 00:00 ICT.
    assert_eq!(summary["timeAfter"], "2026-11-24T17:00:00Z", "{summary:#}");
    for name in managed_projects(&sim) {
        assert_eq!(
            t(blueprint(&sim, &name)["timeAfter"].as_str().unwrap()),
            t("2026-11-24T17:00:00Z")
        );
    }
    // A rolling window moves every day, not every week.
    sim.finish_all_pending("TASK_COMPLETED", "").unwrap();
    sim.reset_log();
    let next = h
        .run_at(
            json!({"scheduledTime": "2026-11-29T11:00:00Z"}),
            "2026-11-29T11:00:00Z",
        )
        .await
        .unwrap();
    assert_eq!(next["timeAfter"], "2026-11-25T17:00:00Z");
    assert_eq!(writes(&sim), 2);

    h.config.time_after_policy =
        devlake_autopilot::time_rules::TimeAfterPolicy::parse("fixed:2026-01-01").unwrap();
    h.run(scheduled()).await.unwrap();
    for name in managed_projects(&sim) {
        assert_eq!(
            t(blueprint(&sim, &name)["timeAfter"].as_str().unwrap()),
            t("2025-12-31T17:00:00Z")
        );
    }
}

#[tokio::test]
async fn a_backfill_is_not_cut_short_before_its_first_successful_pipeline() {
    let mut h = Harness::new(small(2)).await;
    let sim = h.sim();
    h.config.initial_backfill_days = 90;
    // 90 days before Sat 2026-11-28 (ICT) is Sun 08-30, 00:00 ICT.
    let backfill = "2026-08-29T17:00:00Z";
    let plan = h.run(json!({"dryRun": true, "now": NOW})).await.unwrap();
    let create = plan["planned"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["action"] == "createProject")
        .unwrap()
        .clone();
    assert_eq!(create["detail"]["blueprint"]["timeAfter"], backfill);

    let first = h.run(scheduled()).await.unwrap();
    assert_eq!(first["counts"]["projectsCreated"], 2, "{first:#}");
    let names = managed_projects(&sim);
    assert_eq!(names.len(), 2);
    for name in &names {
        let bp = blueprint(&sim, name);
        assert_eq!(t(bp["timeAfter"].as_str().unwrap()), t(backfill), "{name}");
        assert!(labels(&bp)
            .iter()
            .any(|l| l.starts_with("devlake-autopilot-backfill-after-")));
    }

    // Next day: the backfill pipelines are still running; the daily run leaves timeAfter alone.
    const SUNDAY: &str = "2026-11-29T11:00:00Z";
    let sunday = json!({ "scheduledTime": SUNDAY });
    sim.reset_log();
    h.run_at(sunday.clone(), SUNDAY).await.unwrap();
    assert_eq!(writes(&sim), 0, "{:#?}", sim.requests());

    // One backfill fails, the other completes: only the completed one joins the policy.
    let pending = sim.pending_pipelines();
    assert_eq!(pending.len(), 2);
    sim.finish_pipeline(pending[0], "TASK_FAILED", "rate limited")
        .unwrap();
    sim.finish_pipeline(pending[1], "TASK_COMPLETED", "")
        .unwrap();
    let completed = sim.pipeline(pending[1]).unwrap()["blueprintId"]
        .as_u64()
        .unwrap();
    h.run_at(sunday.clone(), SUNDAY).await.unwrap();
    for name in &names {
        let bp = blueprint(&sim, name);
        let ta = t(bp["timeAfter"].as_str().unwrap());
        if bp["id"].as_u64() == Some(completed) {
            assert_eq!(ta, t("2026-11-27T17:00:00Z"), "{name} follows the policy");
            assert_eq!(labels(&bp), vec![LABEL.to_string()], "mark taken off");
        } else {
            assert_eq!(ta, t(backfill), "{name}: failed backfill is retried whole");
            assert!(labels(&bp).len() == 2, "{bp}");
        }
    }
    // After a success, a later failure does not bring the backfill back.
    sim.finish_all_pending("TASK_COMPLETED", "").unwrap();
    h.run_at(sunday, SUNDAY).await.unwrap();
    let id = sim.trigger(completed).unwrap();
    sim.finish_pipeline(id, "TASK_FAILED", "boom").unwrap();
    h.run_at(
        json!({"scheduledTime": "2026-12-06T11:00:00Z"}),
        "2026-12-06T11:00:00Z",
    )
    .await
    .unwrap();
    for name in &names {
        let bp = blueprint(&sim, name);
        assert_eq!(
            t(bp["timeAfter"].as_str().unwrap()),
            t("2026-12-04T17:00:00Z"),
            "{name}"
        );
        assert_eq!(labels(&bp), vec![LABEL.to_string()]);
    }
}

#[tokio::test]
async fn the_replaced_systems_names_are_kept_and_a_second_scope_with_the_same_name_is_a_conflict() {
    let mut h = Harness::new(small(2)).await;
    let sim = h.sim();
    h.config.name_template =
        devlake_autopilot::automation::naming::NameTemplate::parse("{plugin}/{name}").unwrap();
    // The same repository name under a second organisation of the same connection.
    let twin = sim
        .add_remote_scope(
            "github",
            1,
            Some("fork-org"),
            gh_repo("fork-org", "repo-00001", 777_001),
        )
        .unwrap();
    let summary = h.run(scheduled()).await.unwrap();
    assert_eq!(summary["status"], "ok", "{summary:#}");
    let mut names = managed_projects(&sim);
    names.sort();
    assert_eq!(names, vec!["github/repo-00000", "github/repo-00001"]);
    let conflicts = summary["conflicts"].as_array().unwrap();
    assert_eq!(conflicts.len(), 1, "{conflicts:#?}");
    assert_eq!(conflicts[0]["project"], "github/repo-00001");
    assert_eq!(conflicts[0]["reason"], "duplicateName");
    assert_eq!(conflicts[0]["scopeId"], twin);
    // The first scope keeps the project, wired to it alone: nothing merged.
    let bp = blueprint(&sim, "github/repo-00001");
    let wired: Vec<&str> = bp["connections"][0]["scopes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["scopeId"].as_str().unwrap())
        .collect();
    assert_eq!(wired.len(), 1);
    assert_ne!(wired[0], twin);
    // The next run repeats the report and sends nothing.
    sim.finish_all_pending("TASK_COMPLETED", "").unwrap();
    sim.reset_log();
    let again = h.run(scheduled()).await.unwrap();
    assert_eq!(writes(&sim), 0);
    assert_eq!(again["conflicts"][0]["scopeId"], twin);
}

/// A Bitbucket Server connection with Bitbucket projects `PLAT` (two repositories) and `WEB`
/// (one), named the way DevLake's remote listing names them.
fn bitbucket_server_world(sim: &SimHandle) -> u64 {
    let cid = sim
        .add_connection(
            "bitbucket_server",
            json!({"name": "bitbucket-onprem", "endpoint": "https://bitbucket.example.com/"}),
        )
        .unwrap();
    sim.add_remote_group("bitbucket_server", cid, None, "PLAT", "Platform")
        .unwrap();
    sim.add_remote_group("bitbucket_server", cid, None, "WEB", "Web")
        .unwrap();
    for (group, name, n) in [
        ("PLAT", "api", 101),
        ("PLAT", "worker", 102),
        ("WEB", "api", 201),
    ] {
        sim.add_remote_scope(
            "bitbucket_server",
            cid,
            Some(group),
            devlake_testkit::sim::fixture::scope_data("bitbucket_server", group, name, n),
        )
        .unwrap();
    }
    cid
}

#[tokio::test]
async fn bitbucket_server_repositories_get_one_scope_and_one_project_each() {
    let h = Harness::new(small(1)).await;
    let sim = h.sim();
    let cid = bitbucket_server_world(&sim);
    // DevLake lists a repository by its numeric id and its display name; the scope id is in data.
    let remote: Vec<RemoteScopeChild> = h
        .client
        .remote_scopes("bitbucket_server", cid)
        .try_collect()
        .await
        .unwrap();
    let repos: Vec<&RemoteScopeChild> = remote.iter().filter(|c| c.kind == "scope").collect();
    assert_eq!(repos.len(), 3);
    assert!(
        repos.iter().all(|c| c.id.parse::<u64>().is_ok()),
        "{repos:?}"
    );
    assert_eq!(
        repos[0].data.as_ref().unwrap()["bitbucketId"],
        "PLAT/repos/api"
    );

    let summary = h.run(scheduled()).await.unwrap();
    assert_eq!(summary["status"], "ok", "{summary:#}");
    assert_eq!(
        summary["plugins"]["bitbucket_server"]["projectsCreated"], 3,
        "{summary:#}"
    );
    assert_eq!(sim.scopes("bitbucket_server", cid).len(), 3);
    // Its scope config has no DORA patterns: DevLake's Bitbucket Server config has none.
    let configs = sim.scope_configs("bitbucket_server", cid);
    assert_eq!(configs.len(), 1, "{configs:?}");
    assert!(
        configs[0].get("deploymentPattern").is_none(),
        "{}",
        configs[0]
    );
    for id in ["PLAT/repos/api", "PLAT/repos/worker", "WEB/repos/api"] {
        let scope = sim
            .scope("bitbucket_server", cid, id)
            .unwrap_or_else(|| panic!("scope {id} saved"));
        assert_eq!(scope["scopeConfigId"], configs[0]["id"], "{scope}");
        let name = format!("bitbucket_server/{id}");
        let bp = blueprint(&sim, &name);
        assert_eq!(
            bp["connections"],
            json!([{"pluginName": "bitbucket_server", "connectionId": cid, "scopes": [{"scopeId": id}]}]),
            "{name}"
        );
        assert_eq!(t(bp["timeAfter"].as_str().unwrap()), t(PREVIOUS_SATURDAY));
        assert!(labels(&bp).contains(&LABEL.to_string()));
    }
    assert!(summary["counts"]["triggered"].as_u64().unwrap() >= 3);

    sim.finish_all_pending("TASK_COMPLETED", "").unwrap();
    sim.reset_log();
    h.run(scheduled()).await.unwrap();
    assert_eq!(writes(&sim), 0, "{:#?}", sim.requests());
}

#[tokio::test]
async fn the_demo_world_includes_a_bitbucket_server_connection() {
    let h = Harness::new(Fixture::demo()).await;
    let sim = h.sim();
    // The demo adopts its hand-made project before the first run, as the migration guide says.
    let adopt = h
        .run(json!({"action": "adopt", "projects": ["legacy-api"], "now": NOW}))
        .await
        .unwrap();
    assert_eq!(adopt["adopted"][0]["project"], "legacy-api", "{adopt:#}");
    let summary = h.run(scheduled()).await.unwrap();
    assert_eq!(summary["status"], "ok", "{summary:#}");
    assert_eq!(summary["plugins"]["bitbucket_server"]["projectsCreated"], 3);
    assert!(sim.project("bitbucket_server/PAY/repos/gateway").is_some());
    assert!(sim.project("bitbucket_server/OPS/repos/runbooks").is_some());
}

fn refused(summary: &Value) -> BTreeMap<String, String> {
    summary["notAdopted"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["project"].as_str().unwrap().to_string(),
                r["reason"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[tokio::test]
async fn unmanaged_single_scope_projects_are_adopted_and_the_rest_left_untouched() {
    let mut h = Harness::new(Fixture::sample()).await;
    let sim = h.sim();
    let before: BTreeMap<&str, Value> = ["legacy-api", "legacy-web", "team-dashboards"]
        .into_iter()
        .map(|p| (p, blueprint(&sim, p)))
        .collect();

    // A daily run in dry-run mode says how many could be adopted.
    let plan = h.run(json!({"dryRun": true, "now": NOW})).await.unwrap();
    assert_eq!(plan["adoptable"], 1, "{plan:#}");

    sim.reset_log();
    let dry = h
        .run(json!({"action": "adopt", "all": true, "dryRun": true, "now": NOW}))
        .await
        .unwrap();
    assert_eq!(writes(&sim), 0);
    assert_eq!(dry["adopted"][0]["project"], "legacy-api", "{dry:#}");
    assert_eq!(
        refused(&dry),
        BTreeMap::from([
            ("legacy-web".to_string(), "severalScopes".to_string()),
            ("team-dashboards".to_string(), "noScope".to_string()),
        ])
    );
    let planned = dry["planned"].as_array().unwrap();
    assert_eq!(planned.len(), 1);
    assert_eq!(
        planned[0]["detail"],
        json!({"labels": [LABEL], "timeAfter": PREVIOUS_SATURDAY})
    );

    h.config.initial_backfill_days = 30;
    let adopt = h
        .run(json!({"action": "adopt", "projects": ["legacy-api", "legacy-web", "no-such"], "scheduledTime": NOW}))
        .await
        .unwrap();
    assert_eq!(adopt["status"], "ok", "{adopt:#}");
    assert_eq!(
        refused(&adopt),
        BTreeMap::from([
            ("legacy-web".to_string(), "severalScopes".to_string()),
            ("no-such".to_string(), "notFound".to_string()),
        ])
    );
    assert_eq!(writes(&sim), 1, "one PATCH: {:#?}", sim.requests());
    let bp = blueprint(&sim, "legacy-api");
    let old = &before["legacy-api"];
    // Marked and rolled; wiring, cron and the rest as they were.
    let last = sim
        .pipelines_of_blueprint(bp["id"].as_u64().unwrap())
        .iter()
        .filter_map(|p| p["id"].as_u64())
        .max()
        .unwrap();
    assert_eq!(
        labels(&bp),
        vec![LABEL.to_string(), format!("{LABEL}-backfill-after-{last}")]
    );
    // 30 days before Sat 2026-11-28 (ICT): Thu 10-29 00:00 ICT.
    assert_eq!(
        t(bp["timeAfter"].as_str().unwrap()),
        t("2026-10-28T17:00:00Z")
    );
    for key in ["connections", "cronConfig", "isManual", "enable", "name"] {
        assert_eq!(bp[key], old[key], "{key}");
    }
    for p in ["legacy-web", "team-dashboards"] {
        assert_eq!(blueprint(&sim, p), before[p], "{p} untouched");
    }

    // The next daily run manages it: no second project for its scope, no adoptable left, and
    // the backfill is held (its last pipeline is the one from before the adoption).
    let projects_before = sim.projects().len();
    let run = h.run(scheduled()).await.unwrap();
    assert_eq!(run["adoptable"], 0, "{run:#}");
    let holders: Vec<String> = sim
        .projects()
        .iter()
        .map(|p| p["name"].as_str().unwrap().to_string())
        .filter(|n| {
            blueprint(&sim, n)["connections"]
                .to_string()
                .contains("\"500005\"")
        })
        .collect();
    assert_eq!(holders, vec!["legacy-api".to_string()]);
    assert!(sim.projects().len() > projects_before);
    assert_eq!(
        t(blueprint(&sim, "legacy-api")["timeAfter"].as_str().unwrap()),
        t("2026-10-28T17:00:00Z")
    );
    // Adopting again changes nothing.
    sim.reset_log();
    let again = h
        .run(json!({"action": "adopt", "projects": ["legacy-api"], "now": NOW}))
        .await
        .unwrap();
    assert_eq!(writes(&sim), 0);
    assert_eq!(refused(&again)["legacy-api"], "alreadyManaged");
}

#[tokio::test]
async fn a_bad_adopt_payload_is_refused_before_any_call() {
    let h = Harness::new(small(1)).await;
    let sim = h.sim();
    sim.reset_log();
    for bad in [
        json!({"action": "adopt"}),
        json!({"action": "adopt", "all": true, "projects": ["x"]}),
        json!({"action": "adopt", "all": "yes"}),
        json!({"action": "adopt", "all": true, "steps": ["sync"]}),
    ] {
        let e = h.run(bad.clone()).await.unwrap_err();
        assert!(matches!(e, AutomationError::Payload(_)), "{bad}: {e}");
    }
    assert_eq!(sim.requests().len(), 0);
}

#[tokio::test]
async fn orphaned_scopes_are_reported_disabled_on_request_and_enabled_when_back() {
    let mut h = Harness::new(small(3)).await;
    let sim = h.sim();
    h.run(scheduled()).await.unwrap();
    sim.finish_all_pending("TASK_COMPLETED", "").unwrap();
    let gone = "github/org1-0/repo-00001";
    let gone_bp = blueprint(&sim, gone);
    let gone_id = gone_bp["connections"][0]["scopes"][0]["scopeId"]
        .as_str()
        .unwrap()
        .to_string();
    let kept = blueprint(&sim, "github/org1-0/repo-00000");
    let row = sim.scope("github", 1, &gone_id).unwrap();
    assert!(sim.remove_remote_scope("github", 1, &gone_id).unwrap());

    // Default policy: reported, nothing changed; the run record feeds the metrics page.
    sim.reset_log();
    let store = devlake_autopilot::store::MemoryStore::new();
    let ports = Ports {
        devlake: &h.client,
        run_log: Some(&store),
        metrics: None,
    };
    let report = automation::handle(&h.config, ports, &scheduled(), t(NOW), Deadline::none())
        .await
        .unwrap();
    let page = devlake_autopilot::render::render_page(
        &devlake_autopilot::store::MetricsSnapshot {
            automation: store.run(Job::Automation),
            ..Default::default()
        },
        chrono_tz::Asia::Ho_Chi_Minh,
        devlake_autopilot::render::ExpositionFormat::PrometheusText,
        Duration::ZERO,
    );
    assert!(
        page.contains("devlake_orphan_scopes{plugin=\"github\",connection_id=\"1\"} 1\n"),
        "{page}"
    );
    assert_eq!(writes(&sim), 0);
    let orphans = report["orphanScopes"].as_array().unwrap();
    assert_eq!(orphans.len(), 1, "{report:#}");
    assert_eq!(orphans[0]["scopeId"], gone_id.as_str());
    assert_eq!(
        report["orphanScopeCounts"],
        json!([{"plugin": "github", "connectionId": 1, "count": 1}])
    );
    assert_eq!(blueprint(&sim, gone), gone_bp);

    // A broken walk marks nothing, even with the disable policy.
    h.config.orphan_policy = devlake_autopilot::automation::orphans::OrphanPolicy::Disable;
    sim.add_fault_rule(FaultRule::status(
        "GET",
        "/plugins/github/connections/1/remote-scopes",
        10,
        500,
    ));
    sim.reset_log();
    let broken = h.run(scheduled()).await.unwrap();
    assert!(broken.get("orphanScopes").is_none(), "{broken:#}");
    assert_eq!(blueprint(&sim, gone)["enable"], true);
    sim.clear_faults();

    // Disable: the one blueprint is disabled and marked; the scope and project stay. Its last
    // pipeline failed (the repository is gone), yet it is not triggered again.
    let pipeline = sim.trigger(gone_bp["id"].as_u64().unwrap()).unwrap();
    sim.finish_pipeline(pipeline, "TASK_FAILED", "repository not found")
        .unwrap();
    sim.reset_log();
    h.run(scheduled()).await.unwrap();
    assert_eq!(writes(&sim), 1, "{:#?}", sim.requests());
    let disabled = blueprint(&sim, gone);
    assert_eq!(disabled["enable"], false);
    assert!(labels(&disabled).contains(&format!("{LABEL}-orphaned")));
    assert_eq!(blueprint(&sim, "github/org1-0/repo-00000"), kept);
    assert_eq!(sim.scope("github", 1, &gone_id), Some(row.clone()));
    assert!(sim.project(gone).is_some());
    sim.reset_log();
    h.run(scheduled()).await.unwrap();
    assert_eq!(writes(&sim), 0, "disabling is done once");

    // The repository comes back: enabled again, mark removed.
    sim.add_remote_scope(
        "github",
        1,
        Some("org1-0"),
        gh_repo("org1-0", "repo-00001", gone_id.parse().unwrap()),
    )
    .unwrap();
    let back = h.run(scheduled()).await.unwrap();
    assert_eq!(back["orphanScopes"], json!([]), "{back:#}");
    assert_eq!(
        back["orphanScopeCounts"],
        json!([{"plugin": "github", "connectionId": 1, "count": 0}])
    );
    let enabled = blueprint(&sim, gone);
    assert_eq!(enabled["enable"], true);
    assert_eq!(labels(&enabled), vec![LABEL.to_string()]);
}

/// The automation's answer for representative runs, pinned as golden files
/// (`tests/golden/summary/automation-*.json`, timing zeroed): a first scheduled run on a fresh
/// DevLake, the steady run after it, a dry run, a run whose scope writes keep failing (partial,
/// one error per scope) and a manual re-run naming one project and one unknown name. The
/// simulator's clock is fixed at [`NOW`], the run's `now`.
#[tokio::test]
async fn golden_summaries_of_representative_runs() {
    use devlake_testkit::golden::{assert_golden, summary_text};

    let h = Harness::new(small(3)).await;
    let sim = h.sim();
    sim.set_clock(Some(t(NOW)));
    let first = h.run(scheduled()).await.unwrap();
    assert_golden("summary/automation-first-run.json", &summary_text(&first));
    sim.finish_all_pending("TASK_COMPLETED", "").unwrap();
    let steady = h.run(scheduled()).await.unwrap();
    assert_golden("summary/automation-steady-run.json", &summary_text(&steady));
    let project = managed_projects(&sim)[0].clone();
    let rerun = h
        .run(json!({"action": "rerun", "projects": [project, "no-such-project"]}))
        .await
        .unwrap();
    assert_golden("summary/automation-rerun.json", &summary_text(&rerun));

    let h = Harness::new(small(2)).await;
    h.sim().set_clock(Some(t(NOW)));
    let dry = h.run(json!({"dryRun": true})).await.unwrap();
    assert_golden("summary/automation-dry-run.json", &summary_text(&dry));

    let h = Harness::new(small(2)).await;
    let sim = h.sim();
    sim.set_clock(Some(t(NOW)));
    sim.add_fault_rule(FaultRule::status(
        "PUT",
        "/plugins/github/connections/1/scopes",
        100,
        503,
    ));
    let partial = h.run(scheduled()).await.unwrap();
    assert_eq!(partial["status"], "partial");
    assert_golden(
        "summary/automation-run-with-errors.json",
        &summary_text(&partial),
    );
}

/// Connection health against the simulator's `TestExistingConnection`: a connection that is
/// down is reported with DevLake's message (summary and log), its projects are not triggered
/// (counted), its `ConnectionUp` datum and stored health say 0 and the metrics page shows
/// `devlake_connection_up 0` for it; nothing secret DevLake echoes reaches the log, the summary
/// or the store. Once it is back its projects are triggered; a filtered run leaves the stored
/// health alone.
#[tokio::test]
async fn a_down_connection_is_reported_and_its_projects_are_not_triggered() {
    // Its log lines are checked: alone in a process, no other test can disable their callsites.
    if !devlake_testkit::log_capture::alone(
        "a_down_connection_is_reported_and_its_projects_are_not_triggered",
    ) {
        return;
    }
    use devlake_autopilot::cloudwatch::MemorySink;
    use devlake_autopilot::store::{MemoryStore, MetricsSnapshot, MetricsSource};
    use devlake_testkit::log_capture::Capture;
    use devlake_testkit::sim::ConnectionTestMode;

    // A classic GitHub token: DevLake's test answer echoes it with only 20 of 40 characters
    // starred (`GithubConn.SanitizeToken`).
    const TOKEN: &str = "ghp_4f9Qz8WmL2kP7nR3tY6uV1xB5cD0eH9jK2aS";
    let mut fixture = Fixture::sample();
    let enterprise = fixture
        .connections
        .iter_mut()
        .find(|c| c.plugin == "github" && c.connection["id"] == 2)
        .unwrap();
    enterprise.connection["token"] = json!(TOKEN);
    enterprise.test = ConnectionTestMode::Unauthorized;
    fixture
        .connections
        .iter_mut()
        .find(|c| c.plugin == "gitlab")
        .unwrap()
        .test = ConnectionTestMode::Unreachable;
    let h = Harness::new(fixture).await;
    let sim = h.sim();
    let store = MemoryStore::new();
    let sink = MemorySink::new();
    let ports = Ports {
        devlake: &h.client,
        run_log: Some(&store),
        metrics: Some(&sink),
    };
    let capture = Capture::default();
    let summary = {
        let _guard = tracing::subscriber::set_default(capture.clone());
        automation::handle(&h.config, ports, &scheduled(), t(NOW), Deadline::none())
            .await
            .unwrap()
    };

    // Reported with DevLake's own words; a down connection alone does not make the run partial.
    assert_eq!(summary["status"], "ok", "{summary:#}");
    assert_eq!(summary["counts"]["connectionsTested"], 9);
    assert_eq!(summary["counts"]["connectionsDown"], 2);
    let down = summary["connectionsDown"].as_array().unwrap();
    assert_eq!(down.len(), 2, "{summary:#}");
    assert_eq!(
        (
            &down[0]["plugin"],
            &down[0]["connectionId"],
            &down[0]["connectionName"],
            &down[0]["status"]
        ),
        (
            &json!("github"),
            &json!(2),
            &json!("github-enterprise"),
            &json!(200)
        )
    );
    assert_eq!(
        down[0]["message"],
        "StatusUnauthorized error when testing connection (400)"
    );
    assert_eq!(
        (&down[1]["plugin"], &down[1]["status"]),
        (&json!("gitlab"), &json!(500))
    );
    let unreachable = down[1]["message"].as_str().unwrap();
    assert!(
        unreachable.starts_with("Failed to connect Wraps: (2) dial tcp gitlab.example.com:443"),
        "{unreachable}"
    );
    let log = capture.text();
    assert!(
        log.contains("connection down")
            && log.contains("StatusUnauthorized error when testing connection (400)"),
        "{log}"
    );

    // Their projects were created but not triggered, and counted; all others were.
    let of_down: Vec<(String, u64)> = sim
        .blueprints()
        .iter()
        .filter(|b| {
            b["connections"].as_array().into_iter().flatten().any(|c| {
                (c["pluginName"] == "github" && c["connectionId"] == 2)
                    || (c["pluginName"] == "gitlab" && c["connectionId"] == 1)
            })
        })
        .map(|b| {
            (
                b["projectName"].as_str().unwrap().to_string(),
                b["id"].as_u64().unwrap(),
            )
        })
        .collect();
    assert!(of_down.len() >= 20, "{of_down:?}");
    assert_eq!(
        summary["stepCounts"]["trigger"]["connectionDown"],
        of_down.len()
    );
    let held: Vec<&str> = summary["skippedTriggers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["reason"] == "connectionDown")
        .map(|s| s["project"].as_str().unwrap())
        .collect();
    assert_eq!(held.len(), of_down.len());
    assert!(held
        .iter()
        .all(|p| p.starts_with("github/") || p.starts_with("gitlab/")));
    let pending: Vec<u64> = sim
        .pending_pipelines()
        .iter()
        .map(|id| sim.pipeline(*id).unwrap()["blueprintId"].as_u64().unwrap())
        .collect();
    assert!(of_down.iter().all(|(_, bp)| !pending.contains(bp)));
    assert_eq!(
        summary["counts"]["triggered"].as_u64().unwrap() as usize,
        pending.len()
    );
    assert!(!pending.is_empty());

    // Stored, sent to CloudWatch, on the metrics page.
    let stored = store.connection_health().expect("connection health stored");
    assert_eq!(stored.connections.len(), 9);
    assert_eq!(stored.connections.iter().filter(|c| !c.up).count(), 2);
    let datums = sink.named("ConnectionUp");
    let enterprise_datum = datums
        .iter()
        .find(|d| {
            d.dimensions
                == [
                    ("Plugin".to_string(), "github".to_string()),
                    ("ConnectionId".to_string(), "2".to_string()),
                ]
        })
        .unwrap();
    assert_eq!(enterprise_datum.value, 0.0);
    assert_eq!(datums.iter().filter(|d| d.value == 1.0).count(), 7);
    let page = |snapshot: &MetricsSnapshot| {
        devlake_autopilot::render::render_page(
            snapshot,
            chrono_tz::UTC,
            devlake_autopilot::render::ExpositionFormat::PrometheusText,
            Duration::ZERO,
        )
    };
    let first_page = page(&store.snapshot(t(NOW)).await.unwrap());
    assert!(
        first_page.contains(
            "devlake_connection_up{plugin=\"github\",connection_id=\"2\",connection_name=\"github-enterprise\"} 0\n"
        ),
        "{first_page}"
    );
    assert!(first_page.contains(
        "devlake_connection_up{plugin=\"github\",connection_id=\"1\",connection_name=\"github-acme\"} 1\n"
    ));

    // Nothing secret anywhere: not the token, not the parts DevLake's sanitised echo shows.
    let recorded = serde_json::to_string(&store.run(Job::Automation)).unwrap()
        + &serde_json::to_string(&stored).unwrap()
        + &summary.to_string()
        + &log;
    for secret in [TOKEN, &TOKEN[..12], &TOKEN[32..]] {
        assert!(!recorded.contains(secret), "{secret} leaked");
    }

    // Back up: the held projects (never ran) are triggered by the next run.
    sim.set_connection_test("github", 2, ConnectionTestMode::Up)
        .unwrap();
    sim.set_connection_test("gitlab", 1, ConnectionTestMode::Up)
        .unwrap();
    sim.finish_all_pending("TASK_COMPLETED", "").unwrap();
    let again = automation::handle(&h.config, ports, &scheduled(), t(NOW), Deadline::none())
        .await
        .unwrap();
    assert_eq!(again["counts"]["connectionsDown"], 0);
    assert_eq!(again["counts"]["triggered"], of_down.len());
    assert!(store
        .connection_health()
        .unwrap()
        .connections
        .iter()
        .all(|c| c.up));

    // A run limited to one plugin reports what it tested but leaves the stored health alone.
    sim.set_connection_test("jira", 1, ConnectionTestMode::Unauthorized)
        .unwrap();
    let filtered = automation::handle(
        &h.config,
        ports,
        &json!({"plugins": ["jira"]}),
        t(NOW),
        Deadline::none(),
    )
    .await
    .unwrap();
    assert_eq!(
        filtered["connectionsDown"][0]["message"],
        "Please check your credential (401)"
    );
    assert!(store
        .connection_health()
        .unwrap()
        .connections
        .iter()
        .all(|c| c.up));
}

#[tokio::test]
async fn a_spread_window_gives_each_project_its_own_minute_and_a_second_run_patches_nothing() {
    use devlake_autopilot::automation::CronSetting;
    const PROJECTS: usize = 240;
    let mut h = Harness::new(small(PROJECTS)).await;
    let sim = h.sim();
    // 23:00 to 00:59 UTC: the window crosses midnight.
    h.config.cron = CronSetting::parse("spread:23:00-01:00").unwrap();
    h.run(scheduled()).await.unwrap();
    let crons = |sim: &SimHandle| -> BTreeMap<String, String> {
        managed_projects(sim)
            .into_iter()
            .map(|p| {
                let bp = blueprint(sim, &p);
                assert_eq!(bp["isManual"], false, "{p}");
                (p, bp["cronConfig"].as_str().unwrap().to_string())
            })
            .collect()
    };
    let first = crons(&sim);
    assert_eq!(first.len(), PROJECTS);
    // Each is `M H * * *` (DevLake validated it on the PATCH) inside the window, minutes spread.
    let mut per_minute: BTreeMap<u32, usize> = BTreeMap::new();
    for cron in first.values() {
        let f: Vec<&str> = cron.split(' ').collect();
        assert_eq!(f[2..], ["*", "*", "*"], "{cron}");
        let (m, hour): (u32, u32) = (f[0].parse().unwrap(), f[1].parse().unwrap());
        assert!(m < 60 && (hour == 23 || hour == 0), "{cron}");
        *per_minute.entry(hour * 60 + m).or_default() += 1;
    }
    let before_midnight: usize = per_minute.range(23 * 60..).map(|(_, n)| n).sum();
    // 240 projects over 120 minutes: two a minute on average. A fair spread uses most
    // minutes, piles no more than a handful on one, and splits the window around midnight.
    assert!(per_minute.len() >= 90, "{} minutes used", per_minute.len());
    assert!(per_minute.values().all(|n| *n <= 8), "{per_minute:?}");
    assert!((80..=160).contains(&before_midnight), "{before_midnight}");

    // A second run: the same minute for every project, so not one PATCH.
    sim.reset_log();
    h.run(scheduled()).await.unwrap();
    assert_eq!(sim.count_matching("PATCH", "/blueprints"), 0);
    assert_eq!(crons(&sim), first);

    // A new window moves every project into it, one PATCH each.
    h.config.cron = CronSetting::parse("spread:01:00-05:00").unwrap();
    sim.reset_log();
    let summary = h.run(scheduled()).await.unwrap();
    assert_eq!(
        sim.count_matching("PATCH", "/blueprints"),
        PROJECTS,
        "{summary:#}"
    );
    let CronSetting::Spread(window) = &h.config.cron else {
        unreachable!()
    };
    for (project, cron) in crons(&sim) {
        assert_eq!(cron, window.cron_for(&project));
        let hour: u32 = cron.split(' ').nth(1).unwrap().parse().unwrap();
        assert!((1..5).contains(&hour), "{cron}");
    }
}
