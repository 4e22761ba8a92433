//! Secrets rotated in Secrets Manager are picked up without a redeploy: the DevLake API key at
//! once after DevLake refuses the old one (one retry with the value read again) and after the
//! TTL; the metrics token after the TTL. Against a local Secrets Manager endpoint whose value
//! changes between two calls, and the DevLake simulator.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use devlake_autopilot::config::SecretSource;
use devlake_autopilot::devlake::{ClientConfig, DevLakeClient, DevLakeError};
use devlake_autopilot::metrics_http::http::{header, Request, StatusCode};
use devlake_autopilot::metrics_http::{ExpectedToken, MetricsService};
use devlake_autopilot::secrets::{RotatingSecret, SECRET_TTL};
use devlake_autopilot::startup::devlake_client;
use devlake_autopilot::store::{MetricsSnapshot, MetricsSource, StoreError};
use devlake_testkit::secrets_manager::LocalSecretsManager;
use devlake_testkit::sim::{Fixture, SimOptions, Simulator};

const KEY_ARN: &str = "arn:aws:secretsmanager:us-east-1:123456789012:secret:devlake-key-AbCdEf";
const TOKEN_ARN: &str = "arn:aws:secretsmanager:us-east-1:123456789012:secret:metrics-token-XyZ";

async fn keyed_sim(key: &str) -> Simulator {
    Simulator::start_with(Fixture::sample(), SimOptions::with_api_key(key)).await
}

fn config(sim: &Simulator) -> ClientConfig {
    ClientConfig {
        // DevLake checks API keys under /rest only.
        endpoint: format!("{}/rest", sim.url()),
        ..ClientConfig::default()
    }
}

/// Statuses of the simulator's requests since the last look, oldest first.
fn statuses(sim: &Simulator) -> Vec<u16> {
    let seen = sim.handle().requests().iter().map(|r| r.status).collect();
    sim.handle().reset_log();
    seen
}

#[tokio::test]
async fn a_refused_api_key_is_read_again_and_the_request_tried_once_more() {
    let sm = LocalSecretsManager::start().await;
    sm.set_string(KEY_ARN, "dlk-key-1");
    let sim = keyed_sim("dlk-key-1").await;
    // The start-up path of both jobs, with the production TTL: only a refusal re-reads here.
    let devlake = devlake_client(
        config(&sim),
        Some(SecretSource::SecretArn(KEY_ARN.into())),
        &sm.sdk(),
    )
    .await
    .unwrap();
    devlake.projects_page(1, 10).await.unwrap();
    assert_eq!(statuses(&sim), [200]);
    assert_eq!(sm.reads(), 1);

    // Rotated in DevLake and in the secret between two invocations.
    sim.handle().set_api_key(Some("dlk-key-2".into()));
    sm.set_string(KEY_ARN, "dlk-key-2");
    devlake.projects_page(1, 10).await.expect("the rotated key");
    assert_eq!(statuses(&sim), [403, 200], "refused once, then the new key");
    assert_eq!(sm.reads(), 2);
    devlake.projects_page(1, 10).await.unwrap();
    assert_eq!(statuses(&sim), [200], "the new key is kept");
    assert_eq!(sm.reads(), 2);

    // A key DevLake refuses even when read again: one more try, then the error, no loop.
    sim.handle().set_api_key(Some("dlk-key-3".into()));
    let err = devlake.projects_page(1, 10).await.unwrap_err();
    assert!(
        matches!(err, DevLakeError::Unauthorized { status: 403, .. }),
        "{err:?}"
    );
    assert!(!err.to_string().contains("dlk-key"), "{err}");
    assert_eq!(
        statuses(&sim),
        [403],
        "an unchanged secret is not sent twice"
    );
    assert_eq!(sm.reads(), 3);

    // A POST refused for its key is tried again too (DevLake checks the key first).
    sm.set_string(KEY_ARN, "dlk-key-3");
    let version = devlake.version().await.unwrap();
    let _ = statuses(&sim);
    let project = devlake_autopilot::devlake::models::ProjectInput {
        name: "rotation/after-403".into(),
        description: String::new(),
        enable: true,
        metrics: DevLakeClient::project_input_metrics(&version),
    };
    sim.handle().set_api_key(Some("dlk-key-4".into()));
    sm.set_string(KEY_ARN, "dlk-key-4");
    devlake
        .create_project(&project)
        .await
        .expect("created with the new key");
    assert_eq!(statuses(&sim), [403, 201]);
    assert!(sim
        .handle()
        .projects()
        .iter()
        .any(|p| p["name"] == "rotation/after-403"));
}

#[tokio::test]
async fn an_api_key_older_than_the_ttl_is_read_again_before_use() {
    let sm = LocalSecretsManager::start().await;
    sm.set_string(KEY_ARN, "dlk-key-1");
    let sim = keyed_sim("dlk-key-1").await;
    let ttl = Duration::from_millis(300);
    let secret = RotatingSecret::load(KEY_ARN, &sm.sdk(), ttl).await.unwrap();
    let devlake = DevLakeClient::new(ClientConfig {
        api_key_source: Some(Arc::new(secret)),
        ..config(&sim)
    })
    .unwrap();
    devlake.projects_page(1, 10).await.unwrap();
    devlake.projects_page(1, 10).await.unwrap();
    assert_eq!(sm.reads(), 1, "cached within the TTL");

    sm.set_string(KEY_ARN, "dlk-key-2");
    sim.handle().set_api_key(Some("dlk-key-2".into()));
    tokio::time::sleep(ttl + Duration::from_millis(100)).await;
    let _ = statuses(&sim);
    devlake.projects_page(1, 10).await.unwrap();
    assert_eq!(statuses(&sim), [200], "the new key was sent first time");
    assert_eq!(sm.reads(), 2);
    assert!(SECRET_TTL >= Duration::from_secs(60) && SECRET_TTL <= Duration::from_secs(600));
}

/// An empty store: these tests look at authentication only.
struct Empty;

#[async_trait::async_trait]
impl MetricsSource for Empty {
    async fn snapshot(
        &self,
        _failures_since: chrono::DateTime<Utc>,
    ) -> Result<MetricsSnapshot, StoreError> {
        Ok(MetricsSnapshot::default())
    }
}

fn scrape(token: &str) -> Request<()> {
    Request::builder()
        .uri("/metrics")
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .body(())
        .unwrap()
}

#[tokio::test]
async fn a_rotated_metrics_token_is_accepted_within_the_ttl() {
    let sm = LocalSecretsManager::start().await;
    sm.set_string(TOKEN_ARN, "token-one");
    let ttl = Duration::from_millis(300);
    let secret = RotatingSecret::load(TOKEN_ARN, &sm.sdk(), ttl)
        .await
        .unwrap();
    let service = MetricsService::new(
        Empty,
        ExpectedToken::Rotating(Arc::new(secret)),
        chrono_tz::UTC,
        7,
    );
    let status = |token: &'static str| {
        let service = &service;
        async move { service.handle(&scrape(token), Utc::now()).await.status() }
    };
    assert_eq!(status("token-one").await, StatusCode::OK);

    sm.set_string(TOKEN_ARN, "token-two");
    // Wrong tokens never make the function read the secret.
    for _ in 0..5 {
        assert_eq!(status("token-two").await, StatusCode::UNAUTHORIZED);
    }
    assert_eq!(sm.reads(), 1);

    tokio::time::sleep(ttl + Duration::from_millis(100)).await;
    assert_eq!(status("token-two").await, StatusCode::OK);
    assert_eq!(status("token-one").await, StatusCode::UNAUTHORIZED);
    assert_eq!(sm.reads(), 2);
}

#[tokio::test]
async fn the_metrics_token_secret_is_read_at_start_up() {
    let sm = LocalSecretsManager::start().await;
    sm.set_string(TOKEN_ARN, "  ");
    let err =
        match ExpectedToken::resolve(SecretSource::SecretArn(TOKEN_ARN.into()), &sm.sdk()).await {
            Ok(_) => panic!("an empty token was accepted"),
            Err(e) => e.to_string(),
        };
    assert!(
        err.starts_with("invalid configuration: METRICS_TOKEN_SECRET_ARN"),
        "{err}"
    );
    let missing = "arn:aws:secretsmanager:us-east-1:123456789012:secret:nope";
    let err = match ExpectedToken::resolve(SecretSource::SecretArn(missing.into()), &sm.sdk()).await
    {
        Ok(_) => panic!("a missing secret was accepted"),
        Err(e) => e.to_string(),
    };
    assert!(
        err.contains("METRICS_TOKEN_SECRET_ARN") && err.contains(missing),
        "{err}"
    );
    assert!(!err.contains('\n'), "{err}");
}

#[tokio::test]
async fn a_failed_re_read_keeps_the_value_in_use() {
    let sm = LocalSecretsManager::start().await;
    sm.set_string(KEY_ARN, "dlk-key-1");
    let ttl = Duration::from_millis(200);
    let secret = RotatingSecret::load(KEY_ARN, &sm.sdk(), ttl).await.unwrap();
    sm.remove(KEY_ARN);
    tokio::time::sleep(ttl + Duration::from_millis(50)).await;
    assert_eq!(secret.current().await, "dlk-key-1");
    assert_eq!(sm.reads(), 2, "tried once");
    // Not tried again before the retry interval (here capped by the short TTL).
    assert_eq!(secret.current().await, "dlk-key-1");
    assert_eq!(sm.reads(), 2);
    sm.set_string(KEY_ARN, "dlk-key-2");
    tokio::time::sleep(ttl + Duration::from_millis(50)).await;
    assert_eq!(secret.current().await, "dlk-key-2");
    assert!(!format!("{secret:?}").contains("dlk-key"));
}
