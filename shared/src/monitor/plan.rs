//! From what DevLake showed this run to what must be processed and where the cursor moves.
//! Pure: the reasoning lives in the `monitor` module documentation; the tests pin it down.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use chrono::{DateTime, Utc};

use crate::devlake::models::{status, Pipeline};
use crate::store::MonitorCursor;

/// What the listings returned.
#[derive(Debug, Clone, Default)]
pub(crate) struct Observations {
    /// `GET /pipelines` newest first, down to the cursor (or the first run's floor).
    pub listed: Vec<Pipeline>,
    /// The listing reached the cursor / floor (not cut short by the deadline).
    pub listed_complete: bool,
    /// `GET /pipelines?pending=1`, every page.
    pub pending: Vec<Pipeline>,
    /// The first page of `GET /pipelines?status=S` for each counted status: recent failures,
    /// to catch a re-run that was queued, ran and failed again between two runs.
    pub recent: Vec<Pipeline>,
}

impl Observations {
    fn all(&self) -> impl Iterator<Item = &Pipeline> {
        self.listed
            .iter()
            .chain(self.pending.iter())
            .chain(self.recent.iter())
    }
}

/// Where this run starts from.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Basis<'a> {
    /// No cursor (first run) or `rescan`: failures that finished since `window_start` count.
    Lookback { window_start: DateTime<Utc> },
    /// The stored cursor.
    Cursor(&'a MonitorCursor),
}

/// Results of `GET /pipelines/{id}` for watched pipelines no listing showed.
#[derive(Debug, Clone, Default)]
pub(crate) struct Lookups {
    pub found: Vec<Pipeline>,
    /// 404: deleted; stop watching.
    pub gone: Vec<u64>,
    /// Not answered (error, or the deadline came first): keep watching.
    pub unknown: Vec<u64>,
}

/// What the run must do.
#[derive(Debug, Clone, Default)]
pub(crate) struct Plan {
    /// Finished pipeline states not processed before, sorted by (`finishedAt`, id), one per
    /// (id, `finishedAt`): a re-run that finished again is a second fact.
    pub facts: Vec<Pipeline>,
    /// Unfinished pipelines seen this run, by id.
    pub unfinished: BTreeMap<u64, Pipeline>,
    /// Running longer than `STUCK_AFTER_HOURS`.
    pub stuck: Vec<Pipeline>,
    /// The next cursor, without the stuck map (filled in once projects are known).
    pub cursor: MonitorCursor,
    /// Distinct pipelines whose state this run evaluated.
    pub inspected: usize,
}

fn is_finished(p: &Pipeline) -> Option<DateTime<Utc>> {
    if status::is_finished(&p.status) {
        p.finished_at
    } else {
        None
    }
}

/// Watched pipelines that no listing showed: look them up one by one.
pub(crate) fn lookups_needed(basis: Basis<'_>, obs: &Observations) -> Vec<u64> {
    let Basis::Cursor(cursor) = basis else {
        return Vec::new();
    };
    let seen: HashSet<u64> = obs.all().map(|p| p.id).collect();
    cursor
        .watch
        .iter()
        .copied()
        .filter(|id| !seen.contains(id))
        .collect()
}

/// Builds the plan. `loaded` is the stored cursor even when `basis` ignores it (rescan), so
/// its watch list is not dropped.
pub(crate) fn build(
    basis: Basis<'_>,
    loaded: Option<&MonitorCursor>,
    obs: &Observations,
    lookups: &Lookups,
    now: DateTime<Utc>,
    stuck_after: chrono::Duration,
) -> Plan {
    let is_new = |p: &Pipeline, finished: DateTime<Utc>| match basis {
        Basis::Lookback { window_start } => finished >= window_start,
        Basis::Cursor(c) => {
            p.id > c.max_pipeline_id
                || c.watch.binary_search(&p.id).is_ok()
                || c.watermark.is_none_or(|w| finished > w)
        }
    };

    let mut facts: BTreeMap<(DateTime<Utc>, u64), Pipeline> = BTreeMap::new();
    let mut unfinished: BTreeMap<u64, Pipeline> = BTreeMap::new();
    let mut finished_ids: HashSet<u64> = HashSet::new();
    let mut latest_finish: Option<DateTime<Utc>> = None;
    for p in obs.all().chain(lookups.found.iter()) {
        match is_finished(p) {
            Some(finished) => {
                finished_ids.insert(p.id);
                latest_finish = latest_finish.max(Some(finished));
                if is_new(p, finished) {
                    facts.entry((finished, p.id)).or_insert_with(|| p.clone());
                }
            }
            // A finished status without `finishedAt` cannot be keyed; DevLake always sets both,
            // so treat it as still settling and look again next run.
            None => {
                unfinished.entry(p.id).or_insert_with(|| p.clone());
            }
        }
    }

    let mut watch: BTreeSet<u64> = unfinished.keys().copied().collect();
    let gone: HashSet<u64> = lookups.gone.iter().copied().collect();
    let previous: &[u64] = match (basis, loaded) {
        (Basis::Cursor(c), _) => &c.watch,
        (Basis::Lookback { .. }, Some(c)) => &c.watch,
        (Basis::Lookback { .. }, None) => &[],
    };
    for id in previous {
        // Seen finished and nowhere unfinished: resolved. Seen both (e.g. finished in one
        // listing, re-run in another): keep watching, the next run sorts it out.
        let resolved = finished_ids.contains(id) && !unfinished.contains_key(id);
        if !resolved && !gone.contains(id) {
            watch.insert(*id);
        }
    }

    // Only the unfiltered listing proves that every id up to its top was seen.
    let top = obs.listed.iter().map(|p| p.id).max();
    let max_pipeline_id = match basis {
        Basis::Cursor(c) if obs.listed_complete => c.max_pipeline_id.max(top.unwrap_or(0)),
        Basis::Cursor(c) => c.max_pipeline_id,
        Basis::Lookback { .. } => top
            .unwrap_or(0)
            .max(loaded.map_or(0, |c| c.max_pipeline_id)),
    };
    let base_watermark = match basis {
        Basis::Cursor(c) => c.watermark,
        Basis::Lookback { window_start } => {
            Some(window_start).max(loaded.and_then(|c| c.watermark))
        }
    };
    let watermark = base_watermark.max(latest_finish);

    let stuck_before = now - stuck_after;
    let stuck = unfinished
        .values()
        .filter(|p| matches!(p.status.as_str(), status::RUNNING | status::RESUME))
        .filter(|p| p.began_at.is_some_and(|b| b < stuck_before))
        .cloned()
        .collect();

    let mut inspected: HashSet<u64> = facts.keys().map(|(_, id)| *id).collect();
    inspected.extend(unfinished.keys());
    inspected.extend(lookups.found.iter().map(|p| p.id));

    Plan {
        facts: facts.into_values().collect(),
        unfinished,
        stuck,
        cursor: MonitorCursor {
            max_pipeline_id,
            watermark,
            watch: watch.into_iter().collect(),
            stuck: Default::default(),
            updated_at: Some(now),
            revision: loaded.map_or(0, |c| c.revision),
        },
        inspected: inspected.len(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t(hour: u32, minute: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 28, hour, minute, 0).unwrap()
    }

    fn p(id: u64, status: &str, finished: Option<DateTime<Utc>>) -> Pipeline {
        serde_json::from_value(serde_json::json!({
            "id": id, "blueprintId": 1, "status": status,
            "beganAt": t(0, 0), "finishedAt": finished,
        }))
        .unwrap()
    }

    fn cursor(max: u64, watermark: DateTime<Utc>, watch: &[u64]) -> MonitorCursor {
        MonitorCursor {
            max_pipeline_id: max,
            watermark: Some(watermark),
            watch: watch.to_vec(),
            revision: 3,
            ..Default::default()
        }
    }

    fn ids(plan: &Plan) -> Vec<u64> {
        plan.facts.iter().map(|p| p.id).collect()
    }

    #[test]
    fn new_pipelines_and_watched_ones_are_facts_old_ones_are_not() {
        let c = cursor(100, t(10, 0), &[90]);
        let obs = Observations {
            listed: vec![
                p(103, status::RUNNING, None),
                p(102, status::FAILED, Some(t(10, 4))),
                p(101, status::COMPLETED, Some(t(10, 3))),
                p(100, status::FAILED, Some(t(9, 59))), // processed last time
                p(90, status::PARTIAL, Some(t(10, 1))), // was running last time
                p(80, status::FAILED, Some(t(9, 0))),
            ],
            listed_complete: true,
            pending: vec![p(103, status::RUNNING, None)],
            recent: vec![p(102, status::FAILED, Some(t(10, 4)))],
        };
        assert!(lookups_needed(Basis::Cursor(&c), &obs).is_empty());
        let plan = build(
            Basis::Cursor(&c),
            Some(&c),
            &obs,
            &Lookups::default(),
            t(10, 5),
            chrono::Duration::hours(12),
        );
        assert_eq!(ids(&plan), vec![90, 101, 102]);
        assert_eq!(plan.cursor.max_pipeline_id, 103);
        assert_eq!(plan.cursor.watch, vec![103]);
        assert_eq!(plan.cursor.watermark, Some(t(10, 4)));
        assert_eq!(plan.cursor.revision, 3);
        assert_eq!(plan.inspected, 4);
    }

    #[test]
    fn a_rerun_that_failed_again_between_runs_is_a_new_fact() {
        let c = cursor(100, t(10, 0), &[]);
        let obs = Observations {
            listed: vec![p(100, status::COMPLETED, Some(t(9, 0)))],
            listed_complete: true,
            pending: vec![],
            // Pipeline 40 failed long ago, was re-run and failed again at 10:02.
            recent: vec![p(40, status::FAILED, Some(t(10, 2)))],
        };
        let plan = build(
            Basis::Cursor(&c),
            Some(&c),
            &obs,
            &Lookups::default(),
            t(10, 5),
            chrono::Duration::hours(12),
        );
        assert_eq!(ids(&plan), vec![40]);
    }

    #[test]
    fn watched_pipelines_missing_from_listings_are_looked_up() {
        let c = cursor(100, t(10, 0), &[5, 50, 60, 70]);
        let obs = Observations {
            listed: vec![p(100, status::COMPLETED, Some(t(9, 0)))],
            listed_complete: true,
            pending: vec![p(50, status::RUNNING, None)],
            recent: vec![],
        };
        assert_eq!(lookups_needed(Basis::Cursor(&c), &obs), vec![5, 60, 70]);
        let lookups = Lookups {
            found: vec![p(5, status::FAILED, Some(t(10, 1)))],
            gone: vec![60],
            unknown: vec![70],
        };
        let plan = build(
            Basis::Cursor(&c),
            Some(&c),
            &obs,
            &lookups,
            t(10, 5),
            chrono::Duration::hours(12),
        );
        assert_eq!(ids(&plan), vec![5]);
        assert_eq!(plan.cursor.watch, vec![50, 70]);
    }

    #[test]
    fn a_listing_cut_short_does_not_move_the_cursor() {
        let c = cursor(100, t(10, 0), &[]);
        let obs = Observations {
            listed: vec![
                p(900, status::FAILED, Some(t(10, 3))),
                p(899, status::RUNNING, None),
            ],
            listed_complete: false,
            ..Default::default()
        };
        let plan = build(
            Basis::Cursor(&c),
            Some(&c),
            &obs,
            &Lookups::default(),
            t(10, 5),
            chrono::Duration::hours(12),
        );
        assert_eq!(plan.cursor.max_pipeline_id, 100);
        assert_eq!(ids(&plan), vec![900]);
        assert_eq!(plan.cursor.watch, vec![899]);
    }

    #[test]
    fn lookback_records_only_inside_the_window_and_keeps_old_watches() {
        let old = cursor(50, t(1, 0), &[7]);
        let obs = Observations {
            listed: vec![
                p(60, status::FAILED, Some(t(10, 0))),
                p(59, status::FAILED, Some(t(2, 0))),
                p(58, status::CREATED, None),
            ],
            listed_complete: true,
            ..Default::default()
        };
        let plan = build(
            Basis::Lookback {
                window_start: t(9, 0),
            },
            Some(&old),
            &obs,
            &Lookups::default(),
            t(10, 5),
            chrono::Duration::hours(12),
        );
        assert_eq!(ids(&plan), vec![60]);
        assert_eq!(plan.cursor.max_pipeline_id, 60);
        assert_eq!(plan.cursor.watch, vec![7, 58]);
        assert_eq!(plan.cursor.watermark, Some(t(10, 0)));
    }

    #[test]
    fn running_too_long_is_stuck_queued_is_not() {
        let obs = Observations {
            pending: vec![p(1, status::RUNNING, None), p(2, status::CREATED, None)],
            listed_complete: true,
            ..Default::default()
        };
        let now = t(0, 0) + chrono::Duration::hours(13);
        let plan = build(
            Basis::Lookback { window_start: now },
            None,
            &obs,
            &Lookups::default(),
            now,
            chrono::Duration::hours(12),
        );
        assert_eq!(plan.stuck.iter().map(|p| p.id).collect::<Vec<_>>(), vec![1]);
        let fresh = build(
            Basis::Lookback { window_start: now },
            None,
            &obs,
            &Lookups::default(),
            now,
            chrono::Duration::hours(14),
        );
        assert!(fresh.stuck.is_empty());
    }
}
