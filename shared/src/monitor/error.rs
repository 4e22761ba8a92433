//! Why a monitor run could not proceed. Each ends the invocation as a function error whose
//! message says why; nothing is lost (the cursor only moves after what it covers is stored).

use thiserror::Error;

use crate::devlake::DevLakeError;
use crate::store::StoreError;

use super::payload::PayloadError;

#[derive(Debug, Error)]
pub enum MonitorError {
    /// Refused before any work: nothing read, nothing written.
    #[error("invalid payload: {0}")]
    Payload(#[from] PayloadError),
    /// DevLake unreachable, failing, refusing the key, or waiting for a migration (428).
    #[error(transparent)]
    DevLake(#[from] DevLakeError),
    /// The table could not be read or written; the cursor was not advanced.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl MonitorError {
    /// Whether the next scheduled run can be expected to succeed without anyone acting.
    pub fn is_retryable(&self) -> bool {
        match self {
            MonitorError::Payload(_) => false,
            MonitorError::DevLake(e) => e.is_retryable(),
            MonitorError::Store(e) => e.is_retryable(),
        }
    }

    /// A stable name for the Lambda error type.
    pub fn kind(&self) -> &'static str {
        match self {
            MonitorError::Payload(_) => "InvalidPayload",
            MonitorError::DevLake(DevLakeError::MigrationPending { .. }) => {
                "DevLakeMigrationPending"
            }
            MonitorError::DevLake(DevLakeError::Unauthorized { .. }) => "DevLakeUnauthorized",
            MonitorError::DevLake(_) => "DevLakeUnavailable",
            MonitorError::Store(StoreError::Unavailable { .. }) => "DynamoDbUnavailable",
            MonitorError::Store(_) => "DynamoDbFailed",
        }
    }
}

impl From<MonitorError> for lambda_runtime::Diagnostic {
    fn from(e: MonitorError) -> Self {
        lambda_runtime::Diagnostic {
            error_type: format!("Monitor.{}", e.kind()),
            error_message: e.to_string(),
        }
    }
}
