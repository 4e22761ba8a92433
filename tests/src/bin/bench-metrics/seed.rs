//! The state the benchmark seeds: projects, failures and run records as the monitor writes them,
//! through the store's own commits where the write path is part of what is measured, and through
//! plain batch writes where only the data matters (old failures, chunks of the scale table).

use std::collections::HashMap;

use anyhow::{ensure, Context, Result};
use aws_sdk_dynamodb::types::{AttributeValue, PutRequest, WriteRequest};
use chrono::{DateTime, Duration as ChronoDuration, Utc};
use devlake_autopilot::store::{
    keys, CommitOutcome, DynamoStore, FailureEvent, Job, MonitorStore, ProjectCommit, ProjectState,
    RunRecord, MAX_EVENTS_PER_COMMIT,
};
use futures::{StreamExt, TryStreamExt};
use serde::Serialize;

pub(crate) fn project(i: usize, now: DateTime<Utc>) -> ProjectState {
    let failing = i.is_multiple_of(5);
    ProjectState {
        project_name: project_name(i),
        blueprint_id: i as u64 + 1,
        last_status: Some(
            if failing {
                "TASK_FAILED"
            } else {
                "TASK_COMPLETED"
            }
            .into(),
        ),
        last_finished_at: Some(now - ChronoDuration::hours(2)),
        last_success_at: Some(now - ChronoDuration::hours(if failing { 50 } else { 2 })),
        last_failure_at: Some(now - ChronoDuration::hours(if failing { 2 } else { 70 })),
        last_failure_reason: Some(
            devlake_autopilot::failure_cause::FailureCause::ALL
                [i % devlake_autopilot::failure_cause::FailureCause::ALL.len()],
        ),
        last_duration_seconds: Some(120.0 + i as f64),
        failures_total: (i % 40) as u64,
        consecutive_failures: if failing { 2 } else { 0 },
        stuck: i.is_multiple_of(97),
        recent_failures: Vec::new(),
        schedule_missed: i.is_multiple_of(89),
        stuck_cancel_failed: false,
        ..ProjectState::default()
    }
}

pub(crate) fn project_name(i: usize) -> String {
    let plugin = ["github", "gitlab", "bitbucket", "jira"][i % 4];
    format!("{plugin}/acme-engineering/service-{i:05}")
}

pub(crate) fn failure(i: usize, projects: usize, finished: DateTime<Utc>) -> FailureEvent {
    FailureEvent {
        project_name: project_name(i % projects.max(1)),
        blueprint_id: (i % projects.max(1)) as u64 + 1,
        pipeline_id: 100_000 + i as u64,
        status: if i.is_multiple_of(3) {
            "TASK_PARTIAL"
        } else {
            "TASK_FAILED"
        }
        .into(),
        finished_at: finished,
        began_at: Some(finished - ChronoDuration::seconds(300)),
        message: format!(
            "subtask collectApiPullRequests ended unexpectedly: Get \"https://api.github.com/repos/\
             acme-engineering/service-{i:05}/pulls?page=7\": context deadline exceeded (retry 3/3)"
        ),
        error_name: "github.collectApiPullRequests".into(),
        cause: devlake_autopilot::failure_cause::FailureCause::Timeout,
    }
}

pub(crate) fn run_record(job: Job, finished: DateTime<Utc>) -> RunRecord {
    RunRecord {
        job,
        finished_at: finished,
        success: true,
        devlake_up: (job == Job::Monitor).then_some(true),
        duration_ms: 850,
        summary: serde_json::json!({"status": "ok", "newFailures": 3, "pipelinesInspected": 12}),
    }
}

pub(crate) fn item<T: Serialize>(value: &T, pk: &str, sk: &str) -> HashMap<String, AttributeValue> {
    let mut item: HashMap<String, AttributeValue> =
        serde_dynamo::to_item(value).expect("serialisable");
    item.insert(keys::PK.into(), AttributeValue::S(pk.into()));
    item.insert(keys::SK.into(), AttributeValue::S(sk.into()));
    item
}

/// A project's state and the revision it is stored at (`None`: not stored yet).
pub(crate) type StoredState = (ProjectState, Option<u64>);

/// Commits `events` (of project `i % projects` for event `i`) through the store's own
/// `commit_project`, as the monitor does: per project, transactions of at most
/// `MAX_EVENTS_PER_COMMIT` events with the state and its recent-failures list, conditional on
/// the revision. A few projects in flight; returns the states as stored.
pub(crate) async fn commit_all(
    store: &DynamoStore,
    states: Vec<StoredState>,
    events: impl Iterator<Item = FailureEvent>,
    projects: usize,
    window: ChronoDuration,
) -> Result<Vec<StoredState>> {
    let mut per_project: Vec<Vec<FailureEvent>> = vec![Vec::new(); projects];
    for (i, event) in events.enumerate() {
        per_project[i % projects.max(1)].push(event);
    }
    futures::stream::iter(states.into_iter().zip(per_project))
        .map(|((mut state, mut revision), mut events)| async move {
            events.sort_by_key(|e| e.finished_at);
            for chunk in events.chunks(MAX_EVENTS_PER_COMMIT) {
                state.failures_total += chunk.len() as u64;
                // Recorded by a monitor run just after the newest of them finished.
                let recorded_at = chunk
                    .iter()
                    .map(|e| e.finished_at)
                    .max()
                    .unwrap_or_default();
                state.remember_failures(chunk, recorded_at, window);
                commit(store, &state, revision, chunk).await?;
                revision = Some(revision.map_or(1, |r| r + 1));
            }
            if revision.is_none() {
                // No failures: the state alone, as the monitor writes a project without any.
                commit(store, &state, None, &[]).await?;
                revision = Some(1);
            }
            Ok::<_, anyhow::Error>((state, revision))
        })
        .buffered(8)
        .try_collect()
        .await
}

pub(crate) async fn commit(
    store: &DynamoStore,
    state: &ProjectState,
    expected_revision: Option<u64>,
    events: &[FailureEvent],
) -> Result<()> {
    let outcome = store
        .commit_project(ProjectCommit {
            state,
            expected_revision,
            events,
            retention: ChronoDuration::days(90),
        })
        .await
        .context("commit_project")?;
    ensure!(
        outcome == CommitOutcome::Committed,
        "seeding {}: {outcome:?}",
        state.project_name
    );
    Ok(())
}

/// BatchWriteItem, 25 items per call, a few calls in flight; items are generated lazily and
/// written 1,000 at a time so the seed data never sits in memory as a whole.
pub(crate) async fn write_all(
    client: &aws_sdk_dynamodb::Client,
    table: &str,
    items: impl Iterator<Item = HashMap<String, AttributeValue>>,
) -> Result<()> {
    let mut chunks: Vec<Vec<WriteRequest>> = Vec::new();
    let mut chunk = Vec::with_capacity(25);
    for it in items {
        let put = PutRequest::builder().set_item(Some(it)).build()?;
        chunk.push(WriteRequest::builder().put_request(put).build());
        if chunk.len() == 25 {
            chunks.push(std::mem::take(&mut chunk));
        }
        if chunks.len() == 40 {
            write_chunks(client, table, std::mem::take(&mut chunks)).await?;
        }
    }
    if !chunk.is_empty() {
        chunks.push(chunk);
    }
    write_chunks(client, table, chunks).await
}

pub(crate) async fn write_chunks(
    client: &aws_sdk_dynamodb::Client,
    table: &str,
    chunks: Vec<Vec<WriteRequest>>,
) -> Result<()> {
    futures::stream::iter(chunks)
        .map(|mut requests| async move {
            while !requests.is_empty() {
                let out = client
                    .batch_write_item()
                    .request_items(table, requests)
                    .send()
                    .await
                    .context("BatchWriteItem")?;
                requests = out
                    .unprocessed_items
                    .and_then(|mut u| u.remove(table))
                    .unwrap_or_default();
            }
            Ok::<_, anyhow::Error>(())
        })
        .buffer_unordered(4)
        .try_collect::<()>()
        .await
}
