//! The DynamoDB adapter. Items are the serde (camelCase) form of the types in `store`, written with
//! `serde_dynamo`, plus the key attributes `pk`/`sk` and, on failure events only, `expiresAt`
//! (epoch seconds, the table's TTL attribute). Readers ignore attributes they do not know.

use aws_sdk_dynamodb::Client;
use chrono::{DateTime, NaiveDate, SecondsFormat, Utc};

/// Partition and sort key of every item kind (see the table layout in `store`).
pub mod keys {
    use super::*;

    pub const PK: &str = "pk";
    pub const SK: &str = "sk";
    pub const EXPIRES_AT: &str = "expiresAt";

    pub const PROJECT_PK: &str = "PROJECT";
    pub const MONITOR_PK: &str = "MONITOR";
    pub const CURSOR_SK: &str = "CURSOR";
    pub const RUN_PK: &str = "RUN";
    pub const BLUEPRINT_PK: &str = "BLUEPRINT";
    pub const RERUN_PK: &str = "RERUN";

    /// `FAILURE#<YYYY-MM-DD>` of the UTC day a failure finished.
    pub fn failure_pk(day: NaiveDate) -> String {
        format!("FAILURE#{}", day.format("%Y-%m-%d"))
    }

    /// `<finishedAt RFC3339 millis Z>#<pipelineId>`: sorts by time within a day.
    pub fn failure_sk(finished_at: DateTime<Utc>, pipeline_id: u64) -> String {
        format!(
            "{}#{}",
            finished_at.to_rfc3339_opts(SecondsFormat::Millis, true),
            pipeline_id
        )
    }

    /// Blueprint ids zero-padded so they sort numerically.
    pub fn blueprint_sk(id: u64) -> String {
        format!("{id:020}")
    }
}

/// The table, reached through one SDK client built at cold start.
#[derive(Clone, Debug)]
pub struct DynamoStore {
    pub(crate) client: Client,
    pub(crate) table: String,
}

impl DynamoStore {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        DynamoStore { client, table: table.into() }
    }

    pub fn table(&self) -> &str {
        &self.table
    }
}
