//! The automation function's configuration, read once at start-up from the environment.
//!
//! # Environment variables
//!
//! | variable | default | meaning |
//! | --- | --- | --- |
//! | `DEVLAKE_ENDPOINT` | required | DevLake base URL, e.g. `https://devlake.example.com/api/rest` (API keys only work under `/rest`); `http://` only with `ALLOW_INSECURE_HTTP` |
//! | `ALLOW_INSECURE_HTTP` | `false` | `true` accepts an `http://` endpoint, over which the API key (an admin credential) travels in clear |
//! | `DEVLAKE_CA_BUNDLE` | unset | PEM text, or the path of a PEM file, with CA certificates trusted for DevLake in addition to the system's roots |
//! | `DEVLAKE_API_KEY` | unset | API key sent as `Authorization: Bearer`; for local use |
//! | `DEVLAKE_API_KEY_SECRET_ARN` | unset | Secrets Manager secret holding the key (instead of `DEVLAKE_API_KEY`) |
//! | `DEVLAKE_TIMEOUT_MS` | `30000` | timeout of one DevLake request attempt |
//! | `DEVLAKE_MAX_RETRIES` | `3` | retries of idempotent DevLake requests (GET/PUT/PATCH) on 5xx, 429 and resets; POSTs are never blindly retried |
//! | `DEVLAKE_CONCURRENCY` | `4` | DevLake requests in flight at once (projects are created this many at a time) |
//! | `DEVLAKE_PAGE_SIZE` | `500` | rows asked for per page on list endpoints (DevLake's own default is 50) |
//! | `TABLE_NAME` | unset | DynamoDB table; when set, each scheduled run writes its run record (`devlake_automation_last_run_*`) |
//! | `CLOUDWATCH_NAMESPACE` | `DevLake/Autopilot` | namespace of the run metrics (`ProjectsCreated`, `ScopesAdded`, `BlueprintsUpdated`, `Triggered`, `Errors`, `RunDurationMs`, `RunSuccess`), each with `Function=automation`; checked at start-up by [`Env::cloudwatch_namespace`] |
//! | `TIMEZONE` | `Asia/Ho_Chi_Minh` | IANA zone of the `timeAfter` rules (local midnights) |
//! | `TIME_AFTER_POLICY` | `previous-saturday` | where managed blueprints' `timeAfter` is rolled: `previous-saturday` (00:00 of the Saturday before the run's local date), `rolling:<N>d` (00:00 N days before it, N ≤ 3650), `fixed:<YYYY-MM-DD>` (00:00 of that date) |
//! | `ORPHAN_POLICY` | `report` | scopes a complete remote walk no longer lists are reported (`orphanScopes`, `devlake_orphan_scopes`); `disable` also sets `enable: false` on managed blueprints whose only scope is orphaned (marked `<MANAGED_LABEL>-orphaned`) and enables them again when the scope is listed again. Nothing is deleted |
//! | `INITIAL_BACKFILL_DAYS` | `0` (off) | a project created or adopted by the tool first collects from 00:00 N days before the run's date (N ≤ 3650); the policy takes over after its first successful pipeline |
//! | `PLUGINS` | all nine | comma list of plugins to manage (`github`, `gitlab`, `bitbucket`, `bitbucket_server`, `azuredevops_go`, `jenkins`, `circleci`, `bamboo`, `jira`) |
//! | `PROJECT_NAME_TEMPLATE` | `{plugin}/{fullName}` | project name per scope; placeholders `{plugin}`, `{connectionId}`, `{connectionName}`, `{name}`, `{fullName}`, `{scopeId}` (at least one of the last three) |
//! | `SCOPE_INCLUDE` | `*` | comma list of globs over `{plugin}/{connectionId}/{fullName}`; `*` also matches `/` |
//! | `SCOPE_EXCLUDE` | empty | comma list of globs; a scope matching one is not managed (exclude wins) |
//! | `DRY_RUN` | `false` | plan and report every change, make none; a payload cannot turn it off |
//! | `TRIGGER_MODE` | `new-and-failed` | `new-and-failed`: trigger projects created in this run, managed projects that never ran (created by an earlier run that hit its trigger cap or deadline) and managed projects whose last pipeline ended `TASK_FAILED`/`TASK_PARTIAL`; `all`: every managed blueprint |
//! | `TRIGGER_GAP_MS` | `2000` | pause between two triggers (each takes a 2 s table lock in DevLake) |
//! | `TRIGGER_MAX_PER_RUN` | `100` | triggers per run at most; the rest is reported as skipped and picked up by the next run |
//! | `BLUEPRINT_CRON` | `0 0 * * *`; `manual` when `TRIGGER_MODE=all` | `cronConfig` of managed blueprints (5-field cron in UTC, `@daily`-style descriptor, `manual`, or `spread:<HH:MM>-<HH:MM>`: once a day at a minute of that UTC window fixed per project by a hash of its name). In `all` mode this tool is the scheduler, so DevLake's own cron is off by default to avoid collecting twice |
//! | `MANAGED_LABEL` | `devlake-autopilot` | blueprint label marking what this tool manages; nothing without it is ever changed |
//! | `SCOPE_CONFIG_NAME` | `devlake-autopilot` | base name of the scope config created once per connection; the connection id is appended (`devlake-autopilot-3`) because DevLake's scope-config names are unique across a plugin's connections |
//! | `DORA_DEPLOYMENT_PATTERN` | `(deploy\|push-image)` | `deploymentPattern` of new scope configs (SCM and CI plugins) |
//! | `DORA_PRODUCTION_PATTERN` | `prod(.*)` | `productionPattern` of new scope configs (SCM and CI plugins) |
//! | `SCOPE_BATCH_SIZE` | `100` | scopes per `PUT .../scopes` |
//! | `DEADLINE_MARGIN_MS` | `20000` | stop starting new work this long before the Lambda deadline and report what is left |

use std::borrow::Cow;
use std::time::Duration;

use chrono_tz::Tz;

use crate::config::{ConfigError, Env};
use crate::cron::CronSchedule;
use crate::devlake::models::SUPPORTED_PLUGINS;
use crate::devlake::ClientConfig;
use crate::time_rules::{TimeAfterPolicy, MAX_DAYS_BACK};

use super::filter::ScopeFilter;
use super::naming::NameTemplate;
use super::orphans::OrphanPolicy;
use super::spread::SpreadWindow;

/// Which blueprints the trigger step starts (`TRIGGER_MODE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TriggerMode {
    NewAndFailed,
    All,
}

impl TriggerMode {
    pub fn as_str(self) -> &'static str {
        match self {
            TriggerMode::NewAndFailed => "new-and-failed",
            TriggerMode::All => "all",
        }
    }
}

/// `cronConfig` for managed blueprints: a schedule, `manual`, or a daily minute per project
/// inside a UTC window (`spread:<HH:MM>-<HH:MM>`, see [`super::spread`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CronSetting {
    Manual,
    Schedule(String),
    Spread(SpreadWindow),
}

impl CronSetting {
    pub fn parse(raw: &str) -> Result<Self, String> {
        let raw = raw.trim();
        if raw.eq_ignore_ascii_case("manual") {
            return Ok(CronSetting::Manual);
        }
        if let Some(window) = raw.strip_prefix("spread:") {
            return SpreadWindow::parse(window).map(CronSetting::Spread);
        }
        validate_cron(raw)?;
        Ok(CronSetting::Schedule(
            raw.split_whitespace().collect::<Vec<_>>().join(" "),
        ))
    }

    /// The setting as written (`spread:01:00-05:00` for a window): for logs. What a blueprint
    /// gets is [`Self::for_project`]'s `cronConfig`.
    pub fn cron_config(&self) -> Cow<'_, str> {
        match self {
            CronSetting::Manual => Cow::Borrowed("manual"),
            CronSetting::Schedule(s) => Cow::Borrowed(s),
            CronSetting::Spread(w) => Cow::Owned(w.to_string()),
        }
    }

    /// The setting for one project's blueprint: a window becomes the project's own
    /// `M H * * *`; the other forms are the same for every project.
    pub fn for_project(&self, project: &str) -> CronSetting {
        match self {
            CronSetting::Spread(w) => CronSetting::Schedule(w.cron_for(project)),
            other => other.clone(),
        }
    }

    pub fn is_manual(&self) -> bool {
        matches!(self, CronSetting::Manual)
    }
}

/// What the automation needs besides its ports. Built by [`AutomationConfig::from_env`] in the
/// binary, or directly by tests.
#[derive(Debug, Clone)]
pub struct AutomationConfig {
    pub timezone: Tz,
    /// Subset of `SUPPORTED_PLUGINS`, in that order.
    pub plugins: Vec<String>,
    pub name_template: NameTemplate,
    pub scope_filter: ScopeFilter,
    pub dry_run: bool,
    pub trigger_mode: TriggerMode,
    pub trigger_gap: Duration,
    pub trigger_max_per_run: usize,
    pub cron: CronSetting,
    pub label: String,
    pub scope_config_name: String,
    pub deployment_pattern: String,
    pub production_pattern: String,
    pub scope_batch_size: usize,
    /// Projects created (and blueprints patched) at once.
    pub concurrency: usize,
    pub deadline_margin: Duration,
    pub time_after_policy: TimeAfterPolicy,
    /// Days of history a new (or adopted) project's first collection reaches back; 0 = off.
    pub initial_backfill_days: u32,
    pub orphan_policy: OrphanPolicy,
}

impl Default for AutomationConfig {
    fn default() -> Self {
        AutomationConfig {
            timezone: chrono_tz::Asia::Ho_Chi_Minh,
            plugins: SUPPORTED_PLUGINS.iter().map(|p| p.to_string()).collect(),
            name_template: NameTemplate::default(),
            scope_filter: ScopeFilter::all(),
            dry_run: false,
            trigger_mode: TriggerMode::NewAndFailed,
            trigger_gap: Duration::from_millis(2000),
            trigger_max_per_run: 100,
            cron: CronSetting::Schedule("0 0 * * *".to_string()),
            label: "devlake-autopilot".to_string(),
            scope_config_name: "devlake-autopilot".to_string(),
            deployment_pattern: "(deploy|push-image)".to_string(),
            production_pattern: "prod(.*)".to_string(),
            scope_batch_size: 100,
            concurrency: 4,
            deadline_margin: Duration::from_millis(20_000),
            time_after_policy: TimeAfterPolicy::PreviousSaturday,
            initial_backfill_days: 0,
            orphan_policy: OrphanPolicy::Report,
        }
    }
}

impl AutomationConfig {
    /// Reads and validates every automation setting; the error names the variable.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let d = AutomationConfig::default();
        let plugins = match env.list("PLUGINS") {
            None => d.plugins.clone(),
            Some(list) => parse_plugins(&list).map_err(|p| ConfigError::new("PLUGINS", p))?,
        };
        let name_template = match env.get("PROJECT_NAME_TEMPLATE") {
            None => NameTemplate::default(),
            Some(raw) => NameTemplate::parse(raw)
                .map_err(|e| ConfigError::new("PROJECT_NAME_TEMPLATE", e.0))?,
        };
        let include = env.list("SCOPE_INCLUDE").unwrap_or_default();
        let exclude = env.list("SCOPE_EXCLUDE").unwrap_or_default();
        let scope_filter = ScopeFilter::new(&include, &exclude).map_err(|(inc, msg)| {
            ConfigError::new(
                if inc {
                    "SCOPE_INCLUDE"
                } else {
                    "SCOPE_EXCLUDE"
                },
                msg,
            )
        })?;
        let trigger_mode = match env.get("TRIGGER_MODE") {
            None => TriggerMode::NewAndFailed,
            Some("new-and-failed") => TriggerMode::NewAndFailed,
            Some("all") => TriggerMode::All,
            Some(other) => {
                return Err(ConfigError::new(
                    "TRIGGER_MODE",
                    format!("expected new-and-failed or all, got {other:?}"),
                ))
            }
        };
        let cron = match env.get("BLUEPRINT_CRON") {
            Some(raw) => {
                CronSetting::parse(raw).map_err(|e| ConfigError::new("BLUEPRINT_CRON", e))?
            }
            None if trigger_mode == TriggerMode::All => CronSetting::Manual,
            None => d.cron.clone(),
        };
        let label = non_empty(env, "MANAGED_LABEL", &d.label)?;
        let scope_config_name = non_empty(env, "SCOPE_CONFIG_NAME", &d.scope_config_name)?;
        if scope_config_name.len() > 80 {
            return Err(ConfigError::new(
                "SCOPE_CONFIG_NAME",
                "must be at most 80 characters (the connection id is appended)",
            ));
        }
        let scope_batch_size = env.parse_or::<usize>("SCOPE_BATCH_SIZE", d.scope_batch_size)?;
        if !(1..=1000).contains(&scope_batch_size) {
            return Err(ConfigError::new(
                "SCOPE_BATCH_SIZE",
                "must be between 1 and 1000",
            ));
        }
        let concurrency = env.parse_or::<usize>("DEVLAKE_CONCURRENCY", d.concurrency)?;
        if !(1..=64).contains(&concurrency) {
            return Err(ConfigError::new(
                "DEVLAKE_CONCURRENCY",
                "must be between 1 and 64",
            ));
        }
        let time_after_policy = match env.get("TIME_AFTER_POLICY") {
            None => TimeAfterPolicy::PreviousSaturday,
            Some(raw) => {
                TimeAfterPolicy::parse(raw).map_err(|e| ConfigError::new("TIME_AFTER_POLICY", e))?
            }
        };
        let initial_backfill_days = env.parse_or::<u32>("INITIAL_BACKFILL_DAYS", 0)?;
        if initial_backfill_days > MAX_DAYS_BACK {
            return Err(ConfigError::new(
                "INITIAL_BACKFILL_DAYS",
                format!("must be between 0 (off) and {MAX_DAYS_BACK}"),
            ));
        }
        let orphan_policy = match env.get("ORPHAN_POLICY") {
            None => OrphanPolicy::Report,
            Some(raw) => {
                OrphanPolicy::parse(raw).map_err(|e| ConfigError::new("ORPHAN_POLICY", e))?
            }
        };
        Ok(AutomationConfig {
            timezone: env.timezone("TIMEZONE")?,
            plugins,
            name_template,
            scope_filter,
            dry_run: env.bool_or("DRY_RUN", false)?,
            trigger_mode,
            trigger_gap: Duration::from_millis(env.parse_or::<u64>("TRIGGER_GAP_MS", 2000)?),
            trigger_max_per_run: env
                .parse_or::<usize>("TRIGGER_MAX_PER_RUN", d.trigger_max_per_run)?,
            cron,
            label,
            scope_config_name,
            deployment_pattern: env
                .get("DORA_DEPLOYMENT_PATTERN")
                .unwrap_or(&d.deployment_pattern)
                .to_string(),
            production_pattern: env
                .get("DORA_PRODUCTION_PATTERN")
                .unwrap_or(&d.production_pattern)
                .to_string(),
            scope_batch_size,
            concurrency,
            deadline_margin: Duration::from_millis(
                env.parse_or::<u64>("DEADLINE_MARGIN_MS", 20_000)?,
            ),
            time_after_policy,
            initial_backfill_days,
            orphan_policy,
        })
    }
}

/// The DevLake client settings of `DEVLAKE_*` with the given API key (resolved separately, it may
/// live in Secrets Manager).
pub fn client_config_from_env(
    env: &Env,
    api_key: Option<String>,
) -> Result<ClientConfig, ConfigError> {
    Ok(ClientConfig {
        api_key,
        ..crate::config::devlake_client_config(env, ClientConfig::default())?
    })
}

fn non_empty(env: &Env, name: &str, default: &str) -> Result<String, ConfigError> {
    let v = env.get(name).unwrap_or(default);
    if v.contains(',') {
        return Err(ConfigError::new(name, "must not contain a comma"));
    }
    Ok(v.to_string())
}

/// Validates a plugin list against `SUPPORTED_PLUGINS`; returns it in the supported order.
pub fn parse_plugins(list: &[String]) -> Result<Vec<String>, String> {
    for p in list {
        if !SUPPORTED_PLUGINS.contains(&p.as_str()) {
            return Err(format!(
                "unknown plugin {p:?}; supported: {}",
                SUPPORTED_PLUGINS.join(", ")
            ));
        }
    }
    if list.is_empty() {
        return Err("names no plugin".to_string());
    }
    Ok(SUPPORTED_PLUGINS
        .iter()
        .filter(|p| list.iter().any(|l| l == *p))
        .map(|p| p.to_string())
        .collect())
}

/// The subset of robfig/cron `ParseStandard` DevLake accepts (docs/devlake-api.md): five fields
/// `min hour dom month dow` or a descriptor, read in UTC (DevLake's cron location; a `TZ=` prefix
/// is refused so the documented "always UTC" holds). Checked at start-up so a typo fails there,
/// not as a 400 on every blueprint.
pub fn validate_cron(spec: &str) -> Result<(), String> {
    let schedule = CronSchedule::parse(spec)?;
    if schedule.has_zone() {
        return Err(format!(
            "{spec:?}: a TZ= prefix is not accepted; write the schedule in UTC"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Env {
        pairs.iter().copied().collect()
    }

    #[test]
    fn defaults_match_the_design() {
        let c = AutomationConfig::from_env(&env(&[])).unwrap();
        assert_eq!(c.plugins.len(), 9);
        assert_eq!(c.name_template.source(), "{plugin}/{fullName}");
        assert_eq!(c.trigger_mode, TriggerMode::NewAndFailed);
        assert_eq!(c.cron, CronSetting::Schedule("0 0 * * *".into()));
        assert_eq!(c.timezone, chrono_tz::Asia::Ho_Chi_Minh);
        assert!(!c.dry_run);
        assert_eq!(c.trigger_gap, Duration::from_millis(2000));
        assert_eq!(c.label, "devlake-autopilot");
        assert_eq!(c.time_after_policy, TimeAfterPolicy::PreviousSaturday);
        assert_eq!(c.initial_backfill_days, 0);
        let c = AutomationConfig::from_env(&env(&[
            ("TIME_AFTER_POLICY", "rolling:14d"),
            ("INITIAL_BACKFILL_DAYS", "90"),
        ]))
        .unwrap();
        assert_eq!(c.time_after_policy, TimeAfterPolicy::Rolling(14));
        assert_eq!(c.initial_backfill_days, 90);
    }

    #[test]
    fn all_mode_turns_devlakes_cron_off_unless_told_otherwise() {
        let c = AutomationConfig::from_env(&env(&[("TRIGGER_MODE", "all")])).unwrap();
        assert_eq!(c.cron, CronSetting::Manual);
        let c = AutomationConfig::from_env(&env(&[
            ("TRIGGER_MODE", "all"),
            ("BLUEPRINT_CRON", "0  3 * * 1-5"),
        ]))
        .unwrap();
        assert_eq!(c.cron, CronSetting::Schedule("0 3 * * 1-5".into()));
    }

    #[test]
    fn each_bad_setting_names_its_variable() {
        for (var, value) in [
            ("PLUGINS", "github,svn"),
            ("PROJECT_NAME_TEMPLATE", "{plugin}/{repo}"),
            ("SCOPE_INCLUDE", "github/[x"),
            ("SCOPE_EXCLUDE", "a{b"),
            ("TRIGGER_MODE", "sometimes"),
            ("TRIGGER_GAP_MS", "-5"),
            ("TRIGGER_MAX_PER_RUN", "many"),
            ("BLUEPRINT_CRON", "0 25 * * *"),
            ("DRY_RUN", "perhaps"),
            ("TIMEZONE", "Mars/Olympus"),
            ("SCOPE_BATCH_SIZE", "0"),
            ("MANAGED_LABEL", "a,b"),
            ("TIME_AFTER_POLICY", "rolling:7"),
            ("TIME_AFTER_POLICY", "fixed:2026-13-01"),
            ("INITIAL_BACKFILL_DAYS", "-3"),
            ("INITIAL_BACKFILL_DAYS", "99999"),
            ("ORPHAN_POLICY", "delete"),
        ] {
            let e = AutomationConfig::from_env(&env(&[(var, value)])).unwrap_err();
            assert_eq!(e.variable, var, "{e}");
            assert!(e.to_string().starts_with("invalid configuration: "), "{e}");
        }
    }

    #[test]
    fn plugins_keep_the_supported_order() {
        let c = AutomationConfig::from_env(&env(&[("PLUGINS", "jira, github")])).unwrap();
        assert_eq!(c.plugins, vec!["github", "jira"]);
    }

    #[test]
    fn cron_forms_devlake_accepts() {
        for ok in [
            "0 0 * * *",
            "*/15 2-4 1,15 JAN-mar mon-fri",
            "@daily",
            "@every 6h30m",
            "30 18 * * 0",
        ] {
            assert!(validate_cron(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "0 0 * *",
            "60 0 * * *",
            "0 0 0 * *",
            "@sometimes",
            "@every x",
            "5-1 * * * *",
            "*/0 * * * *",
        ] {
            assert!(validate_cron(bad).is_err(), "{bad}");
        }
        assert_eq!(CronSetting::parse("MANUAL").unwrap(), CronSetting::Manual);
        assert!(validate_cron("TZ=Asia/Tokyo 0 0 * * *").is_err());
    }

    #[test]
    fn spread_windows_give_each_project_its_own_daily_minute() {
        let c =
            AutomationConfig::from_env(&env(&[("BLUEPRINT_CRON", "spread:01:00-05:00")])).unwrap();
        let CronSetting::Spread(w) = &c.cron else {
            panic!("{:?}", c.cron)
        };
        assert_eq!(w.len(), 240);
        assert_eq!(c.cron.cron_config(), "spread:01:00-05:00");
        let CronSetting::Schedule(one) = c.cron.for_project("github/org/a") else {
            panic!()
        };
        validate_cron(&one).unwrap();
        assert_eq!(
            c.cron.for_project("github/org/a"),
            c.cron.for_project("github/org/a")
        );
        assert!(!c.cron.for_project("github/org/a").is_manual());
        // The other forms are the same for every project.
        assert_eq!(CronSetting::Manual.for_project("x"), CronSetting::Manual);
        for bad in [
            "spread:",
            "spread:01:00",
            "spread:01:00-01:00",
            "spread:1-5",
            "spread:25:00-01:00",
            "spread:01:00-05:00,06:00-07:00",
        ] {
            let e = AutomationConfig::from_env(&env(&[("BLUEPRINT_CRON", bad)])).unwrap_err();
            assert_eq!(e.variable, "BLUEPRINT_CRON", "{bad}");
            assert!(!e.to_string().contains('\n'), "{e}");
        }
    }

    #[test]
    fn client_settings() {
        let e = client_config_from_env(&env(&[]), None).unwrap_err();
        assert_eq!(e.variable, "DEVLAKE_ENDPOINT");
        let c = client_config_from_env(
            &env(&[
                ("DEVLAKE_ENDPOINT", "https://d:8080"),
                ("DEVLAKE_TIMEOUT_MS", "1500"),
                ("DEVLAKE_PAGE_SIZE", "200"),
            ]),
            Some("k".into()),
        )
        .unwrap();
        assert_eq!(c.request_timeout, Duration::from_millis(1500));
        assert_eq!(c.page_size, 200);
        assert_eq!(c.api_key.as_deref(), Some("k"));
    }
}
