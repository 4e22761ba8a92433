//! A local Secrets Manager endpoint speaking the real wire protocol (awsJson1.1,
//! `X-Amz-Target: secretsmanager.GetSecretValue`), for the real aws-sdk-secretsmanager client.
//! Values can be changed while it runs (a rotation) and reads are counted.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use aws_sdk_dynamodb::config::{Credentials, SharedCredentialsProvider};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::post;
use serde_json::{json, Value};

/// A running endpoint; serves until dropped.
pub struct LocalSecretsManager {
    url: String,
    secrets: Arc<Mutex<HashMap<String, Value>>>,
    reads: Arc<AtomicUsize>,
    versions: AtomicUsize,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for LocalSecretsManager {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn name_of(arn: &str) -> &str {
    arn.rsplit(':').next().unwrap_or(arn)
}

impl LocalSecretsManager {
    pub async fn start() -> LocalSecretsManager {
        let secrets: Arc<Mutex<HashMap<String, Value>>> = Arc::default();
        let reads = Arc::new(AtomicUsize::new(0));
        let (state, counter) = (secrets.clone(), reads.clone());
        let app = axum::Router::new().route(
            "/",
            post(move |headers: HeaderMap, body: String| {
                let (state, counter) = (state.clone(), counter.clone());
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
                    counter.fetch_add(1, Ordering::SeqCst);
                    let request: Value = serde_json::from_str(&body).unwrap_or_default();
                    let id = request["SecretId"].as_str().unwrap_or_default();
                    let found = state.lock().unwrap().get(id).cloned();
                    match found {
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
            .unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        LocalSecretsManager {
            url,
            secrets,
            reads,
            versions: AtomicUsize::new(0),
            task,
        }
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// Sets (or rotates) a `SecretString`; the version id changes with every value.
    pub fn set_string(&self, arn: &str, value: &str) {
        let mut secrets = self.secrets.lock().unwrap();
        let version = format!("v{}", self.versions.fetch_add(1, Ordering::SeqCst) + 1);
        secrets.insert(
            arn.to_string(),
            json!({"ARN": arn, "Name": name_of(arn), "SecretString": value, "VersionId": version}),
        );
    }

    /// Deletes a secret: reads of it fail with `ResourceNotFoundException`.
    pub fn remove(&self, arn: &str) {
        self.secrets.lock().unwrap().remove(arn);
    }

    /// A secret holding only binary data (base64 `AAEC`).
    pub fn set_binary(&self, arn: &str) {
        self.secrets.lock().unwrap().insert(
            arn.to_string(),
            json!({"ARN": arn, "Name": name_of(arn), "SecretBinary": "AAEC", "VersionId": "v1"}),
        );
    }

    /// `GetSecretValue` calls answered so far.
    pub fn reads(&self) -> usize {
        self.reads.load(Ordering::SeqCst)
    }

    /// SDK configuration pointing at this endpoint with test credentials.
    pub fn sdk(&self) -> aws_config::SdkConfig {
        aws_config::SdkConfig::builder()
            .behavior_version(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new("us-east-1"))
            .endpoint_url(&self.url)
            .credentials_provider(SharedCredentialsProvider::new(Credentials::new(
                "AKIDTEST", "test", None, None, "test",
            )))
            .build()
    }
}
