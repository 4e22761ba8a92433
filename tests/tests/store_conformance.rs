//! The monitor's store contract, checked against both implementations: the in-memory store that
//! fast scenarios (the soak test, unit tests) run on, and the DynamoDB adapter on DynamoDB Local.
//! Each check is written once over `impl MonitorStore` and runs as `memory::<check>` and
//! `dynamodb::<check>`, so a scenario passing on `MemoryStore` says something about DynamoDB:
//! conditional writes, exactly-once failure events, counters, revisions and re-run claims behave
//! the same in both.

use chrono::{DateTime, TimeZone, Utc};
use devlake_autopilot::failure_cause::FailureCause;
use devlake_autopilot::snapshot::{decode, publish_after_commit, Publication};
use devlake_autopilot::store::{
    CommitOutcome, DynamoStore, FailureEvent, MetricsSource, MonitorCursor, MonitorStore,
    OpenFailure, PendingRerun, ProjectCommit, ProjectState, RerunClaim, RerunSettlement,
    ScrapeRead, SnapshotPut,
};
use devlake_testkit::stack::dynamodb_local;

fn t(day: u32, hour: u32, minute: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, day, hour, minute, 0)
        .unwrap()
}

fn retention() -> chrono::Duration {
    chrono::Duration::days(90)
}

fn event(project: &str, pipeline_id: u64, finished_at: DateTime<Utc>) -> FailureEvent {
    FailureEvent {
        project_name: project.to_string(),
        blueprint_id: 7,
        pipeline_id,
        status: "TASK_FAILED".into(),
        finished_at,
        began_at: Some(finished_at - chrono::Duration::minutes(3)),
        message: "collector failed".into(),
        error_name: "collector failed".into(),
        cause: FailureCause::Unknown,
    }
}

fn state_with(project: &str, failures_total: u64) -> ProjectState {
    ProjectState {
        project_name: project.to_string(),
        blueprint_id: 7,
        last_status: Some("TASK_FAILED".into()),
        failures_total,
        consecutive_failures: failures_total,
        ..Default::default()
    }
}

fn commit<'a>(
    state: &'a ProjectState,
    expected_revision: Option<u64>,
    events: &'a [FailureEvent],
) -> ProjectCommit<'a> {
    ProjectCommit {
        state,
        expected_revision,
        events,
        retention: retention(),
    }
}

/// A failure is written once whatever is retried; a stale revision writes nothing at all.
async fn a_failure_is_recorded_once_and_stale_commits_write_nothing(store: &impl MonitorStore) {
    let project = "github/acme/api";
    let e1 = event(project, 41, t(28, 10, 0));
    let first = state_with(project, 1);
    let once = commit(&first, None, std::slice::from_ref(&e1));
    assert_eq!(
        store.commit_project(once).await.unwrap(),
        CommitOutcome::Committed
    );
    // A duplicate delivery of the same commit: refused as a whole, naming the event.
    assert_eq!(
        store.commit_project(once).await.unwrap(),
        CommitOutcome::AlreadyRecorded(vec![e1.key()])
    );
    let stored = &store.project_states(&[project.into()]).await.unwrap()[project];
    assert_eq!(stored.revision, Some(1));
    assert_eq!(stored.state.failures_total, 1);
    assert_eq!(stored.state.recent_failures, vec![e1.key()]);

    // A second failure committed against a revision that is no longer current: nothing written,
    // not even the new event.
    let e2 = event(project, 42, t(28, 11, 0));
    // As the monitor does: the new state carries the recent failures it read.
    let second = ProjectState {
        recent_failures: stored.state.recent_failures.clone(),
        ..state_with(project, 2)
    };
    let stale = commit(&second, None, std::slice::from_ref(&e2));
    assert_eq!(
        store.commit_project(stale).await.unwrap(),
        CommitOutcome::Conflict
    );
    assert_eq!(
        store
            .recorded_failures(&[e1.clone(), e2.clone()])
            .await
            .unwrap(),
        [e1.key()].into()
    );
    let fresh = commit(&second, Some(1), std::slice::from_ref(&e2));
    assert_eq!(
        store.commit_project(fresh).await.unwrap(),
        CommitOutcome::Committed
    );
    let stored = &store.project_states(&[project.into()]).await.unwrap()[project];
    assert_eq!(stored.revision, Some(2));
    assert_eq!(stored.state.failures_total, 2);
    let mut recent = stored.state.recent_failures.clone();
    recent.sort();
    assert_eq!(recent, vec![e1.key(), e2.key()]);
}

/// Two runs committing the same failure at the same moment count it once.
async fn concurrent_commits_of_one_failure_count_it_once(store: &impl MonitorStore) {
    let project = "github/acme/web";
    let e = event(project, 7, t(28, 9, 0));
    let state = state_with(project, 1);
    let one = commit(&state, None, std::slice::from_ref(&e));
    let (a, b) = tokio::join!(store.commit_project(one), store.commit_project(one));
    let outcomes = [a.unwrap(), b.unwrap()];
    assert_eq!(
        outcomes
            .iter()
            .filter(|o| **o == CommitOutcome::Committed)
            .count(),
        1,
        "{outcomes:?}"
    );
    let stored = &store.project_states(&[project.into()]).await.unwrap()[project];
    assert_eq!(stored.state.failures_total, 1);
    assert_eq!(stored.revision, Some(1));
}

/// The cursor is saved only over the revision it was loaded at.
async fn cursor_saves_are_conditional_on_the_revision(store: &impl MonitorStore) {
    assert_eq!(store.load_cursor().await.unwrap(), None);
    let cursor = MonitorCursor {
        max_pipeline_id: 1234,
        watermark: Some(t(28, 10, 0)),
        watch: vec![1200, 1233],
        open_failures: vec![OpenFailure {
            pipeline_id: 900,
            ended_at: t(27, 9, 0),
            project: "github/acme/web".into(),
        }],
        updated_at: Some(t(28, 10, 5)),
        ..Default::default()
    };
    assert!(store.save_cursor(&cursor, None).await.unwrap());
    // An overlapping first run loses.
    assert!(!store.save_cursor(&cursor, None).await.unwrap());
    let loaded = store.load_cursor().await.unwrap().unwrap();
    assert_eq!(
        loaded,
        MonitorCursor {
            revision: 1,
            ..cursor
        }
    );
    let next = MonitorCursor {
        max_pipeline_id: 1300,
        ..loaded
    };
    assert!(store.save_cursor(&next, Some(1)).await.unwrap());
    assert!(!store.save_cursor(&next, Some(1)).await.unwrap());
    let reloaded = store.load_cursor().await.unwrap().unwrap();
    assert_eq!((reloaded.revision, reloaded.max_pipeline_id), (2, 1300));
}

/// A project's item goes only at the revision it was read at; listings are in name order.
async fn projects_are_listed_in_name_order_and_deleted_only_at_their_revision(
    store: &impl MonitorStore,
) {
    for name in ["b/two", "a/one", "c/three"] {
        let state = state_with(name, 0);
        assert_eq!(
            store
                .commit_project(commit(&state, None, &[]))
                .await
                .unwrap(),
            CommitOutcome::Committed
        );
    }
    let names = |projects: Vec<devlake_autopilot::store::StoredProject>| -> Vec<String> {
        projects.into_iter().map(|p| p.state.project_name).collect()
    };
    assert_eq!(
        names(store.all_projects().await.unwrap()),
        ["a/one", "b/two", "c/three"]
    );
    assert!(!store.delete_project("b/two", Some(0)).await.unwrap());
    assert!(!store.delete_project("b/two", None).await.unwrap());
    assert!(store.delete_project("b/two", Some(1)).await.unwrap());
    assert!(!store.delete_project("b/two", Some(1)).await.unwrap());
    assert_eq!(
        names(store.all_projects().await.unwrap()),
        ["a/one", "c/three"]
    );
}

/// Blueprint → project names come back with when they were resolved; unknown ids are absent.
async fn the_blueprint_map_round_trips(store: &impl MonitorStore) {
    let entries: Vec<(u64, String)> = (1..=130).map(|i| (i, format!("github/org/r{i}"))).collect();
    store
        .save_blueprint_projects(&entries, t(28, 0, 0))
        .await
        .unwrap();
    let ids: Vec<u64> = (0..=140).collect();
    let map = store.blueprint_projects(&ids).await.unwrap();
    assert_eq!(map.len(), 130);
    assert_eq!(map[&17].project_name, "github/org/r17");
    assert_eq!(map[&17].resolved_at, t(28, 0, 0));
    assert!(!map.contains_key(&0) && !map.contains_key(&131));
}

/// Re-run claims: once per failure, up to the maximum, taken again after a release or an
/// expired lease in the same slot, and by one of two racing runs only.
async fn rerun_claims_follow_the_same_rules(store: &impl MonitorStore) {
    let now = t(28, 10, 0);
    let lease = chrono::Duration::minutes(15);
    assert_eq!(
        store.claim_rerun(5, "a#5", 2, now, lease).await.unwrap(),
        RerunClaim::Granted { attempt: 1 }
    );
    assert_eq!(
        store.claim_rerun(5, "a#5", 2, now, lease).await.unwrap(),
        RerunClaim::InProgress
    );
    assert!(store.pending_reruns(now).await.unwrap().is_empty());
    assert!(store
        .settle_rerun(5, "a#5", RerunSettlement::Released)
        .await
        .unwrap());
    assert_eq!(
        store.pending_reruns(now).await.unwrap(),
        vec![PendingRerun {
            pipeline_id: 5,
            failure_key: "a#5".into()
        }]
    );
    assert_eq!(
        store.claim_rerun(5, "a#5", 2, now, lease).await.unwrap(),
        RerunClaim::Granted { attempt: 1 }
    );
    // Abandoned by its holder: listed once the lease has ended, then taken by one racer only.
    let later = now + lease + chrono::Duration::seconds(1);
    assert_eq!(store.pending_reruns(later).await.unwrap().len(), 1);
    let (a, b) = tokio::join!(
        store.claim_rerun(5, "a#5", 2, later, lease),
        store.claim_rerun(5, "a#5", 2, later, lease)
    );
    let mut outcomes = vec![a.unwrap(), b.unwrap()];
    outcomes.sort_by_key(|o| format!("{o:?}"));
    assert_eq!(
        outcomes,
        vec![RerunClaim::Granted { attempt: 1 }, RerunClaim::InProgress]
    );
    assert!(store
        .settle_rerun(5, "a#5", RerunSettlement::Done)
        .await
        .unwrap());
    assert!(!store
        .settle_rerun(5, "a#5", RerunSettlement::Released)
        .await
        .unwrap());
    assert_eq!(
        store.claim_rerun(5, "a#5", 2, later, lease).await.unwrap(),
        RerunClaim::AlreadyDone
    );
    assert_eq!(
        store.claim_rerun(5, "b#5", 2, later, lease).await.unwrap(),
        RerunClaim::Granted { attempt: 2 }
    );
    assert_eq!(
        store.claim_rerun(5, "c#5", 2, later, lease).await.unwrap(),
        RerunClaim::Exhausted
    );
    assert_eq!(
        store.claim_rerun(6, "a#6", 0, later, lease).await.unwrap(),
        RerunClaim::Exhausted
    );
}

/// The metrics snapshot: a generation replaces only an older one, a scrape reads the published
/// one back (and not its bytes when it holds that version already), and a publish holds what was
/// committed before it.
async fn a_snapshot_replaces_only_older_generations(store: &(impl MonitorStore + MetricsSource)) {
    let now = t(28, 11, 0);
    assert!(
        matches!(
            store.scrape(now, None).await.unwrap(),
            ScrapeRead::Direct(_)
        ),
        "nothing published yet: the direct read"
    );
    let older = store.take_publish_number().await.unwrap();
    let newer = store.take_publish_number().await.unwrap();
    assert!(newer > older);
    let put = |version, blob: &'static [u8]| SnapshotPut {
        version,
        digest: "d",
        blob,
        now,
    };
    assert!(store.put_snapshot(put(newer, b"newer")).await.unwrap());
    assert!(!store.put_snapshot(put(older, b"older")).await.unwrap());
    let head = store.snapshot_head().await.unwrap();
    assert_eq!(head.taken, newer);
    assert_eq!(
        head.published.map(|p| (p.version, p.bytes, p.published_at)),
        Some((newer, 5, Some(now)))
    );
    let ScrapeRead::Published(read) = store.scrape(now, None).await.unwrap() else {
        panic!("a published snapshot is read");
    };
    assert_eq!(
        (read.version, read.blob.as_deref()),
        (newer, Some(&b"newer"[..]))
    );
    let ScrapeRead::Published(read) = store.scrape(now, Some(newer)).await.unwrap() else {
        panic!("a published snapshot is read");
    };
    assert_eq!(read.blob, None, "the caller holds that version already");

    let project = "github/acme/api";
    let e1 = event(project, 41, t(28, 10, 0));
    let state = state_with(project, 1);
    store
        .commit_project(commit(&state, None, std::slice::from_ref(&e1)))
        .await
        .unwrap();
    let Publication::Published { version, .. } = publish_after_commit(store, now).await.unwrap()
    else {
        panic!("a new state is published");
    };
    assert!(version > newer);
    let ScrapeRead::Published(read) = store.scrape(now, None).await.unwrap() else {
        panic!("a published snapshot is read");
    };
    let published = decode(&read.blob.unwrap()).unwrap();
    assert_eq!(published.projects.len(), 1);
    assert_eq!(published.projects[0].recent_failures, vec![e1.key()]);
    assert_eq!(
        publish_after_commit(store, now).await.unwrap(),
        Publication::Unchanged { version }
    );
}

/// Each failure keeps its cause; a day's failures read back oldest first, causes included, and
/// the project's state keeps the reason of its latest failure.
async fn failure_causes_are_stored_with_each_failure(store: &impl MonitorStore) {
    let project = "gitlab/acme/svc";
    let auth = FailureEvent {
        cause: FailureCause::Auth,
        ..event(project, 51, t(27, 9, 0))
    };
    let network = FailureEvent {
        cause: FailureCause::Network,
        ..event(project, 52, t(27, 10, 0))
    };
    let next_day = FailureEvent {
        cause: FailureCause::RateLimit,
        ..event(project, 53, t(28, 0, 5))
    };
    let state = ProjectState {
        last_failure_at: Some(next_day.finished_at),
        last_failure_reason: Some(FailureCause::RateLimit),
        ..state_with(project, 3)
    };
    let events = [network.clone(), next_day.clone(), auth.clone()];
    assert_eq!(
        store
            .commit_project(commit(&state, None, &events))
            .await
            .unwrap(),
        CommitOutcome::Committed
    );
    assert_eq!(
        store.failures_on(t(27, 0, 0).date_naive()).await.unwrap(),
        vec![auth, network]
    );
    assert_eq!(
        store.failures_on(t(28, 0, 0).date_naive()).await.unwrap(),
        vec![next_day]
    );
    assert!(store
        .failures_on(t(26, 0, 0).date_naive())
        .await
        .unwrap()
        .is_empty());
    let stored = &store.project_states(&[project.into()]).await.unwrap()[project];
    assert_eq!(
        stored.state.last_failure_reason,
        Some(FailureCause::RateLimit)
    );
}

async fn dynamo_store(check: &str) -> DynamoStore {
    let local = dynamodb_local().await;
    let table = local.create_table(&format!("conformance-{check}")).await;
    DynamoStore::new(local.client(), table)
}

/// One test per check and store.
macro_rules! conformance {
    ($($check:ident),* $(,)?) => {
        mod memory {
            $(
                #[tokio::test]
                async fn $check() {
                    super::$check(&devlake_autopilot::store::MemoryStore::new()).await;
                }
            )*
        }
        mod dynamodb {
            $(
                #[tokio::test]
                async fn $check() {
                    super::$check(&super::dynamo_store(stringify!($check)).await).await;
                }
            )*
        }
    };
}

conformance!(
    a_failure_is_recorded_once_and_stale_commits_write_nothing,
    concurrent_commits_of_one_failure_count_it_once,
    cursor_saves_are_conditional_on_the_revision,
    projects_are_listed_in_name_order_and_deleted_only_at_their_revision,
    the_blueprint_map_round_trips,
    rerun_claims_follow_the_same_rules,
    a_snapshot_replaces_only_older_generations,
    failure_causes_are_stored_with_each_failure,
);

/// A failure item written before causes existed (no `cause` attribute) reads as `unknown`, and a
/// project state without a reason reads without one. (The in-memory store holds typed events;
/// its side is the serde default, covered in the library's unit tests.)
#[tokio::test]
async fn dynamodb_items_written_before_causes_read_as_unknown() {
    use aws_sdk_dynamodb::types::AttributeValue;
    let local = dynamodb_local().await;
    let table = local.create_table("conformance-older-causes").await;
    let client = local.client();
    let old = serde_json::json!({
        "projectName": "github/acme/old", "blueprintId": 7, "pipelineId": 44,
        "status": "TASK_FAILED", "finishedAt": "2026-11-20T08:00:00Z", "beganAt": null,
        "message": "boom", "errorName": "boom",
        "pk": "FAILURE#2026-11-20", "sk": "2026-11-20T08:00:00.000Z#44",
    });
    let item: std::collections::HashMap<String, AttributeValue> =
        serde_dynamo::aws_sdk_dynamodb_1::to_item(old).unwrap();
    client
        .put_item()
        .table_name(&table)
        .set_item(Some(item))
        .send()
        .await
        .unwrap();
    let project = serde_json::json!({"projectName": "github/acme/old", "blueprintId": 7,
        "lastFailureAt": "2026-11-20T08:00:00Z", "consecutiveFailures": 1, "stuck": false});
    client
        .put_item()
        .table_name(&table)
        .item("pk", AttributeValue::S("PROJECT".into()))
        .item("sk", AttributeValue::S("github/acme/old".into()))
        .item("state", AttributeValue::S(project.to_string()))
        .item("failuresTotal", AttributeValue::N("1".into()))
        .item("revision", AttributeValue::N("1".into()))
        .send()
        .await
        .unwrap();
    let store = DynamoStore::new(client, table);
    let day = t(20, 0, 0).date_naive();
    let events = store.failures_on(day).await.unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].cause, FailureCause::Unknown);
    assert_eq!(events[0].pipeline_id, 44);
    let stored = &store
        .project_states(&["github/acme/old".into()])
        .await
        .unwrap()["github/acme/old"];
    assert_eq!(stored.state.last_failure_reason, None);
}
