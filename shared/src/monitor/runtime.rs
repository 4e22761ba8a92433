//! Start-up of the `devlake-monitor` Lambda: configuration read once, clients built once
//! (DevLake, DynamoDB, CloudWatch), then one [`Monitor::handle`] per event.

use std::time::{Duration, SystemTime};

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::BehaviorVersion;
use chrono::{DateTime, Utc};
use serde_json::Value;
use thiserror::Error;

use crate::cloudwatch::{CloudWatchSink, FUNCTION_DIMENSION};
use crate::config::{ConfigError, Env, SecretSource};
use crate::devlake::{DevLakeClient, DevLakeError};
use crate::secrets::{resolve_named_secret, SecretError};
use crate::store::DynamoStore;

use super::{Deadline, Monitor, MonitorConfig, MonitorError};

const API_KEY_VAR: &str = "DEVLAKE_API_KEY";
const API_KEY_ARN_VAR: &str = "DEVLAKE_API_KEY_SECRET_ARN";

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

/// Why the function could not start. One line, naming the variable; never a secret.
#[derive(Debug, Error)]
pub enum StartupError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("invalid configuration: {API_KEY_VAR}/{API_KEY_ARN_VAR}: {0}")]
    Secret(#[from] SecretError),
    #[error("invalid configuration: DEVLAKE_ENDPOINT: {0}")]
    Client(#[from] DevLakeError),
}

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
        let (plain, arn) = match &config.api_key {
            Some(SecretSource::Plain(v)) => (Some(v.clone()), None),
            Some(SecretSource::SecretArn(a)) => (None, Some(a.clone())),
            None => (None, None),
        };

        // The SDK has no timeouts by default; a stuck call must not eat the run's deadline.
        // `load` honours AWS_ENDPOINT_URL_DYNAMODB / _CLOUDWATCH for local stacks.
        let sdk = aws_config::defaults(BehaviorVersion::latest())
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(2))
                    .operation_attempt_timeout(Duration::from_secs(5))
                    .operation_timeout(Duration::from_secs(15))
                    .build(),
            )
            .retry_config(RetryConfig::standard().with_max_attempts(3))
            .load()
            .await;
        let api_key = resolve_named_secret(API_KEY_VAR, API_KEY_ARN_VAR, plain, arn, &sdk).await?;
        let devlake = DevLakeClient::new(crate::devlake::ClientConfig {
            api_key,
            ..config.devlake.clone()
        })?;
        let store = DynamoStore::new(aws_sdk_dynamodb::Client::new(&sdk), &config.table_name);
        let sink = metrics_sink(aws_sdk_cloudwatch::Client::new(&sdk), &config.namespace);
        tracing::info!(
            endpoint = %devlake.endpoint(),
            table = %config.table_name,
            namespace = %config.namespace,
            failure_statuses = %config.settings.failure_statuses.join(","),
            auto_rerun_max = config.settings.auto_rerun_max,
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
        let deadline = Deadline::from_lambda(lambda_deadline_ms, wall, margin);
        let summary = self.monitor().handle(payload, now, deadline).await?;
        Ok(serde_json::to_value(summary).unwrap_or(Value::Null))
    }
}
