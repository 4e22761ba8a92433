//! Payload parsing: the accepted forms (envelopes, manual, re-run, adopt), errors that name the field as sent, and times bounded by the clock.

use super::*;
use serde_json::json;

/// The invocation's clock in these tests: the scheduled time of the examples.
fn clock() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-11-28T11:00:00Z")
        .unwrap()
        .with_timezone(&Utc)
}

fn parse_now(v: &Value) -> Result<Request, PayloadError> {
    parse(v, clock())
}

fn run(v: Value) -> RunRequest {
    match parse(&v, clock()).unwrap() {
        Request::Run(r) => r,
        other => panic!("{other:?}"),
    }
}

fn field_of(v: Value) -> String {
    parse(&v, clock()).unwrap_err().field
}

/// The envelope forms' times are checked against the monitor in `crate::job::envelope`;
/// here, what the automation makes of them: a full run, with its source.
#[test]
fn envelope_forms_are_full_runs_with_their_source() {
    let rule = json!({
        "version": "0", "id": "53dc4d37-cffa-4f76-80c9-8b7d4a4d2eaa",
        "detail-type": "Scheduled Event", "source": "aws.events",
        "account": "123456789012", "time": "2026-11-28T11:00:00Z", "region": "ap-southeast-1",
        "resources": ["arn:aws:events:ap-southeast-1:123456789012:rule/daily"], "detail": {}
    });
    for (v, source) in [
        (
            json!({"scheduledTime": "2026-11-28T11:00:00Z"}),
            Source::Scheduler,
        ),
        (rule, Source::Rule),
        (json!({}), Source::Manual),
        (Value::Null, Source::Manual),
    ] {
        let r = run(v);
        assert_eq!(r.source, source);
        assert_eq!(r.dry_run, None);
        assert!(Step::ALL.iter().all(|s| r.runs(*s)));
    }
}

#[test]
fn manual_form() {
    let r = run(json!({
        "dryRun": true, "plugins": ["github"], "connections": ["github/1", "jenkins/12"],
        "steps": ["discover", "sync", "scopeConfigs", "projects", "timeAfter"],
        "now": "2026-11-28T18:00:00+07:00"
    }));
    assert_eq!(r.dry_run, Some(true));
    assert_eq!(r.plugins.as_deref(), Some(&["github".to_string()][..]));
    assert_eq!(
        r.connections.as_ref().unwrap()[1],
        ConnectionRef {
            plugin: "jenkins".into(),
            connection_id: 12
        }
    );
    assert!(!r.runs(Step::Trigger));
    assert!(r.runs(Step::TimeAfter));
    assert_eq!(r.now.unwrap().to_rfc3339(), "2026-11-28T11:00:00+00:00");
}

#[test]
fn errors_name_the_field_as_sent() {
    assert_eq!(field_of(json!({"bogus": 1})), "bogus");
    assert_eq!(field_of(json!({"dryRun": "yes"})), "dryRun");
    assert_eq!(field_of(json!({"dry_run": true})), "dry_run");
    assert_eq!(field_of(json!({"plugins": "github"})), "plugins");
    assert_eq!(
        field_of(json!({"plugins": ["github", "svn"]})),
        "plugins[1]"
    );
    assert_eq!(
        field_of(json!({"connections": ["github-1"]})),
        "connections[0]"
    );
    assert_eq!(
        field_of(json!({"connections": ["svn/1"]})),
        "connections[0]"
    );
    assert_eq!(field_of(json!({"connections": [1]})), "connections[0]");
    assert_eq!(field_of(json!({"steps": ["sync", "deploy"]})), "steps[1]");
    assert_eq!(field_of(json!({"now": "yesterday"})), "now");
    assert_eq!(field_of(json!({"scheduledTime": 5})), "scheduledTime");
    assert_eq!(
        field_of(json!({"scheduledTime": "2026-11-28T11:00:00Z", "now": "2026-11-28T11:00:00Z"})),
        "now"
    );
    assert_eq!(field_of(json!({"action": "delete"})), "action");
    assert_eq!(field_of(json!([1, 2])), "(payload)");
    let e = parse_now(&json!({"dryRun": "yes"})).unwrap_err();
    assert_eq!(
        e.to_string(),
        "invalid payload: field \"dryRun\": expected true or false, got a string"
    );
}

#[test]
fn rerun_forms() {
    match parse_now(&json!({"action": "rerun", "projects": ["github/acme/api"], "fullSync": true}))
        .unwrap()
    {
        Request::Rerun(r) => {
            assert_eq!(
                r.target,
                RerunTarget::Projects(vec!["github/acme/api".into()])
            );
            assert!(r.full_sync);
        }
        other => panic!("{other:?}"),
    }
    match parse_now(&json!({"action": "rerun", "failed": true})).unwrap() {
        Request::Rerun(r) => {
            assert_eq!(r.target, RerunTarget::Failed);
            assert!(!r.full_sync);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(field_of(json!({"action": "rerun"})), "projects");
    assert_eq!(
        field_of(json!({"action": "rerun", "projects": []})),
        "projects"
    );
    assert_eq!(
        field_of(json!({"action": "rerun", "failed": false})),
        "failed"
    );
    assert_eq!(
        field_of(json!({"action": "rerun", "projects": ["a"], "failed": true})),
        "failed"
    );
    assert_eq!(
        field_of(json!({"action": "rerun", "failed": true, "plugins": ["github"]})),
        "plugins"
    );
    assert_eq!(
        field_of(json!({"action": "rerun", "failed": true, "fullSync": "no"})),
        "fullSync"
    );
}

#[test]
fn times_are_bounded_by_the_clock() {
    // A year typo in either time field, or in a rule event's time: refused by name.
    for (v, field) in [
        (
            json!({"scheduledTime": "2062-11-28T11:00:00Z"}),
            "scheduledTime",
        ),
        (
            json!({"scheduledTime": "2025-11-28T11:00:00Z"}),
            "scheduledTime",
        ),
        (
            json!({"now": "2026-11-28T11:16:00Z", "dryRun": true}),
            "now",
        ),
        (json!({"now": "2026-11-20T11:00:00Z"}), "now"),
        (
            json!({"action": "rerun", "failed": true, "now": "2027-01-01T00:00:00Z"}),
            "now",
        ),
        (
            json!({"detail-type": "Scheduled Event", "source": "aws.events", "time": "2020-01-01T00:00:00Z"}),
            "time",
        ),
    ] {
        let e = parse_now(&v).unwrap_err();
        assert_eq!(e.field, field, "{v}: {e}");
    }
    // Within the tolerance ahead and the bound behind: accepted.
    assert!(parse_now(&json!({"scheduledTime": "2026-11-28T11:10:00Z"})).is_ok());
    assert!(parse_now(&json!({"now": "2026-11-26T12:00:00Z"})).is_ok());
    // The backfill flag lifts the past bound only.
    let r = run(json!({"now": "2026-10-03T11:00:00Z", "allowPastTime": true}));
    assert_eq!(r.now.unwrap().to_rfc3339(), "2026-10-03T11:00:00+00:00");
    assert_eq!(
        field_of(json!({"now": "2027-10-03T11:00:00Z", "allowPastTime": true})),
        "now"
    );
    assert_eq!(field_of(json!({"allowPastTime": true})), "allowPastTime");
    assert_eq!(
        field_of(json!({"now": NOW_OK, "allowPastTime": "yes"})),
        "allowPastTime"
    );
    let e = parse_now(&json!({"now": "2026-11-20T11:00:00Z"})).unwrap_err();
    assert!(e.to_string().contains("allowPastTime"), "{e}");
}

const NOW_OK: &str = "2026-11-28T11:00:00Z";

#[test]
fn adopt_forms() {
    match parse_now(&json!({"action": "adopt", "projects": ["legacy-api"], "dryRun": true}))
        .unwrap()
    {
        Request::Adopt(a) => {
            assert_eq!(a.projects, Some(vec!["legacy-api".to_string()]));
            assert_eq!(a.dry_run, Some(true));
        }
        other => panic!("{other:?}"),
    }
    match parse_now(
        &json!({"action": "adopt", "all": true, "scheduledTime": "2026-11-28T11:00:00Z"}),
    )
    .unwrap()
    {
        Request::Adopt(a) => {
            assert_eq!(a.projects, None);
            assert!(a.now.is_some());
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(field_of(json!({"action": "adopt"})), "projects");
    assert_eq!(field_of(json!({"action": "adopt", "all": false})), "all");
    assert_eq!(
        field_of(json!({"action": "adopt", "all": true, "projects": ["a"]})),
        "all"
    );
    assert_eq!(
        field_of(json!({"action": "adopt", "projects": [""]})),
        "projects[0]"
    );
    assert_eq!(
        field_of(json!({"action": "adopt", "all": true, "plugins": ["github"]})),
        "plugins"
    );
}
