//! How a run stops, and how both jobs' errors map to what Lambda reports.

use thiserror::Error;

use crate::devlake::DevLakeError;
use crate::function_error::ErrorType;
use crate::store::StoreError;

/// An error after which no later call of the run can succeed: DevLake unreachable, refusing the
/// key or waiting for a migration, or (monitor) the table failing. It unwinds the run's steps;
/// what the run had done stays done (every write is idempotent), and the lifecycle reports it.
#[derive(Debug, Error)]
pub enum Stop {
    #[error(transparent)]
    DevLake(#[from] DevLakeError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Stop {
    /// Hands back a DevLake error that only fails its item; stops the run on one that ends it
    /// (428, 401/403: see [`DevLakeError::is_fatal`]).
    pub fn pass(e: DevLakeError) -> Result<DevLakeError, Stop> {
        if e.is_fatal() {
            Err(Stop::DevLake(e))
        } else {
            Ok(e)
        }
    }

    /// A DevLake call the run's deadline cut off: the run ends as partial, not as an error.
    pub fn is_deadline(&self) -> bool {
        matches!(self, Stop::DevLake(e) if e.is_deadline())
    }

    /// Whether DevLake could be used before the run stopped, given how many calls it sent:
    /// `false` when DevLake stopped it, `None` when it stopped before asking DevLake anything
    /// (the table failed first).
    pub fn devlake_up(&self, devlake_calls: u64) -> Option<bool> {
        match self {
            Stop::DevLake(_) => Some(false),
            Stop::Store(_) => (devlake_calls > 0).then_some(true),
        }
    }
}

/// What ended an invocation, as each job's error reduces to it: the one table of Lambda
/// `errorType`s and retryability both jobs follow.
#[derive(Debug, Clone, Copy)]
pub enum Cause<'a> {
    Payload,
    Config,
    DevLake(&'a DevLakeError),
    Store(&'a StoreError),
    /// Another run of the job holds its run lease.
    RunInProgress,
}

impl Cause<'_> {
    pub fn error_type(self) -> ErrorType {
        match self {
            Cause::Payload => ErrorType::InvalidPayload,
            Cause::Config => ErrorType::InvalidConfiguration,
            Cause::DevLake(e) => ErrorType::of_devlake(e),
            Cause::Store(e) => ErrorType::of_store(e),
            Cause::RunInProgress => ErrorType::RunInProgress,
        }
    }

    /// Whether invoking again later can help without anyone acting: DevLake or DynamoDB
    /// unavailable, or another run that will end; never a bad payload or setting, a refused key
    /// or a pending migration.
    pub fn is_retryable(self) -> bool {
        match self {
            Cause::Payload | Cause::Config => false,
            Cause::DevLake(e) => e.is_retryable(),
            Cause::Store(e) => e.is_retryable(),
            Cause::RunInProgress => true,
        }
    }
}

impl<'a> From<&'a Stop> for Cause<'a> {
    fn from(stop: &'a Stop) -> Self {
        match stop {
            Stop::DevLake(e) => Cause::DevLake(e),
            Stop::Store(e) => Cause::Store(e),
        }
    }
}

/// Gives a job's error type (which has `fn cause(&self) -> Cause<'_>`) the Lambda error scheme
/// both jobs share: `kind`, `error_type`, `is_retryable`, and the `Diagnostic` Lambda reports.
macro_rules! job_error {
    ($error:ty) => {
        impl $error {
            /// The Lambda `errorType` (the scheme of [`crate::function_error`], one for both
            /// jobs).
            pub fn kind(&self) -> $crate::function_error::ErrorType {
                self.cause().error_type()
            }

            /// [`kind`](Self::kind) as Lambda reports it.
            pub fn error_type(&self) -> &'static str {
                self.kind().as_str()
            }

            /// Whether the next invocation can be expected to succeed without anyone acting.
            pub fn is_retryable(&self) -> bool {
                self.cause().is_retryable()
            }
        }

        impl From<$error> for lambda_runtime::Diagnostic {
            fn from(e: $error) -> Self {
                $crate::function_error::diagnostic(e.kind(), &e)
            }
        }
    };
}

pub(crate) use job_error;

#[cfg(test)]
mod tests {
    use super::*;

    fn unavailable() -> DevLakeError {
        DevLakeError::Status {
            status: 503,
            method: "GET".into(),
            path: "/plugins".into(),
            message: "overloaded".into(),
        }
    }

    #[test]
    fn devlake_counts_as_up_unless_it_stopped_the_run() {
        let store = Stop::Store(StoreError::Unavailable {
            operation: "GetItem".into(),
            message: "throttled".into(),
            source: None,
        });
        assert_eq!(store.devlake_up(0), None, "stopped before asking DevLake");
        assert_eq!(store.devlake_up(3), Some(true));
        assert_eq!(Stop::DevLake(unavailable()).devlake_up(3), Some(false));
        let refused = Stop::DevLake(DevLakeError::Unauthorized {
            status: 401,
            method: "GET".into(),
            path: "/plugins".into(),
            message: "no".into(),
        });
        assert_eq!(refused.devlake_up(1), Some(false));
        assert_eq!(
            Cause::from(&refused).error_type().as_str(),
            "DevLakeUnauthorized"
        );
        assert!(!Cause::from(&refused).is_retryable());
        assert!(Cause::from(&Stop::DevLake(unavailable())).is_retryable());
        assert!(Cause::RunInProgress.is_retryable());
        assert!(!Cause::Payload.is_retryable() && !Cause::Config.is_retryable());
    }
}
