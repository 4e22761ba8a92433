//! `aws-recorder`: the recording AWS proxy as a standalone server, and the IAM check of what it
//! recorded, for the local demo.
//!
//! `aws-recorder serve --dynamodb URL --cloudwatch URL [--secretsmanager URL]` listens on one port;
//! point the functions' `AWS_ENDPOINT_URL_*` at it. Before invoking a function, name it with
//! `PUT /_recorder/function` (body: the binary name, e.g. `devlake-monitor`): the functions share one
//! environment under `cargo lambda watch`, so calls are attributed to the function being invoked.
//!
//! `aws-recorder check --url URL --table NAME` reads the calls back and authorises each against the
//! role of the function (found by its binary name in `template.yaml`); it exits with 1 when a call
//! is not allowed.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::process::ExitCode;

use anyhow::{anyhow, Context, Result};
use clap::{Parser, Subcommand};
use devlake_testkit::aws_recorder::{AwsRecorder, RecordedCall, Upstreams};
use devlake_testkit::iam_policy::{check, Deployment};
use devlake_testkit::stack::{load_template, repo_root};
use serde_norway::Value;

#[derive(Parser)]
#[command(about = "Recording AWS proxy and IAM check of the recorded calls")]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the proxy until Ctrl-C.
    Serve {
        /// Port on 127.0.0.1 (0 picks a free one)
        #[arg(long, default_value_t = 0)]
        port: u16,
        #[arg(long)]
        dynamodb: Option<String>,
        #[arg(long)]
        cloudwatch: Option<String>,
        #[arg(long)]
        secretsmanager: Option<String>,
    },
    /// Authorise every recorded call against the function's role in template.yaml.
    Check {
        /// The proxy's URL
        #[arg(long)]
        url: String,
        /// The table the functions used (stands for StateTable)
        #[arg(long)]
        table: String,
        /// The functions' CloudWatch namespace (the CloudWatchNamespace parameter)
        #[arg(long, default_value = "DevLake/Autopilot")]
        namespace: String,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    match run(Args::parse()).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("aws-recorder: {e:#}");
            ExitCode::from(2)
        }
    }
}

async fn run(args: Args) -> Result<ExitCode> {
    match args.command {
        Command::Serve {
            port,
            dynamodb,
            cloudwatch,
            secretsmanager,
        } => {
            let recorder = AwsRecorder::new(Upstreams {
                dynamodb,
                cloudwatch,
                secretsmanager,
            })?;
            let url = recorder
                .switchable_endpoint(SocketAddr::from(([127, 0, 0, 1], port)), "unattributed")
                .await?;
            println!("aws-recorder listening on {url}");
            tokio::signal::ctrl_c().await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Check {
            url,
            table,
            namespace,
        } => check_recorded(&url, &table, &namespace).await,
    }
}

async fn check_recorded(url: &str, table: &str, namespace: &str) -> Result<ExitCode> {
    let mut calls: Vec<RecordedCall> = reqwest::Client::builder()
        .no_proxy()
        .build()?
        .get(format!("{url}/_recorder/calls"))
        .send()
        .await
        .and_then(|r| r.error_for_status())
        .with_context(|| format!("cannot read the calls from {url}"))?
        .json()
        .await?;
    let template = load_template(&repo_root().join("template.yaml"))?;
    let binaries = function_binaries(&template);
    for call in &mut calls {
        call.function = binaries
            .get(&call.function)
            .cloned()
            .ok_or_else(|| {
                anyhow!(
                    "a {} call was made while {:?} was named, which is no function binary of template.yaml",
                    call.operation,
                    call.function
                )
            })?;
    }
    let functions: BTreeSet<&str> = calls.iter().map(|c| c.function.as_str()).collect();
    let functions: Vec<&str> = functions.into_iter().collect();
    let deployment = Deployment::new("us-east-1", "123456789012", "devlake-autopilot-demo")
        .parameter("CloudWatchNamespace", namespace)
        .physical("StateTable", table);
    let report = check(&template, &deployment, &functions, &calls)?;
    for function in &functions {
        let ops: BTreeSet<String> = calls
            .iter()
            .filter(|c| c.function == *function)
            .map(|c| format!("{}:{}", c.service.iam_prefix(), c.operation))
            .collect();
        let n = calls.iter().filter(|c| c.function == *function).count();
        println!(
            "{function}: {n} AWS calls ({})",
            ops.into_iter().collect::<Vec<_>>().join(", ")
        );
    }
    if !report.denied.is_empty() {
        println!("calls the roles in template.yaml do not allow:");
        for d in &report.denied {
            println!("  {d}");
        }
        return Ok(ExitCode::FAILURE);
    }
    println!(
        "every AWS call is allowed by its function's role in template.yaml ({} calls)",
        calls.len()
    );
    Ok(ExitCode::SUCCESS)
}

/// Binary name (`Metadata.BuildProperties.Binary`) → logical id of each function.
fn function_binaries(template: &Value) -> BTreeMap<String, String> {
    template
        .get("Resources")
        .and_then(Value::as_mapping)
        .into_iter()
        .flatten()
        .filter_map(|(id, res)| {
            let binary = res
                .get("Metadata")?
                .get("BuildProperties")?
                .get("Binary")?
                .as_str()?;
            Some((binary.to_string(), id.as_str()?.to_string()))
        })
        .collect()
}
