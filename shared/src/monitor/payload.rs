//! The monitor's invocation payloads (docs/operations.md): the EventBridge Scheduler input
//! `{"scheduledTime": "..."}`, an EventBridge rule's "Scheduled Event", `{}`, and the manual forms
//! `{"dryRun": true}` / `{"rescan": true}`. Anything else is refused before any work starts, with
//! the offending field named exactly as sent.
//!
//! The scheduled time (`scheduledTime`, or a rule event's `time`) is bounded by the invocation's
//! clock ([`TimeBounds::MONITOR`]): more than 15 minutes ahead or more than 7 days behind is
//! refused; the manual `"allowPastTime": true` lifts the past bound for a deliberate replay.

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};
use thiserror::Error;

use crate::time_rules::TimeBounds;

/// What an invocation asks for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Request {
    /// The run's `now` when the scheduler (or rule) says when it fired; a redelivered event then
    /// computes exactly what the first delivery did.
    pub scheduled_time: Option<DateTime<Utc>>,
    /// Read DevLake and the table, write nothing anywhere, report what would be recorded.
    pub dry_run: bool,
    /// Ignore the stored cursor and look back `INITIAL_LOOKBACK_HOURS` as on a first run.
    pub rescan: bool,
}

/// Why a payload was refused.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum PayloadError {
    #[error("payload must be a JSON object, got {found}")]
    NotAnObject { found: &'static str },
    #[error("unknown field `{field}` (accepted: {accepted})")]
    UnknownField {
        field: String,
        accepted: &'static str,
    },
    #[error("wrong type for `{field}`: expected {expected}, got {found}")]
    WrongType {
        field: String,
        expected: &'static str,
        found: &'static str,
    },
    #[error("invalid `{field}`: {value:?} is not an RFC 3339 time")]
    BadTime { field: String, value: String },
    #[error("invalid `{field}`: {problem}")]
    TimeOutOfRange { field: String, problem: String },
    #[error("`allowPastTime` applies to a scheduledTime, and the payload gives none")]
    AllowPastWithoutTime,
    #[error("unsupported `detail-type` {value:?}: only \"Scheduled Event\" is accepted")]
    DetailType { value: String },
}

const MANUAL_FIELDS: &str = "scheduledTime, allowPastTime, dryRun, rescan";
const EVENT_FIELDS: &str =
    "version, id, detail-type, source, account, time, region, resources, detail, replay-name";

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn time_field(field: &str, value: &Value) -> Result<DateTime<Utc>, PayloadError> {
    let Value::String(raw) = value else {
        return Err(PayloadError::WrongType {
            field: field.to_string(),
            expected: "an RFC 3339 time string",
            found: kind(value),
        });
    };
    DateTime::parse_from_rfc3339(raw.trim())
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| PayloadError::BadTime {
            field: field.to_string(),
            value: raw.clone(),
        })
}

fn bool_field(field: &str, value: &Value) -> Result<bool, PayloadError> {
    value.as_bool().ok_or_else(|| PayloadError::WrongType {
        field: field.to_string(),
        expected: "a boolean",
        found: kind(value),
    })
}

/// An EventBridge rule's event envelope: only the time matters.
fn scheduled_event(object: &Map<String, Value>) -> Result<Request, PayloadError> {
    let mut request = Request::default();
    for (field, value) in object {
        match field.as_str() {
            "detail-type" => match value {
                Value::String(s) if s == "Scheduled Event" => {}
                Value::String(s) => return Err(PayloadError::DetailType { value: s.clone() }),
                other => {
                    return Err(PayloadError::WrongType {
                        field: field.clone(),
                        expected: "a string",
                        found: kind(other),
                    })
                }
            },
            "time" => request.scheduled_time = Some(time_field(field, value)?),
            "version" | "id" | "source" | "account" | "region" | "resources" | "detail"
            | "replay-name" => {}
            _ => {
                return Err(PayloadError::UnknownField {
                    field: field.clone(),
                    accepted: EVENT_FIELDS,
                })
            }
        }
    }
    Ok(request)
}

/// Refuses a time outside [`TimeBounds::MONITOR`] around `clock`, naming `field` as sent.
fn bounded(
    field: &str,
    t: DateTime<Utc>,
    clock: DateTime<Utc>,
    allow_past: bool,
) -> Result<(), PayloadError> {
    match TimeBounds::MONITOR.problem(t, clock, allow_past) {
        Some(problem) => Err(PayloadError::TimeOutOfRange {
            field: field.to_string(),
            problem,
        }),
        None => Ok(()),
    }
}

/// Parses a payload, or says exactly what is wrong with it. `clock` is the invocation's clock
/// reading, against which the scheduled time is bounded.
pub fn parse(payload: &Value, clock: DateTime<Utc>) -> Result<Request, PayloadError> {
    let Value::Object(object) = payload else {
        return Err(PayloadError::NotAnObject {
            found: kind(payload),
        });
    };
    if object.contains_key("detail-type") {
        let request = scheduled_event(object)?;
        if let Some(t) = request.scheduled_time {
            bounded("time", t, clock, false)?;
        }
        return Ok(request);
    }
    let mut request = Request::default();
    let mut allow_past = false;
    for (field, value) in object {
        match field.as_str() {
            "scheduledTime" => request.scheduled_time = Some(time_field(field, value)?),
            "allowPastTime" => allow_past = bool_field(field, value)?,
            "dryRun" => request.dry_run = bool_field(field, value)?,
            "rescan" => request.rescan = bool_field(field, value)?,
            _ => {
                return Err(PayloadError::UnknownField {
                    field: field.clone(),
                    accepted: MANUAL_FIELDS,
                })
            }
        }
    }
    match request.scheduled_time {
        Some(t) => bounded("scheduledTime", t, clock, allow_past)?,
        None if allow_past => return Err(PayloadError::AllowPastWithoutTime),
        None => {}
    }
    Ok(request)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn clock() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-28T11:05:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    fn parse_at(v: &Value) -> Result<Request, PayloadError> {
        parse(v, clock())
    }

    #[test]
    fn accepts_the_documented_forms() {
        assert_eq!(parse_at(&json!({})).unwrap(), Request::default());
        let scheduler = parse_at(&json!({"scheduledTime": "2026-11-28T11:00:00Z"})).unwrap();
        assert_eq!(
            scheduler.scheduled_time.unwrap().to_rfc3339(),
            "2026-11-28T11:00:00+00:00"
        );
        let rule = parse_at(&json!({
            "version": "0", "id": "53dc4d37", "detail-type": "Scheduled Event",
            "source": "aws.events", "account": "123456789012", "time": "2026-11-28T11:05:00Z",
            "region": "ap-southeast-1", "resources": ["arn:aws:events:...:rule/x"], "detail": {}
        }))
        .unwrap();
        assert_eq!(
            rule.scheduled_time.unwrap().to_rfc3339(),
            "2026-11-28T11:05:00+00:00"
        );
        assert!(!rule.dry_run);
        let manual = parse_at(&json!({"dryRun": true, "rescan": true})).unwrap();
        assert!(manual.dry_run && manual.rescan);
        assert!(!parse_at(&json!({"dryRun": false})).unwrap().dry_run);
    }

    #[test]
    fn names_the_offending_field_as_sent() {
        let e = parse_at(&json!({"bogus": 1})).unwrap_err();
        assert!(e.to_string().starts_with("unknown field `bogus`"), "{e}");
        let e = parse_at(&json!({"dryRun": "yes"})).unwrap_err();
        assert_eq!(
            e.to_string(),
            "wrong type for `dryRun`: expected a boolean, got a string"
        );
        let e = parse_at(&json!({"dry_run": true})).unwrap_err();
        assert!(e.to_string().contains("`dry_run`"), "{e}");
        let e = parse_at(&json!({"scheduledTime": "tomorrow"})).unwrap_err();
        assert!(e.to_string().contains("`scheduledTime`"), "{e}");
        let e = parse_at(&json!({"scheduledTime": 5})).unwrap_err();
        assert!(e.to_string().contains("`scheduledTime`"), "{e}");
        // Manual fields inside an EventBridge event are not silently taken.
        let e = parse_at(&json!({"detail-type": "Scheduled Event", "time": "2026-11-28T11:05:00Z", "dryRun": true}))
            .unwrap_err();
        assert!(e.to_string().contains("`dryRun`"), "{e}");
        let e = parse_at(&json!({"detail-type": "EC2 Instance State-change Notification"}))
            .unwrap_err();
        assert!(matches!(e, PayloadError::DetailType { .. }));
    }

    #[test]
    fn refuses_non_objects() {
        for payload in [json!(null), json!([]), json!("run"), json!(true)] {
            assert!(matches!(
                parse_at(&payload),
                Err(PayloadError::NotAnObject { .. })
            ));
        }
    }

    #[test]
    fn the_scheduled_time_is_bounded_by_the_clock() {
        let field = |v: Value| match parse_at(&v).unwrap_err() {
            PayloadError::TimeOutOfRange { field, .. } => field,
            other => panic!("{v}: {other}"),
        };
        assert_eq!(
            field(json!({"scheduledTime": "2036-11-28T11:00:00Z"})),
            "scheduledTime"
        );
        assert_eq!(
            field(json!({"scheduledTime": "2026-11-28T11:20:01Z"})),
            "scheduledTime"
        );
        assert_eq!(
            field(json!({"scheduledTime": "2026-11-21T11:04:59Z"})),
            "scheduledTime"
        );
        assert_eq!(
            field(json!({"detail-type": "Scheduled Event", "time": "2016-11-28T11:05:00Z"})),
            "time"
        );
        assert!(parse_at(&json!({"scheduledTime": "2026-11-28T11:20:00Z"})).is_ok());
        assert!(parse_at(&json!({"scheduledTime": "2026-11-21T11:05:01Z"})).is_ok());
        // A deliberate replay of an old delivery: the past bound is lifted, the future one is not.
        let old =
            parse_at(&json!({"scheduledTime": "2026-10-01T00:00:00Z", "allowPastTime": true}))
                .unwrap();
        assert_eq!(
            old.scheduled_time.unwrap().to_rfc3339(),
            "2026-10-01T00:00:00+00:00"
        );
        assert_eq!(
            field(json!({"scheduledTime": "2036-11-28T11:00:00Z", "allowPastTime": true})),
            "scheduledTime"
        );
        assert_eq!(
            parse_at(&json!({"allowPastTime": true})).unwrap_err(),
            PayloadError::AllowPastWithoutTime
        );
        let e = parse_at(&json!({"scheduledTime": "2026-11-01T00:00:00Z"})).unwrap_err();
        assert!(
            e.to_string().starts_with("invalid `scheduledTime`: "),
            "{e}"
        );
        assert!(e.to_string().contains("allowPastTime"), "{e}");
    }
}
