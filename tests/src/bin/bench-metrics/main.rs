//! `bench-metrics`: the metrics function's scrape cost against DynamoDB Local, small and large
//! side by side in one run.
//!
//! Seeds two tables the way the monitor writes them (the store's own `commit_project`: failure
//! items plus the project's state and recent-failures list in one transaction) and publishes each
//! one's snapshot as the monitor does after its commits: `--small-projects` projects with one
//! failure each, and `--projects` projects with `--failures` failures inside the window. It then
//! times `--requests` warm scrapes of each through the real handler (in-process, real
//! `aws-sdk-dynamodb` client against DynamoDB Local, Prometheus' headers), alternating between the
//! two so both see the same machine, and prints p50/p95/max of each with the ratio of the p95s,
//! DynamoDB requests per scrape (counted on the wire by an SDK interceptor), read units, response
//! sizes and peak RSS. Then: the first scrape after a new version (a fresh instance: the
//! snapshot's chunks are read and rendered), the large table with `--old-failures` more failures
//! outside the window (calls must not change), and `--scale-projects` projects for the response
//! size, gzip and not, against the function URL's 6 MB.
//!
//! Run: `eval "$(bash infra/local/setup.sh --env)"; cargo run --profile perf --bin bench-metrics`
//! (figures in docs/benchmarks.md are from the `perf` profile).

use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use chrono::{DateTime, Duration as ChronoDuration, Utc};
use clap::Parser;
use devlake_autopilot::deadline::Deadline;
use devlake_autopilot::metrics_http::http::{header, Request, StatusCode};
use devlake_autopilot::metrics_http::{MetricsService, MetricsToken, FUNCTION_URL_RESPONSE_LIMIT};
use devlake_autopilot::monitor::expiry::expire_recent_failures;
use devlake_autopilot::snapshot::{publish_after_commit, Publication};
use devlake_autopilot::store::{keys, project_item, DynamoStore, FailureEvent, Job};
use devlake_testkit::bench::function_memory_mb;
use devlake_testkit::dynamo_calls::DynamoCallCounter;
use devlake_testkit::stack::{dynamodb_local, local_sdk_config, state_table_definition};

mod seed;
use seed::{commit_all, failure, item, project, run_record, write_all, StoredState};

#[derive(Parser)]
#[command(about = "Benchmark the metrics function's scrape against DynamoDB Local")]
struct Args {
    /// Projects of the small table (one failure each in the window).
    #[arg(long, default_value_t = 10)]
    small_projects: usize,
    #[arg(long, default_value_t = 2_000)]
    projects: usize,
    /// Failure events inside the window, in the large table.
    #[arg(long, default_value_t = 20_000)]
    failures: usize,
    /// Failure events older than the window, added to the large table for a second measurement.
    #[arg(long, default_value_t = 20_000)]
    old_failures: usize,
    /// Projects of the table measured for the response size (0: skip).
    #[arg(long, default_value_t = 10_000)]
    scale_projects: usize,
    /// Failures inside the window in that table.
    #[arg(long, default_value_t = 20_000)]
    scale_failures: usize,
    /// Warm scrapes of each table (p95 of a few milliseconds needs many on a busy machine).
    #[arg(long, default_value_t = 1_000)]
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

/// One table and the metrics function's service over it (its own counted client).
struct Target {
    label: String,
    endpoint: String,
    table: String,
    writer: aws_sdk_dynamodb::Client,
    seeder: DynamoStore,
    calls: DynamoCallCounter,
    service: MetricsService<DynamoStore>,
    failures: usize,
    window_days: u32,
}

impl Target {
    async fn new(label: &str, endpoint: &str, failures: usize, window_days: u32) -> Result<Target> {
        let table = format!("bench-metrics-{label}-{}", std::process::id());
        let client = aws_sdk_dynamodb::Client::new(&local_sdk_config(endpoint));
        state_table_definition()?.create(&client, &table).await?;
        let calls = DynamoCallCounter::default();
        let service = service(&calls, endpoint, &table, window_days)?;
        Ok(Target {
            label: label.to_string(),
            endpoint: endpoint.to_string(),
            seeder: DynamoStore::new(client.clone(), &table),
            writer: client,
            table,
            calls,
            service,
            failures,
            window_days,
        })
    }

    /// A fresh metrics instance over the same table (nothing kept from earlier scrapes).
    fn fresh_instance(&self) -> Result<MetricsService<DynamoStore>> {
        service(&self.calls, &self.endpoint, &self.table, self.window_days)
    }
}

fn service(
    calls: &DynamoCallCounter,
    endpoint: &str,
    table: &str,
    window_days: u32,
) -> Result<MetricsService<DynamoStore>> {
    let store = DynamoStore::new(calls.client(&local_sdk_config(endpoint)), table);
    Ok(MetricsService::new(
        store,
        MetricsToken::new(TOKEN)?,
        chrono_tz::Asia::Ho_Chi_Minh,
        window_days,
    ))
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let endpoint = match &args.endpoint {
        Some(endpoint) => endpoint.clone(),
        None => dynamodb_local().await.endpoint().to_string(),
    };
    let now = Utc::now();
    let window = ChronoDuration::days(i64::from(args.window_days));

    let small = Target::new("small", &endpoint, args.small_projects, args.window_days).await?;
    let large = Target::new("large", &endpoint, args.failures, args.window_days).await?;
    let small_states = seed(
        &small,
        args.small_projects,
        args.small_projects,
        now,
        window,
    )
    .await?;
    let large_states = seed(&large, args.projects, args.failures, now, window).await?;
    drop(small_states);

    // Peak RSS from here on belongs to scraping, not to seeding.
    reset_peak_rss();
    let (a, b) = measure_side_by_side(&small, &large, args.requests).await?;
    let rss_scrape_kb = peak_rss_kb()?;
    println!();
    println!(
        "== warm scrapes, {} of each, alternating (Prometheus' Accept and gzip)",
        args.requests
    );
    print_figures(&small.label, args.small_projects, &a);
    print_figures(&large.label, args.projects, &b);
    println!(
        "p95 ratio {} / {}: {:.2} (p50 ratio {:.2})",
        large.label,
        small.label,
        b.p95.as_secs_f64() / a.p95.as_secs_f64(),
        b.p50.as_secs_f64() / a.p50.as_secs_f64()
    );
    first_scrapes(&large, 10).await?;

    let old_started = Instant::now();
    let old = (0..args.old_failures).map(|i| {
        // 8 to ~88 days back: outside the window, inside the 90-day retention.
        let back = ChronoDuration::days(i64::from(args.window_days) + 1)
            + ChronoDuration::minutes((i as i64 * 80 * 24 * 60) / args.old_failures.max(1) as i64);
        failure(1_000_000 + i, args.projects, now - back)
    });
    commit_all(&large.seeder, large_states, old, args.projects, window).await?;
    // Each old failure was recorded when it was recent and left its project's list a window
    // later; the seeding commits them late, so run the monitor's daily expiry, then publish.
    let expiry = expire_recent_failures(
        &large.seeder,
        now,
        window,
        ChronoDuration::days(90),
        Deadline::none(),
    )
    .await?;
    publish(&large).await?;
    println!();
    println!(
        "added {} failures outside the window in {:.1} s; daily expiry: {} projects rewritten, {} keys expired",
        args.old_failures,
        old_started.elapsed().as_secs_f64(),
        expiry.projects_rewritten,
        expiry.failures_expired
    );
    let (c, d) = measure_side_by_side(&small, &large, args.requests).await?;
    print_figures(
        &format!("{} + old failures", large.label),
        args.projects,
        &d,
    );
    println!(
        "p95 ratio {} / {}: {:.2}",
        large.label,
        small.label,
        d.p95.as_secs_f64() / c.p95.as_secs_f64()
    );
    ensure!(
        b.calls == d.calls,
        "calls per scrape grew with history: {} then {}",
        b.calls,
        d.calls
    );

    if args.scale_projects > 0 {
        scale(&endpoint, &args, now).await?;
    }

    println!();
    println!(
        "peak RSS (VmHWM) while scraping: {:.1} MB; whole process incl. seeding: {:.1} MB",
        rss_scrape_kb as f64 / 1024.0,
        peak_rss_kb()? as f64 / 1024.0
    );
    ensure!(a.calls <= 2 && b.calls <= 2, "more than 2 calls per scrape");
    Ok(())
}

/// Seeds `projects` projects and `failures` in-window failures through the store's commits and
/// publishes the snapshot; returns the states as stored.
async fn seed(
    target: &Target,
    projects: usize,
    failures: usize,
    now: DateTime<Utc>,
    window: ChronoDuration,
) -> Result<Vec<StoredState>> {
    let started = Instant::now();
    for run in [
        run_record(Job::Monitor, now - ChronoDuration::minutes(3)),
        run_record(Job::Automation, now - ChronoDuration::hours(17)),
    ] {
        let it = item(&run, keys::RUN_PK, run.job.as_str());
        write_all(&target.writer, &target.table, std::iter::once(it)).await?;
    }
    // Spread evenly over the window, newest a minute ago.
    let span_ms = (window - ChronoDuration::minutes(2)).num_milliseconds();
    let events = (0..failures).map(|i| {
        let back = span_ms * i as i64 / failures.max(1) as i64;
        failure(
            i,
            projects,
            now - ChronoDuration::minutes(1) - ChronoDuration::milliseconds(back),
        )
    });
    let states: Vec<StoredState> = (0..projects).map(|i| (project(i, now), None)).collect();
    let states = commit_all(&target.seeder, states, events, projects, window).await?;
    println!(
        "{}: seeded {projects} projects and {failures} in-window failures in {:.1} s",
        target.label,
        started.elapsed().as_secs_f64()
    );
    publish(target).await?;
    Ok(states)
}

/// Publishes the target's snapshot as a committer does, and says what it cost.
async fn publish(target: &Target) -> Result<()> {
    let before = target.seeder.consumed_capacity();
    let started = Instant::now();
    let outcome = publish_after_commit(&target.seeder, Utc::now()).await?;
    let used = target.seeder.consumed_capacity().since(before);
    let Publication::Published { version, bytes, .. } = outcome else {
        anyhow::bail!("{}: publish did not write: {outcome:?}", target.label);
    };
    println!(
        "{}: published version {version}, {bytes} bytes compressed ({} chunk(s)), in {:.0} ms; \
         {:.1} read units, {:.1} write units",
        target.label,
        bytes.div_ceil(devlake_autopilot::store::SNAPSHOT_CHUNK_BYTES),
        started.elapsed().as_secs_f64() * 1000.0,
        used.read_units,
        used.write_units
    );
    Ok(())
}

/// The request Prometheus 2.x sends.
fn prometheus_request() -> Request<()> {
    Request::get("/metrics")
        .header(header::AUTHORIZATION, format!("Bearer {TOKEN}"))
        .header(header::ACCEPT, PROMETHEUS_ACCEPT)
        .header(header::ACCEPT_ENCODING, "gzip")
        .body(())
        .expect("valid request")
}

/// Warm scrapes of both targets, alternating (and which goes first), so the machine's noise
/// falls on both alike.
async fn measure_side_by_side(
    a: &Target,
    b: &Target,
    requests: usize,
) -> Result<(Figures, Figures)> {
    let mut fa = Samples::default();
    let mut fb = Samples::default();
    // Warm-up: connection pool, credentials, allocator, and each instance's kept page.
    for _ in 0..3 {
        scrape(a, &mut Samples::default()).await?;
        scrape(b, &mut Samples::default()).await?;
    }
    for i in 0..requests {
        if i % 2 == 0 {
            scrape(a, &mut fa).await?;
            scrape(b, &mut fb).await?;
        } else {
            scrape(b, &mut fb).await?;
            scrape(a, &mut fa).await?;
        }
    }
    Ok((fa.figures()?, fb.figures()?))
}

#[derive(Default)]
struct Samples {
    times: Vec<Duration>,
    calls: Vec<u64>,
    by_op: String,
    units: Vec<f64>,
    bytes: usize,
    plain_bytes: usize,
}

async fn scrape(target: &Target, samples: &mut Samples) -> Result<()> {
    target.calls.reset();
    let before = target.service.source().consumed_capacity();
    let started = Instant::now();
    let response = target
        .service
        .handle(&prometheus_request(), Utc::now())
        .await;
    samples.times.push(started.elapsed());
    ensure!(
        response.status() == StatusCode::OK,
        "scrape answered {}",
        response.status()
    );
    samples.units.push(
        target
            .service
            .source()
            .consumed_capacity()
            .since(before)
            .read_units,
    );
    samples.calls.push(target.calls.total());
    samples.by_op = format!("{:?}", target.calls.by_operation());
    samples.bytes = response.body().len();
    let page = gunzip(response.body())?;
    samples.plain_bytes = page.len();
    let series = page
        .lines()
        .filter(|l| l.starts_with("devlake_blueprint_failure_total{"))
        .count();
    // Distinct (project, second) pairs: equal to the events unless two share a second.
    ensure!(
        series > 0 && series <= target.failures,
        "{}: unexpected series count {series}",
        target.label
    );
    Ok(())
}

impl Samples {
    fn figures(mut self) -> Result<Figures> {
        ensure!(
            self.calls.iter().all(|c| *c == self.calls[0]),
            "calls per scrape varied: {:?}",
            self.calls
        );
        self.times.sort();
        Ok(Figures {
            read_units: self.units.iter().copied().fold(0.0, f64::max),
            p50: percentile(&self.times, 50),
            p95: percentile(&self.times, 95),
            max: *self.times.last().context("no requests")?,
            calls: self.calls[0],
            calls_by_op: self.by_op,
            bytes: self.bytes,
            plain_bytes: self.plain_bytes,
        })
    }
}

/// The first scrape of a new version: a fresh instance reads the head and the chunks (2 calls),
/// decodes the state and renders the page once.
async fn first_scrapes(target: &Target, n: usize) -> Result<()> {
    let mut times = Vec::new();
    let mut calls = Vec::new();
    let mut units: f64 = 0.0;
    for _ in 0..n {
        let fresh = target.fresh_instance()?;
        target.calls.reset();
        let started = Instant::now();
        let response = fresh.handle(&prometheus_request(), Utc::now()).await;
        times.push(started.elapsed());
        ensure!(response.status() == StatusCode::OK);
        calls.push(target.calls.total());
        units = units.max(fresh.source().consumed_capacity().read_units);
    }
    times.sort();
    println!(
        "{}: first scrape of a version (fresh instance): p50 {:.1} ms, max {:.1} ms, {:?} DynamoDB calls, {units} read units",
        target.label,
        ms(percentile(&times, 50)),
        ms(*times.last().context("no requests")?),
        calls.iter().max().context("no requests")?
    );
    Ok(())
}

/// `--scale-projects` projects: calls per scrape and the response, gzip and not.
async fn scale(endpoint: &str, args: &Args, now: DateTime<Utc>) -> Result<()> {
    let target = Target::new("scale", endpoint, args.scale_failures, args.window_days).await?;
    let started = Instant::now();
    let projects = args.scale_projects;
    let window = ChronoDuration::days(i64::from(args.window_days));
    let span_ms = (window - ChronoDuration::minutes(2)).num_milliseconds();
    let mut per_project: Vec<Vec<FailureEvent>> = vec![Vec::new(); projects];
    for i in 0..args.scale_failures {
        let back = span_ms * i as i64 / args.scale_failures.max(1) as i64;
        per_project[i % projects].push(failure(
            i,
            projects,
            now - ChronoDuration::minutes(1) - ChronoDuration::milliseconds(back),
        ));
    }
    // Project items as a commit leaves them, written in bulk (the content is what matters here).
    let items = per_project.iter().enumerate().map(|(i, events)| {
        let mut state = project(i, now);
        state.remember_failures(events, now, window);
        project_item(&state, 1).expect("a project item")
    });
    write_all(&target.writer, &target.table, items).await?;
    println!();
    println!(
        "scale: wrote {projects} projects with {} failures in the window in {:.1} s",
        args.scale_failures,
        started.elapsed().as_secs_f64()
    );
    publish(&target).await?;
    first_scrapes(&target, 3).await?;
    scrape(&target, &mut Samples::default()).await?;
    let mut warm = Samples::default();
    for _ in 0..20 {
        scrape(&target, &mut warm).await?;
    }
    let warm = warm.figures()?;
    print_figures("scale", projects, &warm);
    let plain = target
        .service
        .handle(
            &Request::get("/metrics")
                .header(header::AUTHORIZATION, format!("Bearer {TOKEN}"))
                .body(())?,
            Utc::now(),
        )
        .await;
    let limit = FUNCTION_URL_RESPONSE_LIMIT as f64 / 1_048_576.0;
    println!(
        "scale: gzip response {:.2} MB ({:.2} MB as base64 in the function's response, limit {limit:.0} MB); \
         uncompressed page {:.2} MB: answered {}",
        warm.bytes as f64 / 1_048_576.0,
        (warm.bytes.div_ceil(3) * 4) as f64 / 1_048_576.0,
        warm.plain_bytes as f64 / 1_048_576.0,
        plain.status()
    );
    ensure!(warm.calls <= 2, "more than 2 calls per scrape at scale");
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

fn print_figures(label: &str, projects: usize, f: &Figures) {
    println!("-- {label} ({projects} projects)");
    println!(
        "handler time: p50 {:.2} ms, p95 {:.2} ms, max {:.2} ms",
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
