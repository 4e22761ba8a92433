//! When a run must stop starting new work (the Lambda deadline minus a margin).

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
    /// A missing deadline (0: no runtime set one) means none.
    pub fn from_lambda(deadline_epoch_ms: u64, now: SystemTime, margin: Duration) -> Self {
        if deadline_epoch_ms == 0 {
            return Deadline::none();
        }
        let deadline = SystemTime::UNIX_EPOCH + Duration::from_millis(deadline_epoch_ms);
        let left = deadline.duration_since(now).unwrap_or_default();
        Deadline::after(left.saturating_sub(margin))
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
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
        let d = Deadline::from_lambda(1_000_000 + 60_000, now, Duration::from_secs(20));
        assert!(!d.passed());
        assert!(d.allows(Duration::from_secs(30)));
        assert!(!d.allows(Duration::from_secs(45)));
        let late = Deadline::from_lambda(1_000_000 + 5_000, now, Duration::from_secs(20));
        assert!(late.passed());
        assert_eq!(Deadline::from_lambda(0, now, Duration::from_secs(20)), Deadline::none());
        assert!(Deadline::none().allows(Duration::from_secs(1_000_000)));
        assert!(!Deadline::none().passed());
    }
}
