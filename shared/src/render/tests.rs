//! The page's shape, escaping and values, family by family.

use chrono::{DateTime, Utc};

use super::writer::LocalTime;
use super::*;
use crate::store::{ConnectionHealth, ProjectState};

fn utc(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

fn failure(project: &str, finished: &str, pipeline_id: u64) -> FailureEvent {
    FailureEvent {
        project_name: project.to_string(),
        blueprint_id: 1,
        pipeline_id,
        status: "TASK_FAILED".to_string(),
        finished_at: utc(finished),
        began_at: None,
        message: String::new(),
        error_name: String::new(),
        cause: crate::failure_cause::FailureCause::Unknown,
    }
}

#[test]
fn local_time_label_matches_the_time_rules_format() {
    use crate::time_rules::format_local;
    // Around the New York fall-back hour (two local 01:30s), a leap day, and far zones.
    let cases = [
        "2026-11-01T05:30:00Z",
        "2026-11-01T06:30:00Z",
        "2028-02-29T23:59:59.999Z",
        "1999-12-31T17:00:00Z",
        "2026-11-28T17:00:05.100Z",
    ];
    for tz in [
        chrono_tz::America::New_York,
        chrono_tz::Asia::Ho_Chi_Minh,
        chrono_tz::Pacific::Chatham,
        chrono_tz::UTC,
    ] {
        for case in cases {
            let t = utc(case);
            assert_eq!(
                LocalTime::new(t, tz).as_str(),
                format_local(t, tz),
                "{case} {tz}"
            );
        }
    }
}

#[test]
fn negotiation_prefers_openmetrics_only_when_asked_for() {
    use ExpositionFormat::*;
    assert_eq!(ExpositionFormat::negotiate(None), PrometheusText);
    assert_eq!(
        ExpositionFormat::negotiate(Some("text/plain")),
        PrometheusText
    );
    assert_eq!(ExpositionFormat::negotiate(Some("*/*")), PrometheusText);
    // What Prometheus 2.x sends by default.
    let prom = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;\
                version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
    assert_eq!(ExpositionFormat::negotiate(Some(prom)), OpenMetrics);
    assert_eq!(
        ExpositionFormat::negotiate(Some("application/openmetrics-text")),
        OpenMetrics
    );
    // Only an OpenMetrics version we do not write: fall back, with the 0.0.4 content type.
    assert_eq!(
        ExpositionFormat::negotiate(Some("application/openmetrics-text; version=0.0.1")),
        PrometheusText
    );
    assert_eq!(
        ExpositionFormat::negotiate(Some(
            "text/plain;version=0.0.4;q=0.9, application/openmetrics-text;q=0.5"
        )),
        PrometheusText
    );
    assert_eq!(
        ExpositionFormat::negotiate(Some("application/openmetrics-text;q=0")),
        PrometheusText
    );
}

#[test]
fn same_project_and_second_sums_into_one_series() {
    let snapshot = MetricsSnapshot {
        failures: vec![
            failure("a", "2026-11-20T17:00:05.100Z", 1),
            failure("a", "2026-11-20T17:00:05.900Z", 2),
            failure("b", "2026-11-20T17:00:05.100Z", 3),
        ],
        ..Default::default()
    };
    let page = render_page(
        &snapshot,
        chrono_tz::Asia::Ho_Chi_Minh,
        ExpositionFormat::PrometheusText,
        Duration::ZERO,
    );
    assert!(page.contains(
        "devlake_blueprint_failure_total{project_name=\"a\",time_failed=\"2026-11-21 00:00:05\"} 2\n"
    ));
    assert!(page.contains(
        "devlake_blueprint_failure_total{project_name=\"b\",time_failed=\"2026-11-21 00:00:05\"} 1\n"
    ));
}

#[test]
fn devlake_up_is_zero_without_a_monitor_run() {
    let page = render_page(
        &MetricsSnapshot::default(),
        chrono_tz::UTC,
        ExpositionFormat::PrometheusText,
        Duration::from_millis(5),
    );
    assert!(page.contains("\ndevlake_up 0\n"), "{page}");
    assert!(page.ends_with("devlake_metrics_render_duration_seconds 0.005\n"));
    assert!(!page.contains("devlake_blueprint_failure_total"));
}

#[test]
fn openmetrics_names_counters_by_family_and_ends_with_eof() {
    let snapshot = MetricsSnapshot {
        projects: vec![ProjectState {
            project_name: "p\"q".into(),
            failures_total: 3,
            ..Default::default()
        }],
        ..Default::default()
    };
    let page = render_page(
        &snapshot,
        chrono_tz::UTC,
        ExpositionFormat::OpenMetrics,
        Duration::ZERO,
    );
    assert!(page.contains("# TYPE devlake_project_pipeline_failures counter\n"));
    assert!(page.contains("devlake_project_pipeline_failures_total{project_name=\"p\\\"q\"} 3\n"));
    assert!(page.ends_with("\n# EOF\n"));
}

#[test]
fn push_series_are_on_the_page_only_once_push_delivered_something() {
    let quiet = render_page(
        &MetricsSnapshot {
            projects: vec![ProjectState {
                project_name: "p".into(),
                ..Default::default()
            }],
            ..Default::default()
        },
        chrono_tz::UTC,
        ExpositionFormat::PrometheusText,
        Duration::ZERO,
    );
    assert!(!quiet.contains("queue_seconds") && !quiet.contains("devlake_events_"));
    let at = |s: &str| s.parse::<DateTime<Utc>>().unwrap();
    let page = render_page(
        &MetricsSnapshot {
            projects: vec![ProjectState {
                project_name: "p".into(),
                last_started: Some(crate::store::StartedPipeline {
                    pipeline_id: 4,
                    created_at: at("2026-11-28T10:00:00Z"),
                    began_at: at("2026-11-28T10:01:30.250Z"),
                }),
                ..Default::default()
            }],
            events: Some(crate::store::EventsReceived {
                received_at: at("2026-11-28T10:01:31.500Z"),
                pipeline_id: 4,
                status: "TASK_RUNNING".into(),
                project_name: "p".into(),
            }),
            ..Default::default()
        },
        chrono_tz::UTC,
        ExpositionFormat::PrometheusText,
        Duration::ZERO,
    );
    assert!(page.contains(
        "# TYPE devlake_project_last_pipeline_queue_seconds gauge\n\
         devlake_project_last_pipeline_queue_seconds{project_name=\"p\"} 90.25\n"
    ));
    assert!(page.contains(
        "# TYPE devlake_events_last_received_timestamp_seconds gauge\n\
         devlake_events_last_received_timestamp_seconds 1795860091.5\n"
    ));
}

#[test]
fn a_failure_reason_and_connection_health_are_one_series_each() {
    use crate::failure_cause::FailureCause;
    let failed_at = utc("2026-11-28T10:00:00Z");
    let snapshot = MetricsSnapshot {
        projects: vec![
            ProjectState {
                project_name: "with".into(),
                last_failure_at: Some(failed_at),
                last_failure_reason: Some(FailureCause::RateLimit),
                ..Default::default()
            },
            // Written before causes existed: no reason rather than a guess.
            ProjectState {
                project_name: "older".into(),
                last_failure_at: Some(failed_at),
                ..Default::default()
            },
        ],
        connections: vec![
            ConnectionHealth {
                plugin: "jira".into(),
                connection_id: 2,
                connection_name: "jira \"cloud\"".into(),
                up: true,
                status: 200,
                message: String::new(),
            },
            ConnectionHealth {
                plugin: "github".into(),
                connection_id: 10,
                connection_name: "gh".into(),
                up: false,
                status: 400,
                message: "StatusUnauthorized error when testing connection (400)".into(),
            },
            ConnectionHealth {
                plugin: "github".into(),
                connection_id: 9,
                connection_name: "gh-old".into(),
                up: true,
                status: 200,
                message: String::new(),
            },
        ],
        ..Default::default()
    };
    let page = render_page(
        &snapshot,
        chrono_tz::UTC,
        ExpositionFormat::PrometheusText,
        Duration::ZERO,
    );
    let lines: Vec<&str> = page
        .lines()
        .filter(|l| {
            l.starts_with("devlake_project_last_failure_reason")
                || l.starts_with("devlake_connection_up")
        })
        .collect();
    assert_eq!(
        lines,
        [
            "devlake_project_last_failure_reason{project_name=\"with\",reason=\"rate_limit\"} 1",
            "devlake_connection_up{plugin=\"github\",connection_id=\"10\",connection_name=\"gh\"} 0",
            "devlake_connection_up{plugin=\"github\",connection_id=\"9\",connection_name=\"gh-old\"} 1",
            "devlake_connection_up{plugin=\"jira\",connection_id=\"2\",connection_name=\"jira \\\"cloud\\\"\"} 1",
        ]
    );
    // DevLake's message never reaches the page (it may be long and is for the run summary).
    assert!(!page.contains("StatusUnauthorized"));
}

#[test]
fn decode_errors_are_on_the_page_only_when_there_are_some() {
    let clean = render_page(
        &MetricsSnapshot::default(),
        chrono_tz::UTC,
        ExpositionFormat::PrometheusText,
        Duration::ZERO,
    );
    assert!(!clean.contains(DECODE_ERRORS));
    let page = render_page(
        &MetricsSnapshot {
            decode_errors: 2,
            ..Default::default()
        },
        chrono_tz::UTC,
        ExpositionFormat::PrometheusText,
        Duration::ZERO,
    );
    assert!(page
        .contains("# TYPE devlake_metrics_decode_errors gauge\ndevlake_metrics_decode_errors 2\n"));
}
