//! devlake-autopilot's core library: the DevLake client, the automation and monitor logic, the
//! handling of DevLake's pipeline notifications, the DynamoDB store, CloudWatch emission and Prometheus rendering. Binaries in `functions/` only
//! read the environment, build clients once and hand events to this crate.

pub mod automation;
pub mod aws_error;
pub mod cloudwatch;
pub mod config;
pub mod cron;
pub mod deadline;
pub mod devlake;
pub mod events;
pub mod failure_cause;
pub mod function_error;
pub(crate) mod function_url;
pub mod job;
pub mod limits;
pub mod metrics_http;
pub mod monitor;
pub mod render;
pub mod secrets;
pub mod snapshot;
pub mod startup;
pub mod store;
pub mod time_rules;
pub mod transport;
