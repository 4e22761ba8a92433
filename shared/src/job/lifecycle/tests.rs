//! The lifecycle with a made-up job: what is recorded, emitted and answered for each way a
//! run can end. The jobs' own runs are covered against the simulator in `tests/tests`.

use std::sync::Mutex;

use serde::Serialize;
use serde_json::{json, Value};

use super::*;
use crate::cloudwatch::MemorySink;
use crate::devlake::{ClientConfig, DevLakeError};
use crate::store::MemoryStore;

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
struct TestSummary {
    status: RunStatus,
    errors: Vec<String>,
    devlake_calls: u64,
    duration_ms: u64,
}

impl TestSummary {
    fn with_errors(n: usize) -> Self {
        TestSummary {
            status: if n == 0 {
                RunStatus::Ok
            } else {
                RunStatus::Partial
            },
            errors: (0..n).map(|i| format!("item {i} failed")).collect(),
            devlake_calls: 0,
            duration_ms: 0,
        }
    }
}

impl JobSummary for TestSummary {
    const LISTS: &'static [&'static [&'static str]] = &[&["errors"]];
    fn status(&self) -> RunStatus {
        self.status
    }
    fn item_errors(&self) -> u64 {
        self.errors.len() as u64
    }
    fn set_figures(&mut self, calls: CallCounts, duration_ms: u64) {
        self.devlake_calls = calls.total();
        self.duration_ms = duration_ms;
    }
    fn datums(&self) -> Vec<Datum> {
        vec![Datum::count("Things", 3.0)]
    }
    fn log_finished(&self, _recorded: &Value) {}
}

/// A job whose body ends as told (once).
struct TestJob(Mutex<Option<Ran<TestSummary>>>);

impl TestJob {
    fn new(ran: Ran<TestSummary>) -> Self {
        TestJob(Mutex::new(Some(ran)))
    }
}

impl ScheduledJob for TestJob {
    type Summary = TestSummary;
    async fn body(&self, _devlake: &DevLakeClient) -> Ran<TestSummary> {
        self.0.lock().unwrap().take().expect("one run")
    }
    fn cut_short(&self, partial: Option<TestSummary>, stop: &Stop) -> TestSummary {
        let mut s = partial.unwrap_or_else(|| TestSummary::with_errors(0));
        s.errors.push(format!("cut short: {stop}"));
        s.status = RunStatus::Partial;
        s
    }
}

fn devlake() -> DevLakeClient {
    DevLakeClient::new(ClientConfig {
        endpoint: "http://127.0.0.1:9".into(),
        ..ClientConfig::default()
    })
    .unwrap()
}

fn inv(dry_run: bool, recorded: bool) -> Invocation {
    Invocation {
        started_at: "2026-11-28T11:00:00Z".parse().unwrap(),
        deadline: Deadline::none(),
        dry_run,
        recorded,
    }
}

const SPEC: JobSpec = JobSpec {
    job: Job::Monitor,
    devlake_up_datum: true,
};

fn refused() -> DevLakeError {
    DevLakeError::MigrationPending {
        method: "GET".into(),
        path: "/plugins".into(),
    }
}

fn values(sink: &MemorySink) -> Vec<(String, f64)> {
    sink.datums()
        .into_iter()
        .filter(|d| d.name != "RunDurationMs")
        .map(|d| (d.name, d.value))
        .collect()
}

fn names(list: &[(&str, f64)]) -> Vec<(String, f64)> {
    list.iter().map(|(n, v)| (n.to_string(), *v)).collect()
}

#[tokio::test]
async fn a_finished_run_is_recorded_emitted_and_answered() {
    let (store, sink, devlake) = (MemoryStore::new(), MemorySink::new(), devlake());
    let lifecycle = Lifecycle {
        spec: SPEC,
        devlake: &devlake,
        run_log: Some(&store),
        sink: Some(&sink),
    };
    let job = TestJob::new(Ran::Finished(TestSummary::with_errors(2)));
    let summary = lifecycle.run(&job, &inv(false, true), None).await.unwrap();
    assert_eq!(summary.status, RunStatus::Partial);
    let run = store.run(Job::Monitor).expect("recorded");
    assert!(!run.success, "partial is not a success");
    assert_eq!(run.devlake_up, Some(true));
    assert_eq!(run.summary["errors"].as_array().unwrap().len(), 2);
    assert_eq!(
        run.finished_at,
        inv(false, true).started_at + chrono::Duration::milliseconds(run.duration_ms as i64)
    );
    assert_eq!(
        values(&sink),
        names(&[
            ("RunSuccess", 0.0),
            ("Errors", 2.0),
            ("DevLakeUp", 1.0),
            ("Things", 3.0)
        ])
    );
    assert_eq!(sink.calls(), 1, "one batch");
}

#[tokio::test]
async fn a_stopped_run_keeps_one_failure_report_and_counts_one_more_error() {
    let (store, sink, devlake) = (MemoryStore::new(), MemorySink::new(), devlake());
    let lifecycle = Lifecycle {
        spec: SPEC,
        devlake: &devlake,
        run_log: Some(&store),
        sink: Some(&sink),
    };
    let job = TestJob::new(Ran::Stopped {
        stop: Stop::DevLake(refused()),
        partial: Some(TestSummary::with_errors(1)),
    });
    let stop = lifecycle
        .run(&job, &inv(false, true), None)
        .await
        .unwrap_err();
    assert!(matches!(
        stop,
        Stop::DevLake(DevLakeError::MigrationPending { .. })
    ));
    let run = store.run(Job::Monitor).unwrap();
    assert!(!run.success);
    assert_eq!(run.devlake_up, Some(false));
    let report = &run.summary;
    assert_eq!(report["status"], "failed");
    assert_eq!(report["errorType"], "DevLakeMigrationPending");
    assert!(report["error"]
        .as_str()
        .unwrap()
        .starts_with("DevLake is waiting for a database migration"));
    assert_eq!(report["devlakeCalls"], json!({"reads": 0, "writes": 0}));
    assert_eq!(report["partial"]["errors"], json!(["item 0 failed"]));
    assert_eq!(
        values(&sink),
        names(&[
            ("RunSuccess", 0.0),
            ("Errors", 2.0),
            ("DevLakeUp", 0.0),
            ("Things", 3.0)
        ])
    );

    // Without a summary: no `partial`, and only the run-level series.
    let sink = MemorySink::new();
    let lifecycle = Lifecycle {
        sink: Some(&sink),
        ..lifecycle
    };
    let job = TestJob::new(Ran::Stopped {
        stop: Stop::Store(StoreError::Unavailable {
            operation: "GetItem".into(),
            message: "throttled".into(),
            source: None,
        }),
        partial: None,
    });
    lifecycle
        .run(&job, &inv(false, true), None)
        .await
        .unwrap_err();
    let run = store.run(Job::Monitor).unwrap();
    assert_eq!(run.devlake_up, None, "stopped before asking DevLake");
    assert!(run.summary.get("partial").is_none());
    assert_eq!(run.summary["errorType"], "DynamoDbUnavailable");
    assert_eq!(
        values(&sink),
        names(&[("RunSuccess", 0.0), ("Errors", 1.0)])
    );
}

#[tokio::test]
async fn a_run_cut_off_by_the_deadline_answers_partial() {
    let (store, sink, devlake) = (MemoryStore::new(), MemorySink::new(), devlake());
    let lifecycle = Lifecycle {
        spec: SPEC,
        devlake: &devlake,
        run_log: Some(&store),
        sink: Some(&sink),
    };
    let job = TestJob::new(Ran::Stopped {
        stop: Stop::DevLake(DevLakeError::Deadline {
            method: "GET".into(),
            path: "/pipelines".into(),
        }),
        partial: None,
    });
    let summary = lifecycle.run(&job, &inv(false, true), None).await.unwrap();
    assert_eq!(summary.status, RunStatus::Partial);
    assert!(summary.errors[0].starts_with("cut short: the run's deadline"));
    let run = store.run(Job::Monitor).unwrap();
    assert_eq!((run.success, run.devlake_up), (false, Some(true)));
    assert_eq!(run.summary["status"], "partial");
}

#[tokio::test]
async fn dry_runs_write_nothing_and_actions_are_not_recorded() {
    let (store, sink, devlake) = (MemoryStore::new(), MemorySink::new(), devlake());
    let lifecycle = Lifecycle {
        spec: JobSpec {
            job: Job::Automation,
            devlake_up_datum: false,
        },
        devlake: &devlake,
        run_log: Some(&store),
        sink: Some(&sink),
    };
    let dry = inv(true, true);
    assert!(lifecycle
        .take_lease(&dry, Duration::ZERO)
        .await
        .unwrap()
        .is_none());
    let job = TestJob::new(Ran::Stopped {
        stop: Stop::DevLake(refused()),
        partial: None,
    });
    lifecycle.run(&job, &dry, None).await.unwrap_err();
    assert!(store.run(Job::Automation).is_none());
    assert_eq!(sink.calls(), 0);

    // A manual action: its errors are counted, nothing else run-level, no record.
    let job = TestJob::new(Ran::Finished(TestSummary::with_errors(1)));
    lifecycle.run(&job, &inv(false, false), None).await.unwrap();
    assert!(store.run(Job::Automation).is_none());
    assert_eq!(values(&sink), names(&[("Errors", 1.0), ("Things", 3.0)]));
}

/// A run log whose lease is held by someone else until released.
struct HeldLease(Mutex<Vec<String>>);

#[async_trait::async_trait]
impl RunLog for HeldLease {
    async fn record_run(&self, _run: &RunRecord) -> Result<(), StoreError> {
        Ok(())
    }
    async fn record_connection_health(
        &self,
        _record: &crate::store::ConnectionHealthRecord,
    ) -> Result<(), StoreError> {
        Ok(())
    }
    async fn acquire_lease(
        &self,
        _job: Job,
        holder: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<Result<(), LeaseHolder>, StoreError> {
        let mut held = self.0.lock().unwrap();
        if held.is_empty() {
            held.push(holder.to_string());
            return Ok(Ok(()));
        }
        Ok(Err(LeaseHolder {
            holder: held[0].clone(),
            acquired_at: now,
            until,
        }))
    }
    async fn release_lease(
        &self,
        _job: Job,
        holder: &str,
        _now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.0.lock().unwrap().retain(|h| h != holder);
        Ok(())
    }
}

#[tokio::test]
async fn the_lease_keeps_a_second_run_out_until_the_first_ends() {
    let (log, devlake) = (HeldLease(Mutex::new(Vec::new())), devlake());
    let lifecycle = Lifecycle {
        spec: JobSpec {
            job: Job::Automation,
            devlake_up_datum: false,
        },
        devlake: &devlake,
        run_log: Some(&log),
        sink: None,
    };
    let inv = inv(false, true);
    let first = lifecycle
        .take_lease(&inv, Duration::from_secs(20))
        .await
        .unwrap();
    assert!(first.is_some());
    let second = lifecycle.take_lease(&inv, Duration::ZERO).await;
    assert!(matches!(second, Err(LeaseRefused::Held(_))));
    let job = TestJob::new(Ran::Finished(TestSummary::with_errors(0)));
    lifecycle.run(&job, &inv, first).await.unwrap();
    assert!(log.0.lock().unwrap().is_empty(), "released at the end");
    assert!(lifecycle
        .take_lease(&inv, Duration::ZERO)
        .await
        .unwrap()
        .is_some());
}
