//! `devlake-monitor`: the 5-minute failure monitor. Reads the configuration and builds
//! its clients once; each event goes to `devlake_autopilot::monitor`.

use std::time::SystemTime;

use devlake_autopilot::config::Env;
use devlake_autopilot::monitor::runtime::MonitorFunction;
use lambda_runtime::{service_fn, LambdaEvent};
use serde_json::Value;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    lambda_runtime::tracing::init_default_subscriber();
    let function = MonitorFunction::from_env(&Env::from_process()).await?;
    let function = &function;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        function
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
