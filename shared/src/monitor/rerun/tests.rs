//! Which failures a run re-runs, as a table.

use chrono::TimeZone;

use super::*;

fn at(minute: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 28, 11, minute, 0).unwrap()
}

fn pipeline(id: u64, blueprint_id: u64, status: &str, finished: Option<u32>) -> Pipeline {
    Pipeline {
        id,
        blueprint_id,
        status: status.into(),
        finished_at: finished.map(at),
        ..Pipeline::default()
    }
}

#[test]
fn only_a_projects_newest_failure_recorded_now_with_nothing_pending_is_rerun() {
    struct Case {
        what: &'static str,
        /// api's facts (blueprint 1), in the plan's order.
        facts: Vec<Pipeline>,
        /// Ids among the facts whose failure this run recorded.
        recorded: Vec<u64>,
        unfinished: Vec<Pipeline>,
        rerun: Vec<u64>,
    }
    let failed = |id, minute| pipeline(id, 1, "TASK_FAILED", Some(minute));
    let cases = [
        Case {
            what: "a failure recorded by this run",
            facts: vec![failed(5, 10)],
            recorded: vec![5],
            unfinished: vec![],
            rerun: vec![5],
        },
        Case {
            what: "already recorded by an earlier or overlapping run",
            facts: vec![failed(5, 10)],
            recorded: vec![],
            unfinished: vec![],
            rerun: vec![],
        },
        Case {
            what: "the newest fact is a success",
            facts: vec![failed(5, 10), pipeline(6, 1, "TASK_COMPLETED", Some(12))],
            recorded: vec![5],
            unfinished: vec![],
            rerun: vec![],
        },
        Case {
            what: "only the newest of several failures",
            facts: vec![failed(5, 10), failed(6, 12)],
            recorded: vec![5, 6],
            unfinished: vec![],
            rerun: vec![6],
        },
        Case {
            what: "something of the blueprint is pending",
            facts: vec![failed(5, 10)],
            recorded: vec![5],
            unfinished: vec![pipeline(7, 1, "TASK_CREATED", None)],
            rerun: vec![],
        },
        Case {
            what: "another blueprint's pending pipeline does not matter",
            facts: vec![failed(5, 10)],
            recorded: vec![5],
            unfinished: vec![pipeline(8, 2, "TASK_RUNNING", None)],
            rerun: vec![5],
        },
    ];
    for case in cases {
        let name = "api".to_string();
        let mut by_project: BTreeMap<String, Vec<&Pipeline>> = BTreeMap::new();
        by_project.insert(name.clone(), case.facts.iter().collect());
        let new_events: Vec<FailureEvent> = case
            .facts
            .iter()
            .filter(|p| case.recorded.contains(&p.id))
            .map(|p| super::super::project::failure_event(&name, p, p.finished_at.unwrap()))
            .collect();
        let unfinished: BTreeMap<u64, Pipeline> =
            case.unfinished.into_iter().map(|p| (p.id, p)).collect();
        let got: Vec<u64> = rerun_candidates(&by_project, &new_events, &[], &unfinished)
            .iter()
            .map(|c| c.pipeline.id)
            .collect();
        assert_eq!(got, case.rerun, "{}", case.what);
    }
}
