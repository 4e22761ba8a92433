//! Where the monitor left off between runs, and the small records the cursor carries: schedule
//! watches, stuck-pipeline cancels, open failures, blueprints that answered 404.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Where the monitor left off. See `monitor` for why this shape is both complete and cheap.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct MonitorCursor {
    /// Every pipeline with an id up to this one has been accounted for: either its finished state
    /// was processed, or it is in `watch`.
    pub max_pipeline_id: u64,
    /// The latest `finishedAt` processed so far (DevLake's clock). A finished pipeline at or
    /// below `max_pipeline_id`, not watched, with a `finishedAt` after this was re-run since.
    pub watermark: Option<DateTime<Utc>>,
    /// Pipelines at or below `max_pipeline_id` whose final state has not been processed yet
    /// (queued, running, resumed, re-run, or not mappable last time). Ascending, no duplicates.
    pub watch: Vec<u64>,
    /// Projects currently flagged stuck, with the pipeline that made them so.
    pub stuck: BTreeMap<String, u64>,
    /// The latest recorded failure of every project whose latest finished pipeline failed,
    /// ascending by pipeline id. Re-checked every run: a re-run of it (from the Config UI, the
    /// API, a task re-run or the auto-rerun) is seen whatever the pipeline's age.
    pub open_failures: Vec<OpenFailure>,
    /// Open failures beyond the failure listings' depth are looked up a few per run, in id
    /// order from after this one.
    pub recheck_after: u64,
    /// The page of `GET /blueprints` the next run reads (1-based; the sweep wraps around).
    pub sweep_page: u32,
    /// Blueprints that answered 404, with the first such answer: their pipelines wait (watched)
    /// until the blueprint is found again or has been missing for an hour.
    pub missing_blueprints: Vec<MissingBlueprint>,
    /// Managed blueprints whose schedule is checked for missed runs, ascending by blueprint id;
    /// one short string in the item (see [`ScheduleWatch`]).
    #[serde(with = "schedule_watches", skip_serializing_if = "Vec::is_empty")]
    pub schedules: Vec<ScheduleWatch>,
    /// Projects flagged for a missed scheduled run.
    #[serde(skip_serializing_if = "BTreeSet::is_empty")]
    pub schedule_missed: BTreeSet<String>,
    /// Cancels sent to stuck pipelines (`STUCK_ACTION`), ascending by pipeline id: the next
    /// run checks that each pipeline stopped.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub stuck_cancels: Vec<StuckCancel>,
    /// Projects whose stuck pipeline a cancel did not stop, with that pipeline.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub stuck_cancel_failed: BTreeMap<String, u64>,
    /// Set when a first run or a rescan was cut short before its listing reached the look-back
    /// floor: the ids it did not list are not accounted for, so the next run looks back again
    /// from this window start instead of trusting `max_pipeline_id` and `watermark`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lookback_from: Option<DateTime<Utc>>,
    /// The run time (`now`) of the run that wrote it.
    pub updated_at: Option<DateTime<Utc>>,
    /// Bumped on every save; saves are conditional on it.
    pub revision: u64,
}

/// What the monitor remembers of one managed blueprint's schedule: which `cronConfig` it
/// watches (24 bits of its [`stable_hash`](crate::cron::stable_hash): a change of schedule
/// restarts the watch) and the latest sign of a pipeline of the blueprint — created, ended, or
/// seen unfinished by a run — to the minute. A scheduled run due at or before `last_activity`
/// is accounted for (scheduled runs fall on whole minutes, so the minute is exact enough).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScheduleWatch {
    pub blueprint_id: u64,
    pub cron_hash: u32,
    pub last_activity: DateTime<Utc>,
}

/// `Vec<ScheduleWatch>` as one string: per entry, ascending by blueprint id,
/// `<id minus the previous entry's id>:<hash, 6 hex digits>:<Unix minutes>`, space separated —
/// about 19 bytes an entry, so ten thousand managed blueprints take ~190 KB of the cursor item's
/// 400 KB.
mod schedule_watches {
    use super::ScheduleWatch;
    use chrono::DateTime;
    use serde::{de::Error, Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(
        watches: &[ScheduleWatch],
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        let mut sorted = watches.to_vec();
        sorted.sort_by_key(|w| w.blueprint_id);
        let mut previous = 0;
        let text: Vec<String> = sorted
            .iter()
            .map(|w| {
                let delta = w.blueprint_id - previous;
                previous = w.blueprint_id;
                format!(
                    "{delta}:{:06x}:{}",
                    w.cron_hash & 0xff_ffff,
                    w.last_activity.timestamp().div_euclid(60)
                )
            })
            .collect();
        serializer.serialize_str(&text.join(" "))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Vec<ScheduleWatch>, D::Error> {
        let joined = String::deserialize(deserializer)?;
        let mut id = 0u64;
        joined
            .split_ascii_whitespace()
            .map(|entry| {
                let bad = || D::Error::custom(format!("malformed schedule entry {entry:?}"));
                let mut parts = entry.split(':');
                let (Some(delta), Some(hash), Some(minutes), None) =
                    (parts.next(), parts.next(), parts.next(), parts.next())
                else {
                    return Err(bad());
                };
                id = delta
                    .parse::<u64>()
                    .ok()
                    .and_then(|d| id.checked_add(d))
                    .ok_or_else(bad)?;
                Ok(ScheduleWatch {
                    blueprint_id: id,
                    cron_hash: u32::from_str_radix(hash, 16).map_err(|_| bad())?,
                    last_activity: minutes
                        .parse::<i64>()
                        .ok()
                        .and_then(|m| DateTime::from_timestamp(m.checked_mul(60)?, 0))
                        .ok_or_else(bad)?,
                })
            })
            .collect()
    }
}

/// A cancel sent to a stuck pipeline, checked by the next run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StuckCancel {
    pub pipeline_id: u64,
    pub project: String,
    /// The run time of the first request: a pipeline that ended at or after it since stopped.
    pub requested_at: DateTime<Utc>,
}

/// A project's latest recorded failure, while it is the project's latest finished pipeline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OpenFailure {
    pub pipeline_id: u64,
    /// When that failure ended (its key's time): a different end means it ran again.
    pub ended_at: DateTime<Utc>,
    pub project: String,
}

/// A cached blueprint → project name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedBlueprint {
    /// Empty: the blueprint has no project (deleted).
    pub project_name: String,
    pub resolved_at: DateTime<Utc>,
}

/// A blueprint that answered 404 and since when.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MissingBlueprint {
    pub blueprint_id: u64,
    pub since: DateTime<Utc>,
}
