//! The lifecycle both scheduled jobs (the automation and the monitor) plug into, so that what
//! an operator sees of a run is the same whichever job it is:
//!
//! 1. **Deadline** ([`invocation_deadline`]): the run's deadline is Lambda's less the job's
//!    margin, and one DevLake request (retries included) must fit the function's timeout with
//!    that margin, or the invocation ends as `InvalidConfiguration` before any call.
//! 2. **Payload** ([`envelope`]): the scheduler's input, an EventBridge rule event, `{}`/`null`
//!    and the job's manual forms are read by one parser with one error type; a refused payload
//!    ends the invocation as `InvalidPayload` before anything is read or written.
//! 3. **Run** (`Lifecycle::run`): the run lease where the job holds one, the DevLake client
//!    bound to the deadline, the job's body, the deadline rule (a DevLake call cut off at a step
//!    every later one needs ends the run as partial, not as an error), the DevLake call count
//!    and duration, the closing log line, the run record (its summary, or the same
//!    [`FailureReport`] for both jobs when the run stopped) and what the job keeps beside it, the
//!    run-level CloudWatch datums and the lease's release.
//! 4. **Answer**: the job's typed summary ([`JobSummary`]), or its error, whose Lambda
//!    `errorType` and retryability come from one table ([`Cause`]).
//!
//! What legitimately differs between the jobs is data: each job's manual [`envelope::Form`]s and
//! time bounds, its deadline margin, whether it holds a run lease, whether it sends `DevLakeUp`,
//! and the fields of its summary.

pub mod envelope;
mod error;
mod lifecycle;
mod summary;

use std::time::{Duration, SystemTime};

use crate::config::{check_devlake_fits_timeout, ConfigError};
use crate::deadline::Deadline;
use crate::devlake::ClientConfig;

pub use envelope::{PayloadError, Source};
pub(crate) use error::job_error;
pub use error::{Cause, Stop};
pub(crate) use lifecycle::{Invocation, JobSpec, LeaseRefused, Lifecycle, Ran, ScheduledJob};
pub use summary::{FailureReport, JobSummary, RunStatus};

/// How much of Lambda's time a run keeps back for its closing writes (the run record, the
/// metrics, the lease's release).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Margin {
    /// Always this much (the automation's `DEADLINE_MARGIN_MS`).
    Fixed(Duration),
    /// This much, but never more than a quarter of the invocation's time (the monitor: its
    /// closing writes are few, and a short timeout must keep most of its budget).
    AtMostAQuarter(Duration),
}

/// The run's deadline from the Lambda context's (epoch milliseconds; see
/// [`Deadline::from_lambda`]) less the margin. The time left as the invocation starts is the
/// function's timeout (Lambda exposes it no other way): one DevLake request, retries included,
/// must fit in it with the margin, or the invocation is refused naming `margin_name`.
pub fn invocation_deadline(
    lambda_deadline_ms: u64,
    wall: SystemTime,
    margin: Margin,
    margin_name: &str,
    devlake: &ClientConfig,
) -> Result<Deadline, ConfigError> {
    let left = Deadline::from_lambda(lambda_deadline_ms, wall, Duration::ZERO).left();
    let margin = match margin {
        Margin::Fixed(m) => m,
        Margin::AtMostAQuarter(m) => left.map_or(m, |l| m.min(l / 4)),
    };
    if let Some(timeout) = left {
        check_devlake_fits_timeout(devlake, margin, margin_name, timeout)?;
    }
    let deadline = Deadline::from_lambda(lambda_deadline_ms, wall, margin);
    tracing::info!(
        lambda_deadline_ms,
        budget_ms = deadline.left().map(|d| d.as_millis() as u64),
        deadline_margin_ms = margin.as_millis() as u64,
        "invocation received"
    );
    Ok(deadline)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_margin_is_kept_back_and_a_quarter_caps_the_monitors() {
        let wall = SystemTime::now();
        let epoch_ms = |after: Duration| {
            (wall + after)
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap()
                .as_millis() as u64
        };
        let devlake = ClientConfig {
            request_timeout: Duration::from_secs(1),
            max_retries: 0,
            ..ClientConfig::default()
        };
        let left = |margin| {
            invocation_deadline(
                epoch_ms(Duration::from_secs(120)),
                wall,
                margin,
                "the margin",
                &devlake,
            )
            .unwrap()
            .left()
            .unwrap()
        };
        let ten = Duration::from_secs(10);
        let fixed = left(Margin::Fixed(ten));
        assert!(fixed <= Duration::from_secs(110) && fixed > Duration::from_secs(105));
        let quarter = invocation_deadline(
            epoch_ms(Duration::from_secs(20)),
            wall,
            Margin::AtMostAQuarter(ten),
            "the margin",
            &devlake,
        )
        .unwrap()
        .left()
        .unwrap();
        assert!(quarter <= Duration::from_secs(15) && quarter > Duration::from_secs(13));
        // No deadline (a local run): none.
        let none =
            invocation_deadline(0, wall, Margin::Fixed(ten), "the margin", &devlake).unwrap();
        assert_eq!(none.left(), None);
        // A DevLake request that cannot fit the timeout with the margin: refused by name.
        let slow = ClientConfig {
            request_timeout: Duration::from_secs(60),
            max_retries: 3,
            ..ClientConfig::default()
        };
        let err = invocation_deadline(
            epoch_ms(Duration::from_secs(120)),
            wall,
            Margin::Fixed(ten),
            "DEADLINE_MARGIN_MS",
            &slow,
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("DEADLINE_MARGIN_MS (10.0 s)"),
            "{err}"
        );
    }
}
