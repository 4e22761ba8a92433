//! The Lambda `errorType` of an invocation that could not proceed, one scheme for both jobs: the
//! same condition has the same name in the automation and in the monitor (which function failed
//! is already known from where the error is reported), so alarms, log queries and whoever calls
//! `aws lambda invoke` match one list. The message stays the error's own, on one line; errors in
//! this crate never carry a secret.

use crate::devlake::DevLakeError;
use crate::store::StoreError;

/// Why a run could not proceed, as Lambda reports it (`errorType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorType {
    /// The payload was refused before any call (unknown field, wrong type, bad time).
    InvalidPayload,
    /// A setting proved unusable only once used (the DevLake client's endpoint or key header).
    /// Settings that can be checked without calling anything stop the function at start-up.
    InvalidConfiguration,
    /// DevLake answered 428: a database migration is pending.
    DevLakeMigrationPending,
    /// DevLake answered 401 or 403: the API key is missing, wrong or not allowed.
    DevLakeUnauthorized,
    /// DevLake could not be reached: connection refused, reset, or timed out.
    DevLakeUnreachable,
    /// DevLake answered 5xx or 429 even after the client's retries.
    DevLakeUnavailable,
    /// DevLake answered another error status, or a body that is not what its API documents.
    DevLakeUnexpectedResponse,
    /// DynamoDB throttled, timed out or was unreachable (trying again later can help).
    DynamoDbUnavailable,
    /// Any other DynamoDB failure: table missing, permissions, malformed item.
    DynamoDbFailed,
    /// Another run of the same job holds the run lease (an overlapping manual run, or a
    /// duplicate scheduler delivery): this one did nothing.
    RunInProgress,
}

impl ErrorType {
    pub const ALL: [ErrorType; 10] = [
        ErrorType::InvalidPayload,
        ErrorType::InvalidConfiguration,
        ErrorType::DevLakeMigrationPending,
        ErrorType::DevLakeUnauthorized,
        ErrorType::DevLakeUnreachable,
        ErrorType::DevLakeUnavailable,
        ErrorType::DevLakeUnexpectedResponse,
        ErrorType::DynamoDbUnavailable,
        ErrorType::DynamoDbFailed,
        ErrorType::RunInProgress,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorType::InvalidPayload => "InvalidPayload",
            ErrorType::InvalidConfiguration => "InvalidConfiguration",
            ErrorType::DevLakeMigrationPending => "DevLakeMigrationPending",
            ErrorType::DevLakeUnauthorized => "DevLakeUnauthorized",
            ErrorType::DevLakeUnreachable => "DevLakeUnreachable",
            ErrorType::DevLakeUnavailable => "DevLakeUnavailable",
            ErrorType::DevLakeUnexpectedResponse => "DevLakeUnexpectedResponse",
            ErrorType::DynamoDbUnavailable => "DynamoDbUnavailable",
            ErrorType::DynamoDbFailed => "DynamoDbFailed",
            ErrorType::RunInProgress => "RunInProgress",
        }
    }

    pub fn of_devlake(e: &DevLakeError) -> Self {
        match e {
            DevLakeError::MigrationPending { .. } => ErrorType::DevLakeMigrationPending,
            DevLakeError::Unauthorized { .. } => ErrorType::DevLakeUnauthorized,
            DevLakeError::Transport { .. } | DevLakeError::Deadline { .. } => {
                ErrorType::DevLakeUnreachable
            }
            DevLakeError::Status { .. } if e.is_retryable() => ErrorType::DevLakeUnavailable,
            DevLakeError::Status { .. } | DevLakeError::Decode { .. } => {
                ErrorType::DevLakeUnexpectedResponse
            }
            DevLakeError::Config(_)
            | DevLakeError::UntrustedCertificate { .. }
            | DevLakeError::Redirect { .. } => ErrorType::InvalidConfiguration,
            DevLakeError::BodyTooLarge { .. } => ErrorType::DevLakeUnexpectedResponse,
        }
    }

    pub fn of_store(e: &StoreError) -> Self {
        match e {
            StoreError::Unavailable { .. } => ErrorType::DynamoDbUnavailable,
            StoreError::Failed { .. } => ErrorType::DynamoDbFailed,
        }
    }
}

impl std::fmt::Display for ErrorType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What Lambda reports for a failed invocation: the type, and the error's message as one line
/// (a DevLake body excerpt or an SDK message can hold line breaks; the Lambda console, the
/// invoke response and alarms' notifications show one line best).
pub fn diagnostic(
    error_type: ErrorType,
    error: &(dyn std::error::Error + 'static),
) -> lambda_runtime::Diagnostic {
    lambda_runtime::Diagnostic {
        error_type: error_type.as_str().to_string(),
        error_message: one_line(&error.to_string()),
    }
}

fn one_line(text: &str) -> String {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(status: u16) -> DevLakeError {
        DevLakeError::Status {
            status,
            method: "GET".into(),
            path: "/pipelines".into(),
            message: "x".into(),
        }
    }

    #[test]
    fn devlake_and_store_errors_map_to_one_name_each() {
        let cases = [
            (
                DevLakeError::MigrationPending {
                    method: "GET".into(),
                    path: "/plugins".into(),
                },
                "DevLakeMigrationPending",
            ),
            (
                DevLakeError::Unauthorized {
                    status: 403,
                    method: "GET".into(),
                    path: "/plugins".into(),
                    message: "forbidden".into(),
                },
                "DevLakeUnauthorized",
            ),
            (status(503), "DevLakeUnavailable"),
            (status(429), "DevLakeUnavailable"),
            (status(404), "DevLakeUnexpectedResponse"),
            (
                DevLakeError::Decode {
                    method: "GET".into(),
                    path: "/plugins".into(),
                    excerpt: "<html>".into(),
                    source: serde_json::from_str::<u8>("x").unwrap_err(),
                },
                "DevLakeUnexpectedResponse",
            ),
            (
                DevLakeError::Config("bad endpoint".into()),
                "InvalidConfiguration",
            ),
        ];
        for (e, name) in cases {
            assert_eq!(ErrorType::of_devlake(&e).as_str(), name, "{e}");
        }
        let unavailable = StoreError::Unavailable {
            source: None,
            operation: "GetItem".into(),
            message: "throttled".into(),
        };
        let failed = StoreError::Failed {
            source: None,
            operation: "GetItem".into(),
            message: "no table".into(),
        };
        assert_eq!(
            ErrorType::of_store(&unavailable).as_str(),
            "DynamoDbUnavailable"
        );
        assert_eq!(ErrorType::of_store(&failed).as_str(), "DynamoDbFailed");
    }

    #[test]
    fn names_are_distinct_and_unprefixed() {
        let names: std::collections::BTreeSet<&str> =
            ErrorType::ALL.iter().map(|t| t.as_str()).collect();
        assert_eq!(names.len(), ErrorType::ALL.len());
        for n in names {
            assert!(n.chars().all(|c| c.is_ascii_alphanumeric()), "{n}");
            assert_eq!(
                format!(
                    "{:?}",
                    ErrorType::ALL.iter().find(|t| t.as_str() == n).unwrap()
                ),
                n
            );
        }
    }

    #[test]
    fn diagnostic_message_is_one_line() {
        let e = DevLakeError::Status {
            status: 500,
            method: "GET".into(),
            path: "/pipelines".into(),
            message: "first line\r\n  second line\n".into(),
        };
        let d = diagnostic(ErrorType::of_devlake(&e), &e);
        assert_eq!(d.error_type, "DevLakeUnavailable");
        assert_eq!(
            d.error_message,
            "DevLake answered 500 on GET /pipelines: first line second line"
        );
    }
}
