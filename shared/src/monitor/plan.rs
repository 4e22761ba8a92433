//! From what DevLake showed this run to what must be processed and where the cursor moves.
//! Pure: the reasoning lives in the `monitor` module documentation; the tests pin it down.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use chrono::{DateTime, Utc};

use crate::devlake::models::{status, Pipeline};
use crate::store::{MonitorCursor, OpenFailure};

/// What the listings returned.
#[derive(Debug, Clone, Default)]
pub(crate) struct Observations {
    /// `GET /pipelines` newest first, down to the cursor (or the first run's floor).
    pub listed: Vec<Pipeline>,
    /// The listing reached the cursor / floor (not cut short by the deadline).
    pub listed_complete: bool,
    /// Unfinished pipelines: `GET /pipelines?pending=1` (queued and first runs) and
    /// `?status=TASK_RERUN` / `?status=TASK_RUNNING` (re-runs, which keep their old `finishedAt`
    /// and so are never "pending"), every page.
    pub pending: Vec<Pipeline>,
    /// `GET /pipelines?status=S` for each counted status, newest first, down to the oldest open
    /// failure (or at least one page): re-runs that ended again, and open failures re-checked.
    pub recent: Vec<Pipeline>,
    /// Every counted-status listing is complete for ids at or above this one (0: complete).
    pub recent_covers_from: u64,
}

impl Observations {
    fn all(&self) -> impl Iterator<Item = &Pipeline> {
        self.listed
            .iter()
            .chain(self.pending.iter())
            .chain(self.recent.iter())
    }
}

/// DevLake writes `finishedAt` and `updatedAt` in the same save when a run ends (milliseconds
/// apart). A finished pipeline whose `updatedAt` is later than this after its `finishedAt` was
/// saved again since, in a finished status: it ended without a new `finishedAt` (a restart with
/// `RESUME_PIPELINES=false` during a re-run, the cancellation of a queued re-run).
const SAME_SAVE: chrono::Duration = chrono::Duration::seconds(5);

/// When the pipeline's current finished state began; `None` while it is not finished. Usually
/// `finishedAt`; `updatedAt` when DevLake ended it without stamping one (a restart with
/// `RESUME_PIPELINES=false` fails running pipelines with `finishedAt` left null, or the previous
/// run's on a re-run; a cancelled queued pipeline has none). Row data only, so the same state
/// always gives the same time, and the failure key (pipeline id + this time) is stable.
pub(crate) fn ended_at(p: &Pipeline) -> Option<DateTime<Utc>> {
    if !status::is_finished(&p.status) {
        return None;
    }
    match (p.finished_at, p.updated_at) {
        (Some(f), Some(u)) if u - f > SAME_SAVE => Some(u),
        (Some(f), _) => Some(f),
        (None, Some(u)) => Some(u),
        (None, None) => p.created_at.or(p.began_at),
    }
}

/// Open failures beyond the failure listings' depth looked up per run (round robin): a bound
/// on calls when many projects have been failing for a long time.
pub(crate) const RECHECK_LOOKUPS: usize = 5;

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

/// Pipelines to look up one by one, and where the round robin over old open failures goes on.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Needed {
    pub ids: Vec<u64>,
    pub recheck_after: u64,
}

/// Watched pipelines that no listing showed, and open failures no listing showed: those the
/// failure listings covered changed status (ended some other way, or were deleted); older ones
/// are looked up [`RECHECK_LOOKUPS`] per run in id order.
pub(crate) fn lookups_needed(basis: Basis<'_>, obs: &Observations) -> Needed {
    let Basis::Cursor(cursor) = basis else {
        return Needed::default();
    };
    let seen: HashSet<u64> = obs.all().map(|p| p.id).collect();
    let mut ids: BTreeSet<u64> = cursor
        .watch
        .iter()
        .copied()
        .filter(|id| !seen.contains(id))
        .collect();
    let unseen: Vec<u64> = cursor
        .open_failures
        .iter()
        .map(|o| o.pipeline_id)
        .filter(|id| !seen.contains(id))
        .collect();
    let (covered, old): (Vec<u64>, Vec<u64>) = unseen
        .into_iter()
        .partition(|id| *id >= obs.recent_covers_from);
    ids.extend(covered);
    let mut recheck_after = cursor.recheck_after;
    if !old.is_empty() {
        let start = old.partition_point(|id| *id <= cursor.recheck_after);
        let turn: Vec<u64> = old[start..]
            .iter()
            .chain(old[..start].iter())
            .take(RECHECK_LOOKUPS)
            .copied()
            .collect();
        recheck_after = turn.last().copied().unwrap_or(recheck_after);
        ids.extend(turn);
    }
    Needed {
        ids: ids.into_iter().collect(),
        recheck_after,
    }
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
    let open: HashMap<u64, DateTime<Utc>> = loaded
        .map(|c| {
            c.open_failures
                .iter()
                .map(|o| (o.pipeline_id, o.ended_at))
                .collect()
        })
        .unwrap_or_default();
    let is_new = |p: &Pipeline, finished: DateTime<Utc>| {
        // An open failure that ended at another time ran again, whenever that was.
        open.get(&p.id).is_some_and(|e| *e != finished)
            || match basis {
                Basis::Lookback { window_start } => finished >= window_start,
                Basis::Cursor(c) => {
                    p.id > c.max_pipeline_id
                        || c.watch.binary_search(&p.id).is_ok()
                        || c.watermark.is_none_or(|w| finished > w)
                }
            }
    };

    let mut facts: BTreeMap<(DateTime<Utc>, u64), Pipeline> = BTreeMap::new();
    let mut unfinished: BTreeMap<u64, Pipeline> = BTreeMap::new();
    let mut finished_ids: HashSet<u64> = HashSet::new();
    let mut latest_finish: Option<DateTime<Utc>> = None;
    for p in obs.all().chain(lookups.found.iter()) {
        match ended_at(p) {
            Some(finished) => {
                finished_ids.insert(p.id);
                latest_finish = latest_finish.max(Some(finished));
                if is_new(p, finished) {
                    // From here on `finishedAt` is when this state began (see `ended_at`).
                    facts.entry((finished, p.id)).or_insert_with(|| Pipeline {
                        finished_at: Some(finished),
                        ..p.clone()
                    });
                }
            }
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
    let loaded_max = loaded.map_or(0, |c| c.max_pipeline_id);
    let (max_pipeline_id, watermark, lookback_from) = match basis {
        Basis::Cursor(c) if obs.listed_complete => (
            c.max_pipeline_id.max(top.unwrap_or(0)),
            c.watermark.max(latest_finish),
            None,
        ),
        Basis::Cursor(c) => (c.max_pipeline_id, c.watermark.max(latest_finish), None),
        Basis::Lookback { window_start } if obs.listed_complete => (
            top.unwrap_or(0).max(loaded_max),
            Some(window_start)
                .max(loaded.and_then(|c| c.watermark))
                .max(latest_finish),
            None,
        ),
        // Cut short: ids below the last page read were not listed. Claiming them (the top
        // as `max_pipeline_id`, the latest end as watermark) would lose their failures, so
        // the cursor keeps what it had and the next run looks back from the same start.
        Basis::Lookback { window_start } => (
            loaded_max,
            loaded.and_then(|c| c.watermark),
            Some(window_start),
        ),
    };

    // Running time counts from `beganAt`, which DevLake's runner sets each time it starts a
    // pipeline (`dequeuePipeline`), a re-run and a resumed one included: the current attempt's.
    let stuck_before = now - stuck_after;
    let stuck: Vec<Pipeline> = unfinished
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
            open_failures: open_failures_left(loaded, lookups),
            recheck_after: loaded.map_or(0, |c| c.recheck_after),
            sweep_page: loaded.map_or(0, |c| c.sweep_page),
            missing_blueprints: loaded
                .map(|c| c.missing_blueprints.clone())
                .unwrap_or_default(),
            lookback_from,
            // The run fills these in once projects are known.
            schedules: Vec::new(),
            schedule_missed: Default::default(),
            stuck_cancels: Vec::new(),
            stuck_cancel_failed: Default::default(),
            updated_at: Some(now),
            revision: loaded.map_or(0, |c| c.revision),
        },
        inspected: inspected.len(),
    }
}

/// The loaded open failures without the deleted ones; the run then replaces the entries of
/// every project whose latest finished pipeline it moved.
fn open_failures_left(loaded: Option<&MonitorCursor>, lookups: &Lookups) -> Vec<OpenFailure> {
    let gone: HashSet<u64> = lookups.gone.iter().copied().collect();
    loaded
        .map(|c| {
            c.open_failures
                .iter()
                .filter(|o| !gone.contains(&o.pipeline_id))
                .cloned()
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests;
