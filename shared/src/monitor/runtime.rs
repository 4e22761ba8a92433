//! Start-up of the `devlake-monitor` Lambda: configuration read once, clients built once
//! (DevLake, DynamoDB, CloudWatch), then one [`Monitor::handle`] per event.

use std::time::{Duration, SystemTime};

use aws_config::SdkConfig;
use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::cloudwatch::{CloudWatchSink, FUNCTION_DIMENSION};
use crate::config::{check_devlake_fits_timeout, Env};
use crate::devlake::DevLakeClient;
pub use crate::startup::StartupError;
use crate::startup::{devlake_client, load_sdk_config, SdkTimeouts};
use crate::store::DynamoStore;

use super::{Deadline, Monitor, MonitorConfig, MonitorError};

/// The `Function` dimension value on every CloudWatch datum of this job.
pub const FUNCTION: &str = "monitor";

/// The job's CloudWatch sink: every datum it sends carries `Function=monitor` (per-project
/// `NewFailures` then has `Function` and `ProjectName`), so the series it shares with the
/// automation (`RunSuccess`, `RunDurationMs`, `Errors`) stay apart.
pub fn metrics_sink(client: aws_sdk_cloudwatch::Client, namespace: &str) -> CloudWatchSink {
    CloudWatchSink::new(client, namespace).with_dimension(FUNCTION_DIMENSION, FUNCTION)
}

/// Time kept back from the Lambda deadline for the writes, the run record and the metrics
/// after the listings stop.
pub const DEADLINE_MARGIN: Duration = Duration::from_secs(10);

/// Everything an invocation needs, built once per Lambda instance.
pub struct MonitorFunction {
    pub config: MonitorConfig,
    pub devlake: DevLakeClient,
    pub store: DynamoStore,
    pub sink: CloudWatchSink,
}

impl MonitorFunction {
    /// Everything [`from_env`](Self::from_env) checks before its first network call, with the
    /// same error: whether this environment lets the function start (up to reading the secret).
    pub fn check_env(env: &Env) -> Result<MonitorConfig, StartupError> {
        let config = MonitorConfig::from_env(env)?;
        // Builds no connection; refuses an endpoint that is not an http(s) URL.
        DevLakeClient::new(config.devlake.clone())?;
        Ok(config)
    }

    pub async fn from_env(env: &Env) -> Result<Self, StartupError> {
        // Everything that needs no network is validated before touching AWS.
        let config = Self::check_env(env)?;
        for check in [
            config.settings.check_retention(),
            config.settings.check_stuck_action(),
        ] {
            if let Err(e) = check {
                tracing::warn!("configuration warning: {}: {}", e.variable, e.problem);
            }
        }
        let sdk = load_sdk_config(SdkTimeouts::JOB).await;
        Self::from_env_with_sdk(env, &sdk).await
    }

    /// [`from_env`](Self::from_env) with a given AWS configuration (tests point every service
    /// of the function at one recording endpoint).
    pub async fn from_env_with_sdk(env: &Env, sdk: &SdkConfig) -> Result<Self, StartupError> {
        let config = Self::check_env(env)?;
        let sdk = sdk.clone();
        let devlake = devlake_client(config.devlake.clone(), config.api_key.clone(), &sdk).await?;
        let store = DynamoStore::new(aws_sdk_dynamodb::Client::new(&sdk), &config.table_name);
        let sink = metrics_sink(aws_sdk_cloudwatch::Client::new(&sdk), &config.namespace);
        tracing::info!(
            endpoint = %devlake.endpoint(),
            table = %config.table_name,
            namespace = %config.namespace,
            failure_statuses = %config.settings.failure_statuses.join(","),
            auto_rerun_max = config.settings.auto_rerun_max,
            stuck_action = config.settings.stuck_action.as_str(),
            "monitor function ready"
        );
        Ok(MonitorFunction {
            config,
            devlake,
            store,
            sink,
        })
    }

    pub fn monitor(&self) -> Monitor<'_> {
        Monitor {
            settings: &self.config.settings,
            devlake: &self.devlake,
            store: &self.store,
            sink: &self.sink,
        }
    }

    /// One Lambda event. `now` and `wall` are the binary's clock readings.
    pub async fn handle_event(
        &self,
        payload: &Value,
        lambda_deadline_ms: u64,
        now: DateTime<Utc>,
        wall: SystemTime,
    ) -> Result<Value, MonitorError> {
        // Keep DEADLINE_MARGIN back for the writes, but never more than a quarter of a short
        // budget. (`Deadline::from_lambda` also copes with local emulators' deadline values.)
        let left = Deadline::from_lambda(lambda_deadline_ms, wall, Duration::ZERO).left();
        let margin = left.map_or(DEADLINE_MARGIN, |l| DEADLINE_MARGIN.min(l / 4));
        tracing::debug!(
            time_left_ms = left.map(|l| l.as_millis() as u64),
            margin_ms = margin.as_millis() as u64,
            "invocation"
        );
        // The time left as the invocation starts is the function's timeout (Lambda exposes it no
        // other way): one DevLake request, retries included, must fit in it with the margin.
        if let Some(timeout) = left {
            check_devlake_fits_timeout(
                &self.config.devlake,
                margin,
                "the monitor's deadline margin",
                timeout,
            )?;
        }
        let deadline = Deadline::from_lambda(lambda_deadline_ms, wall, margin);
        let before = self.store.consumed_capacity();
        let result = self.monitor().handle(payload, now, deadline).await;
        // What the run cost in DynamoDB request units (on-demand billing), failed runs included.
        let used = self.store.consumed_capacity().since(before);
        tracing::info!(
            dynamodb_read_units = used.read_units,
            dynamodb_write_units = used.write_units,
            "DynamoDB capacity consumed by the run"
        );
        let summary = result?;
        Ok(summary.response())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The monitor's timeout is known only from the invocation's deadline: a DevLake timeout and
    /// retry count that cannot fit it are refused there, before the payload or any call.
    #[tokio::test]
    async fn a_devlake_budget_longer_than_the_function_timeout_is_refused_before_any_call() {
        let env: Env = [
            // Nothing listens here; any call would fail as unreachable, not as configuration.
            ("DEVLAKE_ENDPOINT", "http://127.0.0.1:9"),
            ("ALLOW_INSECURE_HTTP", "true"),
            ("TABLE_NAME", "t"),
            ("DEVLAKE_TIMEOUT_MS", "30000"),
            ("AWS_REGION", "us-east-1"),
        ]
        .into_iter()
        .collect();
        let function = MonitorFunction::from_env(&env).await.unwrap();
        let wall = SystemTime::now();
        let epoch_ms = wall
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        // 4 × 30 s + 1.4 s of backoff and a 10 s margin do not fit the template's 120 s.
        let err = function
            .handle_event(&serde_json::json!({}), epoch_ms + 120_000, Utc::now(), wall)
            .await
            .unwrap_err();
        assert_eq!(err.error_type(), "InvalidConfiguration");
        assert!(
            err.to_string().starts_with(
                "invalid configuration: DEVLAKE_TIMEOUT_MS, DEVLAKE_MAX_RETRIES: one DevLake request may take 121.4 s"
            ),
            "{err}"
        );
        assert_eq!(function.devlake.calls().total(), 0);
    }
}
