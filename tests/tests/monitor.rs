//! The monitor end to end: the DevLake simulator over HTTP, the recording CloudWatch double behind
//! the real aws-sdk-cloudwatch client, and a store. Each test has its own simulator and store.
//!
//! Scenarios run on the in-memory store ([`Harness::new`]): `store_conformance.rs` runs the
//! store's contract (conditional writes, exactly-once failure events, counters, revisions, re-run
//! claims, snapshots) against it and the DynamoDB adapter alike, so what a scenario shows about
//! the monitor holds on DynamoDB, and the file runs in seconds rather than a minute. Only the
//! tests whose point is the adapter itself run on DynamoDB Local with the table from
//! template.yaml ([`Harness::on_dynamodb`]):
//! - `records_exactly_the_failures_across_many_blueprints`: the `expiresAt` TTL attribute of the
//!   stored items and the requests a steady-state run sends over the wire;
//! - `runs_in_a_row_and_concurrent_runs_count_each_failure_once`: DynamoDB's own conditional
//!   writes and transactions deciding between two overlapping runs;
//! - `dynamodb_unavailable_fails_the_run_and_keeps_the_cursor`: an unreachable and a missing
//!   table, and the errors the SDK gives for them;
//! - `a_project_with_more_failures_than_one_transaction_holds`: DynamoDB's limit of items per
//!   transaction;
//! - `a_scrape_after_a_monitor_run_shows_the_failures_it_committed`: the requests a scrape sends;
//! - `the_lambda_binary_records_failures_from_a_scheduled_invocation`: the real binary, which
//!   only knows DynamoDB.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, Utc};
use devlake_autopilot::cloudwatch::CloudWatchSink;
use devlake_autopilot::devlake::{ClientConfig, DevLakeClient};
use devlake_autopilot::monitor::runtime::metrics_sink;
use devlake_autopilot::monitor::{
    Deadline, Monitor, MonitorError, MonitorSettings, RunStatus, Summary,
};
use devlake_autopilot::store::{
    keys, DynamoStore, FailureEvent, Job, MemoryStore, MetricsSnapshot, MetricsSource,
    MonitorCursor, MonitorStore, ProjectState, RerunClaim, RunRecord,
};
use devlake_testkit::cloudwatch_double::CloudWatchDouble;
use devlake_testkit::dynamo_calls::DynamoCallCounter;
use devlake_testkit::sim::{
    FaultRule, Faults, Fixture, MigrationMode, PipelineSeed, SimHandle, SimOptions, Simulator,
};
use devlake_testkit::stack::{dynamodb_local, free_port, local_sdk_config};
use serde_json::{json, Value};

const NAMESPACE: &str = "Test/DevLakeMonitor";

/// Where a scenario's state lives (see the module documentation for which tests use which).
enum Backend {
    Memory {
        // Boxed: the in-memory tables are much larger than the adapter's handles.
        store: Box<MemoryStore>,
        /// The store's per-operation call counts at the last [`Harness::reset_calls`].
        calls_mark: Mutex<BTreeMap<String, u64>>,
    },
    Dynamo {
        store: DynamoStore,
        client: aws_sdk_dynamodb::Client,
        calls: DynamoCallCounter,
    },
}

struct Harness {
    sim: Simulator,
    devlake: DevLakeClient,
    backend: Backend,
    cloudwatch: CloudWatchDouble,
    sink: CloudWatchSink,
    settings: MonitorSettings,
}

fn client_for(sim: &Simulator) -> DevLakeClient {
    DevLakeClient::new(ClientConfig {
        endpoint: sim.url().to_string(),
        request_timeout: Duration::from_secs(10),
        retry_base_delay: Duration::from_millis(5),
        retry_max_delay: Duration::from_millis(20),
        max_retries: 3,
        ..ClientConfig::default()
    })
    .unwrap()
}

impl Harness {
    /// A scenario on the in-memory store.
    async fn new() -> Harness {
        Self::with_sim(SimOptions::default()).await
    }

    async fn with_sim(options: SimOptions) -> Harness {
        let backend = Backend::Memory {
            store: Box::default(),
            calls_mark: Mutex::default(),
        };
        Self::start(backend, options).await
    }

    /// A scenario on its own table (named after `prefix`) in DynamoDB Local.
    async fn on_dynamodb(prefix: &str) -> Harness {
        Self::on_dynamodb_with_sim(prefix, SimOptions::default()).await
    }

    async fn on_dynamodb_with_sim(prefix: &str, options: SimOptions) -> Harness {
        let local = dynamodb_local().await;
        let table = local.create_table(prefix).await;
        let calls = DynamoCallCounter::default();
        let client = calls.client(&local_sdk_config(local.endpoint()));
        let backend = Backend::Dynamo {
            store: DynamoStore::new(client.clone(), table),
            client,
            calls,
        };
        Self::start(backend, options).await
    }

    async fn start(backend: Backend, options: SimOptions) -> Harness {
        let sim = Simulator::start_with(Fixture::empty(), options).await;
        let cloudwatch = CloudWatchDouble::start().await;
        // The sink the function builds at start-up.
        let sink = metrics_sink(
            aws_sdk_cloudwatch::Client::new(&local_sdk_config(cloudwatch.url())),
            NAMESPACE,
        );
        Harness {
            devlake: client_for(&sim),
            sim,
            backend,
            cloudwatch,
            sink,
            settings: MonitorSettings::default(),
        }
    }

    fn sim(&self) -> SimHandle {
        self.sim.handle()
    }

    fn store(&self) -> &dyn MonitorStore {
        match &self.backend {
            Backend::Memory { store, .. } => store.as_ref(),
            Backend::Dynamo { store, .. } => store,
        }
    }

    /// The DynamoDB adapter and its client, for the tests on DynamoDB Local.
    fn dynamo(&self) -> (&DynamoStore, &aws_sdk_dynamodb::Client) {
        match &self.backend {
            Backend::Dynamo { store, client, .. } => (store, client),
            Backend::Memory { .. } => panic!("this test needs Harness::on_dynamodb"),
        }
    }

    fn monitor(&self) -> Monitor<'_> {
        Monitor {
            settings: &self.settings,
            devlake: &self.devlake,
            store: self.store(),
            sink: &self.sink,
        }
    }

    async fn run(&self, payload: Value) -> Result<Summary, MonitorError> {
        self.monitor()
            .handle(&payload, Utc::now(), Deadline::none())
            .await
    }

    async fn ok(&self) -> Summary {
        self.ok_at(Utc::now()).await
    }

    /// A run whose clock reads `clock`.
    async fn ok_at(&self, clock: DateTime<Utc>) -> Summary {
        let summary = self
            .monitor()
            .handle(&json!({}), clock, Deadline::none())
            .await
            .expect("monitor run");
        assert_eq!(summary.status, RunStatus::Ok, "{summary:#?}");
        summary
    }

    /// Starts counting store calls from zero.
    fn reset_calls(&self) {
        match &self.backend {
            Backend::Memory { store, calls_mark } => {
                *calls_mark.lock().unwrap() = store.calls_by_operation()
            }
            Backend::Dynamo { calls, .. } => calls.reset(),
        }
    }

    /// Store calls since the last [`reset_calls`](Self::reset_calls), by DynamoDB operation
    /// (on the in-memory store: the operation the adapter would send for each).
    fn calls_by_operation(&self) -> BTreeMap<String, u64> {
        match &self.backend {
            Backend::Memory { store, calls_mark } => {
                let mark = calls_mark.lock().unwrap();
                store
                    .calls_by_operation()
                    .into_iter()
                    .map(|(op, n)| {
                        let since = n - mark.get(&op).copied().unwrap_or(0);
                        (op, since)
                    })
                    .filter(|(_, n)| *n > 0)
                    .collect()
            }
            Backend::Dynamo { calls, .. } => calls.by_operation(),
        }
    }

    /// Every failure event stored, with its `expiresAt`, by pipeline then time.
    async fn failures(&self) -> Vec<(FailureEvent, i64)> {
        let mut out = match &self.backend {
            Backend::Memory { store, .. } => store
                .failures()
                .into_iter()
                .map(|e| {
                    let expires = store.failure_expiry(&e.key()).unwrap();
                    (e, expires)
                })
                .collect(),
            Backend::Dynamo { store, client, .. } => scan_failures(client, store.table()).await,
        };
        out.sort_by_key(|(e, _)| (e.pipeline_id, e.finished_at));
        out
    }

    async fn failure_ids(&self) -> Vec<u64> {
        self.failures()
            .await
            .into_iter()
            .map(|(e, _)| e.pipeline_id)
            .collect()
    }

    /// Whether the store holds nothing at all.
    async fn is_empty(&self) -> bool {
        match &self.backend {
            Backend::Memory { store, .. } => store.is_empty(),
            Backend::Dynamo { store, client, .. } => {
                client
                    .scan()
                    .table_name(store.table())
                    .select(aws_sdk_dynamodb::types::Select::Count)
                    .send()
                    .await
                    .unwrap()
                    .count
                    == 0
            }
        }
    }

    async fn project(&self, name: &str) -> ProjectState {
        self.store()
            .project_states(&[name.to_string()])
            .await
            .unwrap()
            .remove(name)
            .unwrap_or_else(|| panic!("no state for {name}"))
            .state
    }

    async fn cursor(&self) -> Option<MonitorCursor> {
        self.store().load_cursor().await.unwrap()
    }

    /// What the metrics page would read, with the failures since `since`.
    async fn snapshot(&self, since: DateTime<Utc>) -> MetricsSnapshot {
        match &self.backend {
            Backend::Memory { store, .. } => store.snapshot(since).await.unwrap(),
            Backend::Dynamo { store, .. } => store.snapshot(since).await.unwrap(),
        }
    }

    async fn monitor_run_record(&self) -> RunRecord {
        match &self.backend {
            Backend::Memory { store, .. } => store.run(Job::Monitor).expect("monitor run record"),
            Backend::Dynamo { store, client, .. } => {
                let item = client
                    .get_item()
                    .table_name(store.table())
                    .key(keys::PK, AttributeValue::S(keys::RUN_PK.into()))
                    .key(keys::SK, AttributeValue::S("monitor".into()))
                    .send()
                    .await
                    .unwrap()
                    .item
                    .expect("monitor run record");
                serde_dynamo::from_item(item).unwrap()
            }
        }
    }

    /// The values of the run-level CloudWatch series `name` (dimension `Function=monitor` only),
    /// in emission order.
    fn metric(&self, name: &str) -> Vec<f64> {
        self.cloudwatch
            .datums()
            .into_iter()
            .filter(|d| d.metric_name == name && d.dimensions == function_dimension())
            .map(|d| d.value.unwrap())
            .collect()
    }
}

/// Every `FAILURE#` item of `table` with its `expiresAt` attribute, read raw.
async fn scan_failures(client: &aws_sdk_dynamodb::Client, table: &str) -> Vec<(FailureEvent, i64)> {
    let mut out = Vec::new();
    let mut start = None;
    loop {
        let page = client
            .scan()
            .table_name(table)
            .filter_expression("begins_with(pk, :p)")
            .expression_attribute_values(":p", AttributeValue::S("FAILURE#".into()))
            .set_exclusive_start_key(start)
            .send()
            .await
            .unwrap();
        for item in page.items.unwrap_or_default() {
            let expires = item["expiresAt"].as_n().unwrap().parse().unwrap();
            let event: FailureEvent = serde_dynamo::from_item(item).unwrap();
            out.push((event, expires));
        }
        start = page.last_evaluated_key;
        if start.is_none() {
            return out;
        }
    }
}

/// The dimension the monitor's sink puts on every datum.
fn function_dimension() -> Vec<(String, String)> {
    vec![("Function".to_string(), "monitor".to_string())]
}

fn ago(minutes: i64) -> DateTime<Utc> {
    Utc::now() - chrono::Duration::minutes(minutes)
}

/// A finished pipeline that ran from `created` + 1 min to `finished`.
fn finished(blueprint_id: u64, status: &str, created_ago: i64, finished_ago: i64) -> PipelineSeed {
    PipelineSeed {
        blueprint_id,
        status: status.into(),
        created_at: Some(ago(created_ago)),
        began_at: Some(ago(created_ago - 1)),
        finished_at: Some(ago(finished_ago)),
        message: if status == "TASK_COMPLETED" {
            String::new()
        } else {
            format!("{status} in collector")
        },
        error_name: if status == "TASK_COMPLETED" {
            String::new()
        } else {
            "boom\n\tcaused by: 502".into()
        },
        ..PipelineSeed::default()
    }
}

fn running(blueprint_id: u64, created_ago: i64) -> PipelineSeed {
    PipelineSeed {
        blueprint_id,
        status: "TASK_RUNNING".into(),
        created_at: Some(ago(created_ago)),
        began_at: Some(ago(created_ago - 1)),
        ..PipelineSeed::default()
    }
}

/// A pipeline created and started just now (what a trigger or DevLake's cron would create).
fn start_new(sim: &SimHandle, blueprint_id: u64) -> u64 {
    sim.create_pipeline(running(blueprint_id, 0)).unwrap()
}

/// Inserts seeds oldest first (ids grow with creation time, as in DevLake).
fn insert(sim: &SimHandle, mut seeds: Vec<PipelineSeed>) -> Vec<u64> {
    seeds.sort_by_key(|s| s.created_at);
    sim.insert_pipelines(seeds).unwrap()
}

fn projects(sim: &SimHandle, n: usize, prefix: &str) -> Vec<(String, u64)> {
    (0..n)
        .map(|i| {
            let name = format!("github/{prefix}/svc-{i}");
            let bp = sim.create_project(&name).unwrap();
            (name, bp)
        })
        .collect()
}

#[tokio::test]
async fn records_exactly_the_failures_across_many_blueprints() {
    let h = Harness::on_dynamodb("mon-mix").await;
    let sim = h.sim();
    let ps = projects(&sim, 12, "mix");
    let mut seeds = Vec::new();
    for (_, bp) in &ps {
        // History older than INITIAL_LOOKBACK_HOURS: never recorded (no flood on first deploy).
        seeds.push(finished(*bp, "TASK_FAILED", 3 * 1440, 3 * 1440 - 10));
        seeds.push(finished(*bp, "TASK_COMPLETED", 2 * 1440, 2 * 1440 - 10));
    }
    for (i, (_, bp)) in ps.iter().enumerate() {
        match i % 4 {
            0 => seeds.push(finished(*bp, "TASK_FAILED", 130, 120)),
            1 => {
                seeds.push(finished(*bp, "TASK_PARTIAL", 190, 180));
                seeds.push(finished(*bp, "TASK_COMPLETED", 70, 60));
            }
            2 => {
                seeds.push(finished(*bp, "TASK_COMPLETED", 310, 300));
                seeds.push(finished(*bp, "TASK_FAILED", 250, 240));
                seeds.push(finished(*bp, "TASK_FAILED", 130, 120));
            }
            _ => {
                seeds.push(finished(*bp, "TASK_CANCELLED", 130, 120));
                seeds.push(running(*bp, 30));
            }
        }
    }
    // Ad-hoc pipelines have no project: not recorded.
    seeds.push(finished(0, "TASK_FAILED", 50, 40));
    insert(&sim, seeds);

    let first = h.ok().await;
    assert_eq!(first.new_failures, 3 + 3 + 6, "{first:#?}");
    assert_eq!(first.skipped_without_project, 1);
    assert_eq!(first.stuck, 0);
    assert!(!first.dry_run);
    let events = h.failures().await;
    assert_eq!(events.len(), 12);
    for (e, expires) in &events {
        assert!(
            matches!(e.status.as_str(), "TASK_FAILED" | "TASK_PARTIAL"),
            "{e:?}"
        );
        assert!(e.finished_at > ago(24 * 60), "outside the lookback: {e:?}");
        assert_eq!(*expires, e.finished_at.timestamp() + 90 * 86_400);
        assert!(e.message.contains("in collector") && e.error_name.contains("caused by"));
        let (name, _) = ps.iter().find(|(_, bp)| *bp == e.blueprint_id).unwrap();
        assert_eq!(&e.project_name, name);
    }

    for (i, (name, _)) in ps.iter().enumerate() {
        let s = h.project(name).await;
        match i % 4 {
            0 => {
                assert_eq!((s.failures_total, s.consecutive_failures), (1, 1), "{name}");
                assert_eq!(s.last_status.as_deref(), Some("TASK_FAILED"));
                assert_eq!(s.last_success_at, None);
                assert!(s.last_failure_at.is_some());
                let duration = s.last_duration_seconds.unwrap();
                assert!((duration - 540.0).abs() < 1.0, "{duration}");
            }
            1 => {
                assert_eq!((s.failures_total, s.consecutive_failures), (1, 0), "{name}");
                assert_eq!(s.last_status.as_deref(), Some("TASK_COMPLETED"));
                assert!(s.last_success_at > s.last_failure_at);
            }
            2 => {
                assert_eq!((s.failures_total, s.consecutive_failures), (2, 2), "{name}");
                assert_eq!(s.last_status.as_deref(), Some("TASK_FAILED"));
                assert!(s.last_success_at.unwrap() < s.last_failure_at.unwrap());
            }
            _ => {
                assert_eq!((s.failures_total, s.consecutive_failures), (0, 0), "{name}");
                assert_eq!(s.last_status.as_deref(), Some("TASK_CANCELLED"));
                assert!(!s.stuck);
            }
        }
    }

    // The running pipelines end, one new pipeline fails: the next run sees exactly those.
    let running_ids: Vec<u64> = sim.pending_pipelines();
    assert_eq!(running_ids.len(), 3);
    sim.finish_pipeline(running_ids[0], "TASK_FAILED", "late failure")
        .unwrap();
    sim.finish_pipeline(running_ids[1], "TASK_COMPLETED", "")
        .unwrap();
    sim.finish_pipeline(running_ids[2], "TASK_PARTIAL", "partly")
        .unwrap();
    let fresh = start_new(&sim, ps[0].1);
    sim.finish_pipeline(fresh, "TASK_FAILED", "new failure")
        .unwrap();

    let second = h.ok().await;
    assert_eq!(second.new_failures, 3, "{second:#?}");
    let mut expected: Vec<u64> = vec![running_ids[0], running_ids[2], fresh];
    expected.sort();
    let mut got: Vec<u64> = second.failures.iter().map(|f| f.pipeline_id).collect();
    got.sort();
    assert_eq!(got, expected);
    assert_eq!(h.failures().await.len(), 15);
    assert_eq!(h.project(&ps[0].0).await.failures_total, 2);
    assert_eq!(h.project(&ps[0].0).await.consecutive_failures, 2);

    // Nothing new: steady state costs a constant handful of calls and writes no failure.
    h.reset_calls();
    let before_third = Utc::now();
    let third = h.ok().await;
    let after_third = Utc::now();
    assert_eq!(third.new_failures, 0);
    // The new pipelines, the unfinished ones (pending, re-run, running), each counted status
    // and the blueprint sweep.
    assert!(third.devlake_calls <= 7, "{third:#?}");
    let ops = h.calls_by_operation();
    assert!(!ops.contains_key("TransactWriteItems"), "{ops:?}");
    assert_eq!(h.failures().await.len(), 15);

    // CloudWatch got one run-level series set per run, no per-project dimension by default.
    assert_eq!(h.metric("NewFailures"), vec![12.0, 3.0, 0.0]);
    assert_eq!(h.metric("RunSuccess"), vec![1.0, 1.0, 1.0]);
    assert_eq!(h.metric("DevLakeUp"), vec![1.0, 1.0, 1.0]);
    assert_eq!(h.metric("RunDurationMs").len(), 3);
    assert_eq!(h.metric("Errors"), vec![0.0, 0.0, 0.0]);
    assert_eq!(h.metric("PipelinesInspected").len(), 3);
    assert_eq!(h.metric("StuckPipelines"), vec![0.0, 0.0, 0.0]);
    let datums = h.cloudwatch.datums();
    assert!(
        datums
            .iter()
            .all(|d| d.namespace == NAMESPACE && d.dimensions == function_dimension()),
        "{datums:#?}"
    );
    // The series the automation sends too, with the same names and units.
    for (name, unit) in [
        ("RunSuccess", "None"),
        ("RunDurationMs", "Milliseconds"),
        ("Errors", "Count"),
        ("DevLakeUp", "None"),
    ] {
        assert!(
            datums
                .iter()
                .filter(|d| d.metric_name == name)
                .all(|d| d.unit.as_deref() == Some(unit)),
            "{name}"
        );
    }

    let record = h.monitor_run_record().await;
    assert!(record.success);
    assert_eq!(record.devlake_up, Some(true));
    assert_eq!(record.summary["newFailures"], json!(0));
    // `finishedAt` is when the run finished (the clock at invocation plus its duration).
    assert_eq!(record.duration_ms, third.duration_ms);
    assert!(
        record.finished_at
            >= before_third + chrono::Duration::milliseconds(third.duration_ms as i64)
            && record.finished_at <= after_third,
        "{} not within the run",
        record.finished_at
    );
}

#[tokio::test]
async fn runs_in_a_row_and_concurrent_runs_count_each_failure_once() {
    let h = Harness::on_dynamodb("mon-overlap").await;
    let sim = h.sim();
    let ps = projects(&sim, 6, "overlap");
    let seeds = ps
        .iter()
        .flat_map(|(_, bp)| {
            [
                finished(*bp, "TASK_FAILED", 100, 90),
                finished(*bp, "TASK_PARTIAL", 60, 50),
            ]
        })
        .collect();
    insert(&sim, seeds);

    // Two overlapping first runs (EventBridge at-least-once + a manual invoke).
    let (a, b) = tokio::join!(h.run(json!({})), h.run(json!({})));
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a.new_failures + b.new_failures, 12, "{a:#?}\n{b:#?}");
    // Both cursors are complete; the conditional save keeps whichever came first.
    assert!(a.cursor.saved || b.cursor.saved);
    assert_eq!(h.failures().await.len(), 12);
    for (name, _) in &ps {
        assert_eq!(h.project(name).await.failures_total, 2, "{name}");
    }

    // New failures, then two concurrent steady-state runs and one more in a row.
    let fresh: Vec<u64> = ps
        .iter()
        .take(3)
        .map(|(_, bp)| {
            let id = start_new(&sim, *bp);
            sim.finish_pipeline(id, "TASK_FAILED", "again").unwrap();
            id
        })
        .collect();
    let (c, d) = tokio::join!(h.run(json!({})), h.run(json!({})));
    let (c, d) = (c.unwrap(), d.unwrap());
    assert_eq!(c.new_failures + d.new_failures, 3);
    let e = h.ok().await;
    assert_eq!(e.new_failures, 0);
    assert_eq!(h.failures().await.len(), 15);
    for (i, (name, _)) in ps.iter().enumerate() {
        let expected = if i < 3 { 3 } else { 2 };
        assert_eq!(h.project(name).await.failures_total, expected, "{name}");
    }
    let recorded = h.failure_ids().await;
    assert!(fresh.iter().all(|id| recorded.contains(id)));
}

#[tokio::test]
async fn a_rerun_that_fails_again_is_a_second_failure() {
    let h = Harness::new().await;
    let sim = h.sim();
    let ps = projects(&sim, 2, "rerun");
    let ids = insert(
        &sim,
        vec![
            finished(ps[0].1, "TASK_FAILED", 30, 20),
            finished(ps[1].1, "TASK_FAILED", 30, 20),
        ],
    );
    assert_eq!(h.ok().await.new_failures, 2);

    // Re-run seen while pending, then failing again.
    h.devlake.rerun_pipeline(ids[0]).await.unwrap();
    let pending = h.ok().await;
    assert_eq!(pending.new_failures, 0);
    assert!(h.cursor().await.unwrap().watch.contains(&ids[0]));
    sim.start_pipeline(ids[0]).unwrap();
    sim.finish_pipeline(ids[0], "TASK_FAILED", "failed again")
        .unwrap();
    let again = h.ok().await;
    assert_eq!(again.new_failures, 1);
    let events: Vec<FailureEvent> = h
        .failures()
        .await
        .into_iter()
        .map(|(e, _)| e)
        .filter(|e| e.pipeline_id == ids[0])
        .collect();
    assert_eq!(events.len(), 2);
    assert_ne!(events[0].finished_at, events[1].finished_at);
    assert_eq!(events[1].message, "failed again");
    let s = h.project(&ps[0].0).await;
    assert_eq!((s.failures_total, s.consecutive_failures), (2, 2));

    // Re-run queued, run and failed entirely between two monitor runs: still caught.
    h.devlake.rerun_pipeline(ids[1]).await.unwrap();
    sim.start_pipeline(ids[1]).unwrap();
    sim.finish_pipeline(ids[1], "TASK_FAILED", "quick failure")
        .unwrap();
    assert_eq!(h.ok().await.new_failures, 1);
    assert_eq!(h.project(&ps[1].0).await.failures_total, 2);

    // And a re-run that succeeds resets the streak.
    h.devlake.rerun_pipeline(ids[1]).await.unwrap();
    sim.start_pipeline(ids[1]).unwrap();
    sim.finish_pipeline(ids[1], "TASK_COMPLETED", "").unwrap();
    assert_eq!(h.ok().await.new_failures, 0);
    let s = h.project(&ps[1].0).await;
    assert_eq!(s.last_status.as_deref(), Some("TASK_COMPLETED"));
    assert_eq!((s.failures_total, s.consecutive_failures), (2, 0));
    assert_eq!(h.failures().await.len(), 4);
}

#[tokio::test]
async fn stuck_pipelines_are_flagged_then_cleared() {
    let h = Harness::new().await;
    let sim = h.sim();
    let ps = projects(&sim, 2, "stuck");
    let ids = insert(&sim, vec![running(ps[0].1, 13 * 60), running(ps[1].1, 60)]);

    let first = h.ok().await;
    assert_eq!(first.stuck, 1);
    assert!(h.project(&ps[0].0).await.stuck);
    assert_eq!(
        h.cursor().await.unwrap().stuck,
        BTreeMap::from([(ps[0].0.clone(), ids[0])])
    );
    assert_eq!(h.metric("StuckPipelines"), vec![1.0]);
    // The other project has no state yet: nothing of it finished or got stuck.
    assert!(h
        .store()
        .project_states(&[ps[1].0.clone()])
        .await
        .unwrap()
        .is_empty());

    // Still running: stays flagged, nothing rewritten.
    h.reset_calls();
    assert_eq!(h.ok().await.stuck, 1);
    assert!(!h.calls_by_operation().contains_key("TransactWriteItems"));

    sim.finish_pipeline(ids[0], "TASK_COMPLETED", "").unwrap();
    let cleared = h.ok().await;
    assert_eq!(cleared.stuck, 0);
    let s = h.project(&ps[0].0).await;
    assert!(!s.stuck);
    assert_eq!(s.last_status.as_deref(), Some("TASK_COMPLETED"));
    assert!(s.last_success_at.is_some());
    assert!(h.cursor().await.unwrap().stuck.is_empty());
}

#[tokio::test]
async fn devlake_errors_lose_nothing_and_never_double_count() {
    let h = Harness::new().await;
    let sim = h.sim();
    let ps = projects(&sim, 3, "faults");
    insert(
        &sim,
        ps.iter()
            .map(|(_, bp)| finished(*bp, "TASK_FAILED", 40, 30))
            .collect(),
    );
    assert_eq!(h.ok().await.new_failures, 3);
    let cursor = h.cursor().await.unwrap();

    // A new failure appears while DevLake answers 503 to every listing (beyond the retries).
    let a = start_new(&sim, ps[1].1);
    sim.finish_pipeline(a, "TASK_FAILED", "x").unwrap();
    sim.add_fault_rule(FaultRule::status("GET", "/pipelines", 50, 503));
    let err = h.run(json!({})).await.unwrap_err();
    assert!(matches!(err, MonitorError::DevLake(_)), "{err}");
    assert_eq!(err.error_type(), "DevLakeUnavailable");
    assert!(err.to_string().contains("503"), "{err}");
    assert_eq!(h.cursor().await.unwrap(), cursor, "cursor must not move");
    let record = h.monitor_run_record().await;
    assert!(!record.success);
    assert_eq!(record.devlake_up, Some(false));
    assert_eq!(h.metric("DevLakeUp").last(), Some(&0.0));
    assert_eq!(h.metric("RunSuccess").last(), Some(&0.0));
    sim.clear_faults();

    // Connection resets within the client's retry budget: the run just succeeds.
    sim.add_fault_rule(FaultRule::reset("GET", "/pipelines", 2));
    assert_eq!(h.ok().await.new_failures, 1);
    sim.clear_faults();

    // 428 (migration pending): a clear function error, nothing written, cursor kept.
    let b = start_new(&sim, ps[2].1);
    sim.finish_pipeline(b, "TASK_PARTIAL", "y").unwrap();
    let before = h.cursor().await.unwrap();
    sim.set_migration(MigrationMode::Pending);
    let err = h.run(json!({})).await.unwrap_err();
    assert_eq!(err.error_type(), "DevLakeMigrationPending");
    assert!(err.to_string().contains("428"), "{err}");
    assert!(err.to_string().contains("migration"), "{err}");
    assert_eq!(h.cursor().await.unwrap(), before);
    assert_eq!(h.monitor_run_record().await.devlake_up, Some(false));
    sim.set_migration(MigrationMode::None);

    // 428 in the middle of a run (the listings answered, the look-up of a blueprint seen for
    // the first time does not): the run fails before writing anything.
    let fresh_project = sim.create_project("github/faults/new-one").unwrap();
    let c = start_new(&sim, fresh_project);
    sim.finish_pipeline(c, "TASK_FAILED", "z").unwrap();
    sim.add_fault_rule(FaultRule::status("GET", "/blueprints", 5, 428));
    let err = h.run(json!({})).await.unwrap_err();
    assert!(err.to_string().contains("428"), "{err}");
    assert_eq!(h.cursor().await.unwrap(), before);
    assert_eq!(h.failures().await.len(), 4, "a failed run wrote something");
    sim.clear_faults();

    // 5xx on the blueprint sweep and that blueprint's look-up (all retries): the run finishes
    // partial with what it could map; the unmapped failure waits for the next run, which
    // records it exactly once.
    sim.add_fault_rule(FaultRule::status("GET", "/blueprints", 8, 502));
    let partial = h.run(json!({})).await.unwrap();
    assert_eq!(partial.status, RunStatus::Partial, "{partial:#?}");
    assert_eq!(partial.new_failures, 1, "{partial:#?}");
    assert_eq!(partial.failures[0].pipeline_id, b);
    assert!(partial
        .errors
        .iter()
        .any(|e| e.blueprint_id == Some(fresh_project)));
    assert!(h.cursor().await.unwrap().watch.contains(&c));
    sim.clear_faults();
    let healed = h.ok().await;
    assert_eq!(healed.new_failures, 1);
    assert_eq!(healed.failures[0].pipeline_id, c);
    assert_eq!(healed.failures[0].project_name, "github/faults/new-one");

    assert_eq!(h.ok().await.new_failures, 0);
    let ids = h.failure_ids().await;
    assert_eq!(ids.len(), 6);
    for id in [a, b, c] {
        assert_eq!(ids.iter().filter(|i| **i == id).count(), 1, "{id}");
    }
    for (i, (name, _)) in ps.iter().enumerate() {
        assert_eq!(
            h.project(name).await.failures_total,
            if i == 0 { 1 } else { 2 },
            "{name}"
        );
    }
}

#[tokio::test]
async fn dynamodb_unavailable_fails_the_run_and_keeps_the_cursor() {
    let h = Harness::on_dynamodb("mon-ddb").await;
    let sim = h.sim();
    let ps = projects(&sim, 1, "ddb");
    insert(&sim, vec![finished(ps[0].1, "TASK_FAILED", 40, 30)]);
    assert_eq!(h.ok().await.new_failures, 1);
    let cursor = h.cursor().await.unwrap();
    let id = start_new(&sim, ps[0].1);
    sim.finish_pipeline(id, "TASK_FAILED", "while the table was away")
        .unwrap();

    // The same monitor pointed at a closed port.
    let port = free_port().unwrap();
    let broken = DynamoStore::new(
        aws_sdk_dynamodb::Client::new(&local_sdk_config(&format!("http://127.0.0.1:{port}"))),
        h.dynamo().0.table(),
    );
    let monitor = Monitor {
        store: &broken,
        ..h.monitor()
    };
    let err = monitor
        .handle(&json!({}), Utc::now(), Deadline::none())
        .await
        .unwrap_err();
    assert!(matches!(err, MonitorError::Store(_)), "{err}");
    assert_eq!(err.error_type(), "DynamoDbUnavailable");
    assert!(err.is_retryable());
    assert!(err.to_string().contains("DynamoDB unavailable"), "{err}");
    assert_eq!(h.cursor().await.unwrap(), cursor);
    assert_eq!(h.metric("RunSuccess").last(), Some(&0.0));

    // A table that does not exist: a clear, non-retryable failure.
    let missing = DynamoStore::new(h.dynamo().1.clone(), "no-such-table");
    let monitor = Monitor {
        store: &missing,
        ..h.monitor()
    };
    let err = monitor
        .handle(&json!({}), Utc::now(), Deadline::none())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("ResourceNotFound"), "{err}");
    assert_eq!(err.error_type(), "DynamoDbFailed");
    assert!(!err.is_retryable());

    // Back on the real table: the failure is recorded once.
    let back = h.ok().await;
    assert_eq!(back.new_failures, 1);
    assert_eq!(back.failures[0].pipeline_id, id);
    assert_eq!(h.project(&ps[0].0).await.failures_total, 2);
    assert_eq!(h.cursor().await.unwrap().revision, cursor.revision + 1);
}

#[tokio::test]
async fn auto_rerun_retries_once_per_failure_up_to_the_maximum() {
    let mut h = Harness::new().await;
    let sim = h.sim();
    let ps = projects(&sim, 2, "auto");
    let ids = insert(
        &sim,
        vec![
            finished(ps[0].1, "TASK_FAILED", 40, 30),
            finished(ps[1].1, "TASK_COMPLETED", 40, 30),
        ],
    );

    // Off (the default): never re-runs.
    let off = h.ok().await;
    assert_eq!((off.new_failures, off.reruns), (1, 0));
    assert_eq!(sim.count_matching("POST", "/pipelines"), 0);

    h.settings.auto_rerun_max = 1;
    let fresh = start_new(&sim, ps[1].1);
    sim.finish_pipeline(fresh, "TASK_FAILED", "flaky").unwrap();
    let on = h.ok().await;
    assert_eq!((on.new_failures, on.reruns), (1, 1), "{on:#?}");
    assert_eq!(on.rerun_pipeline_ids, vec![fresh]);
    assert_eq!(sim.pipeline(fresh).unwrap()["status"], "TASK_RERUN");
    assert_eq!(
        sim.count_matching("POST", &format!("/pipelines/{fresh}/rerun")),
        1
    );
    // The old failure (recorded before the switch) is not re-run.
    assert_eq!(
        sim.count_matching("POST", &format!("/pipelines/{}/rerun", ids[0])),
        0
    );

    // Pending: nothing to do. Failing again: recorded, but AUTO_RERUN_MAX=1 is used up.
    assert_eq!(h.ok().await.reruns, 0);
    sim.start_pipeline(fresh).unwrap();
    sim.finish_pipeline(fresh, "TASK_FAILED", "flaky again")
        .unwrap();
    let exhausted = h.ok().await;
    assert_eq!((exhausted.new_failures, exhausted.reruns), (1, 0));
    assert_eq!(sim.count_matching("POST", "/pipelines"), 1);
    assert_eq!(h.project(&ps[1].0).await.failures_total, 2);

    // With a higher maximum the second failure is re-run — once, even if runs overlap.
    h.settings.auto_rerun_max = 3;
    let other = start_new(&sim, ps[0].1);
    sim.finish_pipeline(other, "TASK_FAILED", "x").unwrap();
    let (a, b) = tokio::join!(h.run(json!({})), h.run(json!({})));
    assert_eq!(a.unwrap().reruns + b.unwrap().reruns, 1);
    assert_eq!(
        sim.count_matching("POST", &format!("/pipelines/{other}/rerun")),
        1
    );
}

#[tokio::test]
async fn a_refused_or_abandoned_auto_rerun_is_asked_again_by_a_later_run() {
    let mut h = Harness::new().await;
    h.settings.auto_rerun_max = 1;
    let sim = h.sim();
    let ps = projects(&sim, 2, "again");
    insert(&sim, vec![finished(ps[0].1, "TASK_COMPLETED", 40, 30)]);
    h.ok().await;

    // DevLake refuses the re-run once: the run reports it, and the next run asks again even
    // though the failure is no longer new.
    let flaky = start_new(&sim, ps[0].1);
    sim.finish_pipeline(flaky, "TASK_FAILED", "flaky").unwrap();
    let path = format!("/pipelines/{flaky}/rerun");
    sim.add_fault_rule(FaultRule::status("POST", &path, 1, 500));
    let refused = h.run(json!({})).await.unwrap();
    assert_eq!(refused.status, RunStatus::Partial);
    assert_eq!(
        (refused.new_failures, refused.reruns),
        (1, 0),
        "{refused:#?}"
    );
    assert!(
        refused.errors.iter().any(|e| e.pipeline_id == Some(flaky)),
        "{refused:#?}"
    );
    let again = h.ok().await;
    assert_eq!((again.new_failures, again.reruns), (0, 1), "{again:#?}");
    assert_eq!(again.rerun_pipeline_ids, vec![flaky]);
    assert_eq!(sim.pipeline(flaky).unwrap()["status"], "TASK_RERUN");
    assert_eq!(sim.count_matching("POST", &path), 2);
    // Accepted: not asked a third time, and the slot stays used.
    assert_eq!(h.ok().await.reruns, 0);
    assert_eq!(sim.count_matching("POST", &path), 2);

    // A run claimed the other project's failure and stopped before asking DevLake: runs
    // within the lease leave it alone, the first run after the lease asks.
    let lost = start_new(&sim, ps[1].1);
    sim.finish_pipeline(lost, "TASK_FAILED", "x").unwrap();
    h.settings.auto_rerun_max = 0;
    let failed = h.ok().await;
    assert_eq!((failed.new_failures, failed.reruns), (1, 0));
    h.settings.auto_rerun_max = 1;
    let finished_at: DateTime<Utc> = sim.pipeline(lost).unwrap()["finishedAt"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let key = FailureEvent {
        project_name: ps[1].0.clone(),
        blueprint_id: ps[1].1,
        pipeline_id: lost,
        status: "TASK_FAILED".into(),
        finished_at,
        began_at: None,
        message: String::new(),
        error_name: String::new(),
        cause: devlake_autopilot::failure_cause::FailureCause::Unknown,
    }
    .key();
    let then = Utc::now();
    assert_eq!(
        h.store()
            .claim_rerun(lost, &key, 1, then, chrono::Duration::minutes(15))
            .await
            .unwrap(),
        RerunClaim::Granted { attempt: 1 }
    );
    let lost_path = format!("/pipelines/{lost}/rerun");
    assert_eq!(h.ok().await.reruns, 0);
    assert_eq!(sim.count_matching("POST", &lost_path), 0);
    let after_lease = h.ok_at(then + chrono::Duration::minutes(16)).await;
    assert_eq!(
        after_lease.rerun_pipeline_ids,
        vec![lost],
        "{after_lease:#?}"
    );
    assert_eq!(sim.count_matching("POST", &lost_path), 1);
    // The cap held: the pipeline's next failure is recorded, not re-run.
    sim.start_pipeline(lost).unwrap();
    sim.finish_pipeline(lost, "TASK_FAILED", "y").unwrap();
    let capped = h.ok_at(then + chrono::Duration::minutes(17)).await;
    assert_eq!((capped.new_failures, capped.reruns), (1, 0), "{capped:#?}");
    assert_eq!(sim.count_matching("POST", &lost_path), 1);
}

#[tokio::test]
async fn bad_payloads_are_refused_before_anything_is_read_or_written() {
    let h = Harness::new().await;
    let sim = h.sim();
    let ps = projects(&sim, 1, "payload");
    insert(&sim, vec![finished(ps[0].1, "TASK_FAILED", 40, 30)]);
    sim.reset_log();
    h.reset_calls();
    for (payload, field) in [
        (json!({"bogus": 1}), "\"bogus\""),
        (json!({"dryRun": "yes"}), "\"dryRun\""),
        (json!({"rescan": 1}), "\"rescan\""),
        (json!({"scheduledTime": "soon"}), "\"scheduledTime\""),
        (json!([]), "JSON object"),
        // Times far from the invocation's clock: a year typo ahead or behind, a stale replay.
        (
            json!({"scheduledTime": (Utc::now() + chrono::Duration::days(365)).to_rfc3339()}),
            "\"scheduledTime\"",
        ),
        (
            json!({"scheduledTime": (Utc::now() - chrono::Duration::days(8)).to_rfc3339(), "rescan": true}),
            "\"scheduledTime\"",
        ),
        (
            json!({"detail-type": "Scheduled Event", "source": "aws.events",
                   "time": (Utc::now() + chrono::Duration::hours(1)).to_rfc3339()}),
            "\"time\"",
        ),
    ] {
        let err = h.run(payload.clone()).await.unwrap_err();
        assert!(matches!(err, MonitorError::Payload(_)), "{payload}: {err}");
        assert!(err.to_string().contains(field), "{payload}: {err}");
        assert!(!err.is_retryable());
    }
    assert_eq!(sim.counts().total, 0, "DevLake was called");
    assert!(h.calls_by_operation().is_empty(), "the store was called");
    assert_eq!(h.cloudwatch.requests(), 0, "CloudWatch was called");
    assert!(h.is_empty().await);
}

#[tokio::test]
async fn a_dry_run_reports_what_it_would_record_and_writes_nothing() {
    let mut h = Harness::new().await;
    h.settings.auto_rerun_max = 2;
    let sim = h.sim();
    let ps = projects(&sim, 3, "dry");
    insert(
        &sim,
        ps.iter()
            .map(|(_, bp)| finished(*bp, "TASK_FAILED", 40, 30))
            .collect(),
    );

    let dry = h.run(json!({"dryRun": true})).await.unwrap();
    assert!(dry.dry_run);
    assert_eq!(dry.new_failures, 3);
    assert_eq!(dry.reruns, 3);
    assert_eq!(dry.failures.len(), 3);
    assert!(!dry.cursor.saved);
    assert!(h.is_empty().await, "a dry run wrote to the store");
    assert_eq!(sim.counts().writes, 0, "a dry run wrote to DevLake");
    assert_eq!(h.cloudwatch.requests(), 0);

    // (Re-runs off for the real run: a re-run hides the failed state the last check looks for.)
    h.settings.auto_rerun_max = 0;
    let real = h.ok().await;
    assert_eq!((real.new_failures, real.reruns), (3, 0));
    // After a real run, a dry run finds everything recorded.
    let dry_again = h
        .run(json!({"dryRun": true, "rescan": true}))
        .await
        .unwrap();
    assert_eq!(dry_again.new_failures, 0);
    assert_eq!(dry_again.already_recorded, 3);
}

#[tokio::test]
async fn first_run_and_rescan_use_the_lookback_window() {
    let mut h = Harness::new().await;
    h.settings.initial_lookback = chrono::Duration::hours(6);
    let sim = h.sim();
    let ps = projects(&sim, 2, "lookback");
    insert(
        &sim,
        vec![
            finished(ps[0].1, "TASK_FAILED", 8 * 60, 7 * 60),
            finished(ps[0].1, "TASK_FAILED", 5 * 60, 4 * 60),
            finished(ps[1].1, "TASK_PARTIAL", 61, 59),
        ],
    );
    let first = h.ok().await;
    assert_eq!(first.new_failures, 2);
    assert_eq!(h.project(&ps[0].0).await.failures_total, 1);

    // A rescan looks back again: nothing is counted twice.
    let rescan = h.run(json!({"rescan": true})).await.unwrap();
    assert!(rescan.rescan);
    assert_eq!((rescan.new_failures, rescan.already_recorded), (0, 2));
    assert_eq!(h.project(&ps[0].0).await.failures_total, 1);
    assert_eq!(h.failures().await.len(), 2);

    // A scheduler payload sets the run's `now`: with a scheduled time 3 hours later, the rescan
    // window no longer reaches the 4-hour-old failure, and nothing is double counted either.
    // (Invoked ten minutes after the scheduled time, so the clock is not what sets `now`.)
    let later_time = Utc::now() + chrono::Duration::hours(3);
    let later = later_time.to_rfc3339();
    let s = h
        .monitor()
        .handle(
            &json!({"scheduledTime": later, "rescan": true}),
            later_time + chrono::Duration::minutes(10),
            Deadline::none(),
        )
        .await
        .unwrap();
    assert_eq!(
        s.now.to_rfc3339(),
        DateTime::parse_from_rfc3339(&later).unwrap().to_rfc3339()
    );
    assert_eq!((s.new_failures, s.already_recorded), (0, 1));
}

#[tokio::test]
async fn a_project_with_more_failures_than_one_transaction_holds() {
    let h = Harness::on_dynamodb("mon-chunks").await;
    let sim = h.sim();
    let ps = projects(&sim, 1, "chunks");
    insert(
        &sim,
        (0..150)
            .map(|i| finished(ps[0].1, "TASK_FAILED", 300 - i, 299 - i))
            .collect(),
    );
    let s = h.ok().await;
    assert_eq!(s.new_failures, 150);
    assert_eq!(s.failures.len(), 100, "the summary lists at most 100");
    let state = h.project(&ps[0].0).await;
    assert_eq!(
        (state.failures_total, state.consecutive_failures),
        (150, 150)
    );
    assert_eq!(h.failures().await.len(), 150);
}

#[tokio::test]
async fn blueprints_are_resolved_once_and_cached() {
    let mut h = Harness::new().await;
    h.settings.project_dimension = true;
    let sim = h.sim();
    let ps = projects(&sim, 30, "bp");
    // The run's one-page blueprint sweep names them all: no GET /blueprints/{id}.
    insert(
        &sim,
        ps.iter()
            .take(3)
            .map(|(_, bp)| finished(*bp, "TASK_FAILED", 40, 30))
            .collect(),
    );
    h.ok().await;
    assert_eq!(sim.count_matching("GET", "/blueprints/"), 0);
    assert_eq!(sim.count_matching("GET", "/blueprints?"), 1);

    // Without the sweep (DevLake refuses the listing this run), the cache answers for known
    // blueprints and unknown ones are asked one by one.
    sim.reset_log();
    sim.add_fault_rule(FaultRule::status("GET", "/blueprints", 4, 500));
    insert(
        &sim,
        ps.iter()
            .take(5)
            .map(|(_, bp)| finished(*bp, "TASK_FAILED", 20, 10))
            .collect(),
    );
    let s = h.run(json!({})).await.unwrap();
    assert_eq!(s.status, RunStatus::Partial, "{s:#?}");
    assert_eq!(s.new_failures, 5, "{s:#?}");
    assert_eq!(sim.count_matching("GET", "/blueprints/"), 2);
    sim.reset_log();
    let id = start_new(&sim, ps[29].1);
    sim.finish_pipeline(id, "TASK_FAILED", "x").unwrap();
    h.ok().await;
    assert_eq!(sim.count_matching("GET", "/blueprints/"), 0);
    assert_eq!(sim.count_matching("GET", "/blueprints?"), 1);

    // CLOUDWATCH_PROJECT_DIMENSION=true: NewFailures per project as well.
    let per_project: Vec<_> = h
        .cloudwatch
        .datums()
        .into_iter()
        .filter(|d| d.metric_name == "NewFailures" && d.dimensions != function_dimension())
        .collect();
    assert_eq!(per_project.len(), 3 + 5 + 1);
    assert!(
        per_project.iter().all(|d| d.dimensions.len() == 2
            && d.dimensions[0] == function_dimension()[0]
            && d.dimensions[1].0 == "ProjectName"),
        "{per_project:#?}"
    );
}

#[tokio::test]
async fn cloudwatch_failures_never_fail_a_run() {
    let h = Harness::new().await;
    let sim = h.sim();
    let ps = projects(&sim, 1, "cw");
    insert(&sim, vec![finished(ps[0].1, "TASK_FAILED", 40, 30)]);
    h.cloudwatch.fail_next(10, 400);
    let s = h.ok().await;
    assert_eq!(s.new_failures, 1);
    assert!(h.cloudwatch.requests() >= 1);
    assert!(h.monitor_run_record().await.success);
}

#[tokio::test]
async fn a_first_run_cut_short_by_its_deadline_loses_nothing_it_did_not_list() {
    let mut h = Harness::new().await;
    h.devlake = DevLakeClient::new(ClientConfig {
        endpoint: h.sim.url(),
        page_size: 50,
        max_concurrency: 16,
        ..ClientConfig::default()
    })
    .unwrap();
    let sim = h.sim();
    let ps = projects(&sim, 3, "first");
    // 120 failures (3 pages of the listing), no cursor yet, and no time left.
    insert(
        &sim,
        (0..120)
            .map(|i| finished(ps[(i % 3) as usize].1, "TASK_FAILED", 200 - i, 199 - i))
            .collect(),
    );
    // Every page takes 1 s: the first page of each listing (read concurrently) is in before the
    // deadline, the next page is cut off by it.
    sim.set_faults(Faults {
        list_latency_ms: 1000,
        ..Faults::default()
    });
    let late = h
        .monitor()
        .handle(
            &json!({}),
            Utc::now(),
            Deadline::after(Duration::from_millis(1600)),
        )
        .await
        .unwrap();
    assert_eq!(late.status, RunStatus::Partial, "{late:#?}");
    assert!(late.new_failures < 120, "{late:#?}");
    assert!(late
        .errors
        .iter()
        .any(|e| e.message.contains("did not reach the look-back floor")));

    // The next run picks up the failures the first one did not list, each once.
    sim.clear_faults();
    let rest = h.ok().await;
    assert_eq!(rest.new_failures, 120 - late.new_failures, "{rest:#?}");
    assert_eq!(h.failures().await.len(), 120);
    assert_eq!(h.project(&ps[0].0).await.failures_total, 40);
    assert!(h.cursor().await.unwrap().lookback_from.is_none());
    // And from then on it goes by the cursor again.
    assert_eq!(h.ok().await.new_failures, 0);
}

#[tokio::test]
async fn a_devlake_slower_than_the_deadline_ends_the_run_on_time_as_partial() {
    let mut h = Harness::new().await;
    // A per-request timeout far longer than the run's deadline, as configured in production.
    h.devlake = DevLakeClient::new(ClientConfig {
        endpoint: h.sim.url(),
        request_timeout: Duration::from_secs(30),
        ..ClientConfig::default()
    })
    .unwrap();
    let sim = h.sim();
    let ps = projects(&sim, 1, "slow");
    insert(&sim, vec![finished(ps[0].1, "TASK_FAILED", 40, 30)]);
    assert_eq!(h.ok().await.new_failures, 1);
    let cursor = h.cursor().await.unwrap();

    // DevLake now answers every request after 25 s; the run has 3 s.
    let fresh = start_new(&sim, ps[0].1);
    sim.finish_pipeline(fresh, "TASK_FAILED", "x").unwrap();
    sim.set_faults(Faults {
        latency_ms: 25_000,
        ..Faults::default()
    });
    let started = std::time::Instant::now();
    let late = h
        .monitor()
        .handle(
            &json!({}),
            Utc::now(),
            Deadline::after(Duration::from_secs(3)),
        )
        .await
        .unwrap();
    let took = started.elapsed();
    assert!(took < Duration::from_secs(5), "took {took:?}");
    assert_eq!(late.status, RunStatus::Partial, "{late:#?}");
    assert!(late.errors[0].message.contains("deadline"), "{late:#?}");
    assert_eq!(h.cursor().await.unwrap(), cursor, "cursor must not move");

    // With no time left at all, nothing is sent.
    sim.reset_log();
    let none = h
        .monitor()
        .handle(&json!({}), Utc::now(), Deadline::after(Duration::ZERO))
        .await
        .unwrap();
    assert_eq!(none.status, RunStatus::Partial);
    assert_eq!(sim.count_matching("GET", "/pipelines"), 0);

    // DevLake answers again: the next run records the failure.
    sim.clear_faults();
    let next = h.ok().await;
    assert_eq!(next.new_failures, 1, "{next:#?}");
    assert_eq!(next.failures[0].pipeline_id, fresh);
}

#[tokio::test]
async fn an_expired_deadline_postpones_work_without_losing_any() {
    let mut h = Harness::new().await;
    h.devlake = DevLakeClient::new(ClientConfig {
        endpoint: h.sim.url(),
        page_size: 50,
        max_concurrency: 16,
        ..ClientConfig::default()
    })
    .unwrap();
    let sim = h.sim();
    let ps = projects(&sim, 3, "deadline");
    insert(&sim, vec![finished(ps[0].1, "TASK_FAILED", 300, 290)]);
    assert_eq!(h.ok().await.new_failures, 1);
    let cursor = h.cursor().await.unwrap();

    // 120 new failures (3 pages), two of the three blueprints never seen, and no time left.
    insert(
        &sim,
        (0..120)
            .map(|i| finished(ps[(i % 3) as usize].1, "TASK_FAILED", 200 - i, 199 - i))
            .collect(),
    );
    // Every page takes 1 s: the first page of each listing (read concurrently) is in before the
    // deadline, the next page is cut off by it.
    sim.set_faults(Faults {
        list_latency_ms: 1000,
        ..Faults::default()
    });
    let late = h
        .monitor()
        .handle(
            &json!({}),
            Utc::now(),
            Deadline::after(Duration::from_millis(1600)),
        )
        .await
        .unwrap();
    assert_eq!(late.status, RunStatus::Partial, "{late:#?}");
    assert!(
        late.errors.iter().all(|e| e.message.contains("deadline")),
        "{late:#?}"
    );
    assert_eq!(
        late.devlake_calls, 8,
        "one page of each listing and the listing's second page cut off, no look-ups"
    );
    // Seen: the newest page of the listing and the newest 100 failures (the re-run safety net),
    // i.e. seeds 20..120. No time is left for the blueprint sweep, so only those of the blueprint
    // already known are recorded; the others stay for the next run.
    assert_eq!(late.pipelines_inspected, 100);
    let known = (20..120).filter(|i| i % 3 == 0).count() as u64;
    assert_eq!(late.new_failures, known, "{late:#?}");
    let after = h.cursor().await.unwrap();
    assert_eq!(
        after.max_pipeline_id, cursor.max_pipeline_id,
        "the cursor must not skip the gap"
    );

    sim.clear_faults();
    let rest = h.ok().await;
    assert_eq!(rest.new_failures, 120 - known);
    assert_eq!(rest.already_recorded, known);
    assert_eq!(h.failures().await.len(), 121);
    assert_eq!(h.project(&ps[0].0).await.failures_total, 41);
    assert_eq!(h.project(&ps[1].0).await.failures_total, 40);
    assert_eq!(h.project(&ps[2].0).await.failures_total, 40);
}

#[tokio::test]
async fn a_refused_api_key_is_a_function_error_and_devlake_is_down() {
    let mut h = Harness::with_sim(SimOptions::with_api_key("the-right-key")).await;
    h.devlake = DevLakeClient::new(ClientConfig {
        endpoint: format!("{}/rest", h.sim.url()),
        api_key: Some("a-wrong-key-123".into()),
        ..ClientConfig::default()
    })
    .unwrap();
    let err = h.run(json!({})).await.unwrap_err();
    assert!(!err.is_retryable());
    let message = err.to_string();
    assert!(
        message.contains("refused the credentials (403)"),
        "{message}"
    );
    assert!(!message.contains("a-wrong-key-123"));
    let record = h.monitor_run_record().await;
    assert_eq!((record.success, record.devlake_up), (false, Some(false)));
    assert!(h.cursor().await.is_none());
}

/// The real `devlake-monitor` binary under `cargo lambda watch`: configuration from the
/// environment, the scheduler payload, DynamoDB Local and the CloudWatch double through the
/// per-service endpoint variables, and function errors that say why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lambda_binary_records_failures_from_a_scheduled_invocation() {
    use devlake_testkit::lambda_watch::{InvokeError, LambdaWatch};

    const KEY: &str = "dlk-watch-secret-7f3a";
    let h = Harness::on_dynamodb_with_sim("mon-watch", SimOptions::with_api_key(KEY)).await;
    let sim = h.sim();
    let ps = projects(&sim, 2, "watch");
    insert(
        &sim,
        ps.iter()
            .map(|(_, bp)| finished(*bp, "TASK_FAILED", 40, 30))
            .collect(),
    );
    // The API-key path: DevLake checks keys only under /rest.
    let endpoint = format!("{}/rest", h.sim.url());
    let ddb = dynamodb_local().await;
    let watch = LambdaWatch::start(&[
        ("DEVLAKE_ENDPOINT", endpoint.as_str()),
        // The simulator serves plain HTTP.
        ("ALLOW_INSECURE_HTTP", "true"),
        ("DEVLAKE_API_KEY", KEY),
        ("TABLE_NAME", h.dynamo().0.table()),
        ("AWS_ENDPOINT_URL_DYNAMODB", ddb.endpoint()),
        ("AWS_ENDPOINT_URL_CLOUDWATCH", h.cloudwatch.url()),
        ("AWS_REGION", "us-east-1"),
        ("AWS_ACCESS_KEY_ID", "local"),
        ("AWS_SECRET_ACCESS_KEY", "local"),
        ("CLOUDWATCH_NAMESPACE", NAMESPACE),
        ("DEVLAKE_MAX_RETRIES", "1"),
    ])
    .await;

    let scheduled = json!({"scheduledTime": Utc::now().to_rfc3339()});
    let summary = watch
        .invoke("devlake-monitor", &scheduled)
        .await
        .unwrap_or_else(|e| panic!("invoke failed: {e}\n{}", watch.log()));
    assert_eq!(summary["status"], "ok", "{summary:#}");
    assert_eq!(
        summary["newFailures"],
        2,
        "{summary:#}\n{:#?}\n{}",
        sim.pipeline(1),
        watch.log()
    );
    assert_eq!(summary["dryRun"], false);
    for field in [
        "pipelinesInspected",
        "stuck",
        "reruns",
        "devlakeCalls",
        "durationMs",
    ] {
        assert!(summary[field].is_u64(), "{field} in {summary:#}");
    }
    assert!(summary["conflicts"].as_array().unwrap().is_empty());
    assert_eq!(h.failures().await.len(), 2);
    assert_eq!(h.metric("NewFailures"), vec![2.0], "{}", watch.log());

    // An EventBridge rule's "Scheduled Event" is accepted too; nothing new to record.
    let rule = json!({
        "version": "0", "id": "7bf73129", "detail-type": "Scheduled Event", "source": "aws.events",
        "account": "123456789012", "time": Utc::now().to_rfc3339(), "region": "us-east-1",
        "resources": ["arn:aws:events:us-east-1:123456789012:rule/monitor"], "detail": {}
    });
    let again = watch.invoke("devlake-monitor", &rule).await.unwrap();
    assert_eq!(again["newFailures"], 0, "{again:#}");

    // A bad payload: a function error naming the field, nothing called.
    sim.reset_log();
    match watch
        .invoke("devlake-monitor", &json!({"bogus": true}))
        .await
    {
        Err(InvokeError::Function { message }) => {
            assert!(message.starts_with("InvalidPayload: "), "{message}");
            assert!(message.contains("bogus"), "{message}");
        }
        other => panic!("expected a function error, got {other:?}"),
    }
    assert_eq!(sim.counts().total, 0);

    // DevLake waiting for a migration: a function error that says so, and devlake_up = 0.
    sim.set_migration(MigrationMode::Pending);
    match watch.invoke("devlake-monitor", &json!({})).await {
        Err(InvokeError::Function { message }) => {
            assert!(
                message.starts_with("DevLakeMigrationPending: monitor run stopped: ")
                    && message.contains("428")
                    && message.contains("migration"),
                "{message}"
            )
        }
        other => panic!("expected a function error, got {other:?}"),
    }
    let record = h.monitor_run_record().await;
    assert!(!record.success);
    assert_eq!(record.devlake_up, Some(false));
    assert!(
        !watch.log().contains(KEY),
        "the API key leaked into the logs"
    );
}

#[tokio::test]
async fn a_project_that_stops_failing_leaves_the_failure_window_at_the_daily_expiry() {
    let mut h = Harness::new().await;
    h.settings.failure_window = chrono::Duration::days(1);
    let sim = h.sim();
    let ps = projects(&sim, 2, "expiry");
    let (quiet, busy) = (&ps[0], &ps[1]);
    insert(
        &sim,
        vec![
            finished(quiet.1, "TASK_FAILED", 130, 120),
            finished(busy.1, "TASK_FAILED", 130, 120),
        ],
    );
    let t0 = Utc::now();

    // The first run ever makes the day's pass; nothing has aged out yet.
    let first = h.ok_at(t0).await;
    assert_eq!(first.new_failures, 2);
    let expiry = first.expiry.expect("first run of the day");
    assert_eq!((expiry.projects_read, expiry.projects_rewritten), (2, 0));

    // A day and more later only `busy` fails again; its commit prunes its own list.
    insert(
        &sim,
        vec![finished(busy.1, "TASK_FAILED", -29 * 60 + 10, -29 * 60)],
    );
    let next_day = t0 + chrono::Duration::hours(30);
    let second = h.ok_at(next_day).await;
    assert_eq!(second.new_failures, 1);
    let expiry = second.expiry.expect("first run of a new UTC day");
    assert_eq!(
        (
            expiry.projects_read,
            expiry.projects_rewritten,
            expiry.failures_expired,
            expiry.projects_left
        ),
        (2, 1, 1, 0),
        "{expiry:?}"
    );
    let quiet_state = h.project(&quiet.0).await;
    assert!(quiet_state.recent_failures.is_empty(), "{quiet_state:?}");
    assert_eq!(quiet_state.failures_total, 1, "the counter is history");
    assert_eq!(h.project(&busy.0).await.recent_failures.len(), 1);
    // The failure items themselves stay until their TTL.
    assert_eq!(h.failures().await.len(), 3);

    // What the metrics page reads now: busy's new failure only.
    let page = h.snapshot(next_day - h.settings.failure_window).await;
    let shown: Vec<&str> = page
        .failures
        .iter()
        .map(|f| f.project_name.as_str())
        .collect();
    assert_eq!(shown, [busy.0.as_str()]);

    // Later the same day: no second pass.
    let third = h.ok_at(next_day + chrono::Duration::minutes(5)).await;
    assert_eq!(third.expiry, None);
}

// ------------------------------------------------------------ DevLake's pipeline lifecycle

/// Failure events of one pipeline, oldest first.
async fn events_of(h: &Harness, pipeline_id: u64) -> Vec<FailureEvent> {
    h.failures()
        .await
        .into_iter()
        .map(|(e, _)| e)
        .filter(|e| e.pipeline_id == pipeline_id)
        .collect()
}

#[tokio::test]
async fn a_restart_without_resume_is_one_failure_keyed_by_updated_at_and_can_be_rerun() {
    let mut h = Harness::new().await;
    h.settings.auto_rerun_max = 1;
    let sim = h.sim();
    let ps = projects(&sim, 2, "restart");
    let first_run = start_new(&sim, ps[0].1);
    let other = start_new(&sim, ps[1].1);
    sim.finish_pipeline(other, "TASK_FAILED", "x").unwrap();
    assert_eq!(h.ok().await.new_failures, 1);
    // Auto-rerun re-ran it; DevLake starts it.
    assert_eq!(sim.pipeline(other).unwrap()["status"], "TASK_RERUN");
    sim.start_pipeline(other).unwrap();
    assert_eq!(h.ok().await.new_failures, 0);
    assert!(h.cursor().await.unwrap().watch.contains(&first_run));
    assert!(
        h.cursor().await.unwrap().watch.contains(&other),
        "a running re-run is watched"
    );

    // DevLake restarts with RESUME_PIPELINES=false: both running pipelines fail, the first
    // run with no finishedAt, the re-run with its previous run's.
    sim.advance_clock(chrono::Duration::minutes(1));
    assert_eq!(sim.restart(false), vec![first_run, other]);
    let updated = |id: u64| -> DateTime<Utc> {
        sim.pipeline(id).unwrap()["updatedAt"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap()
    };
    let after = h.ok().await;
    assert_eq!(after.new_failures, 2, "{after:#?}");
    let e = events_of(&h, first_run).await;
    assert_eq!(e.len(), 1);
    assert_eq!(e[0].finished_at, updated(first_run));
    let e = events_of(&h, other).await;
    assert_eq!(e.len(), 2, "the interrupted re-run is a second failure");
    assert_eq!(e[1].finished_at, updated(other));
    // Not "still settling": the auto-rerun is not blocked (the other pipeline used up its
    // AUTO_RERUN_MAX of 1), and the re-run is watched as such.
    assert_eq!(after.rerun_pipeline_ids, vec![first_run], "{after:#?}");
    assert_eq!(sim.pipeline(first_run).unwrap()["status"], "TASK_RERUN");
    assert!(!h.cursor().await.unwrap().watch.contains(&other));

    // Recorded exactly once, however many runs see it.
    for _ in 0..2 {
        assert_eq!(h.ok().await.new_failures, 0);
    }
    assert_eq!(h.failures().await.len(), 3);
    assert_eq!(h.project(&ps[0].0).await.failures_total, 1);
}

#[tokio::test]
async fn a_resumed_pipeline_is_pending_until_it_ends() {
    let h = Harness::new().await;
    let sim = h.sim();
    let ps = projects(&sim, 1, "resume");
    let id = start_new(&sim, ps[0].1);
    h.ok().await;
    assert_eq!(sim.restart(true), vec![id]);
    // TASK_RESUME is in no "pending" listing: watched all the same, nothing recorded.
    for _ in 0..2 {
        let s = h.ok().await;
        assert_eq!(s.new_failures, 0);
        assert!(h.cursor().await.unwrap().watch.contains(&id));
    }
    sim.start_pipeline(id).unwrap();
    sim.finish_pipeline(id, "TASK_FAILED", "after resume")
        .unwrap();
    assert_eq!(h.ok().await.new_failures, 1);
    assert!(!h.cursor().await.unwrap().watch.contains(&id));
    assert_eq!(events_of(&h, id).await[0].message, "after resume");
}

#[tokio::test]
async fn a_cancelled_pipeline_follows_failure_statuses() {
    let mut h = Harness::new().await;
    let sim = h.sim();
    let ps = projects(&sim, 2, "cancel");
    let queued = sim
        .create_pipeline(PipelineSeed {
            blueprint_id: ps[0].1,
            status: "TASK_CREATED".into(),
            ..PipelineSeed::default()
        })
        .unwrap();
    let running = start_new(&sim, ps[1].1);
    h.ok().await;
    sim.cancel_pipeline(queued).unwrap();
    sim.cancel_pipeline(running).unwrap();
    assert!(sim.pipeline(queued).unwrap()["finishedAt"].is_null());

    // Default FAILURE_STATUSES: not failures, but the projects' latest status, and done with.
    let s = h.ok().await;
    assert_eq!(s.new_failures, 0);
    assert_eq!(
        h.project(&ps[0].0).await.last_status.as_deref(),
        Some("TASK_CANCELLED")
    );
    assert!(h.cursor().await.unwrap().watch.is_empty());

    // Counted when configured: each exactly once, the queued one at its updatedAt.
    h.settings.failure_statuses.push("TASK_CANCELLED".into());
    let rescan = h.run(json!({"rescan": true})).await.unwrap();
    assert_eq!(rescan.new_failures, 2, "{rescan:#?}");
    assert_eq!(h.ok().await.new_failures, 0);
    assert_eq!(events_of(&h, queued).await.len(), 1);
}

#[tokio::test]
async fn reruns_of_old_pipelines_are_seen_whatever_their_age() {
    let h = Harness::new().await;
    let sim = h.sim();
    let ps = projects(&sim, 3, "old");
    let (a, b, c) = (&ps[0], &ps[1], &ps[2]);
    let old = insert(&sim, vec![finished(a.1, "TASK_FAILED", 600, 590)])[0];
    assert_eq!(h.ok().await.new_failures, 1);
    // Far newer activity: 600 pipelines (past the listing's first page) and 150 failures (past
    // the first page of the failure listing) of other projects.
    let mut newer: Vec<PipelineSeed> = (0..600)
        .map(|i| finished(b.1, "TASK_COMPLETED", 500 - i / 2, 499 - i / 2))
        .collect();
    newer.extend((0..150).map(|i| finished(c.1, "TASK_FAILED", 400 - i, 399 - i)));
    insert(&sim, newer);
    assert_eq!(h.ok().await.new_failures, 150);
    assert_eq!(h.project(&a.0).await.consecutive_failures, 1);

    // Re-run from the Config UI, run and succeeded entirely between two monitor runs: the
    // project's open failure is re-checked, so one run moves it.
    sim.rerun_pipeline(old).unwrap();
    sim.start_pipeline(old).unwrap();
    sim.finish_pipeline(old, "TASK_COMPLETED", "").unwrap();
    let moved = h.ok().await;
    assert_eq!(moved.new_failures, 0);
    let s = h.project(&a.0).await;
    assert_eq!(s.last_status.as_deref(), Some("TASK_COMPLETED"));
    assert_eq!(s.consecutive_failures, 0);
    assert!(s.last_success_at > s.last_failure_at);
    assert!(moved.devlake_calls <= 10, "{moved:#?}");

    // The oldest failure of the other failing project (not its latest, far down every
    // listing) re-run through the API: seen running (never "pending"), then failing again: a
    // new failure at its new finishedAt, recorded once.
    let oldest_c = sim.pipelines_of_blueprint(c.1).last().unwrap()["id"]
        .as_u64()
        .unwrap();
    h.devlake.rerun_pipeline(oldest_c).await.unwrap();
    sim.start_pipeline(oldest_c).unwrap();
    assert_eq!(h.ok().await.new_failures, 0);
    assert!(h.cursor().await.unwrap().watch.contains(&oldest_c));
    sim.finish_pipeline(oldest_c, "TASK_FAILED", "failed again")
        .unwrap();
    assert_eq!(h.ok().await.new_failures, 1);
    assert_eq!(h.ok().await.new_failures, 0);
    let e = events_of(&h, oldest_c).await;
    assert_eq!(e.len(), 2);
    assert_eq!(e[1].message, "failed again");
    assert!(e[1].finished_at > e[0].finished_at);
    let s = h.project(&c.0).await;
    assert_eq!((s.failures_total, s.consecutive_failures), (151, 151));
}

#[tokio::test]
async fn deleted_and_renamed_projects_leave_the_table_renames_record_under_the_new_name() {
    let h = Harness::new().await;
    let sim = h.sim();
    let ps = projects(&sim, 3, "life");
    let (gone, renamed, kept) = (&ps[0], &ps[1], &ps[2]);
    insert(
        &sim,
        ps.iter()
            .map(|(_, bp)| finished(*bp, "TASK_FAILED", 40, 30))
            .collect(),
    );
    let day0 = Utc::now();
    assert_eq!(h.ok_at(day0).await.new_failures, 3);

    sim.delete_project(&gone.0).unwrap();
    sim.rename_project(&renamed.0, "github/life/renamed")
        .unwrap();
    // From the next run, the renamed project's pipelines are recorded under its new name.
    let id = start_new(&sim, renamed.1);
    sim.finish_pipeline(id, "TASK_FAILED", "after rename")
        .unwrap();
    let next = h.ok_at(day0 + chrono::Duration::minutes(5)).await;
    assert_eq!(next.new_failures, 1);
    assert_eq!(
        events_of(&h, id).await[0].project_name,
        "github/life/renamed"
    );
    assert_eq!(h.project("github/life/renamed").await.failures_total, 1);

    // Within a day (the first run of the next UTC day), the deleted project and the old name
    // leave the table, so the metrics page stops showing (and alerting on) them.
    let tomorrow = (day0 + chrono::Duration::days(1))
        .date_naive()
        .and_hms_opt(0, 2, 0)
        .unwrap()
        .and_utc();
    h.ok_at(tomorrow).await;
    let names: Vec<String> = h
        .store()
        .all_projects()
        .await
        .unwrap()
        .into_iter()
        .map(|p| p.state.project_name)
        .collect();
    assert_eq!(
        names,
        vec!["github/life/renamed".to_string(), kept.0.clone()]
    );
    assert!(h
        .cursor()
        .await
        .unwrap()
        .open_failures
        .iter()
        .all(|o| o.project != gone.0 && o.project != renamed.0));
}

#[tokio::test]
async fn a_transient_404_of_a_blueprint_is_never_cached() {
    let h = Harness::new().await;
    let sim = h.sim();
    let ps = projects(&sim, 1, "blip");
    insert(&sim, vec![finished(ps[0].1, "TASK_FAILED", 40, 30)]);
    // The sweep fails and the blueprint answers 404 (a proxy blip, a DevLake restart...).
    sim.add_fault_rule(FaultRule::status("GET", "/blueprints", 2, 404));
    let blip = h.run(json!({})).await.unwrap();
    assert_eq!(blip.new_failures, 0, "{blip:#?}");
    assert_eq!(blip.skipped_without_project, 0);
    // The next run finds it: the failure is recorded, under its project.
    let after = h.ok().await;
    assert_eq!(after.new_failures, 1, "{after:#?}");
    assert_eq!(h.project(&ps[0].0).await.failures_total, 1);
}

/// What a run commits is on the metrics page at the next scrape: the run publishes the snapshot
/// after its commits, and a scrape reads it in two DynamoDB calls the first time, one after.
#[tokio::test]
async fn a_scrape_after_a_monitor_run_shows_the_failures_it_committed() {
    use devlake_autopilot::metrics_http::http::Request;
    use devlake_autopilot::metrics_http::{MetricsService, MetricsToken};

    let h = Harness::on_dynamodb("mon-scrape").await;
    let sim = h.sim();
    let ps = projects(&sim, 2, "scrape");
    let calls = DynamoCallCounter::default();
    let endpoint = dynamodb_local().await.endpoint().to_string();
    let service = MetricsService::new(
        DynamoStore::new(
            calls.client(&local_sdk_config(&endpoint)),
            h.dynamo().0.table(),
        ),
        MetricsToken::new("scrape-token").unwrap(),
        chrono_tz::UTC,
        7,
    );
    let scrape = || async {
        calls.reset();
        let request = Request::get("/metrics")
            .header("authorization", "Bearer scrape-token")
            .body(())
            .unwrap();
        let page = service.handle(&request, Utc::now()).await;
        assert_eq!(page.status(), 200);
        (
            String::from_utf8(page.into_body()).unwrap(),
            calls.by_operation(),
        )
    };
    let total = |name: &str, n: u64| {
        format!("devlake_project_pipeline_failures_total{{project_name=\"{name}\"}} {n}\n")
    };

    insert(&sim, vec![finished(ps[0].1, "TASK_FAILED", 30, 20)]);
    assert_eq!(h.ok().await.new_failures, 1);
    let (page, ops) = scrape().await;
    assert!(page.contains(&total(&ps[0].0, 1)), "{page}");
    assert!(page.contains("devlake_blueprint_failure_total{"), "{page}");
    assert_eq!(ops, [("BatchGetItem".to_string(), 2)].into());
    let (again, ops) = scrape().await;
    assert_eq!(ops, [("BatchGetItem".to_string(), 1)].into());
    assert!(again.contains(&total(&ps[0].0, 1)));

    // A new failure: the next run commits and publishes it, the next scrape shows it.
    insert(&sim, vec![finished(ps[1].1, "TASK_FAILED", 10, 5)]);
    assert_eq!(h.ok().await.new_failures, 1);
    let (page, ops) = scrape().await;
    assert!(page.contains(&total(&ps[1].0, 1)), "{page}");
    assert!(page.contains(&total(&ps[0].0, 1)), "{page}");
    assert_eq!(ops, [("BatchGetItem".to_string(), 2)].into());
}

// ------------------------------------------------------------ failure causes

/// Each recorded failure carries the cause its DevLake `errorName` names (docs/failure-causes.md),
/// in the store, the summary and the project's last failure reason on the metrics page; the
/// auto-rerun re-runs only causes that retrying can heal: not `auth`, `not_found` or
/// `cancelled`. In-memory store: the DynamoDB side of the cause is in the conformance suite.
#[tokio::test]
async fn failures_get_their_cause_and_only_healable_causes_are_rerun() {
    use devlake_autopilot::cloudwatch::MemorySink;
    use devlake_autopilot::failure_cause::FailureCause;
    use devlake_autopilot::store::{MemoryStore, MetricsSource};

    let sim = Simulator::start(Fixture::empty()).await;
    let h = sim.handle();
    let devlake = client_for(&sim);
    let store = MemoryStore::new();
    let sink = MemorySink::new();
    let mut settings = MonitorSettings {
        auto_rerun_max: 2,
        ..MonitorSettings::default()
    };
    settings.failure_statuses.push("TASK_CANCELLED".into());
    let monitor = Monitor {
        settings: &settings,
        devlake: &devlake,
        store: &store,
        sink: &sink,
    };
    let ps = projects(&h, 5, "causes");
    monitor
        .handle(&json!({}), Utc::now(), Deadline::none())
        .await
        .unwrap();

    // DevLake's chains (the layers' format strings are quoted, with their Go files, in
    // shared/src/failure_cause.rs).
    let chain = |layers: &[&str]| {
        let mut all = vec![
            "Error running pipeline 7.",
            "Error running task 9.",
            "subtask collectApiPullRequests ended unexpectedly",
        ];
        all.extend_from_slice(layers);
        all.join("\ncaused by: ")
    };
    let cases = [
        (
            chain(&[
                "Retry exceeded 3 times calling repos/acme/api/pulls. The last error was: \
                     authentication failed, please check your AccessToken (401) (401)",
            ]),
            FailureCause::Auth,
        ),
        (
            chain(&[
                "Retry exceeded 3 times calling repos/acme/api/pulls. The last error was: \
                     Http DoAsync error calling [method:GET path:repos/acme/api/pulls \
                     query:map[page:[2]]]. Response: {\"message\":\"API rate limit exceeded \
                     for installation ID 4711.\"} (403)",
            ]),
            FailureCause::RateLimit,
        ),
        (
            [
                "Error running pipeline 7.",
                "Error running task 9.",
                "error preparing task data for github (404)",
                "fail to find repo acme/gone (404)",
                "record not found (404)",
            ]
            .join("\ncaused by: "),
            FailureCause::NotFound,
        ),
        (
            chain(&[
                "Retry exceeded 3 times calling repos/acme/api/pulls. The last error was: \
                     Get \"https://api.github.com/repos/acme/api/pulls\": context deadline \
                     exceeded (Client.Timeout exceeded while awaiting headers)",
            ]),
            FailureCause::Timeout,
        ),
    ];
    let mut ids = Vec::new();
    for ((_, bp), (error_name, _)) in ps.iter().zip(&cases) {
        let id = start_new(&h, *bp);
        h.finish_pipeline_with_error(id, "TASK_FAILED", "Error running pipeline 7.", error_name)
            .unwrap();
        ids.push(id);
    }
    // Cancelled by someone while running: counted here (FAILURE_STATUSES), never re-run.
    let cancelled = start_new(&h, ps[4].1);
    h.cancel_pipeline(cancelled).unwrap();

    let summary = monitor
        .handle(&json!({}), Utc::now(), Deadline::none())
        .await
        .unwrap();
    assert_eq!(summary.new_failures, 5, "{summary:#?}");
    let by_pipeline: BTreeMap<u64, FailureCause> = summary
        .failures
        .iter()
        .map(|f| (f.pipeline_id, f.cause))
        .collect();
    for (id, (_, cause)) in ids.iter().zip(&cases) {
        assert_eq!(by_pipeline[id], *cause, "pipeline {id}");
    }
    assert_eq!(by_pipeline[&cancelled], FailureCause::Cancelled);
    let stored: BTreeMap<u64, FailureCause> = store
        .failures()
        .iter()
        .map(|e| (e.pipeline_id, e.cause))
        .collect();
    assert_eq!(stored, by_pipeline);

    // Re-run: rate limit and timeout; auth, not found and the cancelled one left alone.
    let mut rerun = summary.rerun_pipeline_ids.clone();
    rerun.sort();
    assert_eq!(rerun, vec![ids[1], ids[3]]);
    for id in [ids[0], ids[2], cancelled] {
        assert_eq!(
            h.count_matching("POST", &format!("/pipelines/{id}/rerun")),
            0
        );
    }
    assert_eq!(h.pipeline(ids[1]).unwrap()["status"], "TASK_RERUN");

    // The page shows each project's latest reason.
    let snapshot = store
        .snapshot(Utc::now() - chrono::Duration::days(1))
        .await
        .unwrap();
    let page = devlake_autopilot::render::render_page(
        &snapshot,
        chrono_tz::UTC,
        devlake_autopilot::render::ExpositionFormat::PrometheusText,
        Duration::ZERO,
    );
    for ((name, _), reason) in
        ps.iter()
            .zip(["auth", "rate_limit", "not_found", "timeout", "cancelled"])
    {
        let line = format!(
            "devlake_project_last_failure_reason{{project_name=\"{name}\",reason=\"{reason}\"}} 1\n"
        );
        assert!(page.contains(&line), "{line}{page}");
    }

    // The re-run of the timeout fails again, now refused: the reason follows the latest failure.
    h.start_pipeline(ids[3]).unwrap();
    h.finish_pipeline_with_error(
        ids[3],
        "TASK_FAILED",
        "Error running pipeline 7.",
        &chain(&["authentication failed, please check your AccessToken (401)"]),
    )
    .unwrap();
    let again = monitor
        .handle(&json!({}), Utc::now(), Deadline::none())
        .await
        .unwrap();
    assert_eq!(again.new_failures, 1, "{again:#?}");
    assert!(again.rerun_pipeline_ids.is_empty());
    assert_eq!(
        store.project(&ps[3].0).unwrap().last_failure_reason,
        Some(FailureCause::Auth)
    );
}

// ---------------------------------------------------------------------------------------------
// Golden summaries
// ---------------------------------------------------------------------------------------------

/// The clock of the golden scenario: every pipeline time, the simulator's clock and each run's
/// `now` are fixed offsets from it, so each summary is the same text on every machine.
const GOLDEN_NOW: &str = "2026-11-28T11:00:00Z";

fn golden_at(minutes_after: i64) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(GOLDEN_NOW)
        .unwrap()
        .with_timezone(&Utc)
        + chrono::Duration::minutes(minutes_after)
}

/// A pipeline of `blueprint_id` created `created` minutes after [`GOLDEN_NOW`] (negative:
/// before), started a minute later, and finished with `status` at `finished` (`None`: running).
fn golden_seed(
    blueprint_id: u64,
    status: &str,
    created: i64,
    finished: Option<i64>,
) -> PipelineSeed {
    PipelineSeed {
        blueprint_id,
        status: status.into(),
        created_at: Some(golden_at(created)),
        began_at: Some(golden_at(created + 1)),
        finished_at: finished.map(golden_at),
        message: if status == "TASK_FAILED" || status == "TASK_PARTIAL" {
            format!("{status} in collector")
        } else {
            String::new()
        },
        ..PipelineSeed::default()
    }
}

/// The monitor's answer for four representative runs, pinned as golden files
/// (`tests/golden/summary/monitor-*.json`, timing zeroed): a first run looking back over a day of
/// history, a steady scheduled run that re-runs a new failure, a dry run, and a run whose
/// blueprint sweep fails (partial, with its error). The in-memory store and sink stand in for
/// DynamoDB and CloudWatch; the simulator's clock is fixed.
#[tokio::test]
async fn golden_summaries_of_representative_runs() {
    use devlake_autopilot::cloudwatch::MemorySink;
    use devlake_autopilot::store::MemoryStore;
    use devlake_testkit::golden::{assert_golden, summary_text};

    let sim = Simulator::start_with(Fixture::empty(), SimOptions::default()).await;
    let handle = sim.handle();
    handle.set_clock(Some(golden_at(-24 * 60)));
    let ps = projects(&handle, 3, "golden");
    let (a, b, c) = (ps[0].1, ps[1].1, ps[2].1);
    insert(
        &handle,
        vec![
            // Older than the look-back: never recorded.
            golden_seed(a, "TASK_FAILED", -3 * 1440, Some(-3 * 1440 + 10)),
            golden_seed(a, "TASK_FAILED", -130, Some(-120)),
            golden_seed(b, "TASK_PARTIAL", -190, Some(-180)),
            golden_seed(b, "TASK_COMPLETED", -70, Some(-60)),
            golden_seed(c, "TASK_COMPLETED", -310, Some(-300)),
            golden_seed(c, "TASK_FAILED", -250, Some(-240)),
            golden_seed(c, "TASK_RUNNING", -30, None),
            // Ad-hoc: no project, skipped.
            golden_seed(0, "TASK_FAILED", -50, Some(-40)),
        ],
    );
    let running = handle.unfinished_pipelines()[0];

    let devlake = client_for(&sim);
    let store = MemoryStore::new();
    let sink = MemorySink::new();
    let plain = MonitorSettings::default();
    let rerunning = MonitorSettings {
        auto_rerun_max: 1,
        ..MonitorSettings::default()
    };
    async fn run(
        monitor: Monitor<'_>,
        payload: Value,
        clock: DateTime<Utc>,
    ) -> devlake_autopilot::monitor::Summary {
        monitor
            .handle(&payload, clock, Deadline::none())
            .await
            .expect("monitor run")
    }
    let monitor = |settings| Monitor {
        settings,
        devlake: &devlake,
        store: &store,
        sink: &sink,
    };

    handle.set_clock(Some(golden_at(0)));
    let first = run(monitor(&plain), json!({}), golden_at(0)).await;
    assert_golden(
        "summary/monitor-first-run.json",
        &summary_text(&json!(first)),
    );

    // The running pipeline fails; the next scheduled run records it and re-runs it.
    handle.set_clock(Some(golden_at(3)));
    handle
        .finish_pipeline(running, "TASK_FAILED", "boom")
        .unwrap();
    handle.set_clock(Some(golden_at(5)));
    let steady = run(
        monitor(&rerunning),
        json!({"scheduledTime": GOLDEN_NOW.replace("11:00:00", "11:05:00")}),
        golden_at(5) + chrono::Duration::seconds(2),
    )
    .await;
    assert_golden(
        "summary/monitor-steady-run.json",
        &summary_text(&json!(steady)),
    );

    // A new failure of the first project: the dry run reports it and saves nothing.
    let new_failure = handle
        .create_pipeline(golden_seed(a, "TASK_FAILED", 6, Some(8)))
        .unwrap();
    handle.set_clock(Some(golden_at(10)));
    let dry = run(monitor(&rerunning), json!({"dryRun": true}), golden_at(10)).await;
    assert_golden("summary/monitor-dry-run.json", &summary_text(&json!(dry)));

    // The blueprint sweep fails past the client's retries: the run goes on with the cached
    // names and ends partial, saying why.
    handle.add_fault_rule(FaultRule::status("GET", "/blueprints", 4, 500));
    handle.set_clock(Some(golden_at(15)));
    let partial = run(monitor(&rerunning), json!({}), golden_at(15)).await;
    assert_eq!(partial.status, RunStatus::Partial);
    assert_eq!(partial.failures[0].pipeline_id, new_failure);
    assert_golden(
        "summary/monitor-run-with-errors.json",
        &summary_text(&json!(partial)),
    );
}

// ---------------------------------------------------------------------------------------------
// Missed scheduled runs and STUCK_ACTION: the in-memory store (the DynamoDB adapter is not the
// point; the cursor fields round-trip through DynamoDB in tests/tests/store.rs).
// ---------------------------------------------------------------------------------------------

/// A monitor on the in-memory store and sink, against a simulator whose clock the test moves.
struct Light {
    sim: Simulator,
    devlake: DevLakeClient,
    store: devlake_autopilot::store::MemoryStore,
    sink: devlake_autopilot::cloudwatch::MemorySink,
    settings: MonitorSettings,
}

/// Saturday 2026-11-28 10:00 UTC.
fn t0() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-11-28T10:00:00Z")
        .unwrap()
        .with_timezone(&Utc)
}

impl Light {
    /// `n` projects `gen-project-0000i` with blueprints `i + 1` wired to a scope (so DevLake's
    /// cron can create their pipelines), the clock stopped at [`t0`].
    async fn new(n: usize, settings: MonitorSettings) -> Light {
        let sim = Simulator::start(Fixture::generated(devlake_testkit::sim::GeneratedSpec {
            repos_per_connection: n,
            scoped_per_connection: n,
            blueprints: n,
            pipelines: 0,
            now: t0(),
            ..Default::default()
        }))
        .await;
        sim.handle().set_clock(Some(t0()));
        Light {
            devlake: client_for(&sim),
            sim,
            store: devlake_autopilot::store::MemoryStore::new(),
            sink: devlake_autopilot::cloudwatch::MemorySink::new(),
            settings,
        }
    }

    fn sim(&self) -> SimHandle {
        self.sim.handle()
    }

    fn monitor(&self) -> Monitor<'_> {
        Monitor {
            settings: &self.settings,
            devlake: &self.devlake,
            store: &self.store,
            sink: &self.sink,
        }
    }

    /// Moves DevLake's clock to `at` (its cron fires on the way when running), then runs the
    /// monitor at `at`.
    async fn run_at(&self, at: DateTime<Utc>, payload: Value) -> Summary {
        self.sim().set_clock(Some(at));
        let summary = self
            .monitor()
            .handle(&payload, at, Deadline::none())
            .await
            .expect("monitor run");
        assert_eq!(summary.status, RunStatus::Ok, "{summary:#?}");
        summary
    }

    fn project(&self, i: usize) -> ProjectState {
        self.store.project(&project_name(i)).unwrap_or_default()
    }
}

fn project_name(i: usize) -> String {
    format!("gen-project-{i:05}")
}

fn minutes(m: i64) -> chrono::Duration {
    chrono::Duration::minutes(m)
}

#[tokio::test]
async fn a_lost_scheduled_run_is_flagged_missed_a_refused_or_healthy_one_is_not() {
    let h = Light::new(4, MonitorSettings::default()).await;
    let sim = h.sim();
    // 0: healthy, 1: its runs are lost (DevLake's lock timeout), 2: runs refused because a
    // pipeline is still running, 3: lost too but not managed (no label): never watched.
    for (bp, labels) in [
        (1, json!(["devlake-autopilot"])),
        (2, json!(["devlake-autopilot"])),
        (3, json!(["devlake-autopilot", "team-a"])),
        (4, json!(["team-a"])),
    ] {
        sim.patch_blueprint(bp, json!({"cronConfig": "30 3 * * *", "labels": labels}))
            .unwrap();
    }
    sim.lose_cron_fires(2, true);
    sim.lose_cron_fires(4, true);
    sim.run_cron(true);
    let day = t0() + chrono::Duration::hours(17); // Sunday 03:00
                                                  // A pipeline of project 2 started by hand at 03:00, running past its 03:30 run.
    let first = h.run_at(t0(), json!({})).await;
    assert!(first.schedule_missed.is_empty());
    assert_eq!(h.store.cursor().unwrap().schedules.len(), 3);
    sim.set_clock(Some(day));
    let busy = sim.trigger(3).unwrap();
    sim.start_pipeline(busy).unwrap();

    // 03:40: every run is within the grace period.
    let early = h.run_at(day + minutes(40), json!({})).await;
    assert!(early.schedule_missed.is_empty(), "{early:#?}");
    let fires = sim.cron_fires();
    assert_eq!(fires.len(), 4, "{fires:#?}");
    let created = fires.iter().find(|f| f.blueprint_id == 1).unwrap();
    assert!(created.pipeline_id.is_some());
    let refused = fires.iter().find(|f| f.blueprint_id == 3).unwrap();
    assert_eq!(
        refused.refused.as_deref(),
        Some("there are pending pipelines of current blueprint already")
    );
    sim.finish_pipeline(created.pipeline_id.unwrap(), "TASK_COMPLETED", "")
        .unwrap();

    // 03:50: the lost run of the managed project 1 is missed; project 2's run was refused
    // while its pipeline ran (a skip, not a miss); project 3 is not managed.
    let late = h.run_at(day + minutes(50), json!({})).await;
    assert_eq!(late.schedule_missed, vec![project_name(1)]);
    assert!(h.project(1).schedule_missed);
    for i in [0, 2, 3] {
        assert!(!h.project(i).schedule_missed, "{i}");
    }
    // The busy pipeline ends: still no miss for project 2, whose run was refused while busy.
    sim.set_clock(Some(day + minutes(55)));
    sim.finish_pipeline(busy, "TASK_COMPLETED", "").unwrap();
    let later = h.run_at(day + minutes(60), json!({})).await;
    assert_eq!(later.schedule_missed, vec![project_name(1)]);

    // A dry run judges the same, writes nothing.
    let cursor = h.store.cursor();
    let dry = h.run_at(day + minutes(65), json!({"dryRun": true})).await;
    assert_eq!(dry.schedule_missed, vec![project_name(1)]);
    assert_eq!(h.store.cursor(), cursor);

    // The lock problem goes away: the next day's run clears the flag.
    sim.lose_cron_fires(2, false);
    let next = h
        .run_at(day + chrono::Duration::days(1) + minutes(50), json!({}))
        .await;
    assert!(next.schedule_missed.is_empty(), "{next:#?}");
    assert!(!h.project(1).schedule_missed);
    assert!(h.store.cursor().unwrap().schedule_missed.is_empty());
}

#[tokio::test]
async fn a_changed_schedule_is_watched_from_the_change() {
    let h = Light::new(1, MonitorSettings::default()).await;
    let sim = h.sim();
    sim.patch_blueprint(
        1,
        json!({"cronConfig": "0 12 * * *", "labels": ["devlake-autopilot"]}),
    )
    .unwrap();
    sim.run_cron(true);
    h.run_at(t0(), json!({})).await;
    // Saturday 12:00 runs; its pipeline ends at 12:30.
    sim.set_clock(Some(t0() + minutes(150)));
    sim.finish_all_pending("TASK_COMPLETED", "").unwrap();
    h.run_at(t0() + minutes(160), json!({})).await;
    // Sunday 11:00 the schedule moves to 09:00 (as a new spread window does): Sunday 09:00 was
    // never DevLake's plan, so nothing is missed, though no pipeline ran since Saturday.
    let sunday = t0() + chrono::Duration::days(1);
    sim.set_clock(Some(sunday + minutes(60)));
    sim.patch_blueprint(1, json!({"cronConfig": "0 9 * * *"}))
        .unwrap();
    let s = h.run_at(sunday + minutes(70), json!({})).await;
    assert!(s.schedule_missed.is_empty(), "{s:#?}");
    // Monday 09:00 runs and leaves a pipeline.
    let monday = sunday + chrono::Duration::days(1);
    let s = h.run_at(monday, json!({})).await;
    assert!(s.schedule_missed.is_empty());
    let fires: Vec<DateTime<Utc>> = sim.cron_fires().iter().map(|f| f.at).collect();
    assert_eq!(
        fires,
        vec![t0() + minutes(120), monday - minutes(60)],
        "Saturday 12:00 and Monday 09:00"
    );
}

/// A pipeline of `blueprint` running since `hours` before [`t0`].
fn running_since(sim: &SimHandle, blueprint: u64, hours: i64) -> u64 {
    let began = t0() - chrono::Duration::hours(hours);
    sim.create_pipeline(PipelineSeed {
        blueprint_id: blueprint,
        status: "TASK_RUNNING".into(),
        created_at: Some(began),
        began_at: Some(began),
        ..PipelineSeed::default()
    })
    .unwrap()
}

#[tokio::test]
async fn stuck_pipelines_are_cancelled_checked_and_rerun_within_the_cap() {
    let h = Light::new(
        3,
        MonitorSettings {
            stuck_action: devlake_autopilot::monitor::StuckAction::CancelAndRerun,
            auto_rerun_max: 1,
            ..MonitorSettings::default()
        },
    )
    .await;
    let sim = h.sim();
    let p1 = running_since(&sim, 1, 13);
    let p2 = running_since(&sim, 2, 13);
    let fresh = running_since(&sim, 3, 1);
    // p2's running task ignores its cancellation.
    sim.ignore_cancel(p2, true);
    let deletes = |id: u64| sim.count_matching("DELETE", &format!("/pipelines/{id}"));

    // A dry run reports what it would cancel and cancels nothing.
    let dry = h.run_at(t0(), json!({"dryRun": true})).await;
    assert_eq!(dry.cancelled_pipeline_ids, vec![p1, p2]);
    assert_eq!(deletes(p1) + deletes(p2), 0);
    assert!(h.store.cursor().is_none());

    // Stuck: flagged and cancelled (not the pipeline running for an hour).
    let first = h.run_at(t0(), json!({})).await;
    assert_eq!(first.stuck, 2);
    assert_eq!(first.cancelled_pipeline_ids, vec![p1, p2]);
    assert_eq!((deletes(p1), deletes(p2), deletes(fresh)), (1, 1, 0));
    assert_eq!(sim.pipeline(p1).unwrap()["status"], "TASK_CANCELLED");
    assert_eq!(sim.pipeline(p2).unwrap()["status"], "TASK_RUNNING");
    assert_eq!(h.store.cursor().unwrap().stuck_cancels.len(), 2);
    assert!(!h.project(1).stuck_cancel_failed, "judged by the next run");

    // Next run: p1's cancel took, so it is re-run (claimed like an auto-rerun); p2's did not:
    // flagged, and asked again.
    let second = h.run_at(t0() + minutes(5), json!({})).await;
    assert_eq!(second.stuck_rerun_pipeline_ids, vec![p1]);
    assert_eq!(second.cancels_not_taken, vec![p2]);
    assert_eq!(sim.pipeline(p1).unwrap()["status"], "TASK_RERUN");
    assert_eq!(h.store.reruns(p1), 1);
    assert!(h.project(1).stuck_cancel_failed);
    assert!(!h.project(0).stuck_cancel_failed);
    assert_eq!(deletes(p2), 2);

    // The task finally stops: the repeated cancel takes, the flag clears, p2 is re-run too.
    sim.ignore_cancel(p2, false);
    let third = h.run_at(t0() + minutes(10), json!({})).await;
    assert_eq!(
        third.cancels_not_taken,
        vec![p2],
        "cancelled by this run's request"
    );
    assert_eq!(sim.pipeline(p2).unwrap()["status"], "TASK_CANCELLED");
    let fourth = h.run_at(t0() + minutes(15), json!({})).await;
    assert!(fourth.cancels_not_taken.is_empty());
    assert_eq!(fourth.stuck_rerun_pipeline_ids, vec![p2]);
    assert!(!h.project(1).stuck_cancel_failed);

    // p1's re-run gets stuck as well: cancelled again, but AUTO_RERUN_MAX (1) is used up. Its
    // running time counts from the re-run's own start: DevLake sets a new beganAt when its runner
    // starts a pipeline, and the first run's began 13 hours before.
    sim.start_pipeline(p1).unwrap();
    let s = h.run_at(t0() + minutes(20), json!({})).await;
    assert!(s.cancelled_pipeline_ids.is_empty(), "{s:#?}");
    assert_eq!(s.stuck, 0);
    let stuck_again = t0() + minutes(20) + chrono::Duration::hours(13);
    // By then the pipeline that had run for an hour is stuck too.
    let s = h.run_at(stuck_again, json!({})).await;
    assert_eq!(s.cancelled_pipeline_ids, vec![p1, fresh], "{s:#?}");
    let s = h.run_at(stuck_again + minutes(5), json!({})).await;
    assert_eq!(s.stuck_rerun_pipeline_ids, vec![fresh], "{s:#?}");
    assert_eq!(sim.pipeline(p1).unwrap()["status"], "TASK_CANCELLED");
    assert_eq!(h.store.reruns(p1), 1);
    assert!(h.store.cursor().unwrap().stuck_cancels.is_empty());
}

#[tokio::test]
async fn stuck_action_none_and_cancel_never_rerun() {
    for (action, deletes_expected) in [
        (devlake_autopilot::monitor::StuckAction::None, 0),
        (devlake_autopilot::monitor::StuckAction::Cancel, 1),
    ] {
        let h = Light::new(
            1,
            MonitorSettings {
                stuck_action: action,
                auto_rerun_max: 3,
                ..MonitorSettings::default()
            },
        )
        .await;
        let sim = h.sim();
        let p = running_since(&sim, 1, 13);
        h.run_at(t0(), json!({})).await;
        let s = h.run_at(t0() + minutes(5), json!({})).await;
        assert_eq!(
            sim.count_matching("DELETE", &format!("/pipelines/{p}")),
            deletes_expected,
            "{action:?}"
        );
        assert!(s.stuck_rerun_pipeline_ids.is_empty() && s.rerun_pipeline_ids.is_empty());
        assert_eq!(sim.count_matching("POST", "/pipelines"), 0, "{action:?}");
        assert!(!h.project(0).stuck_cancel_failed);
    }
}
