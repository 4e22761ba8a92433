//! CloudWatch metric emission behind a small trait. Per-project detail stays in Prometheus;
//! CloudWatch gets a handful of run-level series (each dimension combination costs money).

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
        Datum { name: name.to_string(), value, unit: Unit::Count, dimensions: Vec::new() }
    }
    pub fn millis(name: &str, value: f64) -> Self {
        Datum { name: name.to_string(), value, unit: Unit::Milliseconds, dimensions: Vec::new() }
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
}

/// Where run metrics go.
#[async_trait::async_trait]
pub trait MetricsSink: Send + Sync {
    async fn emit(&self, datums: &[Datum]) -> Result<(), SinkError>;
}
