//! The direct read of the metrics page's state, without a Scan: what the publisher of the
//! snapshot reads (`crate::snapshot`), and what a scrape reads before any snapshot is published.
//!
//! The `pk = PROJECT` partition, read as concurrent Queries over ranges of project names, and one
//! BatchGetItem for the two run records, the latest notification mark and the connection health
//! (with the snapshot's head on a scrape, see `dynamo_published`). The failures in the window come from
//! each project's `recentFailures` list (written with the failure events, in the same
//! transaction), not from the `FAILURE#<day>` items: the number of calls and the bytes read
//! depend on the number of projects and their recent failures (kept to the monitor's
//! `FAILURE_WINDOW_DAYS`, capped at `RECENT_FAILURES_MAX`), never on history.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::{AttributeValue, KeysAndAttributes, ReturnConsumedCapacity};
use chrono::{DateTime, Utc};

use super::dynamo::{decode_connection_health, decode_project, keys, Access};
use super::dynamo_published::{SNAPSHOT_HEAD_SK, SNAPSHOT_PK};
use super::{
    DynamoStore, EventsReceived, Job, LiveRecords, MetricsSnapshot, MetricsSource, RunRecord,
    ScrapeRead, StoreError, StoredProject,
};

/// Project items per concurrent Query of [`DynamoStore::all_project_states`]: about half of
/// DynamoDB's 1 MB page for typical items, so a range is usually one page.
const PROJECTS_PER_SEGMENT: usize = 1_000;
/// At most this many Queries at once; past `MAX_SEGMENTS × PROJECTS_PER_SEGMENT` projects the
/// ranges grow and page in sequence.
const MAX_SEGMENTS: usize = 8;

/// BatchGetItem may leave keys unprocessed under throttling; try them again this many times.
const UNPROCESSED_RETRIES: usize = 3;

#[async_trait::async_trait]
impl MetricsSource for DynamoStore {
    /// Failure events carry `project_name`, `finished_at` and `pipeline_id` only; the other fields
    /// are left at their defaults (not stored in the project's list, not rendered).
    async fn snapshot(&self, failures_since: DateTime<Utc>) -> Result<MetricsSnapshot, StoreError> {
        self.metrics_snapshot(failures_since).await
    }

    /// One BatchGetItem of the snapshot's head and the live records, plus one BatchGetItem of the
    /// snapshot's chunks when its version is not `known` (see `dynamo_published`).
    async fn scrape(
        &self,
        failures_since: DateTime<Utc>,
        known: Option<u64>,
    ) -> Result<ScrapeRead, StoreError> {
        self.scrape_read(failures_since, known).await
    }
}

impl DynamoStore {
    /// The snapshot with the recent failures that finished at or after `since` (a failure
    /// stamped ahead of our clock by DevLake shows at once), oldest first per project.
    pub async fn metrics_snapshot(
        &self,
        since: DateTime<Utc>,
    ) -> Result<MetricsSnapshot, StoreError> {
        let ((projects, skipped_projects), (mut live, _)) =
            futures::try_join!(self.project_states_counted(), self.live_records(false))?;
        live.decode_errors += skipped_projects;
        Ok(MetricsSnapshot::from_parts(
            projects.into_iter().map(|p| p.state).collect(),
            since,
            live,
        ))
    }

    /// Every per-project item, in project-name order.
    ///
    /// Read as concurrent Queries over ranges of project names, split where the previous read of
    /// this store found every [`PROJECTS_PER_SEGMENT`]th name, instead of one Query paged in
    /// sequence: the pages of one Query can only be asked for one after the other. The split
    /// points only balance the work; the ranges always cover every name, so a project added or
    /// removed since is read all the same.
    ///
    /// An item that does not decode is skipped and logged (see
    /// [`project_states_counted`](Self::project_states_counted)).
    pub async fn all_project_states(&self) -> Result<Vec<StoredProject>, StoreError> {
        Ok(self.project_states_counted().await?.0)
    }

    /// [`all_project_states`](Self::all_project_states), and how many items it skipped because
    /// they did not decode (each logged with its key): one malformed item, written by hand or by
    /// an older or newer version, costs its own series, never the whole page.
    pub async fn project_states_counted(&self) -> Result<(Vec<StoredProject>, u64), StoreError> {
        self.project_states_read(false).await
    }

    /// [`project_states_counted`](Self::project_states_counted), strongly consistent when
    /// `consistent` (a publisher's read must see every commit that completed before it).
    pub(crate) async fn project_states_read(
        &self,
        consistent: bool,
    ) -> Result<(Vec<StoredProject>, u64), StoreError> {
        let splits = self
            .project_splits
            .lock()
            .map(|s| s.clone())
            .unwrap_or_default();
        let mut bounds: Vec<(Option<&str>, Option<&str>)> = Vec::with_capacity(splits.len() + 1);
        let mut lower = None;
        for split in &splits {
            bounds.push((lower, Some(split.as_str())));
            lower = Some(split.as_str());
        }
        bounds.push((lower, None));
        let segments = futures::future::try_join_all(
            bounds
                .into_iter()
                .map(|(from, until)| self.project_range(from, until, consistent)),
        )
        .await?;
        let skipped = segments.iter().map(|(_, skipped)| skipped).sum();
        let states: Vec<StoredProject> = segments.into_iter().flat_map(|(s, _)| s).collect();
        let next: Vec<String> = states
            .iter()
            .skip(PROJECTS_PER_SEGMENT)
            .step_by(PROJECTS_PER_SEGMENT)
            .take(MAX_SEGMENTS - 1)
            .map(|p| p.state.project_name.clone())
            .collect();
        if let Ok(mut splits) = self.project_splits.lock() {
            *splits = next;
        }
        Ok((states, skipped))
    }

    /// The project items with a name at or after `from` and before `until`, all pages, and how
    /// many were skipped because they did not decode.
    async fn project_range(
        &self,
        from: Option<&str>,
        until: Option<&str>,
        consistent: bool,
    ) -> Result<(Vec<StoredProject>, u64), StoreError> {
        // A key condition takes one sort-key comparison: a middle range is read with BETWEEN
        // (inclusive) and its upper bound, the next range's first name, dropped here.
        let condition = match (from, until) {
            (None, None) => "#pk = :pk",
            (Some(_), None) => "#pk = :pk AND #sk >= :from",
            (None, Some(_)) => "#pk = :pk AND #sk < :until",
            (Some(_), Some(_)) => "#pk = :pk AND #sk BETWEEN :from AND :until",
        };
        let mut states = Vec::new();
        let mut skipped = 0;
        let mut start_key = None;
        loop {
            let mut query = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression(condition)
                .expression_attribute_names("#pk", keys::PK)
                .expression_attribute_values(":pk", AttributeValue::S(keys::PROJECT_PK.into()))
                .set_exclusive_start_key(start_key)
                .consistent_read(consistent)
                .return_consumed_capacity(ReturnConsumedCapacity::Total);
            if from.is_some() || until.is_some() {
                query = query.expression_attribute_names("#sk", keys::SK);
            }
            if let Some(from) = from {
                query = query.expression_attribute_values(":from", AttributeValue::S(from.into()));
            }
            if let Some(until) = until {
                query =
                    query.expression_attribute_values(":until", AttributeValue::S(until.into()));
            }
            let page = query
                .send()
                .await
                .map_err(|e| StoreError::from_sdk("Query PROJECT", e))?;
            self.note_capacity(Access::Read, page.consumed_capacity());
            for item in page.items.unwrap_or_default() {
                let sk = match item.get(keys::SK) {
                    Some(AttributeValue::S(sk)) => sk.clone(),
                    _ => "?".to_string(),
                };
                let stored = match decode_project("Query PROJECT", item) {
                    Ok(stored) => stored,
                    Err(error) => {
                        // The upper bound of a middle range belongs to the next range, which
                        // counts it; every other item is counted here once.
                        if until != Some(sk.as_str()) {
                            tracing::warn!(%error, project = %sk, "skipping a PROJECT item that does not decode");
                            skipped += 1;
                        }
                        continue;
                    }
                };
                if until.is_some_and(|u| stored.state.project_name == u) {
                    continue;
                }
                states.push(stored);
            }
            start_key = page.last_evaluated_key.filter(|k| !k.is_empty());
            if start_key.is_none() {
                return Ok((states, skipped));
            }
        }
    }

    /// The latest automation and monitor run records, the latest notification mark and the
    /// connection health, in one BatchGetItem, counting the items skipped because they did not decode (logged). With
    /// `head`, the same call also reads the published snapshot's head (returned as is), strongly
    /// consistent: a publish that completed before the scrape is the one it serves.
    pub(crate) async fn live_records(
        &self,
        head: bool,
    ) -> Result<(LiveRecords, Option<HashMap<String, AttributeValue>>), StoreError> {
        let key = |pk: &str, sk: &str| {
            HashMap::from([
                (keys::PK.to_string(), AttributeValue::S(pk.into())),
                (keys::SK.to_string(), AttributeValue::S(sk.into())),
            ])
        };
        let mut wanted = vec![
            key(keys::RUN_PK, Job::Automation.as_str()),
            key(keys::RUN_PK, Job::Monitor.as_str()),
            key(keys::EVENTS_PK, keys::RECEIVED_SK),
            key(keys::CONNECTION_PK, keys::HEALTH_SK),
        ];
        if head {
            wanted.push(key(SNAPSHOT_PK, SNAPSHOT_HEAD_SK));
        }
        let mut request = KeysAndAttributes::builder()
            .set_keys(Some(wanted))
            .consistent_read(head)
            .build()
            .map_err(|e| StoreError::Failed {
                source: None,
                operation: "BatchGetItem RUN".into(),
                message: e.to_string(),
            })?;
        let mut latest = LiveRecords::default();
        let mut head_item = None;
        for attempt in 0..=UNPROCESSED_RETRIES {
            let output = self
                .client
                .batch_get_item()
                .request_items(&self.table, request)
                .return_consumed_capacity(ReturnConsumedCapacity::Total)
                .send()
                .await
                .map_err(|e| StoreError::from_sdk("BatchGetItem RUN", e))?;
            self.note_capacity(Access::Read, output.consumed_capacity());
            let items = output
                .responses
                .and_then(|mut r| r.remove(&self.table))
                .unwrap_or_default();
            for item in items {
                if matches!(item.get(keys::PK), Some(AttributeValue::S(pk)) if pk == SNAPSHOT_PK) {
                    head_item = Some(item);
                    continue;
                }
                if matches!(item.get(keys::PK), Some(AttributeValue::S(pk)) if pk == keys::EVENTS_PK)
                {
                    match decode::<EventsReceived>(item) {
                        Ok(events) => latest.events = Some(events),
                        Err(error) => {
                            tracing::warn!(%error, "skipping an EVENTS item that does not decode");
                            latest.decode_errors += 1;
                        }
                    }
                    continue;
                }
                if matches!(item.get(keys::PK), Some(AttributeValue::S(pk)) if pk == keys::CONNECTION_PK)
                {
                    match decode_connection_health(&item) {
                        Ok(health) => latest.connections = health.connections,
                        Err(error) => {
                            tracing::warn!(%error, "skipping a CONNECTION item that does not decode");
                            latest.decode_errors += 1;
                        }
                    }
                    continue;
                }
                let run = match decode::<RunRecord>(item) {
                    Ok(run) => run,
                    Err(error) => {
                        tracing::warn!(%error, "skipping a RUN item that does not decode");
                        latest.decode_errors += 1;
                        continue;
                    }
                };
                match run.job {
                    Job::Automation => latest.automation = Some(run),
                    Job::Monitor => latest.monitor = Some(run),
                }
            }
            match output
                .unprocessed_keys
                .and_then(|mut u| u.remove(&self.table))
                .filter(|k| !k.keys.is_empty())
            {
                None => return Ok((latest, head_item)),
                Some(left) => {
                    tracing::debug!(attempt, "BatchGetItem left keys unprocessed; retrying");
                    tokio::time::sleep(std::time::Duration::from_millis(25 << attempt)).await;
                    request = left;
                }
            }
        }
        Err(StoreError::Unavailable {
            source: None,
            operation: "BatchGetItem RUN".into(),
            message: format!("keys still unprocessed after {UNPROCESSED_RETRIES} retries"),
        })
    }
}

/// Decodes an item written as `serde_dynamo::to_item` of `T` plus keys; unknown attributes
/// (`pk`, `sk`, `expiresAt`, anything added later) are ignored.
pub(crate) fn decode<T: serde::de::DeserializeOwned>(
    item: HashMap<String, AttributeValue>,
) -> Result<T, StoreError> {
    let at = |name: &str| match item.get(name) {
        Some(AttributeValue::S(s)) => s.clone(),
        _ => "?".to_string(),
    };
    let (pk, sk) = (at(keys::PK), at(keys::SK));
    serde_dynamo::from_item(item).map_err(|e| StoreError::Failed {
        source: None,
        operation: format!("decode item {pk}/{sk}"),
        message: e.to_string(),
    })
}
