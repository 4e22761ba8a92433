//! A recording reverse proxy in front of the local AWS stand-ins (DynamoDB Local, the CloudWatch
//! double, a Secrets Manager double) that notes every AWS API call and which function made it.
//!
//! Nothing local enforces IAM: DynamoDB Local and the doubles answer any signed request. So the
//! calls are recorded on the wire, where the real SDK clients of a function put them, and checked
//! afterwards against the function's role in `template.yaml` (see `iam_policy`).
//!
//! Each function identity gets its own proxy endpoint (a port), and its SDK configuration points
//! every service at that one endpoint; the proxy tells the services apart by their wire protocol
//! and forwards to the matching upstream:
//!
//! - DynamoDB and Secrets Manager speak AWS JSON: `X-Amz-Target: DynamoDB_20120810.<Op>` or
//!   `secretsmanager.<Op>`, the body names the table(s), index, keys, or the secret.
//! - CloudWatch speaks Smithy RPC v2 CBOR: `POST /service/GraniteServiceVersion20100801/operation/<Op>`,
//!   the (maybe gzipped) CBOR body names the namespace.
//!
//! A proxy started with [`AwsRecorder::switchable_endpoint`] attributes calls to whichever
//! function was last named with `PUT /_recorder/function` (body: the name); that is how the local
//! demo, whose functions share one environment under `cargo lambda watch`, attributes calls
//! while it invokes one function at a time. `GET /_recorder/calls` returns everything recorded
//! so far as JSON, on every proxy endpoint.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Response, StatusCode};
use axum::routing::{get, put};
use axum::Router;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::cloudwatch_double::{decode_body, OPERATION_PREFIX};
use crate::serve::{serve_in_background, Serving};

/// The IAM service prefix of a recorded call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AwsService {
    DynamoDb,
    CloudWatch,
    SecretsManager,
    /// A request the proxy could not place: no upstream is asked, the caller gets a 400.
    Unknown,
}

impl AwsService {
    /// The service prefix of the IAM action names (`dynamodb:GetItem`).
    pub fn iam_prefix(self) -> &'static str {
        match self {
            AwsService::DynamoDb => "dynamodb",
            AwsService::CloudWatch => "cloudwatch",
            AwsService::SecretsManager => "secretsmanager",
            AwsService::Unknown => "unknown",
        }
    }
}

/// One table a DynamoDB request touches. A transaction has one part per item (IAM authorises
/// each by its own action), a batch one part per table, other operations one part.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TablePart {
    /// Inside `TransactWriteItems`/`TransactGetItems`: the item's element name (`Put`, `Update`,
    /// `Delete`, `ConditionCheck`, `Get`); `None` elsewhere.
    pub element: Option<String>,
    pub table: String,
    /// `IndexName` of a Query or Scan.
    pub index: Option<String>,
    /// Values of the table's partition key this part reads or writes, as far as the request says
    /// (keys, items, an equality in a Query's key condition); empty for a Scan.
    pub partition_keys: Vec<String>,
}

/// One AWS API request as it went over the wire (each retry is a request of its own).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordedCall {
    /// The function identity of the endpoint that received it.
    pub function: String,
    pub service: AwsService,
    /// The API operation (`TransactWriteItems`, `PutMetricData`, `GetSecretValue`).
    pub operation: String,
    /// DynamoDB: what the request touches.
    pub tables: Vec<TablePart>,
    /// CloudWatch: the request's `Namespace`.
    pub namespace: Option<String>,
    /// Secrets Manager: the `SecretId` asked for.
    pub secret_id: Option<String>,
    /// What could not be decoded, if anything (the evaluator refuses such calls).
    pub problem: Option<String>,
    /// The status the upstream answered with (0: not forwarded).
    pub status: u16,
}

/// Where the proxy forwards each service; a service without an upstream is answered 502.
#[derive(Debug, Clone, Default)]
pub struct Upstreams {
    pub dynamodb: Option<String>,
    pub cloudwatch: Option<String>,
    pub secretsmanager: Option<String>,
}

struct Shared {
    upstreams: Upstreams,
    /// The partition key attribute of the tables (from `template.yaml`'s StateTable).
    partition_key: String,
    calls: Mutex<Vec<RecordedCall>>,
    http: reqwest::Client,
}

/// The recorder; dropping it stops every proxy endpoint.
pub struct AwsRecorder {
    shared: Arc<Shared>,
    endpoints: Mutex<HashMap<String, String>>,
    /// Dropping them (with the recorder) stops the proxies.
    servers: Mutex<Vec<Serving>>,
}

/// Per-endpoint state: the shared log and who the calls are attributed to.
#[derive(Clone)]
struct Endpoint {
    shared: Arc<Shared>,
    function: Arc<Mutex<String>>,
}

impl AwsRecorder {
    /// A recorder forwarding to `upstreams`. The partition key name is read from the table
    /// definition in `template.yaml`.
    pub fn new(upstreams: Upstreams) -> Result<AwsRecorder> {
        let definition = crate::stack::state_table_definition()?;
        let partition_key = definition
            .key_schema
            .iter()
            .find(|k| k.key_type() == &aws_sdk_dynamodb::types::KeyType::Hash)
            .map(|k| k.attribute_name().to_string())
            .context("StateTable has no HASH key")?;
        let http = reqwest::Client::builder()
            // Only loopback upstreams: never through a proxy from the environment.
            .no_proxy()
            .build()?;
        Ok(AwsRecorder {
            shared: Arc::new(Shared {
                upstreams,
                partition_key,
                calls: Mutex::new(Vec::new()),
                http,
            }),
            endpoints: Mutex::new(HashMap::new()),
            servers: Mutex::new(Vec::new()),
        })
    }

    /// The endpoint URL whose calls are attributed to `function` (started on first use on a
    /// free port of 127.0.0.1). Give it to the function's SDK configuration as its endpoint for
    /// every service.
    pub async fn endpoint(&self, function: &str) -> String {
        if let Some(url) = self.endpoints.lock().unwrap().get(function) {
            return url.clone();
        }
        let url = self
            .serve(SocketAddr::from(([127, 0, 0, 1], 0)), function)
            .await
            .expect("cannot start a recording proxy endpoint");
        self.endpoints
            .lock()
            .unwrap()
            .insert(function.to_string(), url.clone());
        url
    }

    /// An endpoint on `addr` attributing calls to the function last set with
    /// `PUT /_recorder/function` (initially `initial`).
    pub async fn switchable_endpoint(&self, addr: SocketAddr, initial: &str) -> Result<String> {
        self.serve(addr, initial).await
    }

    async fn serve(&self, addr: SocketAddr, function: &str) -> Result<String> {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot bind {addr}"))?;
        let url = format!("http://{}", listener.local_addr()?);
        let state = Endpoint {
            shared: self.shared.clone(),
            function: Arc::new(Mutex::new(function.to_string())),
        };
        let app = Router::new()
            .route("/_recorder/calls", get(recorded_calls))
            .route("/_recorder/function", put(set_function))
            .fallback(forward)
            .with_state(state);
        let serving = serve_in_background(listener, app);
        self.servers.lock().unwrap().push(serving);
        Ok(url)
    }

    /// Every call recorded so far, in arrival order.
    pub fn calls(&self) -> Vec<RecordedCall> {
        self.shared.calls.lock().unwrap().clone()
    }

    /// Forgets the recorded calls.
    pub fn clear(&self) {
        self.shared.calls.lock().unwrap().clear();
    }
}

async fn recorded_calls(State(state): State<Endpoint>) -> axum::Json<Vec<RecordedCall>> {
    axum::Json(state.shared.calls.lock().unwrap().clone())
}

async fn set_function(State(state): State<Endpoint>, body: String) -> StatusCode {
    let name = body.trim();
    if name.is_empty() {
        return StatusCode::BAD_REQUEST;
    }
    *state.function.lock().unwrap() = name.to_string();
    StatusCode::NO_CONTENT
}

async fn forward(State(state): State<Endpoint>, request: Request) -> Response<Body> {
    let (parts, body) = request.into_parts();
    let body = match axum::body::to_bytes(body, usize::MAX).await {
        Ok(b) => b,
        Err(e) => {
            return plain(
                StatusCode::BAD_REQUEST,
                format!("cannot read the body: {e}"),
            )
        }
    };
    let function = state.function.lock().unwrap().clone();
    let mut call = decode(
        &function,
        parts.uri.path(),
        &parts.headers,
        &body,
        &state.shared.partition_key,
    );
    let upstream = match call.service {
        AwsService::DynamoDb => state.shared.upstreams.dynamodb.clone(),
        AwsService::CloudWatch => state.shared.upstreams.cloudwatch.clone(),
        AwsService::SecretsManager => state.shared.upstreams.secretsmanager.clone(),
        AwsService::Unknown => None,
    };
    let response = match upstream {
        None => plain(
            if call.service == AwsService::Unknown {
                StatusCode::BAD_REQUEST
            } else {
                StatusCode::BAD_GATEWAY
            },
            format!(
                "aws-recorder: no upstream for {} {}",
                call.service.iam_prefix(),
                call.operation
            ),
        ),
        Some(base) => {
            let path = parts
                .uri
                .path_and_query()
                .map(|p| p.as_str())
                .unwrap_or("/");
            let mut out = state
                .shared
                .http
                .request(parts.method.clone(), format!("{base}{path}"))
                .body(body);
            for (name, value) in &parts.headers {
                if !matches!(
                    name.as_str(),
                    "host" | "content-length" | "connection" | "transfer-encoding"
                ) {
                    out = out.header(name, value);
                }
            }
            match out.send().await {
                Err(e) => plain(
                    StatusCode::BAD_GATEWAY,
                    format!("aws-recorder: upstream {base}: {e}"),
                ),
                Ok(answer) => {
                    let mut response = Response::builder().status(answer.status().as_u16());
                    for (name, value) in answer.headers() {
                        if !matches!(
                            name.as_str(),
                            "content-length" | "transfer-encoding" | "connection"
                        ) {
                            response = response.header(name, value);
                        }
                    }
                    match answer.bytes().await {
                        Ok(bytes) => response.body(Body::from(bytes)).unwrap_or_else(|e| {
                            plain(StatusCode::BAD_GATEWAY, format!("aws-recorder: {e}"))
                        }),
                        Err(e) => plain(
                            StatusCode::BAD_GATEWAY,
                            format!("aws-recorder: upstream body: {e}"),
                        ),
                    }
                }
            }
        }
    };
    call.status = response.status().as_u16();
    state.shared.calls.lock().unwrap().push(call);
    response
}

fn plain(status: StatusCode, message: String) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("content-type", "text/plain")
        .body(Body::from(message))
        .expect("static response parts")
}

/// What a request asks of which service, from its headers, path and body.
pub fn decode(
    function: &str,
    path: &str,
    headers: &HeaderMap,
    body: &Bytes,
    partition_key: &str,
) -> RecordedCall {
    let mut call = RecordedCall {
        function: function.to_string(),
        service: AwsService::Unknown,
        operation: String::new(),
        tables: Vec::new(),
        namespace: None,
        secret_id: None,
        problem: None,
        status: 0,
    };
    let target = headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if let Some(op) = path.strip_prefix(OPERATION_PREFIX) {
        call.service = AwsService::CloudWatch;
        call.operation = op.to_string();
        match decode_body(headers, body).and_then(|raw| {
            ciborium::from_reader::<ciborium::Value, _>(raw.as_slice()).map_err(Into::into)
        }) {
            Ok(ciborium::Value::Map(map)) => {
                call.namespace = map
                    .iter()
                    .find(|(k, _)| k.as_text() == Some("Namespace"))
                    .and_then(|(_, v)| v.as_text())
                    .map(str::to_string);
            }
            Ok(_) => call.problem = Some("CBOR body is not a map".into()),
            Err(e) => call.problem = Some(format!("undecodable CBOR body: {e:#}")),
        }
        return call;
    }
    let (service, op) = match target.split_once('.') {
        Some(("DynamoDB_20120810", op)) => (AwsService::DynamoDb, op),
        Some(("secretsmanager", op)) => (AwsService::SecretsManager, op),
        _ => {
            call.operation = format!("{path} (X-Amz-Target: {target:?})");
            call.problem = Some("not a DynamoDB, CloudWatch or Secrets Manager request".into());
            return call;
        }
    };
    call.service = service;
    call.operation = op.to_string();
    let json: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => {
            call.problem = Some(format!("body is not JSON: {e}"));
            return call;
        }
    };
    match service {
        AwsService::SecretsManager => {
            call.secret_id = json["SecretId"].as_str().map(str::to_string);
        }
        AwsService::DynamoDb => match dynamo_parts(op, &json, partition_key) {
            Ok(parts) => call.tables = parts,
            Err(problem) => call.problem = Some(problem),
        },
        _ => {}
    }
    call
}

/// The tables (and per-item elements) of a DynamoDB JSON request.
fn dynamo_parts(op: &str, body: &Value, pk: &str) -> Result<Vec<TablePart>, String> {
    let keys_of = |items: &[&Value]| -> Vec<String> {
        let mut out: Vec<String> = items
            .iter()
            .filter_map(|item| attribute_text(&item[pk]))
            .collect();
        out.sort();
        out.dedup();
        out
    };
    match op {
        "TransactWriteItems" | "TransactGetItems" => {
            let items = body["TransactItems"]
                .as_array()
                .ok_or("TransactItems is not a list")?;
            items
                .iter()
                .map(|item| {
                    let (element, inner) = item
                        .as_object()
                        .and_then(|o| o.iter().next())
                        .ok_or("an empty transaction item")?;
                    let table = inner["TableName"]
                        .as_str()
                        .ok_or_else(|| format!("{element} without TableName"))?;
                    let key = if inner["Item"].is_object() {
                        &inner["Item"]
                    } else {
                        &inner["Key"]
                    };
                    Ok(TablePart {
                        element: Some(element.clone()),
                        table: table.to_string(),
                        index: None,
                        partition_keys: keys_of(&[key]),
                    })
                })
                .collect()
        }
        "BatchGetItem" | "BatchWriteItem" => {
            let tables = body["RequestItems"]
                .as_object()
                .ok_or("RequestItems is not a map")?;
            Ok(tables
                .iter()
                .map(|(table, request)| {
                    let keys: Vec<&Value> = if op == "BatchGetItem" {
                        request["Keys"]
                            .as_array()
                            .map(|k| k.iter().collect())
                            .unwrap_or_default()
                    } else {
                        request
                            .as_array()
                            .map(|writes| {
                                writes
                                    .iter()
                                    .map(|w| {
                                        if w["PutRequest"].is_object() {
                                            &w["PutRequest"]["Item"]
                                        } else {
                                            &w["DeleteRequest"]["Key"]
                                        }
                                    })
                                    .collect()
                            })
                            .unwrap_or_default()
                    };
                    TablePart {
                        element: None,
                        table: table.clone(),
                        index: None,
                        partition_keys: keys_of(&keys),
                    }
                })
                .collect())
        }
        "ExecuteStatement" | "BatchExecuteStatement" | "ExecuteTransaction" => Err(format!(
            "PartiQL ({op}) names its table inside the statement; not decoded"
        )),
        _ => {
            let Some(table) = body["TableName"].as_str() else {
                // ListTables and the like act on no table.
                return Ok(Vec::new());
            };
            let partition_keys = if body["Key"].is_object() {
                keys_of(&[&body["Key"]])
            } else if body["Item"].is_object() {
                keys_of(&[&body["Item"]])
            } else if op == "Query" {
                query_partition_key(body, pk).into_iter().collect()
            } else {
                Vec::new()
            };
            Ok(vec![TablePart {
                element: None,
                table: table.to_string(),
                index: body["IndexName"].as_str().map(str::to_string),
                partition_keys,
            }])
        }
    }
}

/// The partition key value a Query asks for: `<name> = <value>` in `KeyConditionExpression`
/// (names and values through their placeholders), or the legacy `KeyConditions` EQ.
fn query_partition_key(body: &Value, pk: &str) -> Option<String> {
    if let Some(expression) = body["KeyConditionExpression"].as_str() {
        for clause in expression.split(" AND ").chain(expression.split(" and ")) {
            let Some((left, right)) = clause.split_once('=') else {
                continue;
            };
            let (left, right) = (
                left.trim().trim_start_matches('('),
                right.trim().trim_end_matches(')'),
            );
            let name = if left.starts_with('#') {
                body["ExpressionAttributeNames"][left].as_str()
            } else {
                Some(left)
            };
            if name == Some(pk) {
                return attribute_text(&body["ExpressionAttributeValues"][right]);
            }
        }
        return None;
    }
    let condition = &body["KeyConditions"][pk];
    (condition["ComparisonOperator"] == "EQ")
        .then(|| attribute_text(&condition["AttributeValueList"][0]))
        .flatten()
}

/// The text of a scalar DynamoDB JSON attribute value (`{"S": "x"}`, `{"N": "1"}`, `{"B": ".."}`).
fn attribute_text(value: &Value) -> Option<String> {
    ["S", "N", "B"]
        .iter()
        .find_map(|t| value[t].as_str().map(str::to_string))
}

#[cfg(test)]
mod tests;
