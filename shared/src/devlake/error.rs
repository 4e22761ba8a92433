//! Errors of the DevLake client. Each keeps method, path and status, never the API key.

use thiserror::Error;

/// What went wrong talking to DevLake.
#[derive(Debug, Error)]
pub enum DevLakeError {
    /// 428: DevLake waits for (or runs) a database migration. Not retried: it lasts minutes.
    #[error("DevLake is waiting for a database migration (428) on {method} {path}; open <devlake>/proceed-db-migration, then run again")]
    MigrationPending { method: String, path: String },
    /// 401/403: the API key is missing, wrong, expired or not allowed on this path.
    #[error("DevLake refused the credentials ({status}) on {method} {path}: {message}")]
    Unauthorized {
        status: u16,
        method: String,
        path: String,
        message: String,
    },
    /// Any other non-success status. `message` is a short excerpt of the body.
    #[error("DevLake answered {status} on {method} {path}: {message}")]
    Status {
        status: u16,
        method: String,
        path: String,
        message: String,
    },
    /// The run's deadline came before DevLake answered: the request was not sent (no time
    /// left) or was cut off at the deadline. Not retried; the run reports itself partial.
    #[error("the run's deadline came before DevLake answered {method} {path}")]
    Deadline { method: String, path: String },
    /// Connect failure, reset, or timeout.
    #[error(
        "could not reach DevLake on {method} {path}: {}",
        describe_transport(source)
    )]
    Transport {
        method: String,
        path: String,
        #[source]
        source: reqwest::Error,
    },
    /// DevLake's TLS certificate was issued by a CA that is neither a system root nor in
    /// `DEVLAKE_CA_BUNDLE`. Not retried: only a setting can fix it.
    #[error(
        "DevLake's TLS certificate is not issued by a trusted CA on {method} {path}: {}",
        untrusted_hint(bundle.as_deref())
    )]
    UntrustedCertificate {
        method: String,
        path: String,
        /// Where the extra roots came from, when `DEVLAKE_CA_BUNDLE` is set.
        bundle: Option<String>,
        #[source]
        source: reqwest::Error,
    },
    /// DevLake (or a proxy in front of it) answered 3xx. Redirects are not followed: the API
    /// key would go wherever the answer points.
    #[error("DevLake answered {status} on {method} {path} → Location {location}: set DEVLAKE_ENDPOINT to the final URL")]
    Redirect {
        status: u16,
        method: String,
        path: String,
        /// The `Location` header, any URL password redacted.
        location: String,
    },
    /// The body was larger than the client reads.
    #[error("DevLake's answer to {method} {path} is larger than {} MiB; a smaller DEVLAKE_PAGE_SIZE makes list pages smaller", limit / (1024 * 1024))]
    BodyTooLarge {
        method: String,
        path: String,
        limit: usize,
    },
    /// The body was not shaped as DevLake's API answers (docs/devlake-api.md).
    #[error(
        "unexpected response from DevLake on {method} {path}: {source} (body starts: {excerpt})"
    )]
    Decode {
        method: String,
        path: String,
        excerpt: String,
        #[source]
        source: serde_json::Error,
    },
    /// The client was built with an unusable setting (endpoint URL, header value).
    #[error("invalid DevLake client setting: {0}")]
    Config(String),
}

impl DevLakeError {
    /// HTTP status, where DevLake answered at all.
    pub fn status(&self) -> Option<u16> {
        match self {
            DevLakeError::MigrationPending { .. } => Some(428),
            DevLakeError::Unauthorized { status, .. }
            | DevLakeError::Status { status, .. }
            | DevLakeError::Redirect { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// Whether trying the same request again can help (5xx, 429, transport errors).
    pub fn is_retryable(&self) -> bool {
        match self {
            DevLakeError::Transport { .. } => true,
            DevLakeError::Status { status, .. } => *status == 429 || *status >= 500,
            _ => false,
        }
    }

    /// Whether no further call in this run can succeed (migration pending, credentials refused).
    pub fn is_fatal(&self) -> bool {
        matches!(
            self,
            DevLakeError::MigrationPending { .. }
                | DevLakeError::Unauthorized { .. }
                | DevLakeError::UntrustedCertificate { .. }
                | DevLakeError::Redirect { .. }
                | DevLakeError::Config(_)
        )
    }

    /// The run's deadline stopped the request: the next run does it (not retried in this one).
    pub fn is_deadline(&self) -> bool {
        matches!(self, DevLakeError::Deadline { .. })
    }

    pub fn is_not_found(&self) -> bool {
        self.status() == Some(404)
    }
}

fn untrusted_hint(bundle: Option<&str>) -> String {
    match bundle {
        None => "set DEVLAKE_CA_BUNDLE to the PEM of the CA that issued it".to_string(),
        Some(origin) => format!(
            "DEVLAKE_CA_BUNDLE ({origin}) does not hold the CA that issued it; add that CA's PEM"
        ),
    }
}

/// reqwest's own message is only "error sending request"; the cause (timeout, refused, reset)
/// is further down the source chain, and it is what an operator needs.
fn describe_transport(error: &reqwest::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    if error.is_timeout() {
        parts.push("timed out".to_string());
    }
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = current {
        let text = e.to_string();
        if !text.is_empty() && !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        current = e.source();
    }
    parts.join(": ")
}
