//! What the events function (DevLake's pipeline notifications, docs/events.md) keeps besides
//! the project states it shares with the monitor: when each project's newest pipeline was created
//! and began, which failures it recorded ahead of the monitor, and when the latest notification
//! arrived.
//!
//! Failures and project states go through the monitor's own [`MonitorStore::commit_project`]: a
//! failure is one item whoever records it first. Only the "latest notification" mark is new: one
//! item, `EVENTS` / `RECEIVED`, which the metrics page reads in the same `BatchGetItem` as the
//! run records.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{FailureEvent, MemoryStore, MonitorStore, ProjectState, StoreError};

/// At most this many keys wait in a project's [`ProjectState::pushed_failures`] for the monitor
/// (oldest dropped first): they only matter until the next monitor run, so a long list means the
/// monitor is not running, and its own alerts say so.
pub const PUSHED_FAILURES_MAX: usize = 100;

/// A pipeline a notification showed started (DevLake's clock).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StartedPipeline {
    pub pipeline_id: u64,
    pub created_at: DateTime<Utc>,
    pub began_at: DateTime<Utc>,
}

impl StartedPipeline {
    /// How long the pipeline waited between its creation and its start. Never negative: DevLake
    /// stamps both from one clock, and a value below zero would only be a stamping artefact.
    pub fn queue_seconds(&self) -> f64 {
        ((self.began_at - self.created_at).num_milliseconds() as f64 / 1000.0).max(0.0)
    }
}

/// The latest DevLake notification the events function accepted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EventsReceived {
    /// When it arrived, by the function's clock: `devlake_events_last_received_timestamp_seconds`.
    pub received_at: DateTime<Utc>,
    /// What it said, for an operator reading the table.
    pub pipeline_id: u64,
    pub status: String,
    #[serde(default)]
    pub project_name: String,
}

impl ProjectState {
    /// Remembers `pipeline` as the project's newest started pipeline if its id is higher than
    /// the one remembered: the first start of each pipeline counts, so a re-run of it (DevLake
    /// keeps `createdAt`, and its wait would include the earlier run) or a repeated notification
    /// changes nothing. Returns whether the state changed.
    pub fn note_started(&mut self, pipeline: StartedPipeline) -> bool {
        if self
            .last_started
            .as_ref()
            .is_some_and(|s| s.pipeline_id >= pipeline.pipeline_id)
        {
            return false;
        }
        self.last_started = Some(pipeline);
        true
    }

    /// Adds the keys of `events`, recorded by push, to [`Self::pushed_failures`] (sorted,
    /// deduplicated, newest [`PUSHED_FAILURES_MAX`] kept).
    pub fn note_pushed_failures(&mut self, events: &[FailureEvent]) {
        let list = &mut self.pushed_failures;
        list.extend(events.iter().map(FailureEvent::key));
        list.sort_unstable();
        list.dedup();
        if list.len() > PUSHED_FAILURES_MAX {
            list.drain(..list.len() - PUSHED_FAILURES_MAX);
        }
    }

    /// Removes `key` from [`Self::pushed_failures`]: the monitor has taken it over. Returns
    /// whether it was there.
    pub fn take_pushed_failure(&mut self, key: &str) -> bool {
        let before = self.pushed_failures.len();
        self.pushed_failures.retain(|k| k != key);
        self.pushed_failures.len() != before
    }
}

/// What the events function writes besides project commits.
#[async_trait::async_trait]
pub trait EventStore: MonitorStore {
    /// Records that a notification was accepted. A mark older than the stored one (two
    /// notifications handled at once, the later one written first) leaves the stored one.
    async fn record_received(&self, received: &EventsReceived) -> Result<(), StoreError>;
}

#[async_trait::async_trait]
impl EventStore for MemoryStore {
    async fn record_received(&self, received: &EventsReceived) -> Result<(), StoreError> {
        self.check("UpdateItem")?;
        let mut tables = self.lock();
        if tables
            .events
            .as_ref()
            .is_none_or(|e| e.received_at <= received.received_at)
        {
            tables.events = Some(received.clone());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    fn started(id: u64, created: &str, began: &str) -> StartedPipeline {
        StartedPipeline {
            pipeline_id: id,
            created_at: at(created),
            began_at: at(began),
        }
    }

    #[test]
    fn the_first_start_of_the_newest_pipeline_counts() {
        let mut state = ProjectState::default();
        let first = started(7, "2026-11-28T10:00:00Z", "2026-11-28T10:00:42.500Z");
        assert!(state.note_started(first.clone()));
        assert_eq!(first.queue_seconds(), 42.5);
        // A re-run of the same pipeline begins again, but its creation is the old one.
        assert!(!state.note_started(started(7, "2026-11-28T10:00:00Z", "2026-11-28T12:00:00Z")));
        // An older pipeline (re-run) changes nothing either.
        assert!(!state.note_started(started(5, "2026-11-28T09:00:00Z", "2026-11-28T12:00:00Z")));
        assert_eq!(state.last_started, Some(first));
        assert!(state.note_started(started(8, "2026-11-28T13:00:00Z", "2026-11-28T13:00:01Z")));
        assert_eq!(state.last_started.as_ref().unwrap().queue_seconds(), 1.0);
        assert_eq!(
            started(9, "2026-11-28T13:00:01Z", "2026-11-28T13:00:00Z").queue_seconds(),
            0.0
        );
    }

    #[test]
    fn pushed_failures_are_a_bounded_set() {
        let mut state = ProjectState::default();
        let event = |id: u64| FailureEvent {
            project_name: "p".into(),
            blueprint_id: 0,
            pipeline_id: id,
            status: "TASK_FAILED".into(),
            finished_at: at("2026-11-28T10:00:00Z") + chrono::Duration::seconds(id as i64),
            began_at: None,
            message: String::new(),
            error_name: String::new(),
            cause: Default::default(),
        };
        let events: Vec<FailureEvent> = (0..PUSHED_FAILURES_MAX as u64 + 5).map(event).collect();
        state.note_pushed_failures(&events);
        state.note_pushed_failures(&events[events.len() - 1..]);
        assert_eq!(state.pushed_failures.len(), PUSHED_FAILURES_MAX);
        assert_eq!(state.pushed_failures[0], events[5].key());
        assert!(state.take_pushed_failure(&events[5].key()));
        assert!(!state.take_pushed_failure(&events[5].key()));
        assert!(!state.take_pushed_failure(&events[0].key()));
    }

    #[test]
    fn states_without_push_fields_serialise_as_before() {
        let text = serde_json::to_string(&ProjectState::default()).unwrap();
        assert!(
            !text.contains("lastStarted") && !text.contains("pushedFailures"),
            "{text}"
        );
    }
}
