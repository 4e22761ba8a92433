//! Secrets (the DevLake API key, the metrics token, the notification secret) given either as a
//! plain value — for local use — or as an AWS Secrets Manager ARN, read at start-up and again
//! after [`SECRET_TTL`] (see [`RotatingSecret`]) so a rotated secret is picked up without a
//! redeploy. The value is never logged and never part of an error.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Mutex;
use tokio::time::Instant;

use aws_sdk_secretsmanager::config::http::HttpResponse;
use aws_sdk_secretsmanager::error::{DisplayErrorContext, SdkError};
use aws_sdk_secretsmanager::operation::get_secret_value::GetSecretValueError;
use thiserror::Error;

use crate::config::{ConfigError, SecretSource};
use crate::startup::StartupError;

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

/// How long a secret read from Secrets Manager is used before it is read again. A warm Lambda
/// instance lives for hours; with this TTL a rotated API key or metrics token is in use within
/// five minutes at the cost of one `GetSecretValue` per instance every five minutes.
pub const SECRET_TTL: Duration = Duration::from_secs(300);

/// After a failed re-read the old value stays in use, and the next attempt waits this long, so a
/// Secrets Manager outage costs one call per half minute, not one per request.
pub const RETRY_FAILED_READ: Duration = Duration::from_secs(30);

/// A Secrets Manager secret read at start-up and re-read once it is older than its TTL, or on
/// demand after DevLake refused it. Debug shows the ARN only.
pub struct RotatingSecret {
    arn: String,
    client: aws_sdk_secretsmanager::Client,
    ttl: Duration,
    cached: Mutex<Cached>,
}

struct Cached {
    value: String,
    /// When `value` should be read again.
    stale_at: Instant,
}

impl std::fmt::Debug for RotatingSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RotatingSecret")
            .field("arn", &self.arn)
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl RotatingSecret {
    /// Reads the secret once; an error here stops start-up like any unreadable secret.
    pub async fn load(
        arn: &str,
        sdk: &aws_config::SdkConfig,
        ttl: Duration,
    ) -> Result<Self, SecretError> {
        let client = aws_sdk_secretsmanager::Client::new(sdk);
        let arn = arn.trim().to_string();
        let value = fetch_with(&client, &arn).await?;
        Ok(RotatingSecret {
            arn,
            client,
            ttl,
            cached: Mutex::new(Cached {
                value,
                stale_at: Instant::now() + ttl,
            }),
        })
    }

    pub fn arn(&self) -> &str {
        &self.arn
    }

    /// The value to use now: the cached one, read again first when older than the TTL.
    pub async fn current(&self) -> String {
        let mut cached = self.cached.lock().await;
        if Instant::now() >= cached.stale_at {
            self.reread(&mut cached).await;
        }
        cached.value.clone()
    }

    /// The value after `rejected` was refused: read again at once, unless another caller already
    /// replaced `rejected` (many requests refused together cause one read).
    pub async fn after_rejection(&self, rejected: &str) -> String {
        let mut cached = self.cached.lock().await;
        if cached.value == rejected {
            self.reread(&mut cached).await;
        }
        cached.value.clone()
    }

    async fn reread(&self, cached: &mut Cached) {
        match fetch_with(&self.client, &self.arn).await {
            Ok(value) => {
                if value != cached.value {
                    tracing::info!(arn = %self.arn, "secret changed in Secrets Manager; using the new value");
                }
                cached.value = value;
                cached.stale_at = Instant::now() + self.ttl;
            }
            Err(error) => {
                tracing::warn!(%error, "could not read the secret again; keeping the current value");
                cached.stale_at = Instant::now() + RETRY_FAILED_READ.min(self.ttl);
            }
        }
    }
}

#[async_trait::async_trait]
impl crate::devlake::ApiKeySource for RotatingSecret {
    async fn current(&self) -> String {
        RotatingSecret::current(self).await
    }

    async fn after_rejection(&self, rejected: &str) -> String {
        RotatingSecret::after_rejection(self, rejected).await
    }
}

async fn fetch(arn: &str, sdk: &aws_config::SdkConfig) -> Result<String, SecretError> {
    fetch_with(&aws_sdk_secretsmanager::Client::new(sdk), arn).await
}

async fn fetch_with(
    client: &aws_sdk_secretsmanager::Client,
    arn: &str,
) -> Result<String, SecretError> {
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

fn fetch_error(arn: &str, error: SdkError<GetSecretValueError, HttpResponse>) -> SecretError {
    let retryable = crate::aws_error::is_retryable(&error);
    let source: aws_sdk_secretsmanager::Error = error.into();
    SecretError::Fetch {
        arn: arn.to_string(),
        message: DisplayErrorContext(&source).to_string(),
        retryable,
        source: Box::new(source),
    }
}

/// A credential that incoming requests are checked against (the metrics token, the notification
/// secret), built from the secret's text.
pub trait Credential: Clone + Sized {
    /// The variable naming the credential's Secrets Manager ARN, named in errors about that secret.
    const ARN_VAR: &'static str;

    /// The credential, or why the text cannot be one (empty, typically). The error must not
    /// contain the text.
    fn from_text(text: String) -> Result<Self, ConfigError>;
}

/// The credential a request must present: fixed (given in the environment), or a Secrets Manager
/// secret read again once older than [`SECRET_TTL`], so a rotated one is accepted within that
/// time. Only a request that passed the check may cause a read: a refused one never does, so
/// unauthenticated callers cannot make the function call Secrets Manager.
pub enum Expected<C> {
    Fixed(C),
    Rotating(Arc<RotatingSecret>),
}

impl<C: Credential> From<C> for Expected<C> {
    fn from(credential: C) -> Self {
        Expected::Fixed(credential)
    }
}

impl<C: Credential> Expected<C> {
    /// From where the settings say the credential lives. A secret is read now: an unreadable or
    /// unusable one stops start-up, with an error naming [`Credential::ARN_VAR`].
    pub async fn resolve(
        source: SecretSource,
        sdk: &aws_config::SdkConfig,
    ) -> Result<Self, StartupError> {
        match source {
            SecretSource::Plain(text) => Ok(Expected::Fixed(C::from_text(text)?)),
            SecretSource::SecretArn(arn) => {
                let secret = RotatingSecret::load(&arn, sdk, SECRET_TTL)
                    .await
                    .map_err(|e| ConfigError::new(C::ARN_VAR, e.to_string()))?;
                C::from_text(secret.current().await)
                    .map_err(|e| ConfigError::new(C::ARN_VAR, e.problem))?;
                Ok(Expected::Rotating(Arc::new(secret)))
            }
        }
    }

    /// The credential to check against now; `None` when the stored secret became unusable (a
    /// rotation gone wrong), which matches nothing.
    pub async fn current(&self) -> Option<C> {
        match self {
            Expected::Fixed(credential) => Some(credential.clone()),
            Expected::Rotating(secret) => C::from_text(secret.current().await).ok(),
        }
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
