//! Missed scheduled runs: a managed blueprint whose schedule was due and left no pipeline.
//!
//! DevLake runs an enabled, non-manual blueprint's `cronConfig` on robfig/cron in UTC
//! (`ReloadBlueprints`); each fire calls `BlueprintJob.Run` → `createPipelineByBlueprint` →
//! `CreateDbPipeline`, which takes a table lock for at most 2 seconds and refuses to create a
//! pipeline while one of the same blueprint is `TASK_CREATED`, `TASK_RERUN` or `TASK_RUNNING`
//! (`models.PendingTaskStatus`). A refused or failed fire is only logged; nothing retries it, so
//! a lock timeout at a busy minute, or DevLake being down at the minute, loses that day's
//! collection without any trace in the API.
//!
//! The monitor keeps, per watched blueprint, the latest sign of a pipeline of it
//! ([`ScheduleWatch::last_activity`]): a creation, an end, or a run that saw one queued or
//! running. A scheduled run due at `T` is *accounted for* when that sign is at or after `T`: a
//! pipeline was created by the fire (or later, by hand or by the automation), or one was still
//! busy at or after `T` — then DevLake refused the fire by design, which is a skip, not a miss
//! (the stuck flag covers a pipeline that never ends). It is *missed* when it is due more than
//! [`SCHEDULE_GRACE`] ago and not accounted for; the flag stays up until a pipeline of the
//! blueprint appears or a later scheduled run is accounted for.
//!
//! Which runs were due comes from the blueprint's `cronConfig` as this run's blueprint sweep
//! read it ([`CronSchedule`]); an `@every <d>` schedule, whose phase is set by when DevLake
//! loaded it, is expected to leave a pipeline in every `d`. Only blueprints carrying
//! `MANAGED_LABEL` are watched. A watch starts (and restarts when the `cronConfig` changes) at
//! the run that first sees the schedule: runs due before are never judged, so neither a first
//! deployment nor a new `BLUEPRINT_CRON` raises anything. A blueprint is judged on the runs
//! whose sweep page holds it (every run up to `SWEEP_PAGE` blueprints); between, its flag
//! stays as it was. A run whose pipeline listing was cut short judges nothing new.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use chrono::{DateTime, Duration, Utc};

use crate::cron::{stable_hash, CronSchedule};
use crate::devlake::models::{Blueprint, Pipeline};
use crate::store::ScheduleWatch;

use super::plan::ended_at;

/// How long after a scheduled run is due the monitor waits for its pipeline before flagging it
/// missed. DevLake creates the pipeline within seconds of the fire (the table lock waits 2 s at
/// most); 15 minutes also covers the monitor's own 5-minute cadence, a late delivery, and a
/// few minutes of clock skew between DevLake and AWS.
pub const SCHEDULE_GRACE: Duration = Duration::minutes(15);

/// A managed, enabled, scheduled blueprint on this run's sweep page.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Scheduled {
    pub blueprint_id: u64,
    pub project: String,
    pub schedule: CronSchedule,
    pub cron_hash: u32,
}

impl Scheduled {
    /// The blueprint's schedule when DevLake runs it and it carries `label`: enabled, not
    /// manual, and a `cronConfig` robfig accepts (DevLake refuses to save any other).
    pub(crate) fn of(b: &Blueprint, project: &str, label: &str) -> Option<Scheduled> {
        if !b.enable || b.is_manual || project.is_empty() || !b.labels.iter().any(|l| l == label) {
            return None;
        }
        let cron = b.cron_config.trim();
        let schedule = CronSchedule::parse(cron).ok()?;
        Some(Scheduled {
            blueprint_id: b.id,
            project: project.to_string(),
            schedule,
            // 24 bits, as the cursor keeps it: a change is missed once in 16 million.
            cron_hash: (stable_hash(cron) >> 40) as u32,
        })
    }
}

/// What this run's sweep showed.
pub(crate) struct Page<'a> {
    /// Every blueprint on the page, by id, with its project name.
    pub names: &'a HashMap<u64, String>,
    pub scheduled: &'a [Scheduled],
    /// The page held every blueprint.
    pub complete: bool,
}

/// The latest sign of a pipeline per blueprint among the pipelines this run saw: its creation,
/// its end, or `now` while it is unfinished.
pub(crate) fn activity<'a>(
    pipelines: impl Iterator<Item = &'a Pipeline>,
    now: DateTime<Utc>,
) -> HashMap<u64, DateTime<Utc>> {
    let mut latest: HashMap<u64, DateTime<Utc>> = HashMap::new();
    for p in pipelines.filter(|p| p.blueprint_id != 0) {
        let sign = match ended_at(p) {
            Some(end) => p.created_at.max(Some(end)),
            None => Some(now),
        };
        if let Some(sign) = sign {
            let entry = latest.entry(p.blueprint_id).or_insert(sign);
            *entry = (*entry).max(sign);
        }
    }
    latest
}

/// A scheduled run this run found missed.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Missed {
    pub project: String,
    pub blueprint_id: u64,
    pub due: DateTime<Utc>,
}

/// The watches and flags after this run.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Tracked {
    pub watches: Vec<ScheduleWatch>,
    /// Projects flagged missed after this run.
    pub missed: BTreeSet<String>,
    /// The runs judged missed by this run (for the log and the summary).
    pub found: Vec<Missed>,
}

/// Updates the watches with this run's `activity` and judges the blueprints on the sweep page.
/// `judge` is false when the pipeline listing was cut short (a pipeline it did not reach could
/// be the scheduled one): flags then stay as they were.
pub(crate) fn track(
    previous: &[ScheduleWatch],
    missed_before: &BTreeSet<String>,
    page: &Page<'_>,
    activity: &HashMap<u64, DateTime<Utc>>,
    judge: bool,
    now: DateTime<Utc>,
) -> Tracked {
    let mut watches: BTreeMap<u64, ScheduleWatch> =
        previous.iter().map(|w| (w.blueprint_id, *w)).collect();
    for w in watches.values_mut() {
        if let Some(seen) = activity.get(&w.blueprint_id) {
            w.last_activity = w.last_activity.max(*seen);
        }
    }
    // Not scheduled (any more), or gone: not watched.
    let scheduled: HashSet<u64> = page.scheduled.iter().map(|s| s.blueprint_id).collect();
    watches.retain(|id, _| match page.names.get(id) {
        Some(_) => scheduled.contains(id),
        None => !page.complete,
    });
    let judged: BTreeSet<&str> = page.names.values().map(String::as_str).collect();
    let mut missed: BTreeSet<String> = missed_before
        .iter()
        .filter(|p| !page.complete && !judged.contains(p.as_str()))
        .cloned()
        .collect();
    let mut found = Vec::new();
    for s in page.scheduled {
        let watch = watches
            .entry(s.blueprint_id)
            .and_modify(|w| {
                if w.cron_hash != s.cron_hash {
                    // A new schedule: its earlier runs never were DevLake's plan.
                    w.cron_hash = s.cron_hash;
                    w.last_activity = w.last_activity.max(now);
                }
            })
            .or_insert(ScheduleWatch {
                blueprint_id: s.blueprint_id,
                cron_hash: s.cron_hash,
                last_activity: activity
                    .get(&s.blueprint_id)
                    .copied()
                    .unwrap_or(now)
                    .max(now),
            });
        if !judge {
            if missed_before.contains(&s.project) {
                missed.insert(s.project.clone());
            }
            continue;
        }
        let due = s.schedule.due_by(now - SCHEDULE_GRACE);
        if let Some(due) = due.filter(|d| watch.last_activity < *d) {
            missed.insert(s.project.clone());
            if !missed_before.contains(&s.project) {
                found.push(Missed {
                    project: s.project.clone(),
                    blueprint_id: s.blueprint_id,
                    due,
                });
            }
        }
    }
    Tracked {
        watches: watches.into_values().collect(),
        missed,
        found,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(h: u32, m: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 28, h, m, 0).unwrap()
    }

    fn blueprint(id: u64, cron: &str) -> Blueprint {
        serde_json::from_value(serde_json::json!({
            "id": id, "name": format!("p{id}-Blueprint"), "projectName": format!("p{id}"),
            "enable": true, "isManual": false, "cronConfig": cron,
            "labels": ["devlake-autopilot"],
        }))
        .unwrap()
    }

    fn pipeline(
        bp: u64,
        created: DateTime<Utc>,
        status: &str,
        end: Option<DateTime<Utc>>,
    ) -> Pipeline {
        serde_json::from_value(serde_json::json!({
            "id": 1, "blueprintId": bp, "status": status, "createdAt": created, "finishedAt": end,
        }))
        .unwrap()
    }

    struct World {
        names: HashMap<u64, String>,
        scheduled: Vec<Scheduled>,
    }

    fn world(bps: &[Blueprint]) -> World {
        World {
            names: bps.iter().map(|b| (b.id, b.project_name.clone())).collect(),
            scheduled: bps
                .iter()
                .filter_map(|b| Scheduled::of(b, &b.project_name, "devlake-autopilot"))
                .collect(),
        }
    }

    fn run(
        w: &World,
        before: &Tracked,
        activity: &HashMap<u64, DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Tracked {
        let page = Page {
            names: &w.names,
            scheduled: &w.scheduled,
            complete: true,
        };
        track(&before.watches, &before.missed, &page, activity, true, now)
    }

    #[test]
    fn only_managed_enabled_scheduled_blueprints_are_watched() {
        let mut off = blueprint(2, "0 3 * * *");
        off.enable = false;
        let mut manual = blueprint(3, "manual");
        manual.is_manual = true;
        let mut foreign = blueprint(4, "0 3 * * *");
        foreign.labels.clear();
        let w = world(&[blueprint(1, "0 3 * * *"), off, manual, foreign]);
        assert_eq!(w.scheduled.len(), 1);
        let t = run(&w, &Tracked::default(), &HashMap::new(), at(12, 0));
        assert_eq!(t.watches.len(), 1);
        // Just watched: nothing due before now is judged.
        assert!(t.missed.is_empty());
    }

    #[test]
    fn a_fire_without_a_pipeline_is_missed_after_the_grace_period() {
        let w = world(&[blueprint(1, "0 3 * * *"), blueprint(2, "0 3 * * *")]);
        let day0 = run(&w, &Tracked::default(), &HashMap::new(), at(0, 0));
        // 03:00: blueprint 1's fire creates a pipeline, blueprint 2's is lost.
        let seen = HashMap::from([(1, at(3, 0))]);
        let early = run(&w, &day0, &seen, at(3, 10));
        assert!(early.missed.is_empty(), "within the grace period");
        let late = run(&w, &early, &HashMap::new(), at(3, 15));
        assert_eq!(late.missed, BTreeSet::from(["p2".to_string()]));
        assert_eq!(
            late.found,
            vec![Missed {
                project: "p2".into(),
                blueprint_id: 2,
                due: at(3, 0)
            }]
        );
        // Still missed, reported once.
        let later = run(&w, &late, &HashMap::new(), at(9, 0));
        assert_eq!(later.missed.len(), 1);
        assert!(later.found.is_empty());
        // A pipeline by hand clears it.
        let cleared = run(&w, &later, &HashMap::from([(2, at(9, 2))]), at(9, 5));
        assert!(cleared.missed.is_empty());
    }

    #[test]
    fn a_fire_refused_because_a_pipeline_was_busy_is_not_missed() {
        let w = world(&[blueprint(1, "0 3 * * *")]);
        let day0 = run(&w, &Tracked::default(), &HashMap::new(), at(0, 0));
        // Created at 02:00, still running at 03:00: DevLake refuses the fire.
        let busy = activity(
            [pipeline(1, at(2, 0), "TASK_RUNNING", None)].iter(),
            at(2, 30),
        );
        let t = run(&w, &day0, &busy, at(2, 30));
        // It ended at 03:40, after the due time.
        let ended = activity(
            [pipeline(1, at(2, 0), "TASK_COMPLETED", Some(at(3, 40)))].iter(),
            at(3, 45),
        );
        let t = run(&w, &t, &ended, at(3, 45));
        assert!(t.missed.is_empty());
        // Had it ended at 02:50, the 03:00 fire should have made a pipeline.
        let t = run(&w, &day0, &HashMap::from([(1, at(2, 50))]), at(3, 45));
        assert_eq!(t.missed.len(), 1);
    }

    #[test]
    fn a_changed_schedule_restarts_the_watch_and_every_period_schedules_need_a_pipeline_per_period()
    {
        let w = world(&[blueprint(1, "0 3 * * *")]);
        let t = run(&w, &Tracked::default(), &HashMap::new(), at(0, 0));
        // Changed to 01:00 at 02:00: the 01:00 of today was never DevLake's plan.
        let w2 = world(&[blueprint(1, "0 1 * * *")]);
        let t = run(&w2, &t, &HashMap::new(), at(2, 0));
        assert!(t.missed.is_empty());
        let every = world(&[blueprint(1, "@every 2h")]);
        let t = run(&every, &t, &HashMap::new(), at(2, 5));
        let t = run(&every, &t, &HashMap::from([(1, at(3, 0))]), at(5, 14));
        assert!(t.missed.is_empty());
        let t = run(&every, &t, &HashMap::new(), at(5, 16));
        assert_eq!(t.missed.len(), 1);
    }

    #[test]
    fn unjudged_blueprints_keep_their_flag_and_unscheduled_ones_lose_it() {
        let w = world(&[blueprint(1, "0 3 * * *")]);
        let t = run(&w, &Tracked::default(), &HashMap::new(), at(0, 0));
        let t = run(&w, &t, &HashMap::new(), at(4, 0));
        assert_eq!(t.missed.len(), 1);
        // A sweep that failed (empty, incomplete page): kept.
        let none = HashMap::new();
        let empty = Page {
            names: &none,
            scheduled: &[],
            complete: false,
        };
        let kept = track(
            &t.watches,
            &t.missed,
            &empty,
            &HashMap::new(),
            true,
            at(4, 5),
        );
        assert_eq!(kept.missed, t.missed);
        assert_eq!(kept.watches, t.watches);
        // A listing cut short: kept, even if the page shows it.
        let page = Page {
            names: &w.names,
            scheduled: &w.scheduled,
            complete: true,
        };
        let unsure = track(
            &t.watches,
            &t.missed,
            &page,
            &HashMap::new(),
            false,
            at(4, 5),
        );
        assert_eq!(unsure.missed, t.missed);
        // Set to manual: no longer watched, flag down.
        let mut manual = blueprint(1, "manual");
        manual.is_manual = true;
        let off = run(&world(&[manual]), &t, &HashMap::new(), at(4, 10));
        assert!(off.missed.is_empty() && off.watches.is_empty());
        // Deleted (a complete sweep without it): the same.
        let gone = run(&world(&[]), &t, &HashMap::new(), at(4, 10));
        assert!(gone.missed.is_empty() && gone.watches.is_empty());
    }
}
