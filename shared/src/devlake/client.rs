//! The typed DevLake client: the one place that knows HTTP, auth, paging, retries and limits.
//!
//! Every request goes through [`DevLakeClient::execute`], which applies the concurrency cap per
//! attempt, counts the attempt, logs it (never the key) and retries only
//! idempotent methods. List endpoints are exposed both page by page and as lazy streams that fetch
//! the next page only when the consumer asks for more rows.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_stream::try_stream;
use futures::stream::{BoxStream, StreamExt};
use futures::Future;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use reqwest::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;
use tokio::sync::Semaphore;

use super::error::DevLakeError;
use super::models::*;
use super::tls::{is_unknown_issuer, CaBundle};
use crate::deadline::Deadline;

type Result<T> = std::result::Result<T, DevLakeError>;

/// DevLake refuses `pageSize` above this on the scopes list (docs/devlake-api.md, Pagination).
pub const MAX_SCOPES_PAGE_SIZE: u32 = 1000;

/// How much of a response body an error keeps.
const EXCERPT_CHARS: usize = 200;

/// The default cap of one response body. DevLake's largest answers are list pages: 5,000
/// pipelines (the most `DEVLAKE_PAGE_SIZE` allows) at 1–2 KB each are about 10 MB, so 64 MiB
/// leaves room for large task options while a broken proxy or endpoint cannot exhaust the
/// function's memory.
pub const MAX_RESPONSE_BYTES: usize = 64 * 1024 * 1024;

/// The longest `Retry-After` the client waits for when the run has no deadline; with one, the
/// wait must also end before it.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);

/// RFC 3986 unreserved characters stay literal; everything else is percent-encoded, so a value
/// such as `github/acme/api` stays ONE path segment (`github%2Facme%2Fapi`).
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Where a client gets an API key that can change while the function runs (a Secrets Manager
/// secret that is rotated). Implementations cache: `current` is called for every request.
#[async_trait::async_trait]
pub trait ApiKeySource: Send + Sync {
    /// The key to send now.
    async fn current(&self) -> String;
    /// The key to try after DevLake refused `rejected` (401/403): read again from its source.
    async fn after_rejection(&self, rejected: &str) -> String;
}

/// How to reach DevLake and how hard to push it.
#[derive(Clone)]
pub struct ClientConfig {
    /// Base URL, e.g. `http://devlake:8080` or `https://devlake.example.com/api/rest`.
    pub endpoint: String,
    /// Sent as `Authorization: Bearer`. Never printed (Debug is redacted).
    pub api_key: Option<String>,
    /// A key that can change (rotation); used instead of `api_key` when set. After a 401/403
    /// the request is tried once more with the key read again.
    pub api_key_source: Option<Arc<dyn ApiKeySource>>,
    pub connect_timeout: Duration,
    /// Per attempt.
    pub request_timeout: Duration,
    /// Attempts after the first, for idempotent requests only.
    pub max_retries: u32,
    /// First backoff step; doubles per attempt, full jitter.
    pub retry_base_delay: Duration,
    /// Upper bound of one backoff sleep.
    pub retry_max_delay: Duration,
    /// Requests in flight at once.
    pub max_concurrency: usize,
    /// Rows asked for per page on list endpoints (DevLake's default of 50 is small).
    pub page_size: u32,
    /// CA certificates trusted for DevLake besides the system's roots (`DEVLAKE_CA_BUNDLE`).
    pub ca_bundle: Option<CaBundle>,
    /// Largest response body read; a larger one is an error.
    pub max_response_bytes: usize,
    /// Longest `Retry-After` honoured on 429/503 (the run's deadline may allow less).
    pub max_retry_after: Duration,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            endpoint: String::new(),
            api_key: None,
            api_key_source: None,
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(30),
            max_retries: 3,
            retry_base_delay: Duration::from_millis(200),
            retry_max_delay: Duration::from_secs(5),
            max_concurrency: 4,
            page_size: 500,
            ca_bundle: None,
            max_response_bytes: MAX_RESPONSE_BYTES,
            max_retry_after: MAX_RETRY_AFTER,
        }
    }
}

impl std::fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientConfig")
            .field("endpoint", &self.endpoint)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field(
                "api_key_source",
                &self.api_key_source.as_ref().map(|_| "<rotating>"),
            )
            .field("connect_timeout", &self.connect_timeout)
            .field("request_timeout", &self.request_timeout)
            .field("max_retries", &self.max_retries)
            .field("retry_base_delay", &self.retry_base_delay)
            .field("retry_max_delay", &self.retry_max_delay)
            .field("max_concurrency", &self.max_concurrency)
            .field("page_size", &self.page_size)
            .field("ca_bundle", &self.ca_bundle)
            .field("max_response_bytes", &self.max_response_bytes)
            .field("max_retry_after", &self.max_retry_after)
            .finish()
    }
}

/// Calls made by a client so far (for run summaries and benchmarks).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CallCounts {
    /// GET requests (every attempt counts).
    pub reads: u64,
    /// POST/PUT/PATCH/DELETE requests (every attempt counts).
    pub writes: u64,
}

impl CallCounts {
    pub fn total(&self) -> u64 {
        self.reads + self.writes
    }
}

/// Result of triggering a blueprint. One per trigger, never stored in bulk: boxing the pipeline
/// would only add an allocation.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum TriggerOutcome {
    Started(Pipeline),
    /// 400 "there are pending pipelines of current blueprint already".
    AlreadyRunning,
}

/// Cheap to clone; clones share the connection pool, limits and counters.
#[derive(Clone)]
pub struct DevLakeClient {
    inner: Arc<Inner>,
    /// The run's deadline: no retry wait (backoff or `Retry-After`) is started past it.
    deadline: Deadline,
}

struct Inner {
    http: reqwest::Client,
    /// Endpoint without trailing `/`; paths are appended as `/{path}`.
    base: String,
    /// `base` with any URL password replaced, for Debug and logs.
    shown: String,
    /// `Bearer <key>`, marked sensitive so reqwest never prints it either.
    auth: Option<HeaderValue>,
    /// Kept only to scrub it from anything DevLake echoes back into an error excerpt.
    api_key: Option<String>,
    /// A rotating key, read for every request instead of `auth`.
    key_source: Option<Arc<dyn ApiKeySource>>,
    /// Where the extra trust roots came from, for the untrusted-certificate error.
    ca_bundle: Option<String>,
    max_response_bytes: usize,
    max_retry_after: Duration,
    request_timeout: Duration,
    retry: RetryPolicy,
    page_size: u32,
    permits: Semaphore,
    reads: AtomicU64,
    writes: AtomicU64,
}

impl std::fmt::Debug for DevLakeClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DevLakeClient")
            .field("endpoint", &self.inner.shown)
            .field("api_key", &self.inner.auth.as_ref().map(|_| "<redacted>"))
            .field("calls", &self.calls())
            .finish_non_exhaustive()
    }
}

/// Retry schedule for idempotent requests: exponential ceiling, full jitter.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    pub max_retries: u32,
    pub base_delay: Duration,
    pub max_delay: Duration,
}

impl RetryPolicy {
    /// Upper bound of the sleep before retry number `retry` (0 = first retry):
    /// `min(max_delay, base_delay * 2^retry)`.
    pub fn ceiling(&self, retry: u32) -> Duration {
        let factor = 1u32.checked_shl(retry.min(31)).unwrap_or(u32::MAX);
        self.base_delay.saturating_mul(factor).min(self.max_delay)
    }

    /// Full jitter (AWS architecture blog): uniform in `[0, ceiling]`, so many clients retrying
    /// the same outage spread out instead of arriving in waves.
    pub fn delay(&self, retry: u32, random: u64) -> Duration {
        let ceiling = self.ceiling(retry).as_nanos().min(u64::MAX as u128) as u64;
        Duration::from_nanos(random % (ceiling.saturating_add(1)))
    }
}

/// A random `u64` without another dependency: every `RandomState` gets fresh SipHash keys.
fn random_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish()
}

/// Percent-encode one path segment (everything but RFC 3986 unreserved characters).
pub fn encode_segment(value: &str) -> String {
    utf8_percent_encode(value, SEGMENT).to_string()
}

/// Whether a plugin routes single scopes as `scopes/*scopeId` (ids may contain `/`).
pub fn scope_id_is_wildcard(plugin: &str) -> bool {
    matches!(plugin, "jenkins" | "bitbucket" | "bitbucket_server")
}

/// The `{scopeId}` part of a scope path. Jenkins and Bitbucket ids (`folder/job`,
/// `workspace/slug`) are matched by a wildcard route, so their `/` stay raw and only the pieces
/// between them are encoded; every other plugin's id is one encoded segment.
pub fn scope_id_path(plugin: &str, scope_id: &str) -> String {
    if scope_id_is_wildcard(plugin) {
        scope_id
            .split('/')
            .map(encode_segment)
            .collect::<Vec<_>>()
            .join("/")
    } else {
        encode_segment(scope_id)
    }
}

/// `Authorization: Bearer <key>`, marked sensitive so reqwest never prints it. The error never
/// echoes the value: it is the secret.
fn bearer(key: &str) -> Result<HeaderValue> {
    let mut value = HeaderValue::from_str(&format!("Bearer {}", key.trim())).map_err(|_| {
        DevLakeError::Config(
            "the DevLake API key contains characters not allowed in an HTTP header".into(),
        )
    })?;
    value.set_sensitive(true);
    Ok(value)
}

/// The URL as text with its password (if any) replaced by `<redacted>`.
fn redact_url(url: &reqwest::Url) -> String {
    let mut shown = url.clone();
    if shown.password().is_some() {
        let _ = shown.set_password(Some("<redacted>"));
    }
    shown.to_string()
}

/// `base` + `path` with exactly one `/` between them.
pub fn join_url(base: &str, path: &str) -> String {
    format!(
        "{}/{}",
        base.trim_end_matches('/'),
        path.trim_start_matches('/')
    )
}

/// `path?k=v&...` with values encoded; the form logged and kept in errors.
fn path_with_query(path: &str, query: &[(&str, String)]) -> String {
    if query.is_empty() {
        return path.to_string();
    }
    let q = query
        .iter()
        .map(|(k, v)| format!("{k}={}", encode_segment(v)))
        .collect::<Vec<_>>()
        .join("&");
    format!("{path}?{q}")
}

/// Whether a lazily paged listing must ask for another page: the last page came back full and
/// the rows seen so far are fewer than the total DevLake reported.
pub fn wants_next_page(rows_in_page: usize, page_size: u32, rows_seen: u64, count: i64) -> bool {
    rows_in_page > 0 && rows_in_page >= page_size as usize && (rows_seen as i128) < count as i128
}

/// A short, single-line excerpt of an error body: the envelope's `message` when DevLake sent
/// one, else the raw text (gin's plain-text 404), `(empty body)` for none; never the API key.
pub fn body_excerpt(body: &[u8], api_key: Option<&str>) -> String {
    if body.iter().all(u8::is_ascii_whitespace) {
        return "(empty body)".to_string();
    }
    let text = match serde_json::from_slice::<ErrorEnvelope>(body) {
        Ok(envelope) if !envelope.message.trim().is_empty() => envelope.message,
        _ => String::from_utf8_lossy(body).into_owned(),
    };
    let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    truncate_chars(&scrub(&text, api_key), EXCERPT_CHARS)
}

/// Anything DevLake (or a proxy) echoes back could in theory contain the key; never keep it.
fn scrub(text: &str, api_key: Option<&str>) -> String {
    match api_key.filter(|k| !k.is_empty()) {
        Some(key) => text.replace(key, "<redacted>"),
        None => text.to_string(),
    }
}

fn truncate_chars(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_string(),
    }
}

/// Map a non-success answer to the error a caller can act on.
pub fn classify_status(
    status: u16,
    method: &str,
    path: &str,
    body: &[u8],
    api_key: Option<&str>,
) -> DevLakeError {
    let method = method.to_string();
    let path = path.to_string();
    match status {
        428 => DevLakeError::MigrationPending { method, path },
        401 | 403 => DevLakeError::Unauthorized {
            status,
            method,
            path,
            message: body_excerpt(body, api_key),
        },
        _ => DevLakeError::Status {
            status,
            method,
            path,
            message: body_excerpt(body, api_key),
        },
    }
}

/// POST is the only method DevLake uses for non-idempotent operations here (creates, trigger,
/// rerun); everything else can be repeated safely.
fn is_idempotent(method: &Method) -> bool {
    *method != Method::POST
}

/// A major.minor.patch read from `GET /version` (`v0.21.0@abc`, `v1.0.3-beta12@…`).
/// `None` for `dev` and anything else unstamped.
pub fn parse_version(version: &str) -> Option<(u64, u64, u64)> {
    let tag = version.split('@').next()?.trim();
    let tag = tag.strip_prefix('v').unwrap_or(tag);
    let core = tag.split(['-', '+']).next()?;
    let mut parts = core.split('.').map(|p| p.parse::<u64>().ok());
    let major = parts.next()??;
    let minor = parts.next().flatten().unwrap_or(0);
    let patch = parts.next().flatten().unwrap_or(0);
    Some((major, minor, patch))
}

impl Version {
    /// `(major, minor, patch)`; `None` for `dev` or unparsable tags (treat as latest).
    pub fn semver(&self) -> Option<(u64, u64, u64)> {
        parse_version(&self.version)
    }

    /// v0.20/v0.21 store `metrics[].pluginOption` as a JSON string; v1.0.0+ as an object.
    pub fn plugin_option_is_string(&self) -> bool {
        matches!(self.semver(), Some((0, _, _)))
    }
}

impl ProjectMetric {
    /// The `dora` metric with an empty option in the shape this DevLake version accepts:
    /// `{}` for v1.x (and `dev`), the string `"{}"` for v0.x.
    pub fn dora(version: &Version) -> ProjectMetric {
        let plugin_option = if version.plugin_option_is_string() {
            Value::String("{}".to_string())
        } else {
            Value::Object(Default::default())
        };
        ProjectMetric {
            plugin_name: "dora".to_string(),
            plugin_option,
            enable: true,
        }
    }
}

/// A successful (or tolerated 404) answer.
struct Answer {
    status: StatusCode,
    body: Vec<u8>,
    /// The API key the request carried, to scrub from anything echoed back.
    key: Option<String>,
    /// `Location` of a 3xx answer.
    location: Option<String>,
    /// `Retry-After` of a 429/503 answer, as sent.
    retry_after: Option<String>,
}

/// How long `Retry-After` asks to wait: delay-seconds or an HTTP-date (RFC 9110), from `now`.
/// A date in the past means no wait; anything unparsable is ignored (`None`).
pub fn parse_retry_after(value: &str, now: chrono::DateTime<chrono::Utc>) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    // IMF-fixdate ("Sun, 06 Nov 1994 08:49:37 GMT") is an RFC 2822 date.
    let at = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    Some(
        (at.with_timezone(&chrono::Utc) - now)
            .to_std()
            .unwrap_or(Duration::ZERO),
    )
}

/// The URL as text with any password replaced; unparsable text is kept as sent (it carries no
/// URL credentials then).
fn redact_location(location: &str) -> String {
    match reqwest::Url::parse(location) {
        Ok(url) => redact_url(&url),
        Err(_) => location.to_string(),
    }
}

impl DevLakeClient {
    pub fn new(config: ClientConfig) -> Result<Self> {
        let endpoint = config.endpoint.trim();
        // An endpoint may carry nginx basic-auth credentials (`https://user:pass@host/api`):
        // messages show it only with the password replaced.
        let url = reqwest::Url::parse(endpoint)
            .map_err(|e| DevLakeError::Config(format!("the DevLake endpoint is not a URL: {e}")))?;
        let shown = redact_url(&url);
        if !matches!(url.scheme(), "http" | "https") {
            return Err(DevLakeError::Config(format!(
                "endpoint {shown} must be http:// or https://"
            )));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(DevLakeError::Config(format!(
                "endpoint {shown} must not carry a query or fragment"
            )));
        }
        let base = endpoint.trim_end_matches('/').to_string();
        let shown = shown.trim_end_matches('/').to_string();

        if config.api_key_source.is_some() && !url.path().trim_end_matches('/').ends_with("/rest") {
            tracing::warn!(
                endpoint = %shown,
                "an API key is configured but the endpoint does not end in /rest; DevLake only checks API keys under /rest/"
            );
        }
        let auth = match config.api_key.as_deref() {
            None => None,
            Some(key) if key.trim().is_empty() => {
                return Err(DevLakeError::Config("the DevLake API key is empty".into()))
            }
            Some(key) => {
                // The error must not echo the value: it is the secret.
                let mut value =
                    HeaderValue::from_str(&format!("Bearer {}", key.trim())).map_err(|_| {
                        DevLakeError::Config(
                            "the DevLake API key contains characters not allowed in an HTTP header"
                                .into(),
                        )
                    })?;
                value.set_sensitive(true);
                if !url.path().trim_end_matches('/').ends_with("/rest") {
                    tracing::warn!(
                        endpoint = %shown,
                        "an API key is configured but the endpoint does not end in /rest; DevLake only checks API keys under /rest/"
                    );
                }
                Some(value)
            }
        };

        let mut builder = reqwest::Client::builder()
            .connect_timeout(config.connect_timeout)
            .user_agent(concat!("devlake-autopilot/", env!("CARGO_PKG_VERSION")))
            // A redirect is answered as an error naming the new location: following it would
            // send the API key to wherever DevLake (or a proxy in front of it) points.
            .redirect(reqwest::redirect::Policy::none());
        if let Some(bundle) = &config.ca_bundle {
            // Added to the system's roots, not instead of them: a DevLake with a public
            // certificate keeps working when a bundle is set.
            let roots = bundle
                .roots()
                .iter()
                .map(|der| reqwest::Certificate::from_der(der))
                .collect::<std::result::Result<Vec<_>, _>>()
                .map_err(|e| DevLakeError::Config(format!("DEVLAKE_CA_BUNDLE: {e}")))?;
            builder = builder.tls_certs_merge(roots);
        }
        let http = builder
            .build()
            .map_err(|e| DevLakeError::Config(format!("HTTP client: {e}")))?;

        Ok(DevLakeClient {
            deadline: Deadline::none(),
            inner: Arc::new(Inner {
                http,
                base,
                shown,
                auth,
                api_key: config.api_key.map(|k| k.trim().to_string()),
                key_source: config.api_key_source,
                ca_bundle: config.ca_bundle.map(|b| b.origin().to_string()),
                max_response_bytes: config.max_response_bytes.max(1),
                max_retry_after: config.max_retry_after,
                request_timeout: config.request_timeout,
                retry: RetryPolicy {
                    max_retries: config.max_retries,
                    base_delay: config.retry_base_delay,
                    max_delay: config.retry_max_delay,
                },
                page_size: config.page_size.max(1),
                permits: Semaphore::new(config.max_concurrency.max(1)),
                reads: AtomicU64::new(0),
                writes: AtomicU64::new(0),
            }),
        })
    }

    /// The same client (pool, limits, counters) for one run: a retry whose wait would end
    /// after `deadline` is not started, the error is returned at once.
    pub fn with_deadline(&self, deadline: Deadline) -> DevLakeClient {
        DevLakeClient {
            inner: Arc::clone(&self.inner),
            deadline,
        }
    }

    pub fn calls(&self) -> CallCounts {
        CallCounts {
            reads: self.inner.reads.load(Ordering::Relaxed),
            writes: self.inner.writes.load(Ordering::Relaxed),
        }
    }

    /// The endpoint requests go to (no trailing `/`, any URL password redacted).
    pub fn endpoint(&self) -> &str {
        &self.inner.shown
    }

    /// Rows asked for per page by the streams.
    pub fn page_size(&self) -> u32 {
        self.inner.page_size
    }

    // ---------------------------------------------------------------- transport

    /// Send one logical request, retrying idempotent methods on 5xx, 429 and transport errors.
    /// With `allow_not_found`, a JSON 404 (DevLake's "record not found") is returned as an
    /// answer; gin's plain-text 404 (unknown route: wrong endpoint, plugin not loaded) stays an
    /// error.
    async fn execute(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<Vec<u8>>,
        allow_not_found: bool,
    ) -> Result<Answer> {
        let inner = &*self.inner;
        let shown = path_with_query(path, query);
        let url = join_url(&inner.base, &shown);
        let retries = if is_idempotent(&method) {
            inner.retry.max_retries
        } else {
            0
        };
        let mut attempt: u32 = 0;
        // Whether the one retry with a re-read key after a 401/403 was spent.
        let mut key_reread = false;
        loop {
            attempt += 1;
            let key = match &inner.key_source {
                Some(source) => Some(source.current().await),
                None => inner.api_key.clone(),
            };
            let outcome = self
                .attempt(
                    &method,
                    &url,
                    &shown,
                    body.as_ref(),
                    attempt,
                    key.as_deref(),
                )
                .await;
            let mut retry_after = None;
            let error = match outcome {
                Ok(answer) if answer.status.is_success() => return Ok(answer),
                Ok(answer) if answer.status.is_redirection() => {
                    return Err(DevLakeError::Redirect {
                        status: answer.status.as_u16(),
                        method: method.to_string(),
                        path: shown,
                        location: answer
                            .location
                            .as_deref()
                            .map(redact_location)
                            .unwrap_or_else(|| "(no Location header)".to_string()),
                    })
                }
                Ok(answer)
                    if allow_not_found
                        && answer.status == StatusCode::NOT_FOUND
                        && serde_json::from_slice::<ErrorEnvelope>(&answer.body).is_ok() =>
                {
                    return Ok(answer)
                }
                Ok(answer) => {
                    if matches!(answer.status.as_u16(), 429 | 503) {
                        retry_after = answer
                            .retry_after
                            .as_deref()
                            .and_then(|v| parse_retry_after(v, chrono::Utc::now()));
                    }
                    classify_status(
                        answer.status.as_u16(),
                        method.as_str(),
                        &shown,
                        &answer.body,
                        key.as_deref(),
                    )
                }
                Err(e) => e,
            };
            // A rotated key: DevLake refused the one we had, so read it again and try once more.
            // Safe for a POST too: DevLake checks the key before the handler runs.
            if let (DevLakeError::Unauthorized { .. }, Some(source), Some(used), false) =
                (&error, &inner.key_source, key.as_deref(), key_reread)
            {
                key_reread = true;
                if source.after_rejection(used).await != used {
                    tracing::info!(
                        method = %method,
                        path = %shown,
                        "DevLake refused the API key; trying once more with the key read again"
                    );
                    continue;
                }
            }
            if attempt > retries + u32::from(key_reread) || !error.is_retryable() {
                return Err(error);
            }
            // DevLake (or the proxy in front of it) said when to come back: wait that long if
            // the cap and the run's deadline allow, else give up now rather than retry early.
            let delay = match retry_after {
                Some(wait) if wait > inner.max_retry_after || !self.deadline.allows(wait) => {
                    tracing::debug!(
                        method = %method,
                        path = %shown,
                        retry_after_ms = wait.as_millis() as u64,
                        "Retry-After does not fit before the deadline; not retrying"
                    );
                    return Err(error);
                }
                Some(wait) => wait,
                None => inner.retry.delay(attempt - 1, random_u64()),
            };
            if !self.deadline.allows(delay) {
                return Err(error);
            }
            tracing::debug!(
                method = %method,
                path = %shown,
                attempt,
                delay_ms = delay.as_millis() as u64,
                error = %error,
                "retrying DevLake request"
            );
            tokio::time::sleep(delay).await;
        }
    }

    /// One attempt: wait for a permit and the rate limit, count it, send, read the whole body.
    async fn attempt(
        &self,
        method: &Method,
        url: &str,
        shown: &str,
        body: Option<&Vec<u8>>,
        attempt: u32,
        key: Option<&str>,
    ) -> Result<Answer> {
        let inner = &*self.inner;
        let _permit = inner
            .permits
            .acquire()
            .await
            .expect("the client never closes its semaphore");
        // One attempt may not outlast the run: it gets what is left of the deadline when that
        // is less than `DEVLAKE_TIMEOUT_MS`, and is not sent at all with nothing left.
        let deadline_error = || DevLakeError::Deadline {
            method: method.to_string(),
            path: shown.to_string(),
        };
        let timeout = match self.deadline.left() {
            None => inner.request_timeout,
            Some(left) if left.is_zero() => return Err(deadline_error()),
            Some(left) => inner.request_timeout.min(left),
        };
        let cut_by_deadline = timeout < inner.request_timeout;
        if *method == Method::GET {
            inner.reads.fetch_add(1, Ordering::Relaxed);
        } else {
            inner.writes.fetch_add(1, Ordering::Relaxed);
        }

        let mut request = inner.http.request(method.clone(), url).timeout(timeout);
        let auth = match (&inner.key_source, key) {
            (Some(_), Some(key)) => Some(bearer(key)?),
            _ => inner.auth.clone(),
        };
        if let Some(auth) = auth {
            request = request.header(AUTHORIZATION, auth);
        }
        if let Some(body) = body {
            request = request
                .header(CONTENT_TYPE, "application/json")
                .body(body.clone());
        }

        let started = Instant::now();
        let transport = |source: reqwest::Error| {
            // The path is already in the error; the URL would only repeat the endpoint.
            let source = source.without_url();
            if cut_by_deadline && source.is_timeout() {
                deadline_error()
            } else if is_unknown_issuer(&source) {
                DevLakeError::UntrustedCertificate {
                    method: method.to_string(),
                    path: shown.to_string(),
                    bundle: inner.ca_bundle.clone(),
                    source,
                }
            } else {
                DevLakeError::Transport {
                    method: method.to_string(),
                    path: shown.to_string(),
                    source,
                }
            }
        };
        let limit = inner.max_response_bytes;
        let too_large = || DevLakeError::BodyTooLarge {
            method: method.to_string(),
            path: shown.to_string(),
            limit,
        };
        let result = async {
            let mut response = request.send().await.map_err(transport)?;
            let status = response.status();
            let header = |name| {
                response
                    .headers()
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string)
            };
            let location = header(reqwest::header::LOCATION);
            let retry_after = header(reqwest::header::RETRY_AFTER);
            // Refused before reading when the length is announced, counted while reading when
            // it is not (chunked), so memory never holds more than the cap.
            if response.content_length().is_some_and(|n| n > limit as u64) {
                return Err(too_large());
            }
            let mut body: Vec<u8> =
                Vec::with_capacity(response.content_length().unwrap_or(0) as usize);
            while let Some(chunk) = response.chunk().await.map_err(transport)? {
                if body.len() + chunk.len() > limit {
                    return Err(too_large());
                }
                body.extend_from_slice(&chunk);
            }
            Ok(Answer {
                status,
                body,
                key: key.map(str::to_string),
                location,
                retry_after,
            })
        }
        .await;
        let elapsed_ms = started.elapsed().as_millis() as u64;
        match &result {
            Ok(answer) => tracing::debug!(
                method = %method,
                path = %shown,
                status = answer.status.as_u16(),
                elapsed_ms,
                attempt,
                "devlake request"
            ),
            Err(error) => tracing::debug!(
                method = %method,
                path = %shown,
                elapsed_ms,
                attempt,
                error = %error,
                "devlake request failed"
            ),
        }
        result
    }

    fn decode<T: DeserializeOwned>(
        &self,
        method: &Method,
        path: &str,
        answer: &Answer,
    ) -> Result<T> {
        let body = &answer.body;
        serde_json::from_slice(body).map_err(|source| DevLakeError::Decode {
            method: method.to_string(),
            path: path.to_string(),
            excerpt: truncate_chars(
                &scrub(&String::from_utf8_lossy(body), answer.key.as_deref()),
                EXCERPT_CHARS,
            ),
            source,
        })
    }

    fn encode_body<B: Serialize + ?Sized>(
        method: &Method,
        path: &str,
        body: &B,
    ) -> Result<Vec<u8>> {
        serde_json::to_vec(body).map_err(|source| DevLakeError::Decode {
            method: method.to_string(),
            path: path.to_string(),
            excerpt: "(request body could not be encoded)".to_string(),
            source,
        })
    }

    async fn get_json<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<T> {
        let answer = self.execute(Method::GET, path, query, None, false).await?;
        self.decode(&Method::GET, &path_with_query(path, query), &answer)
    }

    /// GET that answers `None` on DevLake's JSON 404.
    async fn get_optional<T: DeserializeOwned>(&self, path: &str) -> Result<Option<T>> {
        let answer = self.execute(Method::GET, path, &[], None, true).await?;
        if answer.status == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        self.decode(&Method::GET, path, &answer).map(Some)
    }

    async fn send_json<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: &B,
    ) -> Result<T> {
        let bytes = Self::encode_body(&method, path, body)?;
        let answer = self
            .execute(method.clone(), path, &[], Some(bytes), false)
            .await?;
        self.decode(&method, path, &answer)
    }

    /// A lazy listing: fetches page `n+1` only after the consumer took every row of page `n`
    /// and asked for more, and only while `wants_next_page` says rows remain.
    fn paged<'a, T, F, Fut>(&'a self, page_size: u32, fetch: F) -> BoxStream<'a, Result<T>>
    where
        T: Send + 'a,
        F: Fn(u32, u32) -> Fut + Send + 'a,
        Fut: Future<Output = Result<(i64, Vec<T>)>> + Send + 'a,
    {
        let page_size = page_size.max(1);
        try_stream! {
            let mut page = 1u32;
            let mut seen = 0u64;
            loop {
                let (count, rows) = fetch(page, page_size).await?;
                let n = rows.len();
                seen += n as u64;
                for row in rows {
                    yield row;
                }
                if !wants_next_page(n, page_size, seen, count) {
                    break;
                }
                page += 1;
            }
        }
        .boxed()
    }

    // ---------------------------------------------------------------- health

    pub async fn ping(&self) -> Result<()> {
        self.execute(Method::GET, "/ping", &[], None, false)
            .await
            .map(|_| ())
    }

    pub async fn version(&self) -> Result<Version> {
        self.get_json("/version", &[]).await
    }

    /// The `metrics` of a new project for this DevLake version (DORA on, `pluginOption` shaped
    /// per version, see [`ProjectMetric::dora`]).
    pub fn project_input_metrics(version: &Version) -> Vec<ProjectMetric> {
        vec![ProjectMetric::dora(version)]
    }

    pub async fn plugins(&self) -> Result<Vec<PluginInfo>> {
        self.get_json("/plugins", &[]).await
    }

    // ---------------------------------------------------------------- connections

    pub async fn connections(&self, plugin: &str) -> Result<Vec<Connection>> {
        let path = format!("/plugins/{}/connections", encode_segment(plugin));
        let list: Option<Vec<Connection>> = self.get_json(&path, &[]).await?;
        Ok(list.unwrap_or_default())
    }

    pub async fn connection(&self, plugin: &str, connection_id: u64) -> Result<Connection> {
        let path = format!(
            "/plugins/{}/connections/{connection_id}",
            encode_segment(plugin)
        );
        self.get_json(&path, &[]).await
    }

    fn connection_path(plugin: &str, connection_id: u64) -> String {
        format!(
            "/plugins/{}/connections/{connection_id}",
            encode_segment(plugin)
        )
    }

    // ---------------------------------------------------------------- remote scopes

    /// One page of remote scopes; `group_id` None = top level, `page_token` None = first page.
    pub async fn remote_scopes_page(
        &self,
        plugin: &str,
        connection_id: u64,
        group_id: Option<&str>,
        page_token: Option<&str>,
    ) -> Result<RemoteScopesPage> {
        let path = format!(
            "{}/remote-scopes",
            Self::connection_path(plugin, connection_id)
        );
        let mut query = Vec::new();
        if let Some(group) = group_id.filter(|g| !g.is_empty()) {
            query.push(("groupId", group.to_string()));
        }
        if let Some(token) = page_token.filter(|t| !t.is_empty()) {
            query.push(("pageToken", token.to_string()));
        }
        self.get_json(&path, &query).await
    }

    /// Every `scope` child under every group, recursively, following `nextPageToken` to `""`.
    ///
    /// Depth-first: a group's own pages are listed completely, then its subgroups in the order
    /// DevLake gave them. A group id seen twice is not walked again, a page token repeated
    /// within a group ends that group, and a scope id seen twice (a GitHub App lists the same
    /// repositories under every owner) is yielded once.
    pub fn remote_scopes<'a>(
        &'a self,
        plugin: &'a str,
        connection_id: u64,
    ) -> BoxStream<'a, Result<RemoteScopeChild>> {
        try_stream! {
            let mut stack: Vec<Option<String>> = vec![None];
            let mut groups_seen: HashSet<String> = HashSet::new();
            let mut scopes_seen: HashSet<String> = HashSet::new();
            while let Some(group) = stack.pop() {
                let mut token: Option<String> = None;
                let mut tokens_seen: HashSet<String> = HashSet::new();
                let mut subgroups = Vec::new();
                loop {
                    let page = self
                        .remote_scopes_page(plugin, connection_id, group.as_deref(), token.as_deref())
                        .await?;
                    for child in page.children {
                        if child.is_group() {
                            if child.id.is_empty() || !groups_seen.insert(child.id.clone()) {
                                tracing::warn!(
                                    plugin,
                                    connection_id,
                                    group_id = %child.id,
                                    "remote-scopes group listed twice; not walking it again"
                                );
                                continue;
                            }
                            subgroups.push(child.id);
                        } else if child.is_scope() && scopes_seen.insert(child.id.clone()) {
                            yield child;
                        }
                    }
                    if page.next_page_token.is_empty() {
                        break;
                    }
                    if !tokens_seen.insert(page.next_page_token.clone()) {
                        tracing::warn!(
                            plugin,
                            connection_id,
                            group_id = group.as_deref().unwrap_or(""),
                            "remote-scopes nextPageToken repeated; stopping this group"
                        );
                        break;
                    }
                    token = Some(page.next_page_token);
                }
                stack.extend(subgroups.into_iter().rev().map(Some));
            }
        }
        .boxed()
    }

    // ---------------------------------------------------------------- scopes

    pub async fn scopes_page(
        &self,
        plugin: &str,
        connection_id: u64,
        page: u32,
        page_size: u32,
    ) -> Result<ScopesPage> {
        let path = format!("{}/scopes", Self::connection_path(plugin, connection_id));
        let query = [
            ("page", page.max(1).to_string()),
            (
                "pageSize",
                page_size.clamp(1, MAX_SCOPES_PAGE_SIZE).to_string(),
            ),
        ];
        self.get_json(&path, &query).await
    }

    /// Every scope of a connection, paged (at most 1000 rows per page, DevLake's cap).
    pub fn scopes<'a>(
        &'a self,
        plugin: &'a str,
        connection_id: u64,
    ) -> BoxStream<'a, Result<ScopeListItem>> {
        let size = self.inner.page_size.min(MAX_SCOPES_PAGE_SIZE);
        self.paged(size, move |page, size| async move {
            let p = self.scopes_page(plugin, connection_id, page, size).await?;
            Ok((p.count, p.scopes))
        })
    }

    /// `None` on 404.
    pub async fn scope(
        &self,
        plugin: &str,
        connection_id: u64,
        scope_id: &str,
    ) -> Result<Option<ScopeListItem>> {
        let path = format!(
            "{}/scopes/{}",
            Self::connection_path(plugin, connection_id),
            scope_id_path(plugin, scope_id)
        );
        self.get_optional(&path).await
    }

    /// Bulk upsert (idempotent by primary key, so retried).
    pub async fn put_scopes(
        &self,
        plugin: &str,
        connection_id: u64,
        rows: &[Value],
    ) -> Result<Vec<Scope>> {
        #[derive(Serialize)]
        struct Body<'b> {
            data: &'b [Value],
        }
        let path = format!("{}/scopes", Self::connection_path(plugin, connection_id));
        let saved: Option<Vec<Scope>> = self
            .send_json(Method::PUT, &path, &Body { data: rows })
            .await?;
        Ok(saved.unwrap_or_default())
    }

    pub async fn patch_scope(
        &self,
        plugin: &str,
        connection_id: u64,
        scope_id: &str,
        patch: &Value,
    ) -> Result<Scope> {
        let path = format!(
            "{}/scopes/{}",
            Self::connection_path(plugin, connection_id),
            scope_id_path(plugin, scope_id)
        );
        self.send_json(Method::PATCH, &path, patch).await
    }

    // ---------------------------------------------------------------- scope configs

    pub async fn scope_configs(
        &self,
        plugin: &str,
        connection_id: u64,
    ) -> Result<Vec<ScopeConfig>> {
        let path = format!(
            "{}/scope-configs",
            Self::connection_path(plugin, connection_id)
        );
        let list: Option<Vec<ScopeConfig>> = self.get_json(&path, &[]).await?;
        Ok(list.unwrap_or_default())
    }

    /// Creates a scope config; if the POST times out or fails with 5xx, looks it up by name
    /// before deciding it failed (never blindly re-POSTs).
    pub async fn create_scope_config(
        &self,
        plugin: &str,
        connection_id: u64,
        config: &ScopeConfig,
    ) -> Result<ScopeConfig> {
        let path = format!(
            "{}/scope-configs",
            Self::connection_path(plugin, connection_id)
        );
        let error = match self.send_json(Method::POST, &path, config).await {
            Ok(created) => return Ok(created),
            Err(e) if may_have_committed(&e) => e,
            Err(e) => return Err(e),
        };
        match self.scope_configs(plugin, connection_id).await {
            Ok(list) => match list.into_iter().find(|c| c.name == config.name) {
                Some(found) => {
                    tracing::info!(
                        plugin,
                        connection_id,
                        scope_config = %config.name,
                        error = %error,
                        "scope-config create failed but DevLake had committed it"
                    );
                    Ok(found)
                }
                None => Err(error),
            },
            Err(lookup) => {
                tracing::warn!(plugin, connection_id, error = %lookup, "lookup after failed scope-config create failed");
                Err(error)
            }
        }
    }

    pub async fn patch_scope_config(
        &self,
        plugin: &str,
        connection_id: u64,
        scope_config_id: u64,
        patch: &Value,
    ) -> Result<ScopeConfig> {
        let path = format!(
            "{}/scope-configs/{scope_config_id}",
            Self::connection_path(plugin, connection_id)
        );
        self.send_json(Method::PATCH, &path, patch).await
    }

    // ---------------------------------------------------------------- projects

    pub async fn projects_page(&self, page: u32, page_size: u32) -> Result<ProjectsPage> {
        let query = [
            ("page", page.max(1).to_string()),
            ("pageSize", page_size.max(1).to_string()),
        ];
        self.get_json("/projects", &query).await
    }

    pub fn projects(&self) -> BoxStream<'_, Result<Project>> {
        self.paged(self.inner.page_size, move |page, size| async move {
            let p = self.projects_page(page, size).await?;
            Ok((p.count, p.projects))
        })
    }

    fn project_path(name: &str) -> String {
        format!("/projects/{}", encode_segment(name))
    }

    /// `None` on 404. The name is percent-encoded in the path.
    pub async fn project(&self, name: &str) -> Result<Option<Project>> {
        self.get_optional(&Self::project_path(name)).await
    }

    /// Creates a project; if the POST times out or fails with 5xx, looks the name up before
    /// deciding it failed (never blindly re-POSTs). A 400 "already exists" is returned as
    /// `DevLakeError::Status { status: 400, .. }`.
    pub async fn create_project(&self, input: &ProjectInput) -> Result<Project> {
        let error = match self.send_json(Method::POST, "/projects", input).await {
            Ok(created) => return Ok(created),
            Err(e) if may_have_committed(&e) => e,
            Err(e) => return Err(e),
        };
        match self.project(&input.name).await {
            Ok(Some(found)) => {
                tracing::info!(
                    project = %input.name,
                    error = %error,
                    "project create failed but DevLake had committed it"
                );
                Ok(found)
            }
            Ok(None) => Err(error),
            Err(lookup) => {
                tracing::warn!(project = %input.name, error = %lookup, "lookup after failed project create failed");
                Err(error)
            }
        }
    }

    pub async fn patch_project(&self, name: &str, patch: &Value) -> Result<Project> {
        self.send_json(Method::PATCH, &Self::project_path(name), patch)
            .await
    }

    // ---------------------------------------------------------------- blueprints

    pub async fn blueprints_page(
        &self,
        query: &BlueprintQuery,
        page: u32,
        page_size: u32,
    ) -> Result<BlueprintsPage> {
        self.get_json("/blueprints", &blueprint_query(query, page, page_size))
            .await
    }

    pub fn blueprints<'a>(&'a self, query: &'a BlueprintQuery) -> BoxStream<'a, Result<Blueprint>> {
        self.paged(self.inner.page_size, move |page, size| async move {
            let p = self.blueprints_page(query, page, size).await?;
            Ok((p.count, p.blueprints))
        })
    }

    pub async fn blueprint(&self, id: u64) -> Result<Blueprint> {
        self.get_json(&format!("/blueprints/{id}"), &[]).await
    }

    pub async fn patch_blueprint(&self, id: u64, patch: &BlueprintPatch) -> Result<Blueprint> {
        self.send_json(Method::PATCH, &format!("/blueprints/{id}"), patch)
            .await
    }

    /// Never retried (a trigger is not idempotent); 400 pending → `AlreadyRunning`.
    pub async fn trigger_blueprint(
        &self,
        id: u64,
        request: TriggerRequest,
    ) -> Result<TriggerOutcome> {
        match self
            .send_json(Method::POST, &format!("/blueprints/{id}/trigger"), &request)
            .await
        {
            Ok(pipeline) => Ok(TriggerOutcome::Started(pipeline)),
            Err(DevLakeError::Status {
                status: 400,
                message,
                ..
            }) if message.contains("pending pipelines") => Ok(TriggerOutcome::AlreadyRunning),
            Err(e) => Err(e),
        }
    }

    // ---------------------------------------------------------------- pipelines

    pub async fn pipelines_page(
        &self,
        query: &PipelineQuery,
        page: u32,
        page_size: u32,
    ) -> Result<PipelinesPage> {
        self.get_json("/pipelines", &pipeline_query(query, page, page_size))
            .await
    }

    /// Newest first (`id DESC`); stop consuming early to avoid fetching further pages.
    pub fn pipelines<'a>(&'a self, query: &'a PipelineQuery) -> BoxStream<'a, Result<Pipeline>> {
        self.paged(self.inner.page_size, move |page, size| async move {
            let p = self.pipelines_page(query, page, size).await?;
            Ok((p.count, p.pipelines))
        })
    }

    pub async fn pipeline(&self, id: u64) -> Result<Pipeline> {
        self.get_json(&format!("/pipelines/{id}"), &[]).await
    }

    pub async fn rerun_pipeline(&self, id: u64) -> Result<Vec<Task>> {
        let path = format!("/pipelines/{id}/rerun");
        let answer = self
            .execute(Method::POST, &path, &[], Some(b"{}".to_vec()), false)
            .await?;
        let tasks: Option<Vec<Task>> = self.decode(&Method::POST, &path, &answer)?;
        Ok(tasks.unwrap_or_default())
    }
}

/// A failed POST that may nevertheless have been committed: the request may have reached
/// DevLake (timeout, reset) or DevLake failed after writing (5xx).
fn may_have_committed(error: &DevLakeError) -> bool {
    match error {
        DevLakeError::Transport { .. } => true,
        DevLakeError::Status { status, .. } => *status >= 500,
        _ => false,
    }
}

/// Query of `GET /blueprints` (camelCase keys; `type` only matters without `isManual`).
pub fn blueprint_query(
    query: &BlueprintQuery,
    page: u32,
    page_size: u32,
) -> Vec<(&'static str, String)> {
    let mut q = Vec::new();
    if let Some(enable) = query.enable {
        q.push(("enable", enable.to_string()));
    }
    if let Some(manual) = query.is_manual {
        q.push(("isManual", manual.to_string()));
    }
    if let Some(label) = &query.label {
        q.push(("label", label.clone()));
    }
    if let Some(kind) = &query.kind {
        q.push(("type", kind.clone()));
    }
    q.push(("page", page.max(1).to_string()));
    q.push(("pageSize", page_size.max(1).to_string()));
    q
}

/// Query of `GET /pipelines`: `blueprint_id` is snake_case, `pageSize` camelCase.
pub fn pipeline_query(
    query: &PipelineQuery,
    page: u32,
    page_size: u32,
) -> Vec<(&'static str, String)> {
    let mut q = Vec::new();
    if let Some(status) = &query.status {
        q.push(("status", status.clone()));
    }
    if query.pending {
        q.push(("pending", "1".to_string()));
    }
    if let Some(id) = query.blueprint_id {
        q.push(("blueprint_id", id.to_string()));
    }
    if let Some(label) = &query.label {
        q.push(("label", label.clone()));
    }
    q.push(("page", page.max(1).to_string()));
    q.push(("pageSize", page_size.max(1).to_string()));
    q
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[test]
    fn joins_base_and_path_with_one_slash() {
        for base in [
            "http://d:8080",
            "http://d:8080/",
            "https://x/api/rest",
            "https://x/api/rest/",
        ] {
            let url = join_url(base, "/projects");
            assert!(url.ends_with("/projects"));
            assert!(!url["https://".len()..].contains("//"), "{url}");
        }
        assert_eq!(
            join_url("https://x/api/rest/", "/ping"),
            "https://x/api/rest/ping"
        );
    }

    #[test]
    fn project_names_are_one_encoded_segment() {
        assert_eq!(encode_segment("github/acme/api"), "github%2Facme%2Fapi");
        assert_eq!(encode_segment("a / b"), "a%20%2F%20b");
        assert_eq!(encode_segment("A-z_0.9~"), "A-z_0.9~");
        assert_eq!(encode_segment("ü?#%&+"), "%C3%BC%3F%23%25%26%2B");
        assert_eq!(
            DevLakeClient::project_path("github/acme/api"),
            "/projects/github%2Facme%2Fapi"
        );
    }

    #[test]
    fn wildcard_scope_ids_keep_their_slashes() {
        assert_eq!(scope_id_path("jenkins", "folder/my job"), "folder/my%20job");
        assert_eq!(scope_id_path("bitbucket", "ws/slug"), "ws/slug");
        assert_eq!(scope_id_path("github", "123456"), "123456");
        assert_eq!(scope_id_path("bamboo", "PROJ-PLAN"), "PROJ-PLAN");
        assert_eq!(
            scope_id_path("bitbucket_server", "PROJ/repos/my repo"),
            "PROJ/repos/my%20repo"
        );
        assert_eq!(scope_id_path("gitlab", "a/b"), "a%2Fb");
    }

    #[test]
    fn pipeline_query_uses_devlakes_mixed_key_casing() {
        let q = PipelineQuery {
            status: Some("TASK_FAILED".into()),
            pending: true,
            blueprint_id: Some(7),
            label: Some("managed by/x".into()),
        };
        let rendered = path_with_query("/pipelines", &pipeline_query(&q, 3, 500));
        assert_eq!(
            rendered,
            "/pipelines?status=TASK_FAILED&pending=1&blueprint_id=7&label=managed%20by%2Fx&page=3&pageSize=500"
        );
        let empty = path_with_query(
            "/pipelines",
            &pipeline_query(&PipelineQuery::default(), 0, 0),
        );
        assert_eq!(empty, "/pipelines?page=1&pageSize=1");
    }

    #[test]
    fn blueprint_query_keys() {
        let q = BlueprintQuery {
            enable: Some(true),
            is_manual: Some(false),
            label: Some("l".into()),
            kind: Some("DAILY".into()),
        };
        assert_eq!(
            path_with_query("/blueprints", &blueprint_query(&q, 1, 50)),
            "/blueprints?enable=true&isManual=false&label=l&type=DAILY&page=1&pageSize=50"
        );
    }

    #[test]
    fn excerpt_prefers_envelope_message_and_is_bounded() {
        let env = br#"{"code":0,"success":false,"message":"error getting pipeline (404)\nsecond line","causes":null,"data":null}"#;
        assert_eq!(
            body_excerpt(env, None),
            "error getting pipeline (404) second line"
        );
        assert_eq!(
            body_excerpt(b"404 page not found", None),
            "404 page not found"
        );
        assert_eq!(body_excerpt(b"", None), "(empty body)");
        assert_eq!(body_excerpt(b"  \n", None), "(empty body)");
        let long = "x".repeat(1000);
        let excerpt = body_excerpt(long.as_bytes(), None);
        assert_eq!(excerpt.chars().count(), EXCERPT_CHARS + 1);
        assert!(excerpt.ends_with('…'));
        let multibyte = "é".repeat(300);
        assert_eq!(
            body_excerpt(multibyte.as_bytes(), None).chars().count(),
            201
        );
        assert_eq!(
            body_excerpt(br#"{"message":"bad key s3cr3t"}"#, Some("s3cr3t")),
            "bad key <redacted>"
        );
    }

    #[test]
    fn statuses_map_to_actionable_errors() {
        let e = classify_status(428, "GET", "/projects", b"{\"message\":\"migrate\"}", None);
        assert!(matches!(e, DevLakeError::MigrationPending { .. }));
        assert!(e.is_fatal() && !e.is_retryable());

        let e = classify_status(
            401,
            "GET",
            "/rest/projects",
            br#"{"success":false,"message":"token is missing"}"#,
            None,
        );
        match &e {
            DevLakeError::Unauthorized {
                status, message, ..
            } => {
                assert_eq!(*status, 401);
                assert_eq!(message, "token is missing");
            }
            other => panic!("{other:?}"),
        }
        assert!(e.is_fatal() && !e.is_retryable());
        assert!(matches!(
            classify_status(403, "GET", "/p", b"", None),
            DevLakeError::Unauthorized { status: 403, .. }
        ));

        for (status, retryable) in [
            (500, true),
            (502, true),
            (503, true),
            (429, true),
            (400, false),
            (404, false),
            (409, false),
        ] {
            let e = classify_status(status, "GET", "/p", b"", None);
            assert_eq!(e.is_retryable(), retryable, "{status}");
            assert_eq!(e.status(), Some(status));
        }
        let e = classify_status(404, "GET", "/nope", b"404 page not found", None);
        assert!(e.is_not_found());
        assert_eq!(
            e.to_string(),
            "DevLake answered 404 on GET /nope: 404 page not found"
        );
    }

    #[test]
    fn retry_after_reads_seconds_and_http_dates() {
        let now: chrono::DateTime<chrono::Utc> = "2026-11-28T11:00:00Z".parse().unwrap();
        assert_eq!(
            parse_retry_after("120", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(parse_retry_after(" 0 ", now), Some(Duration::ZERO));
        assert_eq!(
            parse_retry_after("Sat, 28 Nov 2026 11:00:30 GMT", now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            parse_retry_after("Sat, 28 Nov 2026 10:59:00 GMT", now),
            Some(Duration::ZERO),
            "a date in the past asks for no wait"
        );
        for ignored in ["", "-5", "soon", "1.5"] {
            assert_eq!(parse_retry_after(ignored, now), None, "{ignored:?}");
        }
    }

    #[test]
    fn only_post_is_never_retried() {
        assert!(!is_idempotent(&Method::POST));
        for m in [Method::GET, Method::PUT, Method::PATCH, Method::DELETE] {
            assert!(is_idempotent(&m));
        }
    }

    #[test]
    fn backoff_doubles_to_the_cap_with_full_jitter() {
        let p = RetryPolicy {
            max_retries: 5,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(1000),
        };
        assert_eq!(p.ceiling(0), Duration::from_millis(100));
        assert_eq!(p.ceiling(1), Duration::from_millis(200));
        assert_eq!(p.ceiling(3), Duration::from_millis(800));
        assert_eq!(p.ceiling(4), Duration::from_millis(1000));
        assert_eq!(p.ceiling(200), Duration::from_millis(1000));
        assert_eq!(p.delay(2, 0), Duration::ZERO);
        assert_eq!(p.delay(2, 400_000_000), Duration::from_millis(400));
        // Spread: many draws land all over [0, ceiling], never above it.
        let draws: Vec<Duration> = (0..200).map(|_| p.delay(3, random_u64())).collect();
        assert!(draws.iter().all(|d| *d <= Duration::from_millis(800)));
        assert!(draws.iter().any(|d| *d < Duration::from_millis(200)));
        assert!(draws.iter().any(|d| *d > Duration::from_millis(600)));
    }

    #[test]
    fn paging_stops_on_short_page_or_count() {
        assert!(wants_next_page(50, 50, 50, 120));
        assert!(!wants_next_page(20, 50, 120, 120)); // short page
        assert!(!wants_next_page(50, 50, 100, 100)); // count reached on a full page
        assert!(!wants_next_page(0, 50, 100, 1000)); // empty page never loops
        assert!(!wants_next_page(50, 50, 50, 0));
    }

    #[test]
    fn versions_pick_the_plugin_option_shape() {
        let v = |s: &str| Version { version: s.into() };
        assert_eq!(parse_version("v0.21.0@abc"), Some((0, 21, 0)));
        assert_eq!(parse_version("v1.0.3-beta12@abc1234"), Some((1, 0, 3)));
        assert_eq!(parse_version("dev"), None);
        assert!(v("v0.20.0@x").plugin_option_is_string());
        assert!(!v("v1.0.0@x").plugin_option_is_string());
        assert!(!v("dev").plugin_option_is_string());
        assert_eq!(
            serde_json::to_value(ProjectMetric::dora(&v("v0.21.0@abc"))).unwrap(),
            serde_json::json!({"pluginName":"dora","pluginOption":"{}","enable":true})
        );
        assert_eq!(
            serde_json::to_value(DevLakeClient::project_input_metrics(&v("dev"))).unwrap(),
            serde_json::json!([{"pluginName":"dora","pluginOption":{},"enable":true}])
        );
    }

    #[test]
    fn config_errors_and_debug_never_show_the_key() {
        let key = "dlk-super-secret-123";
        let config = ClientConfig {
            endpoint: "http://127.0.0.1:1/rest".into(),
            api_key: Some(key.into()),
            ..Default::default()
        };
        assert!(!format!("{config:?}").contains(key));
        let client = DevLakeClient::new(config).unwrap();
        assert!(!format!("{client:?}").contains(key));

        let bad = DevLakeClient::new(ClientConfig {
            endpoint: "http://127.0.0.1:1/rest".into(),
            api_key: Some("line\nbreak-secret".into()),
            ..Default::default()
        })
        .unwrap_err();
        assert!(!bad.to_string().contains("break-secret"));
        assert!(bad.is_fatal());

        let with_password = DevLakeClient::new(ClientConfig {
            endpoint: "https://admin:hunter2-pass@devlake.example.com/api/".into(),
            ..Default::default()
        })
        .unwrap();
        assert!(!format!("{with_password:?}").contains("hunter2-pass"));
        assert!(with_password.endpoint().starts_with("https://admin:"));
        assert!(with_password
            .endpoint()
            .ends_with("@devlake.example.com/api"));
        let e = DevLakeClient::new(ClientConfig {
            endpoint: "ftp://admin:hunter2-pass@x/".into(),
            ..Default::default()
        })
        .unwrap_err();
        assert!(!e.to_string().contains("hunter2-pass"), "{e}");

        for endpoint in ["", "devlake:8080", "ftp://x", "http://x/?a=1"] {
            let e = DevLakeClient::new(ClientConfig {
                endpoint: endpoint.into(),
                ..Default::default()
            })
            .unwrap_err();
            assert!(matches!(e, DevLakeError::Config(_)), "{endpoint}: {e}");
        }
    }

    /// The stream asks for a page only when the consumer wants rows beyond the previous one.
    #[tokio::test]
    async fn streams_fetch_pages_lazily() {
        let client = DevLakeClient::new(ClientConfig {
            endpoint: "http://127.0.0.1:1".into(),
            ..Default::default()
        })
        .unwrap();
        let fetched = Arc::new(Mutex::new(Vec::new()));
        let total = 230i64;
        let stream = {
            let fetched = fetched.clone();
            client.paged(100, move |page, size| {
                let fetched = fetched.clone();
                async move {
                    fetched.lock().unwrap().push(page);
                    let start = (page as i64 - 1) * size as i64;
                    let rows: Vec<i64> = (start..(start + size as i64).min(total)).collect();
                    Ok((total, rows))
                }
            })
        };
        let first: Vec<i64> = stream.take(150).map(|r| r.unwrap()).collect().await;
        assert_eq!(first.len(), 150);
        assert_eq!(*fetched.lock().unwrap(), vec![1, 2]);

        fetched.lock().unwrap().clear();
        let stream = {
            let fetched = fetched.clone();
            client.paged(100, move |page, size| {
                let fetched = fetched.clone();
                async move {
                    fetched.lock().unwrap().push(page);
                    let start = (page as i64 - 1) * size as i64;
                    let rows: Vec<i64> = (start..(start + size as i64).min(total)).collect();
                    Ok((total, rows))
                }
            })
        };
        let all: Vec<i64> = stream.map(|r| r.unwrap()).collect().await;
        assert_eq!(all, (0..230).collect::<Vec<_>>());
        assert_eq!(*fetched.lock().unwrap(), vec![1, 2, 3]);
    }
}
