//! Why a monitor run could not proceed. Each ends the invocation as a function error whose
//! message says why; nothing is lost (the cursor only moves after what it covers is stored).

use thiserror::Error;

use crate::config::ConfigError;
use crate::devlake::DevLakeError;
use crate::job::{job_error, Cause, Stop};
use crate::store::StoreError;

use super::payload::PayloadError;

#[derive(Debug, Error)]
pub enum MonitorError {
    /// Refused before any work: nothing read, nothing written.
    #[error(transparent)]
    Payload(#[from] PayloadError),
    /// Settings that cannot work together, found once an invocation tells the function its
    /// timeout. Nothing read, nothing written.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// DevLake unreachable, failing, refusing the key, or waiting for a migration (428).
    #[error("monitor run stopped: {0}")]
    DevLake(#[from] DevLakeError),
    /// The table could not be read or written; the cursor was not advanced.
    #[error("monitor run stopped: {0}")]
    Store(#[from] StoreError),
}

impl MonitorError {
    /// What ended the invocation, for the Lambda error scheme both jobs share.
    pub fn cause(&self) -> Cause<'_> {
        match self {
            MonitorError::Payload(_) => Cause::Payload,
            MonitorError::Config(_) => Cause::Config,
            MonitorError::DevLake(e) => Cause::DevLake(e),
            MonitorError::Store(e) => Cause::Store(e),
        }
    }
}

job_error!(MonitorError);

impl From<Stop> for MonitorError {
    fn from(stop: Stop) -> Self {
        match stop {
            Stop::DevLake(e) => MonitorError::DevLake(e),
            Stop::Store(e) => MonitorError::Store(e),
        }
    }
}
