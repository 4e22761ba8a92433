//! CloudWatch metric emission behind a small trait. Per-project detail stays in Prometheus;
//! CloudWatch gets a handful of run-level series (each dimension combination costs money).

use std::sync::Mutex;

use aws_sdk_cloudwatch::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_cloudwatch::types::{Dimension, MetricDatum, StandardUnit};
use thiserror::Error;

/// Units this tool emits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Count,
    Seconds,
    Milliseconds,
    None,
}

/// One metric value.
#[derive(Debug, Clone, PartialEq)]
pub struct Datum {
    pub name: String,
    pub value: f64,
    pub unit: Unit,
    /// Name/value pairs; empty for run-level series.
    pub dimensions: Vec<(String, String)>,
}

impl Datum {
    pub fn count(name: &str, value: f64) -> Self {
        Datum {
            name: name.to_string(),
            value,
            unit: Unit::Count,
            dimensions: Vec::new(),
        }
    }
    pub fn millis(name: &str, value: f64) -> Self {
        Datum {
            name: name.to_string(),
            value,
            unit: Unit::Milliseconds,
            dimensions: Vec::new(),
        }
    }
    pub fn with_dimension(mut self, name: &str, value: &str) -> Self {
        self.dimensions.push((name.to_string(), value.to_string()));
        self
    }
}

/// Emission failed. Callers log it and go on: metrics never fail a run.
#[derive(Debug, Error)]
#[error("CloudWatch PutMetricData failed: {message}")]
pub struct SinkError {
    pub message: String,
    /// Whether sending again later can help (throttling, 5xx, timeouts, transport errors) rather
    /// than the request being rejected as it is.
    pub retryable: bool,
    #[source]
    pub source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl SinkError {
    pub fn new(message: impl Into<String>, retryable: bool) -> Self {
        SinkError {
            message: message.into(),
            retryable,
            source: None,
        }
    }
}

/// Where run metrics go.
#[async_trait::async_trait]
pub trait MetricsSink: Send + Sync {
    async fn emit(&self, datums: &[Datum]) -> Result<(), SinkError>;
}

/// CloudWatch's limit of datums per PutMetricData call.
pub const MAX_DATUMS_PER_CALL: usize = 1000;

/// Sends datums to CloudWatch with PutMetricData, in batches of at most 1,000.
///
/// Datums carry no timestamp: CloudWatch stamps them on receipt, which is when the run ends, and
/// a run replayed with a `now` from weeks ago (manual invoke) would otherwise be rejected as too
/// old. The client's own retry policy (standard, 3 attempts) handles throttling and 5xx.
#[derive(Debug, Clone)]
pub struct CloudWatchSink {
    client: aws_sdk_cloudwatch::Client,
    namespace: String,
}

impl CloudWatchSink {
    pub fn new(client: aws_sdk_cloudwatch::Client, namespace: impl Into<String>) -> Self {
        CloudWatchSink {
            client,
            namespace: namespace.into(),
        }
    }

    pub fn namespace(&self) -> &str {
        &self.namespace
    }
}

fn standard_unit(unit: Unit) -> StandardUnit {
    match unit {
        Unit::Count => StandardUnit::Count,
        Unit::Seconds => StandardUnit::Seconds,
        Unit::Milliseconds => StandardUnit::Milliseconds,
        Unit::None => StandardUnit::None,
    }
}

fn metric_datum(d: &Datum) -> MetricDatum {
    MetricDatum::builder()
        .metric_name(&d.name)
        .value(d.value)
        .unit(standard_unit(d.unit))
        .set_dimensions(if d.dimensions.is_empty() {
            None
        } else {
            Some(
                d.dimensions
                    .iter()
                    .map(|(name, value)| Dimension::builder().name(name).value(value).build())
                    .collect(),
            )
        })
        .build()
}

type PutError = SdkError<
    aws_sdk_cloudwatch::operation::put_metric_data::PutMetricDataError,
    aws_sdk_cloudwatch::config::http::HttpResponse,
>;

fn sink_error(err: PutError) -> SinkError {
    let status = err.raw_response().map(|r| r.status().as_u16());
    let retryable = match &err {
        SdkError::ServiceError(service) => {
            status.is_some_and(|s| s >= 500)
                || matches!(
                    service.err().code(),
                    Some("Throttling" | "ThrottlingException")
                )
        }
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            true
        }
        _ => false,
    };
    let detail = match err.as_service_error() {
        Some(e) => format!(
            "{} (HTTP {}): {}",
            e.code().unwrap_or("unknown error"),
            status.unwrap_or(0),
            e.message().unwrap_or("no message")
        ),
        None => DisplayErrorContext(&err).to_string(),
    };
    SinkError {
        message: detail,
        retryable,
        source: Some(Box::new(err)),
    }
}

#[async_trait::async_trait]
impl MetricsSink for CloudWatchSink {
    async fn emit(&self, datums: &[Datum]) -> Result<(), SinkError> {
        // CloudWatch rejects the whole call for one NaN/infinite value; drop those alone.
        let finite: Vec<&Datum> = datums
            .iter()
            .filter(|d| {
                let ok = d.value.is_finite();
                if !ok {
                    tracing::warn!(metric = %d.name, value = %d.value, "skipping non-finite metric value");
                }
                ok
            })
            .collect();
        let mut first_error: Option<SinkError> = None;
        let mut failed = 0usize;
        for batch in finite.chunks(MAX_DATUMS_PER_CALL) {
            let result = self
                .client
                .put_metric_data()
                .namespace(&self.namespace)
                .set_metric_data(Some(batch.iter().map(|d| metric_datum(d)).collect()))
                .send()
                .await;
            if let Err(e) = result {
                failed += batch.len();
                let e = sink_error(e);
                tracing::warn!(namespace = %self.namespace, datums = batch.len(), error = %e, "PutMetricData failed");
                first_error.get_or_insert(e);
            }
        }
        match first_error {
            None => Ok(()),
            Some(mut e) => {
                e.message = format!(
                    "{failed} of {} datum(s) not stored: {}",
                    finite.len(),
                    e.message
                );
                Err(e)
            }
        }
    }
}

/// Records every datum; for unit tests of domain logic.
#[derive(Debug, Default)]
pub struct MemorySink {
    datums: Mutex<Vec<Datum>>,
    calls: Mutex<usize>,
    fail: bool,
}

impl MemorySink {
    pub fn new() -> Self {
        Self::default()
    }

    /// A sink whose every `emit` fails (and records nothing), to check that metrics never fail a run.
    pub fn failing() -> Self {
        MemorySink {
            fail: true,
            ..Self::default()
        }
    }

    /// Everything emitted so far, in order.
    pub fn datums(&self) -> Vec<Datum> {
        self.datums.lock().unwrap().clone()
    }

    /// The datums named `name`.
    pub fn named(&self, name: &str) -> Vec<Datum> {
        self.datums()
            .into_iter()
            .filter(|d| d.name == name)
            .collect()
    }

    /// How many times `emit` was called.
    pub fn calls(&self) -> usize {
        *self.calls.lock().unwrap()
    }
}

#[async_trait::async_trait]
impl MetricsSink for MemorySink {
    async fn emit(&self, datums: &[Datum]) -> Result<(), SinkError> {
        *self.calls.lock().unwrap() += 1;
        if self.fail {
            return Err(SinkError::new("memory sink set to fail", true));
        }
        self.datums.lock().unwrap().extend_from_slice(datums);
        Ok(())
    }
}

/// Discards everything (metrics switched off).
#[derive(Debug, Default, Clone, Copy)]
pub struct NoopSink;

#[async_trait::async_trait]
impl MetricsSink for NoopSink {
    async fn emit(&self, _datums: &[Datum]) -> Result<(), SinkError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn memory_sink_records_in_order_and_can_fail() {
        let sink = MemorySink::new();
        sink.emit(&[Datum::count("a", 1.0)]).await.unwrap();
        sink.emit(&[Datum::millis("b", 2.0).with_dimension("plugin", "github")])
            .await
            .unwrap();
        assert_eq!(sink.calls(), 2);
        assert_eq!(sink.datums().len(), 2);
        assert_eq!(
            sink.named("b")[0].dimensions,
            vec![("plugin".to_string(), "github".to_string())]
        );

        let failing = MemorySink::failing();
        let err = failing.emit(&[Datum::count("a", 1.0)]).await.unwrap_err();
        assert!(err.retryable);
        assert!(failing.datums().is_empty());
        assert_eq!(failing.calls(), 1);
    }

    #[test]
    fn units_map_to_cloudwatch_units() {
        let d = metric_datum(&Datum {
            name: "x".into(),
            value: 3.5,
            unit: Unit::Seconds,
            dimensions: vec![],
        });
        assert_eq!(d.unit(), Some(&StandardUnit::Seconds));
        assert_eq!(d.value(), Some(3.5));
        assert!(d.dimensions().is_empty());
        assert!(d.timestamp().is_none());
        assert_eq!(standard_unit(Unit::None), StandardUnit::None);
        assert_eq!(standard_unit(Unit::Count), StandardUnit::Count);
        assert_eq!(
            standard_unit(Unit::Milliseconds),
            StandardUnit::Milliseconds
        );
    }
}
