//! `bench-monitor`: what one steady-state monitor run costs, against the per-blueprint polling of
//! the system it replaces.
//!
//! The parent process starts the DevLake simulator (10,000 blueprints, each managed with its own
//! daily `cronConfig`, and 100,000 historical pipelines), DynamoDB Local (table from template.yaml) and the CloudWatch double, and brings
//! the monitor to steady state in-process: a first run (which caches every blueprint → project),
//! then a run that sees 20 pipelines running. 5 of those then fail and 15 complete, and the
//! simulator gets 20 ms of latency per request. Each measurement then runs in a fresh child
//! process (the same binary), so its peak RSS (VmHWM) is that of one warm Lambda-like process
//! doing one run, not of the simulator:
//!
//! * `steady`: one monitor run through the real client, store and sink. Its DevLake calls: the
//!   new pipelines, the unfinished ones (pending, re-run, running), each counted status (which
//!   also re-checks every failing project's latest failure) and one page of the blueprint sweep
//!   — 7 with the default statuses, whatever the number of blueprints.
//! * `per-blueprint`: the original approach — list the blueprints, then one
//!   `GET /blueprints/{id}/pipelines` per blueprint (10 in flight), looking for failures since
//!   the last run. It only reads DevLake; recording what it finds would add the same DynamoDB
//!   writes as the monitor's.
//!
//! Run: `eval "$(bash infra/local/setup.sh --env)"; cargo run --profile perf --bin bench-monitor` (or a dev build, `cargo run --bin bench-monitor`).

use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use chrono::{DateTime, Utc};
use clap::{Parser, Subcommand};
use devlake_autopilot::cloudwatch::CloudWatchSink;
use devlake_autopilot::devlake::models::{Blueprint, Pipeline, PipelinesPage};
use devlake_autopilot::devlake::{ClientConfig, DevLakeClient};
use devlake_autopilot::monitor::{Deadline, Monitor, MonitorSettings, Request};
use devlake_autopilot::store::DynamoStore;
use devlake_testkit::bench::function_memory_mb;
use devlake_testkit::cloudwatch_double::CloudWatchDouble;
use devlake_testkit::dynamo_calls::DynamoCallCounter;
use devlake_testkit::sim::{Fixture, GeneratedSpec, PipelineSeed, SimOptions, Simulator};
use devlake_testkit::stack::{dynamodb_local, local_sdk_config};
use futures::{StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};

#[derive(Parser)]
#[command(about = "Benchmark one steady-state monitor run against per-blueprint polling")]
struct Args {
    #[command(subcommand)]
    measure: Option<Measure>,
    #[arg(long, default_value_t = 10_000)]
    blueprints: usize,
    #[arg(long, default_value_t = 100_000)]
    pipelines: usize,
    /// Latency the simulator adds to every request during the measurements.
    #[arg(long, default_value_t = 20)]
    latency_ms: u64,
    /// Failures that happen between the last run and the measured one.
    #[arg(long, default_value_t = 5)]
    new_failures: usize,
    /// Requests in flight for the per-blueprint approach.
    #[arg(long, default_value_t = 10)]
    per_blueprint_concurrency: usize,
}

/// Child-process modes (internal).
#[derive(Subcommand)]
enum Measure {
    Steady {
        #[arg(long)]
        devlake: String,
        #[arg(long)]
        dynamodb: String,
        #[arg(long)]
        table: String,
        #[arg(long)]
        cloudwatch: String,
    },
    PerBlueprint {
        #[arg(long)]
        devlake: String,
        #[arg(long)]
        since: DateTime<Utc>,
        #[arg(long)]
        concurrency: usize,
    },
}

/// What a child reports (one JSON line on stdout).
#[derive(Debug, Serialize, Deserialize)]
struct Figures {
    devlake_calls: u64,
    dynamodb_calls: u64,
    /// DynamoDB request units the run consumed, as DynamoDB reported them.
    #[serde(default)]
    read_units: f64,
    #[serde(default)]
    write_units: f64,
    wall_ms: f64,
    peak_rss_kb: u64,
    failures_found: u64,
    detail: String,
}

fn vm_hwm_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

fn devlake_client(url: &str) -> Result<DevLakeClient> {
    Ok(DevLakeClient::new(ClientConfig {
        endpoint: url.to_string(),
        request_timeout: Duration::from_secs(30),
        ..ClientConfig::default()
    })?)
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    match args.measure {
        Some(Measure::Steady {
            devlake,
            dynamodb,
            table,
            cloudwatch,
        }) => print(steady(&devlake, &dynamodb, &table, &cloudwatch).await?),
        Some(Measure::PerBlueprint {
            devlake,
            since,
            concurrency,
        }) => print(per_blueprint(&devlake, since, concurrency).await?),
        None => orchestrate(&args).await,
    }
}

fn print(figures: Figures) -> Result<()> {
    println!("{}", serde_json::to_string(&figures)?);
    Ok(())
}

/// One monitor run, clients built first as a Lambda's init would.
async fn steady(devlake: &str, dynamodb: &str, table: &str, cloudwatch: &str) -> Result<Figures> {
    let client = devlake_client(devlake)?;
    let counter = DynamoCallCounter::default();
    let store = DynamoStore::new(counter.client(&local_sdk_config(dynamodb)), table);
    let sink = CloudWatchSink::new(
        aws_sdk_cloudwatch::Client::new(&local_sdk_config(cloudwatch)),
        "Bench/DevLakeMonitor",
    );
    let settings = MonitorSettings::default();
    let monitor = Monitor {
        settings: &settings,
        devlake: &client,
        store: &store,
        sink: &sink,
    };
    let started = Instant::now();
    let summary = monitor
        .run(Utc::now(), Request::default(), Deadline::none())
        .await?;
    let wall = started.elapsed();
    Ok(Figures {
        devlake_calls: summary.devlake_calls,
        dynamodb_calls: counter.total(),
        read_units: store.consumed_capacity().read_units,
        write_units: store.consumed_capacity().write_units,
        wall_ms: wall.as_secs_f64() * 1000.0,
        peak_rss_kb: vm_hwm_kb(),
        failures_found: summary.new_failures,
        detail: format!("DynamoDB {:?}", counter.by_operation()),
    })
}

/// The original approach: every blueprint's pipelines, every run.
async fn per_blueprint(devlake: &str, since: DateTime<Utc>, concurrency: usize) -> Result<Figures> {
    let client = devlake_client(devlake)?;
    let http = reqwest::Client::new();
    let started = Instant::now();
    let blueprints: Vec<Blueprint> = client.blueprints(&Default::default()).try_collect().await?;
    let listing_calls = client.calls().total();
    let results: Vec<Result<Vec<Pipeline>>> =
        futures::stream::iter(blueprints.iter().map(|b| b.id))
            .map(|id| {
                let http = http.clone();
                let url = format!("{devlake}/blueprints/{id}/pipelines?page=1&pageSize=50");
                async move {
                    let page: PipelinesPage = http
                        .get(&url)
                        .send()
                        .await?
                        .error_for_status()?
                        .json()
                        .await?;
                    Ok(page.pipelines)
                }
            })
            .buffer_unordered(concurrency)
            .collect()
            .await;
    let mut failures = 0u64;
    for pipelines in results {
        failures += pipelines?
            .iter()
            .filter(|p| matches!(p.status.as_str(), "TASK_FAILED" | "TASK_PARTIAL"))
            .filter(|p| p.finished_at.is_some_and(|f| f > since))
            .count() as u64;
    }
    let wall = started.elapsed();
    Ok(Figures {
        devlake_calls: listing_calls + blueprints.len() as u64,
        dynamodb_calls: 0,
        read_units: 0.0,
        write_units: 0.0,
        wall_ms: wall.as_secs_f64() * 1000.0,
        peak_rss_kb: vm_hwm_kb(),
        failures_found: failures,
        detail: format!(
            "{listing_calls} blueprint list page(s) + {} GET /blueprints/{{id}}/pipelines, {concurrency} in flight; DevLake reads only",
            blueprints.len()
        ),
    })
}

fn child(args: &[String]) -> Result<Figures> {
    let exe = std::env::current_exe()?;
    let out = Command::new(exe)
        .args(args)
        .output()
        .context("cannot start the measuring child process")?;
    if !out.status.success() {
        bail!(
            "measuring child failed: {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let line = String::from_utf8_lossy(&out.stdout);
    let line = line.lines().last().unwrap_or_default();
    serde_json::from_str(line).with_context(|| format!("child printed {line:?}"))
}

async fn orchestrate(args: &Args) -> Result<()> {
    let t0 = Instant::now();
    let spec = GeneratedSpec {
        blueprints: args.blueprints,
        pipelines: args.pipelines,
        now: Utc::now() - chrono::Duration::minutes(30),
        ..GeneratedSpec::monitor_bench()
    };
    let sim = Simulator::start_with(Fixture::generated(spec), SimOptions::default()).await;
    let handle = sim.handle();
    // Every blueprint managed and on its own daily minute: the steady run also checks their
    // schedules for missed runs, which must cost no extra call.
    for id in 1..=args.blueprints as u64 {
        handle.patch_blueprint(
            id,
            serde_json::json!({
                "labels": ["devlake-autopilot"],
                "cronConfig": format!("{} {} * * *", id % 60, (id / 60) % 24),
            }),
        )?;
    }
    ensure!(
        handle.pipeline_count() == args.pipelines,
        "simulator seeded {} pipelines",
        handle.pipeline_count()
    );
    let local = dynamodb_local().await;
    let table = local.create_table("bench-monitor").await;
    let cloudwatch = CloudWatchDouble::start().await;
    eprintln!(
        "setup: {} blueprints, {} pipelines, DynamoDB Local {}, in {:.1}s",
        args.blueprints,
        handle.pipeline_count(),
        local.endpoint(),
        t0.elapsed().as_secs_f64()
    );

    // Bring the monitor to steady state (no latency: this is set-up, not measurement).
    {
        let client = devlake_client(&sim.url())?;
        let store = DynamoStore::new(local.client(), &table);
        let sink = CloudWatchSink::new(
            aws_sdk_cloudwatch::Client::new(&local_sdk_config(cloudwatch.url())),
            "Bench/DevLakeMonitor",
        );
        let settings = MonitorSettings::default();
        let monitor = Monitor {
            settings: &settings,
            devlake: &client,
            store: &store,
            sink: &sink,
        };
        let first = monitor
            .run(Utc::now(), Request::default(), Deadline::none())
            .await?;
        eprintln!(
            "first run (lookback 24 h): {} failures recorded, {} DevLake calls, {} ms",
            first.new_failures, first.devlake_calls, first.duration_ms
        );
        let step = (args.blueprints / 20).max(1) as u64;
        let running: Vec<PipelineSeed> = (0..20u64)
            .map(|i| PipelineSeed {
                blueprint_id: 1 + i * step,
                status: "TASK_RUNNING".into(),
                created_at: Some(Utc::now() - chrono::Duration::minutes(4)),
                began_at: Some(Utc::now() - chrono::Duration::minutes(3)),
                ..PipelineSeed::default()
            })
            .collect();
        let ids = handle.insert_pipelines(running)?;
        let second = monitor
            .run(Utc::now(), Request::default(), Deadline::none())
            .await?;
        ensure!(
            second.cursor.watching >= ids.len(),
            "running pipelines not watched: {second:?}"
        );
        eprintln!(
            "steady run before: {} DevLake calls, watching {} pipelines",
            second.devlake_calls, second.cursor.watching
        );
        let since = Utc::now();
        for (i, id) in ids.iter().enumerate() {
            let status = if i < args.new_failures {
                "TASK_FAILED"
            } else {
                "TASK_COMPLETED"
            };
            handle.finish_pipeline(*id, status, "bench failure")?;
        }
        handle.set_latency(Duration::from_millis(args.latency_ms));
        handle.reset_log();

        let steady = child(&[
            "steady".into(),
            "--devlake".into(),
            sim.url(),
            "--dynamodb".into(),
            local.endpoint().to_string(),
            "--table".into(),
            table.clone(),
            "--cloudwatch".into(),
            cloudwatch.url().to_string(),
        ])?;
        let sim_seen = handle.counts().total;
        // Which calls: the path without its id or query, counted.
        let mut by_route: std::collections::BTreeMap<String, usize> = Default::default();
        for r in handle.requests() {
            let path = r.path.split('?').next().unwrap_or_default();
            let route: Vec<&str> = path
                .split('/')
                .map(|seg| {
                    if seg.chars().all(|c| c.is_ascii_digit()) && !seg.is_empty() {
                        "{id}"
                    } else {
                        seg
                    }
                })
                .collect();
            let query = r.path.split_once('?').map(|(_, q)| q).unwrap_or_default();
            let filter = query
                .split('&')
                .filter(|kv| kv.starts_with("status=") || kv.starts_with("pending="))
                .collect::<Vec<_>>()
                .join("&");
            let key = format!(
                "{} {}{}{}",
                r.method,
                route.join("/"),
                if filter.is_empty() { "" } else { "?" },
                filter
            );
            *by_route.entry(key).or_default() += 1;
        }
        ensure!(
            steady.failures_found == args.new_failures as u64,
            "the monitor recorded {} failures, expected {}",
            steady.failures_found,
            args.new_failures
        );
        handle.reset_log();
        let original = child(&[
            "per-blueprint".into(),
            "--devlake".into(),
            sim.url(),
            "--since".into(),
            since.to_rfc3339(),
            "--concurrency".into(),
            args.per_blueprint_concurrency.to_string(),
        ])?;

        println!();
        println!(
            "bench-monitor: {} blueprints, {} historical pipelines, {} ms DevLake latency, {} new failures ({} build)",
            args.blueprints,
            args.pipelines,
            args.latency_ms,
            args.new_failures,
            if cfg!(debug_assertions) { "dev" } else { "optimised" }
        );
        println!(
            "{:<34} {:>13} {:>14} {:>11} {:>13} {:>9}",
            "approach", "DevLake calls", "DynamoDB calls", "wall", "peak RSS", "failures"
        );
        for (name, f) in [
            ("monitor, steady state", &steady),
            ("per-blueprint polling (original)", &original),
        ] {
            println!(
                "{:<34} {:>13} {:>14} {:>9.0}ms {:>10.1} MB {:>9}",
                name,
                f.devlake_calls,
                f.dynamodb_calls,
                f.wall_ms,
                f.peak_rss_kb as f64 / 1024.0,
                f.failures_found
            );
        }
        println!(
            "monitor detail: {} (simulator saw {sim_seen} requests: {by_route:?})",
            steady.detail
        );
        println!("per-blueprint detail: {}", original.detail);
        let memory_mb = function_memory_mb("MonitorFunction").unwrap_or(0);
        println!(
            "cost inputs per steady run: {} DynamoDB read and {} write request units; Lambda {:.4} GB-s ({} MB, wall time)",
            steady.read_units,
            steady.write_units,
            memory_mb as f64 / 1024.0 * steady.wall_ms / 1000.0,
            memory_mb
        );
        let targets = [
            ("DevLake calls <= 10", steady.devlake_calls <= 10),
            ("wall < 1 s", steady.wall_ms < 1000.0),
            ("peak RSS < 64 MB", steady.peak_rss_kb < 64 * 1024),
        ];
        for (target, met) in targets {
            println!("target {target}: {}", if met { "met" } else { "MISSED" });
        }
    }
    Ok(())
}
