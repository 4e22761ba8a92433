//! When a run must stop starting new work: the Lambda deadline minus a margin, shared by the
//! automation and the monitor.

use std::time::{Duration, SystemTime};

use tokio::time::Instant;

/// A point after which no new DevLake change is started. `none()` never expires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadline(Option<Instant>);

impl Deadline {
    pub fn none() -> Self {
        Deadline(None)
    }

    pub fn at(instant: Instant) -> Self {
        Deadline(Some(instant))
    }

    /// `budget` from now.
    pub fn after(budget: Duration) -> Self {
        Deadline(Some(Instant::now() + budget))
    }

    /// From the Lambda context's deadline (epoch milliseconds), keeping `margin` for the summary,
    /// the run record and the metrics.
    ///
    /// Local emulators differ from Lambda here: a missing deadline (0) means none, and a value
    /// that cannot be an epoch deadline (before 2001) is read as milliseconds from now —
    /// `cargo lambda watch` 1.9 sends its function timeout (`600000`) in that header.
    pub fn from_lambda(deadline_epoch_ms: u64, now: SystemTime, margin: Duration) -> Self {
        const YEAR_2001_MS: u64 = 978_307_200_000;
        let left = match deadline_epoch_ms {
            0 => return Deadline::none(),
            ms if ms < YEAR_2001_MS => Duration::from_millis(ms),
            ms => (SystemTime::UNIX_EPOCH + Duration::from_millis(ms))
                .duration_since(now)
                .unwrap_or_default(),
        };
        Deadline::after(left.saturating_sub(margin))
    }

    /// Time left, `None` without a deadline.
    pub fn left(&self) -> Option<Duration> {
        self.0.map(|d| d.saturating_duration_since(Instant::now()))
    }

    pub fn passed(&self) -> bool {
        self.0.is_some_and(|d| Instant::now() >= d)
    }

    /// Whether `needed` still fits before the deadline.
    pub fn allows(&self, needed: Duration) -> bool {
        self.0.is_none_or(|d| Instant::now() + needed < d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lambda_deadline_minus_margin() {
        // 2026-11-28T11:00:00Z, as Lambda sends it: epoch milliseconds.
        let epoch_ms: u64 = 1_795_863_600_000;
        let now = SystemTime::UNIX_EPOCH + Duration::from_millis(epoch_ms);
        let d = Deadline::from_lambda(epoch_ms + 60_000, now, Duration::from_secs(20));
        assert!(!d.passed());
        assert!(d.allows(Duration::from_secs(30)));
        assert!(!d.allows(Duration::from_secs(45)));
        let late = Deadline::from_lambda(epoch_ms + 5_000, now, Duration::from_secs(20));
        assert!(late.passed());
        assert_eq!(
            Deadline::from_lambda(0, now, Duration::from_secs(20)),
            Deadline::none()
        );
        let emulator = Deadline::from_lambda(600_000, now, Duration::from_secs(20));
        let left = emulator.left().unwrap();
        assert!(
            left > Duration::from_secs(570) && left <= Duration::from_secs(580),
            "{left:?}"
        );
        assert!(Deadline::none().allows(Duration::from_secs(1_000_000)));
        assert!(!Deadline::none().passed());
    }
}
