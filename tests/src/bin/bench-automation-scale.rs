//! `bench-automation-scale`: the automation's first run against a large DevLake, run by the
//! release `devlake-automation` binary as Lambda runs it (a local Runtime API, DynamoDB Local,
//! the CloudWatch double), with the simulator in a process of its own so the peak RSS measured
//! is the function's alone.
//!
//! Defaults: 10,000 repositories over 8 GitHub connections, 20 ms DevLake latency, the
//! template's timeout (900 s) and the product's trigger settings (`TRIGGER_GAP_MS` 2000,
//! `TRIGGER_MAX_PER_RUN` 100). Triggered pipelines finish by themselves after a second, as they
//! would between two daily runs. The runs, all in one warm function process:
//!
//! 1. first run: discovers, saves every scope, creates every project, triggers the first batch
//!    (capped); the rest is left to later runs;
//! 2. second run, same settings: must create nothing and trigger only the next batch;
//! 3. catch-up runs until no trigger is left (in a second process with `TRIGGER_GAP_MS=0`, a
//!    cap of `--catch-up-max` and no latency: only what they do is checked, not how fast): every
//!    blueprint must have been triggered exactly once over all runs — nothing lost, nothing twice;
//! 4. steady run (20 ms latency again): writes nothing, reads only pages plus fixed discovery.
//!
//! ```text
//! cargo build --release --bin devlake-automation
//! cargo build --profile perf --bin bench-automation-scale --bin devlake-sim
//! eval "$(bash infra/local/setup.sh --env)"; target/perf/bench-automation-scale [--repos 10000 --connections 8]
//! ```

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use clap::Parser;
use devlake_testkit::bench::{function_memory_mb, function_timeout_s, ExternalSim};
use devlake_testkit::cloudwatch_double::CloudWatchDouble;
use devlake_testkit::runtime_api::LambdaProcess;
use devlake_testkit::stack::dynamodb_local;
use serde_json::{json, Value};

#[derive(Parser)]
#[command(about = "The automation's first and following runs at scale, as a Lambda process")]
struct Args {
    #[arg(long, default_value_t = 10_000)]
    repos: usize,
    #[arg(long, default_value_t = 8)]
    connections: usize,
    /// Remote-scope groups (orgs) per connection.
    #[arg(long, default_value_t = 5)]
    groups: usize,
    /// DevLake latency per request in the measured runs.
    #[arg(long, default_value_t = 20)]
    latency_ms: u64,
    /// TRIGGER_GAP_MS of the measured runs (unset: the product default).
    #[arg(long)]
    trigger_gap_ms: Option<u64>,
    /// TRIGGER_MAX_PER_RUN (unset: the product default).
    #[arg(long)]
    trigger_max: Option<usize>,
    /// Where devlake-automation is (default: `release` next to this binary's profile dir).
    #[arg(long)]
    bin_dir: Option<PathBuf>,
    /// Most catch-up runs before the bench gives up.
    #[arg(long, default_value_t = 500)]
    max_catch_up_runs: usize,
    /// TRIGGER_MAX_PER_RUN of the catch-up runs: larger than the product's cap, so that the
    /// catch-up takes a few runs rather than one per 100 repositories (what is checked there is
    /// that nothing is lost or triggered twice across runs, not the pace).
    #[arg(long, default_value_t = 1000)]
    catch_up_max: usize,
}

/// The simulator's control API, over HTTP.
struct SimControl {
    url: String,
    http: reqwest::Client,
}

impl SimControl {
    async fn get(&self, path: &str) -> Result<Value> {
        Ok(self
            .http
            .get(format!("{}{path}", self.url))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?)
    }

    async fn post(&self, path: &str, body: Value) -> Result<Value> {
        Ok(self
            .http
            .post(format!("{}{path}", self.url))
            .json(&body)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?)
    }

    async fn set_latency(&self, ms: u64) -> Result<()> {
        self.post("/_sim/faults", json!({"latencyMs": ms})).await?;
        Ok(())
    }

    /// The requests since the last reset, then a reset.
    async fn take_log(&self) -> Result<Vec<(String, String)>> {
        let log = self.get("/_sim/requests").await?;
        ensure!(
            log["dropped"].as_u64() == Some(0),
            "the simulator dropped {} log entries: raise --request-log-capacity",
            log["dropped"]
        );
        self.post("/_sim/reset-log", json!({})).await?;
        Ok(log["requests"]
            .as_array()
            .context("no request list")?
            .iter()
            .map(|r| {
                (
                    r["method"].as_str().unwrap_or_default().to_string(),
                    r["path"].as_str().unwrap_or_default().to_string(),
                )
            })
            .collect())
    }
}

/// What kind of DevLake request: the pages that grow with the data, the fixed discovery reads,
/// the writes.
fn kind(method: &str, path: &str) -> &'static str {
    let path = path.split('?').next().unwrap_or("");
    match (method, path) {
        ("GET", p) if p.ends_with("/remote-scopes") => "page: remote scopes",
        ("GET", p) if p.ends_with("/scopes") => "page: scopes",
        ("GET", "/projects") => "page: projects",
        ("GET", "/pipelines") => "page: pending pipelines",
        ("GET", p) if p.ends_with("/scope-configs") => "read: scope configs",
        ("GET", p) if p.ends_with("/connections") => "read: connections",
        ("GET", "/plugins") => "read: plugins",
        ("GET", "/version") => "read: version",
        ("GET", _) => "read: other",
        // DevLake's connection test changes nothing (the automation counts it as a read).
        ("POST", p) if p.ends_with("/test") => "read: connection test",
        ("POST", p) if p.ends_with("/trigger") => "write: trigger",
        ("PUT", _) => "write: PUT scopes",
        ("POST", "/projects") => "write: POST projects",
        ("POST", p) if p.ends_with("/scope-configs") => "write: POST scope-configs",
        ("PATCH", _) => "write: PATCH",
        _ => "write: other",
    }
}

/// One run's figures.
struct Run {
    label: String,
    wall: Duration,
    status: String,
    remaining_triggers: u64,
    triggered: u64,
    created: u64,
    reads: usize,
    writes: usize,
    page_reads: usize,
    by_kind: BTreeMap<&'static str, usize>,
    peak_rss_kb: u64,
}

async fn run(
    label: &str,
    process: &mut LambdaProcess,
    sim: &SimControl,
    triggers: &mut HashMap<u64, usize>,
) -> Result<Run> {
    let invocation = process.invoke(&json!({})).await?;
    let body = match &invocation.outcome {
        Ok(body) => body,
        Err(error) => bail!("{label}: the run failed: {error}"),
    };
    let summary: Value = serde_json::from_str(body).context("the answer is not JSON")?;
    let log = sim.take_log().await?;
    let mut by_kind: BTreeMap<&'static str, usize> = BTreeMap::new();
    for (method, path) in &log {
        *by_kind.entry(kind(method, path)).or_default() += 1;
        if method == "POST" && path.ends_with("/trigger") {
            let id = path
                .trim_end_matches("/trigger")
                .rsplit('/')
                .next()
                .and_then(|id| id.parse().ok())
                .context("a trigger path without a blueprint id")?;
            *triggers.entry(id).or_default() += 1;
        }
    }
    let count = |prefix: &str| {
        by_kind
            .iter()
            .filter(|(k, _)| k.starts_with(prefix))
            .map(|(_, n)| n)
            .sum::<usize>()
    };
    Ok(Run {
        label: label.to_string(),
        wall: invocation.duration,
        status: summary["status"].as_str().unwrap_or("?").to_string(),
        // Blueprints not triggered in this run (the cap: reason `maxPerRun`, left to the next).
        remaining_triggers: summary["counts"]["skipped"].as_u64().unwrap_or(0),
        triggered: summary["counts"]["triggered"].as_u64().unwrap_or(0),
        created: summary["counts"]["projectsCreated"].as_u64().unwrap_or(0),
        reads: count("page:") + count("read:"),
        writes: count("write:"),
        page_reads: count("page:"),
        by_kind,
        peak_rss_kb: process.peak_rss_kb().unwrap_or(0),
    })
}

fn print(run: &Run) {
    println!(
        "{:<34} {:>8.1} s {:>8} {:>8} {:>8} {:>7} {:>7} {:>9} {:>8.1} MB",
        run.label,
        run.wall.as_secs_f64(),
        run.status,
        run.created,
        run.triggered,
        run.reads,
        run.writes,
        run.remaining_triggers,
        run.peak_rss_kb as f64 / 1024.0
    );
}

fn bin_dir(args: &Args) -> Result<PathBuf> {
    if let Some(dir) = &args.bin_dir {
        return Ok(dir.clone());
    }
    let exe = std::env::current_exe()?;
    Ok(exe
        .parent()
        .and_then(|p| p.parent())
        .context("no target directory")?
        .join("release"))
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let binary = bin_dir(&args)?.join("devlake-automation");
    ensure!(
        binary.is_file(),
        "{} not found: cargo build --release --bin devlake-automation, or pass --bin-dir",
        binary.display()
    );
    let per_connection = args.repos / args.connections.max(1);
    let repos = per_connection * args.connections;
    let sim = ExternalSim::spawn(&[
        "--generate",
        "automation-bench",
        "--gen-connections",
        &args.connections.to_string(),
        "--gen-repos-per-connection",
        &per_connection.to_string(),
        "--gen-groups",
        &args.groups.to_string(),
        "--latency-ms",
        &args.latency_ms.to_string(),
        "--auto-complete-ms",
        "1000",
        "--request-log-capacity",
        "1000000",
    ])?;
    let control = SimControl {
        url: sim.url().to_string(),
        http: reqwest::Client::new(),
    };
    let local = dynamodb_local().await;
    let table = local.create_table("bench-automation-scale").await;
    let cloudwatch = CloudWatchDouble::start().await;

    let mut env: Vec<(String, String)> = [
        ("DEVLAKE_ENDPOINT", sim.url()),
        ("ALLOW_INSECURE_HTTP", "true"),
        ("TABLE_NAME", table.as_str()),
        ("AWS_ENDPOINT_URL_DYNAMODB", local.endpoint()),
        ("AWS_ENDPOINT_URL_CLOUDWATCH", cloudwatch.url()),
        ("CLOUDWATCH_NAMESPACE", "Bench/AutomationScale"),
    ]
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .to_vec();
    if let Some(gap) = args.trigger_gap_ms {
        env.push(("TRIGGER_GAP_MS".into(), gap.to_string()));
    }
    if let Some(max) = args.trigger_max {
        env.push(("TRIGGER_MAX_PER_RUN".into(), max.to_string()));
    }
    let memory = function_memory_mb("AutomationFunction")?;
    let timeout = Duration::from_secs(function_timeout_s("AutomationFunction")?);
    println!(
        "bench-automation-scale: {repos} repositories over {} GitHub connections ({} groups each), {} ms DevLake latency, trigger gap {}, cap {}, timeout {} s, {} MB",
        args.connections,
        args.groups,
        args.latency_ms,
        args.trigger_gap_ms
            .map_or("default".to_string(), |g| format!("{g} ms")),
        args.trigger_max
            .map_or("default".to_string(), |m| m.to_string()),
        timeout.as_secs(),
        memory
    );

    let mut triggers: HashMap<u64, usize> = HashMap::new();
    let mut process =
        LambdaProcess::spawn(&binary, "devlake-automation", memory, timeout, &env).await?;
    process.ready(Duration::from_secs(30)).await?;
    control.take_log().await?;
    let first = run("first run", &mut process, &control, &mut triggers).await?;
    let second = run("second run", &mut process, &control, &mut triggers).await?;
    process.stop().await;

    // Catch-up: only what the runs do matters here, so no pacing and no latency.
    control.set_latency(0).await?;
    let mut catch_up_env = env.clone();
    catch_up_env.retain(|(k, _)| k != "TRIGGER_GAP_MS" && k != "TRIGGER_MAX_PER_RUN");
    catch_up_env.push(("TRIGGER_GAP_MS".into(), "0".into()));
    catch_up_env.push(("TRIGGER_MAX_PER_RUN".into(), args.catch_up_max.to_string()));
    let mut catch_up = LambdaProcess::spawn(
        &binary,
        "devlake-automation",
        memory,
        timeout,
        &catch_up_env,
    )
    .await?;
    catch_up.ready(Duration::from_secs(30)).await?;
    let mut catch_up_runs = 0usize;
    let mut catch_up_created = 0u64;
    let mut catch_up_other_writes = 0usize;
    let mut remaining = second.remaining_triggers;
    while remaining > 0 {
        ensure!(
            catch_up_runs < args.max_catch_up_runs,
            "still {remaining} triggers left after {catch_up_runs} catch-up runs"
        );
        // Let the last batch's pipelines finish, as they would by the next day.
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let r = run("catch-up", &mut catch_up, &control, &mut triggers).await?;
        catch_up_runs += 1;
        catch_up_created += r.created;
        catch_up_other_writes += r.writes - r.by_kind.get("write: trigger").copied().unwrap_or(0);
        ensure!(
            r.remaining_triggers < remaining || r.triggered > 0,
            "a catch-up run made no progress ({} triggers left)",
            r.remaining_triggers
        );
        remaining = r.remaining_triggers;
    }
    catch_up.stop().await;

    control.set_latency(args.latency_ms).await?;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let mut process =
        LambdaProcess::spawn(&binary, "devlake-automation", memory, timeout, &env).await?;
    process.ready(Duration::from_secs(30)).await?;
    let steady = run(
        "steady run (after catch-up)",
        &mut process,
        &control,
        &mut triggers,
    )
    .await?;
    process.stop().await;

    println!(
        "\n{:<34} {:>10} {:>8} {:>8} {:>8} {:>7} {:>7} {:>9} {:>11}",
        "run", "wall", "status", "created", "trig'd", "reads", "writes", "left", "peak RSS"
    );
    for r in [&first, &second, &steady] {
        print(r);
    }
    println!(
        "catch-up: {catch_up_runs} runs (no pacing, no latency, cap {}), {catch_up_created} projects created, {catch_up_other_writes} writes other than triggers",
        args.catch_up_max
    );
    for r in [&first, &second, &steady] {
        println!("\n{} — DevLake requests by kind:", r.label);
        for (k, n) in &r.by_kind {
            println!("  {k:<28} {n}");
        }
    }

    let twice = triggers.values().filter(|n| **n > 1).count();
    let blueprints = control.get("/_sim/state").await?["blueprints"]
        .as_u64()
        .unwrap_or(0) as usize;
    let checks = [
        (
            "first run completes within one invocation (< 10 min) or leaves the rest to later runs".to_string(),
            first.wall < Duration::from_secs(600)
                && (first.status == "ok" || first.remaining_triggers > 0),
        ),
        (
            format!(
                "nothing lost: every one of {repos} repositories has a project ({blueprints} blueprints), each triggered exactly once ({} triggered, {twice} twice)",
                triggers.len()
            ),
            blueprints == repos && triggers.len() == repos && twice == 0,
        ),
        (
            format!(
                "peak RSS < 128 MB ({:.1} MB)",
                first.peak_rss_kb.max(second.peak_rss_kb) as f64 / 1024.0
            ),
            first.peak_rss_kb.max(second.peak_rss_kb).max(steady.peak_rss_kb) < 128 * 1024,
        ),
        (
            format!(
                "second run creates nothing, writes only triggers ({} writes, {} triggers)",
                second.writes, second.triggered
            ),
            second.created == 0
                && second.writes == second.by_kind.get("write: trigger").copied().unwrap_or(0),
        ),
        (
            format!(
                "steady run writes nothing and reads only pages plus fixed discovery ({} writes, {} reads of which {} pages)",
                steady.writes, steady.reads, steady.page_reads
            ),
            steady.writes == 0 && !steady.by_kind.contains_key("read: other"),
        ),
    ];
    println!();
    for (target, met) in checks {
        println!("target {target}: {}", if met { "met" } else { "MISSED" });
    }
    Ok(())
}
