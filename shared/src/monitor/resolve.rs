//! Phase 3 of a run, *resolve projects*: the project each new fact and stuck pipeline belongs to
//! (blueprint → project name: this run's sweep of `GET /blueprints`, the cache in the table,
//! then DevLake), then pure steps: the facts grouped by project, and each project's flags after
//! this run (stuck, scheduled run missed, stuck cancel not taken). The projects with facts or a
//! changed flag are the ones the commit phase writes.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use chrono::{DateTime, Utc};
use futures::TryStreamExt;

use crate::deadline::Deadline;
use crate::devlake::models::{Blueprint, Pipeline};
use crate::job::Stop;
use crate::store::{MissingBlueprint, MonitorCursor, ScheduleWatch};

use super::config::MonitorSettings;
use super::flags::FlagSets;
use super::observe::fetch_each;
use super::plan::Plan;
use super::remedy::{self, Verified};
use super::run::{deadline_issue, Monitor};
use super::schedule::{self, Scheduled};
use super::summary::RunIssue;
use super::writer::Writer;

/// Above this many unknown blueprints, one paged `GET /blueprints` is cheaper than one
/// `GET /blueprints/{id}` each (first run, rescan).
pub const BLUEPRINT_LIST_THRESHOLD: usize = 20;
/// Rows of `GET /blueprints` each run reads (the sweep for renames and deletions).
pub const SWEEP_PAGE: u32 = 2000;
/// A cached blueprint → project name older than this is asked again.
const BLUEPRINT_CACHE_TTL: chrono::Duration = chrono::Duration::days(1);
/// How long a blueprint answers 404 before its pipelines are dropped as "no project".
const MISSING_GRACE: chrono::Duration = chrono::Duration::hours(1);

/// What this run's blueprint sweep saw.
#[derive(Debug, Default)]
pub(super) struct Sweep {
    /// Blueprint id → project name (`project_of`).
    pub names: HashMap<u64, String>,
    /// The page held every blueprint: one missing from it does not exist.
    pub complete: bool,
    pub next_page: u32,
    /// Its managed, enabled, scheduled blueprints (missed-run checks).
    pub scheduled: Vec<Scheduled>,
}

/// The name a blueprint's pipelines are recorded under: its project's; a legacy blueprint
/// without a project goes by its own name. Empty = not recorded.
pub(super) fn project_of(b: &Blueprint) -> String {
    if !b.project_name.trim().is_empty() {
        b.project_name.clone()
    } else {
        b.name.clone()
    }
}

/// Blueprint → project name of every blueprint the run involves, and the sweep that helped.
pub(super) struct Resolved {
    pub names: HashMap<u64, String>,
    pub sweep: Sweep,
}

impl Monitor<'_> {
    /// Names the project of every blueprint the plan's facts and stuck pipelines belong to,
    /// moving the cursor's sweep page and its blueprints answering 404. `refresh` (rescan)
    /// ignores the cached names.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn resolve_projects(
        &self,
        plan: &mut Plan,
        loaded: Option<&MonitorCursor>,
        refresh: bool,
        writer: Writer,
        now: DateTime<Utc>,
        deadline: Deadline,
        errors: &mut Vec<RunIssue>,
    ) -> Result<Resolved, Stop> {
        let blueprint_ids: BTreeSet<u64> = plan
            .facts
            .iter()
            .chain(plan.stuck.iter())
            .map(|p| p.blueprint_id)
            .filter(|id| *id != 0)
            .collect();
        let sweep = self
            .sweep(loaded.map_or(1, |c| c.sweep_page), errors)
            .await?;
        plan.cursor.sweep_page = sweep.next_page;
        let mut missing = std::mem::take(&mut plan.cursor.missing_blueprints);
        let names = self
            .project_names(
                &blueprint_ids,
                refresh,
                &sweep,
                &mut missing,
                writer,
                now,
                deadline,
                errors,
            )
            .await?;
        plan.cursor.missing_blueprints = missing;
        Ok(Resolved { names, sweep })
    }

    /// One page of `GET /blueprints` ([`SWEEP_PAGE`] rows), rotating over the pages from run to
    /// run: the current project name of every blueprint on it, so a renamed project is recorded
    /// under its new name as soon as the sweep passes its blueprint (every run while there are
    /// at most [`SWEEP_PAGE`] blueprints). An error only skips the sweep for this run.
    pub(super) async fn sweep(&self, page: u32, errors: &mut Vec<RunIssue>) -> Result<Sweep, Stop> {
        let page = page.max(1);
        match self
            .devlake
            .blueprints_page(&Default::default(), page, SWEEP_PAGE)
            .await
        {
            Ok(answer) => {
                let n = answer.blueprints.len() as i64;
                let last =
                    n < SWEEP_PAGE as i64 || i64::from(page) * SWEEP_PAGE as i64 >= answer.count;
                let label = &self.settings.managed_label;
                Ok(Sweep {
                    names: answer
                        .blueprints
                        .iter()
                        .map(|b| (b.id, project_of(b)))
                        .collect(),
                    complete: page == 1 && n >= answer.count,
                    next_page: if last { 1 } else { page + 1 },
                    scheduled: answer
                        .blueprints
                        .iter()
                        .filter_map(|b| Scheduled::of(b, &project_of(b), label))
                        .collect(),
                })
            }
            Err(e) if e.is_fatal() => Err(e.into()),
            Err(e) => {
                tracing::warn!(error = %e, "blueprint sweep skipped this run");
                errors.push(RunIssue {
                    project: None,
                    pipeline_id: None,
                    blueprint_id: None,
                    message: format!("blueprint sweep: {e}"),
                });
                Ok(Sweep {
                    next_page: page,
                    ..Sweep::default()
                })
            }
        }
    }

    /// Blueprint → project names: this run's sweep first, then the table (entries resolved in
    /// the last [`BLUEPRINT_CACHE_TTL`]), then DevLake. A 404 is not taken for "deleted" at
    /// once: the blueprint's pipelines wait (watched) until it is found again, or has answered
    /// 404 for [`MISSING_GRACE`], or a complete sweep lacks it. `refresh` (rescan) ignores the
    /// table.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn project_names(
        &self,
        ids: &BTreeSet<u64>,
        refresh: bool,
        sweep: &Sweep,
        missing: &mut Vec<MissingBlueprint>,
        writer: Writer,
        now: DateTime<Utc>,
        deadline: Deadline,
        errors: &mut Vec<RunIssue>,
    ) -> Result<HashMap<u64, String>, Stop> {
        if ids.is_empty() {
            return Ok(HashMap::new());
        }
        let wanted: Vec<u64> = ids.iter().copied().collect();
        let cached = if refresh {
            HashMap::new()
        } else {
            self.store.blueprint_projects(&wanted).await?
        };
        let mut names: HashMap<u64, String> = HashMap::new();
        let mut fetched: Vec<(u64, String)> = Vec::new();
        for id in &wanted {
            let entry = cached.get(id);
            match sweep.names.get(id) {
                Some(name) => {
                    // Renamed (or never cached, or due): store what the sweep saw.
                    if entry.is_none_or(|c| {
                        c.project_name != *name || c.resolved_at < now - BLUEPRINT_CACHE_TTL / 2
                    }) {
                        fetched.push((*id, name.clone()));
                    }
                    names.insert(*id, name.clone());
                }
                None if sweep.complete => {
                    // Every blueprint is on the page: this one is gone.
                    fetched.push((*id, String::new()));
                    names.insert(*id, String::new());
                }
                None => {
                    if let Some(c) = entry.filter(|c| c.resolved_at >= now - BLUEPRINT_CACHE_TTL) {
                        names.insert(*id, c.project_name.clone());
                    }
                }
            }
        }
        let mut unknown: Vec<u64> = wanted
            .into_iter()
            .filter(|id| !names.contains_key(id))
            .collect();
        if !unknown.is_empty() && unknown.len() > BLUEPRINT_LIST_THRESHOLD {
            let all: Vec<Blueprint> = self
                .devlake
                .blueprints(&Default::default())
                .try_collect()
                .await?;
            tracing::info!(
                blueprints = all.len(),
                unknown = unknown.len(),
                "listed every blueprint to map pipelines to projects"
            );
            let wanted: HashSet<u64> = unknown.iter().copied().collect();
            // Cache every blueprint: the next unknown one is then likely known already.
            fetched.extend(all.iter().map(|b| (b.id, project_of(b))));
            for b in all.iter().filter(|b| wanted.contains(&b.id)) {
                names.insert(b.id, project_of(b));
            }
            unknown.retain(|id| !names.contains_key(id));
        }
        let results = fetch_each(&unknown, deadline, |id| self.devlake.blueprint(id)).await;
        let mut postponed = 0usize;
        for (id, result) in results {
            match result {
                Some(Ok(b)) => {
                    missing.retain(|m| m.blueprint_id != id);
                    fetched.push((id, project_of(&b)));
                    names.insert(id, project_of(&b));
                }
                Some(Err(e)) if e.is_not_found() => {
                    let since = match missing.iter().find(|m| m.blueprint_id == id) {
                        Some(m) => m.since,
                        None => {
                            missing.push(MissingBlueprint {
                                blueprint_id: id,
                                since: now,
                            });
                            now
                        }
                    };
                    if now - since >= MISSING_GRACE {
                        // Deleted: its pipelines have no project any more (recorded as skipped).
                        missing.retain(|m| m.blueprint_id != id);
                        fetched.push((id, String::new()));
                        names.insert(id, String::new());
                    } else {
                        tracing::info!(blueprint_id = id, since = %since, "blueprint not found; its pipelines wait for the next run");
                    }
                }
                Some(Err(e)) if e.is_fatal() => return Err(e.into()),
                Some(Err(e)) => {
                    tracing::warn!(blueprint_id = id, error = %e, "blueprint not resolved; its pipelines are looked at again next run");
                    errors.push(RunIssue {
                        project: None,
                        pipeline_id: None,
                        blueprint_id: Some(id),
                        message: e.to_string(),
                    });
                }
                None => postponed += 1,
            }
        }
        if postponed > 0 {
            errors.push(deadline_issue(format!(
                "{postponed} blueprint(s) not resolved; their pipelines are looked at again next run"
            )));
        }
        writer.cache_blueprint_names(self, &fetched, now).await?;
        Ok(names)
    }
}

/// A run's new facts by project.
#[derive(Debug, Default, PartialEq)]
pub(super) struct Grouped<'p> {
    /// Facts of each project, in the plan's order (`finishedAt`, id).
    pub by_project: BTreeMap<String, Vec<&'p Pipeline>>,
    /// Finished pipelines of no project (ad-hoc, or of a deleted blueprint): not recorded.
    pub skipped: u64,
    /// Pipelines whose blueprint was not resolved this run: watched, looked at again next run.
    pub unresolved: Vec<u64>,
}

/// Groups `facts` by the project `names` gives their blueprint (an empty name: no project).
pub(super) fn group_by_project<'p>(
    facts: &'p [Pipeline],
    names: &HashMap<u64, String>,
) -> Grouped<'p> {
    let mut grouped = Grouped::default();
    for fact in facts {
        match names.get(&fact.blueprint_id).map(String::as_str) {
            _ if fact.blueprint_id == 0 => grouped.skipped += 1,
            Some("") => grouped.skipped += 1,
            Some(name) => grouped
                .by_project
                .entry(name.to_string())
                .or_default()
                .push(fact),
            // Blueprint not resolved this time: look at the pipeline again next run.
            None => grouped.unresolved.push(fact.id),
        }
    }
    if grouped.skipped > 0 {
        tracing::debug!(
            skipped = grouped.skipped,
            "finished pipelines without a project not recorded"
        );
    }
    grouped
}

/// The stuck flags after this run (project → its lowest stuck pipeline id): a project with a
/// pipeline running too long is flagged; one whose name is not resolved this time keeps the
/// flag that pipeline raised before (`before`); every other flag comes down.
pub(super) fn stuck_flags(
    stuck: &[Pipeline],
    names: &HashMap<u64, String>,
    before: &BTreeMap<String, u64>,
) -> BTreeMap<String, u64> {
    let mut now: BTreeMap<String, u64> = BTreeMap::new();
    for p in stuck {
        match names.get(&p.blueprint_id) {
            Some(name) if !name.is_empty() => {
                let entry = now.entry(name.clone()).or_insert(p.id);
                *entry = (*entry).min(p.id);
                tracing::warn!(project = %name, pipeline_id = p.id, began_at = ?p.began_at, "pipeline stuck");
            }
            Some(_) => {}
            None => now.extend(
                before
                    .iter()
                    .filter(|(_, id)| **id == p.id)
                    .map(|(name, id)| (name.clone(), *id)),
            ),
        }
    }
    now
}

/// The projects a run writes: those with new facts, and those with a flag that changes.
pub(super) fn touched_projects(
    by_project: &BTreeMap<String, Vec<&Pipeline>>,
    before: &FlagSets,
    now: &FlagSets,
) -> BTreeSet<String> {
    let mut touched: BTreeSet<String> = by_project.keys().cloned().collect();
    touched.extend(before.changed(now));
    touched
}

/// Each project's flags after this run, and what decided them.
pub(super) struct Decided {
    /// As the loaded cursor has them (what the stored states hold).
    pub before: FlagSets,
    pub now: FlagSets,
    /// The missed-run watches of the managed blueprints, for the cursor.
    pub schedules: Vec<ScheduleWatch>,
    /// The previous run's cancels of stuck pipelines, judged (`STUCK_ACTION`).
    pub verified: Verified,
}

/// What this run saw that the flags are judged on, besides the plan and the names.
pub(super) struct Seen<'a> {
    /// Blueprint → latest sign of a pipeline (for missed scheduled runs).
    pub activity: &'a HashMap<u64, DateTime<Utc>>,
    /// The newest-first listing reached its end (else missed runs are not judged).
    pub listed_complete: bool,
    /// Watched pipelines not looked up this time (their cancels wait).
    pub unknown: &'a HashSet<u64>,
}

/// The flags after this run: stuck ([`stuck_flags`]), scheduled run missed (the sweep's
/// scheduled blueprints against the pipelines seen), and stuck cancel not taken (the previous
/// run's cancels against what still runs, when `STUCK_ACTION` cancels).
pub(super) fn decide_flags(
    settings: &MonitorSettings,
    loaded: Option<&MonitorCursor>,
    plan: &Plan,
    names: &HashMap<u64, String>,
    sweep: &Sweep,
    seen: Seen<'_>,
    now: DateTime<Utc>,
) -> Decided {
    let before = FlagSets::from_cursor(loaded);
    let stuck = stuck_flags(&plan.stuck, names, &before.stuck);
    let tracked = schedule::track(
        loaded.map_or(&[][..], |c| &c.schedules),
        &before.schedule_missed,
        &schedule::Page {
            names: &sweep.names,
            scheduled: &sweep.scheduled,
            complete: sweep.complete,
        },
        seen.activity,
        seen.listed_complete,
        now,
    );
    for m in &tracked.found {
        tracing::warn!(project = %m.project, blueprint_id = m.blueprint_id, due = %m.due, "scheduled run missed: no pipeline of the blueprint since it was due");
    }
    let verified = if settings.stuck_action.cancels() {
        remedy::verify(
            loaded.map_or(&[][..], |c| &c.stuck_cancels),
            &before.cancel_failed,
            &plan.unfinished,
            seen.unknown,
            now,
        )
    } else {
        Verified::default()
    };
    for (project, id) in &verified.failed {
        tracing::error!(project = %project, pipeline_id = id, "the cancel of a stuck pipeline did not take: it is still running");
    }
    let now = FlagSets {
        stuck,
        schedule_missed: tracked.missed,
        cancel_failed: verified.failed.clone(),
    };
    Decided {
        before,
        now,
        schedules: tracked.watches,
        verified,
    }
}

#[cfg(test)]
mod tests;
