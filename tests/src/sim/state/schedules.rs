//! DevLake's cron of blueprints, run on the simulator's clock.
//!
//! `ReloadBlueprints` registers every enabled, non-manual blueprint on a robfig `cron.Cron` in
//! UTC, and `reloadBlueprint` registers it again on every save (so the schedule counts from the
//! blueprint's last `updatedAt`). Each activation runs `BlueprintJob.Run` →
//! `createPipelineByBlueprint` → `CreatePipeline` → `CreateDbPipeline`: the same rules as a
//! trigger (no pipeline while one of the blueprint is `TASK_CREATED`, `TASK_RERUN` or
//! `TASK_RUNNING`, none without tasks), with the blueprint's own sync policy. A refused
//! activation is only logged by DevLake; nothing retries it. Under load the 2-second table lock
//! of `CreateDbPipeline` can time out, and the activation is lost the same way: a blueprint in
//! [`CronState::lost`] has its activations lost like that.
//!
//! The cron runs only when a test turns it on ([`CronState::running`]), and only while the
//! clock is moved: every activation between the old and the new time happens in time order, the
//! clock standing at each one while its pipeline is created. Pipelines it creates are not
//! auto-completed (their creation time is simulated, the auto-complete delay is real time).

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::State;
use crate::sim::cron::Schedule;

/// More activations than this in one clock move are dropped (an `@every 1s` over a year).
const MAX_FIRES_PER_MOVE: usize = 100_000;

/// Whether DevLake's cron runs, which blueprints lose their activations, and what each
/// activation did.
#[derive(Debug, Default)]
pub(crate) struct CronState {
    pub running: bool,
    pub lost: BTreeSet<u64>,
    pub fires: Vec<CronFire>,
}

/// One activation of a blueprint's schedule and its outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CronFire {
    pub blueprint_id: u64,
    pub at: DateTime<Utc>,
    /// The pipeline it created.
    pub pipeline_id: Option<u64>,
    /// Why none was created: DevLake's error message, or `lock tables timeout` for a lost one.
    pub refused: Option<String>,
}

impl State {
    /// Moves the clock to `to`; with the cron running, fires every activation in between first.
    pub(crate) fn move_clock(&mut self, to: DateTime<Utc>) {
        let from = self.now();
        if self.cron.running && to > from {
            let mut due: Vec<(DateTime<Utc>, u64)> = Vec::new();
            for bp in self
                .blueprints
                .values()
                .filter(|b| b.enable && !b.is_manual)
            {
                let Ok(schedule) = Schedule::parse(&bp.cron_config) else {
                    continue;
                };
                let mut next = match &schedule {
                    // `Every`: registered at the last save, then every period from there.
                    Schedule::Every(d) => {
                        let periods = if from < bp.updated_at {
                            0
                        } else {
                            (from - bp.updated_at).num_seconds() / d.num_seconds().max(1)
                        };
                        Some(bp.updated_at + *d * (periods as i32 + 1))
                    }
                    Schedule::Spec { .. } => schedule.next(from.max(bp.updated_at)),
                };
                while let Some(at) = next.filter(|at| *at <= to) {
                    if due.len() >= MAX_FIRES_PER_MOVE {
                        break;
                    }
                    due.push((at, bp.id));
                    next = schedule.next(at);
                }
            }
            due.sort();
            for (at, id) in due {
                self.clock = Some(at);
                self.fire(id, at);
            }
        }
        self.clock = Some(to);
    }

    /// `BlueprintJob.Run` at `at`.
    fn fire(&mut self, id: u64, at: DateTime<Utc>) {
        let outcome = if self.cron.lost.contains(&id) {
            Err("lock tables timeout".to_string())
        } else {
            let (skip_collectors, full_sync) = match self.blueprints.get(&id) {
                Some(bp) => (bp.skip_collectors, bp.full_sync),
                None => return,
            };
            self.trigger(id, skip_collectors, full_sync)
                .map_err(|e| e.message)
        };
        self.cron.fires.push(CronFire {
            blueprint_id: id,
            at,
            pipeline_id: outcome.as_ref().ok().copied(),
            refused: outcome.err(),
        });
    }
}
