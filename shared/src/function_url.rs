//! What the two functions behind a Lambda function URL (the metrics page and DevLake's
//! notifications) share: plain-text answers, and the count of requests refused for want of a
//! credential.
//!
//! Anyone who finds a function URL can send it requests. Each refusal is counted per instance and
//! logged at DEBUG; only the 1st, 2nd, 4th, 8th, … refusal is an INFO line carrying the running
//! count, so a flood of a million requests leaves about twenty INFO lines instead of filling the
//! log group and its bill. The lines never carry anything of the credentials presented.

use std::sync::atomic::{AtomicU64, Ordering};

use lambda_http::http::{header, response::Builder, Response, StatusCode};

/// A plain-text response under construction.
pub(crate) fn plain(status: StatusCode) -> Builder {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
}

/// A plain-text response with `body`.
pub(crate) fn simple(status: StatusCode, body: &str) -> Response<Vec<u8>> {
    plain(status)
        .body(body.as_bytes().to_vec())
        .expect("static response parts are valid")
}

/// Requests an instance refused for want of a valid credential.
#[derive(Debug, Default)]
pub(crate) struct Refusals(AtomicU64);

/// One refusal as counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Refusal {
    /// Refusals of this instance so far, this one included.
    pub count: u64,
    /// Whether this one is logged at INFO (the count is a power of two), else at DEBUG.
    pub loud: bool,
}

impl Refusals {
    /// Counts one refusal.
    pub(crate) fn count(&self) -> Refusal {
        let count = self.0.fetch_add(1, Ordering::Relaxed).saturating_add(1);
        Refusal {
            count,
            loud: count.is_power_of_two(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_are_loud_at_powers_of_two_only() {
        let refusals = Refusals::default();
        let loud: Vec<u64> = (0..1000)
            .map(|_| refusals.count())
            .filter(|r| r.loud)
            .map(|r| r.count)
            .collect();
        assert_eq!(loud, [1, 2, 4, 8, 16, 32, 64, 128, 256, 512]);
    }
}
