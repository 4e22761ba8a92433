//! Encodings of the stored values: schedule watches, recent failures, causes of older items.

use chrono::{DateTime, TimeZone, Utc};

use super::*;
use crate::failure_cause::FailureCause;

#[test]
fn schedule_watches_are_one_compact_string_to_the_minute() {
    let at = |m: u32, s: u32| Utc.with_ymd_and_hms(2026, 11, 28, 3, m, s).unwrap();
    let cursor = MonitorCursor {
        schedules: vec![
            ScheduleWatch {
                blueprint_id: 1200,
                cron_hash: 0xab_cdef,
                last_activity: at(30, 0),
            },
            ScheduleWatch {
                blueprint_id: 7,
                cron_hash: 1,
                last_activity: at(29, 59),
            },
        ],
        ..MonitorCursor::default()
    };
    let json = serde_json::to_value(&cursor).unwrap();
    let minutes = at(30, 0).timestamp() / 60;
    assert_eq!(
        json["schedules"],
        format!("7:000001:{} 1193:abcdef:{minutes}", minutes - 1)
    );
    let back: MonitorCursor = serde_json::from_value(json).unwrap();
    assert_eq!(
        back.schedules,
        vec![
            ScheduleWatch {
                blueprint_id: 7,
                cron_hash: 1,
                last_activity: at(29, 0),
            },
            cursor.schedules[0],
        ]
    );
    // Absent when empty; malformed entries are errors.
    assert!(serde_json::to_value(MonitorCursor::default()).unwrap()["schedules"].is_null());
    for bad in ["7", "7:zz:1", "x:1:1", "7:1:1:1", "7:1:99999999999999999"] {
        let r: Result<MonitorCursor, _> =
            serde_json::from_value(serde_json::json!({ "schedules": bad }));
        assert!(r.is_err(), "{bad}");
    }
}

fn failure(pipeline_id: u64, finished_at: DateTime<Utc>) -> FailureEvent {
    FailureEvent {
        project_name: "p".into(),
        blueprint_id: 1,
        pipeline_id,
        status: "TASK_FAILED".into(),
        finished_at,
        began_at: None,
        message: "m".into(),
        error_name: "e".into(),
        cause: FailureCause::Unknown,
    }
}

#[test]
fn recent_failures_are_merged_pruned_and_capped() {
    let now = Utc.with_ymd_and_hms(2026, 11, 28, 12, 0, 0).unwrap();
    let day = chrono::Duration::days(1);
    let mut state = ProjectState {
        project_name: "p".into(),
        ..Default::default()
    };
    let window = day * 7;
    let old = failure(1, now - window - chrono::Duration::milliseconds(1));
    let a = failure(2, now - day * 3);
    let b = failure(3, now - day);
    state.remember_failures(&[b.clone(), old, a.clone()], now, window);
    state.remember_failures(std::slice::from_ref(&b), now, window);
    assert_eq!(state.recent_failures, vec![a.key(), b.key()]);
    // A failure exactly at the window's start is still inside it.
    let edge = failure(4, now - window);
    state.remember_failures(std::slice::from_ref(&edge), now, window);
    assert_eq!(state.recent_failures, vec![edge.key(), a.key(), b.key()]);
    // A day later the edge failure has aged out; `a` (3 days back) stays.
    assert_eq!(state.expire_recent_failures(now + day - window), 1);
    assert_eq!(state.recent_failures, vec![a.key(), b.key()]);
    assert_eq!(state.expire_recent_failures(now + day - window), 0);

    let since = state.recent_failures_since(now - day * 2).unwrap();
    assert_eq!(since.len(), 1);
    assert_eq!(
        (
            since[0].pipeline_id,
            since[0].finished_at,
            since[0].project_name.as_str()
        ),
        (3, b.finished_at, "p")
    );

    let many: Vec<FailureEvent> = (0..RECENT_FAILURES_MAX as u64 + 10)
        .map(|i| failure(100 + i, now - chrono::Duration::seconds(30 * i as i64)))
        .collect();
    state.remember_failures(&many, now, window);
    assert_eq!(state.recent_failures.len(), RECENT_FAILURES_MAX);
    assert_eq!(state.recent_failures.last(), Some(&many[0].key()));
    assert!(!state.recent_failures.contains(&b.key()));
}

#[test]
fn events_and_states_written_before_causes_read_without_one() {
    let event: FailureEvent = serde_json::from_value(serde_json::json!({
        "projectName": "p", "blueprintId": 1, "pipelineId": 2, "status": "TASK_FAILED",
        "finishedAt": "2026-11-28T10:00:00Z", "beganAt": null, "message": "m",
        "errorName": "e",
    }))
    .unwrap();
    assert_eq!(event.cause, FailureCause::Unknown);
    let state: ProjectState = serde_json::from_value(serde_json::json!({
        "projectName": "p", "blueprintId": 1, "lastFailureAt": "2026-11-28T10:00:00Z",
        "consecutiveFailures": 1, "stuck": false,
    }))
    .unwrap();
    assert_eq!(state.last_failure_reason, None);
    // And a state without a reason is written as before, byte for byte.
    assert!(!serde_json::to_string(&state)
        .unwrap()
        .contains("lastFailureReason"));
}

#[test]
fn a_malformed_entry_is_an_error() {
    let state = ProjectState {
        project_name: "p".into(),
        recent_failures: vec!["2026-11-28T10:00:00.000Z#x".into()],
        ..Default::default()
    };
    assert!(state
        .recent_failures_since(DateTime::<Utc>::MIN_UTC)
        .is_err());
    // The metrics page's read skips it and keeps the good ones.
    let state = ProjectState {
        recent_failures: vec![
            "2026-11-28T10:00:00.000Z#x".into(),
            "2026-11-28T11:00:00.000Z#7".into(),
            "not-a-key".into(),
        ],
        ..state
    };
    let (ok, skipped) = state.recent_failures_since_lenient(DateTime::<Utc>::MIN_UTC);
    assert_eq!(skipped, 2);
    assert_eq!(ok.len(), 1);
    assert_eq!(ok[0].pipeline_id, 7);
}
