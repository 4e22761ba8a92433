//! Counts the DynamoDB requests a real `aws-sdk-dynamodb` client sends, per operation, so tests
//! and benchmarks can state "N calls per scrape/run" from what actually went over the wire
//! (retries included) rather than from what the code under test says it did.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use aws_sdk_dynamodb::config::interceptors::BeforeTransmitInterceptorContextRef;
use aws_sdk_dynamodb::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_dynamodb::error::BoxError;

/// An SDK interceptor; clones share one tally.
#[derive(Debug, Clone, Default)]
pub struct DynamoCallCounter {
    calls: Arc<Mutex<BTreeMap<String, u64>>>,
}

impl DynamoCallCounter {
    /// A client for `sdk` whose every request is counted by this counter.
    pub fn client(&self, sdk: &aws_config::SdkConfig) -> aws_sdk_dynamodb::Client {
        let config = aws_sdk_dynamodb::config::Builder::from(sdk)
            .interceptor(self.clone())
            .build();
        aws_sdk_dynamodb::Client::from_conf(config)
    }

    /// Requests sent since creation or the last [`reset`](Self::reset).
    pub fn total(&self) -> u64 {
        self.calls.lock().unwrap().values().sum()
    }

    /// Requests per operation (`Query`, `BatchGetItem`, …).
    pub fn by_operation(&self) -> BTreeMap<String, u64> {
        self.calls.lock().unwrap().clone()
    }

    pub fn reset(&self) {
        self.calls.lock().unwrap().clear();
    }
}

impl Intercept for DynamoCallCounter {
    fn name(&self) -> &'static str {
        "DynamoCallCounter"
    }

    fn read_before_transmit(
        &self,
        context: &BeforeTransmitInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        // DynamoDB's JSON protocol names the operation in `X-Amz-Target: DynamoDB_20120810.<Op>`.
        let operation = context
            .request()
            .headers()
            .get("x-amz-target")
            .and_then(|t| t.rsplit('.').next())
            .unwrap_or("unknown")
            .to_string();
        *self.calls.lock().unwrap().entry(operation).or_default() += 1;
        Ok(())
    }
}
