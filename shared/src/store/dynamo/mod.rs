//! The DynamoDB adapter. Items are the serde (camelCase) form of the types in `store`, written with
//! `serde_dynamo`, plus the key attributes `pk`/`sk` and, on failure events only, `expiresAt`
//! (epoch seconds, the table's TTL attribute). PROJECT items are the exception: their state is
//! one JSON attribute beside the counter and the revision (see [`PROJECT_STATE`]). Readers ignore
//! attributes they do not know.
//!
//! This file holds the table handle, the key layout and the item encoding; the trait
//! implementations and the batch helpers live in the submodules.

use std::collections::{HashMap, HashSet};

use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::types::{
    AttributeValue, ConsumedCapacity, KeysAndAttributes, Put, PutRequest, ReturnConsumedCapacity,
    ReturnValue, ReturnValuesOnConditionCheckFailure, TransactWriteItem, Update, WriteRequest,
};
use aws_sdk_dynamodb::Client;
use chrono::{DateTime, NaiveDate, SecondsFormat, Utc};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::*;

mod batch;
mod events;
mod monitor;
mod run_log;

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
    /// `LEASE` / `<job>`: the run lease of a job.
    pub const LEASE_PK: &str = "LEASE";
    /// `EVENTS` / `RECEIVED`: the latest DevLake notification the events function accepted.
    pub const EVENTS_PK: &str = "EVENTS";
    pub const RECEIVED_SK: &str = "RECEIVED";
    /// `CONNECTION` / `HEALTH`: the automation's latest test of every connection.
    pub const CONNECTION_PK: &str = "CONNECTION";
    pub const HEALTH_SK: &str = "HEALTH";

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
    /// Where the last full read of the PROJECT partition would split it into ranges of about
    /// equal size (see `all_project_states`); empty until then. Shared by clones.
    pub(crate) project_splits: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    /// Capacity DynamoDB reported for this store's requests. Shared by clones.
    pub(crate) capacity: std::sync::Arc<std::sync::Mutex<CapacityUsed>>,
}

/// DynamoDB capacity units consumed, as DynamoDB reports them for each request
/// (`ReturnConsumedCapacity: TOTAL`). An on-demand table bills these as read and write request
/// units, so the cost of a run or a scrape is measured rather than estimated from item sizes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CapacityUsed {
    pub read_units: f64,
    pub write_units: f64,
}

impl CapacityUsed {
    /// What was consumed between `earlier` and `self` (two readings of one store).
    pub fn since(&self, earlier: CapacityUsed) -> CapacityUsed {
        CapacityUsed {
            read_units: self.read_units - earlier.read_units,
            write_units: self.write_units - earlier.write_units,
        }
    }
}

/// Whether a request reads or writes, for capacity DynamoDB reports without the split.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Access {
    Read,
    Write,
}

impl DynamoStore {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        DynamoStore {
            client,
            table: table.into(),
            project_splits: Default::default(),
            capacity: Default::default(),
        }
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    /// Capacity units consumed by this store (and its clones) so far.
    pub fn consumed_capacity(&self) -> CapacityUsed {
        self.capacity.lock().map(|c| *c).unwrap_or_default()
    }

    /// Adds what DynamoDB reported for one request.
    pub(crate) fn note_capacity<'a>(
        &self,
        access: Access,
        reported: impl IntoIterator<Item = &'a ConsumedCapacity>,
    ) {
        let Ok(mut total) = self.capacity.lock() else {
            return;
        };
        for c in reported {
            match (c.read_capacity_units, c.write_capacity_units) {
                (None, None) => {
                    let units = c.capacity_units.unwrap_or(0.0);
                    match access {
                        Access::Read => total.read_units += units,
                        Access::Write => total.write_units += units,
                    }
                }
                (read, write) => {
                    total.read_units += read.unwrap_or(0.0);
                    total.write_units += write.unwrap_or(0.0);
                }
            }
        }
    }
}

/// Most items one `TransactWriteItems` takes; one slot is the project update.
pub const MAX_EVENTS_PER_COMMIT: usize = 99;

/// Keys per `BatchGetItem` / items per `BatchWriteItem` (DynamoDB limits).
const BATCH_GET_KEYS: usize = 100;
const BATCH_WRITE_ITEMS: usize = 25;
/// Rounds spent re-sending unprocessed keys/items before giving up (DynamoDB returns them when
/// throttled); each round waits a little longer.
const UNPROCESSED_ROUNDS: u32 = 8;

/// Attribute holding the optimistic-concurrency revision of PROJECT items (not part of
/// `ProjectState`; readers ignore it).
const REVISION: &str = "revision";
/// PROJECT item attribute holding the monotonic counter, outside [`PROJECT_STATE`] so a commit
/// can `ADD` to it in the same transaction as the failure events it counts.
const FAILURES_TOTAL: &str = "failuresTotal";
/// PROJECT item attribute holding the rest of the [`ProjectState`] as one JSON string.
///
/// Why packed: the metrics page reads every PROJECT item on every scrape, and reading an item
/// costs DynamoDB Local and the SDK's parser per attribute far more than per byte (2,000 items
/// with 14 attributes: ~40 ms per Query on DynamoDB Local; the same bytes in 5 attributes:
/// ~21 ms). Items written before this attribute existed (one attribute per field) still read;
/// their next commit rewrites them packed.
const PROJECT_STATE: &str = "state";

/// `CONNECTION`/`HEALTH` attributes: when the connections were tested, and the list of
/// [`ConnectionHealth`] as one JSON string.
const CONNECTION_TESTED_AT: &str = "testedAt";
const CONNECTION_LIST: &str = "connections";

/// The connection health of a `CONNECTION`/`HEALTH` item.
pub(crate) fn decode_connection_health(item: &Item) -> Result<ConnectionHealthRecord, StoreError> {
    const OP: &str = "decode CONNECTION/HEALTH";
    let tested_at = string(item, CONNECTION_TESTED_AT)
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .ok_or_else(|| malformed(OP, "testedAt missing or not RFC 3339"))?
        .with_timezone(&Utc);
    let connections = serde_json::from_str(string(item, CONNECTION_LIST).unwrap_or("[]"))
        .map_err(|e| malformed(OP, e))?;
    Ok(ConnectionHealthRecord {
        tested_at,
        connections,
    })
}

type Item = HashMap<String, AttributeValue>;

fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

fn n(value: impl ToString) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

fn key(pk: impl Into<String>, sk: impl Into<String>) -> Item {
    HashMap::from([(keys::PK.to_string(), s(pk)), (keys::SK.to_string(), s(sk))])
}

impl DynamoStore {
    async fn rerun_item(&self, pipeline_id: u64) -> Result<Item, StoreError> {
        Ok(self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key(keys::RERUN_PK, pipeline_id.to_string())))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| StoreError::from_sdk("GetItem", e))?
            .item
            .unwrap_or_default())
    }
}

/// Attributes and states of a `RERUN` item's claim.
mod rerun {
    pub const STATE: &str = "claimState";
    /// Epoch milliseconds at which an in-progress claim may be taken again.
    pub const EXPIRES: &str = "claimExpiresAtMs";
    pub const PENDING: &str = "IN_PROGRESS";
    pub const DONE: &str = "DONE";
    pub const RELEASED: &str = "RELEASED";
}

fn is_conditional_failure<R>(
    e: &SdkError<aws_sdk_dynamodb::operation::update_item::UpdateItemError, R>,
) -> bool {
    matches!(
        e.as_service_error(),
        Some(aws_sdk_dynamodb::operation::update_item::UpdateItemError::ConditionalCheckFailedException(_))
    )
}

fn number(item: &Item, name: &str) -> Option<u64> {
    match item.get(name) {
        Some(AttributeValue::N(v)) => v.parse().ok(),
        _ => None,
    }
}

fn string<'a>(item: &'a Item, name: &str) -> Option<&'a str> {
    match item.get(name) {
        Some(AttributeValue::S(v)) => Some(v.as_str()),
        _ => None,
    }
}

fn malformed(operation: &str, what: impl std::fmt::Display) -> StoreError {
    StoreError::Failed {
        source: None,
        operation: operation.to_string(),
        message: format!("malformed item: {what}"),
    }
}

fn to_item<T: Serialize>(operation: &str, value: &T) -> Result<Item, StoreError> {
    serde_dynamo::aws_sdk_dynamodb_1::to_item(value).map_err(|e| malformed(operation, e))
}

fn from_item<T: DeserializeOwned>(operation: &str, item: Item) -> Result<T, StoreError> {
    serde_dynamo::aws_sdk_dynamodb_1::from_item(item).map_err(|e| malformed(operation, e))
}

/// The JSON held in [`PROJECT_STATE`]: every field of the state except the counter.
fn packed_project_state(operation: &str, state: &ProjectState) -> Result<String, StoreError> {
    let mut fields = match serde_json::to_value(state) {
        Ok(serde_json::Value::Object(fields)) => fields,
        Ok(other) => return Err(malformed(operation, format!("state encoded as {other}"))),
        Err(e) => return Err(malformed(operation, e)),
    };
    fields.remove(FAILURES_TOTAL);
    Ok(serde_json::Value::Object(fields).to_string())
}

/// The attributes a PROJECT item had before the state was packed (one per field, counter
/// excepted), removed by the next commit so no stale copy outlives the packed one. Derived once
/// from the state's own field names, so it cannot drift from them.
static UNPACKED_PROJECT_ATTRIBUTES: std::sync::LazyLock<Vec<String>> =
    std::sync::LazyLock::new(|| match serde_json::to_value(ProjectState::default()) {
        Ok(serde_json::Value::Object(fields)) => fields
            .into_iter()
            .map(|(name, _)| name)
            .filter(|name| name != FAILURES_TOTAL)
            .collect(),
        _ => Vec::new(),
    });

/// A whole PROJECT item as a commit leaves it (keys, packed state, counter, revision), for
/// seeding a table in tests and benchmarks without going through the monitor.
pub fn project_item(state: &ProjectState, revision: u64) -> Result<Item, StoreError> {
    const OP: &str = "PutItem";
    let mut item = key(keys::PROJECT_PK, state.project_name.clone());
    item.insert(PROJECT_STATE.into(), s(packed_project_state(OP, state)?));
    item.insert(FAILURES_TOTAL.into(), n(state.failures_total));
    item.insert(REVISION.into(), n(revision));
    Ok(item)
}

/// A PROJECT item as its state and revision: packed items (see [`PROJECT_STATE`]) and items
/// written one attribute per field alike.
pub(crate) fn decode_project(operation: &str, item: Item) -> Result<StoredProject, StoreError> {
    let revision = Some(number(&item, REVISION).unwrap_or(0));
    let Some(packed) = string(&item, PROJECT_STATE) else {
        let state = from_item(operation, item)?;
        return Ok(StoredProject { state, revision });
    };
    let mut state: ProjectState = serde_json::from_str(packed).map_err(|e| {
        let name = string(&item, keys::SK).unwrap_or("?");
        malformed(operation, format!("PROJECT/{name}: {e}"))
    })?;
    state.failures_total = number(&item, FAILURES_TOTAL).unwrap_or(0);
    Ok(StoredProject { state, revision })
}

/// Item of a failure event: the event, its keys and its TTL.
pub(crate) fn failure_item(
    event: &FailureEvent,
    retention: chrono::Duration,
) -> Result<Item, StoreError> {
    let mut item = to_item("PutItem", event)?;
    item.insert(
        keys::PK.into(),
        s(keys::failure_pk(event.finished_at.date_naive())),
    );
    item.insert(
        keys::SK.into(),
        s(keys::failure_sk(event.finished_at, event.pipeline_id)),
    );
    item.insert(
        keys::EXPIRES_AT.into(),
        n(failure_expires_at(event, retention)),
    );
    Ok(item)
}

fn failure_key(event: &FailureEvent) -> Item {
    key(
        keys::failure_pk(event.finished_at.date_naive()),
        keys::failure_sk(event.finished_at, event.pipeline_id),
    )
}

/// The cached blueprint → project name mapping.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct BlueprintItem {
    blueprint_id: u64,
    project_name: String,
    updated_at: DateTime<Utc>,
}
