//! One answer, for every AWS service the functions call (DynamoDB, CloudWatch, Secrets Manager),
//! to "may this failed call succeed if it is made again later?". The answer picks between an
//! error that clears by itself (the run is `partial`, the next run gets past it) and one that
//! needs an operator, so two services must not disagree on the same kind of failure.
//!
//! Retryable: no answer at all (timeouts, connection failures, unreadable responses), any 5xx or
//! 429, and the error codes AWS services use for throttling and transient trouble. Not
//! retryable: everything else, notably validation errors, access denied, missing resources and a
//! request the SDK could not even build.

use aws_sdk_dynamodb::config::http::HttpResponse;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};

/// Error codes of throttling: the caller went over a rate or concurrency limit that frees up.
/// The list the AWS SDKs' standard retry strategy treats as throttling.
const THROTTLING_CODES: &[&str] = &[
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestThrottledException",
    "TooManyRequestsException",
    "ProvisionedThroughputExceededException",
    "TransactionInProgressException",
    "RequestLimitExceeded",
    "BandwidthLimitExceeded",
    "LimitExceededException",
    "RequestThrottled",
    "SlowDown",
    "PriorRequestNotComplete",
];

/// Error codes of transient server-side trouble, sometimes sent without a 5xx status.
const TRANSIENT_CODES: &[&str] = &[
    "RequestTimeout",
    "RequestTimeoutException",
    "InternalServerError",
    "InternalServiceError",
    "InternalFailure",
    "ServiceUnavailable",
    "ServiceUnavailableException",
];

/// Whether an AWS error code names throttling or transient trouble.
pub fn is_retryable_code(code: &str) -> bool {
    THROTTLING_CODES.contains(&code) || TRANSIENT_CODES.contains(&code)
}

/// Whether a service's answer (HTTP status and error code, when it sent one) may change later.
pub fn is_retryable_answer(status: u16, code: Option<&str>) -> bool {
    status >= 500 || status == 429 || code.is_some_and(is_retryable_code)
}

/// Whether the failed call may succeed if made again later.
pub fn is_retryable<E: ProvideErrorMetadata>(error: &SdkError<E, HttpResponse>) -> bool {
    match error {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            true
        }
        SdkError::ServiceError(service) => {
            is_retryable_answer(service.raw().status().as_u16(), service.err().code())
        }
        // ConstructionFailure: the request could not be built, which no retry changes.
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_dynamodb::error::ErrorMetadata;

    fn answer(status: u16, code: &str) -> SdkError<ErrorMetadata, HttpResponse> {
        let raw = HttpResponse::new(status.try_into().unwrap(), "".into());
        SdkError::service_error(ErrorMetadata::builder().code(code).build(), raw)
    }

    #[test]
    fn throttling_and_server_trouble_are_retryable_on_every_service() {
        for (status, code) in [
            (400, "ThrottlingException"), // DynamoDB, Secrets Manager
            (400, "Throttling"),          // CloudWatch
            (400, "ProvisionedThroughputExceededException"),
            (400, "RequestLimitExceeded"),
            (400, "LimitExceededException"),
            (400, "TransactionInProgressException"),
            (500, "InternalServerError"),
            (500, "InternalServiceError"), // Secrets Manager
            (500, "InternalFailure"),      // CloudWatch
            (503, "ServiceUnavailable"),
            (503, "AnythingElse"),
            (429, "TooManyRequestsException"),
        ] {
            assert!(is_retryable(&answer(status, code)), "{status} {code}");
        }
    }

    #[test]
    fn caller_mistakes_are_not_retryable() {
        for (status, code) in [
            (400, "ValidationException"),
            (400, "InvalidParameterValue"),
            (400, "AccessDeniedException"),
            (403, "AccessDenied"),
            (400, "ResourceNotFoundException"),
            (400, "ConditionalCheckFailedException"),
            (400, "UnrecognizedClientException"),
            (404, ""),
        ] {
            assert!(!is_retryable(&answer(status, code)), "{status} {code}");
        }
    }

    #[test]
    fn no_answer_is_retryable_and_an_unbuildable_request_is_not() {
        let timeout: SdkError<ErrorMetadata, HttpResponse> =
            SdkError::timeout_error("attempt timed out");
        assert!(is_retryable(&timeout));
        let unbuildable: SdkError<ErrorMetadata, HttpResponse> =
            SdkError::construction_failure("missing required field");
        assert!(!is_retryable(&unbuildable));
    }

    #[test]
    fn codes_alone() {
        assert!(is_retryable_code("SlowDown"));
        assert!(!is_retryable_code("throttling"), "codes are case-sensitive");
        assert!(is_retryable_answer(502, None));
        assert!(!is_retryable_answer(400, None));
    }
}
