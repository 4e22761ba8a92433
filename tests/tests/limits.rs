//! Every input is bounded: what the functions write stays within the limits of where it goes
//! (DynamoDB's 400 KB item, CloudWatch Logs' 256 KB event, CloudWatch's dimension rules) at the
//! sizes this tool is built for.

use std::time::Duration;

use chrono::{DateTime, Utc};
use devlake_autopilot::automation::{self, AutomationConfig, Deadline, Ports};
use devlake_autopilot::devlake::{ClientConfig, DevLakeClient};
use devlake_testkit::sim::{Fixture, GeneratedSpec, Simulator};
use serde_json::json;

/// Saturday 2026-11-28 18:00 in Asia/Ho_Chi_Minh (the default schedule).
const NOW: &str = "2026-11-28T11:00:00Z";

fn t(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

struct Harness {
    sim: Simulator,
    client: DevLakeClient,
    config: AutomationConfig,
}

impl Harness {
    async fn new(fixture: Fixture) -> Harness {
        let sim = Simulator::start(fixture).await;
        let client = DevLakeClient::new(ClientConfig {
            endpoint: sim.url().to_string(),
            request_timeout: Duration::from_secs(30),
            retry_base_delay: Duration::from_millis(5),
            retry_max_delay: Duration::from_millis(20),
            ..ClientConfig::default()
        })
        .unwrap();
        Harness {
            sim,
            client,
            config: AutomationConfig {
                trigger_gap: Duration::ZERO,
                ..AutomationConfig::default()
            },
        }
    }

    fn sim(&self) -> devlake_testkit::sim::SimHandle {
        self.sim.handle()
    }
}

/// Every log line the process writes, as JSON lines. Installed as the global subscriber: a
/// thread-local one can miss events of callsites other tests' threads registered first, and this
/// file's tests are the only ones in their process.
#[derive(Clone, Default)]
struct LogCapture(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for LogCapture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl LogCapture {
    fn global() -> LogCapture {
        static CAPTURE: std::sync::OnceLock<LogCapture> = std::sync::OnceLock::new();
        CAPTURE
            .get_or_init(|| {
                let capture = LogCapture::default();
                let writer = capture.clone();
                tracing::subscriber::set_global_default(
                    tracing_subscriber::fmt()
                        .json()
                        .with_max_level(tracing::Level::INFO)
                        .with_writer(move || writer.clone())
                        .finish(),
                )
                .expect("the only global subscriber");
                capture
            })
            .clone()
    }

    fn lines(&self) -> Vec<String> {
        String::from_utf8_lossy(&self.0.lock().unwrap())
            .lines()
            .map(str::to_string)
            .collect()
    }
}

/// At 10,000 scopes whose project names are all taken, a run lists 10,000 conflicts: the answer
/// keeps them all, while the run record (one DynamoDB item, 400 KB at most, enforced by DynamoDB
/// Local) and every log line (CloudWatch Logs cuts at 256 KB) keep the first ones and the totals.
#[tokio::test]
async fn at_ten_thousand_projects_the_run_record_and_log_lines_stay_bounded() {
    use devlake_autopilot::store::{DynamoStore, MetricsSource};
    use devlake_testkit::sim::FixtureProject;
    use devlake_testkit::stack::{dynamodb_local, local_sdk_config};

    const REPOS: usize = 10_000;
    let started = std::time::Instant::now();
    let mut world = Fixture::generated(GeneratedSpec {
        connections: vec![("github".into(), 4)],
        repos_per_connection: REPOS / 4,
        groups_per_connection: 5,
        scoped_per_connection: REPOS / 4,
        remote_page_size: 1_000,
        ..GeneratedSpec::default()
    });
    // Someone already made a project under each name the template gives (unmanaged).
    for cid in 1..=4 {
        for r in 0..REPOS / 4 {
            world.projects.push(FixtureProject {
                name: format!("github/org{cid}-{}/repo-{r:05}", r % 5),
                ..FixtureProject::default()
            });
        }
    }
    let (h, ddb) = tokio::join!(Harness::new(world), dynamodb_local());
    let table = ddb.create_table("automation-10k").await;
    let store = DynamoStore::new(
        aws_sdk_dynamodb::Client::new(&local_sdk_config(ddb.endpoint())),
        &table,
    );
    let ports = Ports {
        devlake: &h.client,
        run_log: Some(&store),
        metrics: None,
    };
    let logs = LogCapture::global();
    let summary = {
        automation::handle(
            &h.config,
            ports,
            &json!({"scheduledTime": NOW, "steps": ["sync", "projects"]}),
            t(NOW),
            Deadline::none(),
        )
        .await
        .unwrap()
    };

    // The answer is complete.
    assert_eq!(summary["counts"]["projectsConflicting"], REPOS as u64);
    assert_eq!(summary["conflicts"].as_array().unwrap().len(), REPOS);
    assert!(summary.get("truncated").is_none());
    assert_eq!(
        h.sim().counts().writes,
        0,
        "every name is taken: nothing to create"
    );

    // The record was written (DynamoDB Local refuses an item over 400 KB) and is capped.
    let run = store
        .snapshot(t(NOW))
        .await
        .unwrap()
        .automation
        .expect("run record written");
    let recorded = &run.summary;
    assert_eq!(recorded["counts"]["projectsConflicting"], REPOS as u64);
    let kept = recorded["conflicts"].as_array().unwrap();
    assert_eq!(kept.len(), devlake_autopilot::limits::RECORD_LIST_LIMIT);
    assert_eq!(kept[0], summary["conflicts"][0]);
    assert_eq!(
        recorded["truncated"]["conflicts"],
        json!({"total": REPOS, "shown": kept.len()})
    );
    assert!(devlake_autopilot::limits::json_len(recorded) < 400 * 1024);

    // No log line over 256 KB; the closing line carries the capped summary.
    let lines = logs.lines();
    let longest = lines.iter().map(String::len).max().unwrap_or(0);
    assert!(longest <= 256 * 1024, "a log line of {longest} bytes");
    let closing = lines
        .iter()
        .find(|l| l.contains("automation run finished"))
        .expect("closing log line");
    assert!(
        closing.contains("truncated"),
        "{}",
        &closing[..closing.len().min(500)]
    );
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "took {:?}",
        started.elapsed()
    );
}

/// CloudWatch refuses a whole PutMetricData call for one dimension value it does not accept
/// (the double enforces the same rules): one odd project name must cost at most its own datum.
#[tokio::test]
async fn one_odd_project_name_never_costs_the_whole_metrics_batch() {
    use aws_sdk_cloudwatch::types::{Dimension, MetricDatum};
    use devlake_autopilot::cloudwatch::{Datum, MetricsSink};
    use devlake_autopilot::monitor::runtime::metrics_sink;
    use devlake_testkit::cloudwatch_double::CloudWatchDouble;
    use devlake_testkit::stack::local_sdk_config;

    let cw = CloudWatchDouble::start().await;
    let client = aws_sdk_cloudwatch::Client::new(&local_sdk_config(cw.url()));

    // As CloudWatch does, the double refuses the whole call for one bad value.
    let datum = |project: &str| {
        MetricDatum::builder()
            .metric_name("NewFailures")
            .value(1.0)
            .dimensions(
                Dimension::builder()
                    .name("ProjectName")
                    .value(project)
                    .build(),
            )
            .build()
    };
    let refused = client
        .put_metric_data()
        .namespace("DevLake/Autopilot")
        .metric_data(datum("github/acme/api"))
        .metric_data(datum("jira/Équipe"))
        .send()
        .await;
    assert!(refused.is_err(), "the double must refuse a non-ASCII value");
    assert!(cw.datums().is_empty());

    // The function's sink sends the batch with the odd name escaped and an empty one dropped.
    let sink = metrics_sink(client, "DevLake/Autopilot");
    sink.emit(&[
        Datum::run_success(true),
        Datum::count("NewFailures", 2.0).with_dimension("ProjectName", "github/acme/api"),
        Datum::count("NewFailures", 1.0).with_dimension("ProjectName", "jira/Équipe\nQA"),
        Datum::count("NewFailures", 1.0).with_dimension("ProjectName", "   "),
        Datum::count("NewFailures", 1.0).with_dimension("ProjectName", &"x".repeat(1025)),
    ])
    .await
    .expect("the batch is accepted");
    assert_eq!(cw.requests(), 2, "the refused call above and one batch");
    let sent: Vec<(String, Vec<(String, String)>)> = cw
        .datums()
        .into_iter()
        .map(|d| (d.metric_name, d.dimensions))
        .collect();
    let function = ("Function".to_string(), "monitor".to_string());
    assert_eq!(
        sent,
        vec![
            ("RunSuccess".to_string(), vec![function.clone()]),
            (
                "NewFailures".to_string(),
                vec![
                    function.clone(),
                    ("ProjectName".to_string(), "github/acme/api".to_string())
                ]
            ),
            (
                "NewFailures".to_string(),
                vec![
                    function,
                    (
                        "ProjectName".to_string(),
                        "jira/\\u{c9}quipe\\u{a}QA".to_string()
                    )
                ]
            ),
        ]
    );
}
