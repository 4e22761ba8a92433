//! Fault injection and the request log.

use std::collections::VecDeque;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Faults applied to DevLake routes (never to `/_sim/*`). Settable with
/// [`SimHandle::set_faults`](super::SimHandle::set_faults) or `POST /_sim/faults` (same JSON).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct Faults {
    /// Added to every request before it is handled.
    pub latency_ms: u64,
    /// Extra latency on list endpoints ("slow pages"): GET `/pipelines`, `/blueprints`,
    /// `/projects`, `/blueprints/{id}/pipelines`, `.../scopes`, `.../remote-scopes`,
    /// `.../scope-configs`, `.../connections`.
    pub list_latency_ms: u64,
    /// Probability (0.0–1.0) that a request is answered with `error_status` instead of being
    /// handled. Deterministic for a given [`SimOptions::seed`](super::SimOptions::seed).
    pub error_rate: f64,
    /// Status used for `error_rate` failures (default 500).
    pub error_status: Option<u16>,
    /// The 428 migration gate (docs/devlake-api.md).
    pub migration: MigrationMode,
    /// Deterministic faults, checked in order; the first matching rule with uses left fires.
    pub rules: Vec<FaultRule>,
}

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum MigrationMode {
    #[default]
    None,
    /// "New migration scripts detected" — cleared by `GET /proceed-db-migration`.
    Pending,
    /// "Database migration is in progress" — cleared only via the control API.
    Running,
}

/// Fail requests matching `method` (any if None) and a path prefix. The prefix is matched
/// against the path without the `/rest` prefix and without the query string.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct FaultRule {
    #[serde(default)]
    pub method: Option<String>,
    pub path_prefix: String,
    /// How many matching requests this rule affects; None = all of them.
    #[serde(default)]
    pub times: Option<u32>,
    pub action: FaultAction,
}

impl FaultRule {
    /// Fail the next `times` requests matching METHOD + path prefix with `status`.
    pub fn status(method: &str, path_prefix: &str, times: u32, status: u16) -> Self {
        Self::new(method, path_prefix, times, FaultAction::Status(status))
    }
    /// Close the connection without answering, for the next `times` matching requests.
    pub fn reset(method: &str, path_prefix: &str, times: u32) -> Self {
        Self::new(method, path_prefix, times, FaultAction::Reset)
    }
    /// Handle (commit) the request, then hold the response for `ms` milliseconds so the
    /// client times out although the change was applied.
    pub fn commit_then_delay(method: &str, path_prefix: &str, times: u32, ms: u64) -> Self {
        Self::new(method, path_prefix, times, FaultAction::DelayResponseMs(ms))
    }
    pub fn new(method: &str, path_prefix: &str, times: u32, action: FaultAction) -> Self {
        FaultRule {
            method: (!method.is_empty() && method != "*").then(|| method.to_uppercase()),
            path_prefix: path_prefix.to_string(),
            times: Some(times),
            action,
        }
    }
    fn matches(&self, method: &str, path: &str) -> bool {
        self.method
            .as_deref()
            .is_none_or(|m| m.eq_ignore_ascii_case(method))
            && path.starts_with(&self.path_prefix)
            && self.times != Some(0)
    }
}

/// JSON: `{"status":503}`, `"reset"`, `{"delayResponseMs":3000}`, `{"delayRequestMs":500}`,
/// `{"redirect":{"status":301,"location":"https://…"}}`,
/// `{"statusRetryAfter":{"status":503,"retryAfter":"2"}}`, `{"largeBody":70000000}`.
///
/// DevLake itself never redirects, sends `Retry-After` or pads an answer; the last three stand for
/// what sits in front of it (a reverse proxy moving http to https or to a new path, a load
/// balancer or maintenance page throttling, a misrouted endpoint answering something huge).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub enum FaultAction {
    /// Answer with this status and a DevLake error envelope, without handling the request.
    Status(u16),
    /// Close the socket without answering (the client sees a transport error).
    Reset,
    /// Handle the request (so it commits), then delay the response.
    DelayResponseMs(u64),
    /// Delay before handling.
    DelayRequestMs(u64),
    /// Answer a redirect to `location` without handling the request.
    Redirect { status: u16, location: String },
    /// Answer `status` with this `Retry-After` header, without handling the request.
    StatusRetryAfter {
        status: u16,
        #[serde(rename = "retryAfter")]
        retry_after: String,
    },
    /// Answer 200 with a JSON body of this many bytes, without handling the request.
    LargeBody(u64),
}

/// What the front layer should do with one request.
#[derive(Debug, Default)]
pub(crate) struct Decision {
    pub delay_before: Duration,
    pub delay_after: Duration,
    pub status: Option<u16>,
    pub reset: bool,
    /// Status and `Location` of a redirect answer.
    pub redirect: Option<(u16, String)>,
    /// `Retry-After` sent with `status`.
    pub retry_after: Option<String>,
    /// Size of a 200 answer sent instead of handling the request.
    pub large_body: Option<u64>,
}

pub(crate) struct FaultState {
    pub faults: Faults,
    rng: u64,
}

impl FaultState {
    pub(crate) fn new(faults: Faults, seed: u64) -> Self {
        FaultState {
            faults,
            rng: seed | 1,
        }
    }

    fn next_f64(&mut self) -> f64 {
        // xorshift64*: deterministic, no extra dependency.
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        (x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
    }

    pub(crate) fn decide(&mut self, method: &str, path: &str) -> Decision {
        let mut d = Decision {
            delay_before: Duration::from_millis(self.faults.latency_ms),
            ..Decision::default()
        };
        if method == "GET" && is_list_endpoint(path) {
            d.delay_before += Duration::from_millis(self.faults.list_latency_ms);
        }
        if let Some(rule) = self
            .faults
            .rules
            .iter_mut()
            .find(|r| r.matches(method, path))
        {
            if let Some(t) = rule.times.as_mut() {
                *t -= 1;
            }
            match &rule.action {
                FaultAction::Status(s) => d.status = Some(*s),
                FaultAction::Reset => d.reset = true,
                FaultAction::DelayResponseMs(ms) => d.delay_after += Duration::from_millis(*ms),
                FaultAction::DelayRequestMs(ms) => d.delay_before += Duration::from_millis(*ms),
                FaultAction::Redirect { status, location } => {
                    d.redirect = Some((*status, location.clone()))
                }
                FaultAction::StatusRetryAfter {
                    status,
                    retry_after,
                } => {
                    d.status = Some(*status);
                    d.retry_after = Some(retry_after.clone());
                }
                FaultAction::LargeBody(bytes) => d.large_body = Some(*bytes),
            }
            self.faults.rules.retain(|r| r.times != Some(0));
        }
        if d.status.is_none()
            && d.redirect.is_none()
            && d.large_body.is_none()
            && !d.reset
            && self.faults.error_rate > 0.0
            && self.next_f64() < self.faults.error_rate
        {
            d.status = Some(self.faults.error_status.unwrap_or(500));
        }
        d
    }
}

pub(crate) fn is_list_endpoint(path: &str) -> bool {
    let p = path.trim_end_matches('/');
    matches!(p, "/pipelines" | "/blueprints" | "/projects")
        || (p.starts_with("/blueprints/") && p.ends_with("/pipelines"))
        || (p.starts_with("/plugins/")
            && (p.ends_with("/scopes")
                || p.ends_with("/remote-scopes")
                || p.ends_with("/search-remote-scopes")
                || p.ends_with("/scope-configs")
                || p.ends_with("/connections")))
}

/// One request as the simulator saw it. `status` 0 means the connection was reset.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct RequestRecord {
    pub method: String,
    /// Path as sent (including any `/rest` prefix) plus `?query` when present.
    pub path: String,
    pub status: u16,
}

/// Totals since the last reset (not bounded by the log capacity).
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct RequestCounts {
    pub total: u64,
    /// GET requests, and connection tests (`POST /plugins/{plugin}/connections/{id}/test`,
    /// which change nothing in DevLake).
    pub reads: u64,
    /// Every other request.
    pub writes: u64,
}

/// `POST /plugins/{plugin}/connections/{id}/test` (with or without `/rest`): DevLake asks the
/// source tool and answers; nothing is saved.
fn is_connection_test(method: &str, path: &str) -> bool {
    let path = path.split('?').next().unwrap_or_default();
    let path = path.strip_prefix("/rest").unwrap_or(path);
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    method == "POST" && matches!(parts.as_slice(), ["plugins", _, "connections", _, "test"])
}

pub(crate) struct RequestLog {
    pub records: VecDeque<RequestRecord>,
    pub capacity: usize,
    pub counts: RequestCounts,
    pub dropped: u64,
}

impl RequestLog {
    pub(crate) fn new(capacity: usize) -> Self {
        RequestLog {
            records: VecDeque::new(),
            capacity: capacity.max(1),
            counts: RequestCounts::default(),
            dropped: 0,
        }
    }
    pub(crate) fn push(&mut self, r: RequestRecord) {
        self.counts.total += 1;
        if r.method == "GET" || is_connection_test(&r.method, &r.path) {
            self.counts.reads += 1;
        } else {
            self.counts.writes += 1;
        }
        if self.records.len() == self.capacity {
            self.records.pop_front();
            self.dropped += 1;
        }
        self.records.push_back(r);
    }
    pub(crate) fn reset(&mut self) {
        self.records.clear();
        self.counts = RequestCounts::default();
        self.dropped = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_fire_the_requested_number_of_times() {
        let mut f = FaultState::new(
            Faults {
                rules: vec![FaultRule::status("GET", "/pipelines", 2, 503)],
                ..Faults::default()
            },
            1,
        );
        assert_eq!(f.decide("POST", "/pipelines").status, None);
        assert_eq!(f.decide("GET", "/pipelines/1").status, Some(503));
        assert_eq!(f.decide("GET", "/pipelines").status, Some(503));
        assert_eq!(f.decide("GET", "/pipelines").status, None);
        assert!(f.faults.rules.is_empty());
    }

    #[test]
    fn error_rate_is_roughly_honoured() {
        let mut f = FaultState::new(
            Faults {
                error_rate: 0.25,
                error_status: Some(502),
                ..Faults::default()
            },
            42,
        );
        let failed = (0..4000)
            .filter(|_| f.decide("GET", "/ping").status == Some(502))
            .count();
        assert!((800..1200).contains(&failed), "{failed}");
    }

    #[test]
    fn fault_json_shapes() {
        let f: Faults = serde_json::from_str(
            r#"{"latencyMs":5,"migration":"pending","rules":[{"method":"POST","pathPrefix":"/projects","times":1,"action":{"delayResponseMs":100}},{"pathPrefix":"/x","action":"reset"}]}"#,
        )
        .unwrap();
        assert_eq!(f.migration, MigrationMode::Pending);
        assert_eq!(f.rules[0].action, FaultAction::DelayResponseMs(100));
        assert_eq!(f.rules[1].action, FaultAction::Reset);
        assert_eq!(f.rules[1].times, None);
        let f: Faults = serde_json::from_str(
            r#"{"rules":[{"pathPrefix":"/a","action":{"redirect":{"status":301,"location":"https://x/"}}},{"pathPrefix":"/b","action":{"statusRetryAfter":{"status":503,"retryAfter":"2"}}},{"pathPrefix":"/c","action":{"largeBody":100}}]}"#,
        )
        .unwrap();
        assert_eq!(
            f.rules[1].action,
            FaultAction::StatusRetryAfter {
                status: 503,
                retry_after: "2".into()
            }
        );
        assert_eq!(f.rules[2].action, FaultAction::LargeBody(100));
    }
}
