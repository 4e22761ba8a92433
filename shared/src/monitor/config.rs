//! The monitor's configuration, read once at cold start from the environment.
//!
//! | variable | default | meaning |
//! | --- | --- | --- |
//! | `DEVLAKE_ENDPOINT` | required | DevLake base URL; `http://` only with `ALLOW_INSECURE_HTTP` |
//! | `ALLOW_INSECURE_HTTP` | `false` | `true` accepts an `http://` endpoint (the API key then travels in clear) |
//! | `DEVLAKE_CA_BUNDLE` | unset | PEM text or a PEM file's path: CAs trusted for DevLake besides the system's roots |
//! | `DEVLAKE_API_KEY` / `DEVLAKE_API_KEY_SECRET_ARN` | unset | API key, plain (local) or in Secrets Manager |
//! | `DEVLAKE_TIMEOUT_MS` | `10000` | timeout of one DevLake request attempt (the monitor runs every 5 minutes: fail fast) |
//! | `DEVLAKE_MAX_RETRIES` | `3` | retries of GETs on 5xx, 429 and resets (the re-run POST is never retried) |
//! | `DEVLAKE_CONCURRENCY` | `4` | DevLake requests in flight at once |
//! | `DEVLAKE_PAGE_SIZE` | `500` | rows per page of the pipeline listings |
//! | `TABLE_NAME` | required | the DynamoDB table |
//! | `CLOUDWATCH_NAMESPACE` | `DevLake/Autopilot` | namespace of the emitted metrics (see [`Env::cloudwatch_namespace`]); every datum carries `Function=monitor` |
//! | `CLOUDWATCH_PROJECT_DIMENSION` | `false` | also emit `NewFailures` per `ProjectName` (dimensions `Function`, `ProjectName`; costs one metric per project) |
//! | `TIMEZONE` | `Asia/Ho_Chi_Minh` | validated for consistency with the other functions |
//! | `FAILURE_STATUSES` | `TASK_FAILED,TASK_PARTIAL` | finished statuses recorded as failures |
//! | `FAILURE_RETENTION_DAYS` | `90` | TTL of failure events, counted from their `finishedAt` |
//! | `FAILURE_WINDOW_DAYS` | `7` | how long a failure stays in its project's recent list, which the metrics page reads; give both functions the same value (1–90) |
//! | `INITIAL_LOOKBACK_HOURS` | `24` | first run (or `rescan`): how far back failures are recorded |
//! | `STUCK_AFTER_HOURS` | `12` | a running pipeline older than this flags its project stuck |
//! | `AUTO_RERUN_MAX` | `0` | re-runs of one failed pipeline; `0` = off |
//! | `STUCK_ACTION` | `none` | what to do with a stuck pipeline: `none` (flag it), `cancel` (`DELETE /pipelines/{id}`, checked by the next run), `cancel-and-rerun` (then re-run it, within `AUTO_RERUN_MAX`) |
//! | `MANAGED_LABEL` | `devlake-autopilot` | the automation's blueprint label: the schedules of blueprints carrying it are checked for missed runs |

use std::time::Duration;

use chrono_tz::Tz;

use crate::config::{devlake_client_config, ConfigError, Env, SecretSource};
use crate::devlake::models::status;
use crate::devlake::ClientConfig;

/// What the monitor does with a pipeline stuck longer than `STUCK_AFTER_HOURS` (`STUCK_ACTION`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StuckAction {
    /// Flag the project only.
    #[default]
    None,
    /// `DELETE /pipelines/{id}`; the next run checks that the pipeline stopped.
    Cancel,
    /// Cancel, then once the next run sees it cancelled, re-run it (within `AUTO_RERUN_MAX`).
    CancelAndRerun,
}

impl StuckAction {
    pub fn parse(raw: &str) -> Result<Self, String> {
        match raw.trim() {
            "none" => Ok(StuckAction::None),
            "cancel" => Ok(StuckAction::Cancel),
            "cancel-and-rerun" => Ok(StuckAction::CancelAndRerun),
            other => Err(format!(
                "expected none, cancel or cancel-and-rerun, got {other:?}"
            )),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            StuckAction::None => "none",
            StuckAction::Cancel => "cancel",
            StuckAction::CancelAndRerun => "cancel-and-rerun",
        }
    }

    pub fn cancels(self) -> bool {
        self != StuckAction::None
    }
}

/// What the monitor's domain logic needs (no endpoints, no secrets).
#[derive(Debug, Clone, PartialEq)]
pub struct MonitorSettings {
    /// Finished statuses recorded as failures.
    pub failure_statuses: Vec<String>,
    pub retention: chrono::Duration,
    /// How long failures stay in each project's recent list: the metrics page's window.
    pub failure_window: chrono::Duration,
    pub initial_lookback: chrono::Duration,
    pub stuck_after: chrono::Duration,
    /// `0` = never re-run.
    pub auto_rerun_max: u32,
    pub project_dimension: bool,
    pub stuck_action: StuckAction,
    /// The automation's `MANAGED_LABEL`: blueprints carrying it have their schedule checked.
    pub managed_label: String,
}

impl Default for MonitorSettings {
    fn default() -> Self {
        MonitorSettings {
            failure_statuses: vec![status::FAILED.to_string(), status::PARTIAL.to_string()],
            retention: chrono::Duration::days(90),
            failure_window: chrono::Duration::days(7),
            initial_lookback: chrono::Duration::hours(24),
            stuck_after: chrono::Duration::hours(12),
            auto_rerun_max: 0,
            project_dimension: false,
            stuck_action: StuckAction::None,
            managed_label: "devlake-autopilot".to_string(),
        }
    }
}

impl MonitorSettings {
    pub fn counts_as_failure(&self, status: &str) -> bool {
        self.failure_statuses.iter().any(|s| s == status)
    }
}

/// Everything the monitor binary reads from the environment.
#[derive(Debug, Clone)]
pub struct MonitorConfig {
    /// The API key is left out: it is resolved from `api_key` (maybe Secrets Manager).
    pub devlake: ClientConfig,
    pub api_key: Option<SecretSource>,
    pub table_name: String,
    pub namespace: String,
    pub timezone: Tz,
    pub settings: MonitorSettings,
}

fn positive_hours(env: &Env, name: &str, default: i64) -> Result<chrono::Duration, ConfigError> {
    let hours = env.parse_or::<i64>(name, default)?;
    if !(1..=24 * 366).contains(&hours) {
        return Err(ConfigError::new(name, "must be between 1 and 8784 hours"));
    }
    Ok(chrono::Duration::hours(hours))
}

/// `MANAGED_LABEL`, read as the automation reads it.
fn managed_label(env: &Env) -> Result<String, ConfigError> {
    let label = env
        .get("MANAGED_LABEL")
        .unwrap_or(&MonitorSettings::default().managed_label)
        .to_string();
    if label.contains(',') {
        return Err(ConfigError::new(
            "MANAGED_LABEL",
            "must not contain a comma",
        ));
    }
    Ok(label)
}

/// The DevLake client settings, with the monitor's shorter default timeout (it runs every 5
/// minutes: fail fast).
fn client_config(env: &Env) -> Result<ClientConfig, ConfigError> {
    let defaults = ClientConfig {
        request_timeout: Duration::from_secs(10),
        ..ClientConfig::default()
    };
    devlake_client_config(env, defaults)
}

impl MonitorConfig {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let retention = env.failure_retention()?;
        let namespace = env.cloudwatch_namespace()?;
        let config = MonitorConfig {
            devlake: client_config(env)?,
            api_key: env.secret_source("DEVLAKE_API_KEY", "DEVLAKE_API_KEY_SECRET_ARN")?,
            table_name: env.required("TABLE_NAME")?.to_string(),
            namespace,
            timezone: env.timezone("TIMEZONE")?,
            settings: MonitorSettings {
                failure_statuses: env.failure_statuses()?,
                retention,
                failure_window: chrono::Duration::days(i64::from(env.failure_window_days()?)),
                initial_lookback: positive_hours(env, "INITIAL_LOOKBACK_HOURS", 24)?,
                stuck_after: positive_hours(env, "STUCK_AFTER_HOURS", 12)?,
                auto_rerun_max: env.parse_or::<u32>("AUTO_RERUN_MAX", 0)?,
                project_dimension: env.bool_or("CLOUDWATCH_PROJECT_DIMENSION", false)?,
                stuck_action: match env.get("STUCK_ACTION") {
                    None => StuckAction::None,
                    Some(raw) => {
                        StuckAction::parse(raw).map_err(|e| ConfigError::new("STUCK_ACTION", e))?
                    }
                },
                managed_label: managed_label(env)?,
            },
        };
        Ok(config)
    }
}

impl MonitorSettings {
    /// `cancel-and-rerun` re-runs count against `AUTO_RERUN_MAX`, so with it at 0 a cancelled
    /// pipeline is never re-run: the action works as `cancel`. Both values are valid alone (the
    /// template lets them vary independently), so the function starts and logs this as a warning.
    pub fn check_stuck_action(&self) -> Result<(), ConfigError> {
        if self.stuck_action == StuckAction::CancelAndRerun && self.auto_rerun_max == 0 {
            return Err(ConfigError::new(
                "STUCK_ACTION",
                "cancel-and-rerun re-runs within AUTO_RERUN_MAX, which is 0: stuck pipelines are \
                 cancelled but never re-run; set AUTO_RERUN_MAX to 1 or more",
            ));
        }
        Ok(())
    }

    /// Failure items live `FAILURE_RETENTION_DAYS` from their `finishedAt`, so they should
    /// outlive everything that looks back at them: the failure window, and the look-back of a
    /// first run or `rescan`, which would otherwise record again (and count twice) a failure
    /// whose item has already expired. Each value is valid alone and the template lets them vary
    /// independently, so the function starts anyway and logs this as one warning line.
    pub fn check_retention(&self) -> Result<(), ConfigError> {
        let days = self.retention.num_days();
        if self.retention < self.failure_window {
            return Err(ConfigError::new(
                "FAILURE_RETENTION_DAYS",
                format!(
                    "{days} days is shorter than FAILURE_WINDOW_DAYS ({}): failure items would \
                     expire inside the failure window they belong to; keep FAILURE_RETENTION_DAYS >= \
                     FAILURE_WINDOW_DAYS",
                    self.failure_window.num_days()
                ),
            ));
        }
        if self.retention < self.initial_lookback {
            return Err(ConfigError::new(
                "FAILURE_RETENTION_DAYS",
                format!(
                    "{days} days is shorter than INITIAL_LOOKBACK_HOURS ({} hours): a first run or \
                     rescan would record again failures whose items already expired, counting \
                     them twice; keep FAILURE_RETENTION_DAYS x 24 >= INITIAL_LOOKBACK_HOURS",
                    self.initial_lookback.num_hours()
                ),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Env {
        let mut all = vec![
            ("DEVLAKE_ENDPOINT", "https://devlake:8080"),
            ("TABLE_NAME", "t"),
        ];
        all.extend_from_slice(pairs);
        all.into_iter().collect()
    }

    #[test]
    fn defaults_follow_the_design() {
        let c = MonitorConfig::from_env(&env(&[])).unwrap();
        assert_eq!(c.settings, MonitorSettings::default());
        assert_eq!(c.namespace, "DevLake/Autopilot");
        assert_eq!(c.table_name, "t");
        assert_eq!(c.devlake.request_timeout, Duration::from_secs(10));
        assert!(c.api_key.is_none());
        assert!(c.settings.counts_as_failure("TASK_PARTIAL"));
        assert!(!c.settings.counts_as_failure("TASK_COMPLETED"));
    }

    #[test]
    fn reads_every_setting() {
        let c = MonitorConfig::from_env(&env(&[
            ("FAILURE_STATUSES", "task_failed, TASK_CANCELLED"),
            ("FAILURE_RETENTION_DAYS", "30"),
            ("FAILURE_WINDOW_DAYS", "14"),
            ("INITIAL_LOOKBACK_HOURS", "6"),
            ("STUCK_AFTER_HOURS", "2"),
            ("AUTO_RERUN_MAX", "2"),
            ("CLOUDWATCH_PROJECT_DIMENSION", "true"),
            ("CLOUDWATCH_NAMESPACE", "Team/DevLake"),
            ("DEVLAKE_API_KEY", "k"),
            ("DEVLAKE_PAGE_SIZE", "200"),
            ("STUCK_ACTION", "cancel-and-rerun"),
            ("MANAGED_LABEL", "team-bot"),
        ]))
        .unwrap();
        assert_eq!(c.settings.stuck_action, StuckAction::CancelAndRerun);
        assert_eq!(c.settings.managed_label, "team-bot");
        c.settings.check_stuck_action().unwrap();
        assert_eq!(
            c.settings.failure_statuses,
            vec!["TASK_FAILED", "TASK_CANCELLED"]
        );
        assert_eq!(c.settings.retention, chrono::Duration::days(30));
        assert_eq!(c.settings.failure_window, chrono::Duration::days(14));
        assert_eq!(c.settings.initial_lookback, chrono::Duration::hours(6));
        assert_eq!(c.settings.stuck_after, chrono::Duration::hours(2));
        assert_eq!(c.settings.auto_rerun_max, 2);
        assert!(c.settings.project_dimension);
        assert_eq!(c.namespace, "Team/DevLake");
        assert_eq!(c.devlake.page_size, 200);
        assert!(matches!(c.api_key, Some(SecretSource::Plain(_))));
    }

    #[test]
    fn errors_name_the_variable() {
        for (name, value) in [
            ("FAILURE_STATUSES", "TASK_COMPLETED"),
            ("FAILURE_STATUSES", " , "),
            ("FAILURE_RETENTION_DAYS", "0"),
            ("FAILURE_WINDOW_DAYS", "91"),
            ("INITIAL_LOOKBACK_HOURS", "-1"),
            ("STUCK_AFTER_HOURS", "soon"),
            ("AUTO_RERUN_MAX", "-1"),
            ("CLOUDWATCH_PROJECT_DIMENSION", "maybe"),
            ("CLOUDWATCH_NAMESPACE", "AWS/Lambda"),
            ("DEVLAKE_PAGE_SIZE", "0"),
            ("DEVLAKE_TIMEOUT_MS", "0"),
            ("TIMEZONE", "Nowhere/Land"),
            ("STUCK_ACTION", "kill"),
            ("STUCK_ACTION", "Cancel"),
            ("MANAGED_LABEL", "a,b"),
        ] {
            let err = MonitorConfig::from_env(&env(&[(name, value)])).unwrap_err();
            assert_eq!(err.variable, name, "{value}: {err}");
            assert!(!err.to_string().contains('\n'));
        }
        let missing: Env = [("DEVLAKE_ENDPOINT", "https://d")].into_iter().collect();
        assert_eq!(
            MonitorConfig::from_env(&missing).unwrap_err().variable,
            "TABLE_NAME"
        );
        let both = env(&[
            ("DEVLAKE_API_KEY", "secret-value"),
            ("DEVLAKE_API_KEY_SECRET_ARN", "arn:aws:secretsmanager:x"),
        ]);
        let err = MonitorConfig::from_env(&both).unwrap_err();
        assert!(!err.to_string().contains("secret-value"));
    }

    #[test]
    fn cancel_and_rerun_without_reruns_is_a_warning() {
        let c = MonitorConfig::from_env(&env(&[("STUCK_ACTION", "cancel-and-rerun")])).unwrap();
        let e = c.settings.check_stuck_action().unwrap_err();
        assert_eq!(e.variable, "STUCK_ACTION");
        assert!(e.problem.contains("AUTO_RERUN_MAX"), "{e}");
        let c = MonitorConfig::from_env(&env(&[("STUCK_ACTION", "cancel")])).unwrap();
        c.settings.check_stuck_action().unwrap();
        assert_eq!(MonitorSettings::default().stuck_action, StuckAction::None);
    }

    fn retention_problem(pairs: &[(&str, &str)]) -> String {
        MonitorConfig::from_env(&env(pairs))
            .expect("each value is valid alone")
            .settings
            .check_retention()
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn retention_should_cover_the_window_and_the_look_back() {
        let err = retention_problem(&[
            ("FAILURE_RETENTION_DAYS", "5"),
            ("FAILURE_WINDOW_DAYS", "7"),
        ]);
        assert!(
            err.starts_with("invalid configuration: FAILURE_RETENTION_DAYS: 5 days is shorter than FAILURE_WINDOW_DAYS (7)"),
            "{err}"
        );
        let err = retention_problem(&[
            ("FAILURE_RETENTION_DAYS", "2"),
            ("FAILURE_WINDOW_DAYS", "1"),
            ("INITIAL_LOOKBACK_HOURS", "49"),
        ]);
        assert!(
            err.contains("FAILURE_RETENTION_DAYS")
                && err.contains("INITIAL_LOOKBACK_HOURS (49 hours)"),
            "{err}"
        );
        assert!(!err.contains('\n'));
        // Equal is enough.
        MonitorConfig::from_env(&env(&[
            ("FAILURE_RETENTION_DAYS", "2"),
            ("FAILURE_WINDOW_DAYS", "2"),
            ("INITIAL_LOOKBACK_HOURS", "48"),
        ]))
        .unwrap()
        .settings
        .check_retention()
        .unwrap();
    }
}
