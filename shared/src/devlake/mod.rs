//! The DevLake REST API: typed models and the one client that knows HTTP, auth, paging and retries.
//!
//! The client is split by DevLake resource: `client` (the type and its construction),
//! `transport` (the request/retry/paging core), `http` (pure URL, retry and status rules) and one
//! file per resource, each adding its own `impl DevLakeClient` block.

mod blueprints;
mod client;
mod config;
mod connection_test;
mod error;
mod http;
pub mod models;
mod pipelines;
mod plugins;
mod projects;
mod remote_scopes;
mod scope_configs;
mod scopes;
mod tls;
mod transport;
mod version;

pub use client::{CallCounts, DevLakeClient, TriggerOutcome};
pub use config::{
    ApiKeySource, ClientConfig, MAX_RESPONSE_BYTES, MAX_RETRY_AFTER, MAX_SCOPES_PAGE_SIZE,
};
pub use connection_test::{redact_secrets, ConnectionTest, TEST_MESSAGE_CHARS};
pub use error::DevLakeError;
pub use http::{encode_segment, parse_retry_after, scope_id_path, RetryPolicy};
pub use tls::{CaBundle, CA_BUNDLE_VAR};
pub use version::parse_version;
