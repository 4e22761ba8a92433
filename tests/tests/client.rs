//! The DevLake client against the DevLake simulator over real HTTP, and secret resolution
//! against a Secrets Manager endpoint over real HTTP with the real aws-sdk-secretsmanager client.

mod secrets {
    use std::collections::HashMap;
    use std::net::SocketAddr;

    use aws_sdk_dynamodb::config::{Credentials, SharedCredentialsProvider};
    use axum::http::{HeaderMap, StatusCode};
    use axum::response::IntoResponse;
    use axum::routing::post;
    use devlake_autopilot::secrets::{resolve_named_secret, resolve_secret, SecretError};
    use serde_json::{json, Value};

    const ARN: &str = "arn:aws:secretsmanager:us-east-1:123456789012:secret:devlake-key-AbCdEf";
    const BINARY_ARN: &str = "arn:aws:secretsmanager:us-east-1:123456789012:secret:binary-XyZ";
    const VALUE: &str = "dlk_live_4f9a-very-secret";

    /// A Secrets Manager endpoint speaking the real wire protocol (awsJson1.1,
    /// `X-Amz-Target: secretsmanager.GetSecretValue`) for two secrets.
    async fn secrets_manager() -> (String, tokio::task::JoinHandle<()>) {
        let secrets: HashMap<&'static str, Value> = HashMap::from([
            (
                ARN,
                json!({"ARN": ARN, "Name": "devlake-key", "SecretString": VALUE, "VersionId": "v1"}),
            ),
            (
                BINARY_ARN,
                json!({"ARN": BINARY_ARN, "Name": "binary", "SecretBinary": "AAEC", "VersionId": "v1"}),
            ),
        ]);
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
            .unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        (url, task)
    }

    fn sdk(endpoint: &str) -> aws_config::SdkConfig {
        aws_config::SdkConfig::builder()
            .behavior_version(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new("us-east-1"))
            .endpoint_url(endpoint)
            .credentials_provider(SharedCredentialsProvider::new(Credentials::new(
                "AKIDTEST", "test", None, None, "test",
            )))
            .build()
    }

    #[tokio::test]
    async fn reads_the_secret_string_by_arn() {
        let (url, server) = secrets_manager().await;
        let sdk = sdk(&url);
        let value = resolve_secret(None, Some(ARN.to_string()), &sdk)
            .await
            .unwrap();
        assert_eq!(value.as_deref(), Some(VALUE));
        server.abort();
    }

    #[tokio::test]
    async fn unknown_or_binary_secrets_fail_without_revealing_values() {
        let (url, server) = secrets_manager().await;
        let sdk = sdk(&url);

        let missing = "arn:aws:secretsmanager:us-east-1:123456789012:secret:nope";
        let err = resolve_secret(None, Some(missing.to_string()), &sdk)
            .await
            .unwrap_err();
        assert!(matches!(err, SecretError::Fetch { .. }), "{err:?}");
        assert!(!err.is_retryable(), "a wrong ARN cannot succeed later");
        let text = err.to_string();
        assert!(text.contains(missing), "{text}");
        assert!(text.contains("ResourceNotFoundException"), "{text}");

        let err = resolve_secret(None, Some(BINARY_ARN.to_string()), &sdk)
            .await
            .unwrap_err();
        assert!(matches!(err, SecretError::NoString { .. }), "{err:?}");

        let err = resolve_named_secret(
            "METRICS_TOKEN",
            "METRICS_TOKEN_SECRET_ARN",
            Some(VALUE.to_string()),
            Some(ARN.to_string()),
            &sdk,
        )
        .await
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "both METRICS_TOKEN and METRICS_TOKEN_SECRET_ARN are set; set only one of them"
        );
        assert!(!format!("{err:?}").contains(VALUE));
        server.abort();
    }

    #[tokio::test]
    async fn unreachable_secrets_manager_is_retryable() {
        // Bind then drop: nothing listens on this port any more.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let sdk = aws_config::SdkConfig::builder()
            .behavior_version(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new("us-east-1"))
            .endpoint_url(format!("http://127.0.0.1:{port}"))
            .retry_config(aws_config::retry::RetryConfig::disabled())
            .credentials_provider(SharedCredentialsProvider::new(Credentials::new(
                "AKIDTEST", "test", None, None, "test",
            )))
            .build();
        let err = resolve_secret(None, Some(ARN.to_string()), &sdk)
            .await
            .unwrap_err();
        assert!(err.is_retryable(), "{err}");
    }
}
