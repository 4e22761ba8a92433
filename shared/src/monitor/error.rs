//! Why a monitor run could not proceed. Each ends the invocation as a function error whose
//! message says why; nothing is lost (the cursor only moves after what it covers is stored).

use thiserror::Error;

use crate::config::ConfigError;
use crate::devlake::DevLakeError;
use crate::function_error::{self, ErrorType};
use crate::store::StoreError;

use super::payload::PayloadError;

#[derive(Debug, Error)]
pub enum MonitorError {
    /// Refused before any work: nothing read, nothing written.
    #[error("invalid payload: {0}")]
    Payload(#[from] PayloadError),
    /// Settings that cannot work together, found once an invocation tells the function its
    /// timeout. Nothing read, nothing written.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// DevLake unreachable, failing, refusing the key, or waiting for a migration (428).
    #[error("monitor run stopped: {0}")]
    DevLake(#[from] DevLakeError),
    /// The table could not be read or written; the cursor was not advanced.
    #[error("monitor run stopped: {0}")]
    Store(#[from] StoreError),
}

impl MonitorError {
    /// Whether the next scheduled run can be expected to succeed without anyone acting.
    pub fn is_retryable(&self) -> bool {
        match self {
            MonitorError::Payload(_) | MonitorError::Config(_) => false,
            MonitorError::DevLake(e) => e.is_retryable(),
            MonitorError::Store(e) => e.is_retryable(),
        }
    }

    /// The Lambda `errorType` (the scheme of [`crate::function_error`], shared with the
    /// automation).
    pub fn kind(&self) -> ErrorType {
        match self {
            MonitorError::Payload(_) => ErrorType::InvalidPayload,
            MonitorError::Config(_) => ErrorType::InvalidConfiguration,
            MonitorError::DevLake(e) => ErrorType::of_devlake(e),
            MonitorError::Store(e) => ErrorType::of_store(e),
        }
    }

    /// [`kind`](Self::kind) as Lambda reports it.
    pub fn error_type(&self) -> &'static str {
        self.kind().as_str()
    }
}

impl From<MonitorError> for lambda_runtime::Diagnostic {
    fn from(e: MonitorError) -> Self {
        function_error::diagnostic(e.kind(), &e)
    }
}
