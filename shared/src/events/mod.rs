//! The events function: DevLake's signed pipeline notifications, pushed to a function URL, so a
//! failed pipeline is on the metrics page within a second of its end instead of at the monitor's
//! next run (docs/events.md).
//!
//! DevLake sends a notification when a pipeline is created, when it starts and when it ends
//! (cron-triggered runs included), to `NOTIFICATION_ENDPOINT` signed with `NOTIFICATION_SECRET`
//! ([`signature`]), and never sends one again, whatever the answer. So push is the fast path
//! and the 5-minute monitor stays the net: both record a failure through the same conditional
//! commit, keyed by pipeline id and end time, so the one that comes second finds it recorded and
//! counts nothing ([`apply`]). Push adds what polling cannot see: when each project's newest
//! pipeline was created and started (its queue time), and when the latest notification came
//! (push health).
//!
//! | variable | default | meaning |
//! | --- | --- | --- |
//! | `NOTIFICATION_SECRET` / `NOTIFICATION_SECRET_ARN` | required | DevLake's `NOTIFICATION_SECRET`, plain (local) or in Secrets Manager (read again every 5 minutes) |
//! | `TABLE_NAME` | required | the DynamoDB table |
//! | `FAILURE_STATUSES` | `TASK_FAILED,TASK_PARTIAL` | as the monitor's: which ends are failures |
//! | `FAILURE_RETENTION_DAYS` | `90` | as the monitor's: TTL of failure items |
//! | `FAILURE_WINDOW_DAYS` | `7` | as the monitor's: the recent-failures list a scrape reads |

pub mod apply;
pub mod http;
pub mod notification;
pub mod signature;

use crate::config::{ConfigError, Env, SecretSource};
use crate::monitor::MonitorSettings;
use crate::startup::{load_sdk_config, SdkTimeouts, StartupError};
use crate::store::DynamoStore;

pub use apply::Applied;
pub use http::{EventsService, ExpectedSecret};
pub use notification::{MalformedNotification, Notification};
pub use signature::{signed_query, NotificationSecret, SignedQuery, NONCE_KEY, SIGN_KEY};

pub const SECRET_VAR: &str = "NOTIFICATION_SECRET";
pub const SECRET_ARN_VAR: &str = "NOTIFICATION_SECRET_ARN";

/// Configuration of the events function, read once at cold start.
#[derive(Debug, Clone)]
pub struct EventsSettings {
    pub table_name: String,
    /// Where the secret comes from; an ARN is read through Secrets Manager at start-up.
    pub secret: SecretSource,
    /// Failure statuses, retention and failure window, as the monitor's (only those fields are
    /// set; the rest keep their defaults and are not used here).
    pub monitor: MonitorSettings,
}

impl EventsSettings {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let table_name = env.required("TABLE_NAME")?.to_string();
        let secret = http::secret_source(env)?;
        let monitor = MonitorSettings {
            failure_statuses: env.failure_statuses()?,
            retention: env.failure_retention()?,
            failure_window: chrono::Duration::days(i64::from(env.failure_window_days()?)),
            ..MonitorSettings::default()
        };
        Ok(EventsSettings {
            table_name,
            secret,
            monitor,
        })
    }
}

/// Everything a request needs, built once per Lambda instance.
pub struct EventsFunction {
    pub settings: EventsSettings,
    pub service: EventsService<DynamoStore>,
}

impl EventsFunction {
    pub async fn from_env(env: &Env) -> Result<Self, StartupError> {
        // Everything that needs no network is validated before touching AWS.
        EventsSettings::from_env(env)?;
        // A notification is one short request: fail fast, like a scrape.
        let sdk = load_sdk_config(SdkTimeouts::SCRAPE).await;
        Self::from_env_with_sdk(env, &sdk).await
    }

    /// [`from_env`](Self::from_env) with a given AWS configuration (tests point every service
    /// of the function at one recording endpoint).
    pub async fn from_env_with_sdk(
        env: &Env,
        sdk: &aws_config::SdkConfig,
    ) -> Result<Self, StartupError> {
        let settings = EventsSettings::from_env(env)?;
        let secret = ExpectedSecret::resolve(settings.secret.clone(), sdk).await?;
        let store = DynamoStore::new(aws_sdk_dynamodb::Client::new(sdk), &settings.table_name);
        tracing::info!(
            table = %settings.table_name,
            failure_statuses = %settings.monitor.failure_statuses.join(","),
            secret_from = match &settings.secret {
                SecretSource::Plain(_) => "NOTIFICATION_SECRET",
                SecretSource::SecretArn(_) => "NOTIFICATION_SECRET_ARN",
            },
            "events function ready"
        );
        let service = EventsService::new(store, secret, settings.monitor.clone());
        Ok(EventsFunction { settings, service })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Env {
        pairs.iter().copied().collect()
    }

    #[test]
    fn settings_share_the_monitors_failure_rules() {
        let s = EventsSettings::from_env(&env(&[
            ("TABLE_NAME", "t"),
            ("NOTIFICATION_SECRET", "n0tify"),
            ("FAILURE_STATUSES", "TASK_FAILED,task_cancelled"),
            ("FAILURE_RETENTION_DAYS", "30"),
            ("FAILURE_WINDOW_DAYS", "14"),
        ]))
        .unwrap();
        assert_eq!(s.table_name, "t");
        assert!(s.monitor.counts_as_failure("TASK_CANCELLED"));
        assert!(!s.monitor.counts_as_failure("TASK_PARTIAL"));
        assert_eq!(s.monitor.retention, chrono::Duration::days(30));
        assert_eq!(s.monitor.failure_window, chrono::Duration::days(14));
        assert!(!format!("{s:?}").contains("n0tify"));
        let defaults =
            EventsSettings::from_env(&env(&[("TABLE_NAME", "t"), ("NOTIFICATION_SECRET", "x")]))
                .unwrap();
        assert_eq!(defaults.monitor, MonitorSettings::default());
    }

    #[test]
    fn errors_name_the_variable_and_never_the_secret() {
        for (pairs, variable) in [
            (&[("NOTIFICATION_SECRET", "x")][..], "TABLE_NAME"),
            (&[("TABLE_NAME", "t")][..], "NOTIFICATION_SECRET"),
            (
                &[
                    ("TABLE_NAME", "t"),
                    ("NOTIFICATION_SECRET", "hush-hush"),
                    ("NOTIFICATION_SECRET_ARN", "arn:aws:secretsmanager:x"),
                ][..],
                "NOTIFICATION_SECRET",
            ),
            (
                &[
                    ("TABLE_NAME", "t"),
                    ("NOTIFICATION_SECRET", "x"),
                    ("FAILURE_STATUSES", "TASK_COMPLETED"),
                ][..],
                "FAILURE_STATUSES",
            ),
        ] {
            let err = EventsSettings::from_env(&env(pairs)).unwrap_err();
            assert_eq!(err.variable, variable, "{err}");
            assert!(!err.to_string().contains("hush-hush"));
        }
    }
}
