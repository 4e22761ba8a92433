//! Reading configuration from environment variables, with one-line errors that name the variable.
//!
//! Binaries pass `std::env::vars()` in; everything else is pure so it can be tested with a map.

use std::collections::BTreeMap;
use std::str::FromStr;

use chrono_tz::Tz;
use thiserror::Error;

/// A configuration problem. Its message is the one line an operator sees at start-up; it names the
/// variable and never repeats a secret's value.
#[derive(Debug, Error, PartialEq, Eq)]
#[error("invalid configuration: {variable}: {problem}")]
pub struct ConfigError {
    pub variable: String,
    pub problem: String,
}

impl ConfigError {
    pub fn new(variable: &str, problem: impl Into<String>) -> Self {
        ConfigError {
            variable: variable.to_string(),
            problem: problem.into(),
        }
    }
}

/// The longest `FAILURE_WINDOW_DAYS` either function accepts. The monitor keeps each project's
/// recent-failures list to its own `FAILURE_WINDOW_DAYS` (at each commit, and for every project
/// once a day), so the list, and the bytes every scrape reads, follow the window, not history.
pub const MAX_FAILURE_WINDOW_DAYS: u32 = 90;

/// The namespace of both jobs' CloudWatch metrics when `CLOUDWATCH_NAMESPACE` is unset.
pub const DEFAULT_CLOUDWATCH_NAMESPACE: &str = "DevLake/Autopilot";

/// A snapshot of the process environment (or a test's map).
#[derive(Debug, Clone, Default)]
pub struct Env(BTreeMap<String, String>);

impl<K: Into<String>, V: Into<String>> FromIterator<(K, V)> for Env {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        Env(iter
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect())
    }
}

impl Env {
    /// The process environment. Only binaries call this.
    pub fn from_process() -> Self {
        std::env::vars().collect()
    }

    /// The value, with surrounding white space removed; empty counts as unset.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(|v| v.trim()).filter(|v| !v.is_empty())
    }

    pub fn required(&self, name: &str) -> Result<&str, ConfigError> {
        self.get(name)
            .ok_or_else(|| ConfigError::new(name, "is required but not set"))
    }

    /// Parses the value with `FromStr`, or returns `default` when unset.
    pub fn parse_or<T: FromStr>(&self, name: &str, default: T) -> Result<T, ConfigError>
    where
        T::Err: std::fmt::Display,
    {
        match self.get(name) {
            None => Ok(default),
            Some(raw) => raw
                .parse()
                .map_err(|e| ConfigError::new(name, format!("cannot parse {raw:?}: {e}"))),
        }
    }

    /// `true`/`false`/`1`/`0`/`yes`/`no` (any case).
    pub fn bool_or(&self, name: &str, default: bool) -> Result<bool, ConfigError> {
        match self.get(name).map(str::to_ascii_lowercase).as_deref() {
            None => Ok(default),
            Some("true" | "1" | "yes") => Ok(true),
            Some("false" | "0" | "no") => Ok(false),
            Some(other) => Err(ConfigError::new(
                name,
                format!("expected true or false, got {other:?}"),
            )),
        }
    }

    /// A comma-separated list; blanks dropped. Unset gives `None`.
    pub fn list(&self, name: &str) -> Option<Vec<String>> {
        self.get(name).map(|raw| {
            raw.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect()
        })
    }

    /// An IANA time zone (`TIMEZONE`), default `Asia/Ho_Chi_Minh`.
    pub fn timezone(&self, name: &str) -> Result<Tz, ConfigError> {
        let raw = self.get(name).unwrap_or("Asia/Ho_Chi_Minh");
        raw.parse::<Tz>()
            .map_err(|_| ConfigError::new(name, format!("{raw:?} is not an IANA time zone name")))
    }

    /// `CLOUDWATCH_NAMESPACE`, default [`DEFAULT_CLOUDWATCH_NAMESPACE`]: 1–255 characters that
    /// CloudWatch allows in a namespace (ASCII letters and digits, `.` `-` `_` `/` `#` `:` and
    /// space), not starting with `:` and not starting with `AWS/` (reserved for AWS services).
    /// Checked at start-up, because CloudWatch would refuse every `PutMetricData` of a run
    /// otherwise, and a refused datum is only logged.
    pub fn cloudwatch_namespace(&self) -> Result<String, ConfigError> {
        const NAME: &str = "CLOUDWATCH_NAMESPACE";
        let ns = self.get(NAME).unwrap_or(DEFAULT_CLOUDWATCH_NAMESPACE);
        let allowed = |c: &char| {
            c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '/' | '#' | ':' | ' ')
        };
        let problem = if ns.starts_with("AWS/") {
            Some(format!(
                "{ns:?} starts with AWS/, which is reserved for AWS services"
            ))
        } else if ns.chars().count() > 255 {
            Some("must be at most 255 characters".to_string())
        } else if ns.starts_with(':') {
            Some(format!("{ns:?} must not start with a colon"))
        } else {
            ns.chars().find(|c| !allowed(c)).map(|c| {
                format!("{ns:?} contains {c:?}; allowed are ASCII letters, digits, space and . - _ / # :")
            })
        };
        match problem {
            Some(p) => Err(ConfigError::new(NAME, p)),
            None => Ok(ns.to_string()),
        }
    }

    /// `FAILURE_STATUSES` (default `TASK_FAILED,TASK_PARTIAL`; any of those and
    /// `TASK_CANCELLED`, case-insensitive, duplicates dropped): the finished statuses recorded as
    /// failures. Read alike by the monitor and the events function, which record the same
    /// failures; the template gives both the same value.
    pub fn failure_statuses(&self) -> Result<Vec<String>, ConfigError> {
        use crate::devlake::models::status;
        const NAME: &str = "FAILURE_STATUSES";
        let Some(list) = self.list(NAME) else {
            return Ok(vec![
                status::FAILED.to_string(),
                status::PARTIAL.to_string(),
            ]);
        };
        if list.is_empty() {
            return Err(ConfigError::new(NAME, "lists no status"));
        }
        let mut out: Vec<String> = Vec::new();
        for raw in list {
            let s = raw.to_ascii_uppercase();
            if !matches!(
                s.as_str(),
                status::FAILED | status::PARTIAL | status::CANCELLED
            ) {
                return Err(ConfigError::new(
                    NAME,
                    format!("{raw:?} is not one of TASK_FAILED, TASK_PARTIAL, TASK_CANCELLED"),
                ));
            }
            if !out.contains(&s) {
                out.push(s);
            }
        }
        Ok(out)
    }

    /// `FAILURE_RETENTION_DAYS` (default 90, 1 to 3650): the lifetime (TTL) of failure items.
    /// Read alike by the monitor and the events function, which both write them.
    pub fn failure_retention(&self) -> Result<chrono::Duration, ConfigError> {
        const NAME: &str = "FAILURE_RETENTION_DAYS";
        let days = self.parse_or::<i64>(NAME, 90)?;
        if !(1..=3650).contains(&days) {
            return Err(ConfigError::new(NAME, "must be between 1 and 3650 days"));
        }
        Ok(chrono::Duration::days(days))
    }

    /// `FAILURE_WINDOW_DAYS` (default 7, 1 to [`MAX_FAILURE_WINDOW_DAYS`]): the metrics page's
    /// failure window and how long the monitor keeps failures in each project's recent list.
    /// Read by the monitor, the metrics and the events functions; the template gives them the
    /// same value.
    pub fn failure_window_days(&self) -> Result<u32, ConfigError> {
        const NAME: &str = "FAILURE_WINDOW_DAYS";
        let days: u32 = self.parse_or(NAME, 7)?;
        if !(1..=MAX_FAILURE_WINDOW_DAYS).contains(&days) {
            return Err(ConfigError::new(
                NAME,
                format!("must be between 1 and {MAX_FAILURE_WINDOW_DAYS}, got {days}"),
            ));
        }
        Ok(days)
    }

    /// A secret given either as a plain value or as a Secrets Manager ARN, never both.
    /// Returns which one is set; the caller resolves the ARN.
    pub fn secret_source(
        &self,
        plain: &str,
        arn: &str,
    ) -> Result<Option<SecretSource>, ConfigError> {
        match (self.get(plain), self.get(arn)) {
            (Some(_), Some(_)) => Err(ConfigError::new(
                plain,
                format!("set either {plain} or {arn}, not both"),
            )),
            (Some(value), None) => Ok(Some(SecretSource::Plain(value.to_string()))),
            (None, Some(a)) => Ok(Some(SecretSource::SecretArn(a.to_string()))),
            (None, None) => Ok(None),
        }
    }

    /// Like [`Env::secret_source`], for a secret the function cannot run without.
    pub fn required_secret_source(
        &self,
        plain: &str,
        arn: &str,
    ) -> Result<SecretSource, ConfigError> {
        self.secret_source(plain, arn)?
            .ok_or_else(|| ConfigError::new(plain, format!("is required (or set {arn})")))
    }
}

/// The DevLake base URL.
pub const ENDPOINT_VAR: &str = "DEVLAKE_ENDPOINT";

/// Lets an `http://` [`ENDPOINT_VAR`] through; off by default.
pub const ALLOW_INSECURE_HTTP_VAR: &str = "ALLOW_INSECURE_HTTP";

/// Whether the endpoint is plain HTTP (the scheme is case-insensitive). Anything else that is
/// not `https://` is left to the client, which refuses it as not an http(s) URL.
fn is_plain_http(endpoint: &str) -> bool {
    endpoint
        .get(..7)
        .is_some_and(|scheme| scheme.eq_ignore_ascii_case("http://"))
}

/// The DevLake client settings of `DEVLAKE_*` over `defaults` (each function has its own default
/// timeout). The API key is left unset: it may live in Secrets Manager and is resolved apart.
///
/// | variable | meaning |
/// | --- | --- |
/// | `DEVLAKE_ENDPOINT` | base URL (required); `https://` unless `ALLOW_INSECURE_HTTP` |
/// | `ALLOW_INSECURE_HTTP` | `true` lets an `http://` endpoint through (default `false`) |
/// | `DEVLAKE_CA_BUNDLE` | PEM text or a PEM file's path: CAs trusted besides the system's |
/// | `DEVLAKE_TIMEOUT_MS` | timeout of one request attempt |
/// | `DEVLAKE_MAX_RETRIES` | retries of idempotent requests on 5xx, 429 and resets |
/// | `DEVLAKE_CONCURRENCY` | requests in flight at once (1–64) |
/// | `DEVLAKE_PAGE_SIZE` | rows per page of list endpoints (1–5000) |
pub fn devlake_client_config(
    env: &Env,
    defaults: crate::devlake::ClientConfig,
) -> Result<crate::devlake::ClientConfig, ConfigError> {
    let d = defaults;
    let concurrency = env.parse_or::<usize>("DEVLAKE_CONCURRENCY", d.max_concurrency)?;
    if !(1..=64).contains(&concurrency) {
        return Err(ConfigError::new(
            "DEVLAKE_CONCURRENCY",
            "must be between 1 and 64",
        ));
    }
    let page_size = env.parse_or::<u32>("DEVLAKE_PAGE_SIZE", d.page_size)?;
    if !(1..=5000).contains(&page_size) {
        return Err(ConfigError::new(
            "DEVLAKE_PAGE_SIZE",
            "must be between 1 and 5000",
        ));
    }
    let timeout_ms =
        env.parse_or::<u64>("DEVLAKE_TIMEOUT_MS", d.request_timeout.as_millis() as u64)?;
    if timeout_ms == 0 {
        return Err(ConfigError::new("DEVLAKE_TIMEOUT_MS", "must be at least 1"));
    }
    let endpoint = env.required(ENDPOINT_VAR)?;
    let allow_insecure_http = env.bool_or(ALLOW_INSECURE_HTTP_VAR, false)?;
    if is_plain_http(endpoint) && !allow_insecure_http {
        return Err(ConfigError::new(
            ENDPOINT_VAR,
            format!(
                "is http://, which would send the DevLake API key (an admin credential) in clear; \
                 use https:// or set {ALLOW_INSECURE_HTTP_VAR}=true"
            ),
        ));
    }
    Ok(crate::devlake::ClientConfig {
        endpoint: endpoint.to_string(),
        api_key: None,
        request_timeout: std::time::Duration::from_millis(timeout_ms),
        max_retries: env.parse_or::<u32>("DEVLAKE_MAX_RETRIES", d.max_retries)?,
        max_concurrency: concurrency,
        page_size,
        ca_bundle: env
            .get(crate::devlake::CA_BUNDLE_VAR)
            .map(|value| {
                crate::devlake::CaBundle::from_setting(value)
                    .map_err(|problem| ConfigError::new(crate::devlake::CA_BUNDLE_VAR, problem))
            })
            .transpose()?,
        ..d
    })
}

/// The longest one DevLake request can take before the client gives up: every attempt
/// (`DEVLAKE_MAX_RETRIES` + 1) running into `DEVLAKE_TIMEOUT_MS`, plus the longest backoff sleep
/// before each retry (200 ms doubling, at most 5 s each).
pub fn devlake_request_worst_case(c: &crate::devlake::ClientConfig) -> std::time::Duration {
    let policy = crate::devlake::RetryPolicy {
        max_retries: c.max_retries,
        base_delay: c.retry_base_delay,
        max_delay: c.retry_max_delay,
    };
    let attempts = c
        .request_timeout
        .saturating_mul(c.max_retries.saturating_add(1));
    (0..c.max_retries).fold(attempts, |total, retry| {
        total.saturating_add(policy.ceiling(retry))
    })
}

/// Whether one DevLake request, retries and backoff included, fits in the function's timeout
/// with the time the run keeps back for its summary, run record and metrics (`margin`).
///
/// Lambda tells a function its timeout only through each invocation's deadline (no environment
/// variable carries it), so callers pass the time left when an invocation starts, which is the
/// configured timeout. A run that cannot fit one request would be killed mid-call with nothing
/// recorded; this refuses it in one line naming the variables instead.
pub fn check_devlake_fits_timeout(
    c: &crate::devlake::ClientConfig,
    margin: std::time::Duration,
    margin_variable: &str,
    function_timeout: std::time::Duration,
) -> Result<(), ConfigError> {
    let worst = devlake_request_worst_case(c);
    if worst.saturating_add(margin) <= function_timeout {
        return Ok(());
    }
    let secs = |d: std::time::Duration| format!("{:.1} s", d.as_secs_f64());
    Err(ConfigError::new(
        "DEVLAKE_TIMEOUT_MS, DEVLAKE_MAX_RETRIES",
        format!(
            "one DevLake request may take {} ({} attempts of {} ms plus backoff), which with \
             {margin_variable} ({}) does not fit the function timeout ({}); lower \
             DEVLAKE_TIMEOUT_MS or DEVLAKE_MAX_RETRIES, or raise the function timeout",
            secs(worst),
            c.max_retries.saturating_add(1),
            c.request_timeout.as_millis(),
            secs(margin),
            secs(function_timeout),
        ),
    ))
}

/// Where a secret comes from. Debug never shows a plain value.
#[derive(Clone, PartialEq, Eq)]
pub enum SecretSource {
    Plain(String),
    SecretArn(String),
}

impl std::fmt::Debug for SecretSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SecretSource::Plain(_) => f.write_str("Plain(<redacted>)"),
            SecretSource::SecretArn(arn) => f.debug_tuple("SecretArn").field(arn).finish(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Env {
        pairs.iter().copied().collect()
    }

    #[test]
    fn required_names_the_variable() {
        let err = env(&[("TABLE_NAME", "  ")])
            .required("TABLE_NAME")
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid configuration: TABLE_NAME: is required but not set"
        );
    }

    #[test]
    fn bool_accepts_common_spellings_and_rejects_others() {
        let e = env(&[("A", "TRUE"), ("B", "0"), ("C", "maybe")]);
        assert!(e.bool_or("A", false).unwrap());
        assert!(!e.bool_or("B", true).unwrap());
        assert!(e.bool_or("MISSING", true).unwrap());
        let err = e.bool_or("C", false).unwrap_err();
        assert_eq!(err.variable, "C");
    }

    #[test]
    fn list_splits_and_trims() {
        let e = env(&[("PLUGINS", " github, ,jira ")]);
        assert_eq!(e.list("PLUGINS").unwrap(), vec!["github", "jira"]);
        assert_eq!(e.list("NOPE"), None);
    }

    #[test]
    fn timezone_defaults_and_validates() {
        assert_eq!(
            env(&[]).timezone("TIMEZONE").unwrap(),
            chrono_tz::Asia::Ho_Chi_Minh
        );
        let err = env(&[("TIMEZONE", "Mars/Base")])
            .timezone("TIMEZONE")
            .unwrap_err();
        assert!(err.to_string().contains("TIMEZONE"));
    }

    #[test]
    fn cloudwatch_namespace_defaults_and_refuses_what_cloudwatch_refuses() {
        assert_eq!(
            env(&[]).cloudwatch_namespace().unwrap(),
            "DevLake/Autopilot"
        );
        assert_eq!(
            env(&[("CLOUDWATCH_NAMESPACE", "  ")])
                .cloudwatch_namespace()
                .unwrap(),
            "DevLake/Autopilot",
            "blank counts as unset"
        );
        for ok in [
            "Team/DevLake",
            " Team/Dev Lake-2_x.y#z:w ",
            "AWSome/DevLake",
            "aws/devlake",
            &"n".repeat(255),
        ] {
            let got = env(&[("CLOUDWATCH_NAMESPACE", ok)])
                .cloudwatch_namespace()
                .unwrap_or_else(|e| panic!("{ok:?}: {e}"));
            assert_eq!(got, ok.trim());
        }
        for bad in [
            "AWS/Lambda",
            "AWS/",
            ":DevLake",
            "DevLake/Ä",
            "Dev\tLake",
            "Dev$Lake",
            &"n".repeat(256),
        ] {
            let err = env(&[("CLOUDWATCH_NAMESPACE", bad)])
                .cloudwatch_namespace()
                .unwrap_err();
            assert_eq!(err.variable, "CLOUDWATCH_NAMESPACE", "{bad:?}");
            assert!(!err.to_string().contains('\n'), "{err}");
        }
    }

    #[test]
    fn plain_http_needs_the_explicit_opt_in() {
        let defaults = crate::devlake::ClientConfig::default;
        let err = devlake_client_config(
            &env(&[("DEVLAKE_ENDPOINT", "HTTP://devlake:8080")]),
            defaults(),
        )
        .unwrap_err();
        let text = err.to_string();
        assert_eq!(err.variable, "DEVLAKE_ENDPOINT");
        assert!(text.contains("ALLOW_INSECURE_HTTP=true"), "{text}");
        assert!(!text.contains('\n'), "{text}");

        for (endpoint, allow) in [
            ("http://devlake:8080", "true"),
            ("https://devlake.example.com/api/rest", "false"),
            ("https://devlake.example.com/api/rest", ""),
        ] {
            let c = devlake_client_config(
                &env(&[
                    ("DEVLAKE_ENDPOINT", endpoint),
                    ("ALLOW_INSECURE_HTTP", allow),
                ]),
                defaults(),
            )
            .unwrap_or_else(|e| panic!("{endpoint} {allow}: {e}"));
            assert_eq!(c.endpoint, endpoint);
        }
        let err = devlake_client_config(
            &env(&[
                ("DEVLAKE_ENDPOINT", "http://devlake:8080"),
                ("ALLOW_INSECURE_HTTP", "sometimes"),
            ]),
            defaults(),
        )
        .unwrap_err();
        assert_eq!(err.variable, "ALLOW_INSECURE_HTTP");
    }

    #[test]
    fn secret_source_rejects_both_and_hides_plain_value() {
        let e = env(&[
            ("METRICS_TOKEN", "s3cret"),
            ("METRICS_TOKEN_SECRET_ARN", "arn:x"),
        ]);
        let err = e
            .secret_source("METRICS_TOKEN", "METRICS_TOKEN_SECRET_ARN")
            .unwrap_err();
        assert!(!err.to_string().contains("s3cret"));
        let plain = env(&[("METRICS_TOKEN", "s3cret")])
            .secret_source("METRICS_TOKEN", "METRICS_TOKEN_SECRET_ARN")
            .unwrap()
            .unwrap();
        assert!(!format!("{plain:?}").contains("s3cret"));
    }

    #[test]
    fn devlake_worst_case_must_fit_the_function_timeout() {
        use std::time::Duration;
        let c = crate::devlake::ClientConfig {
            request_timeout: Duration::from_secs(30),
            max_retries: 3,
            ..Default::default()
        };
        // 4 attempts × 30 s + 0.2 + 0.4 + 0.8 s of backoff.
        assert_eq!(
            devlake_request_worst_case(&c),
            Duration::from_millis(121_400)
        );
        let margin = Duration::from_secs(20);
        assert!(check_devlake_fits_timeout(
            &c,
            margin,
            "DEADLINE_MARGIN_MS",
            Duration::from_secs(900)
        )
        .is_ok());
        assert!(check_devlake_fits_timeout(
            &c,
            margin,
            "DEADLINE_MARGIN_MS",
            Duration::from_millis(141_400)
        )
        .is_ok());
        let err =
            check_devlake_fits_timeout(&c, margin, "DEADLINE_MARGIN_MS", Duration::from_secs(120))
                .unwrap_err()
                .to_string();
        assert_eq!(
            err,
            "invalid configuration: DEVLAKE_TIMEOUT_MS, DEVLAKE_MAX_RETRIES: one DevLake request \
             may take 121.4 s (4 attempts of 30000 ms plus backoff), which with DEADLINE_MARGIN_MS \
             (20.0 s) does not fit the function timeout (120.0 s); lower DEVLAKE_TIMEOUT_MS or \
             DEVLAKE_MAX_RETRIES, or raise the function timeout"
        );
        // Backoff sleeps are capped at 5 s each.
        let many = crate::devlake::ClientConfig {
            request_timeout: Duration::from_secs(1),
            max_retries: 10,
            ..Default::default()
        };
        assert_eq!(
            devlake_request_worst_case(&many),
            Duration::from_millis(11_000 + 200 + 400 + 800 + 1600 + 3200 + 5 * 5000)
        );
    }
}
