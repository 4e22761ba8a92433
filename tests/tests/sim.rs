//! The DevLake simulator's own behaviour, over real HTTP with plain reqwest (not the project's
//! client), checked against DevLake's behaviour (docs/devlake-api.md).

use std::time::{Duration, Instant};

use base64::Engine as _;
use chrono::{DateTime, Utc};
use devlake_testkit::sim::{
    AutoComplete, FaultRule, Faults, Fixture, GeneratedSpec, MigrationMode, PipelineSeed,
    SimOptions, Simulator,
};
use reqwest::Method;
use serde_json::{json, Value};

struct Api {
    sim: Simulator,
    http: reqwest::Client,
}

struct Resp {
    status: u16,
    text: String,
    content_type: String,
}

impl Resp {
    fn json(&self) -> Value {
        serde_json::from_str(&self.text)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.text))
    }
}

impl Api {
    async fn new(fixture: Fixture) -> Api {
        Self::with(fixture, SimOptions::default()).await
    }

    async fn with(fixture: Fixture, opts: SimOptions) -> Api {
        Api {
            sim: Simulator::start_with(fixture, opts).await,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap(),
        }
    }

    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> Resp {
        let mut req = self
            .http
            .request(method, format!("{}{}", self.sim.url(), path));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req.send().await.unwrap_or_else(|e| panic!("{path}: {e}"));
        let status = r.status().as_u16();
        let content_type = r
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        Resp {
            status,
            text: r.text().await.unwrap(),
            content_type,
        }
    }

    async fn get(&self, path: &str) -> Resp {
        self.call(Method::GET, path, None).await
    }

    /// GET expecting 200 JSON.
    async fn ok(&self, path: &str) -> Value {
        let r = self.get(path).await;
        assert_eq!(r.status, 200, "GET {path}: {}", r.text);
        r.json()
    }

    async fn post(&self, path: &str, body: Value) -> Resp {
        self.call(Method::POST, path, Some(body)).await
    }

    async fn patch(&self, path: &str, body: Value) -> Resp {
        self.call(Method::PATCH, path, Some(body)).await
    }

    async fn put(&self, path: &str, body: Value) -> Resp {
        self.call(Method::PUT, path, Some(body)).await
    }
}

fn assert_error(r: &Resp, status: u16, message_contains: &str) {
    assert_eq!(r.status, status, "{}", r.text);
    let v = r.json();
    assert_eq!(v["code"], 0);
    assert_eq!(v["success"], false);
    assert!(v.get("causes").is_some() && v.get("data").is_some(), "{v}");
    let msg = v["message"].as_str().unwrap();
    assert!(
        msg.contains(message_contains),
        "{msg:?} lacks {message_contains:?}"
    );
    assert!(msg.ends_with(&format!("({status})")), "{msg:?}");
}

fn decode_token(t: &str) -> Value {
    let raw = base64::engine::general_purpose::STANDARD.decode(t).unwrap();
    serde_json::from_slice(&raw).unwrap()
}

fn time(v: &Value) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(v.as_str().unwrap_or_else(|| panic!("not a time: {v}")))
        .unwrap()
        .with_timezone(&Utc)
}

// ------------------------------------------------------------------------- basics

#[tokio::test]
async fn health_version_plugins_and_unknown_routes() {
    let api = Api::new(Fixture::sample()).await;
    assert!(!api.sim.url().ends_with('/'));
    let ping = api.get("/ping").await;
    assert_eq!((ping.status, ping.text.as_str()), (200, ""));
    assert_eq!(
        api.ok("/version").await,
        json!({"version": "v1.0.3@sim0000"})
    );
    assert_eq!(api.ok("/ready").await["message"], "ready");

    let plugins = api.ok("/plugins").await;
    let names: Vec<&str> = plugins
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["plugin"].as_str().unwrap())
        .collect();
    for p in [
        "dora",
        "github",
        "gitlab",
        "bitbucket",
        "azuredevops_go",
        "jenkins",
        "circleci",
        "bamboo",
        "jira",
    ] {
        assert!(names.contains(&p), "{p} missing from {names:?}");
    }
    let dora = plugins
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["plugin"] == "dora")
        .unwrap();
    assert_eq!(dora["metric"]["isProjectMetric"], true);
    let gh = plugins
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["plugin"] == "github")
        .unwrap();
    assert_eq!(
        gh["metric"],
        json!({"requiredDataEntities": null, "runAfter": null, "isProjectMetric": false})
    );

    for path in ["/nope", "/plugins/nosuch/connections", "/api/blueprints"] {
        let r = api.get(path).await;
        assert_eq!(
            (r.status, r.text.as_str()),
            (404, "404 page not found"),
            "{path}"
        );
        assert!(
            r.content_type.starts_with("text/plain"),
            "{path}: {}",
            r.content_type
        );
    }
    // Routes exist under /rest/ too (open when no api key is configured).
    assert_eq!(api.ok("/rest/version").await["version"], "v1.0.3@sim0000");

    let opts = SimOptions {
        version: Some("v0.21.0@abc1234".into()),
        ..SimOptions::default()
    };
    let other = Api::with(Fixture::empty(), opts).await;
    assert_eq!(other.ok("/version").await["version"], "v0.21.0@abc1234");
}

#[tokio::test]
async fn connections_are_bare_arrays_and_missing_ones_404() {
    let api = Api::new(Fixture::sample()).await;
    let gh = api.ok("/plugins/github/connections").await;
    let gh = gh.as_array().expect("bare array");
    assert_eq!(gh.len(), 2);
    assert_eq!(gh[0]["id"], 1);
    assert_eq!(gh[0]["name"], "github-acme");
    assert_eq!(gh[0]["token"], "********", "secrets come back masked");
    for plugin in [
        "gitlab",
        "bitbucket",
        "azuredevops_go",
        "jenkins",
        "circleci",
        "bamboo",
        "jira",
    ] {
        let list = api.ok(&format!("/plugins/{plugin}/connections")).await;
        assert_eq!(list.as_array().unwrap().len(), 1, "{plugin}");
    }
    let one = api.ok("/plugins/jira/connections/1").await;
    assert_eq!(one["name"], "jira-acme");
    let missing = api.get("/plugins/github/connections/99").await;
    assert_error(&missing, 404, "GithubConnection not found");
}

// ------------------------------------------------------------------------- remote scopes

#[tokio::test]
async fn github_remote_scopes_page_with_base64_tokens() {
    let api = Api::new(Fixture::sample()).await;
    let top = api.ok("/plugins/github/connections/1/remote-scopes").await;
    assert_eq!(top["nextPageToken"], "");
    let groups = top["children"].as_array().unwrap();
    assert_eq!(groups.len(), 3);
    for g in groups {
        assert_eq!(g["type"], "group");
        assert_eq!(g["parentId"], Value::Null);
        assert_eq!(g["data"], Value::Null);
    }

    let mut token = String::new();
    let mut repos = Vec::new();
    let mut pages = 0;
    loop {
        let path =
            format!("/plugins/github/connections/1/remote-scopes?groupId=acme&pageToken={token}");
        let page = api.ok(&path).await;
        pages += 1;
        repos.extend(page["children"].as_array().unwrap().iter().cloned());
        token = page["nextPageToken"]
            .as_str()
            .expect("string, never null")
            .to_string();
        if token.is_empty() {
            break;
        }
        assert_eq!(
            decode_token(&token),
            json!({"page": pages + 1, "per_page": 20})
        );
    }
    assert_eq!(pages, 3);
    assert_eq!(repos.len(), 45);
    let r = &repos[0];
    assert_eq!(r["type"], "scope");
    assert_eq!(r["parentId"], "acme");
    assert_eq!(r["id"], "500001");
    assert_eq!(r["fullName"], "acme/api-gateway");
    let d = &r["data"];
    assert_eq!(d["githubId"], 500001, "int id");
    assert_eq!(d["HTMLUrl"], "https://github.com/acme/api-gateway");
    assert_eq!(d["cloneUrl"], "https://github.com/acme/api-gateway.git");
    assert_eq!(d["fullName"], "acme/api-gateway");
    assert_eq!(d["connectionId"], 0);
    assert!(d.get("htmlUrl").is_none());

    // An unknown group has no children: `[]`, never null.
    let empty = api
        .ok("/plugins/github/connections/1/remote-scopes?groupId=ghost")
        .await;
    assert_eq!(empty, json!({"children": [], "nextPageToken": ""}));
    let bad = api
        .get("/plugins/github/connections/1/remote-scopes?groupId=acme&pageToken=%%%")
        .await;
    assert_eq!(bad.status, 400);
}

#[tokio::test]
async fn remote_scope_shapes_for_every_plugin() {
    let api = Api::new(Fixture::sample()).await;
    let children = |v: Value| v["children"].as_array().unwrap().clone();

    // GitLab: nested groups, subgroups listed before projects.
    let top = children(api.ok("/plugins/gitlab/connections/1/remote-scopes").await);
    assert_eq!(
        top.iter()
            .map(|c| c["id"].as_str().unwrap())
            .collect::<Vec<_>>(),
        ["user:17", "100"]
    );
    let g100 = children(
        api.ok("/plugins/gitlab/connections/1/remote-scopes?groupId=100")
            .await,
    );
    assert_eq!(g100[0]["type"], "group");
    assert_eq!(g100[1]["type"], "group");
    assert_eq!(g100.last().unwrap()["type"], "scope");
    let g101 = children(
        api.ok("/plugins/gitlab/connections/1/remote-scopes?groupId=101")
            .await,
    );
    assert_eq!(g101[0]["id"], "103");
    let g103 = children(
        api.ok("/plugins/gitlab/connections/1/remote-scopes?groupId=103")
            .await,
    );
    assert_eq!(g103[0]["data"]["gitlabId"], 9110);
    assert_eq!(
        g103[0]["data"]["pathWithNamespace"],
        "acme-group/backend/internal/ledger"
    );
    assert_eq!(g103[0]["fullName"], "acme-group/backend/internal/ledger");

    let bb = children(
        api.ok("/plugins/bitbucket/connections/1/remote-scopes?groupId=acme-ws")
            .await,
    );
    assert_eq!(bb[0]["id"], "acme-ws/payments-ios");
    assert_eq!(bb[0]["data"]["bitbucketId"], "acme-ws/payments-ios");

    let ado = children(
        api.ok("/plugins/azuredevops_go/connections/1/remote-scopes?groupId=acme-ado%2FPlatform")
            .await,
    );
    let d = &ado[0]["data"];
    for k in [
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
    ] {
        assert!(d.get(k).is_some(), "ADO scope lacks {k}: {d}");
    }
    assert_eq!(ado[0]["id"], d["id"]);
    assert!(d.get("organizationId").is_none());

    let jk_top = children(api.ok("/plugins/jenkins/connections/1/remote-scopes").await);
    assert!(jk_top
        .iter()
        .any(|c| c["type"] == "scope" && c["id"] == "nightly-build"));
    let prod = children(
        api.ok("/plugins/jenkins/connections/1/remote-scopes?groupId=deploy%2Fprod")
            .await,
    );
    assert_eq!(prod[0]["data"]["fullName"], "deploy/prod/release");

    let cc = children(
        api.ok("/plugins/circleci/connections/1/remote-scopes?groupId=gh%2Facme")
            .await,
    );
    assert_eq!(cc[0]["data"]["slug"], "gh/acme/checkout-web");
    assert_eq!(cc[0]["id"], cc[0]["data"]["id"]);

    let bamboo = children(
        api.ok("/plugins/bamboo/connections/1/remote-scopes?groupId=ACME")
            .await,
    );
    assert_eq!(bamboo[0]["data"]["planKey"], "ACME-API");

    let found = api
        .ok("/plugins/github/connections/1/search-remote-scopes?search=legacy&page=1&pageSize=50")
        .await;
    assert_eq!(
        (found["page"].as_u64(), found["pageSize"].as_u64()),
        (Some(1), Some(50))
    );
    let found = found["children"].as_array().unwrap().clone();
    assert_eq!(found.len(), 2);
    assert!(found
        .iter()
        .all(|c| c["parentId"].is_null() && c["type"] == "scope"));
    assert_eq!(
        api.get("/plugins/github/connections/1/search-remote-scopes")
            .await
            .status,
        400
    );
    let r = api
        .get("/plugins/jenkins/connections/1/search-remote-scopes?search=x")
        .await;
    assert_eq!((r.status, r.text.as_str()), (404, "404 page not found"));

    let jira = children(api.ok("/plugins/jira/connections/1/remote-scopes").await);
    assert_eq!(jira.len(), 3, "boards are listed directly");
    assert_eq!(jira[0]["type"], "scope");
    assert_eq!(jira[0]["id"], "11");
    assert_eq!(jira[0]["data"]["boardId"], 11);
}

#[tokio::test]
async fn remote_scopes_added_through_the_handle_and_control_api() {
    let api = Api::new(Fixture::sample()).await;
    let h = api.sim.handle();
    let before = api
        .ok("/plugins/github/connections/2/remote-scopes?groupId=platform")
        .await;
    let n = before["children"].as_array().unwrap().len();
    h.add_remote_scope(
        "github",
        2,
        Some("platform"),
        json!({"githubId": 77, "name": "new-repo", "fullName": "platform/new-repo", "HTMLUrl": "https://github.example.com/platform/new-repo", "cloneUrl": "https://github.example.com/platform/new-repo.git"}),
    )
    .unwrap();
    let r = api
        .post(
            "/_sim/remote-scopes",
            json!({"plugin": "github", "connectionId": 2, "groupId": "platform", "data": {"githubId": 78, "name": "other", "fullName": "platform/other"}}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["scopeIds"], json!(["78"]));
    let after = api
        .ok("/plugins/github/connections/2/remote-scopes?groupId=platform")
        .await;
    let ids: Vec<&str> = after["children"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), n + 2);
    assert!(ids.contains(&"77") && ids.contains(&"78"));
    assert_eq!(h.counts().total, 2, "control routes are not logged");
}

// ------------------------------------------------------------------------- scopes

#[tokio::test]
async fn put_scopes_upserts_and_reports_failures_by_index() {
    let api = Api::new(Fixture::sample()).await;
    let h = api.sim.handle();
    let remote = api
        .ok("/plugins/github/connections/2/remote-scopes?groupId=platform")
        .await;
    let rows: Vec<Value> = remote["children"].as_array().unwrap()[..3]
        .iter()
        .map(|c| c["data"].clone())
        .collect();

    // Remote data as-is carries `HTMLUrl` but no `htmlUrl`: DevLake would call GitHub for each.
    let r = api
        .put(
            "/plugins/github/connections/2/scopes",
            json!({"data": rows}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let saved = r.json();
    let saved = saved.as_array().expect("bare array");
    assert_eq!(saved.len(), 3);
    assert_eq!(
        saved[0]["connectionId"], 2,
        "connectionId overwritten from the path"
    );
    assert_eq!(saved[0]["_raw_data_table"], "_raw_github_scopes");
    assert_eq!(
        saved[0]["_raw_data_params"],
        r#"{"ConnectionId":2,"Name":"platform/core-lib"}"#
    );
    assert!(saved[0].get("scopeConfigId").is_none(), "omitted when 0");
    assert_eq!(h.github_api_fill_calls(), 3);

    // With htmlUrl + cloneUrl (camelCase) no fill happens; keys land in HTMLUrl case-insensitively.
    let mut row = rows[0].clone();
    row["htmlUrl"] = row["HTMLUrl"].take();
    row.as_object_mut().unwrap().remove("HTMLUrl");
    row["scopeConfigId"] = json!(1);
    row["connectionId"] = json!(999);
    let r = api
        .put(
            "/plugins/github/connections/2/scopes",
            json!({"data": [row]}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(h.github_api_fill_calls(), 3);
    let one = &r.json()[0];
    assert_eq!(
        one["HTMLUrl"],
        "https://github.example.com/platform/core-lib"
    );
    assert_eq!(one["scopeConfigId"], 1);

    // Row 1 lacks the id: 400 "failed to save item 1", row 0 stays saved.
    let bad = api
        .put(
            "/plugins/github/connections/2/scopes",
            json!({"data": [{"githubId": 4242, "name": "x", "fullName": "platform/x", "htmlUrl": "u", "cloneUrl": "c"}, {"name": "no-id"}]}),
        )
        .await;
    assert_error(&bad, 400, "failed to save item 1");
    assert!(h.scope("github", 2, "4242").is_some());
    assert_error(
        &api.put("/plugins/github/connections/2/scopes", json!({"rows": []}))
            .await,
        400,
        "bad request body format",
    );

    let list = api
        .ok("/plugins/github/connections/2/scopes?pageSize=2")
        .await;
    assert_eq!(list["count"], 4);
    let items = list["scopes"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    assert_eq!(items[0]["scope"]["githubId"], 10001);
    assert_eq!(
        items[0]["scopeConfig"]["name"], "github-dora",
        "scopeConfig embedded"
    );
    assert!(items[1].get("scopeConfig").is_none());
    assert!(items[0].get("blueprints").is_none());
    let page2 = api
        .ok("/plugins/github/connections/2/scopes?page=2&pageSize=2")
        .await;
    assert_eq!(page2["scopes"].as_array().unwrap().len(), 2);
    let search = api
        .ok("/plugins/github/connections/2/scopes?searchTerm=CORE")
        .await;
    assert_eq!(search["count"], 1);
}

#[tokio::test]
async fn scope_get_patch_with_slashes_in_ids() {
    let api = Api::new(Fixture::sample()).await;
    // Jenkins: wildcard route, raw `/` and %2F both work.
    for path in [
        "/plugins/jenkins/connections/1/scopes/deploy/api",
        "/plugins/jenkins/connections/1/scopes/deploy%2Fapi",
    ] {
        let v = api.ok(path).await;
        assert_eq!(v["scope"]["fullName"], "deploy/api", "{path}");
    }
    let bb = api
        .put(
            "/plugins/bitbucket/connections/1/scopes",
            json!({"data": [{"bitbucketId": "acme-ws/merchant-portal", "name": "merchant-portal"}]}),
        )
        .await;
    assert_eq!(bb.status, 200, "{}", bb.text);
    let v = api
        .ok("/plugins/bitbucket/connections/1/scopes/acme-ws/merchant-portal")
        .await;
    assert_eq!(v["scope"]["bitbucketId"], "acme-ws/merchant-portal");
    let p = api
        .patch(
            "/plugins/bitbucket/connections/1/scopes/acme-ws%2Fmerchant-portal",
            json!({"description": "POS"}),
        )
        .await;
    assert_eq!(p.status, 200, "{}", p.text);
    assert_eq!(p.json()["description"], "POS");
    assert_eq!(p.json()["bitbucketId"], "acme-ws/merchant-portal");

    // GitHub scope ids never contain `/`: a raw slash is an unknown route.
    let r = api
        .get("/plugins/github/connections/1/scopes/500005/extra")
        .await;
    assert_eq!((r.status, r.text.as_str()), (404, "404 page not found"));
    assert_error(
        &api.get("/plugins/github/connections/1/scopes/123").await,
        404,
        "GithubRepo not found",
    );

    let sync = api
        .ok("/plugins/jenkins/connections/1/scopes/deploy/api/latest-sync-state")
        .await;
    assert!(sync.is_array());
    let with_bp = api
        .ok("/plugins/github/connections/1/scopes/500005?blueprints=true")
        .await;
    assert_eq!(with_bp["blueprints"][0]["projectName"], "legacy-api");
    assert_eq!(with_bp["blueprints"][0]["plan"], Value::Null);
    let patched = api
        .patch(
            "/plugins/github/connections/1/scopes/500005",
            json!({"scopeConfigId": 0}),
        )
        .await;
    assert!(patched.json().get("scopeConfigId").is_none());
}

#[tokio::test]
async fn scope_configs_create_list_patch_and_duplicate_500() {
    let api = Api::new(Fixture::sample()).await;
    let r = api
        .post(
            "/plugins/github/connections/2/scope-configs",
            json!({"name": "ghe-dora", "connectionId": 77, "entities": ["CICD"], "deploymentPattern": "deploy"}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let sc = r.json();
    assert_eq!(sc["connectionId"], 2);
    assert_eq!(sc["name"], "ghe-dora");
    let id = sc["id"].as_u64().unwrap();
    assert!(id > 1);
    let dup = api
        .post(
            "/plugins/github/connections/1/scope-configs",
            json!({"name": "ghe-dora"}),
        )
        .await;
    assert_error(
        &dup,
        500,
        "The name of the current scope config is duplicated. Please modify it before saving.",
    );
    assert_error(
        &api.post("/plugins/github/connections/2/scope-configs", json!({}))
            .await,
        400,
        "",
    );

    api.post(
        "/plugins/github/connections/2/scope-configs",
        json!({"name": "second"}),
    )
    .await;
    let list = api.ok("/plugins/github/connections/2/scope-configs").await;
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["second", "ghe-dora"],
        "id DESC, only this connection"
    );

    let p = api
        .patch(
            &format!("/plugins/github/connections/2/scope-configs/{id}"),
            json!({"productionPattern": "prod"}),
        )
        .await;
    assert_eq!(p.status, 200);
    assert_eq!(p.json()["productionPattern"], "prod");
    assert_eq!(p.json()["deploymentPattern"], "deploy");
    assert_eq!(
        api.ok(&format!("/plugins/github/connections/2/scope-configs/{id}"))
            .await["productionPattern"],
        "prod"
    );
    assert_eq!(
        api.get("/plugins/github/connections/2/scope-configs/999")
            .await
            .status,
        404
    );
}

// ------------------------------------------------------------------------- projects

#[tokio::test]
async fn project_creation_makes_the_default_blueprint() {
    let api = Api::new(Fixture::empty()).await;
    let before = Utc::now();
    let r = api
        .post(
            "/projects",
            json!({"name": "svc-a", "description": "", "metrics": [{"pluginName": "dora", "pluginOption": {}, "enable": true}]}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let p = r.json();
    assert_eq!(p["name"], "svc-a");
    assert_eq!(p["metrics"][0]["pluginName"], "dora");
    assert!(p.get("lastPipeline").is_none());
    for k in [
        "createdAt",
        "updatedAt",
        "_raw_data_params",
        "_raw_data_table",
        "_raw_data_id",
        "_raw_data_remark",
    ] {
        assert!(p.get(k).is_some(), "{k}");
    }
    let bp = &p["blueprint"];
    assert_eq!(bp["name"], "svc-a-Blueprint");
    assert_eq!(bp["projectName"], "svc-a");
    assert_eq!(bp["mode"], "NORMAL");
    assert_eq!(bp["enable"], true);
    assert_eq!(bp["cronConfig"], "0 0 * * *");
    assert_eq!(bp["isManual"], false);
    assert_eq!(bp["connections"], json!([]));
    let ta = time(&bp["timeAfter"]);
    let days = (before - ta).num_days();
    assert!(
        (180..=185).contains(&days),
        "timeAfter {ta} is ~six months back"
    );
    assert_eq!(ta.time(), chrono::NaiveTime::MIN, "midnight");
    for k in [
        "id",
        "createdAt",
        "updatedAt",
        "plan",
        "beforePlan",
        "afterPlan",
        "labels",
        "priority",
        "skipOnFail",
        "skipCollectors",
        "fullSync",
    ] {
        assert!(bp.get(k).is_some(), "blueprint lacks {k}");
    }

    assert_error(
        &api.post("/projects", json!({"name": "svc-a"})).await,
        400,
        "A project with name [svc-a] already exists",
    );
    assert_error(
        &api.post("/projects", json!({"name": "x".repeat(101)}))
            .await,
        400,
        "Project name is too long.",
    );
    assert_eq!(
        api.post("/projects", json!({"name": "x".repeat(100)}))
            .await
            .status,
        201
    );
    assert_error(
        &api.post("/projects", json!({"description": "no name"}))
            .await,
        400,
        "",
    );
    let garbage = api
        .http
        .post(format!("{}/projects", api.sim.url()))
        .body("{nope")
        .send()
        .await
        .unwrap();
    assert_eq!(garbage.status(), 400);
}

#[tokio::test]
async fn project_names_with_slashes_are_percent_encoded() {
    let api = Api::new(Fixture::empty()).await;
    assert_eq!(
        api.post("/projects", json!({"name": "a / b"})).await.status,
        201
    );
    let v = api.ok("/projects/a%20%2F%20b").await;
    assert_eq!(v["name"], "a / b");
    assert_eq!(v["blueprint"]["name"], "a / b-Blueprint");
    assert_eq!(
        api.ok("/projects/a%20%2F%20b/check").await,
        json!({"exist": true})
    );
    assert_eq!(
        api.ok("/projects/a%2Fb/check").await,
        json!({"exist": false})
    );
    // A raw slash splits the route instead.
    assert_eq!(api.get("/projects/a%20/%20b").await.status, 404);

    let p = api
        .patch(
            "/projects/a%20%2F%20b",
            json!({"description": "renamed soon"}),
        )
        .await;
    assert_eq!(p.status, 201, "PATCH answers 201 (sic): {}", p.text);
    assert_eq!(p.json()["description"], "renamed soon");
    let p = api
        .patch("/projects/a%20%2F%20b", json!({"name": "org/c"}))
        .await;
    assert_eq!(p.status, 201);
    assert_eq!(p.json()["blueprint"]["projectName"], "org/c");
    assert_error(
        &api.get("/projects/a%20%2F%20b").await,
        404,
        "could not find project [a / b] in DB",
    );

    let del = api.call(Method::DELETE, "/projects/org%2Fc", None).await;
    assert_eq!(del.status, 200, "{}", del.text);
    assert_eq!(del.json()["success"], true);
    assert!(
        api.sim.handle().blueprints().is_empty(),
        "its blueprint went too"
    );
}

#[tokio::test]
async fn project_list_is_paged_newest_first_with_last_pipeline() {
    let api = Api::new(Fixture::sample()).await;
    let all = api.ok("/projects").await;
    assert_eq!(all["count"], 3);
    let names: Vec<&str> = all["projects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["team-dashboards", "legacy-web", "legacy-api"],
        "created_at DESC"
    );
    let legacy_web = &all["projects"][1];
    assert_eq!(legacy_web["lastPipeline"]["status"], "TASK_PARTIAL");
    assert!(
        all["projects"][0].get("lastPipeline").is_none(),
        "omitted without pipelines"
    );
    let page = api.ok("/projects?page=2&pageSize=2").await;
    assert_eq!(page["count"], 3);
    assert_eq!(page["projects"][0]["name"], "legacy-api");
    let kw = api.ok("/projects?keyword=LEGACY").await;
    assert_eq!(kw["count"], 2);
}

// ------------------------------------------------------------------------- blueprints

#[tokio::test]
async fn blueprint_patch_replaces_connections_wholesale_and_validates() {
    let api = Api::new(Fixture::sample()).await;
    let bp = api.sim.handle().blueprint_of_project("legacy-web").unwrap();
    let id = bp["id"].as_u64().unwrap();
    assert_eq!(bp["connections"].as_array().unwrap().len(), 2);
    let path = format!("/blueprints/{id}");

    let r = api
        .patch(&path, json!({"connections": [{"pluginName": "github", "connectionId": 1, "scopes": [{"scopeId": "500005"}]}]}))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let v = r.json();
    assert_eq!(
        v["connections"],
        json!([{"pluginName": "github", "connectionId": 1, "scopes": [{"scopeId": "500005"}]}])
    );
    assert_eq!(v["labels"], json!(["team-web"]), "absent keys unchanged");
    assert_eq!(
        v["plan"].as_array().unwrap().len(),
        3,
        "org, github, dora stages"
    );

    // Unknown scope: 400 and nothing changes.
    let r = api
        .patch(&path, json!({"connections": [{"pluginName": "github", "connectionId": 1, "scopes": [{"scopeId": "424242"}]}], "labels": ["x"]}))
        .await;
    assert_error(&r, 400, "424242");
    assert_eq!(api.ok(&path).await["labels"], json!(["team-web"]));
    // Empty scopes rejected except for jenkins.
    let r = api
        .patch(
            &path,
            json!({"connections": [{"pluginName": "github", "connectionId": 1, "scopes": []}]}),
        )
        .await;
    assert_eq!(r.status, 400);
    let r = api
        .patch(
            &path,
            json!({"connections": [{"pluginName": "jenkins", "connectionId": 1, "scopes": []}]}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let r = api.patch(&path, json!({"connections": [{"pluginName": "gitlab", "connectionId": 9, "scopes": [{"scopeId": "1"}]}]})).await;
    assert_eq!(r.status, 400);

    // Case-insensitive keys, cron validation, manual, timeAfter, mode.
    let r = api.patch(&path, json!({"CronConfig": "0 3 * * 6", "TIMEAFTER": "2026-04-25T00:00:00Z", "enable": false})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let v = r.json();
    assert_eq!(v["cronConfig"], "0 3 * * 6");
    assert_eq!(v["timeAfter"], "2026-04-25T00:00:00Z");
    assert_eq!(v["enable"], false);
    assert_error(
        &api.patch(&path, json!({"cronConfig": "every day"})).await,
        400,
        "cron",
    );
    assert_eq!(
        api.patch(&path, json!({"cronConfig": "@daily"}))
            .await
            .status,
        200
    );
    let manual = api
        .patch(&path, json!({"cronConfig": "Manual"}))
        .await
        .json();
    assert_eq!(manual["isManual"], true);
    assert_error(
        &api.patch(&path, json!({"mode": "ADVANCED"})).await,
        400,
        "mode is not updatable",
    );
    assert_eq!(
        api.patch(&path, json!({"timeAfter": null})).await.json()["timeAfter"],
        Value::Null
    );

    assert_error(
        &api.get("/blueprints/9999").await,
        404,
        "blueprint not found",
    );
    assert_eq!(api.get("/blueprints/abc").await.status, 400);
}

#[tokio::test]
async fn blueprint_list_filters_and_paging() {
    let api = Api::new(Fixture::sample()).await;
    let all = api.ok("/blueprints").await;
    assert_eq!(all["count"], 3);
    let ids: Vec<u64> = all["blueprints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["id"].as_u64().unwrap())
        .collect();
    assert_eq!(ids, [3, 2, 1], "id DESC");
    assert_eq!(api.ok("/blueprints?enable=false").await["count"], 1);
    assert_eq!(api.ok("/blueprints?isManual=true").await["count"], 1);
    assert_eq!(api.ok("/blueprints?label=team-web").await["count"], 1);
    assert_eq!(api.ok("/blueprints?type=DAILY").await["count"], 2);
    assert_eq!(api.ok("/blueprints?type=MANUAL").await["count"], 1);
    assert_eq!(api.get("/blueprints?type=HOURLY").await.status, 400);
    let page = api.ok("/blueprints?page=2&pageSize=2").await;
    assert_eq!(page["blueprints"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn blueprint_create_delete_and_adhoc_pipelines() {
    let api = Api::new(Fixture::sample()).await;
    let plan = json!([[{"plugin": "github", "subtasks": null, "options": {"connectionId": 1, "githubId": 500001}}]]);
    let r = api
        .post(
            "/blueprints",
            json!({"name": "adv", "mode": "ADVANCED", "plan": plan, "cronConfig": "manual"}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let bp = r.json();
    assert_eq!(
        (bp["mode"].as_str(), bp["isManual"].as_bool()),
        (Some("ADVANCED"), Some(true))
    );
    assert_eq!(bp["plan"], plan);
    let id = bp["id"].as_u64().unwrap();
    let empty_plan = api
        .post(
            "/blueprints",
            json!({"name": "adv2", "mode": "ADVANCED", "plan": []}),
        )
        .await;
    assert_eq!(empty_plan.status, 400);
    let taken = api
        .post(
            "/blueprints",
            json!({"name": "x", "mode": "NORMAL", "projectName": "legacy-api"}),
        )
        .await;
    assert_error(&taken, 400, "legacy-api");

    let pid = api
        .post(&format!("/blueprints/{id}/trigger"), json!({}))
        .await
        .json()["id"]
        .clone();
    assert_eq!(
        api.call(Method::DELETE, &format!("/blueprints/{id}"), None)
            .await
            .status,
        500
    );
    api.sim
        .handle()
        .finish_pipeline(pid.as_u64().unwrap(), "TASK_COMPLETED", "")
        .unwrap();
    assert_eq!(
        api.call(Method::DELETE, &format!("/blueprints/{id}"), None)
            .await
            .status,
        200
    );
    assert_eq!(api.get(&format!("/blueprints/{id}")).await.status, 404);

    let r = api
        .post(
            "/pipelines",
            json!({"name": "one-off", "plan": plan, "labels": ["adhoc"]}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let p = r.json();
    assert_eq!(
        (p["blueprintId"].as_u64(), p["status"].as_str()),
        (Some(0), Some("TASK_CREATED"))
    );
    assert_eq!(api.ok("/pipelines?label=adhoc").await["count"], 1);
    assert_error(
        &api.post("/pipelines", json!({"name": "none", "plan": [[]]}))
            .await,
        400,
        "no task to run",
    );
}

#[tokio::test]
async fn trigger_creates_one_pending_pipeline_at_a_time() {
    let api = Api::new(Fixture::sample()).await;
    let h = api.sim.handle();
    let bp = h.blueprint_of_project("legacy-web").unwrap();
    let id = bp["id"].as_u64().unwrap();

    let r = api
        .post(
            &format!("/blueprints/{id}/trigger"),
            json!({"fullSync": true}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let p = r.json();
    assert_eq!(p["status"], "TASK_CREATED");
    assert_eq!(p["blueprintId"], id);
    assert_eq!(p["name"], "legacy-web-Blueprint");
    assert_eq!(p["labels"], json!(["team-web"]));
    assert_eq!(p["timeAfter"], bp["timeAfter"]);
    assert_eq!(p["fullSync"], true);
    assert_eq!(p["beganAt"], Value::Null);
    assert_eq!(p["finishedAt"], Value::Null);
    assert_eq!(p["totalTasks"], 4);
    for k in [
        "id",
        "createdAt",
        "updatedAt",
        "plan",
        "finishedTasks",
        "message",
        "errorName",
        "spentSeconds",
        "stage",
        "priority",
        "skipOnFail",
        "skipCollectors",
    ] {
        assert!(p.get(k).is_some(), "pipeline lacks {k}");
    }
    let pid = p["id"].as_u64().unwrap();

    assert_error(
        &api.post(&format!("/blueprints/{id}/trigger"), json!({}))
            .await,
        400,
        "there are pending pipelines of current blueprint already",
    );
    h.start_pipeline(pid).unwrap();
    assert_eq!(
        api.ok(&format!("/pipelines/{pid}")).await["status"],
        "TASK_RUNNING"
    );
    assert_eq!(
        api.post(&format!("/blueprints/{id}/trigger"), json!({}))
            .await
            .status,
        400
    );
    h.finish_pipeline(pid, "TASK_FAILED", "boom").unwrap();
    let done = api.ok(&format!("/pipelines/{pid}")).await;
    assert_eq!(done["status"], "TASK_FAILED");
    assert_eq!(done["message"], "boom");
    assert!(time(&done["finishedAt"]) >= time(&done["beganAt"]));
    // Empty body is accepted too.
    let again = api
        .http
        .post(format!("{}/blueprints/{id}/trigger", api.sim.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 200);

    let dash = h.blueprint_of_project("team-dashboards").unwrap()["id"]
        .as_u64()
        .unwrap();
    assert_error(
        &api.post(&format!("/blueprints/{dash}/trigger"), json!({}))
            .await,
        400,
        "blueprint is not enabled",
    );
    api.patch(&format!("/blueprints/{dash}"), json!({"enable": true}))
        .await;
    assert_error(
        &api.post(&format!("/blueprints/{dash}/trigger"), json!({}))
            .await,
        400,
        "no task to run",
    );
    assert_error(
        &api.post("/blueprints/999/trigger", json!({})).await,
        404,
        "blueprint not found",
    );

    let bp_pipes = api.ok(&format!("/blueprints/{id}/pipelines")).await;
    assert_eq!(bp_pipes["count"], 5);
    assert_eq!(bp_pipes["pipelines"][0]["status"], "TASK_CREATED");
}

// ------------------------------------------------------------------------- pipelines

#[tokio::test]
async fn pipeline_list_filters_paging_and_rerun() {
    let api = Api::new(Fixture::sample()).await;
    let h = api.sim.handle();
    let all = api.ok("/pipelines").await;
    assert_eq!(all["count"], 7);
    let ids: Vec<u64> = all["pipelines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_u64().unwrap())
        .collect();
    assert_eq!(ids, [7, 6, 5, 4, 3, 2, 1]);
    // Seeded in time order, so ids grow with createdAt.
    let times: Vec<DateTime<Utc>> = all["pipelines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| time(&p["createdAt"]))
        .collect();
    assert!(times.windows(2).all(|w| w[0] >= w[1]));

    let failed = api.ok("/pipelines?status=TASK_FAILED").await;
    assert_eq!(failed["count"], 2);
    assert!(failed["pipelines"][0]["errorName"]
        .as_str()
        .unwrap()
        .contains("caused by"));
    let web = h.blueprint_of_project("legacy-web").unwrap()["id"]
        .as_u64()
        .unwrap();
    assert_eq!(
        api.ok(&format!("/pipelines?blueprint_id={web}")).await["count"],
        3
    );
    assert_eq!(api.ok("/pipelines?label=team-web").await["count"], 3);
    let page = api.ok("/pipelines?page=2&pageSize=3").await;
    assert_eq!(page["count"], 7);
    assert_eq!(page["pipelines"][0]["id"], 4);
    assert_eq!(api.ok("/pipelines?pending=1").await["count"], 0);

    let pid = api
        .post(&format!("/blueprints/{web}/trigger"), json!({}))
        .await
        .json()["id"]
        .as_u64()
        .unwrap();
    let pending = api.ok("/pipelines?pending=1").await;
    assert_eq!(pending["count"], 1);
    assert_eq!(pending["pipelines"][0]["id"], pid);

    assert_error(
        &api.post(&format!("/pipelines/{pid}/rerun"), json!({}))
            .await,
        400,
        "pipeline is waiting to run",
    );
    h.start_pipeline(pid).unwrap();
    assert_error(
        &api.post(&format!("/pipelines/{pid}/rerun"), json!({}))
            .await,
        400,
        "pipeline is running",
    );
    h.finish_pipeline(pid, "TASK_COMPLETED", "").unwrap();
    assert_error(
        &api.post(&format!("/pipelines/{pid}/rerun"), json!({}))
            .await,
        400,
        "no tasks to be re-ran",
    );

    // Rerun a failed historical pipeline: same id, TASK_RERUN, new tasks; DevLake's
    // RerunPipeline only changes the status, so both timestamps keep the previous run's values.
    let failed_id = failed["pipelines"][0]["id"].as_u64().unwrap();
    let tasks_before = api.ok(&format!("/pipelines/{failed_id}/tasks")).await;
    assert_eq!(
        tasks_before["count"],
        tasks_before["tasks"].as_array().unwrap().len()
    );
    let failed_task = tasks_before["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["status"] == "TASK_FAILED")
        .unwrap()
        .clone();
    let before = api.ok(&format!("/pipelines/{failed_id}")).await;
    let r = api
        .post(&format!("/pipelines/{failed_id}/rerun"), json!({}))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let new_tasks = r.json();
    let new_tasks = new_tasks.as_array().expect("bare array of tasks");
    assert_eq!(new_tasks.len(), 1);
    assert_eq!(new_tasks[0]["status"], "TASK_CREATED");
    assert_eq!(new_tasks[0]["pipelineId"], failed_id);
    assert_ne!(new_tasks[0]["id"], failed_task["id"]);
    let p = api.ok(&format!("/pipelines/{failed_id}")).await;
    assert_eq!(p["status"], "TASK_RERUN");
    assert!(p["finishedAt"].is_string());
    assert_eq!(p["finishedAt"], before["finishedAt"]);
    assert_eq!(p["beganAt"], before["beganAt"]);
    // Not pending (`finished_at IS NULL AND …`): only a status filter shows it.
    assert_eq!(api.ok("/pipelines?pending=1").await["count"], 0);
    let reruns = api.ok("/pipelines?status=TASK_RERUN").await;
    assert_eq!(reruns["count"], 1);
    assert_eq!(reruns["pipelines"][0]["id"], failed_id);

    assert_error(&api.get("/pipelines/999").await, 404, "pipeline not found");
    assert_error(
        &api.call(Method::DELETE, "/pipelines/999", None).await,
        400,
        "pipeline not found",
    );
    assert_eq!(
        api.call(Method::DELETE, &format!("/pipelines/{failed_id}"), None)
            .await
            .status,
        200
    );
    // A queued re-run cancelled: TASK_CANCELLED, the previous run's timestamps untouched.
    let cancelled = api.ok(&format!("/pipelines/{failed_id}")).await;
    assert_eq!(cancelled["status"], "TASK_CANCELLED");
    assert_eq!(cancelled["finishedAt"], before["finishedAt"]);
}

/// A queued pipeline of `blueprint`, as a trigger makes it (projects here have no connections,
/// so no plan to trigger).
fn queued(h: &devlake_testkit::sim::SimHandle, blueprint: u64) -> u64 {
    h.create_pipeline(PipelineSeed {
        blueprint_id: blueprint,
        status: "TASK_CREATED".into(),
        ..Default::default()
    })
    .unwrap()
}

/// A controlled clock, so timestamps in these tests are exact.
fn frozen(h: &devlake_testkit::sim::SimHandle) -> DateTime<Utc> {
    let t0 = DateTime::parse_from_rfc3339("2026-11-28T10:00:00Z")
        .unwrap()
        .with_timezone(&Utc);
    h.set_clock(Some(t0));
    t0
}

#[tokio::test]
async fn a_rerun_keeps_its_id_and_finished_at_until_it_ends_again() {
    let api = Api::new(Fixture::empty()).await;
    let h = api.sim.handle();
    let t0 = frozen(&h);
    let bp = h.create_project("svc").unwrap();
    let pid = queued(&h, bp);
    h.advance_clock(chrono::Duration::minutes(1));
    h.start_pipeline(pid).unwrap();
    h.advance_clock(chrono::Duration::minutes(10));
    h.finish_pipeline(pid, "TASK_FAILED", "boom").unwrap();
    let first = api.ok(&format!("/pipelines/{pid}")).await;
    assert_eq!(time(&first["beganAt"]), t0 + chrono::Duration::minutes(1));
    assert_eq!(
        time(&first["finishedAt"]),
        t0 + chrono::Duration::minutes(11)
    );

    // Newer pipelines push it down the listing.
    let newer: Vec<u64> = (0..3)
        .map(|i| h.create_project(&format!("other{i}")).unwrap())
        .map(|b| queued(&h, b))
        .collect();
    h.advance_clock(chrono::Duration::hours(5));
    let r = api
        .post(&format!("/pipelines/{pid}/rerun"), json!({}))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let queued = api.ok(&format!("/pipelines/{pid}")).await;
    assert_eq!(queued["status"], "TASK_RERUN");
    assert_eq!(queued["beganAt"], first["beganAt"]);
    assert_eq!(queued["finishedAt"], first["finishedAt"]);
    assert_eq!(
        time(&queued["updatedAt"]),
        t0 + chrono::Duration::minutes(311)
    );
    let pending = api.ok("/pipelines?pending=1").await;
    let pending_ids: Vec<u64> = pending["pipelines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_u64().unwrap())
        .collect();
    assert!(!pending_ids.contains(&pid), "a re-run is never pending");
    assert_eq!(pending_ids.len(), newer.len());
    let top = api.ok("/pipelines?pageSize=3").await;
    assert!(top["pipelines"]
        .as_array()
        .unwrap()
        .iter()
        .all(|p| p["id"] != pid));

    // Dequeued: running with a new beganAt (dequeuePipeline sets it at every start) and the
    // old finishedAt, so beganAt is after finishedAt while it runs.
    h.advance_clock(chrono::Duration::minutes(1));
    h.start_pipeline(pid).unwrap();
    let running = api.ok(&format!("/pipelines/{pid}")).await;
    assert_eq!(running["status"], "TASK_RUNNING");
    assert_eq!(
        time(&running["beganAt"]),
        t0 + chrono::Duration::minutes(312)
    );
    assert_eq!(running["finishedAt"], first["finishedAt"]);
    assert!(time(&running["beganAt"]) > time(&running["finishedAt"]));
    assert_eq!(api.ok("/pipelines?status=TASK_RUNNING").await["count"], 1);

    // Ends: a new finishedAt, the status recomputed.
    h.advance_clock(chrono::Duration::minutes(4));
    h.finish_pipeline(pid, "TASK_COMPLETED", "").unwrap();
    let done = api.ok(&format!("/pipelines/{pid}")).await;
    assert_eq!(done["status"], "TASK_COMPLETED");
    assert_eq!(done["beganAt"], running["beganAt"]);
    assert_eq!(
        time(&done["finishedAt"]),
        t0 + chrono::Duration::minutes(316)
    );
}

#[tokio::test]
async fn a_restart_resumes_or_fails_running_pipelines_without_finished_at() {
    let api = Api::new(Fixture::empty()).await;
    let h = api.sim.handle();
    let t0 = frozen(&h);
    let bps: Vec<u64> = (0..4)
        .map(|i| h.create_project(&format!("p{i}")).unwrap())
        .collect();
    let ids: Vec<u64> = bps.iter().map(|b| queued(&h, *b)).collect();
    // 0: running first run; 1: queued; 2: a re-run running; 3: finished.
    h.start_pipeline(ids[0]).unwrap();
    h.start_pipeline(ids[2]).unwrap();
    h.finish_pipeline(ids[2], "TASK_FAILED", "x").unwrap();
    h.start_pipeline(ids[3]).unwrap();
    h.finish_pipeline(ids[3], "TASK_COMPLETED", "").unwrap();
    h.rerun_pipeline(ids[2]).unwrap();
    h.start_pipeline(ids[2]).unwrap();

    // Over HTTP, as an operator's script would: RESUME_PIPELINES=false.
    h.advance_clock(chrono::Duration::minutes(7));
    let r = api
        .post("/_sim/restart", json!({"resumePipelines": false}))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["changed"], json!([ids[0], ids[2]]));
    let p0 = api.ok(&format!("/pipelines/{}", ids[0])).await;
    assert_eq!(p0["status"], "TASK_FAILED");
    assert_eq!(
        p0["finishedAt"],
        Value::Null,
        "a failed pipeline without finishedAt"
    );
    assert_eq!(time(&p0["updatedAt"]), t0 + chrono::Duration::minutes(7));
    let p2 = api.ok(&format!("/pipelines/{}", ids[2])).await;
    assert_eq!(p2["status"], "TASK_FAILED");
    assert_eq!(time(&p2["finishedAt"]), t0, "the previous run's finishedAt");
    assert_eq!(
        api.ok(&format!("/pipelines/{}", ids[1])).await["status"],
        "TASK_CREATED"
    );
    assert_eq!(
        api.ok(&format!("/pipelines/{}", ids[3])).await["status"],
        "TASK_COMPLETED"
    );

    // The default (RESUME_PIPELINES=true): TASK_RESUME, which is not "pending" either.
    h.start_pipeline(ids[1]).unwrap();
    assert_eq!(h.restart(true), vec![ids[1]]);
    let p1 = api.ok(&format!("/pipelines/{}", ids[1])).await;
    assert_eq!(p1["status"], "TASK_RESUME");
    assert_eq!(p1["finishedAt"], Value::Null);
    assert_eq!(api.ok("/pipelines?pending=1").await["count"], 0);
    // Dequeued again (a new beganAt, as at every start) and run to an end.
    h.advance_clock(chrono::Duration::minutes(1));
    h.start_pipeline(ids[1]).unwrap();
    h.finish_pipeline(ids[1], "TASK_COMPLETED", "").unwrap();
    let p1 = api.ok(&format!("/pipelines/{}", ids[1])).await;
    assert_eq!(time(&p1["beganAt"]), t0 + chrono::Duration::minutes(8));
    assert_eq!(time(&p1["finishedAt"]), t0 + chrono::Duration::minutes(8));
}

#[tokio::test]
async fn cancelling_a_queued_pipeline_touches_no_timestamp_a_running_one_ends() {
    let api = Api::new(Fixture::empty()).await;
    let h = api.sim.handle();
    let t0 = frozen(&h);
    let a = h.create_project("a").unwrap();
    let b = h.create_project("b").unwrap();
    let waiting = queued(&h, a);
    let running = queued(&h, b);
    h.start_pipeline(running).unwrap();
    h.advance_clock(chrono::Duration::minutes(3));
    for id in [waiting, running] {
        let r = api
            .call(Method::DELETE, &format!("/pipelines/{id}"), None)
            .await;
        assert_eq!(r.status, 200, "{}", r.text);
    }
    let q = api.ok(&format!("/pipelines/{waiting}")).await;
    assert_eq!(q["status"], "TASK_CANCELLED");
    assert_eq!(q["beganAt"], Value::Null);
    assert_eq!(q["finishedAt"], Value::Null);
    assert_eq!(time(&q["updatedAt"]), t0 + chrono::Duration::minutes(3));
    let r = api.ok(&format!("/pipelines/{running}")).await;
    assert_eq!(r["status"], "TASK_CANCELLED");
    assert_eq!(time(&r["beganAt"]), t0);
    assert_eq!(time(&r["finishedAt"]), t0 + chrono::Duration::minutes(3));
    // Finished: cancelling again is a no-op success.
    let again = api
        .call(Method::DELETE, &format!("/pipelines/{running}"), None)
        .await;
    assert_eq!(again.status, 200);
    assert_eq!(api.ok(&format!("/pipelines/{running}")).await, r);
}

#[tokio::test]
async fn a_cancel_that_cannot_stop_a_running_task_answers_200_and_changes_nothing() {
    let api = Api::new(Fixture::empty()).await;
    let h = api.sim.handle();
    let t0 = frozen(&h);
    let a = h.create_project("a").unwrap();
    let b = h.create_project("b").unwrap();
    let resumed = queued(&h, b);
    h.start_pipeline(resumed).unwrap();
    h.restart(true);
    let stubborn = queued(&h, a);
    h.start_pipeline(stubborn).unwrap();
    h.ignore_cancel(stubborn, true);
    h.advance_clock(chrono::Duration::minutes(5));
    let before = [
        api.ok(&format!("/pipelines/{stubborn}")).await,
        api.ok(&format!("/pipelines/{resumed}")).await,
    ];
    for id in [stubborn, resumed] {
        let r = api
            .call(Method::DELETE, &format!("/pipelines/{id}"), None)
            .await;
        assert_eq!((r.status, r.json()["success"].clone()), (200, json!(true)));
    }
    // `cancelRunningTasks` skips a task it no longer tracks; `cancelPendingTasksInDB` only
    // touches a resumed pipeline's tasks: neither row changes.
    let after = [
        api.ok(&format!("/pipelines/{stubborn}")).await,
        api.ok(&format!("/pipelines/{resumed}")).await,
    ];
    assert_eq!(after, before);
    assert_eq!(after[0]["status"], "TASK_RUNNING");
    assert_eq!(after[1]["status"], "TASK_RESUME");
    assert_eq!(time(&after[0]["beganAt"]), t0);
    // A pipeline that does not exist: 400, as `CancelPipeline`'s BadInput.
    let missing = api.call(Method::DELETE, "/pipelines/999", None).await;
    assert_error(&missing, 400, "pipeline not found");
    // Once the task can be stopped, the same call ends it.
    h.ignore_cancel(stubborn, false);
    api.call(Method::DELETE, &format!("/pipelines/{stubborn}"), None)
        .await;
    let ended = api.ok(&format!("/pipelines/{stubborn}")).await;
    assert_eq!(ended["status"], "TASK_CANCELLED");
    assert_eq!(
        time(&ended["finishedAt"]),
        t0 + chrono::Duration::minutes(5)
    );
}

#[tokio::test]
async fn devlakes_cron_creates_a_pipeline_per_activation_unless_one_is_pending_or_it_is_lost() {
    let t0 = DateTime::parse_from_rfc3339("2026-11-28T10:00:00Z")
        .unwrap()
        .with_timezone(&Utc);
    let api = Api::new(Fixture::generated(GeneratedSpec {
        repos_per_connection: 3,
        scoped_per_connection: 3,
        blueprints: 3,
        pipelines: 0,
        now: t0,
        ..GeneratedSpec::default()
    }))
    .await;
    let h = api.sim.handle();
    h.set_clock(Some(t0));
    for (id, body) in [
        (1, json!({"cronConfig": "30 3 * * *"})),
        (2, json!({"cronConfig": "@every 8h"})),
        // Disabled: DevLake's cron does not schedule it.
        (3, json!({"cronConfig": "*/5 * * * *", "enable": false})),
    ] {
        let r = api.patch(&format!("/blueprints/{id}"), body).await;
        assert_eq!(r.status, 200, "{}", r.text);
    }
    // The cron is off until a test turns it on: moving the clock created nothing so far.
    h.advance_clock(chrono::Duration::hours(1));
    assert!(h.cron_fires().is_empty());
    h.set_clock(Some(t0));
    // Through the control API, as the standalone simulator is driven.
    let on = api.post("/_sim/cron", json!({"running": true})).await;
    assert_eq!(on.status, 200, "{}", on.text);
    assert_eq!(on.json(), json!({"fires": []}));
    let at = |h: i64, m: i64| t0 + chrono::Duration::hours(h) + chrono::Duration::minutes(m);

    h.advance_clock(chrono::Duration::days(1));
    let fires: Vec<(u64, DateTime<Utc>, bool)> = h
        .cron_fires()
        .iter()
        .map(|f| (f.blueprint_id, f.at, f.pipeline_id.is_some()))
        .collect();
    assert_eq!(
        fires,
        vec![
            // `@every 8h` counts from the blueprint's last save (t0).
            (2, at(8, 0), true),
            (2, at(16, 0), false),
            (1, at(17, 30), true),
            (2, at(24, 0), false),
        ]
    );
    let refused = &h.cron_fires()[1];
    assert_eq!(
        refused.refused.as_deref(),
        Some("there are pending pipelines of current blueprint already")
    );
    // The pipeline is an ordinary one of the blueprint, created at the activation.
    let listed = api.ok("/pipelines?blueprint_id=1").await;
    assert_eq!(listed["count"], 1);
    let p = &listed["pipelines"][0];
    assert_eq!(p["status"], "TASK_CREATED");
    assert_eq!(time(&p["createdAt"]), at(17, 30));
    assert!(p["plan"].as_array().is_some_and(|s| !s.is_empty()));

    // Lost activations (a lock timeout) leave no pipeline and nothing retries them.
    h.finish_all_pending("TASK_COMPLETED", "").unwrap();
    api.post("/_sim/cron", json!({"lose": [1]})).await;
    h.advance_clock(chrono::Duration::days(1));
    assert_eq!(api.ok("/pipelines?blueprint_id=1").await["count"], 1);
    let last = h
        .cron_fires()
        .into_iter()
        .rev()
        .find(|f| f.blueprint_id == 1)
        .unwrap();
    assert_eq!(last.at, at(41, 30));
    assert_eq!(last.refused.as_deref(), Some("lock tables timeout"));
    let listed = api.ok("/_sim/cron").await;
    assert_eq!(
        listed["fires"].as_array().unwrap().len(),
        h.cron_fires().len()
    );
    assert_eq!(listed["fires"][0]["blueprintId"], 2);
    assert_eq!(api.ok("/pipelines?blueprint_id=3").await["count"], 0);

    // Turned off again: clock moves create nothing.
    h.run_cron(false);
    let before = h.cron_fires().len();
    h.advance_clock(chrono::Duration::days(2));
    assert_eq!(h.cron_fires().len(), before);
}

#[tokio::test]
async fn deleting_a_project_deletes_its_blueprint_renaming_keeps_it() {
    let api = Api::new(Fixture::empty()).await;
    let h = api.sim.handle();
    let gone = h.create_project("gone").unwrap();
    let kept = h.create_project("old-name").unwrap();
    let p = queued(&h, gone);
    h.start_pipeline(p).unwrap();
    h.finish_pipeline(p, "TASK_FAILED", "x").unwrap();
    // A re-run in progress (finishedAt set, not pending) still blocks the deletion.
    h.rerun_pipeline(p).unwrap();
    let refused = api.call(Method::DELETE, "/projects/gone", None).await;
    assert_eq!(refused.status, 500, "{}", refused.text);
    h.finish_pipeline(p, "TASK_COMPLETED", "").unwrap();
    let r = api.call(Method::DELETE, "/projects/gone", None).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(api.get(&format!("/blueprints/{gone}")).await.status, 404);
    // Its pipelines stay, pointing at the deleted blueprint.
    assert_eq!(
        api.ok(&format!("/pipelines/{p}")).await["blueprintId"],
        gone
    );

    let r = api
        .call(
            Method::PATCH,
            "/projects/old-name",
            Some(json!({"name": "new-name"})),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let bp = api.ok(&format!("/blueprints/{kept}")).await;
    assert_eq!(bp["projectName"], "new-name");
    // PatchProject leaves the blueprint's own name alone.
    assert_eq!(bp["name"], "old-name-Blueprint");
    assert_eq!(api.get("/projects/old-name").await.status, 404);
    assert_eq!(api.ok("/projects/new-name").await["blueprint"]["id"], kept);
}

#[tokio::test]
async fn hundred_thousand_pipelines_seed_and_page_completely() {
    // Speed is measured by bench-client-paging, not asserted here: wall-clock limits flake on a
    // loaded 2-core CI machine. This checks that a large table pages correctly end to end.
    let api = Api::new(Fixture::empty()).await;
    let h = api.sim.handle();
    let bps: Vec<u64> = (0..100)
        .map(|i| h.create_project(&format!("p{i}")).unwrap())
        .collect();
    let t = Instant::now();
    let ids = h.seed_history(&bps, 100_000, 20, Utc::now()).unwrap();
    let seeded = t.elapsed();
    assert_eq!(ids.len(), 100_000);

    // Walk every page (ids strictly decreasing, nothing missing). Only the id is decoded so
    // the walk measures the server, not a debug-build JSON tree on the client.
    #[derive(serde::Deserialize)]
    struct Page {
        count: u64,
        pipelines: Vec<Id>,
    }
    #[derive(serde::Deserialize)]
    struct Id {
        id: u64,
    }
    let t = Instant::now();
    let mut seen = 0;
    let mut last_id = u64::MAX;
    for page in 1..=200 {
        let r = api
            .get(&format!("/pipelines?pageSize=500&page={page}"))
            .await;
        assert_eq!(r.status, 200);
        let v: Page = serde_json::from_str(&r.text).unwrap();
        assert_eq!(v.count, 100_000);
        assert_eq!(v.pipelines.len(), 500);
        for p in v.pipelines {
            assert!(p.id < last_id);
            last_id = p.id;
            seen += 1;
        }
    }
    let paged = t.elapsed();
    assert_eq!(seen, 100_000);
    assert_eq!(last_id, ids[0]);
    eprintln!("seeded 100k pipelines in {seeded:?}; paged 200 x 500 in {paged:?}");
    let deep = api.get("/pipelines?pageSize=500&page=201").await;
    assert_eq!(
        deep.status, 200,
        "a page past the end is empty, not an error"
    );
    assert_eq!(
        serde_json::from_str::<Page>(&deep.text)
            .unwrap()
            .pipelines
            .len(),
        0
    );
    let failed = api.ok("/pipelines?status=TASK_FAILED&pageSize=1").await;
    assert_eq!(failed["count"], 5_000);
    let one_bp = api
        .ok(&format!("/pipelines?blueprint_id={}&pageSize=5", bps[3]))
        .await;
    assert_eq!(one_bp["count"], 1_000);
}

// ------------------------------------------------------------------------- auth and faults

#[tokio::test]
async fn api_key_mode_guards_rest_paths_only() {
    let opts = SimOptions {
        api_key: Some("s3cret-key".into()),
        ..SimOptions::default()
    };
    assert!(
        !format!("{opts:?}").contains("s3cret"),
        "Debug redacts the key"
    );
    let api = Api::with(Fixture::sample(), opts).await;
    let url = |p: &str| format!("{}{}", api.sim.url(), p);

    let r = api.http.get(url("/rest/blueprints")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!({"success": false, "message": "token is missing"})
    );
    let r = api
        .http
        .get(url("/rest/blueprints"))
        .header("Authorization", "Basic abc")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!({"success": false, "message": "token is not present or malformed"})
    );
    let r = api
        .http
        .get(url("/rest/blueprints"))
        .bearer_auth("wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!({"success": false, "message": "api key is invalid"})
    );

    let r = api
        .http
        .get(url("/rest/projects/legacy-api"))
        .bearer_auth("s3cret-key")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["name"], "legacy-api");
    let r = api
        .http
        .get(url("/rest/pipelines?status=TASK_FAILED"))
        .bearer_auth("s3cret-key")
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.json::<Value>().await.unwrap()["count"],
        2,
        "query survives the /rest rewrite"
    );
    // Plain paths are not checked (as in DevLake).
    assert_eq!(api.ok("/blueprints").await["count"], 3);
    let log = api.sim.handle().requests();
    assert_eq!(log[0].path, "/rest/blueprints");
    assert_eq!(log[0].status, 401);
}

#[tokio::test]
async fn migration_mode_answers_428_until_proceed() {
    let opts = SimOptions {
        migration_pending: true,
        ..SimOptions::default()
    };
    let api = Api::with(Fixture::sample(), opts).await;
    let r = api.get("/blueprints").await;
    assert_eq!(r.status, 428);
    let v = r.json();
    assert_eq!(v["code"], 0);
    assert_eq!(v["success"], false);
    assert_eq!(v["causes"], Value::Null);
    assert_eq!(v["data"], Value::Null);
    assert_eq!(
        v["message"],
        "\nNew migration scripts detected. Database migration is required to launch DevLake.\nWARNING: Performing migration may wipe collected data for consistency and re-collecting data may be required.\nTo proceed, please send a request to <config-ui-endpoint>/api/proceed-db-migration (or <devlake-endpoint>/proceed-db-migration).\nAlternatively, you may downgrade back to the previous DevLake version.\n (428)"
    );
    assert_eq!(api.get("/plugins/github/connections").await.status, 428);
    assert_eq!(api.get("/ping").await.status, 200);
    assert_eq!(api.get("/version").await.status, 200);
    assert_eq!(api.get("/ready").await.status, 503);
    assert_eq!(api.get("/health").await.json()["message"], "maybe");
    let proceed = api.get("/proceed-db-migration").await;
    assert_eq!(proceed.status, 200);
    assert_eq!(proceed.json()["success"], true);
    assert_eq!(api.get("/blueprints").await.status, 200);

    api.sim.handle().set_migration(MigrationMode::Running);
    let r = api.get("/projects").await;
    assert_eq!(r.status, 428);
    assert_eq!(
        r.json()["message"],
        "Database migration is in progress. Please wait until it is completed. (428)"
    );
    assert_eq!(api.get("/proceed-db-migration").await.status, 500);
}

#[tokio::test]
async fn faults_reset_fail_next_n_and_latency() {
    let api = Api::new(Fixture::sample()).await;
    let h = api.sim.handle();

    // Connection reset: a transport error, no HTTP status.
    h.add_fault_rule(FaultRule::reset("GET", "/pipelines", 1));
    let err = api
        .http
        .get(format!("{}/pipelines", api.sim.url()))
        .send()
        .await
        .unwrap_err();
    assert!(err.status().is_none(), "{err}");
    assert!(
        err.is_request() || err.is_connect() || err.to_string().contains("connection"),
        "{err:?}"
    );
    assert_eq!(api.get("/pipelines").await.status, 200, "only once");

    // Deterministic: the next 2 matching requests fail, other methods/paths untouched.
    h.add_fault_rule(FaultRule::status("GET", "/blueprints", 2, 503));
    assert_eq!(api.get("/projects").await.status, 200);
    assert_eq!(
        api.post("/blueprints/1/trigger", json!({})).await.status,
        200
    );
    let r = api.get("/blueprints").await;
    assert_error(&r, 503, "simulated fault");
    assert_eq!(api.get("/blueprints/1").await.status, 503);
    assert_eq!(api.get("/blueprints").await.status, 200);

    // Fixed latency.
    h.set_latency(Duration::from_millis(150));
    let t = Instant::now();
    api.get("/ping").await;
    assert!(t.elapsed() >= Duration::from_millis(150));
    h.set_latency(Duration::ZERO);
    // Slow pages: only list endpoints.
    h.set_list_latency(Duration::from_millis(200));
    let t = Instant::now();
    api.get("/blueprints/1").await;
    assert!(t.elapsed() < Duration::from_millis(150));
    let t = Instant::now();
    api.get("/pipelines").await;
    assert!(t.elapsed() >= Duration::from_millis(200));
    h.clear_faults();

    // Random errors at a given rate.
    h.set_error_rate(0.5, 502);
    let mut fails = 0;
    for _ in 0..60 {
        if api.get("/version").await.status == 502 {
            fails += 1;
        }
    }
    assert!((10..50).contains(&fails), "{fails} of 60 failed");
    h.clear_faults();

    // Faults also settable over HTTP.
    let r = api
        .post(
            "/_sim/faults",
            json!({"rules": [{"method": "GET", "pathPrefix": "/version", "times": 1, "action": {"status": 500}}]}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(api.get("/version").await.status, 500);
    assert_eq!(api.get("/version").await.status, 200);
    assert_eq!(h.faults(), Faults::default());
}

#[tokio::test]
async fn commit_then_timeout_leaves_the_object_created() {
    let api = Api::new(Fixture::empty()).await;
    let h = api.sim.handle();
    h.add_fault_rule(FaultRule::commit_then_delay("POST", "/projects", 1, 1500));
    let impatient = reqwest::Client::builder()
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let err = impatient
        .post(format!("{}/projects", api.sim.url()))
        .json(&json!({"name": "svc-timeout"}))
        .send()
        .await
        .unwrap_err();
    assert!(err.is_timeout(), "{err:?}");
    assert!(h.project("svc-timeout").is_some(), "the server committed");
    assert_eq!(
        api.ok("/projects/svc-timeout/check").await,
        json!({"exist": true})
    );
    assert_error(
        &api.post("/projects", json!({"name": "svc-timeout"})).await,
        400,
        "already exists",
    );
}

// ------------------------------------------------------------------------- log and control API

#[tokio::test]
async fn request_log_and_counts_skip_control_routes() {
    let api = Api::new(Fixture::sample()).await;
    let h = api.sim.handle();
    api.get("/pipelines?status=TASK_FAILED&page=1").await;
    api.post("/projects", json!({"name": "logged"})).await;
    api.get("/nope").await;
    api.get("/_sim/counts").await;
    let log = h.requests();
    assert_eq!(log.len(), 3);
    assert_eq!(log[0].method, "GET");
    assert_eq!(log[0].path, "/pipelines?status=TASK_FAILED&page=1");
    assert_eq!(log[0].status, 200);
    assert_eq!((log[1].method.as_str(), log[1].status), ("POST", 201));
    assert_eq!(log[2].status, 404);
    let c = h.counts();
    assert_eq!((c.total, c.reads, c.writes), (3, 2, 1));
    assert_eq!(h.count_matching("GET", "/pipelines"), 1);

    let counts = api.ok("/_sim/counts").await;
    assert_eq!(counts["total"], 3);
    assert_eq!(counts["reads"], 2);
    assert_eq!(counts["writes"], 1);
    let reqs = api.ok("/_sim/requests").await;
    assert_eq!(reqs["requests"][1]["path"], "/projects");
    assert_eq!(api.post("/_sim/reset-log", json!({})).await.status, 200);
    assert_eq!(h.counts().total, 0);
    assert!(h.requests().is_empty());
}

#[tokio::test]
async fn control_api_drives_pipelines() {
    let api = Api::new(Fixture::sample()).await;
    let h = api.sim.handle();
    let api_bp = h.blueprint_of_project("legacy-api").unwrap()["id"]
        .as_u64()
        .unwrap();
    let web_bp = h.blueprint_of_project("legacy-web").unwrap()["id"]
        .as_u64()
        .unwrap();
    let p1 = api
        .post(&format!("/blueprints/{api_bp}/trigger"), json!({}))
        .await
        .json()["id"]
        .as_u64()
        .unwrap();
    let p2 = api
        .post(&format!("/blueprints/{web_bp}/trigger"), json!({}))
        .await
        .json()["id"]
        .as_u64()
        .unwrap();

    let r = api
        .post(&format!("/_sim/pipelines/{p1}/start"), json!({}))
        .await;
    assert_eq!(r.json()["status"], "TASK_RUNNING");
    let r = api
        .post(
            &format!("/_sim/pipelines/{p1}/finish"),
            json!({"status": "TASK_FAILED", "message": "collector died"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let v = api.ok(&format!("/pipelines/{p1}")).await;
    assert_eq!(v["status"], "TASK_FAILED");
    assert_eq!(v["message"], "collector died");
    assert!(v["beganAt"].is_string() && v["finishedAt"].is_string());
    assert_eq!(v["finishedTasks"], v["totalTasks"]);

    let r = api
        .post(
            "/_sim/pipelines/run-all",
            json!({"status": "TASK_COMPLETED"}),
        )
        .await;
    assert_eq!(r.json()["finished"], json!([p2]));
    assert_eq!(
        api.ok(&format!("/pipelines/{p2}")).await["status"],
        "TASK_COMPLETED"
    );
    assert_eq!(
        api.post("/_sim/pipelines/9999/finish", json!({}))
            .await
            .status,
        404
    );
    assert_eq!(
        api.post(
            &format!("/_sim/pipelines/{p2}/finish"),
            json!({"status": "TASK_BOGUS"})
        )
        .await
        .status,
        400
    );

    let r = api
        .post("/_sim/pipelines", json!([{"blueprintId": api_bp, "status": "TASK_FAILED", "message": "old"}, {"status": "TASK_RUNNING"}]))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let ids = r.json()["ids"].clone();
    assert_eq!(ids.as_array().unwrap().len(), 2);
    let running = api.ok(&format!("/pipelines/{}", ids[1])).await;
    assert_eq!(
        (running["status"].as_str(), running["blueprintId"].as_u64()),
        (Some("TASK_RUNNING"), Some(0))
    );
    assert_eq!(running["finishedAt"], Value::Null);

    let seeded = h
        .create_pipeline(PipelineSeed {
            blueprint_id: web_bp,
            status: "TASK_PARTIAL".into(),
            ..PipelineSeed::default()
        })
        .unwrap();
    assert_eq!(
        api.ok(&format!("/pipelines/{seeded}")).await["name"],
        "legacy-web-Blueprint"
    );
    let state = api.ok("/_sim/state").await;
    assert_eq!(state["projects"], 3);
    assert_eq!(state["pendingPipelines"], json!([ids[1]]));
}

#[tokio::test]
async fn auto_complete_finishes_triggered_pipelines() {
    let opts = SimOptions {
        auto_complete: Some(AutoComplete {
            after: Duration::from_millis(200),
            status: "TASK_COMPLETED".into(),
        }),
        ..SimOptions::default()
    };
    let api = Api::with(Fixture::sample(), opts).await;
    let bp = api.sim.handle().blueprint_of_project("legacy-api").unwrap()["id"]
        .as_u64()
        .unwrap();
    let pid = api
        .post(&format!("/blueprints/{bp}/trigger"), json!({}))
        .await
        .json()["id"]
        .as_u64()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let p = api.ok(&format!("/pipelines/{pid}")).await;
        if p["status"] == "TASK_COMPLETED" {
            assert!(p["finishedAt"].is_string());
            break;
        }
        assert!(Instant::now() < deadline, "never completed: {p}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn generated_fixtures_for_benchmarks() {
    let api = Api::new(Fixture::generated(GeneratedSpec::automation_bench())).await;
    let conns = api.ok("/plugins/github/connections").await;
    assert_eq!(conns.as_array().unwrap().len(), 4);
    let groups = api.ok("/plugins/github/connections/3/remote-scopes").await;
    assert_eq!(groups["children"].as_array().unwrap().len(), 5);
    let first = api
        .ok("/plugins/github/connections/3/remote-scopes?groupId=org3-0")
        .await;
    assert_eq!(first["children"].as_array().unwrap().len(), 100);
    assert_eq!(first["nextPageToken"], "");
    assert_eq!(
        first["children"][0]["data"]["fullName"],
        "org3-0/repo-00000"
    );

    let t = Instant::now();
    let big = Simulator::start(Fixture::generated(GeneratedSpec::monitor_bench())).await;
    let started = t.elapsed();
    let h = big.handle();
    assert_eq!(h.pipeline_count(), 100_000);
    assert_eq!(h.blueprints().len(), 10_000);
    eprintln!("monitor_bench fixture (10k blueprints, 100k pipelines) started in {started:?}");
    assert!(started < Duration::from_secs(10), "{started:?}");
    let v: Value = api
        .http
        .get(format!(
            "{}/pipelines?status=TASK_FAILED&pageSize=1",
            big.url()
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["count"], 5_000);
}

#[tokio::test]
async fn standalone_binary_starts_and_answers() {
    use tokio::io::AsyncBufReadExt;
    let fixture = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/sample.json");
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_devlake-sim"))
        .args([
            "--port",
            "0",
            "--fixture",
            fixture,
            "--api-key",
            "k3y",
            "--latency-ms",
            "1",
        ])
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let line = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
        .await
        .expect("ready line in time")
        .unwrap()
        .unwrap();
    let url = line
        .strip_prefix("devlake-sim listening on ")
        .expect(&line)
        .to_string();
    assert!(
        url.starts_with("http://127.0.0.1:") && !url.ends_with(":0"),
        "{url}"
    );
    let http = reqwest::Client::new();
    let v: Value = http
        .get(format!("{url}/version"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["version"], "v1.0.3@sim0000");
    let r = http
        .get(format!("{url}/rest/projects"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = http
        .get(format!("{url}/rest/projects"))
        .bearer_auth("k3y")
        .send()
        .await
        .unwrap();
    assert_eq!(r.json::<Value>().await.unwrap()["count"], 3);
    let c: Value = http
        .get(format!("{url}/_sim/counts"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(c["total"], 3);
    child.kill().await.unwrap();
}

/// What a receiver of DevLake's notifications saw: method, query, content type, body.
type Received = std::sync::Arc<std::sync::Mutex<Vec<(String, String, String, String)>>>;

/// A notification endpoint answering `status` to everything, recording each request.
async fn receiver(status: u16) -> (String, Received, devlake_testkit::serve::Serving) {
    use axum::extract::{Request, State};
    let seen: Received = Default::default();
    let app = axum::Router::new()
        .fallback(
            |State((seen, status)): State<(Received, u16)>, req: Request| async move {
                let (parts, body) = req.into_parts();
                let body = axum::body::to_bytes(body, 1 << 20).await.unwrap();
                let content_type = parts
                    .headers
                    .get("content-type")
                    .map(|v| v.to_str().unwrap().to_string())
                    .unwrap_or_default();
                seen.lock().unwrap().push((
                    parts.method.to_string(),
                    parts.uri.query().unwrap_or_default().to_string(),
                    content_type,
                    String::from_utf8(body.to_vec()).unwrap(),
                ));
                (
                    axum::http::StatusCode::from_u16(status).unwrap(),
                    "received",
                )
            },
        )
        .with_state((seen.clone(), status));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let serving = devlake_testkit::serve::serve_in_background(listener, app);
    (url, seen, serving)
}

#[tokio::test]
async fn pipeline_notifications_are_signed_and_sent_on_create_start_and_finish_only() {
    use devlake_testkit::sim::NotificationSettings;
    use sha2::Digest;
    let api = Api::new(Fixture::sample()).await;
    let h = api.sim.handle();
    let t0 = frozen(&h);
    let bp = h.blueprint_of_project("legacy-web").unwrap()["id"]
        .as_u64()
        .unwrap();
    let (url, seen, _serving) = receiver(200).await;
    let secret = "devlake-notification-secret";
    h.set_notifications(Some(NotificationSettings {
        endpoint: url.clone(),
        secret: secret.into(),
    }));

    // Created (trigger), started, finished: three notifications with the row's state each time.
    let r = api
        .post(&format!("/blueprints/{bp}/trigger"), json!({}))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let pid = r.json()["id"].as_u64().unwrap();
    h.advance_clock(chrono::Duration::seconds(30));
    h.start_pipeline(pid).unwrap();
    h.advance_clock(chrono::Duration::minutes(5));
    h.finish_pipeline(pid, "TASK_FAILED", "boom").unwrap();
    // Neither a re-run request, nor cancelling a queued pipeline, nor a restart notifies.
    let rerun = api
        .call(Method::POST, &format!("/pipelines/{pid}/rerun"), None)
        .await;
    assert_eq!(rerun.status, 200, "{}", rerun.text);
    let other = h.create_project("svc-b").unwrap();
    let queued_id = queued(&h, other);
    api.call(Method::DELETE, &format!("/pipelines/{queued_id}"), None)
        .await;
    h.restart(true);
    // An ad-hoc pipeline has no project.
    let adhoc = api
        .post(
            "/pipelines",
            json!({"name": "adhoc", "plan": [[{"plugin": "github", "options": {}}]]}),
        )
        .await;
    assert_eq!(adhoc.status, 201, "{}", adhoc.text);

    let rows = h
        .wait_for_notifications(4, Duration::from_secs(10))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let seen = seen.lock().unwrap().clone();
    assert_eq!(rows.len(), 4, "{rows:#?}");
    assert_eq!(seen.len(), 4, "{seen:#?}");
    let t = |d: chrono::Duration| (t0 + d).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let (s30, s330) = (
        chrono::Duration::seconds(30),
        chrono::Duration::seconds(330),
    );
    let zero = chrono::Duration::zero();
    assert_eq!(
        seen[0].3,
        format!(
            r#"{{"ProjectName":"legacy-web","PipelineID":{pid},"CreatedAt":"{}","UpdatedAt":"{}","BeganAt":null,"FinishedAt":null,"Status":"TASK_CREATED"}}"#,
            t(zero),
            t(zero)
        )
    );
    assert_eq!(
        seen[1].3,
        format!(
            r#"{{"ProjectName":"legacy-web","PipelineID":{pid},"CreatedAt":"{}","UpdatedAt":"{}","BeganAt":"{}","FinishedAt":null,"Status":"TASK_RUNNING"}}"#,
            t(zero),
            t(s30),
            t(s30)
        )
    );
    assert_eq!(
        seen[2].3,
        format!(
            r#"{{"ProjectName":"legacy-web","PipelineID":{pid},"CreatedAt":"{}","UpdatedAt":"{}","BeganAt":"{}","FinishedAt":"{}","Status":"TASK_FAILED"}}"#,
            t(zero),
            t(s330),
            t(s30),
            t(s330)
        )
    );
    let last: Value = serde_json::from_str(&seen[3].3).unwrap();
    assert_eq!(last["ProjectName"], "");
    assert_eq!(last["Status"], "TASK_CREATED");
    for (i, (method, query, content_type, body)) in seen.iter().enumerate() {
        assert_eq!(method, "POST");
        assert_eq!(content_type, "application/json");
        // ?nouce=<row id>-<16 letters>&sign=<lowercase hex sha256(body + secret + nouce)>
        let (nonce_part, sign_part) = query.split_once('&').unwrap();
        let nouce = nonce_part.strip_prefix("nouce=").unwrap();
        let sign = sign_part.strip_prefix("sign=").unwrap();
        let (id, letters) = nouce.split_once('-').unwrap();
        assert_eq!(id, (i + 1).to_string());
        assert_eq!(letters.len(), 16);
        assert!(letters.bytes().all(|b| b.is_ascii_alphanumeric()));
        let digest = sha2::Sha256::digest(format!("{body}{secret}{nouce}").as_bytes());
        let expected: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(sign, expected);
        assert_eq!(rows[i].url, format!("{url}?{query}"));
        assert_eq!(rows[i].response_code, 200);
        assert_eq!(rows[i].response, "received");
    }

    // A refused notification is recorded with its answer and never sent again.
    let (refusing, refused_seen, _serving2) = receiver(401).await;
    h.set_notifications(Some(NotificationSettings {
        endpoint: refusing,
        secret: secret.into(),
    }));
    let next = queued(&h, bp);
    h.start_pipeline(next).unwrap();
    let rows = h
        .wait_for_notifications(5, Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(rows[4].response_code, 401);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(refused_seen.lock().unwrap().len(), 1);
    // Turned off: nothing more.
    h.set_notifications(None);
    h.finish_pipeline(next, "TASK_COMPLETED", "").unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(h.notifications().len(), 5);
}

// ------------------------------------------------------------------------- connection tests

/// `POST /plugins/{plugin}/connections/{id}/test` answers like each plugin's
/// `TestExistingConnection`: up is 200 `success: true`; a refused credential is the plugin's own
/// status and message (GitHub: still 200, `success: false`); an unreachable tool is 500
/// `Failed to connect` with the dial error as the cause. Echoed secrets are sanitised, and a
/// test counts as a read.
#[tokio::test]
async fn connection_tests_answer_like_devlake_for_each_plugin() {
    use devlake_testkit::sim::ConnectionTestMode;
    let api = Api::new(Fixture::sample()).await;
    let h = api.sim.handle();
    let test = |plugin: &str, id: u64| format!("/plugins/{plugin}/connections/{id}/test");
    for plugin in [
        "github",
        "gitlab",
        "bitbucket",
        "azuredevops_go",
        "jenkins",
        "circleci",
        "bamboo",
        "jira",
    ] {
        let r = api.post(&test(plugin, 1), json!({})).await;
        assert_eq!(r.status, 200, "{plugin}: {}", r.text);
        let v = r.json();
        assert_eq!(
            (v["success"].clone(), v["message"].clone()),
            (json!(true), json!("success")),
            "{plugin}"
        );
    }
    // Sanitised echoes: `utils.SanitizeString` keeps two characters at each end.
    let gitlab = api.post(&test("gitlab", 1), json!({})).await.json();
    assert_eq!(gitlab["connection"]["token"], "gl*********re");
    let jenkins = api.post(&test("jenkins", 1), json!({})).await.json();
    assert_eq!(jenkins["connection"]["password"], "");
    let github = api.post(&test("github", 1), json!({})).await.json();
    assert_eq!(github["tokens"][0]["token"], "gh*******re");
    assert_eq!(github["tokens"][0]["success"], true);

    // A refused credential, set over the control API and the handle.
    let r = api
        .post(
            "/_sim/connections/github/1/test",
            json!({"mode": "unauthorized"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let r = api.post(&test("github", 1), json!({})).await;
    assert_eq!(r.status, 200, "GitHub answers 200 even when a token fails");
    let v = r.json();
    assert_eq!(v["success"], false);
    assert_eq!(
        v["message"],
        "StatusUnauthorized error when testing connection (400)"
    );
    assert_eq!(v["tokens"][0]["success"], false);
    assert_eq!(v["causes"][0], v["message"]);
    for (plugin, status, message) in [
        (
            "gitlab",
            400,
            "StatusUnauthorized error when testing api or read_api permissions",
        ),
        ("jira", 401, "Please check your credential"),
        (
            "jenkins",
            400,
            "StatusUnauthorized error while testing connection",
        ),
        ("circleci", 401, "unexpected status code: 401"),
        ("azuredevops_go", 401, "failed to read projects"),
    ] {
        h.set_connection_test(plugin, 1, ConnectionTestMode::Unauthorized)
            .unwrap();
        let r = api.post(&test(plugin, 1), json!({})).await;
        assert_error(&r, status, message);
    }
    // Bamboo's test sends nothing to the tool: a refused credential goes unnoticed.
    h.set_connection_test("bamboo", 1, ConnectionTestMode::Unauthorized)
        .unwrap();
    assert_eq!(api.post(&test("bamboo", 1), json!({})).await.status, 200);

    // Unreachable: `Failed to connect` (type Default: 500, no status suffix), dial error as cause.
    h.set_connection_test("bamboo", 1, ConnectionTestMode::Unreachable)
        .unwrap();
    let r = api.post(&test("bamboo", 1), json!({})).await;
    assert_eq!(r.status, 500, "{}", r.text);
    let v = r.json();
    assert_eq!(v["success"], false);
    assert!(v["message"]
        .as_str()
        .unwrap()
        .starts_with("Failed to connect\nWraps: (2) dial tcp bamboo.acme.example:443"));
    assert_eq!(
        v["causes"],
        json!(["dial tcp bamboo.acme.example:443: connect: connection refused"])
    );
    // Back up.
    h.set_connection_test("bamboo", 1, ConnectionTestMode::Up)
        .unwrap();
    assert_eq!(api.post(&test("bamboo", 1), json!({})).await.status, 200);

    // A missing connection is DevLake's JSON 404; an unloaded plugin gin's plain one.
    assert_error(
        &api.post(&test("github", 99), json!({})).await,
        404,
        "GithubConnection not found",
    );
    let r = api.post(&test("nope", 1), json!({})).await;
    assert_eq!((r.status, r.text.as_str()), (404, "404 page not found"));
    // A fixture sets the mode too.
    let fixture: Fixture = serde_json::from_value(json!({"connections": [
        {"plugin": "gitlab", "connection": {"id": 4, "name": "gl", "endpoint": "https://gl.example/api/v4/", "token": "glpat-x"},
         "test": "unreachable"}]}))
    .unwrap();
    let other = Api::new(fixture).await;
    assert_eq!(other.post(&test("gitlab", 4), json!({})).await.status, 500);

    // Tests change nothing in DevLake: the counts take them as reads.
    h.reset_log();
    api.post(&test("github", 1), json!({})).await;
    api.post(&test("gitlab", 1), json!({})).await;
    let counts = h.counts();
    assert_eq!((counts.reads, counts.writes), (2, 0));
}

/// A pipeline can be failed with a chosen `errorName` (DevLake's `caused by:` chain), through
/// the handle and the control API; without one the simulator derives it from `message`.
#[tokio::test]
async fn pipelines_fail_with_a_chosen_error_name() {
    let api = Api::new(Fixture::sample()).await;
    let h = api.sim.handle();
    let bp = h.blueprint_of_project("legacy-api").unwrap()["id"]
        .as_u64()
        .unwrap();
    let chain = "Error running pipeline 1.\ncaused by: Error running task 2.\ncaused by: \
                 subtask collectApiPullRequests ended unexpectedly\ncaused by: authentication \
                 failed, please check your AccessToken (401)";
    let id = h.trigger(bp).unwrap();
    let r = api
        .post(
            &format!("/_sim/pipelines/{id}/finish"),
            json!({"status": "TASK_FAILED", "message": "Error running pipeline 1.", "errorName": chain}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let v = api.ok(&format!("/pipelines/{id}")).await;
    assert_eq!(v["errorName"], chain);
    assert_eq!(v["message"], "Error running pipeline 1.");
    let id = h.trigger(bp).unwrap();
    h.finish_pipeline_with_error(id, "TASK_PARTIAL", "m", "x\ncaused by: y")
        .unwrap();
    let v = api.ok(&format!("/pipelines/{id}")).await;
    assert_eq!(
        (v["status"].clone(), v["errorName"].clone()),
        (json!("TASK_PARTIAL"), json!("x\ncaused by: y"))
    );
}
