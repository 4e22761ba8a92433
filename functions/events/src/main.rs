//! `devlake-events`: DevLake's signed pipeline notifications behind a Lambda function URL.
//!
//! Cold start reads the configuration, resolves the notification secret (plain, or Secrets
//! Manager: read again every few minutes so a rotated secret is accepted) and builds the DynamoDB
//! client; each request is handed to `events::EventsService`.

use std::convert::Infallible;
use std::sync::Arc;

use devlake_autopilot::config::Env;
use devlake_autopilot::events::EventsFunction;
use lambda_http::{service_fn, Body, Request};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    lambda_runtime::tracing::init_default_subscriber();
    let function = Arc::new(EventsFunction::from_env(&Env::from_process()).await?);
    lambda_http::run(service_fn(move |request: Request| {
        let function = Arc::clone(&function);
        async move {
            let response = function.service.handle(&request, chrono::Utc::now()).await;
            Ok::<_, Infallible>(response.map(Body::from))
        }
    }))
    .await
    .map_err(|e| anyhow::anyhow!(e))
}
