//! How a store operation fails, and whether trying again can help.

use thiserror::Error;

/// A store operation failed.
#[derive(Debug, Error)]
pub enum StoreError {
    /// DynamoDB throttled, timed out or was unreachable: trying again later can help.
    #[error("DynamoDB unavailable during {operation}: {message}")]
    Unavailable {
        operation: String,
        message: String,
        /// The SDK error, when the failure came from a DynamoDB call.
        #[source]
        source: Option<BoxError>,
    },
    /// Anything else (bad table name, permissions, malformed item).
    #[error("DynamoDB {operation} failed: {message}")]
    Failed {
        operation: String,
        message: String,
        #[source]
        source: Option<BoxError>,
    },
}

/// The cause kept inside a [`StoreError`].
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl StoreError {
    pub fn is_retryable(&self) -> bool {
        matches!(self, StoreError::Unavailable { .. })
    }
}
