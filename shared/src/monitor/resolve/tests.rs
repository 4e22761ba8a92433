//! The pure steps of the resolve phase, as tables: which project each fact is written under, and
//! which stuck flags go up, stay or come down.

use super::*;

fn pipeline(id: u64, blueprint_id: u64) -> Pipeline {
    Pipeline {
        id,
        blueprint_id,
        status: "TASK_FAILED".into(),
        ..Pipeline::default()
    }
}

/// Blueprint 1 → `api`, 2 → `web`, 3 → no project (deleted, or a project-less name); 4 is not
/// resolved this run.
fn names() -> HashMap<u64, String> {
    [(1, "api"), (2, "web"), (3, "")]
        .into_iter()
        .map(|(id, n)| (id, n.to_string()))
        .collect()
}

fn map(entries: &[(&str, u64)]) -> BTreeMap<String, u64> {
    entries.iter().map(|(n, id)| (n.to_string(), *id)).collect()
}

#[test]
fn facts_are_grouped_by_project_skipped_or_watched() {
    struct Case {
        what: &'static str,
        /// (pipeline id, blueprint id), in the plan's order.
        facts: Vec<(u64, u64)>,
        by_project: Vec<(&'static str, Vec<u64>)>,
        skipped: u64,
        unresolved: Vec<u64>,
    }
    let cases = [
        Case {
            what: "nothing new",
            facts: vec![],
            by_project: vec![],
            skipped: 0,
            unresolved: vec![],
        },
        Case {
            what: "two projects, order kept within each",
            facts: vec![(12, 2), (10, 1), (11, 1), (13, 2)],
            by_project: vec![("api", vec![10, 11]), ("web", vec![12, 13])],
            skipped: 0,
            unresolved: vec![],
        },
        Case {
            what: "ad-hoc pipelines have no project",
            facts: vec![(20, 0), (21, 1)],
            by_project: vec![("api", vec![21])],
            skipped: 1,
            unresolved: vec![],
        },
        Case {
            what: "a blueprint without a project name is skipped",
            facts: vec![(30, 3), (31, 3)],
            by_project: vec![],
            skipped: 2,
            unresolved: vec![],
        },
        Case {
            what: "an unresolved blueprint's facts wait for the next run",
            facts: vec![(40, 4), (41, 1), (42, 4)],
            by_project: vec![("api", vec![41])],
            skipped: 0,
            unresolved: vec![40, 42],
        },
    ];
    let names = names();
    for case in cases {
        let facts: Vec<Pipeline> = case
            .facts
            .iter()
            .map(|(id, bp)| pipeline(*id, *bp))
            .collect();
        let grouped = group_by_project(&facts, &names);
        let by_project: Vec<(&str, Vec<u64>)> = grouped
            .by_project
            .iter()
            .map(|(n, ps)| (n.as_str(), ps.iter().map(|p| p.id).collect()))
            .collect();
        assert_eq!(by_project, case.by_project, "{}", case.what);
        assert_eq!(grouped.skipped, case.skipped, "{}", case.what);
        assert_eq!(grouped.unresolved, case.unresolved, "{}", case.what);
    }
}

#[test]
fn stuck_flags_go_up_stay_and_come_down() {
    struct Case {
        what: &'static str,
        /// (pipeline id, blueprint id) of the pipelines stuck now.
        stuck: Vec<(u64, u64)>,
        before: Vec<(&'static str, u64)>,
        after: Vec<(&'static str, u64)>,
        /// Projects whose flag changes (the commit phase writes them).
        changed: Vec<&'static str>,
    }
    let cases = [
        Case {
            what: "nothing stuck, nothing flagged",
            stuck: vec![],
            before: vec![],
            after: vec![],
            changed: vec![],
        },
        Case {
            what: "a new stuck pipeline raises its project's flag",
            stuck: vec![(7, 1)],
            before: vec![],
            after: vec![("api", 7)],
            changed: vec!["api"],
        },
        Case {
            what: "still stuck: the flag stays, nothing to write",
            stuck: vec![(7, 1)],
            before: vec![("api", 7)],
            after: vec![("api", 7)],
            changed: vec![],
        },
        Case {
            what: "no longer stuck: the flag comes down",
            stuck: vec![],
            before: vec![("api", 7)],
            after: vec![],
            changed: vec!["api"],
        },
        Case {
            what: "two stuck pipelines of one project: the lowest id is kept",
            stuck: vec![(9, 1), (8, 1)],
            before: vec![],
            after: vec![("api", 8)],
            changed: vec!["api"],
        },
        Case {
            what: "a project-less blueprint raises no flag",
            stuck: vec![(5, 3)],
            before: vec![],
            after: vec![],
            changed: vec![],
        },
        Case {
            what: "an unresolved name keeps the flag that pipeline raised",
            stuck: vec![(6, 4)],
            before: vec![("legacy", 6), ("web", 2)],
            after: vec![("legacy", 6)],
            changed: vec!["web"],
        },
        Case {
            what: "an unresolved pipeline that raised no flag raises none",
            stuck: vec![(6, 4)],
            before: vec![],
            after: vec![],
            changed: vec![],
        },
    ];
    let names = names();
    let no_facts = BTreeMap::new();
    for case in cases {
        let stuck: Vec<Pipeline> = case
            .stuck
            .iter()
            .map(|(id, bp)| pipeline(*id, *bp))
            .collect();
        let before = map(&case.before);
        let after = stuck_flags(&stuck, &names, &before);
        assert_eq!(after, map(&case.after), "{}", case.what);
        let flags = |stuck: BTreeMap<String, u64>| FlagSets {
            stuck,
            ..FlagSets::default()
        };
        let changed: Vec<String> = touched_projects(&no_facts, &flags(before), &flags(after))
            .into_iter()
            .collect();
        assert_eq!(changed, case.changed, "{}", case.what);
    }
}

#[test]
fn the_projects_written_are_those_with_facts_or_a_changed_flag() {
    let facts = [pipeline(1, 1)];
    let mut by_project: BTreeMap<String, Vec<&Pipeline>> = BTreeMap::new();
    by_project.insert("api".into(), vec![&facts[0]]);
    let before = FlagSets {
        stuck: map(&[("web", 2), ("old", 4)]),
        schedule_missed: ["nightly".to_string()].into(),
        ..FlagSets::default()
    };
    let now = FlagSets {
        stuck: map(&[("api", 1), ("jobs", 3), ("web", 2)]),
        schedule_missed: ["nightly".to_string(), "weekly".to_string()].into(),
        cancel_failed: map(&[("web", 2)]),
    };
    let touched = touched_projects(&by_project, &before, &now);
    assert_eq!(
        touched.into_iter().collect::<Vec<_>>(),
        ["api", "jobs", "old", "web", "weekly"]
    );
}
