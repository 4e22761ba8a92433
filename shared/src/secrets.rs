//! Secrets (the DevLake API key, the metrics token) given either as a plain value — for local
//! use — or as an AWS Secrets Manager ARN read once at start-up. The value is never logged and
//! never part of an error.

use aws_sdk_secretsmanager::error::{DisplayErrorContext, SdkError};
use aws_sdk_secretsmanager::operation::get_secret_value::GetSecretValueError;
use thiserror::Error;

/// Why a secret could not be resolved. Messages name variables and ARNs, never values.
#[derive(Debug, Error)]
pub enum SecretError {
    /// Both sources are configured; the operator must pick one.
    #[error("both {plain_var} and {arn_var} are set; set only one of them")]
    BothSet { plain_var: String, arn_var: String },
    /// Secrets Manager refused or could not be reached.
    #[error("could not read secret {arn} from Secrets Manager: {message}")]
    Fetch {
        arn: String,
        message: String,
        retryable: bool,
        #[source]
        source: Box<aws_sdk_secretsmanager::Error>,
    },
    /// The secret holds binary data only, or an empty string.
    #[error("secret {arn} has no usable SecretString (binary or empty secrets are not supported)")]
    NoString { arn: String },
}

impl SecretError {
    /// Whether trying again later can help (network trouble, throttling, a Secrets Manager
    /// server error); a wrong ARN or missing permission cannot.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            SecretError::Fetch {
                retryable: true,
                ..
            }
        )
    }
}

/// `plain` if set, else the `SecretString` of the secret `arn`, else `None`. Both set is an error.
pub async fn resolve_secret(
    plain: Option<String>,
    arn: Option<String>,
    sdk: &aws_config::SdkConfig,
) -> Result<Option<String>, SecretError> {
    resolve_named_secret("the plain secret value", "the secret ARN", plain, arn, sdk).await
}

/// Like [`resolve_secret`], with the variable names used in the "both set" error
/// (e.g. `DEVLAKE_API_KEY` and `DEVLAKE_API_KEY_SECRET_ARN`).
pub async fn resolve_named_secret(
    plain_var: &str,
    arn_var: &str,
    plain: Option<String>,
    arn: Option<String>,
    sdk: &aws_config::SdkConfig,
) -> Result<Option<String>, SecretError> {
    let plain = plain.filter(|v| !v.is_empty());
    let arn = arn.map(|a| a.trim().to_string()).filter(|a| !a.is_empty());
    match (plain, arn) {
        (Some(_), Some(_)) => Err(SecretError::BothSet {
            plain_var: plain_var.to_string(),
            arn_var: arn_var.to_string(),
        }),
        (Some(value), None) => Ok(Some(value)),
        (None, None) => Ok(None),
        (None, Some(arn)) => fetch(&arn, sdk).await.map(Some),
    }
}

async fn fetch(arn: &str, sdk: &aws_config::SdkConfig) -> Result<String, SecretError> {
    let client = aws_sdk_secretsmanager::Client::new(sdk);
    let output = client
        .get_secret_value()
        .secret_id(arn)
        .send()
        .await
        .map_err(|e| fetch_error(arn, e))?;
    match output.secret_string() {
        Some(value) if !value.is_empty() => {
            tracing::debug!(arn, "secret read from Secrets Manager");
            Ok(value.to_string())
        }
        _ => Err(SecretError::NoString {
            arn: arn.to_string(),
        }),
    }
}

fn fetch_error<R>(arn: &str, error: SdkError<GetSecretValueError, R>) -> SecretError
where
    R: std::fmt::Debug + Send + Sync + 'static,
{
    let retryable = match &error {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            true
        }
        SdkError::ServiceError(service) => {
            matches!(service.err(), GetSecretValueError::InternalServiceError(_))
                || service
                    .err()
                    .meta()
                    .code()
                    .is_some_and(|c| c.contains("Throttl"))
        }
        _ => false,
    };
    let source: aws_sdk_secretsmanager::Error = error.into();
    SecretError::Fetch {
        arn: arn.to_string(),
        message: DisplayErrorContext(&source).to_string(),
        retryable,
        source: Box::new(source),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offline_sdk() -> aws_config::SdkConfig {
        aws_config::SdkConfig::builder()
            .behavior_version(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new("us-east-1"))
            .build()
    }

    #[tokio::test]
    async fn plain_value_and_unset_need_no_aws() {
        let sdk = offline_sdk();
        assert_eq!(
            resolve_secret(Some("k".into()), None, &sdk).await.unwrap(),
            Some("k".to_string())
        );
        assert_eq!(resolve_secret(None, None, &sdk).await.unwrap(), None);
        assert_eq!(
            resolve_secret(None, Some("  ".into()), &sdk).await.unwrap(),
            None
        );
    }

    #[tokio::test]
    async fn both_set_names_the_variables_not_the_value() {
        let sdk = offline_sdk();
        let err = resolve_named_secret(
            "DEVLAKE_API_KEY",
            "DEVLAKE_API_KEY_SECRET_ARN",
            Some("topsecret-value".into()),
            Some("arn:aws:secretsmanager:us-east-1:1:secret:k".into()),
            &sdk,
        )
        .await
        .unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("DEVLAKE_API_KEY and DEVLAKE_API_KEY_SECRET_ARN"),
            "{text}"
        );
        assert!(!text.contains("topsecret-value"));
        assert!(!format!("{err:?}").contains("topsecret-value"));
        assert!(!err.is_retryable());
    }
}
