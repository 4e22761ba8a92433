//! How a family and its samples are spelled: HELP and TYPE lines per format (written with the
//! first sample, so an empty family leaves no trace), label escaping, sample values, and the
//! `time_failed` label as a fixed-size value. Written straight into one `String`: no per-series
//! objects, which is what keeps a 20,000-failure page cheap.

use std::borrow::Cow;
use std::fmt::Write as _;

use chrono::{DateTime, Datelike, Timelike, Utc};
use chrono_tz::Tz;

use super::ExpositionFormat;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Counter,
    Gauge,
}

/// A sample value: counts are written as integers, everything else as the shortest decimal
/// that reads back as the same `f64` (what Prometheus' own Go client and the 0.0.4 parser agree
/// on; never an exponent for the magnitudes on this page).
#[derive(Debug, Clone, Copy)]
pub(super) enum Value {
    Int(u64),
    Float(f64),
}

impl From<bool> for Value {
    fn from(b: bool) -> Self {
        Value::Int(u64::from(b))
    }
}

/// The page being written.
pub(super) struct Page {
    pub(super) out: String,
    pub(super) format: ExpositionFormat,
}

impl Page {
    /// Starts a family; its HELP and TYPE lines are written with its first sample, so a family
    /// without samples leaves no trace (Prometheus treats a missing family and an empty one alike).
    pub(super) fn family<'p, 'n>(
        &'p mut self,
        name: &'n str,
        help: &'n str,
        kind: Kind,
    ) -> Family<'p, 'n> {
        Family {
            page: self,
            name,
            help,
            kind,
            started: false,
        }
    }
}

pub(super) struct Family<'p, 'n> {
    page: &'p mut Page,
    name: &'n str,
    help: &'n str,
    kind: Kind,
    /// Whether the HELP and TYPE lines are written.
    pub(super) started: bool,
}

impl Family<'_, '_> {
    /// Writes one series; label values must already be escaped ([`escape_label_value`]).
    pub(super) fn sample(&mut self, labels: &[(&str, &str)], value: Value) {
        if !self.started {
            self.started = true;
            self.write_header();
        }
        let out = &mut self.page.out;
        out.push_str(self.name);
        if let [first, rest @ ..] = labels {
            out.push('{');
            for (i, (name, value)) in std::iter::once(first).chain(rest).enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(name);
                out.push_str("=\"");
                out.push_str(value);
                out.push('"');
            }
            out.push('}');
        }
        out.push(' ');
        // Writing to a String cannot fail.
        let _ = match value {
            Value::Int(v) => write!(out, "{v}"),
            Value::Float(v) if v.is_nan() => write!(out, "NaN"),
            Value::Float(v) if v.is_infinite() => {
                write!(out, "{}", if v > 0.0 { "+Inf" } else { "-Inf" })
            }
            Value::Float(v) => write!(out, "{v}"),
        };
        out.push('\n');
    }

    pub(super) fn write_header(&mut self) {
        let out = &mut self.page.out;
        let type_name = match self.kind {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
        };
        match self.page.format {
            ExpositionFormat::PrometheusText => {
                out.push_str("# HELP ");
                out.push_str(self.name);
                out.push(' ');
                push_escaped(out, self.help, false);
                out.push_str("\n# TYPE ");
                out.push_str(self.name);
                out.push(' ');
                out.push_str(type_name);
                out.push('\n');
            }
            ExpositionFormat::OpenMetrics => {
                // A counter family is named without the `_total` its samples carry.
                let family = match self.kind {
                    Kind::Counter => self.name.strip_suffix("_total").unwrap_or(self.name),
                    Kind::Gauge => self.name,
                };
                out.push_str("# TYPE ");
                out.push_str(family);
                out.push(' ');
                out.push_str(type_name);
                out.push_str("\n# HELP ");
                out.push_str(family);
                out.push(' ');
                push_escaped(out, self.help, true);
                out.push('\n');
            }
        }
    }
}

/// A label value with backslash, double quote and line feed escaped (the same in both formats).
pub(super) fn escape_label_value(value: &str) -> Cow<'_, str> {
    if !value.contains(['\\', '"', '\n']) {
        return Cow::Borrowed(value);
    }
    let mut escaped = String::with_capacity(value.len() + 8);
    push_escaped(&mut escaped, value, true);
    Cow::Owned(escaped)
}

/// Backslash and line feed are escaped everywhere; double quotes in label values, and in HELP
/// text only in OpenMetrics (0.0.4 HELP leaves them as they are).
fn push_escaped(out: &mut String, value: &str, quotes: bool) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '"' if quotes => out.push_str("\\\""),
            other => out.push(other),
        }
    }
}

/// `YYYY-MM-DD HH:MM:SS` in the page's time zone, the `time_failed` label of the original
/// system ([`crate::time_rules::format_local`]), as a fixed-size value: sorting and comparing
/// 20,000 of them allocates nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct LocalTime([u8; 19]);

impl LocalTime {
    pub(super) fn new(t: DateTime<Utc>, timezone: Tz) -> Self {
        let local = t.with_timezone(&timezone);
        let mut text = [0u8; 19];
        let mut put = |at: usize, value: u32, width: usize| {
            let mut v = value;
            for i in (at..at + width).rev() {
                text[i] = b'0' + (v % 10) as u8;
                v /= 10;
            }
        };
        // Years outside 0..=9999 cannot come from DevLake timestamps; clamp rather than misalign.
        put(0, local.year().clamp(0, 9999) as u32, 4);
        put(5, local.month(), 2);
        put(8, local.day(), 2);
        put(11, local.hour(), 2);
        put(14, local.minute(), 2);
        put(17, local.second(), 2);
        for (at, sep) in [(4, b'-'), (7, b'-'), (10, b' '), (13, b':'), (16, b':')] {
            text[at] = sep;
        }
        LocalTime(text)
    }

    pub(super) fn as_str(&self) -> &str {
        // Only ASCII digits and separators are ever written.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

pub(super) fn unix_seconds(t: DateTime<Utc>) -> Value {
    Value::Float(t.timestamp_millis() as f64 / 1000.0)
}
