//! `devlake-metrics`: the Prometheus page behind a Lambda function URL.
//!
//! Cold start reads the configuration, resolves the bearer token (plain or Secrets Manager, once)
//! and builds the DynamoDB client; each request is handed to `metrics_http::MetricsService`.

use std::convert::Infallible;
use std::sync::Arc;

use devlake_autopilot::config::{Env, SecretSource};
use devlake_autopilot::metrics_http::{
    MetricsService, MetricsSettings, MetricsToken, TOKEN_ARN_VAR, TOKEN_VAR,
};
use devlake_autopilot::secrets::resolve_named_secret;
use devlake_autopilot::startup::{load_sdk_config, SdkTimeouts};
use devlake_autopilot::store::DynamoStore;
use lambda_http::{service_fn, Body, Request};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    lambda_runtime::tracing::init_default_subscriber();

    let settings = MetricsSettings::from_env(&Env::from_process())?;
    let sdk = load_sdk_config(SdkTimeouts::SCRAPE).await;

    let (plain, arn) = match settings.token.clone() {
        SecretSource::Plain(value) => (Some(value), None),
        SecretSource::SecretArn(arn) => (None, Some(arn)),
    };
    let token = resolve_named_secret(TOKEN_VAR, TOKEN_ARN_VAR, plain, arn, &sdk)
        .await?
        .ok_or_else(|| anyhow::anyhow!("invalid configuration: {TOKEN_VAR}: is required"))?;
    let token = MetricsToken::new(token)?;

    let store = DynamoStore::new(aws_sdk_dynamodb::Client::new(&sdk), &settings.table_name);
    tracing::info!(
        table = %settings.table_name,
        timezone = %settings.timezone,
        failure_window_days = settings.failure_window_days,
        "metrics function ready"
    );
    let service = Arc::new(MetricsService::new(
        store,
        token,
        settings.timezone,
        settings.failure_window_days,
    ));

    lambda_http::run(service_fn(move |request: Request| {
        let service = Arc::clone(&service);
        async move {
            let response = service.handle(&request, chrono::Utc::now()).await;
            Ok::<_, Infallible>(response.map(Body::from))
        }
    }))
    .await
    .map_err(|e| anyhow::anyhow!(e))
}
