//! Standalone DevLake simulator for the local demo and shell scripts.
//!
//! `devlake-sim --port N --fixture FILE [--api-key KEY] [--latency-ms N] [--tls-cert PEM --tls-key PEM]
//! [--notification-endpoint URL]` (with `NOTIFICATION_SECRET` in the environment)
//! prints `devlake-sim listening on http://127.0.0.1:PORT` (`https://` with TLS) once ready; control it via `/_sim/...`.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use devlake_testkit::sim::{
    AutoComplete, Fixture, GeneratedSpec, NotificationSettings, SimOptions, SimTls, Simulator,
};

#[derive(Parser)]
#[command(name = "devlake-sim", about = "A stateful fake Apache DevLake server")]
struct Args {
    /// Port on 127.0.0.1 (0 = a free port).
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// Fixture JSON (see tests/src/sim/fixture.rs); omit for the built-in sample.
    #[arg(long)]
    fixture: Option<PathBuf>,
    /// Require `Authorization: Bearer KEY` under /rest/.
    #[arg(long)]
    api_key: Option<String>,
    /// Latency added to every DevLake request.
    #[arg(long, default_value_t = 0)]
    latency_ms: u64,
    /// Finish triggered pipelines by themselves after this many milliseconds.
    #[arg(long)]
    auto_complete_ms: Option<u64>,
    /// Status for --auto-complete-ms.
    #[arg(long, default_value = "TASK_COMPLETED")]
    auto_complete_status: String,
    /// Start in 428 "migration pending" mode.
    #[arg(long)]
    migration_pending: bool,
    /// Remote-scope page size (overrides the fixture).
    #[arg(long)]
    remote_page_size: Option<usize>,
    /// Serve a generated scenario instead of a fixture file: `automation-bench` (2,000 repos
    /// over 4 GitHub connections) or `monitor-bench` (10,000 blueprints, 100,000 pipelines).
    #[arg(long, conflicts_with = "fixture")]
    generate: Option<String>,
    /// With --generate: override the number of blueprints.
    #[arg(long)]
    gen_blueprints: Option<usize>,
    /// With --generate: override the number of historical pipelines.
    #[arg(long)]
    gen_pipelines: Option<usize>,
    /// Serve HTTPS with this PEM certificate chain (leaf first); needs --tls-key.
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// DevLake's NOTIFICATION_ENDPOINT: pipeline notifications are posted there, signed with
    /// the NOTIFICATION_SECRET environment variable (kept off the command line, like DevLake's
    /// `.env`). Also settable at run time: PUT /_sim/notifications.
    #[arg(long)]
    notification_endpoint: Option<String>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let fixture = match (&args.fixture, args.generate.as_deref()) {
        (Some(path), _) => Fixture::from_file(path)
            .with_context(|| format!("reading fixture {}", path.display()))?,
        (None, Some(kind)) => {
            let mut spec = match kind {
                "automation-bench" => GeneratedSpec::automation_bench(),
                "monitor-bench" => GeneratedSpec::monitor_bench(),
                other => anyhow::bail!(
                    "unknown --generate {other}: use automation-bench or monitor-bench"
                ),
            };
            if let Some(n) = args.gen_blueprints {
                spec.blueprints = n;
            }
            if let Some(n) = args.gen_pipelines {
                spec.pipelines = n;
            }
            Fixture::generated(spec)
        }
        (None, None) => Fixture::sample(),
    };
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(SimTls {
            cert_chain_pem: std::fs::read_to_string(cert)
                .with_context(|| format!("reading {}", cert.display()))?,
            key_pem: std::fs::read_to_string(key)
                .with_context(|| format!("reading {}", key.display()))?,
        }),
        _ => None,
    };
    let opts = SimOptions {
        tls,
        api_key: args.api_key,
        latency: Duration::from_millis(args.latency_ms),
        port: args.port,
        migration_pending: args.migration_pending,
        remote_page_size: args.remote_page_size,
        auto_complete: args.auto_complete_ms.map(|ms| AutoComplete {
            after: Duration::from_millis(ms),
            status: args.auto_complete_status.clone(),
        }),
        notifications: args
            .notification_endpoint
            .map(|endpoint| NotificationSettings {
                endpoint,
                secret: std::env::var("NOTIFICATION_SECRET").unwrap_or_default(),
            }),
        ..SimOptions::default()
    };
    let sim = Simulator::try_start_with(fixture, opts).await?;
    println!("devlake-sim listening on {}", sim.url());
    tokio::signal::ctrl_c()
        .await
        .context("waiting for ctrl-c")?;
    drop(sim);
    Ok(())
}
