//! Benchmark of the daily automation: a DevLake simulator with 2,000 repositories over 4 GitHub
//! connections and 20 ms latency per request. Runs the automation twice with the same `now`
//! and prints wall time and DevLake call counts of each run.
//!
//! ```text
//! cargo run --profile perf --bin bench-automation            # defaults below
//! cargo run --profile perf --bin bench-automation -- --trigger-gap-ms 2000 --trigger-max 100
//! ```
//!
//! The first run creates 2,000 scopes, configs, projects and blueprints and triggers them one at
//! a time; its floor is the trigger pacing (`triggered × (gap + latency)`). The second run must
//! make no writes and read only the pages of remote scopes, scopes and projects plus the fixed
//! discovery calls (`/plugins` and one connection list per plugin).

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use clap::Parser;
use devlake_autopilot::automation::{self, AutomationConfig, Deadline, Ports};
use devlake_autopilot::devlake::{ClientConfig, DevLakeClient};
use devlake_testkit::sim::{Fixture, GeneratedSpec, RequestRecord, SimOptions, Simulator};
use serde_json::{json, Value};

#[derive(Parser)]
#[command(about = "Benchmark the automation run against the DevLake simulator")]
struct Args {
    /// Repositories in total, spread over the connections.
    #[arg(long, default_value_t = 2000)]
    repos: usize,
    #[arg(long, default_value_t = 4)]
    connections: usize,
    /// Remote-scope groups (orgs) per connection.
    #[arg(long, default_value_t = 5)]
    groups: usize,
    /// Simulated DevLake latency per request.
    #[arg(long, default_value_t = 20)]
    latency_ms: u64,
    /// TRIGGER_GAP_MS for the run (the product default is 2000).
    #[arg(long, default_value_t = 20)]
    trigger_gap_ms: u64,
    /// TRIGGER_MAX_PER_RUN for the run; default: every repository, so that the second run is
    /// a true no-op (with a smaller cap the next run triggers the rest, by design).
    #[arg(long)]
    trigger_max: Option<usize>,
    /// DEVLAKE_CONCURRENCY (requests in flight, projects created at once).
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
    /// DEVLAKE_PAGE_SIZE.
    #[arg(long, default_value_t = 500)]
    page_size: u32,
}

const NOW: &str = "2026-11-28T11:00:00Z";

fn kind(r: &RequestRecord) -> &'static str {
    let path = r.path.split('?').next().unwrap_or("");
    match (r.method.as_str(), path) {
        ("GET", p) if p.ends_with("/remote-scopes") => "GET remote-scopes pages",
        ("GET", p) if p.ends_with("/scopes") => "GET scopes pages",
        ("GET", "/projects") => "GET projects pages",
        ("GET", p) if p.ends_with("/scope-configs") => "GET scope-configs",
        ("GET", p) if p.ends_with("/connections") => "GET connections",
        ("GET", "/plugins") => "GET plugins",
        ("GET", "/pipelines") => "GET pending pipelines",
        ("GET", "/version") => "GET version",
        ("GET", _) => "GET other",
        ("PUT", _) => "PUT scopes",
        // A connection test changes nothing: a read in every count.
        ("POST", p) if p.ends_with("/test") => "POST connection tests",
        ("POST", "/projects") => "POST projects",
        ("POST", p) if p.ends_with("/trigger") => "POST trigger",
        ("POST", p) if p.ends_with("/scope-configs") => "POST scope-configs",
        ("PATCH", p) if p.starts_with("/blueprints/") => "PATCH blueprints",
        ("PATCH", _) => "PATCH other",
        _ => "other writes",
    }
}

fn breakdown(records: &[RequestRecord]) -> Vec<(&'static str, usize)> {
    let mut m: std::collections::BTreeMap<&'static str, usize> = Default::default();
    for r in records {
        *m.entry(kind(r)).or_default() += 1;
    }
    m.into_iter().collect()
}

async fn run(
    config: &AutomationConfig,
    client: &DevLakeClient,
    now: DateTime<Utc>,
) -> (Value, Duration) {
    let ports = Ports {
        devlake: client,
        run_log: None,
        metrics: None,
    };
    let started = Instant::now();
    let summary = automation::handle(
        config,
        ports,
        &json!({"scheduledTime": NOW}),
        now,
        Deadline::none(),
    )
    .await
    .expect("automation run");
    (summary, started.elapsed())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let per_connection = args.repos / args.connections.max(1);
    let fixture = Fixture::generated(GeneratedSpec {
        connections: vec![("github".into(), args.connections)],
        repos_per_connection: per_connection,
        groups_per_connection: args.groups,
        ..GeneratedSpec::automation_bench()
    });
    let sim = Simulator::start_with(
        fixture,
        SimOptions {
            latency: Duration::from_millis(args.latency_ms),
            request_log_capacity: 1_000_000,
            ..SimOptions::default()
        },
    )
    .await;
    let handle = sim.handle();
    let client = DevLakeClient::new(ClientConfig {
        endpoint: sim.url(),
        max_concurrency: args.concurrency,
        page_size: args.page_size,
        ..ClientConfig::default()
    })?;
    let repos = per_connection * args.connections;
    let config = AutomationConfig {
        trigger_gap: Duration::from_millis(args.trigger_gap_ms),
        trigger_max_per_run: args.trigger_max.unwrap_or(repos),
        concurrency: args.concurrency,
        ..AutomationConfig::default()
    };
    let now = DateTime::parse_from_rfc3339(NOW)?.with_timezone(&Utc);

    println!(
        "bench-automation: {repos} repositories over {} GitHub connections ({} groups each), {} ms latency, concurrency {}, page size {}, trigger gap {} ms, max {} triggers",
        args.connections, args.groups, args.latency_ms, args.concurrency, args.page_size, args.trigger_gap_ms, config.trigger_max_per_run
    );

    for (label, expect_noop) in [
        ("first run", false),
        ("second run (same now, nothing new)", true),
    ] {
        handle.reset_log();
        let (summary, took) = run(&config, &client, now).await;
        let counts = handle.counts();
        let records = handle.requests();
        let c = &summary["counts"];
        println!("\n== {label}");
        println!("wall time            {:.2} s", took.as_secs_f64());
        println!("status               {}", summary["status"]);
        println!(
            "DevLake calls        {} reads, {} writes (simulator log); client attempts {} reads, {} writes",
            counts.reads, counts.writes, summary["devlakeCalls"]["reads"], summary["devlakeCalls"]["writes"]
        );
        println!(
            "changes              scopes added {}, scope configs {}, projects created {}, blueprints updated {}, triggered {}, skipped {}",
            c["scopesAdded"], c["scopeConfigsCreated"], c["projectsCreated"], c["blueprintsUpdated"], c["triggered"], c["skipped"]
        );
        let phase = |k: &str| summary["phaseMs"][k].as_u64().unwrap_or(0) as f64 / 1000.0;
        println!(
            "phases               connections (discover, sync, scope configs) {:.2} s, projects {:.2} s, trigger {:.2} s",
            phase("connections"),
            phase("projects"),
            phase("trigger")
        );
        let triggered = c["triggered"].as_u64().unwrap_or(0);
        if triggered > 0 {
            let floor = Duration::from_millis(
                triggered.saturating_sub(1) * args.trigger_gap_ms + triggered * args.latency_ms,
            );
            println!(
                "trigger pacing floor {:.2} s ({} triggers one at a time × (gap + latency))",
                floor.as_secs_f64(),
                triggered,
            );
        }
        for (k, n) in breakdown(&records) {
            println!("  {k:<26} {n}");
        }
        if expect_noop {
            let pages: usize = breakdown(&records)
                .iter()
                .filter(|(k, _)| k.ends_with("pages"))
                .map(|(_, n)| n)
                .sum();
            println!(
                "read budget          {} page reads (remote scopes + scopes + projects) + {} fixed discovery reads and connection tests = {} reads",
                pages,
                counts.reads as usize - pages,
                counts.reads
            );
            println!("writes               {} (target 0)", counts.writes);
        }
    }
    Ok(())
}
