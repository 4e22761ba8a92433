//! Start-up of the `devlake-automation` Lambda: configuration read once, clients built once
//! (DevLake, DynamoDB, CloudWatch), then one [`handle`](super::handle) per event.

use std::time::SystemTime;

use aws_config::SdkConfig;
use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::cloudwatch::{CloudWatchSink, FUNCTION_DIMENSION};
use crate::config::{Env, SecretSource};
use crate::devlake::{ClientConfig, DevLakeClient};
use crate::job::{invocation_deadline, Margin};
use crate::startup::{devlake_client, load_sdk_config, SdkTimeouts};
pub use crate::startup::{StartupError, API_KEY_ARN_VAR, API_KEY_VAR};
use crate::store::DynamoStore;

use super::config::{client_config_from_env, AutomationConfig};
use super::{handle, AutomationError, Ports};

/// The `Function` dimension value on every CloudWatch datum of this job.
pub const FUNCTION: &str = "automation";

/// The job's CloudWatch sink: every datum it sends carries `Function=automation`, so the series
/// it shares with the monitor (`RunSuccess`, `RunDurationMs`, `Errors`) stay apart.
pub fn metrics_sink(client: aws_sdk_cloudwatch::Client, namespace: &str) -> CloudWatchSink {
    CloudWatchSink::new(client, namespace).with_dimension(FUNCTION_DIMENSION, FUNCTION)
}

/// Everything an invocation needs, built once per Lambda instance.
pub struct Automation {
    pub config: AutomationConfig,
    pub devlake: DevLakeClient,
    pub run_log: Option<DynamoStore>,
    pub metrics: CloudWatchSink,
    /// The DevLake client's settings (no key), for the timeout cross-check of each invocation.
    devlake_settings: ClientConfig,
}

/// The settings start-up can check without a network call.
struct Checked {
    config: AutomationConfig,
    api_key: Option<SecretSource>,
    namespace: String,
    /// The DevLake client's settings without its key (the CA bundle is read once, here).
    devlake: ClientConfig,
}

impl Checked {
    fn from_env(env: &Env) -> Result<Self, StartupError> {
        let config = AutomationConfig::from_env(env)?;
        let api_key = env.secret_source(API_KEY_VAR, API_KEY_ARN_VAR)?;
        let devlake = client_config_from_env(env, None)?;
        // Refuses an endpoint that is not an http(s) URL; builds no HTTP client.
        DevLakeClient::check(&devlake)?;
        let namespace = env.cloudwatch_namespace()?;
        Ok(Checked {
            config,
            api_key,
            namespace,
            devlake,
        })
    }
}

impl Automation {
    /// Everything [`from_env`](Self::from_env) checks before its first network call, with the
    /// same error: whether this environment lets the function start (up to reading the secret).
    pub fn check_env(env: &Env) -> Result<(), StartupError> {
        Checked::from_env(env).map(|_| ())
    }

    pub async fn from_env(env: &Env) -> Result<Self, StartupError> {
        // Validate everything that needs no network before touching AWS.
        let checked = Checked::from_env(env)?;
        let sdk = load_sdk_config(SdkTimeouts::JOB).await;
        Self::build(env, checked, sdk).await
    }

    /// [`from_env`](Self::from_env) with a given AWS configuration (tests point every service
    /// of the function at one recording endpoint).
    pub async fn from_env_with_sdk(env: &Env, sdk: &SdkConfig) -> Result<Self, StartupError> {
        Self::build(env, Checked::from_env(env)?, sdk.clone()).await
    }

    /// The clients, each built once: the DevLake client (its HTTP client on its first request),
    /// the run log and the metrics sink.
    async fn build(env: &Env, checked: Checked, sdk: SdkConfig) -> Result<Self, StartupError> {
        let Checked {
            config,
            api_key,
            namespace,
            devlake: devlake_settings,
        } = checked;
        let devlake = devlake_client(devlake_settings.clone(), api_key, &sdk).await?;
        let run_log = env
            .get("TABLE_NAME")
            .map(|table| DynamoStore::new(aws_sdk_dynamodb::Client::new(&sdk), table));
        let metrics = metrics_sink(aws_sdk_cloudwatch::Client::new(&sdk), &namespace);
        tracing::info!(
            endpoint = %devlake.endpoint(),
            plugins = %config.plugins.join(","),
            project_name_template = %config.name_template.source(),
            trigger_mode = config.trigger_mode.as_str(),
            cron = %config.cron.cron_config(),
            dry_run = config.dry_run,
            table = env.get("TABLE_NAME").unwrap_or(""),
            namespace = %namespace,
            "automation function ready"
        );
        Ok(Automation {
            config,
            devlake,
            run_log,
            metrics,
            devlake_settings,
        })
    }

    /// One Lambda event. `now` and `wall` are the binary's clock readings.
    pub async fn handle_event(
        &self,
        payload: &Value,
        lambda_deadline_ms: u64,
        now: DateTime<Utc>,
        wall: SystemTime,
    ) -> Result<Value, AutomationError> {
        let deadline = invocation_deadline(
            lambda_deadline_ms,
            wall,
            Margin::Fixed(self.config.deadline_margin),
            "DEADLINE_MARGIN_MS",
            &self.devlake_settings,
        )?;
        let ports = Ports {
            devlake: &self.devlake,
            run_log: self
                .run_log
                .as_ref()
                .map(|s| s as &dyn crate::store::RunLog),
            metrics: Some(&self.metrics),
        };
        handle(&self.config, ports, payload, now, deadline).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Env {
        pairs.iter().copied().collect()
    }

    /// Refused before any AWS or DevLake call, in one line naming the variable, never a secret.
    #[tokio::test]
    async fn start_up_refuses_bad_configuration_naming_the_variable() {
        let cases: Vec<(Vec<(&str, &str)>, &str)> = vec![
            (vec![], "DEVLAKE_ENDPOINT"),
            (
                vec![("DEVLAKE_ENDPOINT", "http://devlake:8080")],
                "ALLOW_INSECURE_HTTP",
            ),
            (
                vec![
                    ("DEVLAKE_ENDPOINT", "https://devlake:8080"),
                    ("PROJECT_NAME_TEMPLATE", "{plugin}/{repo}"),
                ],
                "PROJECT_NAME_TEMPLATE",
            ),
            (
                vec![
                    ("DEVLAKE_ENDPOINT", "https://devlake:8080"),
                    ("DEVLAKE_API_KEY", "dlk-secret-value-xyz"),
                    ("DEVLAKE_API_KEY_SECRET_ARN", "arn:aws:secretsmanager:x"),
                ],
                "DEVLAKE_API_KEY",
            ),
            (
                vec![
                    ("DEVLAKE_ENDPOINT", "https://devlake:8080"),
                    ("SCOPE_EXCLUDE", "github/[oops"),
                ],
                "SCOPE_EXCLUDE",
            ),
            (
                vec![
                    ("DEVLAKE_ENDPOINT", "https://devlake:8080"),
                    ("CLOUDWATCH_NAMESPACE", "AWS/Lambda"),
                ],
                "CLOUDWATCH_NAMESPACE",
            ),
        ];
        for (vars, variable) in cases {
            let err = match Automation::from_env(&env(&vars)).await {
                Ok(_) => panic!("{variable}: accepted"),
                Err(e) => e,
            };
            let text = err.to_string();
            assert!(text.starts_with("invalid configuration: "), "{text}");
            assert!(text.contains(variable), "{text}");
            assert!(!text.contains("dlk-secret-value-xyz"), "{text}");
            assert!(!text.contains('\n'), "{text}");
        }
    }

    /// Lambda tells the function its timeout only through the invocation's deadline: a DevLake
    /// timeout and retry count that cannot fit it are refused there, before any call.
    #[tokio::test]
    async fn a_devlake_budget_longer_than_the_function_timeout_is_refused_before_any_call() {
        let automation = Automation::from_env(&env(&[
            // Nothing listens here; any call would fail as unreachable, not as configuration.
            ("DEVLAKE_ENDPOINT", "http://127.0.0.1:9"),
            ("ALLOW_INSECURE_HTTP", "true"),
            ("DEVLAKE_TIMEOUT_MS", "60000"),
            ("DEVLAKE_MAX_RETRIES", "3"),
        ]))
        .await
        .unwrap();
        let wall = SystemTime::now();
        let epoch_ms = wall
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        // A 15-minute function fits 4 × 60 s; a 3-minute one does not.
        let err = automation
            .handle_event(&serde_json::json!({}), epoch_ms + 180_000, Utc::now(), wall)
            .await
            .unwrap_err();
        assert_eq!(err.error_type(), "InvalidConfiguration");
        let text = err.to_string();
        assert!(
            text.starts_with("invalid configuration: DEVLAKE_TIMEOUT_MS, DEVLAKE_MAX_RETRIES: one DevLake request may take 241.4 s"),
            "{text}"
        );
        assert!(
            text.contains("DEADLINE_MARGIN_MS (20.0 s)") && text.contains("(180.0 s)"),
            "{text}"
        );
        assert_eq!(automation.devlake.calls().total(), 0);
        // A bad payload is still named as such once the settings fit.
        let err = automation
            .handle_event(
                &serde_json::json!({"bogus": 1}),
                epoch_ms + 900_000,
                Utc::now(),
                wall,
            )
            .await
            .unwrap_err();
        assert_eq!(err.error_type(), "InvalidPayload");
        assert_eq!(automation.devlake.calls().total(), 0);
    }
}
