//! The per-project flags a run decides besides the pipelines it folds: stuck, scheduled run
//! missed, stuck cancel that did not take. The cursor keeps each set, so a run writes a project
//! only when one of its flags changes (a steady state costs no write).

use std::collections::{BTreeMap, BTreeSet};

use crate::store::MonitorCursor;

/// One project's flags, as its state should hold them after this run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Flags {
    pub stuck: bool,
    pub schedule_missed: bool,
    pub stuck_cancel_failed: bool,
}

/// Every flagged project, by flag.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct FlagSets {
    /// Project → the pipeline that made it stuck.
    pub stuck: BTreeMap<String, u64>,
    pub schedule_missed: BTreeSet<String>,
    /// Project → the stuck pipeline a cancel did not stop.
    pub cancel_failed: BTreeMap<String, u64>,
}

impl FlagSets {
    /// The sets the loaded cursor holds (none on a first run).
    pub fn from_cursor(cursor: Option<&MonitorCursor>) -> FlagSets {
        cursor.map_or_else(FlagSets::default, |c| FlagSets {
            stuck: c.stuck.clone(),
            schedule_missed: c.schedule_missed.clone(),
            cancel_failed: c.stuck_cancel_failed.clone(),
        })
    }

    pub fn of(&self, project: &str) -> Flags {
        Flags {
            stuck: self.stuck.contains_key(project),
            schedule_missed: self.schedule_missed.contains(project),
            stuck_cancel_failed: self.cancel_failed.contains_key(project),
        }
    }

    fn projects(&self) -> BTreeSet<&String> {
        self.stuck
            .keys()
            .chain(self.schedule_missed.iter())
            .chain(self.cancel_failed.keys())
            .collect()
    }

    /// Projects with some flag different in `other`.
    pub fn changed(&self, other: &FlagSets) -> BTreeSet<String> {
        let mut all = self.projects();
        all.extend(other.projects());
        all.into_iter()
            .filter(|p| self.of(p) != other.of(p))
            .cloned()
            .collect()
    }

    /// Puts `project`'s flags back as `before` has them (its write failed: the stored state
    /// still has those).
    pub fn restore(&mut self, project: &str, before: &FlagSets) {
        self.remove(project);
        if let Some(id) = before.stuck.get(project) {
            self.stuck.insert(project.to_string(), *id);
        }
        if before.schedule_missed.contains(project) {
            self.schedule_missed.insert(project.to_string());
        }
        if let Some(id) = before.cancel_failed.get(project) {
            self.cancel_failed.insert(project.to_string(), *id);
        }
    }

    pub fn remove(&mut self, project: &str) {
        self.stuck.remove(project);
        self.schedule_missed.remove(project);
        self.cancel_failed.remove(project);
    }

    /// Writes the sets into the cursor the run saves.
    pub fn store_in(self, cursor: &mut MonitorCursor) {
        cursor.stuck = self.stuck;
        cursor.schedule_missed = self.schedule_missed;
        cursor.stuck_cancel_failed = self.cancel_failed;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_restores_and_removals() {
        let before = FlagSets {
            stuck: BTreeMap::from([("a".into(), 1)]),
            schedule_missed: BTreeSet::from(["b".into()]),
            cancel_failed: BTreeMap::new(),
        };
        let mut after = FlagSets {
            stuck: BTreeMap::from([("a".into(), 1)]),
            schedule_missed: BTreeSet::new(),
            cancel_failed: BTreeMap::from([("c".into(), 3)]),
        };
        assert_eq!(
            before.changed(&after),
            BTreeSet::from(["b".to_string(), "c".to_string()])
        );
        assert_eq!(
            after.of("c"),
            Flags {
                stuck_cancel_failed: true,
                ..Flags::default()
            }
        );
        after.restore("b", &before);
        after.restore("c", &before);
        assert_eq!(after, before);
        after.remove("a");
        assert_eq!(after.of("a"), Flags::default());
    }
}
