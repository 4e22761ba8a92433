//! `cronConfig` the way robfig/cron v3 reads and runs it: `ParseStandard` accepts five fields
//! `min hour dom month dow`, or a descriptor such as `@daily` / `@every 6h`, optionally behind a
//! `TZ=`/`CRON_TZ=` prefix; [`Schedule::next`] is `SpecSchedule.Next` (and
//! `ConstantDelaySchedule.Next` for `@every`), which DevLake's cron (`ReloadBlueprints`, a
//! `cron.Cron` in UTC) uses to fire each blueprint.

use chrono::{DateTime, Datelike, Duration, NaiveDate, NaiveDateTime, TimeZone, Timelike, Utc};
use chrono_tz::Tz;

pub(crate) fn validate(spec: &str) -> Result<(), String> {
    Schedule::parse(spec).map(|_| ())
}

/// robfig's `starBit`: the field was `*` or `?` (and not stepped by more than 1).
const STAR: u64 = 1 << 63;

/// A parsed schedule: bit sets per field (`SpecSchedule`) or a constant delay.
#[derive(Debug, Clone)]
pub(crate) enum Schedule {
    Spec {
        minute: u64,
        hour: u64,
        dom: u64,
        month: u64,
        dow: u64,
        zone: Option<Tz>,
    },
    Every(Duration),
}

impl Schedule {
    pub(crate) fn parse(spec: &str) -> Result<Schedule, String> {
        let spec = spec.trim();
        let (spec, zone) = match spec.split_once(' ') {
            Some((tz, rest)) if tz.starts_with("TZ=") || tz.starts_with("CRON_TZ=") => {
                let name = tz.split_once('=').map_or("", |(_, n)| n);
                let zone: Tz = name
                    .parse()
                    .map_err(|_| format!("provided bad location {name}"))?;
                (rest.trim(), Some(zone))
            }
            _ => (spec, None),
        };
        if let Some(desc) = spec.strip_prefix('@') {
            let all = |lo: u32, hi: u32| bits(lo, hi, 1) | STAR;
            let fixed = |minute, hour, dom, month, dow| {
                Ok(Schedule::Spec {
                    minute,
                    hour,
                    dom,
                    month,
                    dow,
                    zone,
                })
            };
            return match desc {
                "yearly" | "annually" => fixed(1, 1, 1 << 1, 1 << 1, all(0, 6)),
                "monthly" => fixed(1, 1, 1 << 1, all(1, 12), all(0, 6)),
                "weekly" => fixed(1, 1, all(1, 31), all(1, 12), 1),
                "daily" | "midnight" => fixed(1, 1, all(1, 31), all(1, 12), all(0, 6)),
                "hourly" => fixed(1, all(0, 23), all(1, 31), all(1, 12), all(0, 6)),
                _ => match desc.strip_prefix("every ").map(|d| go_duration(d.trim())) {
                    // `Every`: at least a second, sub-second parts dropped.
                    Some(Some(ms)) => Ok(Schedule::Every(Duration::seconds((ms / 1000).max(1)))),
                    _ => Err(format!("unrecognized descriptor: {spec}")),
                },
            };
        }
        let fields: Vec<&str> = spec.split_whitespace().collect();
        if fields.len() != 5 {
            return Err(format!(
                "expected exactly 5 fields, found {}: {spec}",
                fields.len()
            ));
        }
        const MONTHS: [&str; 12] = [
            "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
        ];
        const DAYS: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];
        Ok(Schedule::Spec {
            minute: parse_field(fields[0], 0, 59, &[], 0)?,
            hour: parse_field(fields[1], 0, 23, &[], 0)?,
            dom: parse_field(fields[2], 1, 31, &[], 0)?,
            month: parse_field(fields[3], 1, 12, &MONTHS, 1)?,
            dow: parse_field(fields[4], 0, 6, &DAYS, 0)?,
            zone,
        })
    }

    /// The first activation strictly after `t` (robfig `Next`), or `None` if none comes within
    /// five years.
    pub(crate) fn next(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self {
            // `ConstantDelaySchedule.Next`: t + delay, on the second.
            Schedule::Every(d) => Some(t + *d - Duration::nanoseconds(t.nanosecond() as i64)),
            Schedule::Spec {
                minute,
                hour,
                dom,
                month,
                dow,
                zone,
            } => {
                let f = [*minute, *hour, *dom, *month, *dow];
                match zone {
                    None => next_in(&f, &Utc, t),
                    Some(z) => next_in(&f, z, t),
                }
            }
        }
    }
}

/// `SpecSchedule.Next` in `zone`: find the first matching month, then day, hour, minute and
/// second (always 0 for a standard spec), resetting the finer fields whenever a coarser one
/// moves and starting over when a field wraps.
fn next_in<Z: TimeZone>(f: &[u64; 5], zone: &Z, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let [minute, hour, dom, month, dow] = *f;
    let has = |set: u64, v: u32| set & (1 << v) != 0;
    let day_matches = |d: NaiveDate| {
        let dom_match = has(dom, d.day());
        let dow_match = has(dow, d.weekday().num_days_from_sunday());
        if dom & STAR != 0 || dow & STAR != 0 {
            dom_match && dow_match
        } else {
            dom_match || dow_match
        }
    };
    let local = t.with_timezone(zone).naive_local();
    // The upcoming second.
    let mut t: NaiveDateTime = local.with_nanosecond(0)? + Duration::seconds(1);
    let mut added = false;
    let year_limit = t.year() + 5;
    'wrap: loop {
        if t.year() > year_limit {
            return None;
        }
        while !has(month, t.month()) {
            if !added {
                added = true;
            }
            let first = NaiveDate::from_ymd_opt(t.year(), t.month(), 1)?;
            t = first
                .checked_add_months(chrono::Months::new(1))?
                .and_hms_opt(0, 0, 0)?;
            if t.month() == 1 {
                continue 'wrap;
            }
        }
        while !day_matches(t.date()) {
            if !added {
                added = true;
            }
            t = (t.date() + Duration::days(1)).and_hms_opt(0, 0, 0)?;
            if t.day() == 1 {
                continue 'wrap;
            }
        }
        while !has(hour, t.hour()) {
            if !added {
                added = true;
                t = t.date().and_hms_opt(t.hour(), 0, 0)?;
            }
            t += Duration::hours(1);
            if t.hour() == 0 {
                continue 'wrap;
            }
        }
        while !has(minute, t.minute()) {
            if !added {
                added = true;
                t = t.with_second(0)?;
            }
            t += Duration::minutes(1);
            if t.minute() == 0 {
                continue 'wrap;
            }
        }
        while t.second() != 0 {
            if !added {
                added = true;
            }
            t += Duration::seconds(1);
            if t.second() == 0 {
                continue 'wrap;
            }
        }
        // A local time a DST change skips does not exist: go on from the next minute.
        match zone.from_local_datetime(&t).earliest() {
            Some(at) => return Some(at.with_timezone(&Utc)),
            None => {
                t += Duration::minutes(1);
                continue 'wrap;
            }
        }
    }
}

fn bits(lo: u32, hi: u32, step: u32) -> u64 {
    (lo..=hi).step_by(step as usize).fold(0, |b, v| b | 1 << v)
}

/// robfig `getField`/`getRange`: the bit set of one field, `STAR` added for `*`/`?` unstepped.
fn parse_field(
    field: &str,
    lo: u32,
    hi: u32,
    names: &[&str],
    name_base: u32,
) -> Result<u64, String> {
    let mut set = 0;
    for part in field.split(',').filter(|p| !p.is_empty()) {
        let (range, step) = match part.split_once('/') {
            Some((r, s)) => (r, Some(s)),
            None => (part, None),
        };
        let value = |s: &str| -> Result<u32, String> {
            if let Ok(n) = s.parse::<u32>() {
                return Ok(n);
            }
            names
                .iter()
                .position(|n| n.eq_ignore_ascii_case(s))
                .map(|i| i as u32 + name_base)
                .ok_or_else(|| format!("failed to parse int from {s}"))
        };
        let single = !range.contains('-');
        let (start, mut end, mut star) = if range == "*" || range == "?" {
            (lo, hi, STAR)
        } else if let Some((a, b)) = range.split_once('-') {
            (value(a)?, value(b)?, 0)
        } else {
            let v = value(range)?;
            (v, v, 0)
        };
        let mut n = 1;
        if let Some(step) = step {
            n = match step.parse::<u32>() {
                Ok(n) if n > 0 => n,
                _ => return Err(format!("invalid step in {part}")),
            };
            if single && star == 0 {
                end = hi;
            }
            if n > 1 {
                star = 0;
            }
        }
        if start < lo || end > hi || start > end {
            return Err(format!("value out of range ({lo}-{hi}): {part}"));
        }
        set |= bits(start, end, n) | star;
    }
    Ok(set)
}

/// Go's `time.ParseDuration` for a sequence of `<number><unit>` (`1h30m`, `6h`, `90s`), in
/// milliseconds.
fn go_duration(d: &str) -> Option<i64> {
    if d.is_empty() {
        return None;
    }
    let mut rest = d;
    let mut ms = 0.0;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if num_len == 0 {
            return None;
        }
        let n: f64 = rest[..num_len].parse().ok()?;
        rest = &rest[num_len..];
        let (unit, per) = [
            ("ns", 1e-6),
            ("us", 1e-3),
            ("µs", 1e-3),
            ("ms", 1.0),
            ("s", 1e3),
            ("m", 6e4),
            ("h", 3.6e6),
        ]
        .into_iter()
        .find(|(u, _)| rest.starts_with(u))?;
        rest = &rest[unit.len()..];
        ms += n * per;
    }
    Some(ms as i64)
}

#[cfg(test)]
mod tests {
    use super::{validate, Schedule};
    use chrono::{DateTime, TimeZone, Utc};

    fn at(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, 0).unwrap()
    }

    fn next(spec: &str, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        Schedule::parse(spec).unwrap().next(t)
    }

    #[test]
    fn next_activation_as_robfig_computes_it() {
        let t = at(2026, 11, 28, 10, 30); // a Saturday
        assert_eq!(next("0 0 * * *", t), Some(at(2026, 11, 29, 0, 0)));
        assert_eq!(next("30 10 * * *", t), Some(at(2026, 11, 29, 10, 30)));
        assert_eq!(next("31 10 * * *", t), Some(at(2026, 11, 28, 10, 31)));
        assert_eq!(next("@hourly", t), Some(at(2026, 11, 28, 11, 0)));
        assert_eq!(next("*/20 * * * *", t), Some(at(2026, 11, 28, 10, 40)));
        assert_eq!(next("@weekly", t), Some(at(2026, 11, 29, 0, 0)));
        assert_eq!(next("0 0 * * 1", t), Some(at(2026, 11, 30, 0, 0)));
        // Both day fields restricted: either (the 1st, or a Monday).
        assert_eq!(next("0 0 1 * 1", t), Some(at(2026, 11, 30, 0, 0)));
        assert_eq!(next("0 0 1 * *", t), Some(at(2026, 12, 1, 0, 0)));
        assert_eq!(next("@yearly", t), Some(at(2027, 1, 1, 0, 0)));
        assert_eq!(next("0 0 29 2 *", t), Some(at(2028, 2, 29, 0, 0)));
        assert_eq!(next("0 0 30 2 *", t), None);
        assert_eq!(
            next("TZ=Asia/Ho_Chi_Minh 0 1 * * *", t),
            Some(at(2026, 11, 28, 18, 0))
        );
        assert_eq!(
            next("@every 90m", t),
            Some(t + chrono::Duration::minutes(90))
        );
    }

    #[test]
    fn accepts_standard_specs() {
        for s in [
            "0 0 * * *",
            "0 0 * * 1",
            "0 0 1 * *",
            "*/15 2-4 * JAN-MAR mon,fri",
            "@daily",
            "@every 6h",
            "@every 1h30m",
        ] {
            assert!(validate(s).is_ok(), "{s}");
        }
    }

    #[test]
    fn rejects_garbage() {
        for s in [
            "",
            "0 0 * *",
            "61 0 * * *",
            "0 0 * * 8",
            "@sometimes",
            "every day",
            "@every x",
        ] {
            assert!(validate(s).is_err(), "{s}");
        }
    }
}
