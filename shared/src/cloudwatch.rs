//! CloudWatch metric emission behind a small trait. Per-project detail stays in Prometheus;
//! CloudWatch gets a handful of run-level series (each dimension combination costs money).
//!
//! Both jobs write into one namespace, so every datum a job sends carries the dimension
//! [`FUNCTION_DIMENSION`] (`automation` / `monitor`). The runtimes set it once on their
//! [`CloudWatchSink`]; domain code never repeats it. The series both jobs emit are built by
//! [`Datum::run_success`], [`Datum::run_duration_ms`] and [`Datum::errors`], so their names and
//! units cannot drift apart.

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

/// The dimension that tells the jobs' datums apart in the shared namespace.
pub const FUNCTION_DIMENSION: &str = "Function";

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
    /// A 1/0 flag (unit None), e.g. `DevLakeUp`.
    pub fn flag(name: &str, on: bool) -> Self {
        Datum {
            name: name.to_string(),
            value: if on { 1.0 } else { 0.0 },
            unit: Unit::None,
            dimensions: Vec::new(),
        }
    }
    pub fn with_dimension(mut self, name: &str, value: &str) -> Self {
        self.dimensions.push((name.to_string(), value.to_string()));
        self
    }

    /// `RunSuccess`: 1 when the run ended `ok`, else 0. Sent by both jobs after every run.
    pub fn run_success(success: bool) -> Self {
        Datum::flag("RunSuccess", success)
    }

    /// `RunDurationMs`: how long the run took. Sent by both jobs after every run.
    pub fn run_duration_ms(duration_ms: u64) -> Self {
        Datum::millis("RunDurationMs", duration_ms as f64)
    }

    /// `Errors`: items that failed in the run, plus one when the run stopped (function error).
    pub fn errors(count: u64) -> Self {
        Datum::count("Errors", count as f64)
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
    /// Added to every datum sent, ahead of the datum's own dimensions.
    dimensions: Vec<(String, String)>,
}

impl CloudWatchSink {
    pub fn new(client: aws_sdk_cloudwatch::Client, namespace: impl Into<String>) -> Self {
        CloudWatchSink {
            client,
            namespace: namespace.into(),
            dimensions: Vec::new(),
        }
    }

    /// Adds `name=value` to every datum this sink sends (a datum that sets `name` itself keeps
    /// its own value). The runtimes use it for [`FUNCTION_DIMENSION`].
    pub fn with_dimension(mut self, name: &str, value: &str) -> Self {
        self.dimensions.retain(|(n, _)| n != name);
        self.dimensions.push((name.to_string(), value.to_string()));
        self
    }

    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// The dimensions added to every datum.
    pub fn dimensions(&self) -> &[(String, String)] {
        &self.dimensions
    }

    /// `d` as sent: the sink's dimensions first, then the datum's own, each made acceptable to
    /// CloudWatch ([`dimension_value`]), or why it cannot be sent at all.
    fn metric_datum(&self, d: &Datum) -> Result<MetricDatum, String> {
        let mut dimensions: Vec<(String, String)> = self
            .dimensions
            .iter()
            .filter(|(name, _)| !d.dimensions.iter().any(|(own, _)| own == name))
            .cloned()
            .collect();
        dimensions.extend(d.dimensions.iter().cloned());
        if dimensions.len() > MAX_DIMENSIONS {
            return Err(format!(
                "{} dimensions, CloudWatch takes at most {MAX_DIMENSIONS}",
                dimensions.len()
            ));
        }
        let dimensions = dimensions
            .into_iter()
            .map(|(name, value)| {
                if let Some(problem) = dimension_name_problem(&name) {
                    return Err(format!("dimension name {name:?} {problem}"));
                }
                let value = dimension_value(&value)
                    .map_err(|problem| format!("dimension {name} value {value:?} {problem}"))?;
                Ok((name, value))
            })
            .collect::<Result<Vec<_>, String>>()?;
        Ok(metric_datum(&Datum {
            dimensions,
            ..d.clone()
        }))
    }
}

/// CloudWatch's limit of dimensions per datum.
pub const MAX_DIMENSIONS: usize = 30;
/// CloudWatch's limit of a dimension value's length.
pub const MAX_DIMENSION_VALUE_CHARS: usize = 1024;
/// CloudWatch's limit of a dimension name's length.
pub const MAX_DIMENSION_NAME_CHARS: usize = 255;

/// `raw` as a dimension value CloudWatch accepts (ASCII, no control characters, at least one
/// non-white-space character, 1–1024 characters). CloudWatch refuses the whole PutMetricData
/// call for one bad value, so a project name with other characters (`Équipe/api`, a newline)
/// is sent with each such character written as `\u{e9}`: the datum keeps its own series instead
/// of costing the batch. A value that is empty, only white space, or too long even so cannot be
/// sent (the error says why).
pub fn dimension_value(raw: &str) -> Result<String, &'static str> {
    if raw.trim().is_empty() {
        return Err("is empty or only white space");
    }
    let mut out = String::with_capacity(raw.len());
    for c in raw.chars() {
        if c.is_ascii() && !c.is_ascii_control() {
            out.push(c);
        } else {
            out.push_str(&format!("\\u{{{:x}}}", c as u32));
        }
    }
    if out.len() > MAX_DIMENSION_VALUE_CHARS {
        return Err("is longer than 1024 characters");
    }
    Ok(out)
}

/// Why CloudWatch would refuse `name` as a dimension name (ASCII without control characters,
/// 1–255 characters, at least one non-white-space character, not starting with `:`).
fn dimension_name_problem(name: &str) -> Option<&'static str> {
    if name.trim().is_empty() {
        Some("is empty or only white space")
    } else if name.len() > MAX_DIMENSION_NAME_CHARS {
        Some("is longer than 255 characters")
    } else if name.starts_with(':') {
        Some("starts with a colon")
    } else if !name.chars().all(|c| c.is_ascii() && !c.is_ascii_control()) {
        Some("holds a character other than printable ASCII")
    } else {
        None
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
    let retryable = crate::aws_error::is_retryable(&err);
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
        // CloudWatch rejects the whole call for one NaN/infinite value or one bad dimension;
        // drop (or, for odd characters, escape) those alone.
        let finite: Vec<MetricDatum> = datums
            .iter()
            .filter_map(|d| {
                if !d.value.is_finite() {
                    tracing::warn!(metric = %d.name, value = %d.value, "skipping non-finite metric value");
                    return None;
                }
                match self.metric_datum(d) {
                    Ok(datum) => Some(datum),
                    Err(problem) => {
                        tracing::warn!(metric = %d.name, %problem, "skipping a metric CloudWatch would refuse");
                        None
                    }
                }
            })
            .collect();
        let mut first_error: Option<SinkError> = None;
        let mut failed = 0usize;
        for batch in finite.chunks(MAX_DATUMS_PER_CALL) {
            let result = self
                .client
                .put_metric_data()
                .namespace(&self.namespace)
                .set_metric_data(Some(batch.to_vec()))
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

    fn test_sink() -> CloudWatchSink {
        let conf = aws_sdk_cloudwatch::Config::builder()
            .behavior_version(aws_sdk_cloudwatch::config::BehaviorVersion::latest())
            .build();
        CloudWatchSink::new(aws_sdk_cloudwatch::Client::from_conf(conf), "Test")
    }

    fn sent_dimensions(d: &MetricDatum) -> Vec<(&str, &str)> {
        d.dimensions()
            .iter()
            .map(|d| (d.name().unwrap(), d.value().unwrap()))
            .collect()
    }

    #[test]
    fn sink_dimensions_go_first_on_every_datum_and_a_datum_keeps_its_own() {
        let sink = test_sink()
            .with_dimension(FUNCTION_DIMENSION, "automation")
            .with_dimension(FUNCTION_DIMENSION, "monitor");
        assert_eq!(
            sink.dimensions(),
            [("Function".to_string(), "monitor".to_string())]
        );
        let plain = sink.metric_datum(&Datum::run_success(true)).unwrap();
        assert_eq!(sent_dimensions(&plain), [("Function", "monitor")]);
        let per_project = sink
            .metric_datum(
                &Datum::count("NewFailures", 2.0).with_dimension("ProjectName", "github/a/b"),
            )
            .unwrap();
        assert_eq!(
            sent_dimensions(&per_project),
            [("Function", "monitor"), ("ProjectName", "github/a/b")]
        );
        let own = sink
            .metric_datum(&Datum::count("x", 1.0).with_dimension("Function", "other"))
            .unwrap();
        assert_eq!(sent_dimensions(&own), [("Function", "other")]);
        // Without sink dimensions a datum goes out as it is.
        assert!(test_sink()
            .metric_datum(&Datum::count("x", 1.0))
            .unwrap()
            .dimensions()
            .is_empty());
    }

    #[test]
    fn shared_run_series_have_one_name_and_unit() {
        let s = Datum::run_success(false);
        assert_eq!(
            (s.name.as_str(), s.value, s.unit),
            ("RunSuccess", 0.0, Unit::None)
        );
        assert_eq!(Datum::run_success(true).value, 1.0);
        let d = Datum::run_duration_ms(1500);
        assert_eq!(
            (d.name.as_str(), d.value, d.unit),
            ("RunDurationMs", 1500.0, Unit::Milliseconds)
        );
        let e = Datum::errors(3);
        assert_eq!(
            (e.name.as_str(), e.value, e.unit),
            ("Errors", 3.0, Unit::Count)
        );
        assert!([s, d, e].iter().all(|d| d.dimensions.is_empty()));
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

    #[test]
    fn dimension_values_follow_cloudwatch_rules() {
        assert_eq!(
            dimension_value("github/acme/api").unwrap(),
            "github/acme/api"
        );
        assert_eq!(dimension_value("Équipe/ñ").unwrap(), "\\u{c9}quipe/\\u{f1}");
        assert_eq!(dimension_value("a\nb").unwrap(), "a\\u{a}b");
        assert!(dimension_value("").is_err());
        assert!(dimension_value(" \t ").is_err());
        assert_eq!(dimension_value(&"x".repeat(1024)).unwrap().len(), 1024);
        assert!(dimension_value(&"x".repeat(1025)).is_err());
        // Escaping can push a value over the limit.
        assert!(dimension_value(&"é".repeat(200)).is_err());
        assert_eq!(dimension_name_problem("ProjectName"), None);
        assert!(dimension_name_problem(":x").is_some());
        assert!(dimension_name_problem("").is_some());
        assert!(dimension_name_problem("Prøject").is_some());
        let sink = test_sink();
        assert!(sink
            .metric_datum(&Datum::count("x", 1.0).with_dimension("ProjectName", "  "))
            .unwrap_err()
            .contains("ProjectName"));
        let mut many = Datum::count("x", 1.0);
        for i in 0..31 {
            many = many.with_dimension(&format!("D{i}"), "v");
        }
        assert!(sink.metric_datum(&many).is_err());
    }
}
