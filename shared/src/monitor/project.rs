//! Folding finished pipelines into a project's state: pure, so replays and races can be reasoned
//! about (and tested) without a table.
//!
//! Re-applying a finished pipeline that is already reflected in the state changes nothing: the
//! "latest" fields only move forward in `finishedAt`, and failures are only counted when their
//! event is new (the store decides that, atomically with the counter).

use std::collections::HashSet;

use chrono::{DateTime, Utc};

use crate::devlake::models::{status, Pipeline};
use crate::failure_cause::{classify, FailureCause};
use crate::store::{FailureEvent, ProjectState};

use super::flags::Flags;

/// Longest `message` / `errorName` kept in a failure event. DevLake's `errorName` carries the whole
/// "caused by" chain; the head says what failed, and an item must stay far below 400 KB.
pub const MAX_MESSAGE_CHARS: usize = 1000;

pub(crate) fn truncate(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_string(),
    }
}

/// Wall time of a finished pipeline: `beganAt` → `finishedAt`, else DevLake's `spentSeconds`.
pub(crate) fn duration_seconds(p: &Pipeline) -> Option<f64> {
    match (p.began_at, p.finished_at) {
        (Some(b), Some(f)) if f >= b => Some((f - b).num_milliseconds() as f64 / 1000.0),
        _ => p.spent_seconds.filter(|s| *s >= 0).map(|s| s as f64),
    }
}

/// The failure event of a finished pipeline. `finished_at` is required by the caller.
pub(crate) fn failure_event(
    project: &str,
    p: &Pipeline,
    finished_at: DateTime<Utc>,
) -> FailureEvent {
    FailureEvent {
        project_name: project.to_string(),
        blueprint_id: p.blueprint_id,
        pipeline_id: p.id,
        status: p.status.clone(),
        finished_at,
        began_at: p.began_at,
        message: truncate(p.message.trim(), MAX_MESSAGE_CHARS),
        error_name: truncate(p.error_name.trim(), MAX_MESSAGE_CHARS),
        // From the whole text: the deepest layer of `errorName`, the most telling, is last.
        cause: classify(&p.status, &p.error_name, &p.message),
    }
}

/// Applies one finished pipeline. `failure`: the cause, when it is a counted status AND its
/// event is new.
pub(crate) fn apply(
    state: &mut ProjectState,
    p: &Pipeline,
    finished: DateTime<Utc>,
    failure: Option<FailureCause>,
) {
    if state.last_finished_at.is_none_or(|t| finished >= t) {
        state.last_status = Some(p.status.clone());
        state.last_finished_at = Some(finished);
        state.last_duration_seconds = duration_seconds(p);
        // 0: not known (a pipeline DevLake's notification told of, which names no blueprint).
        if p.blueprint_id != 0 {
            state.blueprint_id = p.blueprint_id;
        }
    }
    if let Some(cause) = failure {
        state.failures_total += 1;
        if state.last_failure_at.is_none_or(|t| finished > t) {
            state.last_failure_at = Some(finished);
            state.last_failure_reason = Some(cause);
        }
        // A failure older than the last success (seen late) does not extend the streak.
        if state.last_success_at.is_none_or(|t| finished > t) {
            state.consecutive_failures += 1;
        }
    } else if p.status == status::COMPLETED && state.last_success_at.is_none_or(|t| finished > t) {
        state.last_success_at = Some(finished);
        if state.last_failure_at.is_none_or(|t| finished > t) {
            state.consecutive_failures = 0;
        }
    }
}

/// The outcome of folding a project's new facts into its stored state.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Folded {
    pub state: ProjectState,
    /// Failure events to write with the state, in `finishedAt` order.
    pub events: Vec<FailureEvent>,
    /// Keys of stored failures the events function recorded, taken out of the state's
    /// `pushed_failures` by this fold (see [`ProjectState::pushed_failures`]).
    pub adopted: Vec<String>,
}

/// Folds `facts` (finished pipelines of `project`, sorted by `finishedAt`) into `start`. Failures
/// whose key is in `recorded` are stored already — by a concurrent run or the events function,
/// whose commit also moved the state — and are skipped entirely; with `adopt_pushed` (the
/// monitor) those the events function recorded are also taken out of `pushed_failures` and
/// listed in [`Folded::adopted`]. `flags` are the project's flags as of this run.
pub(crate) fn fold(
    start: &ProjectState,
    project: &str,
    facts: &[&Pipeline],
    recorded: &HashSet<String>,
    flags: Flags,
    is_counted: impl Fn(&str) -> bool,
    adopt_pushed: bool,
) -> Folded {
    let mut state = start.clone();
    state.project_name = project.to_string();
    let mut events = Vec::new();
    let mut adopted = Vec::new();
    for p in facts {
        let Some(finished) = p.finished_at else {
            continue;
        };
        if is_counted(&p.status) {
            let event = failure_event(project, p, finished);
            let key = event.key();
            if recorded.contains(&key) {
                if adopt_pushed && state.take_pushed_failure(&key) {
                    adopted.push(key);
                    // Push knows no blueprint: the project's is learnt from the polled pipeline.
                    if state.blueprint_id == 0 {
                        state.blueprint_id = p.blueprint_id;
                    }
                }
                continue;
            }
            apply(&mut state, p, finished, Some(event.cause));
            events.push(event);
        } else {
            apply(&mut state, p, finished, None);
        }
    }
    state.stuck = flags.stuck;
    state.schedule_missed = flags.schedule_missed;
    state.stuck_cancel_failed = flags.stuck_cancel_failed;
    Folded {
        state,
        events,
        adopted,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t(minute: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 28, 10, minute, 0).unwrap()
    }

    fn pipeline(id: u64, status: &str, began: u32, finished: u32) -> Pipeline {
        serde_json::from_value(serde_json::json!({
            "id": id, "blueprintId": 7, "status": status,
            "beganAt": t(began), "finishedAt": t(finished),
            "message": "boom", "errorName": "x".repeat(3000),
        }))
        .unwrap()
    }

    fn counted(s: &str) -> bool {
        matches!(s, "TASK_FAILED" | "TASK_PARTIAL")
    }

    #[test]
    fn failures_then_success_then_failure() {
        let f1 = pipeline(1, "TASK_FAILED", 0, 5);
        let f2 = pipeline(2, "TASK_PARTIAL", 6, 10);
        let ok = pipeline(3, "TASK_COMPLETED", 11, 20);
        let f3 = pipeline(4, "TASK_FAILED", 21, 22);
        let folded = fold(
            &ProjectState::default(),
            "p",
            &[&f1, &f2, &ok, &f3],
            &HashSet::new(),
            Flags::default(),
            counted,
            true,
        );
        let s = &folded.state;
        assert_eq!(folded.events.len(), 3);
        assert_eq!(s.failures_total, 3);
        assert_eq!(s.consecutive_failures, 1);
        assert_eq!(s.last_success_at, Some(t(20)));
        assert_eq!(s.last_failure_at, Some(t(22)));
        assert_eq!(s.last_status.as_deref(), Some("TASK_FAILED"));
        // "boom" names no known cause.
        assert_eq!(s.last_failure_reason, Some(FailureCause::Unknown));
        assert_eq!(s.last_duration_seconds, Some(60.0));
        assert_eq!(s.blueprint_id, 7);
        assert_eq!(
            folded.events[0].error_name.chars().count(),
            MAX_MESSAGE_CHARS + 1
        );
    }

    #[test]
    fn replaying_the_same_facts_changes_nothing() {
        let f1 = pipeline(1, "TASK_FAILED", 0, 5);
        let ok = pipeline(2, "TASK_COMPLETED", 6, 9);
        let first = fold(
            &ProjectState::default(),
            "p",
            &[&f1, &ok],
            &HashSet::new(),
            Flags::default(),
            counted,
            true,
        );
        let recorded: HashSet<String> = first.events.iter().map(FailureEvent::key).collect();
        let again = fold(
            &first.state,
            "p",
            &[&f1, &ok],
            &recorded,
            Flags::default(),
            counted,
            true,
        );
        assert!(again.events.is_empty());
        assert_eq!(again.state, first.state);
        assert!(again.adopted.is_empty());
    }

    #[test]
    fn the_monitor_takes_over_failures_the_events_function_recorded() {
        let f1 = pipeline(1, "TASK_FAILED", 0, 5);
        // What DevLake's notification tells of it: no blueprint.
        let told = Pipeline {
            blueprint_id: 0,
            ..f1.clone()
        };
        let pushed = fold(
            &ProjectState::default(),
            "p",
            &[&told],
            &HashSet::new(),
            Flags::default(),
            counted,
            false,
        );
        let mut state = pushed.state.clone();
        state.note_pushed_failures(&pushed.events);
        let recorded: HashSet<String> = pushed.events.iter().map(FailureEvent::key).collect();
        assert_eq!(state.blueprint_id, 0);
        // The events function seeing it again leaves the mark.
        let again = fold(
            &state,
            "p",
            &[&told],
            &recorded,
            Flags::default(),
            counted,
            false,
        );
        assert!(again.adopted.is_empty());
        assert_eq!(again.state, state);
        // The monitor meets it already recorded: counted once, and taken over.
        let polled = fold(
            &state,
            "p",
            &[&f1],
            &recorded,
            Flags::default(),
            counted,
            true,
        );
        assert!(polled.events.is_empty());
        assert_eq!(polled.adopted, vec![pushed.events[0].key()]);
        assert_eq!(polled.state.failures_total, 1);
        assert!(polled.state.pushed_failures.is_empty());
        assert_eq!(polled.state.blueprint_id, 7);
    }

    #[test]
    fn late_facts_do_not_move_latest_fields_backwards() {
        let newer_ok = pipeline(5, "TASK_COMPLETED", 30, 40);
        let base = fold(
            &ProjectState::default(),
            "p",
            &[&newer_ok],
            &HashSet::new(),
            Flags::default(),
            counted,
            true,
        );
        // A failure that finished before the success, discovered afterwards.
        let older_failure = pipeline(4, "TASK_FAILED", 0, 10);
        let cancelled = pipeline(6, "TASK_CANCELLED", 0, 35);
        let s = fold(
            &base.state,
            "p",
            &[&older_failure, &cancelled],
            &HashSet::new(),
            Flags {
                stuck: true,
                schedule_missed: true,
                stuck_cancel_failed: false,
            },
            counted,
            true,
        )
        .state;
        assert_eq!(s.failures_total, 1);
        assert_eq!(s.consecutive_failures, 0);
        assert_eq!(s.last_status.as_deref(), Some("TASK_COMPLETED"));
        assert_eq!(s.last_finished_at, Some(t(40)));
        assert_eq!(s.last_failure_at, Some(t(10)));
        assert!(s.stuck && s.schedule_missed && !s.stuck_cancel_failed);
    }

    #[test]
    fn the_latest_failure_gives_the_reason() {
        let with_error = |id, finished, error_name: &str| {
            let mut p = pipeline(id, "TASK_FAILED", 0, finished);
            p.error_name = error_name.into();
            p
        };
        let auth = with_error(
            1,
            5,
            "authentication failed, please check your AccessToken (401)",
        );
        let net = with_error(
            2,
            10,
            "Failed to connect\ncaused by: dial tcp 10.0.0.5:443: connect: connection refused",
        );
        let folded = fold(
            &ProjectState::default(),
            "p",
            &[&auth, &net],
            &HashSet::new(),
            Flags::default(),
            counted,
            false,
        );
        let causes: Vec<FailureCause> = folded.events.iter().map(|e| e.cause).collect();
        assert_eq!(causes, [FailureCause::Auth, FailureCause::Network]);
        assert_eq!(
            folded.state.last_failure_reason,
            Some(FailureCause::Network)
        );
        // An older failure seen late keeps the latest one's reason.
        let late = with_error(3, 3, "record not found (404)");
        let s = fold(
            &folded.state,
            "p",
            &[&late],
            &HashSet::new(),
            Flags::default(),
            counted,
            false,
        )
        .state;
        assert_eq!(s.last_failure_at, Some(t(10)));
        assert_eq!(s.last_failure_reason, Some(FailureCause::Network));
    }

    #[test]
    fn durations_fall_back_to_spent_seconds() {
        let mut p = pipeline(1, "TASK_COMPLETED", 0, 1);
        assert_eq!(duration_seconds(&p), Some(60.0));
        p.began_at = None;
        p.spent_seconds = Some(42);
        assert_eq!(duration_seconds(&p), Some(42.0));
        p.spent_seconds = None;
        assert_eq!(duration_seconds(&p), None);
    }
}
