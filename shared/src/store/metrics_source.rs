//! The metrics page's input and the read side the metrics function uses to get it.

use chrono::{DateTime, Utc};

use super::{
    ConnectionHealth, EventsReceived, FailureEvent, LiveRecords, ProjectState, RunRecord,
    ScrapeRead, StoreError,
};

/// Everything the metrics function renders. A scrape of a published snapshot builds it from
/// [`PublishedState`](super::PublishedState) (the projects) and
/// [`PublishedRead`](super::PublishedRead) (the run records).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MetricsSnapshot {
    pub projects: Vec<ProjectState>,
    /// Failures that finished at or after the requested instant.
    pub failures: Vec<FailureEvent>,
    pub automation: Option<RunRecord>,
    pub monitor: Option<RunRecord>,
    /// The latest DevLake notification the events function accepted; `None` until one was
    /// (push not configured), and then the page shows no events series at all.
    pub events: Option<EventsReceived>,
    /// The connections' health from the automation's latest complete test; empty before one.
    pub connections: Vec<ConnectionHealth>,
    /// Stored items (or recent-failure entries) this read skipped because they did not decode;
    /// each is logged. One bad item never blanks the page.
    pub decode_errors: u64,
}

impl MetricsSnapshot {
    /// The snapshot of `projects` and the live records, with the failures of the projects'
    /// recent lists that finished at or after `since` (entries that do not parse are skipped,
    /// logged and added to `decode_errors`).
    pub fn from_parts(
        projects: Vec<ProjectState>,
        since: DateTime<Utc>,
        live: LiveRecords,
    ) -> Self {
        let mut failures = Vec::new();
        let mut decode_errors = live.decode_errors;
        for project in &projects {
            let (recent, skipped) = project.recent_failures_since_lenient(since);
            failures.extend(recent);
            decode_errors += skipped;
        }
        MetricsSnapshot {
            projects,
            failures,
            automation: live.automation,
            monitor: live.monitor,
            events: live.events,
            connections: live.connections,
            decode_errors,
        }
    }
}

/// The read side used by the metrics function.
#[async_trait::async_trait]
pub trait MetricsSource: Send + Sync {
    /// The whole page's input read from the state's own items (projects and run records), with
    /// the failures that finished at or after `failures_since`: the direct read, used before any
    /// snapshot is published and when one cannot be decoded.
    async fn snapshot(&self, failures_since: DateTime<Utc>) -> Result<MetricsSnapshot, StoreError>;

    /// What one scrape reads: the run records and the published snapshot's version, plus the
    /// snapshot itself unless it is `known` (the version the caller already holds); without a
    /// published snapshot, the direct read. A source that never publishes (test doubles) keeps
    /// this default, the direct read.
    async fn scrape(
        &self,
        failures_since: DateTime<Utc>,
        _known: Option<u64>,
    ) -> Result<ScrapeRead, StoreError> {
        Ok(ScrapeRead::Direct(self.snapshot(failures_since).await?))
    }
}
