//! The DynamoDB adapter against DynamoDB Local, on a table created from template.yaml:
//! transactions, conditional writes, TTL on failure events only, counters, run records, and the
//! read path of the metrics function seeing exactly what the monitor wrote.

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, SubsecRound, TimeZone, Utc};
use devlake_autopilot::store::{
    keys, CommitOutcome, DynamoStore, FailureEvent, Job, MetricsSource, MissingBlueprint,
    MonitorCursor, MonitorStore, OpenFailure, PendingRerun, ProjectCommit, ProjectState,
    RerunClaim, RerunSettlement, RunLog, RunRecord, ScheduleWatch, StoreError, StuckCancel,
};
use devlake_testkit::dynamo_calls::DynamoCallCounter;
use devlake_testkit::stack::{dynamodb_local, free_port, local_sdk_config};

const RETENTION_DAYS: i64 = 90;

fn retention() -> chrono::Duration {
    chrono::Duration::days(RETENTION_DAYS)
}

fn t(day: u32, hour: u32, minute: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, day, hour, minute, 0)
        .unwrap()
}

async fn store(prefix: &str) -> (DynamoStore, aws_sdk_dynamodb::Client) {
    let local = dynamodb_local().await;
    let table = local.create_table(prefix).await;
    let client = local.client();
    (DynamoStore::new(client.clone(), table), client)
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
        error_name: "collector failed\n\tcaused by: 502".into(),
        cause: devlake_autopilot::failure_cause::FailureCause::Network,
    }
}

fn state_after(project: &str, events: &[FailureEvent], total: u64) -> ProjectState {
    let last = events.iter().map(|e| e.finished_at).max();
    ProjectState {
        project_name: project.to_string(),
        blueprint_id: 7,
        last_status: Some("TASK_FAILED".into()),
        last_finished_at: last,
        last_success_at: None,
        last_failure_at: last,
        last_failure_reason: events.iter().max_by_key(|e| e.finished_at).map(|e| e.cause),
        last_duration_seconds: Some(180.0),
        failures_total: total,
        consecutive_failures: total,
        stuck: false,
        // What the monitor writes: the keys of the events, oldest first.
        recent_failures: {
            let mut keys: Vec<String> = events.iter().map(FailureEvent::key).collect();
            keys.sort();
            keys
        },
        schedule_missed: false,
        stuck_cancel_failed: false,
        ..ProjectState::default()
    }
}

async fn raw_item(
    client: &aws_sdk_dynamodb::Client,
    table: &str,
    pk: &str,
    sk: &str,
) -> Option<HashMap<String, AttributeValue>> {
    client
        .get_item()
        .table_name(table)
        .key(keys::PK, AttributeValue::S(pk.into()))
        .key(keys::SK, AttributeValue::S(sk.into()))
        .consistent_read(true)
        .send()
        .await
        .unwrap()
        .item
}

fn n(item: &HashMap<String, AttributeValue>, name: &str) -> i64 {
    item.get(name)
        .and_then(|v| v.as_n().ok())
        .unwrap_or_else(|| panic!("{name} is not a number in {item:?}"))
        .parse()
        .unwrap()
}

#[tokio::test]
async fn failure_and_counter_are_written_together_once() {
    let (store, client) = store("store-commit").await;
    let e1 = event("github/acme/api", 41, t(28, 10, 0));
    let state = state_after("github/acme/api", std::slice::from_ref(&e1), 1);
    let commit = ProjectCommit {
        state: &state,
        expected_revision: None,
        events: std::slice::from_ref(&e1),
        retention: retention(),
    };
    assert_eq!(
        store.commit_project(commit).await.unwrap(),
        CommitOutcome::Committed
    );

    // The failure item: the event's camelCase fields, its keys, and the TTL attribute.
    let pk = keys::failure_pk(e1.finished_at.date_naive());
    let sk = keys::failure_sk(e1.finished_at, e1.pipeline_id);
    assert_eq!(pk, "FAILURE#2026-11-28");
    assert_eq!(sk, "2026-11-28T10:00:00.000Z#41");
    assert_eq!(sk, e1.key());
    let item = raw_item(&client, store.table(), &pk, &sk)
        .await
        .expect("failure item");
    assert_eq!(
        n(&item, "expiresAt"),
        e1.finished_at.timestamp() + RETENTION_DAYS * 86_400
    );
    assert_eq!(item["projectName"].as_s().unwrap(), "github/acme/api");
    assert_eq!(n(&item, "pipelineId"), 41);
    assert_eq!(item["status"].as_s().unwrap(), "TASK_FAILED");
    assert!(item["errorName"].as_s().unwrap().contains("caused by"));

    // The project item: counter, revision and the rest of the state as one JSON attribute
    // (what the metrics page reads per scrape), no TTL.
    let project = raw_item(&client, store.table(), keys::PROJECT_PK, "github/acme/api")
        .await
        .expect("project item");
    assert_eq!(n(&project, "failuresTotal"), 1);
    assert!(!project.contains_key("expiresAt"));
    let packed: serde_json::Value =
        serde_json::from_str(project["state"].as_s().expect("state is a string")).unwrap();
    assert_eq!(packed["projectName"], "github/acme/api");
    assert_eq!(packed["lastStatus"], "TASK_FAILED");
    assert_eq!(packed["recentFailures"], e1.key());
    assert!(packed.get("failuresTotal").is_none(), "{packed}");
    let mut names: Vec<&str> = project.keys().map(String::as_str).collect();
    names.sort_unstable();
    assert_eq!(names, ["failuresTotal", "pk", "revision", "sk", "state"]);

    // The same commit again (a duplicate delivery): refused as a whole, counter unchanged.
    let outcome = store.commit_project(commit).await.unwrap();
    assert_eq!(outcome, CommitOutcome::AlreadyRecorded(vec![e1.key()]));
    let states = store
        .project_states(&["github/acme/api".into()])
        .await
        .unwrap();
    let stored = &states["github/acme/api"];
    assert_eq!(stored.state, state);
    assert_eq!(stored.revision, Some(1));

    // A second failure with a stale revision: nothing written, not even the new event.
    let e2 = event("github/acme/api", 42, t(28, 11, 0));
    let state2 = state_after("github/acme/api", &[e1.clone(), e2.clone()], 2);
    let stale = ProjectCommit {
        state: &state2,
        expected_revision: None,
        events: std::slice::from_ref(&e2),
        retention: retention(),
    };
    assert_eq!(
        store.commit_project(stale).await.unwrap(),
        CommitOutcome::Conflict
    );
    assert!(
        store
            .recorded_failures(&[e1.clone(), e2.clone()])
            .await
            .unwrap()
            == [e1.key()].into()
    );

    // With the right revision it goes through and the counter moves by exactly one.
    let fresh = ProjectCommit {
        expected_revision: Some(1),
        ..stale
    };
    assert_eq!(
        store.commit_project(fresh).await.unwrap(),
        CommitOutcome::Committed
    );
    let project = raw_item(&client, store.table(), keys::PROJECT_PK, "github/acme/api")
        .await
        .unwrap();
    assert_eq!(n(&project, "failuresTotal"), 2);
    assert_eq!(n(&project, "revision"), 2);
}

#[tokio::test]
async fn concurrent_commits_of_the_same_failure_count_once() {
    let (store, _) = store("store-race").await;
    let e = event("p", 7, t(28, 9, 30));
    let state = state_after("p", std::slice::from_ref(&e), 1);
    let attempts = (0..6).map(|_| {
        let store = store.clone();
        let e = e.clone();
        let state = state.clone();
        tokio::spawn(async move {
            store
                .commit_project(ProjectCommit {
                    state: &state,
                    expected_revision: None,
                    events: std::slice::from_ref(&e),
                    retention: retention(),
                })
                .await
                .unwrap()
        })
    });
    let outcomes: Vec<CommitOutcome> = futures::future::join_all(attempts)
        .await
        .into_iter()
        .map(|r| r.unwrap())
        .collect();
    let committed = outcomes
        .iter()
        .filter(|o| **o == CommitOutcome::Committed)
        .count();
    assert_eq!(committed, 1, "{outcomes:?}");
    let states = store.project_states(&["p".into()]).await.unwrap();
    assert_eq!(states["p"].state.failures_total, 1);
}

#[tokio::test]
async fn a_transaction_takes_at_most_99_events() {
    let (store, _) = store("store-limit").await;
    let events: Vec<FailureEvent> = (0..100)
        .map(|i| event("p", i, t(28, 0, 0) + chrono::Duration::seconds(i as i64)))
        .collect();
    let state = state_after("p", &events, 100);
    let err = store
        .commit_project(ProjectCommit {
            state: &state,
            expected_revision: None,
            events: &events,
            retention: retention(),
        })
        .await
        .unwrap_err();
    assert!(!err.is_retryable());
    let ok = store
        .commit_project(ProjectCommit {
            state: &state_after("p", &events[..99], 99),
            expected_revision: None,
            events: &events[..99],
            retention: retention(),
        })
        .await
        .unwrap();
    assert_eq!(ok, CommitOutcome::Committed);
    assert_eq!(store.recorded_failures(&events).await.unwrap().len(), 99);
}

#[tokio::test]
async fn cursor_saves_are_conditional_on_the_revision() {
    let (store, client) = store("store-cursor").await;
    assert_eq!(store.load_cursor().await.unwrap(), None);
    let cursor = MonitorCursor {
        max_pipeline_id: 1234,
        watermark: Some(t(28, 10, 0)),
        watch: vec![1200, 1233],
        stuck: [("github/acme/api".to_string(), 1200u64)].into(),
        open_failures: vec![OpenFailure {
            pipeline_id: 900,
            ended_at: t(27, 9, 0),
            project: "github/acme/web".into(),
        }],
        recheck_after: 900,
        sweep_page: 3,
        missing_blueprints: vec![MissingBlueprint {
            blueprint_id: 7,
            since: t(28, 9, 0),
        }],
        lookback_from: Some(t(27, 10, 0)),
        schedules: vec![
            ScheduleWatch {
                blueprint_id: 7,
                cron_hash: 0x3a_2b1c,
                last_activity: t(28, 3, 0),
            },
            ScheduleWatch {
                blueprint_id: 12,
                cron_hash: 1,
                last_activity: t(27, 23, 59),
            },
        ],
        schedule_missed: ["github/acme/cli".to_string()].into(),
        stuck_cancels: vec![StuckCancel {
            pipeline_id: 1200,
            project: "github/acme/api".into(),
            requested_at: t(28, 9, 55),
        }],
        stuck_cancel_failed: [("github/acme/api".to_string(), 1200u64)].into(),
        updated_at: Some(t(28, 10, 5)),
        revision: 0,
    };
    assert!(store.save_cursor(&cursor, None).await.unwrap());
    // A second first-save (an overlapping first run) loses.
    assert!(!store.save_cursor(&cursor, None).await.unwrap());
    let loaded = store.load_cursor().await.unwrap().unwrap();
    assert_eq!(
        loaded,
        MonitorCursor {
            revision: 1,
            ..cursor.clone()
        }
    );
    let next = MonitorCursor {
        max_pipeline_id: 1300,
        ..loaded.clone()
    };
    assert!(store.save_cursor(&next, Some(1)).await.unwrap());
    assert!(!store.save_cursor(&next, Some(1)).await.unwrap());
    assert_eq!(store.load_cursor().await.unwrap().unwrap().revision, 2);
    let item = raw_item(&client, store.table(), keys::MONITOR_PK, keys::CURSOR_SK)
        .await
        .unwrap();
    assert!(!item.contains_key("expiresAt"));
    assert_eq!(n(&item, "maxPipelineId"), 1300);

    // A cursor saved by an older version still loads: earlier versions kept re-run `attempts`
    // (from the belief that DevLake keeps a re-run's first `beganAt`); the field is ignored.
    let mut old = item.clone();
    old.insert(
        "attempts".into(),
        AttributeValue::L(vec![AttributeValue::M(
            [
                ("pipelineId".to_string(), AttributeValue::N("1200".into())),
                (
                    "seenRunningAt".to_string(),
                    AttributeValue::S("2026-11-28T09:55:00Z".into()),
                ),
            ]
            .into(),
        )]),
    );
    client
        .put_item()
        .table_name(store.table())
        .set_item(Some(old))
        .send()
        .await
        .unwrap();
    assert_eq!(
        store.load_cursor().await.unwrap().unwrap().max_pipeline_id,
        1300
    );
}

#[tokio::test]
async fn run_records_replace_the_previous_run_of_the_same_job() {
    let (store, client) = store("store-runs").await;
    let run = |job, minute, success| RunRecord {
        job,
        finished_at: t(28, 10, minute),
        success,
        devlake_up: (job == Job::Monitor).then_some(success),
        duration_ms: 1234,
        summary: serde_json::json!({"status": "ok", "errors": [], "nested": {"n": 1, "none": null}}),
    };
    store.record_run(&run(Job::Monitor, 0, true)).await.unwrap();
    store
        .record_run(&run(Job::Automation, 1, true))
        .await
        .unwrap();
    store
        .record_run(&run(Job::Monitor, 5, false))
        .await
        .unwrap();
    let item = raw_item(&client, store.table(), keys::RUN_PK, "monitor")
        .await
        .unwrap();
    assert_eq!(item["success"].as_bool().unwrap(), &false);
    assert_eq!(item["devlakeUp"].as_bool().unwrap(), &false);
    assert!(!item.contains_key("expiresAt"));
    // The metrics function reads them back as written.
    let snapshot = store.snapshot(t(20, 0, 0)).await.unwrap();
    assert_eq!(snapshot.monitor, Some(run(Job::Monitor, 5, false)));
    assert_eq!(snapshot.automation, Some(run(Job::Automation, 1, true)));
}

#[tokio::test]
async fn the_metrics_read_path_sees_what_the_monitor_wrote() {
    let (store, _) = store("store-contract").await;
    // DevLake stamps whole seconds; the recent-failures list keeps milliseconds (the key's).
    let now = Utc::now().trunc_subsecs(0);
    let recent = event(
        "gitlab/group/svc \"quoted\"",
        9,
        now - chrono::Duration::hours(2),
    );
    let old = event(
        "gitlab/group/svc \"quoted\"",
        3,
        now - chrono::Duration::days(30),
    );
    let state = state_after(&recent.project_name, &[old.clone(), recent.clone()], 2);
    store
        .commit_project(ProjectCommit {
            state: &state,
            expected_revision: None,
            events: &[old.clone(), recent.clone()],
            retention: retention(),
        })
        .await
        .unwrap();
    let snapshot = store
        .snapshot(now - chrono::Duration::days(7))
        .await
        .unwrap();
    assert_eq!(snapshot.projects, vec![state]);
    assert_eq!(snapshot.failures.len(), 1);
    let seen = &snapshot.failures[0];
    assert_eq!(
        (seen.pipeline_id, seen.finished_at, &seen.project_name),
        (9, recent.finished_at, &recent.project_name)
    );
}

#[tokio::test]
async fn the_recent_failures_list_holds_every_committed_event() {
    let (store, client) = store("store-recent").await;
    // An item written before the list existed reads as an empty list.
    client
        .put_item()
        .table_name(store.table())
        .item(keys::PK, AttributeValue::S(keys::PROJECT_PK.into()))
        .item(keys::SK, AttributeValue::S("legacy".into()))
        .item("projectName", AttributeValue::S("legacy".into()))
        .item("blueprintId", AttributeValue::N("3".into()))
        .item("failuresTotal", AttributeValue::N("4".into()))
        .item("consecutiveFailures", AttributeValue::N("0".into()))
        .item("stuck", AttributeValue::Bool(false))
        .item("revision", AttributeValue::N("1".into()))
        .send()
        .await
        .unwrap();
    let legacy = store.project_states(&["legacy".into()]).await.unwrap();
    assert_eq!(legacy["legacy"].state.failures_total, 4);
    assert!(legacy["legacy"].state.recent_failures.is_empty());

    // The store merges the commit's events into the list even when the caller's state lacks
    // them, in the same transaction; a later commit adds to what is there.
    let e1 = event("p", 1, t(28, 9, 0));
    let e2 = event("p", 2, t(28, 8, 0));
    let bare = ProjectState {
        recent_failures: Vec::new(),
        ..state_after("p", std::slice::from_ref(&e1), 1)
    };
    for (events, revision) in [(&e1, None), (&e2, Some(1))] {
        let stored = store.project_states(&["p".into()]).await.unwrap();
        let state = ProjectState {
            recent_failures: stored
                .get("p")
                .map(|s| s.state.recent_failures.clone())
                .unwrap_or_default(),
            ..bare.clone()
        };
        let outcome = store
            .commit_project(ProjectCommit {
                state: &state,
                expected_revision: revision,
                events: std::slice::from_ref(events),
                retention: retention(),
            })
            .await
            .unwrap();
        assert_eq!(outcome, CommitOutcome::Committed);
    }
    let stored = store.project_states(&["p".into()]).await.unwrap();
    assert_eq!(stored["p"].state.recent_failures, vec![e2.key(), e1.key()]);

    // The legacy item's next commit rewrites it packed: its per-field attributes go, the
    // counter moves on from where it was, and both readers see the new state.
    let e3 = event("legacy", 3, t(28, 10, 0));
    let next = ProjectState {
        failures_total: 5,
        ..state_after("legacy", std::slice::from_ref(&e3), 1)
    };
    let outcome = store
        .commit_project(ProjectCommit {
            state: &next,
            expected_revision: Some(1),
            events: std::slice::from_ref(&e3),
            retention: retention(),
        })
        .await
        .unwrap();
    assert_eq!(outcome, CommitOutcome::Committed);
    let item = raw_item(&client, store.table(), keys::PROJECT_PK, "legacy")
        .await
        .unwrap();
    let mut names: Vec<&str> = item.keys().map(String::as_str).collect();
    names.sort_unstable();
    assert_eq!(names, ["failuresTotal", "pk", "revision", "sk", "state"]);
    assert_eq!(n(&item, "failuresTotal"), 5);
    let rewritten = &store.project_states(&["legacy".into()]).await.unwrap()["legacy"];
    assert_eq!(rewritten.revision, Some(2));
    assert_eq!(rewritten.state, next);
    let listed = store.all_project_states().await.unwrap();
    assert_eq!(
        listed.iter().find(|p| p.state.project_name == "legacy"),
        Some(rewritten)
    );
}

#[tokio::test]
async fn blueprint_map_round_trips_in_batches() {
    let (store, _) = store("store-blueprints").await;
    let entries: Vec<(u64, String)> = (1..=260)
        .map(|i| (i, format!("github/org/repo-{i}")))
        .collect();
    store
        .save_blueprint_projects(&entries, t(28, 0, 0))
        .await
        .unwrap();
    let ids: Vec<u64> = (0..=300).collect();
    let map = store.blueprint_projects(&ids).await.unwrap();
    assert_eq!(map.len(), 260);
    assert_eq!(map[&17].project_name, "github/org/repo-17");
    // When it was resolved comes back too: the monitor re-resolves entries that are too old.
    assert_eq!(map[&17].resolved_at, t(28, 0, 0));
    assert!(!map.contains_key(&0) && !map.contains_key(&261));
}

#[tokio::test]
async fn a_project_item_is_deleted_only_at_the_revision_read() {
    let (store, _) = store("store-delete-project").await;
    let state = ProjectState {
        project_name: "gone".into(),
        ..Default::default()
    };
    let commit = ProjectCommit {
        state: &state,
        expected_revision: None,
        events: &[],
        retention: chrono::Duration::days(1),
    };
    assert_eq!(
        store.commit_project(commit).await.unwrap(),
        CommitOutcome::Committed
    );
    // Changed since it was read (revision 1 now): kept.
    assert!(!store.delete_project("gone", Some(0)).await.unwrap());
    assert!(!store.delete_project("gone", None).await.unwrap());
    assert_eq!(store.all_projects().await.unwrap().len(), 1);
    assert!(store.delete_project("gone", Some(1)).await.unwrap());
    assert!(store.all_projects().await.unwrap().is_empty());
    assert!(!store.delete_project("gone", Some(1)).await.unwrap());
}

#[tokio::test]
async fn reruns_are_claimed_once_per_failure_and_up_to_the_maximum() {
    let (store, client) = store("store-rerun").await;
    let now = t(28, 10, 0);
    let lease = chrono::Duration::minutes(15);
    assert_eq!(
        store.claim_rerun(5, "a#5", 2, now, lease).await.unwrap(),
        RerunClaim::Granted { attempt: 1 }
    );
    // In progress: a concurrent run does not take it.
    assert_eq!(
        store.claim_rerun(5, "a#5", 2, now, lease).await.unwrap(),
        RerunClaim::InProgress
    );
    assert!(store
        .settle_rerun(5, "a#5", RerunSettlement::Done)
        .await
        .unwrap());
    assert_eq!(
        store.claim_rerun(5, "a#5", 2, now, lease).await.unwrap(),
        RerunClaim::AlreadyDone
    );
    assert_eq!(
        store.claim_rerun(5, "b#5", 2, now, lease).await.unwrap(),
        RerunClaim::Granted { attempt: 2 }
    );
    assert_eq!(
        store.claim_rerun(5, "c#5", 2, now, lease).await.unwrap(),
        RerunClaim::Exhausted
    );
    assert_eq!(
        store.claim_rerun(6, "a#6", 0, now, lease).await.unwrap(),
        RerunClaim::Exhausted
    );
    let item = raw_item(&client, store.table(), keys::RERUN_PK, "5")
        .await
        .unwrap();
    assert_eq!(n(&item, "reruns"), 2);
    assert!(!item.contains_key("expiresAt"));
}

#[tokio::test]
async fn a_released_or_expired_rerun_claim_is_taken_again_in_the_same_slot() {
    let (store, _client) = store("store-rerun-lease").await;
    let now = t(28, 10, 0);
    let lease = chrono::Duration::minutes(15);
    assert_eq!(
        store.claim_rerun(7, "a#7", 1, now, lease).await.unwrap(),
        RerunClaim::Granted { attempt: 1 }
    );
    assert!(store.pending_reruns(now).await.unwrap().is_empty());
    // The request failed: released, listed, and taken again without using a second slot.
    assert!(store
        .settle_rerun(7, "a#7", RerunSettlement::Released)
        .await
        .unwrap());
    assert_eq!(
        store.pending_reruns(now).await.unwrap(),
        vec![PendingRerun {
            pipeline_id: 7,
            failure_key: "a#7".into()
        }]
    );
    assert_eq!(
        store.claim_rerun(7, "a#7", 1, now, lease).await.unwrap(),
        RerunClaim::Granted { attempt: 1 }
    );
    // The holder stopped before settling: nobody takes it before the lease ends ...
    let almost = now + lease;
    assert!(store.pending_reruns(almost).await.unwrap().is_empty());
    assert_eq!(
        store.claim_rerun(7, "a#7", 1, almost, lease).await.unwrap(),
        RerunClaim::InProgress
    );
    // ... one run does after it; a second one racing it does not.
    let later = almost + chrono::Duration::seconds(1);
    assert_eq!(store.pending_reruns(later).await.unwrap().len(), 1);
    let (a, b) = tokio::join!(
        store.claim_rerun(7, "a#7", 1, later, lease),
        store.claim_rerun(7, "a#7", 1, later, lease)
    );
    let mut outcomes = vec![a.unwrap(), b.unwrap()];
    outcomes.sort_by_key(|o| format!("{o:?}"));
    assert_eq!(
        outcomes,
        vec![RerunClaim::Granted { attempt: 1 }, RerunClaim::InProgress]
    );
    // The cap still holds for another failure of the pipeline.
    assert_eq!(
        store.claim_rerun(7, "b#7", 1, later, lease).await.unwrap(),
        RerunClaim::Exhausted
    );
    assert!(store
        .settle_rerun(7, "a#7", RerunSettlement::Done)
        .await
        .unwrap());
    assert!(!store
        .settle_rerun(7, "a#7", RerunSettlement::Released)
        .await
        .unwrap());
    assert!(store
        .pending_reruns(later + lease * 2)
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn an_unreachable_table_is_a_retryable_unavailable_error() {
    let port = free_port().unwrap();
    let sdk = local_sdk_config(&format!("http://127.0.0.1:{port}"));
    let client = aws_sdk_dynamodb::Client::from_conf(
        aws_sdk_dynamodb::config::Builder::from(&sdk)
            .timeout_config(
                aws_sdk_dynamodb::config::timeout::TimeoutConfig::builder()
                    .connect_timeout(Duration::from_millis(300))
                    .build(),
            )
            .build(),
    );
    let store = DynamoStore::new(client, "nowhere");
    let err = store.load_cursor().await.unwrap_err();
    assert!(matches!(err, StoreError::Unavailable { .. }), "{err}");
    assert!(err.is_retryable());
    assert!(err.to_string().contains("GetItem"), "{err}");
    // The SDK's error stays attached for logs that print the whole chain.
    let source = std::error::Error::source(&err).expect("the SDK error is kept as the source");
    assert!(source.to_string().contains("dispatch failure"), "{source}");
}

#[tokio::test]
async fn a_steady_state_commit_is_one_request() {
    let local = dynamodb_local().await;
    let table = local.create_table("store-calls").await;
    let counter = DynamoCallCounter::default();
    let store = DynamoStore::new(counter.client(&local_sdk_config(local.endpoint())), table);
    let e = event("p", 1, t(28, 1, 0));
    store
        .commit_project(ProjectCommit {
            state: &state_after("p", std::slice::from_ref(&e), 1),
            expected_revision: None,
            events: std::slice::from_ref(&e),
            retention: retention(),
        })
        .await
        .unwrap();
    assert_eq!(
        counter.by_operation(),
        [("TransactWriteItems".to_string(), 1)].into()
    );
}

/// Writes `states` as project items, 25 per BatchWriteItem.
async fn put_projects(client: &aws_sdk_dynamodb::Client, table: &str, states: &[ProjectState]) {
    use aws_sdk_dynamodb::types::{PutRequest, WriteRequest};
    for chunk in states.chunks(25) {
        let mut requests: Vec<WriteRequest> = chunk
            .iter()
            .map(|s| {
                let put = PutRequest::builder()
                    .set_item(Some(devlake_autopilot::store::project_item(s, 1).unwrap()))
                    .build()
                    .unwrap();
                WriteRequest::builder().put_request(put).build()
            })
            .collect();
        while !requests.is_empty() {
            let out = client
                .batch_write_item()
                .request_items(table, requests)
                .send()
                .await
                .unwrap();
            requests = out
                .unprocessed_items
                .and_then(|mut u| u.remove(table))
                .unwrap_or_default();
        }
    }
}

#[tokio::test]
async fn project_reads_split_into_concurrent_ranges_still_see_every_project_once() {
    let local = dynamodb_local().await;
    let table = local.create_table("store-ranges").await;
    let client = local.client();
    let counter = DynamoCallCounter::default();
    let store = DynamoStore::new(counter.client(&local_sdk_config(local.endpoint())), &table);
    let project = |name: String| ProjectState {
        project_name: name,
        last_status: Some("TASK_COMPLETED".into()),
        ..Default::default()
    };
    let mut names: Vec<String> = (0..2_500)
        .map(|i| format!("github/org/repo-{i:05}"))
        .collect();
    let states: Vec<ProjectState> = names.iter().cloned().map(project).collect();
    put_projects(&client, &table, &states).await;
    let read = |store: DynamoStore| async move {
        store
            .all_project_states()
            .await
            .unwrap()
            .into_iter()
            .map(|p| p.state.project_name)
            .collect::<Vec<_>>()
    };

    // The first read pages one Query; it learns where to split the next ones.
    assert_eq!(read(store.clone()).await, names);
    counter.reset();
    // Three ranges now (before repo-01000, repo-01000 up to repo-02000, the rest), in parallel.
    assert_eq!(read(store.clone()).await, names);
    assert_eq!(counter.by_operation(), [("Query".to_string(), 3)].into());

    // Projects added at, before, between and after the split points, and one removed: each
    // read still sees exactly the table.
    let added = [
        "a-first",
        "github/org/repo-00999z",
        "github/org/repo-01000-",
        "github/org/repo-02000a",
        "zz-last",
    ];
    let more: Vec<ProjectState> = added.iter().map(|n| project(n.to_string())).collect();
    put_projects(&client, &table, &more).await;
    client
        .delete_item()
        .table_name(&table)
        .key(keys::PK, AttributeValue::S(keys::PROJECT_PK.into()))
        .key(keys::SK, AttributeValue::S("github/org/repo-02000".into()))
        .send()
        .await
        .unwrap();
    names.extend(added.iter().map(|n| n.to_string()));
    names.retain(|n| n != "github/org/repo-02000");
    names.sort();
    assert_eq!(read(store.clone()).await, names);
    assert_eq!(read(store).await, names);
}

/// Bytes that do not compress (xorshift), so a blob's size is what is stored.
fn incompressible(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// The `SNAPSHOT` partition's chunk items: (sort key, bytes of `data`, `expiresAt`).
async fn snapshot_chunks(
    client: &aws_sdk_dynamodb::Client,
    table: &str,
) -> Vec<(String, usize, i64)> {
    let out = client
        .query()
        .table_name(table)
        .key_condition_expression("pk = :pk AND begins_with(sk, :chunk)")
        .expression_attribute_values(":pk", AttributeValue::S("SNAPSHOT".into()))
        .expression_attribute_values(":chunk", AttributeValue::S("CHUNK#".into()))
        .consistent_read(true)
        .send()
        .await
        .unwrap();
    assert!(out.last_evaluated_key.is_none());
    out.items
        .unwrap_or_default()
        .into_iter()
        .map(|item| {
            let sk = item["sk"].as_s().unwrap().clone();
            let len = item["data"].as_b().unwrap().as_ref().len();
            (sk, len, n(&item, "expiresAt"))
        })
        .collect()
}

/// A snapshot larger than DynamoDB's 400 KB item limit is stored as chunk items under it and read
/// back whole by a scrape (one call for the head and run records, one for the chunks); a publish
/// with an older number is refused; every chunk carries the table's TTL, and a scrape that finds
/// the published chunks gone reads the state directly.
#[tokio::test]
async fn a_snapshot_splits_into_chunks_under_the_item_limit_and_only_newer_ones_replace_it() {
    use devlake_autopilot::store::{
        ScrapeRead, SnapshotPut, SnapshotStore, SNAPSHOT_CHUNK_BYTES, SNAPSHOT_CHUNK_TTL,
    };

    let local = dynamodb_local().await;
    let table = local.create_table("store-snapshot").await;
    let client = local.client();
    let counter = DynamoCallCounter::default();
    let store = DynamoStore::new(counter.client(&local_sdk_config(local.endpoint())), &table);
    let now = t(28, 11, 0);
    let put = |version, blob: &[u8]| {
        let blob = blob.to_vec();
        let store = store.clone();
        async move {
            store
                .put_snapshot(SnapshotPut {
                    version,
                    digest: "digest",
                    blob: &blob,
                    now,
                })
                .await
                .unwrap()
        }
    };
    let read = |known| {
        let store = store.clone();
        async move {
            match store.scrape(now, known).await.unwrap() {
                ScrapeRead::Published(read) => read,
                ScrapeRead::Direct(_) => panic!("a published snapshot is read"),
            }
        }
    };

    let v1 = store.take_publish_number().await.unwrap();
    let big = incompressible(1, 900_000);
    assert!(put(v1, &big).await);
    let chunks = snapshot_chunks(&client, &table).await;
    assert_eq!(chunks.len(), 3, "{chunks:?}");
    // DynamoDB Local refuses items over 400 KB, so the write itself proves the limit; the data
    // leaves room for the keys.
    assert!(chunks
        .iter()
        .all(|(_, len, _)| *len <= SNAPSHOT_CHUNK_BYTES));
    const { assert!(SNAPSHOT_CHUNK_BYTES + 1024 < 400 * 1024) };
    let expires = (now + SNAPSHOT_CHUNK_TTL).timestamp();
    assert!(chunks.iter().all(|(_, _, at)| *at == expires));

    counter.reset();
    let whole = read(None).await;
    assert_eq!((whole.version, whole.blob.as_deref()), (v1, Some(&big[..])));
    assert_eq!(
        counter.by_operation(),
        [("BatchGetItem".to_string(), 2)].into()
    );
    counter.reset();
    assert_eq!(read(Some(v1)).await.blob, None);
    assert_eq!(
        counter.by_operation(),
        [("BatchGetItem".to_string(), 1)].into()
    );

    // Two publishers: the one that took its number first is refused.
    let v2 = store.take_publish_number().await.unwrap();
    let v3 = store.take_publish_number().await.unwrap();
    assert!(put(v3, b"third").await);
    assert!(!put(v2, b"second").await);
    assert_eq!(read(None).await.blob.as_deref(), Some(&b"third"[..]));
    let head = store.snapshot_head().await.unwrap();
    assert_eq!((head.taken, head.published.unwrap().version), (v3, v3));

    // The published chunks gone (expired while nothing was published for days): the page is
    // read from the items instead of failing.
    for (sk, _, _) in snapshot_chunks(&client, &table).await {
        if sk.contains(&format!("{v3:020}")) {
            client
                .delete_item()
                .table_name(&table)
                .key(keys::PK, AttributeValue::S("SNAPSHOT".into()))
                .key(keys::SK, AttributeValue::S(sk))
                .send()
                .await
                .unwrap();
        }
    }
    assert!(matches!(
        store.scrape(now, None).await.unwrap(),
        ScrapeRead::Direct(_)
    ));
}
