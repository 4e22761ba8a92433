//! How a store operation fails, and whether trying again can help.

use aws_sdk_dynamodb::config::http::HttpResponse;
use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
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

    /// A failed DynamoDB call of `operation`. Whether it may succeed later (network trouble,
    /// timeouts, throttling, 5xx) picks `Unavailable` over `Failed`. The message is one line: the
    /// service's error code and message when DynamoDB answered, else the SDK's account of what
    /// went wrong (the request never got an answer); the SDK error stays the source.
    pub(crate) fn from_sdk<E>(operation: &str, error: SdkError<E, HttpResponse>) -> StoreError
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let retryable = crate::aws_error::is_retryable(&error);
        let message = match error.as_service_error() {
            Some(e) => format!(
                "{}: {}",
                e.code().unwrap_or("unknown error"),
                e.message().unwrap_or("no message")
            ),
            None => DisplayErrorContext(&error).to_string(),
        };
        let (operation, source) = (operation.to_string(), Some(Box::new(error) as BoxError));
        if retryable {
            StoreError::Unavailable {
                operation,
                message,
                source,
            }
        } else {
            StoreError::Failed {
                operation,
                message,
                source,
            }
        }
    }
}
