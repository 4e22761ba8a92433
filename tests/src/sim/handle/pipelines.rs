//! Pipelines under test control: triggering, seeding, starting, finishing, re-running and
//! cancelling them, restarts, DevLake's clock and cron, and the notifications DevLake sends.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::{SimError, SimHandle};
use crate::sim::fixture;
use crate::sim::lock;
use crate::sim::notify::{NotificationRow, NotificationSettings};
use crate::sim::state::{
    ApiError, ConnectionTestMode, CronFire, PipelineEnd, PipelineFilter, PipelineSeed,
};

impl SimHandle {
    // ------------------------------------------------------------------ pipelines

    /// Triggers a blueprint like `POST /blueprints/{id}/trigger`. Returns the pipeline id.
    pub fn trigger(&self, blueprint_id: u64) -> Result<u64, SimError> {
        let id = self.with_state(|s| s.trigger(blueprint_id, false, false))?;
        self.schedule_auto_complete(id);
        Ok(id)
    }

    pub fn pipeline(&self, id: u64) -> Option<Value> {
        self.with_state(|s| {
            s.pipelines
                .get(&id)
                .map(|p| serde_json::to_value(p).unwrap_or(Value::Null))
        })
    }

    /// Pipelines of a blueprint (0 = ad-hoc), id DESC.
    pub fn pipelines_of_blueprint(&self, blueprint_id: u64) -> Vec<Value> {
        self.with_state(|s| {
            let f = PipelineFilter {
                blueprint_id: Some(blueprint_id),
                ..PipelineFilter::default()
            };
            let (_, page) = s.list_pipelines(&f, 1, usize::MAX);
            page.into_iter()
                .map(|p| serde_json::to_value(p).unwrap_or(Value::Null))
                .collect()
        })
    }

    pub fn pipeline_count(&self) -> usize {
        self.with_state(|s| s.pipelines.len())
    }

    /// Ids of pending pipelines (`finishedAt` null and CREATED/RERUN/RUNNING), ascending.
    pub fn pending_pipelines(&self) -> Vec<u64> {
        self.with_state(|s| s.pending_ids())
    }

    /// Marks a pipeline `TASK_RUNNING` (sets `beganAt`).
    pub fn start_pipeline(&self, id: u64) -> Result<(), SimError> {
        Ok(self.with_state(|s| s.start(id))?)
    }

    /// Finishes a pipeline with `TASK_COMPLETED`, `TASK_FAILED`, `TASK_PARTIAL` or
    /// `TASK_CANCELLED`; sets `finishedAt` (and `beganAt` if unset), `message`, `errorName`.
    pub fn finish_pipeline(&self, id: u64, status: &str, message: &str) -> Result<(), SimError> {
        Ok(self.with_state(|s| s.finish(id, status, message, None))?)
    }

    /// [`Self::finish_pipeline`] with a chosen `errorName`: the chain of messages DevLake stores
    /// for a failed pipeline (`runPipeline` in `services/pipeline_runner.go` saves
    /// `err.Messages().Format()`, the layers joined by `\ncaused by: `).
    pub fn finish_pipeline_with_error(
        &self,
        id: u64,
        status: &str,
        message: &str,
        error_name: &str,
    ) -> Result<(), SimError> {
        Ok(self.with_state(|s| s.finish(id, status, message, Some(error_name)))?)
    }

    /// How the source tool behind a connection answers DevLake's connection test
    /// (`POST /plugins/{plugin}/connections/{id}/test`).
    pub fn set_connection_test(
        &self,
        plugin: &str,
        connection_id: u64,
        mode: ConnectionTestMode,
    ) -> Result<(), SimError> {
        Ok(self.with_state(|s| s.set_connection_test(plugin, connection_id, mode))?)
    }

    /// Finishes every pipeline the runner still has to end (queued, re-run, resumed, running)
    /// with `status`; returns their ids.
    pub fn finish_all_pending(&self, status: &str, message: &str) -> Result<Vec<u64>, SimError> {
        self.finish_all_pending_with(status, message, None)
    }

    /// [`Self::finish_all_pending`] with a chosen `errorName` (`None`: derived from `message`).
    pub fn finish_all_pending_with(
        &self,
        status: &str,
        message: &str,
        error_name: Option<&str>,
    ) -> Result<Vec<u64>, SimError> {
        self.with_state(|s| {
            let ids = s.unfinished_ids();
            for id in &ids {
                s.finish(*id, status, message, error_name)?;
            }
            Ok(ids)
        })
        .map_err(|e: ApiError| e.into())
    }

    /// `POST /pipelines/{id}/rerun`: same id, `TASK_RERUN`, old `beganAt`/`finishedAt` kept until
    /// the runner starts it again.
    pub fn rerun_pipeline(&self, id: u64) -> Result<(), SimError> {
        self.with_state(|s| s.rerun(id))?;
        self.schedule_auto_complete(id);
        Ok(())
    }

    /// `DELETE /pipelines/{id}` (cancel).
    pub fn cancel_pipeline(&self, id: u64) -> Result<(), SimError> {
        Ok(self.with_state(|s| s.cancel(id))?)
    }

    /// Restarts DevLake: every `TASK_RUNNING` pipeline becomes `TASK_RESUME`
    /// (`resume_pipelines`, DevLake's default) or `TASK_FAILED`, `finishedAt` untouched.
    /// Returns the ids changed.
    pub fn restart(&self, resume_pipelines: bool) -> Vec<u64> {
        self.with_state(|s| s.restart(resume_pipelines))
    }

    /// Every pipeline end so far (runner ends, cancellations, restarts without resume), oldest
    /// first. Seeded rows are not ends.
    pub fn ends(&self) -> Vec<PipelineEnd> {
        self.with_state(|s| s.ends.clone())
    }

    /// Ids of pipelines the runner still has to end (any status but the finished ones).
    pub fn unfinished_pipelines(&self) -> Vec<u64> {
        self.with_state(|s| s.unfinished_ids())
    }

    // ------------------------------------------------------------------ clock

    /// DevLake's clock: the controlled time if set, else the wall clock.
    pub fn now(&self) -> DateTime<Utc> {
        self.with_state(|s| s.now())
    }

    /// Stops DevLake's clock at `at` (`None`: back to the wall clock). Every timestamp the
    /// simulator writes from then on (`createdAt`, `beganAt`, `finishedAt`, `updatedAt`) is it.
    /// With DevLake's cron running ([`Self::run_cron`]), moving the clock forward first fires
    /// every blueprint schedule due in between.
    pub fn set_clock(&self, at: Option<DateTime<Utc>>) {
        self.with_state(|s| match at {
            Some(to) => s.move_clock(to),
            None => s.clock = None,
        });
    }

    /// Moves the controlled clock forward (starting from the wall clock if none was set), firing
    /// the blueprint schedules due on the way when the cron runs.
    pub fn advance_clock(&self, by: chrono::Duration) -> DateTime<Utc> {
        self.with_state(|s| {
            let at = s.now() + by;
            s.move_clock(at);
            at
        })
    }

    /// Turns DevLake's cron of blueprints on or off (off by default: a test's clock moves then
    /// create no pipeline by themselves). While on, each clock move runs every enabled,
    /// non-manual blueprint's `cronConfig` activation in between, as DevLake's `BlueprintJob`.
    pub fn run_cron(&self, on: bool) {
        self.with_state(|s| s.cron.running = on);
    }

    /// Makes every activation of the blueprint's schedule fail before creating a pipeline, as a
    /// `CreateDbPipeline` lock timeout does under load (`false`: back to normal).
    pub fn lose_cron_fires(&self, blueprint_id: u64, lost: bool) {
        self.with_state(|s| {
            if lost {
                s.cron.lost.insert(blueprint_id);
            } else {
                s.cron.lost.remove(&blueprint_id);
            }
        });
    }

    /// Makes `DELETE /pipelines/{id}` of this running pipeline answer 200 and stop nothing, as
    /// DevLake does when the running task ignores its cancelled context or is no longer tracked
    /// (`false`: cancellable again).
    pub fn ignore_cancel(&self, pipeline_id: u64, ignored: bool) {
        self.with_state(|s| {
            if ignored {
                s.uncancellable.insert(pipeline_id);
            } else {
                s.uncancellable.remove(&pipeline_id);
            }
        });
    }

    /// Every activation of a blueprint schedule so far, oldest first, with its outcome.
    pub fn cron_fires(&self) -> Vec<CronFire> {
        self.with_state(|s| s.cron.fires.clone())
    }

    /// Inserts one pipeline row directly. Returns its id.
    pub fn create_pipeline(&self, seed: PipelineSeed) -> Result<u64, SimError> {
        self.insert_pipelines(vec![seed]).map(|v| v[0])
    }

    /// Inserts many pipeline rows directly (fast: 100k in well under a second).
    /// Ids are assigned in order, so later seeds are "newer".
    pub fn insert_pipelines(
        &self,
        seeds: impl IntoIterator<Item = PipelineSeed>,
    ) -> Result<Vec<u64>, SimError> {
        self.with_state(|s| {
            let mut cache = HashMap::new();
            seeds
                .into_iter()
                .map(|seed| s.seed_pipeline(seed, &mut cache))
                .collect::<Result<Vec<_>, _>>()
        })
        .map_err(SimError::from)
    }

    /// Convenience: `n` historical pipelines spread over `blueprint_ids` (round robin), one
    /// every minute ending at `end`, every `fail_every`-th one `TASK_FAILED` (0 = none).
    pub fn seed_history(
        &self,
        blueprint_ids: &[u64],
        n: usize,
        fail_every: usize,
        end: DateTime<Utc>,
    ) -> Result<Vec<u64>, SimError> {
        let seeds = fixture::history_seeds(blueprint_ids, n, fail_every, end);
        self.insert_pipelines(seeds)
    }

    // ------------------------------------------------------------------ notifications

    /// Sets DevLake's `NOTIFICATION_ENDPOINT` and `NOTIFICATION_SECRET` (`None`: unset, no more
    /// notifications). Needs a Tokio runtime: a background task posts them.
    pub fn set_notifications(&self, settings: Option<NotificationSettings>) {
        crate::sim::notify::configure(&self.inner, settings);
    }

    /// Every `_devlake_notifications` row so far, oldest first.
    pub fn notifications(&self) -> Vec<NotificationRow> {
        self.with_state(|s| s.notifications.clone())
    }

    /// Waits until at least `count` notifications exist and every one has been answered (or
    /// failed); returns them all. An error names what was still missing after `timeout`.
    pub async fn wait_for_notifications(
        &self,
        count: usize,
        timeout: Duration,
    ) -> Result<Vec<NotificationRow>, SimError> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let rows = self.notifications();
            if rows.len() >= count && rows.iter().all(|r| r.settled) {
                return Ok(rows);
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(SimError::new(format!(
                    "{} of {count} notifications sent and answered after {timeout:?}",
                    rows.iter().filter(|r| r.settled).count()
                )));
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    pub(crate) fn schedule_auto_complete(&self, pipeline_id: u64) {
        let Some(auto) = lock(&self.inner.auto_complete).clone() else {
            return;
        };
        let h = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(auto.after / 2).await;
            let _ = h.start_pipeline(pipeline_id);
            tokio::time::sleep(auto.after - auto.after / 2).await;
            let msg = if auto.status == "TASK_COMPLETED" {
                ""
            } else {
                "simulated failure"
            };
            let _ = h.finish_pipeline(pipeline_id, &auto.status, msg);
        });
    }
}
