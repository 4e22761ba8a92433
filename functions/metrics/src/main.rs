//! `devlake-metrics`: the Prometheus page behind a Lambda function URL.
//!
//! Cold start reads the configuration, resolves the bearer token (plain, or Secrets Manager: read
//! again every few minutes so a rotated token is accepted)
//! and builds the DynamoDB client; each request is handed to `metrics_http::MetricsService`.

use std::convert::Infallible;
use std::sync::Arc;

use devlake_autopilot::config::Env;
use devlake_autopilot::metrics_http::{
    lambda_response, ExpectedToken, MetricsService, MetricsSettings,
};
use devlake_autopilot::startup::{load_sdk_config, SdkTimeouts};
use devlake_autopilot::store::DynamoStore;
use lambda_http::{service_fn, Request};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    lambda_runtime::tracing::init_default_subscriber();

    let settings = MetricsSettings::from_env(&Env::from_process())?;
    let sdk = load_sdk_config(SdkTimeouts::SCRAPE).await;

    let token = ExpectedToken::resolve(settings.token.clone(), &sdk).await?;

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
            Ok::<_, Infallible>(lambda_response(response))
        }
    }))
    .await
    .map_err(|e| anyhow::anyhow!(e))
}
