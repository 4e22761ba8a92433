//! `bench-cold-start`: what a cold start of each function binary costs, against a warm invocation
//! of the same process.
//!
//! Each function binary is started the way Lambda starts it, against a local Runtime API
//! (`devlake_testkit::runtime_api`), with the environment the template gives it: DevLake over
//! HTTPS behind a private CA (`DEVLAKE_CA_BUNDLE`, a file), its API key and the metrics token read
//! from Secrets Manager (a local double), DynamoDB Local and the CloudWatch double. Per start:
//!
//! * init: spawn → the first `GET /runtime/invocation/next`;
//! * first invocation: event handed over → answer (builds connections, the first TLS handshake
//!   with DevLake, the first DynamoDB and CloudWatch calls);
//! * warm invocation: the same event again in the same process (the last of `--warm`).
//!
//! The automation and the monitor are brought to steady state first (one unmeasured run each), so
//! the first and the warm invocation do the same work. The figures are p50 / p95 over `--starts`
//! starts, checked against the budgets: init p95 < 20 ms; the first invocation at most twice a
//! warm one plus 50 ms (p50 and p95).
//!
//! ```text
//! bash infra/local/bench-size.sh          # builds each function binary into target/release
//! cargo build --profile perf --bin bench-cold-start
//! eval "$(bash infra/local/setup.sh --env)"; target/perf/bench-cold-start [--starts 20] [--bin-dir target/release]
//! ```

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use clap::Parser;
use devlake_autopilot::events::{NotificationSecret, NONCE_KEY, SIGN_KEY};
use devlake_testkit::bench::{function_memory_mb, function_timeout_s, quantile};
use devlake_testkit::cloudwatch_double::CloudWatchDouble;
use devlake_testkit::pki::private_ca;
use devlake_testkit::runtime_api::{Invocation, LambdaProcess};
use devlake_testkit::secrets_manager::LocalSecretsManager;
use devlake_testkit::sim::{Fixture, SimOptions, Simulator};
use devlake_testkit::stack::dynamodb_local;
use serde_json::{json, Value};

#[derive(Parser)]
#[command(about = "Cold start of each function binary against a local Lambda Runtime API")]
struct Args {
    /// Process starts per function.
    #[arg(long, default_value_t = 20)]
    starts: usize,
    /// Warm invocations after the first one in each process; the last one is reported.
    #[arg(long, default_value_t = 2)]
    warm: usize,
    /// Where the function binaries are (default: `release` next to this binary's profile dir).
    #[arg(long)]
    bin_dir: Option<PathBuf>,
    /// Functions to measure.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "automation,monitor,metrics,events"
    )]
    functions: Vec<String>,
    /// Latency the simulator adds to every DevLake request.
    #[arg(long, default_value_t = 0)]
    latency_ms: u64,
    /// Give the API key and the metrics token as plain variables instead of Secrets Manager
    /// ARNs (as deployed), to see what reading the secret at start-up costs.
    #[arg(long)]
    plain_secrets: bool,
}

const API_KEY: &str = "dlk-bench-cold-start";
const API_KEY_ARN: &str =
    "arn:aws:secretsmanager:us-east-1:123456789012:secret:devlake/api-key-AbCdEf";
const TOKEN: &str = "bench-metrics-token-0123456789abcdef";
const TOKEN_ARN: &str =
    "arn:aws:secretsmanager:us-east-1:123456789012:secret:devlake/metrics-token-GhIjKl";

/// A function as the template deploys it.
struct Function {
    short: &'static str,
    binary: &'static str,
    logical_id: &'static str,
}

const NOTIFICATION_SECRET: &str = "bench-notification-secret";
const NOTIFICATION_SECRET_ARN: &str =
    "arn:aws:secretsmanager:us-east-1:123456789012:secret:devlake/notification-secret-MnOpQr";

const FUNCTIONS: [Function; 4] = [
    Function {
        short: "automation",
        binary: "devlake-automation",
        logical_id: "AutomationFunction",
    },
    Function {
        short: "monitor",
        binary: "devlake-monitor",
        logical_id: "MonitorFunction",
    },
    Function {
        short: "metrics",
        binary: "devlake-metrics",
        logical_id: "MetricsFunction",
    },
    Function {
        short: "events",
        binary: "devlake-events",
        logical_id: "EventsFunction",
    },
];

/// The local stack every start talks to.
struct Stack {
    _sim: Simulator,
    _cloudwatch: CloudWatchDouble,
    _secrets: LocalSecretsManager,
    _dir: tempfile::TempDir,
    common: Vec<(String, String)>,
}

async fn stack(latency: Duration) -> Result<Stack> {
    let pki = private_ca("devlake-autopilot bench CA");
    let sim = Simulator::try_start_with(
        Fixture::sample(),
        SimOptions {
            tls: Some(pki.server.clone()),
            api_key: Some(API_KEY.into()),
            latency,
            ..SimOptions::default()
        },
    )
    .await?;
    let dir = tempfile::tempdir()?;
    let ca_path = dir.path().join("devlake-ca.pem");
    std::fs::write(&ca_path, &pki.ca_pem)?;
    let local = dynamodb_local().await;
    let table = local.create_table("bench-cold-start").await;
    let cloudwatch = CloudWatchDouble::start().await;
    let secrets = LocalSecretsManager::start().await;
    secrets.set_string(API_KEY_ARN, API_KEY);
    secrets.set_string(TOKEN_ARN, TOKEN);
    secrets.set_string(NOTIFICATION_SECRET_ARN, NOTIFICATION_SECRET);
    let common = [
        ("TABLE_NAME", table.as_str()),
        ("AWS_ENDPOINT_URL_DYNAMODB", local.endpoint()),
        ("AWS_ENDPOINT_URL_CLOUDWATCH", cloudwatch.url()),
        ("AWS_ENDPOINT_URL_SECRETS_MANAGER", secrets.url()),
        ("DEVLAKE_ENDPOINT", &format!("{}/rest", sim.url())),
        ("DEVLAKE_CA_BUNDLE", ca_path.to_str().context("temp path")?),
        ("CLOUDWATCH_NAMESPACE", "Bench/ColdStart"),
        // The sample's new projects are all triggered in the unmeasured first run (then they
        // stay pending, so later runs trigger nothing); the pacing is not what this measures.
        ("TRIGGER_GAP_MS", "0"),
        ("TRIGGER_MAX_PER_RUN", "1000"),
    ]
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .to_vec();
    Ok(Stack {
        _sim: sim,
        _cloudwatch: cloudwatch,
        _secrets: secrets,
        _dir: dir,
        common,
    })
}

/// The function's environment: what the template sets for it, pointed at the local stack.
fn env(function: &Function, stack: &Stack, plain_secrets: bool) -> Vec<(String, String)> {
    let mut env = stack.common.clone();
    let secret = match (function.short, plain_secrets) {
        ("metrics", false) => ("METRICS_TOKEN_SECRET_ARN", TOKEN_ARN),
        ("metrics", true) => ("METRICS_TOKEN", TOKEN),
        ("events", false) => ("NOTIFICATION_SECRET_ARN", NOTIFICATION_SECRET_ARN),
        ("events", true) => ("NOTIFICATION_SECRET", NOTIFICATION_SECRET),
        (_, false) => ("DEVLAKE_API_KEY_SECRET_ARN", API_KEY_ARN),
        (_, true) => ("DEVLAKE_API_KEY", API_KEY),
    };
    env.push((secret.0.to_string(), secret.1.to_string()));
    env
}

/// The event each invocation gets: the scheduler's for the jobs, a function URL request of
/// Prometheus for the metrics page.
fn payload(function: &Function) -> Value {
    match function.short {
        "metrics" => json!({
            "version": "2.0",
            "routeKey": "$default",
            "rawPath": "/metrics",
            "rawQueryString": "",
            "headers": {
                "authorization": format!("Bearer {TOKEN}"),
                "accept": "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5",
                "accept-encoding": "gzip",
                "host": "abcdef.lambda-url.us-east-1.on.aws",
                "user-agent": "Prometheus/3.0.0",
                "x-forwarded-proto": "https"
            },
            "requestContext": {
                "accountId": "anonymous",
                "apiId": "abcdef",
                "domainName": "abcdef.lambda-url.us-east-1.on.aws",
                "domainPrefix": "abcdef",
                "http": {
                    "method": "GET",
                    "path": "/metrics",
                    "protocol": "HTTP/1.1",
                    "sourceIp": "127.0.0.1",
                    "userAgent": "Prometheus/3.0.0"
                },
                "requestId": "bench",
                "routeKey": "$default",
                "stage": "$default",
                "time": "01/Jan/2026:00:00:00 +0000",
                "timeEpoch": 1767225600000u64
            },
            "isBase64Encoded": false
        }),
        "events" => events_request(),
        _ => json!({}),
    }
}

/// A function URL request as DevLake sends a notification: a pipeline that started, signed with
/// the notification secret. The same notification again is recorded again (its newest state),
/// so every invocation does the same work.
fn events_request() -> Value {
    let body = json!({
        "ProjectName": "bench-project",
        "PipelineID": 4242,
        "CreatedAt": "2026-01-01T00:00:00Z",
        "UpdatedAt": "2026-01-01T00:00:05Z",
        "BeganAt": "2026-01-01T00:00:05Z",
        "Status": "TASK_RUNNING"
    })
    .to_string();
    let nonce = "17-bench";
    let sign = NotificationSecret::new(NOTIFICATION_SECRET)
        .expect("a valid secret")
        .sign(body.as_bytes(), nonce);
    let query = format!("{NONCE_KEY}={nonce}&{SIGN_KEY}={sign}");
    json!({
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": "/",
        "rawQueryString": query,
        "queryStringParameters": {NONCE_KEY: nonce, SIGN_KEY: sign},
        "headers": {
            "content-type": "application/json",
            "host": "ghijkl.lambda-url.us-east-1.on.aws",
            "user-agent": "Go-http-client/1.1",
            "x-forwarded-proto": "https"
        },
        "requestContext": {
            "accountId": "anonymous",
            "apiId": "ghijkl",
            "domainName": "ghijkl.lambda-url.us-east-1.on.aws",
            "domainPrefix": "ghijkl",
            "http": {
                "method": "POST",
                "path": "/",
                "protocol": "HTTP/1.1",
                "sourceIp": "127.0.0.1",
                "userAgent": "Go-http-client/1.1"
            },
            "requestId": "bench",
            "routeKey": "$default",
            "stage": "$default",
            "time": "01/Jan/2026:00:00:00 +0000",
            "timeEpoch": 1767225600000u64
        },
        "body": body,
        "isBase64Encoded": false
    })
}

/// The answer must be what the function answers on success.
fn check(function: &Function, invocation: &Invocation) -> Result<()> {
    let body = match &invocation.outcome {
        Ok(body) => body,
        Err(error) => bail!("{}: the invocation failed: {error}", function.short),
    };
    let value: Value = serde_json::from_str(body)
        .with_context(|| format!("{}: the answer is not JSON", function.short))?;
    match function.short {
        "metrics" | "events" => ensure!(
            value["statusCode"]
                .as_u64()
                .is_some_and(|s| (200..300).contains(&s)),
            "{}: status {} {}",
            function.short,
            value["statusCode"],
            value["body"]
        ),
        _ => ensure!(
            value["status"] == "ok",
            "{}: run status {}",
            function.short,
            value["status"]
        ),
    }
    Ok(())
}

/// One start: init, the first invocation, the warm ones.
struct Start {
    init: Duration,
    first: Duration,
    warm: Duration,
    peak_rss_kb: u64,
}

async fn start(
    function: &Function,
    binary: &Path,
    stack: &Stack,
    invocations: usize,
    plain_secrets: bool,
) -> Result<Start> {
    let memory = function_memory_mb(function.logical_id)?;
    let timeout = Duration::from_secs(function_timeout_s(function.logical_id)?);
    let mut process = LambdaProcess::spawn(
        binary,
        function.binary,
        memory,
        timeout,
        &env(function, stack, plain_secrets),
    )
    .await?;
    let init = process.ready(Duration::from_secs(30)).await?;
    let mut times = Vec::new();
    for _ in 0..invocations {
        let invocation = process.invoke(&payload(function)).await?;
        check(function, &invocation)?;
        times.push(invocation.duration);
    }
    let peak_rss_kb = process.peak_rss_kb().unwrap_or(0);
    process.stop().await;
    Ok(Start {
        init,
        first: times[0],
        warm: *times.last().expect("at least one invocation"),
        peak_rss_kb,
    })
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn bin_dir(args: &Args) -> Result<PathBuf> {
    if let Some(dir) = &args.bin_dir {
        return Ok(dir.clone());
    }
    let exe = std::env::current_exe()?;
    let profile_dir = exe.parent().context("no directory")?;
    Ok(profile_dir
        .parent()
        .context("no target directory")?
        .join("release"))
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    ensure!(args.starts > 0, "--starts must be at least 1");
    let dir = bin_dir(&args)?;
    let functions: Vec<&Function> = args
        .functions
        .iter()
        .map(|name| {
            FUNCTIONS
                .iter()
                .find(|f| f.short == name)
                .with_context(|| format!("unknown function {name}"))
        })
        .collect::<Result<_>>()?;
    for f in &functions {
        let path = dir.join(f.binary);
        ensure!(
            path.is_file(),
            "{} not found: build the functions first (bash infra/local/bench-size.sh) or pass --bin-dir",
            path.display()
        );
    }
    let stack = stack(Duration::from_millis(args.latency_ms)).await?;

    // Steady state: the automation creates the sample's projects and triggers them, the monitor
    // makes its first pass. Later runs repeat the same reads.
    for f in &functions {
        if matches!(f.short, "automation" | "monitor") {
            start(f, &dir.join(f.binary), &stack, 1, args.plain_secrets)
                .await
                .with_context(|| format!("{}: the unmeasured first run", f.short))?;
        }
    }

    let mut results: Vec<Vec<Start>> = functions.iter().map(|_| Vec::new()).collect();
    for round in 0..args.starts {
        for (f, out) in functions.iter().zip(results.iter_mut()) {
            let s = start(
                f,
                &dir.join(f.binary),
                &stack,
                1 + args.warm.max(1),
                args.plain_secrets,
            )
            .await
            .with_context(|| format!("{}: start {}", f.short, round + 1))?;
            out.push(s);
        }
    }

    println!(
        "bench-cold-start: {} starts per function, binaries from {}, DevLake over HTTPS ({} ms latency), secrets {}",
        args.starts,
        dir.display(),
        args.latency_ms,
        if args.plain_secrets {
            "as plain variables"
        } else {
            "from Secrets Manager"
        }
    );
    println!(
        "{:<11} {:>17} {:>19} {:>17} {:>19} {:>9}",
        "function",
        "init p50/p95",
        "first p50/p95",
        "warm p50/p95",
        "first−warm p50/p95",
        "peak RSS"
    );
    let mut verdicts = Vec::new();
    for (f, starts) in functions.iter().zip(&results) {
        let init: Vec<f64> = starts.iter().map(|s| ms(s.init)).collect();
        let first: Vec<f64> = starts.iter().map(|s| ms(s.first)).collect();
        let warm: Vec<f64> = starts.iter().map(|s| ms(s.warm)).collect();
        let extra: Vec<f64> = starts.iter().map(|s| ms(s.first) - ms(s.warm)).collect();
        let rss = starts.iter().map(|s| s.peak_rss_kb).max().unwrap_or(0);
        let p = |v: &[f64]| (quantile(v, 0.5), quantile(v, 0.95));
        let (i50, i95) = p(&init);
        let (f50, f95) = p(&first);
        let (w50, w95) = p(&warm);
        let (e50, e95) = p(&extra);
        println!(
            "{:<11} {:>7.1} / {:>6.1} ms {:>8.1} / {:>7.1} ms {:>7.1} / {:>6.1} ms {:>8.1} / {:>7.1} ms {:>6.1} MB",
            f.short,
            i50,
            i95,
            f50,
            f95,
            w50,
            w95,
            e50,
            e95,
            rss as f64 / 1024.0
        );
        verdicts.push((format!("{} init p95 < 20 ms", f.short), i95 < 20.0));
        verdicts.push((
            format!(
                "{} first ≤ 2 × warm + 50 ms (p50 {f50:.1} ≤ {:.1}, p95 {f95:.1} ≤ {:.1})",
                f.short,
                2.0 * w50 + 50.0,
                2.0 * w95 + 50.0
            ),
            f50 <= 2.0 * w50 + 50.0 && f95 <= 2.0 * w95 + 50.0,
        ));
        if e50 > 500.0 {
            println!(
                "  {}: the first invocation is {e50:.0} ms slower than a warm one: does a binary link aws-lc again (jitter-entropy seeding on the first handshake)?",
                f.short
            );
        }
    }
    for (target, met) in verdicts {
        println!("target {target}: {}", if met { "met" } else { "MISSED" });
    }
    Ok(())
}
