//! Calendar rules that depend on the operator's time zone.

use chrono::{
    DateTime, Datelike, Duration, LocalResult, NaiveDate, SecondsFormat, TimeZone, Utc, Weekday,
};
use chrono_tz::Tz;

/// 00:00 local time of the latest Saturday strictly before `now`'s local date, in UTC.
///
/// A run on Sat 2026-11-28 18:00 in Asia/Ho_Chi_Minh gives 2026-11-21 00:00 ICT
/// (`2026-11-20T17:00:00Z`); a run on Sun 2026-11-29 gives `2026-11-27T17:00:00Z`.
pub fn previous_saturday(now: DateTime<Utc>, tz: Tz) -> DateTime<Utc> {
    let today = now.with_timezone(&tz).date_naive();
    // Days back to the last Saturday strictly before today: Sat → 7, Sun → 1, Mon → 2, …
    let back = match today.weekday() {
        Weekday::Sat => 7,
        other => (other.num_days_from_sunday() + 1) as i64,
    };
    local_midnight(today - Duration::days(back), tz)
}

/// Where a managed blueprint's `timeAfter` is rolled to on each run (`TIME_AFTER_POLICY`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TimeAfterPolicy {
    /// 00:00 local of the Saturday before the run's local date: the original weekly window.
    #[default]
    PreviousSaturday,
    /// 00:00 local, N days before the run's local date: a window that moves every day.
    Rolling(u32),
    /// 00:00 local of one date: every run collects from the same point.
    Fixed(NaiveDate),
}

/// The longest look-back a `rolling:<N>d` policy or a backfill may ask for (ten years): beyond
/// that a value is a typo, and DevLake would collect the whole history of every repository.
pub const MAX_DAYS_BACK: u32 = 3650;

impl TimeAfterPolicy {
    /// Parses `previous-saturday`, `rolling:<N>d` or `fixed:<YYYY-MM-DD>`.
    pub fn parse(raw: &str) -> Result<Self, String> {
        let raw = raw.trim();
        if raw == "previous-saturday" {
            return Ok(TimeAfterPolicy::PreviousSaturday);
        }
        if let Some(n) = raw.strip_prefix("rolling:") {
            return n
                .strip_suffix('d')
                .and_then(|d| d.parse::<u32>().ok())
                .filter(|d| *d <= MAX_DAYS_BACK)
                .map(TimeAfterPolicy::Rolling)
                .ok_or_else(|| {
                    format!("{raw:?}: expected rolling:<N>d with N a whole number of days from 0 to {MAX_DAYS_BACK}")
                });
        }
        if let Some(d) = raw.strip_prefix("fixed:") {
            return NaiveDate::parse_from_str(d, "%Y-%m-%d")
                .ok()
                .filter(|_| d.len() == 10)
                .map(TimeAfterPolicy::Fixed)
                .ok_or_else(|| format!("{raw:?}: expected fixed:<YYYY-MM-DD>, a calendar date"));
        }
        Err(format!(
            "{raw:?}: expected previous-saturday, rolling:<N>d or fixed:<YYYY-MM-DD>"
        ))
    }

    /// The `timeAfter` a run at `now` sets.
    pub fn time_after(self, now: DateTime<Utc>, tz: Tz) -> DateTime<Utc> {
        match self {
            TimeAfterPolicy::PreviousSaturday => previous_saturday(now, tz),
            TimeAfterPolicy::Rolling(days) => days_before(now, days, tz),
            TimeAfterPolicy::Fixed(date) => local_midnight(date, tz),
        }
    }

    /// The setting as written (`rolling:7d`), for reports.
    pub fn source(self) -> String {
        match self {
            TimeAfterPolicy::PreviousSaturday => "previous-saturday".to_string(),
            TimeAfterPolicy::Rolling(days) => format!("rolling:{days}d"),
            TimeAfterPolicy::Fixed(date) => format!("fixed:{}", date.format("%Y-%m-%d")),
        }
    }
}

/// 00:00 local time `days` days before `now`'s local date, in UTC (a backfill's start, or a
/// rolling window's).
pub fn days_before(now: DateTime<Utc>, days: u32, tz: Tz) -> DateTime<Utc> {
    let today = now.with_timezone(&tz).date_naive();
    local_midnight(today - Duration::days(i64::from(days)), tz)
}

/// The first instant of `date` in `tz`. Where midnight does not exist (a DST jump at 00:00, as in
/// some zones), the day starts at the first valid instant after the gap.
pub fn local_midnight(date: NaiveDate, tz: Tz) -> DateTime<Utc> {
    let mut t = date.and_hms_opt(0, 0, 0).expect("midnight is a valid time");
    loop {
        match tz.from_local_datetime(&t) {
            LocalResult::Single(d) => return d.with_timezone(&Utc),
            LocalResult::Ambiguous(first, _) => return first.with_timezone(&Utc),
            LocalResult::None => t += Duration::minutes(15),
        }
    }
}

/// `YYYY-MM-DD HH:MM:SS` in `tz`: the `time_failed` label format of the original system.
pub fn format_local(t: DateTime<Utc>, tz: Tz) -> String {
    t.with_timezone(&tz).format("%Y-%m-%d %H:%M:%S").to_string()
}

/// How far a payload's time (`scheduledTime`, `now`, a rule event's `time`) may lie from the
/// invocation's clock. A run's `now` decides what it writes (the automation's `timeAfter`, the
/// monitor's look-back, stuck and expiry rules), so a typo such as a wrong year would otherwise
/// roll every blueprint years back or forward, or expire every recent failure at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeBounds {
    /// How far ahead of the clock a time may be: clock skew between the scheduler and the
    /// function, never a deliberate choice.
    pub future: Duration,
    /// How far behind the clock a time may be without `allowPastTime: true`.
    pub past: Duration,
}

/// Tolerance for a payload time ahead of the clock, for both jobs.
pub const FUTURE_TOLERANCE_MINUTES: i64 = 15;

impl TimeBounds {
    /// The automation: a scheduler delivery is at most an hour late (the template's retry
    /// policy), and a missed daily run replayed by hand the next day still fits in two days.
    pub const AUTOMATION: TimeBounds = TimeBounds {
        future: Duration::minutes(FUTURE_TOLERANCE_MINUTES),
        past: Duration::days(2),
    };
    /// The monitor: runs every 5 minutes; a replay older than the default failure window
    /// (7 days) would only expire what later runs have already processed.
    pub const MONITOR: TimeBounds = TimeBounds {
        future: Duration::minutes(FUTURE_TOLERANCE_MINUTES),
        past: Duration::days(7),
    };

    /// Why `t` is refused at `clock`, or `None` when it is within bounds. With `allow_past` only
    /// the future bound applies (a deliberate backfill).
    pub fn problem(
        &self,
        t: DateTime<Utc>,
        clock: DateTime<Utc>,
        allow_past: bool,
    ) -> Option<String> {
        if t > clock + self.future {
            return Some(format!(
                "{} is more than {} minutes after the invocation time {}",
                t.to_rfc3339_opts(SecondsFormat::Secs, true),
                self.future.num_minutes(),
                clock.to_rfc3339_opts(SecondsFormat::Secs, true),
            ));
        }
        if !allow_past && t < clock - self.past {
            return Some(format!(
                "{} is more than {} days before the invocation time {}; \
                 add \"allowPastTime\": true to run at a past time on purpose",
                t.to_rfc3339_opts(SecondsFormat::Secs, true),
                self.past.num_days(),
                clock.to_rfc3339_opts(SecondsFormat::Secs, true),
            ));
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono_tz::America::New_York;
    use chrono_tz::Asia::Ho_Chi_Minh;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn design_examples() {
        // Sat 2026-11-28 18:00 ICT
        assert_eq!(
            previous_saturday(utc("2026-11-28T11:00:00Z"), Ho_Chi_Minh),
            utc("2026-11-20T17:00:00Z")
        );
        // Sun 2026-11-29 18:00 ICT
        assert_eq!(
            previous_saturday(utc("2026-11-29T11:00:00Z"), Ho_Chi_Minh),
            utc("2026-11-27T17:00:00Z")
        );
    }

    #[test]
    fn every_weekday_maps_to_the_saturday_before() {
        // Sun 2026-11-22 .. Sat 2026-11-28 (noon ICT) → Sat 2026-11-21, except Saturday itself → 11-21 too.
        for day in 22..=28 {
            let now = utc(&format!("2026-11-{day:02}T05:00:00Z"));
            assert_eq!(
                previous_saturday(now, Ho_Chi_Minh),
                utc("2026-11-20T17:00:00Z"),
                "day {day}"
            );
        }
        // Sunday 29th moves on to Saturday 28th.
        assert_eq!(
            previous_saturday(utc("2026-11-29T05:00:00Z"), Ho_Chi_Minh),
            utc("2026-11-27T17:00:00Z")
        );
    }

    #[test]
    fn local_midnight_boundary_uses_local_date_not_utc_date() {
        // 2026-11-28T16:59:59Z is Sat 23:59:59 ICT → previous Saturday is the 21st.
        assert_eq!(
            previous_saturday(utc("2026-11-28T16:59:59Z"), Ho_Chi_Minh),
            utc("2026-11-20T17:00:00Z")
        );
        // One second later it is Sun 00:00:00 ICT → the 28th.
        assert_eq!(
            previous_saturday(utc("2026-11-28T17:00:00Z"), Ho_Chi_Minh),
            utc("2026-11-27T17:00:00Z")
        );
    }

    #[test]
    fn dst_transitions_in_new_york() {
        // Spring forward: Sun 2026-03-08 02:00 EST → 03:00 EDT. Run on Mon 03-09: Saturday 03-07 is still EST.
        assert_eq!(
            previous_saturday(utc("2026-03-09T15:00:00Z"), New_York),
            utc("2026-03-07T05:00:00Z")
        );
        // Run the following Sunday 03-15: Saturday 03-14 00:00 EDT = 04:00Z.
        assert_eq!(
            previous_saturday(utc("2026-03-15T15:00:00Z"), New_York),
            utc("2026-03-14T04:00:00Z")
        );
        // Fall back: Sun 2026-11-01 02:00 EDT → 01:00 EST. Run on Sun 11-01: Saturday 10-31 00:00 EDT.
        assert_eq!(
            previous_saturday(utc("2026-11-01T15:00:00Z"), New_York),
            utc("2026-10-31T04:00:00Z")
        );
        // Run on Mon 11-02: Saturday 10-31 still EDT.
        assert_eq!(
            previous_saturday(utc("2026-11-02T15:00:00Z"), New_York),
            utc("2026-10-31T04:00:00Z")
        );
        // Run on Sun 11-08: Saturday 11-07 00:00 EST = 05:00Z.
        assert_eq!(
            previous_saturday(utc("2026-11-08T15:00:00Z"), New_York),
            utc("2026-11-07T05:00:00Z")
        );
    }

    #[test]
    fn time_failed_label_format() {
        assert_eq!(
            format_local(utc("2026-11-20T17:00:05Z"), Ho_Chi_Minh),
            "2026-11-21 00:00:05"
        );
    }

    #[test]
    fn payload_time_bounds() {
        let clock = utc("2026-11-28T11:00:00Z");
        let b = TimeBounds::AUTOMATION;
        assert_eq!(b.problem(clock, clock, false), None);
        assert_eq!(b.problem(utc("2026-11-28T11:15:00Z"), clock, false), None);
        let ahead = b
            .problem(utc("2026-11-28T11:15:01Z"), clock, false)
            .unwrap();
        assert!(ahead.contains("more than 15 minutes after"), "{ahead}");
        // The backfill flag lifts only the past bound.
        assert!(b
            .problem(utc("2027-11-28T11:00:00Z"), clock, true)
            .is_some());
        assert_eq!(b.problem(utc("2026-11-26T11:00:00Z"), clock, false), None);
        let old = b
            .problem(utc("2026-11-26T10:59:59Z"), clock, false)
            .unwrap();
        assert!(
            old.contains("more than 2 days before") && old.contains("allowPastTime"),
            "{old}"
        );
        assert_eq!(b.problem(utc("2016-11-26T10:59:59Z"), clock, true), None);
        let m = TimeBounds::MONITOR;
        assert_eq!(m.problem(utc("2026-11-21T11:00:00Z"), clock, false), None);
        assert!(m
            .problem(utc("2026-11-21T10:59:59Z"), clock, false)
            .is_some());
    }

    #[test]
    fn policies_parse_and_compute_local_midnights() {
        let now = utc("2026-11-28T18:30:00Z"); // Sun 2026-11-29 01:30 ICT
        assert_eq!(
            TimeAfterPolicy::parse("previous-saturday")
                .unwrap()
                .time_after(now, Ho_Chi_Minh),
            utc("2026-11-27T17:00:00Z")
        );
        // Seven days before the local date (the 29th) is the 22nd, 00:00 ICT.
        let rolling = TimeAfterPolicy::parse("rolling:7d").unwrap();
        assert_eq!(rolling, TimeAfterPolicy::Rolling(7));
        assert_eq!(
            rolling.time_after(now, Ho_Chi_Minh),
            utc("2026-11-21T17:00:00Z")
        );
        assert_eq!(rolling.source(), "rolling:7d");
        let fixed = TimeAfterPolicy::parse("fixed:2026-01-15").unwrap();
        assert_eq!(fixed.time_after(now, New_York), utc("2026-01-15T05:00:00Z"));
        assert_eq!(fixed.source(), "fixed:2026-01-15");
        for bad in [
            "",
            "weekly",
            "rolling:7",
            "rolling:-1d",
            "rolling:3651d",
            "rolling:xd",
            "fixed:2026-02-30",
            "fixed:26-1-1",
            "fixed:",
        ] {
            assert!(TimeAfterPolicy::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn days_before_crosses_dst_on_local_dates() {
        // Mon 2026-03-09 10:00 EDT, two days back is Sat 03-07 00:00 EST.
        assert_eq!(
            days_before(utc("2026-03-09T14:00:00Z"), 2, New_York),
            utc("2026-03-07T05:00:00Z")
        );
    }
}
