//! Failure paths with the in-memory store and sink. DevLake is a closed local port, so
//! every call fails fast with a transport error; the happy paths run against the simulator
//! in `tests/tests/monitor.rs`.

use super::*;
use crate::cloudwatch::MemorySink;
use crate::devlake::ClientConfig;
use crate::store::{MemoryStore, MonitorCursor};
use serde_json::json;

fn unreachable_devlake() -> DevLakeClient {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    DevLakeClient::new(ClientConfig {
        endpoint: format!("http://127.0.0.1:{port}"),
        max_retries: 0,
        ..ClientConfig::default()
    })
    .unwrap()
}

fn flags(sink: &MemorySink, name: &str) -> Vec<f64> {
    sink.named(name).iter().map(|d| d.value).collect()
}

#[tokio::test]
async fn a_refused_payload_touches_nothing() {
    let (store, sink, devlake) = (MemoryStore::new(), MemorySink::new(), unreachable_devlake());
    let settings = MonitorSettings::default();
    let monitor = Monitor {
        settings: &settings,
        devlake: &devlake,
        store: &store,
        sink: &sink,
    };
    let err = monitor
        .handle(&json!({"dryRun": 1}), Utc::now(), Deadline::none())
        .await
        .unwrap_err();
    assert_eq!(err.error_type(), "InvalidPayload");
    assert!(err.to_string().contains("field \"dryRun\""), "{err}");
    assert_eq!(devlake.calls().total(), 0);
    assert_eq!(sink.calls(), 0);
    assert!(store.run(Job::Monitor).is_none() && store.cursor().is_none());
}

#[tokio::test]
async fn devlake_down_is_a_function_error_recorded_with_devlake_up_zero() {
    let (store, sink, devlake) = (MemoryStore::new(), MemorySink::new(), unreachable_devlake());
    let cursor = MonitorCursor {
        max_pipeline_id: 9,
        revision: 4,
        ..Default::default()
    };
    store.save_cursor(&cursor, None).await.unwrap();
    let settings = MonitorSettings::default();
    let monitor = Monitor {
        settings: &settings,
        devlake: &devlake,
        store: &store,
        sink: &sink,
    };
    // Delivered late: the scheduled time is ten minutes before the invocation's clock.
    let clock = Utc::now();
    let scheduled = clock - chrono::Duration::minutes(10);
    let err = monitor
        .handle(
            &json!({ "scheduledTime": scheduled.to_rfc3339() }),
            clock,
            Deadline::none(),
        )
        .await
        .unwrap_err();
    assert_eq!(err.error_type(), "DevLakeUnreachable");
    assert!(err.is_retryable());
    assert!(err.to_string().contains("could not reach DevLake"), "{err}");
    let run = store.run(Job::Monitor).expect("run recorded");
    assert!(!run.success);
    assert_eq!(run.devlake_up, Some(false));
    // When it finished by the invocation's clock, not when it was scheduled.
    assert_eq!(
        run.finished_at,
        clock + chrono::Duration::milliseconds(run.duration_ms as i64)
    );
    assert_eq!(store.cursor().unwrap().max_pipeline_id, 9, "cursor kept");
    assert_eq!(store.cursor().unwrap().revision, 1);
    assert_eq!(flags(&sink, "RunSuccess"), vec![0.0]);
    assert_eq!(flags(&sink, "DevLakeUp"), vec![0.0]);
    assert_eq!(
        flags(&sink, "Errors"),
        vec![1.0],
        "a stopped run is one error"
    );
    assert_eq!(flags(&sink, "RunDurationMs"), vec![run.duration_ms as f64]);
    assert!(sink.named("NewFailures").is_empty());
    // Domain code adds no dimension; the runtime's sink adds `Function`.
    assert!(sink.datums().iter().all(|d| d.dimensions.is_empty()));
    let diagnostic: lambda_runtime::Diagnostic = err.into();
    assert_eq!(diagnostic.error_type, "DevLakeUnreachable");
    assert!(diagnostic
        .error_message
        .starts_with("monitor run stopped: could not reach DevLake"));
    assert!(!diagnostic.error_message.contains('\n'));

    // A dry run reports the same error but records and emits nothing.
    let before = sink.calls();
    let err = monitor
        .handle(&json!({"dryRun": true}), Utc::now(), Deadline::none())
        .await
        .unwrap_err();
    assert_eq!(err.error_type(), "DevLakeUnreachable");
    assert_eq!(sink.calls(), before);
}

#[tokio::test]
async fn an_unavailable_store_stops_the_run_before_devlake_is_asked() {
    let (store, devlake) = (MemoryStore::new(), unreachable_devlake());
    store.set_unavailable(true);
    // Metrics failing as well changes nothing about the outcome.
    let sink = MemorySink::failing();
    let settings = MonitorSettings::default();
    let monitor = Monitor {
        settings: &settings,
        devlake: &devlake,
        store: &store,
        sink: &sink,
    };
    let err = monitor
        .handle(&json!({}), Utc::now(), Deadline::none())
        .await
        .unwrap_err();
    assert_eq!(err.error_type(), "DynamoDbUnavailable");
    assert!(err.is_retryable());
    assert_eq!(devlake.calls().total(), 0);
    assert_eq!(
        sink.calls(),
        1,
        "the failure is still reported to CloudWatch"
    );
    let diagnostic: lambda_runtime::Diagnostic = err.into();
    assert_eq!(diagnostic.error_type, "DynamoDbUnavailable");
    assert!(diagnostic.error_message.contains("DynamoDB unavailable"));
}
