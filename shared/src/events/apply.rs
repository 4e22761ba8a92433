//! One accepted notification into the store, through the monitor's own commit path.
//!
//! Each notification carries the pipeline's state at the time it was sent, not an event to
//! replay, so handling is the same whatever the notification (created, started, finished), the
//! order they arrive in, and however often: a finished state is folded into the project exactly
//! as a monitor run would fold the pipeline it polled (the same end time, hence the same failure
//! key), and a start is remembered only for the project's newest pipeline.

use chrono::{DateTime, Utc};

use crate::devlake::models::Pipeline;
use crate::monitor::{commit_facts, ended_at, CommitContext, MonitorSettings, Recorder};
use crate::store::{EventStore, EventsReceived, StartedPipeline, StoreError};

use super::notification::Notification;

/// What an accepted notification changed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Applied {
    /// The project written, if any (`None`: no project, or nothing to write).
    pub project: Option<String>,
    /// The pipeline had ended; its end as the failure key and the project's state use it.
    pub ended_at: Option<DateTime<Utc>>,
    /// Failures this notification recorded (0 or 1).
    pub failures_recorded: u64,
    /// The failure was stored already (by the monitor or an earlier notification).
    pub already_recorded: u64,
}

/// Folds `notification` into its project and marks it received at `now` (the function's clock).
/// A pipeline without a project (ad-hoc) is only marked received: the monitor does not record
/// those either.
pub async fn apply<S: EventStore>(
    store: &S,
    settings: &MonitorSettings,
    notification: &Notification,
    now: DateTime<Utc>,
) -> Result<Applied, StoreError> {
    let mut applied = Applied::default();
    let mut pipeline = notification.pipeline();
    let end = ended_at(&pipeline);
    applied.ended_at = end;
    let started = notification.began_at.map(|began_at| StartedPipeline {
        pipeline_id: notification.pipeline_id,
        created_at: notification.created_at,
        began_at,
    });
    if let Some(project) = notification
        .project()
        .filter(|_| end.is_some() || started.is_some())
    {
        let stored = store
            .project_states(&[project.to_string()])
            .await?
            .remove(project)
            .unwrap_or_default();
        // The notification names no blueprint; the project's own is kept.
        pipeline.blueprint_id = stored.state.blueprint_id;
        // From here on `finished_at` is when this state began, as the monitor's facts have it.
        pipeline.finished_at = end;
        let facts: Vec<&Pipeline> = end.map(|_| &pipeline).into_iter().collect();
        let cx = CommitContext {
            store,
            settings,
            recorder: Recorder::Push,
            now,
        };
        let touch = |state: &mut crate::store::ProjectState| {
            if let Some(s) = &started {
                state.note_started(s.clone());
            }
        };
        let committed = commit_facts(cx, project, &facts, None, stored, &touch).await?;
        // The metrics page serves the published snapshot: publishing here, after the commit and
        // before the 200, puts this commit on the page at the next scrape. A failed publish does
        // not undo the commit (DevLake would not send it again anyway): the monitor's next run
        // publishes it.
        if let Err(error) = crate::snapshot::publish_after_commit(store, now).await {
            tracing::error!(%error, retryable = error.is_retryable(), project, "publishing the metrics snapshot failed; the monitor's next run publishes it");
        }
        applied.project = Some(project.to_string());
        applied.failures_recorded = committed.written.len() as u64;
        applied.already_recorded = committed.duplicates;
    }
    store
        .record_received(&EventsReceived {
            received_at: now,
            pipeline_id: notification.pipeline_id,
            status: notification.status.clone(),
            project_name: notification.project_name.clone(),
        })
        .await?;
    Ok(applied)
}
