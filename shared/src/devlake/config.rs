//! How a client is configured: endpoint, key (fixed or rotating), timeouts, retries, limits.
//!
//! Kept apart from the client itself so the binaries that read settings from the environment
//! only need these plain types and their defaults.

use std::sync::Arc;
use std::time::Duration;

use super::tls::CaBundle;

/// DevLake refuses `pageSize` above this on the scopes list (docs/devlake-api.md, Pagination).
pub const MAX_SCOPES_PAGE_SIZE: u32 = 1000;

/// The default cap of one response body. DevLake's largest answers are list pages: 5,000
/// pipelines (the most `DEVLAKE_PAGE_SIZE` allows) at 1–2 KB each are about 10 MB, so 64 MiB
/// leaves room for large task options while a broken proxy or endpoint cannot exhaust the
/// function's memory.
pub const MAX_RESPONSE_BYTES: usize = 64 * 1024 * 1024;

/// The longest `Retry-After` the client waits for when the run has no deadline; with one, the
/// wait must also end before it.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);

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
