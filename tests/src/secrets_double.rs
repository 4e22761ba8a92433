//! A Secrets Manager double speaking the real wire protocol (awsJson1.1,
//! `X-Amz-Target: secretsmanager.GetSecretValue`), for tests that give a function its DevLake API
//! key or metrics token by secret ARN. Secrets are looked up by the exact `SecretId` sent.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::post;
use serde_json::{json, Value};
use tokio::sync::oneshot;

/// One stored secret.
#[derive(Debug, Clone)]
pub struct StoredSecret {
    pub arn: String,
    pub name: String,
    /// `SecretString`, or `None` for a binary-only secret.
    pub string: Option<String>,
    /// `SecretBinary` (base64, as on the wire) when there is no string.
    pub binary_base64: Option<String>,
}

impl StoredSecret {
    pub fn string(arn: &str, name: &str, value: &str) -> StoredSecret {
        StoredSecret {
            arn: arn.into(),
            name: name.into(),
            string: Some(value.into()),
            binary_base64: None,
        }
    }

    pub fn binary(arn: &str, name: &str, base64: &str) -> StoredSecret {
        StoredSecret {
            arn: arn.into(),
            name: name.into(),
            string: None,
            binary_base64: Some(base64.into()),
        }
    }
}

/// A running double; stops serving when dropped.
pub struct SecretsManagerDouble {
    url: String,
    shutdown: Option<oneshot::Sender<()>>,
}

impl SecretsManagerDouble {
    /// Starts on a free port of 127.0.0.1 serving `secrets`.
    pub async fn start(secrets: Vec<StoredSecret>) -> SecretsManagerDouble {
        let secrets: Arc<HashMap<String, Value>> = Arc::new(
            secrets
                .into_iter()
                .map(|s| {
                    let mut body = json!({"ARN": s.arn, "Name": s.name, "VersionId": "v1"});
                    if let Some(v) = s.string {
                        body["SecretString"] = json!(v);
                    }
                    if let Some(b) = s.binary_base64 {
                        body["SecretBinary"] = json!(b);
                    }
                    (s.arn, body)
                })
                .collect(),
        );
        let app = axum::Router::new().route(
            "/",
            post(move |headers: HeaderMap, body: String| {
                let secrets = secrets.clone();
                async move {
                    let target = headers
                        .get("x-amz-target")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default();
                    let json_type = [("content-type", "application/x-amz-json-1.1")];
                    if target != "secretsmanager.GetSecretValue" {
                        let err = json!({"__type": "UnknownOperationException"});
                        return (StatusCode::BAD_REQUEST, json_type, err.to_string())
                            .into_response();
                    }
                    let request: Value = serde_json::from_str(&body).unwrap_or_default();
                    let id = request["SecretId"].as_str().unwrap_or_default();
                    match secrets.get(id) {
                        Some(secret) => {
                            (StatusCode::OK, json_type, secret.to_string()).into_response()
                        }
                        None => {
                            let err = json!({
                                "__type": "ResourceNotFoundException",
                                "message": "Secrets Manager can't find the specified secret."
                            });
                            (StatusCode::BAD_REQUEST, json_type, err.to_string()).into_response()
                        }
                    }
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .expect("cannot bind the Secrets Manager double");
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (tx, rx) = oneshot::channel();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = rx.await;
                })
                .await;
        });
        SecretsManagerDouble {
            url,
            shutdown: Some(tx),
        }
    }

    /// `http://127.0.0.1:PORT`, the endpoint URL to give the SDK.
    pub fn url(&self) -> &str {
        &self.url
    }
}

impl Drop for SecretsManagerDouble {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}
