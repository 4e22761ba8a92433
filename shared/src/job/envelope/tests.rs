//! The envelope forms both jobs share, as one table run through each job's own parser: the
//! schedules, the rule events and the Lambda tooling send the same payloads to both.

use super::*;
use serde_json::json;

/// The invocation's clock in this table.
const CLOCK: &str = "2026-11-28T11:00:00Z";

fn t(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

/// What a job makes of a payload: the run's scheduled `now` (`None`: the clock), or the
/// field it refuses.
type Outcome = Result<Option<DateTime<Utc>>, String>;

fn automation(payload: &Value) -> Outcome {
    use crate::automation::payload::{parse, Request};
    match parse(payload, t(CLOCK)) {
        Ok(Request::Run(r)) => Ok(r.now),
        Ok(other) => panic!("{payload}: not a run: {other:?}"),
        Err(e) => Err(e.field),
    }
}

fn monitor(payload: &Value) -> Outcome {
    crate::monitor::payload::parse(payload, t(CLOCK))
        .map(|r| r.scheduled_time)
        .map_err(|e| e.field)
}

fn rule_event(time: Value) -> Value {
    json!({
        "version": "0", "id": "53dc4d37-cffa-4f76-80c9-8b7d4a4d2eaa",
        "detail-type": "Scheduled Event", "source": "aws.events",
        "account": "123456789012", "time": time, "region": "ap-southeast-1",
        "resources": ["arn:aws:events:ap-southeast-1:123456789012:rule/daily"], "detail": {}
    })
}

fn with(mut v: Value, field: &str, value: Value) -> Value {
    v[field] = value;
    v
}

fn without(mut v: Value, field: &str) -> Value {
    v.as_object_mut().unwrap().remove(field);
    v
}

/// Every shared envelope form, and what both jobs must make of it.
fn cases() -> Vec<(&'static str, Value, Outcome)> {
    let at = |s: &str| Ok(Some(t(s)));
    let refused = |f: &str| Err(f.to_string());
    let rule = rule_event(json!("2026-11-28T10:59:00Z"));
    vec![
        ("no input", json!({}), Ok(None)),
        ("null, as cargo lambda sends it", Value::Null, Ok(None)),
        (
            "the scheduler's input",
            json!({"scheduledTime": "2026-11-28T11:00:00Z"}),
            at("2026-11-28T11:00:00Z"),
        ),
        (
            "a scheduled time with blanks around it",
            json!({"scheduledTime": " 2026-11-28T11:00:00Z\n"}),
            at("2026-11-28T11:00:00Z"),
        ),
        (
            "a scheduled time with an offset",
            json!({"scheduledTime": "2026-11-28T18:00:00+07:00"}),
            at("2026-11-28T11:00:00Z"),
        ),
        ("a rule event", rule.clone(), at("2026-11-28T10:59:00Z")),
        (
            "a rule event replayed from an archive",
            with(rule.clone(), "replay-name", json!("replay-1")),
            at("2026-11-28T10:59:00Z"),
        ),
        (
            "a rule event's time with blanks",
            rule_event(json!(" 2026-11-28T10:59:00Z ")),
            at("2026-11-28T10:59:00Z"),
        ),
        (
            "another event type",
            with(
                rule.clone(),
                "detail-type",
                json!("EC2 Instance State-change Notification"),
            ),
            refused("detail-type"),
        ),
        (
            "a detail-type that is not a string",
            with(rule.clone(), "detail-type", json!(5)),
            refused("detail-type"),
        ),
        (
            "an event without detail-type",
            without(rule.clone(), "detail-type"),
            refused("detail-type"),
        ),
        (
            "an event without time",
            without(rule.clone(), "time"),
            refused("time"),
        ),
        (
            "an event time that is not a string",
            rule_event(json!(1_764_327_600)),
            refused("time"),
        ),
        (
            "an event time a year ahead",
            rule_event(json!("2027-11-28T11:00:00Z")),
            refused("time"),
        ),
        (
            "an event time eight days old",
            rule_event(json!("2026-11-20T11:00:00Z")),
            refused("time"),
        ),
        (
            "a manual field inside an event",
            with(rule.clone(), "dryRun", json!(true)),
            refused("dryRun"),
        ),
        (
            "an unknown field inside an event",
            with(rule, "bogus", json!(1)),
            refused("bogus"),
        ),
        ("an array", json!([]), refused("(payload)")),
        ("a string", json!("run"), refused("(payload)")),
        ("a boolean", json!(true), refused("(payload)")),
        ("a number", json!(5), refused("(payload)")),
        (
            "a scheduled time that is a number",
            json!({"scheduledTime": 5}),
            refused("scheduledTime"),
        ),
        (
            "a scheduled time that is no time",
            json!({"scheduledTime": "tomorrow"}),
            refused("scheduledTime"),
        ),
        (
            "a scheduled time 16 minutes ahead",
            json!({"scheduledTime": "2026-11-28T11:16:00Z"}),
            refused("scheduledTime"),
        ),
        (
            "a scheduled time 15 minutes ahead",
            json!({"scheduledTime": "2026-11-28T11:15:00Z"}),
            at("2026-11-28T11:15:00Z"),
        ),
        (
            "a scheduled time eight days old",
            json!({"scheduledTime": "2026-11-20T11:00:00Z"}),
            refused("scheduledTime"),
        ),
        (
            "the same, replayed on purpose",
            json!({"scheduledTime": "2026-11-20T11:00:00Z", "allowPastTime": true}),
            at("2026-11-20T11:00:00Z"),
        ),
        (
            "a replay a year ahead",
            json!({"scheduledTime": "2027-11-28T11:00:00Z", "allowPastTime": true}),
            refused("scheduledTime"),
        ),
        (
            "allowPastTime without a time",
            json!({"allowPastTime": true}),
            refused("allowPastTime"),
        ),
        (
            "allowPastTime that is not a boolean",
            json!({"scheduledTime": CLOCK, "allowPastTime": "yes"}),
            refused("allowPastTime"),
        ),
        ("a dry run", json!({"dryRun": true}), Ok(None)),
        (
            "a dry run of a scheduled time",
            json!({"dryRun": true, "scheduledTime": CLOCK}),
            at(CLOCK),
        ),
        (
            "dryRun that is not a boolean",
            json!({"dryRun": "yes"}),
            refused("dryRun"),
        ),
        ("an unknown field", json!({"bogus": 1}), refused("bogus")),
        (
            "a misspelt field",
            json!({"dry_run": true}),
            refused("dry_run"),
        ),
    ]
}

#[test]
fn both_jobs_read_every_envelope_form_alike() {
    for (what, payload, expected) in cases() {
        assert_eq!(
            automation(&payload),
            expected,
            "automation: {what}: {payload}"
        );
        assert_eq!(monitor(&payload), expected, "monitor: {what}: {payload}");
    }
}

#[test]
fn errors_say_what_is_wrong_with_the_field_as_sent() {
    let clock = t(CLOCK);
    let bounds = TimeBounds::MONITOR;
    let form = Form {
        what: "a test request",
        fields: &["scheduledTime", "allowPastTime", "dryRun", "list"],
        times: &["scheduledTime"],
    };
    let read = |v: Value| -> Result<(), PayloadError> {
        let Envelope::Object(o) = open(&v, clock, bounds)? else {
            return Ok(());
        };
        let m = o.form(&form)?;
        m.scheduled_time()?;
        m.boolean("dryRun")?;
        m.strings("list")?;
        Ok(())
    };
    let message = |v: Value| read(v).unwrap_err().to_string();
    assert_eq!(
        message(json!({"dryRun": "yes"})),
        "invalid payload: field \"dryRun\": expected true or false, got a string"
    );
    assert_eq!(
        message(json!({"bogus": 1})),
        "invalid payload: field \"bogus\": unknown field in a test request; \
         accepted: scheduledTime, allowPastTime, dryRun, list"
    );
    assert_eq!(
        message(json!({"list": ["a", 2]})),
        "invalid payload: field \"list[1]\": expected a string, got a number"
    );
    assert_eq!(
        message(json!({"allowPastTime": true})),
        "invalid payload: field \"allowPastTime\": applies to scheduledTime, and the payload gives none"
    );
    assert_eq!(
        message(json!([])),
        "invalid payload: field \"(payload)\": expected a JSON object, got an array"
    );
    let old = message(json!({"scheduledTime": "2026-11-01T00:00:00Z"}));
    assert!(
        old.starts_with("invalid payload: field \"scheduledTime\": ")
            && old.contains("allowPastTime"),
        "{old}"
    );
    let bad = message(json!({"scheduledTime": "  soon "}));
    assert!(
        bad.starts_with("invalid payload: field \"scheduledTime\": \"  soon \" is not"),
        "{bad}"
    );
}
