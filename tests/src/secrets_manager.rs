//! A local Secrets Manager endpoint speaking the real wire protocol (awsJson1.1,
//! `X-Amz-Target: secretsmanager.GetSecretValue`), for the real aws-sdk-secretsmanager client.
//! Secrets are looked up by the exact `SecretId` sent; values can be changed while it runs (a
//! rotation), secrets can be binary-only or deleted, and reads are counted.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::post;
use serde_json::{json, Value};

use crate::serve::{serve_in_background, Serving};

/// A running endpoint; serves until dropped.
pub struct LocalSecretsManager {
    url: String,
    secrets: Arc<Mutex<HashMap<String, Value>>>,
    reads: Arc<AtomicUsize>,
    versions: AtomicUsize,
    _serving: Serving,
}

/// The secret's name as Secrets Manager reports it: the last ARN field without the six random
/// characters Secrets Manager appends to every ARN (`...:secret:devlake/api-key-AbCdEf`).
fn name_of(arn: &str) -> &str {
    let last = arn.rsplit(':').next().unwrap_or(arn);
    match last.rsplit_once('-') {
        Some((name, suffix))
            if suffix.len() == 6 && suffix.chars().all(|c| c.is_ascii_alphanumeric()) =>
        {
            name
        }
        _ => last,
    }
}

impl LocalSecretsManager {
    /// Starts on a free port of 127.0.0.1 with no secrets; add them with `set_string`/`set_binary`.
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
            .expect("cannot bind the local Secrets Manager");
        let url = format!("http://{}", listener.local_addr().unwrap());
        let serving = serve_in_background(listener, app);
        LocalSecretsManager {
            url,
            secrets,
            reads,
            versions: AtomicUsize::new(0),
            _serving: serving,
        }
    }

    /// `http://127.0.0.1:PORT`, the endpoint URL to give the SDK.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Sets (or rotates) a `SecretString`; the version id changes with every value.
    pub fn set_string(&self, arn: &str, value: &str) {
        self.put(arn, "SecretString", value);
    }

    /// A secret holding only binary data (`SecretBinary`, base64 as on the wire), no string.
    pub fn set_binary(&self, arn: &str, base64: &str) {
        self.put(arn, "SecretBinary", base64);
    }

    /// Deletes a secret: reads of it fail with `ResourceNotFoundException`.
    pub fn remove(&self, arn: &str) {
        self.secrets.lock().unwrap().remove(arn);
    }

    fn put(&self, arn: &str, field: &str, value: &str) {
        let version = format!("v{}", self.versions.fetch_add(1, Ordering::SeqCst) + 1);
        let mut secret = json!({"ARN": arn, "Name": name_of(arn), "VersionId": version});
        secret[field] = json!(value);
        self.secrets.lock().unwrap().insert(arn.to_string(), secret);
    }

    /// `GetSecretValue` calls answered so far.
    pub fn reads(&self) -> usize {
        self.reads.load(Ordering::SeqCst)
    }

    /// SDK configuration pointing at this endpoint with test credentials.
    pub fn sdk(&self) -> aws_config::SdkConfig {
        crate::stack::local_sdk_config(&self.url)
    }
}

#[cfg(test)]
mod tests {
    use super::name_of;

    #[test]
    fn names_drop_the_random_arn_suffix_only() {
        let arn = "arn:aws:secretsmanager:us-east-1:123456789012:secret:devlake/api-key-AbCdEf";
        assert_eq!(name_of(arn), "devlake/api-key");
        assert_eq!(
            name_of("arn:aws:secretsmanager:us-east-1:1:secret:nope"),
            "nope"
        );
        assert_eq!(
            name_of("arn:aws:secretsmanager:us-east-1:1:secret:a-b"),
            "a-b"
        );
    }
}
