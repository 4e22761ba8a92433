//! Cold-start pieces the functions share: the AWS SDK configuration with explicit timeouts, the
//! DevLake client with its API key (plain, or from Secrets Manager: read at start-up, again after
//! [`SECRET_TTL`](crate::secrets::SECRET_TTL) and at once after DevLake refuses it), and the
//! one-line start-up error.

use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, SdkConfig};
use thiserror::Error;

use crate::config::{ConfigError, SecretSource};
use crate::devlake::{ClientConfig, DevLakeClient, DevLakeError};
use crate::secrets::{RotatingSecret, SecretError, SECRET_TTL};
use crate::transport::AwsHttpClient;

pub const API_KEY_VAR: &str = "DEVLAKE_API_KEY";
pub const API_KEY_ARN_VAR: &str = "DEVLAKE_API_KEY_SECRET_ARN";

/// Why a function could not start. One line, naming the variable; never a secret.
#[derive(Debug, Error)]
pub enum StartupError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("invalid configuration: {API_KEY_VAR}/{API_KEY_ARN_VAR}: {0}")]
    Secret(#[from] SecretError),
    #[error("invalid configuration: DEVLAKE_ENDPOINT: {0}")]
    Client(#[from] DevLakeError),
}

/// Limits for every AWS call of a function. The SDK has none by default, and a stuck call must
/// not eat the run's deadline (or, for the metrics page, Prometheus' scrape timeout).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SdkTimeouts {
    pub connect: Duration,
    pub attempt: Duration,
    pub operation: Duration,
    pub max_attempts: u32,
}

impl SdkTimeouts {
    /// The scheduled jobs (automation, monitor).
    pub const JOB: SdkTimeouts = SdkTimeouts {
        connect: Duration::from_secs(2),
        attempt: Duration::from_secs(5),
        operation: Duration::from_secs(15),
        max_attempts: 3,
    };

    /// The metrics page: Prometheus gives a scrape 10 s by default, and a stuck DynamoDB call
    /// must fail well before that (the page answers 503).
    pub const SCRAPE: SdkTimeouts = SdkTimeouts {
        connect: Duration::from_secs(1),
        attempt: Duration::from_secs(2),
        operation: Duration::from_secs(5),
        max_attempts: 2,
    };
}

/// The SDK configuration from the Lambda environment. `load` honours the per-service endpoint
/// variables (`AWS_ENDPOINT_URL_DYNAMODB`, `AWS_ENDPOINT_URL_CLOUDWATCH`) used by local stacks.
/// Every client made from it shares one HTTP client ([`AwsHttpClient`]: reqwest, the process's
/// trust roots), so connections are pooled across DynamoDB, CloudWatch and Secrets Manager.
pub async fn load_sdk_config(limits: SdkTimeouts) -> SdkConfig {
    let http = AwsHttpClient::new(limits.connect);
    aws_config::defaults(BehaviorVersion::latest())
        .http_client(http.shared())
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(limits.connect)
                .operation_attempt_timeout(limits.attempt)
                .operation_timeout(limits.operation)
                .build(),
        )
        .retry_config(RetryConfig::standard().with_max_attempts(limits.max_attempts))
        .load()
        .await
}

/// Builds the DevLake client with its API key: `DEVLAKE_API_KEY` as given, or the secret
/// `DEVLAKE_API_KEY_SECRET_ARN` read now (an unreadable secret stops start-up) and kept fresh
/// by [`RotatingSecret`].
pub async fn devlake_client(
    config: ClientConfig,
    api_key: Option<SecretSource>,
    sdk: &SdkConfig,
) -> Result<DevLakeClient, StartupError> {
    let config = match api_key {
        None => config,
        Some(SecretSource::Plain(key)) => ClientConfig {
            api_key: Some(key),
            ..config
        },
        Some(SecretSource::SecretArn(arn)) => {
            let secret = RotatingSecret::load(&arn, sdk, SECRET_TTL).await?;
            ClientConfig {
                api_key: None,
                api_key_source: Some(std::sync::Arc::new(secret)),
                ..config
            }
        }
    };
    Ok(DevLakeClient::new(config)?)
}
