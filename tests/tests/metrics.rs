//! The metrics function: rendering (golden files + promtool), HTTP handling in-process and through
//! the real function under `cargo lambda watch`, the DynamoDB read path against DynamoDB Local,
//! and a real Prometheus server scraping it end to end.
//!
//! `UPDATE_GOLDEN=1 cargo test --workspace --test metrics` rewrites `tests/golden/*`.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use aws_sdk_dynamodb::types::{AttributeValue, PutRequest, WriteRequest};
use chrono::{DateTime, Duration as ChronoDuration, Utc};
use chrono_tz::Tz;
use devlake_autopilot::failure_cause::FailureCause;
use devlake_autopilot::metrics_http::http::{header, Method, Request, Response, StatusCode};
use devlake_autopilot::metrics_http::{MetricsService, MetricsToken};
use devlake_autopilot::render::{self, ExpositionFormat};
use devlake_autopilot::snapshot::page::PreparedPage;
use devlake_autopilot::snapshot::publish_after_commit;
use devlake_autopilot::store::{
    keys, ConnectionHealth, DynamoStore, FailureEvent, Job, LiveRecords, MetricsSnapshot,
    MetricsSource, ProjectState, PublishedState, RunRecord,
};
use devlake_testkit::dynamo_calls::DynamoCallCounter;
use devlake_testkit::golden::{assert_golden, golden_path};
use devlake_testkit::stack::{dynamodb_local, free_port, local_sdk_config};
use serde::Serialize;

const TZ: Tz = chrono_tz::Asia::Ho_Chi_Minh;
const TOKEN: &str = "tok-3f9a1c7e5b2d4a60-metrics-secret";
/// The failure window of the page and of the projects' recent lists (`FAILURE_WINDOW_DAYS`).
const WINDOW: ChronoDuration = ChronoDuration::days(7);

// ---------------------------------------------------------------------------------------------
// Fixtures
// ---------------------------------------------------------------------------------------------

fn utc(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

/// Project names an operator can really have (DevLake allows nearly anything), chosen to break
/// naive escaping: quotes, backslashes, a newline, non-ASCII, slashes.
const API: &str = "github/acme/api";
const QUOTED: &str = "gitlab/team \"quoted\"/svc";
const BACKSLASH: &str = "jira/C:\\path\\proj";
const NEWLINE: &str = "jenkins/multi\nline";
const UNICODE: &str = "github/ünïcødé/项目-🚀";

fn failure(project: &str, finished: DateTime<Utc>, pipeline_id: u64) -> FailureEvent {
    FailureEvent {
        project_name: project.to_string(),
        blueprint_id: 7,
        pipeline_id,
        status: "TASK_FAILED".to_string(),
        finished_at: finished,
        began_at: Some(finished - ChronoDuration::seconds(90)),
        message: "collector failed: rate limited".to_string(),
        error_name: "Error".to_string(),
        cause: FailureCause::RateLimit,
    }
}

fn project(name: &str) -> ProjectState {
    ProjectState {
        project_name: name.to_string(),
        blueprint_id: 7,
        ..Default::default()
    }
}

fn run(job: Job, finished: &str, success: bool, up: Option<bool>) -> RunRecord {
    RunRecord {
        job,
        finished_at: utc(finished),
        success,
        devlake_up: up,
        duration_ms: 1234,
        summary: serde_json::json!({"status": if success { "ok" } else { "partial" }}),
    }
}

/// The store state behind the golden files (now = 2026-11-28T11:00:00Z).
fn golden_snapshot() -> MetricsSnapshot {
    let api = ProjectState {
        last_status: Some("TASK_FAILED".into()),
        last_finished_at: Some(utc("2026-11-28T10:00:00.750Z")),
        last_success_at: Some(utc("2026-11-26T11:30:00Z")),
        last_failure_at: Some(utc("2026-11-28T10:00:00.750Z")),
        last_failure_reason: Some(FailureCause::Auth),
        last_duration_seconds: Some(312.5),
        failures_total: 12,
        consecutive_failures: 3,
        ..project(API)
    };
    let quoted = ProjectState {
        last_status: Some("TASK_COMPLETED".into()),
        last_finished_at: Some(utc("2026-11-28T09:00:00Z")),
        last_success_at: Some(utc("2026-11-28T09:00:00Z")),
        last_failure_at: Some(utc("2026-11-22T03:04:05Z")),
        last_duration_seconds: Some(61.0),
        failures_total: 1,
        // Its blueprint's latest scheduled run left no pipeline.
        schedule_missed: true,
        ..project(QUOTED)
    };
    // Never finished a pipeline, one running far too long that a cancel did not stop.
    let backslash = ProjectState {
        stuck: true,
        stuck_cancel_failed: true,
        ..project(BACKSLASH)
    };
    let newline = ProjectState {
        last_status: Some("TASK_PARTIAL".into()),
        last_finished_at: Some(utc("2026-11-27T23:15:00Z")),
        last_failure_at: Some(utc("2026-11-27T23:15:00Z")),
        last_failure_reason: Some(FailureCause::Timeout),
        last_duration_seconds: Some(4.25),
        failures_total: 2,
        consecutive_failures: 2,
        ..project(NEWLINE)
    };
    let unicode = ProjectState {
        last_status: Some("TASK_FAILED".into()),
        last_finished_at: Some(utc("2026-11-21T17:00:00Z")),
        last_failure_at: Some(utc("2026-11-21T17:00:00Z")),
        failures_total: 1,
        consecutive_failures: 1,
        ..project(UNICODE)
    };
    // `quoted` and `unicode` failed before causes existed: they carry no reason.
    MetricsSnapshot {
        // Out of name order on purpose: the page must not depend on input order.
        projects: vec![unicode, newline, api, backslash, quoted],
        connections: vec![
            ConnectionHealth {
                plugin: "gitlab".into(),
                connection_id: 3,
                connection_name: "gitlab \"self-hosted\"".into(),
                up: false,
                status: 400,
                message: "StatusUnauthorized error when testing api or read_api permissions (400)"
                    .into(),
            },
            ConnectionHealth {
                plugin: "github".into(),
                connection_id: 1,
                connection_name: "github-acme".into(),
                up: true,
                status: 200,
                message: String::new(),
            },
        ],
        failures: vec![
            failure(API, utc("2026-11-28T10:00:00.750Z"), 1003),
            // Same project, same local second as the one above: one series with value 2.
            failure(API, utc("2026-11-28T10:00:00.250Z"), 1002),
            // 23:59:59 local on the 27th; one second later is the 28th local.
            failure(API, utc("2026-11-27T16:59:59Z"), 1001),
            failure(QUOTED, utc("2026-11-22T03:04:05Z"), 900),
            failure(NEWLINE, utc("2026-11-27T23:15:00Z"), 950),
            failure(NEWLINE, utc("2026-11-26T08:00:00Z"), 940),
            failure(UNICODE, utc("2026-11-21T17:00:00Z"), 800),
        ],
        decode_errors: 0,
        // Push not configured: the golden pages have no events series.
        events: None,
        automation: Some(RunRecord {
            summary: serde_json::json!({
                "status": "ok",
                "managedProjects": 4,
                "orphanScopeCounts": [
                    {"plugin": "github", "connectionId": 2, "count": 0},
                    {"plugin": "bitbucket_server", "connectionId": 1, "count": 2},
                    {"plugin": "github", "connectionId": 1, "count": 1},
                ],
            }),
            ..run(Job::Automation, "2026-11-27T11:02:03Z", true, None)
        }),
        monitor: Some(run(
            Job::Monitor,
            "2026-11-28T10:55:00.500Z",
            false,
            Some(true),
        )),
    }
}

// ---------------------------------------------------------------------------------------------
// Golden files and promtool
// ---------------------------------------------------------------------------------------------

fn promtool() -> PathBuf {
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("promtool"))
            .find(|p| p.is_file())
    });
    on_path
        .or_else(|| Some(PathBuf::from("/usr/bin/promtool")).filter(|p| p.is_file()))
        .expect("promtool not found on PATH or in /usr/bin; run `bash infra/local/setup.sh`")
}

/// `promtool check metrics` on `page`: exit 0 means valid and free of lint warnings (3 would be
/// warnings only, 1 a parse error); both are failures here.
fn promtool_check(page: &str) {
    use std::io::Write;
    let mut child = Command::new(promtool())
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run promtool");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(page.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "promtool check metrics failed:\nstdout: {}\nstderr: {}\npage:\n{page}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Series identities (`name{labels}`) of a 0.0.4 or OpenMetrics page; panics on a repeat, which
/// would make Prometheus reject the scrape.
fn series(page: &str) -> BTreeMap<String, String> {
    let mut seen = BTreeMap::new();
    for line in page
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let (id, value) = line.rsplit_once(' ').expect("sample line has a value");
        assert!(
            seen.insert(id.to_string(), value.to_string()).is_none(),
            "duplicate series {id}"
        );
    }
    seen
}

fn golden_page(format: ExpositionFormat) -> String {
    render::render_page(
        &golden_snapshot(),
        TZ,
        format,
        Duration::from_micros(12_500),
    )
}

#[test]
fn golden_prometheus_text_page() {
    let page = golden_page(ExpositionFormat::PrometheusText);
    assert_golden("metrics.prom", &page);
}

#[test]
fn golden_openmetrics_page() {
    let page = golden_page(ExpositionFormat::OpenMetrics);
    assert_golden("metrics.openmetrics.txt", &page);
}

#[test]
fn rendered_page_passes_promtool_and_has_every_metric() {
    let page = golden_page(ExpositionFormat::PrometheusText);
    promtool_check(&page);

    for name in [
        "devlake_blueprint_failure_total",
        "devlake_project_pipeline_failures_total",
        "devlake_project_consecutive_failures",
        "devlake_project_last_failure_timestamp_seconds",
        "devlake_project_last_success_timestamp_seconds",
        "devlake_project_last_pipeline_status",
        "devlake_project_last_pipeline_duration_seconds",
        "devlake_project_pipeline_stuck",
        "devlake_project_schedule_missed",
        "devlake_project_stuck_cancel_failed",
        "devlake_monitor_last_run_timestamp_seconds",
        "devlake_monitor_last_run_success",
        "devlake_automation_last_run_timestamp_seconds",
        "devlake_automation_last_run_success",
        "devlake_up",
        "devlake_metrics_render_duration_seconds",
    ] {
        assert!(page.contains(&format!("# HELP {name} ")), "HELP of {name}");
        assert!(page.contains(&format!("# TYPE {name} ")), "TYPE of {name}");
    }

    let s = series(&page);
    // The compatibility series: original label names, local time, same-second failures summed.
    assert_eq!(
        s["devlake_blueprint_failure_total{project_name=\"github/acme/api\",time_failed=\"2026-11-28 17:00:00\"}"],
        "2"
    );
    assert_eq!(
        s["devlake_blueprint_failure_total{project_name=\"github/acme/api\",time_failed=\"2026-11-27 23:59:59\"}"],
        "1"
    );
    // Escaping of awkward names, as Prometheus reads them back.
    assert!(s.contains_key(
        "devlake_project_pipeline_stuck{project_name=\"gitlab/team \\\"quoted\\\"/svc\"}"
    ));
    assert_eq!(
        s["devlake_project_pipeline_stuck{project_name=\"jira/C:\\\\path\\\\proj\"}"],
        "1"
    );
    assert!(s.contains_key(
        "devlake_project_pipeline_failures_total{project_name=\"jenkins/multi\\nline\"}"
    ));
    assert!(s.contains_key(
        "devlake_project_last_pipeline_status{project_name=\"github/ünïcødé/项目-🚀\",status=\"TASK_FAILED\"}"
    ));
    // 7 failures, two of them in one second: 6 compatibility series.
    assert_eq!(
        s.keys()
            .filter(|k| k.starts_with("devlake_blueprint_failure_total{"))
            .count(),
        6
    );
    // Values that operators alert on.
    assert_eq!(
        s["devlake_project_last_success_timestamp_seconds{project_name=\"github/acme/api\"}"],
        "1795692600"
    );
    assert_eq!(
        s["devlake_monitor_last_run_timestamp_seconds"],
        "1795863300.5"
    );
    assert_eq!(s["devlake_monitor_last_run_success"], "0");
    assert_eq!(s["devlake_up"], "1");
    assert_eq!(
        s["devlake_project_consecutive_failures{project_name=\"github/acme/api\"}"],
        "3"
    );
    // Missed scheduled runs and cancels that did not take: 0/1 for every project.
    for (family, flagged) in [
        (
            "devlake_project_schedule_missed",
            "gitlab/team \\\"quoted\\\"/svc",
        ),
        (
            "devlake_project_stuck_cancel_failed",
            "jira/C:\\\\path\\\\proj",
        ),
    ] {
        let rows: Vec<(&String, &String)> = s
            .iter()
            .filter(|(k, _)| k.starts_with(&format!("{family}{{")))
            .collect();
        assert_eq!(rows.len(), 5, "{family}: one series per project");
        for (k, v) in rows {
            let want = if k.contains(flagged) { "1" } else { "0" };
            assert_eq!(v, want, "{k}");
        }
    }
    // No sample timestamps: every sample line is `series value`.
    for line in page.lines().filter(|l| !l.starts_with('#')) {
        let value = line.rsplit_once(' ').unwrap().1;
        assert!(value.parse::<f64>().is_ok(), "{line}");
        assert!(!line.ends_with('}'), "{line}");
    }
}

#[test]
fn page_is_deterministic_whatever_the_input_order() {
    let mut shuffled = golden_snapshot();
    shuffled.projects.reverse();
    shuffled.failures.reverse();
    let a = golden_page(ExpositionFormat::PrometheusText);
    let b = render::render_page(
        &shuffled,
        TZ,
        ExpositionFormat::PrometheusText,
        Duration::from_micros(12_500),
    );
    assert_eq!(a, b);
}

#[test]
fn openmetrics_page_has_the_same_samples_and_family_names_without_total() {
    let text = golden_page(ExpositionFormat::PrometheusText);
    let om = golden_page(ExpositionFormat::OpenMetrics);
    assert!(om.ends_with("# EOF\n"));
    assert!(om.contains("# TYPE devlake_blueprint_failure counter\n"));
    assert!(om.contains("# TYPE devlake_project_pipeline_failures counter\n"));
    assert!(!om.contains("# TYPE devlake_blueprint_failure_total"));
    assert_eq!(series(&text), series(&om));
}

// ---------------------------------------------------------------------------------------------
// The published snapshot: the page kept between scrapes is the page rendered whole
// ---------------------------------------------------------------------------------------------

/// `projects` with each one's `failures` in its recent-failure list, as a publisher stores them.
fn published(projects: &[ProjectState], failures: &[FailureEvent]) -> PublishedState {
    let projects = projects
        .iter()
        .map(|p| {
            let mine: Vec<FailureEvent> = failures
                .iter()
                .filter(|f| f.project_name == p.project_name)
                .cloned()
                .collect();
            with_failures(p.clone(), &mine)
        })
        .collect();
    PublishedState {
        projects,
        decode_errors: 0,
    }
}

/// The live records of `snapshot` (run records, the notification mark), as a scrape reads them.
fn live_records(snapshot: &MetricsSnapshot) -> LiveRecords {
    LiveRecords {
        automation: snapshot.automation.clone(),
        monitor: snapshot.monitor.clone(),
        events: snapshot.events.clone(),
        connections: snapshot.connections.clone(),
        decode_errors: 0,
    }
}

fn single_member_gunzip(bytes: &[u8]) -> String {
    use std::io::Read;
    let mut out = String::new();
    // `GzDecoder` reads one member only: the whole page must be in it.
    flate2::read::GzDecoder::new(bytes)
        .read_to_string(&mut out)
        .expect("one valid gzip member");
    out
}

/// Serves `page` at `now` in `format`, plain and gzip, and checks both are `expected`.
fn assert_serves(
    page: &mut PreparedPage,
    now: DateTime<Utc>,
    format: ExpositionFormat,
    live: &MetricsSnapshot,
    expected: &str,
) {
    for gzip in [false, true] {
        let served = page.serve(now - WINDOW, format, gzip, live_records(live), || {
            Duration::from_micros(12_500)
        });
        assert_eq!(served.gzip, gzip);
        let body = if gzip {
            single_member_gunzip(&served.body)
        } else {
            String::from_utf8(served.body).unwrap()
        };
        assert_eq!(served.page_bytes, body.len());
        if body != expected {
            let line = expected.lines().zip(body.lines()).position(|(a, b)| a != b);
            panic!("{format:?} gzip={gzip} at {now}: differs at line {line:?}\n{body}");
        }
    }
}

#[test]
fn the_published_page_is_the_golden_page_gzip_or_not() {
    let golden = golden_snapshot();
    let state = published(&golden.projects, &golden.failures);
    let mut page = PreparedPage::new(1, state, TZ);
    let now = utc("2026-11-28T11:00:00Z");
    for (format, file) in [
        (ExpositionFormat::PrometheusText, "metrics.prom"),
        (ExpositionFormat::OpenMetrics, "metrics.openmetrics.txt"),
    ] {
        let expected = std::fs::read_to_string(golden_path(file)).unwrap();
        // Twice: the first scrape renders, the second serves what the first kept.
        assert_serves(&mut page, now, format, &golden, &expected);
        assert_serves(&mut page, now, format, &golden, &expected);
    }
}

/// The kept page follows the window: failures leave it scrape by scrape (time forward, and back
/// for a clock that stepped), and the bytes stay those of the page rendered whole from the
/// direct read of the same state, malformed entries counted alike.
#[test]
fn the_published_page_follows_the_window_at_every_scrape() {
    let start = utc("2026-11-28T11:00:00Z");
    let projects: Vec<ProjectState> = (0..40)
        .map(|i| ProjectState {
            failures_total: i,
            last_status: Some("TASK_FAILED".into()),
            last_failure_at: Some(start - ChronoDuration::hours(i as i64)),
            ..project(&format!("github/acme/svc-{i:02}"))
        })
        .chain([project(QUOTED), project(UNICODE)])
        .collect();
    // 3,000 failures over the last 9 days, several parts' worth, some in the same second.
    let failures: Vec<FailureEvent> = (0..3_000u64)
        .map(|i| {
            let back = ChronoDuration::seconds((i * 259) as i64 % (9 * 86_400));
            let name = match i % 42 {
                40 => QUOTED.to_string(),
                41 => UNICODE.to_string(),
                n => format!("github/acme/svc-{n:02}"),
            };
            let ms = if i % 7 == 0 { 0 } else { 250 };
            failure(&name, start - back - ChronoDuration::milliseconds(ms), i)
        })
        .collect();
    let mut state = published(&projects, &failures);
    // Entries that do not parse, one before the window and one after any time.
    let broken = &mut state.projects[3].recent_failures;
    broken.push("2026-11-10T00:00:00.000Z#x".into());
    broken.push("garbage".into());
    broken.sort();
    let live = golden_snapshot();
    let mut page = PreparedPage::new(9, state.clone(), TZ);
    let mut parts_seen = 0;
    for now in [
        start,
        start + ChronoDuration::seconds(1),
        start + ChronoDuration::minutes(7),
        start + ChronoDuration::hours(30),
        start - ChronoDuration::days(3),
        start - ChronoDuration::days(20),
        start + ChronoDuration::days(10),
    ] {
        let direct =
            MetricsSnapshot::from_parts(state.projects.clone(), now - WINDOW, live_records(&live));
        parts_seen = parts_seen.max(direct.failures.len());
        for format in [
            ExpositionFormat::PrometheusText,
            ExpositionFormat::OpenMetrics,
        ] {
            let expected = render::render_page(&direct, TZ, format, Duration::from_micros(12_500));
            assert_serves(&mut page, now, format, &live, &expected);
        }
    }
    assert!(parts_seen > 2 * devlake_autopilot::snapshot::page::FAILURES_PER_PART);
}

/// Through the service: before any publish the page is the direct read; a commit is on the page
/// at the first scrape after its publish; the kept page is served until the next version.
#[tokio::test]
async fn a_commit_is_on_the_page_at_the_first_scrape_after_its_publish() {
    use devlake_autopilot::store::{MemoryStore, MonitorStore, ProjectCommit, RunLog};

    let service = MetricsService::new(MemoryStore::new(), MetricsToken::new(TOKEN).unwrap(), TZ, 7);
    let store = service.source();
    let now = Utc::now();
    let scrape = || async { text(&service.handle(&get("/metrics", Some(TOKEN)), now).await) };
    let commit = |name: &'static str, pipeline_id: u64, revision: Option<u64>| async move {
        let event = failure(
            name,
            now - ChronoDuration::hours(pipeline_id as i64),
            pipeline_id,
        );
        // As the monitor does: the stored state (with its recent failures) plus the event.
        let state = ProjectState {
            failures_total: revision.unwrap_or(0) + 1,
            ..store.project(name).unwrap_or_else(|| project(name))
        };
        store
            .commit_project(ProjectCommit {
                state: &state,
                expected_revision: revision,
                events: std::slice::from_ref(&event),
                retention: ChronoDuration::days(90),
            })
            .await
            .unwrap();
        event
    };
    let series_of = |e: &FailureEvent| {
        format!(
            "devlake_blueprint_failure_total{{project_name=\"{}\",time_failed=\"{}\"}} 1\n",
            e.project_name,
            render_local(e.finished_at)
        )
    };

    let first = commit(API, 1, None).await;
    store
        .record_run(&run(Job::Monitor, "2026-11-28T10:55:00Z", true, Some(true)))
        .await
        .unwrap();
    // Nothing published yet: read directly.
    assert!(scrape().await.contains(&series_of(&first)));
    publish_after_commit(store, now).await.unwrap();
    let page = scrape().await;
    assert!(page.contains(&series_of(&first)), "{page}");
    assert!(page.contains("\ndevlake_up 1\n"));
    promtool_check(&page);

    // Committed, not yet published: the page is the published state.
    let second = commit(API, 2, Some(1)).await;
    assert!(!scrape().await.contains(&series_of(&second)));
    publish_after_commit(store, now).await.unwrap();
    let page = scrape().await;
    assert!(
        page.contains(&series_of(&first)) && page.contains(&series_of(&second)),
        "{page}"
    );
    // A run record needs no publish: every scrape reads it.
    store
        .record_run(&run(
            Job::Monitor,
            "2026-11-28T10:55:00Z",
            true,
            Some(false),
        ))
        .await
        .unwrap();
    assert!(scrape().await.contains("\ndevlake_up 0\n"));
}

/// A page whose response would exceed the function URL's 6 MB is refused with a reason instead
/// of failing in Lambda: uncompressed, 406 naming gzip (the compressed page still fits);
/// compressed, 503.
#[tokio::test]
async fn a_page_too_large_for_a_function_url_is_refused_with_a_reason() {
    use devlake_autopilot::store::{MemoryStore, MonitorStore, ProjectCommit};

    let now = Utc::now();
    let store = MemoryStore::new();
    for i in 0..300 {
        let state = ProjectState {
            failures_total: 3,
            last_status: Some("TASK_FAILED".into()),
            ..project(&format!("github/acme-engineering/service-{i:05}"))
        };
        let events: Vec<FailureEvent> = (0..3)
            .map(|k| {
                failure(
                    &state.project_name,
                    now - ChronoDuration::hours(k),
                    i * 10 + k as u64,
                )
            })
            .collect();
        store
            .commit_project(ProjectCommit {
                state: &state,
                expected_revision: None,
                events: &events,
                retention: ChronoDuration::days(90),
            })
            .await
            .unwrap();
    }
    publish_after_commit(&store, now).await.unwrap();
    let service = MetricsService::new(store, MetricsToken::new(TOKEN).unwrap(), TZ, 7)
        .with_response_limit(60_000);
    let plain = service.handle(&get("/metrics", Some(TOKEN)), now).await;
    assert_eq!(plain.status(), StatusCode::NOT_ACCEPTABLE);
    assert!(
        text(&plain).contains("Accept-Encoding: gzip"),
        "{}",
        text(&plain)
    );
    let mut gz = get("/metrics", Some(TOKEN));
    gz.headers_mut()
        .insert(header::ACCEPT_ENCODING, "gzip".parse().unwrap());
    let compressed = service.handle(&gz, now).await;
    assert_eq!(compressed.status(), StatusCode::OK);
    assert!(text(&compressed).len() > 60_000);
    assert_eq!(
        series_count(&text(&compressed), "devlake_blueprint_failure_total{"),
        900
    );

    let tiny = MetricsService::new(MemoryStore::new(), MetricsToken::new(TOKEN).unwrap(), TZ, 7)
        .with_response_limit(1_000);
    let refused = tiny.handle(&gz, now).await;
    assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
}

// ---------------------------------------------------------------------------------------------
// DynamoDB Local: seeding per the store contract, and the read path
// ---------------------------------------------------------------------------------------------

/// An item as the store writes it: `serde_dynamo::to_item` of the type, plus keys, plus an
/// attribute no reader knows (readers must ignore unknown attributes).
fn item<T: Serialize>(value: &T, pk: &str, sk: &str) -> HashMap<String, AttributeValue> {
    let mut item: HashMap<String, AttributeValue> = serde_dynamo::to_item(value).unwrap();
    item.insert(keys::PK.into(), AttributeValue::S(pk.into()));
    item.insert(keys::SK.into(), AttributeValue::S(sk.into()));
    item.insert("writtenBy".into(), AttributeValue::S("metrics-test".into()));
    item
}

fn failure_item(event: &FailureEvent) -> HashMap<String, AttributeValue> {
    let mut it = item(
        event,
        &keys::failure_pk(event.finished_at.date_naive()),
        &keys::failure_sk(event.finished_at, event.pipeline_id),
    );
    let expires = event.finished_at + ChronoDuration::days(90);
    it.insert(
        keys::EXPIRES_AT.into(),
        AttributeValue::N(expires.timestamp().to_string()),
    );
    it
}

/// A project item in the store's own layout, plus an attribute no reader knows.
fn project_item(state: &ProjectState) -> HashMap<String, AttributeValue> {
    let mut item = devlake_autopilot::store::project_item(state, 1).unwrap();
    item.insert("writtenBy".into(), AttributeValue::S("metrics-test".into()));
    item
}

/// `state` with `events` in its recent-failures list, as the monitor's commit leaves it.
fn with_failures(mut state: ProjectState, events: &[FailureEvent]) -> ProjectState {
    state.add_recent_failures(events);
    state
}

fn run_item(run: &RunRecord) -> HashMap<String, AttributeValue> {
    item(run, keys::RUN_PK, run.job.as_str())
}

/// BatchWriteItem in chunks of 25, resubmitting unprocessed items.
async fn write_items(
    client: &aws_sdk_dynamodb::Client,
    table: &str,
    items: Vec<HashMap<String, AttributeValue>>,
) {
    for chunk in items.chunks(25) {
        let mut requests: Vec<WriteRequest> = chunk
            .iter()
            .map(|i| {
                WriteRequest::builder()
                    .put_request(
                        PutRequest::builder()
                            .set_item(Some(i.clone()))
                            .build()
                            .unwrap(),
                    )
                    .build()
            })
            .collect();
        while !requests.is_empty() {
            let out = client
                .batch_write_item()
                .request_items(table, requests)
                .send()
                .await
                .expect("BatchWriteItem");
            requests = out
                .unprocessed_items
                .and_then(|mut u| u.remove(table))
                .unwrap_or_default();
        }
    }
}

struct Store {
    store: DynamoStore,
    calls: DynamoCallCounter,
    writer: aws_sdk_dynamodb::Client,
    table: String,
}

/// A fresh table, a store reading it through a counted client, and a plain client for seeding.
async fn store(prefix: &str) -> Store {
    let local = dynamodb_local().await;
    let table = local.create_table(prefix).await;
    let calls = DynamoCallCounter::default();
    let store = DynamoStore::new(calls.client(&local_sdk_config(local.endpoint())), &table);
    Store {
        store,
        calls,
        writer: local.client(),
        table,
    }
}

#[tokio::test]
async fn reads_exactly_the_failures_inside_the_window() {
    let s = store("metrics-window").await;
    let now = utc("2026-11-28T11:00:00Z");
    let since = now - ChronoDuration::days(7);
    let inside = [
        failure(API, since, 1),                                   // boundary: included
        failure(API, since + ChronoDuration::milliseconds(1), 2), // first day, after since
        failure(QUOTED, now - ChronoDuration::hours(1), 3),       // today
        failure(UNICODE, now + ChronoDuration::hours(14), 4),     // tomorrow's bucket (clock skew)
        failure(NEWLINE, utc("2026-11-24T00:00:00Z"), 5),         // a middle day
    ];
    let outside = [
        failure(API, since - ChronoDuration::milliseconds(1), 10), // same day bucket, before since
        failure(API, since - ChronoDuration::days(1), 11),
        failure(API, utc("2026-09-01T00:00:00Z"), 12),
    ];
    let all: Vec<FailureEvent> = inside.iter().chain(outside.iter()).cloned().collect();
    // The failure items stay what operators read; the page reads the projects' lists.
    write_items(&s.writer, &s.table, all.iter().map(failure_item).collect()).await;
    let of = |name: &str| -> Vec<FailureEvent> {
        all.iter()
            .filter(|f| f.project_name == name)
            .cloned()
            .collect()
    };
    write_items(
        &s.writer,
        &s.table,
        vec![
            project_item(&with_failures(
                ProjectState {
                    failures_total: 4,
                    ..project(API)
                },
                &of(API),
            )),
            project_item(&with_failures(project(QUOTED), &of(QUOTED))),
            project_item(&with_failures(project(UNICODE), &of(UNICODE))),
            project_item(&with_failures(project(NEWLINE), &of(NEWLINE))),
            run_item(&run(Job::Monitor, "2026-11-28T10:55:00Z", true, Some(true))),
        ],
    )
    .await;

    let snapshot = s.store.metrics_snapshot(since).await.unwrap();
    let mut got: Vec<u64> = snapshot.failures.iter().map(|f| f.pipeline_id).collect();
    got.sort();
    assert_eq!(got, vec![1, 2, 3, 4, 5]);
    // What the page renders comes back exactly as written.
    for written in &inside {
        let read = snapshot
            .failures
            .iter()
            .find(|f| f.pipeline_id == written.pipeline_id)
            .unwrap();
        assert_eq!(
            (&read.project_name, read.finished_at),
            (&written.project_name, written.finished_at)
        );
    }
    let mut names = vec![API, QUOTED, UNICODE, NEWLINE];
    names.sort();
    assert_eq!(
        snapshot
            .projects
            .iter()
            .map(|p| p.project_name.as_str())
            .collect::<Vec<_>>(),
        names
    );
    let api = snapshot.projects.iter().find(|p| p.project_name == API);
    assert_eq!(api.unwrap().failures_total, 4);
    assert!(snapshot.automation.is_none());
    assert_eq!(snapshot.monitor.as_ref().unwrap().devlake_up, Some(true));

    // One project Query (the failure buckets are not read), one BatchGetItem; no Scan.
    let calls = s.calls.by_operation();
    assert_eq!(calls.get("Query"), Some(&1), "{calls:?}");
    assert_eq!(calls.get("BatchGetItem"), Some(&1), "{calls:?}");
    assert_eq!(calls.get("Scan"), None);
}

#[tokio::test]
async fn calls_per_scrape_do_not_grow_with_history() {
    let s = store("metrics-history").await;
    let now = Utc::now();
    let service = MetricsService::new(s.store.clone(), MetricsToken::new(TOKEN).unwrap(), TZ, 7);
    let recent: Vec<FailureEvent> = (0..50)
        .map(|i| failure(API, now - ChronoDuration::hours(i * 3), i as u64))
        .collect();
    let mut api = project(API);
    api.remember_failures(&recent, now, WINDOW);
    write_items(
        &s.writer,
        &s.table,
        recent
            .iter()
            .map(failure_item)
            .chain(std::iter::once(project_item(&api)))
            .chain((0..20).map(|i| project_item(&project(&format!("github/acme/p{i}")))))
            .collect(),
    )
    .await;

    let first = service.handle(&get("/metrics", Some(TOKEN)), now).await;
    assert_eq!(first.status(), StatusCode::OK);
    let before = s.calls.total();
    assert_eq!(
        series_count(&text(&first), "devlake_blueprint_failure_total{"),
        50
    );

    // A year of history outside the window, recorded the way the monitor records it: the
    // failure items stay, the project's list keeps only the window (its commits and the daily
    // expiry see to it).
    let history: Vec<FailureEvent> = (0..600)
        .map(|i| {
            failure(
                API,
                now - ChronoDuration::days(8) - ChronoDuration::hours(i * 14),
                10_000 + i as u64,
            )
        })
        .collect();
    api.remember_failures(&history, now, WINDOW);
    assert_eq!(api.recent_failures.len(), 50);
    write_items(
        &s.writer,
        &s.table,
        history
            .iter()
            .map(failure_item)
            .chain(std::iter::once(project_item(&api)))
            .collect(),
    )
    .await;
    s.calls.reset();
    let second = service.handle(&get("/metrics", Some(TOKEN)), now).await;
    assert_eq!(second.status(), StatusCode::OK);
    assert_eq!(
        s.calls.total(),
        before,
        "calls per scrape changed with history"
    );
    assert_eq!(
        series_count(&text(&second), "devlake_blueprint_failure_total{"),
        50
    );
    assert_eq!(s.calls.by_operation().get("Scan"), None);
}

#[tokio::test]
async fn large_days_and_project_lists_are_read_across_pages() {
    let s = store("metrics-pages").await;
    let now = utc("2026-11-28T11:00:00Z");
    let long_message = "x".repeat(600);
    let events: Vec<FailureEvent> = (0..3_000)
        .map(|i| {
            failure(
                &format!("github/acme/repo-{:04}", i % 1_500),
                utc("2026-11-27T00:00:00Z") + ChronoDuration::seconds(i),
                i as u64,
            )
        })
        .collect();
    // 1,500 projects × ~750 bytes (a padded status plus two recent failures): more than
    // DynamoDB's 1 MB per Query page, so the PROJECT partition spans pages.
    let projects: Vec<ProjectState> = (0..1_500)
        .map(|i| {
            let name = format!("github/acme/repo-{i:04}");
            let mine: Vec<FailureEvent> = events
                .iter()
                .filter(|e| e.project_name == name)
                .cloned()
                .collect();
            with_failures(
                ProjectState {
                    last_status: Some(long_message.clone()),
                    ..project(&name)
                },
                &mine,
            )
        })
        .collect();
    write_items(
        &s.writer,
        &s.table,
        projects.iter().map(project_item).collect(),
    )
    .await;

    let snapshot = s
        .store
        .metrics_snapshot(now - ChronoDuration::days(7))
        .await
        .unwrap();
    assert_eq!(snapshot.failures.len(), 3_000);
    assert_eq!(snapshot.projects.len(), 1_500);
    let ids: HashSet<u64> = snapshot.failures.iter().map(|f| f.pipeline_id).collect();
    assert_eq!(ids.len(), 3_000);
    for f in &snapshot.failures {
        let written = &events[f.pipeline_id as usize];
        assert_eq!(
            (&f.project_name, f.finished_at),
            (&written.project_name, written.finished_at)
        );
    }
    // More than one Query means the PROJECT pages were followed.
    let queries = s.calls.by_operation()["Query"];
    assert!(queries > 1, "expected paginated Queries, got {queries}");
}

/// At 10,000 projects (20,000 failures in the window) a scrape of the published snapshot costs at
/// most two DynamoDB calls, one once the instance holds the version; the compressed response
/// fits a function URL, and the uncompressed one is answered only if it fits too (else 406).
#[tokio::test]
async fn a_scrape_at_10000_projects_costs_at_most_two_calls_and_fits_a_function_url() {
    use devlake_autopilot::metrics_http::FUNCTION_URL_RESPONSE_LIMIT;

    let s = store("metrics-10k").await;
    let now = Utc::now();
    let states: Vec<ProjectState> = (0..10_000u64)
        .map(|i| {
            let name = format!("github/acme-engineering/service-{i:05}");
            let events = [
                failure(&name, now - ChronoDuration::hours(2), i * 2),
                failure(&name, now - ChronoDuration::days(3), i * 2 + 1),
            ];
            with_failures(
                ProjectState {
                    last_status: Some("TASK_FAILED".into()),
                    last_finished_at: Some(now - ChronoDuration::hours(2)),
                    last_success_at: Some(now - ChronoDuration::days(4)),
                    last_failure_at: Some(now - ChronoDuration::hours(2)),
                    last_duration_seconds: Some(300.0 + i as f64),
                    failures_total: 2 + i % 40,
                    consecutive_failures: 2,
                    stuck: i % 97 == 0,
                    ..project(&name)
                },
                &events,
            )
        })
        .collect();
    write_items(
        &s.writer,
        &s.table,
        states.iter().map(project_item).collect(),
    )
    .await;
    let publisher = DynamoStore::new(s.writer.clone(), &s.table);
    let publication = publish_after_commit(&publisher, now).await.unwrap();
    assert!(
        matches!(
            publication,
            devlake_autopilot::snapshot::Publication::Published {
                projects: 10_000,
                ..
            }
        ),
        "{publication:?}"
    );

    let service = MetricsService::new(s.store.clone(), MetricsToken::new(TOKEN).unwrap(), TZ, 7);
    let mut prometheus = get("/metrics", Some(TOKEN));
    prometheus
        .headers_mut()
        .insert(header::ACCEPT_ENCODING, "gzip".parse().unwrap());
    s.calls.reset();
    let first = service.handle(&prometheus, now).await;
    assert_eq!(first.status(), StatusCode::OK);
    assert_eq!(
        s.calls.by_operation(),
        [("BatchGetItem".to_string(), 2)].into()
    );
    s.calls.reset();
    let second = service.handle(&prometheus, now).await;
    assert_eq!(
        s.calls.by_operation(),
        [("BatchGetItem".to_string(), 1)].into()
    );
    let page = text(&second);
    assert_eq!(
        series_count(&page, "devlake_blueprint_failure_total{"),
        20_000
    );
    assert_eq!(
        series_count(&page, "devlake_project_pipeline_stuck{"),
        10_000
    );
    // Base64 in the function's response document.
    let gzip_document = second.body().len().div_ceil(3) * 4;
    assert!(
        gzip_document < FUNCTION_URL_RESPONSE_LIMIT / 4,
        "{gzip_document}"
    );

    let plain = service.handle(&get("/metrics", Some(TOKEN)), now).await;
    eprintln!(
        "10,000 projects: {} bytes gzip, {} bytes uncompressed, uncompressed answer {}",
        second.body().len(),
        page.len(),
        plain.status()
    );
    match plain.status() {
        StatusCode::OK => assert_eq!(without_duration(&text(&plain)), without_duration(&page)),
        // Only a page near or over the limit (JSON escaping adds a few percent).
        StatusCode::NOT_ACCEPTABLE => assert!(page.len() > FUNCTION_URL_RESPONSE_LIMIT * 9 / 10),
        other => panic!("uncompressed answer {other}"),
    }
}

fn without_duration(page: &str) -> String {
    page.lines()
        .filter(|l| !l.starts_with(render::RENDER_DURATION))
        .collect::<Vec<_>>()
        .join("\n")
}

fn series_count(page: &str, prefix: &str) -> usize {
    page.lines().filter(|l| l.starts_with(prefix)).count()
}

// ---------------------------------------------------------------------------------------------
// HTTP handling in-process (fast), against DynamoDB Local
// ---------------------------------------------------------------------------------------------

fn request(method: Method, path: &str, auth: Option<&str>) -> Request<()> {
    let mut b = Request::builder().method(method).uri(path);
    if let Some(a) = auth {
        b = b.header(header::AUTHORIZATION, a);
    }
    b.body(()).unwrap()
}

fn get(path: &str, token: Option<&str>) -> Request<()> {
    request(
        Method::GET,
        path,
        token.map(|t| format!("Bearer {t}")).as_deref(),
    )
}

/// The body as text, gunzipped when the response says it is compressed.
fn text(resp: &Response<Vec<u8>>) -> String {
    let bytes = if resp
        .headers()
        .get(header::CONTENT_ENCODING)
        .is_some_and(|v| v == "gzip")
    {
        gunzip(resp.body())
    } else {
        resp.body().clone()
    };
    String::from_utf8(bytes).expect("UTF-8 body")
}

fn gunzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Read;
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(bytes)
        .read_to_end(&mut out)
        .expect("valid gzip");
    out
}

fn assert_unauthorized(resp: &Response<Vec<u8>>, what: &str) {
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "{what}");
    assert_eq!(
        resp.headers()
            .get(header::WWW_AUTHENTICATE)
            .map(|v| v.to_str().unwrap()),
        Some("Bearer"),
        "{what}"
    );
    assert_eq!(text(resp), "unauthorized\n", "{what}");
}

/// Every (method, path, Authorization) that must be refused before anything else happens.
fn unauthenticated_cases() -> Vec<(Method, &'static str, Option<String>)> {
    let mut cases = Vec::new();
    let auths: Vec<Option<String>> = vec![
        None,
        Some(String::new()),
        Some("Bearer".into()),
        Some("Bearer ".into()),
        Some(format!("Basic {TOKEN}")),
        Some(format!("Bearer {}", &TOKEN[..TOKEN.len() - 1])),
        Some(format!("Bearer {TOKEN}x")),
        Some(format!("Bearer {}", TOKEN.to_uppercase())),
        Some("Bearer wrong-token".into()),
        Some(TOKEN.to_string()),
    ];
    for (method, path) in [
        (Method::GET, "/metrics"),
        (Method::GET, "/"),
        (Method::POST, "/metrics"),
        (Method::DELETE, "/"),
        (Method::HEAD, "/metrics"),
        (Method::GET, "/nope"),
        (Method::PUT, "/admin"),
    ] {
        for auth in &auths {
            cases.push((method.clone(), path, auth.clone()));
        }
    }
    cases
}

/// A store that must never be read: requests without a valid token are refused before it.
struct UnreadStore;

#[async_trait::async_trait]
impl MetricsSource for UnreadStore {
    async fn snapshot(
        &self,
        _: DateTime<Utc>,
    ) -> Result<MetricsSnapshot, devlake_autopilot::store::StoreError> {
        panic!("the store was read for a request without a valid token")
    }
}

/// Anyone who knows the function URL can send requests without the token: a flood of them must
/// not become a flood of INFO lines (CloudWatch Logs bills by the byte). Each is a DEBUG line,
/// INFO lines grow with the logarithm of the count and tell it, and the token never appears.
#[tokio::test]
async fn refused_requests_do_not_write_an_info_line_each() {
    // Its log lines are checked: alone in a process, no other test can disable their callsites.
    if !devlake_testkit::log_capture::alone("refused_requests_do_not_write_an_info_line_each") {
        return;
    }
    use devlake_testkit::log_capture::Capture;

    let capture = Capture::default();
    let _guard = tracing::subscriber::set_default(capture.clone());
    let service = MetricsService::new(UnreadStore, MetricsToken::new(TOKEN).unwrap(), TZ, 7);
    let now = Utc::now();
    let cases = unauthenticated_cases();
    let sent = 1000;
    for (method, path, auth) in cases.iter().cycle().take(sent) {
        let resp = service
            .handle(&request(method.clone(), path, auth.as_deref()), now)
            .await;
        assert_unauthorized(&resp, &format!("{method} {path} {auth:?}"));
    }

    let log = capture.text();
    let lines: Vec<&str> = log.lines().filter(|l| l.contains("status=401")).collect();
    let info: Vec<&str> = lines
        .iter()
        .copied()
        .filter(|l| l.starts_with("INFO "))
        .collect();
    let debug = lines.iter().filter(|l| l.starts_with("DEBUG ")).count();
    assert_eq!(info.len() + debug, sent, "one line per refusal:\n{log}");
    assert!(
        !info.is_empty() && info.len() <= 11,
        "{} INFO lines for {sent} refusals:\n{}",
        info.len(),
        info.join("\n")
    );
    // The INFO lines carry the running count, so the size of a flood is still visible.
    let counts: Vec<u64> = info
        .iter()
        .map(|l| {
            let field = l
                .split_whitespace()
                .find_map(|f| f.strip_prefix("refused="))
                .unwrap_or_else(|| panic!("no count in {l}"));
            field.parse().unwrap()
        })
        .collect();
    assert_eq!(counts[0], 1, "the first refusal is always visible");
    assert!(counts.windows(2).all(|w| w[0] < w[1]), "{counts:?}");
    assert!(
        *counts.last().unwrap() * 2 > sent as u64,
        "the last INFO line understates the flood: {counts:?}"
    );
    assert!(!log.contains(TOKEN), "token in the log");
    assert!(
        !log.contains(&TOKEN[..TOKEN.len() - 1]),
        "token prefix in the log"
    );
}

#[tokio::test]
async fn http_auth_routing_and_negotiation_in_process() {
    let s = store("metrics-http").await;
    let now = Utc::now();
    write_items(
        &s.writer,
        &s.table,
        vec![
            failure_item(&failure(QUOTED, now - ChronoDuration::hours(2), 42)),
            project_item(&with_failures(
                ProjectState {
                    failures_total: 1,
                    ..project(QUOTED)
                },
                &[failure(QUOTED, now - ChronoDuration::hours(2), 42)],
            )),
        ],
    )
    .await;
    let service = MetricsService::new(s.store.clone(), MetricsToken::new(TOKEN).unwrap(), TZ, 7);

    for (method, path, auth) in unauthenticated_cases() {
        let resp = service
            .handle(&request(method.clone(), path, auth.as_deref()), now)
            .await;
        assert_unauthorized(&resp, &format!("{method} {path} {auth:?}"));
        assert!(!text(&resp).contains(TOKEN));
    }
    // Valid token, but wrong path or method: refused without reading the store either.
    let not_found = service.handle(&get("/nope", Some(TOKEN)), now).await;
    assert_eq!(not_found.status(), StatusCode::NOT_FOUND);
    let not_found = service
        .handle(&get("/metrics/extra", Some(TOKEN)), now)
        .await;
    assert_eq!(not_found.status(), StatusCode::NOT_FOUND);
    for method in [
        Method::POST,
        Method::PUT,
        Method::DELETE,
        Method::HEAD,
        Method::PATCH,
    ] {
        let bearer = format!("Bearer {TOKEN}");
        let resp = service
            .handle(&request(method.clone(), "/metrics", Some(&bearer)), now)
            .await;
        assert_eq!(resp.status(), StatusCode::METHOD_NOT_ALLOWED, "{method}");
        assert_eq!(resp.headers()[header::ALLOW], "GET");
    }
    assert_eq!(
        s.calls.total(),
        0,
        "store read before authentication/routing"
    );

    // The page, on both paths, with the scheme in any case.
    let page = service
        .handle(
            &request(Method::GET, "/metrics", Some(&format!("bearer {TOKEN}"))),
            now,
        )
        .await;
    assert_eq!(page.status(), StatusCode::OK);
    assert_eq!(
        page.headers()[header::CONTENT_TYPE],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    assert!(s.calls.total() > 0);
    let root = service.handle(&get("/", Some(TOKEN)), now).await;
    assert_eq!(root.status(), StatusCode::OK);
    let without_duration = |p: &str| {
        p.lines()
            .filter(|l| !l.starts_with(render::RENDER_DURATION))
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(
        without_duration(&text(&page)),
        without_duration(&text(&root))
    );
    promtool_check(&text(&page));
    let local = render_local(now - ChronoDuration::hours(2));
    assert!(text(&page).contains(&format!(
        "devlake_blueprint_failure_total{{project_name=\"gitlab/team \\\"quoted\\\"/svc\",time_failed=\"{local}\"}} 1\n"
    )));

    // OpenMetrics when asked for it, 0.0.4 with its own content type otherwise.
    let mut om = get("/metrics", Some(TOKEN));
    om.headers_mut().insert(
        header::ACCEPT,
        "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"
            .parse()
            .unwrap(),
    );
    let om = service.handle(&om, now).await;
    assert_eq!(
        om.headers()[header::CONTENT_TYPE],
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    assert!(text(&om).ends_with("# EOF\n"));
    let mut old_om = get("/metrics", Some(TOKEN));
    old_om.headers_mut().insert(
        header::ACCEPT,
        "application/openmetrics-text;version=0.0.1"
            .parse()
            .unwrap(),
    );
    let old_om = service.handle(&old_om, now).await;
    assert_eq!(
        old_om.headers()[header::CONTENT_TYPE],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    assert!(!text(&old_om).contains("# EOF"));

    // Compressed when the client accepts gzip (as Prometheus does), plain otherwise.
    assert!(page.headers().get(header::CONTENT_ENCODING).is_none());
    let mut gz = get("/metrics", Some(TOKEN));
    gz.headers_mut()
        .insert(header::ACCEPT_ENCODING, "gzip".parse().unwrap());
    let gz = service.handle(&gz, now).await;
    assert_eq!(gz.status(), StatusCode::OK);
    assert_eq!(gz.headers()[header::CONTENT_ENCODING], "gzip");
    assert!(gz.body().len() < text(&gz).len());
    assert_eq!(without_duration(&text(&gz)), without_duration(&text(&page)));
}

fn render_local(t: DateTime<Utc>) -> String {
    devlake_autopilot::time_rules::format_local(t, TZ)
}

#[tokio::test]
async fn store_failure_answers_503_without_a_partial_page() {
    // Nothing listens on this port: every DynamoDB call fails to connect.
    let endpoint = format!("http://127.0.0.1:{}", free_port().unwrap());
    let store = DynamoStore::new(
        aws_sdk_dynamodb::Client::new(&local_sdk_config(&endpoint)),
        "missing",
    );
    let err = store.snapshot(Utc::now()).await.unwrap_err();
    assert!(err.is_retryable(), "{err}");
    let service = MetricsService::new(store, MetricsToken::new(TOKEN).unwrap(), TZ, 7);
    let resp = service
        .handle(&get("/metrics", Some(TOKEN)), Utc::now())
        .await;
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(text(&resp), "store unavailable\n");
    assert!(!text(&resp).contains("devlake_"));
    // Authentication still comes first when the store is down.
    let resp = service.handle(&get("/metrics", None), Utc::now()).await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);

    // A table that does not exist: not retryable, still 503.
    let local = dynamodb_local().await;
    let store = DynamoStore::new(local.client(), "no-such-table");
    let err = store.snapshot(Utc::now()).await.unwrap_err();
    assert!(!err.is_retryable(), "{err}");
    let service = MetricsService::new(store, MetricsToken::new(TOKEN).unwrap(), TZ, 7);
    let resp = service
        .handle(&get("/metrics", Some(TOKEN)), Utc::now())
        .await;
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
}

/// One malformed item (written by hand, or by another version) costs its own series, never the
/// page: it is skipped, logged and counted in `devlake_metrics_decode_errors`.
#[tokio::test]
async fn a_malformed_item_is_skipped_and_counted_not_a_blank_page() {
    let s = store("metrics-decode").await;
    let now = Utc::now();
    let good = with_failures(
        ProjectState {
            failures_total: 1,
            ..project(API)
        },
        &[failure(API, now - ChronoDuration::hours(2), 42)],
    );
    let mut broken_state = project_item(&project(QUOTED));
    broken_state.insert("state".into(), AttributeValue::S("{not json".into()));
    let mut bad_recent = project_item(&project(NEWLINE));
    // A recent failure whose key does not parse: that entry alone is skipped.
    bad_recent.insert(
        "state".into(),
        AttributeValue::S(
            serde_json::json!({"projectName": NEWLINE, "blueprintId": 1, "consecutiveFailures": 0,
                   "stuck": false, "recentFailures": "garbage"})
            .to_string(),
        ),
    );
    let mut broken_run = run_item(&run(Job::Monitor, "2026-11-27T11:02:03Z", true, Some(true)));
    broken_run.insert("success".into(), AttributeValue::S("maybe".into()));
    write_items(
        &s.writer,
        &s.table,
        vec![project_item(&good), broken_state, bad_recent, broken_run],
    )
    .await;

    let service = MetricsService::new(s.store.clone(), MetricsToken::new(TOKEN).unwrap(), TZ, 7);
    let resp = service.handle(&get("/metrics", Some(TOKEN)), now).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let page = text(&resp);
    promtool_check(&page);
    assert!(
        page.contains(&format!(
            "devlake_project_pipeline_failures_total{{project_name=\"{API}\"}} 1\n"
        )),
        "{page}"
    );
    assert!(
        page.contains("devlake_blueprint_failure_total{project_name=\""),
        "{page}"
    );
    // The project with one bad recent-failure entry is still on the page.
    assert_eq!(
        page.matches("devlake_project_pipeline_stuck{").count(),
        2,
        "{page}"
    );
    // The broken state, the broken recent entry and the broken run record.
    assert!(
        page.contains(
            "# TYPE devlake_metrics_decode_errors gauge\ndevlake_metrics_decode_errors 3\n"
        ),
        "{page}"
    );
    assert!(
        !page.contains("devlake_monitor_last_run_timestamp_seconds"),
        "{page}"
    );

    // Fixed items: the series goes away and the page is what it always was.
    write_items(
        &s.writer,
        &s.table,
        vec![
            project_item(&project(QUOTED)),
            project_item(&project(NEWLINE)),
        ],
    )
    .await;
    s.writer
        .delete_item()
        .table_name(&s.table)
        .key(keys::PK, AttributeValue::S(keys::RUN_PK.into()))
        .key(keys::SK, AttributeValue::S("monitor".into()))
        .send()
        .await
        .unwrap();
    let page = text(&service.handle(&get("/metrics", Some(TOKEN)), now).await);
    assert!(!page.contains("devlake_metrics_decode_errors"), "{page}");
    promtool_check(&page);
}

// ---------------------------------------------------------------------------------------------
// The real function under `cargo lambda watch`, through its function URL
// ---------------------------------------------------------------------------------------------

use devlake_autopilot::store::{MonitorStore, ProjectCommit, RunLog};
use devlake_testkit::lambda_watch::LambdaWatch;

const WRONG_TOKEN: &str = "tok-0000-wrong-but-plausible-4b1d";
const FUNCTION: &str = "devlake-metrics";

/// Failures written the way the monitor writes them: through the store's own commit (failure
/// events and project state in one transaction) and run log.
async fn record_like_the_monitor(store: &DynamoStore, now: DateTime<Utc>) -> Vec<FailureEvent> {
    let events = vec![
        failure(QUOTED, now - ChronoDuration::hours(3), 501),
        failure(QUOTED, now - ChronoDuration::hours(1), 502),
        failure(NEWLINE, now - ChronoDuration::days(2), 601),
        failure(UNICODE, now - ChronoDuration::minutes(30), 701),
    ];
    for name in [QUOTED, NEWLINE, UNICODE] {
        let mine: Vec<FailureEvent> = events
            .iter()
            .filter(|e| e.project_name == name)
            .cloned()
            .collect();
        let last = mine.iter().map(|e| e.finished_at).max();
        let state = ProjectState {
            last_status: Some("TASK_FAILED".into()),
            last_finished_at: last,
            last_failure_at: last,
            failures_total: mine.len() as u64,
            consecutive_failures: mine.len() as u64,
            ..project(name)
        };
        store
            .commit_project(ProjectCommit {
                state: &state,
                expected_revision: None,
                events: &mine,
                retention: ChronoDuration::days(90),
            })
            .await
            .expect("commit project");
    }
    let monitor = RunRecord {
        finished_at: now - ChronoDuration::minutes(2),
        ..run(Job::Monitor, "2026-01-01T00:00:00Z", true, Some(true))
    };
    store.record_run(&monitor).await.expect("record run");
    events
}

/// The environment the function gets in AWS, pointed at DynamoDB Local.
fn function_env<'a>(endpoint: &'a str, table: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("TABLE_NAME", table),
        ("METRICS_TOKEN", TOKEN),
        ("TIMEZONE", "Asia/Ho_Chi_Minh"),
        ("FAILURE_WINDOW_DAYS", "7"),
        ("AWS_ENDPOINT_URL_DYNAMODB", endpoint),
        ("AWS_REGION", "us-east-1"),
        ("AWS_ACCESS_KEY_ID", "AKIDLOCAL"),
        ("AWS_SECRET_ACCESS_KEY", "local-secret"),
    ]
}

struct Answer {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: String,
}

async fn send(
    http: &reqwest::Client,
    method: &str,
    url: &str,
    headers: &[(&str, String)],
) -> Answer {
    let mut req = http.request(reqwest::Method::from_bytes(method.as_bytes()).unwrap(), url);
    for (name, value) in headers {
        req = req.header(*name, value);
    }
    let resp = req
        .send()
        .await
        .unwrap_or_else(|e| panic!("{method} {url}: {e}"));
    Answer {
        status: resp.status().as_u16(),
        headers: resp.headers().clone(),
        body: resp.text().await.unwrap(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn function_url_auth_method_path_and_formats_under_cargo_lambda_watch() {
    let s = store("metrics-watch").await;
    let now = Utc::now();
    let written = record_like_the_monitor(&s.store, now).await;
    let endpoint = dynamodb_local().await.endpoint().to_string();
    let watch = LambdaWatch::start(&function_env(&endpoint, &s.table)).await;
    let base = watch.function_url(FUNCTION);
    let http = reqwest::Client::new();
    let mut bodies = Vec::new();

    // Warm the function up (its first request starts the process).
    let first = send(&http, "GET", &format!("{base}/metrics"), &[]).await;
    assert_eq!(first.status, 401, "{}\n{}", first.body, watch.log());

    for (method, path, auth) in unauthenticated_cases() {
        let headers: Vec<(&str, String)> =
            auth.iter().map(|a| ("authorization", a.clone())).collect();
        let a = send(&http, method.as_str(), &format!("{base}{path}"), &headers).await;
        assert_eq!(a.status, 401, "{method} {path} {auth:?}: {}", a.body);
        assert_eq!(a.headers["www-authenticate"], "Bearer", "{method} {path}");
        bodies.push(a.body);
    }

    let bearer = vec![("authorization", format!("Bearer {TOKEN}"))];
    for path in ["/nope", "/metrics/x", "/metrics.txt"] {
        let a = send(&http, "GET", &format!("{base}{path}"), &bearer).await;
        assert_eq!(a.status, 404, "{path}");
        bodies.push(a.body);
    }
    for method in ["POST", "PUT", "DELETE", "PATCH"] {
        let a = send(&http, method, &format!("{base}/metrics"), &bearer).await;
        assert_eq!(a.status, 405, "{method}");
        assert_eq!(a.headers["allow"], "GET", "{method}");
        bodies.push(a.body);
    }

    // The function URL's root and /metrics (with and without the trailing slash on the root).
    let mut pages = Vec::new();
    for path in ["/metrics", "/", ""] {
        let a = send(&http, "GET", &format!("{base}{path}"), &bearer).await;
        assert_eq!(a.status, 200, "{path:?}: {}\n{}", a.body, watch.log());
        assert_eq!(
            a.headers["content-type"], "text/plain; version=0.0.4; charset=utf-8",
            "{path:?}"
        );
        pages.push(a.body);
    }
    let page = &pages[0];
    promtool_check(page);
    // Samples without the self-timing, which differs from scrape to scrape.
    let timeless = |page: &str| {
        let mut s = series(page);
        assert!(s.remove(render::RENDER_DURATION).is_some());
        s
    };
    let s_ = series(page);
    for e in &written {
        let id = format!(
            "devlake_blueprint_failure_total{{project_name=\"{}\",time_failed=\"{}\"}}",
            e.project_name
                .replace('\\', "\\\\")
                .replace('"', "\\\"")
                .replace('\n', "\\n"),
            render_local(e.finished_at)
        );
        assert_eq!(
            s_.get(&id).map(String::as_str),
            Some("1"),
            "{id} in\n{page}"
        );
    }
    assert_eq!(
        s_["devlake_project_pipeline_failures_total{project_name=\"gitlab/team \\\"quoted\\\"/svc\"}"],
        "2"
    );
    assert_eq!(s_["devlake_up"], "1");

    // Gzip through the function URL (the body travels base64-encoded inside the Lambda response).
    let gz = http
        .get(format!("{base}/metrics"))
        .bearer_auth(TOKEN)
        .header("accept-encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(gz.status(), 200);
    assert_eq!(gz.headers()["content-encoding"], "gzip");
    let unzipped = String::from_utf8(gunzip(&gz.bytes().await.unwrap())).unwrap();
    assert_eq!(timeless(&unzipped), timeless(page));

    // OpenMetrics on request, with its own content type, intact through the function URL.
    let om = send(
        &http,
        "GET",
        &format!("{base}/metrics"),
        &[
            ("authorization", format!("Bearer {TOKEN}")),
            (
                "accept",
                "application/openmetrics-text; version=1.0.0".to_string(),
            ),
        ],
    )
    .await;
    assert_eq!(om.status, 200);
    assert_eq!(
        om.headers["content-type"],
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    assert!(om.body.ends_with("# EOF\n"), "{}", om.body);
    assert_eq!(timeless(&om.body), timeless(page));
    bodies.extend(pages);
    bodies.push(om.body);

    // The token never leaves the function: not in any answer, not in anything it logged —
    // although requests carried it (and near-misses of it) in their headers.
    let log = watch.log();
    assert!(
        log.contains("metrics rendered"),
        "function log not captured:\n{log}"
    );
    assert!(!log.contains(TOKEN), "token in the function log");
    assert!(
        !log.contains(&TOKEN[..TOKEN.len() - 1]),
        "token prefix in the log"
    );
    for body in &bodies {
        assert!(!body.contains(TOKEN), "token in a response body");
    }
}

// ---------------------------------------------------------------------------------------------
// End to end: a real Prometheus server scraping the function URL
// ---------------------------------------------------------------------------------------------

/// A `prometheus` server on a free port with its own storage; killed on drop, and by the kernel
/// if the test process dies first.
struct Prometheus {
    child: std::process::Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    fn start(config: &str, dir: tempfile::TempDir) -> Prometheus {
        use std::os::unix::process::CommandExt;
        let binary = ["/usr/bin/prometheus"]
            .iter()
            .map(PathBuf::from)
            .chain(std::env::var_os("PATH").into_iter().flat_map(|p| {
                std::env::split_paths(&p)
                    .map(|d| d.join("prometheus"))
                    .collect::<Vec<_>>()
            }))
            .find(|p| p.is_file())
            .expect("prometheus not found; run `bash infra/local/setup.sh`");
        let config_path = dir.path().join("prometheus.yml");
        std::fs::write(&config_path, config).unwrap();
        let port = free_port().unwrap();
        let log = std::fs::File::create(dir.path().join("prometheus.log")).unwrap();
        let mut cmd = Command::new(binary);
        cmd.arg(format!("--config.file={}", config_path.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--log.level=warn")
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        // SAFETY: prctl is async-signal-safe and allocates nothing.
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().expect("start prometheus");
        Prometheus {
            child,
            url: format!("http://127.0.0.1:{port}"),
            _dir: dir,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self._dir.path().join("prometheus.log")).unwrap_or_default()
    }

    /// The instant vector of `query`, as (labels, value) pairs; empty while Prometheus is not up.
    async fn query(&self, query: &str) -> Vec<(BTreeMap<String, String>, String)> {
        let resp = reqwest::Client::new()
            .get(format!("{}/api/v1/query", self.url))
            .query(&[("query", query)])
            .send()
            .await;
        let Ok(resp) = resp else { return Vec::new() };
        let Ok(json) = resp.json::<serde_json::Value>().await else {
            return Vec::new();
        };
        json["data"]["result"]
            .as_array()
            .map(|results| {
                results
                    .iter()
                    .map(|r| {
                        let labels = r["metric"]
                            .as_object()
                            .unwrap()
                            .iter()
                            .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
                            .collect();
                        (labels, r["value"][1].as_str().unwrap().to_string())
                    })
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_the_function_url_end_to_end() {
    let s = store("metrics-e2e").await;
    let now = Utc::now();
    let written = record_like_the_monitor(&s.store, now).await;
    let endpoint = dynamodb_local().await.endpoint().to_string();
    let watch = LambdaWatch::start(&function_env(&endpoint, &s.table)).await;

    let dir = tempfile::Builder::new()
        .prefix("devlake-prometheus-")
        .tempdir()
        .unwrap();
    let good = dir.path().join("token");
    let bad = dir.path().join("wrong-token");
    std::fs::write(&good, TOKEN).unwrap();
    std::fs::write(&bad, WRONG_TOKEN).unwrap();
    let target = format!("127.0.0.1:{}", watch.port());
    let path = format!("/lambda-url/{FUNCTION}/metrics");
    let config = format!(
        r#"global:
  scrape_interval: 1s
  scrape_timeout: 1s
scrape_configs:
  - job_name: devlake-metrics
    metrics_path: {path}
    authorization:
      type: Bearer
      credentials_file: {good}
    static_configs:
      - targets: ["{target}"]
  - job_name: devlake-metrics-wrong-token
    metrics_path: {path}
    authorization:
      type: Bearer
      credentials_file: {bad}
    static_configs:
      - targets: ["{target}"]
"#,
        good = good.display(),
        bad = bad.display(),
    );
    let prometheus = Prometheus::start(&config, dir);

    let expected: BTreeSet<(String, String)> = written
        .iter()
        .map(|e| (e.project_name.clone(), render_local(e.finished_at)))
        .collect();
    let deadline = std::time::Instant::now() + Duration::from_secs(180);
    loop {
        let up_good = prometheus
            .query("up{job=\"devlake-metrics\"}")
            .await
            .first()
            .map(|(_, v)| v.clone());
        let up_bad = prometheus
            .query("up{job=\"devlake-metrics-wrong-token\"}")
            .await
            .first()
            .map(|(_, v)| v.clone());
        let failures: BTreeSet<(String, String)> = prometheus
            .query("devlake_blueprint_failure_total{job=\"devlake-metrics\"} == 1")
            .await
            .into_iter()
            .map(|(l, _)| (l["project_name"].clone(), l["time_failed"].clone()))
            .collect();
        if up_good.as_deref() == Some("1") && up_bad.as_deref() == Some("0") && failures == expected
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "Prometheus never saw the page: up={up_good:?}, wrong-token up={up_bad:?}, \
             failures={failures:?} (expected {expected:?})\nprometheus log:\n{}\nwatch log:\n{}",
            prometheus.log(),
            watch.log()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    // Per-project series and the function's own health, as Prometheus stored them.
    let total = prometheus
        .query("devlake_project_pipeline_failures_total{job=\"devlake-metrics\"}")
        .await;
    let quoted = total
        .iter()
        .find(|(l, _)| l["project_name"] == QUOTED)
        .expect("per-project counter of the quoted project");
    assert_eq!(quoted.1, "2");
    assert_eq!(
        prometheus
            .query("devlake_up{job=\"devlake-metrics\"}")
            .await[0]
            .1,
        "1"
    );
    assert!(!prometheus
        .query("devlake_metrics_render_duration_seconds{job=\"devlake-metrics\"}")
        .await
        .is_empty());
    // Nothing from the wrong-token job ever got in.
    assert!(prometheus
        .query("{job=\"devlake-metrics-wrong-token\", __name__=~\"devlake_.*\"}")
        .await
        .is_empty());

    // Prometheus 2.x asks for OpenMetrics first: the page it parsed was the OpenMetrics one.
    let log = watch.log();
    assert!(
        log.contains("OpenMetrics"),
        "scrapes were not OpenMetrics:\n{log}"
    );
    assert!(
        !log.contains(TOKEN) && !log.contains(WRONG_TOKEN),
        "a token in the function log"
    );
    drop(prometheus);
}
