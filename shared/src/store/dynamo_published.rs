//! The published snapshot in DynamoDB (layout in `published`): the publisher's writes and the
//! metrics function's read.
//!
//! A scrape costs one BatchGetItem (the head and both run records, strongly consistent: a
//! publish that completed before the scrape is what it serves) and, only when the head names a
//! generation the caller does not hold, one more BatchGetItem of that generation's chunks (at
//! most 100 keys and 16 MB per call: 100 chunks of 350 KB, far beyond any page a function URL can
//! answer). Neither depends on the number of projects or on history.
//!
//! Old generations are never deleted by a request: DynamoDB bills a delete by the size of the
//! item deleted, which would double what a publish writes. Every chunk carries the table's TTL
//! (`expiresAt`, [`SNAPSHOT_CHUNK_TTL`] after its publish), TTL deletion is free, and the publisher
//! rewrites a generation older than a day even when the state did not change, so the published
//! one never expires while the monitor runs. A scrape that finds a chunk missing anyway (the
//! monitor stopped for days) reads the state directly instead.

use std::collections::HashMap;

use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{
    AttributeValue, ReturnConsumedCapacity, ReturnValue, ReturnValuesOnConditionCheckFailure,
};
use chrono::{DateTime, SecondsFormat, Utc};

use super::dynamo::{keys, Access};
use super::{
    DynamoStore, LiveRecords, MetricsSnapshot, PublishedRead, PublishedState, PublishedVersion,
    ScrapeRead, SnapshotHead, SnapshotPut, SnapshotStore, StoreError, SNAPSHOT_CHUNK_BYTES,
    SNAPSHOT_CHUNK_TTL,
};

/// Partition of the snapshot's items.
pub(crate) const SNAPSHOT_PK: &str = "SNAPSHOT";
pub(crate) const SNAPSHOT_HEAD_SK: &str = "HEAD";
const HEAD_SK: &str = SNAPSHOT_HEAD_SK;
const TAKEN: &str = "taken";
const VERSION: &str = "version";
const CHUNKS: &str = "chunks";
const BYTES: &str = "bytes";
const DIGEST: &str = "digest";
const PUBLISHED_AT: &str = "publishedAt";
const DATA: &str = "data";

type Item = HashMap<String, AttributeValue>;

fn key(pk: &str, sk: impl Into<String>) -> Item {
    HashMap::from([
        (keys::PK.to_string(), AttributeValue::S(pk.to_string())),
        (keys::SK.to_string(), AttributeValue::S(sk.into())),
    ])
}

/// `CHUNK#<version, 20 digits>#<index, 4 digits>`: a generation's chunks sort together, in order.
fn chunk_sk(version: u64, index: usize) -> String {
    format!("CHUNK#{version:020}#{index:04}")
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

fn n(value: impl ToString) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

fn failed(operation: &str, message: impl Into<String>) -> StoreError {
    StoreError::Failed {
        source: None,
        operation: operation.to_string(),
        message: message.into(),
    }
}

/// The head item as the store's types; `chunks` is the published generation's chunk count.
fn head_of(item: &Item) -> (SnapshotHead, u32) {
    let published = number(item, VERSION).map(|version| PublishedVersion {
        version,
        digest: string(item, DIGEST).unwrap_or_default().to_string(),
        bytes: number(item, BYTES).unwrap_or(0),
        published_at: string(item, PUBLISHED_AT)
            .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.with_timezone(&Utc)),
    });
    let head = SnapshotHead {
        taken: number(item, TAKEN).unwrap_or(0),
        published,
    };
    (head, number(item, CHUNKS).unwrap_or(0) as u32)
}

impl DynamoStore {
    /// See [`super::MetricsSource::scrape`]. The head and the run records in one call; the chunks
    /// in a second one only when the version changed. A generation whose chunks are gone (expired
    /// while nothing was published for days) is read again once from the head, then the state is
    /// read directly.
    pub(crate) async fn scrape_read(
        &self,
        since: DateTime<Utc>,
        known: Option<u64>,
    ) -> Result<ScrapeRead, StoreError> {
        for attempt in 0..2 {
            let (live, head) = self.live_records(true).await?;
            let Some((head, chunks)) = head
                .map(|item| head_of(&item))
                .and_then(|(h, c)| Some((h.published?, c)))
            else {
                // Nothing published yet: the page as read from the items themselves.
                return self.direct_read(since, live).await;
            };
            let blob = if known == Some(head.version) {
                None
            } else {
                match self.snapshot_chunks(head.version, chunks).await? {
                    Some(blob) => Some(blob),
                    None if attempt == 0 => continue,
                    None => {
                        tracing::warn!(
                            version = head.version,
                            "the published snapshot's chunks are gone; reading the state directly"
                        );
                        return self.direct_read(since, live).await;
                    }
                }
            };
            return Ok(ScrapeRead::Published(PublishedRead {
                version: head.version,
                blob,
                live,
            }));
        }
        unreachable!("the loop returns on its second pass")
    }

    async fn direct_read(
        &self,
        since: DateTime<Utc>,
        mut live: LiveRecords,
    ) -> Result<ScrapeRead, StoreError> {
        let (projects, skipped_projects) = self.project_states_counted().await?;
        live.decode_errors += skipped_projects;
        Ok(ScrapeRead::Direct(MetricsSnapshot::from_parts(
            projects.into_iter().map(|p| p.state).collect(),
            since,
            live,
        )))
    }

    /// The chunks of generation `version`, joined; `None` if any is missing (expired).
    async fn snapshot_chunks(
        &self,
        version: u64,
        chunks: u32,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        let wanted = (0..chunks as usize)
            .map(|i| key(SNAPSHOT_PK, chunk_sk(version, i)))
            .collect();
        let items = self.batch_get(wanted, None, true).await?;
        let mut parts: Vec<(String, Vec<u8>)> = items
            .into_iter()
            .filter_map(|mut item| {
                let sk = string(&item, keys::SK)?.to_string();
                match item.remove(DATA) {
                    Some(AttributeValue::B(blob)) => Some((sk, blob.into_inner())),
                    _ => None,
                }
            })
            .collect();
        if parts.len() != chunks as usize {
            return Ok(None);
        }
        parts.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(Some(parts.into_iter().flat_map(|(_, data)| data).collect()))
    }
}

#[async_trait::async_trait]
impl SnapshotStore for DynamoStore {
    /// An atomic `ADD` on the head item.
    async fn take_publish_number(&self) -> Result<u64, StoreError> {
        const OP: &str = "UpdateItem SNAPSHOT taken";
        let out = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(SNAPSHOT_PK, HEAD_SK)))
            .update_expression("ADD #taken :one")
            .expression_attribute_names("#taken", TAKEN)
            .expression_attribute_values(":one", n(1))
            .return_values(ReturnValue::UpdatedNew)
            .return_consumed_capacity(ReturnConsumedCapacity::Total)
            .send()
            .await
            .map_err(|e| StoreError::from_sdk(OP, e))?;
        self.note_capacity(Access::Write, out.consumed_capacity());
        out.attributes
            .as_ref()
            .and_then(|a| number(a, TAKEN))
            .ok_or_else(|| failed(OP, "no publish number returned"))
    }

    async fn snapshot_head(&self) -> Result<SnapshotHead, StoreError> {
        const OP: &str = "GetItem SNAPSHOT";
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key(SNAPSHOT_PK, HEAD_SK)))
            .consistent_read(true)
            .return_consumed_capacity(ReturnConsumedCapacity::Total)
            .send()
            .await
            .map_err(|e| StoreError::from_sdk(OP, e))?;
        self.note_capacity(Access::Read, out.consumed_capacity());
        Ok(out.item.map(|item| head_of(&item).0).unwrap_or_default())
    }

    /// Every PROJECT item, strongly consistent (the ranged Queries of a scrape's direct read).
    async fn snapshot_input(&self) -> Result<PublishedState, StoreError> {
        let (projects, decode_errors) = self.project_states_read(true).await?;
        Ok(PublishedState {
            projects: projects.into_iter().map(|p| p.state).collect(),
            decode_errors,
        })
    }

    /// The chunks (BatchWriteItem), then the head (UpdateItem conditional on an older or no
    /// version). Chunks of a refused generation, like old ones, are left to their TTL.
    async fn put_snapshot(&self, put: SnapshotPut<'_>) -> Result<bool, StoreError> {
        const OP: &str = "UpdateItem SNAPSHOT head";
        let parts: Vec<&[u8]> = if put.blob.is_empty() {
            vec![&[][..]]
        } else {
            put.blob.chunks(SNAPSHOT_CHUNK_BYTES).collect()
        };
        let expires_at = (put.now + SNAPSHOT_CHUNK_TTL).timestamp();
        let items = parts
            .iter()
            .enumerate()
            .map(|(i, part)| {
                let mut item = key(SNAPSHOT_PK, chunk_sk(put.version, i));
                item.insert(DATA.into(), AttributeValue::B(part.to_vec().into()));
                item.insert(VERSION.into(), n(put.version));
                item.insert(keys::EXPIRES_AT.into(), n(expires_at));
                item
            })
            .collect();
        self.batch_put(items).await?;

        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(SNAPSHOT_PK, HEAD_SK)))
            .update_expression("SET #v = :v, #c = :c, #b = :b, #d = :d, #at = :at")
            .condition_expression("attribute_not_exists(#v) OR #v < :v")
            .expression_attribute_names("#v", VERSION)
            .expression_attribute_names("#c", CHUNKS)
            .expression_attribute_names("#b", BYTES)
            .expression_attribute_names("#d", DIGEST)
            .expression_attribute_names("#at", PUBLISHED_AT)
            .expression_attribute_values(":v", n(put.version))
            .expression_attribute_values(":c", n(parts.len()))
            .expression_attribute_values(":b", n(put.blob.len()))
            .expression_attribute_values(":d", AttributeValue::S(put.digest.to_string()))
            .expression_attribute_values(
                ":at",
                AttributeValue::S(put.now.to_rfc3339_opts(SecondsFormat::Millis, true)),
            )
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .return_consumed_capacity(ReturnConsumedCapacity::Total)
            .send()
            .await;
        match result {
            Ok(out) => {
                self.note_capacity(Access::Write, out.consumed_capacity());
                Ok(true)
            }
            Err(e) => {
                let Some(refused) = e.as_service_error().and_then(|e| match e {
                    UpdateItemError::ConditionalCheckFailedException(c) => Some(c.item().cloned()),
                    _ => None,
                }) else {
                    return Err(StoreError::from_sdk(OP, e));
                };
                // Older DynamoDB Local builds do not return the item: read it.
                let current = match refused {
                    Some(item) => number(&item, VERSION),
                    None => self.snapshot_head().await?.published.map(|p| p.version),
                };
                // The SDK retried an update that had succeeded (its answer was lost): this
                // generation is the published one.
                Ok(current == Some(put.version))
            }
        }
    }
}
