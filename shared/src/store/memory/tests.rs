//! The in-memory store's own rules: all-or-nothing commits, conditional cursor saves, re-run claims.

use super::*;
use chrono::TimeZone;

fn event(pipeline_id: u64, minute: u32) -> FailureEvent {
    FailureEvent {
        project_name: "p".into(),
        blueprint_id: 1,
        pipeline_id,
        status: "TASK_FAILED".into(),
        finished_at: Utc.with_ymd_and_hms(2026, 11, 28, 10, minute, 0).unwrap(),
        began_at: None,
        message: String::new(),
        error_name: String::new(),
        cause: crate::failure_cause::FailureCause::Unknown,
    }
}

#[tokio::test]
async fn commit_is_all_or_nothing_and_counts_once() {
    let store = MemoryStore::new();
    let state = ProjectState {
        project_name: "p".into(),
        failures_total: 1,
        ..Default::default()
    };
    let events = [event(1, 0)];
    let commit = ProjectCommit {
        state: &state,
        expected_revision: None,
        events: &events,
        retention: chrono::Duration::days(90),
    };
    assert!(store.is_empty());
    assert_eq!(
        store.commit_project(commit).await.unwrap(),
        CommitOutcome::Committed
    );
    assert!(!store.is_empty());
    assert_eq!(
        store.calls_by_operation(),
        BTreeMap::from([("TransactWriteItems".to_string(), 1)])
    );
    // Replaying the same commit (a duplicate delivery) changes nothing.
    assert_eq!(
        store.commit_project(commit).await.unwrap(),
        CommitOutcome::AlreadyRecorded(vec![events[0].key()])
    );
    // A stale revision with a new event is refused as a whole.
    let more = [event(2, 1)];
    let stale = ProjectCommit {
        events: &more,
        ..commit
    };
    assert_eq!(
        store.commit_project(stale).await.unwrap(),
        CommitOutcome::Conflict
    );
    assert_eq!(store.failures().len(), 1);
    assert_eq!(store.project("p").unwrap().failures_total, 1);
    assert_eq!(
        store.failure_expiry(&events[0].key()),
        Some(events[0].finished_at.timestamp() + 90 * 86_400)
    );
}

#[tokio::test]
async fn cursor_saves_are_conditional() {
    let store = MemoryStore::new();
    let cursor = MonitorCursor {
        max_pipeline_id: 5,
        ..Default::default()
    };
    assert!(store.save_cursor(&cursor, None).await.unwrap());
    assert!(!store.save_cursor(&cursor, None).await.unwrap());
    assert_eq!(store.load_cursor().await.unwrap().unwrap().revision, 1);
    assert!(store.save_cursor(&cursor, Some(1)).await.unwrap());
    assert_eq!(store.cursor().unwrap().revision, 2);
}

#[tokio::test]
async fn reruns_are_claimed_once_per_failure_up_to_max() {
    let store = MemoryStore::new();
    let now = Utc::now();
    let lease = chrono::Duration::minutes(15);
    assert_eq!(
        store.claim_rerun(7, "a", 2, now, lease).await.unwrap(),
        RerunClaim::Granted { attempt: 1 }
    );
    assert_eq!(
        store.claim_rerun(7, "a", 2, now, lease).await.unwrap(),
        RerunClaim::InProgress
    );
    assert!(store
        .settle_rerun(7, "a", RerunSettlement::Done)
        .await
        .unwrap());
    assert_eq!(
        store.claim_rerun(7, "a", 2, now, lease).await.unwrap(),
        RerunClaim::AlreadyDone
    );
    assert_eq!(
        store.claim_rerun(7, "b", 2, now, lease).await.unwrap(),
        RerunClaim::Granted { attempt: 2 }
    );
    // A released claim is taken up again in the same slot.
    assert!(store
        .settle_rerun(7, "b", RerunSettlement::Released)
        .await
        .unwrap());
    assert_eq!(store.pending_reruns(now).await.unwrap().len(), 1);
    assert_eq!(
        store.claim_rerun(7, "b", 2, now, lease).await.unwrap(),
        RerunClaim::Granted { attempt: 2 }
    );
    assert!(store.pending_reruns(now).await.unwrap().is_empty());
    // A claim never settled is taken up again once its lease ended.
    let later = now + lease + chrono::Duration::seconds(1);
    assert_eq!(
        store.pending_reruns(later).await.unwrap(),
        vec![PendingRerun {
            pipeline_id: 7,
            failure_key: "b".into()
        }]
    );
    assert_eq!(
        store.claim_rerun(7, "b", 2, later, lease).await.unwrap(),
        RerunClaim::Granted { attempt: 2 }
    );
    assert_eq!(
        store.claim_rerun(7, "c", 2, later, lease).await.unwrap(),
        RerunClaim::Exhausted
    );
    store.set_unavailable(true);
    assert!(store
        .claim_rerun(8, "a", 2, now, lease)
        .await
        .unwrap_err()
        .is_retryable());
}
