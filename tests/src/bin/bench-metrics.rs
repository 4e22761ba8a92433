//! `bench-metrics`: the metrics function's scrape cost against DynamoDB Local.
//!
//! Seeds a table with `--projects` project states and `--failures` failure events inside the
//! window, written the way the monitor writes them (the store's own `commit_project`: failure
//! items plus the project's state and recent-failures list in one transaction), then times `--requests` warm scrapes through the real handler (in-process, real
//! `aws-sdk-dynamodb` client against DynamoDB Local) and prints handler time p50/p95, DynamoDB
//! requests per scrape (counted on the wire by an SDK interceptor), response size and peak RSS.
//! It then adds `--old-failures` events outside the window, runs the monitor's daily expiry of the
//! recent-failures lists, and scrapes again, to show that the number of calls depends on the
//! window, not on the table's history.
//!
//! Run: `eval "$(bash infra/local/setup.sh --env)"; cargo run --profile perf --bin bench-metrics` (figures in the README are from the `perf` profile).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use aws_sdk_dynamodb::types::{AttributeValue, PutRequest, WriteRequest};
use chrono::{DateTime, Duration as ChronoDuration, Utc};
use clap::Parser;
use devlake_autopilot::deadline::Deadline;
use devlake_autopilot::metrics_http::http::{header, Request, StatusCode};
use devlake_autopilot::metrics_http::{MetricsService, MetricsToken};
use devlake_autopilot::monitor::expiry::expire_recent_failures;
use devlake_autopilot::render;
use devlake_autopilot::store::{
    keys, CommitOutcome, DynamoStore, FailureEvent, Job, MetricsSource, MonitorStore,
    ProjectCommit, ProjectState, RunRecord, MAX_EVENTS_PER_COMMIT,
};
use devlake_testkit::bench::function_memory_mb;
use devlake_testkit::dynamo_calls::DynamoCallCounter;
use devlake_testkit::stack::{dynamodb_local, local_sdk_config, state_table_definition};
use futures::{StreamExt, TryStreamExt};
use serde::Serialize;

#[derive(Parser)]
#[command(about = "Benchmark the metrics function's scrape against DynamoDB Local")]
struct Args {
    #[arg(long, default_value_t = 2_000)]
    projects: usize,
    /// Failure events inside the window.
    #[arg(long, default_value_t = 20_000)]
    failures: usize,
    /// Failure events older than the window, added for the second measurement.
    #[arg(long, default_value_t = 20_000)]
    old_failures: usize,
    #[arg(long, default_value_t = 50)]
    requests: usize,
    #[arg(long, default_value_t = 7)]
    window_days: u32,
    /// Use this DynamoDB (e.g. `http://127.0.0.1:8000`) instead of starting DynamoDB Local.
    #[arg(long)]
    endpoint: Option<String>,
}

const TOKEN: &str = "bench-metrics-token";
const PROMETHEUS_ACCEPT: &str =
    "application/openmetrics-text;version=1.0.0,application/openmetrics-text;\
     version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let (endpoint, table) = match &args.endpoint {
        Some(endpoint) => {
            let table = format!("bench-metrics-{}", std::process::id());
            state_table_definition()?
                .create(
                    &aws_sdk_dynamodb::Client::new(&local_sdk_config(endpoint)),
                    &table,
                )
                .await?;
            (endpoint.clone(), table)
        }
        None => {
            let local = dynamodb_local().await;
            (
                local.endpoint().to_string(),
                local.create_table("bench-metrics").await,
            )
        }
    };
    let writer = aws_sdk_dynamodb::Client::new(&local_sdk_config(&endpoint));
    let now = Utc::now();
    let window = ChronoDuration::days(i64::from(args.window_days));

    let seed_started = Instant::now();
    let seeder = DynamoStore::new(writer.clone(), &table);
    for run in [
        run_record(Job::Monitor, now - ChronoDuration::minutes(3)),
        run_record(Job::Automation, now - ChronoDuration::hours(17)),
    ] {
        let it = item(&run, keys::RUN_PK, run.job.as_str());
        write_all(&writer, &table, std::iter::once(it)).await?;
    }
    // Spread evenly over the window, newest a minute ago.
    let span_ms = (window - ChronoDuration::minutes(2)).num_milliseconds();
    let failures = (0..args.failures).map(|i| {
        let back = span_ms * i as i64 / args.failures.max(1) as i64;
        failure(
            i,
            args.projects,
            now - ChronoDuration::minutes(1) - ChronoDuration::milliseconds(back),
        )
    });
    let projects: Vec<StoredState> = (0..args.projects)
        .map(|i| (project(i, now), None))
        .collect();
    let projects = commit_all(&seeder, projects, failures, args.projects, window).await?;
    println!(
        "seeded {} projects and {} in-window failures into {table} in {:.1} s",
        args.projects,
        args.failures,
        seed_started.elapsed().as_secs_f64()
    );

    let calls = DynamoCallCounter::default();
    let store = DynamoStore::new(calls.client(&local_sdk_config(&endpoint)), &table);
    let service = MetricsService::new(
        store,
        MetricsToken::new(TOKEN)?,
        chrono_tz::Asia::Ho_Chi_Minh,
        args.window_days,
    );

    // Peak RSS from here on belongs to scraping, not to seeding.
    reset_peak_rss();
    let first = measure(&service, &calls, args.requests, args.failures).await?;
    let rss_scrape_kb = peak_rss_kb()?;
    print_figures("in-window data only", &first);
    breakdown(&service, window, args.requests).await?;

    let old_started = Instant::now();
    let old = (0..args.old_failures).map(|i| {
        // 8 to ~88 days back: outside the window, inside the 90-day retention.
        let back = ChronoDuration::days(i64::from(args.window_days) + 1)
            + ChronoDuration::minutes((i as i64 * 80 * 24 * 60) / args.old_failures.max(1) as i64);
        failure(1_000_000 + i, args.projects, now - back)
    });
    commit_all(&seeder, projects, old, args.projects, window).await?;
    println!(
        "added {} failures outside the window in {:.1} s",
        args.old_failures,
        old_started.elapsed().as_secs_f64()
    );
    // Each old failure was recorded when it was recent, and left its project's list a window
    // later: at that project's next commit or, for a project that stopped failing, at the
    // monitor's daily expiry. The seeding above commits them late, so run the expiry as the
    // monitor's first run of the day does; what a scrape would read without it comes first.
    calls.reset();
    service.source().snapshot(now - window).await?;
    println!(
        "before the monitor's daily expiry: {} DynamoDB calls per scrape",
        calls.total()
    );
    let expiry = expire_recent_failures(
        &seeder,
        now,
        window,
        ChronoDuration::days(90),
        Deadline::none(),
    )
    .await?;
    println!(
        "daily expiry: {} projects read, {} rewritten, {} failure keys expired",
        expiry.projects_read, expiry.projects_rewritten, expiry.failures_expired
    );
    let second = measure(&service, &calls, args.requests, args.failures).await?;
    print_figures("plus old failures outside the window", &second);

    println!();
    println!(
        "DynamoDB calls per scrape: {} without history, {} with {} old failures ({})",
        first.calls,
        second.calls,
        args.old_failures,
        if first.calls == second.calls {
            "independent of history"
        } else {
            "CHANGED"
        }
    );
    println!(
        "peak RSS (VmHWM) while scraping: {:.1} MB; whole process incl. seeding: {:.1} MB",
        rss_scrape_kb as f64 / 1024.0,
        peak_rss_kb()? as f64 / 1024.0
    );
    ensure!(
        first.calls == second.calls,
        "calls per scrape grew with history"
    );
    Ok(())
}

struct Figures {
    /// DynamoDB read request units one scrape consumed, as DynamoDB reported them.
    read_units: f64,
    p50: Duration,
    p95: Duration,
    max: Duration,
    calls: u64,
    calls_by_op: String,
    bytes: usize,
    plain_bytes: usize,
}

async fn measure(
    service: &MetricsService<DynamoStore>,
    calls: &DynamoCallCounter,
    requests: usize,
    expected_failures: usize,
) -> Result<Figures> {
    // What Prometheus 2.x sends.
    let request = || {
        Request::get("/metrics")
            .header(header::AUTHORIZATION, format!("Bearer {TOKEN}"))
            .header(header::ACCEPT, PROMETHEUS_ACCEPT)
            .header(header::ACCEPT_ENCODING, "gzip")
            .body(())
            .expect("valid request")
    };
    // Warm-up: connection pool, credentials, allocator.
    for _ in 0..3 {
        let r = service.handle(&request(), Utc::now()).await;
        ensure!(
            r.status() == StatusCode::OK,
            "warm-up scrape answered {}",
            r.status()
        );
    }
    let mut times = Vec::with_capacity(requests);
    let mut bytes = 0;
    let mut plain_bytes = 0;
    let mut per_scrape = Vec::with_capacity(requests);
    let mut by_op = String::new();
    let mut units = Vec::with_capacity(requests);
    for _ in 0..requests {
        calls.reset();
        let before = service.source().consumed_capacity();
        let started = Instant::now();
        let response = service.handle(&request(), Utc::now()).await;
        times.push(started.elapsed());
        units.push(
            service
                .source()
                .consumed_capacity()
                .since(before)
                .read_units,
        );
        ensure!(
            response.status() == StatusCode::OK,
            "scrape answered {}",
            response.status()
        );
        bytes = response.body().len();
        let page = gunzip(response.body())?;
        plain_bytes = page.len();
        let series = page
            .lines()
            .filter(|l| l.starts_with("devlake_blueprint_failure_total{"))
            .count();
        // Distinct (project, second) pairs: equal to the events unless two share a second.
        ensure!(
            series > 0 && series <= expected_failures,
            "unexpected series count {series}"
        );
        per_scrape.push(calls.total());
        by_op = format!("{:?}", calls.by_operation());
    }
    ensure!(
        per_scrape.iter().all(|c| *c == per_scrape[0]),
        "calls per scrape varied: {per_scrape:?}"
    );
    ensure!(
        units.iter().all(|u| *u == units[0]),
        "read units per scrape varied: {units:?}"
    );
    times.sort();
    Ok(Figures {
        read_units: units[0],
        p50: percentile(&times, 50),
        p95: percentile(&times, 95),
        max: *times.last().context("no requests")?,
        calls: per_scrape[0],
        calls_by_op: by_op,
        bytes,
        plain_bytes,
    })
}

/// Where a scrape's time goes: the store read and the rendering, timed apart (p50).
async fn breakdown(
    service: &MetricsService<DynamoStore>,
    window: ChronoDuration,
    requests: usize,
) -> Result<()> {
    let tz = chrono_tz::Asia::Ho_Chi_Minh;
    let (mut reads, mut renders) = (Vec::new(), Vec::new());
    for _ in 0..requests.min(20) {
        let now = Utc::now();
        let started = Instant::now();
        let snapshot = service.source().snapshot(now - window).await?;
        reads.push(started.elapsed());
        let started = Instant::now();
        let page = render::render_page(
            &snapshot,
            tz,
            render::ExpositionFormat::PrometheusText,
            Duration::ZERO,
        );
        renders.push(started.elapsed());
        ensure!(!page.is_empty());
    }
    reads.sort();
    renders.sort();
    println!(
        "breakdown (p50): store read {:.1} ms, render {:.1} ms",
        ms(percentile(&reads, 50)),
        ms(percentile(&renders, 50))
    );
    Ok(())
}

fn print_figures(label: &str, f: &Figures) {
    println!();
    println!("== {label}");
    println!(
        "handler time: p50 {:.1} ms, p95 {:.1} ms, max {:.1} ms",
        ms(f.p50),
        ms(f.p95),
        ms(f.max)
    );
    println!("DynamoDB calls per scrape: {} {}", f.calls, f.calls_by_op);
    let memory_mb = function_memory_mb("MetricsFunction").unwrap_or(0);
    println!(
        "cost inputs per scrape: {} DynamoDB read request units; Lambda {:.4} GB-s at p50 ({} MB)",
        f.read_units,
        memory_mb as f64 / 1024.0 * f.p50.as_secs_f64(),
        memory_mb
    );
    println!(
        "response size: {} bytes gzip ({:.2} MB), {} bytes uncompressed ({:.2} MB)",
        f.bytes,
        f.bytes as f64 / 1_048_576.0,
        f.plain_bytes,
        f.plain_bytes as f64 / 1_048_576.0
    );
}

fn gunzip(bytes: &[u8]) -> Result<String> {
    use std::io::Read;
    let mut page = String::new();
    flate2::read::GzDecoder::new(bytes)
        .read_to_string(&mut page)
        .context("response is not gzip")?;
    Ok(page)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Nearest-rank percentile of sorted samples.
fn percentile(sorted: &[Duration], p: usize) -> Duration {
    let rank = (p * sorted.len()).div_ceil(100).max(1);
    sorted[rank - 1]
}

fn project(i: usize, now: DateTime<Utc>) -> ProjectState {
    let failing = i.is_multiple_of(5);
    ProjectState {
        project_name: project_name(i),
        blueprint_id: i as u64 + 1,
        last_status: Some(
            if failing {
                "TASK_FAILED"
            } else {
                "TASK_COMPLETED"
            }
            .into(),
        ),
        last_finished_at: Some(now - ChronoDuration::hours(2)),
        last_success_at: Some(now - ChronoDuration::hours(if failing { 50 } else { 2 })),
        last_failure_at: Some(now - ChronoDuration::hours(if failing { 2 } else { 70 })),
        last_failure_reason: Some(
            devlake_autopilot::failure_cause::FailureCause::ALL
                [i % devlake_autopilot::failure_cause::FailureCause::ALL.len()],
        ),
        last_duration_seconds: Some(120.0 + i as f64),
        failures_total: (i % 40) as u64,
        consecutive_failures: if failing { 2 } else { 0 },
        stuck: i.is_multiple_of(97),
        recent_failures: Vec::new(),
        schedule_missed: i.is_multiple_of(89),
        stuck_cancel_failed: false,
        ..ProjectState::default()
    }
}

fn project_name(i: usize) -> String {
    let plugin = ["github", "gitlab", "bitbucket", "jira"][i % 4];
    format!("{plugin}/acme-engineering/service-{i:05}")
}

fn failure(i: usize, projects: usize, finished: DateTime<Utc>) -> FailureEvent {
    FailureEvent {
        project_name: project_name(i % projects.max(1)),
        blueprint_id: (i % projects.max(1)) as u64 + 1,
        pipeline_id: 100_000 + i as u64,
        status: if i.is_multiple_of(3) {
            "TASK_PARTIAL"
        } else {
            "TASK_FAILED"
        }
        .into(),
        finished_at: finished,
        began_at: Some(finished - ChronoDuration::seconds(300)),
        message: format!(
            "subtask collectApiPullRequests ended unexpectedly: Get \"https://api.github.com/repos/\
             acme-engineering/service-{i:05}/pulls?page=7\": context deadline exceeded (retry 3/3)"
        ),
        error_name: "github.collectApiPullRequests".into(),
        cause: devlake_autopilot::failure_cause::FailureCause::Timeout,
    }
}

fn run_record(job: Job, finished: DateTime<Utc>) -> RunRecord {
    RunRecord {
        job,
        finished_at: finished,
        success: true,
        devlake_up: (job == Job::Monitor).then_some(true),
        duration_ms: 850,
        summary: serde_json::json!({"status": "ok", "newFailures": 3, "pipelinesInspected": 12}),
    }
}

fn item<T: Serialize>(value: &T, pk: &str, sk: &str) -> HashMap<String, AttributeValue> {
    let mut item: HashMap<String, AttributeValue> =
        serde_dynamo::to_item(value).expect("serialisable");
    item.insert(keys::PK.into(), AttributeValue::S(pk.into()));
    item.insert(keys::SK.into(), AttributeValue::S(sk.into()));
    item
}

/// A project's state and the revision it is stored at (`None`: not stored yet).
type StoredState = (ProjectState, Option<u64>);

/// Commits `events` (of project `i % projects` for event `i`) through the store's own
/// `commit_project`, as the monitor does: per project, transactions of at most
/// `MAX_EVENTS_PER_COMMIT` events with the state and its recent-failures list, conditional on
/// the revision. A few projects in flight; returns the states as stored.
async fn commit_all(
    store: &DynamoStore,
    states: Vec<StoredState>,
    events: impl Iterator<Item = FailureEvent>,
    projects: usize,
    window: ChronoDuration,
) -> Result<Vec<StoredState>> {
    let mut per_project: Vec<Vec<FailureEvent>> = vec![Vec::new(); projects];
    for (i, event) in events.enumerate() {
        per_project[i % projects.max(1)].push(event);
    }
    futures::stream::iter(states.into_iter().zip(per_project))
        .map(|((mut state, mut revision), mut events)| async move {
            events.sort_by_key(|e| e.finished_at);
            for chunk in events.chunks(MAX_EVENTS_PER_COMMIT) {
                state.failures_total += chunk.len() as u64;
                // Recorded by a monitor run just after the newest of them finished.
                let recorded_at = chunk
                    .iter()
                    .map(|e| e.finished_at)
                    .max()
                    .unwrap_or_default();
                state.remember_failures(chunk, recorded_at, window);
                commit(store, &state, revision, chunk).await?;
                revision = Some(revision.map_or(1, |r| r + 1));
            }
            if revision.is_none() {
                // No failures: the state alone, as the monitor writes a project without any.
                commit(store, &state, None, &[]).await?;
                revision = Some(1);
            }
            Ok::<_, anyhow::Error>((state, revision))
        })
        .buffered(8)
        .try_collect()
        .await
}

async fn commit(
    store: &DynamoStore,
    state: &ProjectState,
    expected_revision: Option<u64>,
    events: &[FailureEvent],
) -> Result<()> {
    let outcome = store
        .commit_project(ProjectCommit {
            state,
            expected_revision,
            events,
            retention: ChronoDuration::days(90),
        })
        .await
        .context("commit_project")?;
    ensure!(
        outcome == CommitOutcome::Committed,
        "seeding {}: {outcome:?}",
        state.project_name
    );
    Ok(())
}

/// BatchWriteItem, 25 items per call, a few calls in flight; items are generated lazily and
/// written 1,000 at a time so the seed data never sits in memory as a whole.
async fn write_all(
    client: &aws_sdk_dynamodb::Client,
    table: &str,
    items: impl Iterator<Item = HashMap<String, AttributeValue>>,
) -> Result<()> {
    let mut chunks: Vec<Vec<WriteRequest>> = Vec::new();
    let mut chunk = Vec::with_capacity(25);
    for it in items {
        let put = PutRequest::builder().set_item(Some(it)).build()?;
        chunk.push(WriteRequest::builder().put_request(put).build());
        if chunk.len() == 25 {
            chunks.push(std::mem::take(&mut chunk));
        }
        if chunks.len() == 40 {
            write_chunks(client, table, std::mem::take(&mut chunks)).await?;
        }
    }
    if !chunk.is_empty() {
        chunks.push(chunk);
    }
    write_chunks(client, table, chunks).await
}

async fn write_chunks(
    client: &aws_sdk_dynamodb::Client,
    table: &str,
    chunks: Vec<Vec<WriteRequest>>,
) -> Result<()> {
    futures::stream::iter(chunks)
        .map(|mut requests| async move {
            while !requests.is_empty() {
                let out = client
                    .batch_write_item()
                    .request_items(table, requests)
                    .send()
                    .await
                    .context("BatchWriteItem")?;
                requests = out
                    .unprocessed_items
                    .and_then(|mut u| u.remove(table))
                    .unwrap_or_default();
            }
            Ok::<_, anyhow::Error>(())
        })
        .buffer_unordered(4)
        .try_collect::<()>()
        .await
}

/// Resets the kernel's peak-RSS counter for this process (`VmHWM`).
fn reset_peak_rss() {
    if let Err(e) = std::fs::write("/proc/self/clear_refs", "5") {
        eprintln!("cannot reset VmHWM ({e}); peak RSS includes seeding");
    }
}

fn peak_rss_kb() -> Result<u64> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no VmHWM in /proc/self/status")
}
