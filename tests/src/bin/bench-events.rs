//! `bench-events`: from DevLake's notification of a failed pipeline to the failure on the metrics
//! page, against DynamoDB Local.
//!
//! The simulator (in process) sends its notifications, signed as DevLake signs them, over real
//! HTTP to the events function's handler (in process, served on 127.0.0.1, real
//! `aws-sdk-dynamodb` client); the metrics function's handler reads the same table. The table
//! holds `--projects` projects (written as commits leave them). Each of `--samples` times: a
//! queued pipeline of a project starts (its notification is answered first), then the clock
//! starts, the pipeline fails, and the metrics page is scraped back to back until it shows the
//! project's failure. Prints the latency p50/p95/max and the events function's DynamoDB requests
//! per notification, and fails when the p95 is 1 s or more.
//!
//! Run: `eval "$(bash infra/local/setup.sh --env)"; cargo run --profile perf --bin bench-events`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use aws_sdk_dynamodb::types::{PutRequest, WriteRequest};
use chrono::Utc;
use clap::Parser;
use devlake_autopilot::events::{EventsService, NotificationSecret};
use devlake_autopilot::metrics_http::http;
use devlake_autopilot::metrics_http::{MetricsService, MetricsToken};
use devlake_autopilot::monitor::MonitorSettings;
use devlake_autopilot::store::{project_item, DynamoStore, ProjectState};
use devlake_testkit::dynamo_calls::DynamoCallCounter;
use devlake_testkit::serve::serve_in_background;
use devlake_testkit::sim::{Fixture, NotificationSettings, PipelineSeed, Simulator};
use devlake_testkit::stack::{dynamodb_local, local_sdk_config, state_table_definition};

#[derive(Parser)]
#[command(about = "Benchmark DevLake notification → failure on the metrics page")]
struct Args {
    /// Projects in the table (each scrape reads them all).
    #[arg(long, default_value_t = 500)]
    projects: usize,
    /// Failures pushed and waited for, one per project.
    #[arg(long, default_value_t = 40)]
    samples: usize,
    /// Use this DynamoDB (e.g. `http://127.0.0.1:8000`) instead of starting DynamoDB Local.
    #[arg(long)]
    endpoint: Option<String>,
}

const SECRET: &str = "bench-events-notification-secret";
const TOKEN: &str = "bench-events-metrics-token";

fn project(i: usize) -> String {
    format!("github/acme-engineering/service-{i:05}")
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    ensure!(
        args.samples >= 1 && args.samples <= args.projects,
        "--samples must be between 1 and --projects"
    );
    let (endpoint, table) = match &args.endpoint {
        Some(endpoint) => {
            let table = format!("bench-events-{}", std::process::id());
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
                local.create_table("bench-events").await,
            )
        }
    };
    let sdk = local_sdk_config(&endpoint);

    // The projects, in the table and in DevLake.
    let sim = Simulator::start(Fixture::empty()).await;
    let h = sim.handle();
    let mut blueprints = Vec::with_capacity(args.projects);
    let seeding = aws_sdk_dynamodb::Client::new(&sdk);
    let items: Vec<WriteRequest> = (0..args.projects)
        .map(|i| {
            blueprints.push(h.create_project(&project(i)).expect("project"));
            let state = ProjectState {
                project_name: project(i),
                blueprint_id: blueprints[i],
                last_status: Some("TASK_COMPLETED".into()),
                last_finished_at: Some(Utc::now() - chrono::Duration::hours(2)),
                last_success_at: Some(Utc::now() - chrono::Duration::hours(2)),
                last_duration_seconds: Some(120.0),
                ..ProjectState::default()
            };
            let put = PutRequest::builder()
                .set_item(Some(project_item(&state, 1).expect("item")))
                .build()
                .expect("put");
            WriteRequest::builder().put_request(put).build()
        })
        .collect();
    for chunk in items.chunks(25) {
        let out = seeding
            .batch_write_item()
            .request_items(&table, chunk.to_vec())
            .send()
            .await
            .context("seeding projects")?;
        ensure!(
            out.unprocessed_items().is_none_or(|u| u.is_empty()),
            "seeding left items unprocessed"
        );
    }

    // The events function, served over HTTP; the metrics function on the same table.
    let calls = DynamoCallCounter::default();
    let events = Arc::new(EventsService::new(
        DynamoStore::new(calls.client(&sdk), &table),
        NotificationSecret::new(SECRET)?,
        MonitorSettings::default(),
    ));
    let app = axum::Router::new()
        .fallback(
            |axum::extract::State(events): axum::extract::State<
                Arc<EventsService<DynamoStore>>,
            >,
             req: axum::extract::Request| async move {
                let (parts, body) = req.into_parts();
                let body = axum::body::to_bytes(body, 6 << 20)
                    .await
                    .unwrap_or_default();
                let req = http::Request::from_parts(parts, body.to_vec());
                events
                    .handle(&req, Utc::now())
                    .await
                    .map(axum::body::Body::from)
            },
        )
        .with_state(events.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/", listener.local_addr()?);
    let _serving = serve_in_background(listener, app);
    h.set_notifications(Some(NotificationSettings {
        endpoint: url,
        secret: SECRET.into(),
    }));
    let metrics = MetricsService::new(
        DynamoStore::new(aws_sdk_dynamodb::Client::new(&sdk), &table),
        MetricsToken::new(TOKEN)?,
        chrono_tz::UTC,
        7,
    );
    let scrape = || async {
        let request = http::Request::builder()
            .uri("/metrics")
            .header("authorization", format!("Bearer {TOKEN}"))
            .body(())
            .expect("request");
        let response = metrics.handle(&request, Utc::now()).await;
        String::from_utf8(response.into_body()).unwrap_or_default()
    };
    // Warm both handlers' connections.
    scrape().await;

    let mut latencies = Vec::with_capacity(args.samples);
    let mut scrapes = 0usize;
    let mut sent = 0usize;
    calls.reset();
    for (i, blueprint) in blueprints.iter().enumerate().take(args.samples) {
        let pid = h
            .create_pipeline(PipelineSeed {
                blueprint_id: *blueprint,
                status: "TASK_CREATED".into(),
                ..PipelineSeed::default()
            })
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        h.start_pipeline(pid).map_err(|e| anyhow::anyhow!("{e}"))?;
        sent += 1;
        h.wait_for_notifications(sent, Duration::from_secs(30))
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let expected = format!(
            "devlake_project_pipeline_failures_total{{project_name=\"{}\"}} 1\n",
            project(i)
        );
        let started = Instant::now();
        h.finish_pipeline(pid, "TASK_FAILED", "bench")
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        sent += 1;
        loop {
            scrapes += 1;
            if scrape().await.contains(&expected) {
                break;
            }
            ensure!(
                started.elapsed() < Duration::from_secs(30),
                "the failure of {} never reached the page",
                project(i)
            );
        }
        latencies.push(started.elapsed());
        // Every notification was accepted (the page could not show the failure otherwise).
        let rows = h
            .wait_for_notifications(sent, Duration::from_secs(30))
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        ensure!(
            rows.iter().all(|r| r.response_code == 200),
            "a notification was not accepted"
        );
    }

    let pct = |v: &mut Vec<Duration>, p: usize| {
        v.sort();
        let rank = (p * v.len()).div_ceil(100).max(1);
        v[rank - 1].as_secs_f64() * 1000.0
    };
    let notifications = sent as f64;
    println!(
        "{} projects, {} failures pushed (DynamoDB at {endpoint})",
        args.projects, args.samples
    );
    println!(
        "notification -> failure on the metrics page: p50 {:.1} ms, p95 {:.1} ms, max {:.1} ms ({} scrapes)",
        pct(&mut latencies, 50),
        pct(&mut latencies, 95),
        pct(&mut latencies, 100),
        scrapes
    );
    println!(
        "DynamoDB requests per notification: {:.1} ({:?})",
        calls.total() as f64 / notifications,
        calls.by_operation()
    );
    let p95 = pct(&mut latencies, 95);
    ensure!(p95 < 1000.0, "p95 {p95:.1} ms is over the 1 s target");
    Ok(())
}
