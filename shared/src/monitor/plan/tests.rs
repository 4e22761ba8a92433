//! The plan's decisions from listings and stored state, without DevLake or a store.

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
        recent_covers_from: 0,
    };
    assert!(lookups_needed(Basis::Cursor(&c), &obs).ids.is_empty());
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
        recent_covers_from: 0,
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
        recent_covers_from: 0,
    };
    assert_eq!(lookups_needed(Basis::Cursor(&c), &obs).ids, vec![5, 60, 70]);
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

fn with_updated(mut p: Pipeline, updated: DateTime<Utc>) -> Pipeline {
    p.updated_at = Some(updated);
    p
}

#[test]
fn an_end_without_a_new_finished_at_is_keyed_by_updated_at() {
    // Restart with RESUME_PIPELINES=false during a first run: no finishedAt at all.
    let first = with_updated(p(1, status::FAILED, None), t(10, 2));
    assert_eq!(ended_at(&first), Some(t(10, 2)));
    // During a re-run: the previous run's finishedAt is kept.
    let rerun = with_updated(p(2, status::FAILED, Some(t(8, 0))), t(10, 3));
    assert_eq!(ended_at(&rerun), Some(t(10, 3)));
    // A normal end: finishedAt, even if updatedAt is a few milliseconds later.
    let normal = with_updated(
        p(3, status::FAILED, Some(t(9, 0))),
        t(9, 0) + chrono::Duration::milliseconds(40),
    );
    assert_eq!(ended_at(&normal), Some(t(9, 0)));
    // A cancelled queued pipeline has no timestamps but updatedAt.
    let mut cancelled = with_updated(p(4, status::CANCELLED, None), t(10, 1));
    cancelled.began_at = None;
    assert_eq!(ended_at(&cancelled), Some(t(10, 1)));
    // Not finished: no end, whatever the timestamps say.
    assert_eq!(ended_at(&p(5, status::RESUME, Some(t(8, 0)))), None);

    let c = cursor(10, t(10, 0), &[1, 2]);
    let obs = Observations {
        listed: vec![first.clone(), rerun.clone(), cancelled.clone()],
        listed_complete: true,
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
    // Facts (not "still settling"), each with the time its key is made of; none watched.
    assert_eq!(ids(&plan), vec![4, 1, 2]);
    assert_eq!(plan.facts[1].finished_at, Some(t(10, 2)));
    assert_eq!(plan.facts[2].finished_at, Some(t(10, 3)));
    assert!(plan.cursor.watch.is_empty());
}

fn open(id: u64, ended: DateTime<Utc>) -> OpenFailure {
    OpenFailure {
        pipeline_id: id,
        ended_at: ended,
        project: format!("p{id}"),
    }
}

#[test]
fn an_open_failure_that_ran_again_is_a_fact_whenever_it_ended() {
    let mut c = cursor(100, t(10, 0), &[]);
    c.open_failures = vec![open(7, t(1, 0)), open(8, t(1, 0)), open(9, t(2, 0))];
    // 7 failed again (ended before the watermark: it ran unseen between two runs), 8 is
    // unchanged, 9 is not in the failure listing any more.
    let obs = Observations {
        listed: vec![p(100, status::COMPLETED, Some(t(9, 0)))],
        listed_complete: true,
        recent: vec![
            p(8, status::FAILED, Some(t(1, 0))),
            p(7, status::FAILED, Some(t(9, 30))),
        ],
        recent_covers_from: 0,
        ..Default::default()
    };
    assert_eq!(lookups_needed(Basis::Cursor(&c), &obs).ids, vec![9]);
    let lookups = Lookups {
        found: vec![p(9, status::COMPLETED, Some(t(9, 40)))],
        ..Default::default()
    };
    let plan = build(
        Basis::Cursor(&c),
        Some(&c),
        &obs,
        &lookups,
        t(10, 5),
        chrono::Duration::hours(12),
    );
    assert_eq!(ids(&plan), vec![7, 9]);
}

#[test]
fn open_failures_below_the_listings_are_looked_up_a_few_per_run() {
    let mut c = cursor(1000, t(10, 0), &[]);
    c.open_failures = (1..=12).map(|i| open(i, t(1, 0))).collect();
    let obs = Observations {
        listed_complete: true,
        recent_covers_from: 500,
        ..Default::default()
    };
    let first = lookups_needed(Basis::Cursor(&c), &obs);
    assert_eq!(first.ids, vec![1, 2, 3, 4, 5]);
    c.recheck_after = first.recheck_after;
    let second = lookups_needed(Basis::Cursor(&c), &obs);
    assert_eq!(second.ids, vec![6, 7, 8, 9, 10]);
    c.recheck_after = second.recheck_after;
    // Wraps around.
    assert_eq!(
        lookups_needed(Basis::Cursor(&c), &obs).ids,
        vec![1, 2, 3, 11, 12]
    );
}

#[test]
fn a_rerun_counts_its_running_time_from_its_own_start() {
    // A re-run of a pipeline that first ran two days ago and failed at 00:30: DevLake's runner
    // set a new beganAt (09:30) when it started the re-run, later than the kept finishedAt.
    let mut rerun = p(5, status::RUNNING, Some(t(0, 30)));
    rerun.began_at = Some(t(9, 30));
    // A pipeline resumed after a restart: its beganAt is its resumed start (08:00).
    let mut resumed = p(6, status::RESUME, None);
    resumed.began_at = Some(t(8, 0));
    let obs = Observations {
        pending: vec![rerun, resumed],
        listed_complete: true,
        ..Default::default()
    };
    let c = cursor(10, t(10, 0), &[5, 6]);
    let stuck_after = chrono::Duration::hours(12);
    let at = |now| {
        build(
            Basis::Cursor(&c),
            Some(&c),
            &obs,
            &Lookups::default(),
            now,
            stuck_after,
        )
        .stuck
        .iter()
        .map(|p| p.id)
        .collect::<Vec<_>>()
    };
    assert!(at(t(10, 0)).is_empty(), "neither has run 12 hours");
    assert_eq!(at(t(20, 1)), vec![6], "the resumed one started earlier");
    assert_eq!(at(t(21, 31)), vec![5, 6]);
}
