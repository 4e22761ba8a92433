//! `create-table --endpoint URL --table NAME`: creates the state table from its definition in
//! template.yaml (used by the local demo against DynamoDB Local).

use std::path::PathBuf;

use anyhow::Result;
use clap::Parser;
use devlake_testkit::stack::{local_sdk_config, repo_root, table_definition_from_template};

#[derive(Parser)]
#[command(about = "Create the DynamoDB table of template.yaml on a local DynamoDB")]
struct Args {
    /// DynamoDB endpoint, e.g. http://127.0.0.1:8000
    #[arg(long)]
    endpoint: String,
    /// Name of the table to create
    #[arg(long)]
    table: String,
    /// Template to read the definition from
    #[arg(long, default_value_os_t = repo_root().join("template.yaml"))]
    template: PathBuf,
    /// Resource holding the table definition
    #[arg(long, default_value = "StateTable")]
    resource: String,
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let definition = table_definition_from_template(&args.template, &args.resource)?;
    let client = aws_sdk_dynamodb::Client::new(&local_sdk_config(&args.endpoint));
    definition.create(&client, &args.table).await?;
    println!("created table {} at {}", args.table, args.endpoint);
    Ok(())
}
