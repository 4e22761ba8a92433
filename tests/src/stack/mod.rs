//! The local stack tests run on: one DynamoDB Local per test process, SDK configuration for local
//! servers, and the table created from its one definition in `template.yaml`.
//!
//! The pieces: `table` reads a table's definition from the template and creates it, `dynamodb`
//! runs the shared DynamoDB Local, and `process` ties the local servers' processes to the test
//! process (the lambda watcher uses it too).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use aws_sdk_dynamodb::config::timeout::TimeoutConfig;
use aws_sdk_dynamodb::config::{BehaviorVersion, Credentials, Region, SharedCredentialsProvider};

mod dynamodb;
mod process;
mod table;

pub use dynamodb::{dynamodb_local, dynamodb_local_dir, DynamoLocal};
pub(crate) use process::{die_with_parent, owned_temp_dir, spawn_supervised};
pub use table::{
    load_template, state_table_definition, table_definition_from_template, TableDefinition,
};

/// The workspace root (the directory holding `template.yaml`).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate lives one level below the workspace root")
        .to_path_buf()
}

/// SDK configuration for a local server: fixed region, dummy static credentials (local servers
/// accept any signature), the endpoint, and explicit timeouts because the SDK has none by default.
/// Nothing is read from the environment or `~/.aws`, so a developer's AWS setup cannot leak in.
pub fn local_sdk_config(endpoint: &str) -> aws_config::SdkConfig {
    aws_config::SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(SharedCredentialsProvider::new(Credentials::new(
            "AKIDLOCAL",
            "local-secret",
            None,
            None,
            "devlake-testkit",
        )))
        .endpoint_url(endpoint)
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(3))
                .operation_attempt_timeout(Duration::from_secs(20))
                .operation_timeout(Duration::from_secs(60))
                .build(),
        )
        .build()
}

/// A port that was free a moment ago.
pub fn free_port() -> Result<u16> {
    let listener =
        std::net::TcpListener::bind("127.0.0.1:0").context("cannot bind a free local port")?;
    Ok(listener.local_addr()?.port())
}
