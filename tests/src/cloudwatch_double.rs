//! A recording CloudWatch double that speaks what the current `aws-sdk-cloudwatch` sends: Smithy
//! RPC v2 CBOR (`POST /service/GraniteServiceVersion20100801/operation/<Op>`, header
//! `smithy-protocol: rpc-v2-cbor`, CBOR body, gzip-compressed once it passes 10 KiB). moto and
//! LocalStack cannot serve this protocol here, so CloudWatch emission is tested against this double
//! over real HTTP with the real SDK client, and assertions are on what the client actually sent.
//!
//! Only `PutMetricData` is implemented; it checks the request like CloudWatch does where a bug of
//! ours could hide (namespace present and not `AWS/`, at most 1,000 datums, a name on every datum,
//! `Values`/`Counts` of equal length) and answers with CloudWatch's query-compatible error codes.

use std::io::Read;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use anyhow::{anyhow, bail, Context, Result};
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, Method, Response, StatusCode, Uri};
use axum::routing::get;
use axum::Router;
use ciborium::Value;
use serde::Serialize;

use crate::serve::{serve_in_background, Serving};

/// The URL prefix of every operation of the CloudWatch service.
pub const OPERATION_PREFIX: &str = "/service/GraniteServiceVersion20100801/operation/";
/// CloudWatch's limit of datums per PutMetricData call.
pub const MAX_DATUMS_PER_REQUEST: usize = 1000;

/// One `MetricDatum` as received.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RecordedDatum {
    pub namespace: String,
    pub metric_name: String,
    pub value: Option<f64>,
    pub unit: Option<String>,
    /// `(Name, Value)` pairs in the order sent.
    pub dimensions: Vec<(String, String)>,
    /// Seconds since the epoch, when the client set one.
    pub timestamp: Option<f64>,
    pub values: Vec<f64>,
    pub counts: Vec<f64>,
    pub storage_resolution: Option<i64>,
}

/// One request as received, whatever the answer was.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RecordedRequest {
    pub operation: String,
    /// `Content-Encoding` of the request body (`gzip` once the SDK compresses).
    pub content_encoding: Option<String>,
    pub datums: usize,
    /// The status the double answered with.
    pub status: u16,
    /// Request headers as sent (names lower-case), e.g. to check `smithy-protocol`.
    pub headers: Vec<(String, String)>,
}

#[derive(Default)]
struct Inner {
    datums: Vec<RecordedDatum>,
    requests: Vec<RecordedRequest>,
    fail_remaining: usize,
    fail_status: u16,
}

type Shared = Arc<Mutex<Inner>>;

/// A running double. Stops serving when dropped.
pub struct CloudWatchDouble {
    url: String,
    state: Shared,
    _serving: Serving,
}

impl CloudWatchDouble {
    /// Starts on a free port of 127.0.0.1, on the current tokio runtime.
    pub async fn start() -> CloudWatchDouble {
        Self::start_on(SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .expect("cannot start the CloudWatch double")
    }

    /// Starts on `addr` (the standalone binary's `--port`).
    pub async fn start_on(addr: SocketAddr) -> Result<CloudWatchDouble> {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot bind {addr}"))?;
        let url = format!("http://{}", listener.local_addr()?);
        let state: Shared = Arc::default();
        let app = router(state.clone());
        let serving = serve_in_background(listener, app);
        Ok(CloudWatchDouble {
            url,
            state,
            _serving: serving,
        })
    }

    /// `http://127.0.0.1:PORT`, the endpoint URL to give the SDK.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Every datum recorded so far, in arrival order.
    pub fn datums(&self) -> Vec<RecordedDatum> {
        self.state.lock().unwrap().datums.clone()
    }

    /// How many `PutMetricData` requests arrived (including ones answered with an error).
    pub fn requests(&self) -> usize {
        self.request_log()
            .iter()
            .filter(|r| r.operation == "PutMetricData")
            .count()
    }

    /// Every request that reached an operation path, in arrival order.
    pub fn request_log(&self) -> Vec<RecordedRequest> {
        self.state.lock().unwrap().requests.clone()
    }

    /// Answers the next `n` requests with a CloudWatch error of HTTP `status` (5xx: internal
    /// error, 429: throttling, other 4xx: invalid parameter). The SDK retries 5xx and throttling
    /// up to its attempt limit, so make `n` cover the retries when a failure must surface.
    pub fn fail_next(&self, n: usize, status: u16) {
        let mut inner = self.state.lock().unwrap();
        inner.fail_remaining = n;
        inner.fail_status = status;
    }

    /// Forgets recorded datums and requests and any pending failures.
    pub fn clear(&self) {
        *self.state.lock().unwrap() = Inner::default();
    }
}

fn router(state: Shared) -> Router {
    Router::new()
        .route("/_recorded", get(recorded).delete(clear_recorded))
        .fallback(operation)
        .with_state(state)
}

async fn recorded(State(state): State<Shared>) -> axum::Json<Vec<RecordedDatum>> {
    axum::Json(state.lock().unwrap().datums.clone())
}

async fn clear_recorded(State(state): State<Shared>) -> StatusCode {
    *state.lock().unwrap() = Inner::default();
    StatusCode::NO_CONTENT
}

/// A CloudWatch error: `__type` in the CBOR body plus the query-compatibility header from which
/// the SDK takes the error code.
struct ApiError {
    status: u16,
    code: &'static str,
    fault: &'static str,
    shape: &'static str,
    message: String,
}

impl ApiError {
    fn for_status(status: u16, message: impl Into<String>) -> ApiError {
        let (code, fault, shape) = match status {
            500..=599 => ("InternalServiceError", "Receiver", "InternalServiceFault"),
            429 => ("Throttling", "Sender", "ThrottlingException"),
            _ => (
                "InvalidParameterValue",
                "Sender",
                "InvalidParameterValueException",
            ),
        };
        ApiError {
            status,
            code,
            fault,
            shape,
            message: message.into(),
        }
    }

    fn invalid(message: impl Into<String>) -> ApiError {
        ApiError::for_status(400, message)
    }

    fn missing(message: impl Into<String>) -> ApiError {
        ApiError {
            status: 400,
            code: "MissingParameter",
            fault: "Sender",
            shape: "MissingRequiredParameterException",
            message: message.into(),
        }
    }

    fn into_response(self) -> Response<Body> {
        let body = cbor_map(vec![
            (
                "__type",
                Value::Text(format!("com.amazonaws.cloudwatch#{}", self.shape)),
            ),
            ("message", Value::Text(self.message)),
        ]);
        cbor_response(self.status, body).headers_mut_with(|h| {
            h.insert(
                "x-amzn-query-error",
                format!("{};{}", self.code, self.fault).parse().unwrap(),
            );
        })
    }
}

trait WithHeaders {
    fn headers_mut_with(self, f: impl FnOnce(&mut HeaderMap)) -> Self;
}

impl WithHeaders for Response<Body> {
    fn headers_mut_with(mut self, f: impl FnOnce(&mut HeaderMap)) -> Self {
        f(self.headers_mut());
        self
    }
}

fn cbor_map(entries: Vec<(&str, Value)>) -> Vec<u8> {
    let map = Value::Map(
        entries
            .into_iter()
            .map(|(k, v)| (Value::Text(k.to_string()), v))
            .collect(),
    );
    let mut out = Vec::new();
    ciborium::into_writer(&map, &mut out).expect("writing CBOR to a Vec cannot fail");
    out
}

fn cbor_response(status: u16, body: Vec<u8>) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("smithy-protocol", "rpc-v2-cbor")
        .header("content-type", "application/cbor")
        .header("x-amzn-requestid", "00000000-0000-4000-8000-000000000000")
        .body(Body::from(body))
        .expect("static headers are valid")
}

async fn operation(
    State(state): State<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response<Body> {
    let Some(op) = uri.path().strip_prefix(OPERATION_PREFIX) else {
        return Response::builder()
            .status(404)
            .header("content-type", "text/plain")
            .body(Body::from(format!("no route for {method} {}", uri.path())))
            .unwrap();
    };
    let op = op.to_string();
    let content_encoding = headers
        .get("content-encoding")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);

    let (status, datums, response) = match handle(&state, &op, &method, &headers, &body) {
        Ok(datums) => {
            let n = datums.len();
            state.lock().unwrap().datums.extend(datums);
            (200, n, cbor_response(200, cbor_map(Vec::new())))
        }
        Err(e) => (e.status, 0, e.into_response()),
    };
    state.lock().unwrap().requests.push(RecordedRequest {
        operation: op,
        content_encoding,
        datums,
        status,
        headers: headers
            .iter()
            .map(|(k, v)| {
                (
                    k.to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
    });
    response
}

fn handle(
    state: &Shared,
    op: &str,
    method: &Method,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Vec<RecordedDatum>, ApiError> {
    if op != "PutMetricData" {
        return Err(ApiError {
            status: 404,
            code: "UnknownOperation",
            fault: "Sender",
            shape: "UnknownOperationException",
            message: format!("the CloudWatch double does not implement {op}"),
        });
    }
    if method != Method::POST {
        return Err(ApiError::invalid(format!("{method} is not POST")));
    }
    if headers.get("smithy-protocol").and_then(|v| v.to_str().ok()) != Some("rpc-v2-cbor") {
        return Err(ApiError::invalid(
            "missing header smithy-protocol: rpc-v2-cbor",
        ));
    }
    {
        let mut inner = state.lock().unwrap();
        if inner.fail_remaining > 0 {
            inner.fail_remaining -= 1;
            let status = inner.fail_status;
            return Err(ApiError::for_status(status, "injected failure"));
        }
    }
    let raw = decode_body(headers, body).map_err(|e| ApiError::invalid(format!("{e:#}")))?;
    let value: Value = ciborium::from_reader(raw.as_slice())
        .map_err(|e| ApiError::invalid(format!("bad CBOR: {e}")))?;
    parse_put_metric_data(&value)
}

/// The request body without its `Content-Encoding` (the SDK gzips large PutMetricData bodies).
pub(crate) fn decode_body(headers: &HeaderMap, body: &[u8]) -> Result<Vec<u8>> {
    match headers
        .get("content-encoding")
        .and_then(|v| v.to_str().ok())
    {
        None | Some("identity") => Ok(body.to_vec()),
        Some("gzip") => {
            let mut out = Vec::new();
            flate2::read::GzDecoder::new(body)
                .read_to_end(&mut out)
                .context("bad gzip body")?;
            Ok(out)
        }
        Some(other) => bail!("unsupported content-encoding {other}"),
    }
}

fn field<'a>(map: &'a [(Value, Value)], key: &str) -> Option<&'a Value> {
    map.iter()
        .find(|(k, _)| k.as_text() == Some(key))
        .map(|(_, v)| v)
}

fn as_f64(v: &Value) -> Result<f64> {
    match v {
        Value::Float(f) => Ok(*f),
        Value::Integer(i) => Ok(i128::from(*i) as f64),
        other => Err(anyhow!("expected a number, got {other:?}")),
    }
}

fn numbers(v: Option<&Value>, what: &str) -> Result<Vec<f64>, ApiError> {
    match v {
        None => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .iter()
            .map(as_f64)
            .collect::<Result<_>>()
            .map_err(|e| ApiError::invalid(format!("{what}: {e}"))),
        Some(other) => Err(ApiError::invalid(format!(
            "{what} is not a list: {other:?}"
        ))),
    }
}

fn parse_put_metric_data(value: &Value) -> Result<Vec<RecordedDatum>, ApiError> {
    let top = value
        .as_map()
        .ok_or_else(|| ApiError::invalid("request body is not a CBOR map"))?;
    let namespace = match field(top, "Namespace") {
        Some(Value::Text(ns)) if !ns.is_empty() => ns.clone(),
        _ => return Err(ApiError::missing("The parameter Namespace is required.")),
    };
    if namespace.starts_with("AWS/") {
        return Err(ApiError::invalid(
            "The value AWS/ for parameter Namespace is invalid.",
        ));
    }
    let data = match field(top, "MetricData") {
        Some(Value::Array(items)) => items,
        _ => return Err(ApiError::missing("The parameter MetricData is required.")),
    };
    if data.len() > MAX_DATUMS_PER_REQUEST {
        return Err(ApiError::invalid(format!(
            "The collection MetricData must not have a size greater than {MAX_DATUMS_PER_REQUEST}; got {}.",
            data.len()
        )));
    }
    data.iter()
        .enumerate()
        .map(|(i, d)| parse_datum(&namespace, i, d))
        .collect()
}

fn parse_datum(namespace: &str, index: usize, d: &Value) -> Result<RecordedDatum, ApiError> {
    let where_ = format!("MetricData.member.{}", index + 1);
    let m = d
        .as_map()
        .ok_or_else(|| ApiError::invalid(format!("{where_} is not a map")))?;
    let metric_name = match field(m, "MetricName") {
        Some(Value::Text(n)) if !n.is_empty() => n.clone(),
        _ => {
            return Err(ApiError::missing(format!(
                "The parameter {where_}.MetricName is required."
            )))
        }
    };
    let value = field(m, "Value")
        .map(as_f64)
        .transpose()
        .map_err(|e| ApiError::invalid(format!("{where_}.Value: {e}")))?;
    let unit = match field(m, "Unit") {
        None => None,
        Some(Value::Text(u)) => Some(u.clone()),
        Some(other) => return Err(ApiError::invalid(format!("{where_}.Unit: {other:?}"))),
    };
    let dimensions = match field(m, "Dimensions") {
        None => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .map(|dim| {
                let dm = dim
                    .as_map()
                    .ok_or_else(|| ApiError::invalid(format!("{where_}.Dimensions: not a map")))?;
                match (field(dm, "Name"), field(dm, "Value")) {
                    (Some(Value::Text(n)), Some(Value::Text(v))) => Ok((n.clone(), v.clone())),
                    _ => Err(ApiError::missing(format!(
                        "{where_}.Dimensions needs Name and Value"
                    ))),
                }
            })
            .collect::<Result<_, _>>()?,
        Some(other) => {
            return Err(ApiError::invalid(format!(
                "{where_}.Dimensions is not a list: {other:?}"
            )))
        }
    };
    // CloudWatch's rules for a dimension (Dimension in the CloudWatch API reference): one bad
    // name or value refuses the whole request.
    for (n, (name, value)) in dimensions.iter().enumerate() {
        let printable = |s: &str| s.chars().all(|c| c.is_ascii() && !c.is_ascii_control());
        let at = format!("{where_}.Dimensions.member.{}", n + 1);
        if name.trim().is_empty() || name.len() > 255 || name.starts_with(':') || !printable(name) {
            return Err(ApiError::invalid(format!(
                "The value {name:?} for parameter {at}.Name is invalid."
            )));
        }
        if value.trim().is_empty() || value.len() > 1024 || !printable(value) {
            return Err(ApiError::invalid(format!(
                "The value {value:?} for parameter {at}.Value is invalid."
            )));
        }
    }
    if dimensions.len() > 30 {
        return Err(ApiError::invalid(format!(
            "{where_}.Dimensions has more than 30 entries"
        )));
    }
    // Smithy CBOR timestamps are tag 1 (epoch seconds) around a number.
    let timestamp = match field(m, "Timestamp") {
        None => None,
        Some(Value::Tag(1, inner)) => {
            Some(as_f64(inner).map_err(|e| ApiError::invalid(format!("{where_}.Timestamp: {e}")))?)
        }
        Some(other) => {
            return Err(ApiError::invalid(format!(
                "{where_}.Timestamp is not an epoch-seconds tag: {other:?}"
            )))
        }
    };
    let values = numbers(field(m, "Values"), &format!("{where_}.Values"))?;
    let counts = numbers(field(m, "Counts"), &format!("{where_}.Counts"))?;
    if !counts.is_empty() && counts.len() != values.len() {
        return Err(ApiError::invalid(format!(
            "{where_}: Values and Counts must have the same length"
        )));
    }
    if value.is_some() && !values.is_empty() {
        return Err(ApiError {
            status: 400,
            code: "InvalidParameterCombination",
            fault: "Sender",
            shape: "InvalidParameterCombinationException",
            message: format!("{where_}: Value and Values are mutually exclusive"),
        });
    }
    let storage_resolution = match field(m, "StorageResolution") {
        None => None,
        Some(Value::Integer(i)) => Some(i128::from(*i) as i64),
        Some(other) => {
            return Err(ApiError::invalid(format!(
                "{where_}.StorageResolution: {other:?}"
            )))
        }
    };
    Ok(RecordedDatum {
        namespace: namespace.to_string(),
        metric_name,
        value,
        unit,
        dimensions,
        timestamp,
        values,
        counts,
        storage_resolution,
    })
}
