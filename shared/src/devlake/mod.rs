//! The DevLake REST API: typed models and the one client that knows HTTP, auth, paging and retries.

mod client;
mod error;
pub mod models;
mod tls;

pub use client::{
    encode_segment, parse_retry_after, parse_version, scope_id_path, ApiKeySource, CallCounts,
    ClientConfig, DevLakeClient, RetryPolicy, TriggerOutcome, MAX_RESPONSE_BYTES, MAX_RETRY_AFTER,
    MAX_SCOPES_PAGE_SIZE,
};
pub use error::DevLakeError;
pub use tls::{CaBundle, CA_BUNDLE_VAR};
