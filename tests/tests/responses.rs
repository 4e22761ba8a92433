//! What the DevLake client refuses to take from the other end: redirects (never followed), bodies
//! over the cap, and a `Retry-After` that does not fit the run; and how it honours one that does.

use std::time::{Duration, Instant};

use devlake_autopilot::automation::Deadline;
use devlake_autopilot::devlake::{ClientConfig, DevLakeClient, DevLakeError};
use devlake_testkit::sim::{FaultAction, FaultRule, Faults, Fixture, Simulator};

fn client(sim: &Simulator, config: ClientConfig) -> DevLakeClient {
    DevLakeClient::new(ClientConfig {
        endpoint: sim.url(),
        // Backoff alone would retry within milliseconds: a longer wait is Retry-After's doing.
        retry_base_delay: Duration::from_millis(1),
        retry_max_delay: Duration::from_millis(5),
        ..config
    })
    .unwrap()
}

async fn sim_with(rule: FaultRule) -> Simulator {
    let sim = Simulator::start(Fixture::sample()).await;
    sim.handle().set_faults(Faults {
        rules: vec![rule],
        ..Faults::default()
    });
    sim
}

fn requests_to(sim: &Simulator, path: &str) -> usize {
    sim.handle()
        .requests()
        .iter()
        .filter(|r| r.path.split('?').next() == Some(path))
        .count()
}

#[tokio::test]
async fn a_redirect_is_an_error_naming_the_location_and_is_not_followed() {
    let sim = Simulator::start(Fixture::sample()).await;
    let target = format!("{}/rest/version", sim.url());
    sim.handle().set_faults(Faults {
        rules: vec![FaultRule::new(
            "GET",
            "/version",
            1,
            FaultAction::Redirect {
                status: 301,
                location: target.clone(),
            },
        )],
        ..Faults::default()
    });
    let devlake = client(&sim, ClientConfig::default());
    let err = devlake.version().await.unwrap_err();
    assert!(
        matches!(err, DevLakeError::Redirect { status: 301, .. }),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        format!(
            "DevLake answered 301 on GET /version → Location {target}: set DEVLAKE_ENDPOINT to the final URL"
        )
    );
    assert!(err.is_fatal() && !err.is_retryable());
    assert_eq!(requests_to(&sim, "/version"), 1, "neither retried");
    assert_eq!(requests_to(&sim, "/rest/version"), 0, "nor followed");

    // A Location with credentials in it is shown without the password.
    sim.handle().set_faults(Faults {
        rules: vec![FaultRule::new(
            "GET",
            "/version",
            1,
            FaultAction::Redirect {
                status: 308,
                location: "https://admin:hunter2-pass@devlake.example.com/api/rest/version".into(),
            },
        )],
        ..Faults::default()
    });
    let text = devlake.version().await.unwrap_err().to_string();
    assert!(!text.contains("hunter2-pass"), "{text}");
    assert!(text.contains("308"), "{text}");
}

#[tokio::test]
async fn a_body_over_the_cap_is_an_error_and_one_under_it_is_read() {
    const MIB: u64 = 1024 * 1024;
    let sim = sim_with(FaultRule::new(
        "GET",
        "/version",
        1,
        FaultAction::LargeBody(2 * MIB),
    ))
    .await;
    let capped = client(
        &sim,
        ClientConfig {
            max_response_bytes: MIB as usize,
            ..ClientConfig::default()
        },
    );
    let err = capped.version().await.unwrap_err();
    assert!(matches!(err, DevLakeError::BodyTooLarge { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        "DevLake's answer to GET /version is larger than 1 MiB; a smaller DEVLAKE_PAGE_SIZE makes list pages smaller"
    );
    assert!(!err.is_retryable());
    assert_eq!(requests_to(&sim, "/version"), 1);

    // The default cap reads the same answer (it is JSON, just not a version).
    sim.handle().set_faults(Faults {
        rules: vec![FaultRule::new(
            "GET",
            "/version",
            1,
            FaultAction::LargeBody(2 * MIB),
        )],
        ..Faults::default()
    });
    let default = client(&sim, ClientConfig::default());
    match default.version().await {
        Err(DevLakeError::Decode { .. }) => {}
        other => panic!("read past 1 MiB and decoded: {other:?}"),
    }
}

fn retry_after(status: u16, value: &str) -> FaultRule {
    FaultRule::new(
        "GET",
        "/version",
        1,
        FaultAction::StatusRetryAfter {
            status,
            retry_after: value.to_string(),
        },
    )
}

#[tokio::test]
async fn retry_after_in_seconds_or_as_a_date_is_waited_for() {
    let sim = sim_with(retry_after(503, "1")).await;
    let devlake = client(&sim, ClientConfig::default());
    let started = Instant::now();
    devlake.version().await.expect("answered after Retry-After");
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(950), "{waited:?}");
    assert_eq!(requests_to(&sim, "/version"), 2);

    // An HTTP-date two seconds ahead (whole seconds: one to two seconds from now).
    let at = chrono::Utc::now() + chrono::Duration::seconds(2);
    let date = at.format("%a, %d %b %Y %H:%M:%S GMT").to_string();
    sim.handle().set_faults(Faults {
        rules: vec![retry_after(429, &date)],
        ..Faults::default()
    });
    let started = Instant::now();
    devlake.version().await.expect("answered after the date");
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(4),
        "{date}: {waited:?}"
    );
}

#[tokio::test]
async fn a_retry_after_past_the_deadline_or_the_cap_fails_at_once() {
    let sim = sim_with(retry_after(429, "30")).await;
    let devlake = client(&sim, ClientConfig::default())
        .with_deadline(Deadline::after(Duration::from_secs(5)));
    let started = Instant::now();
    let err = devlake.version().await.unwrap_err();
    assert_eq!(err.status(), Some(429), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(requests_to(&sim, "/version"), 1, "no early retry");

    // Without a deadline, the client's own ceiling applies.
    sim.handle().set_faults(Faults {
        rules: vec![retry_after(503, "5")],
        ..Faults::default()
    });
    let capped = client(
        &sim,
        ClientConfig {
            max_retry_after: Duration::from_secs(1),
            ..ClientConfig::default()
        },
    );
    let started = Instant::now();
    let err = capped.version().await.unwrap_err();
    assert_eq!(err.status(), Some(503));
    assert!(started.elapsed() < Duration::from_secs(2));
}
