//! Blueprint schedules (`cronConfig`) read the way DevLake reads them, and the instants they fire.
//!
//! DevLake checks a blueprint's `cronConfig` with robfig/cron v3 `ParseStandard` and schedules
//! enabled, non-manual blueprints on a `cron.Cron` built with `WithLocation(time.UTC)`
//! (`ReloadBlueprints` / `reloadBlueprint`): five fields `minute hour day-of-month month
//! day-of-week`, a descriptor (`@yearly`, `@annually`, `@monthly`, `@weekly`, `@daily`,
//! `@midnight`, `@hourly`, `@every <Go duration>`), optionally behind a `TZ=<zone>` or
//! `CRON_TZ=<zone>` prefix; without one, fields are read in UTC.
//!
//! Why our own evaluator and not a crate: the monitor needs only "the latest instant a schedule
//! fired at or before t", with robfig's exact field rules — a `*` or `?` in day-of-month or
//! day-of-week makes the two day fields AND, otherwise they OR (`dayMatches`); `N/step` means
//! `N-max/step`, and a step above 1 drops the "star" (`getRange`); no seconds field; no `L`,
//! `W` or `#`. The `cron` crate wants a seconds field and reads day fields differently; `croner`
//! reads `*/n` in a day field as a star (robfig does not). A bit set per field and a walk back
//! over days is ~200 lines that follow robfig line by line.

use chrono::{DateTime, Datelike, Duration, NaiveDate, TimeZone, Timelike, Utc};
use chrono_tz::Tz;

/// How far back [`CronSchedule::latest_fire_at_or_before`] looks: robfig's `Next` gives up after
/// five years too (a `0 0 30 2 *` schedule never fires).
const YEARS_LIMIT: i64 = 5;

/// Robfig's marker for a field written as `*` or `?` (and not stepped): it changes how the two
/// day fields combine.
const STAR: u64 = 1 << 63;

/// A parsed `cronConfig`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CronSchedule {
    kind: Kind,
    /// `TZ=`/`CRON_TZ=` prefix; `None`: UTC (DevLake's cron location).
    zone: Option<Tz>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    /// Fires at second 0 of every minute whose fields all match (robfig `SpecSchedule`).
    Spec(Fields),
    /// `@every <d>`: fires every `d` counted from when DevLake (re)loaded the blueprint
    /// (robfig `ConstantDelaySchedule`), an instant no API exposes.
    Every(Duration),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Fields {
    minute: u64,
    hour: u64,
    dom: u64,
    month: u64,
    dow: u64,
}

struct Bounds {
    min: u32,
    max: u32,
    names: &'static [&'static str],
    /// Value of the first name.
    name_base: u32,
}

const MINUTES: Bounds = Bounds {
    min: 0,
    max: 59,
    names: &[],
    name_base: 0,
};
const HOURS: Bounds = Bounds {
    min: 0,
    max: 23,
    names: &[],
    name_base: 0,
};
const DOM: Bounds = Bounds {
    min: 1,
    max: 31,
    names: &[],
    name_base: 0,
};
const MONTHS: Bounds = Bounds {
    min: 1,
    max: 12,
    names: &[
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
    ],
    name_base: 1,
};
const DOW: Bounds = Bounds {
    min: 0,
    max: 6,
    names: &["sun", "mon", "tue", "wed", "thu", "fri", "sat"],
    name_base: 0,
};

impl CronSchedule {
    /// Parses a `cronConfig` as robfig/cron v3 `ParseStandard` does (`Parser.Parse` with
    /// `Minute | Hour | Dom | Month | Dow | Descriptor`). The error says what is wrong in one line.
    pub fn parse(spec: &str) -> Result<Self, String> {
        let mut rest = spec.trim();
        if rest.is_empty() {
            return Err("empty spec string".to_string());
        }
        let mut zone = None;
        if rest.starts_with("TZ=") || rest.starts_with("CRON_TZ=") {
            let (prefix, tail) = rest
                .split_once(char::is_whitespace)
                .ok_or_else(|| format!("{spec:?}: a time zone prefix needs a schedule after it"))?;
            let name = prefix.split_once('=').map_or("", |(_, n)| n);
            zone = Some(
                name.parse::<Tz>()
                    .map_err(|_| format!("{spec:?}: unknown time zone {name:?}"))?,
            );
            rest = tail.trim();
        }
        if let Some(descriptor) = rest.strip_prefix('@') {
            let kind = descriptor_kind(descriptor)
                .ok_or_else(|| format!("{rest:?} is not a cron descriptor"))?;
            return Ok(CronSchedule { kind, zone });
        }
        let fields: Vec<&str> = rest.split_whitespace().collect();
        if fields.len() != 5 {
            return Err(format!(
                "{rest:?} has {} fields; expected 5 (minute hour day-of-month month day-of-week) or a descriptor such as @daily",
                fields.len()
            ));
        }
        let spec_fields = Fields {
            minute: field(fields[0], &MINUTES)?,
            hour: field(fields[1], &HOURS)?,
            dom: field(fields[2], &DOM)?,
            month: field(fields[3], &MONTHS)?,
            dow: field(fields[4], &DOW)?,
        };
        Ok(CronSchedule {
            kind: Kind::Spec(spec_fields),
            zone,
        })
    }

    /// Whether the spec carried a `TZ=`/`CRON_TZ=` prefix.
    pub fn has_zone(&self) -> bool {
        self.zone.is_some()
    }

    /// `@every <d>`: the period. Such a schedule's phase is when DevLake last loaded the
    /// blueprint, so only "at least one fire every `d`" can be expected of it.
    pub fn period(&self) -> Option<Duration> {
        match self.kind {
            Kind::Every(d) => Some(d),
            Kind::Spec(_) => None,
        }
    }

    /// The latest instant at or before `t` at which the schedule fires (second 0 of a matching
    /// minute), within five years; `None` for `@every` schedules and schedules that never fire.
    pub fn latest_fire_at_or_before(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let Kind::Spec(f) = &self.kind else {
            return None;
        };
        match self.zone {
            None => latest_in(f, &Utc, t),
            Some(tz) => latest_in(f, &tz, t),
        }
    }

    /// The latest instant by which, looking from `t`, the schedule should have fired: its latest
    /// fire at or before `t`, or for `@every d`, `t - d` (some fire must fall in every period).
    pub fn due_by(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self.kind {
            Kind::Every(d) => Some(t - d),
            Kind::Spec(_) => self.latest_fire_at_or_before(t),
        }
    }
}

fn descriptor_kind(descriptor: &str) -> Option<Kind> {
    let spec = |minute: u64, hour: u64, dom: u64, month: u64, dow: u64| {
        Some(Kind::Spec(Fields {
            minute,
            hour,
            dom,
            month,
            dow,
        }))
    };
    let all = |b: &Bounds| bits(b.min, b.max, 1) | STAR;
    match descriptor {
        "yearly" | "annually" => spec(1, 1, 1 << 1, 1 << 1, all(&DOW)),
        "monthly" => spec(1, 1, 1 << 1, all(&MONTHS), all(&DOW)),
        "weekly" => spec(1, 1, all(&DOM), all(&MONTHS), 1),
        "daily" | "midnight" => spec(1, 1, all(&DOM), all(&MONTHS), all(&DOW)),
        "hourly" => spec(1, all(&HOURS), all(&DOM), all(&MONTHS), all(&DOW)),
        _ => {
            let d = parse_go_duration(descriptor.strip_prefix("every ")?.trim())?;
            // robfig `Every`: below a second counts as a second; sub-second parts are dropped.
            let secs = (d.num_milliseconds() / 1000).max(1);
            Some(Kind::Every(Duration::seconds(secs)))
        }
    }
}

/// robfig `getField`: a comma list of ranges; empty items are skipped (`strings.FieldsFunc`).
fn field(raw: &str, b: &Bounds) -> Result<u64, String> {
    let mut out = 0;
    let mut any = false;
    for expr in raw.split(',').filter(|e| !e.is_empty()) {
        out |= range(expr, b)?;
        any = true;
    }
    if !any {
        return Err(format!("{raw:?} is not a cron field"));
    }
    Ok(out)
}

/// robfig `getRange`: `*`, `?`, `N`, `N-M`, each optionally `/step`.
fn range(expr: &str, b: &Bounds) -> Result<u64, String> {
    let mut parts = expr.split('/');
    let range_part = parts.next().unwrap_or_default();
    let step_part = parts.next();
    if parts.next().is_some() {
        return Err(format!("too many slashes: {expr}"));
    }
    let ends: Vec<&str> = range_part.split('-').collect();
    let (mut start, mut end, mut star) = (b.min, b.max, 0);
    if ends[0] == "*" || ends[0] == "?" {
        star = STAR;
    } else {
        start = value(ends[0], b)?;
        end = match ends.len() {
            1 => start,
            2 => value(ends[1], b)?,
            _ => return Err(format!("too many hyphens: {expr}")),
        };
    }
    let mut step = 1;
    if let Some(s) = step_part {
        step = s
            .parse::<u32>()
            .map_err(|_| format!("bad step {s:?} in {expr:?}"))?;
        // "N/step" means "N-max/step".
        if ends.len() == 1 {
            end = b.max;
        }
        if step > 1 {
            star = 0;
        }
    }
    if start < b.min || end > b.max {
        return Err(format!(
            "{expr:?} is outside {}-{} for this field",
            b.min, b.max
        ));
    }
    if start > end {
        return Err(format!("range {expr:?} runs backwards"));
    }
    if step == 0 {
        return Err(format!("step of {expr:?} should be a positive number"));
    }
    Ok(bits(start, end, step) | star)
}

fn value(raw: &str, b: &Bounds) -> Result<u32, String> {
    if let Some(i) = b.names.iter().position(|n| n.eq_ignore_ascii_case(raw)) {
        return Ok(i as u32 + b.name_base);
    }
    raw.parse::<u32>()
        .map_err(|_| format!("{raw:?} is not a number between {} and {}", b.min, b.max))
}

fn bits(start: u32, end: u32, step: u32) -> u64 {
    (start..=end)
        .step_by(step as usize)
        .fold(0, |acc, v| acc | 1 << v)
}

fn has(set: u64, v: u32) -> bool {
    set & (1 << v) != 0
}

/// robfig `dayMatches`: with a star in either day field both must match, otherwise either.
fn day_matches(f: &Fields, date: NaiveDate) -> bool {
    let dom = has(f.dom, date.day());
    let dow = has(f.dow, date.weekday().num_days_from_sunday());
    if f.dom & STAR != 0 || f.dow & STAR != 0 {
        dom && dow
    } else {
        dom || dow
    }
}

/// Walks back from `t`'s local date, newest minute first, to the first matching minute that
/// exists in `zone` and is not after `t`.
fn latest_in<Z: TimeZone>(f: &Fields, zone: &Z, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let local = t.with_timezone(zone).naive_local();
    let mut date = local.date();
    let mut top = Some((local.hour(), local.minute()));
    let oldest = date - Duration::days(366 * YEARS_LIMIT);
    while date >= oldest {
        if has(f.month, date.month()) && day_matches(f, date) {
            let (max_hour, max_minute) = top.unwrap_or((23, 59));
            for hour in (0..=max_hour).rev().filter(|h| has(f.hour, *h)) {
                let last_minute = if hour == max_hour { max_minute } else { 59 };
                for minute in (0..=last_minute).rev().filter(|m| has(f.minute, *m)) {
                    let naive = date.and_hms_opt(hour, minute, 0)?;
                    // A minute skipped by a DST change never fires; of a repeated one, the first.
                    if let Some(at) = zone.from_local_datetime(&naive).earliest() {
                        let at = at.with_timezone(&Utc);
                        if at <= t {
                            return Some(at);
                        }
                    }
                }
            }
        }
        date = date.pred_opt()?;
        top = None;
    }
    None
}

/// 64-bit FNV-1a over the UTF-8 bytes, then MurmurHash3's `fmix64` finaliser (FNV-1a alone leaves
/// names differing in their last byte close together). Written out rather than taken from `std`,
/// whose `DefaultHasher` may change between releases: this value must be the same on every run,
/// platform and Rust version. It places each project of `BLUEPRINT_CRON=spread:…` in its window
/// (changing it would move every project's schedule and `PATCH` every blueprint once) and tells
/// the monitor whether a blueprint's `cronConfig` changed since it last looked.
pub fn stable_hash(text: &str) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let h = text
        .bytes()
        .fold(OFFSET, |h, b| (h ^ u64::from(b)).wrapping_mul(PRIME));
    fmix64(h)
}

fn fmix64(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

/// Go's `time.ParseDuration` for the units DevLake users write: a sequence of `<number><unit>`
/// with `ns`, `us`, `µs`, `ms`, `s`, `m`, `h` (decimals allowed), e.g. `6h`, `1h30m`, `90s`.
pub fn parse_go_duration(s: &str) -> Option<Duration> {
    if s.is_empty() {
        return None;
    }
    let mut rest = s;
    let mut total_ns: f64 = 0.0;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if digits == 0 {
            return None;
        }
        let number: f64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let (unit, ns) = [
            ("ns", 1.0),
            ("us", 1e3),
            ("µs", 1e3),
            ("ms", 1e6),
            ("h", 3.6e12),
            ("m", 6e10),
            ("s", 1e9),
        ]
        .into_iter()
        .find(|(u, _)| rest.starts_with(u))?;
        rest = &rest[unit.len()..];
        total_ns += number * ns;
    }
    Some(Duration::nanoseconds(total_ns.min(i64::MAX as f64) as i64))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, 0).unwrap()
    }

    fn latest(spec: &str, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        CronSchedule::parse(spec)
            .unwrap()
            .latest_fire_at_or_before(t)
    }

    #[test]
    fn the_hash_is_pinned() {
        // FNV-1a's published vectors through fmix64: a change of either part fails here.
        assert_eq!(stable_hash(""), fmix64(0xcbf2_9ce4_8422_2325));
        assert_eq!(stable_hash("a"), fmix64(0xaf63_dc4c_8601_ec8c));
        assert_eq!(stable_hash("foobar"), fmix64(0x8594_4171_f739_67e8));
        assert_eq!(stable_hash("github/apache/incubator-devlake"), PINNED);
    }

    const PINNED: u64 = 2_095_137_917_093_742_579;

    #[test]
    fn daily_and_hourly_forms() {
        // 2026-11-28 is a Saturday.
        let t = at(2026, 11, 28, 10, 30);
        assert_eq!(latest("0 0 * * *", t), Some(at(2026, 11, 28, 0, 0)));
        assert_eq!(latest("@daily", t), Some(at(2026, 11, 28, 0, 0)));
        assert_eq!(latest("37 2 * * *", t), Some(at(2026, 11, 28, 2, 37)));
        assert_eq!(latest("45 10 * * *", t), Some(at(2026, 11, 27, 10, 45)));
        assert_eq!(latest("@hourly", t), Some(at(2026, 11, 28, 10, 0)));
        assert_eq!(latest("*/15 * * * *", t), Some(at(2026, 11, 28, 10, 30)));
        // A fire exactly at t counts.
        assert_eq!(latest("30 10 * * *", t), Some(t));
        // `5/20`: from 5 every 20.
        assert_eq!(latest("5/20 * * * *", t), Some(at(2026, 11, 28, 10, 25)));
    }

    #[test]
    fn day_fields_combine_as_robfig_does() {
        let t = at(2026, 11, 28, 12, 0); // Saturday the 28th
                                         // Both restricted: either matches (the 1st, or any Monday).
        assert_eq!(latest("0 0 1 * 1", t), Some(at(2026, 11, 23, 0, 0)));
        // A star in one: both must match (Mondays only).
        assert_eq!(latest("0 0 * * 1", t), Some(at(2026, 11, 23, 0, 0)));
        assert_eq!(latest("@weekly", t), Some(at(2026, 11, 22, 0, 0)));
        // `*/2` with a step is not a star: day-of-month 1,3,…,31 OR Mondays.
        assert_eq!(latest("0 0 */2 * mon", t), Some(at(2026, 11, 27, 0, 0)));
        assert_eq!(latest("@monthly", t), Some(at(2026, 11, 1, 0, 0)));
        assert_eq!(latest("@yearly", t), Some(at(2026, 1, 1, 0, 0)));
        assert_eq!(latest("0 0 29 2 *", t), Some(at(2024, 2, 29, 0, 0)));
        assert_eq!(latest("0 0 30 2 *", t), None);
        assert_eq!(latest("0 6 * jan-mar SUN", t), Some(at(2026, 3, 29, 6, 0)));
    }

    #[test]
    fn zones_and_periods() {
        let t = at(2026, 11, 28, 10, 30);
        // 01:00 in Ho Chi Minh City (UTC+7) is 18:00 UTC the day before.
        assert_eq!(
            latest("TZ=Asia/Ho_Chi_Minh 0 1 * * *", t),
            Some(at(2026, 11, 27, 18, 0))
        );
        let every = CronSchedule::parse("@every 6h").unwrap();
        assert_eq!(every.period(), Some(Duration::hours(6)));
        assert_eq!(every.latest_fire_at_or_before(t), None);
        assert_eq!(every.due_by(t), Some(t - Duration::hours(6)));
        let sub = CronSchedule::parse("@every 10ms").unwrap();
        assert_eq!(sub.period(), Some(Duration::seconds(1)));
    }

    #[test]
    fn refuses_what_parse_standard_refuses() {
        for bad in [
            "",
            "0 0 * *",
            "0 0 * * * *",
            "60 0 * * *",
            "0 24 * * *",
            "0 0 0 * *",
            "0 0 * 13 *",
            "0 0 * * 7",
            "5-1 * * * *",
            "*/0 * * * *",
            "1-2-3 * * * *",
            "1/2/3 * * * *",
            "x * * * *",
            "@sometimes",
            "@every",
            "@every x",
            "TZ=Mars/Olympus 0 0 * * *",
            "TZ=UTC",
        ] {
            assert!(CronSchedule::parse(bad).is_err(), "{bad:?}");
        }
        for ok in [
            "0 0 * * *",
            "*/15 2-4 1,15 JAN-mar mon-fri",
            "? ? ? ? ?",
            "0 0 1,,15 * *",
            "CRON_TZ=Europe/Paris 30 18 * * 0",
            "@every 1h30m",
            "@annually",
            "@midnight",
        ] {
            assert!(CronSchedule::parse(ok).is_ok(), "{ok:?}");
        }
    }
}
