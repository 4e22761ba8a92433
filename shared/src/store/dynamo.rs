//! The DynamoDB adapter. Items are the serde (camelCase) form of the types in `store`, written with
//! `serde_dynamo`, plus the key attributes `pk`/`sk` and, on failure events only, `expiresAt`
//! (epoch seconds, the table's TTL attribute). PROJECT items are the exception: their state is
//! one JSON attribute beside the counter and the revision (see [`PROJECT_STATE`]). Readers ignore
//! attributes they do not know.

use std::collections::{HashMap, HashSet};

use aws_sdk_dynamodb::config::http::HttpResponse;
use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::types::{
    AttributeValue, ConsumedCapacity, KeysAndAttributes, Put, PutRequest, ReturnConsumedCapacity,
    ReturnValue, ReturnValuesOnConditionCheckFailure, TransactWriteItem, Update, WriteRequest,
};
use aws_sdk_dynamodb::Client;
use chrono::{DateTime, NaiveDate, SecondsFormat, Utc};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::*;

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
            .map_err(|e| store_error("GetItem", e))?
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

/// Map an SDK error to a [`StoreError`], deciding whether a retry later can help.
fn store_error<E>(operation: &str, err: SdkError<E, HttpResponse>) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let transient = crate::aws_error::is_retryable(&err);
    let message = match err.as_service_error() {
        Some(e) => format!(
            "{}: {}",
            e.code().unwrap_or("unknown error"),
            e.message().unwrap_or("no message")
        ),
        None => DisplayErrorContext(&err).to_string(),
    };
    let (operation, source) = (operation.to_string(), Some(Box::new(err) as _));
    if transient {
        StoreError::Unavailable {
            operation,
            message,
            source,
        }
    } else {
        StoreError::Failed {
            operation,
            message,
            source,
        }
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

impl DynamoStore {
    /// `BatchGetItem` over any number of keys, re-asking for unprocessed ones.
    async fn batch_get(
        &self,
        keys_: Vec<Item>,
        projection: Option<&str>,
        consistent: bool,
    ) -> Result<Vec<Item>, StoreError> {
        const OP: &str = "BatchGetItem";
        let mut found = Vec::new();
        for chunk in keys_.chunks(BATCH_GET_KEYS) {
            let mut pending = chunk.to_vec();
            let mut round = 0;
            while !pending.is_empty() {
                let mut ka = KeysAndAttributes::builder()
                    .set_keys(Some(pending))
                    .consistent_read(consistent);
                if let Some(p) = projection {
                    ka = ka.projection_expression(p);
                }
                let ka = ka.build().map_err(|e| malformed(OP, e))?;
                let out = self
                    .client
                    .batch_get_item()
                    .request_items(&self.table, ka)
                    .return_consumed_capacity(ReturnConsumedCapacity::Total)
                    .send()
                    .await
                    .map_err(|e| store_error(OP, e))?;
                self.note_capacity(Access::Read, out.consumed_capacity());
                if let Some(mut responses) = out.responses {
                    found.extend(responses.remove(&self.table).unwrap_or_default());
                }
                pending = out
                    .unprocessed_keys
                    .and_then(|mut u| u.remove(&self.table))
                    .map(|ka| ka.keys)
                    .unwrap_or_default();
                if !pending.is_empty() {
                    round += 1;
                    if round > UNPROCESSED_ROUNDS {
                        return Err(StoreError::Unavailable {
                            source: None,
                            operation: OP.into(),
                            message: format!(
                                "{} key(s) left unprocessed (throttled)",
                                pending.len()
                            ),
                        });
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(50 << round.min(5))).await;
                }
            }
        }
        Ok(found)
    }

    /// `BatchWriteItem` puts, re-sending unprocessed ones.
    async fn batch_put(&self, items: Vec<Item>) -> Result<(), StoreError> {
        const OP: &str = "BatchWriteItem";
        for chunk in items.chunks(BATCH_WRITE_ITEMS) {
            let mut pending: Vec<WriteRequest> = chunk
                .iter()
                .map(|item| {
                    PutRequest::builder()
                        .set_item(Some(item.clone()))
                        .build()
                        .map(|put| WriteRequest::builder().put_request(put).build())
                        .map_err(|e| malformed(OP, e))
                })
                .collect::<Result<_, _>>()?;
            let mut round = 0;
            while !pending.is_empty() {
                let out = self
                    .client
                    .batch_write_item()
                    .request_items(&self.table, pending)
                    .return_consumed_capacity(ReturnConsumedCapacity::Total)
                    .send()
                    .await
                    .map_err(|e| store_error(OP, e))?;
                self.note_capacity(Access::Write, out.consumed_capacity());
                pending = out
                    .unprocessed_items
                    .and_then(|mut u| u.remove(&self.table))
                    .unwrap_or_default();
                if !pending.is_empty() {
                    round += 1;
                    if round > UNPROCESSED_ROUNDS {
                        return Err(StoreError::Unavailable {
                            source: None,
                            operation: OP.into(),
                            message: format!(
                                "{} item(s) left unprocessed (throttled)",
                                pending.len()
                            ),
                        });
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(50 << round.min(5))).await;
                }
            }
        }
        Ok(())
    }

    /// The update of a project item inside a commit: the packed state is SET, the counter is
    /// ADDed so the item's total moves by exactly the events written in the same transaction, and
    /// the attributes of the unpacked layout are REMOVEd (a no-op once they are gone).
    fn project_update(&self, commit: &ProjectCommit<'_>) -> Result<Update, StoreError> {
        const OP: &str = "TransactWriteItems";
        // The metrics page reads failures from this list: it must hold every event this
        // transaction writes, whatever the caller put in the state.
        let mut merged = commit.state.clone();
        merged.add_recent_failures(commit.events);
        let mut names = HashMap::from([
            ("#state".to_string(), PROJECT_STATE.to_string()),
            ("#rev".to_string(), REVISION.to_string()),
            ("#total".to_string(), FAILURES_TOTAL.to_string()),
        ]);
        let mut values = HashMap::from([
            (":state".to_string(), s(packed_project_state(OP, &merged)?)),
            (":added".to_string(), n(commit.events.len())),
        ]);
        let next = commit.expected_revision.map_or(1, |r| r + 1);
        values.insert(":next".into(), n(next));
        let sets = ["#state = :state", "#rev = :next"];
        let mut removes = Vec::new();
        for (i, name) in UNPACKED_PROJECT_ATTRIBUTES.iter().enumerate() {
            names.insert(format!("#u{i}"), name.clone());
            removes.push(format!("#u{i}"));
        }
        let condition = match commit.expected_revision {
            None => "attribute_not_exists(pk)".to_string(),
            Some(r) => {
                values.insert(":expected".into(), n(r));
                if r == 0 {
                    "attribute_not_exists(#rev) OR #rev = :expected".to_string()
                } else {
                    "#rev = :expected".to_string()
                }
            }
        };
        Update::builder()
            .table_name(&self.table)
            .set_key(Some(key(
                keys::PROJECT_PK,
                commit.state.project_name.clone(),
            )))
            .update_expression(format!(
                "SET {} ADD #total :added REMOVE {}",
                sets.join(", "),
                removes.join(", ")
            ))
            .condition_expression(condition)
            .set_expression_attribute_names(Some(names))
            .set_expression_attribute_values(Some(values))
            .build()
            .map_err(|e| malformed(OP, e))
    }
}

#[async_trait::async_trait]
impl RunLog for DynamoStore {
    /// The latest run of each job replaces the previous one.
    async fn record_run(&self, run: &RunRecord) -> Result<(), StoreError> {
        const OP: &str = "PutItem";
        // A record is one item, and DynamoDB refuses an item over 400 KB: the jobs bound their
        // summaries, and this keeps any summary that still outgrows the limit from losing the
        // whole record (timestamp, success, devlake_up), which the metrics page needs.
        let oversized;
        let run = match crate::limits::json_len(&run.summary) {
            n if n > crate::limits::RECORD_ITEM_SUMMARY_MAX_BYTES => {
                tracing::warn!(
                    job = run.job.as_str(),
                    summary_bytes = n,
                    "run summary too large for its record; stored without its lists"
                );
                oversized = RunRecord {
                    summary: serde_json::json!({
                        "status": run.summary.get("status").cloned().unwrap_or_default(),
                        "counts": run.summary.get("counts").cloned().unwrap_or_default(),
                        "truncated": {"summaryBytes": n},
                    }),
                    ..run.clone()
                };
                &oversized
            }
            _ => run,
        };
        let mut item = to_item(OP, run)?;
        item.extend(key(keys::RUN_PK, run.job.as_str()));
        let out = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .return_consumed_capacity(ReturnConsumedCapacity::Total)
            .send()
            .await
            .map_err(|e| store_error(OP, e))?;
        self.note_capacity(Access::Write, out.consumed_capacity());
        Ok(())
    }

    /// One PutItem of the whole list, packed into one string attribute like a project's state:
    /// the metrics page reads it with the run records on every scrape.
    async fn record_connection_health(
        &self,
        record: &ConnectionHealthRecord,
    ) -> Result<(), StoreError> {
        const OP: &str = "PutItem CONNECTION";
        let mut item = key(keys::CONNECTION_PK, keys::HEALTH_SK);
        item.insert(
            CONNECTION_TESTED_AT.into(),
            s(record
                .tested_at
                .to_rfc3339_opts(SecondsFormat::Millis, true)),
        );
        let packed = serde_json::to_string(&record.connections).map_err(|e| malformed(OP, e))?;
        item.insert(CONNECTION_LIST.into(), s(packed));
        let out = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .return_consumed_capacity(ReturnConsumedCapacity::Total)
            .send()
            .await
            .map_err(|e| store_error(OP, e))?;
        self.note_capacity(Access::Write, out.consumed_capacity());
        Ok(())
    }

    /// One conditional PutItem: the lease is free (no item) or lapsed (`leaseUntil` before
    /// `now`). The item also carries the table's TTL a day after it lapses, so a lease never
    /// released (a run killed at its timeout) is eventually removed; the condition does not
    /// rely on that, since TTL deletion can lag by days.
    async fn acquire_lease(
        &self,
        job: Job,
        holder: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<Result<(), LeaseHolder>, StoreError> {
        const OP: &str = "PutItem LEASE";
        let mut item = key(keys::LEASE_PK, job.as_str());
        item.insert("holder".into(), s(holder));
        item.insert(
            "acquiredAt".into(),
            s(now.to_rfc3339_opts(SecondsFormat::Millis, true)),
        );
        item.insert("leaseUntil".into(), n(until.timestamp_millis()));
        item.insert(
            keys::EXPIRES_AT.into(),
            n((until + chrono::Duration::days(1)).timestamp()),
        );
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(#pk) OR #until < :now")
            .expression_attribute_names("#pk", keys::PK)
            .expression_attribute_names("#until", "leaseUntil")
            .expression_attribute_values(":now", n(now.timestamp_millis()))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        let Err(e) = result else {
            return Ok(Ok(()));
        };
        let Some(failed) = e.as_service_error().and_then(|e| match e {
            aws_sdk_dynamodb::operation::put_item::PutItemError::ConditionalCheckFailedException(c) => Some(c),
            _ => None,
        }) else {
            return Err(store_error(OP, e));
        };
        let held = match failed.item() {
            Some(item) => item.clone(),
            // Older DynamoDB Local builds do not return the item: read it.
            None => self
                .client
                .get_item()
                .table_name(&self.table)
                .set_key(Some(key(keys::LEASE_PK, job.as_str())))
                .consistent_read(true)
                .send()
                .await
                .map_err(|e| store_error("GetItem LEASE", e))?
                .item
                .unwrap_or_default(),
        };
        let millis = |name: &str| {
            number(&held, name)
                .and_then(|ms| DateTime::<Utc>::from_timestamp_millis(ms as i64))
                .unwrap_or(now)
        };
        Ok(Err(LeaseHolder {
            holder: string(&held, "holder").unwrap_or("?").to_string(),
            acquired_at: string(&held, "acquiredAt")
                .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
                .map_or(now, |t| t.with_timezone(&Utc)),
            until: millis("leaseUntil"),
        }))
    }

    /// A PutItem conditional on still being the holder, that marks the lease lapsed
    /// (`leaseUntil` 0). A PutItem rather than a DeleteItem: the automation's role is allowed to
    /// put items only.
    async fn release_lease(
        &self,
        job: Job,
        holder: &str,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        const OP: &str = "PutItem LEASE";
        let mut item = key(keys::LEASE_PK, job.as_str());
        item.insert("holder".into(), s(holder));
        item.insert("leaseUntil".into(), n(0));
        item.insert(
            keys::EXPIRES_AT.into(),
            n((now + chrono::Duration::days(1)).timestamp()),
        );
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("#holder = :holder")
            .expression_attribute_names("#holder", "holder")
            .expression_attribute_values(":holder", s(holder))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                tracing::warn!(
                    job = job.as_str(),
                    holder,
                    "run lease lapsed and was taken by another run before release"
                );
                Ok(())
            }
            Err(e) => Err(store_error(OP, e)),
        }
    }
}

#[async_trait::async_trait]
impl MonitorStore for DynamoStore {
    async fn load_cursor(&self) -> Result<Option<MonitorCursor>, StoreError> {
        const OP: &str = "GetItem";
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key(keys::MONITOR_PK, keys::CURSOR_SK)))
            .consistent_read(true)
            .return_consumed_capacity(ReturnConsumedCapacity::Total)
            .send()
            .await
            .map_err(|e| store_error(OP, e))?;
        self.note_capacity(Access::Read, out.consumed_capacity());
        out.item.map(|item| from_item(OP, item)).transpose()
    }

    async fn save_cursor(
        &self,
        cursor: &MonitorCursor,
        loaded_revision: Option<u64>,
    ) -> Result<bool, StoreError> {
        const OP: &str = "PutItem";
        let mut saved = cursor.clone();
        saved.revision = loaded_revision.map_or(1, |r| r + 1);
        let mut item = to_item(OP, &saved)?;
        item.extend(key(keys::MONITOR_PK, keys::CURSOR_SK));
        let mut request = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .return_consumed_capacity(ReturnConsumedCapacity::Total);
        request = match loaded_revision {
            None => request.condition_expression("attribute_not_exists(pk)"),
            Some(r) => request
                .condition_expression("#rev = :expected")
                .expression_attribute_names("#rev", "revision")
                .expression_attribute_values(":expected", n(r)),
        };
        match request.send().await {
            Ok(out) => {
                self.note_capacity(Access::Write, out.consumed_capacity());
                Ok(true)
            }
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                Ok(false)
            }
            Err(e) => Err(store_error(OP, e)),
        }
    }

    async fn blueprint_projects(
        &self,
        ids: &[u64],
    ) -> Result<HashMap<u64, CachedBlueprint>, StoreError> {
        let unique: HashSet<u64> = ids.iter().copied().collect();
        let keys_ = unique
            .into_iter()
            .map(|id| key(keys::BLUEPRINT_PK, keys::blueprint_sk(id)))
            .collect();
        let items = self.batch_get(keys_, None, false).await?;
        items
            .into_iter()
            .map(|item| {
                let b: BlueprintItem = from_item("BatchGetItem", item)?;
                Ok((
                    b.blueprint_id,
                    CachedBlueprint {
                        project_name: b.project_name,
                        resolved_at: b.updated_at,
                    },
                ))
            })
            .collect()
    }

    async fn delete_project(
        &self,
        name: &str,
        expected_revision: Option<u64>,
    ) -> Result<bool, StoreError> {
        const OP: &str = "DeleteItem";
        let mut request = self
            .client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(key(keys::PROJECT_PK, name.to_string())));
        request = match expected_revision {
            None => request.condition_expression("attribute_not_exists(pk)"),
            // Items written before revisions existed read as revision 0.
            Some(r) => request
                .condition_expression(if r == 0 {
                    "attribute_exists(pk) AND (attribute_not_exists(#rev) OR #rev = :expected)"
                } else {
                    "#rev = :expected"
                })
                .expression_attribute_names("#rev", REVISION)
                .expression_attribute_values(":expected", n(r)),
        };
        match request.send().await {
            Ok(_) => Ok(expected_revision.is_some()),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                Ok(false)
            }
            Err(e) => Err(store_error(OP, e)),
        }
    }

    async fn save_blueprint_projects(
        &self,
        entries: &[(u64, String)],
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let items = entries
            .iter()
            .map(|(id, name)| {
                let mut item = to_item(
                    "BatchWriteItem",
                    &BlueprintItem {
                        blueprint_id: *id,
                        project_name: name.clone(),
                        updated_at: now,
                    },
                )?;
                item.extend(key(keys::BLUEPRINT_PK, keys::blueprint_sk(*id)));
                Ok(item)
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        self.batch_put(items).await
    }

    async fn project_states(
        &self,
        names: &[String],
    ) -> Result<HashMap<String, StoredProject>, StoreError> {
        let unique: HashSet<&String> = names.iter().collect();
        let keys_ = unique
            .into_iter()
            .map(|name| key(keys::PROJECT_PK, name.clone()))
            .collect();
        // Strongly consistent: the revision read here guards the next write.
        let items = self.batch_get(keys_, None, true).await?;
        items
            .into_iter()
            .map(|item| {
                let stored = decode_project("BatchGetItem", item)?;
                Ok((stored.state.project_name.clone(), stored))
            })
            .collect()
    }

    async fn all_projects(&self) -> Result<Vec<StoredProject>, StoreError> {
        self.all_project_states().await
    }

    async fn recorded_failures(
        &self,
        events: &[FailureEvent],
    ) -> Result<HashSet<String>, StoreError> {
        let keys_ = events.iter().map(failure_key).collect();
        let items = self.batch_get(keys_, Some("sk"), true).await?;
        // The sort key is `<finishedAt>#<pipelineId>`, which is exactly `FailureEvent::key`.
        Ok(items
            .iter()
            .filter_map(|item| string(item, keys::SK).map(String::from))
            .collect())
    }

    async fn failures_on(&self, day: NaiveDate) -> Result<Vec<FailureEvent>, StoreError> {
        const OP: &str = "Query FAILURE";
        let mut events = Vec::new();
        let mut start_key = None;
        loop {
            let page = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("#pk = :pk")
                .expression_attribute_names("#pk", keys::PK)
                .expression_attribute_values(":pk", s(keys::failure_pk(day)))
                .set_exclusive_start_key(start_key)
                .return_consumed_capacity(ReturnConsumedCapacity::Total)
                .send()
                .await
                .map_err(|e| store_error(OP, e))?;
            self.note_capacity(Access::Read, page.consumed_capacity());
            for item in page.items.unwrap_or_default() {
                events.push(from_item(OP, item)?);
            }
            start_key = page.last_evaluated_key.filter(|k| !k.is_empty());
            if start_key.is_none() {
                return Ok(events);
            }
        }
    }

    async fn commit_project(&self, commit: ProjectCommit<'_>) -> Result<CommitOutcome, StoreError> {
        const OP: &str = "TransactWriteItems";
        if commit.events.len() > MAX_EVENTS_PER_COMMIT {
            return Err(StoreError::Failed {
                source: None,
                operation: OP.into(),
                message: format!(
                    "{} events in one commit; at most {MAX_EVENTS_PER_COMMIT} fit a transaction",
                    commit.events.len()
                ),
            });
        }
        let mut actions = Vec::with_capacity(commit.events.len() + 1);
        for event in commit.events {
            let put = Put::builder()
                .table_name(&self.table)
                .set_item(Some(failure_item(event, commit.retention)?))
                .condition_expression("attribute_not_exists(pk)")
                .build()
                .map_err(|e| malformed(OP, e))?;
            actions.push(TransactWriteItem::builder().put(put).build());
        }
        actions.push(
            TransactWriteItem::builder()
                .update(self.project_update(&commit)?)
                .build(),
        );
        let err = match self
            .client
            .transact_write_items()
            .set_transact_items(Some(actions))
            .return_consumed_capacity(ReturnConsumedCapacity::Total)
            .send()
            .await
        {
            Ok(out) => {
                self.note_capacity(Access::Write, out.consumed_capacity());
                return Ok(CommitOutcome::Committed);
            }
            Err(e) => e,
        };
        let Some(canceled) = err
            .as_service_error()
            .and_then(|e| match e {
                aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError::TransactionCanceledException(c) => Some(c),
                _ => None,
            })
        else {
            return Err(store_error(OP, err));
        };
        // One reason per action, in order: the events, then the project update.
        let reasons = canceled.cancellation_reasons();
        let code = |i: usize| reasons.get(i).and_then(|r| r.code()).unwrap_or("None");
        let recorded: Vec<String> = commit
            .events
            .iter()
            .enumerate()
            .filter(|(i, _)| code(*i) == "ConditionalCheckFailed")
            .map(|(_, e)| e.key())
            .collect();
        if !recorded.is_empty() {
            return Ok(CommitOutcome::AlreadyRecorded(recorded));
        }
        let all: Vec<&str> = (0..=commit.events.len()).map(code).collect();
        if code(commit.events.len()) == "ConditionalCheckFailed"
            || all.contains(&"TransactionConflict")
        {
            return Ok(CommitOutcome::Conflict);
        }
        let transient = all
            .iter()
            .any(|c| matches!(*c, "ThrottlingError" | "ProvisionedThroughputExceeded"));
        let message = format!("transaction canceled: [{}]", all.join(", "));
        Err(if transient {
            StoreError::Unavailable {
                source: None,
                operation: OP.into(),
                message,
            }
        } else {
            StoreError::Failed {
                source: None,
                operation: OP.into(),
                message,
            }
        })
    }

    async fn claim_rerun(
        &self,
        pipeline_id: u64,
        failure_key: &str,
        max: u32,
        now: DateTime<Utc>,
        lease: chrono::Duration,
    ) -> Result<RerunClaim, StoreError> {
        const OP: &str = "UpdateItem";
        if max == 0 {
            return Ok(RerunClaim::Exhausted);
        }
        let expires = (now + lease).timestamp_millis();
        // A new failure of the pipeline takes the next slot, if one is left.
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(keys::RERUN_PK, pipeline_id.to_string())))
            .update_expression(
                "SET #count = if_not_exists(#count, :zero) + :one, #last = :key, #pid = :pid, #at = :now, #st = :pending, #exp = :exp",
            )
            .condition_expression(
                "attribute_not_exists(pk) OR (#count < :max AND #last <> :key)",
            )
            .expression_attribute_names("#count", "reruns")
            .expression_attribute_names("#last", "lastFailureKey")
            .expression_attribute_names("#pid", "pipelineId")
            .expression_attribute_names("#at", "lastRerunAt")
            .expression_attribute_names("#st", rerun::STATE)
            .expression_attribute_names("#exp", rerun::EXPIRES)
            .expression_attribute_values(":zero", n(0))
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":max", n(max))
            .expression_attribute_values(":key", s(failure_key))
            .expression_attribute_values(":pid", n(pipeline_id))
            .expression_attribute_values(":pending", s(rerun::PENDING))
            .expression_attribute_values(":exp", n(expires))
            .expression_attribute_values(
                ":now",
                s(now.to_rfc3339_opts(SecondsFormat::Millis, true)),
            )
            .return_values(ReturnValue::UpdatedNew)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .return_consumed_capacity(ReturnConsumedCapacity::Total)
            .send()
            .await;
        let failed = match result {
            Ok(out) => {
                self.note_capacity(Access::Write, out.consumed_capacity());
                let attempt = out
                    .attributes
                    .as_ref()
                    .and_then(|a| number(a, "reruns"))
                    .unwrap_or(1);
                return Ok(RerunClaim::Granted {
                    attempt: attempt as u32,
                });
            }
            Err(e) => match e.as_service_error().and_then(|e| match e {
                aws_sdk_dynamodb::operation::update_item::UpdateItemError::ConditionalCheckFailedException(c) => Some(c.item().cloned()),
                _ => None,
            }) {
                Some(item) => item,
                None => return Err(store_error(OP, e)),
            },
        };
        let old = match failed {
            Some(item) => item,
            // Older DynamoDB Local builds do not return the item: read it.
            None => self.rerun_item(pipeline_id).await?,
        };
        if string(&old, "lastFailureKey") != Some(failure_key) {
            return Ok(RerunClaim::Exhausted);
        }
        // Items written before claims had a state were settled when written.
        match string(&old, rerun::STATE).unwrap_or(rerun::DONE) {
            rerun::DONE => return Ok(RerunClaim::AlreadyDone),
            rerun::PENDING
                if number(&old, rerun::EXPIRES).unwrap_or(0) as i64 >= now.timestamp_millis() =>
            {
                return Ok(RerunClaim::InProgress)
            }
            _ => {}
        }
        // Released, or its lease ended: take this failure's claim again (same slot). The
        // condition makes one of several concurrent runs win.
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(keys::RERUN_PK, pipeline_id.to_string())))
            .update_expression("SET #at = :now, #st = :pending, #exp = :exp")
            .condition_expression(
                "#last = :key AND (#st = :released OR (#st = :pending AND #exp < :nowms))",
            )
            .expression_attribute_names("#last", "lastFailureKey")
            .expression_attribute_names("#at", "lastRerunAt")
            .expression_attribute_names("#st", rerun::STATE)
            .expression_attribute_names("#exp", rerun::EXPIRES)
            .expression_attribute_values(":key", s(failure_key))
            .expression_attribute_values(":pending", s(rerun::PENDING))
            .expression_attribute_values(":released", s(rerun::RELEASED))
            .expression_attribute_values(":exp", n(expires))
            .expression_attribute_values(":nowms", n(now.timestamp_millis()))
            .expression_attribute_values(
                ":now",
                s(now.to_rfc3339_opts(SecondsFormat::Millis, true)),
            )
            .return_values(ReturnValue::AllNew)
            .return_consumed_capacity(ReturnConsumedCapacity::Total)
            .send()
            .await;
        match result {
            Ok(out) => {
                self.note_capacity(Access::Write, out.consumed_capacity());
                let attempt = out
                    .attributes
                    .as_ref()
                    .and_then(|a| number(a, "reruns"))
                    .unwrap_or(1);
                Ok(RerunClaim::Granted {
                    attempt: attempt as u32,
                })
            }
            Err(e) if is_conditional_failure(&e) => Ok(RerunClaim::InProgress),
            Err(e) => Err(store_error(OP, e)),
        }
    }

    async fn settle_rerun(
        &self,
        pipeline_id: u64,
        failure_key: &str,
        settlement: RerunSettlement,
    ) -> Result<bool, StoreError> {
        let state = match settlement {
            RerunSettlement::Done => rerun::DONE,
            RerunSettlement::Released => rerun::RELEASED,
        };
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(keys::RERUN_PK, pipeline_id.to_string())))
            .update_expression("SET #st = :state")
            .condition_expression("#last = :key AND #st <> :done")
            .expression_attribute_names("#last", "lastFailureKey")
            .expression_attribute_names("#st", rerun::STATE)
            .expression_attribute_values(":key", s(failure_key))
            .expression_attribute_values(":done", s(rerun::DONE))
            .expression_attribute_values(":state", s(state))
            .return_consumed_capacity(ReturnConsumedCapacity::Total)
            .send()
            .await;
        match result {
            Ok(out) => {
                self.note_capacity(Access::Write, out.consumed_capacity());
                Ok(true)
            }
            Err(e) if is_conditional_failure(&e) => Ok(false),
            Err(e) => Err(store_error("UpdateItem", e)),
        }
    }

    async fn pending_reruns(&self, now: DateTime<Utc>) -> Result<Vec<PendingRerun>, StoreError> {
        let mut pending = Vec::new();
        let mut start_key = None;
        loop {
            let page = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("#pk = :pk")
                .filter_expression("#st = :released OR (#st = :pending AND #exp < :nowms)")
                .expression_attribute_names("#pk", keys::PK)
                .expression_attribute_names("#st", rerun::STATE)
                .expression_attribute_names("#exp", rerun::EXPIRES)
                .expression_attribute_values(":pk", s(keys::RERUN_PK))
                .expression_attribute_values(":pending", s(rerun::PENDING))
                .expression_attribute_values(":released", s(rerun::RELEASED))
                .expression_attribute_values(":nowms", n(now.timestamp_millis()))
                .set_exclusive_start_key(start_key)
                .return_consumed_capacity(ReturnConsumedCapacity::Total)
                .send()
                .await
                .map_err(|e| store_error("Query RERUN", e))?;
            self.note_capacity(Access::Read, page.consumed_capacity());
            for item in page.items.unwrap_or_default() {
                if let (Some(pipeline_id), Some(failure_key)) =
                    (number(&item, "pipelineId"), string(&item, "lastFailureKey"))
                {
                    pending.push(PendingRerun {
                        pipeline_id,
                        failure_key: failure_key.to_string(),
                    });
                }
            }
            start_key = page.last_evaluated_key.filter(|k| !k.is_empty());
            if start_key.is_none() {
                return Ok(pending);
            }
        }
    }
}
