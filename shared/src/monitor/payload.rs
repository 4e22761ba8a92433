//! The monitor's invocation payloads (docs/operations.md): the envelope forms both jobs share
//! (`{}`/`null`, the EventBridge Scheduler input `{"scheduledTime": "..."}`, an EventBridge
//! rule's "Scheduled Event"; see [`crate::job::envelope`]) and the manual fields `dryRun` and
//! `rescan`. Anything else is refused before any work starts, with the offending field named
//! exactly as sent.
//!
//! The scheduled time (`scheduledTime`, or a rule event's `time`) is bounded by the invocation's
//! clock ([`TimeBounds::MONITOR`]): more than 15 minutes ahead or more than 7 days behind is
//! refused; the manual `"allowPastTime": true` lifts the past bound for a deliberate replay.

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::job::envelope::{self, Envelope, Form};
use crate::time_rules::TimeBounds;

pub use crate::job::PayloadError;

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

/// The monitor's one manual form.
pub const FORM: Form = Form {
    what: "a monitor request",
    fields: &["scheduledTime", "allowPastTime", "dryRun", "rescan"],
    times: &["scheduledTime"],
};

/// Parses a payload, or says exactly what is wrong with it. `clock` is the invocation's clock
/// reading, against which the scheduled time is bounded.
pub fn parse(payload: &Value, clock: DateTime<Utc>) -> Result<Request, PayloadError> {
    match envelope::open(payload, clock, TimeBounds::MONITOR)? {
        Envelope::Rule { time } => Ok(Request {
            scheduled_time: Some(time),
            ..Request::default()
        }),
        Envelope::Object(object) => {
            let manual = object.form(&FORM)?;
            Ok(Request {
                scheduled_time: manual.scheduled_time()?,
                dry_run: manual.boolean("dryRun")?.unwrap_or(false),
                rescan: manual.boolean("rescan")?.unwrap_or(false),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    //! The monitor's own fields; the envelope forms it shares with the automation are tested
    //! against both in `crate::job::envelope`.

    use super::*;
    use serde_json::json;

    fn clock() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-28T11:05:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    fn field_of(v: Value) -> String {
        parse(&v, clock()).unwrap_err().field
    }

    #[test]
    fn manual_fields() {
        let manual = parse(&json!({"dryRun": true, "rescan": true}), clock()).unwrap();
        assert!(manual.dry_run && manual.rescan);
        assert!(!parse(&json!({"dryRun": false}), clock()).unwrap().dry_run);
        assert_eq!(parse(&json!({}), clock()).unwrap(), Request::default());
        assert_eq!(field_of(json!({"rescan": 1})), "rescan");
        // The automation's fields are not the monitor's.
        assert_eq!(field_of(json!({"now": "2026-11-28T11:00:00Z"})), "now");
        assert_eq!(field_of(json!({"plugins": ["github"]})), "plugins");
        let e = parse(&json!({"bogus": 1}), clock()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid payload: field \"bogus\": unknown field in a monitor request; \
             accepted: scheduledTime, allowPastTime, dryRun, rescan"
        );
    }

    #[test]
    fn the_scheduled_time_is_bounded_by_the_monitors_week() {
        // Seven days back is within the monitor's bound (the automation's is two days).
        assert!(parse(&json!({"scheduledTime": "2026-11-21T11:05:01Z"}), clock()).is_ok());
        assert_eq!(
            field_of(json!({"scheduledTime": "2026-11-21T11:04:59Z"})),
            "scheduledTime"
        );
        let old = parse(
            &json!({"scheduledTime": "2026-10-01T00:00:00Z", "allowPastTime": true}),
            clock(),
        )
        .unwrap();
        assert_eq!(
            old.scheduled_time.unwrap().to_rfc3339(),
            "2026-10-01T00:00:00+00:00"
        );
        let rule = parse(
            &json!({"detail-type": "Scheduled Event", "source": "aws.events",
                    "time": "2026-11-28T11:05:00Z"}),
            clock(),
        )
        .unwrap();
        assert_eq!(rule.scheduled_time, Some(clock()));
        assert!(!rule.dry_run && !rule.rescan);
    }
}
