//! Benchmark: page through 100,000 pipelines of an in-process DevLake simulator with the typed
//! client's lazy stream, at several page sizes, and print pages/s, rows/s and peak RSS.
//!
//! `cargo run --bin bench-client-paging [-- --pipelines 100000 --page-sizes 500,50]`
//!
//! Peak RSS (`VmHWM`) covers the whole process — the simulator's 100k rows included — so the
//! figure printed after seeding is the floor the client's paging adds to.

use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use chrono::{TimeZone, Utc};
use clap::Parser;
use devlake_autopilot::devlake::models::PipelineQuery;
use devlake_autopilot::devlake::{ClientConfig, DevLakeClient};
use devlake_testkit::sim::{Fixture, PipelineSeed, SimOptions, Simulator};
use futures::StreamExt;

/// Peak RSS must stay below this (issue 2).
const RSS_BUDGET_KB: u64 = 64 * 1024;

#[derive(Parser)]
#[command(
    about = "Page through many pipelines with the DevLake client and print throughput and peak RSS"
)]
struct Args {
    /// Pipelines seeded into the simulator.
    #[arg(long, default_value_t = 100_000)]
    pipelines: usize,
    /// Page sizes to run, in order.
    #[arg(long, value_delimiter = ',', default_values_t = [500u32, 50])]
    page_sizes: Vec<u32>,
}

/// A `Vm*` line of /proc/self/status, in kB.
fn proc_status_kb(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find(|l| l.starts_with(field))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

fn mb(kb: Option<u64>) -> String {
    kb.map(|k| format!("{:.1} MB", k as f64 / 1024.0))
        .unwrap_or_else(|| "n/a".into())
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    println!(
        "start: VmRSS {} VmHWM {}",
        mb(proc_status_kb("VmRSS:")),
        mb(proc_status_kb("VmHWM:"))
    );

    let sim = Simulator::start_with(
        Fixture::empty(),
        SimOptions {
            // The log is not needed here; keep it from growing with every page.
            request_log_capacity: 16,
            ..SimOptions::default()
        },
    )
    .await;
    let seeded = Instant::now();
    // Seeds are generated lazily: a 100k-element Vec of them would itself cost the process
    // more memory than the paging under test.
    let n = args.pipelines;
    let end = Utc.with_ymd_and_hms(2026, 5, 4, 12, 0, 0).unwrap();
    let seeds = (0..n).map(|i| {
        let created = end - chrono::Duration::minutes((n - i) as i64);
        let failed = i % 20 == 19;
        PipelineSeed {
            status: if failed {
                "TASK_FAILED"
            } else {
                "TASK_COMPLETED"
            }
            .into(),
            created_at: Some(created),
            began_at: Some(created + chrono::Duration::seconds(2)),
            finished_at: Some(created + chrono::Duration::seconds(40)),
            message: if failed {
                "subtask collectApiPullRequests ended unexpectedly".into()
            } else {
                String::new()
            },
            ..PipelineSeed::default()
        }
    });
    sim.handle()
        .insert_pipelines(seeds)
        .map_err(|e| anyhow::anyhow!("seeding the simulator: {e}"))?;
    let baseline = proc_status_kb("VmRSS:");
    println!(
        "seeded {} pipelines in {:.2?}: VmRSS {} VmHWM {}",
        args.pipelines,
        seeded.elapsed(),
        mb(baseline),
        mb(proc_status_kb("VmHWM:"))
    );

    println!(
        "{:>9} {:>8} {:>6} {:>9} {:>9} {:>11} {:>10} {:>10}",
        "page_size", "rows", "pages", "seconds", "pages/s", "rows/s", "VmRSS", "VmHWM"
    );
    for page_size in args.page_sizes {
        let client = DevLakeClient::new(ClientConfig {
            endpoint: sim.url(),
            page_size,
            request_timeout: Duration::from_secs(60),
            ..ClientConfig::default()
        })
        .context("building the client")?;
        let query = PipelineQuery::default();
        let started = Instant::now();
        let mut rows = 0usize;
        let mut last_id = u64::MAX;
        let mut stream = client.pipelines(&query);
        while let Some(pipeline) = stream.next().await {
            let pipeline = pipeline.context("paging pipelines")?;
            ensure!(
                pipeline.id < last_id,
                "pipelines must come newest first without repeats"
            );
            last_id = pipeline.id;
            rows += 1;
        }
        drop(stream);
        let secs = started.elapsed().as_secs_f64();
        let pages = client.calls().reads;
        ensure!(
            rows == args.pipelines,
            "read {rows} rows, expected {}",
            args.pipelines
        );
        println!(
            "{:>9} {:>8} {:>6} {:>9.2} {:>9.1} {:>11.0} {:>10} {:>10}",
            page_size,
            rows,
            pages,
            secs,
            pages as f64 / secs,
            rows as f64 / secs,
            mb(proc_status_kb("VmRSS:")),
            mb(proc_status_kb("VmHWM:")),
        );
    }

    let peak = proc_status_kb("VmHWM:");
    println!(
        "peak RSS (VmHWM, whole process incl. simulator): {}",
        mb(peak)
    );
    if let (Some(peak), Some(baseline)) = (peak, baseline) {
        println!(
            "paging added {} over the seeded simulator (client buffers + pages being served)",
            mb(Some(peak.saturating_sub(baseline)))
        );
    }
    if let Some(peak) = peak {
        ensure!(
            peak < RSS_BUDGET_KB,
            "peak RSS {} exceeds the 64 MB budget",
            mb(Some(peak))
        );
        println!("peak RSS is within the 64 MB budget");
    }
    Ok(())
}
