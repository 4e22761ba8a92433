//! Benchmark: page through 100,000 pipelines served by the DevLake simulator with the typed
//! client's lazy stream, at several page sizes, and print pages/s, rows/s and peak RSS.
//!
//! `cargo build --workspace --bins && target/debug/bench-client-paging [--pipelines 100000 --page-sizes 500,50]`
//!
//! The simulator runs as a separate process (`devlake-sim --generate monitor-bench`), so the
//! peak RSS printed is the client's own.

use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use clap::Parser;
use devlake_autopilot::devlake::models::PipelineQuery;
use devlake_autopilot::devlake::{ClientConfig, DevLakeClient};
use devlake_testkit::bench::{proc_status_kb, ExternalSim};
use futures::StreamExt;

/// Peak RSS must stay below this: the client's memory must not grow with the rows paged.
const RSS_BUDGET_KB: u64 = 64 * 1024;

#[derive(Parser)]
#[command(
    about = "Page through many pipelines with the DevLake client and print throughput and peak RSS"
)]
struct Args {
    /// Pipelines the simulator generates.
    #[arg(long, default_value_t = 100_000)]
    pipelines: usize,
    /// Page sizes to run, in order.
    #[arg(long, value_delimiter = ',', default_values_t = [500u32, 50])]
    page_sizes: Vec<u32>,
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

    let started = Instant::now();
    let pipelines = args.pipelines.to_string();
    let sim = ExternalSim::spawn(&["--generate", "monitor-bench", "--gen-pipelines", &pipelines])?;
    println!(
        "simulator with {} pipelines ready in {:.2?}",
        args.pipelines,
        started.elapsed()
    );
    let baseline = proc_status_kb("VmRSS:");

    println!(
        "{:>9} {:>8} {:>6} {:>9} {:>9} {:>11} {:>10} {:>10}",
        "page_size", "rows", "pages", "seconds", "pages/s", "rows/s", "VmRSS", "VmHWM"
    );
    for page_size in args.page_sizes {
        let client = DevLakeClient::new(ClientConfig {
            endpoint: sim.url().to_string(),
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
    println!("peak RSS (VmHWM) of the client process: {}", mb(peak));
    if let (Some(peak), Some(baseline)) = (peak, baseline) {
        println!(
            "paging added {} over the idle process",
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
