//! The DevLake REST API: typed models and the one client that knows HTTP, auth, paging and retries.

mod client;
mod error;
pub mod models;

pub use client::{CallCounts, ClientConfig, DevLakeClient, TriggerOutcome};
pub use error::DevLakeError;
