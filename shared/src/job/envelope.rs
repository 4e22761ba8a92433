//! The invocation payloads both scheduled jobs accept, read by one parser. The forms the
//! schedules and the Lambda tooling send are the same for both jobs (docs/operations.md,
//! "Payload forms"):
//!
//! | form | payload | the run's `now` |
//! | --- | --- | --- |
//! | no input | `{}`, or `null` (what `cargo lambda invoke` sends without data) | the invocation's clock |
//! | EventBridge Scheduler | `{"scheduledTime": "2026-11-28T11:00:00Z"}` | that time |
//! | EventBridge rule | the "Scheduled Event" envelope: `version`, `id`, `detail-type`, `source`, `account`, `time`, `region`, `resources`, `detail`, and `replay-name` on an event replayed from an archive | its `time` |
//! | manual | the job's own fields (its [`Form`]s), with `scheduledTime` and `allowPastTime` where the form lists them | `scheduledTime` (or the form's own time field) |
//!
//! A payload holding `detail-type` or `source` is a rule event: it must say
//! `"detail-type": "Scheduled Event"` and carry its `time`, and nothing else is taken from it (a
//! manual field inside it is refused, never silently applied). Times are RFC 3339 strings;
//! surrounding blanks are ignored. Every time is bounded by the invocation's clock (the job's
//! [`TimeBounds`]); `"allowPastTime": true` lifts the past bound for a deliberate replay and is
//! refused where the payload gives no time. Anything else is refused before the run starts, the
//! offending field named exactly as sent (`dryRun`, `connections[1]`, `(payload)` for the whole).

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Map, Value};
use thiserror::Error;

use crate::time_rules::TimeBounds;

/// A payload that cannot be run. Nothing has been read or written when this is returned, and
/// sending the same payload again cannot help.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
#[error("invalid payload: field {field:?}: {problem}")]
pub struct PayloadError {
    /// The field as sent (`dryRun`, `bogus`, `connections[1]`), or `(payload)` for the whole.
    pub field: String,
    pub problem: String,
}

impl PayloadError {
    pub fn new(field: &str, problem: impl Into<String>) -> Self {
        PayloadError {
            field: field.to_string(),
            problem: problem.into(),
        }
    }
}

/// Where an invocation came from (the automation reports it in its summary).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// EventBridge Scheduler: `{"scheduledTime": "..."}`.
    Scheduler,
    /// An EventBridge rule's "Scheduled Event".
    #[serde(rename = "eventbridge-rule")]
    Rule,
    /// `{}`, `null` or a manual form without `scheduledTime`.
    #[default]
    Manual,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Scheduler => "scheduler",
            Source::Rule => "eventbridge-rule",
            Source::Manual => "manual",
        }
    }
}

/// The fields of an EventBridge rule event; only `detail-type` and `time` are read.
pub const RULE_EVENT_FIELDS: [&str; 10] = [
    "version",
    "id",
    "detail-type",
    "source",
    "account",
    "time",
    "region",
    "resources",
    "detail",
    "replay-name",
];

/// The field of the EventBridge Scheduler's input (and of a manual replay of it).
pub const SCHEDULED_TIME: &str = "scheduledTime";
/// The manual flag that lifts the past bound of the payload's times.
pub const ALLOW_PAST_TIME: &str = "allowPastTime";

/// One manual form of a job, as data: what it is called in errors, every field it accepts and
/// which of them hold a time that `allowPastTime` applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Form {
    /// Named in an unknown-field error: "a run request", "a monitor request".
    pub what: &'static str,
    pub fields: &'static [&'static str],
    pub times: &'static [&'static str],
}

/// An opened payload: a rule event (complete: only its time counts), or an object whose manual
/// form the job picks and reads.
#[derive(Debug)]
pub enum Envelope<'a> {
    Rule { time: DateTime<Utc> },
    Object(Object<'a>),
}

/// A payload object that is not a rule event: `{}`, the scheduler's input or a manual form.
#[derive(Debug, Clone, Copy)]
pub struct Object<'a> {
    obj: &'a Map<String, Value>,
    clock: DateTime<Utc>,
    bounds: TimeBounds,
}

/// Opens a payload: refuses what is not an object (`null` reads as `{}`) and reads a rule event
/// whole. `clock` is the invocation's clock reading, `bounds` the job's time bounds.
pub fn open(
    payload: &Value,
    clock: DateTime<Utc>,
    bounds: TimeBounds,
) -> Result<Envelope<'_>, PayloadError> {
    static EMPTY: std::sync::OnceLock<Map<String, Value>> = std::sync::OnceLock::new();
    let obj = match payload {
        Value::Null => EMPTY.get_or_init(Map::new),
        Value::Object(o) => o,
        other => {
            return Err(PayloadError::new(
                "(payload)",
                format!("expected a JSON object, got {}", kind(other)),
            ))
        }
    };
    if obj.contains_key("detail-type") || obj.contains_key("source") {
        return rule_event(obj, clock, bounds).map(|time| Envelope::Rule { time });
    }
    Ok(Envelope::Object(Object { obj, clock, bounds }))
}

fn rule_event(
    obj: &Map<String, Value>,
    clock: DateTime<Utc>,
    bounds: TimeBounds,
) -> Result<DateTime<Utc>, PayloadError> {
    reject_unknown(obj, &RULE_EVENT_FIELDS, "an EventBridge rule event")?;
    match obj.get("detail-type") {
        Some(Value::String(s)) if s == "Scheduled Event" => {}
        Some(Value::String(s)) => {
            return Err(PayloadError::new(
                "detail-type",
                format!("only \"Scheduled Event\" starts a run, got {s:?}"),
            ))
        }
        Some(other) => {
            return Err(PayloadError::new(
                "detail-type",
                format!("expected a string, got {}", kind(other)),
            ))
        }
        None => {
            return Err(PayloadError::new(
                "detail-type",
                "missing in an EventBridge rule event",
            ))
        }
    }
    match obj.get("time") {
        Some(v) => bounded(time(v, "time")?, "time", clock, bounds, false),
        None => Err(PayloadError::new(
            "time",
            "missing in an EventBridge rule event",
        )),
    }
}

impl<'a> Object<'a> {
    /// A field as sent, before its form is known (the automation's `action` picks the form).
    pub fn get(&self, field: &str) -> Option<&'a Value> {
        self.obj.get(field)
    }

    /// Reads the object as `form`: refuses a field the form does not list, and `allowPastTime`
    /// that is not a boolean or comes without any of the form's times.
    pub fn form(self, form: &Form) -> Result<Manual<'a>, PayloadError> {
        reject_unknown(self.obj, form.fields, form.what)?;
        let allow_past = self
            .obj
            .get(ALLOW_PAST_TIME)
            .map(|v| boolean(v, ALLOW_PAST_TIME))
            .transpose()?
            .unwrap_or(false);
        if allow_past && !form.times.iter().any(|t| self.obj.contains_key(*t)) {
            return Err(PayloadError::new(
                ALLOW_PAST_TIME,
                format!(
                    "applies to {}, and the payload gives none",
                    form.times.join(" or ")
                ),
            ));
        }
        Ok(Manual {
            obj: self.obj,
            clock: self.clock,
            bounds: self.bounds,
            allow_past,
        })
    }
}

/// A payload object read as one of its job's forms: typed accessors that name the field as
/// sent when its value is wrong.
#[derive(Debug, Clone, Copy)]
pub struct Manual<'a> {
    obj: &'a Map<String, Value>,
    clock: DateTime<Utc>,
    bounds: TimeBounds,
    allow_past: bool,
}

impl<'a> Manual<'a> {
    pub fn get(&self, field: &str) -> Option<&'a Value> {
        self.obj.get(field)
    }

    /// A boolean field, if given.
    pub fn boolean(&self, field: &str) -> Result<Option<bool>, PayloadError> {
        self.obj.get(field).map(|v| boolean(v, field)).transpose()
    }

    /// A list of strings, if given; an item of another type is named with its index.
    pub fn strings(&self, field: &str) -> Result<Option<Vec<String>>, PayloadError> {
        self.obj.get(field).map(|v| strings(v, field)).transpose()
    }

    /// A time field, if given: RFC 3339, within the job's bounds around the clock (the past
    /// bound lifted by `allowPastTime`).
    pub fn time(&self, field: &str) -> Result<Option<DateTime<Utc>>, PayloadError> {
        self.obj
            .get(field)
            .map(|v| {
                bounded(
                    time(v, field)?,
                    field,
                    self.clock,
                    self.bounds,
                    self.allow_past,
                )
            })
            .transpose()
    }

    /// `scheduledTime`, if given: the scheduler's (or a replay's) time, the run's `now`.
    pub fn scheduled_time(&self) -> Result<Option<DateTime<Utc>>, PayloadError> {
        self.time(SCHEDULED_TIME)
    }

    /// [`Source::Scheduler`] when the payload gives `scheduledTime`, else [`Source::Manual`].
    pub fn source(&self) -> Source {
        if self.obj.contains_key(SCHEDULED_TIME) {
            Source::Scheduler
        } else {
            Source::Manual
        }
    }
}

fn reject_unknown(
    obj: &Map<String, Value>,
    known: &[&str],
    what: &str,
) -> Result<(), PayloadError> {
    match obj.keys().find(|k| !known.contains(&k.as_str())) {
        Some(k) => Err(PayloadError::new(
            k,
            format!("unknown field in {what}; accepted: {}", known.join(", ")),
        )),
        None => Ok(()),
    }
}

/// Refuses a time outside `bounds` around `clock`, naming `field` as sent.
fn bounded(
    t: DateTime<Utc>,
    field: &str,
    clock: DateTime<Utc>,
    bounds: TimeBounds,
    allow_past: bool,
) -> Result<DateTime<Utc>, PayloadError> {
    match bounds.problem(t, clock, allow_past) {
        Some(problem) => Err(PayloadError::new(field, problem)),
        None => Ok(t),
    }
}

/// How a value's JSON type is named in errors.
pub fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn boolean(v: &Value, field: &str) -> Result<bool, PayloadError> {
    v.as_bool()
        .ok_or_else(|| PayloadError::new(field, format!("expected true or false, got {}", kind(v))))
}

fn time(v: &Value, field: &str) -> Result<DateTime<Utc>, PayloadError> {
    let s = v.as_str().ok_or_else(|| {
        PayloadError::new(
            field,
            format!("expected an RFC 3339 time string, got {}", kind(v)),
        )
    })?;
    DateTime::parse_from_rfc3339(s.trim())
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| PayloadError::new(field, format!("{s:?} is not an RFC 3339 time: {e}")))
}

fn strings(v: &Value, field: &str) -> Result<Vec<String>, PayloadError> {
    let arr = v.as_array().ok_or_else(|| {
        PayloadError::new(
            field,
            format!("expected an array of strings, got {}", kind(v)),
        )
    })?;
    arr.iter()
        .enumerate()
        .map(|(i, item)| {
            item.as_str().map(str::to_string).ok_or_else(|| {
                PayloadError::new(
                    &format!("{field}[{i}]"),
                    format!("expected a string, got {}", kind(item)),
                )
            })
        })
        .collect()
}

#[cfg(test)]
mod tests;
