//! `cloudwatch-double --port N`: the recording CloudWatch double as a standalone server for the
//! local demo. `GET /_recorded` returns the datums received so far as JSON; `DELETE /_recorded`
//! forgets them.

use std::net::SocketAddr;

use anyhow::Result;
use clap::Parser;
use devlake_testkit::cloudwatch_double::CloudWatchDouble;

#[derive(Parser)]
#[command(about = "Recording CloudWatch double (Smithy RPC v2 CBOR PutMetricData)")]
struct Args {
    /// Port on 127.0.0.1 (0 picks a free one)
    #[arg(long, default_value_t = 0)]
    port: u16,
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let double = CloudWatchDouble::start_on(SocketAddr::from(([127, 0, 0, 1], args.port))).await?;
    println!("cloudwatch-double listening on {}", double.url());
    tokio::signal::ctrl_c().await?;
    Ok(())
}
