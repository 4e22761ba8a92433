//! `devlake-automation`: the daily DevLake automation. Reads the configuration and
//! builds its clients once; each event goes to `devlake_autopilot::automation`.

use std::time::SystemTime;

use devlake_autopilot::automation::runtime::Automation;
use devlake_autopilot::config::Env;
use lambda_runtime::{service_fn, LambdaEvent};
use serde_json::Value;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    lambda_runtime::tracing::init_default_subscriber();
    let automation = Automation::from_env(&Env::from_process()).await?;
    let automation = &automation;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        automation
            .handle_event(
                &event.payload,
                event.context.deadline,
                chrono::Utc::now(),
                SystemTime::now(),
            )
            .await
    }))
    .await
    .map_err(|e| anyhow::anyhow!(e))
}
