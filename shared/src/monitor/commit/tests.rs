//! The pure steps of the commit phase: how a project's facts are cut into transactions, and how
//! the cursor's open failures follow what was committed.

use chrono::TimeZone;

use super::*;

fn at(minute: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 28, 11, minute, 0).unwrap()
}

fn pipeline(id: u64, status: &str, finished: Option<u32>) -> Pipeline {
    Pipeline {
        id,
        blueprint_id: 1,
        status: status.into(),
        finished_at: finished.map(at),
        ..Pipeline::default()
    }
}

fn counted(s: &str) -> bool {
    s == "TASK_FAILED"
}

#[test]
fn facts_are_cut_so_no_transaction_holds_too_many_failures() {
    /// Statuses in order, the largest number of failures per piece, the ids of each piece.
    type Case = (&'static [&'static str], usize, &'static [&'static [u64]]);
    let cases: [Case; 5] = [
        (&[], 2, &[&[]]),
        (&["TASK_FAILED", "TASK_FAILED"], 2, &[&[0, 1]]),
        (
            &["TASK_FAILED", "TASK_FAILED", "TASK_FAILED"],
            2,
            &[&[0, 1], &[2]],
        ),
        // Successes ride along; a piece ends just before the failure that would overflow it.
        (
            &[
                "TASK_FAILED",
                "TASK_COMPLETED",
                "TASK_FAILED",
                "TASK_COMPLETED",
                "TASK_FAILED",
            ],
            2,
            &[&[0, 1, 2, 3], &[4]],
        ),
        (
            &["TASK_COMPLETED", "TASK_COMPLETED", "TASK_COMPLETED"],
            1,
            &[&[0, 1, 2]],
        ),
    ];
    for (statuses, max, pieces) in cases {
        let facts: Vec<Pipeline> = statuses
            .iter()
            .enumerate()
            .map(|(i, s)| pipeline(i as u64, s, Some(i as u32)))
            .collect();
        let refs: Vec<&Pipeline> = facts.iter().collect();
        let got: Vec<Vec<u64>> = transaction_chunks(&refs, max, counted)
            .into_iter()
            .map(|c| c.iter().map(|p| p.id).collect())
            .collect();
        let want: Vec<Vec<u64>> = pieces.iter().map(|p| p.to_vec()).collect();
        assert_eq!(got, want, "{statuses:?} by {max}");
    }
}

#[test]
fn open_failures_follow_the_projects_latest_end() {
    let open = |id: u64, minute: u32, project: &str| OpenFailure {
        pipeline_id: id,
        ended_at: at(minute),
        project: project.to_string(),
    };
    let state = |minute: u32| ProjectState {
        last_finished_at: Some(at(minute)),
        ..ProjectState::default()
    };
    struct Case {
        what: &'static str,
        before: Vec<OpenFailure>,
        facts: Vec<Pipeline>,
        /// The minute of the project's latest end after the commit.
        latest: u32,
        after: Vec<OpenFailure>,
    }
    let cases = [
        Case {
            what: "a new failure becomes the project's open failure",
            before: vec![open(1, 1, "web")],
            facts: vec![pipeline(5, "TASK_FAILED", Some(10))],
            latest: 10,
            after: vec![open(1, 1, "web"), open(5, 10, "api")],
        },
        Case {
            what: "a later failure replaces the earlier one",
            before: vec![open(4, 2, "api")],
            facts: vec![pipeline(6, "TASK_FAILED", Some(12))],
            latest: 12,
            after: vec![open(6, 12, "api")],
        },
        Case {
            what: "a success closes it",
            before: vec![open(4, 2, "api")],
            facts: vec![pipeline(7, "TASK_COMPLETED", Some(15))],
            latest: 15,
            after: vec![],
        },
        Case {
            what: "the open failure re-run and failing again is the same pipeline, a new end",
            before: vec![open(4, 2, "api")],
            facts: vec![pipeline(4, "TASK_FAILED", Some(20))],
            latest: 20,
            after: vec![open(4, 20, "api")],
        },
        Case {
            what: "facts older than the project's latest end change nothing",
            before: vec![open(4, 30, "api")],
            facts: vec![pipeline(3, "TASK_COMPLETED", Some(5))],
            latest: 30,
            after: vec![open(4, 30, "api")],
        },
    ];
    for case in cases {
        let mut open_failures = case.before;
        let facts: Vec<&Pipeline> = case.facts.iter().collect();
        track_open_failure(
            &mut open_failures,
            "api",
            &facts,
            &state(case.latest),
            counted,
        );
        assert_eq!(open_failures, case.after, "{}", case.what);
    }
}
