//! The events function end to end: the DevLake simulator posts its signed pipeline notifications
//! (as DevLake's `NotifyExternal` does) over real HTTP to the events function, which records
//! into the store the monitor and the metrics page use. In process with the in-memory store
//! (the store is not the point), and once as the real binary under `cargo lambda watch` with
//! DynamoDB Local.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use devlake_autopilot::cloudwatch::MemorySink;
use devlake_autopilot::config::Env;
use devlake_autopilot::devlake::{ClientConfig, DevLakeClient};
use devlake_autopilot::events::{EventsFunction, EventsService, EventsSettings, ExpectedSecret};
use devlake_autopilot::metrics_http::{http, MetricsService, MetricsToken};
use devlake_autopilot::monitor::{Deadline, Monitor, MonitorSettings, RunStatus, Summary};
use devlake_autopilot::store::{
    MemoryStore, MetricsSnapshot, MetricsSource, MonitorStore, StoreError,
};
use devlake_testkit::log_capture::Capture;
use devlake_testkit::serve::{serve_in_background, Serving};
use devlake_testkit::sim::{
    devlake_sign, Fixture, NotificationRow, NotificationSettings, PipelineSeed, SimHandle,
    Simulator,
};
use devlake_testkit::stack::local_sdk_config;
use serde_json::json;

const SECRET: &str = "events-test-notification-secret-8c1f";
const TOKEN: &str = "events-test-metrics-token";
const PROJECT: &str = "github/acme/svc-a";
const WAIT: Duration = Duration::from_secs(20);

/// The page of the in-process metrics service reads the events function's own store.
struct SameStore(Arc<EventsService<MemoryStore>>);

#[async_trait::async_trait]
impl MetricsSource for SameStore {
    async fn snapshot(&self, since: DateTime<Utc>) -> Result<MetricsSnapshot, StoreError> {
        self.0.store().snapshot(since).await
    }
}

/// The simulator with one project, the events function served over HTTP on the in-memory
/// store, the monitor and the metrics page on that same store.
struct Harness {
    sim: Simulator,
    blueprint: u64,
    events: Arc<EventsService<MemoryStore>>,
    url: String,
    _serving: Serving,
    metrics: MetricsService<SameStore>,
    devlake: DevLakeClient,
    sink: MemorySink,
    settings: MonitorSettings,
    http: reqwest::Client,
}

impl Harness {
    async fn new(settings: MonitorSettings) -> Harness {
        let sim = Simulator::start(Fixture::empty()).await;
        let h = sim.handle();
        // Whole seconds, as DevLake stamps them; fixed so queue times are exact.
        let now = Utc::now();
        h.set_clock(Some(
            now - chrono::Duration::nanoseconds(now.timestamp_subsec_nanos() as i64),
        ));
        let blueprint = h.create_project(PROJECT).unwrap();
        // What the function's start-up does with NOTIFICATION_SECRET.
        let env: Env = [("TABLE_NAME", "unused"), ("NOTIFICATION_SECRET", SECRET)]
            .into_iter()
            .collect();
        let secret_source = EventsSettings::from_env(&env).unwrap().secret;
        let secret =
            ExpectedSecret::resolve(secret_source, &local_sdk_config("http://127.0.0.1:9"))
                .await
                .unwrap();
        let events = Arc::new(EventsService::new(
            MemoryStore::new(),
            secret,
            settings.clone(),
        ));
        let (url, serving) = serve(events.clone()).await;
        h.set_notifications(Some(NotificationSettings {
            endpoint: url.clone(),
            secret: SECRET.into(),
        }));
        let devlake = DevLakeClient::new(ClientConfig {
            endpoint: sim.url(),
            max_retries: 0,
            ..ClientConfig::default()
        })
        .unwrap();
        Harness {
            blueprint,
            metrics: MetricsService::new(
                SameStore(events.clone()),
                MetricsToken::new(TOKEN).unwrap(),
                chrono_tz::UTC,
                7,
            ),
            sim,
            events,
            url,
            _serving: serving,
            devlake,
            sink: MemorySink::new(),
            settings,
            http: reqwest::Client::new(),
        }
    }

    fn sim(&self) -> SimHandle {
        self.sim.handle()
    }

    fn store(&self) -> &MemoryStore {
        self.events.store()
    }

    /// A queued pipeline of the project, created now on DevLake's clock (a seeded row: DevLake
    /// itself would also have sent a "created" notification, which changes nothing here).
    fn queued(&self) -> u64 {
        self.sim()
            .create_pipeline(PipelineSeed {
                blueprint_id: self.blueprint,
                status: "TASK_CREATED".into(),
                ..Default::default()
            })
            .unwrap()
    }

    async fn notifications(&self, count: usize) -> Vec<NotificationRow> {
        self.sim()
            .wait_for_notifications(count, WAIT)
            .await
            .unwrap()
    }

    async fn monitor(&self) -> Summary {
        let monitor = Monitor {
            settings: &self.settings,
            devlake: &self.devlake,
            store: self.store(),
            sink: &self.sink,
        };
        let summary = monitor
            .handle(&json!({}), Utc::now(), Deadline::none())
            .await
            .unwrap();
        assert_eq!(summary.status, RunStatus::Ok, "{summary:#?}");
        summary
    }

    async fn page(&self) -> String {
        let request = http::Request::builder()
            .uri("/metrics")
            .header("authorization", format!("Bearer {TOKEN}"))
            .body(())
            .unwrap();
        let response = self.metrics.handle(&request, Utc::now()).await;
        assert_eq!(response.status(), 200);
        String::from_utf8(response.into_body()).unwrap()
    }

    /// Posts `body` to the events function with `query` (no `?`).
    async fn post(&self, method: reqwest::Method, query: &str, body: &str) -> (u16, String) {
        let url = if query.is_empty() {
            self.url.clone()
        } else {
            format!("{}?{query}", self.url)
        };
        let r = self
            .http
            .request(method, url)
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    }

    /// Delivers a notification the simulator made again (late, or twice), to this function.
    async fn redeliver(&self, row: &NotificationRow) -> (u16, String) {
        let query = row.url.split_once('?').unwrap().1;
        self.post(reqwest::Method::POST, query, &row.data).await
    }
}

/// Serves the events function over HTTP, as a function URL hands it requests.
async fn serve(events: Arc<EventsService<MemoryStore>>) -> (String, Serving) {
    let app = axum::Router::new()
        .fallback(
            |axum::extract::State(events): axum::extract::State<
                Arc<EventsService<MemoryStore>>,
            >,
             req: axum::extract::Request| async move {
                let (parts, body) = req.into_parts();
                let body = axum::body::to_bytes(body, 6 << 20).await.unwrap();
                let req = http::Request::from_parts(parts, body.to_vec());
                let response = events.handle(&req, Utc::now()).await;
                response.map(axum::body::Body::from)
            },
        )
        .with_state(events);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    (url, serve_in_background(listener, app))
}

fn line<'a>(page: &'a str, prefix: &str) -> Option<&'a str> {
    page.lines().find(|l| l.starts_with(prefix))
}

#[tokio::test]
async fn unsigned_wrong_and_malformed_requests_touch_nothing_and_replays_are_accepted() {
    // Its log lines are checked: alone in a process, no other test can disable their callsites.
    if !devlake_testkit::log_capture::alone(
        "unsigned_wrong_and_malformed_requests_touch_nothing_and_replays_are_accepted",
    ) {
        return;
    }
    let capture = Capture::default();
    let _logs = tracing::subscriber::set_default(capture.clone());
    let h = Harness::new(MonitorSettings::default()).await;
    // The function's own start-up (plain secret: no AWS call) logs nothing of the secret.
    let env: Env = [("TABLE_NAME", "t"), ("NOTIFICATION_SECRET", SECRET)]
        .into_iter()
        .collect();
    EventsFunction::from_env_with_sdk(&env, &local_sdk_config("http://127.0.0.1:9"))
        .await
        .unwrap();

    let body = r#"{"ProjectName":"github/acme/svc-a","PipelineID":7,"CreatedAt":"2026-11-28T10:00:00Z","UpdatedAt":"2026-11-28T10:05:00Z","BeganAt":"2026-11-28T10:00:01Z","FinishedAt":"2026-11-28T10:05:00Z","Status":"TASK_FAILED"}"#;
    let nonce = "3-AbCdEfGhIjKlMnOp";
    let good = devlake_sign(body, SECRET, nonce);
    let post = reqwest::Method::POST;
    for (what, method, query, sent) in [
        ("no query", post.clone(), String::new(), body),
        ("no sign", post.clone(), format!("nouce={nonce}"), body),
        ("no nouce", post.clone(), format!("sign={good}"), body),
        (
            "signed with another secret",
            post.clone(),
            format!("nouce={nonce}&sign={}", devlake_sign(body, "not-it", nonce)),
            body,
        ),
        (
            "another nouce",
            post.clone(),
            format!("nouce=4-AbCdEfGhIjKlMnOp&sign={good}"),
            body,
        ),
        (
            "body changed after signing",
            post.clone(),
            format!("nouce={nonce}&sign={good}"),
            &body.replace("TASK_FAILED", "TASK_COMPLETED"),
        ),
        (
            "GET without signature",
            reqwest::Method::GET,
            String::new(),
            "",
        ),
    ] {
        let (status, text) = h.post(method, &query, sent).await;
        assert_eq!((status, text.as_str()), (401, "unauthorized\n"), "{what}");
    }
    assert_eq!(h.store().calls(), 0, "a refused request touched the store");

    // Signed, but not a notification: 405 for another method, 400 for another body.
    let empty = format!("nouce={nonce}&sign={}", devlake_sign("", SECRET, nonce));
    let (status, _) = h.post(reqwest::Method::GET, &empty, "").await;
    assert_eq!(status, 405);
    let (status, _) = h.post(reqwest::Method::PUT, &empty, "").await;
    assert_eq!(status, 405);
    let garbage = r#"{"projectName":"x"}"#;
    let (status, text) = h
        .post(
            post.clone(),
            &format!(
                "nouce={nonce}&sign={}",
                devlake_sign(garbage, SECRET, nonce)
            ),
            garbage,
        )
        .await;
    assert_eq!(status, 400, "{text}");
    assert!(
        text.starts_with("not a DevLake pipeline notification"),
        "{text}"
    );
    assert_eq!(
        h.store().calls(),
        0,
        "a request that is no notification touched the store"
    );

    // DevLake's own notifications: accepted, and a replay of one (same nouce) changes nothing.
    // (Tests running in parallel without a subscriber may have cached "nobody listens" for the
    // log lines below; ask again now that this thread's capture is in place.)
    tracing::callsite::rebuild_interest_cache();
    let pid = h.queued();
    h.sim().start_pipeline(pid).unwrap();
    h.sim().advance_clock(chrono::Duration::minutes(3));
    h.sim()
        .finish_pipeline(pid, "TASK_FAILED", "collector failed")
        .unwrap();
    let rows = h.notifications(2).await;
    assert!(rows.iter().all(|r| r.response_code == 200), "{rows:#?}");
    let before = h.store().project(PROJECT).unwrap();
    assert_eq!(h.store().failures().len(), 1);
    for _ in 0..2 {
        assert_eq!(h.redeliver(&rows[1]).await, (200, "ok\n".to_string()));
        assert_eq!(h.redeliver(&rows[0]).await.0, 200);
    }
    assert_eq!(h.store().failures().len(), 1);
    let after = h.store().project(PROJECT).unwrap();
    assert_eq!(after, before, "a replay changed the project");
    assert_eq!(after.failures_total, 1);

    let logs = capture.text();
    assert!(!logs.contains(SECRET), "the secret is in the logs");
    assert!(!logs.contains(&good), "a signature is in the logs");
    assert!(logs.contains("refused by this instance so far"), "{logs}");
    assert!(logs.contains("notification accepted"), "{logs}");
}

#[tokio::test]
async fn a_failure_pushed_then_polled_is_one_record_and_the_monitor_reruns_it() {
    let h = Harness::new(MonitorSettings {
        auto_rerun_max: 1,
        ..MonitorSettings::default()
    })
    .await;
    let page = h.page().await;
    assert!(line(&page, "devlake_events_").is_none(), "{page}");
    assert!(line(&page, "devlake_project_last_pipeline_queue_seconds").is_none());

    // Created at t0, started 90 s later: the start notification gives the queue time.
    let pid = h.queued();
    h.sim().advance_clock(chrono::Duration::seconds(90));
    let received_from = Utc::now();
    h.sim().start_pipeline(pid).unwrap();
    h.notifications(1).await;
    let page = h.page().await;
    assert_eq!(
        line(&page, "devlake_project_last_pipeline_queue_seconds{"),
        Some(
            format!("devlake_project_last_pipeline_queue_seconds{{project_name=\"{PROJECT}\"}} 90")
                .as_str()
        ),
        "{page}"
    );
    let received: f64 = line(&page, "devlake_events_last_received_timestamp_seconds ")
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or_else(|| panic!("{page}"));
    assert!(received >= received_from.timestamp() as f64, "{received}");

    // It fails: on the page as soon as the notification is answered.
    h.sim().advance_clock(chrono::Duration::minutes(4));
    h.sim()
        .finish_pipeline(pid, "TASK_FAILED", "collector failed")
        .unwrap();
    h.notifications(2).await;
    let page = h.page().await;
    let total = format!("devlake_project_pipeline_failures_total{{project_name=\"{PROJECT}\"}} 1");
    assert!(page.contains(&total), "{page}");
    assert!(page.contains("devlake_blueprint_failure_total{"), "{page}");
    let pushed = h.store().project(PROJECT).unwrap();
    assert_eq!(pushed.last_status.as_deref(), Some("TASK_FAILED"));
    assert_eq!(pushed.consecutive_failures, 1);
    assert_eq!(pushed.pushed_failures.len(), 1);

    // The monitor polls the same end: already recorded, not counted again; and since it never
    // re-ran it, it does now (AUTO_RERUN_MAX=1).
    let summary = h.monitor().await;
    assert_eq!(
        (summary.new_failures, summary.already_recorded),
        (0, 1),
        "{summary:#?}"
    );
    assert_eq!(summary.rerun_pipeline_ids, vec![pid], "{summary:#?}");
    assert_eq!(h.store().failures().len(), 1);
    let polled = h.store().project(PROJECT).unwrap();
    assert_eq!(polled.failures_total, 1);
    assert_eq!(polled.consecutive_failures, 1);
    assert!(polled.pushed_failures.is_empty());
    assert_eq!(polled.last_started, pushed.last_started);
    assert!(h.page().await.contains(&total));
    let again = h.monitor().await;
    assert_eq!((again.new_failures, again.reruns), (0, 0), "{again:#?}");
}

#[tokio::test]
async fn a_failure_polled_then_pushed_is_one_record() {
    let h = Harness::new(MonitorSettings::default()).await;
    let pid = h.queued();
    h.sim().start_pipeline(pid).unwrap();
    h.notifications(1).await;
    // The finish notification is held up (an endpoint that does not answer) ...
    h.sim().set_notifications(Some(NotificationSettings {
        endpoint: "http://127.0.0.1:9/".into(),
        secret: SECRET.into(),
    }));
    h.sim().advance_clock(chrono::Duration::minutes(2));
    h.sim()
        .finish_pipeline(pid, "TASK_FAILED", "collector failed")
        .unwrap();
    let rows = h.notifications(2).await;
    assert!(rows[1].error.is_some(), "{rows:#?}");
    // ... so the monitor records the failure first ...
    let summary = h.monitor().await;
    assert_eq!(summary.new_failures, 1, "{summary:#?}");
    let polled = h.store().project(PROJECT).unwrap();
    // ... and the late notification finds it recorded.
    assert_eq!(h.redeliver(&rows[1]).await.0, 200);
    assert_eq!(h.store().failures().len(), 1);
    let after = h.store().project(PROJECT).unwrap();
    assert_eq!(after.failures_total, 1);
    assert_eq!(after.consecutive_failures, 1);
    assert!(after.pushed_failures.is_empty());
    assert_eq!(after, polled, "the late notification changed the project");
    assert_eq!(h.monitor().await.new_failures, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lambda_binary_takes_devlakes_notifications_onto_the_metrics_page() {
    use devlake_autopilot::store::DynamoStore;
    use devlake_testkit::lambda_watch::LambdaWatch;
    use devlake_testkit::stack::dynamodb_local;

    let ddb = dynamodb_local().await;
    let table = ddb.create_table("events-watch").await;
    let watch = LambdaWatch::start(&[
        ("TABLE_NAME", table.as_str()),
        ("NOTIFICATION_SECRET", SECRET),
        ("METRICS_TOKEN", TOKEN),
        ("AWS_ENDPOINT_URL_DYNAMODB", ddb.endpoint()),
        ("AWS_REGION", "us-east-1"),
        ("AWS_ACCESS_KEY_ID", "local"),
        ("AWS_SECRET_ACCESS_KEY", "local"),
    ])
    .await;
    // DevLake's .env: NOTIFICATION_ENDPOINT is the function URL.
    let sim = Simulator::start(Fixture::sample()).await;
    let h = sim.handle();
    h.set_notifications(Some(NotificationSettings {
        endpoint: watch.function_url("devlake-events"),
        secret: SECRET.into(),
    }));
    let project = "legacy-web";
    let blueprint = h.blueprint_of_project(project).unwrap()["id"]
        .as_u64()
        .unwrap();
    let pid = h.trigger(blueprint).unwrap();
    h.start_pipeline(pid).unwrap();
    h.finish_pipeline(pid, "TASK_PARTIAL", "one task failed")
        .unwrap();
    let rows = h
        .wait_for_notifications(3, Duration::from_secs(180))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", watch.log()));
    for row in &rows {
        assert_eq!(row.response_code, 200, "{row:#?}\n{}", watch.log());
    }
    // A request DevLake did not sign.
    let http = reqwest::Client::new();
    let unsigned = http
        .post(watch.function_url("devlake-events"))
        .body(rows[2].data.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(unsigned.status(), 401);

    let page = http
        .get(format!("{}/metrics", watch.function_url("devlake-metrics")))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.contains(&format!(
            "devlake_project_pipeline_failures_total{{project_name=\"{project}\"}} 1"
        )),
        "{page}\n{}",
        watch.log()
    );
    assert!(line(&page, "devlake_events_last_received_timestamp_seconds ").is_some());
    assert!(line(&page, "devlake_project_last_pipeline_queue_seconds{").is_some());
    let store = DynamoStore::new(ddb.client(), &table);
    assert_eq!(
        store.project_states(&[project.to_string()]).await.unwrap()[project]
            .state
            .pushed_failures
            .len(),
        1
    );
    assert!(!watch.log().contains(SECRET), "the secret is in the logs");
}
