//! The metrics function's HTTP handling, independent of Lambda: authentication first, then
//! routing, content negotiation, one store read and the page (docs/metrics.md): the published
//! snapshot's, kept between scrapes ([`crate::snapshot::page`]), or, before any is published,
//! rendered from the state's own items.
//!
//! Order matters: a request without the right bearer token is answered 401 before its method or
//! path is looked at and before the store is touched, so an unauthenticated caller learns nothing
//! (not even which paths exist) and cannot make the function spend DynamoDB reads.

use std::time::Instant;

use chrono::{DateTime, Duration as ChronoDuration, Utc};
use chrono_tz::Tz;
use lambda_http::http::{header, HeaderValue, Method, Request, Response, StatusCode};
use subtle::ConstantTimeEq;

use crate::config::{ConfigError, Env, SecretSource};
use crate::function_url::{plain, simple, Refusal, Refusals};
use crate::render::{self, ExpositionFormat};
use crate::secrets::{Credential, Expected};
use crate::snapshot::page::{PreparedPage, ServedPage};
use crate::store::{MetricsSnapshot, MetricsSource, PublishedRead, ScrapeRead, StoreError};

/// The `http` types the handler speaks, for callers that do not depend on `lambda_http`.
pub use lambda_http::http;

pub const TOKEN_VAR: &str = "METRICS_TOKEN";
/// The most a Lambda function URL answers: the function's whole response document (status,
/// headers, body as a JSON string, base64 for a compressed body) is capped at 6 MB. A page that
/// would not fit is refused by the function with a reason instead (see [`MetricsService::handle`]).
pub const FUNCTION_URL_RESPONSE_LIMIT: usize = 6 * 1024 * 1024;
/// Room kept in [`FUNCTION_URL_RESPONSE_LIMIT`] for the status, the headers and the JSON around
/// the body.
const RESPONSE_FRAMING: usize = 8 * 1024;
pub const TOKEN_ARN_VAR: &str = "METRICS_TOKEN_SECRET_ARN";
/// The bearer token Prometheus must send. Never printed: `Debug` is redacted and there is no
/// `Display`.
#[derive(Clone)]
pub struct MetricsToken(String);

impl MetricsToken {
    /// Surrounding white space is dropped (a secret pasted with a trailing newline must still
    /// match; bearer tokens cannot contain spaces). An empty token would let
    /// `Authorization: Bearer ` in, so it is refused.
    pub fn new(token: impl Into<String>) -> Result<Self, ConfigError> {
        let token = token.into();
        let token = token.trim();
        if token.is_empty() {
            return Err(ConfigError::new(TOKEN_VAR, "the metrics token is empty"));
        }
        Ok(MetricsToken(token.to_string()))
    }

    /// Compares in time that depends only on the expected token's length, never on where the
    /// first differing byte is or on the presented token's content.
    pub fn matches(&self, presented: &[u8]) -> bool {
        let expected = self.0.as_bytes();
        let mut equal = (presented.len() as u64).ct_eq(&(expected.len() as u64));
        for (i, e) in expected.iter().enumerate() {
            // Reads past the end of a shorter token compare against 0; the length check above
            // already failed for it.
            let p = presented.get(i).copied().unwrap_or(0);
            equal &= p.ct_eq(e);
        }
        equal.into()
    }
}

impl std::fmt::Debug for MetricsToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MetricsToken(<redacted>)")
    }
}

/// Configuration of the metrics function (docs/configuration.md), read once at cold start.
#[derive(Debug, Clone)]
pub struct MetricsSettings {
    pub table_name: String,
    pub timezone: Tz,
    pub failure_window_days: u32,
    /// Where the token comes from; the binary resolves an ARN once through Secrets Manager.
    pub token: SecretSource,
}

impl MetricsSettings {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let table_name = env.required("TABLE_NAME")?.to_string();
        let timezone = env.timezone("TIMEZONE")?;
        let failure_window_days = env.failure_window_days()?;
        let token = env.required_secret_source(TOKEN_VAR, TOKEN_ARN_VAR)?;
        Ok(MetricsSettings {
            table_name,
            timezone,
            failure_window_days,
            token,
        })
    }
}

/// The token the page expects: `METRICS_TOKEN`, or the secret `METRICS_TOKEN_SECRET_ARN`.
pub type ExpectedToken = Expected<MetricsToken>;

impl Credential for MetricsToken {
    const ARN_VAR: &'static str = TOKEN_ARN_VAR;

    fn from_text(text: String) -> Result<Self, ConfigError> {
        MetricsToken::new(text)
    }
}

/// Serves the metrics page from a [`MetricsSource`].
pub struct MetricsService<S> {
    source: S,
    token: ExpectedToken,
    timezone: Tz,
    window: ChronoDuration,
    /// Requests answered 401 since this instance started (see [`Self::log_refusal`]).
    refused: Refusals,
    /// The page of the latest published snapshot this instance served: rendered once per
    /// version, served by every scrape until the next one.
    prepared: std::sync::Mutex<Option<PreparedPage>>,
    /// The largest response document allowed, [`FUNCTION_URL_RESPONSE_LIMIT`] but in tests.
    response_limit: usize,
}

/// What a scrape answers with, however it was made.
struct Served {
    page: ServedPage,
    /// The published version it comes from; `None`: read directly.
    version: Option<u64>,
}

/// Where the page of a published read comes from.
enum Prepared {
    Served(ServedPage),
    /// The snapshot could not be used (it does not decode, or a concurrent request replaced the
    /// kept page): read the state directly.
    Direct,
}

impl<S: MetricsSource> MetricsService<S> {
    pub fn new(
        source: S,
        token: impl Into<ExpectedToken>,
        timezone: Tz,
        failure_window_days: u32,
    ) -> Self {
        MetricsService {
            source,
            token: token.into(),
            timezone,
            window: ChronoDuration::days(i64::from(failure_window_days)),
            refused: Refusals::default(),
            prepared: std::sync::Mutex::new(None),
            response_limit: FUNCTION_URL_RESPONSE_LIMIT,
        }
    }

    /// The same service refusing responses whose document would exceed `bytes` (tests).
    pub fn with_response_limit(mut self, bytes: usize) -> Self {
        self.response_limit = bytes;
        self
    }

    pub fn source(&self) -> &S {
        &self.source
    }

    /// Answers one request. `now` decides the failure window; the body of `req` is never read.
    /// The page is gzip-compressed when the client accepts it (Prometheus always does): a Lambda
    /// function URL answers at most 6 MB, which 20,000 failures in the window already bring
    /// within reach uncompressed (~4 MB), and compression cuts that about tenfold. A page whose
    /// response would still exceed the limit is not attempted (the function URL would answer
    /// 502 without a reason): uncompressed, `406` naming gzip; compressed, `503`, logged.
    pub async fn handle<B>(&self, req: &Request<B>, now: DateTime<Utc>) -> Response<Vec<u8>> {
        let started = Instant::now();
        let method = req.method();
        let path = req.uri().path();

        if !self.authorized(req).await {
            self.log_refusal(method, path);
            return plain(StatusCode::UNAUTHORIZED)
                .header(header::WWW_AUTHENTICATE, "Bearer")
                .body(b"unauthorized\n".to_vec())
                .expect("static response parts are valid");
        }
        if !matches!(path, "/" | "" | "/metrics") {
            tracing::info!(%method, path, status = 404, "unknown metrics path");
            return simple(StatusCode::NOT_FOUND, "not found\n");
        }
        if method != Method::GET {
            tracing::info!(%method, path, status = 405, "method not allowed");
            return plain(StatusCode::METHOD_NOT_ALLOWED)
                .header(header::ALLOW, "GET")
                .body(b"method not allowed\n".to_vec())
                .expect("static response parts are valid");
        }

        let format = ExpositionFormat::negotiate(
            req.headers()
                .get(header::ACCEPT)
                .and_then(|v| v.to_str().ok()),
        );
        let gzip = accepts_gzip(req.headers().get(header::ACCEPT_ENCODING));
        let since = now - self.window;
        let Served { page, version } = match self.page(since, format, gzip, started).await {
            Ok(served) => served,
            Err(error) => {
                // 503 makes Prometheus mark the target down (up == 0) instead of ingesting a
                // page that silently lacks series.
                tracing::error!(%error, retryable = error.is_retryable(), "store read failed; answering 503");
                return simple(StatusCode::SERVICE_UNAVAILABLE, "store unavailable\n");
            }
        };

        let document = response_document_len(&page.body, page.gzip);
        if document > self.response_limit {
            return self.too_large(&page, document);
        }
        let mut response = Response::builder()
            .status(StatusCode::OK)
            .header(header::CONTENT_TYPE, format.content_type())
            .header(header::CACHE_CONTROL, "no-store")
            .header(header::VARY, "Accept, Accept-Encoding");
        if page.gzip {
            response = response.header(header::CONTENT_ENCODING, "gzip");
        }
        tracing::info!(
            %method,
            path,
            status = 200,
            format = ?format,
            snapshot_version = version,
            projects = page.projects,
            failures = page.failures,
            decode_errors = page.decode_errors,
            bytes = page.page_bytes,
            sent_bytes = page.body.len(),
            elapsed_ms = started.elapsed().as_secs_f64() * 1000.0,
            "metrics rendered"
        );
        response
            .body(page.body)
            .expect("static response parts are valid")
    }

    /// The page: the published snapshot's (the kept rendering, or a new one when its version
    /// changed), or the direct read's when nothing is published or the snapshot is unusable.
    async fn page(
        &self,
        since: DateTime<Utc>,
        format: ExpositionFormat,
        gzip: bool,
        started: Instant,
    ) -> Result<Served, StoreError> {
        let known = self.lock_prepared().as_ref().map(PreparedPage::version);
        let read = match self.source.scrape(since, known).await? {
            ScrapeRead::Direct(snapshot) => {
                return Ok(self.direct(&snapshot, format, gzip, started));
            }
            ScrapeRead::Published(read) => read,
        };
        let version = read.version;
        match self.serve_published(read, since, format, gzip, started) {
            Prepared::Served(page) => Ok(Served {
                page,
                version: Some(version),
            }),
            Prepared::Direct => {
                let snapshot = self.source.snapshot(since).await?;
                Ok(self.direct(&snapshot, format, gzip, started))
            }
        }
    }

    fn serve_published(
        &self,
        read: PublishedRead,
        since: DateTime<Utc>,
        format: ExpositionFormat,
        gzip: bool,
        started: Instant,
    ) -> Prepared {
        let mut prepared = self.lock_prepared();
        if let Some(blob) = &read.blob {
            match crate::snapshot::decode(blob) {
                Ok(state) => {
                    *prepared = Some(PreparedPage::new(read.version, state, self.timezone));
                }
                Err(error) => {
                    tracing::error!(%error, version = read.version, "the published snapshot does not decode; reading the state directly");
                    return Prepared::Direct;
                }
            }
        }
        let Some(page) = prepared.as_mut().filter(|p| p.version() == read.version) else {
            return Prepared::Direct;
        };
        Prepared::Served(page.serve(since, format, gzip, read.live, || started.elapsed()))
    }

    /// The page rendered whole from a direct read.
    fn direct(
        &self,
        snapshot: &MetricsSnapshot,
        format: ExpositionFormat,
        gzip: bool,
        started: Instant,
    ) -> Served {
        let text = render::render_page_timed(snapshot, self.timezone, format, || started.elapsed());
        let page_bytes = text.len();
        let (body, gzip) = if gzip {
            match gzip_bytes(text.as_bytes()) {
                Ok(compressed) => (compressed, true),
                // Writing to memory cannot fail in practice; the plain page is still right.
                Err(error) => {
                    tracing::warn!(%error, "gzip failed; answering uncompressed");
                    (text.into_bytes(), false)
                }
            }
        } else {
            (text.into_bytes(), false)
        };
        Served {
            page: ServedPage {
                body,
                gzip,
                page_bytes,
                projects: snapshot.projects.len(),
                failures: snapshot.failures.len(),
                decode_errors: snapshot.decode_errors,
            },
            version: None,
        }
    }

    /// The answer for a page whose response document would be `document` bytes, over the limit.
    fn too_large(&self, page: &ServedPage, document: usize) -> Response<Vec<u8>> {
        let limit = self.response_limit;
        if page.gzip {
            tracing::error!(
                page_bytes = page.page_bytes,
                sent_bytes = page.body.len(),
                document,
                limit,
                "the compressed page does not fit a function URL response; answering 503"
            );
            return simple(
                StatusCode::SERVICE_UNAVAILABLE,
                "the page is too large for a function URL response even compressed\n",
            );
        }
        tracing::warn!(
            page_bytes = page.page_bytes,
            document,
            limit,
            "an uncompressed page does not fit a function URL response; answering 406"
        );
        let message = format!(
            "the page is {} bytes, more than a function URL can answer uncompressed ({limit} \
             bytes); ask for it with Accept-Encoding: gzip\n",
            page.page_bytes
        );
        simple(StatusCode::NOT_ACCEPTABLE, &message)
    }

    fn lock_prepared(&self) -> std::sync::MutexGuard<'_, Option<PreparedPage>> {
        self.prepared.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Logs a request refused for want of a valid token, at INFO only now and then
    /// ([`crate::function_url`] says why).
    fn log_refusal(&self, method: &Method, path: &str) {
        let Refusal { count, loud } = self.refused.count();
        if loud {
            tracing::info!(
                %method,
                path,
                status = 401,
                refused = count,
                "metrics requests without a valid token refused by this instance so far"
            );
        } else {
            tracing::debug!(%method, path, status = 401, refused = count, "metrics request without a valid token");
        }
    }

    async fn authorized<B>(&self, req: &Request<B>) -> bool {
        let Some(expected) = self.token.current().await else {
            return false;
        };
        let mut valid = false;
        // Every Authorization header is checked (not just the first) so no header order trick
        // changes the outcome, and all are compared so timing does not depend on which matched.
        for value in req.headers().get_all(header::AUTHORIZATION) {
            if let Some(token) = bearer_token(value) {
                valid |= expected.matches(token);
            }
        }
        valid
    }
}

/// Whether `Accept-Encoding` admits gzip (`gzip`, `x-gzip` or `*` with a non-zero quality).
fn accepts_gzip(value: Option<&HeaderValue>) -> bool {
    let Some(value) = value.and_then(|v| v.to_str().ok()) else {
        return false;
    };
    value.split(',').any(|coding| {
        let mut parts = coding.split(';').map(str::trim);
        let name = parts.next().unwrap_or_default().to_ascii_lowercase();
        let q = parts
            .filter_map(|p| p.split_once('='))
            .find(|(k, _)| k.trim().eq_ignore_ascii_case("q"))
            .map_or(1.0, |(_, v)| v.trim().parse::<f32>().unwrap_or(0.0));
        matches!(name.as_str(), "gzip" | "x-gzip" | "*") && q > 0.0
    })
}

/// The function's response as Lambda's HTTP types: an uncompressed (UTF-8) body travels as a JSON
/// string, anything else as base64, which a function URL decodes. Text would grow by a third as
/// base64, and the response document is capped at [`FUNCTION_URL_RESPONSE_LIMIT`].
pub fn lambda_response(response: Response<Vec<u8>>) -> Response<lambda_http::Body> {
    let compressed = response.headers().contains_key(header::CONTENT_ENCODING);
    response.map(|body| {
        if compressed {
            return lambda_http::Body::Binary(body);
        }
        match String::from_utf8(body) {
            Ok(text) => lambda_http::Body::Text(text),
            Err(e) => lambda_http::Body::Binary(e.into_bytes()),
        }
    })
}

/// The size of the response document Lambda builds for `body` ([`lambda_response`]): base64 for a
/// compressed body, a JSON string (with its escapes) for text, plus room for the rest.
fn response_document_len(body: &[u8], compressed: bool) -> usize {
    let encoded = if compressed || std::str::from_utf8(body).is_err() {
        body.len().div_ceil(3) * 4
    } else {
        body.iter()
            .map(|b| match b {
                b'"' | b'\\' | b'\n' | b'\r' | b'\t' | 0x08 | 0x0c => 2,
                0..=0x1f => 6,
                _ => 1,
            })
            .sum()
    };
    encoded + RESPONSE_FRAMING
}

/// Fast compression: the page is highly repetitive, so even level 1 shrinks it about tenfold.
fn gzip_bytes(data: &[u8]) -> std::io::Result<Vec<u8>> {
    use std::io::Write;
    let mut encoder = flate2::write::GzEncoder::new(
        Vec::with_capacity(data.len() / 8),
        flate2::Compression::fast(),
    );
    encoder.write_all(data)?;
    encoder.finish()
}

/// The credentials of `Bearer <token>` (scheme case-insensitive, RFC 6750).
fn bearer_token(value: &HeaderValue) -> Option<&[u8]> {
    let bytes = value.as_bytes();
    let (scheme, rest) = bytes.split_at(bytes.iter().position(|b| *b == b' ')?);
    if !scheme.eq_ignore_ascii_case(b"bearer") {
        return None;
    }
    let token = rest.trim_ascii();
    (!token.is_empty()).then_some(token)
}

#[cfg(test)]
mod tests;
