//! `BLUEPRINT_CRON=spread:<HH:MM>-<HH:MM>`: each managed blueprint runs once a day at its own
//! minute inside a UTC window, so hundreds of blueprints do not all ask DevLake for a pipeline at
//! the same second (each creation takes a 2-second table lock; fires that wait longer are lost).
//!
//! The minute comes from a hash of the project name only: the same project gets the same
//! `cronConfig` on every run, every platform and every Rust version (so a repeated run sends no
//! `PATCH`), and a project keeps its minute when other projects come and go. The hash is 64-bit
//! FNV-1a over the name's UTF-8 bytes followed by MurmurHash3's `fmix64` finaliser (FNV-1a alone
//! leaves names that differ in their last character in neighbouring minutes); it is written out
//! here rather than taken from `std`, whose `DefaultHasher` may change between releases.
//!
//! The window is half-open, `[start, end)`, in whole minutes of the UTC day: `01:00-05:00` gives
//! 01:00 to 04:59. An end earlier than the start crosses midnight: `23:00-01:00` gives 23:00 to
//! 00:59 (the fire of a project placed after midnight belongs to the next UTC day). Equal ends
//! are refused: a window of nothing, or of the whole day, is too easily a typo.

use crate::cron::stable_hash;

/// A daily window of UTC minutes, `[start, end)` modulo one day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpreadWindow {
    /// Minute of the UTC day the window starts at (0–1439).
    start: u16,
    /// Minutes in the window (1–1439).
    len: u16,
}

const DAY_MINUTES: u16 = 24 * 60;

impl SpreadWindow {
    /// Parses `<HH:MM>-<HH:MM>` (the part after `spread:`). The error is one line.
    pub fn parse(raw: &str) -> Result<Self, String> {
        let expected = || {
            format!(
                "{raw:?}: expected spread:<HH:MM>-<HH:MM>, a UTC window such as spread:01:00-05:00"
            )
        };
        let (a, b) = raw.trim().split_once('-').ok_or_else(expected)?;
        let start = minute_of_day(a.trim()).ok_or_else(expected)?;
        let end = minute_of_day(b.trim()).ok_or_else(expected)?;
        if start == end {
            return Err(format!(
                "{raw:?}: the window is empty (start and end are the same minute)"
            ));
        }
        Ok(SpreadWindow {
            start,
            len: (end + DAY_MINUTES - start) % DAY_MINUTES,
        })
    }

    /// Minutes in the window.
    pub fn len(&self) -> u16 {
        self.len
    }

    /// Never true: a window has at least one minute.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The project's minute of the UTC day (0–1439), inside the window.
    pub fn minute_for(&self, project: &str) -> u16 {
        let offset = (stable_hash(project) % u64::from(self.len)) as u16;
        (self.start + offset) % DAY_MINUTES
    }

    /// The project's `cronConfig`: `M H * * *`, which robfig/cron's `ParseStandard` accepts.
    pub fn cron_for(&self, project: &str) -> String {
        let minute = self.minute_for(project);
        format!("{} {} * * *", minute % 60, minute / 60)
    }
}

impl std::fmt::Display for SpreadWindow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let end = (self.start + self.len) % DAY_MINUTES;
        write!(
            f,
            "spread:{:02}:{:02}-{:02}:{:02}",
            self.start / 60,
            self.start % 60,
            end / 60,
            end % 60
        )
    }
}

/// `HH:MM`, 00:00–23:59, two digits each.
fn minute_of_day(raw: &str) -> Option<u16> {
    let (h, m) = raw.split_once(':')?;
    if h.len() != 2 || m.len() != 2 || !(h.bytes().chain(m.bytes())).all(|b| b.is_ascii_digit()) {
        return None;
    }
    let (h, m): (u16, u16) = (h.parse().ok()?, m.parse().ok()?);
    (h < 24 && m < 60).then_some(h * 60 + m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_project_keeps_its_minute() {
        // Pinned: a different minute for the same name would PATCH every blueprint once.
        let w = SpreadWindow::parse("01:00-05:00").unwrap();
        assert_eq!(w.cron_for("github/apache/incubator-devlake"), PINNED);
        assert_eq!(
            w.cron_for("github/apache/incubator-devlake"),
            w.cron_for("github/apache/incubator-devlake")
        );
    }

    const PINNED: &str = "39 2 * * *";

    #[test]
    fn windows_and_their_minutes() {
        let w = SpreadWindow::parse("01:00-05:00").unwrap();
        assert_eq!(w.len(), 240);
        assert_eq!(w.to_string(), "spread:01:00-05:00");
        for i in 0..500 {
            let m = w.minute_for(&format!("github/org/repo-{i}"));
            assert!((60..300).contains(&m), "{m}");
        }
        // Across midnight: 23:00 to 00:59.
        let night = SpreadWindow::parse("23:00-01:00").unwrap();
        assert_eq!(night.len(), 120);
        let mut before = 0;
        for i in 0..500 {
            let m = night.minute_for(&format!("gitlab/group/p{i}"));
            assert!(!(60..23 * 60).contains(&m), "{m}");
            before += usize::from(m >= 23 * 60);
        }
        assert!(
            (150..350).contains(&before),
            "{before} of 500 before midnight"
        );
        // One minute wide: everyone at 04:59.
        let one = SpreadWindow::parse("04:59-05:00").unwrap();
        assert_eq!(one.cron_for("anything"), "59 4 * * *");
        assert_eq!(
            SpreadWindow::parse("00:00-23:59").unwrap().len(),
            DAY_MINUTES - 1
        );
    }

    #[test]
    fn malformed_and_empty_windows_are_refused() {
        for bad in [
            "",
            "01:00",
            "1:00-05:00",
            "01:00-5:00",
            "24:00-01:00",
            "01:60-02:00",
            "01:00-01:00",
            "01:00-05:00-06:00",
            "aa:bb-cc:dd",
            "01:00 05:00",
            "+1:00-05:00",
        ] {
            let e = SpreadWindow::parse(bad).unwrap_err();
            assert!(!e.contains('\n'), "{e}");
        }
        assert!(SpreadWindow::parse(" 01:00 - 05:00 ").is_ok());
    }
}
