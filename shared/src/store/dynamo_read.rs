//! The metrics function's read path: everything the page shows, without a Scan.
//!
//! Per scrape: one paginated Query of `pk = PROJECT`, one BatchGetItem for the two run records,
//! and one Query per UTC day bucket `FAILURE#<day>` from the window start to tomorrow (the first
//! day bounded by `sk >= <since>`). The number of calls depends on the window length and on how
//! many pages the projects and in-window failures fill, never on how much history the table holds.

use std::collections::HashMap;

use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::types::{AttributeValue, KeysAndAttributes};
use chrono::{DateTime, Duration, NaiveDate, SecondsFormat, Utc};
use futures::{StreamExt, TryStreamExt};

use super::dynamo::keys;
use super::{
    DynamoStore, FailureEvent, Job, MetricsSnapshot, MetricsSource, ProjectState, RunRecord,
    StoreError,
};

/// Day buckets read at once. A 7-day window is 9 Queries; a few in flight hide round trips
/// without holding many 1 MB pages in memory at the same time.
const DAY_QUERY_CONCURRENCY: usize = 4;
/// BatchGetItem may leave keys unprocessed under throttling; try them again this many times.
const UNPROCESSED_RETRIES: usize = 3;

/// Only what the page renders (plus the pipeline id, which identifies the event) is fetched from
/// failure items: the scrape moves and parses a fraction of each item, which matters at tens of
/// thousands of failures per window.
const FAILURE_PROJECTION: &str = "#pn, #fin, #pid";
const PROJECT_NAME: &str = "projectName";
const FINISHED_AT: &str = "finishedAt";
const PIPELINE_ID: &str = "pipelineId";

#[async_trait::async_trait]
impl MetricsSource for DynamoStore {
    /// Failure events carry `project_name`, `finished_at` and `pipeline_id` only; the other fields
    /// are left at their defaults (not read, not rendered; see `FAILURE_PROJECTION`).
    async fn snapshot(&self, failures_since: DateTime<Utc>) -> Result<MetricsSnapshot, StoreError> {
        // Up to tomorrow's bucket: a DevLake clock running slightly ahead of ours files a
        // failure there around midnight UTC, and it must show at once, not a few minutes later.
        let until = Utc::now().max(failures_since) + Duration::days(1);
        self.metrics_snapshot(failures_since, until).await
    }
}

impl DynamoStore {
    /// The snapshot with failures whose day bucket lies between `since` and `until` (inclusive)
    /// and that finished at or after `since`.
    pub async fn metrics_snapshot(
        &self,
        since: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<MetricsSnapshot, StoreError> {
        let (projects, (automation, monitor), failures) = futures::try_join!(
            self.all_project_states(),
            self.latest_runs(),
            self.failures_between(since, until),
        )?;
        Ok(MetricsSnapshot {
            projects,
            failures,
            automation,
            monitor,
        })
    }

    /// Every per-project state item, in project-name order.
    pub async fn all_project_states(&self) -> Result<Vec<ProjectState>, StoreError> {
        let mut states = Vec::new();
        let mut start_key = None;
        loop {
            let page = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("#pk = :pk")
                .expression_attribute_names("#pk", keys::PK)
                .expression_attribute_values(":pk", AttributeValue::S(keys::PROJECT_PK.into()))
                .set_exclusive_start_key(start_key)
                .send()
                .await
                .map_err(|e| sdk_error("Query PROJECT", e))?;
            for item in page.items.unwrap_or_default() {
                states.push(decode::<ProjectState>(item)?);
            }
            start_key = page.last_evaluated_key.filter(|k| !k.is_empty());
            if start_key.is_none() {
                return Ok(states);
            }
        }
    }

    /// Failure events that finished in `[since, …]`, reading the day buckets of `since` through
    /// `until`, oldest first.
    pub async fn failures_between(
        &self,
        since: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<Vec<FailureEvent>, StoreError> {
        let first = since.date_naive();
        let last = until.date_naive();
        let since_sk = since.to_rfc3339_opts(SecondsFormat::Millis, true);
        let days = first.iter_days().take_while(move |d| *d <= last);
        let per_day: Vec<Vec<FailureEvent>> = futures::stream::iter(days)
            .map(|day| {
                let lower = (day == first).then(|| since_sk.clone());
                self.failures_on_day(day, lower)
            })
            .buffered(DAY_QUERY_CONCURRENCY)
            .try_collect()
            .await?;
        Ok(per_day
            .into_iter()
            .flatten()
            .filter(|f| f.finished_at >= since)
            .collect())
    }

    async fn failures_on_day(
        &self,
        day: NaiveDate,
        sk_from: Option<String>,
    ) -> Result<Vec<FailureEvent>, StoreError> {
        let pk = keys::failure_pk(day);
        let operation = format!("Query {pk}");
        let mut events = Vec::new();
        let mut start_key = None;
        loop {
            let mut query = self
                .client
                .query()
                .table_name(&self.table)
                .projection_expression(FAILURE_PROJECTION)
                .expression_attribute_names("#pk", keys::PK)
                .expression_attribute_names("#pn", PROJECT_NAME)
                .expression_attribute_names("#fin", FINISHED_AT)
                .expression_attribute_names("#pid", PIPELINE_ID)
                .expression_attribute_values(":pk", AttributeValue::S(pk.clone()))
                .set_exclusive_start_key(start_key);
            query = match &sk_from {
                Some(from) => query
                    .key_condition_expression("#pk = :pk AND #sk >= :from")
                    .expression_attribute_names("#sk", keys::SK)
                    .expression_attribute_values(":from", AttributeValue::S(from.clone())),
                None => query.key_condition_expression("#pk = :pk"),
            };
            let page = query.send().await.map_err(|e| sdk_error(&operation, e))?;
            for item in page.items.unwrap_or_default() {
                events.push(failure_from_projection(&pk, item)?);
            }
            start_key = page.last_evaluated_key.filter(|k| !k.is_empty());
            if start_key.is_none() {
                return Ok(events);
            }
        }
    }

    /// The latest automation and monitor run records, in one BatchGetItem.
    async fn latest_runs(&self) -> Result<(Option<RunRecord>, Option<RunRecord>), StoreError> {
        let key = |job: Job| {
            HashMap::from([
                (keys::PK.to_string(), AttributeValue::S(keys::RUN_PK.into())),
                (keys::SK.to_string(), AttributeValue::S(job.as_str().into())),
            ])
        };
        let mut request = KeysAndAttributes::builder()
            .keys(key(Job::Automation))
            .keys(key(Job::Monitor))
            .build()
            .map_err(|e| StoreError::Failed {
                operation: "BatchGetItem RUN".into(),
                message: e.to_string(),
            })?;
        let (mut automation, mut monitor) = (None, None);
        for attempt in 0..=UNPROCESSED_RETRIES {
            let output = self
                .client
                .batch_get_item()
                .request_items(&self.table, request)
                .send()
                .await
                .map_err(|e| sdk_error("BatchGetItem RUN", e))?;
            let items = output
                .responses
                .and_then(|mut r| r.remove(&self.table))
                .unwrap_or_default();
            for item in items {
                let run = decode::<RunRecord>(item)?;
                match run.job {
                    Job::Automation => automation = Some(run),
                    Job::Monitor => monitor = Some(run),
                }
            }
            match output
                .unprocessed_keys
                .and_then(|mut u| u.remove(&self.table))
                .filter(|k| !k.keys.is_empty())
            {
                None => return Ok((automation, monitor)),
                Some(left) => {
                    tracing::debug!(attempt, "BatchGetItem left keys unprocessed; retrying");
                    tokio::time::sleep(std::time::Duration::from_millis(25 << attempt)).await;
                    request = left;
                }
            }
        }
        Err(StoreError::Unavailable {
            operation: "BatchGetItem RUN".into(),
            message: format!("keys still unprocessed after {UNPROCESSED_RETRIES} retries"),
        })
    }
}

/// Decodes the projection of a failure item directly, without going through `serde_dynamo`'s
/// intermediate copy of every attribute: the same attribute names and formats as the serde form
/// of [`FailureEvent`] (camelCase, `finishedAt` an RFC 3339 string, `pipelineId` a number).
fn failure_from_projection(
    pk: &str,
    mut item: HashMap<String, AttributeValue>,
) -> Result<FailureEvent, StoreError> {
    let malformed = |what: &str| StoreError::Failed {
        operation: format!("decode failure item in {pk}"),
        message: format!("malformed item: {what}"),
    };
    let project_name = match item.remove(PROJECT_NAME) {
        Some(AttributeValue::S(name)) => name,
        _ => return Err(malformed("projectName is missing or not a string")),
    };
    let finished_at = match item.get(FINISHED_AT) {
        Some(AttributeValue::S(t)) => t
            .parse::<DateTime<Utc>>()
            .map_err(|e| malformed(&format!("finishedAt {t:?}: {e}")))?,
        _ => return Err(malformed("finishedAt is missing or not a string")),
    };
    let pipeline_id = match item.get(PIPELINE_ID) {
        Some(AttributeValue::N(n)) => n
            .parse::<u64>()
            .map_err(|e| malformed(&format!("pipelineId {n:?}: {e}")))?,
        _ => return Err(malformed("pipelineId is missing or not a number")),
    };
    Ok(FailureEvent {
        project_name,
        pipeline_id,
        finished_at,
        blueprint_id: 0,
        status: String::new(),
        began_at: None,
        message: String::new(),
        error_name: String::new(),
    })
}

/// Decodes an item written as `serde_dynamo::to_item` of `T` plus keys; unknown attributes
/// (`pk`, `sk`, `expiresAt`, anything added later) are ignored.
fn decode<T: serde::de::DeserializeOwned>(
    item: HashMap<String, AttributeValue>,
) -> Result<T, StoreError> {
    let at = |name: &str| match item.get(name) {
        Some(AttributeValue::S(s)) => s.clone(),
        _ => "?".to_string(),
    };
    let (pk, sk) = (at(keys::PK), at(keys::SK));
    serde_dynamo::from_item(item).map_err(|e| StoreError::Failed {
        operation: format!("decode item {pk}/{sk}"),
        message: e.to_string(),
    })
}

/// Whether a failed call may succeed later (network trouble, timeouts, throttling, 5xx) decides
/// between `Unavailable` and `Failed`.
fn sdk_error<E, R>(operation: &str, error: SdkError<E, R>) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug,
{
    let retryable = match &error {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            true
        }
        SdkError::ServiceError(service) => matches!(
            service.err().code(),
            Some(
                "ThrottlingException"
                    | "ProvisionedThroughputExceededException"
                    | "RequestLimitExceeded"
                    | "InternalServerError"
                    | "ServiceUnavailable"
            )
        ),
        _ => false,
    };
    let message = DisplayErrorContext(&error).to_string();
    let operation = operation.to_string();
    if retryable {
        StoreError::Unavailable { operation, message }
    } else {
        StoreError::Failed { operation, message }
    }
}
