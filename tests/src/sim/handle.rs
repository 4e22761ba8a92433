//! In-process control of a running simulator: the handle, its request log and its faults.
//! What it controls in DevLake's data is split by concept: `catalog` (connections, scopes,
//! projects, blueprints) and `pipelines` (pipelines, DevLake's clock and cron, notifications).

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::faults::{
    FaultRule, FaultState, Faults, MigrationMode, RequestCounts, RequestLog, RequestRecord,
};
use super::fixture::{self, Fixture};
use super::state::{ApiError, State};
use super::{lock, AutoComplete, Inner, SimOptions, DEFAULT_VERSION};

mod catalog;
mod pipelines;

/// Error from a control operation (unknown pipeline, invalid fixture, …).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimError {
    pub status: u16,
    pub message: String,
}

impl SimError {
    pub(crate) fn new(message: impl Into<String>) -> Self {
        SimError {
            status: 400,
            message: message.into(),
        }
    }
}

impl fmt::Display for SimError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.message, self.status)
    }
}

impl std::error::Error for SimError {}

impl From<ApiError> for SimError {
    fn from(e: ApiError) -> Self {
        SimError {
            status: e.status,
            message: e.message,
        }
    }
}

/// Cheap-to-clone handle on the simulator's state, faults and request log.
/// JSON returned here is exactly what the HTTP API would return for the same object.
#[derive(Clone)]
pub struct SimHandle {
    pub(crate) inner: Arc<Inner>,
}

impl fmt::Debug for SimHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimHandle").finish_non_exhaustive()
    }
}

impl SimHandle {
    pub(crate) fn build(fixture: Fixture, opts: &SimOptions) -> Result<SimHandle, SimError> {
        let version = opts
            .version
            .clone()
            .or_else(|| fixture.version.clone())
            .unwrap_or_else(|| DEFAULT_VERSION.to_string());
        let page = opts
            .remote_page_size
            .or(fixture.remote_page_size)
            .unwrap_or(100);
        let mut state = State::new(version, page);
        let auto = opts.auto_complete.clone().or_else(|| {
            fixture.auto_complete_ms.map(|ms| AutoComplete {
                after: Duration::from_millis(ms),
                status: fixture
                    .auto_complete_status
                    .clone()
                    .unwrap_or_else(|| "TASK_COMPLETED".into()),
            })
        });
        fixture::load(&mut state, fixture).map_err(SimError::from)?;
        let faults = Faults {
            latency_ms: opts.latency.as_millis() as u64,
            migration: if opts.migration_pending {
                MigrationMode::Pending
            } else {
                MigrationMode::None
            },
            ..Faults::default()
        };
        let capacity = match opts.request_log_capacity {
            0 => 100_000,
            n => n,
        };
        Ok(SimHandle {
            inner: Arc::new(Inner {
                state: Mutex::new(state),
                faults: Mutex::new(FaultState::new(faults, opts.seed.wrapping_add(0x9E37_79B9))),
                log: Mutex::new(RequestLog::new(capacity)),
                api_key: Mutex::new(opts.api_key.clone()),
                auto_complete: Mutex::new(auto),
            }),
        })
    }

    pub(crate) fn record(&self, method: &str, path: &str, status: u16) {
        lock(&self.inner.log).push(RequestRecord {
            method: method.to_string(),
            path: path.to_string(),
            status,
        });
    }

    pub(crate) fn with_state<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        f(&mut lock(&self.inner.state))
    }

    // ------------------------------------------------------------------ request log

    /// Every logged DevLake request, oldest first (bounded by `request_log_capacity`).
    pub fn requests(&self) -> Vec<RequestRecord> {
        lock(&self.inner.log).records.iter().cloned().collect()
    }

    /// Totals: all requests, reads (GET) and writes (non-GET), since the last reset.
    pub fn counts(&self) -> RequestCounts {
        lock(&self.inner.log).counts
    }

    /// Number of logged requests with this method (any if empty) whose path (as sent, with
    /// query) starts with `path_prefix`.
    pub fn count_matching(&self, method: &str, path_prefix: &str) -> usize {
        lock(&self.inner.log)
            .records
            .iter()
            .filter(|r| {
                (method.is_empty() || r.method.eq_ignore_ascii_case(method))
                    && r.path.starts_with(path_prefix)
            })
            .count()
    }

    pub fn reset_log(&self) {
        lock(&self.inner.log).reset();
    }

    /// How many GitHub scope PUT rows lacked `htmlUrl`/`cloneUrl` (each would make real
    /// DevLake call the GitHub API).
    pub fn github_api_fill_calls(&self) -> u64 {
        self.with_state(|s| s.github_api_fill_calls)
    }

    /// Changes the key `/rest/*` requires (`None`: open), as rotating the key in DevLake does.
    pub fn set_api_key(&self, key: Option<String>) {
        *lock(&self.inner.api_key) = key;
    }

    // ------------------------------------------------------------------ faults

    pub fn set_faults(&self, faults: Faults) {
        lock(&self.inner.faults).faults = faults;
    }

    pub fn faults(&self) -> Faults {
        lock(&self.inner.faults).faults.clone()
    }

    pub fn clear_faults(&self) {
        self.set_faults(Faults::default());
    }

    /// Appends a deterministic fault rule (see [`FaultRule::status`], [`FaultRule::reset`],
    /// [`FaultRule::commit_then_delay`]).
    pub fn add_fault_rule(&self, rule: FaultRule) {
        lock(&self.inner.faults).faults.rules.push(rule);
    }

    pub fn set_latency(&self, latency: Duration) {
        lock(&self.inner.faults).faults.latency_ms = latency.as_millis() as u64;
    }

    pub fn set_list_latency(&self, latency: Duration) {
        lock(&self.inner.faults).faults.list_latency_ms = latency.as_millis() as u64;
    }

    pub fn set_error_rate(&self, rate: f64, status: u16) {
        let mut f = lock(&self.inner.faults);
        f.faults.error_rate = rate;
        f.faults.error_status = Some(status);
    }

    pub fn set_migration(&self, mode: MigrationMode) {
        lock(&self.inner.faults).faults.migration = mode;
    }

    pub fn set_auto_complete(&self, auto: Option<AutoComplete>) {
        *lock(&self.inner.auto_complete) = auto;
    }
}
