//! The HTTP pieces of a DevLake call that need no client: URL and path encoding, the retry
//! schedule, status classification, `Retry-After` and error excerpts that never show the key.
//!
//! Pure functions, so each rule is unit-tested without a server.

use std::time::Duration;

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use reqwest::header::HeaderValue;
use reqwest::{Method, StatusCode};

use super::client::Result;
use super::error::DevLakeError;
use super::models::ErrorEnvelope;

/// How much of a response body an error keeps.
pub(super) const EXCERPT_CHARS: usize = 200;

/// RFC 3986 unreserved characters stay literal; everything else is percent-encoded, so a value
/// such as `github/acme/api` stays ONE path segment (`github%2Facme%2Fapi`).
pub(super) const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

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
pub(super) fn random_u64() -> u64 {
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
pub(super) fn bearer(key: &str) -> Result<HeaderValue> {
    let mut value = HeaderValue::from_str(&format!("Bearer {}", key.trim())).map_err(|_| {
        DevLakeError::Config(
            "the DevLake API key contains characters not allowed in an HTTP header".into(),
        )
    })?;
    value.set_sensitive(true);
    Ok(value)
}

/// The URL as text with its password (if any) replaced by `<redacted>`.
pub(super) fn redact_url(url: &reqwest::Url) -> String {
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
pub(super) fn path_with_query(path: &str, query: &[(&str, String)]) -> String {
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
pub(super) fn scrub(text: &str, api_key: Option<&str>) -> String {
    match api_key.filter(|k| !k.is_empty()) {
        Some(key) => text.replace(key, "<redacted>"),
        None => text.to_string(),
    }
}

pub(super) fn truncate_chars(text: &str, max: usize) -> String {
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
pub(super) fn is_idempotent(method: &Method) -> bool {
    *method != Method::POST
}

/// Which answers besides a 2xx a request returns to its caller instead of an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Accept {
    /// Only 2xx.
    Success,
    /// Also DevLake's JSON 404 ("record not found"); gin's plain-text 404 (unknown route: wrong
    /// endpoint, plugin not loaded) stays an error.
    JsonNotFound,
    /// Also any answer a plugin's handler gave in DevLake's envelope (`success` set): the
    /// verdict of a side-effect-free check such as a connection test, whose 4xx/5xx describes
    /// the checked thing, not the request. The API key middleware's refusals and the migration
    /// gate (428) stay errors. Such a POST changes nothing, so it counts as a read.
    HandlerVerdict,
}

impl Accept {
    pub(super) fn counts_as_read(self, method: &Method) -> bool {
        *method == Method::GET || self == Accept::HandlerVerdict
    }
}

/// The messages of DevLake's API key middleware (`CheckAuthorizationHeader` in
/// `backend/server/api/middlewares.go`): a 401/403 carrying one of them refused the key, not
/// whatever the handler would have checked.
pub(super) const API_KEY_REFUSALS: [&str; 5] = [
    "token is missing",
    "token is not present or malformed",
    "api key is invalid",
    "api key has expired",
    "path doesn't match api key's scope",
];

/// Whether a non-2xx answer is a handler's verdict in DevLake's envelope (`success: false`
/// and a message), rather than the key middleware, the migration gate, a missing object (404:
/// there is nothing to judge) or something in front of DevLake (a proxy's HTML, gin's
/// plain-text 404).
pub(super) fn is_handler_verdict(status: u16, body: &[u8]) -> bool {
    if matches!(status, 404 | 428) || (300..400).contains(&status) {
        return false;
    }
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(body) else {
        return false;
    };
    let Some(success) = value.get("success").and_then(serde_json::Value::as_bool) else {
        return false;
    };
    let message = value
        .get("message")
        .and_then(serde_json::Value::as_str)
        .unwrap_or_default();
    let key_refused = matches!(status, 401 | 403) && API_KEY_REFUSALS.contains(&message);
    !success && !key_refused
}

/// A successful (or tolerated 404) answer.
pub(super) struct Answer {
    pub(super) status: StatusCode,
    pub(super) body: Vec<u8>,
    /// The API key the request carried, to scrub from anything echoed back.
    pub(super) key: Option<String>,
    /// `Location` of a 3xx answer.
    pub(super) location: Option<String>,
    /// `Retry-After` of a 429/503 answer, as sent.
    pub(super) retry_after: Option<String>,
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
pub(super) fn redact_location(location: &str) -> String {
    match reqwest::Url::parse(location) {
        Ok(url) => redact_url(&url),
        Err(_) => location.to_string(),
    }
}

/// A failed POST that may nevertheless have been committed: the request may have reached
/// DevLake (timeout, reset) or DevLake failed after writing (5xx).
pub(super) fn may_have_committed(error: &DevLakeError) -> bool {
    match error {
        DevLakeError::Transport { .. } => true,
        DevLakeError::Status { status, .. } => *status >= 500,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn only_a_handlers_envelope_is_a_verdict() {
        let envelope = |message: &str| {
            serde_json::json!({"code": 0, "success": false, "message": message, "causes": null,
                               "data": null})
            .to_string()
        };
        let handler = envelope("StatusUnauthorized error when testing connection (400)");
        assert!(is_handler_verdict(400, handler.as_bytes()));
        assert!(is_handler_verdict(
            401,
            envelope("Please check your credential (401)").as_bytes()
        ));
        assert!(is_handler_verdict(
            500,
            envelope("Failed to connect").as_bytes()
        ));
        for refusal in API_KEY_REFUSALS {
            assert!(!is_handler_verdict(403, envelope(refusal).as_bytes()));
        }
        assert!(!is_handler_verdict(428, handler.as_bytes()));
        let missing = envelope("*models.GithubConnection not found (404)");
        assert!(!is_handler_verdict(404, missing.as_bytes()));
        assert!(!is_handler_verdict(404, b"404 page not found"));
        assert!(!is_handler_verdict(502, b"<html>Bad Gateway</html>"));
        assert!(!is_handler_verdict(
            500,
            br#"{"message":"no success field"}"#
        ));
        assert!(Accept::HandlerVerdict.counts_as_read(&Method::POST));
        assert!(!Accept::Success.counts_as_read(&Method::POST));
        assert!(Accept::Success.counts_as_read(&Method::GET));
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
}
