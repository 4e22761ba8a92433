//! The events function's HTTP handling, independent of Lambda.
//!
//! Order matters, as on the metrics page: the signature is checked first, against the raw body
//! and the query string, so a request DevLake did not sign is answered 401 before its method or
//! body is looked at and before the store is touched; an unauthenticated caller learns nothing
//! and cannot make the function spend DynamoDB requests. Then the method (405 unless POST),
//! then the body (400 unless a notification), then the store (200; 503 when DynamoDB is
//! unavailable, 500 when it refuses). DevLake does not retry a notification whatever the
//! answer (it only stores the status code in `_devlake_notifications`); the monitor's next run
//! records what a lost one would have.

use std::time::Instant;

use chrono::{DateTime, Utc};
use lambda_http::http::{header, Method, Request, Response, StatusCode};

use crate::config::{ConfigError, SecretSource};
use crate::function_url::{plain, simple, Refusal, Refusals};
use crate::monitor::MonitorSettings;
use crate::secrets::{Credential, Expected};
use crate::store::EventStore;

use super::apply::apply;
use super::notification::Notification;
use super::signature::{signed_query, NotificationSecret};
use super::{SECRET_ARN_VAR, SECRET_VAR};

/// The secret notifications must be signed with: `NOTIFICATION_SECRET`, or the secret
/// `NOTIFICATION_SECRET_ARN`.
pub type ExpectedSecret = Expected<NotificationSecret>;

impl Credential for NotificationSecret {
    const ARN_VAR: &'static str = SECRET_ARN_VAR;

    fn from_text(text: String) -> Result<Self, ConfigError> {
        NotificationSecret::new(text)
    }
}

/// Serves DevLake's notifications into an [`EventStore`].
pub struct EventsService<S> {
    store: S,
    secret: ExpectedSecret,
    settings: MonitorSettings,
    /// Requests answered 401 since this instance started (see [`Self::log_refusal`]).
    refused: Refusals,
}

impl<S: EventStore> EventsService<S> {
    /// `settings`: the monitor's failure statuses, retention and failure window, which a failure
    /// recorded here must share with the monitor's.
    pub fn new(store: S, secret: impl Into<ExpectedSecret>, settings: MonitorSettings) -> Self {
        EventsService {
            store,
            secret: secret.into(),
            settings,
            refused: Refusals::default(),
        }
    }

    pub fn store(&self) -> &S {
        &self.store
    }

    /// Answers one request; `now` is when it arrived.
    pub async fn handle<B: AsRef<[u8]>>(
        &self,
        req: &Request<B>,
        now: DateTime<Utc>,
    ) -> Response<Vec<u8>> {
        let started = Instant::now();
        let method = req.method();
        let body = req.body().as_ref();
        let signed = signed_query(req.uri().query());
        let verified = match (&signed, self.secret.current().await) {
            (Some(q), Some(secret)) => secret.verifies(body, &q.nonce, &q.sign),
            _ => false,
        };
        let Some(signed) = signed.filter(|_| verified) else {
            self.log_refusal(method);
            return simple(StatusCode::UNAUTHORIZED, "unauthorized\n");
        };
        let notification_id = signed.notification_id();
        if method != Method::POST {
            tracing::info!(%method, notification_id, status = 405, "method not allowed");
            return plain(StatusCode::METHOD_NOT_ALLOWED)
                .header(header::ALLOW, "POST")
                .body(b"method not allowed\n".to_vec())
                .expect("static response parts are valid");
        }
        let notification = match Notification::parse(body) {
            Ok(n) => n,
            Err(error) => {
                tracing::warn!(notification_id, status = 400, %error, "malformed notification");
                return simple(StatusCode::BAD_REQUEST, &format!("{error}\n"));
            }
        };
        match apply(&self.store, &self.settings, &notification, now).await {
            Ok(applied) => {
                tracing::info!(
                    notification_id,
                    project = %notification.project_name,
                    pipeline_id = notification.pipeline_id,
                    status = %notification.status,
                    failures_recorded = applied.failures_recorded,
                    already_recorded = applied.already_recorded,
                    project_written = applied.project.is_some(),
                    elapsed_ms = started.elapsed().as_secs_f64() * 1000.0,
                    "notification accepted"
                );
                if applied.failures_recorded > 0 {
                    tracing::info!(
                        project = %notification.project_name,
                        pipeline_id = notification.pipeline_id,
                        status = %notification.status,
                        finished_at = ?applied.ended_at,
                        "failure recorded"
                    );
                }
                simple(StatusCode::OK, "ok\n")
            }
            Err(error) => {
                // DevLake will not send it again: the monitor's next run records it.
                tracing::error!(
                    notification_id,
                    project = %notification.project_name,
                    pipeline_id = notification.pipeline_id,
                    %error,
                    retryable = error.is_retryable(),
                    "notification not stored; the monitor's next run records the pipeline"
                );
                if error.is_retryable() {
                    simple(StatusCode::SERVICE_UNAVAILABLE, "store unavailable\n")
                } else {
                    simple(StatusCode::INTERNAL_SERVER_ERROR, "store error\n")
                }
            }
        }
    }

    /// Logs a request refused for want of a valid signature, at INFO only now and then
    /// ([`crate::function_url`] says why).
    fn log_refusal(&self, method: &Method) {
        let Refusal { count, loud } = self.refused.count();
        if loud {
            tracing::info!(
                %method,
                status = 401,
                refused = count,
                "notifications without a valid signature refused by this instance so far"
            );
        } else {
            tracing::debug!(%method, status = 401, refused = count, "notification without a valid signature");
        }
    }
}

/// Where `NOTIFICATION_SECRET` comes from, checked at start-up.
pub(crate) fn secret_source(env: &crate::config::Env) -> Result<SecretSource, ConfigError> {
    env.required_secret_source(SECRET_VAR, SECRET_ARN_VAR)
}
