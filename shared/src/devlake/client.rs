//! The typed DevLake client: the one place that knows HTTP, auth, paging, retries and limits.
//!
//! Every request goes through [`DevLakeClient::execute`] (transport.rs), which applies the
//! concurrency cap per attempt, counts the attempt, logs it (never the key) and retries only
//! idempotent methods. List endpoints are exposed both page by page and as lazy streams that
//! fetch the next page only when the consumer asks for more rows. This file holds the client
//! type and its construction; each DevLake resource has its own file with its own
//! `impl DevLakeClient` block.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use reqwest::header::HeaderValue;
use tokio::sync::Semaphore;

use super::config::{ApiKeySource, ClientConfig};
use super::error::DevLakeError;
use super::http::{redact_url, RetryPolicy};
use super::models::Pipeline;
use crate::deadline::Deadline;

pub(super) type Result<T> = std::result::Result<T, DevLakeError>;

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
    pub(super) inner: Arc<Inner>,
    /// The run's deadline: no retry wait (backoff or `Retry-After`) is started past it.
    pub(super) deadline: Deadline,
}

pub(super) struct Inner {
    pub(super) http: reqwest::Client,
    /// Endpoint without trailing `/`; paths are appended as `/{path}`.
    pub(super) base: String,
    /// `base` with any URL password replaced, for Debug and logs.
    pub(super) shown: String,
    /// `Bearer <key>`, marked sensitive so reqwest never prints it either.
    pub(super) auth: Option<HeaderValue>,
    /// Kept only to scrub it from anything DevLake echoes back into an error excerpt.
    pub(super) api_key: Option<String>,
    /// A rotating key, read for every request instead of `auth`.
    pub(super) key_source: Option<Arc<dyn ApiKeySource>>,
    /// Where the extra trust roots came from, for the untrusted-certificate error.
    pub(super) ca_bundle: Option<String>,
    pub(super) max_response_bytes: usize,
    pub(super) max_retry_after: Duration,
    pub(super) request_timeout: Duration,
    pub(super) retry: RetryPolicy,
    pub(super) page_size: u32,
    pub(super) permits: Semaphore,
    pub(super) reads: AtomicU64,
    pub(super) writes: AtomicU64,
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
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
