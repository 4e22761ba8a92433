//! The local stack itself: DynamoDB Local with the table of template.yaml, the CloudWatch double
//! behind the real SDK client, and template parsing.

use std::collections::HashMap;
use std::io::Write;

use aws_sdk_dynamodb::types::{AttributeValue, KeyType, ScalarAttributeType, TimeToLiveStatus};
use devlake_testkit::stack::{dynamodb_local, repo_root, table_definition_from_template};

fn s(v: &str) -> AttributeValue {
    AttributeValue::S(v.to_string())
}

#[tokio::test]
async fn dynamodb_local_table_matches_template_and_rejects_duplicate_conditional_put() {
    let local = dynamodb_local().await;
    assert!(local.endpoint().starts_with("http://127.0.0.1:"));
    let table = local.create_table_as_deployed("stack-smoke").await;
    let client = local.client();

    let described = client
        .describe_table()
        .table_name(&table)
        .send()
        .await
        .unwrap();
    let desc = described.table().unwrap();
    let mut keys: Vec<(String, KeyType)> = desc
        .key_schema()
        .iter()
        .map(|k| (k.attribute_name().to_string(), k.key_type().clone()))
        .collect();
    keys.sort_by(|a, b| a.0.cmp(&b.0));
    let template =
        table_definition_from_template(&repo_root().join("template.yaml"), "StateTable").unwrap();
    let mut expected: Vec<(String, KeyType)> = template
        .key_schema
        .iter()
        .map(|k| (k.attribute_name().to_string(), k.key_type().clone()))
        .collect();
    expected.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(keys, expected);
    // The template today: pk HASH, sk RANGE, both strings.
    assert!(keys.contains(&("pk".to_string(), KeyType::Hash)));
    assert!(desc
        .attribute_definitions()
        .iter()
        .any(|a| a.attribute_name() == "pk" && a.attribute_type() == &ScalarAttributeType::S));
    assert_eq!(
        desc.global_secondary_indexes().len(),
        template.global_secondary_indexes.len()
    );

    let ttl = client
        .describe_time_to_live()
        .table_name(&table)
        .send()
        .await
        .unwrap();
    let ttl = ttl.time_to_live_description().unwrap();
    assert_eq!(ttl.attribute_name(), template.ttl_attribute.as_deref());
    assert_eq!(ttl.time_to_live_status(), Some(&TimeToLiveStatus::Enabled));

    let item: HashMap<String, AttributeValue> = [
        ("pk", s("FAILURE#42")),
        ("sk", s("2026-11-28T10:00:00Z")),
        ("project", s("github/acme/api")),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    client
        .put_item()
        .table_name(&table)
        .set_item(Some(item.clone()))
        .condition_expression("attribute_not_exists(pk)")
        .send()
        .await
        .expect("first conditional put succeeds");
    let dup = client
        .put_item()
        .table_name(&table)
        .set_item(Some(item))
        .condition_expression("attribute_not_exists(pk)")
        .send()
        .await
        .expect_err("duplicate must be rejected");
    assert!(
        dup.as_service_error()
            .map(|e| e.is_conditional_check_failed_exception())
            == Some(true),
        "expected ConditionalCheckFailed, got {dup:?}"
    );
    let count = client
        .scan()
        .table_name(&table)
        .send()
        .await
        .unwrap()
        .count();
    assert_eq!(count, 1);
}

#[tokio::test]
async fn tables_are_unique_per_call() {
    let local = dynamodb_local().await;
    let a = local.create_table("stack-unique").await;
    let b = local.create_table("stack-unique").await;
    assert_ne!(a, b);
    assert!(a.contains(&std::process::id().to_string()));
}

#[test]
fn template_parsing_survives_intrinsic_function_tags() {
    let yaml = r#"
AWSTemplateFormatVersion: "2010-09-09"
Transform: AWS::Serverless-2016-10-31
Parameters:
  Stage: {Type: String, Default: dev}
Resources:
  Fn:
    Type: AWS::Serverless::Function
    Properties:
      Environment:
        Variables:
          TABLE_NAME: !Ref Table
          TABLE_ARN: !GetAtt Table.Arn
          NAME: !Sub "${AWS::StackName}-x"
      Policies:
        - DynamoDBCrudPolicy:
            TableName: !Ref Table
  Table:
    Type: AWS::DynamoDB::Table
    Properties:
      TableName: !Sub "${AWS::StackName}-state"
      BillingMode: PAY_PER_REQUEST
      AttributeDefinitions:
        - {AttributeName: pk, AttributeType: S}
        - {AttributeName: sk, AttributeType: S}
        - {AttributeName: gsi1pk, AttributeType: S}
        - {AttributeName: n, AttributeType: N}
      KeySchema:
        - {AttributeName: pk, KeyType: HASH}
        - {AttributeName: sk, KeyType: RANGE}
      GlobalSecondaryIndexes:
        - IndexName: byProject
          KeySchema:
            - {AttributeName: gsi1pk, KeyType: HASH}
            - {AttributeName: n, KeyType: RANGE}
          Projection:
            ProjectionType: INCLUDE
            NonKeyAttributes: [status]
      TimeToLiveSpecification:
        AttributeName: expiresAt
        Enabled: true
Outputs:
  TableName:
    Value: !Ref Table
"#;
    let mut file = tempfile::NamedTempFile::new().unwrap();
    file.write_all(yaml.as_bytes()).unwrap();
    let def = table_definition_from_template(file.path(), "Table").unwrap();
    assert_eq!(def.attribute_definitions.len(), 4);
    assert_eq!(def.key_schema[0].attribute_name(), "pk");
    assert_eq!(def.key_schema[1].key_type(), &KeyType::Range);
    assert_eq!(
        def.billing_mode,
        aws_sdk_dynamodb::types::BillingMode::PayPerRequest
    );
    assert_eq!(def.global_secondary_indexes.len(), 1);
    let gsi = &def.global_secondary_indexes[0];
    assert_eq!(gsi.index_name(), "byProject");
    assert_eq!(
        gsi.projection().unwrap().non_key_attributes(),
        ["status".to_string()]
    );
    assert_eq!(def.ttl_attribute.as_deref(), Some("expiresAt"));

    let err = table_definition_from_template(file.path(), "Fn").unwrap_err();
    assert!(
        format!("{err:#}").contains("AWS::DynamoDB::Table"),
        "{err:#}"
    );
    let err = table_definition_from_template(file.path(), "Missing").unwrap_err();
    assert!(
        format!("{err:#}").contains("no resource Missing"),
        "{err:#}"
    );
}

#[test]
fn intrinsic_function_inside_a_used_property_is_reported() {
    let yaml = "Resources:\n  T:\n    Type: AWS::DynamoDB::Table\n    Properties:\n      BillingMode: !Ref Mode\n      AttributeDefinitions: [{AttributeName: pk, AttributeType: S}]\n      KeySchema: [{AttributeName: pk, KeyType: HASH}]\n";
    let mut file = tempfile::NamedTempFile::new().unwrap();
    file.write_all(yaml.as_bytes()).unwrap();
    let err = table_definition_from_template(file.path(), "T").unwrap_err();
    let text = format!("{err:#}");
    assert!(
        text.contains("BillingMode") && text.contains("Ref"),
        "{text}"
    );
}

// ---- CloudWatch double and sink ----

use aws_sdk_cloudwatch::types::{Dimension, MetricDatum, StandardUnit};
use devlake_autopilot::cloudwatch::{CloudWatchSink, Datum, MetricsSink, Unit};
use devlake_testkit::cloudwatch_double::CloudWatchDouble;
use devlake_testkit::stack::local_sdk_config;

fn cloudwatch_client(double: &CloudWatchDouble) -> aws_sdk_cloudwatch::Client {
    aws_sdk_cloudwatch::Client::new(&local_sdk_config(double.url()))
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

#[tokio::test]
async fn real_sdk_speaks_rpc_v2_cbor_to_the_double() {
    let double = CloudWatchDouble::start().await;
    let client = cloudwatch_client(&double);
    let ts = aws_sdk_cloudwatch::primitives::DateTime::from_secs(1_796_000_000);
    client
        .put_metric_data()
        .namespace("DevLake/Test")
        .metric_data(
            MetricDatum::builder()
                .metric_name("PipelineDuration")
                .timestamp(ts)
                .values(1.5)
                .values(2.5)
                .counts(3.0)
                .counts(1.0)
                .unit(StandardUnit::Seconds)
                .storage_resolution(60)
                .dimensions(Dimension::builder().name("Plugin").value("github").build())
                .build(),
        )
        .send()
        .await
        .expect("the double accepts what the SDK sends");

    let log = double.request_log();
    assert_eq!(log.len(), 1);
    let req = &log[0];
    assert_eq!(req.operation, "PutMetricData");
    assert_eq!(req.status, 200);
    assert_eq!(header(&req.headers, "smithy-protocol"), Some("rpc-v2-cbor"));
    assert_eq!(
        header(&req.headers, "content-type"),
        Some("application/cbor")
    );
    assert!(
        header(&req.headers, "authorization").is_some_and(|a| a.starts_with("AWS4-HMAC-SHA256"))
    );
    // Small bodies go uncompressed.
    assert_eq!(req.content_encoding, None);

    let d = &double.datums()[0];
    assert_eq!(d.namespace, "DevLake/Test");
    assert_eq!(d.metric_name, "PipelineDuration");
    assert_eq!(d.value, None);
    assert_eq!(d.values, vec![1.5, 2.5]);
    assert_eq!(d.counts, vec![3.0, 1.0]);
    assert_eq!(d.unit.as_deref(), Some("Seconds"));
    assert_eq!(d.timestamp, Some(1_796_000_000.0));
    assert_eq!(d.storage_resolution, Some(60));
    assert_eq!(
        d.dimensions,
        vec![("Plugin".to_string(), "github".to_string())]
    );
}

#[tokio::test]
async fn double_rejects_unknown_operations_and_other_protocols() {
    let double = CloudWatchDouble::start().await;
    let err = cloudwatch_client(&double)
        .list_metrics()
        .send()
        .await
        .expect_err("ListMetrics is not implemented");
    assert_eq!(err.raw_response().map(|r| r.status().as_u16()), Some(404));

    let http = reqwest::Client::new();
    let url = format!(
        "{}/service/GraniteServiceVersion20100801/operation/PutMetricData",
        double.url()
    );
    // The old awsQuery protocol (form-encoded) is not what the current SDK speaks.
    let resp = http
        .post(&url)
        .header("content-type", "application/x-www-form-urlencoded")
        .body("Action=PutMetricData&Namespace=X")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let resp = http
        .get(format!("{}/nowhere", double.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    assert!(double.datums().is_empty());
}

#[tokio::test]
async fn sink_delivers_namespace_names_values_units_and_dimensions() {
    let double = CloudWatchDouble::start().await;
    let sink = CloudWatchSink::new(cloudwatch_client(&double), "DevLake/Autopilot");
    let datums = vec![
        Datum::count("FailuresRecorded", 3.0),
        Datum::millis("RunDuration", 1234.5).with_dimension("Function", "monitor"),
        Datum {
            name: "LastRunAge".into(),
            value: 61.0,
            unit: Unit::Seconds,
            dimensions: vec![
                ("Function".into(), "automation".into()),
                ("Stage".into(), "prod".into()),
            ],
        },
        Datum {
            name: "Up".into(),
            value: 1.0,
            unit: Unit::None,
            dimensions: vec![],
        },
    ];
    sink.emit(&datums).await.expect("emit succeeds");
    assert_eq!(double.requests(), 1);

    let got = double.datums();
    assert_eq!(got.len(), 4);
    for (sent, recv) in datums.iter().zip(&got) {
        assert_eq!(recv.namespace, "DevLake/Autopilot");
        assert_eq!(recv.metric_name, sent.name);
        assert_eq!(recv.value, Some(sent.value));
        assert_eq!(recv.dimensions, sent.dimensions);
        // CloudWatch stamps datums on receipt.
        assert_eq!(recv.timestamp, None);
    }
    let units: Vec<_> = got.iter().map(|d| d.unit.clone().unwrap()).collect();
    assert_eq!(units, ["Count", "Milliseconds", "Seconds", "None"]);
}

#[tokio::test]
async fn sink_batches_2500_datums_into_three_calls() {
    let double = CloudWatchDouble::start().await;
    let sink = CloudWatchSink::new(cloudwatch_client(&double), "DevLake/Autopilot");
    let datums: Vec<Datum> = (0..2500)
        .map(|i| {
            Datum::count("Scopes", i as f64).with_dimension("Connection", &format!("github/{i}"))
        })
        .collect();
    sink.emit(&datums).await.unwrap();

    let log = double.request_log();
    assert_eq!(double.requests(), 3);
    assert_eq!(
        log.iter().map(|r| r.datums).collect::<Vec<_>>(),
        [1000, 1000, 500]
    );
    // Large bodies arrive gzip-compressed, and the double decodes them.
    assert!(log
        .iter()
        .any(|r| r.content_encoding.as_deref() == Some("gzip")));
    let got = double.datums();
    assert_eq!(got.len(), 2500);
    let values: Vec<f64> = got.iter().map(|d| d.value.unwrap()).collect();
    assert_eq!(values, (0..2500).map(|i| i as f64).collect::<Vec<_>>());
}

#[tokio::test]
async fn double_enforces_cloudwatch_limit_of_1000_datums() {
    let double = CloudWatchDouble::start().await;
    let err = cloudwatch_client(&double)
        .put_metric_data()
        .namespace("DevLake/Test")
        .set_metric_data(Some(
            (0..1001)
                .map(|i| {
                    MetricDatum::builder()
                        .metric_name("m")
                        .value(i as f64)
                        .build()
                })
                .collect(),
        ))
        .send()
        .await
        .expect_err("1,001 datums exceed the limit");
    assert!(
        err.as_service_error()
            .unwrap()
            .is_invalid_parameter_value_exception(),
        "{err:?}"
    );
    assert!(double.datums().is_empty());
}

#[tokio::test]
async fn failing_double_surfaces_as_sink_error() {
    let double = CloudWatchDouble::start().await;
    let sink = CloudWatchSink::new(cloudwatch_client(&double), "DevLake/Autopilot");

    // A rejected request (4xx) is not retried by the SDK and is not retryable.
    double.fail_next(1, 400);
    let err = sink.emit(&[Datum::count("x", 1.0)]).await.unwrap_err();
    assert!(!err.retryable, "{err}");
    assert!(err.to_string().contains("InvalidParameterValue"), "{err}");
    assert!(std::error::Error::source(&err).is_some());
    assert_eq!(double.requests(), 1);

    // A 5xx is retried by the SDK (3 attempts); when every attempt fails, the sink reports it
    // as retryable.
    double.clear();
    double.fail_next(100, 500);
    let err = sink.emit(&[Datum::count("x", 1.0)]).await.unwrap_err();
    assert!(err.retryable, "{err}");
    assert!(err.to_string().contains("InternalServiceError"), "{err}");
    assert_eq!(double.requests(), 3);
    assert!(double.datums().is_empty());

    // One 5xx then success: the SDK's retry hides it.
    double.clear();
    double.fail_next(1, 503);
    sink.emit(&[Datum::count("x", 1.0)]).await.unwrap();
    assert_eq!(double.requests(), 2);
    assert_eq!(double.datums().len(), 1);
}

#[tokio::test]
async fn sink_reports_partial_failure_across_batches() {
    let double = CloudWatchDouble::start().await;
    let sink = CloudWatchSink::new(cloudwatch_client(&double), "DevLake/Autopilot");
    double.fail_next(1, 400);
    let datums: Vec<Datum> = (0..1500).map(|i| Datum::count("n", i as f64)).collect();
    let err = sink.emit(&datums).await.unwrap_err();
    assert!(err.to_string().contains("1000 of 1500"), "{err}");
    // The second batch still went through.
    assert_eq!(double.datums().len(), 500);
}

#[tokio::test]
async fn standalone_double_serves_recorded_datums_as_json() {
    let bin = env!("CARGO_BIN_EXE_cloudwatch-double");
    let mut child = tokio::process::Command::new(bin)
        .args(["--port", "0"])
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(stdout));
    let first = tokio::time::timeout(std::time::Duration::from_secs(30), lines.next_line())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let url = first
        .strip_prefix("cloudwatch-double listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {first:?}"))
        .to_string();
    assert!(url.starts_with("http://127.0.0.1:"));

    let client = aws_sdk_cloudwatch::Client::new(&local_sdk_config(&url));
    CloudWatchSink::new(client, "DevLake/Demo")
        .emit(&[Datum::count("FailuresRecorded", 2.0).with_dimension("Function", "monitor")])
        .await
        .unwrap();
    let json: serde_json::Value = reqwest::get(format!("{url}/_recorded"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(json[0]["namespace"], "DevLake/Demo");
    assert_eq!(json[0]["metric_name"], "FailuresRecorded");
    assert_eq!(json[0]["value"], 2.0);
    assert_eq!(json[0]["unit"], "Count");
    assert_eq!(json[0]["dimensions"][0][1], "monitor");
    child.kill().await.unwrap();
}

// ---- cargo lambda watch ----

use devlake_testkit::lambda_watch::{InvokeError, LambdaWatch};
use serde_json::json;

fn function_url_event(path: &str, authorization: Option<&str>) -> serde_json::Value {
    let mut headers = json!({"host": "localhost", "user-agent": "stack-test"});
    if let Some(auth) = authorization {
        headers["authorization"] = json!(auth);
    }
    json!({
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": "",
        "headers": headers,
        "requestContext": {
            "accountId": "anonymous",
            "apiId": "local",
            "domainName": "localhost",
            "domainPrefix": "localhost",
            "http": {"method": "GET", "path": path, "protocol": "HTTP/1.1",
                     "sourceIp": "127.0.0.1", "userAgent": "stack-test"},
            "requestId": "stack-test-1",
            "routeKey": "$default",
            "stage": "$default",
            "time": "28/Nov/2026:11:00:00 +0000",
            "timeEpoch": 1_795_863_600_000u64
        },
        "isBase64Encoded": false
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lambda_watch_serves_a_real_function_by_invoke_and_function_url() {
    let local = dynamodb_local().await;
    let table = local.create_table("stack-watch").await;
    let token = "stack-test-token-7f3a";
    let watch = LambdaWatch::start(&[
        ("TABLE_NAME", table.as_str()),
        ("METRICS_TOKEN", token),
        ("AWS_ENDPOINT_URL_DYNAMODB", local.endpoint()),
        ("AWS_REGION", "us-east-1"),
        ("AWS_ACCESS_KEY_ID", "local"),
        ("AWS_SECRET_ACCESS_KEY", "local"),
    ])
    .await;

    // Through `cargo lambda invoke` with a function-URL event: unauthenticated → 401.
    let answer = watch
        .invoke("devlake-metrics", &function_url_event("/metrics", None))
        .await
        .unwrap_or_else(|e| panic!("invoke failed: {e}\n{}", watch.log()));
    assert_eq!(answer["statusCode"], 401, "{answer}");

    // Through the function URL over HTTP.
    let http = reqwest::Client::new();
    let url = format!("{}/metrics", watch.function_url("devlake-metrics"));
    let resp = http.get(&url).send().await.unwrap();
    assert_eq!(resp.status(), 401);
    let resp = http.get(&url).bearer_auth(token).send().await.unwrap();
    let status = resp.status();
    let content_type = resp
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string());
    let body = resp.text().await.unwrap();
    assert_eq!(status, 200, "{body}\n{}", watch.log());
    assert!(content_type.unwrap_or_default().starts_with("text/plain"));
    assert!(body.contains("# TYPE"), "{body}");
    assert!(!body.contains(token));

    // A payload the function cannot take is a function error, not a hang.
    let err = watch
        .invoke("devlake-metrics", &json!({"bogus": true}))
        .await
        .expect_err("not an HTTP event");
    match &err {
        InvokeError::Function { message } => assert!(message.contains("deserialize"), "{message}"),
        other => panic!("expected a function error, got {other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lambda_watch_reports_a_function_that_dies_at_start_up() {
    // No TABLE_NAME: the function refuses to start, and the invoke must say so instead of hanging.
    let watch = LambdaWatch::start(&[("METRICS_TOKEN", "x-token"), ("AWS_REGION", "us-east-1")])
        .await
        .with_invoke_timeout(std::time::Duration::from_secs(180));
    let started = std::time::Instant::now();
    let err = watch
        .invoke("devlake-metrics", &function_url_event("/metrics", None))
        .await
        .expect_err("the function cannot start");
    match &err {
        InvokeError::Exited { log } => assert!(log.contains("TABLE_NAME"), "{log}"),
        other => panic!("expected Exited, got {other}"),
    }
    assert!(started.elapsed() < std::time::Duration::from_secs(170));
}

#[tokio::test]
async fn create_table_binary_creates_the_template_table() {
    let local = dynamodb_local().await;
    let name = format!("stack-bin-{}", std::process::id());
    let run = || {
        tokio::process::Command::new(env!("CARGO_BIN_EXE_create-table"))
            .args(["--endpoint", local.endpoint(), "--table", &name])
            .output()
    };
    let out = run().await.unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains(&name));

    let desc = local
        .client()
        .describe_table()
        .table_name(&name)
        .send()
        .await
        .unwrap();
    let keys: Vec<_> = desc
        .table()
        .unwrap()
        .key_schema()
        .iter()
        .map(|k| k.attribute_name().to_string())
        .collect();
    assert_eq!(keys, ["pk", "sk"]);

    // Running it again says why it failed instead of pretending.
    let again = run().await.unwrap();
    assert!(!again.status.success());
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(stderr.contains("ResourceInUseException"), "{stderr}");
}

// ---- the functions' HTTP stack under the AWS SDK ----------------------------------------------
// The functions give the SDK their own HTTP client (`devlake_autopilot::transport`: reqwest over
// rustls with ring) instead of the SDK's. Every protocol they use must go through it: DynamoDB
// (JSON 1.0), CloudWatch (RPC v2 CBOR), Secrets Manager (JSON 1.1), with the SDK's retries.

use devlake_autopilot::transport::AwsHttpClient;
use devlake_testkit::secrets_manager::LocalSecretsManager;

fn with_function_transport(sdk: aws_config::SdkConfig) -> aws_config::SdkConfig {
    let http = AwsHttpClient::new(std::time::Duration::from_secs(2));
    sdk.into_builder().http_client(http.shared()).build()
}

#[tokio::test]
async fn the_functions_http_client_carries_every_aws_protocol_they_use() {
    // DynamoDB: a write, a refused conditional write (the error code survives), a read.
    let local = dynamodb_local().await;
    let table = local.create_table("stack-transport").await;
    let dynamodb =
        aws_sdk_dynamodb::Client::new(&with_function_transport(local_sdk_config(local.endpoint())));
    let item = HashMap::from([
        ("pk".to_string(), s("PROJECT")),
        ("sk".to_string(), s("github/acme/api")),
        ("note".to_string(), s("ünïcode ✓")),
    ]);
    dynamodb
        .put_item()
        .table_name(&table)
        .set_item(Some(item.clone()))
        .send()
        .await
        .expect("put through the functions' client");
    let err = dynamodb
        .put_item()
        .table_name(&table)
        .set_item(Some(item))
        .condition_expression("attribute_not_exists(pk)")
        .send()
        .await
        .unwrap_err();
    assert!(
        err.as_service_error()
            .is_some_and(|e| e.is_conditional_check_failed_exception()),
        "{err:?}"
    );
    let got = dynamodb
        .get_item()
        .table_name(&table)
        .key("pk", s("PROJECT"))
        .key("sk", s("github/acme/api"))
        .send()
        .await
        .expect("get");
    assert_eq!(got.item().unwrap()["note"], s("ünïcode ✓"));

    // CloudWatch: CBOR both ways, and a 5xx retried by the SDK through this client.
    let double = CloudWatchDouble::start().await;
    let cloudwatch =
        aws_sdk_cloudwatch::Client::new(&with_function_transport(local_sdk_config(double.url())));
    let sink = CloudWatchSink::new(cloudwatch, "DevLake/Autopilot");
    double.fail_next(1, 503);
    sink.emit(&[Datum::count("RunSuccess", 1.0)]).await.unwrap();
    assert_eq!(double.requests(), 2, "one retry after the 503");
    assert_eq!(double.datums()[0].metric_name, "RunSuccess");

    // Secrets Manager.
    let secrets = LocalSecretsManager::start().await;
    let arn = "arn:aws:secretsmanager:us-east-1:123456789012:secret:devlake/api-key-AbCdEf";
    secrets.set_string(arn, "dlk-transport");
    let value = devlake_autopilot::secrets::resolve_secret(
        None,
        Some(arn.into()),
        &with_function_transport(secrets.sdk()),
    )
    .await
    .unwrap();
    assert_eq!(value.as_deref(), Some("dlk-transport"));
}

#[tokio::test]
async fn an_unreachable_aws_endpoint_is_a_retryable_connection_failure() {
    // Nothing listens on port 9 of the loopback: the connection is refused at once.
    let dynamodb = aws_sdk_dynamodb::Client::new(&with_function_transport(local_sdk_config(
        "http://127.0.0.1:9",
    )));
    let err = dynamodb
        .describe_table()
        .table_name("t")
        .send()
        .await
        .unwrap_err();
    match &err {
        aws_sdk_dynamodb::error::SdkError::DispatchFailure(failure) => {
            assert!(failure.is_io(), "{err:?}")
        }
        other => panic!("a dispatch failure, got {other:?}"),
    }
    assert!(devlake_autopilot::aws_error::is_retryable(&err), "{err:?}");
}
